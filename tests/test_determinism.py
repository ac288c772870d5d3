"""Every command behaves as a pipeline step (docs/pipelines.md, PIPELINES.md): the same inputs and
seed give byte-identical outputs (nf-test snapshots md5 sums), exit codes are 0 / 1 (bad data) /
2 (bad usage), nothing prompts, an existing output is refused without --force, logs go to stderr
and stdout stays empty, and `repclass --version` prints the bare version.

The whole job runs twice, in two folders at the same time, each with the same relative paths (as
pipeline tasks do in their work folders); every file each step writes is compared by md5.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from repclass import __version__

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PARTS = ("r01", "r02", "r03")


def repclass(*args: str, cwd: Path | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(BIN / "repclass"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, stdin=stdin, timeout=600)


def md5s(path: Path) -> dict[str, str]:
    """md5 of every file under `path` (every file, hidden ones included), by relative path."""
    if path.is_file():
        return {path.name: hashlib.md5(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def steps(sheet: Path, reps: Path) -> dict[str, tuple[list[str], str]]:
    """step -> (arguments, output path), relative to the run folder; run in this order."""
    compute = ["--threads", "2", "--device", "cpu"]
    return {
        "ingest": (["ingest", sheet, reps, "--out", "cohort.store", "--threads", "2"], "cohort.store"),
        **{f"part {s}": (["ingest", sheet, reps, "--sample", s, "--out", f"parts/{s}.store", "--threads", "2"],
                         f"parts/{s}.store") for s in PARTS},
        "combine": (["combine", *[f"parts/{s}.store" for s in PARTS], "--out", "combined.store"], "combined.store"),
        "subset": (["ingest", sheet, reps, *[a for s in PARTS for a in ("--sample", s)], "--out", "subset.store"],
                   "subset.store"),
        "train": (["train", "cohort.store", "--target", "status", "--out", "model", "--seed", "0", "--updates", "20",
                   "--eval-every", "10", *compute], "model"),
        "predict": (["predict", "model", "cohort.store", "--out", "predictions/predictions.tsv", "--attention", "10",
                     *compute], "predictions"),
        "motifs": (["motifs", "model", "cohort.store", "--out", "motifs", "--seed", "0", "--motifs", "1",
                    "--top-sequences", "50", "--ig-steps", "8", "--sample", "r01", "--sample", "r02", *compute],
                   "motifs"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The whole job in run_a/ and run_b/, concurrently; returns (folders, {step: [result_a, result_b]})."""
    from support.cohort import make_cohort

    base = tmp_path_factory.mktemp("determinism")
    # 10 small repertoires: what is compared is bytes, and every step still has work on both classes
    sheet, reps, _ = make_cohort(base / "cohort", n_repertoires=10, n_sequences=300)
    plan = steps(sheet, reps)
    folders = [base / "run_a", base / "run_b"]

    def run_all(folder: Path) -> dict[str, subprocess.CompletedProcess]:
        folder.mkdir()
        results = {}
        for step, (args, _) in plan.items():
            results[step] = repclass(*args, cwd=folder)
            if results[step].returncode != 0:
                break
        return results

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(run_all, folders))
    results = {step: [d.get(step) for d in done] for step in plan}
    return folders, results, plan


STEPS = ["ingest", *[f"part {s}" for s in PARTS], "combine", "subset", "train", "predict", "motifs"]


@pytest.mark.parametrize("step", STEPS)
def test_outputs_are_byte_identical(runs, step):
    folders, results, plan = runs
    for result in results[step]:
        assert result is not None and result.returncode == 0, result and result.stderr[-4000:]
    output = plan[step][1]
    first, second = (md5s(folder / output) for folder in folders)
    assert first, f"{step} wrote nothing at {output}"
    differing = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
    assert differing == [], f"{step}: these files differ between two identical runs: {differing}"


def test_combine_gives_the_bytes_of_one_ingest(runs):
    folders, results, _ = runs
    assert results["combine"][0].returncode == 0 and results["subset"][0].returncode == 0
    assert md5s(folders[0] / "combined.store") == md5s(folders[0] / "subset.store")


def test_no_temporary_files_left_behind(runs):
    folders, results, _ = runs
    assert all(r is not None and r.returncode == 0 for pair in results.values() for r in pair)
    for folder in folders:
        leftovers = [p for p in folder.rglob("*") if any(t in p.name for t in (".tmp", ".partial", ".old-"))]
        assert leftovers == []


@pytest.mark.parametrize("step", ["ingest", "part r01", "combine", "train", "predict"])
def test_logs_go_to_stderr_and_stdout_stays_empty(runs, step):
    _, results, _ = runs
    result = results[step][0]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
    assert "repclass INFO: wrote " in result.stderr
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr  # no progress bar off a terminal


def test_motifs_prints_only_the_report_path(runs):
    _, results, _ = runs
    result = results["motifs"][0]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "motifs/report.html\n"


def test_version_is_bare():
    result = repclass("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{__version__}\n", "")


# ---- exit codes: 1 bad data, 2 bad usage, never a code that pipelines retry ---------------------
EXIT_CASES = [
    # (exit code, arguments): {store} and {model} are run_a's outputs, {bad_*} broken inputs, {out} a new path
    (1, ["ingest", "{tmp}/no_such_sheet.tsv", "{bad_reps}", "--out", "{out}"]),
    (1, ["ingest", "{bad_sheet}", "{bad_reps}", "--out", "{out}"]),                 # unreadable repertoire
    (1, ["combine", "{bad_folder}", "--out", "{out}"]),                               # not a store
    (1, ["train", "{bad_folder}", "--target", "status", "--out", "{out}"]),
    (1, ["train", "{store}", "--target", "no_such_column", "--out", "{out}"]),
    (1, ["predict", "{bad_file}", "{store}", "--out", "{out}"]),                      # not a model
    (1, ["motifs", "{bad_file}", "{store}", "--out", "{out}"]),
    (2, ["ingest"]),
    (2, ["no-such-command"]),
    (2, ["ingest", "{bad_sheet}", "{bad_reps}", "--out", "{out}", "--threads", "0"]),
    (2, ["train", "{store}", "--out", "{out}"]),                                      # no --target
    (2, ["train", "{store}", "--target", "status", "--out", "{out}", "--fold", "1"]),  # --fold without --folds
    (2, ["predict", "{model}", "{store}", "--out", "{out}", "--no-such-option"]),
    (2, ["predict", "{model}", "{store}", "--out", "{out}", "--device", "tpu"]),
    (2, ["motifs", "{model}", "{store}", "--out", "{out}", "--sample", "no_such_sample"]),
]


#: Cases run as their own process, as a pipeline runs them (the exit code the shell sees); the
#: others run in this process through click's runner (the same main(), without a torch import each).
IN_A_PROCESS = {0, 2, 8, 9}


@pytest.fixture(scope="module")
def exit_results(runs, tmp_path_factory) -> list[tuple[Path, subprocess.CompletedProcess]]:
    """Every case of EXIT_CASES run: those of IN_A_PROCESS as subprocesses, the rest in-process."""
    from click.testing import CliRunner

    from repclass.cli import main

    folders, _, _ = runs
    bad = tmp_path_factory.mktemp("bad")
    (bad / "reps").mkdir()
    (bad / "reps" / "r01.tsv").write_text("foo\tbar\n1\t2\n")
    (bad / "sheet.tsv").write_text("sample_id\tstatus\nr01\t+\n")
    (bad / "not_a_store").mkdir()
    (bad / "not_a_model.safetensors").write_text("hello\n")
    values = {"tmp": bad, "store": folders[0] / "cohort.store", "model": folders[0] / "model",
              "bad_reps": bad / "reps", "bad_sheet": bad / "sheet.tsv", "bad_folder": bad / "not_a_store",
              "bad_file": bad / "not_a_model.safetensors"}

    def run(index: int) -> tuple[Path, subprocess.CompletedProcess]:
        out = bad / f"out_{index}"
        args = [a.format(out=out, **values) for a in EXIT_CASES[index][1]]
        if index in IN_A_PROCESS:
            return out, repclass(*args)
        result = CliRunner().invoke(main, args)
        return out, subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    return [run(index) for index in range(len(EXIT_CASES))]


@pytest.mark.parametrize("index", range(len(EXIT_CASES)),
                         ids=[f"{a[0]}-{code}-{i}" for i, (code, a) in enumerate(EXIT_CASES)])
def test_exit_codes(exit_results, index):
    out, result = exit_results[index]
    assert result.returncode == EXIT_CASES[index][0], result.stderr
    assert result.stdout == ""
    assert "Error" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# ---- an existing output is refused without --force, without asking --------------------------------
REFUSALS = {
    "ingest": ["ingest", "{sheet}", "{reps}", "--out", "{existing}"],
    "combine": ["combine", "{part}", "--out", "{existing}"],
    "train": ["train", "{store}", "--target", "status", "--out", "{existing}", "--updates", "2"],
    "predict": ["predict", "{model}", "{store}", "--out", "{existing}"],
    "motifs": ["motifs", "{model}", "{store}", "--out", "{existing}"],
}


def _refuse(command: str, existing: Path, values: dict[str, Path]) -> tuple[int, str, str]:
    # stdin is an open pipe that nobody writes to: a command that asked a question would wait on it
    # until the timeout instead of failing at once
    process = subprocess.Popen([str(BIN / "repclass"), *[a.format(existing=existing, **values)
                                                          for a in REFUSALS[command]]],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        process.wait(timeout=120)
        return process.returncode, process.stdout.read(), process.stderr.read()
    finally:
        process.kill()
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()


@pytest.fixture(scope="module")
def refusals(runs, tmp_path_factory) -> dict[str, tuple[Path, tuple[int, str, str]]]:
    folders, _, _ = runs
    base = tmp_path_factory.mktemp("refusals")
    sheet = folders[0].parent / "cohort" / "samples.tsv"
    values = {"sheet": sheet, "reps": sheet.parent / "reps", "part": folders[0] / "parts" / "r01.store",
              "store": folders[0] / "cohort.store", "model": folders[0] / "model"}
    existing = {}
    for command in REFUSALS:
        if command == "predict":
            existing[command] = base / "predictions.tsv"
            existing[command].write_text("keep me\n")
        else:
            existing[command] = base / command
            existing[command].mkdir()
            (existing[command] / "keep.txt").write_text("keep me\n")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c: pool.submit(_refuse, c, existing[c], values) for c in REFUSALS}
        return {c: (existing[c], f.result()) for c, f in futures.items()}


@pytest.mark.parametrize("command", REFUSALS)
def test_existing_output_is_refused_without_force(refusals, command):
    existing, (code, stdout, stderr) = refusals[command]
    assert code == 1, stderr
    assert "output exists already; pass --force to replace it" in stderr and str(existing) in stderr
    assert stdout == ""
    kept = existing if command == "predict" else existing / "keep.txt"
    assert kept.read_text() == "keep me\n"


@pytest.mark.parametrize("command", ["ingest", "predict"])
def test_force_replaces_an_existing_output(runs, tmp_path, command):
    folders, _, plan = runs
    args, output = plan[command]
    target = tmp_path / output
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("old\n")
    # --force replaces only a repclass output of the same kind (docs/reliability.md): an old store, an old table.
    if command == "predict":
        (target / "predictions.tsv").write_text("sample_id\told\n")
        args = ["predict", folders[0] / "model", folders[0] / "cohort.store", "--out", target / "predictions.tsv",
                "--attention", "10", "--threads", "2", "--device", "cpu"]
    else:
        (target / "manifest.json").write_text('{"format": "repclass-store"}\n')
        args = [*args[:args.index("--out")], "--out", target, "--threads", "2"]
    result = repclass(*args, "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    replaced = md5s(target)
    if command == "predict":  # predict writes files into the folder; the folder's other files stay
        assert replaced.pop("stale.txt")
    assert replaced == md5s(folders[0] / output)
