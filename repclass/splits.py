"""Train/validation/test splits: stratified by seed, from a sheet column, or k-fold; and the
policy that picks one for a training run (`split_assignments`), shared by DeepRC and the baselines."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:
    from .config import TrainConfig
    from .store import Store
    from .targets import TargetSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_SPELLINGS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                    "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def _stratified_order(ids: list[str], strata: list[str | None], seed: int) -> list[list[str]]:
    """Ids grouped by stratum (sorted for determinism), each group shuffled by the seed."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for sample_id, stratum in zip(ids, strata):
        groups.setdefault("" if stratum is None else stratum, []).append(sample_id)
    ordered = []
    for key in sorted(groups):
        members = sorted(groups[key])
        ordered.append([members[i] for i in rng.permutation(len(members))])
    return ordered


def random_split(ids: list[str], strata: list[str | None], validation_fraction: float, test_fraction: float,
                 seed: int) -> dict[str, str]:
    """Each stratum split into train/validation/test in the given shares (rounded, at least one
    validation repertoire when a share is asked for and the stratum can spare it)."""
    assignment: dict[str, str] = {}
    for members in _stratified_order(ids, strata, seed):
        n = len(members)
        n_test = int(round(n * test_fraction))
        n_validation = int(round(n * validation_fraction))
        if validation_fraction > 0 and n_validation == 0 and n - n_test >= 2:
            n_validation = 1
        for i, sample_id in enumerate(members):
            assignment[sample_id] = "test" if i < n_test else "validation" if i < n_test + n_validation else "train"
    _check_split(assignment, validation_fraction)
    return assignment


def _check_split(assignment: dict[str, str], validation_fraction: float) -> None:
    """Refuse a split that cannot train or select a model (too few repertoires for the shares)."""
    counts = {split: sum(1 for s in assignment.values() if s == split) for split in SPLITS}
    shown = ", ".join(f"{counts[s]} {s}" for s in SPLITS)
    if counts["train"] < 2:
        raise UsageError(f"{len(assignment)} labelled repertoire(s) give {shown}: training needs at least 2 "
                         "training repertoires; add repertoires (or lower --validation-fraction/--test-fraction)")
    if validation_fraction > 0 and counts["validation"] == 0:
        raise UsageError(f"{len(assignment)} labelled repertoire(s) give {shown}: no validation repertoire to select "
                         "the model with; add repertoires, or pass --validation-fraction 0 to keep the last "
                         "evaluation's model")


def kfold_splits(ids: list[str], strata: list[str | None], n_folds: int, seed: int) -> list[dict[str, str]]:
    """k stratified folds; split i tests on fold i, validates on fold i+1, trains on the rest."""
    if n_folds < 3:
        raise UsageError(f"--folds needs at least 3 folds (test, validation and training), got {n_folds}")
    if len(ids) < n_folds:
        raise UsageError(f"--folds {n_folds} needs at least {n_folds} labelled repertoires (each fold tests on one "
                         f"and validates on another), but there are {len(ids)}; use --folds {max(3, len(ids))} or "
                         "fewer" if len(ids) >= 3 else
                         f"--folds {n_folds} needs at least 3 labelled repertoires, but there are {len(ids)}")
    fold_of: dict[str, int] = {}
    position = 0
    for members in _stratified_order(ids, strata, seed):
        for sample_id in members:  # deal the members of each stratum round-robin over the folds
            fold_of[sample_id] = position % n_folds
            position += 1
    splits = []
    for fold in range(n_folds):
        validation_fold = (fold + 1) % n_folds
        splits.append({sample_id: "test" if f == fold else "validation" if f == validation_fold else "train"
                       for sample_id, f in fold_of.items()})
    return splits


def column_split(ids: list[str], values: list[str | None], column: str) -> dict[str, str]:
    """Splits given in a sample-sheet column (train / validation / test, common spellings)."""
    assignment = {}
    for sample_id, value in zip(ids, values):
        if value is None:
            raise UsageError(f"split column {column!r} is empty for sample {sample_id!r}")
        split = _SPLIT_SPELLINGS.get(value.strip().lower())
        if split is None:
            raise UsageError(f"split column {column!r} has {value!r} for sample {sample_id!r}; "
                             "use train, validation or test")
        assignment[sample_id] = split
    return assignment


def split_ids(assignment: dict[str, str]) -> dict[str, list[str]]:
    """Sample id -> split, turned around: each split's sample ids, sorted. Refuses an assignment that
    leaves no repertoire to train on (one model's view; `split_assignments` makes the assignments)."""
    ids = {split: sorted(i for i, s in assignment.items() if s == split) for split in SPLITS}
    if not ids["train"]:
        raise UsageError("no repertoires left for training; lower --validation-fraction/--test-fraction")
    return ids


@dataclass(frozen=True)
class SplitSpec:
    """How repertoires are split: a sheet column, k folds, or (default) a seeded stratified split."""

    column: str | None = None
    folds: int | None = None
    fold: int | None = None  # 1-based: train only this fold of `folds`

    def __post_init__(self) -> None:
        if self.fold is not None and self.folds is None:
            raise UsageError("--fold needs --folds")
        if self.fold is not None and not 1 <= self.fold <= self.folds:
            raise UsageError(f"--fold must be between 1 and {self.folds}, got {self.fold}")


def split_assignments(store: "Store", specs: Sequence["TargetSpec"], split: SplitSpec, config: "TrainConfig"
                      ) -> list[dict[str, str]]:
    """Sample id -> train/validation/test for each model to train (one, or one per fold), over the
    repertoires with a label for some target: from `split.column`, k stratified folds, or one
    seeded stratified split in `config`'s shares. Stratified by the first classification target."""
    usable = [i for i in store.sample_ids if any(store.labels(s.column)[i] is not None for s in specs)]
    dropped = len(store.sample_ids) - len(usable)
    if dropped:
        log.warning("%d repertoires have no label for any target and are left out", dropped)
    if split.column is not None:
        values = store.labels(split.column)
        return [column_split(usable, [values[i] for i in usable], split.column)]
    # Stratify by the first classification target (regression targets do not stratify).
    strata: list[str | None] = [None] * len(usable)
    for spec in specs:
        labels = store.labels(spec.column)
        values = [labels[i] for i in usable]
        numeric_many = len({v for v in values if v is not None}) > 2 and spec.kind != "multiclass"
        if spec.kind != "regression" and not numeric_many:
            strata = values
            break
    if split.folds is not None:
        folds = kfold_splits(usable, strata, split.folds, config.seed)
        return folds if split.fold is None else [folds[split.fold - 1]]
    return [random_split(usable, strata, config.validation_fraction, config.test_fraction, config.seed)]
