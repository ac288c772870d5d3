"""Convolution kernels initialised from k-mers associated with the labels of the training repertoires.

At witness rates of 0.1% and below, a randomly initialised DeepRC sees a witness sequence in about
one of every thousand sequences of its gradient pass: the signal that would grow a kernel into a
motif detector is buried under the differences between individual repertoires, which the model
learns to memorise first (docs/method.md has the measurements). The training repertoires already
say which short k-mers are over-represented in one class: a k-mer regression finds them at these
rates. This module ranks every k-mer by the association of its per-repertoire frequency with the
labels, and gives the best ones a kernel each, so that training starts from detectors of the
candidate motifs instead of from noise. The model still learns everything: which kernels matter,
the attention over sequences, the output, and kernels that drift from their seed (gaps,
substitutions, flanks); seeds that are noise simply stop mattering.

Only training repertoires are read (never validation or test), so evaluation stays honest. The
count read-out's optional fitted start (`fit_evidence_start`) is made here too, from the same
training repertoires.
"""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from repclass.alphabet import AMINO_ACIDS, N_AMINO_ACIDS
from repclass.model.data import EncodedRepertoire

log = logging.getLogger(__name__)

#: A k-mer must be present in at least this many training repertoires to be a seed: one
#: repertoire's private sequences must not become a detector (that is memorisation again).
MIN_SUPPORT = 3


def kmer_presence(repertoire: EncodedRepertoire, k: int) -> np.ndarray:
    """Occurrences of each k-mer in the sequences of `repertoire`: (20**k,) int64.

    k-mer ids are base-20 numbers over the alphabet codes (first residue most significant). A
    k-mer seen twice in one sequence counts twice (rare in CDR3s, and counting windows is a plain
    bincount, several times faster than de-duplicating per sequence).
    """
    return np.bincount(_window_ids(repertoire, k), minlength=N_AMINO_ACIDS ** k)


def _window_ids(repertoire: EncodedRepertoire, k: int) -> np.ndarray:
    """The k-mer id of every window of length k inside a sequence of `repertoire` (int32)."""
    codes, lengths = repertoire.codes, repertoire.lengths.astype(np.int64)
    n, width = codes.shape
    if width < k or n == 0:
        return np.zeros(0, dtype=np.int32)
    n_windows = width - k + 1
    ids = codes[:, :n_windows].astype(np.int32)
    for j in range(1, k):  # (n, T): base-20 id of the window starting at each position
        ids = ids * N_AMINO_ACIDS + codes[:, j:j + n_windows]
    inside = np.arange(n_windows)[None, :] <= (lengths - k)[:, None]  # (n, T)
    return ids[inside]


def sparse_kmer_counts(repertoire: EncodedRepertoire, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-mers present in `repertoire` (sorted ids) and their occurrences.

    A repertoire of 20,000 CDR3s holds about 100,000 of the 3.2 million 5-mers: sorting its
    windows is several times faster than counting into 3.2 million bins and scanning them. Where
    there are about as many windows as k-mers (4-mers and shorter), the dense count is faster.
    """
    ids = _window_ids(repertoire, k)
    if N_AMINO_ACIDS ** k <= 4 * len(ids):
        counts = np.bincount(ids, minlength=N_AMINO_ACIDS ** k)
        kmers = np.flatnonzero(counts)
        return kmers, counts[kmers]
    ids = np.sort(ids)
    if len(ids) == 0:
        return ids.astype(np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    counts = np.diff(np.append(starts, len(ids)))
    return ids[starts].astype(np.int64), counts


@dataclass(frozen=True)
class KmerAssociation:
    kmers: list[str]  # best first
    scores: np.ndarray  # |t| of the association with the labels, same order
    support: np.ndarray  # training repertoires holding each k-mer
    signs: np.ndarray  # +1: more frequent where that label column is higher (the positive class), -1: lower
    columns: np.ndarray  # the label column of the best |t|
    #: the best |t| any k-mer reaches with the labels shuffled among the repertoires: a score at
    #: or below it is what chance alone gives this cohort
    chance: float = 0.0

    def take(self, order: list[int]) -> "KmerAssociation":
        return KmerAssociation([self.kmers[i] for i in order], self.scores[order], self.support[order],
                               self.signs[order], self.columns[order], self.chance)

    def clear_candidates(self) -> np.ndarray:
        """Which k-mers are clear candidates: above the chance level and above half the best |t|
        (in a small cohort, common k-mers reach half the best by chance alone)."""
        if not self.kmers:
            return np.zeros(0, dtype=bool)
        return (self.scores > self.chance) & (self.scores > self.scores[0] / 2)


#: Label shufflings that set `KmerAssociation.chance` (the largest best |t| over them).
N_SHUFFLES = 3


class _AssociationSums:
    """Per-k-mer sums over repertoires, one repertoire at a time: O(20**k x label columns x
    shufflings) memory whatever the cohort's size."""

    def __init__(self, k: int, n_columns: int, n_shuffles: int) -> None:
        n_kmers = N_AMINO_ACIDS ** k
        self.k = k
        self.inverse_size = np.zeros(n_columns)  # sum over repertoires of 1 / (number of sequences)
        self.sum_x = np.zeros((n_columns, n_kmers))
        self.sum_xx = np.zeros((n_columns, n_kmers))
        self.sum_xy = np.zeros((1 + n_shuffles, n_columns, n_kmers))  # the labels, then each shuffling
        self.support = np.zeros(n_kmers, dtype=np.int64)

    def add(self, repertoire: EncodedRepertoire, labels: np.ndarray, present: np.ndarray) -> None:
        """labels (1 + n_shuffles, n_columns): this repertoire's labels, then its shuffled ones."""
        kmers, counts = sparse_kmer_counts(repertoire, self.k)
        self.support[kmers] += 1
        frequency = counts / max(len(repertoire), 1)
        for column in np.flatnonzero(present):
            self.inverse_size[column] += 1.0 / max(len(repertoire), 1)
            self.sum_x[column, kmers] += frequency
            self.sum_xx[column, kmers] += frequency * frequency
            for labelling, label in enumerate(labels[:, column]):
                if label:  # (a binary column's 0s add nothing: half the work)
                    self.sum_xy[labelling, column, kmers] += frequency * label

    def best_t(self, labels: np.ndarray, present: np.ndarray, labelling: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per k-mer: the best |t| over the label columns, the sign of its association and its column.

        Only k-mers seen in at least MIN_SUPPORT repertoires are scored (the others get 0): of the
        3.2M possible 5-mers a cohort holds a small share, and scoring all of them cost a second
        per call at every training start whatever the cohort's size."""
        n_kmers = len(self.support)
        best_t = np.zeros(n_kmers)
        best_sign = np.ones(n_kmers)
        best_column = np.zeros(n_kmers, dtype=np.int64)
        scored = np.flatnonzero(self.support >= MIN_SUPPORT)
        for column in range(labels.shape[1]):
            y = labels[present[:, column], column]  # (shuffling moves labels among these rows only)
            n = len(y)
            if n < 4 or np.ptp(y) == 0:
                continue
            sum_x = self.sum_x[column, scored]
            covariance = n * self.sum_xy[labelling, column, scored] - sum_x * y.sum()
            # n^2 x (the spread of the frequencies across repertoires + their counting noise): a k-mer
            # seen once in each of four repertoires has a frequency known only to about +-100%, and
            # without the counting noise it would "separate" a small cohort perfectly (|t| -> inf).
            mean_frequency = sum_x / n
            variance_x = n * self.sum_xx[column, scored] - sum_x ** 2 + n * mean_frequency * self.inverse_size[column]
            variance_y = n * (y * y).sum() - y.sum() ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                r = covariance / np.sqrt(variance_x * variance_y)
                t = np.abs(r) * np.sqrt((n - 2) / (1 - r * r))
            t = np.nan_to_num(t, nan=0.0, posinf=0.0)
            better = t > best_t[scored]
            chosen = scored[better]
            best_t[chosen] = t[better]
            best_sign[chosen] = np.sign(covariance[better])
            best_column[chosen] = column
        return best_t, best_sign, best_column

    def ranked(self, labels: np.ndarray, present: np.ndarray, n_best: int) -> KmerAssociation:
        best_t, best_sign, best_column = self.best_t(labels, present, 0)
        chance = max((float(self.best_t(labels, present, labelling)[0].max())
                      for labelling in range(1, len(self.sum_xy))), default=0.0)
        scored = np.flatnonzero(best_t > 0)  # in index order: the stable sort breaks ties as over all k-mers
        order = scored[np.argsort(-best_t[scored], kind="stable")[:n_best]]
        return KmerAssociation(kmers=[kmer_text(int(i), self.k) for i in order], scores=best_t[order],
                               support=self.support[order], signs=best_sign[order], columns=best_column[order],
                               chance=chance)


def shuffled_labels(labels: np.ndarray, present: np.ndarray, n_shuffles: int, seed: int) -> np.ndarray:
    """(1 + n_shuffles, n_repertoires, n_columns): the labels, then `n_shuffles` copies with each
    column's known labels shuffled among the repertoires that have one (seeded)."""
    rng = np.random.default_rng([seed, 11])
    labellings = np.repeat(labels[None].astype(np.float64), 1 + n_shuffles, axis=0)
    for shuffle in range(1, 1 + n_shuffles):
        for column in range(labels.shape[1]):
            rows = np.flatnonzero(present[:, column])
            labellings[shuffle, rows, column] = labels[rng.permutation(rows), column]
    return labellings


def associate_kmers(repertoires: Iterable[EncodedRepertoire], labels: np.ndarray, present: np.ndarray,
                    lengths: int | Sequence[int], n_best: int, n_shuffles: int = N_SHUFFLES,
                    seed: int = 0) -> KmerAssociation:
    """Rank k-mers by how strongly their frequency across repertoires follows the labels.

    labels  (n_repertoires, n_columns) one column per binary/regression target and per class of a
            multiclass target (one-vs-rest indicators); present (same shape) marks known labels.
    The frequency of a k-mer in a repertoire is its occurrences per sequence; its score is the
    largest |t| of a Pearson correlation with any label column, with the frequencies' counting
    (Poisson) noise added to their variance so that rare k-mers cannot score by chance alone. Both
    directions count: a signal may sit in either class. The repertoires are read once.

    The chance level is the best score of any k-mer with the labels shuffled among the
    repertoires (the largest over `n_shuffles` seeded shufflings): among 160,000 4-mers, some
    reach |t| 3 in a cohort of 50 repertoires by chance alone, and a chance k-mer that gets a
    head start can become what training builds on (docs/method.md).

    With several `lengths` (4 and 5, the default), k-mers of all of them compete on |t| and a
    candidate is dropped where it is part of, or contains, a better one: a 5-mer motif's evidence
    is split over its two 4-mers and their other extensions and ranks among chance 4-mers, while
    as a 5-mer it stands out; a 4-mer motif's evidence is split over its forty 5-mer extensions
    (docs/method.md has the measurement). Chance associations reach about the same |t| at both
    lengths (the support floor and the counting noise keep rare 5-mers down), so no length is
    favoured.
    """
    lengths = [lengths] if isinstance(lengths, numbers.Integral) else sorted(set(lengths))
    labellings = shuffled_labels(labels, present, n_shuffles, seed)
    sums = [_AssociationSums(k, labels.shape[1], n_shuffles) for k in lengths]
    for index, repertoire in enumerate(repertoires):
        for k_sums in sums:
            k_sums.add(repertoire, labellings[:, index], present[index])
    # enough of each length that the ones dropped as overlapping leave n_best (with one length,
    # nothing overlaps: the best n_best as ranked)
    candidates = [k_sums.ranked(labels, present, n_best * len(lengths)) for k_sums in sums]
    pooled = KmerAssociation(kmers=[kmer for c in candidates for kmer in c.kmers],
                             scores=np.concatenate([c.scores for c in candidates]),
                             support=np.concatenate([c.support for c in candidates]),
                             signs=np.concatenate([c.signs for c in candidates]),
                             columns=np.concatenate([c.columns for c in candidates]),
                             chance=max(c.chance for c in candidates))
    kept: list[int] = []
    for candidate in np.argsort(-pooled.scores, kind="stable"):
        kmer = pooled.kmers[candidate]
        if not any(kmer in pooled.kmers[other] or pooled.kmers[other] in kmer for other in kept):
            kept.append(int(candidate))
        if len(kept) == n_best:
            break
    return pooled.take(kept)


def kmer_text(kmer_id: int, k: int) -> str:
    letters = []
    for _ in range(k):
        kmer_id, code = divmod(kmer_id, N_AMINO_ACIDS)
        letters.append(AMINO_ACIDS[code])
    return "".join(reversed(letters))


@torch.no_grad()
def seed_kernels(conv_weight: torch.Tensor, conv_bias: torch.Tensor, kmers: list[str], amplitude: float) -> None:
    """Turn kernels 0..len(kmers)-1 into detectors of `kmers`, in place.

    Each k-mer's residues get weight `amplitude` at the kernel's central positions, on top of the
    small random initialisation; the bias is -(k - 1/2) x amplitude, which puts the threshold
    halfway between a window one residue short and a full match: a full match scores
    +amplitude/2, a near miss -amplitude/2, the background lower still. With a large amplitude
    (the default 4: +-2) near misses sit with the background in SELU's flat negative range. They
    must: a near miss (3 of a 4-mer's residues, any residue in the fourth place) is about 80 times
    more common than the k-mer itself, and a detector that scores them halfway (bias -(k - 1) x
    amplitude, the first version) sends most of the attention it is given to near misses instead
    of witnesses (docs/method.md). conv_weight is (n_kernels, 23, kernel_size).
    """
    kernel_size = conv_weight.shape[2]
    for kernel, kmer in enumerate(kmers):
        k = len(kmer)
        if k > kernel_size:
            raise ValueError(f"k-mer {kmer!r} is longer than the kernel ({kernel_size})")
        first = (kernel_size - k) // 2
        for position, letter in enumerate(kmer):
            conv_weight[kernel, AMINO_ACIDS.index(letter), first + position] += amplitude
        conv_bias[kernel] = -(k - 0.5) * amplitude


@torch.no_grad()
def point_attention(attention: torch.nn.Sequential, kernels: list[int], strengths: np.ndarray,
                    background: torch.Tensor, full_match: torch.Tensor, gain: float) -> None:
    """Make the attention network f start by favouring sequences that the seeded kernels detect.

    Without this, f starts random: a witness sequence gets about 1/1000 of the attention in a bag
    of 10,000 and its gradient is drowned, however good its kernel. Here one unit of each hidden
    layer carries a "motif evidence" score, the sum over seeded kernels of
    strength x (activation - background mean) / (full-match activation - background mean),
    i.e. about 0 for a background sequence and about `strength` for a full match; the logit
    gets `gain` times it. The other units keep their random start on the other kernels, and
    training reshapes all of it (the output network decides which kernels mean which class).

    background  (D,) mean activation of each kernel over sampled training sequences
    full_match  (D,) activation of each seeded kernel on its own k-mer
    """
    linears = [m for m in attention if isinstance(m, torch.nn.Linear)]
    first = linears[0]
    scale = torch.zeros(first.in_features, dtype=first.weight.dtype)
    for kernel, strength in zip(kernels, strengths):
        span = float(full_match[kernel] - background[kernel])
        if span > 0:
            scale[kernel] = float(strength) / span
    if len(linears) == 1:  # no hidden layer: the logit reads the evidence directly
        first.weight[0] = gain * scale
        first.bias[0] = -gain * float((scale * background).sum())
        return
    # The other units start blind to the seeded kernels: their random weights would otherwise give
    # the detectors' large activations random signs in the logit (training lets them grow back).
    first.weight[1:, kernels] = 0.0
    first.weight[0] = scale
    first.bias[0] = -float((scale * background).sum())
    # SELU is linear (x 1.0507) above 0: pass the evidence unit on through the hidden layers.
    for layer in linears[1:-1]:
        layer.weight[0] = 0.0
        layer.weight[0, 0] = 1.0
        layer.bias[0] = 0.0
    last = linears[-1]
    last.weight[0, 0] = gain


@torch.no_grad()
def point_output(output: torch.nn.Sequential, kernels: list[int], signs: np.ndarray, columns: np.ndarray) -> bool:
    """Start the output network o with each seeded kernel pointing the way its k-mer's association
    does: weight +w from kernel to the output of its label column when the k-mer is more frequent
    in the positive class (higher values), -w when less, w the initialisation's standard deviation.

    With a random start, half the seeded detectors point the wrong way. The attention head start
    then concentrates the repertoire on sequences that push the output the wrong way, and the
    fastest way down the loss is not to turn the output weight around (Adam moves it by about the
    learning rate per update) but to move the attention off those sequences: on one cohort in
    three of the 0.05% cell the validation AUC was 0.000 at update 10 and the attention never came
    back to the witnesses (docs/method.md). Training gives it the clear candidates only (those that
    also get the attention's head start): signing chance k-mers too lowered the precision of
    `repclass motifs` on the test suite's tiny cohort from 0.975 to 0.795. Only an output network
    without hidden layers (the default) is set; returns whether it was.
    """
    linears = [m for m in output if isinstance(m, torch.nn.Linear)]
    if len(linears) != 1:
        return False
    layer = linears[0]
    scale = 1.0 / float(np.sqrt(layer.in_features))
    for kernel, sign, column in zip(kernels, signs, columns):
        if column < layer.out_features:
            layer.weight[int(column), kernel] = float(sign) * scale
    return True


def fit_evidence_start(evidence: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The count read-out's starting weight a and output shift b: a logistic regression of binary
    `labels` (0/1) on the training repertoires' attention evidence E, with the model's outputs at
    the start as offsets (logit = offset + a * E + b), and a standard normal prior on the slope per
    standard deviation of E.

    With a at 0 the read-out is the paper's, and Adam moves a by about the learning rate per update:
    a few hundred updates before E counts, while a few dozen training repertoires are memorised in
    about a hundred. Where E separates the classes at the start (clonal expansion with --use-counts,
    a seeded motif's matches), the model starts by reading it, and training can still move it; the
    prior keeps the slope finite when E separates the training repertoires perfectly. Returns
    (0, 0) when E is constant or the labels hold one class.
    """
    from scipy.optimize import minimize

    evidence, offsets, labels = (np.asarray(a, dtype=np.float64) for a in (evidence, offsets, labels))
    spread = float(evidence.std())
    if spread < 1e-9 or labels.min() == labels.max():
        return 0.0, 0.0
    standard = (evidence - evidence.mean()) / spread

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        slope, shift = parameters
        logit = offsets + slope * standard + shift
        # sum of binary cross-entropies, log(1 + exp(z)) - y z, stable for large |z|
        loss = float(np.sum(np.logaddexp(0.0, logit) - labels * logit)) + 0.5 * slope ** 2
        residual = 1.0 / (1.0 + np.exp(-logit)) - labels
        return loss, np.array([float(residual @ standard) + slope, float(residual.sum())])

    fitted = minimize(loss_and_gradient, np.zeros(2), jac=True, method="BFGS").x
    slope, shift = float(fitted[0]) / spread, float(fitted[1] - fitted[0] * evidence.mean() / spread)
    return slope, shift
