"""The evidence a scientist needs beside the motifs: the report's elements (on the tiny trained
model), predict's split column and held-out metrics, fold ensembles, ground-truth scoring, and
the pure functions behind them."""
import argparse
import hashlib
import json
import logging
import math
import re

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from repclass.model.checkpoint import read_info
from repclass.cli import main
from repclass.config import TrainConfig
from repclass.prediction.ensemble import assign_splits, fold_model_paths
from repclass.errors import InputFileError
from repclass.explain.evidence import (average_precision, consensus_pattern, effective_number, enrichment,
                                       mann_whitney_greater, pr_points, read_truth, roc_points,
                                       score_against_truth)
from repclass.explain import motifs
from repclass.metrics import paired_auc_difference, roc_auc
from repclass.plot import plot_training_curve
from repclass.prediction.run import predict
from repclass.training.splits import SplitSpec
from repclass.training.loop import train

MOTIF = "WQRY"


def _truth_file(path, implanted):
    rows = ["sample_id\tsequence_id\tjunction_aa\tmotif_start\textra"]
    for sample_id, sequences in sorted(implanted.items()):
        for i, junction in enumerate(sorted(sequences)):
            rows.append(f"{sample_id}\t{sample_id}_{i}\t{junction}\t{junction.find(MOTIF)}\tx")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def held_out_run(tiny_model, tiny_cohort, tmp_path_factory):
    """motifs with the default selection (held-out repertoires only) and the implanted ground truth
    (fewer integrated-gradients steps than the default: the report's contents, not their precision)."""
    store_path, implanted = tiny_cohort
    folder = tmp_path_factory.mktemp("report")
    truth = _truth_file(folder / "truth.tsv", implanted)
    result = CliRunner().invoke(main, ["motifs", str(tiny_model.path), str(store_path), "--out", str(folder / "out"),
                                       "--motifs", "3", "--ig-steps", "16", "--device", "cpu", "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    return folder / "out"


# ---- the report -----------------------------------------------------------------------------------
def test_motifs_default_to_held_out_repertoires(held_out_run, tiny_model):
    splits = read_info(tiny_model.path).splits
    scores = pl.read_csv(held_out_run / "scores.tsv", separator="\t", schema_overrides={"label": pl.String})
    analysed = scores.filter(pl.col("analysed"))["sample_id"].to_list()
    assert analysed and all(splits[s] == "test" for s in analysed)
    assert scores.height == 16 and scores["split"].to_list() == [splits[s] for s in scores["sample_id"]]
    summary = json.loads((held_out_run / "motifs.json").read_text())
    assert summary["selection"] == "predicted, held out" and summary["samples"] == analysed


def test_report_holds_each_element(held_out_run):
    html = (held_out_run / "report.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    for name in ("roc_pr", "scores", "attention", "training_curve"):
        for suffix in (".png", ".svg"):
            assert (held_out_run / "figures" / f"{name}{suffix}").exists()
    assert html.count('src="data:image/png;base64,') >= 4 + 1  # the figures and at least one logo
    for words in ("Which repertoires", "test (held out)", "How good the model is",
                  "Recorded when the model was trained", "held-out repertoires of this store", "Confusion matrix",
                  "predicted +", "label -",
                  "effective number of attended sequences", "most attended sequence holds a median",
                  "Mann-Whitney", "held out: in", "V: TRBV5-1 100%", "J: TRBJ2-7 100%", "held out",
                  "summed sequence contribution (logit)", "mean residue attribution", "kernel index",
                  "Against the implanted ground truth", "precision@k by attention weight"):
        assert words in text, words
    summary = json.loads((held_out_run / "motifs.json").read_text())
    evidence = summary["evidence"]
    assert evidence["training_store"] == "same"
    assert evidence["training_warnings"] == [] and "Training:" not in text  # the tiny model learned its motif
    assert evidence["splits"] == {"train": 8, "validation": 4, "test": 4, "new": 0}
    assert evidence["held_out"]["n"] == 4 and len(evidence["held_out"]["confusion"]) == 2
    top = evidence["motifs"][0]
    assert top["pattern"] in ("WQRY", "WQR", "QRY") or MOTIF in top["pattern"]
    assert top["enrichment_all"]["with_other"] == 0 and top["enrichment_all"]["with_class"] == 8
    assert top["enrichment_all"]["p_value"] < 0.01
    assert top["n_repertoires_held_out"] == top["n_repertoires"]
    assert "http://" not in html and "https://" not in html


def test_report_gives_every_auc_an_interval_and_links_its_files(held_out_run):
    html = (held_out_run / "report.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    evidence = json.loads((held_out_run / "motifs.json").read_text())["evidence"]
    held = evidence["held_out"]
    assert held["roc_auc_low"] <= held["roc_auc"] <= held["roc_auc_high"]
    recorded = evidence["model_metrics"]
    assert set(evidence["model_metrics_intervals"]) == {s for s, v in recorded.items() if "roc_auc" in v}
    for split, (low, high) in evidence["model_metrics_intervals"].items():
        assert low <= recorded[split]["roc_auc"] + 1e-6 and recorded[split]["roc_auc"] <= high + 1e-6
    # every ROC AUC on the page has its interval beside it
    shown = re.findall(r"ROC AUC [0-9.]+ \(95% CI", text)
    cells = re.findall(r"<td class=\"num\">[0-9.]+ \(95% CI [0-9.]+&ndash;[0-9.]+\)</td>", html)
    assert len(shown) == 1 and len(cells) == len(evidence["model_metrics_intervals"]) >= 2
    # 4 held-out repertoires: the page says the figure means little
    assert f"{held['n']} held-out repertoires" in text and "too few for the AUC to mean much" in text
    # the files the page describes are linked, relative to it, and exist
    links = set(re.findall(r'<a href="([^"]+)">', html))
    assert {"scores.tsv", "sequences.tsv", "sequences.airr.tsv", "motifs.tsv", "motifs.json", "repertoires.tsv",
            "figures/roc_pr.png", "truth.json", "logos/"} <= links
    assert all((held_out_run / link).exists() for link in links), links


def test_sign_disagreements_are_explained_on_the_page(held_out_run):
    sequences = pl.read_csv(held_out_run / "sequences.tsv", separator="\t")
    disagree = int(((sequences["contribution"] > 0) & (sequences["ig_delta"] < 0)).sum())
    html = (held_out_run / "report.html").read_text()
    summary = json.loads((held_out_run / "motifs.json").read_text())
    assert summary["evidence"]["sign_disagreements"]["n"] == disagree
    if disagree:
        assert f"disagree in sign for {disagree} of the" in html


def test_truth_json(held_out_run):
    truth = json.loads((held_out_run / "truth.json").read_text())
    assert truth["top_motif"]["matches"] and truth["top_motif"]["implanted_motif"] == MOTIF
    assert truth["precision_at_k"][0]["by_contribution"] >= 0.5
    assert truth["attention_mass_on_implanted"]["mean"] > 0.5
    assert 0 < truth["recall_top50_attention"] <= 1


# ---- predict: split column, held-out metrics ------------------------------------------------------
def test_predict_marks_the_training_split_and_scores_held_out_only(tiny_model, tiny_cohort, tmp_path, caplog):
    store_path, _ = tiny_cohort
    splits = read_info(tiny_model.path).splits
    with caplog.at_level(logging.WARNING, logger="repclass"):
        result = predict(tiny_model.path, [store_path], tmp_path / "p.tsv", device="cpu")
    table = pl.read_csv(tmp_path / "p.tsv", separator="\t")
    assert table.columns[:3] == ["sample_id", "n_sequences", "split"]
    assert table["split"].to_list() == [splits[s] for s in table["sample_id"]]
    metrics = json.loads((tmp_path / "p.metrics.json").read_text())["status"]
    test = table.filter(pl.col("split") == "test")
    assert metrics["n"] == test.height == 4 and metrics["n_excluded"] == 12 and metrics["held_out"] == 1
    expected = roc_auc(np.array(test["status:label"].to_list()) == "+", test["status:p(+)"].to_numpy())
    assert metrics["roc_auc"] == pytest.approx(expected, nan_ok=True)
    assert result.metrics["status"]["n"] == 4
    assert "12 of 16 labelled repertoires were used to train or select the model" in caplog.text


def test_predict_on_training_repertoires_only_warns_that_metrics_are_optimistic(tiny_model, tiny_cohort, tmp_path,
                                                                                caplog):
    store_path, _ = tiny_cohort
    splits = read_info(tiny_model.path).splits
    trained = [s for s, split in sorted(splits.items()) if split == "train"]
    with caplog.at_level(logging.WARNING, logger="repclass"):
        result = predict(tiny_model.path, [store_path], tmp_path / "p.tsv", device="cpu", samples=trained)
    assert result.metrics["status"]["held_out"] == 0 and result.metrics["status"]["n"] == len(trained)
    assert "optimistic" in caplog.text


@pytest.mark.parametrize("fingerprint, splits, overlaps, confirmed", [
    ("abc", ["train", "test", "new"], True, True),
    ("other", ["train", "test", "new"], True, False),
    (None, ["train", "test", "new"], True, False),
])
def test_assign_splits(fingerprint, splits, overlaps, confirmed):
    class Info:
        store_fingerprint = "abc"
        splits = {"a": "train", "b": "test"}

    assignment = assign_splits([Info()], ["a", "b", "c"], fingerprint)
    assert (assignment.splits, assignment.overlaps, assignment.confirmed) == (splits, overlaps, confirmed)
    assert assignment.held_out().tolist() == [False, True, True]


def test_ensemble_split_is_the_most_seen():
    class Fold:
        def __init__(self, splits):
            self.splits, self.store_fingerprint = splits, "f"

    folds = [Fold({"a": "test", "b": "train"}), Fold({"a": "train", "b": "validation"}),
             Fold({"a": "validation", "b": "test"})]
    assert assign_splits(folds, ["a", "b", "z"], "f").splits == ["train", "train", "new"]


# ---- fold ensembles -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cv_model(tiny_cohort, tmp_path_factory):
    store_path, _ = tiny_cohort
    out = tmp_path_factory.mktemp("cv") / "cv"
    train(store_path, out, targets=["status"], split=SplitSpec(folds=3), device="cpu",
          config=TrainConfig(max_updates=40, eval_every=20, patience=100, seed=0))
    return out


def test_fold_ensemble_is_the_mean_of_the_folds(cv_model, tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    folds = fold_model_paths(cv_model)
    assert len(folds) == 3
    singles = [predict(path, [store_path], tmp_path / f"f{i}.tsv", device="cpu").table for i, path in enumerate(folds)]
    result = CliRunner().invoke(main, ["predict", str(cv_model), str(store_path), "--out", str(tmp_path / "e.tsv"),
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ensemble = pl.read_csv(tmp_path / "e.tsv", separator="\t")
    probabilities = np.stack([t["status:p(+)"].to_numpy() for t in singles])  # (folds, n)
    np.testing.assert_allclose(ensemble["status:p(+)"].to_numpy(), probabilities.mean(axis=0), atol=2e-6)
    np.testing.assert_allclose(ensemble["status:p(+):sd"].to_numpy(), probabilities.std(axis=0, ddof=1), atol=2e-6)
    expected = np.where(probabilities.mean(axis=0) >= 0.5, "+", "-")
    assert ensemble["status:predicted"].to_list() == expected.tolist()
    # Every repertoire was trained on by some fold: the ensemble has no held-out repertoire here.
    assert set(ensemble["split"].to_list()) == {"train"}


def test_motifs_on_a_cross_validation_folder_explain_out_of_fold(cv_model, tiny_cohort, tmp_path, monkeypatch):
    import repclass.explain.run as explain_run

    store_path, _ = tiny_cohort
    # each fold model's training warning is made from its own folder's curve, and the report names the fold
    # (the tiny folds learn their motif, so the second one's warning is made up here)
    curves = []

    def warning_of_the_second(model_path, info, history):
        curves.append(len(history))
        return "it memorised" if len(curves) == 2 else None

    monkeypatch.setattr(explain_run, "training_warning", warning_of_the_second)
    result = motifs(cv_model, store_path, tmp_path / "m", device="cpu", n_motifs=2, top_sequences=200, ig_steps=16)
    assert curves == [pl.read_csv(p.parent / "training_curve.tsv", separator="\t").height
                      for p in fold_model_paths(cv_model)]
    folds = [read_info(p).splits for p in fold_model_paths(cv_model)]
    # Every repertoire is some fold's test repertoire, so all are held out for their explaining model.
    assert set(result.scores["split"].to_list()) == {"test"}
    assert set(result.samples) == set(result.scores.filter(pl.col("analysed"))["sample_id"].to_list())
    assert all(any(f[s] == "test" for f in folds) for s in result.samples)
    summary = json.loads((tmp_path / "m" / "motifs.json").read_text())
    assert len(summary["model"]["folds"]) == 3 and summary["evidence"]["cross_validation"] == 3
    assert "fold 1 test" in summary["evidence"]["model_metrics"]
    # each fold's recorded test AUC gets its interval from that fold's predictions.tsv
    intervals = summary["evidence"]["model_metrics_intervals"]
    assert set(intervals) == {k for k, v in summary["evidence"]["model_metrics"].items() if "roc_auc" in v}
    assert all(low <= summary["evidence"]["model_metrics"][k]["roc_auc"] + 1e-6 for k, (low, _) in intervals.items())
    assert "cross-validation folder of 3 fold models" in (tmp_path / "m" / "report.html").read_text()
    assert summary["evidence"]["training_warnings"] == [{"fold": 2, "warning": "it memorised"}]
    assert '<p class="warn">Training, fold 2: it memorised.</p>' in (tmp_path / "m" / "report.html").read_text()


# ---- ground truth, hand-made ----------------------------------------------------------------------
def test_score_against_truth_by_hand(tmp_path):
    truth = _truth_file(tmp_path / "t.tsv", {"a": {"CASWQRYF", "CAWQRYSF"}, "b": {"CSSWQRYEF"}})
    table = read_truth(truth)
    sequences = pl.DataFrame({
        "rank": [1, 2, 3, 4, 5],
        "sample_id": ["a", "b", "a", "a", "b"],
        "junction_aa": ["CASWQRYF", "CSSLLLEF", "CAWQRYSF", "CASSPPF", "CSSWQRYEF"],
        "contribution": [5.0, 4.0, 3.0, 2.0, 1.0],
        "attention": [0.9, 0.1, 0.05, 0.8, 0.7],
    })
    result = score_against_truth(sequences, table, ["a", "b"], ["sWQRY", "LLL"], ks=[1, 5])
    assert result["n_implanted_sequences"] == 3
    assert result["precision_at_k"] == [
        {"k": 1, "by_contribution": 1.0, "by_attention": 1.0},
        {"k": 3, "by_contribution": pytest.approx(2 / 3), "by_attention": pytest.approx(2 / 3)},
        {"k": 5, "by_contribution": pytest.approx(3 / 5), "by_attention": pytest.approx(3 / 5)},
    ]
    assert result["top_motif"] == {"consensus": "sWQRY", "implanted_motif": "WQRY", "share_of_implants_matched": 1.0,
                                   "matches": True}
    assert not score_against_truth(sequences, table, ["a", "b"], ["PPGG"])["top_motif"]["matches"]


def test_read_truth_leaves_out_noise_implants(tmp_path):
    """Decoys that simulate puts into negatives (noise = true) are not witnesses to recover."""
    (tmp_path / "t.tsv").write_text("sample_id\tsequence_id\tjunction_aa\tmotif_start\tmotif\tnoise\n"
                                    "a\ta1\tCASWQRYF\t3\tWQRY\tfalse\n"
                                    "b\tb1\tCASWRQYF\t3\tWQRY\ttrue\n")
    table = read_truth(tmp_path / "t.tsv")
    assert table["sequence_id"].to_list() == ["a1"]


@pytest.mark.parametrize("text, message", [
    ("sample_id\tjunction_aa\tmotif_start\na\tCASF\t1\n", "missing column\\(s\\) sequence_id"),
    ("sample_id\tsequence_id\tjunction_aa\tmotif_start\na\tx\tCASF\tthree\n", "line 2"),
])
def test_read_truth_refusals(tmp_path, text, message):
    (tmp_path / "t.tsv").write_text(text)
    with pytest.raises(InputFileError, match=message):
        read_truth(tmp_path / "t.tsv")


# ---- pure functions -------------------------------------------------------------------------------
@pytest.mark.parametrize("positive, scores, auc", [
    ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 1.0),
    ([1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1], 0.75),
    ([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 0.5),
])
def test_roc_points_integrate_to_the_auc(positive, scores, auc):
    fpr, tpr = roc_points(np.array(positive, dtype=bool), np.array(scores))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(auc)


def test_paired_auc_difference_separates_a_real_gap_from_the_draw():
    rng = np.random.default_rng(0)
    positive = np.repeat([True, False], 20)
    informative = positive + rng.normal(0, 0.5, 40)
    noise, other_noise = rng.normal(0, 1, 40), rng.normal(0, 1, 40)
    difference, low, high = paired_auc_difference(positive, informative, noise)
    assert difference == pytest.approx(roc_auc(positive, informative) - roc_auc(positive, noise))
    assert 0 < low < difference < high  # a real gap: the interval excludes 0
    _, low, high = paired_auc_difference(positive, noise, other_noise)
    assert low < 0 < high  # two coin flips: it does not
    assert paired_auc_difference(positive, noise, noise) == (0.0, 0.0, 0.0)
    assert paired_auc_difference(positive, informative, noise, seed=3) == \
        paired_auc_difference(positive, informative, noise, seed=3)


def test_average_precision_by_hand():
    positive = np.array([1, 0, 1, 0], dtype=bool)
    assert average_precision(positive, np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    recall, precision = pr_points(positive, np.array([0.9, 0.8, 0.7, 0.1]))
    assert recall.tolist() == [0, 0.5, 0.5, 1.0]  # stops at full recall
    assert precision.tolist() == pytest.approx([1.0, 1.0, 0.5, 2 / 3])


@pytest.mark.parametrize("consensus, pattern", [("WQRY", "WQRY"), ("srWQRY", "WQRY"), ("WqRY", "W.RY"),
                                                ("aSFeNt", "SF.N")])
def test_consensus_pattern(consensus, pattern):
    assert consensus_pattern(consensus) == pattern


def _normal_approximation(x, y):
    """The one-sided Mann-Whitney p-value by hand (normal approximation, tie and continuity
    corrections): what evidence.py computed before it used scipy's test."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    values = np.r_[x, y]
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - (counts ** 3 - counts).sum() / (n * (n - 1)))
    return 0.5 * math.erfc((u - n1 * n2 / 2 - 0.5) / math.sqrt(variance) / math.sqrt(2))


@pytest.mark.parametrize("x, y", [
    ([0.0, 0.0, 0.01, 0.02, 0.03], [0.0, 0.0, 0.0, 0.005]),      # ties (repertoires without the motif)
    (list(range(20)), list(range(5, 30))),                       # larger than scipy's exact limit
    ([0.04, 0.0, 0.02] * 5, [0.0, 0.01] * 6),
])
def test_mann_whitney_is_scipys_and_agrees_with_the_normal_approximation(x, y):
    assert mann_whitney_greater(x, y) == pytest.approx(_normal_approximation(x, y), rel=1e-9)


def test_mann_whitney_equals_scipys_with_and_without_ties():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(7)
    for _ in range(60):  # sizes on both sides of the exact limit (8), continuous and tied values
        n1, n2 = (int(n) for n in rng.integers(1, 14, size=2))
        if rng.random() < 0.5:
            x, y = rng.random(n1), rng.random(n2) + rng.normal() * 0.3
        else:
            x, y = rng.integers(0, 4, n1) / 100, rng.integers(0, 3, n2) / 100
        expected = float(mannwhitneyu(x, y, alternative="greater").pvalue)
        assert mann_whitney_greater(x, y) == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_mann_whitney_is_exact_for_small_samples_without_ties():
    # 4 vs 4, complete separation: 1 of the C(8, 4) = 70 equally likely rank assignments
    assert mann_whitney_greater([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(1 / 70)
    assert _normal_approximation([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(0.0152, abs=1e-4)


def test_mann_whitney_and_enrichment():
    assert mann_whitney_greater([5, 6, 7, 8], [1, 2, 3, 4]) < 0.05
    assert mann_whitney_greater([1, 2, 3, 4], [5, 6, 7, 8]) > 0.95
    assert mann_whitney_greater([0, 0], [0, 0]) == 1.0
    assert math.isnan(mann_whitney_greater([], [1.0]))
    e = enrichment("WQRY", {"a": 0.05, "b": 0.04, "c": 0.0, "d": 0.01, "u": 0.5}, {"a": True, "b": True, "c": False,
                                                                                   "d": False})
    assert (e.n_class, e.with_class, e.n_other, e.with_other) == (2, 2, 2, 1)
    assert e.frequency_class == pytest.approx(0.045)


@pytest.mark.parametrize("weights, expected", [([1.0], 1.0), ([0.5, 0.5], 2.0), ([0.25] * 4, 4.0)])
def test_effective_number(weights, expected):
    assert effective_number(np.array(weights)) == pytest.approx(expected)


def test_the_report_shows_the_training_curve_train_drew(held_out_run, tiny_model, tmp_path):
    """motifs copies the model folder's figure: the one it would draw again from the same curve."""
    from repclass.explain.writing import training_curve_figures, training_history

    for suffix in (".png", ".svg"):
        drawn = (tiny_model.path / "training_curve").with_suffix(suffix).read_bytes()
        assert (held_out_run / "figures" / "training_curve").with_suffix(suffix).read_bytes() == drawn
    model_file = tiny_model.path / "model.safetensors"
    plot_training_curve(training_history(model_file), tmp_path / "again.png", tiny_model.best_update)
    for suffix in (".png", ".svg"):
        assert ((tmp_path / "again").with_suffix(suffix).read_bytes()
                == (tiny_model.path / "training_curve").with_suffix(suffix).read_bytes())
    # a folder missing either file has its curve drawn from training_curve.tsv instead
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "training_curve.png").write_bytes(b"")
    assert training_curve_figures(folder / "model.safetensors") == []
    (folder / "training_curve.svg").write_bytes(b"")
    assert training_curve_figures(folder / "model.safetensors") == [folder / "training_curve.png",
                                                                   folder / "training_curve.svg"]


def test_a_model_folder_without_its_curve_figure_gets_it_drawn(tiny_model, tiny_cohort, tmp_path):
    """A model folder copied without training_curve.png: motifs draws the curve from the model's
    history, the same bytes train drew."""
    import shutil

    store_path, _ = tiny_cohort
    model = tmp_path / "model"
    shutil.copytree(tiny_model.path, model)
    (model / "training_curve.png").unlink()
    result = CliRunner().invoke(main, ["motifs", str(model), str(store_path), "--out", str(tmp_path / "out"),
                                       "--motifs", "1", "--ig-steps", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for suffix in (".png", ".svg"):
        assert ((tmp_path / "out" / "figures" / "training_curve").with_suffix(suffix).read_bytes()
                == (tiny_model.path / "training_curve").with_suffix(suffix).read_bytes())


def test_training_curve_png_and_svg_are_deterministic(tmp_path):
    history = [{"update": u, "train_loss": 1 / u, "validation_loss": 2 / u + (u == 300) * 0.1, "status:roc_auc": 0.9}
               for u in (100, 200, 300)]
    digests = []
    for name in ("a", "b"):
        paths = plot_training_curve(history, tmp_path / f"{name}.png")
        assert [p.suffix for p in paths] == [".png", ".svg"]
        digests.append([hashlib.md5(p.read_bytes()).hexdigest() for p in paths])
    assert digests[0] == digests[1]
    svg = (tmp_path / "a.svg").read_text()
    assert "best model (update 200)" in svg and "validation status ROC AUC" in svg


# ---- the real-cohort script's folds ---------------------------------------------------------------
def _real_cohorts_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "real_cohorts.py"
    spec = importlib.util.spec_from_file_location("real_cohorts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_cohort_folds_keep_subjects_together_and_stratify():
    module = _real_cohorts_script()
    samples = [f"s{i:02d}" for i in range(20)]
    subjects = {s: (f"p{i // 2:02d}" if i < 8 else s) for i, s in enumerate(samples)}  # 4 donors sequenced twice
    labels = {s: ("old" if (i // 2 if i < 8 else i) % 3 == 0 else "young") for i, s in enumerate(samples)}
    folds = module.grouped_folds(subjects, labels, 4, seed=0)
    assert len(folds) == 4
    tested = [s for fold in folds for s, split in fold.items() if split == "test"]
    assert sorted(tested) == samples  # every repertoire tested exactly once
    for fold in folds:
        for subject in set(subjects.values()):
            assert len({fold[s] for s in samples if subjects[s] == subject}) == 1  # a donor never straddles
        assert {"train", "validation", "test"} <= set(fold.values())
    sizes = [sum(split == "test" for split in fold.values()) for fold in folds]
    assert max(sizes) - min(sizes) <= 1
    old = [sum(split == "test" and labels[s] == "old" for s, split in fold.items()) for fold in folds]
    assert max(old) - min(old) <= 2


@pytest.mark.parametrize("setting, message", [
    ("init_kmerz=0", "'init_kmerz' is not a TrainConfig or ModelConfig setting"),
    ("init_kmers=abc", "the value must be JSON")])
def test_real_cohort_run_refuses_a_bad_setting_before_any_work(tmp_path, capsys, setting, message):
    with pytest.raises(SystemExit) as exit_info:
        _real_cohorts_script().main(["run", "--cohort", "ms", "--data", str(tmp_path / "data"),
                                     "--out", str(tmp_path / "out"), "--set", setting])
    assert exit_info.value.code == 2
    assert f"--set {setting}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_real_cohort_settings_go_to_the_training_or_the_model_config():
    module = _real_cohorts_script()
    parser = argparse.ArgumentParser()
    train, model = module._settings(parser, ["init_kmers=0", "n_kernels=256", "embedding=\"cnn\""])
    assert train == {"init_kmers": 0}
    assert model == {"n_kernels": 256, "embedding": "cnn"}


def test_real_cohort_implant_puts_a_known_signal_into_the_cohorts_own_repertoires(tiny_cohort, tmp_path):
    """`run --implant RATE`: status labels from the simulation, files of the implanted repertoires,
    the subjects kept (so that the folds still keep donors together)."""
    from repclass import ingest
    from repclass.io.store import Store

    module = _real_cohorts_script()
    store = Store.open(tiny_cohort[0])
    subjects = [f"donor{i // 2}" for i in range(len(store))]
    sheet = pl.DataFrame({"sample_id": store.sample_ids, "subject_id": subjects, "file": ["x"] * len(store)})
    implanted = module.implanted_sheet(sheet, store.path, tmp_path, rate=0.01, seed=0)
    assert implanted["subject_id"].to_list() == subjects
    assert sorted(implanted["status"].value_counts()["count"].to_list()) == [len(store) // 2] * 2
    truth = pl.read_csv(tmp_path / "implanted" / "implanted.tsv", separator="\t")
    assert set(truth.filter(~pl.col("noise"))["sample_id"]) == set(
        implanted.filter(pl.col("status") == "+")["sample_id"])
    assert truth["motif"].str.len_chars().is_between(4, 5).all() and truth["motif"].n_unique() == 3
    implanted.write_csv(tmp_path / "sheet.tsv", separator="\t")
    again = ingest(tmp_path / "sheet.tsv", tmp_path / "implanted.store")
    assert again.sample_ids == store.sample_ids
    witness = truth.filter(~pl.col("noise")).row(0, named=True)
    assert witness["junction_aa"] in again.read(witness["sample_id"])["junction_aa"].to_list()


@pytest.mark.parametrize("rate", ["0", "1.5"])
def test_real_cohort_run_refuses_an_implant_rate_outside_0_1(tmp_path, capsys, rate):
    with pytest.raises(SystemExit) as exit_info:
        _real_cohorts_script().main(["run", "--cohort", "aging", "--data", str(tmp_path / "data"),
                                     "--out", str(tmp_path / "out"), "--implant", rate])
    assert exit_info.value.code == 2
    assert "--implant must be a share of the sequences" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _finished_tiny_run(tiny_cohort, folder):
    """A `real_cohorts.py run` folder as the checks read it, over the tiny cohort (4 folds)."""
    from repclass.io.store import Store

    module = _real_cohorts_script()
    store_path, _ = tiny_cohort
    store = Store.open(store_path)
    labels = store.labels("status")
    folds = module.grouped_folds({s: s for s in store.sample_ids}, labels, 4, seed=0)
    (folder / "fold_1" / "kmer").mkdir(parents=True)
    (folder / "cohort.store").symlink_to(store_path)
    pl.DataFrame({"sample_id": store.sample_ids, "subject_id": store.sample_ids,
                  "status": [labels[s] for s in store.sample_ids],
                  **{f"fold_{k + 1}": [fold[s] for s in store.sample_ids] for k, fold in enumerate(folds)}}
                 ).write_csv(folder / "samples_with_folds.tsv", separator="\t")
    (folder / "fold_1" / "kmer" / "config.json").write_text(json.dumps(
        {"targets": [{"column": "status", "classes": ["-", "+"]}], "train": {"seed": 0}}))
    return module, folder


def test_real_cohort_kmer_check_gives_the_baselines_spread_and_permutation_null(tiny_cohort, tmp_path):
    module, run = _finished_tiny_run(tiny_cohort, tmp_path / "run")

    line = module.check_kmer(run, seeds=2, permutations=4)

    table = pl.read_csv(run / "kmer_check.tsv", separator="\t")
    assert table["kind"].to_list() == ["observed", "seed", "seed"] + ["permutation"] * 4
    observed = table.filter(pl.col("kind") == "observed")["pooled_roc_auc"][0]
    null = table.filter(pl.col("kind") == "permutation")["pooled_roc_auc"].to_numpy()
    assert observed >= 0.8  # motif in 5% of the positives' sequences; 8 training repertoires per fold
    assert null.mean() < observed - 0.2  # labels permuted across subjects carry no signal
    assert table.filter(pl.col("kind") == "seed")["pooled_roc_auc"][0] == observed  # seed 0 is the run's
    assert f"p = {(1 + (null >= observed).sum()) / 5:.3f}" in line
    assert not (run / "kmer_check.tsv.partial").exists()


def test_real_cohort_pooled_probe_reads_out_an_untrained_models_mean_embedding(tiny_cohort, tmp_path, capsys):
    module, run = _finished_tiny_run(tiny_cohort, tmp_path / "run")
    from repclass.io.store import Store

    finished = module.finished_run(run)
    assert (finished.label, finished.positive, finished.seed) == ("status", "+", 0)
    assert finished.store.path == Store.open(run / "cohort.store").path
    strong = module.pooled_probe(finished, n_kernels=64, init_seed=0)
    assert strong == module.pooled_probe(finished, n_kernels=64, init_seed=0)  # seeded
    assert strong >= 0.8  # a 5% motif moves the mean embedding of random kernels enough to read it out

    assert module.main(["pooled-probe", str(run), "--kernels", "8", "--init-seeds", "2"]) == 0
    assert re.fullmatch(r"8 kernels: pooled ROC AUC per init seed [0-9.]+ [0-9.]+ \(mean [0-9.]+\)\n",
                        capsys.readouterr().out)


@pytest.mark.parametrize("command", ["kmer-check", "pooled-probe"])
def test_real_cohort_checks_refuse_a_folder_that_is_not_a_finished_run(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        _real_cohorts_script().main([command, str(tmp_path)])
    assert exit_info.value.code == 1
    assert (f"{command}: {tmp_path}: not a finished `run` folder (no fold_1/kmer/config.json)"
            in capsys.readouterr().err)


@pytest.mark.parametrize("arguments", [["kmer-check", "--seeds", "0"], ["pooled-probe", "--init-seeds", "0"],
                                       ["pooled-probe", "--kernels", "0"]])
def test_real_cohort_checks_refuse_counts_below_one_before_any_work(tmp_path, capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        _real_cohorts_script().main([arguments[0], str(tmp_path), *arguments[1:]])
    assert exit_info.value.code == 2
    assert "must be at least" in capsys.readouterr().err


def test_real_cohort_stats_check_scores_every_fold_from_clone_size_statistics(tiny_cohort, tmp_path, capsys,
                                                                               monkeypatch):
    module, run = _finished_tiny_run(tiny_cohort, tmp_path / "run")
    monkeypatch.setattr(module, "L2_STRENGTHS", (0.1, 10.0))  # fewer fits; the grid itself is not under test
    finished = module.finished_run(run)
    statistics = module.repertoire_statistics(finished.store)
    counts = finished.store.read(finished.store.sample_ids[0], ["duplicate_count"])["duplicate_count"].to_numpy()
    share = counts / counts.sum()
    entropy = -(share * np.log(share)).sum()
    assert statistics[0] == pytest.approx([np.log(len(counts)), entropy, 1 - entropy / np.log(len(counts)),
                                           np.log(share.max())])
    for k in range(1, 5):  # summarise pools the folds that have a comparison
        (run / f"fold_{k}").mkdir(exist_ok=True)
        (run / f"fold_{k}" / "comparison.tsv").write_text("")

    assert module.main(["stats-check", str(run)]) == 0

    out = capsys.readouterr().out
    assert "log_richness: ROC AUC" in out and re.search(r"statistics regression: per fold( [0-9.]+){4}; pooled", out)
    tests = pl.concat([pl.read_csv(run / f"fold_{k}" / "stats" / "predictions.tsv", separator="\t")
                       .filter(pl.col("split") == "test") for k in range(1, 5)])
    assert sorted(tests["sample_id"]) == sorted(finished.store.sample_ids)  # each repertoire tested once
    summary = pl.read_csv(run / "summary.tsv", separator="\t")
    assert summary["method"].to_list() == ["stats"]
    low, high = map(float, summary["pooled_ci95"][0].strip("[]").split(", "))
    assert low <= summary["pooled_roc_auc"][0] <= high


def test_real_cohort_geneplus_fetch_keeps_junction_v_and_frequency(tmp_path, monkeypatch):
    import gzip
    import subprocess

    from repclass.io.ingestion import ingest

    module = _real_cohorts_script()
    clone = tmp_path / "clone"
    rows = {"0/negative_HUMRA-101_random.tsv_processed_TCRD.tsv": "CASSLGQETQYF\tTRBV5-1*01\t0.000004\t0.9\n"
                                                                   "CASSPGTGELFF\tTRBV7-9*01\t0.000012\t0.1\n",
            "1/positive_HUMRB-102-TRB1_random.VJ_edit.tsv_processed_TCRD.tsv": "CASSLGQETQYF\tTRBV5-1*01\t0.5\t0.2\n",
            "2/positive_HUMRB-102-TRB1.tsv_processed_TCRD.tsv": "CASSPGTGELFF\tTRBV7-9*01\t0.5\t0.2\n"}
    for name, text in rows.items():
        path = clone / "Data" / "Geneplus" / "LUCA" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("amino_acid\tv_gene\tfrequency\tcaTCR_score\n" + text)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "data"], check=True)
    commit = subprocess.run(git[:3] + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.setitem(module.COHORTS, "gica", ("x/y", commit, "status", "cancer"))  # the pin all three share
    monkeypatch.setitem(module.COHORTS, "luca", ("x/y", commit, "status", "cancer"))

    module.fetch(tmp_path / "data", {"luca": clone}, ["luca"])

    sheet = pl.read_csv(tmp_path / "data" / "luca" / "samples.tsv", separator="\t", infer_schema=False)
    assert sheet.rows() == [("HUMRA-101_random", "HUMRA-101_random", "HUMRA-101_random.tsv.gz", "healthy", "random",
                             "0"),
                            ("HUMRB-102-TRB1", "HUMRB-102-TRB1", "HUMRB-102-TRB1.tsv.gz", "cancer", "other", "2"),
                            ("HUMRB-102-TRB1_random.VJ_edit", "HUMRB-102-TRB1",  # one patient, two files: one subject
                             "HUMRB-102-TRB1_random.VJ_edit.tsv.gz", "cancer", "random.VJ_edit", "1")]
    sheet.with_columns(pl.lit(str(tmp_path / "data" / "luca" / "repertoires") + "/").add(pl.col("file"))
                       .alias("file")).write_csv(tmp_path / "sheet.tsv", separator="\t")
    store = ingest(tmp_path / "sheet.tsv", tmp_path / "luca.store")
    healthy = store.read("HUMRA-101_random", ["junction_aa", "duplicate_count"])
    assert healthy.rows() == [("CASSLGQETQYF", 1), ("CASSPGTGELFF", 3)]  # frequencies in units of the smallest
    assert store.samples["counts_from"].to_list() == ["frequency"] * 3
    text = gzip.decompress((tmp_path / "data" / "luca" / "repertoires" / "HUMRA-101_random.tsv.gz").read_bytes())
    assert text.decode().splitlines()[0] == "junction_aa\tv_call\tfrequency"  # DeepLION's caTCR_score dropped
