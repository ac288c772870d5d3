"""The evidence beside the motifs: how good the model is on held-out repertoires, how much each
prediction rests on a few sequences, whether a motif is enriched in the class, and, for
simulated data with known implants, whether the explanation finds them.

Plain numpy and polars on tables `repclass motifs` writes (scores.tsv, sequences.tsv,
motifs.json); nothing here runs the model, so each number can be recomputed from the outputs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl

from repclass.errors import InputFileError

#: Sequences per repertoire whose attention rank counts as "attended" for the truth recall.
TRUTH_TOP_ATTENTION = 50
TRUTH_COLUMNS = ("sample_id", "sequence_id", "junction_aa", "motif_start")


# ----------------------------------------------------------------------------------------------
# attention concentration
# ----------------------------------------------------------------------------------------------
def effective_number(weights: np.ndarray) -> float:
    """1 / sum w_i^2: the number of equally weighted sequences that would give the same
    concentration (1 when one sequence holds all attention, k when k share it evenly)."""
    weights = np.asarray(weights, dtype=np.float64)
    total = float((weights ** 2).sum())
    return 1.0 / total if total > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# curves and confusion
# ----------------------------------------------------------------------------------------------
def roc_points(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = positive[order]
    last = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(hits) - 1]  # last index of each tie group
    tp = np.cumsum(hits)[last]
    fp = (last + 1) - tp
    n_pos, n_neg = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def pr_points(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, highest threshold first."""
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = positive[order]
    last = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(hits) - 1]
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / max(int(positive.sum()), 1)
    # Stop at the first threshold that reaches full recall: lower ones only add false positives.
    full = np.nonzero(recall >= 1.0)[0]
    if len(full):
        precision, recall = precision[:full[0] + 1], recall[:full[0] + 1]
    return np.r_[0.0, recall], np.r_[precision[0] if len(precision) else 1.0, precision]


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall steps (sum of precision x recall increments)."""
    recall, precision = pr_points(positive, scores)
    return float(np.sum(np.diff(recall) * precision[1:]))


def confusion(true: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(n_classes, n_classes) counts: rows the label, columns the prediction."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(true, predicted):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


# ----------------------------------------------------------------------------------------------
# motif enrichment
# ----------------------------------------------------------------------------------------------
def consensus_pattern(consensus: str) -> str:
    """A regular expression for a motif consensus: upper-case residues literal, lower-case ones
    (fewer than half the members agree) any residue; leading/trailing lower case dropped."""
    core = consensus.strip("abcdefghijklmnopqrstuvwxyz")
    return "".join(c if c.isupper() else "." for c in (core or consensus.upper()))


#: scipy's rule for the exact Mann-Whitney distribution: a group of at most this many and no ties.
EXACT_MANN_WHITNEY_LIMIT = 8


def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided p-value that x tends to exceed y: the Mann-Whitney U test as scipy's
    `mannwhitneyu(x, y, alternative="greater")` computes it (exact when a group has at most 8
    values and nothing ties, otherwise the normal approximation with tie and continuity
    corrections); NaN when a group is empty; 1 when all values tie. In numpy, because importing
    scipy.stats costs about 1.5 s at every `repclass motifs` start (tests/test_report.py checks it
    against scipy)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return math.nan
    _, inverse, ties = np.unique(np.concatenate([x, y]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(ties) - (ties - 1) / 2)[inverse.ravel()]  # mid-ranks, 1-based
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    if min(n1, n2) <= EXACT_MANN_WHITNEY_LIMIT and not (ties > 1).any():
        return min(_exact_u_survival(round(u), n1, n2), 1.0)
    n = n1 + n2
    spread = math.sqrt(n1 * n2 / 12 * ((n + 1) - float((ties.astype(np.float64) ** 3 - ties).sum()) / (n * (n - 1))))
    excess = u - n1 * n2 / 2 - 0.5  # continuity correction
    if spread == 0:
        return 1.0 if excess < 0 else (0.0 if excess > 0 else math.nan)
    return min(max(0.5 * math.erfc(excess / spread / math.sqrt(2)), 0.0), 1.0)


def _exact_u_survival(u: int, n1: int, n2: int) -> float:
    """P(U >= u) under the null for groups of n1 and n2 without ties: the number of rank
    assignments giving each U are the coefficients of the Gaussian binomial [n1 + n2, n1]_q,
    built in exact integers as prod_i (1 - q^(n2 + i)) / (1 - q^i)."""
    small, large = min(n1, n2), max(n1, n2)
    counts = [0] * (small * large + 1)
    counts[0] = 1
    for i in range(1, small + 1):
        for j in range(len(counts) - 1, large + i - 1, -1):  # times (1 - q^(large + i))
            counts[j] -= counts[j - large - i]
        for j in range(i, len(counts)):  # divided by (1 - q^i)
            counts[j] += counts[j - i]
    total = math.comb(n1 + n2, n1)
    if u <= 0:
        return 1.0
    return sum(counts[u:]) / total


@dataclass
class Enrichment:
    """A motif's frequency in repertoires of the explained class vs the others."""

    pattern: str
    n_class: int  # labelled repertoires of the explained class
    n_other: int
    with_class: int  # of them, those holding at least one matching sequence
    with_other: int
    frequency_class: float  # mean share of a repertoire's sequences that match
    frequency_other: float
    p_value: float  # one-sided Mann-Whitney on the per-repertoire shares

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 8) if isinstance(v, float) and math.isfinite(v) else
                    (None if isinstance(v, float) else v)) for k, v in self.__dict__.items()}


def motif_frequencies(tables: Iterable[tuple[str, pl.DataFrame]], patterns: Sequence[str]) -> dict[str, np.ndarray]:
    """Per repertoire, the share of its sequences matching each pattern: {sample id: (n_patterns,)}."""
    result = {}
    for sample_id, table in tables:
        junctions = table["junction_aa"]
        height = max(table.height, 1)
        result[sample_id] = np.array([float(junctions.str.contains(p).sum()) / height for p in patterns])
    return result


def enrichment(pattern: str, shares: dict[str, float], in_class: dict[str, bool]) -> Enrichment:
    """Enrichment of one motif over the labelled repertoires (`in_class` holds only labelled ids)."""
    ids = [i for i in shares if i in in_class]
    x = np.array([shares[i] for i in ids if in_class[i]])
    y = np.array([shares[i] for i in ids if not in_class[i]])
    return Enrichment(pattern=pattern, n_class=len(x), n_other=len(y), with_class=int((x > 0).sum()),
                      with_other=int((y > 0).sum()), frequency_class=float(x.mean()) if len(x) else math.nan,
                      frequency_other=float(y.mean()) if len(y) else math.nan, p_value=mann_whitney_greater(x, y))


def gene_usage(calls: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
    """The `top` most frequent gene names (allele dropped) with their shares; empty calls ignored."""
    genes = [c.split("*")[0] for c in calls if c]
    if not genes:
        return []
    names, counts = np.unique(np.array(genes), return_counts=True)
    order = np.lexsort((names, -counts))[:top]
    return [(str(names[i]), float(counts[i]) / len(genes)) for i in order]


# ----------------------------------------------------------------------------------------------
# ground truth for simulated cohorts
# ----------------------------------------------------------------------------------------------
def read_truth(path: str | Path) -> pl.DataFrame:
    """An implanted-sequences table (TSV/CSV): sample_id, sequence_id, junction_aa, motif_start
    (0-based start of the implanted motif in junction_aa); other columns may follow.

    Rows with `noise` true (`repclass simulate --noise-rate`: broken motif copies put into the
    negatives as decoys) are not witnesses and are left out."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file; give the table of implanted sequences (--truth)")
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pl.read_csv(path, separator=separator, infer_schema_length=0)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(path, f"cannot be read as a {'CSV' if separator == ',' else 'TSV'} table ({exc})") \
            from exc
    missing = [c for c in TRUTH_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing column(s) {', '.join(missing)}; a truth table needs "
                                   f"{', '.join(TRUTH_COLUMNS)} (other columns may follow)", line=1)
    starts = table["motif_start"].cast(pl.Int64, strict=False)
    bad = starts.is_null() | (starts < 0)
    if bad.any():
        row = int(np.nonzero(bad.to_numpy())[0][0])
        raise InputFileError(path, f"motif_start {table['motif_start'][row]!r} is not a 0-based position; give the "
                                   f"start of the implanted motif in junction_aa", line=row + 2)
    table = table.with_columns(starts.alias("motif_start"))
    if "noise" in table.columns:
        table = table.filter(pl.col("noise").str.to_lowercase().is_in(["true", "t", "1", "yes"]).not_())
    return table


@dataclass
class TruthInputs:
    """What the motif run saw of the implanted sequences, per analysed repertoire."""

    #: sample id -> (junctions of its top-50 attended sequences, their attention weights)
    top_attended: dict[str, tuple[list[str], np.ndarray]]
    #: sample id -> attention mass (share of the softmax) on implanted sequences
    attention_mass: dict[str, float]


def implanted_by_sample(truth: pl.DataFrame) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for sample_id, junction in zip(truth["sample_id"].to_list(), truth["junction_aa"].to_list()):
        result.setdefault(sample_id, set()).add(junction)
    return result


def _precision_at(hits: list[bool], k: int) -> float:
    return float(sum(hits[:k])) / k if k > 0 else math.nan


def motif_matches_truth(consensus: str, truth: pl.DataFrame, motif_width: int = 4) -> tuple[float, str]:
    """Share of implanted sequences whose implanted region (motif_start - 2 .. motif_start + width
    + 2) the consensus pattern matches, and the most common implanted text at motif_start."""
    pattern = re.compile(consensus_pattern(consensus))
    width = motif_width
    if "motif" in truth.columns:
        lengths = [len(m) for m in truth["motif"].to_list() if m]
        width = max(lengths) if lengths else width
    hits, texts = 0, []
    for junction, start in zip(truth["junction_aa"].to_list(), truth["motif_start"].to_list()):
        region = junction[max(0, start - 2): start + width + 2]
        hits += bool(pattern.search(region))
        texts.append(junction[start: start + width])
    if not texts:
        return math.nan, ""
    names, counts = np.unique(np.array(texts), return_counts=True)
    return hits / len(texts), str(names[int(np.argmax(counts))])


def score_against_truth(sequences: pl.DataFrame, truth: pl.DataFrame, analysed: Sequence[str],
                        consensuses: Sequence[str], seen: TruthInputs | None = None,
                        ks: Sequence[int] | None = None) -> dict[str, Any]:
    """How well an explanation recovers known implanted sequences (a simulated cohort).

    sequences: the ranked table of sequences.tsv (columns sample_id, junction_aa, contribution,
    attention); truth: `read_truth`'s table; analysed: the repertoires explained; consensuses:
    the motifs, best first; seen: per-repertoire attention facts collected while scoring (for the
    attention recall and mass). Returns a JSON-ready dict:

    - precision_at_k (by contribution and by attention weight) of implanted sequences among the
      top-k ranked sequences, k = the number of implanted sequences in the analysed repertoires
      (and any `ks`);
    - recall_top50_attention: share of implanted sequences (analysed repertoires) among their
      repertoire's top 50 by attention, pooled;
    - attention_mass_on_implanted: per analysed repertoire holding implants, the attention share
      on implanted sequences; mean and median;
    - top_motif: whether the top motif's consensus matches the implanted text at motif_start.
    """
    implanted = implanted_by_sample(truth)
    analysed_set = set(analysed)
    n_implanted = sum(len(implanted.get(s, ())) for s in analysed)
    k_values = sorted({n_implanted, *(ks or [])} - {0})

    def hits_of(table: pl.DataFrame) -> list[bool]:
        return [j in implanted.get(s, ()) for s, j in zip(table["sample_id"].to_list(),
                                                        table["junction_aa"].to_list())]

    by_contribution = hits_of(sequences)
    by_attention = hits_of(sequences.sort(["attention", "rank"], descending=[True, False]))
    result: dict[str, Any] = {
        "n_analysed_repertoires": len(analysed),
        "n_repertoires_with_implants": sum(1 for s in analysed if implanted.get(s)),
        "n_implanted_sequences": n_implanted,
        "n_ranked_sequences": sequences.height,
        "precision_at_k": [{"k": k, "by_contribution": _rounded(_precision_at(by_contribution, k)),
                            "by_attention": _rounded(_precision_at(by_attention, k))} for k in k_values],
    }
    if seen is not None:
        found = total = 0
        for sample_id in analysed:
            truths = implanted.get(sample_id, set())
            if not truths or sample_id not in seen.top_attended:
                continue
            junctions, _ = seen.top_attended[sample_id]
            found += len(truths & set(junctions[:TRUTH_TOP_ATTENTION]))
            total += len(truths)
        masses = [seen.attention_mass[s] for s in analysed if implanted.get(s) and s in seen.attention_mass]
        result["recall_top50_attention"] = _rounded(found / total) if total else None
        result["attention_mass_on_implanted"] = {
            "n_repertoires": len(masses), "mean": _rounded(float(np.mean(masses))) if masses else None,
            "median": _rounded(float(np.median(masses))) if masses else None}
    relevant = truth.filter(pl.col("sample_id").is_in(sorted(analysed_set)))
    if consensuses:
        share, text = motif_matches_truth(consensuses[0], relevant if relevant.height else truth)
        result["top_motif"] = {"consensus": consensuses[0], "implanted_motif": text,
                               "share_of_implants_matched": _rounded(share), "matches": bool(share >= 0.5)}
    else:
        result["top_motif"] = {"consensus": None, "implanted_motif": None, "share_of_implants_matched": None,
                               "matches": False}
    return result


def _rounded(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)
