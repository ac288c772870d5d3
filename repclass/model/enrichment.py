"""DeepRC's enrichment path (ModelConfig.enrichment): the output also reads how many of a
repertoire's clonotypes are enriched in the positive training repertoires.

On real cohorts the label can lie in thousands of rare public clonotypes (Emerson et al. 2017; the
burden baseline, `repclass.baselines.burden`), more distinct sequences than 32 kernels and an
attention network can single out. This path hands the model that evidence as one number per
repertoire, read by the output layer beside the attention-pooled embedding with a weight of its own:

    feature = log(1 + 10^4 * enriched share),  composition = (feature - mean) / sd,
    output  = o(attention-pooled embedding) [+ count read-out] + w * composition

The enriched share is the weighted share of the repertoire's distinct junctions in the enriched
set. The set is cross-fitted on the training split only (no validation, no test repertoire): the
training repertoires are cut into K inner folds (stratified, seeded, by donor where the run groups
repertoires by donor); for each fold, the
clonotypes enriched among the other K-1 folds (one-sided Fisher test, `repclass.clonotypes`) form
a set, and a training repertoire's own feature is its share in the set of the folds it is not in,
so that its label never enters its own feature (an in-sample set would hold its private
clonotypes and teach the model to trust the feature far more than it deserves on new repertoires).
Every other repertoire (validation, test, `predict`) is scored against all K sets at once: each
clonotype weighs the share of the K sets that hold it, so the feature is the mean of its K shares,
on the same scale as the training features. The p-value threshold is chosen from burden's grid by
the held-out ROC AUC of the cross-fitted share (ties to the stricter one). Binary targets only.

The fit runs in training (`repclass.training.enrichment.fit_enrichment`); this module holds the path.

The path is used only where that held-out AUC says it reads the labels (`EnrichmentFit.reads_labels`):
above chance by GATE_Z standard errors of a chance AUC. Where the label lies in motifs implanted in
otherwise private sequences, no clonotype is shared often enough to be enriched, the share is noise,
and a path that reads noise only slows training down; training then goes on without it and says so.

The set travels inside the model file as tensors (junction codes, weights, the standardisation):
`repclass predict` and scoring need nothing beside the file.
"""
from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import polars as pl

    from repclass.model.data import EncodedRepertoire

log = logging.getLogger(__name__)

#: The share is scaled to "per 10,000 distinct junctions" before the log.
SHARE_SCALE = 1e4

#: The path is used where its best held-out AUC lies this many standard errors of a chance AUC above
#: 0.5: one-sided 1%, so that the best of the 5 thresholds clears it by luck in about 5% of cohorts
#: without a shared-clonotype signal (docs/method.md, "When the enrichment path is used").
GATE_Z = 2.33


def chance_auc_bound(n_positive: int, n_negative: int, z: float = GATE_Z) -> float:
    """0.5 plus `z` standard errors of the ROC AUC of a score unrelated to the labels
    (Mann-Whitney: sqrt((n1 + n0 + 1) / (12 n1 n0)))."""
    if n_positive < 1 or n_negative < 1:
        return 1.0
    return 0.5 + z * math.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative))


@dataclass
class EnrichmentFit:
    """What training computed: the set (junction strings, weights = share of the inner sets holding
    each), the cross-fitted training features (raw, before standardisation), and the inner CV."""

    junctions: list[str]
    weights: np.ndarray  # (m,) float64 in (0, 1]
    threshold: float
    train_features: np.ndarray  # (n_train,) log(1 + 1e4 * share), each from the sets its own fold is not in
    inner_cv: list[tuple[float, float]]  # (threshold, held-out ROC AUC)
    n_folds: int
    n_positive: int
    n_negative: int

    @property
    def held_out_auc(self) -> float:
        """The chosen threshold's held-out ROC AUC (NaN where the inner folds could not score)."""
        return next(auc for threshold, auc in self.inner_cv if threshold == self.threshold)

    @property
    def chance_bound(self) -> float:
        return chance_auc_bound(self.n_positive, self.n_negative)

    @property
    def reads_labels(self) -> bool:
        """Whether the cross-fitted share reads the training labels better than chance."""
        auc = self.held_out_auc
        return auc == auc and auc > self.chance_bound

    @property
    def mean(self) -> float:
        return float(self.train_features.mean()) if len(self.train_features) else 0.0

    @property
    def scale(self) -> float:
        sd = float(self.train_features.std()) if len(self.train_features) else 0.0
        return sd if sd > 1e-9 else 1.0


def feature_of_share(share: np.ndarray | float) -> np.ndarray:
    return np.log1p(SHARE_SCALE * np.asarray(share, dtype=np.float64))


def encode_junctions(junctions: Sequence[str]) -> np.ndarray:
    """Junction strings -> (m, width) uint8 codes padded with PAD_CODE (at least 1 column)."""
    import polars as pl

    from repclass.model.data import encode_sequences

    codes, _ = encode_sequences(pl.Series(list(junctions), dtype=pl.String))
    return codes


#: Repertoires of fewer sequences than this find their junctions in a Python set of row bytes
#: (10k: 1.4 ms, where polars' queries take 6 ms, most of it fixed cost); larger ones through
#: polars (1M: 0.08 s, where the set takes 0.33 s); they cross near 80k on a 2-core VM. Both give
#: the same share (tests/test_enrichment.py).
POLARS_FROM = 80_000


class EnrichedLookup:
    """A repertoire's weighted share of distinct junctions in the set, from its code matrix.

    Code rows are compared padded to a common width: rows are equal exactly when their junctions
    are (the padding code is not a residue's), so this is the set semantics of junction strings.
    Small repertoires put each row's bytes in a Python set; large ones read each row as uint64
    words and let polars count the distinct rows and probe the set's hash table (no Python loop
    over 1M rows). The matched weights are summed with `math.fsum`, correctly rounded, so the
    share does not depend on any hash order. Each repertoire's share is kept while the repertoire
    lives (the set is fixed once trained: training's evaluations score the same validation
    repertoires again and again); repertoires are never changed in place."""

    def __init__(self, codes: np.ndarray, weights: np.ndarray) -> None:
        from repclass.alphabet import PAD_CODE

        self.pad = PAD_CODE
        self.codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self.weights = np.asarray(weights, dtype=np.float64)
        self._tables: dict[int, dict[bytes, float]] = {}  # width -> the set's row bytes -> weight
        self._shares: dict[int, float] = {}  # id of a living repertoire -> its share

    def __getstate__(self) -> dict:
        # A copy (a model's deepcopy, as motifs makes, or a pickle) keeps none of the shares: their
        # keys are ids that only this lookup's finalizers clear.
        return {**self.__dict__, "_shares": {}}

    def share(self, repertoire: "EncodedRepertoire") -> float:
        key = id(repertoire)
        if key not in self._shares:
            self._shares[key] = self._share(repertoire.codes)
            weakref.finalize(repertoire, self._shares.pop, key, None)  # an id is reused once its object is gone
        return self._shares[key]

    def _share(self, codes: np.ndarray) -> float:
        codes = np.asarray(codes, dtype=np.uint8)  # rows are compared as bytes (no copy when already uint8)
        if codes.shape[0] == 0 or self.codes.shape[0] == 0:
            return 0.0
        if codes.shape[0] < POLARS_FROM:
            width = max(codes.shape[1], self.codes.shape[1])
            if width not in self._tables:  # later pairs win, as for a junction listed twice
                self._tables[width] = dict(zip(_row_bytes(self._padded(self.codes, width)), self.weights.tolist()))
            table, distinct = self._tables[width], set(_row_bytes(self._padded(codes, width)))
            return math.fsum(table[row] for row in distinct if row in table) / len(distinct)
        return self._share_in_polars(codes)

    def _padded(self, codes: np.ndarray, width: int) -> np.ndarray:
        if codes.shape[1] == width:
            return np.ascontiguousarray(codes)
        padded = np.full((codes.shape[0], width), self.pad, dtype=np.uint8)
        padded[:, :codes.shape[1]] = codes
        return padded

    def _keys(self, codes: np.ndarray, width: int) -> "pl.LazyFrame":
        """(n, w) codes -> n rows of uint64 words holding the codes padded to `width` (a multiple of 8)."""
        import polars as pl

        columns = {}
        for word in range(width // 8):
            part = codes[:, 8 * word:8 * word + 8]
            if part.shape[1] < 8:  # this word runs past the codes' width: the rest is padding
                part = np.concatenate([part, np.full((len(part), 8 - part.shape[1]), self.pad, np.uint8)], axis=1)
            columns[f"w{word}"] = np.ascontiguousarray(part).view(np.uint64)[:, 0]
        return pl.LazyFrame(columns)

    def _share_in_polars(self, codes: np.ndarray) -> float:
        import polars as pl

        width = -(-max(codes.shape[1], self.codes.shape[1]) // 8) * 8
        keys = self._keys(codes, width)
        words = keys.collect_schema().names()
        # A junction listed twice in the set counts once, with its last weight (as a dict would).
        enriched = self._keys(self.codes, width).with_columns(weight=pl.Series(self.weights)).unique(
            subset=words, keep="last", maintain_order=True)
        # Lazy queries: polars' eager n_unique over several columns holds 6x the memory of unique + len.
        # The repertoire's rows probe a hash table of the (small) set, not the other way round.
        distinct = keys.unique().select(pl.len()).collect().item()
        matched = keys.join(enriched, on=words, how="inner").unique(subset=words).collect()["weight"]
        return math.fsum(matched.to_numpy()) / distinct


def _row_bytes(codes: np.ndarray) -> list[bytes]:
    """Each row of a C-contiguous (n, w) uint8 array as bytes (numpy's void view: no Python loop)."""
    return codes.view(np.dtype((np.void, codes.shape[1]))).ravel().tolist()


def standardised(share: float, mean: float, scale: float) -> float:
    return (float(feature_of_share(share)) - mean) / scale if math.isfinite(share) else 0.0
