"""Baselines (`repclass train --method kmer|burden`) and method comparisons: k-mer features
against a plain Python reference, each method end to end through the CLI, predict on baseline
folders, comparison tables, determinism, refusals."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from support.cohort import MOTIF, background_pool, implant
from support.files import write_airr, write_table
from repclass.alphabet import AMINO_ACIDS
from repclass.baselines import KmerConfig, KmerSpec, kmer_counts, kmer_features, kmer_vector, train_kmer
from repclass.baselines.burden import BurdenConfig, train_burden
from repclass.clonotypes import enrichment_p_values
from repclass.cli import main
from repclass.io.store import Store

FAST = ["--kmer-size", "3", "--inner-folds", "3", "--threads", "1"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- a cohort that both baselines can separate ---------------------------------------------------
def make_public_cohort(folder: Path, n_repertoires: int = 40, n_sequences: int = 300, seed: int = 1):
    """Positives carry the motif (8% of sequences) and each of 12 public clonotypes with
    probability 0.6 (negatives 0.05). Labels: status (+/-), age (numbers, higher in positives),
    hla (three classes)."""
    rng = np.random.default_rng(seed)
    pool = background_pool()
    order = rng.permutation(len(pool))
    public = [pool[i] for i in order[:12]]
    background = [pool[i] for i in order[12:]]
    reps = folder / "reps"
    reps.mkdir(parents=True)
    labels = np.array(["+", "-"] * (n_repertoires // 2))
    rng.shuffle(labels)
    rows = []
    for index, label in enumerate(labels, start=1):
        sample_id = f"p{index:02d}"
        chosen = [background[i] for i in rng.choice(len(background), n_sequences, replace=False)]
        if label == "+":
            for i in rng.choice(n_sequences, int(0.08 * n_sequences), replace=False):
                chosen[i] = implant(chosen[i], MOTIF, rng)
        share = 0.6 if label == "+" else 0.05
        chosen += [c for c in public if rng.random() < share]
        chosen = list(dict.fromkeys(chosen))
        write_airr(reps / f"{sample_id}.tsv", [[f"{sample_id}_{i}", s, "TRBV5-1*01", "TRBJ2-7*01",
                                                 int(1 + rng.geometric(0.5)), "T", "TRB"]
                                                for i, s in enumerate(chosen)])
        age = (50 if label == "+" else 30) + int(rng.integers(-5, 6))
        rows.append([sample_id, label, str(age), str(rng.choice(["A", "B", "C"]))])
    sheet = write_table(folder / "samples.tsv", ["sample_id", "status", "age", "hla"], rows)
    return sheet, reps, public


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from repclass import ingest

    folder = tmp_path_factory.mktemp("public")
    sheet, reps, public = make_public_cohort(folder)
    store = ingest(sheet, folder / "public.store", [reps])
    return store.path, public


# ---- k-mer features ------------------------------------------------------------------------------
def reference_counts(sequences: list[str], k: int, gap: int, counts: list[int] | None) -> Counter:
    first = (k + 1) // 2
    offsets = list(range(first)) + list(range(first + gap, k + gap))
    result: Counter = Counter()
    for index, sequence in enumerate(sequences):
        for start in range(len(sequence) - (k + gap) + 1):
            kmer = "".join(sequence[start + o] for o in offsets)
            result[kmer] += 1 if counts is None else counts[index]
    return result


def kmer_id(kmer: str) -> int:
    value = 0
    for letter in kmer:
        value = value * 20 + AMINO_ACIDS.index(letter)
    return value


@pytest.mark.parametrize("k, gap, weighted", [(1, 0, False), (3, 0, False), (4, 0, True), (4, 1, False),
                                              (3, 2, True), (5, 0, False)])
def test_kmer_counts_equal_a_python_reference(k, gap, weighted):
    sequences = ["CASSLGQETQYF", "CAW", "CASSPGTGELFF", "C", "CSARDRTGNGYTF", "WQRYWQRY"]
    counts = [3, 1, 2, 5, 1, 4]
    spec = KmerSpec(k=k, gap=gap, count_weighted=weighted)
    got = kmer_counts(pl.Series(sequences), spec, np.array(counts))
    expected = reference_counts(sequences, k, gap, counts if weighted else None)
    assert got.shape == (20 ** k,)
    assert got.sum() == sum(expected.values())
    for kmer, value in expected.items():
        assert got[kmer_id(kmer)] == value, kmer
    if gap:
        assert spec.names(np.array([kmer_id(next(iter(expected)))]))[0].count(".") == gap


def test_kmer_features_are_frequencies_of_each_repertoire(cohort):
    store_path, _ = cohort
    store = Store.open(store_path)
    ids = store.sample_ids[:3]
    matrix = kmer_features(store, ids, 3)
    assert matrix.shape == (3, 8000) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-5)
    for row, sample_id in zip(matrix, ids):
        table = store.read(sample_id)
        expected = reference_counts(table["junction_aa"].to_list(), 3, 0, None)
        total = sum(expected.values())
        assert row[kmer_id("CAS")] == pytest.approx(expected["CAS"] / total, rel=1e-6)
        np.testing.assert_array_equal(row, kmer_vector(table, KmerSpec(3)))
    columns = np.array([kmer_id("CAS"), kmer_id("WQR")])
    np.testing.assert_array_equal(kmer_features(store, ids, 3, columns), matrix[:, columns])
    weighted = KmerSpec(3, gap=1, count_weighted=True)
    full = kmer_features(store, ids, weighted)
    np.testing.assert_array_equal(kmer_features(store, ids, weighted, columns), full[:, columns])


def test_select_columns_keeps_the_most_common_kmers(cohort):
    from repclass.baselines.features import select_columns

    store_path, _ = cohort
    store = Store.open(store_path)
    ids = store.sample_ids[:5]
    spec = KmerSpec(3)
    assert select_columns(store, ids, spec, 8000) is None
    kept = select_columns(store, ids, spec, 50)
    presence = (kmer_features(store, ids, spec) > 0).sum(axis=0)
    assert len(kept) == 50 and (np.diff(kept) > 0).all()
    assert presence[kept].min() >= np.delete(presence, kept).max()


@pytest.mark.parametrize("bad", [dict(k=0), dict(k=6), dict(k=3, gap=9)])
def test_kmer_settings_are_checked(bad):
    from repclass.errors import UsageError

    with pytest.raises(UsageError):
        KmerConfig(**bad)


# ---- the k-mer baseline --------------------------------------------------------------------------
def test_kmer_through_the_cli_beats_chance_and_predict_agrees(cohort, tmp_path):
    store_path, _ = cohort
    out = tmp_path / "kmer"
    result = run("train", store_path, "--target", "status", "--method", "kmer", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    for name in ("model.json", "baseline.safetensors", "metrics.json", "metrics.tsv", "predictions.tsv",
                 "config.json", "kmer_coefficients.tsv"):
        assert (out / name).exists(), name
    description = json.loads((out / "model.json").read_text())
    assert description["method"] == "kmer" and description["settings"]["kmer"]["k"] == 3
    assert description["store_fingerprint"] == Store.open(store_path).fingerprint
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["status"]["roc_auc"] >= 0.9
    assert metrics["validation"]["status"]["roc_auc"] >= 0.9
    coefficients = pl.read_csv(out / "kmer_coefficients.tsv", separator="\t")
    top = coefficients["kmer"].head(5).to_list()
    assert any(kmer in MOTIF for kmer in top), top  # the implanted motif's 3-mers lead

    result = run("predict", out, store_path, "--out", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.output
    trained = pl.read_csv(out / "predictions.tsv", separator="\t").sort("sample_id")
    predicted = pl.read_csv(tmp_path / "p.tsv", separator="\t").sort("sample_id")
    assert predicted["sample_id"].to_list() == trained["sample_id"].to_list()
    assert predicted["split"].to_list() == trained["split"].to_list()
    np.testing.assert_allclose(predicted["status:p(+)"].to_numpy(), trained["status:p(+)"].to_numpy(), atol=1e-6)

    refused = run("predict", out, store_path, "--out", tmp_path / "a.tsv", "--attention", "5")
    assert refused.exit_code == 2 and "attention" in refused.output


def test_kmer_library_api_uses_deeprc_splits(cohort, tmp_path):
    from repclass.config import TrainConfig
    from repclass.training.splits import SplitSpec, split_assignments
    from repclass.targets import TargetSpec

    store_path, _ = cohort
    store = Store.open(store_path)
    config = TrainConfig(seed=3)
    result = train_kmer(store, tmp_path / "api", targets=["status"], config=config,
                        kmer=KmerConfig(k=3, gap=1, inner_folds=3, n_strengths=4))
    assert result.path == tmp_path / "api"
    assert result.metrics["test"]["status"]["roc_auc"] > 0.5
    expected = split_assignments(store, [TargetSpec("status")], SplitSpec(), config)[0]
    assert json.loads((tmp_path / "api" / "model.json").read_text())["splits"] == expected


def test_kmer_chooses_k_by_inner_cv_and_fits_on_training_and_validation(cohort, tmp_path):
    """The fair k-mer baseline: k from 3, 4, 5 by inner CV (recorded), fitted on the 80% of the
    labelled repertoires that DeepRC learns from, and scored the same way by predict."""
    from safetensors.numpy import load_file

    store_path, _ = cohort
    out = tmp_path / "fair"
    assert KmerConfig().candidates == [3, 4, 5] and KmerConfig(k=4).candidates == [4]
    train_kmer(store_path, out, targets=["status"], kmer=KmerConfig(k_choices=(3, 2), inner_folds=3, n_strengths=3))
    description = json.loads((out / "model.json").read_text())
    fit = description["fits"][0]
    assert [entry["k"] for entry in fit["inner_cv_k"]] == [2, 3]  # (2 and 3: cheap stand-ins for 3, 4, 5)
    assert fit["k"] == min(fit["inner_cv_k"], key=lambda entry: entry["loss"])["k"]
    assert description["settings"]["kmer"]["k"] == fit["k"] and fit["fitted_on"] == ["train", "validation"]
    fitted = sorted(i for i, split in description["splits"].items() if split != "test")
    tensors = load_file(str(out / "baseline.safetensors"))
    features = kmer_features(Store.open(store_path), fitted, KmerSpec(fit["k"]))  # standardised on these rows
    np.testing.assert_allclose(tensors["target0.mean"], features[:, tensors["target0.feature_ids"]].mean(axis=0),
                               rtol=1e-5)
    # a folder written before k was chosen (no k_choices in its settings) still predicts
    del description["settings"]["kmer"]["k_choices"]
    (out / "model.json").write_text(json.dumps(description))
    result = run("predict", out, store_path, "--out", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.output
    trained = pl.read_csv(out / "predictions.tsv", separator="\t").sort("sample_id")
    predicted = pl.read_csv(tmp_path / "p.tsv", separator="\t").sort("sample_id")
    np.testing.assert_allclose(predicted["status:p(+)"].to_numpy(), trained["status:p(+)"].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("target, extra, metric", [
    ("age", ["--type", "age=regression"], "r2"),
    ("hla", [], "macro_auc"),
])
def test_kmer_regression_and_multiclass(cohort, tmp_path, target, extra, metric):
    store_path, _ = cohort
    out = tmp_path / target
    result = run("train", store_path, "--target", target, *extra, "--method", "kmer", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test"][target][metric])
    if metric == "r2":  # age follows the status the motif marks
        assert metrics["test"][target]["pearson_r"] > 0.5
    else:
        table = pl.read_csv(out / "predictions.tsv", separator="\t")
        total = sum(table[f"hla:p({c})"].to_numpy() for c in "ABC")
        np.testing.assert_allclose(total, 1.0, atol=1e-9)
    result = run("predict", out, store_path, "--out", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.output


# ---- the burden baseline -------------------------------------------------------------------------
def test_fisher_p_values_equal_scipy():
    from scipy.stats import fisher_exact

    a = np.array([5, 3, 0, 7, 2])
    b = np.array([0, 2, 4, 1, 2])
    p = enrichment_p_values(a, b, 8, 9)
    for ai, bi, pi in zip(a, b, p):
        expected = fisher_exact([[ai, 8 - ai], [bi, 9 - bi]], alternative="greater").pvalue
        assert pi == pytest.approx(expected, rel=1e-9)


def test_burden_through_the_cli_finds_the_public_clonotypes(cohort, tmp_path):
    store_path, public = cohort
    out = tmp_path / "burden"
    result = run("train", store_path, "--target", "status", "--method", "burden", "--out", out, "--inner-folds", 3)
    assert result.exit_code == 0, result.output
    enriched = pl.read_csv(out / "enriched_clonotypes.tsv", separator="\t")
    assert enriched.columns == ["target", "clonotype", "p_value", "in_positive", "in_negative", "n_positive",
                                "n_negative"]
    assert enriched.height > 0 and set(enriched["clonotype"].to_list()) <= set(public)
    assert (enriched["in_positive"] >= 2).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["status"]["roc_auc"] >= 0.8
    result = run("predict", out, store_path, "--out", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.output
    trained = pl.read_csv(out / "predictions.tsv", separator="\t").sort("sample_id")
    predicted = pl.read_csv(tmp_path / "p.tsv", separator="\t").sort("sample_id")
    np.testing.assert_allclose(predicted["status:p(+)"].to_numpy(), trained["status:p(+)"].to_numpy(), atol=1e-6)


def test_burden_with_v_and_j_in_the_clonotype(cohort, tmp_path):
    store_path, public = cohort
    result = train_burden(store_path, tmp_path / "vj", targets=["status"],
                          burden=BurdenConfig(clonotype="junction_vj", inner_folds=3))
    enriched = pl.read_csv(tmp_path / "vj" / "enriched_clonotypes.tsv", separator="\t")
    assert all(c.endswith("|TRBV5-1|TRBJ2-7") for c in enriched["clonotype"].to_list())
    assert result.metrics["test"]["status"]["roc_auc"] >= 0.8


@pytest.mark.parametrize("args", [["--target", "hla"], ["--target", "status", "--type", "status=multiclass"],
                                  ["--target", "age"]])
def test_burden_refuses_non_binary_targets(cohort, tmp_path, args):
    store_path, _ = cohort
    result = run("train", store_path, *args, "--method", "burden", "--out", tmp_path / "b")
    assert result.exit_code == 2, result.output
    assert "binary" in result.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


# ---- comparisons ---------------------------------------------------------------------------------
def test_comparison_with_folds_is_deterministic(cohort, tmp_path):
    store_path, _ = cohort
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = run("train", store_path, "--target", "status", "--method", "kmer", "--method", "burden",
                     "--folds", 3, "--seed", 5, "--out", out, *FAST)
        assert result.exit_code == 0, result.output
        outputs.append(out)
    table = pl.read_csv(outputs[0] / "comparison.tsv", separator="\t")
    assert table.columns == ["method", "fold", "target", "metric", "validation", "test", "test_low", "test_high",
                             "permutation_p", "permutations"]
    auc = table.filter(pl.col("metric") == "roc_auc")
    assert sorted(set(auc["method"].to_list())) == ["burden", "kmer"]
    assert sorted(set(auc["fold"].to_list())) == ["1", "2", "3", "pooled"]
    assert auc.filter((pl.col("method") == "kmer") & (pl.col("fold") == "pooled"))["test"][0] >= 0.9
    for method in ("kmer", "burden"):
        assert (outputs[0] / method / "folds_summary.tsv").exists()
        # the same folds for every method
        splits = [json.loads((outputs[0] / method / f"fold_{i}" / "model.json").read_text())["splits"]
                  for i in (1, 2, 3)]
        assert splits == [json.loads((outputs[0] / "kmer" / f"fold_{i}" / "model.json").read_text())["splits"]
                          for i in (1, 2, 3)]
    files = sorted(p.relative_to(outputs[0]) for p in outputs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outputs[1]) for p in outputs[1].rglob("*") if p.is_file())
    for relative in files:
        if relative.name == "config.json":  # names the output folder's store path only
            continue
        assert (outputs[0] / relative).read_bytes() == (outputs[1] / relative).read_bytes(), relative
    result = run("predict", outputs[0] / "kmer", store_path, "--out", tmp_path / "ensemble.tsv")
    assert result.exit_code == 0, result.output


def test_comparison_with_deeprc_uses_the_same_split(cohort, tmp_path):
    store_path, _ = cohort
    out = tmp_path / "cmp"
    result = run("train", store_path, "--target", "status", "--method", "deeprc", "--method", "kmer",
                 "--updates", 10, "--eval-every", 5, "--sequences-per-bag", 200, "--device", "cpu", "--out", out,
                 *FAST)
    assert result.exit_code == 0, result.output
    assert (out / "deeprc" / "model.safetensors").exists() and (out / "comparison.png").exists()
    deeprc = json.loads((out / "deeprc" / "model.json").read_text())["splits"]
    assert json.loads((out / "kmer" / "model.json").read_text())["splits"] == deeprc
    table = pl.read_csv(out / "comparison.tsv", separator="\t")
    assert table.filter(pl.col("metric") == "roc_auc")["method"].to_list() == ["deeprc", "kmer"]
    assert not (tmp_path / "cmp.partial").exists()


def test_fit_kmer_on_a_plain_matrix():
    from repclass.baselines import fit_kmer

    rng = np.random.default_rng(0)
    features = rng.random((60, 400)).astype(np.float32)
    labels = (features[:, 7] + 0.1 * rng.random(60) > 0.55).astype(np.int64)
    fit = fit_kmer(features, labels, "binary", KmerConfig(n_strengths=4, inner_folds=3))
    assert 7 in fit.feature_ids.tolist()
    logits = fit.outputs(features[:, fit.feature_ids])[:, 0]
    assert ((logits > 0) == (labels == 1)).mean() > 0.9
    values = features[:, 3] * 10 + 0.01 * rng.random(60)
    fit = fit_kmer(features, values, "regression", KmerConfig(n_strengths=4, inner_folds=3))
    predicted = fit.outputs(features[:, fit.feature_ids])[:, 0] * values.std() + values.mean()
    assert np.corrcoef(predicted, values)[0, 1] > 0.9


def test_outputs_follow_the_replacement_rules(cohort, tmp_path):
    store_path, _ = cohort
    out = tmp_path / "kmer"
    args = ["train", store_path, "--target", "status", "--method", "kmer", *FAST]
    assert run(*args, "--out", out).exit_code == 0
    assert run(*args, "--out", out).exit_code == 1  # exists: --force needed
    assert run(*args, "--out", out, "--force").exit_code == 0
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("raw data")
    for methods in (["--method", "kmer"], ["--method", "kmer", "--method", "burden"]):
        result = run("train", store_path, "--target", "status", *methods, *FAST, "--out", other, "--force")
        assert result.exit_code == 2, result.output
        assert (other / "keep.txt").read_text() == "raw data"
    result = run(*args, "--out", store_path / "inside")
    assert result.exit_code == 2 and "inside the input" in result.output
    compare = tmp_path / "cmp"
    both = ["train", store_path, "--target", "status", "--method", "kmer", "--method", "burden", *FAST]
    assert run(*both, "--out", compare).exit_code == 0
    assert run(*both, "--out", compare).exit_code == 1
    assert run(*both, "--out", compare, "--force").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("min_incidence", [1, 2, 3])
def test_burden_incidence_equals_a_python_count(cohort, min_incidence):
    from repclass.clonotypes import clonotype_incidence

    store_path, _ = cohort
    store = Store.open(store_path)
    ids = store.sample_ids[:12]
    incidence = clonotype_incidence(store, ids, "junction", min_incidence)
    sets = [set(store.read(i)["junction_aa"].to_list()) for i in ids]
    counts = Counter(c for s in sets for c in s)
    shared = {c for c, n in counts.items() if n >= min_incidence}
    assert len(incidence.hashes) == len(shared)
    assert incidence.sizes.tolist() == [len(s) for s in sets]
    per_repertoire = np.bincount(incidence.pair_repertoire, minlength=len(ids))
    assert per_repertoire.tolist() == [len(s & shared) for s in sets]
    held = np.bincount(incidence.pair_clonotype, minlength=len(incidence.hashes))
    assert sorted(held.tolist()) == sorted(counts[c] for c in shared)


@pytest.mark.parametrize("method", ["kmer", "burden"])
def test_predict_on_raw_files_matches_the_store(cohort, tmp_path, method):
    store_path, _ = cohort
    raw = store_path.parent / "reps"
    out = tmp_path / method
    assert run("train", store_path, "--target", "status", "--method", method, "--out", out, *FAST).exit_code == 0
    result = run("predict", out, raw / "p01.tsv", raw / "p02.tsv", "--out", tmp_path / "raw.tsv")
    assert result.exit_code == 0, result.output
    result = run("predict", out, store_path, "--sample", "p01", "--sample", "p02", "--out", tmp_path / "store.tsv")
    assert result.exit_code == 0, result.output
    from_raw = pl.read_csv(tmp_path / "raw.tsv", separator="\t")
    from_store = pl.read_csv(tmp_path / "store.tsv", separator="\t")
    assert from_raw["sample_id"].to_list() == ["p01", "p02"]
    np.testing.assert_array_equal(from_raw["status:p(+)"].to_numpy(), from_store["status:p(+)"].to_numpy())
