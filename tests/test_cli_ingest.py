"""`repclass ingest` / `combine` end to end through click's runner and a real subprocess."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from support.files import write_airr
from repclass import __version__
from repclass.cli import main
from repclass.io.store import Store


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version_is_bare():
    result = subprocess.run([sys.executable, "-m", "repclass", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout == f"{__version__}\n"


def test_help_does_not_import_torch_or_polars():
    code = "import sys; from repclass.cli import main; print('torch' in sys.modules, 'polars' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_ingest_and_combine(small_cohort, tmp_path):
    sheet, folder = small_cohort
    result = run("ingest", sheet, folder, "--out", tmp_path / "store", "--threads", 1)
    assert result.exit_code == 0, result.output
    assert Store.open(tmp_path / "store").sample_ids == ["s1", "s2", "s3"]
    for sample in ("s1", "s2", "s3"):
        assert run("ingest", sheet, folder, "--sample", sample, "--out", tmp_path / f"p_{sample}").exit_code == 0
    result = run("combine", tmp_path / "p_s1", tmp_path / "p_s2", tmp_path / "p_s3", "--out", tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert Store.open(tmp_path / "all").sample_ids == ["s1", "s2", "s3"]


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_existing_output_is_refused_without_force(small_cohort, tmp_path):
    sheet, folder = small_cohort
    assert run("ingest", sheet, folder, "--out", tmp_path / "store").exit_code == 0
    _one_line_error(run("ingest", sheet, folder, "--out", tmp_path / "store"), "--force")
    assert run("ingest", sheet, folder, "--out", tmp_path / "store", "--force").exit_code == 0


@pytest.mark.parametrize("breakage, fragments", [
    ("missing_file", ["s9", "sheet row(s) with no file"]),
    ("bad_count", ["s1.tsv, line 2", "count 'x'"]),
    ("negative_count", ["s1.tsv, line 2", "is negative"]),
    ("no_junction", ["s1.tsv, line 1", "no junction column", "columns seen: sequence_id, v_call"]),
    ("truncated_gzip", ["s2.tsv.gz", "corrupt or truncated"]),
    ("duplicate_id", ["samples.tsv, line 5", "duplicate sample id 's1'"]),
    ("orphan_file", ["extra.tsv", "no row in the sheet"]),
    ("empty", ["s1.tsv", "no sequences left after filtering", "--allow-empty"]),
])
def test_bad_input_one_line_error_and_no_store(small_cohort, tmp_path, breakage, fragments):
    sheet, folder = small_cohort
    if breakage == "missing_file":
        sheet.write_text(sheet.read_text() + "s9\t+\t20\n")
    elif breakage == "bad_count":
        write_airr(folder / "s1.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", "x", "T", "TRB"]])
    elif breakage == "negative_count":
        write_airr(folder / "s1.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", "-1", "T", "TRB"]])
    elif breakage == "no_junction":
        (folder / "s1.tsv").write_text("sequence_id\tv_call\na\tTRBV5-1\n")
    elif breakage == "truncated_gzip":
        rows = [[f"r{i}", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", i + 1, "T", "TRB"] for i in range(20000)]
        data = write_airr(folder / "s2.tsv.gz", rows, compress=True).read_bytes()
        (folder / "s2.tsv.gz").write_bytes(data[: len(data) // 2])
    elif breakage == "duplicate_id":
        sheet.write_text(sheet.read_text() + "s1\t+\t20\n")
    elif breakage == "orphan_file":
        write_airr(folder / "extra.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 1, "T", "TRB"]])
    elif breakage == "empty":
        write_airr(folder / "s1.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 1, "F", "TRB"]])
    result = run("ingest", sheet, folder, "--out", tmp_path / "store")
    _one_line_error(result, *fragments)
    assert not (tmp_path / "store").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store")]


def test_usage_errors_exit_2(small_cohort, tmp_path):
    sheet, folder = small_cohort
    assert run("ingest", sheet, folder).exit_code == 2  # --out missing
    assert run("ingest", sheet, folder, "--out", tmp_path / "s", "--locus", "XYZ").exit_code == 2


def test_subprocess_logs_go_to_stderr(small_cohort, tmp_path):
    sheet, folder = small_cohort
    result = subprocess.run([sys.executable, "-m", "repclass", "ingest", str(sheet), str(folder), "--out",
                             str(tmp_path / "store")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "summary:" in result.stderr and "wrote" in result.stderr
