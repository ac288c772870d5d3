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
from typing import TYPE_CHECKING, Sequence

import numpy as np

from repclass.alphabet import AMINO_ACIDS, N_AMINO_ACIDS, encode_flat
from repclass.errors import StoreError, UsageError

if TYPE_CHECKING:
    import polars as pl

    from repclass.io.store import Store

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


def window_ids(sequences: "pl.Series", spec: KmerSpec, counts: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """(k-mer id of every valid window (int32), its weight (float64) or None), over the given
    junctions; `counts` (one per sequence) weights each window when `spec.count_weighted`."""
    empty = np.zeros(0, dtype=np.int32)
    if spec.count_weighted and counts is None:
        raise ValueError("count-weighted k-mers need clone counts")
    if len(sequences) == 0:
        return empty, (np.zeros(0) if spec.count_weighted else None)
    # int32 throughout: 20^5 ids and a repertoire's residue count fit, at half int64's memory.
    lengths = sequences.str.len_bytes().to_numpy().astype(np.int32)  # (n_seq,)
    flat = np.frombuffer(sequences.str.join("").item().encode("ascii"), dtype=np.uint8)
    codes = encode_flat(flat).astype(np.int32)  # (n_residues,)
    del flat
    n_windows = len(codes) - spec.span + 1
    if n_windows <= 0:
        return empty, (np.zeros(0) if spec.count_weighted else None)
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
        weights = np.repeat(np.asarray(counts, dtype=np.float64), lengths)[:n_windows][valid]
    return ids[valid], weights


def kmer_counts(sequences: "pl.Series", spec: KmerSpec, counts: np.ndarray | None = None) -> np.ndarray:
    """Window counts of every k-mer id (float64, length 20^k) over the given junctions.

    `counts` (one per sequence) weights each window when `spec.count_weighted`.
    """
    ids, weights = window_ids(sequences, spec, counts)
    return np.bincount(ids, weights=weights, minlength=spec.n_kmers).astype(np.float64)


def _table_ids(table: "pl.DataFrame", spec: KmerSpec) -> tuple[np.ndarray, np.ndarray | None]:
    counts = None
    if spec.count_weighted:
        counts = (table["duplicate_count"].fill_null(1).to_numpy() if "duplicate_count" in table.columns
                  else np.ones(table.height))
    return window_ids(table["junction_aa"], spec, counts)


def kmer_vector(table: "pl.DataFrame", spec: KmerSpec, columns: np.ndarray | None = None,
                lookup: np.ndarray | None = None) -> np.ndarray:
    """One repertoire's k-mer frequencies (float32): of all 20^k k-mers, or of the k-mer ids in
    `columns` (the same values as the full vector's entries; `lookup`, from `column_lookup`, saves
    rebuilding the id -> column map per repertoire). From a table with junction_aa (and
    duplicate_count for count weighting)."""
    ids, weights = _table_ids(table, spec)
    # Frequencies among all windows; integer counts (and integer clone counts) sum exactly in
    # float64, so a column subset equals the full vector's entries bit for bit.
    total = float(len(ids)) if weights is None else float(weights.sum())
    if columns is None:
        window_counts = np.bincount(ids, weights=weights, minlength=spec.n_kmers).astype(np.float64)
    else:
        lookup = column_lookup(spec, columns) if lookup is None else lookup
        position = lookup[ids]  # (n_windows,) column of each window's k-mer, -1 when not kept
        kept = position >= 0
        window_counts = np.bincount(position[kept], weights=None if weights is None else weights[kept],
                                    minlength=len(columns)).astype(np.float64)
    return (window_counts / total if total > 0 else window_counts).astype(np.float32)


def column_lookup(spec: KmerSpec, columns: np.ndarray) -> np.ndarray:
    """k-mer id -> position in `columns` (-1: not kept), int32 of length 20^k."""
    lookup = np.full(spec.n_kmers, -1, dtype=np.int32)
    lookup[np.asarray(columns, dtype=np.int64)] = np.arange(len(columns), dtype=np.int32)
    return lookup


def _read(store: "Store", sample_id: str, spec: KmerSpec) -> "pl.DataFrame":
    columns = ["junction_aa", "duplicate_count"] if spec.count_weighted else ["junction_aa"]
    return store.read(sample_id, columns)


def _corrupt(store: "Store", sample_id: str, exc: ValueError) -> StoreError:
    return StoreError(f"{store.repertoire_path(sample_id)}: {exc}; the store is corrupt")


def select_columns(store: "Store", train_ids: Sequence[str], spec: KmerSpec, max_features: int) -> np.ndarray | None:
    """K-mer ids to keep when 20^k exceeds `max_features`: those present in the most training
    repertoires (ties: the smaller id). None: keep all. Reads the training repertoires once."""
    if spec.n_kmers <= max_features:
        return None
    present = np.zeros(spec.n_kmers, dtype=np.int32)
    seen = np.zeros(spec.n_kmers, dtype=bool)
    for sample_id in train_ids:
        try:
            ids, _ = _table_ids(_read(store, sample_id, spec), spec)
        except ValueError as exc:
            raise _corrupt(store, sample_id, exc) from exc
        seen[:] = False
        seen[ids] = True
        present += seen
    order = np.argsort(-present, kind="stable")[:max_features]
    log.info("kept the %d of %d k-mers present in the most training repertoires", max_features, spec.n_kmers)
    return np.sort(order)


def kmer_features(store: "Store", ids: Sequence[str], spec: KmerSpec | int = 4,
                  columns: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (len(ids), n_features) float32: each repertoire's k-mer frequencies, all
    20^k k-mers in id order, or only the k-mer ids in `columns`. Reads one repertoire at a time."""
    spec = spec if isinstance(spec, KmerSpec) else KmerSpec(k=spec)
    width = spec.n_kmers if columns is None else len(columns)
    lookup = None if columns is None else column_lookup(spec, columns)
    matrix = np.zeros((len(ids), width), dtype=np.float32)
    for row, sample_id in enumerate(ids):
        try:
            matrix[row] = kmer_vector(_read(store, sample_id, spec), spec, columns, lookup)
        except ValueError as exc:
            raise _corrupt(store, sample_id, exc) from exc
    return matrix
