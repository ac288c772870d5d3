"""Per-repertoire k-mer frequencies, computed with vectorised arithmetic (no loop over sequences).

A repertoire's junctions are concatenated and encoded to integer codes (repclass.alphabet); the
id of the k-mer starting at each position is the base-20 number of its residues, built with k
shifted slices of the code array; windows that would run past the end of their sequence are
masked out; `np.bincount` counts the ids. Every window (every position of every sequence) counts
once, or `count_weighted` times the sequence's clone count; the counts are divided by their sum,
so a repertoire's feature row is the frequency of each k-mer among its windows.

A gapped k-mer (`gap` > 0) takes ceil(k/2) residues, skips `gap` positions and takes the other
floor(k/2): with k=4, gap=1, `CA.SS` matches CAxSS. Its name has one '.' per skipped position.

Memory: one repertoire at a time, about 25 bytes per residue of working arrays (a 300k-sequence
repertoire of 15-residue junctions: ~110 MB) plus one float64 vector of 20^k counts (k=5: 26 MB).
A feature matrix holds n_repertoires x n_features float32 (700 x 160,000 for k=4: 448 MB).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..alphabet import AMINO_ACIDS, N_AMINO_ACIDS, encode_flat
from ..errors import StoreError, UsageError

if TYPE_CHECKING:
    import polars as pl

    from ..store import Store

log = logging.getLogger(__name__)

MIN_K, MAX_K = 1, 5
MAX_GAP = 5


@dataclass(frozen=True)
class KmerSpec:
    """Which k-mers make the features, and how windows are counted."""

    k: int = 4
    gap: int = 0
    #: weight each window by its sequence's clone count (duplicate_count) instead of 1
    count_weighted: bool = False

    def __post_init__(self) -> None:
        if not MIN_K <= self.k <= MAX_K:
            raise UsageError(f"--kmer-size must be between {MIN_K} and {MAX_K} (20^k features), got {self.k}")
        if not 0 <= self.gap <= MAX_GAP:
            raise UsageError(f"--kmer-gap must be between 0 and {MAX_GAP}, got {self.gap}")
        if self.gap and self.k < 2:
            raise UsageError("a gapped k-mer needs --kmer-size of at least 2")

    @property
    def n_kmers(self) -> int:
        return N_AMINO_ACIDS ** self.k

    @property
    def offsets(self) -> list[int]:
        """Positions of the k residues within the window (window length = k + gap)."""
        first = (self.k + 1) // 2
        return list(range(first)) + list(range(first + self.gap, self.k + self.gap))

    @property
    def span(self) -> int:
        return self.k + self.gap

    def names(self, ids: np.ndarray) -> list[str]:
        """K-mer ids -> strings ('.' marks a gap position)."""
        ids = np.asarray(ids, dtype=np.int64)
        digits = np.stack([(ids // N_AMINO_ACIDS ** (self.k - 1 - j)) % N_AMINO_ACIDS for j in range(self.k)],
                          axis=1) if len(ids) else np.zeros((0, self.k), dtype=np.int64)
        letters = np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)[digits]  # (n, k)
        first = (self.k + 1) // 2
        names = []
        for row in letters:  # only the (few) features a model keeps are named
            text = row.tobytes().decode()
            names.append(text[:first] + "." * self.gap + text[first:])
        return names

    def to_dict(self) -> dict[str, object]:
        return {"k": self.k, "gap": self.gap, "count_weighted": self.count_weighted}


def kmer_counts(sequences: "pl.Series", spec: KmerSpec, counts: np.ndarray | None = None) -> np.ndarray:
    """Window counts of every k-mer id (float64, length 20^k) over the given junctions.

    `counts` (one per sequence) weights each window when `spec.count_weighted`.
    """
    n_kmers = spec.n_kmers
    if len(sequences) == 0:
        return np.zeros(n_kmers)
    # int32 throughout: 20^5 ids and a repertoire's residue count fit, at half int64's memory.
    lengths = sequences.str.len_bytes().to_numpy().astype(np.int32)  # (n_seq,)
    flat = np.frombuffer(sequences.str.join("").item().encode("ascii"), dtype=np.uint8)
    codes = encode_flat(flat).astype(np.int32)  # (n_residues,)
    del flat
    n_windows = len(codes) - spec.span + 1
    if n_windows <= 0:
        return np.zeros(n_kmers)
    ids = np.zeros(n_windows, dtype=np.int32)  # (n_windows,) the k-mer starting at each position
    for offset in spec.offsets:
        ids *= N_AMINO_ACIDS
        ids += codes[offset:offset + n_windows]
    del codes
    # Residues left in its sequence from each position (itself included); a window is valid when
    # the whole span fits.
    ends = np.cumsum(lengths, dtype=np.int32)  # (n_seq,)
    left = np.repeat(ends, lengths)[:n_windows]
    left -= np.arange(n_windows, dtype=np.int32)
    valid = left >= spec.span
    del left
    weights = None
    if spec.count_weighted:
        if counts is None:
            raise ValueError("count-weighted k-mers need clone counts")
        weights = np.repeat(np.asarray(counts, dtype=np.float64), lengths)[:n_windows][valid]
    return np.bincount(ids[valid], weights=weights, minlength=n_kmers).astype(np.float64)


def kmer_vector(table: "pl.DataFrame", spec: KmerSpec) -> np.ndarray:
    """One repertoire's k-mer frequencies (float32, length 20^k), from a table with junction_aa
    (and duplicate_count for count weighting)."""
    counts = None
    if spec.count_weighted:
        counts = (table["duplicate_count"].fill_null(1).to_numpy() if "duplicate_count" in table.columns
                  else np.ones(table.height))
    window_counts = kmer_counts(table["junction_aa"], spec, counts)
    total = window_counts.sum()
    return (window_counts / total if total > 0 else window_counts).astype(np.float32)


def _read(store: "Store", sample_id: str, spec: KmerSpec) -> "pl.DataFrame":
    columns = ["junction_aa", "duplicate_count"] if spec.count_weighted else ["junction_aa"]
    return store.read(sample_id, columns)


def _vectors(store: "Store", ids: Iterable[str], spec: KmerSpec) -> Iterable[np.ndarray]:
    for sample_id in ids:
        try:
            yield kmer_vector(_read(store, sample_id, spec), spec)
        except ValueError as exc:
            raise StoreError(f"{store.repertoire_path(sample_id)}: {exc}; the store is corrupt") from exc


def select_columns(store: "Store", train_ids: Sequence[str], spec: KmerSpec, max_features: int) -> np.ndarray | None:
    """K-mer ids to keep when 20^k exceeds `max_features`: those present in the most training
    repertoires (ties: the smaller id). None: keep all. Reads the training repertoires once."""
    if spec.n_kmers <= max_features:
        return None
    present = np.zeros(spec.n_kmers, dtype=np.int32)
    for vector in _vectors(store, train_ids, spec):
        present += vector > 0
    order = np.argsort(-present, kind="stable")[:max_features]
    log.info("kept the %d of %d k-mers present in the most training repertoires", max_features, spec.n_kmers)
    return np.sort(order)


def kmer_features(store: "Store", ids: Sequence[str], spec: KmerSpec | int = 4,
                  columns: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (len(ids), n_features) float32: each repertoire's k-mer frequencies, all
    20^k k-mers in id order, or only the k-mer ids in `columns`. Reads one repertoire at a time."""
    spec = spec if isinstance(spec, KmerSpec) else KmerSpec(k=spec)
    width = spec.n_kmers if columns is None else len(columns)
    matrix = np.zeros((len(ids), width), dtype=np.float32)
    for row, vector in enumerate(_vectors(store, ids, spec)):
        matrix[row] = vector if columns is None else vector[columns]
    return matrix
