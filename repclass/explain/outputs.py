"""What is explained: the one model output (a target, and for classifiers a class) that the
contributions and attributions explain, chosen from the model's targets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from repclass.model.checkpoint import ModelInfo
from repclass.errors import UsageError
from repclass.targets import BINARY, MULTICLASS, REGRESSION, class_index


@dataclass(frozen=True)
class ExplainedOutput:
    """The model output that contributions and attributions explain."""

    target: str
    kind: str  # binary / multiclass / regression
    output_index: int  # column of the model's outputs
    sign: float  # -1.0 when a binary model's negative class is explained (its logit is -logit)
    class_name: str | None  # None for regression
    #: binary/multiclass: class index among the target's outputs (multiclass) or in [neg, pos]
    class_index: int = 0

    def pick(self, outputs: torch.Tensor) -> torch.Tensor:
        """(rows, n_outputs) model outputs -> (rows,) explained output."""
        return outputs[:, self.output_index] * self.sign

    def predicted(self, outputs: np.ndarray, offset: int, n_outputs: int) -> bool:
        """Whether a repertoire with these raw outputs is predicted as the explained class."""
        if self.kind == REGRESSION:
            return True
        if self.kind == BINARY:
            logit = float(outputs[offset])
            return logit >= 0.0 if self.class_index == 1 else logit < 0.0
        return int(np.argmax(outputs[offset:offset + n_outputs])) == self.class_index

    def describe(self) -> str:
        if self.kind == REGRESSION:
            return f"{self.target} (standardised predicted value)"
        if self.kind == BINARY and self.sign < 0:
            return f"{self.target} = {self.class_name} (negated logit)"
        return f"{self.target} = {self.class_name} (logit)"


def resolve_explained(info: ModelInfo, target: str | None, class_name: str | None) -> ExplainedOutput:
    """Choose the explained output from the model's targets; UsageError names the choices."""
    if not info.targets:
        raise UsageError("the model file names no targets; retrain it with this repclass version")
    names = [t.column for t in info.targets]
    if target is None:
        chosen = info.targets[0]
    else:
        matches = [t for t in info.targets if t.column == target]
        if not matches:
            raise UsageError(f"target {target!r} is not one of the model's targets ({', '.join(names)}); "
                             f"use --target {names[0]}")
        chosen = matches[0]
    if chosen.kind == REGRESSION:
        if class_name is not None:
            raise UsageError(f"target {chosen.column!r} is a regression target and has no classes; drop --class")
        return ExplainedOutput(chosen.column, REGRESSION, chosen.offset, 1.0, None)
    classes = list(chosen.classes or [])
    if class_name is None:
        if chosen.kind == MULTICLASS:
            raise UsageError(f"target {chosen.column!r} has {len(classes)} classes; name the one to explain with "
                             f"--class (one of {', '.join(classes)})")
        class_name = chosen.positive
    index = class_index(classes, class_name)
    if index is None:
        raise UsageError(f"class {class_name!r} is not one of target {chosen.column!r}'s classes "
                         f"({', '.join(classes)})")
    if chosen.kind == BINARY:
        return ExplainedOutput(chosen.column, BINARY, chosen.offset, 1.0 if index == 1 else -1.0, classes[index],
                               class_index=index)
    return ExplainedOutput(chosen.column, MULTICLASS, chosen.offset + index, 1.0, classes[index], class_index=index)
