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

The label-permutation test lives here too (`permutation_test`): its null comes from retraining
a method on permuted labels, and this is the module that dispatches methods.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from repclass.errors import OutputExistsError, UsageError
from repclass.evaluation import (Estimate, folder_estimates, folder_targets, held_out_predictions, model_parts,
                                 permuted_sources, prediction_metrics, statistic, write_summary)
from repclass.names import COMPARISON_NAME, COMPARISON_PLOT_NAME as PLOT_NAME, DESCRIPTION_NAME, PERMUTATIONS_NAME
from repclass.targets import HEADLINE_METRICS as HEADLINE, REGRESSION

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
    from repclass.files import partial_path, publish
    from repclass.training.splits import SplitSpec, split_description
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
def comparison_table(folders: dict[str, Path]) -> "pl.DataFrame":
    """method, fold (1..K and 'pooled', or 'all' for one split), target, metric, validation, test,
    and on the pooled / single-split headline rows test_low, test_high (bootstrap 95% interval of
    ROC AUC), permutation_p and permutations (when the method's folder holds permutations.tsv)."""
    import polars as pl

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
        targets = folder_targets(folder)
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


# ----------------------------------------------------------------------------------------------
# the label-permutation test: the null of a finished run, by retraining its method
# ----------------------------------------------------------------------------------------------
#: The prefix of the split columns a permuted store carries (one per fold model).
_FOLD_COLUMN = "_repclass_permutation_fold_"


def _trainable(store: "Store", columns: Sequence[str], kinds: Sequence[str], sources: dict[str, str],
               assignments: Sequence[dict[str, str]]) -> bool:
    """Whether every fold's training repertoires keep at least two of each class of every
    classification target under a permutation (what each method needs to fit, inner CV included)."""
    for column, kind in zip(columns, kinds):
        if kind == REGRESSION:
            continue
        labels = store.labels(column)
        classes = {labels[i] for i in sources if labels[i] is not None}
        for assignment in assignments:
            counts: dict[str, int] = {}
            for sample_id, side in assignment.items():
                label = labels[sources.get(sample_id, sample_id)]
                if side == "train" and label is not None:
                    counts[label] = counts.get(label, 0) + 1
            if len(counts) < len(classes) or min(counts.values()) < 2:
                return False
    return True


#: Memory for repertoire tables kept between the trainings of a permutation test (each of the N x K
#: trainings reads the same repertoires; beyond this they are read from the store again).
READ_CACHE_BYTES = 1 << 30


def _read_once(store: "Store") -> "Store":
    """`store` whose `read` keeps tables in memory (up to READ_CACHE_BYTES) across trainings."""
    from repclass.io.store import Store

    class ReadOnce(Store):
        def read(self, sample_id: str, columns: list[str] | None = None) -> "pl.DataFrame":
            key = (sample_id, None if columns is None else tuple(columns))
            table = cache.get(key)
            if table is None:
                table = super().read(sample_id, columns)
                if used[0] + table.estimated_size() <= READ_CACHE_BYTES:
                    cache[key] = table
                    used[0] += table.estimated_size()
            return table

    cache: dict[tuple[str, tuple[str, ...] | None], "pl.DataFrame"] = {}
    used = [0]
    return ReadOnce(path=store.path, manifest=store.manifest, samples=store.samples)


def permuted_store(store: "Store", columns: Sequence[str], sources: dict[str, str],
                   assignments: Sequence[dict[str, str]]) -> "Store":
    """A copy of `store` (in memory: same files) whose label `columns` are permuted by `sources`, with
    one split column per assignment (`_repclass_permutation_fold_<i>`) so the folds stay fixed."""
    import polars as pl

    ids = store.samples["sample_id"].to_list()
    labels = {column: store.labels(column) for column in columns}
    updates = {column: [labels[column][sources.get(i, i)] for i in ids] for column in columns}
    fold_columns = {f"{_FOLD_COLUMN}{k}": [a.get(i) for i in ids] for k, a in enumerate(assignments, start=1)}
    samples = store.samples.with_columns(
        *(pl.Series(name, values, dtype=pl.String) for name, values in {**updates, **fold_columns}.items()))
    manifest = {**store.manifest, "label_columns": [*store.label_columns, *fold_columns]}
    return replace(store, samples=samples, manifest=manifest)


def permutation_null(method: str, store: "Store", folder: Path, specs: Sequence["TargetSpec"], n_permutations: int,
                     work: Path, *, split: "SplitSpec", config: "TrainConfig",
                     model_config: "ModelConfig | None" = None, kmer: Any = None, burden: Any = None,
                     device: str = "auto") -> list[dict[str, Any]]:
    """Retrain `method` `n_permutations` times on the folds (or split) of the trained `folder`, the
    labels permuted each time (seeded by `config.seed` and the permutation's number), and return
    one row per (permutation, target): its pooled held-out headline metric. Works in `work`
    (removed afterwards)."""
    from repclass.comparison import train_method
    from repclass.training.splits import NO_GROUPS, SplitSpec, group_column, sample_groups

    if n_permutations < 1:
        raise UsageError(f"--permutations must be at least 1, got {n_permutations}")
    parts = model_parts(folder)
    assignments = [json.loads((part / DESCRIPTION_NAME).read_text())["splits"] for _, part in parts]
    ids = sorted({i for assignment in assignments for i in assignment})
    grouping = group_column(store, split)
    groups = sample_groups(store, ids, grouping) if grouping is not None else None
    targets = folder_targets(folder)
    columns = [t["column"] for t in targets]
    kinds = [t["kind"] for t in targets]
    identity = {i: i for i in ids}
    check = _trainable(store, columns, kinds, identity, assignments)
    rows: list[dict[str, Any]] = []
    store = _read_once(store)
    shutil.rmtree(work, ignore_errors=True)  # left by a killed test
    work.mkdir(parents=True)
    quiet = logging.getLogger("repclass")
    level = quiet.level
    try:
        for number in range(1, n_permutations + 1):
            rng = np.random.default_rng([config.seed, number])
            sources = permuted_sources(ids, groups, rng)
            # A permutation that leaves some fold's training repertoires without two of each class
            # cannot be fitted; draw again (the null is conditional on trainable folds, as the data are).
            for _ in range(1000):
                if not check or _trainable(store, columns, kinds, sources, assignments):
                    break
                sources = permuted_sources(ids, groups, rng)
            else:
                raise UsageError(f"--permutations: no permutation of the labels among {len(ids)} repertoires keeps "
                                 "two of each class in every fold's training repertoires; use fewer folds")
            relabelled = permuted_store(store, columns, sources, assignments)
            quiet.setLevel(logging.ERROR)  # N x K trainings: their own logs would drown the result
            try:
                for k in range(1, len(assignments) + 1):
                    fixed = SplitSpec(column=f"{_FOLD_COLUMN}{k}", group_column=grouping or NO_GROUPS)
                    train_method(method, relabelled, work / f"fold_{k}", targets=specs, split=fixed, config=config,
                                 model_config=model_config, kmer=kmer, burden=burden, device=device, force=True)
                pooled = held_out_predictions(work)
            finally:
                quiet.setLevel(level)
            for target in targets:
                rows.append({"permutation": number, "target": target["column"], "metric": HEADLINE[target["kind"]],
                             "value": statistic(pooled, target)})
            log.info("%s: permutation %d/%d: %s", method, number, n_permutations,
                     ", ".join(f"{r['target']} {r['value']:.3f}" for r in rows[-len(targets):]))
            for k in range(1, len(assignments) + 1):
                shutil.rmtree(work / f"fold_{k}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def write_permutations(folder: Path, rows: list[dict[str, Any]]) -> None:
    import polars as pl

    from repclass.files import write_file_atomically

    table = pl.DataFrame(rows, schema={"permutation": pl.Int64, "target": pl.String, "metric": pl.String,
                                       "value": pl.Float64})
    write_file_atomically(Path(folder) / PERMUTATIONS_NAME,
                          lambda temporary: table.write_csv(temporary, separator="\t", float_precision=6))


def permutation_test(method: str, store: "str | Path | Store", folder: str | Path,
                     targets: Sequence["TargetSpec | str"], n_permutations: int, *, split: "SplitSpec | None" = None,
                     config: "TrainConfig | None" = None, model_config: "ModelConfig | None" = None,
                     kmer: Any = None, burden: Any = None, device: str = "auto") -> list[Estimate]:
    """The label-permutation test of a finished model folder (`repclass train --permutations N`):
    retrains `method` N times on its folds with permuted labels, writes permutations.tsv (the
    null) beside its results, refreshes folds_summary.tsv/.json and summary.md with the p-value,
    and returns the estimates. N x K trainings: as long as the run itself, N times over."""
    from repclass.config import TrainConfig
    from repclass.training.model_folder import refresh_fold_summary
    from repclass.training.splits import SplitSpec, split_description
    from repclass.io.store import Store
    from repclass.targets import target_specs

    store = store if isinstance(store, Store) else Store.open(store)
    folder = Path(folder)
    split = split or SplitSpec()
    config = config or TrainConfig()
    n_models = len(model_parts(folder))
    log.info("%s: permutation test, %d permutations x %d model(s) = %d trainings", method, n_permutations, n_models,
             n_permutations * n_models)
    rows = permutation_null(method, store, folder, target_specs(targets), n_permutations,
                            folder.parent / f".{folder.name}.permutations", split=split, config=config,
                            model_config=model_config, kmer=kmer, burden=burden, device=device)
    write_permutations(folder, rows)
    estimates = folder_estimates(folder, method)
    note = split_description(store, split, target_specs(targets))
    if n_models > 1:
        refresh_fold_summary(folder, note)  # (writes summary.md too)
    else:
        write_summary(folder, estimates, note=note)
    return estimates
