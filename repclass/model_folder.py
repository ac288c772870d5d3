"""What a model folder holds: the tables every method writes (metrics.tsv, predictions.tsv, and
for k folds folds.tsv / folds_summary.tsv/.json), and DeepRC's whole folder (`write_model_folder`)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .splits import SPLITS

if TYPE_CHECKING:
    from .checkpoint import ModelInfo
    from .model import DeepRC
    from .store import Store
    from .targets import Target, TargetSpec


def metric_rows(metrics: dict[str, Any], columns: Sequence[str],
                splits: Sequence[str] = SPLITS) -> Iterator[dict[str, Any]]:
    """One row per (split, target, metric) of a model's metrics ({split: {target: {metric: value}}})."""
    for split in splits:
        for column in columns:
            for name, value in metrics[split].get(column, {}).items():
                yield {"split": split, "target": column, "metric": name, "value": float(value)}


def write_metrics_table(work: Path, targets: list["Target"], metrics: dict[str, Any]) -> None:
    """metrics.tsv: one row per (split, target, metric)."""
    import polars as pl

    rows = [{**row, "value": _value_text(row["metric"], row["value"])}
            for row in metric_rows(metrics, [t.column for t in targets])]
    pl.DataFrame(rows, schema={"split": pl.String, "target": pl.String, "metric": pl.String,
                               "value": pl.String}).write_csv(work / "metrics.tsv", separator="\t")


def _value_text(metric: str, value: float) -> str:
    """A metric's value as the tables write it: counts (`n`, `n_...`) as integers (8, not 8.0)."""
    if metric == "n" or metric.startswith("n_"):
        return str(int(value))
    return "NaN" if math.isnan(value) else str(value)


def write_fold_summary(work: Path, fold_metrics: list[dict[str, Any]],
                       targets: Sequence["Target | TargetSpec"]) -> dict[str, Any]:
    """folds.tsv (every fold's metrics), folds_summary.tsv/.json (mean and sd over the folds); returns the summary."""
    import polars as pl

    rows = [{"fold": str(fold), **row} for fold, metrics in enumerate(fold_metrics, start=1)
            for row in metric_rows(metrics, [t.column for t in targets])]
    table = pl.DataFrame(rows, schema={"fold": pl.String, "split": pl.String, "target": pl.String,
                                       "metric": pl.String, "value": pl.Float64})
    summary_rows = (table.group_by(["split", "target", "metric"], maintain_order=True)
                    .agg(pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd")))
    table.with_columns(pl.Series("value", [_value_text(m, v) for m, v in zip(table["metric"], table["value"])],
                                 dtype=pl.String)).write_csv(work / "folds.tsv", separator="\t")
    summary_rows.write_csv(work / "folds_summary.tsv", separator="\t")
    summary = {f"{r['split']}:{r['target']}:{r['metric']}": {"mean": r["mean"], "sd": r["sd"]}
               for r in summary_rows.iter_rows(named=True)}
    (work / "folds_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def write_model_folder(work: Path, model: "DeepRC", info: "ModelInfo", history: list[dict[str, Any]],
                       prediction_rows: list[tuple[str, list[str], np.ndarray]], store: "Store") -> None:
    """A DeepRC model folder: model.safetensors, model.json, config.json, metrics.json/.tsv,
    training_curve.tsv/.png and predictions.tsv."""
    import polars as pl

    from .checkpoint import MODEL_FILENAME, save_model
    from .plot import plot_training_curve

    save_model(work / MODEL_FILENAME, model, info)
    (work / "model.json").write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    settings = {"train": info.train_config, "model": info.model_config.to_dict(),
                "targets": [t.to_dict() for t in info.targets], "store": str(store.path),
                "store_fingerprint": info.store_fingerprint}
    (work / "config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    (work / "metrics.json").write_text(json.dumps(info.metrics, indent=2, sort_keys=True, allow_nan=True) + "\n")
    write_metrics_table(work, info.targets, info.metrics)
    curve = pl.DataFrame(history) if history else pl.DataFrame({"update": []})
    curve.write_csv(work / "training_curve.tsv", separator="\t")
    plot_training_curve(history, work / "training_curve.png", best_update=info.metrics["best_update"])
    write_predictions_table(work, info.targets, prediction_rows, store)


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
