"""Loading baseline model folders for `repclass predict` (which dispatches here by the folder's
model.json `method`): a model folder, or a `--folds` output of fold_1 ... fold_K baseline folders."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repclass.errors import ModelFileError
from repclass.baselines.common import BaselineInfo, baseline_method, read_baseline

if TYPE_CHECKING:
    import polars as pl


class BaselineScorer:
    """Scores one repertoire's table: (n_outputs,) outputs as DeepRC's would mean them."""

    def __init__(self, info: BaselineInfo, model: Any) -> None:
        self.info, self.model = info, model

    @property
    def columns(self) -> list[str]:
        """Store columns the model reads."""
        if self.info.method == "burden":
            return self.model.columns
        return ["junction_aa", "duplicate_count"]

    def score_table(self, table: "pl.DataFrame") -> np.ndarray:
        return np.asarray(self.model.score_table(table), dtype=np.float64)


def load_baseline(path: str | Path) -> tuple[BaselineScorer, BaselineInfo]:
    info, tensors, folder = read_baseline(path)
    if info.method == "kmer":
        from repclass.baselines.kmer import KmerModel

        model: Any = KmerModel.from_tensors(info.settings, info.targets, tensors, info.fits)
    else:
        from repclass.baselines.burden import BurdenModel

        model = BurdenModel.from_folder(folder, info.settings, info.targets, tensors)
    return BaselineScorer(info, model), info


def load_baselines(path: str | Path) -> list[tuple[BaselineScorer, BaselineInfo]]:
    """[(scorer, description)] for a baseline folder or a folder of baseline folds; [] when `path`
    is not a baseline (a DeepRC model), so the caller falls back to DeepRC."""
    path = Path(path)
    if baseline_method(path) is not None:
        return [load_baseline(path)]
    if not path.is_dir():
        return []
    folds = sorted((int(m.group(1)), child) for child in path.iterdir()
                   if (m := re.fullmatch(r"fold_(\d+)", child.name)) and baseline_method(child) is not None)
    models = [load_baseline(child) for _, child in folds]
    for (_, child), (_, info) in zip(folds[1:], models[1:]):
        first = models[0][1]
        if info.method != first.method or [(t.column, t.kind, t.classes, t.offset) for t in info.targets] != \
                [(t.column, t.kind, t.classes, t.offset) for t in first.targets]:
            raise ModelFileError(f"{child}: its method or targets differ from {folds[0][1]}'s; the folds of one "
                                 "cross-validation must predict the same targets")
    return models
