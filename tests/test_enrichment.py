"""DeepRC's enrichment path (ModelConfig.enrichment, repclass/model/enrichment.py): cross-fitting,
predict reproducing training, model files, and the default model left as it was."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from support.cohort import TINY_TRAIN, background_pool
from support.files import write_airr, write_table

PUBLIC = ["CASSLGQGNTEAFF", "CASSPDRGYEQYF", "CASRTGGSYNEQFF", "CASSQEGTGELFF", "CASSLAPGATNEKLFF",
          "CASSYSGRDTQYF", "CASSVDWGSYEQYF", "CASSPTSGGQETQYF"]


@pytest.fixture(scope="module")
def public_store(tmp_path_factory):
    """16 repertoires of 80 background junctions; each positive also holds 4 of 8 public junctions."""
    from repclass import ingest

    folder = tmp_path_factory.mktemp("public")
    (folder / "reps").mkdir()
    rng = np.random.default_rng(3)
    pool = background_pool()
    labels = np.array(["+", "-"] * 8)
    rng.shuffle(labels)
    rows = []
    for index, label in enumerate(labels, start=1):
        sample_id = f"r{index:02d}"
        junctions = [pool[i] for i in rng.choice(len(pool), 80, replace=False)]
        if label == "+":
            junctions += [PUBLIC[i] for i in rng.choice(len(PUBLIC), 4, replace=False)]
        write_airr(folder / "reps" / f"{sample_id}.tsv",
                   [[f"{sample_id}_{i}", s, "TRBV5-1*01", "TRBJ2-7*01", 1, "T", "TRB"]
                    for i, s in enumerate(junctions)])
        rows.append([sample_id, label])
    sheet = write_table(folder / "samples.tsv", ["sample_id", "status"], rows)
    return ingest(sheet, folder / "public.store", [folder / "reps"])


@pytest.fixture(scope="module")
def enriched_model(public_store, tmp_path_factory):
    from repclass.config import ModelConfig, TrainConfig
    from repclass.training.loop import train

    out = tmp_path_factory.mktemp("enriched") / "model"
    # 8 training repertoires cannot clear the gate's chance bound (4 against 4: above 1): kept on by hand
    config = TrainConfig(max_updates=5, eval_every=5, seed=0, init_kmers=0, validation_fraction=0.25,
                         test_fraction=0.25, enrichment_folds=3, enrichment_gate=False)
    return train(public_store.path, out, targets=["status"], config=config,
                 model_config=ModelConfig(enrichment=True), device="cpu")


def test_cross_fitted_feature_never_reads_own_label(public_store, monkeypatch):
    """Flipping one training repertoire's label (inner folds fixed) changes the others' features
    but never its own: its own feature comes from enrichment on the folds it is not in."""
    import repclass.training.enrichment as fitting
    from repclass.training.enrichment import fit_enrichment

    ids = public_store.sample_ids
    labels = public_store.labels("status")
    positive = np.array([labels[i] == "+" for i in ids])
    folds = [(np.setdiff1d(np.arange(len(ids)), held), held)
             for held in np.array_split(np.random.default_rng(0).permutation(len(ids)), 4)]
    monkeypatch.setattr(fitting, "dealt_inner_folds", lambda *args, **kwargs: folds)
    base = fit_enrichment(public_store, ids, positive, 4, seed=0, thresholds=(0.5,), min_positive=2)
    assert base.train_features[positive].mean() > base.train_features[~positive].mean()
    assert set(base.junctions) <= set(PUBLIC) | set(background_pool())
    others_changed = False
    for flipped in [*np.flatnonzero(positive)[:2], *np.flatnonzero(~positive)[:2]]:
        labels_flipped = positive.copy()
        labels_flipped[flipped] = not labels_flipped[flipped]
        fit = fit_enrichment(public_store, ids, labels_flipped, 4, seed=0, thresholds=(0.5,), min_positive=2)
        assert fit.train_features[flipped] == base.train_features[flipped]
        others_changed |= not np.array_equal(np.delete(fit.train_features, flipped),
                                             np.delete(base.train_features, flipped))
    assert others_changed  # the labels do matter, to the other folds' features


def test_inner_folds_keep_a_donors_repertoires_together(public_store, monkeypatch):
    """With donors (two repertoires each), no inner fold fits the enriched set on one of a donor's
    repertoires and scores the other: the donor's own clonotypes would leak into its feature."""
    import repclass.training.enrichment as fitting
    from repclass.training.enrichment import fit_enrichment

    ids = public_store.sample_ids
    labels = public_store.labels("status")
    positive = np.array([labels[i] == "+" for i in ids])
    order = np.argsort(positive, kind="stable")  # donors pair repertoires of one class
    donor = {ids[row]: f"d{rank // 2}" for rank, row in enumerate(order)}
    used = []
    real = fitting.dealt_inner_folds
    monkeypatch.setattr(fitting, "dealt_inner_folds", lambda *a, **k: used.append(real(*a, **k)) or used[-1])
    fit_enrichment(public_store, ids, positive, 4, seed=0, thresholds=(0.5,), min_positive=2,
                   groups=[donor[i] for i in ids])
    assert len(used) == 1 and len(used[0]) >= 2
    for fit_rows, held_rows in used[0]:
        assert not {donor[ids[r]] for r in fit_rows} & {donor[ids[r]] for r in held_rows}


def test_the_path_is_used_only_where_its_inner_cv_reads_the_labels(public_store):
    """The gate (EnrichmentFit.reads_labels): public clonotypes in the positives clear the chance
    bound; the same repertoires with labels unrelated to them do not; the bound is the one-sided
    1% bound of a chance AUC and falls with the cohort's size."""
    from repclass.model.enrichment import chance_auc_bound
    from repclass.training.enrichment import fit_enrichment

    ids = public_store.sample_ids
    labels = public_store.labels("status")
    positive = np.array([labels[i] == "+" for i in ids])
    fit = fit_enrichment(public_store, ids, positive, 4, seed=0)
    assert fit.n_positive == fit.n_negative == 8
    assert fit.held_out_auc > fit.chance_bound == pytest.approx(0.5 + 2.33 * np.sqrt(17 / (12 * 64)))
    assert fit.reads_labels
    unrelated = np.random.default_rng(5).permutation(positive)
    shuffled = fit_enrichment(public_store, ids, unrelated, 4, seed=0)
    assert not shuffled.reads_labels and shuffled.held_out_auc < shuffled.chance_bound
    assert chance_auc_bound(125, 125) == pytest.approx(0.5854, abs=1e-3)
    assert chance_auc_bound(4, 4) > 1.0 and chance_auc_bound(500, 500) < chance_auc_bound(50, 50)


def test_predict_reproduces_training_scores_with_the_path(enriched_model, public_store, tmp_path):
    from repclass.prediction.run import predict

    metrics = enriched_model.metrics["enrichment"]
    assert metrics["n_junctions"] > 0 and metrics["inner_folds"] == 3
    trained = pl.read_csv(enriched_model.path / "predictions.tsv", separator="\t")
    predicted = predict(enriched_model.path, [public_store.path], tmp_path / "p.tsv", device="cpu").table
    joined = trained.join(predicted, on="sample_id", suffix="_predict")
    assert joined.height == 16
    np.testing.assert_allclose(joined["status:p(+)"], joined["status:p(+)_predict"], rtol=0, atol=1e-6)
    # the path's own part of each logit is reported, and it separates the classes here
    label = predicted["status:label"].to_numpy()
    part = predicted["enrichment_logit"].to_numpy()
    assert part[label == "+"].mean() > part[label == "-"].mean()


def test_motifs_report_says_how_much_came_from_each_path(enriched_model, public_store, tmp_path):
    """`repclass motifs` on a model with the enrichment path: scores.tsv holds each repertoire's
    enrichment part of the output (predict's enrichment_logit for the explained class), and
    motifs.json and the report split the predictions' spread between the two paths."""
    import json

    from repclass.explain.run import motifs
    from repclass.prediction.run import predict

    motifs(enriched_model.path, public_store.path, tmp_path / "m", samples=public_store.sample_ids[:2],
           top_sequences=10, n_motifs=1, ig_steps=4, device="cpu", include_training=True)
    scores = pl.read_csv(tmp_path / "m" / "scores.tsv", separator="\t")
    predicted = predict(enriched_model.path, [public_store.path], tmp_path / "p.tsv", device="cpu").table
    joined = scores.join(predicted, on="sample_id")
    np.testing.assert_allclose(joined["enrichment_output"], joined["enrichment_logit"], rtol=1e-5, atol=1e-6)
    paths = json.loads((tmp_path / "m" / "motifs.json").read_text())["evidence"]["paths"]
    assert paths["n_repertoires"] == 16 and 0.0 < paths["enrichment_share"] < 1.0
    assert paths["enrichment_sd"] > 0 and paths["attention_sd"] > 0
    assert "the enrichment path holds" in (tmp_path / "m" / "report.html").read_text()


def test_saved_model_with_the_path_scores_identically(enriched_model, public_store, tmp_path):
    from repclass.model.checkpoint import load_model, read_info, save_model
    from repclass.model.data import encode_table
    from repclass.model.scoring import score_repertoire

    path = enriched_model.path / "model.safetensors"
    model, info = load_model(path)
    assert model.enrichment_codes.shape[0] == enriched_model.metrics["enrichment"]["n_junctions"]
    copy = save_model(tmp_path / "copy.safetensors", model, read_info(path))
    again, _ = load_model(copy)
    for sample_id in public_store.sample_ids[:6]:
        encoded = encode_table(public_store.read(sample_id, ["junction_aa"]))
        first, second = (score_repertoire(m, encoded, torch.device("cpu")) for m in (model, again))
        assert first.outputs.tolist() == second.outputs.tolist()
        assert first.composition == second.composition and first.composition_outputs is not None


def test_the_path_is_on_by_default_and_off_where_it_cannot_be_fitted(tiny_model, tiny_cohort, tmp_path, caplog):
    """Tried by default for one binary target; on the tiny cohort (motif witnesses in private
    junctions) its inner CV reads nothing, so the gate leaves it off: metrics.json says so and why,
    the model file holds no path. --no-enrichment (enrichment=False) gives the plain read-out with
    no buffer or setting of it in the file; a regression target trains without it and says so."""
    import logging

    from repclass.config import ModelConfig, TrainConfig
    from repclass.model.checkpoint import load_model
    from repclass.training.loop import train

    assert ModelConfig().enrichment and ModelConfig.from_dict({}).enrichment is False  # old files: off
    assert TrainConfig().enrichment_gate and "enrichment_gate" not in TrainConfig().to_dict()
    gate = tiny_model.metrics["enrichment"]
    assert gate["used"] is False and gate["held_out_auc"] <= gate["chance_bound"]
    model, info = load_model(tiny_model.path / "model.safetensors")
    assert not info.model_config.enrichment and not any("enrichment" in key for key in model.state_dict())
    store_path, _ = tiny_cohort
    small = {**TINY_TRAIN, "max_updates": 4, "eval_every": 2}
    plain = train(store_path, tmp_path / "plain", targets=["status"], device="cpu", config=TrainConfig(**small),
                  model_config=ModelConfig(enrichment=False))
    model, info = load_model(plain.path / "model.safetensors")
    assert not info.model_config.enrichment and "enrichment" not in plain.metrics
    assert not any("enrichment" in key for key in model.state_dict())
    pooled, evidence = torch.randn(3, model.embedding.out_features), torch.randn(3)
    assert torch.equal(model.read_out(pooled, evidence), model.read_out(pooled, evidence, None))
    from support.cohort import make_cohort
    from repclass import ingest

    sheet, reps, _ = make_cohort(tmp_path / "aged", n_repertoires=8, n_sequences=100, extra_labels=True)
    aged = ingest(sheet, tmp_path / "aged.store", [reps])
    with caplog.at_level(logging.INFO, logger="repclass"):
        numeric = train(aged, tmp_path / "numeric", targets=["age"], device="cpu", config=TrainConfig(**small))
    assert not load_model(numeric.path / "model.safetensors")[1].model_config.enrichment
    assert any("enrichment path off: it reads one binary target" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", ["python set", "polars"])
def test_enriched_share_is_the_weighted_share_of_distinct_junctions(path, monkeypatch):
    """The share a repertoire is scored with: the weights of its distinct junctions found in the set,
    over its number of distinct junctions, whatever the widths of the set and of the repertoire, with
    repeated junctions on both sides (a junction listed twice in the set keeps its last weight);
    the same through both paths (small and large repertoires)."""
    import copy
    import math
    import pickle

    import repclass.model.enrichment as enrichment
    from repclass.model.data import encode_table
    from repclass.model.enrichment import EnrichedLookup, encode_junctions

    monkeypatch.setattr(enrichment, "POLARS_FROM", 0 if path == "polars" else 10**9)

    rng = np.random.default_rng(11)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))

    def junctions(n, longest):  # few letters, so that short junctions repeat
        return ["".join(rng.choice(letters[:3], rng.integers(1, longest + 1))) for _ in range(n)]

    for set_longest, repertoire_longest in [(6, 6), (4, 20), (20, 4), (9, 17), (17, 9)]:
        listed = junctions(30, set_longest)
        listed += listed[:3]  # listed twice, the second time with other weights
        weights = rng.choice([0.2, 0.4, 0.6, 0.8, 1.0], len(listed))
        sequences = junctions(400, repertoire_longest) + listed[::4]
        repertoire = encode_table(pl.DataFrame({"junction_aa": sequences}))
        table = dict(zip(listed, weights))
        distinct = set(sequences)
        expected = math.fsum(table[j] for j in distinct if j in table) / len(distinct)
        lookup = EnrichedLookup(encode_junctions(listed), weights)
        share = lookup.share(repertoire)
        assert share == expected and share > 0
    assert EnrichedLookup(np.zeros((0, 1), np.uint8), np.zeros(0)).share(repertoire) == 0.0
    # kept while the repertoire lives (training scores its validation repertoires again and again);
    # a copy of the lookup (a model's deepcopy, a pickle) keeps none: their keys are object ids
    assert lookup.share(repertoire) == share and len(lookup._shares) == 1
    assert not copy.deepcopy(lookup)._shares and not pickle.loads(pickle.dumps(lookup))._shares
    del repertoire
    assert not lookup._shares
