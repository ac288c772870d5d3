"""torch.compile (repclass/compute/compiling.py): the compiled kernels equal the eager path and the
dense reference, small jobs stay eager in mode auto, and a missing compiler or a failing compilation
falls back to the eager path with one log line."""
import logging

import pytest
import torch
from click.testing import CliRunner

from repclass.cli import main
from repclass.compute import compiling
from repclass.errors import UsageError
from support.reference import reference_embed, reference_forward
from test_model import random_batch, random_model, relative_error


@pytest.fixture(autouse=True)
def fresh_compiling():
    compiling.reset()
    yield
    compiling.configure(None)
    compiling.reset()


def embed_forward_gradients(model, codes, lengths, bag_index):
    with torch.no_grad():
        embedded = model.embed(codes, lengths, chunk_size=256)  # the no-gradient kernel (window_max)
    outputs = model(codes, lengths, bag_index, 3, chunk_size=256)  # the gradient pass (window_argmax)
    gradients = torch.autograd.grad(outputs.sum(), list(model.parameters()))
    return embedded, outputs.detach(), gradients


def eager_then_compiling(seed, n, bag_seed):
    """A random model and batch, the eager results on them, and compiling switched on."""
    model = random_model(seed, n_outputs=2)
    codes, lengths = random_batch(n, seed)
    bag_index = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(bag_seed))
    compiling.configure("off")
    eager = embed_forward_gradients(model, codes, lengths, bag_index)
    compiling.configure("on")
    return model, codes, lengths, bag_index, eager


@pytest.mark.slow  # the first compilation on a machine (Inductor's cache is cold) takes 10-30 s
@pytest.mark.skipif(compiling.cxx_compiler() is None, reason="no C++ compiler: torch.compile cannot build CPU kernels")
def test_compiled_kernels_equal_eager_and_the_dense_reference(caplog):
    model, codes, lengths, bag_index, eager = eager_then_compiling(3, 600, 1)
    with caplog.at_level(logging.WARNING, logger="repclass.compute.compiling"):
        compiled = embed_forward_gradients(model, codes, lengths, bag_index)
    assert not caplog.records, "compiling fell back to eager"
    assert compiling._compiled, "no kernel was compiled"
    assert relative_error(compiled[0], reference_embed(model, codes, lengths)) < 1e-5
    assert relative_error(compiled[1], reference_forward(model, codes, lengths, bag_index, 3)) < 1e-5
    assert relative_error(compiled[0], eager[0]) < 1e-5
    assert relative_error(compiled[1], eager[1]) < 1e-5
    scale = max(float(g.abs().max()) for g in eager[2])
    for a, b in zip(compiled[2], eager[2]):
        assert float((a - b).abs().max()) <= 1e-5 * scale


def test_auto_keeps_small_jobs_eager(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile called for a small job")

    monkeypatch.setattr(torch, "compile", refuse)
    model = random_model(0, n_outputs=2)
    codes, lengths = random_batch(500, 0)
    assert compiling.mode() == "auto"
    embed_forward_gradients(model, codes, lengths, torch.arange(500) % 3)  # both kernels, eagerly
    assert not compiling._compiled


@pytest.mark.parametrize("cause", ["no compiler", "compilation fails"])
def test_falls_back_to_eager_with_one_log_line(monkeypatch, caplog, cause):
    if cause == "no compiler":
        monkeypatch.setattr(compiling, "cxx_compiler", lambda: None)
    else:
        def broken(function, **kwargs):
            def run(*args, **kwargs):
                raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore detail")
            return run

        monkeypatch.setattr(torch, "compile", broken)
    model, codes, lengths, bag_index, eager = eager_then_compiling(1, 400, 2)
    with caplog.at_level(logging.INFO, logger="repclass.compute.compiling"):
        first = embed_forward_gradients(model, codes, lengths, bag_index)
        again = embed_forward_gradients(model, codes, lengths, bag_index)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert ("no C++ compiler" if cause == "no compiler" else "CppCompileError") in warnings[0].getMessage()
    for result in (first, again):
        assert torch.equal(result[0], eager[0]) and torch.equal(result[1], eager[1])
        assert all(torch.equal(a, b) for a, b in zip(result[2], eager[2]))


def test_mode_from_the_environment_and_the_option(monkeypatch):
    monkeypatch.setenv(compiling.ENVIRONMENT, "off")
    assert compiling.mode() == "off"
    compiling.configure("on")  # --compile wins over the environment
    assert compiling.mode() == "on"
    compiling.configure(None)
    monkeypatch.setenv(compiling.ENVIRONMENT, "sometimes")
    with pytest.raises(UsageError, match="REPCLASS_COMPILE='sometimes'"):
        compiling.mode()
    result = CliRunner().invoke(main, ["predict", "--compile", "sometimes", "model", "-o", "out"])
    assert result.exit_code == 2 and "'sometimes' is not one of" in result.output
