"""Issue 11, `repclass train`: no abort at exit, outputs never inputs, meaningless runs refused,
damaged data caught, every failure one line (see test_reliability_ingest for the helpers)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import write_airr, write_table
from repclass.files import output_lock
from repclass.ingestion import ingest
from test_reliability_ingest import assert_refused, assert_unchanged, run_cli, snapshot

SMALL = ["--updates", "2", "--eval-every", "1", "--sequences-per-bag", "32", "--kernels", "4",
         "--attention-units", "4", "--device", "cpu", "--threads", "1"]


def make_store(root: Path, labels: dict[str, list[str]], name: str = "S") -> Path:
    """A store of len(labels[...]) small repertoires with the given label columns."""
    rng = np.random.default_rng(0)
    n = len(next(iter(labels.values())))
    reps = root / f"{name}_reps"
    reps.mkdir()
    for i in range(n):
        rows = [[f"r{j}", "CAS" + "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 6)) + "F", "TRBV5-1*01",
                 "TRBJ2-7*01", int(rng.integers(1, 5)), "T", "TRB"] for j in range(20)]
        write_airr(reps / f"s{i}.tsv", rows)
    columns = list(labels)
    write_table(root / f"{name}.tsv", ["sample_id", *columns],
                [[f"s{i}", *[labels[c][i] for c in columns]] for i in range(n)])
    ingest(root / f"{name}.tsv", root / name, [reps])
    shutil.rmtree(reps)
    (root / f"{name}.tsv").unlink()
    return root / name


STATUS = ["+", "-"] * 6


def _status_store(root: Path) -> None:
    make_store(root, {"status": STATUS, "age": [str(20 + i) for i in range(12)], "one": ["+"] * 12,
                      "empty": ["NA"] * 12, "age_once": ["40"] + ["NA"] * 11, "age_twice": ["40", "50"] + ["NA"] * 10})


def _flip_byte(path: Path, offset_from_end: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _setup_flipped_parquet(root: Path) -> None:
    _flip_byte(next((root / "S" / "repertoires").glob("*.parquet")))


def _setup_zero_row_parquet(root: Path) -> None:
    path = next((root / "S" / "repertoires").glob("*.parquet"))
    pl.read_parquet(path).head(0).write_parquet(path)


def _setup_no_samples_tsv(root: Path) -> None:
    (root / "S" / "samples.tsv").unlink()


def _setup_results_folder(root: Path) -> None:
    (root / "results").mkdir()
    (root / "results" / "notes.txt").write_text("precious\n")


def _setup_other_store(root: Path) -> None:
    make_store(root, {"status": ["+", "-", "+"]}, name="other.store")


def _setup_parent_is_file(root: Path) -> None:
    (root / "afile").write_text("x\n")


def _setup_truncated_checkpoint(root: Path) -> None:
    (root / "M.partial").mkdir()
    (root / "M.partial" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")


def _setup_foreign_checkpoint(root: Path) -> None:
    import torch

    (root / "M.partial").mkdir()
    torch.save({"weights": torch.zeros(3)}, root / "M.partial" / "checkpoint.pt")


TRAIN = ["S", "--target", "status", "--out", "M", *SMALL]
# (case, setup, arguments after `train`, exit code, message fragments)
REFUSED = [
    ("out_equal_to_store_keeps_store", None, ["S", "-t", "status", "--out", "S", "--force"], 2, ["also an input"]),
    ("out_inside_store_refused", None, ["S", "-t", "status", "--out", "S/model"], 2, ["lies inside the input"]),
    ("force_replaces_only_a_model_folder", _setup_results_folder, ["S", "-t", "status", "--out", "results",
                                                                   "--force"], 2, ["only replaces a model folder"]),
    ("force_never_replaces_another_store", _setup_other_store, ["S", "-t", "status", "--out", "other.store",
                                                                "--force"], 2, ["is a repertoire store"]),
    ("existing_output_needs_force", _setup_results_folder, ["S", "-t", "status", "--out", "results"], 1,
     ["exists already"]),
    ("output_parent_is_a_file", _setup_parent_is_file, ["S", "-t", "status", "--out", "afile/M"], 1, ["afile"]),
    ("negative_lr_refused", None, [*TRAIN, "--lr", "-1"], 2, ["--lr must be a positive number"]),
    ("nan_lr_refused", None, [*TRAIN, "--lr", "nan"], 2, ["--lr"]),
    ("negative_weight_decay_refused", None, [*TRAIN, "--weight-decay", "-1"], 2, ["--weight-decay"]),
    ("zero_chunk_size_refused", None, [*TRAIN, "--chunk-size", "0"], 2, ["--chunk-size"]),
    ("nan_loss_weight_does_not_advise_lr", None, [*TRAIN, "--loss-weight", "status=nan"], 2, ["--loss-weight"]),
    ("folds_without_test_repertoires_refused", None, [*TRAIN, "--folds", "20"], 2, ["--folds 20", "there are 12"]),
    ("regression_on_one_repertoire_refused", None, ["S", "-t", "age_once", "--out", "M", *SMALL], 1,
     ["age_once = '40'"]),
    ("regression_on_two_repertoires_refused", None, ["S", "-t", "age_twice", "--type", "age_twice=regression",
                                                     "--out", "M", *SMALL], 2, ["2 labelled repertoire(s)"]),
    ("one_class_target_is_a_data_problem", None, ["S", "-t", "one", "--out", "M", *SMALL], 1,
     ["at least two different labels"]),
    ("empty_target_does_not_advise_fractions", None, ["S", "-t", "empty", "--out", "M", *SMALL], 1,
     ["no label for any repertoire"]),
    ("resume_with_truncated_checkpoint", _setup_truncated_checkpoint, [*TRAIN, "--resume"], 1,
     ["cannot be read", "without --resume"]),
    ("resume_with_foreign_checkpoint", _setup_foreign_checkpoint, [*TRAIN, "--resume"], 1,
     ["not a repclass training checkpoint"]),
    ("flipped_bit_in_parquet_is_caught", _setup_flipped_parquet, TRAIN, 1, ["checksum differs"]),
    ("zero_row_parquet_is_caught", _setup_zero_row_parquet, TRAIN, 1, ["checksum differs"]),
    ("store_without_samples_tsv", _setup_no_samples_tsv, TRAIN, 1, ["samples.tsv", "missing"]),
]


@pytest.mark.parametrize("case, setup, args, code, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_train_refuses(case, setup, args, code, fragments, tmp_path):
    _status_store(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    assert_refused(*run_cli(["train", *args], tmp_path), code, fragments)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "M").exists()
    if "resume" not in case:  # refused before its first update: no OUT.partial/ to resume
        assert not (tmp_path / "M.partial").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock")]


def test_train_refuses_an_output_another_process_is_writing(tmp_path):
    _status_store(tmp_path)
    before = snapshot(tmp_path)
    with output_lock(tmp_path / "M"):
        result = run_cli(["train", *TRAIN], tmp_path)
    assert_refused(*result, 1, ["is writing this output right now"])
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "M").exists() and not (tmp_path / "M.partial").exists()


def test_force_replaces_a_model_with_a_model(tmp_path):
    _status_store(tmp_path)
    for extra in ([], ["--force", "--seed", "1"]):
        code, output, _ = run_cli(["train", *TRAIN, *extra], tmp_path)
        assert code == 0, output
    assert (tmp_path / "M" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["M", "S"]


def test_finished_training_never_aborts_at_exit(tmp_path):
    """Case 0: many short trainings that stop early, each in its own interpreter, all exit 0.

    A prefetch thread still inside numpy/torch at interpreter shutdown used to abort a finished
    run ("terminate called without an active exception", SIGABRT)."""
    _status_store(tmp_path)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    for run in range(5):  # about 8 s each on a loaded 2-core machine
        command = [sys.executable, "-m", "repclass", "train", "S", "--target", "status", "--out", f"M{run}",
                   "--updates", "100", "--eval-every", "1", "--patience", "1", "--batch-size", "2",
                   "--sequences-per-bag", "16", "--kernels", "4", "--attention-units", "4", "--device", "cpu",
                   "--threads", "1", "--seed", str(run)]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=environment, timeout=120)
        assert result.returncode == 0, f"run {run}: exit {result.returncode}\n{result.stderr[-2000:]}"
        assert "stopping early" in result.stderr
        assert (tmp_path / f"M{run}" / "model.safetensors").is_file()


def test_prefetch_thread_is_joined_when_the_consumer_stops_early():
    """The consumer leaving after one item stops the producer between items and joins it."""
    import threading
    import time

    from repclass.batching import prefetch, stop_prefetchers

    produced = []

    def slow():
        for i in range(1000):
            time.sleep(0.01)
            produced.append(i)
            yield i

    before = threading.active_count()
    batches = prefetch(slow())
    assert next(batches) == 0
    batches.close()
    assert threading.active_count() == before
    assert len(produced) < 10
    abandoned = prefetch(slow())  # never closed: train() stops it on its way out
    next(abandoned)
    stop_prefetchers()
    assert threading.active_count() == before
