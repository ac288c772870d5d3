"""Train/validation/test splits: stratified by seed, from a sheet column, or k-fold."""
from __future__ import annotations

import numpy as np

from .errors import UsageError

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
    return assignment


def kfold_splits(ids: list[str], strata: list[str | None], n_folds: int, seed: int) -> list[dict[str, str]]:
    """k stratified folds; split i tests on fold i, validates on fold i+1, trains on the rest."""
    if n_folds < 3:
        raise UsageError(f"--folds needs at least 3 folds (test, validation and training), got {n_folds}")
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
