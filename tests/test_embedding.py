"""Sequence embeddings as parts (issue 14): the LSTM equals a plain one-sequence-at-a-time
torch.nn.LSTM, both embeddings equal their outer form (what integrated gradients uses), the CNN
keeps its model-file names, and an LSTM model trains, predicts and is explained from the CLI."""
import json

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from repclass.alphabet import N_AMINO_ACIDS, PAD_CODE
from repclass.cli import main
from repclass.config import ModelConfig
from repclass.model.embedding import ConvolutionEmbedding, LSTMEmbedding, one_hot
from repclass.errors import UsageError
from repclass.model.deeprc import DeepRC
from support.reference import reference_embed
from test_model import random_batch, random_model, relative_error


@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_equals_one_sequence_at_a_time(seed):
    model = random_model(seed, embedding="lstm", n_kernels=16)
    codes, lengths = random_batch(700, seed, min_length=1, max_length=30)
    plain = reference_embed(model, codes, lengths)
    for chunk_size in (64, 700):
        assert relative_error(model.embed(codes, lengths, chunk_size=chunk_size), plain) < 1e-5
        with torch.no_grad():
            assert relative_error(model.embed(codes, lengths, chunk_size=chunk_size), plain) < 1e-5
    order = torch.argsort(lengths, stable=True)
    presorted = model.embed(codes[order], lengths[order], chunk_size=100, presorted=True)
    assert relative_error(presorted, plain[order]) < 1e-5
    # padding and batch mates never change a sequence's embedding
    wide = torch.full((700, 45), PAD_CODE, dtype=torch.uint8)
    wide[:, :codes.shape[1]] = codes
    assert relative_error(model.embed(wide, lengths, chunk_size=33), plain) < 1e-5
    assert model.embed(codes[:0], lengths[:0]).shape == (0, 16)


@pytest.mark.parametrize("embedding", ["cnn", "lstm"])
def test_outer_form_equals_the_fast_path(embedding):
    """h(x) = activate(A x_aa + P(lengths), lengths), with residue_gradient the transpose of A:
    the form integrated gradients relies on, for every embedding."""
    model = random_model(4, embedding=embedding, n_kernels=8).double()
    codes, lengths = random_batch(200, 4, min_length=1, max_length=22)
    part = model.embedding
    assert relative_error(part.dense(codes, lengths), model.embed(codes, lengths)) < 1e-10
    width = part.input_width(int(lengths.max()))
    x = one_hot(codes, width).double().requires_grad_(True)
    activations = part.residue_activations(x)
    g = torch.randn_like(activations)
    (by_autograd,) = torch.autograd.grad((activations * g).sum(), x)
    assert torch.allclose(part.residue_gradient(g), by_autograd, atol=1e-12)
    assert part.fixed_activations(lengths, width).shape == activations.shape


def test_cnn_keeps_its_model_file_names_and_order():
    torch.manual_seed(0)
    model = DeepRC(ModelConfig(use_counts=True, enrichment=False))
    state = model.state_dict()
    assert list(state)[:3] == ["conv_weight", "conv_bias", "count_scale"]  # as files written before issue 14
    assert state["conv_weight"] is not None and model.conv_weight is model.embedding.conv_weight
    assert model.conv_bias is model.embedding.conv_bias and model.embedding.seedable
    other = DeepRC(ModelConfig(use_counts=True, enrichment=False))
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    wrapped = torch.nn.ModuleDict({"inner": model}).state_dict()  # nested (as DDP nests it): prefixed
    assert list(wrapped)[:2] == ["inner.conv_weight", "inner.conv_bias"]


def test_model_files_written_before_load(tmp_path):
    """A CNN model file from before issue 14: top-level conv_weight/conv_bias, no "embedding" setting."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from repclass.model.checkpoint import ModelInfo, load_model, save_model
    from repclass.targets import Target

    model = random_model(6)
    info = ModelInfo(model_config=model.config, targets=[Target("status", "binary", classes=["-", "+"])])
    written = save_model(tmp_path / "new.safetensors", model, info)
    with safe_open(str(written), framework="pt") as handle:
        description = json.loads(handle.metadata()["repclass"])
    assert description["model_config"].pop("embedding") == "cnn"
    tensors = load_file(str(written))
    assert {"conv_weight", "conv_bias"} <= set(tensors)
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"repclass": json.dumps(description)})
    loaded, loaded_info = load_model(tmp_path / "old.safetensors")
    assert loaded_info.model_config.embedding == "cnn"
    codes, lengths = random_batch(50, 6)
    with torch.no_grad():
        assert torch.equal(loaded.embed(codes, lengths), model.embed(codes, lengths))


def test_lstm_parts():
    model = DeepRC(ModelConfig(embedding="lstm", n_kernels=12, enrichment=False))
    assert isinstance(model.embedding, LSTMEmbedding) and model.embedding.out_features == 12
    assert not model.embedding.seedable and not model.embedding.kernel_logos and not hasattr(model, "conv_weight")
    assert all(name.startswith(("embedding.lstm.", "attention.", "output.", "evidence_weight"))
               for name in model.state_dict())
    assert model.embedding.input_kernel().shape == (48, N_AMINO_ACIDS + 3, 1)
    assert isinstance(DeepRC(ModelConfig()).embedding, ConvolutionEmbedding)
    with pytest.raises(UsageError, match="--embedding must be 'cnn' or 'lstm', got 'gru'"):
        ModelConfig(embedding="gru")


def test_lstm_trains_predicts_and_is_explained_from_the_cli(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    runner = CliRunner()
    model = tmp_path / "lstm"
    # default --init-kmers: k-mer seeding is for convolution kernels, an LSTM starts random
    trained = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(model),
                                   "--embedding", "lstm", "--kernels", "8", "--attention-units", "8",
                                   "--updates", "20", "--eval-every", "10", "--sequences-per-bag", "200",
                                   "--device", "cpu", "--seed", "1"])
    assert trained.exit_code == 0, trained.output
    config = json.loads((model / "model.json").read_text())
    assert config["model_config"]["embedding"] == "lstm"
    predicted = runner.invoke(main, ["predict", str(model), str(store_path), "--out", str(tmp_path / "p.tsv"),
                                     "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    assert pl.read_csv(tmp_path / "p.tsv", separator="\t").height == 16
    out = tmp_path / "motifs"
    explained = runner.invoke(main, ["motifs", str(model), str(store_path), "--out", str(out), "--sample", "r01",
                                     "--sample", "r02", "--top-sequences", "40", "--ig-steps", "16",
                                     "--device", "cpu"])
    assert explained.exit_code == 0, explained.output
    summary = json.loads((out / "motifs.json").read_text())
    assert summary["kernels"] == [] and "no convolution kernels" in summary["kernels_note"]
    assert not list((out / "logos").glob("kernel_*"))
    assert "no convolution kernels" in (out / "report.html").read_text()
    assert summary["integrated_gradients"]["worst_relative_error"] <= 0.01
    table = pl.read_csv(out / "sequences.tsv", separator="\t")
    assert table.height == 40
    for row in table.iter_rows(named=True):
        values = np.array([float(v) for v in row["residue_contributions"].split(",")])
        assert len(values) == len(row["junction_aa"])
        assert abs(values.sum() - row["ig_delta"]) <= 0.0101 * max(abs(row["ig_delta"]), 1e-3) + 1e-7
