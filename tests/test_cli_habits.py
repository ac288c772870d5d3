"""CLI habits (issue 13): -q/-v/--log-file on every subcommand and before it, help text on every
option, --device checked while parsing."""
import re

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
