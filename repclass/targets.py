"""Prediction targets: what a label column means, its loss, its activation and its metrics.

A target owns its slice of the model's outputs: 1 for binary and regression, C for a C-class
multiclass target. Repertoires whose label is missing are skipped for that target only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from repclass import metrics as M
from repclass.errors import UsageError

if TYPE_CHECKING:
    import torch

    from repclass.io.store import Store

#: The target kinds, named here only (this module imports torch only inside the functions that need
#: it, so that torch-free modules, diagnostics and the baselines among them, can compare kinds).
BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
KINDS = (BINARY, MULTICLASS, REGRESSION)
#: Each kind's headline metric: the one the training curve, comparisons and summaries report.
HEADLINE_METRICS = {BINARY: "roc_auc", MULTICLASS: "macro_auc", REGRESSION: "r2"}
# Label pairs whose positive class is obvious, compared case-insensitively.
_KNOWN_POSITIVES = [("+", "-"), ("true", "false"), ("1", "0"), ("yes", "no"), ("positive", "negative"),
                    ("pos", "neg"), ("case", "control"), ("t", "f"), ("y", "n")]


@dataclass(frozen=True)
class TargetSpec:
    """A label column to predict, as the user names it."""

    column: str
    kind: str | None = None  # binary / multiclass / regression; inferred when None
    positive: str | None = None  # binary: the positive class; inferred from +/-, True/False, 1/0, ...
    weight: float = 1.0  # weight of this target's loss in the sum


def target_specs(targets: Sequence[TargetSpec | str], *, kinds: Mapping[str, str] | None = None,
                 positives: Mapping[str, str] | None = None,
                 weights: Mapping[str, float] | None = None) -> list[TargetSpec]:
    """The targets as TargetSpecs: at least one, each once, every loss weight a number >= 0 and
    not all 0. A bare column name means an inferred kind; `kinds`, `positives` and `weights`
    (column -> setting, as --type/--positive/--loss-weight give them) fill in named columns, and a
    name in them that is not a target is refused (a typo would otherwise be ignored).
    """
    given = {"kind": ("--type", kinds or {}), "positive": ("--positive", positives or {}),
             "weight": ("--loss-weight", weights or {})}
    specs = [TargetSpec(t) if isinstance(t, str) else t for t in targets]
    for option, mapping in given.values():
        stray = sorted(set(mapping) - {s.column for s in specs})
        if stray:
            raise UsageError(f"{option} names {', '.join(stray)}, which is not a --target")
    specs = [replace(s, **{field: mapping[s.column] for field, (_, mapping) in given.items() if s.column in mapping})
             for s in specs]
    if not specs:
        raise UsageError("name at least one target column with --target")
    if len({s.column for s in specs}) != len(specs):
        raise UsageError("a target column is named twice")
    for spec in specs:
        if not (isinstance(spec.weight, (int, float)) and math.isfinite(spec.weight) and spec.weight >= 0):
            raise UsageError(f"--loss-weight {spec.column}={spec.weight}: a loss weight must be zero or a positive "
                             "number")
    if all(spec.weight == 0 for spec in specs):
        raise UsageError("every --loss-weight is 0: at least one target must carry weight")
    return specs


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


@dataclass
class Target:
    column: str
    kind: str
    weight: float = 1.0
    #: binary: [negative, positive]; multiclass: class names in output order
    classes: list[str] | None = None
    #: binary: weight of positive examples in the loss (n_negative / n_positive in training)
    pos_weight: float = 1.0
    #: regression: labels are standardised with these for the loss
    mean: float = 0.0
    std: float = 1.0
    offset: int = 0  # first output of this target

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.kind == MULTICLASS else 1

    @property
    def positive(self) -> str | None:
        return self.classes[1] if self.kind == BINARY else None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Target":
        return cls(**data)

    # ---- labels ----------------------------------------------------------------------------
    def encode(self, labels: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Labels -> (values (n,) float64: class index or number, present (n,) bool)."""
        values = np.zeros(len(labels), dtype=np.float64)
        present = np.array([label is not None for label in labels], dtype=bool)
        for i, label in enumerate(labels):
            if label is None:
                continue
            if self.kind == REGRESSION:
                values[i] = float(label)
            else:
                index = class_index(self.classes, label)
                if index is None:
                    raise UsageError(f"target {self.column!r}: label {label!r} is not one of the model's classes "
                                     f"({', '.join(self.classes)})")
                values[i] = index
        return values, present

    # ---- loss and outputs ------------------------------------------------------------------
    def outputs(self, all_outputs: torch.Tensor) -> torch.Tensor:
        return all_outputs[:, self.offset:self.offset + self.n_outputs]

    def loss(self, all_outputs: torch.Tensor, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Mean loss over the repertoires that have this label (0 if none has)."""
        import torch
        import torch.nn.functional as F

        if not bool(present.any()):
            return all_outputs.sum() * 0.0
        out = self.outputs(all_outputs)[present].float()
        y = values[present]
        if self.kind == BINARY:
            return F.binary_cross_entropy_with_logits(out[:, 0], y.float(),
                                                      pos_weight=torch.tensor(self.pos_weight, device=out.device))
        if self.kind == MULTICLASS:
            return F.cross_entropy(out, y.long())
        return F.mse_loss(out[:, 0], ((y - self.mean) / self.std).float())

    def activate(self, all_outputs: np.ndarray) -> np.ndarray:
        """This target's outputs as the user reads them: binary, P(positive) (n,) (sigmoid);
        multiclass, class probabilities (n, C) (softmax); regression, values in label units (n,)."""
        out = all_outputs[:, self.offset:self.offset + self.n_outputs].astype(np.float64)
        if self.kind == BINARY:
            return 1.0 / (1.0 + np.exp(-out[:, 0]))
        if self.kind == MULTICLASS:
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        return out[:, 0] * self.std + self.mean

    def predictions(self, all_outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Columns for a predictions table: probabilities / predicted class / predicted value."""
        activated = self.activate(all_outputs)
        if self.kind == BINARY:
            return {f"{self.column}:p({self.positive})": activated,
                    f"{self.column}:predicted": np.where(activated >= 0.5, self.classes[1], self.classes[0])}
        if self.kind == MULTICLASS:
            columns = {f"{self.column}:p({c})": activated[:, i] for i, c in enumerate(self.classes)}
            columns[f"{self.column}:predicted"] = np.array(self.classes, dtype=object)[activated.argmax(axis=1)]
            return columns
        return {f"{self.column}:predicted": activated}

    def metrics(self, all_outputs: np.ndarray, values: np.ndarray, present: np.ndarray) -> dict[str, float]:
        y = values[present]
        result: dict[str, float] = {"n": len(y)}  # a count: written as 8, not 8.0
        if len(y) == 0:
            return result
        import torch

        with torch.no_grad():
            result["loss"] = float(self.loss(torch.from_numpy(all_outputs[present]), torch.from_numpy(y),
                                             torch.ones(len(y), dtype=torch.bool)))
        activated = self.activate(all_outputs[present])
        if self.kind == BINARY:
            predicted = activated >= 0.5
            result.update(roc_auc=M.roc_auc(y == 1, activated),
                          balanced_accuracy=M.balanced_accuracy(y == 1, predicted),
                          f1=M.f1_score(y == 1, predicted))
        elif self.kind == MULTICLASS:
            result.update(macro_auc=M.macro_auc(y.astype(int), activated),
                          accuracy=float((activated.argmax(axis=1) == y).mean()))
        else:
            result.update(M.regression_metrics(y, activated))
        return result

    @property
    def headline_metric(self) -> str:
        return HEADLINE_METRICS[self.kind]

    @property
    def curve_column(self) -> str:
        """This target's column in the training curve (training_curve.tsv): its headline metric."""
        return f"{self.column}:{self.headline_metric}"


def class_index(classes: list[str] | None, label: str) -> int | None:
    """The index of `label` among `classes` (an exact match first, else ignoring case), or None."""
    if classes is None:
        return None
    if label in classes:
        return classes.index(label)
    lowered = [c.lower() for c in classes]
    return lowered.index(label.lower()) if label.lower() in lowered else None


def infer_target(column: str, labels: list[str | None], kind: str | None = None, positive: str | None = None,
                 weight: float = 1.0) -> Target:
    """Decide a target's kind and classes from its labels (in the training data).

    Two distinct values make a binary target whose positive class is named with `positive` or
    recognised (`+`/`-`, `True`/`False`, `1`/`0`, `yes`/`no`, ...); numbers with more than two
    values make a regression target; anything else is multiclass.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"target {column!r}: unknown type {kind!r}; use one of {', '.join(KINDS)}")
    values = sorted({label for label in labels if label is not None})
    if not values:
        raise UsageError(f"target {column!r}: no repertoire has a label in this column")
    numeric = all(_is_number(v) for v in values)
    if kind is None:
        kind = BINARY if len(values) == 2 else REGRESSION if numeric else MULTICLASS
    if kind == REGRESSION:
        if not numeric:
            bad = next(v for v in values if not _is_number(v))
            raise UsageError(f"target {column!r}: regression needs numbers, found {bad!r}")
        numbers = np.array([float(v) for v in labels if v is not None])
        std = float(numbers.std()) or 1.0
        return Target(column=column, kind=kind, weight=weight, mean=float(numbers.mean()), std=std)
    if kind == MULTICLASS:
        if len(values) < 2:
            raise UsageError(f"target {column!r}: a classification target needs at least two classes, found "
                             f"{values[0]!r}")
        return Target(column=column, kind=kind, weight=weight, classes=values)
    # binary
    if len(values) != 2:
        raise UsageError(f"target {column!r}: binary needs exactly two classes, found {len(values)}: "
                         f"{', '.join(values[:10])}")
    if positive is None:
        lowered = {v.lower(): v for v in values}
        for pos, neg in _KNOWN_POSITIVES:
            if set(lowered) == {pos, neg}:
                positive = lowered[pos]
                break
        else:
            raise UsageError(f"target {column!r}: cannot tell which of {values[0]!r} and {values[1]!r} is the "
                             f"positive class; name it with --positive {column}={values[0]}")
    matched = class_index(values, positive)
    if matched is None:
        raise UsageError(f"target {column!r}: positive class {positive!r} is not one of its labels "
                         f"({', '.join(values)})")
    positive = values[matched]
    negative = values[1 - matched]
    n_positive = sum(1 for v in labels if v is not None and v == positive)
    n_negative = sum(1 for v in labels if v is not None and v == negative)
    return Target(column=column, kind=BINARY, weight=weight, classes=[negative, positive],
                  pos_weight=(n_negative / n_positive) if n_positive else 1.0)


def infer_targets(store: "Store", specs: Sequence[TargetSpec], train_ids: Sequence[str]) -> list[Target]:
    """The targets of `specs`, their kinds and classes inferred from the training repertoires'
    labels (`infer_target`), each given its slice of the outputs."""
    targets = []
    for spec in specs:
        labels = store.labels(spec.column)
        targets.append(infer_target(spec.column, [labels[i] for i in train_ids], spec.kind, spec.positive,
                                    spec.weight))
    assign_offsets(targets)
    return targets


def assign_offsets(targets: list[Target]) -> int:
    """Give each target its slice of the outputs; returns the total number of outputs."""
    offset = 0
    for target in targets:
        target.offset = offset
        offset += target.n_outputs
    return offset


def total_loss(targets: list[Target], outputs: torch.Tensor, values: torch.Tensor,
               present: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the targets' losses. values/present: (n_bags, n_targets)."""
    return sum(t.weight * t.loss(outputs, values[:, i], present[:, i]) for i, t in enumerate(targets))


def encode_targets(store: "Store", targets: list[Target], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The repertoires `ids`' labels for `targets`: (values (n, n_targets), present (n, n_targets)),
    as `Target.encode` gives them (class index or number; False where a label is missing)."""
    values = np.zeros((len(ids), len(targets)))
    present = np.zeros((len(ids), len(targets)), dtype=bool)
    for j, target in enumerate(targets):
        labels = store.labels(target.column)
        values[:, j], present[:, j] = target.encode([labels[i] for i in ids])
    return values, present
