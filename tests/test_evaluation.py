"""Evaluation (issue 31): donors never on both sides of a fold or split, pooled out-of-fold
predictions with intervals that cover the truth, the label-permutation test, and the words."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from support.cohort import MOTIF, background_pool, implant
from support.files import write_airr, write_table
from repclass.cli import main
from repclass.config import TrainConfig
from repclass.errors import UsageError
from repclass.evaluation import (Estimate, describe, permutation_p, permuted_sources, recommendation,
                                 small_caveat)
from repclass.metrics import roc_auc_interval
from repclass.training.splits import SplitSpec, split_assignments
from repclass.io.store import Store
from repclass.targets import TargetSpec

FAST = ["--kmer-size", "3", "--inner-folds", "2", "--threads", "1"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make_donor_cohort(folder: Path, n_donors: int = 16, n_sequences: int = 150, signal: bool = True,
                      seed: int = 3, shuffle_labels: bool = False) -> Path:
    """Each donor has two repertoires (time points a and b) with the donor's label; with `signal`,
    positives carry the motif in 10% of their sequences and each of 8 public clonotypes with
    probability 0.7 (negatives 0.05). The sheet has a subject_id column; `shuffle_labels` writes
    the donors' labels shuffled among them (the repertoires unchanged: no signal left)."""
    from repclass import ingest

    rng = np.random.default_rng(seed)
    pool = background_pool()
    public, pool = pool[:8], pool[8:]
    reps = folder / "reps"
    reps.mkdir(parents=True)
    labels = np.array(["+", "-"] * (n_donors // 2))
    rng.shuffle(labels)
    rows = []
    for donor, label in enumerate(labels, start=1):
        for time_point in "ab":
            sample_id = f"d{donor:02d}{time_point}"
            chosen = [pool[i] for i in rng.choice(len(pool), n_sequences, replace=False)]
            if signal and label == "+":
                for i in rng.choice(n_sequences, n_sequences // 10, replace=False):
                    chosen[i] = implant(chosen[i], MOTIF, rng)
            chosen += [c for c in public if rng.random() < (0.7 if signal and label == "+" else 0.05)]
            write_airr(reps / f"{sample_id}.tsv", [[f"{sample_id}_{i}", s, "TRBV5-1*01", "TRBJ2-7*01", 1, "T", "TRB"]
                                                    for i, s in enumerate(chosen)])
            rows.append([sample_id, f"donor{donor:02d}", label])
    if shuffle_labels:
        shuffled = rng.permutation(labels)
        rows = [[sample_id, subject, shuffled[int(subject[5:]) - 1]] for sample_id, subject, _ in rows]
    sheet = write_table(folder / "samples.tsv", ["sample_id", "subject_id", "status"], rows)
    return ingest(sheet, folder / "donors.store", [reps]).path


@pytest.fixture(scope="module")
def donors(tmp_path_factory) -> Path:
    return make_donor_cohort(tmp_path_factory.mktemp("donors"))


def donor_of(sample_id: str) -> str:
    return sample_id[:3]


def assert_no_donor_on_both_sides(assignment: dict[str, str]) -> None:
    sides: dict[str, set[str]] = {}
    for sample_id, side in assignment.items():
        sides.setdefault(donor_of(sample_id), set()).add(side)
    assert all(len(s) == 1 for s in sides.values()), sides


# ---- donors, not samples -------------------------------------------------------------------------
@pytest.mark.parametrize("split", [SplitSpec(folds=3), SplitSpec(folds=5), SplitSpec(),
                                   SplitSpec(group_column="subject_id")])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_donor_is_never_on_both_sides_of_a_fold_or_split(donors, split, seed):
    store = Store.open(donors)
    assignments = split_assignments(store, [TargetSpec("status")], split, TrainConfig(seed=seed))
    assert len(assignments) == (split.folds or 1)
    for assignment in assignments:
        assert len(assignment) == 32
        assert_no_donor_on_both_sides(assignment)
    if split.folds:  # every repertoire tested once; folds stay balanced by label
        tested = [i for a in assignments for i, s in a.items() if s == "test"]
        assert sorted(tested) == sorted(store.sample_ids)
        labels = store.labels("status")
        for assignment in assignments:
            test = [labels[i] for i, s in assignment.items() if s == "test"]
            assert abs(test.count("+") - test.count("-")) <= 2, test


def test_without_grouping_a_donor_can_straddle_and_the_log_names_the_column(donors, caplog):
    store = Store.open(donors)
    caplog.set_level("INFO", logger="repclass.training.splits")
    split_assignments(store, [TargetSpec("status")], SplitSpec(folds=4), TrainConfig())
    assert "column 'subject_id' groups the 32 labelled repertoires into 16 donors" in caplog.text
    ungrouped = split_assignments(store, [TargetSpec("status")], SplitSpec(folds=4, group_column="none"),
                                  TrainConfig())
    with pytest.raises(AssertionError):  # what grouping prevents: the ungrouped folds split donors
        for assignment in ungrouped:
            assert_no_donor_on_both_sides(assignment)


def test_group_column_errors_are_one_line_usage_errors(donors, tmp_path):
    result = run("train", donors, "--target", "status", "--method", "burden", "--group-column", "donor", "--out",
                 tmp_path / "b")
    assert result.exit_code == 2 and "--group-column 'donor' is not a column of the store's sheet" in result.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
    result = run("train", donors, "--target", "status", "--permutations", -1, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "--permutations" in result.output
    store = Store.open(donors)
    with pytest.raises(UsageError, match="--group-column 'donor' is not a column"):
        split_assignments(store, [TargetSpec("status")], SplitSpec(group_column="donor"), TrainConfig())
    with pytest.raises(UsageError, match="needs at least 20 donors"):
        split_assignments(store, [TargetSpec("status")], SplitSpec(folds=20), TrainConfig())


@pytest.mark.parametrize("method", ["kmer", "burden"])
def test_every_method_keeps_donors_together_through_the_cli(donors, tmp_path, method):
    out = tmp_path / method
    result = run("train", donors, "--target", "status", "--method", method, "--folds", 3, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    for k in range(1, 4):
        assert_no_donor_on_both_sides(json.loads((out / f"fold_{k}" / "model.json").read_text())["splits"])
    pooled = pl.read_csv(out / "out_of_fold_predictions.tsv", separator="\t")
    assert sorted(pooled["sample_id"].to_list()) == sorted(Store.open(donors).sample_ids)
    summary = pl.read_csv(out / "folds_summary.tsv", separator="\t")
    auc = summary.filter((pl.col("split") == "test") & (pl.col("metric") == "roc_auc")).row(0, named=True)
    assert auc["pooled_low"] <= auc["pooled"] <= auc["pooled_high"]
    text = (out / "summary.md").read_text()
    assert "pooled out-of-fold ROC AUC, 95% interval" in text and "Caution: the held-out set is small" not in text
    assert "column 'subject_id' groups the 32 labelled repertoires into 16 donors" in text


# ---- intervals -----------------------------------------------------------------------------------
def test_the_interval_covers_the_true_auc_in_about_95_percent_of_cohorts():
    """Normal scores, positives shifted by d: the true AUC is Phi(d / sqrt 2)."""
    rng = np.random.default_rng(2026)
    shift = 1.0
    truth = 0.5 * (1 + math.erf(shift / 2))  # Phi(d / sqrt(2)) = (1 + erf(d / 2)) / 2
    covered = 0
    repeats = 100
    for repeat in range(repeats):
        y = np.repeat([True, False], 40)
        scores = rng.normal(size=80) + shift * y
        _, low, high = roc_auc_interval(y, scores, n_resamples=300, seed=repeat)
        covered += low <= truth <= high
    assert 0.88 <= covered / repeats <= 0.99, covered


# ---- the permutation test ------------------------------------------------------------------------
def test_permutation_p_value_counts_the_observed_itself():
    assert permutation_p(0.9, [0.5] * 19) == pytest.approx(0.05)
    assert permutation_p(0.5, [0.4, 0.6, 0.5, math.nan]) == pytest.approx(4 / 5)


def test_donors_exchange_labels_whole():
    ids = [f"d{d}{t}" for d in range(6) for t in "ab"] + ["solo"]
    groups = {i: i[:2] for i in ids}
    for seed in range(5):
        sources = permuted_sources(ids, groups, np.random.default_rng(seed))
        assert sorted(sources.values()) == sorted(ids)
        for donor in {i[:2] for i in ids if i != "solo"}:
            assert len({sources[f"{donor}a"][:2], sources[f"{donor}b"][:2]}) == 1
        assert sources["solo"] == "solo"  # the only donor of its size keeps its labels
    assert permuted_sources(ids, groups, np.random.default_rng(1)) == permuted_sources(ids, groups,
                                                                                      np.random.default_rng(1))


@pytest.mark.parametrize("signal", [True, False])
def test_permutation_p_value_is_small_with_a_signal_and_large_without(tmp_path, signal):
    """19 permutations x 3 folds of the burden baseline (about 4 s): the floor p = 0.05 on a strong
    signal, a large p once the same repertoires' labels are shuffled among the donors."""
    store = make_donor_cohort(tmp_path / "cohort", n_donors=20, n_sequences=40, seed=5, shuffle_labels=not signal)
    out = tmp_path / "burden"
    result = run("train", store, "--target", "status", "--method", "burden", "--folds", 3, "--permutations", 19,
                 "--seed", 2, "--out", out, "--inner-folds", 2, "--threads", 1)
    assert result.exit_code == 0, result.output
    null = pl.read_csv(out / "permutations.tsv", separator="\t")
    assert null.height == 19 and null["permutation"].to_list() == list(range(1, 20))
    summary = pl.read_csv(out / "folds_summary.tsv", separator="\t")
    row = summary.filter((pl.col("split") == "test") & (pl.col("metric") == "roc_auc")).row(0, named=True)
    assert row["permutations"] == 19
    if signal:
        assert row["permutation_p"] == pytest.approx(0.05)
        assert "permutation p = 0.05 (none of 19 permutations did as well)" in (out / "summary.md").read_text()
    else:
        assert row["permutation_p"] > 0.2
        assert "The permutation test finds no signal" in (out / "summary.md").read_text()
    assert not list(tmp_path.glob(".burden.permutations*"))


# ---- the comparison, in words --------------------------------------------------------------------
def test_comparison_gives_each_method_an_interval_and_says_which_to_trust(donors, tmp_path):
    out = tmp_path / "cmp"
    result = run("train", donors, "--target", "status", "--method", "kmer", "--method", "burden", "--folds", 3,
                 "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    table = pl.read_csv(out / "comparison.tsv", separator="\t")
    pooled = table.filter((pl.col("fold") == "pooled") & (pl.col("metric") == "roc_auc"))
    assert pooled["method"].to_list() == ["kmer", "burden"]
    assert (pooled["test_low"] <= pooled["test"]).all() and (pooled["test"] <= pooled["test_high"]).all()
    text = (out / "summary.md").read_text()
    assert "k-mer " in text and "burden " in text and "[" in text
    assert "trust" in text or "does not tell them apart" in text


def test_the_words_name_the_intervals_the_best_method_and_the_caveat():
    estimates = [Estimate("deeprc", "status", "roc_auc", 0.62, 0.55, 0.69, n=120, n_positive=60, n_negative=60,
                          pooled=True, p_value=0.004, n_permutations=999),
                 Estimate("kmer", "status", "roc_auc", 0.66, 0.59, 0.73, n=120, n_positive=60, n_negative=60,
                          pooled=True),
                 Estimate("burden", "status", "roc_auc", 0.87, 0.83, 0.91, n=120, n_positive=60, n_negative=60,
                          pooled=True)]
    assert describe(estimates) == ("status: pooled out-of-fold ROC AUC, 95% interval: DeepRC 0.62 [0.55-0.69], "
                                   "k-mer 0.66 [0.59-0.73], burden 0.87 [0.83-0.91]; permutation p (999 permutations): "
                                   "DeepRC < 0.01")
    alone = [replace(estimates[2], p_value=0.05, n_permutations=19)]
    assert describe(alone).endswith("burden 0.87 [0.83-0.91]; permutation p = 0.05 (none of 19 permutations did "
                                    "as well)")
    assert recommendation(estimates).startswith("status: trust burden: its held-out ROC AUC (0.87) is the highest")
    close = [estimates[0], Estimate("kmer", "status", "roc_auc", 0.66, 0.60, 0.72, n=20, n_positive=8,
                                    n_negative=12, pooled=True)]
    words = recommendation(close)
    assert "k-mer has the highest held-out ROC AUC (0.66), but its interval overlaps DeepRC's" in words
    assert "Caution: the held-out set is small, 20 repertoires (8 positive, 12 negative)" in words
    assert small_caveat(estimates[0]) == ""


def test_the_permutation_null_is_seeded(donors, tmp_path):
    """The same folder, seed and N give the same null, and the work folder is removed."""
    from repclass.baselines.burden import BurdenConfig, train_burden
    from repclass.comparison import permutation_null

    store = Store.open(donors)
    burden = BurdenConfig(inner_folds=2)
    train_burden(store, tmp_path / "b", targets=["status"], split=SplitSpec(folds=3), burden=burden)
    nulls = [permutation_null("burden", store, tmp_path / "b", [TargetSpec("status")], 1, tmp_path / f"w{i}",
                              split=SplitSpec(folds=3), config=TrainConfig(seed=seed), burden=burden)
             for i, seed in enumerate([4, 4])]
    assert nulls[0] == nulls[1] and [r["permutation"] for r in nulls[0]] == [1]
    assert not any((tmp_path / f"w{i}").exists() for i in range(2))
