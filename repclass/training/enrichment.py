"""Fitting DeepRC's enrichment path on the training split (`repclass.model.enrichment` holds the
path and says what it reads): the enriched clonotype set, cross-fitted on inner folds of the
training repertoires so that no repertoire's label enters its own feature.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from repclass.clonotypes import burden_scores, clonotype_incidence, clonotype_strings, enriched_clonotypes
from repclass.errors import UsageError
from repclass.metrics import roc_auc
from repclass.model.enrichment import EnrichmentFit, feature_of_share
from repclass.training.splits import deal_folds, group_units

if TYPE_CHECKING:
    from repclass.io.store import Store


def dealt_inner_folds(positive: np.ndarray, n_folds: int, seed: int, what: str,
                      groups: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified inner folds over binary-labelled repertoires (with `groups`, each repertoire's
    donor, a donor's repertoires share a fold), dealt as --folds deals them (splits.deal_folds):
    numpy only. The enrichment path runs in every default `repclass train`, where importing
    sklearn's splitters (and scipy.stats with them) would add about 2 s to each start."""
    positive = np.asarray(positive, dtype=bool)
    ids = [f"{row:09d}" for row in range(len(positive))]
    strata: list[str | None] = ["1" if p else "0" for p in positive]
    by_id = dict(zip(ids, groups)) if groups is not None else None
    units = group_units(ids, strata, by_id)[1] if by_id is not None else strata
    n_folds = min([n_folds] + [units.count(label) for label in ("0", "1")])
    if n_folds < 2:
        units_named = "donors" if groups is not None else "training repertoires"
        raise UsageError(f"{what}: inner cross-validation needs at least 2 {units_named} of every class; use more "
                         "repertoires or a smaller --test-fraction/--validation-fraction")
    fold_of = deal_folds(ids, strata, n_folds, seed, by_id)
    fold = np.array([fold_of[i] for i in ids])
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


def fit_enrichment(store: "Store", ids: Sequence[str], positive: np.ndarray, n_folds: int, seed: int,
                   thresholds: Sequence[float] = (1e-4, 1e-3, 1e-2, 5e-2, 1e-1), min_positive: int = 2,
                   groups: Sequence[str] | None = None) -> EnrichmentFit:
    """Cross-fit the enriched junctions on training repertoires `ids` with binary labels `positive`;
    `groups` (each repertoire's donor) keeps a donor's repertoires in one inner fold, so that a
    repertoire's input never comes from a set fitted on its own donor's other repertoires."""
    ids = list(ids)
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise UsageError("the enrichment path needs positive and negative training repertoires")
    incidence = clonotype_incidence(store, ids, "junction", max(min_positive, 1))
    folds = dealt_inner_folds(positive, n_folds, seed, "the enrichment path", groups)
    held_out = np.zeros((len(thresholds), len(ids)))
    membership = np.zeros((len(thresholds), len(incidence.hashes)))
    for train_rows, held_rows in folds:
        masks, _, _, _ = enriched_clonotypes(incidence, train_rows, positive, thresholds, min_positive)
        for t, mask in enumerate(masks):
            held_out[t, held_rows] = burden_scores(incidence, mask)[held_rows]
            membership[t] += mask
    aucs = [roc_auc(positive, held_out[t]) for t in range(len(thresholds))]
    best = min(range(len(aucs)), key=lambda t: (-(aucs[t] if aucs[t] == aucs[t] else -1.0), t))
    chosen = membership[best] > 0
    junctions = clonotype_strings(store, [i for i, p in zip(ids, positive) if p], incidence.hashes[chosen],
                                  "junction")
    return EnrichmentFit(junctions=junctions, weights=membership[best][chosen] / len(folds),
                         threshold=float(thresholds[best]), train_features=feature_of_share(held_out[best]),
                         inner_cv=list(zip(map(float, thresholds), map(float, aucs))), n_folds=len(folds),
                         n_positive=int(positive.sum()), n_negative=int((~positive).sum()))
