"""Train/validation/test splits: stratified by seed, from a sheet column, or k-fold; and the
policy that picks one for a training run (`split_assignments`), shared by DeepRC and the baselines.

Splits are made over donors, not repertoires, when the store has a group column (`subject_id` by
default, `SplitSpec.group_column`): every repertoire of a donor lands in the same fold or split,
so a donor's second time point never sits on the other side of the one its first trained on.
Grouped splits stay stratified as far as whole donors allow (each donor counts under its
majority label)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from repclass.errors import UsageError
from repclass.targets import MULTICLASS, REGRESSION

if TYPE_CHECKING:
    from repclass.config import TrainConfig
    from repclass.io.store import Store
    from repclass.targets import TargetSpec

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
                 seed: int, groups: dict[str, str] | None = None) -> dict[str, str]:
    """Each stratum split into train/validation/test in the given shares (rounded, at least one
    validation repertoire when a share is asked for and the stratum can spare it). With `groups`
    (sample id -> donor), whole donors are dealt, so the shares are met as closely as donors allow."""
    if groups is not None:
        return _grouped_random_split(ids, strata, groups, validation_fraction, test_fraction, seed)
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


def group_units(ids: list[str], strata: list[str | None], groups: dict[str, str]
                 ) -> tuple[list[str], list[str | None], dict[str, list[str]]]:
    """Donors as units: (unit names, each unit's majority stratum, unit -> its repertoire ids).
    Ties between labels go to the label first in sorted order (deterministic)."""
    members: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for sample_id, stratum in zip(ids, strata):
        unit = groups[sample_id]
        members.setdefault(unit, []).append(sample_id)
        labels.setdefault(unit, []).append("" if stratum is None else stratum)
    units = sorted(members)
    majority: list[str | None] = []
    for unit in units:
        counts: dict[str, int] = {}
        for label in labels[unit]:
            counts[label] = counts.get(label, 0) + 1
        majority.append(min(counts, key=lambda label: (-counts[label], label)))
    return units, majority, members


def _grouped_random_split(ids: list[str], strata: list[str | None], groups: dict[str, str],
                          validation_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """random_split over donors: each stratum's donors (by majority label) shuffled, then dealt to
    test until that stratum's test share of repertoires is reached, then to validation, then train."""
    units, majority, members = group_units(ids, strata, groups)
    assignment: dict[str, str] = {}
    for ordered in _stratified_order(units, majority, seed):
        n = sum(len(members[u]) for u in ordered)
        n_test = int(round(n * test_fraction))
        n_validation = int(round(n * validation_fraction))
        if validation_fraction > 0 and n_validation == 0 and n - n_test >= 2:
            n_validation = 1
        dealt = 0
        for unit in ordered:
            split = "test" if dealt < n_test else "validation" if dealt < n_test + n_validation else "train"
            for sample_id in members[unit]:
                assignment[sample_id] = split
            dealt += len(members[unit])
    _check_split(assignment, validation_fraction)
    return assignment


def _grouped_folds(ids: list[str], strata: list[str | None], groups: dict[str, str], n_folds: int,
                   seed: int) -> dict[str, int]:
    """Repertoire -> fold, dealing whole donors: each stratum's donors (shuffled by the seed, then
    largest first) go to the fold holding the fewest repertoires of that stratum, then the fewest
    in all (ties: the lower fold after the previous one's turn)."""
    units, majority, members = group_units(ids, strata, groups)
    if len(units) < n_folds:
        raise UsageError(f"--folds {n_folds} needs at least {n_folds} donors (each fold tests on one and validates "
                         f"on another), but the {len(ids)} labelled repertoires come from {len(units)}; use "
                         f"--folds {max(3, len(units))} or fewer, or --group-column none to split repertoires "
                         "rather than donors" if len(units) >= 3 else
                         f"--folds needs at least 3 donors, but the {len(ids)} labelled repertoires come from "
                         f"{len(units)}; use --group-column none to split repertoires rather than donors")
    totals = [0] * n_folds
    fold_of: dict[str, int] = {}
    turn = 0
    for ordered in _stratified_order(units, majority, seed):
        ordered = sorted(ordered, key=lambda u: -len(members[u]))  # stable: the shuffle breaks ties
        in_stratum = [0] * n_folds
        for unit in ordered:
            fold = min(range(n_folds), key=lambda f: (in_stratum[f], totals[f], (f - turn) % n_folds))
            turn = (fold + 1) % n_folds
            in_stratum[fold] += len(members[unit])
            totals[fold] += len(members[unit])
            for sample_id in members[unit]:
                fold_of[sample_id] = fold
    empty = [f + 1 for f in range(n_folds) if totals[f] == 0]
    if empty:  # fewer donors than folds in practice (a few huge donors): refuse rather than train on nothing
        raise UsageError(f"--folds {n_folds}: fold(s) {', '.join(map(str, empty))} get no donor; use fewer folds")
    return fold_of


def deal_folds(ids: list[str], strata: list[str | None], n_folds: int, seed: int,
               groups: dict[str, str] | None = None) -> dict[str, int]:
    """Repertoire -> fold (0 .. n_folds-1), stratified: each stratum's members (shuffled by the
    seed) dealt round-robin over the folds; with `groups` (sample id -> donor), whole donors dealt
    (_grouped_folds). Used for --folds and for the enrichment path's inner folds."""
    if groups is not None:
        return _grouped_folds(ids, strata, groups, n_folds, seed)
    fold_of: dict[str, int] = {}
    position = 0
    for members in _stratified_order(ids, strata, seed):
        for sample_id in members:  # deal the members of each stratum round-robin over the folds
            fold_of[sample_id] = position % n_folds
            position += 1
    return fold_of


def kfold_splits(ids: list[str], strata: list[str | None], n_folds: int, seed: int,
                 groups: dict[str, str] | None = None) -> list[dict[str, str]]:
    """k stratified folds; split i tests on fold i, validates on fold i+1, trains on the rest.
    With `groups` (sample id -> donor), every donor's repertoires share one fold."""
    if n_folds < 3:
        raise UsageError(f"--folds needs at least 3 folds (test, validation and training), got {n_folds}")
    if len(ids) < n_folds:
        raise UsageError(f"--folds {n_folds} needs at least {n_folds} labelled repertoires (each fold tests on one "
                         f"and validates on another), but there are {len(ids)}; use --folds {max(3, len(ids))} or "
                         "fewer" if len(ids) >= 3 else
                         f"--folds {n_folds} needs at least 3 labelled repertoires, but there are {len(ids)}")
    fold_of = deal_folds(ids, strata, n_folds, seed, groups)
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


#: SplitSpec.group_column: "auto" groups by DEFAULT_GROUP_COLUMN when the store has it; "none" never groups.
AUTO, NO_GROUPS = "auto", "none"
DEFAULT_GROUP_COLUMN = "subject_id"


@dataclass(frozen=True)
class SplitSpec:
    """How repertoires are split: a sheet column, k folds, or (default) a seeded stratified split;
    and which sheet column names each repertoire's donor (`group_column`: a column, "auto" for
    `subject_id` when the store has one, or "none"), whose repertoires are never split apart."""

    column: str | None = None
    folds: int | None = None
    fold: int | None = None  # 1-based: train only this fold of `folds`
    group_column: str = AUTO

    def __post_init__(self) -> None:
        if self.fold is not None and self.folds is None:
            raise UsageError("--fold needs --folds")
        if self.fold is not None and not 1 <= self.fold <= self.folds:
            raise UsageError(f"--fold must be between 1 and {self.folds}, got {self.fold}")


def group_column(store: "Store", split: SplitSpec) -> str | None:
    """The sheet column that groups repertoires by donor for `split` on `store`, or None: the
    column named (it must exist), `subject_id` under "auto" when the store has it as a label
    column (not when it is the id column: then every repertoire is its own donor), or none."""
    if split.group_column == NO_GROUPS:
        return None
    if split.group_column == AUTO:
        return DEFAULT_GROUP_COLUMN if DEFAULT_GROUP_COLUMN in store.label_columns else None
    if split.group_column not in store.label_columns:
        raise UsageError(f"--group-column {split.group_column!r} is not a column of the store's sheet; it has: "
                         f"{', '.join(store.label_columns) or 'no columns besides the id'} (or use none)")
    return split.group_column


def sample_groups(store: "Store", ids: Sequence[str], column: str) -> dict[str, str]:
    """Sample id -> donor key from `column`; a repertoire with no value there is its own donor."""
    values = store.labels(column)
    return {i: f"group:{values[i]}" if values[i] not in (None, "") else f"sample:{i}" for i in ids}


def labelled_ids(store: "Store", specs: Sequence["TargetSpec"]) -> list[str]:
    """The repertoires with a label for some target (those a run splits), in store order."""
    labels = [store.labels(s.column) for s in specs]
    return [i for i in store.sample_ids if any(column[i] is not None for column in labels)]


def _check_column_split(assignment: dict[str, str], groups: dict[str, str], split: SplitSpec, grouping: str) -> None:
    sides: dict[str, set[str]] = {}
    for sample_id, side in assignment.items():
        sides.setdefault(groups[sample_id], set()).add(side)
    crossing = sorted(g.split(":", 1)[1] for g, s in sides.items() if len(s) > 1)
    if crossing:
        raise UsageError(f"split column {split.column!r} puts donor(s) {', '.join(map(repr, crossing[:5]))}"
                         f"{' and others' if len(crossing) > 5 else ''} (by {grouping!r}) on more than one side; "
                         "give all of a donor's repertoires the same split, or pass --group-column none")


def split_assignments(store: "Store", specs: Sequence["TargetSpec"], split: SplitSpec, config: "TrainConfig"
                      ) -> list[dict[str, str]]:
    """Sample id -> train/validation/test for each model to train (one, or one per fold), over the
    repertoires with a label for some target: from `split.column`, k stratified folds, or one
    seeded stratified split in `config`'s shares. Stratified by the first classification target;
    a donor's repertoires (`group_column`) always share a side."""
    usable = labelled_ids(store, specs)
    dropped = len(store.sample_ids) - len(usable)
    if dropped:
        log.warning("%d repertoires have no label for any target and are left out", dropped)
    grouping = group_column(store, split)
    groups = sample_groups(store, usable, grouping) if grouping is not None else None
    if groups is not None:
        n_donors = len(set(groups.values()))
        log.info("splitting by donor: column %r groups the %d labelled repertoires into %d donors (each donor's "
                 "repertoires stay on one side; --group-column none splits repertoires)", grouping, len(usable),
                 n_donors)
        if n_donors == len(usable):
            groups = None  # one repertoire per donor: the ungrouped split is the same thing, and reproduces it
    if split.column is not None:
        values = store.labels(split.column)
        assignment = column_split(usable, [values[i] for i in usable], split.column)
        if groups is not None:
            _check_column_split(assignment, groups, split, grouping)
        return [assignment]
    # Stratify by the first classification target (regression targets do not stratify).
    strata: list[str | None] = [None] * len(usable)
    for spec in specs:
        labels = store.labels(spec.column)
        values = [labels[i] for i in usable]
        numeric_many = len({v for v in values if v is not None}) > 2 and spec.kind != MULTICLASS
        if spec.kind != REGRESSION and not numeric_many:
            strata = values
            break
    if split.folds is not None:
        folds = kfold_splits(usable, strata, split.folds, config.seed, groups)
        return folds if split.fold is None else [folds[split.fold - 1]]
    return [random_split(usable, strata, config.validation_fraction, config.test_fraction, config.seed, groups)]


def split_description(store: "Store", split: SplitSpec, specs: Sequence["TargetSpec"]) -> str:
    """One sentence on how a run's repertoires were split: by donor (which column, how many) or not."""
    ids = labelled_ids(store, specs)
    column = group_column(store, split)
    if column is not None:
        n_donors = len(set(sample_groups(store, ids, column).values()))
        return (f"Splits are by donor: column {column!r} groups the {len(ids)} labelled repertoires into "
                f"{n_donors} donors, and no donor is on both sides of a fold or split.")
    if split.group_column == NO_GROUPS:
        return "Splits are by repertoire, not by donor (--group-column none)."
    assert split.group_column == AUTO
    return (f"Splits are by repertoire: the sheet has no {DEFAULT_GROUP_COLUMN!r} column; if a donor gave several "
            "repertoires, name the column that says so with --group-column.")
