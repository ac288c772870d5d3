"""`repclass train --method ...`: DeepRC and the baselines on the same splits, side by side.

One method: OUT is that method's model folder. Several: each method is trained on the same
splits or folds (the same seed gives the same assignment; all go through
repclass.training.splits.split_assignments) into OUT/<method>/, and OUT/comparison.tsv holds, per
method, fold and target, each metric on the validation and test splits side by side, per fold
and pooled over the folds (metrics of all folds' predictions together); OUT/comparison.png plots
the headline test metric. Metrics are recomputed from each folder's predictions.tsv with the
same definitions (repclass.metrics) for every method. The pooled (or single-split) headline row
of each method carries a bootstrap 95% interval (`test_low`, `test_high`) and, with
`permutations`, the label-permutation p-value; OUT/summary.md says it in words
(repclass.evaluation).
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from repclass.errors import OutputExistsError, UsageError
from repclass.evaluation import prediction_metrics
from repclass.names import COMPARISON_NAME, COMPARISON_PLOT_NAME as PLOT_NAME

if TYPE_CHECKING:
    import polars as pl

    from repclass.baselines.kmer import KmerConfig
    from repclass.config import ModelConfig, TrainConfig
    from repclass.training.splits import SplitSpec
    from repclass.io.store import Store
    from repclass.targets import TargetSpec
    from repclass.training.model_folder import TrainResult

log = logging.getLogger(__name__)

METHODS = ("deeprc", "kmer", "burden")


@dataclass
class ComparisonResult:
    path: Path
    methods: dict[str, "TrainResult"]
    table: "pl.DataFrame"
    results: dict[str, Any] = field(default_factory=dict)


def train_method(method: str, store: "str | Path | Store", out: str | Path, *, targets: Sequence["TargetSpec | str"],
                 split: "SplitSpec | None" = None, config: "TrainConfig | None" = None,
                 model_config: "ModelConfig | None" = None, kmer: "KmerConfig | None" = None,
                 burden: Any = None, device: str = "auto", resume: bool = False,
                 force: bool = False) -> "TrainResult":
    """Train one method into the model folder `out`."""
    if method == "deeprc":
        from repclass.training.loop import train

        return train(store, out, targets=targets, config=config, model_config=model_config, split=split,
                     device=device, resume=resume, force=force)
    if method == "kmer":
        from repclass.baselines.kmer import train_kmer

        return train_kmer(store, out, targets=targets, split=split, config=config, kmer=kmer, force=force)
    if method == "burden":
        from repclass.baselines.burden import train_burden

        return train_burden(store, out, targets=targets, split=split, config=config, burden=burden, force=force)
    raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")


def train_chosen(methods: Sequence[str], store: "str | Path | Store", out: str | Path, *,
                 targets: Sequence["TargetSpec | str"], split: "SplitSpec | None" = None,
                 config: "TrainConfig | None" = None, model_config: "ModelConfig | None" = None,
                 kmer: "KmerConfig | None" = None, burden: Any = None, device: str = "auto",
                 resume: bool = False, force: bool = False, permutations: int = 0
                 ) -> "TrainResult | ComparisonResult":
    """`repclass train --method ...`: one method into the model folder `out` (with `permutations`
    N, then its label-permutation test), or several compared on the same splits (train_methods)."""
    chosen = list(dict.fromkeys(methods))
    if len(chosen) > 1:
        return train_methods(store, out, chosen, targets=targets, split=split, config=config,
                             model_config=model_config, kmer=kmer, burden=burden, device=device, resume=resume,
                             force=force, permutations=permutations)
    result = train_method(chosen[0], store, out, targets=targets, split=split, config=config,
                          model_config=model_config, kmer=kmer, burden=burden, device=device, resume=resume,
                          force=force)
    if permutations:
        from repclass.evaluation import permutation_test

        permutation_test(chosen[0], store, result.path, targets, permutations, split=split, config=config,
                         model_config=model_config, kmer=kmer, burden=burden, device=device)
    return result


def train_methods(store: "str | Path | Store", out: str | Path, methods: Sequence[str], *,
                  targets: Sequence["TargetSpec | str"], split: "SplitSpec | None" = None,
                  config: "TrainConfig | None" = None, model_config: "ModelConfig | None" = None,
                  kmer: "KmerConfig | None" = None, burden: Any = None, device: str = "auto",
                  resume: bool = False, force: bool = False, permutations: int = 0) -> ComparisonResult:
    """Train each method on the same splits into OUT/<method>/ and compare them in
    OUT/comparison.tsv, OUT/comparison.png and OUT/summary.md (written to OUT.partial/, published
    at the end; with `resume`, methods already finished there are kept). With `permutations` N,
    each method is also retrained N times on the same folds with permuted labels (its
    permutations.tsv), for a p-value beside its pooled metric: N x K more trainings per method."""
    from repclass.files import check_output_not_input, clean_leftovers, output_lock, partial_path, prepare_parent
    from repclass.io.store import Store

    chosen = list(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; use {', '.join(METHODS)}")
    if len(chosen) < 2:
        raise UsageError("a comparison needs at least two methods")
    store = store if isinstance(store, Store) else Store.open(store)
    out = Path(out)
    # repclass's output rules (repclass.files), with --force replacing only a comparison folder
    check_output_not_input(out, [store.path])
    check_output_not_input(partial_path(out), [store.path])
    _check_replaceable(out, force)
    prepare_parent(out)
    with output_lock(out):
        clean_leftovers(out)
        _check_replaceable(out, force)
        return _train_methods(store, out, chosen, targets=targets, split=split, config=config,
                              model_config=model_config, kmer=kmer, burden=burden, device=device, resume=resume,
                              permutations=permutations)


def _check_replaceable(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise OutputExistsError(out)
    if out.is_symlink() or not (out / COMPARISON_NAME).is_file():
        raise UsageError(f"--out {out} exists and is not a comparison folder (no {COMPARISON_NAME}); --force only "
                         "replaces one: choose another output path or remove it yourself")


def _train_methods(store: "Store", out: Path, chosen: list[str], *, targets: Sequence["TargetSpec | str"],
                   split: "SplitSpec | None", config: "TrainConfig | None", model_config: "ModelConfig | None",
                   kmer: "KmerConfig | None", burden: Any, device: str, resume: bool,
                   permutations: int = 0) -> ComparisonResult:
    from repclass.evaluation import (PERMUTATIONS_NAME, folder_estimates, permutation_test, split_description,
                                     write_summary)
    from repclass.files import partial_path, publish
    from repclass.training.splits import SplitSpec
    from repclass.targets import target_specs

    work = partial_path(out)
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for method in chosen:
        folder = work / method
        if resume and folder.exists():
            log.info("%s: already finished in %s", method, folder)
            continue
        log.info("method %s", method)
        results[method] = train_method(method, store, folder, targets=targets, split=split, config=config,
                                       model_config=model_config, kmer=kmer, burden=burden, device=device,
                                       resume=resume, force=True)
    if permutations:
        for method in chosen:
            if resume and (work / method / PERMUTATIONS_NAME).exists():
                continue
            permutation_test(method, store, work / method, targets, permutations, split=split, config=config,
                             model_config=model_config, kmer=kmer, burden=burden, device=device)
    table = comparison_table({method: work / method for method in chosen})
    split = split or SplitSpec()
    write_summary(work, [e for method in chosen for e in folder_estimates(work / method, method)],
                  "Methods compared on the same folds" if split.folds else "Methods compared on the same split",
                  note=split_description(store, split, target_specs(targets)))
    from repclass.files import write_file_atomically

    write_file_atomically(work / COMPARISON_NAME,
                          lambda temporary: table.write_csv(temporary, separator="\t", float_precision=6))
    plot_comparison(table, work / PLOT_NAME)
    publish(work, out)
    return ComparisonResult(path=out, methods=results, table=table)


# ----------------------------------------------------------------------------------------------
# the comparison table, from the model folders' predictions
# ----------------------------------------------------------------------------------------------
def _targets(folder: Path) -> list[dict[str, Any]]:
    import json

    return json.loads((folder / "model.json").read_text())["targets"]


def comparison_table(folders: dict[str, Path]) -> "pl.DataFrame":
    """method, fold (1..K and 'pooled', or 'all' for one split), target, metric, validation, test,
    and on the pooled / single-split headline rows test_low, test_high (bootstrap 95% interval of
    ROC AUC), permutation_p and permutations (when the method's folder holds permutations.tsv)."""
    import polars as pl

    from repclass.evaluation import folder_estimates, model_parts
    from repclass.training.model_folder import metric_rows

    rows = []
    for method, folder in folders.items():
        parts = model_parts(folder)
        estimates = {e.target: e for e in folder_estimates(folder, method)}
        tables = []
        for fold, part in parts:
            predictions = pl.read_csv(part / "predictions.tsv", separator="\t", infer_schema=False)
            tables.append((fold, predictions))
        if len(tables) > 1:
            tables.append(("pooled", pl.concat([t for _, t in tables], how="diagonal")))
        targets = _targets(parts[0][1])
        for fold, predictions in tables:
            for target in targets:
                column = target["column"]
                metrics = {split: {column: prediction_metrics(predictions.filter(pl.col("split") == split), target)}
                           for split in ("validation", "test")}
                # the test split's metrics first, then any only the validation split has (its test rows unlabelled)
                side_by_side: dict[str, dict[str, float]] = {}
                for row in metric_rows(metrics, [column], ("test", "validation")):
                    side_by_side.setdefault(row["metric"], {})[row["split"]] = row["value"]
                found = estimates[column]
                for name, values in side_by_side.items():
                    headline = fold in ("pooled", "all") and name == found.metric
                    rows.append({"method": method, "fold": fold, "target": column, "metric": name,
                                 "validation": values.get("validation", math.nan),
                                 "test": values.get("test", math.nan),
                                 "test_low": found.low if headline else math.nan,
                                 "test_high": found.high if headline else math.nan,
                                 "permutation_p": found.p_value if headline and found.p_value is not None
                                 else math.nan,
                                 "permutations": found.n_permutations if headline and found.p_value is not None
                                 else None})
    return pl.DataFrame(rows, schema={"method": pl.String, "fold": pl.String, "target": pl.String,
                                      "metric": pl.String, "validation": pl.Float64, "test": pl.Float64,
                                      "test_low": pl.Float64, "test_high": pl.Float64,
                                      "permutation_p": pl.Float64, "permutations": pl.Int64})


def plot_comparison(table: "pl.DataFrame", path: Path) -> None:
    """Headline test metric per method: a bar for the pooled (or single-split) value, dots per fold."""
    import polars as pl

    from repclass.plot import save_figure, subplots

    metrics = [m for m in ("roc_auc", "macro_auc", "r2") if m in set(table["metric"].to_list())]
    targets = list(dict.fromkeys(table["target"].to_list()))
    pairs = [(t, m) for t in targets for m in metrics
             if table.filter((pl.col("target") == t) & (pl.col("metric") == m)).height]
    figure, axes = subplots(1, max(len(pairs), 1), figsize=(4 * max(len(pairs), 1), 3.5), squeeze=False)
    methods = list(dict.fromkeys(table["method"].to_list()))
    for axis, (target, metric) in zip(axes[0], pairs):
        part = table.filter((pl.col("target") == target) & (pl.col("metric") == metric))
        for x, method in enumerate(methods):
            rows = part.filter(pl.col("method") == method)
            overall = rows.filter(pl.col("fold").is_in(["pooled", "all"]))["test"].to_list()
            folds = rows.filter(~pl.col("fold").is_in(["pooled", "all"]))["test"].to_list()
            if overall and overall[0] is not None and not math.isnan(overall[0]):
                axis.bar(x, overall[0], color="tab:blue", alpha=0.6)
                axis.text(x, overall[0], f"{overall[0]:.2f}", ha="center", va="bottom", fontsize=9)
            axis.scatter([x] * len(folds), [math.nan if v is None else v for v in folds], color="black", s=12,
                         zorder=3)
        axis.set_xticks(range(len(methods)))
        axis.set_xticklabels(methods)
        axis.set_ylabel(f"test {metric}")
        pooled = part.filter(pl.col("fold") == "pooled").height > 0
        axis.set_title(f"{target}\n(bars: {'pooled over folds; dots: each fold' if pooled else 'test split'})",
                       fontsize=10)
        if metric in ("roc_auc", "macro_auc"):
            axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
            axis.set_ylim(0, 1.02)
    save_figure(figure, path)
