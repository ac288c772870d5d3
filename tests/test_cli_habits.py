"""CLI habits (issue 13): -q/-v/--log-file on every subcommand and before it, help text on every
option, --device checked while parsing."""
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from repclass.cli import DeviceType, main

COMMANDS = sorted(main.commands)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_every_command_is_listed():
    assert {"ingest", "combine", "train", "predict", "motifs"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_the_logging_options(name):
    result = run(name, "--help")
    assert result.exit_code == 0, result.output
    for option in ("-q, --quiet", "-v, --verbose", "--log-file FILE"):
        assert option in result.output, f"repclass {name} --help lacks {option}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_text(name):
    missing = [p.opts for p in main.commands[name].params if isinstance(p, click.Option) and not p.help]
    assert missing == []


def test_a_command_added_later_gets_the_logging_options():
    group = type(main)(name="g")

    @group.command()
    def later() -> None:
        click.echo("ran")

    assert {"quiet", "verbose", "log_file"} <= {p.name for p in later.params}
    assert CliRunner().invoke(group, ["later", "-q"]).output == "ran\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_command(small_cohort, tmp_path, where):
    sheet, folder = small_cohort
    args = ["ingest", sheet, folder, "--out", tmp_path / "store"]
    result = run(*(["-q", *args] if where == "before" else [*args, "-q"]))
    assert result.exit_code == 0, result.output
    assert "INFO" not in result.output
    loud = run(*args[:-1], tmp_path / "store2")
    assert "repclass INFO: wrote " in loud.output


def test_verbose_prints_debug_lines_and_contradicts_quiet(small_cohort, tmp_path):
    sheet, folder = small_cohort
    result = run("ingest", sheet, folder, "--out", tmp_path / "store", "-v")
    assert result.exit_code == 0, result.output
    assert re.search(r"repclass DEBUG: repclass \S+, python \S+, command line", result.output)
    result = run("-q", "ingest", sheet, folder, "--out", tmp_path / "store2", "-v")
    assert result.exit_code == 2 and "contradict" in result.output


def test_log_file_records_the_run_whatever_quiet_says(small_cohort, tmp_path):
    sheet, folder = small_cohort
    log_file = tmp_path / "ingest.log"
    result = run("-q", "ingest", sheet, folder, "--out", tmp_path / "store", "--log-file", log_file)
    assert result.exit_code == 0 and "INFO" not in result.output
    text = log_file.read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d repclass INFO: wrote .*store: 3 repertoires", text, re.M)
    # a failed run says so in the file too (appended)
    result = run("ingest", sheet, folder, "--out", tmp_path / "store", "--log-file", log_file)
    assert result.exit_code == 1
    lines = log_file.read_text().splitlines()
    assert len(lines) > len(text.splitlines()) and "ERROR: Error: " in lines[-1] and "--force" in lines[-1]


def test_a_finished_command_skips_the_exit_collection_and_still_runs_the_exit_handlers(small_cohort, tmp_path):
    """The interpreter's last garbage collections (a second of CPU once torch is imported) are
    skipped by freezing every object at exit; the log file is still complete and the other exit
    handlers still run."""
    sheet, folder = small_cohort
    script = (
        "import atexit, gc, sys\n"
        "from repclass.cli import main\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))\n"
        "print('frozen before:', gc.get_freeze_count() > 0, flush=True)\n"
        "main(sys.argv[1:], prog_name='repclass')\n")
    log_file = tmp_path / "ingest.log"
    result = subprocess.run([sys.executable, "-c", script, "ingest", str(sheet), str(folder), "--out",
                             str(tmp_path / "store"), "--log-file", str(log_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["frozen before: False", "frozen at exit: True"]
    assert "repclass INFO: wrote " in log_file.read_text().splitlines()[-1]


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda:0"), ("cuda:12", "cuda:12"),
    ("CUDA:1", "cuda:1"), (" cpu ", "cpu"),
    ("gpu", None), ("cuda:", None), ("cuda:x", None), ("mps", None), ("cuda0", None), ("", None),
])
def test_device_values(value, expected):
    if expected is None:
        with pytest.raises(click.BadParameter, match="not a device; use auto, cpu, cuda or cuda:N"):
            DeviceType().convert(value, None, None)
    else:
        assert DeviceType().convert(value, None, None) == expected


@pytest.mark.parametrize("name", ["train", "predict", "motifs"])
def test_device_is_checked_before_anything_runs(name, tmp_path):
    arguments = {"train": ["store", "--target", "status"], "predict": ["model", "store"],
                 "motifs": ["model", "store"]}[name]
    result = run(name, *arguments, "--out", tmp_path / "out", "--device", "gpu")
    assert result.exit_code == 2
    assert "Invalid value for '--device': 'gpu' is not a device" in result.output
    assert "[auto|cpu|cuda|cuda:N]" in run(name, "--help").output


# ----------------------------------------------------------------------------------------------
# -q on a terminal; what the log says was written
# ----------------------------------------------------------------------------------------------
def _on_a_terminal(*args, cwd) -> tuple[int, str]:
    """`python -m repclass ARGS` with stdin, stdout and stderr on a pseudo-terminal (what a person
    at a shell sees: progress bars and tables only show there); (exit code, everything printed)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "repclass", *map(str, args)], stdin=slave, stdout=slave,
                               stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout=120), output.decode(errors="replace")


def test_quiet_ingest_on_a_terminal_prints_nothing(small_cohort, tmp_path):
    sheet, folder = small_cohort
    code, loud = _on_a_terminal("ingest", sheet, folder, "--out", tmp_path / "loud.store", cwd=tmp_path)
    assert code == 0, loud
    assert "━" in loud and "dropped" in loud  # the bar and the summary table: what -q must hide
    code, quiet = _on_a_terminal("-q", "ingest", sheet, folder, "--out", tmp_path / "quiet.store", cwd=tmp_path)
    assert code == 0, quiet
    assert quiet.strip() == ""


def test_quiet_predict_on_a_terminal_prints_only_warnings(tiny_model, tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    code, quiet = _on_a_terminal("predict", tiny_model.path, store_path, "--out", tmp_path / "p.tsv", "-q",
                                 "--device", "cpu", "--attention", "3", cwd=tmp_path)
    assert code == 0, quiet
    lines = [line for line in quiet.splitlines() if line.strip()]
    # the model trained on these repertoires: predict warns that the metrics are optimistic
    assert lines and all(" repclass WARNING: " in line for line in lines), quiet
    assert "━" not in quiet and "predict" not in quiet.split("WARNING")[0]


def test_predict_log_names_every_file_counts_and_short_repertoires(tiny_model, tiny_cohort, tmp_path):
    import json

    import polars as pl

    store_path, _ = tiny_cohort
    result = run("predict", tiny_model.path, store_path, "--out", tmp_path / "p.tsv", "--device", "cpu",
                 "--attention", 100_000)
    assert result.exit_code == 0, result.output
    wrote = [line for line in result.output.splitlines() if "INFO: wrote " in line]
    assert len(wrote) == 1
    for name in ("p.tsv", "p.metrics.json", "p.attention.tsv", "p.attention.airr.tsv"):
        assert str(tmp_path / name) in wrote[0], name
    # --attention larger than the repertoires: all their rows, and the log says how many and why
    sizes = pl.read_csv(tmp_path / "p.attention.tsv", separator="\t").group_by("sample_id").len()
    assert sizes["len"].max() < 100_000
    assert re.search(r"--attention 100000: 16 repertoire\(s\) hold fewer sequences, so the attention tables have "
                     r"all of theirs \(rows written\): r01 \(\d+\)", result.output)
    example = sizes.filter(pl.col("sample_id") == "r01")["len"].item()
    assert f"r01 ({example})" in result.output
    # counts are integers in the JSON, and the AUC has its interval
    metrics = json.loads((tmp_path / "p.metrics.json").read_text())["status"]
    n = metrics["n"]  # the held-out ones (the model trained on the rest)
    assert isinstance(n, int) and isinstance(metrics["n_excluded"], int) and n + metrics["n_excluded"] == 16
    assert f'"n": {n},' in (tmp_path / "p.metrics.json").read_text()
    assert metrics["roc_auc_low"] <= metrics["roc_auc"] <= metrics["roc_auc_high"]
    assert metrics["n_positive"] + metrics["n_negative"] == n
    assert re.search(rf"status: n {n}, .*roc_auc \d\.\d{{3}} \(95% CI \d\.\d{{3}}-\d\.\d{{3}}\)", result.output)
    assert f"{n} held-out repertoires" in result.output and "too few for the AUC to mean much" in result.output
    # the model folder's metrics table too
    from pathlib import Path

    folder = Path(tiny_model.path)
    recorded = pl.read_csv((folder if folder.is_dir() else folder.parent) / "metrics.tsv", separator="\t",
                           infer_schema_length=0)
    counts = recorded.filter(pl.col("metric") == "n")["value"].to_list()
    assert counts and all(re.fullmatch(r"\d+", c) for c in counts), counts
