"""Public clonotypes across a cohort: which repertoires hold which clonotype (the junction, or
junction + V and J genes without alleles), how strongly each is enriched among the positive
repertoires (one-sided Fisher's exact test), and each repertoire's share of enriched ones.

Shared by the burden baseline (`repclass.baselines.burden`, Emerson et al. 2017) and the fit of
DeepRC's enrichment path (`repclass.training.enrichment`). numpy and polars only: this runs at
every default `repclass train` start, where scipy.stats' import would cost about a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from repclass.progress import counted

if TYPE_CHECKING:
    import polars as pl

    from repclass.io.store import Store


def clonotype_columns(clonotype: str) -> list[str]:
    """The repertoire columns a clonotype is made of."""
    return ["junction_aa", "v_call", "j_call"] if clonotype == "junction_vj" else ["junction_aa"]


def clonotype_keys(table: "pl.DataFrame", clonotype: str) -> "pl.Series":
    """Distinct clonotype strings of one repertoire ('CASS...F' or 'CASS...F|TRBV5-1|TRBJ2-7')."""
    import polars as pl

    if clonotype == "junction":
        return table["junction_aa"].unique().sort()
    gene = [pl.col(c).fill_null("").str.split("*").list.first() for c in ("v_call", "j_call")]
    keys = table.select(pl.concat_str([pl.col("junction_aa"), *gene], separator="|").alias("clonotype"))
    return keys["clonotype"].unique().sort()


def _hashes(keys: "pl.Series") -> np.ndarray:
    # polars' hash is stable for a given polars version and seed; it is used only within one run.
    return np.unique(keys.hash(seed=0).to_numpy())


def enrichment_p_values(in_positive: np.ndarray, in_negative: np.ndarray, n_positive: int,
                        n_negative: int) -> np.ndarray:
    """One-sided Fisher's exact p-values (alternative: enriched in positives), vectorised.

    Fisher's test of [[a, P-a], [b, N-b]] conditions on the margins, so p = P(X >= a) for X
    hypergeometric (population P+N, P successes, a+b draws); computed once per distinct (a, b).
    """
    pairs, inverse = np.unique(np.stack([in_positive, in_negative], axis=1), axis=0, return_inverse=True)
    p = _hypergeometric_tail(pairs[:, 0], pairs[:, 0] + pairs[:, 1], n_positive, n_positive + n_negative)
    return np.clip(p, 0.0, 1.0)[inverse.reshape(-1)]


def _hypergeometric_tail(at_least: np.ndarray, draws: np.ndarray, successes: int, population: int) -> np.ndarray:
    """P(X >= at_least) for X hypergeometric (population, successes, draws), exactly as a sum of
    the pmf over the tail, in log space from a table of log-factorials (numpy only: scipy.stats'
    import costs about a second, and this runs at every default `repclass train` start)."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, population + 1, dtype=np.float64)))])

    def log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
        return log_factorial[n] - log_factorial[k] - log_factorial[n - k]

    at_least, draws = np.asarray(at_least, dtype=np.int64), np.asarray(draws, dtype=np.int64)
    tail = np.zeros(len(at_least))
    top = np.minimum(draws, successes)  # the largest possible X
    for row in range(len(at_least)):
        low = max(int(at_least[row]), int(draws[row]) - (population - successes), 0)
        if low > top[row]:
            continue
        k = np.arange(low, top[row] + 1)
        log_pmf = (log_choose(np.int64(successes), k) + log_choose(np.int64(population - successes), draws[row] - k)
                   - log_choose(np.int64(population), draws[row]))
        tail[row] = np.exp(log_pmf).sum()
    return tail


@dataclass
class Incidence:
    """Which training repertoire holds which (shared) clonotype: pairs (repertoire, clonotype)."""

    hashes: np.ndarray  # (n_clonotypes,) uint64, sorted: clonotypes in >= 2 training repertoires
    pair_repertoire: np.ndarray  # (n_pairs,) int32
    pair_clonotype: np.ndarray  # (n_pairs,) int64 index into hashes
    sizes: np.ndarray  # (n_repertoires,) distinct clonotypes per repertoire


_BUCKET_BITS = 4  # shared clonotypes are found in 16 slices of the hash range, to bound the working memory


def clonotype_incidence(store: "Store", ids: list[str], clonotype: str, min_incidence: int = 2) -> Incidence:
    """Read each repertoire once, keep its sorted distinct clonotype hashes (8 bytes each), find
    the clonotypes in at least `min_incidence` repertoires one hash-range slice at a time, then
    keep only the (repertoire, clonotype) pairs of those."""
    per_repertoire = [_hashes(clonotype_keys(store.read(i, clonotype_columns(clonotype)), clonotype))
                      for i in counted(ids, "shared clonotypes: reading the repertoires")]
    sizes = np.array([len(h) for h in per_repertoire], dtype=np.int64)
    bounds = (np.arange(1 << _BUCKET_BITS, dtype=np.uint64) << np.uint64(64 - _BUCKET_BITS))
    cuts = [np.append(np.searchsorted(h, bounds), len(h)) for h in per_repertoire]  # (buckets + 1,) each
    shared_parts = []
    for bucket in range(1 << _BUCKET_BITS):
        chunk = np.concatenate([h[c[bucket]:c[bucket + 1]] for h, c in zip(per_repertoire, cuts)] or
                               [np.zeros(0, dtype=np.uint64)])
        values, counts = np.unique(chunk, return_counts=True)
        shared_parts.append(values[counts >= min_incidence])
        del chunk, values, counts
    hashes = np.concatenate(shared_parts)  # sorted: the slices are in hash order
    pair_repertoire, pair_clonotype = [], []
    for index in range(len(per_repertoire)):
        own = per_repertoire[index]
        position = np.searchsorted(hashes, own)
        hit = position < len(hashes)
        hit[hit] = hashes[position[hit]] == own[hit]
        pair_clonotype.append(position[hit].astype(np.int64))
        pair_repertoire.append(np.full(int(hit.sum()), index, dtype=np.int32))
        per_repertoire[index] = None  # free as we go
    return Incidence(hashes, np.concatenate(pair_repertoire) if ids else np.zeros(0, dtype=np.int32),
                     np.concatenate(pair_clonotype) if ids else np.zeros(0, dtype=np.int64), sizes)


def clonotype_strings(store: "Store", ids: Sequence[str], wanted: np.ndarray, clonotype: str) -> list[str]:
    """The clonotype strings of hashes `wanted` (as `clonotype_incidence` hashes them), read back from
    repertoires `ids` (each hash must be in one of them), in the order of `wanted`."""
    import polars as pl

    found: dict[int, str] = {}
    for sample_id in ids:
        if len(found) >= len(wanted):
            break
        keys = clonotype_keys(store.read(sample_id, clonotype_columns(clonotype)), clonotype)
        hashed = keys.hash(seed=0).to_numpy()
        hit = np.isin(hashed, wanted)
        found.update(zip(hashed[hit].tolist(), keys.filter(pl.Series(hit)).to_list()))
    return [found[h] for h in wanted.tolist()]


def enriched_clonotypes(incidence: Incidence, rows: np.ndarray, positive: np.ndarray, thresholds: Sequence[float],
                        min_positive: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per threshold, a boolean mask over clonotypes enriched among repertoires `rows`; plus the
    p-values and positive/negative counts over those repertoires."""
    n_clonotypes = len(incidence.hashes)
    member = np.zeros(len(incidence.sizes), dtype=bool)
    member[rows] = True
    chosen = member[incidence.pair_repertoire]
    is_positive = positive[incidence.pair_repertoire[chosen]]
    clonotypes = incidence.pair_clonotype[chosen]
    in_positive = np.bincount(clonotypes[is_positive], minlength=n_clonotypes)
    in_negative = np.bincount(clonotypes[~is_positive], minlength=n_clonotypes)
    n_positive = int(positive[rows].sum())
    n_negative = len(rows) - n_positive
    p = np.ones(n_clonotypes)
    candidates = in_positive >= min_positive
    if candidates.any():
        p[candidates] = enrichment_p_values(in_positive[candidates], in_negative[candidates], n_positive, n_negative)
    masks = [candidates & (p <= t) for t in thresholds]
    return masks, p, in_positive, in_negative


def burden_scores(incidence: Incidence, enriched: np.ndarray) -> np.ndarray:
    """Share of each training repertoire's distinct clonotypes that are enriched."""
    hits = np.bincount(incidence.pair_repertoire[enriched[incidence.pair_clonotype]],
                       minlength=len(incidence.sizes))
    return hits / np.maximum(incidence.sizes, 1)
