"""Evaluation a reviewer accepts: pooled out-of-fold predictions, bootstrap intervals, a
label-permutation test, and the result in words.

- **Pooled out of fold.** With k folds every labelled repertoire is tested exactly once, by the
  fold model that never saw it; `held_out_predictions` gathers those rows (the test rows of a
  single split otherwise) and `estimate` scores them with one headline metric (ROC AUC, macro
  AUC, r2), with a stratified bootstrap 95% interval for ROC AUC
  (`repclass.metrics.roc_auc_interval`).
- **Is there any signal at all?** `repclass.comparison.permutation_test` retrains a method N
  times on the same folds with the labels permuted (among the labelled repertoires; whole donors
  exchange labels when the split is grouped by donor) and compares the pooled metric with that
  null: p = (1 + #null >= observed) / (N + 1) (`permutation_p` here). It costs N x K trainings.
- **In words.** `describe`, `recommendation` and `summary_markdown` turn estimates into the
  sentences a lab reads ("DeepRC 0.62 [0.55-0.69], k-mer 0.66 [0.59-0.73]; permutation p = 0.01"),
  which method to trust, and a caveat when the held-out set is small; `write_summary` writes them
  to summary.md. The HTML report can call the same functions.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from repclass.metrics import FEW_PER_CLASS, FEW_REPERTOIRES
from repclass.names import (DESCRIPTION_NAME, OUT_OF_FOLD_NAME, PERMUTATIONS_NAME, PREDICTIONS_NAME,
                            SUMMARY_NAME)
from repclass.targets import BINARY, MULTICLASS, HEADLINE_METRICS as HEADLINE

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

#: Bootstrap resamples and seed of every interval (fixed: the same predictions give the same interval).
RESAMPLES = 2000
INTERVAL_SEED = 0
METRIC_NAMES = {"roc_auc": "ROC AUC", "macro_auc": "macro AUC", "r2": "r2"}
METHOD_NAMES = {"deeprc": "DeepRC", "kmer": "k-mer", "burden": "burden"}


@dataclass(frozen=True)
class Estimate:
    """One method's held-out headline metric for one target, with its interval and null."""

    method: str
    target: str
    metric: str
    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    n_positive: int | None = None  # binary targets only
    n_negative: int | None = None
    pooled: bool = False  # pooled over k folds (False: one test split)
    p_value: float | None = None
    n_permutations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------------------------
# held-out predictions and their estimate
# ----------------------------------------------------------------------------------------------
def model_parts(folder: Path) -> list[tuple[str, Path]]:
    """(fold name, model folder) of a folds folder (fold_1 ... fold_K), or [("all", folder)]."""
    folds = sorted((p for p in Path(folder).glob("fold_*") if p.is_dir() and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    return [(p.name[5:], p) for p in folds] if folds else [("all", Path(folder))]


def folder_targets(folder: Path) -> list[dict[str, Any]]:
    """The targets (column, kind, classes) recorded in a model folder (or its first fold)."""
    return json.loads((model_parts(folder)[0][1] / DESCRIPTION_NAME).read_text())["targets"]


def folder_method(folder: Path) -> str:
    """deeprc, kmer or burden: the method of a model folder (DeepRC's model.json names none)."""
    return json.loads((model_parts(folder)[0][1] / DESCRIPTION_NAME).read_text()).get("method", "deeprc")


def held_out_predictions(folder: Path, split: str = "test") -> "pl.DataFrame":
    """The rows of `split` of every fold model's predictions.tsv, with a `fold` column first: with k
    folds, each labelled repertoire once, scored by the model that held it out."""
    import polars as pl

    tables = []
    for fold, part in model_parts(folder):
        table = pl.read_csv(part / PREDICTIONS_NAME, separator="\t", infer_schema=False)
        tables.append(table.filter(pl.col("split") == split).select(pl.lit(fold).alias("fold"), pl.all()))
    return pl.concat(tables, how="diagonal") if tables else pl.DataFrame()


def _binary_labels(table: "pl.DataFrame", target: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    import polars as pl

    column = target["column"]
    rows = table.filter(pl.col(f"{column}:label").is_not_null())
    positive = target["classes"][1].lower()
    y = np.array([v.lower() == positive for v in rows[f"{column}:label"].to_list()], dtype=bool)
    scores = rows[f"{column}:p({target['classes'][1]})"].cast(pl.Float64).to_numpy()
    return y, scores


def prediction_metrics(table: "pl.DataFrame", target: dict[str, Any]) -> dict[str, float]:
    """Metrics of one target from prediction columns (<col>:p(class), <col>:predicted, <col>:label)."""
    import polars as pl

    from repclass import metrics as M

    column, kind = target["column"], target["kind"]
    label = f"{column}:label"
    if label not in table.columns:
        return {"n": 0.0}
    rows = table.filter(pl.col(label).is_not_null())
    result: dict[str, float] = {"n": float(rows.height)}
    if rows.height == 0:
        return result
    labels = rows[label].to_list()
    if kind == BINARY:
        negative, positive = target["classes"]
        y = np.array([v.lower() == positive.lower() for v in labels])
        p = rows[f"{column}:p({positive})"].cast(pl.Float64).to_numpy()
        result.update(roc_auc=M.roc_auc(y, p), balanced_accuracy=M.balanced_accuracy(y, p >= 0.5),
                      f1=M.f1_score(y, p >= 0.5))
    elif kind == MULTICLASS:
        classes = target["classes"]
        lowered = [c.lower() for c in classes]
        y = np.array([lowered.index(v.lower()) for v in labels])
        p = np.stack([rows[f"{column}:p({c})"].cast(pl.Float64).to_numpy() for c in classes], axis=1)
        result.update(macro_auc=M.macro_auc(y, p), accuracy=float((p.argmax(axis=1) == y).mean()))
    else:
        y = np.array([float(v) for v in labels])
        result.update(M.regression_metrics(y, rows[f"{column}:predicted"].cast(pl.Float64).to_numpy()))
    return result


def statistic(table: "pl.DataFrame", target: dict[str, Any]) -> float:
    """The headline metric of `target` on a predictions table (NaN without labelled rows)."""
    return float(prediction_metrics(table, target).get(HEADLINE[target["kind"]], math.nan))


def estimate(table: "pl.DataFrame", target: dict[str, Any], method: str, pooled: bool) -> Estimate:
    """The headline metric of a predictions table's labelled rows, with a bootstrap 95% interval
    for a binary target's ROC AUC (stratified: resampled within each class)."""
    from repclass.metrics import roc_auc_interval

    metric = HEADLINE[target["kind"]]
    if f"{target['column']}:label" not in table.columns or table.height == 0:
        return Estimate(method, target["column"], metric, math.nan, pooled=pooled)
    if target["kind"] == BINARY:
        y, scores = _binary_labels(table, target)
        value, low, high = roc_auc_interval(y, scores, n_resamples=RESAMPLES, seed=INTERVAL_SEED)
        return Estimate(method, target["column"], metric, value, low, high, n=len(y), n_positive=int(y.sum()),
                        n_negative=int((~y).sum()), pooled=pooled)
    values = prediction_metrics(table, target)
    return Estimate(method, target["column"], metric, float(values.get(metric, math.nan)), n=int(values["n"]),
                    pooled=pooled)


def folder_estimates(folder: Path, method: str | None = None) -> list[Estimate]:
    """Each target's held-out estimate of a model folder (pooled over its folds, if any), with the
    permutation p-value when permutations.tsv is there."""
    method = method or folder_method(folder)
    pooled = model_parts(folder)[0][0] != "all"
    table = held_out_predictions(folder)
    nulls = read_permutations(folder)
    result = []
    for target in folder_targets(folder):
        found = estimate(table, target, method, pooled)
        null = nulls.get(target["column"])
        if null:
            found = replace(found, p_value=permutation_p(found.value, null), n_permutations=len(null))
        result.append(found)
    return result


def write_out_of_fold(folder: Path) -> None:
    """out_of_fold_predictions.tsv: every repertoire's prediction by the fold model that held it out."""
    from repclass.files import write_file_atomically

    table = held_out_predictions(folder)
    write_file_atomically(Path(folder) / OUT_OF_FOLD_NAME, lambda temporary: table.write_csv(temporary, separator="\t"))


# ----------------------------------------------------------------------------------------------
# the permutation test
# ----------------------------------------------------------------------------------------------
def permutation_p(observed: float, null: Sequence[float]) -> float:
    """(1 + #null >= observed) / (N + 1); a null value that is NaN counts against the signal."""
    if math.isnan(observed):
        return math.nan
    at_least = sum(1 for value in null if math.isnan(value) or value >= observed - 1e-12)
    return (1 + at_least) / (len(null) + 1)


def permuted_sources(ids: Sequence[str], groups: dict[str, str] | None, rng: np.random.Generator) -> dict[str, str]:
    """Repertoire -> the repertoire whose labels it takes in one permutation. Without groups a plain
    permutation; with groups (sample id -> donor), donors exchange their labels whole: a donor's
    repertoires (sorted) take those of another donor with as many repertoires, so the labels of a
    donor's time points stay together and the class counts stay as they are."""
    ids = sorted(ids)
    if groups is None:
        order = rng.permutation(len(ids))
        return {ids[i]: ids[int(order[i])] for i in range(len(ids))}
    members: dict[str, list[str]] = {}
    for sample_id in ids:
        members.setdefault(groups[sample_id], []).append(sample_id)
    by_size: dict[int, list[str]] = {}
    for donor in sorted(members):
        by_size.setdefault(len(members[donor]), []).append(donor)
    sources: dict[str, str] = {}
    for size in sorted(by_size):
        donors = by_size[size]
        order = rng.permutation(len(donors))
        for donor, source in zip(donors, (donors[int(i)] for i in order)):
            for mine, theirs in zip(members[donor], members[source]):
                sources[mine] = theirs
    return sources


def read_permutations(folder: Path) -> dict[str, list[float]]:
    """target -> the null values in a folder's permutations.tsv ({} when there is none)."""
    import polars as pl

    path = Path(folder) / PERMUTATIONS_NAME
    if not path.is_file():
        return {}
    table = pl.read_csv(path, separator="\t", schema_overrides={"value": pl.Float64})
    null: dict[str, list[float]] = {}
    for row in table.iter_rows(named=True):
        null.setdefault(row["target"], []).append(math.nan if row["value"] is None else float(row["value"]))
    return null


# ----------------------------------------------------------------------------------------------
# in words
# ----------------------------------------------------------------------------------------------
def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def format_p(p: float | None, n_permutations: int) -> str:
    """'p = 0.03'; 'p < 0.01' below that; at the floor 1 / (N + 1) with 'none of N permutations did as well'."""
    if p is None or math.isnan(p):
        return "p n/a"
    shown = "p < 0.01" if p < 0.01 else f"p = {p:.2g}"
    if p <= 1 / (n_permutations + 1) + 1e-12:
        shown += f" (none of {n_permutations} permutations did as well)"
    return shown


def _p_value(p: float | None) -> str:
    return "n/a" if p is None or math.isnan(p) else "< 0.01" if p < 0.01 else f"{p:.2g}"


def _shown(estimate: Estimate) -> str:
    interval = "" if math.isnan(estimate.low) else f" [{_number(estimate.low)}-{_number(estimate.high)}]"
    return f"{METHOD_NAMES.get(estimate.method, estimate.method)} {_number(estimate.value)}{interval}"


def describe(estimates: Sequence[Estimate]) -> str:
    """One line per target: 'status: held-out ROC AUC (pooled over folds, 95% interval) DeepRC 0.62
    [0.55-0.69], k-mer 0.66 [0.59-0.73]; permutation p = 0.01 (k-mer)'."""
    lines = []
    for target in dict.fromkeys(e.target for e in estimates):
        mine = [e for e in estimates if e.target == target]
        where = "pooled out-of-fold" if any(e.pooled for e in mine) else "test-split"
        interval = ", 95% interval" if any(not math.isnan(e.low) for e in mine) else ""
        line = f"{target}: {where} {METRIC_NAMES[mine[0].metric]}{interval}: " + ", ".join(_shown(e) for e in mine)
        tested = [e for e in mine if e.p_value is not None]
        if len(tested) == 1 and len(mine) == 1:
            line += f"; permutation {format_p(tested[0].p_value, tested[0].n_permutations)}"
        elif tested:
            counts = {e.n_permutations for e in tested}
            shown = [f"{METHOD_NAMES.get(e.method, e.method)} {_p_value(e.p_value)}"
                     + ("" if len(counts) == 1 else f" ({e.n_permutations} permutations)") for e in tested]
            line += (f"; permutation p{f' ({counts.pop()} permutations)' if len(counts) == 1 else ''}: "
                     + ", ".join(shown))
        lines.append(line)
    return "\n".join(lines)


def _overlap(a: Estimate, b: Estimate) -> bool:
    if math.isnan(a.low) or math.isnan(b.low):
        return True  # without intervals nothing says they differ
    return a.low <= b.high and b.low <= a.high


def recommendation(estimates: Sequence[Estimate]) -> str:
    """Which method the lab should trust, per target: the best by held-out headline metric, said
    plainly when its interval is clear of the others', hedged when they overlap, with the caveats
    (a small held-out set, an interval reaching chance, no signal by the permutation test)."""
    lines = []
    for target in dict.fromkeys(e.target for e in estimates):
        mine = [e for e in estimates if e.target == target and not math.isnan(e.value)]
        if not mine:
            lines.append(f"{target}: no held-out estimate (no labelled held-out repertoires of both classes).")
            continue
        best = max(mine, key=lambda e: e.value)
        name = METHOD_NAMES.get(best.method, best.method)
        metric = METRIC_NAMES[best.metric]
        others = [e for e in mine if e is not best]
        overlapping = [e for e in others if _overlap(best, e)]
        if not others:
            text = f"{target}: {name} reaches a held-out {metric} of {_number(best.value)}."
        elif not overlapping:
            text = (f"{target}: trust {name}: its held-out {metric} ({_number(best.value)}) is the highest and its "
                    "interval is clear of the other methods'.")
        else:
            shown = ", ".join(METHOD_NAMES.get(e.method, e.method) for e in overlapping)
            text = (f"{target}: {name} has the highest held-out {metric} ({_number(best.value)}), but its interval "
                    f"overlaps {shown}'s: this cohort does not tell them apart; prefer the simpler method among "
                    "them, or more repertoires, before claiming one is better.")
        chance = {"roc_auc": 0.5, "macro_auc": 0.5, "r2": 0.0}[best.metric]
        if not math.isnan(best.low) and best.low <= chance:
            text += f" Its interval reaches chance ({chance:g}): the signal itself is not established."
        if best.p_value is not None and not math.isnan(best.p_value) and best.p_value > 0.05:
            if 1 / (best.n_permutations + 1) > 0.05:
                text += (f" {best.n_permutations} permutations cannot show p <= 0.05 (p = {best.p_value:.2g}); "
                         "run 19 or more.")
            else:
                text += (f" The permutation test finds no signal (p = {best.p_value:.2g} over "
                         f"{best.n_permutations} permutations): permuted labels do as well.")
        caveat = small_caveat(best)
        if caveat:
            text += " " + caveat
        lines.append(text)
    return "\n".join(lines)


def small_caveat(estimate: Estimate) -> str:
    """A warning when the held-out set is small (the sizes below which predict and the report warn too:
    metrics.FEW_REPERTOIRES in all, FEW_PER_CLASS in a class), else ''."""
    classes = [c for c in (estimate.n_positive, estimate.n_negative) if c is not None]
    if estimate.n >= FEW_REPERTOIRES and all(c >= FEW_PER_CLASS for c in classes):
        return ""
    counts = f" ({estimate.n_positive} positive, {estimate.n_negative} negative)" if classes else ""
    advice = ("read the interval; only more repertoires narrow it" if estimate.pooled else
              "read the interval, and prefer --folds, which tests on every repertoire")
    return (f"Caution: the held-out set is small, {estimate.n} repertoires{counts}; a figure on so few moves a lot "
            f"from one draw of repertoires to the next ({advice}).")


def summary_markdown(estimates: Sequence[Estimate], title: str = "Held-out evaluation", note: str = "") -> str:
    """summary.md: the sentence, the recommendation, `note` (how the repertoires were split) and a
    table of the estimates."""
    lines = [f"# {title}", "", describe(estimates), "", recommendation(estimates), "", *([note, ""] if note else []),
             "| method | target | metric | value | 95% low | 95% high | n | positive | negative | permutation p | "
             "permutations |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in estimates:
        p = "" if e.p_value is None else f"{e.p_value:.3g}"
        lines.append(f"| {e.method} | {e.target} | {e.metric} | {_number(e.value)} | {_number(e.low)} | "
                     f"{_number(e.high)} | {e.n} | {'' if e.n_positive is None else e.n_positive} | "
                     f"{'' if e.n_negative is None else e.n_negative} | {p} | {e.n_permutations or ''} |")
    lines += ["", "Pooled out-of-fold: every labelled repertoire scored once by the fold model that held it out. "
              "Intervals: stratified bootstrap of the held-out repertoires (2000 resamples). Permutation p: "
              "(1 + permutations at least as good) / (permutations + 1), labels permuted among the labelled "
              "repertoires (whole donors when split by donor), the method retrained on the same folds.", ""]
    return "\n".join(lines)


def write_summary(folder: Path, estimates: Sequence[Estimate], title: str = "Held-out evaluation",
                  note: str = "") -> None:
    """summary.md in `folder`, and the sentence and recommendation in the log."""
    from repclass.files import write_file_atomically

    text = summary_markdown(estimates, title, note)
    write_file_atomically(Path(folder) / SUMMARY_NAME, lambda temporary: Path(temporary).write_text(text))
    for line in (describe(estimates) + "\n" + recommendation(estimates)).splitlines():
        log.info("%s", line)
