"""The burden baseline (Emerson et al., Nature Genetics 2017): public clonotypes enriched in
positive repertoires.

For each clonotype (the junction, or junction + V and J genes without alleles) the training
repertoires holding it are counted among positives (a) and negatives (b); its enrichment p-value
is the one-sided Fisher's exact test of [[a, P - a], [b, N - b]] (alternative "greater"), i.e.
the hypergeometric tail P(X >= a). Clonotypes with p <= threshold and in at least
`min_positive` positive repertoires are "enriched". A repertoire's burden score is the share of its
distinct clonotypes that are enriched; a 1-D logistic regression on the standardised score gives
the probability. The threshold is chosen from a small grid by inner cross-validation on the
training repertoires (held-out ROC AUC of the score, pooled over the inner folds; ties go to the
stricter threshold). Binary targets only. Like the k-mer baseline it is fitted on the training
and validation repertoires together (DeepRC's 80%; its validation figures are in-sample), with
inner folds grouped by donor when the split is.

Memory (`repclass.clonotypes`, which DeepRC's enrichment path shares): the distinct clonotypes of
every training repertoire are hashed to 64-bit integers (8 bytes per (training repertoire,
distinct clonotype) pair: 700 x 300k x 60% training repertoires, ~1 GB); the clonotypes found in
at least `min_positive` of them are counted one 1/16 slice of the hash range at a time, and only
their pairs are kept afterwards. The enriched clonotypes are written out as text
(enriched_clonotypes.tsv) and used by predict.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from repclass.errors import UsageError
from repclass.baselines.common import inner_folds, quiet_fit, train_baseline
from repclass.clonotypes import (burden_scores, clonotype_columns, clonotype_incidence, clonotype_keys,
                                 clonotype_strings, enriched_clonotypes)
from repclass.names import ENRICHED_NAME
from repclass.targets import BINARY

if TYPE_CHECKING:
    import polars as pl

    from repclass.config import TrainConfig
    from repclass.training.splits import SplitSpec
    from repclass.io.store import Store
    from repclass.targets import Target, TargetSpec
    from repclass.training.model_folder import TrainResult

log = logging.getLogger(__name__)
CLONOTYPES = ("junction", "junction_vj")


@dataclass(frozen=True)
class BurdenConfig:
    """Settings of the burden baseline (the one home of its defaults)."""

    #: what makes a clonotype: the junction alone, or junction + V and J genes (alleles dropped)
    clonotype: str = "junction"
    #: p-value thresholds tried by inner cross-validation (Emerson et al. used 1e-4 on 640 subjects)
    thresholds: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 5e-2, 1e-1)
    #: an enriched clonotype must be in at least this many positive training repertoires
    min_positive: int = 2
    inner_folds: int = 5

    def __post_init__(self) -> None:
        if self.clonotype not in CLONOTYPES:
            raise UsageError(f"--burden-clonotype must be one of {', '.join(CLONOTYPES)}, got {self.clonotype!r}")
        if not self.thresholds or any(not 0 < t <= 1 for t in self.thresholds):
            raise UsageError("burden p-value thresholds must be in (0, 1]")
        if self.min_positive < 1 or self.inner_folds < 2:
            raise UsageError("burden min_positive must be at least 1 and inner_folds at least 2")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thresholds"] = list(self.thresholds)
        return data


def _fit(store: "Store", ids: dict[str, list[str]], targets: list["Target"], config: "TrainConfig",
         settings: BurdenConfig, label: str, groups: dict[str, str] | None = None):
    import polars as pl
    from sklearn.linear_model import LogisticRegression

    from repclass.metrics import roc_auc
    from repclass.targets import encode_targets

    for target in targets:
        if target.kind != BINARY:
            raise UsageError(f"the burden baseline needs binary targets; {target.column!r} is {target.kind} "
                             "(use --method kmer or deeprc for it)")
    fit_ids = ids["train"] + ids["validation"]  # the 80% DeepRC learns from (validation: its model choice)
    values, present = encode_targets(store, targets, fit_ids)
    models, fit_notes, tables, tensors = [], [], {}, {}
    for j, target in enumerate(targets):
        rows_ids = [i for i, keep in zip(fit_ids, present[:, j]) if keep]
        # a clonotype in fewer than min_positive training repertoires can never be enriched
        incidence = clonotype_incidence(store, rows_ids, settings.clonotype, max(settings.min_positive, 1))
        positive = values[present[:, j], j] == 1
        # inner CV: held-out scores for each threshold, pooled over folds, then ROC AUC
        folds = inner_folds(positive.astype(np.int64), settings.inner_folds, True, config.seed,
                            f"target {target.column!r}", None if groups is None else [groups[i] for i in rows_ids])
        held_out = np.zeros((len(settings.thresholds), len(positive)))
        for train_rows, held_rows in folds:
            masks, _, _, _ = enriched_clonotypes(incidence, train_rows, positive, settings.thresholds,
                                                 settings.min_positive)
            for t, mask in enumerate(masks):
                held_out[t, held_rows] = burden_scores(incidence, mask)[held_rows]
        aucs = [roc_auc(positive, held_out[t]) for t in range(len(settings.thresholds))]
        best = min(range(len(aucs)), key=lambda t: (-(aucs[t] if aucs[t] == aucs[t] else -1.0), t))
        threshold = settings.thresholds[best]
        every = np.arange(len(positive))
        masks, p, in_positive, in_negative = enriched_clonotypes(incidence, every, positive, [threshold],
                                                                 settings.min_positive)
        enriched = masks[0]
        # the enriched clonotypes as text: read back from the positive training repertoires
        wanted = incidence.hashes[enriched]
        table = pl.DataFrame({
            "clonotype": clonotype_strings(store, [i for i, p in zip(rows_ids, positive) if p], wanted,
                                           settings.clonotype),
            "p_value": p[enriched], "in_positive": in_positive[enriched].astype(np.int64),
            "in_negative": in_negative[enriched].astype(np.int64),
        }).with_columns(pl.lit(int(positive.sum())).alias("n_positive"),
                        pl.lit(int((~positive).sum())).alias("n_negative")).sort(["p_value", "clonotype"])
        model = BurdenFit(set(table["clonotype"].to_list()), settings.clonotype, 0.0, 1.0, 0.0, 0.0)
        # score the training repertoires with the same code predict uses, then the 1-D logistic fit
        train_scores = np.array([model.score(store.read(i, clonotype_columns(settings.clonotype))) for i in rows_ids])
        model.mean = float(train_scores.mean())
        model.scale = float(train_scores.std()) or 1.0
        z = ((train_scores - model.mean) / model.scale)[:, None]
        logistic = quiet_fit(lambda: LogisticRegression(C=1.0, class_weight="balanced").fit(z, positive),
                             "burden logistic")
        model.coef, model.intercept = float(logistic.coef_[0, 0]), float(logistic.intercept_[0])
        log.info("%starget %s: p <= %g chosen by %d-fold inner CV (held-out AUC %s); %d enriched clonotypes", label,
                 target.column, threshold, len(folds), ", ".join(f"{t:g}: {a:.3f}" for t, a in
                                                                 zip(settings.thresholds, aucs)), table.height)
        if table.height == 0:
            log.warning("%starget %s: no clonotype in at least %d positive training repertoires is enriched at "
                        "p <= %g; the burden baseline predicts the same probability for every repertoire (the "
                        "cohort has no public clonotypes that mark the positives)", label, target.column,
                        settings.min_positive, threshold)
        models.append(model)
        tables[target.column] = table
        tensors[f"target{j}.scaler"] = np.array([model.mean, model.scale])
        tensors[f"target{j}.logistic"] = np.array([model.coef, model.intercept])
        fit_notes.append({"target": target.column, "threshold": threshold, "n_enriched": table.height,
                          "inner_cv": [{"threshold": t, "roc_auc": a} for t, a in zip(settings.thresholds, aucs)],
                          "fitted_on": ["train", "validation"]})
    burden_model = BurdenModel(targets, models)
    outputs = {split: np.stack([burden_model.score_table(store.read(i, clonotype_columns(settings.clonotype)))
                                for i in split_ids]) if split_ids else np.zeros((0, len(targets)))
               for split, split_ids in ids.items()}

    def write_enriched(path: Path) -> None:
        frames = [t.select(pl.lit(column).alias("target"), pl.all()) for column, t in tables.items()]
        pl.concat(frames).write_csv(path, separator="\t")

    return outputs, tensors, {"burden": settings.to_dict()}, fit_notes, {ENRICHED_NAME: write_enriched}


@dataclass
class BurdenFit:
    """One target: the enriched clonotypes and the 1-D logistic regression on the standardised
    burden score."""

    enriched: set[str]
    clonotype: str
    mean: float
    scale: float
    coef: float
    intercept: float

    def score(self, table: "pl.DataFrame") -> float:
        """Share of the repertoire's distinct clonotypes that are enriched."""
        import polars as pl

        keys = clonotype_keys(table, self.clonotype)
        if len(keys) == 0 or not self.enriched:
            return 0.0
        if getattr(self, "_lookup", None) is None:
            self._lookup = pl.Series(sorted(self.enriched), dtype=pl.String)
        return float(keys.is_in(self._lookup).sum()) / len(keys)

    def output(self, table: "pl.DataFrame") -> float:
        """The logit."""
        return self.coef * (self.score(table) - self.mean) / self.scale + self.intercept


class BurdenModel:
    def __init__(self, targets: list["Target"], fits: list[BurdenFit]) -> None:
        self.targets, self.fits = targets, fits

    @property
    def columns(self) -> list[str]:
        return clonotype_columns(self.fits[0].clonotype) if self.fits else ["junction_aa"]

    def score_table(self, table: "pl.DataFrame") -> np.ndarray:
        return np.array([fit.output(table) for fit in self.fits])

    @classmethod
    def from_folder(cls, folder: Path, settings: dict[str, Any], targets: list["Target"],
                    tensors: dict[str, np.ndarray]) -> "BurdenModel":
        import polars as pl

        from repclass.errors import ModelFileError

        path = folder / ENRICHED_NAME
        if not path.exists():
            raise ModelFileError(f"{path}: missing from the burden model folder; copy the whole folder")
        table = pl.read_csv(path, separator="\t", schema_overrides={"target": pl.String, "clonotype": pl.String})
        fits = []
        for j, target in enumerate(targets):
            mean, scale = tensors[f"target{j}.scaler"].tolist()
            coef, intercept = tensors[f"target{j}.logistic"].tolist()
            enriched = set(table.filter(pl.col("target") == target.column)["clonotype"].to_list())
            fits.append(BurdenFit(enriched, settings["burden"]["clonotype"], mean, scale, coef, intercept))
        return cls(targets, fits)


def train_burden(store: "str | Path | Store", out: str | Path, *, targets: Sequence["TargetSpec | str"],
                 split: "SplitSpec | None" = None, config: "TrainConfig | None" = None,
                 burden: BurdenConfig | None = None, force: bool = False) -> "TrainResult":
    """Train the burden baseline (binary targets only) and write a model folder at `out`, with
    enriched_clonotypes.tsv (clonotype, p-value, positive and negative training repertoires
    holding it)."""
    return train_baseline("burden", _fit, store, out, targets=targets, split=split, config=config,
                          settings=burden or BurdenConfig(), force=force)
