"""The embedding's C kernel (repclass/compute/native.py): the same floats as the eager kernels to the
bit, for every table layout and thread split; built once into its cache folder and loaded from it
after; without a C compiler, or when building fails, the eager kernels with one log line."""
import logging

import pytest
import torch

from repclass.alphabet import PAD_CODE
from repclass.compute import compiling, native
from test_model import random_batch, random_model


@pytest.fixture(autouse=True)
def fresh_library():
    native.reset()
    compiling.reset()
    yield
    compiling.configure(None)
    native.reset()


def embeddings(model, codes, lengths, mode: str) -> torch.Tensor:
    compiling.configure(mode)
    with torch.no_grad():
        return model.embed(codes, lengths, chunk_size=256)


needs_compiler = pytest.mark.skipif(native.c_compiler() is None, reason="no C compiler")


@needs_compiler
@pytest.mark.parametrize("kernel_size, n_kernels", [(9, 32), (5, 32), (4, 32), (1, 32), (12, 32), (9, 16)])
def test_the_c_kernel_gives_the_eager_floats(kernel_size, n_kernels):
    """Folded position rows (odd kernel sizes) or a position column (even), the 32-kernel
    vector path and the generic one (16): equal to the bit, sequences shorter than the kernel
    and unsorted input included."""
    model = random_model(kernel_size, n_outputs=1, kernel_size=kernel_size, n_kernels=n_kernels)
    codes, lengths = random_batch(700, kernel_size)
    lengths[:5] = torch.tensor([1, 2, 3, kernel_size - 1 if kernel_size > 1 else 1, kernel_size])
    for row, length in enumerate(lengths[:5].tolist()):
        codes[row, length:] = PAD_CODE
    eager = embeddings(model, codes, lengths, "off")
    assert native.library() is not None
    assert torch.equal(embeddings(model, codes, lengths, "auto"), eager)


def embeddings_and_gradients(model, codes, lengths, mode: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    compiling.configure(mode)
    model.zero_grad()
    out = model.embed(codes, lengths, chunk_size=256)
    out.pow(2).sum().backward()
    return out.detach(), [parameter.grad.clone() for parameter in model.embedding.parameters()]


@needs_compiler
@pytest.mark.parametrize("kernel_size, n_kernels", [(9, 32), (4, 32), (1, 32), (12, 32), (9, 16)])
def test_the_gradient_pass_takes_the_c_kernels_maxima_and_windows(kernel_size, n_kernels, monkeypatch):
    """Training's forward through the C kernel (maxima and winning windows): the eager outputs
    and weight gradients to the bit; the backward reaches the same windows."""
    model = random_model(kernel_size, n_outputs=1, kernel_size=kernel_size, n_kernels=n_kernels)
    codes, lengths = random_batch(700, kernel_size)
    lengths[:3] = torch.tensor([1, 2, kernel_size])
    for row, length in enumerate(lengths[:3].tolist()):
        codes[row, length:] = PAD_CODE
    eager = embeddings_and_gradients(model, codes, lengths, "off")
    calls = []
    window_max = native.window_max
    monkeypatch.setattr(native, "window_max", lambda *a, **k: calls.append(k.get("argmax")) or window_max(*a, **k))
    fast = embeddings_and_gradients(model, codes, lengths, "auto")
    assert calls and all(calls)  # every chunk's forward, with its windows
    assert torch.equal(fast[0], eager[0])
    assert all(torch.equal(a, b) for a, b in zip(fast[1], eager[1]))


@needs_compiler
@pytest.mark.parametrize("n_kernels", [32, 16])
def test_tied_windows_send_the_gradient_to_the_first_like_torch(n_kernels):
    """A repeated residue with no position term: every full window has the same sum; the C
    kernel names the first, as torch's max does, so the position weights' gradients agree."""
    model = random_model(0, n_outputs=1, n_kernels=n_kernels)
    with torch.no_grad():
        model.embedding.conv_weight[:, 20:, :] = 0.0  # the position features' weights
        model.embedding.conv_bias.zero_()
    codes, lengths = random_batch(300, 3)
    codes[:100] = 3  # one residue throughout
    eager = embeddings_and_gradients(model, codes, lengths, "off")
    fast = embeddings_and_gradients(model, codes, lengths, "auto")
    assert torch.equal(fast[0], eager[0])
    assert all(torch.equal(a, b) for a, b in zip(fast[1], eager[1]))


@needs_compiler
def test_split_across_threads_gives_the_same_floats():
    model = random_model(0, n_outputs=1)
    codes, lengths = random_batch(20_000, 1)
    aa, position, layout = model.embedding._parts(int(lengths.max()))
    order = torch.argsort(lengths, stable=True)
    arguments = dict(kernel_size=9, groups=model.embedding._tap_groups(), folded=True, layout=layout)
    one = native.window_max(codes[order], lengths[order], aa, position, threads=1, **arguments)
    four = native.window_max(codes[order], lengths[order], aa, position, threads=4, **arguments)
    assert torch.equal(one, four)


@needs_compiler
def test_built_once_into_the_cache_folder_then_loaded(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(native.CACHE_ENVIRONMENT, str(tmp_path))
    with caplog.at_level(logging.INFO, logger="repclass.compute.native"):
        assert native.library() is not None
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].endswith(".so")  # no temporary build folder left
    assert any("built the embedding's C kernel" in r.getMessage() for r in caplog.records)
    native.reset()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="repclass.compute.native"):
        assert native.library() is not None
    assert not caplog.records and sorted(p.name for p in tmp_path.iterdir()) == built


@pytest.mark.parametrize("cause", ["no compiler", "build fails"])
def test_falls_back_to_the_eager_kernels_with_one_log_line(monkeypatch, tmp_path, caplog, cause):
    monkeypatch.setenv(native.CACHE_ENVIRONMENT, str(tmp_path))
    if cause == "no compiler":
        monkeypatch.setattr(native, "c_compiler", lambda: None)
    else:
        broken = tmp_path / "cc"
        broken.write_text("#!/bin/sh\necho 'cc: fatal error: no input files' >&2\nexit 1\n")
        broken.chmod(0o755)
        monkeypatch.setenv("CC", str(broken))
    model = random_model(2, n_outputs=1)
    codes, lengths = random_batch(300, 2)
    eager = embeddings(model, codes, lengths, "off")
    with caplog.at_level(logging.INFO, logger="repclass.compute.native"):
        first = embeddings(model, codes, lengths, "auto")
        again = embeddings(model, codes, lengths, "auto")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert ("no C compiler" if cause == "no compiler" else "no input files") in messages[0]
    assert torch.equal(first, eager) and torch.equal(again, eager)
    assert [p for p in tmp_path.iterdir() if p.name != "cc"] == []  # nothing half-built left


@needs_compiler
def test_sequences_longer_than_the_vector_paths_buffer_take_the_generic_loop():
    """Longer than MAX_SPAN (512) residues: the generic loop, the same floats."""
    model = random_model(4, n_outputs=1)
    codes, lengths = random_batch(40, 4, min_length=400, max_length=700)
    assert torch.equal(embeddings(model, codes, lengths, "auto"), embeddings(model, codes, lengths, "off"))


@needs_compiler
def test_a_home_that_cannot_be_written_builds_in_the_temporary_directory(monkeypatch, tmp_path):
    """A cache home that cannot be created (here a file where the folder would go; a read-only
    home in a container): the per-user folder in the temporary directory, and no warning."""
    import tempfile

    (tmp_path / "home_cache").write_text("not a folder\n")
    monkeypatch.delenv(native.CACHE_ENVIRONMENT, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert native.library() is not None
    built = list((tmp_path / "tmp").glob("repclass-*/native-*.so"))
    assert len(built) == 1
