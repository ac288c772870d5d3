"""Which repertoires a model has seen, and cross-validated models that predict together.

A model file records the fingerprint of the store it was trained on and every repertoire's
split (train / validation / test). Scoring that store again with the same model and calling the
result a performance figure is the commonest way to fool oneself, so `predict` and `motifs` label
every scored repertoire:

- `train`, `validation`: the model was fitted on it, or chose its weights with it;
- `test`: in the training store but held out from fitting and from model selection;
- `new`: not among the training store's repertoires.

Held out = `test` or `new`. A repertoire overlaps the training store when its id is one the model
recorded; when the scored store's fingerprint (the sha256 of its manifest, which lists every
repertoire file's sha256) equals the recorded one, the content is confirmed to be the same too.
An id match in a different store is still counted as seen (conservative: a same-named repertoire
is more likely the same sample than not), with a warning.

A `repclass train --folds K` output holds fold_1/ ... fold_K/ model folders: `predict` on that
folder averages the fold models' probabilities (regression: predicted values) and reports the
spread across folds per repertoire. For the ensemble, a repertoire counts as seen when any fold
model trained or validated on it.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from repclass.errors import ModelFileError
from repclass.names import MODEL_FILENAME
from repclass.targets import BINARY, REGRESSION

log = logging.getLogger(__name__)

HELD_OUT = ("test", "new")
#: Order of precedence when folds disagree about a repertoire: seen in training beats the rest.
_PRECEDENCE = {"train": 0, "validation": 1, "test": 2, "new": 3}


# ----------------------------------------------------------------------------------------------
# cross-validation folders
# ----------------------------------------------------------------------------------------------
def fold_model_paths(path: str | Path) -> list[Path]:
    """The fold models of a `--folds` output folder, in fold order; [] for anything else."""
    path = Path(path)
    if not path.is_dir() or (path / MODEL_FILENAME).exists():
        return []
    folds = []
    for child in path.iterdir():
        match = re.fullmatch(r"fold_(\d+)", child.name)
        if match and (child / MODEL_FILENAME).exists():
            folds.append((int(match.group(1)), child / MODEL_FILENAME))
    return [p for _, p in sorted(folds)]


def is_cv_folder(path: str | Path) -> bool:
    return bool(fold_model_paths(path))


def load_models(path: str | Path, device: Any) -> list[tuple[Any, Any]]:
    """[(network, ModelInfo)]: one model, or every fold of a CV folder (checked to agree)."""
    from repclass.model.checkpoint import load_model

    paths = fold_model_paths(path) or [Path(path)]
    models = [load_model(p, device) for p in paths]
    if len(models) > 1:
        first = models[0][1]
        for p, (_, info) in zip(paths[1:], models[1:]):
            # pos_weight, mean and std are fitted per fold; what the outputs mean must agree.
            if [_meaning(t) for t in info.targets] != [_meaning(t) for t in first.targets] or \
                    info.junction_convention != first.junction_convention:
                raise ModelFileError(f"{p}: its targets or junction convention differ from {paths[0]}'s; the "
                                     f"folds of one cross-validation must predict the same targets")
    return models


def _meaning(target: Any) -> tuple:
    return (target.column, target.kind, tuple(target.classes or ()), target.offset)


# ----------------------------------------------------------------------------------------------
# seen or held out
# ----------------------------------------------------------------------------------------------
@dataclass
class SplitAssignment:
    """Per scored repertoire, its split with respect to the model(s)."""

    splits: list[str]  # train / validation / test / new, aligned with the scored ids
    overlaps: bool  # some scored repertoire is one of the training store's
    confirmed: bool  # the scored store is the training store (same fingerprint)

    def held_out(self) -> np.ndarray:
        return np.array([s in HELD_OUT for s in self.splits], dtype=bool)

    def counts(self) -> dict[str, int]:
        return {name: self.splits.count(name) for name in ("train", "validation", "test", "new")}


def assign_splits(infos: Sequence[Any], ids: Sequence[str], store_fingerprint: str | None,
                  where: str = "the scored data") -> SplitAssignment:
    """Each id's split for a model (or a fold ensemble: the most 'seen' split over the folds)."""
    splits = []
    for sample_id in ids:
        per_model = [info.splits.get(sample_id, "new") for info in infos]
        splits.append(min(per_model, key=lambda s: _PRECEDENCE.get(s, 0)))
    overlaps = any(s != "new" for s in splits)
    confirmed = store_fingerprint is not None and all(store_fingerprint == info.store_fingerprint for info in infos)
    if overlaps and not confirmed:
        n = sum(s != "new" for s in splits)
        log.warning("%s: %d repertoire ids are ones the model was trained, validated or tested on, but the data is "
                    "not the training store (different fingerprint); they are labelled with their training split "
                    "and left out of the held-out metrics", where, n)
    return SplitAssignment(splits=splits, overlaps=overlaps, confirmed=confirmed)


def out_of_fold(infos: Sequence[Any], ids: Sequence[str], store_fingerprint: str | None,
                where: str = "the scored data") -> tuple[SplitAssignment, dict[str, int]]:
    """For explaining with a cross-validation folder: each repertoire goes to the fold model that
    held it out (its test fold), so every repertoire of the training store is explained out of
    fold; repertoires no fold has seen go to fold 1. Returns the splits with respect to the
    explaining model, and {id: fold index (0-based)}."""
    plain = assign_splits(infos, ids, store_fingerprint, where)
    splits, model_of = [], {}
    for sample_id in ids:
        tested = [k for k, info in enumerate(infos) if info.splits.get(sample_id) == "test"]
        index = tested[0] if tested else 0
        model_of[sample_id] = index
        splits.append(infos[index].splits.get(sample_id, "new"))
    return SplitAssignment(splits=splits, overlaps=plain.overlaps, confirmed=plain.confirmed), model_of


def held_out_metrics(target: Any, outputs: np.ndarray, values: np.ndarray, present: np.ndarray,
                     assignment: SplitAssignment, where: str = "predict") -> dict[str, Any]:
    """A target's metrics on the held-out repertoires only, with `n_excluded` (seen ones left out).

    When no labelled repertoire is held out, the metrics over all of them are returned with a
    warning that they are optimistic (n_excluded 0, held_out 0). A binary target's ROC AUC comes
    with its stratified bootstrap 95% interval (`roc_auc_low`, `roc_auc_high`; metrics.roc_auc_interval)
    and the class counts it rests on (`n_positive`, `n_negative`)."""
    held = assignment.held_out()
    labelled_seen = int((present & ~held).sum())
    labelled_held = int((present & held).sum())
    if labelled_held == 0 and labelled_seen > 0:
        log.warning("%s: all %d labelled repertoires of %s were used to train or select the model; its metrics on "
                    "them are optimistic, not a performance estimate (score held-out data instead)", where,
                    labelled_seen, target.column)
        result = target.metrics(outputs, values, present)
        result.update(n_excluded=0, held_out=0)
        return _with_auc_interval(result, target, outputs, values, present)
    if labelled_seen:
        log.warning("%s: %d of %d labelled repertoires were used to train or select the model (split column); "
                    "%s metrics are computed on the %d held-out ones only", where, labelled_seen,
                    labelled_seen + labelled_held, target.column, labelled_held)
    result = target.metrics(outputs, values, present & held)
    result.update(n_excluded=labelled_seen, held_out=1)
    return _with_auc_interval(result, target, outputs, values, present & held)


def _with_auc_interval(result: dict[str, Any], target: Any, outputs: np.ndarray, values: np.ndarray,
                       rows: np.ndarray) -> dict[str, Any]:
    if target.kind != BINARY or "roc_auc" not in result:
        return result
    from repclass.metrics import roc_auc_interval

    positive = values[rows] == 1
    _, low, high = roc_auc_interval(positive, target.activate(outputs[rows]))
    result.update(roc_auc_low=low, roc_auc_high=high, n_positive=int(positive.sum()),
                  n_negative=int((~positive).sum()))
    return result


# ----------------------------------------------------------------------------------------------
# fold ensembles
# ----------------------------------------------------------------------------------------------
def ensemble_columns(targets: Sequence[Any], fold_outputs: Sequence[np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    """Prediction columns of a fold ensemble, and outputs equivalent to its mean probabilities.

    fold_outputs: one (n_repertoires, n_outputs) array per fold. Binary and multiclass targets
    average the folds' probabilities (and `<column>:sd` gives their standard deviation across
    folds); regression targets average the predicted values. The returned outputs array holds,
    per target, the logit (binary), log-probabilities (multiclass) or standardised value
    (regression, in the first fold's scale) of the mean, so that `Target.metrics` scores the
    ensemble itself.
    """
    columns: dict[str, Any] = {}
    if len(fold_outputs) == 1:  # one model: its own columns and outputs, untouched
        for target in targets:
            columns.update(target.predictions(fold_outputs[0]))
        return columns, fold_outputs[0]
    combined = np.array(fold_outputs[0], dtype=np.float64, copy=True)
    for target in targets:
        per_fold = [target.predictions(np.asarray(o, dtype=np.float64)) for o in fold_outputs]
        names = [n for n in per_fold[0] if n != f"{target.column}:predicted"]
        start, stop = target.offset, target.offset + target.n_outputs
        if target.kind == REGRESSION:
            values = np.stack([p[f"{target.column}:predicted"] for p in per_fold])  # (folds, n)
            mean = values.mean(axis=0)
            columns[f"{target.column}:predicted"] = mean
            columns[f"{target.column}:predicted:sd"] = values.std(axis=0, ddof=1)
            combined[:, start] = (mean - target.mean) / target.std
            continue
        probabilities = {n: np.stack([p[n] for p in per_fold]) for n in names}  # each (folds, n)
        for name, stack in probabilities.items():
            columns[name] = stack.mean(axis=0)
        if target.kind == BINARY:
            p = np.clip(columns[names[0]], 1e-12, 1 - 1e-12)
            columns[f"{target.column}:predicted"] = np.where(p >= 0.5, target.classes[1], target.classes[0])
            combined[:, start] = np.log(p) - np.log1p(-p)
        else:
            matrix = np.stack([columns[n] for n in names], axis=1)  # (n, classes)
            columns[f"{target.column}:predicted"] = np.array(target.classes, dtype=object)[matrix.argmax(axis=1)]
            combined[:, start:stop] = np.log(np.clip(matrix, 1e-300, None))
        for name, stack in probabilities.items():
            columns[f"{name}:sd"] = stack.std(axis=0, ddof=1)
    return columns, combined
