"""Metrics in plain numpy: ROC AUC (with bootstrap intervals), balanced accuracy, F1, r2, ...

Plain numpy rather than scikit-learn's: these run on every evaluation of a training run, on a
few hundred repertoires, where scikit-learn's input checks cost more than the metric."""
from __future__ import annotations

import math

import numpy as np


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _stratified_resamples(y_true: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """How often each positive and each negative is drawn in `n_resamples` bootstrap resamples
    drawn with replacement within each class (so that every resample holds both classes, and the
    AUC is defined on each): (n_resamples, n_pos) and (n_resamples, n_neg) counts."""
    positives, negatives = np.flatnonzero(y_true), np.flatnonzero(~y_true)
    rng = np.random.default_rng(seed)
    drawn_pos = np.empty((n_resamples, len(positives)), dtype=np.int64)
    drawn_neg = np.empty((n_resamples, len(negatives)), dtype=np.int64)
    for b in range(n_resamples):
        drawn_pos[b] = rng.integers(0, len(positives), len(positives))  # = rng.choice(len(positives), ...), faster
        drawn_neg[b] = rng.integers(0, len(negatives), len(negatives))
    rows = np.arange(n_resamples)[:, None]
    counts_pos = np.bincount((rows * len(positives) + drawn_pos).ravel(), minlength=n_resamples * len(positives))
    counts_neg = np.bincount((rows * len(negatives) + drawn_neg).ravel(), minlength=n_resamples * len(negatives))
    return (counts_pos.reshape(n_resamples, len(positives)).astype(np.float64),
            counts_neg.reshape(n_resamples, len(negatives)).astype(np.float64))


def _resampled_aucs(y_true: np.ndarray, scores: np.ndarray, counts: tuple[np.ndarray, np.ndarray],
                    block: int = 256) -> np.ndarray:
    """ROC AUC of each bootstrap resample given as draw counts, without materialising the
    resamples: a resample's AUC is sum_i c_i * (weighted negatives below s_i, ties half) / (n_pos n_neg),
    the same Mann-Whitney figure `roc_auc` computes from ranks."""
    counts_pos, counts_neg = counts
    pos_scores, neg_scores = scores[y_true], scores[~y_true]
    order = np.argsort(neg_scores, kind="mergesort")
    sorted_neg = neg_scores[order]
    below = np.searchsorted(sorted_neg, pos_scores, side="left")  # (n_pos,) negatives strictly below
    up_to = np.searchsorted(sorted_neg, pos_scores, side="right")  # (n_pos,) ... and tied
    result = np.empty(len(counts_pos))
    for start in range(0, len(counts_pos), block):
        weights = counts_neg[start:start + block, order]  # (b, n_neg), sorted by score
        cumulative = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(weights, axis=1)], axis=1)
        wins = 0.5 * (cumulative[:, below] + cumulative[:, up_to])  # (b, n_pos)
        result[start:start + block] = (counts_pos[start:start + block] * wins).sum(axis=1)
    return result / (len(pos_scores) * len(neg_scores))


def _percentile_interval(resampled: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(low), float(high)


def roc_auc_interval(y_true: np.ndarray, scores: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC with a stratified percentile bootstrap interval at `level`: (auc, low, high).

    Repertoires are resampled with replacement within each class. The interval says how much the
    figure could move with another draw of held-out repertoires of the same size: on 8 repertoires
    an AUC of 1.0 is compatible with far less. NaN for all three when only one class is present.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if len(y_true) != len(scores):
        raise ValueError("labels and scores must have the same length")
    auc = roc_auc(y_true, scores)
    if math.isnan(auc):
        return math.nan, math.nan, math.nan
    resampled = _resampled_aucs(y_true, scores, _stratified_resamples(y_true, n_resamples, seed))
    return (auc, *_percentile_interval(resampled, level))


#: Held-out sets below these sizes give AUCs too noisy to read on their own (predict and the report say so).
FEW_REPERTOIRES = 30
FEW_PER_CLASS = 10


def small_sample_note(n_positive: int, n_negative: int, auc: float | None = None) -> str | None:
    """Words saying that `n_positive` + `n_negative` held-out repertoires are too few for an AUC on
    them to mean much (fewer than FEW_REPERTOIRES in all or FEW_PER_CLASS of a class), or None.
    With `auc` 0 or 1 they add why the interval is no help then: a perfect separation stays
    perfect in every bootstrap resample."""
    n = n_positive + n_negative
    if n >= FEW_REPERTOIRES and min(n_positive, n_negative) >= FEW_PER_CLASS:
        return None
    note = (f"{n} held-out repertoires ({n_positive} positive, {n_negative} negative) are too few for the AUC "
            f"to mean much (fewer than {FEW_REPERTOIRES}, or fewer than {FEW_PER_CLASS} of a class)")
    if auc is not None and auc in (0.0, 1.0):
        return note + (": a perfect separation is perfect in every bootstrap resample, so its interval is "
                       f"{auc:g}-{auc:g} however few the repertoires; only more held-out repertoires tell")
    return note + ": read its 95% interval, not the figure"


def paired_auc_difference(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, n_resamples: int = 2000,
                          seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC of `scores_a` minus that of `scores_b` on the same samples, with a paired bootstrap
    interval: (difference, low, high).

    Samples are resampled with replacement within each class (so every resample holds both) and
    both methods are scored on the same resample; the interval is the percentile interval at
    `level`. On a few dozen repertoires this is wide: it says whether a gap between two methods
    is more than the test set's luck of the draw.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores_a, scores_b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if not (len(y_true) == len(scores_a) == len(scores_b)):
        raise ValueError("labels and both score arrays must have the same length")
    difference = roc_auc(y_true, scores_a) - roc_auc(y_true, scores_b)
    if y_true.all() or not y_true.any():
        return math.nan, math.nan, math.nan
    counts = _stratified_resamples(y_true, n_resamples, seed)
    resampled = _resampled_aucs(y_true, scores_a, counts) - _resampled_aucs(y_true, scores_b, counts)
    return (float(difference), *_percentile_interval(resampled, level))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [float((y_pred[y_true == c] == c).mean()) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else math.nan


def f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = int((y_true & y_pred).sum())
    fp = int((~y_true & y_pred).sum())
    fn = int((y_true & ~y_pred).sum())
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the classes present (y_true: class indices)."""
    aucs = [roc_auc(y_true == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else math.nan


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(y_true) == 0:
        return {"r2": math.nan, "mae": math.nan, "mse": math.nan, "pearson_r": math.nan}
    error = y_pred - y_true
    mse = float(np.mean(error ** 2))
    variance = float(np.var(y_true))
    r2 = 1.0 - mse / variance if variance > 0 else math.nan
    if len(y_true) > 1 and np.std(y_true) > 0 and np.std(y_pred) > 0:
        pearson = float(np.corrcoef(y_true, y_pred)[0, 1])
    else:
        pearson = math.nan
    return {"r2": r2, "mae": float(np.mean(np.abs(error))), "mse": mse, "pearson_r": pearson}
