"""The k-mer baseline: per-repertoire k-mer frequencies, standardised, penalised linear model.

Binary targets: L1 logistic regression with balanced class weights; multiclass: one L1 logistic
model per class (one-vs-rest; probabilities are the softmax of the per-class logits, because
scikit-learn's only multinomial L1 solver, saga, does not converge in useful time with few
repertoires and 10^5 features); regression: elastic net (L1 by default) on the label. The model
is fitted on the training and validation repertoires together (DeepRC uses its validation split
to choose its model; the baseline has no early stopping, so it fits on the same 80% rather than
60%), and its validation figures are therefore in-sample. k (3, 4 or 5 unless fixed) and the
regularisation strength are chosen by inner cross-validation on those repertoires (grouped by
donor when the split is; mean held-out log-loss, or mean squared error for regression; ties go
to the smaller k and the stronger penalty), then the model is refitted on all of them. The test
split is never used for fitting.

Outputs follow DeepRC's conventions (repclass.targets): a logit for a binary target, one logit
per class for a multiclass one, the standardised value for regression, so predictions, metrics
and predictions.tsv have the same meaning and columns. Only the features with a non-zero
coefficient are stored (their k-mer ids, scaler mean and scale, coefficients).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from repclass.errors import UsageError
from repclass.baselines.common import inner_folds, quiet_fit, train_baseline
from repclass.baselines.features import KmerSpec, kmer_features, kmer_vector, select_columns
from repclass.targets import BINARY, MULTICLASS, REGRESSION

if TYPE_CHECKING:
    import polars as pl

    from repclass.config import TrainConfig
    from repclass.training.splits import SplitSpec
    from repclass.io.store import Store
    from repclass.targets import Target, TargetSpec
    from repclass.training.model_folder import TrainResult

log = logging.getLogger(__name__)


#: k where none is fixed or chosen (KmerConfig.spec).
DEFAULT_K = 4


@dataclass(frozen=True)
class KmerConfig:
    """Settings of the k-mer baseline (the one home of its defaults)."""

    #: k-mer length (20^k features); None: chosen among `k_choices` by inner cross-validation
    k: int | None = None
    k_choices: tuple[int, ...] = (3, 4, 5)
    #: positions skipped in the middle of each k-mer (0: contiguous)
    gap: int = 0
    #: weight each window by its sequence's clone count (default: every distinct sequence counts once)
    count_weighted: bool = False
    #: regression targets: elastic-net mixing, 1 = L1 (lasso), between 0 and 1 = elastic net.
    #: Classification is always L1 logistic regression (liblinear, exact and fast for n << p).
    l1_ratio: float = 1.0
    #: regularisation strengths tried by inner CV: from the strength that zeroes every coefficient,
    #: `n_strengths` values over `strength_decades` decades of weaker penalties
    n_strengths: int = 6
    strength_decades: float = 3.0
    inner_folds: int = 5
    #: each fit (inner and final) sees only the `screen` features with the largest gradient at the
    #: null model, i.e. the first ones the L1 path would admit (a strong-rule screen, Tibshirani et
    #: al. 2012); with hundreds of repertoires L1 keeps far fewer. Cuts a fit's time ~8x at k=4.
    #: 0: no screening.
    screen: int = 20_000
    #: at most this many features (k-mers present in the most training repertoires) when 20^k is larger
    max_features: int = 160_000
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if self.k is None and not self.k_choices:
            raise UsageError("the k-mer baseline needs k or at least one k to choose from (k_choices)")
        for k in self.candidates:
            KmerSpec(k, self.gap, self.count_weighted)  # validates k and gap
        if not 0.0 < self.l1_ratio <= 1.0:
            raise UsageError(f"the k-mer baseline's l1_ratio must be in (0, 1], got {self.l1_ratio}")
        if self.n_strengths < 1 or self.inner_folds < 2 or self.max_features < 1:
            raise UsageError("n_strengths and max_features must be at least 1, inner_folds at least 2")

    @property
    def candidates(self) -> list[int]:
        """The k values tried: `k` alone when fixed, else `k_choices`."""
        return [self.k] if self.k is not None else sorted(set(self.k_choices))

    @property
    def spec(self) -> KmerSpec:
        """The features at `k` (at DEFAULT_K when k is left to inner cross-validation)."""
        return self.spec_for(self.k if self.k is not None else DEFAULT_K)

    def spec_for(self, k: int) -> KmerSpec:
        return KmerSpec(k, self.gap, self.count_weighted)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["k_choices"] = list(self.k_choices)
        return data


@dataclass
class KmerFit:
    """One target's fitted linear model on standardised k-mer frequencies.

    outputs = ((x[feature_ids] - mean) / scale) @ coef.T + intercept, with x a repertoire's
    k-mer frequency vector (KmerSpec ids).
    """

    feature_ids: np.ndarray  # (p,) int64 k-mer ids with a non-zero coefficient
    mean: np.ndarray  # (p,) float64
    scale: np.ndarray  # (p,) float64
    coef: np.ndarray  # (n_outputs, p) float64
    intercept: np.ndarray  # (n_outputs,) float64
    strength: float  # the chosen C (classification) or alpha (regression)
    inner_cv: list[dict[str, float]]

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """(n, n_outputs) from k-mer frequency rows restricted to `feature_ids` (n, p)."""
        standardised = (features.astype(np.float64) - self.mean) / self.scale  # (n, p)
        return standardised @ self.coef.T + self.intercept


def _sklearn_at_least(major: int, minor: int) -> bool:
    import sklearn

    return tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (major, minor)


def _l1_logistic(strength: float, config: KmerConfig, seed: int):
    from sklearn.linear_model import LogisticRegression

    # liblinear: an exact L1 solver that is fast with few samples and many features (saga, the
    # only multinomial L1 solver, does not converge in reasonable time there: docs/method.md).
    kwargs: dict[str, Any] = dict(C=strength, solver="liblinear", class_weight="balanced", random_state=seed,
                                  max_iter=config.max_iter)
    if _sklearn_at_least(1, 8):  # `penalty` is deprecated from 1.8: l1_ratio alone names the penalty
        kwargs["l1_ratio"] = 1.0
    else:
        kwargs["penalty"] = "l1"
    return LogisticRegression(**kwargs)


def _fit_at(strength: float, x: np.ndarray, y: np.ndarray, target: "Target", config: KmerConfig,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (n_outputs, p), intercept (n_outputs,)): logits for classes (one L1 logistic model
    per class, one-vs-rest, for multiclass), the raw predicted value for regression."""
    if target.kind == REGRESSION:
        from sklearn.linear_model import ElasticNet

        model = quiet_fit(lambda: ElasticNet(alpha=strength, l1_ratio=config.l1_ratio, max_iter=config.max_iter,
                                             random_state=seed).fit(x, y), "k-mer elastic net")
        return np.asarray(model.coef_, dtype=np.float64)[None, :], np.array([float(model.intercept_)])
    if target.kind == BINARY:
        model = quiet_fit(lambda: _l1_logistic(strength, config, seed).fit(x, y), "k-mer logistic")
        return model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    n_classes = len(target.classes)
    coef, intercept = np.zeros((n_classes, x.shape[1])), np.full(n_classes, -30.0)
    for c in range(n_classes):
        member = (y == c).astype(np.int64)
        if 0 < member.sum() < len(member):  # a class absent from these rows keeps a logit of -30 (p ~ 0)
            model = quiet_fit(lambda: _l1_logistic(strength, config, seed).fit(x, member), "k-mer logistic")
            coef[c], intercept[c] = model.coef_[0], model.intercept_[0]
    return coef, intercept


class _Standardised:
    """The training rows standardised on demand: blocks of (rows, columns) become float64 copies,
    the whole standardised matrix never exists (at 700 repertoires x 160,000 k-mers it would take
    0.9 GB next to the 0.45 GB float32 feature matrix)."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features  # (n, p) float32, not copied
        self.mean, self.scale = _column_moments(features)
        self.active = np.flatnonzero(self.scale > 0)  # constant features carry nothing and cost time

    def block(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(len(rows), len(columns)) float64; `columns` index the active features."""
        kept = self.active[columns]
        return (self.features[np.ix_(rows, kept)] - self.mean[kept]) / self.scale[kept]

    def null_gradient(self, y: np.ndarray, target: "Target", rows: np.ndarray | None = None) -> np.ndarray:
        """(p_active,) |gradient| of the loss at the intercept-only model fitted on `rows` (default
        all), per active feature: the order in which the L1 path admits features. Rows outside
        `rows` get a zero residual, so x[rows] is never copied."""
        mask = np.zeros(len(y), dtype=bool)
        mask[np.arange(len(y)) if rows is None else rows] = True
        if target.kind == REGRESSION:
            residual = np.where(mask, y - y[mask].mean(), 0.0)[:, None]  # (n, 1)
        else:
            classes = np.unique(y[mask])
            indicator = (y[:, None] == classes[None, :]).astype(np.float64)  # (n, n_classes)
            residual = np.where(mask[:, None], indicator - indicator[mask].mean(axis=0), 0.0)
        # standardised(F)' r = (F' r - mean * sum(r)) / scale; F' r in float32 (no float64 copy of F)
        raw = (self.features.T @ residual.astype(np.float32)).astype(np.float64)  # (p, n_outputs)
        gradient = (raw - self.mean[:, None] * residual.sum(axis=0)[None, :]) / np.where(self.scale > 0, self.scale,
                                                                                           1.0)[:, None]
        return np.abs(gradient[self.active]).max(axis=1)

    def screened(self, y: np.ndarray, target: "Target", config: KmerConfig,
                 rows: np.ndarray | None = None) -> np.ndarray:
        """Active columns a fit on `rows` sees: all, or the `config.screen` largest null gradients
        (ties: the lower column)."""
        if not config.screen or len(self.active) <= config.screen:
            return np.arange(len(self.active))
        gradient = self.null_gradient(y, target, rows)
        return np.sort(np.argsort(-gradient, kind="stable")[:config.screen])


def _strength_grid(gradient: float, y: np.ndarray, target: "Target", config: KmerConfig) -> np.ndarray:
    """Penalties from the one that zeroes every coefficient (given the largest null gradient)
    towards weaker ones."""
    if target.kind == REGRESSION:  # lasso: alpha_max = max|X'(y - ybar)| / (n l1_ratio)
        alpha_max = max(gradient / len(y) / config.l1_ratio, 1e-12)
        return alpha_max * np.logspace(0, -config.strength_decades, config.n_strengths)
    c_min = 1.0 / max(gradient, 1e-12)  # logistic: C below ~1/max|X'(y - ybar)| keeps every coefficient at 0
    return c_min * np.logspace(0, config.strength_decades, config.n_strengths)


def _held_out_loss(outputs: np.ndarray, y: np.ndarray, target: "Target") -> float:
    """Mean squared error (regression) or log-loss of the outputs' probabilities."""
    if target.kind == REGRESSION:
        return float(np.mean((outputs[:, 0] - y) ** 2))
    if target.kind == BINARY:
        logit = outputs[:, 0]
        return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -logit, logit))))
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probabilities[np.arange(len(y)), y.astype(np.int64)]))


def _plain_target(kind: str, labels: np.ndarray) -> "Target":
    from repclass.targets import KINDS, Target

    if kind not in KINDS:
        raise UsageError(f"unknown target kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == REGRESSION:
        return Target(column="label", kind=kind, mean=float(labels.mean()), std=float(labels.std()) or 1.0)
    n_classes = int(labels.max()) + 1 if len(labels) else 2
    return Target(column="label", kind=kind, classes=[str(c) for c in range(max(n_classes, 2))])


def _column_moments(features: np.ndarray, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations in float64, two passes over blocks of rows (np.std
    would make a float64 copy of the whole matrix)."""
    total = np.zeros(features.shape[1])
    for start in range(0, len(features), block):
        total += features[start:start + block].sum(axis=0, dtype=np.float64)
    mean = total / max(len(features), 1)
    squares = np.zeros(features.shape[1])
    for start in range(0, len(features), block):
        deviation = features[start:start + block] - mean  # (block, p) float64
        squares += np.einsum("ij,ij->j", deviation, deviation)
    return mean, np.sqrt(squares / max(len(features), 1))


def _prepared(train_labels: np.ndarray, target: "Target | str") -> tuple[np.ndarray, "Target"]:
    if isinstance(target, str):
        target = _plain_target(target, np.asarray(train_labels, dtype=np.float64))
    y = np.asarray(train_labels, dtype=np.float64)
    if target.kind != REGRESSION:
        y = y.astype(np.int64)
        if len(np.unique(y)) < 2:
            raise UsageError(f"target {target.column!r}: the training repertoires hold only one class")
    return y, target


def _choose_strength(x: _Standardised, y: np.ndarray, target: "Target", config: KmerConfig, seed: int,
                     groups: Sequence[str] | None) -> tuple[float, list[dict[str, float]], int]:
    """(chosen strength, mean held-out loss per strength, inner folds) by inner cross-validation."""
    folds = inner_folds(y, config.inner_folds, target.kind != REGRESSION, seed, f"target {target.column!r}",
                        groups)
    grid = _strength_grid(float(x.null_gradient(y, target).max(initial=0.0)), y, target, config)
    losses = np.zeros((len(grid), len(folds)))
    for f, (train_rows, held_rows) in enumerate(folds):
        # screened on the inner-training rows only, so the held-out rows stay unseen
        columns = x.screened(y, target, config, train_rows)
        x_train, x_held = x.block(train_rows, columns), x.block(held_rows, columns)
        for g, strength in enumerate(grid):
            coef, intercept = _fit_at(float(strength), x_train, y[train_rows], target, config, seed)
            losses[g, f] = _held_out_loss(x_held @ coef.T + intercept, y[held_rows], target)
        del x_train, x_held
    inner = [{"strength": float(strength), "loss": float(losses[g].mean())} for g, strength in enumerate(grid)]
    # Ties (to 12 digits) go to the stronger penalty, i.e. the sparser model.
    best = min(range(len(grid)), key=lambda i: (round(inner[i]["loss"], 12), i))
    return float(grid[best]), inner, len(folds)


def _final_fit(x: _Standardised, y: np.ndarray, target: "Target", config: KmerConfig, seed: int, strength: float,
               inner: list[dict[str, float]], n_folds: int) -> KmerFit:
    columns = x.screened(y, target, config)
    coef_screened, intercept = _fit_at(strength, x.block(np.arange(len(y)), columns), y, target, config, seed)
    coef = np.zeros((coef_screened.shape[0], len(x.active)))
    coef[:, columns] = coef_screened
    if target.kind == REGRESSION:  # outputs are standardised labels, as DeepRC's regression head gives them
        coef, intercept = coef / target.std, (intercept - target.mean) / target.std
    keep = np.flatnonzero(np.any(coef != 0, axis=0))
    kept = x.active[keep]
    log.info("target %s: penalty %.3g chosen by %d-fold inner CV; %d of %d k-mer features kept", target.column,
             strength, n_folds, len(keep), len(x.active))
    return KmerFit(feature_ids=kept.astype(np.int64), mean=x.mean[kept], scale=x.scale[kept], coef=coef[:, keep],
                   intercept=intercept, strength=strength, inner_cv=inner)


def fit_kmer(train_features: np.ndarray, train_labels: np.ndarray, target: "Target | str" = BINARY,
             config: KmerConfig | None = None, seed: int = 0, groups: Sequence[str] | None = None) -> KmerFit:
    """Fit one target on k-mer frequency rows (n, p) float32 and labels as `Target.encode` gives
    them (class index: 0/1 for binary with 1 positive, 0..C-1 for multiclass; or a number);
    choose the penalty by inner CV on these rows only (`groups`: each row's donor, kept within
    one inner fold). `target` is a repclass Target or just its
    kind ("binary", "multiclass", "regression"). The result's `feature_ids` index the columns of
    `train_features` (k-mer ids for a full 20^k matrix from `kmer_features`), and
    `fit.outputs(features[:, fit.feature_ids])` gives logits (binary: P(positive) is their
    sigmoid; multiclass: softmax) or, for regression, (value - mean) / std of the training labels.
    """
    config = config or KmerConfig()
    y, target = _prepared(train_labels, target)
    x = _Standardised(train_features)
    strength, inner, n_folds = _choose_strength(x, y, target, config, seed, groups)
    return _final_fit(x, y, target, config, seed, strength, inner, n_folds)


# ----------------------------------------------------------------------------------------------
# training on a store
# ----------------------------------------------------------------------------------------------
def _fit(store: "Store", ids: dict[str, list[str]], targets: list["Target"], config: "TrainConfig",
         settings: KmerConfig, label: str, groups: dict[str, str] | None = None):
    import time

    from repclass.targets import encode_targets

    fit_ids = ids["train"] + ids["validation"]  # the 80% DeepRC learns from (validation: its model choice)
    all_ids = fit_ids + ids["test"]
    values, present = encode_targets(store, targets, fit_ids)
    sizes = store.n_sequences()
    n_sequences = sum(sizes[i] for i in all_ids)
    n_fit = len(fit_ids)
    candidates = settings.candidates
    chosen: tuple[float, int, np.ndarray, np.ndarray, list] | None = None
    by_k = []
    for k in candidates:
        spec = settings.spec_for(k)
        started = time.perf_counter()
        columns = select_columns(store, fit_ids, spec, settings.max_features)
        features = kmer_features(store, all_ids, spec, columns)  # (n, n_features) float32
        elapsed = time.perf_counter() - started
        log.info("%sk-mer features (k=%d%s) of %d repertoires, %d sequences, in %.1f s (%.0f sequences/s)", label,
                 k, f", gap {spec.gap}" if spec.gap else "", len(all_ids), n_sequences, elapsed,
                 n_sequences / max(elapsed, 1e-9))
        kmer_ids = np.arange(spec.n_kmers) if columns is None else columns
        prepared = []
        loss = 0.0
        for j, target in enumerate(targets):
            rows = np.flatnonzero(present[:, j])
            fit_rows = features[:n_fit] if len(rows) == n_fit else features[:n_fit][rows]  # a view if all
            y, _ = _prepared(values[rows, j], target)
            x = _Standardised(fit_rows)
            row_groups = None if groups is None else [groups[fit_ids[r]] for r in rows]
            strength, inner, n_folds = _choose_strength(x, y, target, settings, config.seed, row_groups)
            loss += min(entry["loss"] for entry in inner)
            prepared.append((x, y, strength, inner, n_folds))
        by_k.append({"k": k, "loss": loss})
        if len(candidates) > 1:
            log.info("%sk=%d: inner cross-validation loss %.4f", label, k, loss)
        if chosen is None or round(loss, 12) < round(chosen[0], 12):  # ties: the smaller k (tried first)
            chosen = (loss, k, features, kmer_ids, prepared)
        del features, prepared
    assert chosen is not None
    _, k, features, kmer_ids, prepared = chosen
    if len(candidates) > 1:
        log.info("%sk=%d chosen by %d-fold inner cross-validation among k = %s", label, k, prepared[0][4],
                 ", ".join(map(str, candidates)))
    fits: list[KmerFit] = []
    for target, (x, y, strength, inner, n_folds) in zip(targets, prepared):
        fit = _final_fit(x, y, target, settings, config.seed, strength, inner, n_folds)
        # Column positions within `features` -> k-mer ids, so the stored model reads raw vectors.
        fit.feature_ids = kmer_ids[fit.feature_ids].astype(np.int64)
        fits.append(fit)
    spec = settings.spec_for(k)
    model = KmerModel(spec, targets, fits)
    position = {kmer: i for i, kmer in enumerate(kmer_ids.tolist())} if len(kmer_ids) < spec.n_kmers else None
    outputs_all = model.outputs_from_features(features, position)
    outputs, start = {}, 0
    for split in ("train", "validation", "test"):
        outputs[split] = outputs_all[start:start + len(ids[split])]
        start += len(ids[split])
    fit_notes = [{"target": t.column, "strength": f.strength, "n_features": int(len(f.feature_ids)),
                  "inner_cv": f.inner_cv, "k": k, "inner_cv_k": by_k, "fitted_on": ["train", "validation"]}
                 for t, f in zip(targets, fits)]
    extra = {"kmer_coefficients.tsv": model.write_coefficients}
    return (outputs, model.tensors(), {"kmer": {**settings.to_dict(), "k": k}, "n_features": int(len(kmer_ids))},
            fit_notes, extra)


class KmerModel:
    """A k-mer baseline ready to score repertoires: one KmerFit per target."""

    def __init__(self, spec: KmerSpec, targets: list["Target"], fits: list[KmerFit]) -> None:
        self.spec, self.targets, self.fits = spec, targets, fits
        self.n_outputs = sum(t.n_outputs for t in targets)

    def outputs_from_features(self, features: np.ndarray, position: dict[int, int] | None = None) -> np.ndarray:
        """(n, n_outputs) from frequency rows over all 20^k k-mers, or over the k-mers whose
        column `position` gives."""
        out = np.zeros((len(features), self.n_outputs))
        for target, fit in zip(self.targets, self.fits):
            columns = fit.feature_ids if position is None else np.array([position[i] for i in fit.feature_ids.tolist()],
                                                                        dtype=np.int64)
            out[:, target.offset:target.offset + target.n_outputs] = fit.outputs(features[:, columns])
        return out

    def score_table(self, table: "pl.DataFrame") -> np.ndarray:
        """(n_outputs,) for one repertoire's table (junction_aa, duplicate_count)."""
        return self.outputs_from_features(kmer_vector(table, self.spec)[None, :])[0]

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {}
        for j, fit in enumerate(self.fits):
            tensors.update({f"target{j}.feature_ids": fit.feature_ids, f"target{j}.mean": fit.mean,
                            f"target{j}.scale": fit.scale, f"target{j}.coef": fit.coef,
                            f"target{j}.intercept": fit.intercept})
        return tensors

    @classmethod
    def from_tensors(cls, settings: dict[str, Any], targets: list["Target"], tensors: dict[str, np.ndarray],
                     fits: list[dict[str, Any]]) -> "KmerModel":
        kmer = settings["kmer"]
        spec = KmerSpec(int(kmer["k"]), int(kmer["gap"]), bool(kmer["count_weighted"]))
        loaded = []
        for j in range(len(targets)):
            loaded.append(KmerFit(feature_ids=tensors[f"target{j}.feature_ids"].astype(np.int64),
                                  mean=tensors[f"target{j}.mean"], scale=tensors[f"target{j}.scale"],
                                  coef=tensors[f"target{j}.coef"], intercept=tensors[f"target{j}.intercept"],
                                  strength=float(fits[j]["strength"]) if j < len(fits) else math.nan,
                                  inner_cv=[]))
        return cls(spec, targets, loaded)

    def write_coefficients(self, path: Path) -> None:
        """The interpretation: each kept k-mer with its coefficient per output, largest first."""
        import polars as pl

        rows = []
        for target, fit in zip(self.targets, self.fits):
            names = self.spec.names(fit.feature_ids)
            outputs = ([target.positive] if target.kind == BINARY else target.classes
                       if target.kind == MULTICLASS else ["value"])
            for o, output in enumerate(outputs):
                for name, value in zip(names, fit.coef[o].tolist()):
                    if value != 0:
                        rows.append({"target": target.column, "output": str(output), "kmer": name,
                                     "coefficient": value})
        table = pl.DataFrame(rows, schema={"target": pl.String, "output": pl.String, "kmer": pl.String,
                                           "coefficient": pl.Float64})
        table = table.with_columns(pl.col("coefficient").abs().alias("_abs")).sort(
            ["target", "output", "_abs", "kmer"], descending=[False, False, True, False]).drop("_abs")
        table.write_csv(path, separator="\t")


def train_kmer(store: "str | Path | Store", out: str | Path, *, targets: Sequence["TargetSpec | str"],
               split: "SplitSpec | None" = None, config: "TrainConfig | None" = None,
               kmer: KmerConfig | None = None, force: bool = False) -> "TrainResult":
    """Train the k-mer baseline on a store and write a model folder at `out` (see
    repclass.baselines.common for its files; with `split.folds`, fold_1 ... fold_K).

    `config` supplies the split settings and seed (TrainConfig's validation/test fractions and
    seed: the same seed gives the same split as DeepRC); its DeepRC-only settings are ignored.
    """
    return train_baseline("kmer", _fit, store, out, targets=targets, split=split, config=config,
                          settings=kmer or KmerConfig(), force=force)

