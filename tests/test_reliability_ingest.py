"""Issue 11, `repclass ingest`: nothing is ever lost, every failure is one line.

Each case builds its inputs in a fresh folder, runs the command line through click's runner and
checks the exit code, the one `Error:` line and that every file that existed before is
byte-for-byte unchanged afterwards (sha256). The helpers here are shared by the other
test_reliability_* modules.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from conftest import write_airr, write_table
from repclass.cli import main
from repclass.files import lock_path, output_lock
from repclass.store import Store


# ---- helpers shared by the reliability modules ---------------------------------------------------
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


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---- the cohort every case starts from -----------------------------------------------------------
def _cohort(root: Path) -> None:
    reps = root / "reps"
    reps.mkdir()
    write_airr(reps / "s1.tsv", [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 3, "T", "TRB"]])
    write_airr(reps / "s2.tsv", [["a", "CSARDRTGNGYTF", "TRBV20-1*01", "TRBJ1-2*01", 5, "T", "TRB"]])
    write_table(root / "s.tsv", ["sample_id", "status"], [["s1", "+"], ["s2", "-"]])


def _replace_s1(root: Path, text: bytes) -> None:
    (root / "reps" / "s1.tsv").write_bytes(text)


AIRR = "sequence_id\tjunction_aa\tv_call\tj_call\tduplicate_count\tproductive\tlocus\n"


def _setup_existing_folder(root: Path) -> None:
    (root / "results").mkdir()
    (root / "results" / "notes.txt").write_text("precious\n")


def _setup_parent_is_file(root: Path) -> None:
    (root / "afile").write_text("not a folder\n")


def _setup_sheet(rows: list[list[object]]) -> Callable[[Path], None]:
    return lambda root: write_table(root / "s.tsv", ["sample_id", "status"], rows)


def _setup_count(value: str) -> Callable[[Path], None]:
    return lambda root: _replace_s1(root, (AIRR + f"a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t{value}\tT\tTRB\n"
                                           f"b\tCASSPGTGELFF\tTRBV5-1*01\tTRBJ2-5*01\t{value}\tT\tTRB\n").encode())


def _setup_long_junction(root: Path) -> None:
    _replace_s1(root, (AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                       f"b\tC{'A' * 70_000}F\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n").encode())


def _setup_latin1(root: Path) -> None:
    _replace_s1(root, (AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                       "b\tCASSPGTGELFF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB (Zürich)\n").encode("latin-1"))


def _setup_truncated_zst(root: Path) -> None:
    import zstandard

    data = zstandard.ZstdCompressor().compress((AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n"
                                                * 2000).encode())
    (root / "reps" / "s1.tsv").unlink()
    (root / "reps" / "s1.tsv.zst").write_bytes(data[: len(data) // 2])


def _setup_garbage(root: Path) -> None:
    _replace_s1(root, b"\x1b[31mRED\x1b[0m\t\x00\x01\x02" + bytes(range(256)) * 40)


def _setup_huge_header(root: Path) -> None:
    _replace_s1(root, ("\t".join(f"column_{i}" for i in range(100_000)) + "\n1\t2\n").encode())


def _setup_truncated_gzip(root: Path) -> None:
    data = gzip.compress((AIRR + "a\tCASSLGQETQYF\tTRBV5-1*01\tTRBJ2-5*01\t1\tT\tTRB\n" * 5000).encode())
    (root / "reps" / "s1.tsv").unlink()
    (root / "reps" / "s1.tsv.gz").write_bytes(data[: len(data) // 2])


def _setup_stale_leftovers(root: Path) -> None:
    pid = dead_pid()
    (root / f".cohort.store.tmp-{pid}" / "repertoires").mkdir(parents=True)
    lock_path(root / "cohort.store").write_text(f'{{"pid": {pid}, "host": "{os.uname().nodename}"}}')


# (case, setup, extra arguments (default: sheet, reps, --out cohort.store), exit code, message fragments)
REFUSED = [
    ("out_equal_to_input_folder_keeps_raw_files", None, ["s.tsv", "reps", "--out", "reps", "--force"], 2,
     ["is also an input"]),
    ("out_equal_to_sheet_keeps_sheet", None, ["s.tsv", "reps", "--out", "s.tsv", "--force"], 2, ["also an input"]),
    ("out_equal_to_raw_file_keeps_it", None, ["s.tsv", "reps/s1.tsv", "reps/s2.tsv", "--out", "reps/s1.tsv",
                                              "--force"], 2, ["input"]),
    ("out_inside_input_folder_refused", None, ["s.tsv", "reps", "--out", "reps/cohort.store"], 2,
     ["lies inside the input"]),
    ("out_containing_inputs_refused", None, ["s.tsv", "reps", "--out", ".", "--force"], 2, ["contains the input"]),
    ("force_replaces_only_a_store", _setup_existing_folder, ["s.tsv", "reps", "--out", "results", "--force"], 2,
     ["--force only replaces a repertoire store"]),
    ("existing_output_needs_force", _setup_existing_folder, ["s.tsv", "reps", "--out", "results"], 1,
     ["exists already", "--force"]),
    ("output_parent_is_a_file", _setup_parent_is_file, ["s.tsv", "reps", "--out", "afile/cohort.store"], 1,
     ["afile"]),
    ("sheet_is_a_folder", None, ["reps", "reps", "--out", "cohort.store"], 1, ["is a folder"]),
    ("missing_sheet", None, ["nope.tsv", "reps", "--out", "cohort.store"], 1, ["no such sample sheet"]),
    ("id_with_quote_refused", _setup_sheet([['s1"', "+"], ["s2", "-"]]), None, 1, ["line 2", "quote"]),
    ("label_with_control_character_refused", _setup_sheet([["s1", "+\x1b[31m"], ["s2", "-"]]), None, 1,
     ["line 2", "control character"]),
    ("junction_longer_than_65535_refused", _setup_long_junction, None, 1, ["s1.tsv, line 3", "65535"]),
    ("nan_count_refused", _setup_count("NaN"), None, 1, ["line 2", "'NaN'", "is not a number"]),
    ("count_1e23_refused", _setup_count("1e23"), None, 1, ["line 2", "larger than any clone"]),
    ("count_int64_max_cannot_wrap_templates", _setup_count(str(2**63 - 1)), None, 1, ["larger than any clone"]),
    ("negative_count_refused", _setup_count("-4"), None, 1, ["is negative"]),
    ("latin1_names_line_and_encoding", _setup_latin1, None, 1, ["s1.tsv, line 3", "not UTF-8"]),
    ("truncated_zst_is_not_called_empty", _setup_truncated_zst, None, 1, ["truncated"]),
    ("truncated_gzip_is_called_truncated", _setup_truncated_gzip, None, 1, ["truncated"]),
    ("binary_garbage_is_not_echoed", _setup_garbage, None, 1, ["s1.tsv"]),
    ("huge_header_is_not_echoed", _setup_huge_header, None, 1, ["no junction column", "characters)"]),
    ("numeric_junction_column_is_one_line", None, ["s.tsv", "reps", "--out", "cohort.store", "--junction-column",
                                                   "duplicate_count"], 1, ["no sequences left"]),
]


@pytest.mark.parametrize("case, setup, args, code, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_ingest_refuses(case, setup, args, code, fragments, tmp_path):
    _cohort(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    args = args or ["s.tsv", "reps", "--out", "cohort.store"]
    line = assert_refused(*run_cli(["ingest", *args], tmp_path), code, fragments)
    assert len(line) < 1500
    assert_unchanged(before, tmp_path)
    if case != "existing_output_needs_force" and "results" not in args:
        assert not (tmp_path / "cohort.store").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock")]


def test_ingest_cleans_leftovers_of_dead_runs(tmp_path, caplog):
    _cohort(tmp_path)
    _setup_stale_leftovers(tmp_path)
    code, output, _ = run_cli(["ingest", "s.tsv", "reps", "--out", "cohort.store"], tmp_path)
    assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.store", "reps", "s.tsv"]
    assert Store.open(tmp_path / "cohort.store").sample_ids == ["s1", "s2"]


def test_ingest_refuses_an_output_another_process_is_writing(tmp_path):
    _cohort(tmp_path)
    before = snapshot(tmp_path)
    with output_lock(tmp_path / "cohort.store"):  # held by this (live) process
        result = run_cli(["ingest", "s.tsv", "reps", "--out", "cohort.store"], tmp_path)
    assert_refused(*result, 1, ["is writing this output right now"])
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "cohort.store").exists()
    assert not lock_path(tmp_path / "cohort.store").exists()


def test_force_replaces_a_store_with_a_store(tmp_path):
    _cohort(tmp_path)
    assert run_cli(["ingest", "s.tsv", "reps", "--out", "cohort.store"], tmp_path)[0] == 0
    code, output, _ = run_cli(["ingest", "s.tsv", "reps", "--out", "cohort.store", "--force", "--sample", "s1"],
                              tmp_path)
    assert code == 0, output
    assert Store.open(tmp_path / "cohort.store").sample_ids == ["s1"]


def test_two_concurrent_ingests_to_one_store_exactly_one_wins(tmp_path):
    _cohort(tmp_path)
    for i in range(3, 40):  # enough files that the two runs overlap
        write_airr(tmp_path / "reps" / f"s{i}.tsv", [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", i, "T", "TRB"]])
    write_table(tmp_path / "s.tsv", ["sample_id", "status"], [[f"s{i}", "+-"[i % 2]] for i in range(1, 40)])
    command = [sys.executable, "-m", "repclass", "ingest", "s.tsv", "reps", "--out", "same.store", "--threads", "1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    runs = [subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=environment)
            for _ in range(2)]
    results = [(run.wait(), run.stderr.read()) for run in runs]
    for run in runs:
        run.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "Traceback" not in loser
    assert "writing this output right now" in loser or "exists already" in loser, loser
    store = Store.open(tmp_path / "same.store")
    assert len(store) == 39
    store.verify()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reps", "s.tsv", "same.store"]
