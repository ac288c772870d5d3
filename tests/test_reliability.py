"""Nothing is ever lost (issues 11 and 33), for every command: one table of hostile cases.

Every case starts from a copy of one small world (raw files and a sheet, a store, two one-sample
stores, a tiny model), runs one command, and checks the exit code, the one `Error:` line, that
every file that existed before is byte-for-byte unchanged (sha256), and that no output,
temporary (`.OUT.tmp-PID`), replaced output (`.OUT.old-PID`) or lock is left where none may be.

* GENERIC: the same rules for ingest, combine, train, predict, motifs and simulate (an output
  that is an input, --force on a foreign folder or another kind of output, a locked output, ...).
* SPECIFIC: damaged data and meaningless settings, per command.
* Subprocess cases (they need a real process): a full disk (RLIMIT_FSIZE, SIGXFSZ ignored so the
  write fails with EFBIG), kill -9 before, during and after the publish followed by the plain
  retry, and two concurrent runs into one output. Each group starts its processes together.

Most cases run in-process through click's runner; docs/reliability.md lists every case.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from support.files import dead_pid, write_airr, write_table
from repclass.cli import main
from repclass.files import FAULT_VARIABLE, lock_path, output_lock
from repclass.io.ingestion import ingest
from repclass.io.store import Store

SMALL_TRAIN = ["--updates", "2", "--eval-every", "1", "--sequences-per-bag", "32", "--kernels", "4",
               "--attention-units", "4", "--device", "cpu", "--threads", "1"]
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- helpers -------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (lock files excluded: they come and go by design)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def run_cli(args: list[object], cwd: Path) -> tuple[int, str, BaseException | None]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)
    return result.exit_code, result.output, result.exception


def assert_refused(code: int, output: str, exception: BaseException | None, expected_code: int,
                   fragments: list[str]) -> str:
    """Exit code as expected, exactly one `Error:` line holding every fragment, no traceback."""
    assert code == expected_code, output
    assert isinstance(exception, SystemExit), f"{exception!r}\n{output}"
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "\x1b" not in output
    return lines[0]


def assert_unchanged(before: dict[str, str], root: Path) -> None:
    after = snapshot(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"inputs changed or removed: {changed}"


def leftovers(root: Path) -> list[str]:
    """Temporaries, replaced outputs and locks anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".lock"))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def make_store(root: Path, labels: dict[str, list[str]], name: str = "S", gene: str = "TRBV5-1*01",
               locus: str = "TRB") -> Path:
    """A store of len(labels[...]) small repertoires with the given label columns."""
    rng = np.random.default_rng(0)
    n = len(next(iter(labels.values())))
    reps = root / f"{name}_reps"
    reps.mkdir()
    for i in range(n):
        rows = [[f"r{j}", "CAS" + "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 6)) + "F", gene,
                 gene.replace("V5-1", "J2-7").replace("V3-23", "J4"), int(rng.integers(1, 5)), "T", locus]
                for j in range(20)]
        write_airr(reps / f"s{i}.tsv", rows)
    columns = list(labels)
    write_table(root / f"{name}.tsv", ["sample_id", *columns],
                [[f"s{i}", *[labels[c][i] for c in columns]] for i in range(n)])
    ingest(root / f"{name}.tsv", root / name, [reps])
    shutil.rmtree(reps)
    (root / f"{name}.tsv").unlink()
    return root / name


def _raw_cohort(root: Path) -> None:
    reps = root / "reps"
    reps.mkdir()
    write_airr(reps / "s1.tsv", [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 3, "T", "TRB"],
                                 ["b", "CASSPGTGELFF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"]])
    write_airr(reps / "s2.tsv", [["a", "CSARDRTGNGYTF", "TRBV20-1*01", "TRBJ1-2*01", 5, "T", "TRB"]])
    write_table(root / "s.tsv", ["sample_id", "status"], [["s1", "+"], ["s2", "-"]])


STATUS = ["+", "-"] * 6


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """reps/ + s.tsv (raw), S (12 repertoires, several label columns), s1.store + s2.store (one
    sample each), M (a model trained for 2 updates on S)."""
    from repclass.config import ModelConfig, TrainConfig
    from repclass.training.loop import train

    root = tmp_path_factory.mktemp("reliability_world")
    _raw_cohort(root)
    make_store(root, {"status": STATUS, "age": [str(20 + i) for i in range(12)], "one": ["+"] * 12,
                      "empty": ["NA"] * 12, "age_once": ["40"] + ["NA"] * 11,
                      "age_twice": ["40", "50"] + ["NA"] * 10})
    for sample in ("s1", "s2"):
        ingest(root / "s.tsv", root / f"{sample}.store", [root / "reps"], samples=[sample])
    train(root / "S", root / "M", targets=["status"], config=TrainConfig(max_updates=2, eval_every=1,
                                                                          sequences_per_bag=32, seed=0),
          model_config=ModelConfig(n_kernels=4, attention_units=4), device="cpu")
    return root


def _copy_world(world: Path, root: Path) -> None:
    for item in world.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, root / item.name)


# ---- the commands ------------------------------------------------------------------------------
def _existing_store(root: Path, out: Path) -> None:
    shutil.copytree(root / "s1.store", out)


def _existing_model(root: Path, out: Path) -> None:
    shutil.copytree(root / "M", out)


def _existing_table(root: Path, out: Path) -> None:
    out.write_text("sample_id\tstatus:probability\nold\t0.5\n")


def _existing_motifs(root: Path, out: Path) -> None:
    out.mkdir()
    (out / "motifs.json").write_text("{}\n")


def _existing_simulation(root: Path, out: Path) -> None:
    out.mkdir()
    (out / "simulation.json").write_text("{}\n")
    (out / "samples.tsv").write_text("sample_id\tstatus\n")


def _store_made(out: Path) -> None:
    Store.open(out).verify()


def _model_made(out: Path) -> None:
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()


def _predictions_made(out: Path) -> None:
    assert out.read_text().startswith("sample_id\t")
    assert json.loads((out.parent / f"{out.stem}.metrics.json").read_text())


def _motifs_made(out: Path) -> None:
    assert json.loads((out / "motifs.json").read_text())["motifs"] is not None
    assert (out / "report.html").is_file()


def _simulation_made(out: Path) -> None:
    assert pl.read_csv(out / "samples.tsv", separator="\t").height == 4
    assert len(list((out / "repertoires").glob("*.tsv.gz"))) == 4


@dataclass
class Command:
    name: str
    args: Callable[[str], list[str]]   # the command line for an output path
    out: str                            # the default output
    input: str                          # one of its inputs
    inside: str                         # a path inside one of its inputs
    same_kind: Callable[[Path, Path], None]   # makes an existing output of the kind it writes
    other_kind: Callable[[Path, Path], None]  # ... and one of another kind
    made: Callable[[Path], None]        # checks a finished output
    extra_outputs: tuple[str, ...] = ()   # other files it writes next to `out`


COMMANDS = {c.name: c for c in [
    Command("ingest", lambda out: ["ingest", "s.tsv", "reps", "--out", out], "cohort.store", "reps",
            "reps/x.store", _existing_store, _existing_model, _store_made),
    Command("combine", lambda out: ["combine", "s1.store", "s2.store", "--out", out], "all.store", "s1.store",
            "s1.store/x", _existing_store, _existing_model, _store_made),
    Command("train", lambda out: ["train", "S", "-t", "status", "--out", out, *SMALL_TRAIN], "T", "S", "S/x",
            _existing_model, _existing_store, _model_made),
    Command("predict", lambda out: ["predict", "M", "S", "--out", out, "--device", "cpu", "--threads", "1"],
            "p.tsv", "S", "M/p.tsv", _existing_table, _existing_store, _predictions_made,
            extra_outputs=("p.metrics.json",)),
    Command("motifs", lambda out: ["motifs", "M", "S", "--out", out, "--device", "cpu", "--include-training",
                                   "--top-sequences", "5", "--motifs", "1", "--ig-steps", "2", "--threads", "1"],
            "mo", "S", "M/mo", _existing_motifs, _existing_store, _motifs_made),
    Command("simulate", lambda out: ["simulate", "--out", out, "--background", "S", "--repertoires", "4",
                                     "--sequences", "30", "--threads", "1"],
            "sim", "S", "S/sim", _existing_simulation, _existing_model, _simulation_made),
]}


def _notes(root: Path, out: Path) -> None:
    if out.suffix == ".tsv":
        out.write_text("my own notes\n")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("precious\n")


def _stale_leftovers(root: Path, out: Path) -> None:
    pid = dead_pid()
    (root / f".{out.name}.tmp-{pid}" / "repertoires").mkdir(parents=True)
    (root / f".{out.name}.old-{pid}").write_text("half\n")
    lock_path(out).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def _afile(root: Path, out: Path) -> None:
    (root / "afile").write_text("not a folder\n")


# (case, setup(root, out), output (None: the command's own; a callable: of the command), extra
#  arguments, exit code, message fragments). Every file existing before must be unchanged unless
#  the case succeeds by replacing the output (force_replaces_the_same_kind).
GENERIC = [
    ("out_is_an_input_even_with_force", None, lambda c: c.input, ["--force"], 2, ["also an input"]),
    ("out_inside_an_input", None, lambda c: c.inside, [], 2, ["lies inside the input"]),
    ("force_never_replaces_a_foreign_folder_or_file", _notes, None, ["--force"], 2, ["--force only replaces"]),
    ("force_never_replaces_another_kind", "other_kind", None, ["--force"], 2, ["--force only replaces"]),
    ("existing_output_needs_force", "same_kind", None, [], 1, ["exists already", "--force"]),
    ("output_parent_is_a_file", _afile, lambda c: f"afile/{c.out}", [], 1, ["afile"]),
    ("locked_output_refused", "lock", None, [], 1, ["is writing this output right now"]),
    ("force_replaces_the_same_kind_and_dead_runs_leftovers_go", "same_kind", None, ["--force"], 0, []),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case, setup, output, extra, code, fragments", GENERIC, ids=[c[0] for c in GENERIC])
def test_every_command_follows_the_output_rules(command, case, setup, output, extra, code, fragments, world,
                                                tmp_path):
    spec = COMMANDS[command]
    _copy_world(world, tmp_path)
    out_name = output(spec) if output else spec.out
    out = tmp_path / out_name
    if callable(setup):
        setup(tmp_path, out)
    elif setup in ("same_kind", "other_kind"):
        getattr(spec, setup)(tmp_path, out)
    if code == 0:  # a run killed earlier left a lock, a temporary and a replaced output
        _stale_leftovers(tmp_path, out)
    before = snapshot(tmp_path)
    args = [*spec.args(out_name), *extra]
    if setup == "lock":
        with output_lock(out):  # held by this (live) process
            result = run_cli(args, tmp_path)
        assert not lock_path(out).exists()
    else:
        result = run_cli(args, tmp_path)
    if code == 0:
        assert result[0] == 0, result[1]
        spec.made(out)
        # the replaced output and the dead run's leftovers are gone; every other file is unchanged
        before = {k: v for k, v in before.items() if not k.startswith(out_name) and ".tmp-" not in k
                  and ".old-" not in k}
    else:
        line = assert_refused(*result, code, fragments)
        assert len(line) < 1500
    assert_unchanged(before, tmp_path)
    assert not leftovers(tmp_path)
    if code != 0 and setup is None and out_name != spec.input:
        assert not os.path.lexists(out)
    assert not (tmp_path / f"{out_name}.partial").exists()


# ---- cases of one command ------------------------------------------------------------------------
AIRR = "sequence_id\tjunction_aa\tv_call\tj_call\tduplicate_count\tproductive\tlocus\n"


def _replace_s1(root: Path, text: bytes) -> None:
    (root / "reps" / "s1.tsv").write_bytes(text)


def _sheet(header: list[str], rows: list[list[object]]) -> Callable[[Path], None]:
    return lambda root: write_table(root / "s.tsv", header, rows)


def _count(value: str) -> Callable[[Path], None]:
    return lambda root: _replace_s1(root, (AIRR + f"a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t{value}\tT\tTRB\n"
                                           f"b\tCASSPGTGELFF\tTRBV5-1*01\tTRBJ2-5*01\t{value}\tT\tTRB\n").encode())


def _long_junction(root: Path) -> None:
    _replace_s1(root, (AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                       f"b\tC{'A' * 70_000}F\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n").encode())


def _latin1(root: Path) -> None:
    _replace_s1(root, (AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                       "b\tCASSPGTGELFF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB (Zürich)\n").encode("latin-1"))


def _utf16_sheet(root: Path) -> None:
    (root / "s.tsv").write_bytes("sample_id\tstatus\ns1\t+\ns2\t-\n".encode("utf-16"))


def _long_id(root: Path) -> None:
    write_table(root / "s.tsv", ["sample_id", "file", "status"], [["x" * 300, "reps/s1.tsv", "+"],
                                                                  ["s2", "reps/s2.tsv", "-"]])


def _truncated_zst(root: Path) -> None:
    import zstandard

    data = zstandard.ZstdCompressor().compress((AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                                                * 2000).encode())
    (root / "reps" / "s1.tsv").unlink()
    (root / "reps" / "s1.tsv.zst").write_bytes(data[: len(data) // 2])


def _truncated_gzip(root: Path) -> None:
    data = gzip.compress((AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n" * 5000).encode())
    (root / "reps" / "s1.tsv").unlink()
    (root / "reps" / "s1.tsv.gz").write_bytes(data[: len(data) // 2])


def _garbage(root: Path) -> None:
    _replace_s1(root, b"\x1b[31mRED\x1b[0m\t\x00\x01\x02" + bytes(range(256)) * 40)


def _huge_header(root: Path) -> None:
    _replace_s1(root, ("\t".join(f"column_{i}" for i in range(100_000)) + "\n1\t2\n").encode())


def _no_samples_tsv(store: str) -> Callable[[Path], None]:
    return lambda root: (root / store / "samples.tsv").unlink()


def _manifest_without_samples(root: Path) -> None:
    path = root / "s2.store" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["samples"]
    path.write_text(json.dumps(manifest))


def _flipped_parquet(store: str) -> Callable[[Path], None]:
    return lambda root: _flip_byte(sorted((root / store / "repertoires").glob("*.parquet"))[0])


def _zero_row_parquet(root: Path) -> None:
    path = sorted((root / "S" / "repertoires").glob("*.parquet"))[0]
    pl.read_parquet(path).head(0).write_parquet(path)


def _truncated_checkpoint(root: Path) -> None:
    (root / "T.partial").mkdir()
    (root / "T.partial" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")


def _foreign_checkpoint(root: Path) -> None:
    import torch

    (root / "T.partial").mkdir()
    torch.save({"weights": torch.zeros(3)}, root / "T.partial" / "checkpoint.pt")


def _rewrite_weights(root: Path, change) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = root / "M" / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


def _poison(position: int, value: float) -> Callable[[Path], None]:
    def poison(tensors):
        tensors[sorted(tensors)[position]].view(-1)[0] = value
    return lambda root: _rewrite_weights(root, poison)


def _model_json_edited(root: Path) -> None:
    path = root / "M" / "model.json"
    data = json.loads(path.read_text())
    data["junction_convention"] = "cdr3"
    path.write_text(json.dumps(data))


def _truncated_model(root: Path) -> None:
    path = root / "M" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def _igh_store(root: Path) -> None:
    make_store(root, {"status": ["+", "-", "+"]}, name="IGH.store", gene="IGHV3-23*01", locus="IGH")


def _metrics_exists(root: Path) -> None:
    (root / "p.metrics.json").write_text('{"mine": 1}\n')


def _raw_file(root: Path) -> None:
    (root / "x.tsv").write_text("junction_aa\nCASSLGQETQYF\n")


INGEST = ["ingest", "s.tsv", "reps", "--out", "cohort.store"]
TRAIN = ["train", "S", "--target", "status", "--out", "T", *SMALL_TRAIN]
PREDICT = ["predict", "M", "S", "--out", "p.tsv", "--device", "cpu", "--threads", "1"]
MOTIFS = ["motifs", "M", "S", "--out", "mo", "--device", "cpu", "--include-training", "--ig-steps", "2"]
# (case, setup, command line, exit code, message fragments)
SPECIFIC = [
    # ingest: values a store cannot hold, damaged raw files
    ("ingest_out_equal_to_sheet", None, ["ingest", "s.tsv", "reps", "--out", "s.tsv", "--force"], 2,
     ["also an input"]),
    ("ingest_out_containing_inputs", None, ["ingest", "s.tsv", "reps", "--out", ".", "--force"], 2,
     ["contains the input"]),
    ("ingest_sheet_is_a_folder", None, ["ingest", "reps", "reps", "--out", "cohort.store"], 1, ["is a folder"]),
    ("ingest_missing_sheet", None, ["ingest", "nope.tsv", "reps", "--out", "cohort.store"], 1,
     ["no such sample sheet"]),
    ("ingest_id_with_quote", _sheet(["sample_id", "status"], [['s1"', "+"], ["s2", "-"]]), INGEST, 1,
     ["line 2", "quote"]),
    ("ingest_label_with_control_character", _sheet(["sample_id", "status"], [["s1", "+\x1b[31m"], ["s2", "-"]]),
     INGEST, 1, ["line 2", "control character"]),
    ("ingest_reserved_column_n_sequences", _sheet(["sample_id", "status", "n_sequences"], [["s1", "+", 4],
                                                                                         ["s2", "-", 5]]),
     INGEST, 1, ["line 1", "'n_sequences'", "the store writes itself"]),
    ("ingest_reserved_column_dropped_zero_count", _sheet(["sample_id", "dropped_zero_count", "status"],
                                                         [["s1", 1, "+"], ["s2", 2, "-"]]),
     INGEST, 1, ["'dropped_zero_count'"]),
    ("ingest_reserved_column_source_file", _sheet(["sample_id", "source_file"], [["s1", "a"], ["s2", "b"]]),
     INGEST, 1, ["'source_file'"]),
    ("ingest_repeated_column", _sheet(["sample_id", "status", "status"], [["s1", "+", "-"], ["s2", "-", "+"]]),
     INGEST, 1, ["'status' appears more than once"]),
    ("ingest_utf16_sheet", _utf16_sheet, INGEST, 1, ["UTF-16", "UTF-8"]),
    ("ingest_300_character_id", _long_id, ["ingest", "s.tsv", "--out", "cohort.store"], 1,
     ["(300 characters)", "200 bytes"]),
    ("ingest_junction_longer_than_65535", _long_junction, INGEST, 1, ["s1.tsv, line 3", "65535"]),
    ("ingest_nan_count", _count("NaN"), INGEST, 1, ["line 2", "'NaN'", "is not a number"]),
    ("ingest_count_1e23", _count("1e23"), INGEST, 1, ["line 2", "larger than any clone"]),
    ("ingest_count_int64_max", _count(str(2**63 - 1)), INGEST, 1, ["larger than any clone"]),
    ("ingest_negative_count", _count("-4"), INGEST, 1, ["is negative"]),
    ("ingest_latin1_file", _latin1, INGEST, 1, ["s1.tsv, line 3", "not UTF-8"]),
    ("ingest_truncated_zst", _truncated_zst, INGEST, 1, ["truncated"]),
    ("ingest_truncated_gzip", _truncated_gzip, INGEST, 1, ["truncated"]),
    ("ingest_binary_garbage_not_echoed", _garbage, INGEST, 1, ["s1.tsv"]),
    ("ingest_huge_header_not_echoed", _huge_header, INGEST, 1, ["no junction column", "characters)"]),
    ("ingest_numeric_junction_column", None, [*INGEST, "--junction-column", "duplicate_count"], 1,
     ["no sequences left"]),
    # combine: damaged parts
    ("combine_part_without_samples_tsv", _no_samples_tsv("s2.store"),
     ["combine", "s1.store", "s2.store", "--out", "all.store"], 1, ["samples.tsv", "missing"]),
    ("combine_part_manifest_without_samples", _manifest_without_samples,
     ["combine", "s1.store", "s2.store", "--out", "all.store"], 1, ["list of samples is missing"]),
    ("combine_flipped_bit_in_a_part", _flipped_parquet("s2.store"),
     ["combine", "s1.store", "s2.store", "--out", "all.store"], 1, ["checksum differs"]),
    ("combine_missing_part", None, ["combine", "s1.store", "nope.store", "--out", "all.store"], 1,
     ["no such store"]),
    # train: meaningless settings and labels, damaged stores and checkpoints
    ("train_negative_lr", None, [*TRAIN, "--lr", "-1"], 2, ["--lr must be a positive number"]),
    ("train_nan_lr", None, [*TRAIN, "--lr", "nan"], 2, ["--lr"]),
    ("train_negative_weight_decay", None, [*TRAIN, "--weight-decay", "-1"], 2, ["--weight-decay"]),
    ("train_zero_chunk_size", None, [*TRAIN, "--chunk-size", "0"], 2, ["--chunk-size"]),
    ("train_nan_loss_weight", None, [*TRAIN, "--loss-weight", "status=nan"], 2, ["--loss-weight"]),
    ("train_more_folds_than_repertoires", None, [*TRAIN, "--folds", "20"], 2, ["--folds 20", "there are 12"]),
    ("train_regression_on_one_repertoire", None, ["train", "S", "-t", "age_once", "--out", "T", *SMALL_TRAIN], 1,
     ["age_once = '40'"]),
    ("train_regression_on_two_repertoires", None, ["train", "S", "-t", "age_twice", "--type",
                                                   "age_twice=regression", "--out", "T", *SMALL_TRAIN], 2,
     ["2 labelled repertoire(s)"]),
    ("train_one_class_target", None, ["train", "S", "-t", "one", "--out", "T", *SMALL_TRAIN], 1,
     ["at least two different labels"]),
    ("train_empty_target", None, ["train", "S", "-t", "empty", "--out", "T", *SMALL_TRAIN], 1,
     ["no label for any repertoire"]),
    ("train_resume_with_truncated_checkpoint", _truncated_checkpoint, [*TRAIN, "--resume"], 1,
     ["cannot be read", "without --resume"]),
    ("train_resume_with_foreign_checkpoint", _foreign_checkpoint, [*TRAIN, "--resume"], 1,
     ["not a repclass training checkpoint"]),
    ("train_flipped_bit_no_partial_folder", _flipped_parquet("S"), TRAIN, 1, ["checksum differs"]),
    ("train_zero_row_parquet_no_partial_folder", _zero_row_parquet, TRAIN, 1, ["checksum differs"]),
    ("train_store_without_samples_tsv", _no_samples_tsv("S"), TRAIN, 1, ["samples.tsv", "missing"]),
    # predict and motifs: outputs that are inputs or each other, damaged models, another locus
    ("predict_out_equal_to_model_file", None, ["predict", "M", "S", "--out", "M/model.safetensors", "--force"], 2,
     ["also an input"]),
    ("predict_attention_out_equal_to_out", None, [*PREDICT, "--attention", "5", "--attention-out", "p.tsv"], 2,
     ["same file"]),
    ("predict_existing_metrics_json_needs_force", _metrics_exists, PREDICT, 1, ["p.metrics.json",
                                                                               "exists already"]),
    ("predict_store_next_to_raw_file", _raw_file, ["predict", "M", "S", "x.tsv", "--out", "p.tsv"], 2,
     ["a store, given together with other inputs"]),
    ("predict_zero_chunk_size", None, [*PREDICT, "--chunk-size", "0"], 2, ["--chunk-size"]),
    ("predict_nan_weight_names_the_tensor", _poison(0, float("nan")), PREDICT, 1, ["NaN or infinite",
                                                                                  "attention"]),
    ("predict_inf_weight", _poison(-1, float("inf")), PREDICT, 1, ["NaN or infinite"]),
    ("predict_model_json_checked_against_model_file", _model_json_edited, PREDICT, 1,
     ["model.json", "does not describe"]),
    ("predict_truncated_model_file", _truncated_model, PREDICT, 1, ["model.safetensors"]),
    ("predict_flipped_bit_in_store", _flipped_parquet("S"), PREDICT, 1, ["checksum differs"]),
    ("predict_other_locus_refused", _igh_store, ["predict", "M", "IGH.store", "--out", "p.tsv", "--device", "cpu"],
     1, ["IGH", "TRB", "--allow-other-locus"]),
    ("motifs_other_locus_refused", _igh_store, ["motifs", "M", "IGH.store", "--out", "mo", "--device", "cpu"], 1,
     ["IGH", "TRB", "--allow-other-locus"]),
    ("motifs_zero_ig_steps", None, [*MOTIFS, "--ig-steps", "0"], 2, ["--ig-steps"]),
    # simulate
    ("simulate_repertoires_with_keep_repertoires", None, ["simulate", "--out", "sim", "--background", "S",
                                                          "--keep-repertoires", "--repertoires", "3"], 2,
     ["--repertoires cannot be used with --keep-repertoires"]),
]


@pytest.mark.parametrize("case, setup, args, code, fragments", SPECIFIC, ids=[c[0] for c in SPECIFIC])
def test_one_command_refuses(case, setup, args, code, fragments, world, tmp_path):
    _copy_world(world, tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    outputs = [n for n in ("cohort.store", "all.store", "T", "p.tsv", "p.metrics.json", "mo", "sim")
               if not (tmp_path / n).exists()]
    line = assert_refused(*run_cli(args, tmp_path), code, fragments)
    assert len(line) < 1500
    assert_unchanged(before, tmp_path)
    assert not [n for n in outputs if (tmp_path / n).exists()]
    if "resume" not in case:  # refused before its first update: no OUT.partial/ and no word of --resume
        assert not (tmp_path / "T.partial").exists()
        assert "--resume" not in line
    assert not leftovers(tmp_path)


def test_other_locus_is_scored_with_allow_other_locus(world, tmp_path):
    _copy_world(world, tmp_path)
    _igh_store(tmp_path)
    code, output, _ = run_cli(["predict", "M", "IGH.store", "--out", "p.tsv", "--device", "cpu",
                               "--allow-other-locus"], tmp_path)
    assert code == 0, output
    assert "--allow-other-locus" in output and (tmp_path / "p.tsv").is_file()
    assert json.loads((tmp_path / "M" / "model.json").read_text())["locus"] == "TRB"


def test_a_model_file_without_a_locus_still_loads(world, tmp_path):
    """Model files written before the locus was recorded: predicted as before, not checked."""
    from repclass.model.checkpoint import ModelInfo

    data = json.loads((world / "M" / "model.json").read_text())
    data.pop("locus"), data.pop("species")
    info = ModelInfo.from_dict(data, world / "M" / "model.json")
    assert info.locus is None and info.junction_convention == "junction"


def test_threads_are_capped_at_the_cpus_available(world, tmp_path):
    from repclass.compute.cpus import available_cpus

    _copy_world(world, tmp_path)
    code, output, _ = run_cli(["ingest", "s.tsv", "reps", "--out", "c.store", "--threads", "10000"], tmp_path)
    assert code == 0, output
    assert f"--threads 10000 is more than the {available_cpus()} CPU(s)" in output
    assert os.environ["POLARS_MAX_THREADS"] == str(available_cpus())


def test_matplotlib_never_writes_into_an_unwritable_home(tmp_path, monkeypatch):
    from repclass import plot

    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    plot.matplotlib_config()
    assert Path(os.environ["MPLCONFIGDIR"]).is_dir()
    assert not str(os.environ["MPLCONFIGDIR"]).startswith(str(home))
    home.chmod(0o755)
    shutil.rmtree(os.environ["MPLCONFIGDIR"])


# ---- cases that need real processes ------------------------------------------------------------
def _spawn(args: list[str], cwd: Path, env: dict | None = None, fsize: int | None = None) -> subprocess.Popen:
    def limit() -> None:  # in the child: a write past `fsize` bytes fails with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.Popen([sys.executable, "-m", "repclass", *args], cwd=cwd, env={**SUBPROCESS_ENV, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if fsize else None)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _outputs(spec: Command, root: Path) -> list[Path]:
    return [root / spec.out, *[root / name for name in spec.extra_outputs]]


# motifs left out for time (it computes for seconds before its first write); its writes go
# through the same files.Outputs
FULL_DISK = ["ingest", "combine", "train", "predict", "simulate"]


def test_full_disk_is_one_line_and_leaves_nothing(world, tmp_path):
    """Each command under a 200-byte file size limit: exit 1, one line naming the output and the
    cause, inputs unchanged, no output, temporary, partial folder or lock left."""
    runs = {}
    for name in FULL_DISK:
        spec = COMMANDS[name]
        root = tmp_path / name
        root.mkdir()
        _copy_world(world, root)
        runs[name] = (root, snapshot(root), _spawn(spec.args(spec.out), root, fsize=200))
    for name, (root, before, process) in runs.items():
        code, err = _finish(process)
        spec = COMMANDS[name]
        assert code == 1, f"{name}: {err[-3000:]}"
        assert "Traceback" not in err, f"{name}: {err[-3000:]}"
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and spec.out in errors[0] and "disk is full" in errors[0], f"{name}: {err}"
        assert_unchanged(before, root)
        assert not any(p.exists() for p in _outputs(spec, root)), name
        assert not (root / f"{spec.out}.partial").exists(), name
        assert not leftovers(root), name


# kill -9 before, during (between the renames of predict's two outputs) and after the publish
KILLS = [("predict", "during-publish"), ("predict", "after-publish"), ("simulate", "before-publish"),
         ("ingest", "during-publish"), ("train", "during-publish")]


def test_kill_9_then_the_plain_retry_succeeds(world, tmp_path):
    """kill -9 (REPCLASS_FAULT) before, during (after the first of several renames) and after the
    publish; the plain retry of the same command (no --force) succeeds and leaves the complete set
    of outputs and nothing else: a run killed before it released its lock is rolled back."""
    runs = []
    for name, point in KILLS:
        spec = COMMANDS[name]
        root = tmp_path / f"{name}-{point}"
        root.mkdir()
        _copy_world(world, root)
        runs.append((name, point, root, snapshot(root), _spawn(spec.args(spec.out), root,
                                                               env={FAULT_VARIABLE: point})))
    for name, point, root, before, process in runs:
        code, err = _finish(process)
        spec = COMMANDS[name]
        assert code == -signal.SIGKILL, f"{name} {point}: exit {code}\n{err[-2000:]}"
        code, output, _ = run_cli(spec.args(spec.out), root)
        assert code == 0, f"{name} after a kill {point}: {output[-3000:]}"
        spec.made(root / spec.out)
        assert_unchanged(before, root)
        assert not leftovers(root), f"{name} {point}: {leftovers(root)}"
        assert not (root / f"{spec.out}.partial").exists()


def test_two_concurrent_runs_into_one_output_exactly_one_wins(world, tmp_path):
    """Two runs of each command to one output: one exits 0, the other 1 (locked, or exists already
    when the first had finished), and the output is the complete work of one. ingest, combine
    and simulate: two processes started together (a race for the lock); train and predict
    (slower to start): a second run, in this process, while the first one writes. (motifs, for
    time: its lock is the same files.Outputs, held by a live process in GENERIC's
    locked_output_refused.)"""
    import time

    runs = {}
    for name, spec in COMMANDS.items():
        if name == "motifs":
            continue
        root = tmp_path / name
        root.mkdir()
        _copy_world(world, root)
        pair = 2 if name in ("ingest", "combine", "simulate") else 1
        runs[name] = (root, snapshot(root), [_spawn(spec.args(spec.out), root) for _ in range(pair)])
    for name, (root, before, processes) in runs.items():
        spec = COMMANDS[name]
        if len(processes) == 1:
            lock = lock_path(root / spec.out)
            while processes[0].poll() is None and not lock.exists():
                time.sleep(0.02)
            code, output, _ = run_cli(spec.args(spec.out), root)
            results = [_finish(processes[0]), (code, output)]
        else:
            results = [_finish(p) for p in processes]
        assert sorted(code for code, _ in results) == [0, 1], f"{name}: {results}"
        loser = next(err for code, err in results if code == 1)
        assert "Traceback" not in loser
        assert "writing this output right now" in loser or "exists already" in loser, f"{name}: {loser}"
        assert f"{spec.out}.partial" not in loser  # never told to remove the winner's partial folder
        spec.made(root / spec.out)
        assert_unchanged(before, root)
        assert not leftovers(root), name


def test_ingest_retry_after_a_kill_while_writing(world, tmp_path):
    """A killed ingest leaves a lock and a half temporary store of a dead process: the plain retry
    removes both and writes the store."""
    _copy_world(world, tmp_path)
    _stale_leftovers(tmp_path, tmp_path / "cohort.store")
    code, output, _ = run_cli(INGEST, tmp_path)
    assert code == 0, output
    assert Store.open(tmp_path / "cohort.store").sample_ids == ["s1", "s2"]
    assert not leftovers(tmp_path)


def test_finished_training_never_aborts_at_exit(world, tmp_path):
    """Short trainings that stop early, each in its own interpreter, all exit 0.

    A prefetch thread still inside numpy/torch at interpreter shutdown used to abort a finished
    run ("terminate called without an active exception", SIGABRT)."""
    _copy_world(world, tmp_path)
    runs = [_spawn(["train", "S", "--target", "status", "--out", f"M{run}", "--updates", "100", "--eval-every",
                    "1", "--patience", "1", "--batch-size", "2", "--sequences-per-bag", "16", "--kernels", "4",
                    "--attention-units", "4", "--device", "cpu", "--threads", "1", "--seed", str(run)], tmp_path)
            for run in range(2)]
    for run, process in enumerate(runs):
        code, err = _finish(process)
        assert code == 0, f"run {run}: exit {code}\n{err[-2000:]}"
        assert "stopping early" in err
        assert (tmp_path / f"M{run}" / "model.safetensors").is_file()


def test_prefetch_thread_is_joined_when_the_consumer_stops_early():
    """The consumer leaving after one item stops the producer between items and joins it."""
    import threading
    import time

    from repclass.training.batching import prefetch, stop_prefetchers

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
