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


def _stratified_resamples(y_true: np.ndarray, n_resamples: int, seed: int):
    """Row indices of `n_resamples` bootstrap resamples drawn with replacement within each class,
    so that every resample holds both classes (the AUC is defined on each)."""
    positives, negatives = np.flatnonzero(y_true), np.flatnonzero(~y_true)
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])


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
    resampled = np.array([roc_auc(y_true[rows], scores[rows])
                          for rows in _stratified_resamples(y_true, n_resamples, seed)])
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
    resampled = np.array([roc_auc(y_true[rows], scores_a[rows]) - roc_auc(y_true[rows], scores_b[rows])
                          for rows in _stratified_resamples(y_true, n_resamples, seed)])
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
