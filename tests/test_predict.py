"""repclass predict and the model file: scoring stores and raw files, attention export, refusals."""
import json

import polars as pl
import pytest
import torch
from click.testing import CliRunner

from repclass.cli import main
from repclass.errors import ModelFileError, OutputExistsError
from repclass.prediction.run import predict


def test_predict_store_with_labels_and_attention(tiny_model, tiny_cohort, tmp_path):
    store_path, implanted = tiny_cohort
    result = predict(tiny_model.path, [store_path], tmp_path / "p.tsv", attention_top_n=5, device="cpu")
    table = pl.read_csv(tmp_path / "p.tsv", separator="\t")
    # The training store: a split column, and metrics on its held-out (test) repertoires only (test_report.py)
    # (no enrichment_input/enrichment_logit: the gate left the enrichment path off on this cohort)
    assert table.columns == ["sample_id", "n_sequences", "split", "status:p(+)", "status:predicted", "status:label"]
    assert table.height == 16
    assert (table["status:predicted"] == table["status:label"]).mean() >= 0.9
    metrics = json.loads((tmp_path / "p.metrics.json").read_text())
    assert metrics["status"]["n"] + metrics["status"]["n_excluded"] == 16
    attention = pl.read_csv(tmp_path / "p.attention.tsv", separator="\t")
    assert attention.columns == ["sample_id", "rank", "junction_aa", "v_call", "j_call", "duplicate_count",
                                 "attention", "logit"]
    assert attention.height == 16 * 5
    positives = [s for s, seqs in implanted.items() if seqs]
    top = attention.filter(pl.col("sample_id").is_in(positives), pl.col("rank") == 1)
    assert all(row["junction_aa"] in implanted[row["sample_id"]] for row in top.iter_rows(named=True))
    assert result.metrics["status"]["n"] == 4


def test_predict_raw_files_equals_predict_store(tiny_model, tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    raw_folder = store_path.parent / "reps"
    files = sorted(raw_folder.glob("*.tsv"))[:3]
    from_store = predict(tiny_model.path, [store_path], tmp_path / "a.tsv", device="cpu",
                         samples=[f.name.split(".")[0] for f in files])
    from_files = predict(tiny_model.path, files, tmp_path / "b.tsv", device="cpu")
    a = from_store.table.drop("status:label")
    assert a.equals(from_files.table)


def test_existing_output_needs_force(tiny_model, tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    predict(tiny_model.path, [store_path], tmp_path / "p.tsv", device="cpu", samples=["r01"])
    with pytest.raises(OutputExistsError):
        predict(tiny_model.path, [store_path], tmp_path / "p.tsv", device="cpu", samples=["r01"])
    predict(tiny_model.path, [store_path], tmp_path / "p.tsv", device="cpu", samples=["r01"], force=True)


def test_store_with_another_junction_convention_is_refused(tiny_model, tiny_cohort, tmp_path):
    from repclass import ingest
    from repclass.io.reader import ReadOptions

    store_path, _ = tiny_cohort
    sheet, reps = store_path.parent / "samples.tsv", store_path.parent / "reps"
    cdr3_store = ingest(sheet, tmp_path / "cdr3.store", [reps], samples=["r01"], options=ReadOptions(convention="cdr3"))
    with pytest.raises(ModelFileError, match="holds cdr3 sequences but the model was trained on junction"):
        predict(tiny_model.path, [cdr3_store.path], tmp_path / "p.tsv", device="cpu")


def test_cli_train_and_predict(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "m"),
                                  "--updates", "20", "--eval-every", "10", "--device", "cpu", "--threads", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["predict", str(tmp_path / "m"), str(store_path), "--out", str(tmp_path / "p.tsv"),
                                  "--attention", "3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.attention.tsv").exists()
    bad = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "x"),
                               "--positive", "other=+"])
    assert bad.exit_code == 2 and "--positive names other, which is not a --target" in bad.output
    bad = runner.invoke(main, ["predict", str(tmp_path / "nope"), str(store_path), "--out", str(tmp_path / "q.tsv")])
    assert bad.exit_code == 1 and "no such model file" in bad.output
    bad = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "y"),
                               "--device", "cuda"])
    if not torch.cuda.is_available():
        assert bad.exit_code == 2 and "no CUDA device" in bad.output
