"""The tables every model folder holds, whatever the method: metrics.tsv and predictions.tsv."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .splits import SPLITS

if TYPE_CHECKING:
    from .store import Store
    from .targets import Target


def write_metrics_table(work: Path, targets: list["Target"], metrics: dict[str, Any]) -> None:
    """metrics.tsv: one row per (split, target, metric)."""
    import polars as pl

    rows = []
    for split in SPLITS:
        for target in targets:
            for name, value in metrics[split].get(target.column, {}).items():
                rows.append({"split": split, "target": target.column, "metric": name, "value": float(value)})
    pl.DataFrame(rows, schema={"split": pl.String, "target": pl.String, "metric": pl.String,
                               "value": pl.Float64}).write_csv(work / "metrics.tsv", separator="\t")


def write_predictions_table(work: Path, targets: list["Target"],
                            prediction_rows: list[tuple[str, list[str], np.ndarray]], store: "Store") -> None:
    """predictions.tsv: every repertoire with its split, each target's predictions and its label."""
    import polars as pl

    tables = []
    for split, ids, outputs in prediction_rows:
        if not ids:
            continue
        columns: dict[str, Any] = {"sample_id": ids, "split": [split] * len(ids)}
        for target in targets:
            columns.update(target.predictions(outputs))
            column_labels = store.labels(target.column)
            columns[f"{target.column}:label"] = [column_labels[i] for i in ids]
        tables.append(pl.DataFrame(columns))
    if tables:
        pl.concat(tables, how="diagonal").write_csv(work / "predictions.tsv", separator="\t")
