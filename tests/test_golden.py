"""Golden files for the CLI's main outputs on the tiny seeded cohort: train's metrics.json and
predictions.tsv, predict's predictions table and motifs' motifs.tsv, compared with
tests/data/golden/ (floats within a relative 1e-3; tests/support/golden.py says how to write
them anew after an intended change). One thread, so that no result depends on the machine's cores."""
import pytest
from click.testing import CliRunner

from support.golden import check_golden
from repclass.cli import main

COMPUTE = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def outputs(tiny_cohort, tmp_path_factory):
    store_path, _ = tiny_cohort
    folder = tmp_path_factory.mktemp("golden")
    runner = CliRunner()
    for args in (["train", store_path, "--target", "status", "--out", folder / "model", "--seed", "0",
                  "--updates", "40", "--eval-every", "20", *COMPUTE],
                 ["predict", folder / "model", store_path, "--out", folder / "predictions.tsv", *COMPUTE],
                 ["motifs", folder / "model", store_path, "--out", folder / "motifs", "--seed", "0", "--motifs", "2",
                  "--top-sequences", "50", "--ig-steps", "8", "--include-training", "--sample", "r01",
                  "--sample", "r04", *COMPUTE]):
        result = runner.invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    return folder


@pytest.mark.parametrize("output, golden", [
    ("model/metrics.json", "train_metrics.json"),
    ("model/predictions.tsv", "train_predictions.tsv"),
    ("predictions.tsv", "predict_predictions.tsv"),
    ("motifs/motifs.tsv", "motifs.tsv"),
])
def test_cli_outputs_match_the_golden_files(outputs, output, golden):
    check_golden(outputs / output, golden)
