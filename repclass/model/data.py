"""From the store to model inputs: encoded repertoires, sampling, batches.

A repertoire is decoded once into a padded uint8 code matrix (one row per sequence) with its
lengths and counts; a bounded cache keeps recently used repertoires, so the store is never
loaded whole into memory. Sampling is seeded per update, so a resumed run draws exactly what
an uninterrupted one would have.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from repclass.alphabet import PAD_CODE, translate_codes
from repclass.errors import StoreError
from repclass.io.store import Store


@dataclass(frozen=True)
class EncodedRepertoire:
    """One repertoire as the model reads it."""

    codes: np.ndarray  # (n, max_length) uint8, padded with PAD_CODE
    lengths: np.ndarray  # (n,) uint16 (int64 accepted)
    counts: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.lengths.nbytes + self.counts.nbytes


def encode_sequences(sequences: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Amino-acid strings -> (padded uint8 codes (n, max_length), uint16 lengths (n,)), without a
    Python loop: polars pads every string to the longest with NUL bytes and concatenates them,
    one `bytes.translate` maps letters (and NUL) to codes."""
    n = len(sequences)
    lengths = sequences.str.len_bytes().to_numpy().astype(np.uint16)
    if n == 0:
        return np.zeros((0, 1), dtype=np.uint8), lengths
    width = max(int(lengths.max()), 1)
    padded = sequences.str.pad_end(width, "\0").str.join("").item().encode("ascii")
    codes = translate_codes(padded, pad=b"\0").reshape(n, width)
    return codes, lengths  # lengths: uint16, a quarter of int64's memory in the repertoire cache


def encode_table(table: pl.DataFrame) -> EncodedRepertoire:
    codes, lengths = encode_sequences(table["junction_aa"])
    if "duplicate_count" in table.columns:
        counts = table["duplicate_count"].fill_null(1).to_numpy().astype(np.int64)
    else:
        counts = np.ones(len(lengths), dtype=np.int64)
    return EncodedRepertoire(codes=codes, lengths=lengths, counts=counts)


class RepertoireCache:
    """Encoded repertoires of a store, read on demand and kept up to a byte budget (LRU)."""

    def __init__(self, store: Store, max_bytes: int = 4 << 30) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, EncodedRepertoire] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, sample_id: str) -> EncodedRepertoire:
        with self._lock:
            if sample_id in self._items:
                self._items.move_to_end(sample_id)
                return self._items[sample_id]
        table = self.store.read(sample_id, ["junction_aa", "duplicate_count"])
        try:
            encoded = encode_table(table)
        except ValueError as exc:
            raise StoreError(f"{self.store.repertoire_path(sample_id)}: {exc}; the store is corrupt") from exc
        with self._lock:
            if encoded.nbytes <= self.max_bytes:
                self._items[sample_id] = encoded
                self._bytes += encoded.nbytes
                while self._bytes > self.max_bytes:
                    _, evicted = self._items.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return encoded


@dataclass
class Batch:
    """Sequences of several repertoires, concatenated; tensors on the CPU until `to()`."""

    codes: torch.Tensor  # (n, max_length) uint8
    lengths: torch.Tensor  # (n,) int64
    counts: torch.Tensor  # (n,) float32
    bag_index: torch.Tensor  # (n,) int64
    n_bags: int
    #: (n,) Gumbel noise for sampling the sequences of the gradient pass (training only)
    noise: torch.Tensor | None = None

    def _map(self, function) -> "Batch":
        return Batch(codes=function(self.codes), lengths=function(self.lengths), counts=function(self.counts),
                     bag_index=function(self.bag_index), n_bags=self.n_bags,
                     noise=None if self.noise is None else function(self.noise))

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        return self._map(lambda t: t.pin_memory())



def sample_rows(repertoire: EncodedRepertoire, n: int, rng: np.random.Generator, mode: str) -> np.ndarray:
    """Row indices of up to `n` distinct sequences: uniform, or in proportion to clone counts."""
    size = len(repertoire)
    if size <= n:
        return np.arange(size)
    if mode == "uniform":
        return np.sort(rng.choice(size, n, replace=False))
    # Weighted sampling without replacement (Efraimidis & Spirakis): the n largest u^(1/w).
    keys = np.log(rng.random(size)) / repertoire.counts.astype(np.float64)
    return np.sort(np.argpartition(keys, size - n)[size - n:])


def make_batch(repertoires: list[EncodedRepertoire], rows: list[np.ndarray] | None = None,
               noise: list[np.ndarray] | None = None, sort_by_length: bool = False) -> Batch:
    """Concatenate (selected rows of) repertoires into one batch.

    `noise` gives per-row values carried along (Gumbel noise for training); `sort_by_length`
    orders the batch's sequences by length, as `DeepRC.embed(presorted=True)` expects.
    """
    if rows is None:
        rows = [np.arange(len(r)) for r in repertoires]
    width = max(r.codes.shape[1] for r in repertoires)
    lengths = np.concatenate([np.take(r.lengths, idx) for r, idx in zip(repertoires, rows)]).astype(np.int64)
    counts = np.concatenate([np.take(r.counts, idx) for r, idx in zip(repertoires, rows)]).astype(np.float32)
    bag_index = np.repeat(np.arange(len(repertoires), dtype=np.int64), [len(idx) for idx in rows])
    codes = np.full((len(lengths), width), PAD_CODE, dtype=np.uint8)
    start = 0
    for repertoire, idx in zip(repertoires, rows):
        codes[start:start + len(idx), : repertoire.codes.shape[1]] = np.take(repertoire.codes, idx, axis=0)
        start += len(idx)
    extra = np.concatenate(noise).astype(np.float32) if noise else None
    if sort_by_length:
        # Radix sort: lengths fit in 16 bits, and numpy's stable sort of small integers is O(n).
        order = np.argsort(lengths.astype(np.uint16), kind="stable")
        codes, lengths, counts, bag_index = (np.take(codes, order, axis=0), lengths[order], counts[order],
                                             bag_index[order])
        extra = extra[order] if extra is not None else None
    return Batch(codes=torch.from_numpy(codes), lengths=torch.from_numpy(lengths), counts=torch.from_numpy(counts),
                 bag_index=torch.from_numpy(bag_index), n_bags=len(repertoires),
                 noise=torch.from_numpy(extra) if extra is not None else None)
