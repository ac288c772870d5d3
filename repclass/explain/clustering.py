"""Motifs from residue attributions: peak windows, greedy clustering, position weight matrices
and consensuses. Plain numpy on sequences, contributions and attributions; no model.

Around each positively contributing sequence's peak (the 4-residue window with the largest
summed |attribution|), windows are clustered greedily in order of contribution: a window joins
the first cluster whose seed window it matches in at least 3 of 4 residues at a shift of at most
2 positions (so the same motif found at offset peaks, or a longer motif, stays one cluster);
otherwise it seeds a new cluster. A cluster whose consensus contains a stronger cluster's is
folded into it. There is no random step: the same inputs give the same motifs. Per motif:
frequency and contribution position weight matrices, the consensus over the contiguous columns
that carry the most |attribution| (+-2 flanking columns kept), support.

Windows and consensus columns are both chosen by the size of the residue attributions, not their
sign: the sign says whether a residue raises or lowers its repertoire's explained output with the
repertoire's other sequences held fixed, and that depends on those sequences (see peak_window), so
a cluster's motif columns may carry negative mean attribution while being the columns the output
responds to most.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from repclass.alphabet import AMINO_ACIDS, N_AMINO_ACIDS, encode
from repclass.explain.types import Motif

log = logging.getLogger(__name__)

#: Motif core width: the shortest motif the DeepRC papers simulate (SFEN, SZZN).
CORE_WIDTH = 4
#: Columns kept on each side of a motif's consensus in its matrices and logo.
FLANK = 2
#: A window may match a cluster's seed shifted by up to this many positions.
MAX_SHIFT = 2
#: Consensus columns: the contiguous run around the strongest column whose mean |attribution| is at
#: least this share of its.
TRIM_FRACTION = 0.2
#: Clusters with less than this share of the top motif's total contribution are noise, not motifs.
MIN_MOTIF_SHARE = 0.01


def peak_window(attribution: np.ndarray, width: int) -> int:
    """Start of the `width`-residue window with the largest sum of |attribution| (first on ties).

    Magnitudes, not signed values: in a repertoire whose attention is led by strong motif
    sequences, a weaker one lowers the attention-weighted mean, so its motif residues carry
    negative attribution although the sequence contributes positively; they still are the
    residues the output responds to.
    """
    sums = np.convolve(np.abs(attribution), np.ones(width), mode="valid")  # (L - width + 1,)
    return int(np.argmax(sums))


#: Shifts tried against a cluster's seed, in order of preference on ties.
_SHIFTS = [0] + [s for d in range(1, MAX_SHIFT + 1) for s in (-d, d)]
_OUTSIDE = 255  # code for a position outside the sequence: matches nothing


def _shifted_windows(codes: np.ndarray, start: int) -> np.ndarray:
    """(n_shifts, CORE_WIDTH) codes of the windows at start + shift, _OUTSIDE past the ends."""
    windows = np.full((len(_SHIFTS), CORE_WIDTH), _OUTSIDE, dtype=np.int16)
    for row, shift in enumerate(_SHIFTS):
        for j in range(CORE_WIDTH):
            position = start + shift + j
            if 0 <= position < len(codes):
                windows[row, j] = codes[position]
    return windows


def cluster_windows(sequences: list[str], attributions: list[np.ndarray], order: list[int]
                    ) -> list[list[tuple[int, int]]]:
    """Greedy clusters of peak windows: [[(sequence index, aligned start), ...], ...].

    `order` gives the sequences to cluster, best first; the first member of a cluster is its
    seed, and every member's aligned start is the position aligned to the seed's first residue.
    """
    seeds = np.zeros((0, CORE_WIDTH), dtype=np.int16)
    clusters: list[list[tuple[int, int]]] = []
    for index in order:
        codes = encode(sequences[index]).astype(np.int16)
        if len(codes) < CORE_WIDTH:
            continue
        start = peak_window(attributions[index], CORE_WIDTH)
        windows = _shifted_windows(codes, start)  # (n_shifts, W)
        if len(clusters):
            identity = (seeds[:, None, :] == windows[None, :, :]).sum(axis=-1)  # (n_clusters, n_shifts)
            best = int(np.argmax(identity))  # first maximum: the earliest cluster, then the preferred shift
            cluster, shift_row = divmod(best, len(_SHIFTS))
            if identity[cluster, shift_row] >= CORE_WIDTH - 1:
                clusters[cluster].append((index, start + _SHIFTS[shift_row]))
                continue
        clusters.append([(index, start)])
        seeds = np.vstack([seeds, codes[start:start + CORE_WIDTH][None, :]])
    return clusters


#: Aligned columns examined around a seed window: far enough for any member's shifted window
#: plus the flanks shown.
_REACH = FLANK + MAX_SHIFT


def motif_matrices(sequences: list[str], attributions: list[np.ndarray], members: list[tuple[int, int]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, mean contributions), each (CORE_WIDTH + 2 * _REACH, 20), and the mean
    |attribution| per member of each column, (CORE_WIDTH + 2 * _REACH,), over the aligned columns
    -_REACH .. CORE_WIDTH + _REACH - 1 relative to the seed window's first residue."""
    n_columns = CORE_WIDTH + 2 * _REACH
    counts = np.zeros((n_columns, N_AMINO_ACIDS))
    contributions = np.zeros((n_columns, N_AMINO_ACIDS))
    magnitudes = np.zeros(n_columns)
    for index, start in members:
        codes = encode(sequences[index])
        for column in range(n_columns):
            position = start - _REACH + column
            if 0 <= position < len(codes):
                value = attributions[index][position]
                counts[column, codes[position]] += 1
                contributions[column, codes[position]] += value
                magnitudes[column] += abs(value)
    covered = counts.sum(axis=1, keepdims=True)
    frequencies = np.divide(counts, covered, out=np.zeros_like(counts), where=covered > 0)
    return frequencies, contributions / len(members), magnitudes / len(members)


def consensus_span(magnitudes: np.ndarray) -> tuple[int, int]:
    """[first, last + 1) of the contiguous columns around the strongest one whose mean |attribution|
    (`magnitudes`, one per column) is at least TRIM_FRACTION of its; the seed window when every
    attribution is 0.

    Magnitudes, as peak_window places the windows: a residue's sign depends on the repertoire around
    its sequence, and members of one motif may carry it with either sign. Contiguous, so that a
    residue the kernels weigh a few positions away (a junction's final F, say) does not stretch the
    consensus over the weak columns between."""
    if magnitudes.max() <= 0:
        return _REACH, _REACH + CORE_WIDTH
    peak = int(np.argmax(magnitudes))
    threshold = TRIM_FRACTION * magnitudes[peak]
    first, last = peak, peak + 1
    while first > 0 and magnitudes[first - 1] >= threshold:
        first -= 1
    while last < len(magnitudes) and magnitudes[last] >= threshold:
        last += 1
    return first, last


def consensus(frequencies: np.ndarray, span: tuple[int, int]) -> str:
    """The most frequent residue of each column in `span`, upper case where at least half the
    members covering the column have it, lower case otherwise."""
    letters = []
    for column in range(*span):
        best = int(np.argmax(frequencies[column]))
        letter = AMINO_ACIDS[best]
        letters.append(letter if frequencies[column, best] >= 0.5 else letter.lower())
    return "".join(letters)


@dataclass
class _Cluster:
    members: list[tuple[int, int]]  # (sequence index, position aligned to the seed window's first residue)
    total: float = 0.0
    frequencies: np.ndarray = field(default_factory=lambda: np.zeros(0))
    contributions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    span: tuple[int, int] = (0, 0)
    consensus: str = ""

    def describe(self, sequences: list[str], attributions: list[np.ndarray], contributions: np.ndarray) -> None:
        self.total = float(sum(contributions[i] for i, _ in self.members))
        self.frequencies, self.contributions, magnitudes = motif_matrices(sequences, attributions, self.members)
        self.span = consensus_span(magnitudes)
        self.consensus = consensus(self.frequencies, self.span)


def merge_contained(clusters: list[_Cluster], sequences: list[str], attributions: list[np.ndarray],
                    contributions: np.ndarray) -> list[_Cluster]:
    """Fold a cluster into a stronger one whose consensus (at least CORE_WIDTH - 1 residues) its own
    consensus contains: the same motif, found by sequences whose peak window lay too far off to join
    greedily. Returns the clusters left, strongest first."""
    ranked = sorted(clusters, key=lambda c: -c.total)  # stable: creation order on ties
    merged = [False] * len(ranked)
    for i, strong in enumerate(ranked):
        if merged[i] or len(strong.consensus) < CORE_WIDTH - 1:
            continue
        pattern = strong.consensus.upper()
        grown = False
        for j in range(i + 1, len(ranked)):
            found = ranked[j].consensus.upper().find(pattern)
            if merged[j] or found < 0:
                continue
            # Column of the pattern in j's seed coordinates, minus the same in i's.
            offset = (ranked[j].span[0] + found) - strong.span[0]
            strong.members += [(index, start + offset) for index, start in ranked[j].members]
            merged[j] = grown = True
        if grown:
            strong.members.sort()  # by rank again
            strong.describe(sequences, attributions, contributions)
    return sorted((c for c, gone in zip(ranked, merged) if not gone), key=lambda c: -c.total)


def find_motifs(sequences: list[str], sample_ids: list[str], contributions: np.ndarray,
                attributions: list[np.ndarray], n_motifs: int) -> list[Motif]:
    """Motifs among the ranked sequences (index order = rank): the `n_motifs` largest by total
    contribution, less those under MIN_MOTIF_SHARE of the largest's. Only sequences with a
    positive contribution take part. Each motif's matrices
    keep the consensus columns and FLANK columns on each side; column 1 is the consensus's first."""
    order = [i for i in range(len(sequences)) if contributions[i] > 0]
    clusters = [_Cluster(members) for members in cluster_windows(sequences, attributions, order)]
    for cluster in clusters:
        cluster.describe(sequences, attributions, contributions)
    clusters = merge_contained(clusters, sequences, attributions, contributions)
    if not clusters:
        return []
    kept = [c for c in clusters[:n_motifs] if c.total >= MIN_MOTIF_SHARE * clusters[0].total]
    if len(kept) < min(n_motifs, len(clusters)):
        log.info("motifs: %d clusters carry less than %g of the top motif's contribution; not reported",
                 min(n_motifs, len(clusters)) - len(kept), MIN_MOTIF_SHARE)
    clusters = kept
    motifs = []
    for rank, cluster in enumerate(clusters, start=1):
        first, last = cluster.span
        low, high = max(0, first - FLANK), min(len(cluster.frequencies), last + FLANK)
        motifs.append(Motif(rank=rank, consensus=cluster.consensus, n_sequences=len(cluster.members),
                            n_repertoires=len({sample_ids[i] for i, _ in cluster.members}),
                            total_contribution=cluster.total, columns=[c - first + 1 for c in range(low, high)],
                            consensus_span=(first - low, last - low), frequencies=cluster.frequencies[low:high],
                            contributions=cluster.contributions[low:high], members=[i for i, _ in cluster.members]))
    return motifs

