"""Issue 11, `repclass predict` (and `repclass motifs`' output checks): outputs never inputs or
each other, --force only replacing predict's own files, damaged models and stores caught."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from repclass.config import TrainConfig
from repclass.files import output_lock
from repclass.training import train
from test_reliability_ingest import assert_refused, assert_unchanged, run_cli, snapshot
from test_reliability_train import _flip_byte, make_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model folder, store) trained for a few updates: enough to predict with."""
    from repclass.config import ModelConfig

    root = tmp_path_factory.mktemp("reliability_predict")
    store = make_store(root, {"status": ["+", "-"] * 6})
    config = TrainConfig(max_updates=2, eval_every=1, sequences_per_bag=32, seed=0)
    train(store, root / "M", targets=["status"], config=config,
          model_config=ModelConfig(n_kernels=4, attention_units=4), device="cpu")
    return root / "M", store


def _copy(trained, root: Path) -> None:
    model, store = trained
    shutil.copytree(model, root / "M")
    shutil.copytree(store, root / "S")


def _setup_metrics_exists(root: Path) -> None:
    (root / "p.metrics.json").write_text('{"mine": 1}\n')


def _setup_notes_tsv(root: Path) -> None:
    (root / "p.tsv").write_text("my own notes\n")


def _setup_raw_file(root: Path) -> None:
    (root / "x.tsv").write_text("junction_aa\nCASSLGQETQYF\n")


def _setup_parent_is_file(root: Path) -> None:
    (root / "afile").write_text("x\n")


def _rewrite_weights(root: Path, change) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = root / "M" / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


def _setup_nan_weight(root: Path) -> None:
    def poison(tensors):
        name = sorted(tensors)[0]
        tensors[name].view(-1)[0] = float("nan")
    _rewrite_weights(root, poison)


def _setup_inf_weight(root: Path) -> None:
    def poison(tensors):
        name = sorted(tensors)[-1]
        tensors[name].view(-1)[0] = float("inf")
    _rewrite_weights(root, poison)


def _setup_model_json_edited(root: Path) -> None:
    path = root / "M" / "model.json"
    data = json.loads(path.read_text())
    data["junction_convention"] = "cdr3"
    path.write_text(json.dumps(data))


def _setup_truncated_model(root: Path) -> None:
    path = root / "M" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def _setup_flipped_parquet(root: Path) -> None:
    _flip_byte(sorted((root / "S" / "repertoires").glob("*.parquet"))[0])


PREDICT = ["M", "S", "--out", "p.tsv", "--device", "cpu", "--threads", "1"]
# (case, setup, command line, exit code, message fragments)
REFUSED = [
    ("out_equal_to_model_file_keeps_model", None, ["predict", "M", "S", "--out", "M/model.safetensors", "--force"],
     2, ["also an input"]),
    ("out_inside_model_folder_refused", None, ["predict", "M", "S", "--out", "M/p.tsv"], 2, ["lies inside"]),
    ("out_equal_to_store_keeps_store", None, ["predict", "M", "S", "--out", "S", "--force"], 2, ["also an input"]),
    ("attention_out_equal_to_out_refused", None, ["predict", *PREDICT, "--attention", "5", "--attention-out",
                                                  "p.tsv"], 2, ["same file"]),
    ("existing_metrics_json_needs_force", _setup_metrics_exists, ["predict", *PREDICT], 1, ["p.metrics.json",
                                                                                          "exists already"]),
    ("force_replaces_only_predict_outputs", _setup_notes_tsv, ["predict", *PREDICT, "--force"], 2,
     ["--force only replaces a table written by repclass"]),
    ("store_next_to_raw_file_is_named_a_store", _setup_raw_file, ["predict", "M", "S", "x.tsv", "--out", "p.tsv"],
     2, ["a store, given together with other inputs"]),
    ("zero_chunk_size_refused", None, ["predict", *PREDICT, "--chunk-size", "0"], 2, ["--chunk-size"]),
    ("output_parent_is_a_file", _setup_parent_is_file, ["predict", "M", "S", "--out", "afile/p.tsv"], 1, ["afile"]),
    ("nan_weight_names_the_tensor", _setup_nan_weight, ["predict", *PREDICT], 1, ["NaN or infinite", "attention"]),
    ("inf_weight_refused", _setup_inf_weight, ["predict", *PREDICT], 1, ["NaN or infinite"]),
    ("model_json_checked_against_model_file", _setup_model_json_edited, ["predict", *PREDICT], 1,
     ["model.json", "does not describe"]),
    ("truncated_model_file_refused", _setup_truncated_model, ["predict", *PREDICT], 1, ["model.safetensors"]),
    ("flipped_bit_in_store_caught", _setup_flipped_parquet, ["predict", *PREDICT], 1, ["checksum differs"]),
    ("motifs_out_equal_to_store_keeps_store", None, ["motifs", "M", "S", "--out", "S", "--force"], 2,
     ["also an input"]),
    ("motifs_out_inside_model_refused", None, ["motifs", "M", "S", "--out", "M/motifs"], 2, ["lies inside"]),
    ("motifs_force_replaces_only_motifs", _setup_parent_is_file, ["motifs", "M", "S", "--out", "afile", "--force"],
     2, ["only replaces a motifs folder"]),
]


@pytest.mark.parametrize("case, setup, args, code, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_predict_refuses(case, setup, args, code, fragments, trained, tmp_path):
    _copy(trained, tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    assert_refused(*run_cli(args, tmp_path), code, fragments)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "p.tsv").exists() or case == "force_replaces_only_predict_outputs"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock")]


def test_predict_refuses_an_output_another_process_is_writing(trained, tmp_path):
    _copy(trained, tmp_path)
    before = snapshot(tmp_path)
    with output_lock(tmp_path / "p.tsv"):
        result = run_cli(["predict", *PREDICT], tmp_path)
    assert_refused(*result, 1, ["is writing this output right now"])
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "p.tsv").exists()


def test_predict_force_replaces_its_own_outputs(trained, tmp_path):
    _copy(trained, tmp_path)
    for extra in ([], ["--force"]):
        code, output, _ = run_cli(["predict", *PREDICT, "--attention", "3", *extra], tmp_path)
        assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["M", "S", "p.attention.airr.tsv", "p.attention.tsv",
                                                         "p.metrics.json", "p.tsv"]
