"""What a model folder holds: the tables every method writes (metrics.tsv, predictions.tsv, and
for k folds folds.tsv / folds_summary.tsv/.json), and DeepRC's whole folder (`write_model_folder`)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from repclass.names import (CONFIG_NAME, DESCRIPTION_NAME, DIAGNOSTICS_NAME, METRICS_JSON_NAME, METRICS_TABLE_NAME,
                            PREDICTIONS_NAME, TRAINING_CURVE_NAME, TRAINING_CURVE_PLOT_NAME)
from repclass.training.splits import SPLITS

if TYPE_CHECKING:
    import polars as pl

    from repclass.model.checkpoint import ModelInfo
    from repclass.model.deeprc import DeepRC
    from repclass.io.store import Store
    from repclass.targets import Target, TargetSpec


@dataclass
class TrainResult:
    """What `repclass train` returns for any method: the model folder, its metrics, the update of
    the kept model (-1 where there is none: baselines, a --folds summary) and each fold's metrics."""

    path: Path
    metrics: dict[str, Any]
    best_update: int
    folds: list[dict[str, Any]] = field(default_factory=list)


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
                               "value": pl.String}).write_csv(work / METRICS_TABLE_NAME, separator="\t")


def _value_text(metric: str, value: float) -> str:
    """A metric's value as the tables write it: counts (`n`, `n_...`) as integers (8, not 8.0)."""
    if metric == "n" or metric.startswith("n_"):
        return str(int(value))
    return "NaN" if math.isnan(value) else str(value)


def write_fold_summary(work: Path, fold_metrics: list[dict[str, Any]],
                       targets: Sequence["Target | TargetSpec"], note: str = "") -> dict[str, Any]:
    """folds.tsv (every fold's metrics), folds_summary.tsv/.json (mean and sd over the folds, and
    each metric on the pooled out-of-fold predictions: `pooled`, with a bootstrap 95% interval
    `pooled_low`/`pooled_high` for ROC AUC, and the permutation p-value where permutations.tsv
    is there), out_of_fold_predictions.tsv and summary.md (repclass.evaluation; `note`: how the
    repertoires were split); returns the summary."""
    import polars as pl

    from repclass.files import write_file_atomically

    rows = [{"fold": str(fold), **row} for fold, metrics in enumerate(fold_metrics, start=1)
            for row in metric_rows(metrics, [t.column for t in targets])]
    table = pl.DataFrame(rows, schema={"fold": pl.String, "split": pl.String, "target": pl.String,
                                       "metric": pl.String, "value": pl.Float64})
    summary_rows = (table.group_by(["split", "target", "metric"], maintain_order=True)
                    .agg(pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd")))
    summary_rows = _with_pooled(work, summary_rows, note)
    fold_table = table.with_columns(pl.Series("value", [_value_text(m, v) for m, v in zip(table["metric"], table["value"])],
                                              dtype=pl.String))
    write_file_atomically(work / "folds.tsv", lambda temporary: fold_table.write_csv(temporary, separator="\t"))
    write_file_atomically(work / "folds_summary.tsv",
                          lambda temporary: summary_rows.write_csv(temporary, separator="\t"))
    summary = {f"{r['split']}:{r['target']}:{r['metric']}": {k: r[k] for k in summary_rows.columns
                                                              if k not in ("split", "target", "metric")}
               for r in summary_rows.iter_rows(named=True)}
    write_file_atomically(work / "folds_summary.json", lambda temporary: Path(temporary).write_text(
        json.dumps(summary, indent=2, sort_keys=True, allow_nan=True) + "\n"))
    return summary


def refresh_fold_summary(work: Path, note: str = "") -> dict[str, Any]:
    """write_fold_summary again from the fold folders' metrics.json (after a permutation test)."""
    from repclass.evaluation import folder_targets, model_parts
    from repclass.targets import TargetSpec

    fold_metrics = [json.loads((part / METRICS_JSON_NAME).read_text()) for _, part in model_parts(work)]
    return write_fold_summary(work, fold_metrics, [TargetSpec(t["column"]) for t in folder_targets(work)], note)


def _with_pooled(work: Path, summary_rows: "pl.DataFrame", note: str) -> "pl.DataFrame":
    """The fold summary with the pooled out-of-fold columns; writes out_of_fold_predictions.tsv
    and summary.md on the way."""
    import math

    import polars as pl

    from repclass.evaluation import (HEADLINE, folder_estimates, folder_targets, held_out_predictions,
                                     prediction_metrics, write_out_of_fold, write_summary)

    write_out_of_fold(work)
    estimates = {e.target: e for e in folder_estimates(work)}
    pooled: dict[tuple[str, str, str], dict[str, float | None]] = {}
    for split in ("validation", "test"):
        table = held_out_predictions(work, split)
        for target in folder_targets(work):
            for metric, value in prediction_metrics(table, target).items():
                pooled[(split, target["column"], metric)] = {"pooled": value}
            found = estimates[target["column"]]
            if split == "test":
                headline = pooled.setdefault(("test", target["column"], HEADLINE[target["kind"]]), {})
                headline.update(pooled_low=found.low, pooled_high=found.high, permutation_p=found.p_value,
                                permutations=found.n_permutations if found.p_value is not None else None)
    extra = {"pooled": [], "pooled_low": [], "pooled_high": [], "permutation_p": [], "permutations": []}
    for row in summary_rows.iter_rows(named=True):
        values = pooled.get((row["split"], row["target"], row["metric"]), {})
        for name in extra:
            value = values.get(name)
            extra[name].append(None if value is None or (isinstance(value, float) and math.isnan(value)) else value)
    write_summary(work, list(estimates.values()), note=note)
    return summary_rows.with_columns(pl.Series(name, values, dtype=pl.Int64 if name == "permutations" else pl.Float64)
                                     for name, values in extra.items())


def write_model_folder(work: Path, model: "DeepRC", info: "ModelInfo", history: list[dict[str, Any]],
                       prediction_rows: list[tuple[str, list[str], np.ndarray]], store: "Store",
                       training_warning: str | None = None) -> None:
    """A DeepRC model folder: model.safetensors, model.json, config.json, metrics.json/.tsv,
    training_curve.tsv/.png, predictions.tsv and diagnostics.json (`training_warning`: what
    repclass.training.diagnostics found in the curve, None when nothing; motifs reads it)."""
    import polars as pl

    from repclass.model.checkpoint import MODEL_FILENAME, save_model
    from repclass.plot import plot_training_curve

    save_model(work / MODEL_FILENAME, model, info)
    (work / DESCRIPTION_NAME).write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    settings = {"train": info.train_config, "model": info.model_config.to_dict(),
                "targets": [t.to_dict() for t in info.targets], "store": str(store.path),
                "store_fingerprint": info.store_fingerprint}
    (work / CONFIG_NAME).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    (work / METRICS_JSON_NAME).write_text(json.dumps(info.metrics, indent=2, sort_keys=True, allow_nan=True) + "\n")
    write_metrics_table(work, info.targets, info.metrics)
    curve = pl.DataFrame(history) if history else pl.DataFrame({"update": []})
    curve.write_csv(work / TRAINING_CURVE_NAME, separator="\t")
    plot_training_curve(history, work / TRAINING_CURVE_PLOT_NAME, best_update=info.metrics["best_update"])
    write_predictions_table(work, info.targets, prediction_rows, store)
    (work / DIAGNOSTICS_NAME).write_text(json.dumps({"training_warning": training_warning}, indent=2) + "\n")


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
        pl.concat(tables, how="diagonal").write_csv(work / PREDICTIONS_NAME, separator="\t")
