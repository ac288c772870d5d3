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

Only training repertoires are read (never validation or test), so evaluation stays honest.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .alphabet import AMINO_ACIDS, N_AMINO_ACIDS
from .data import EncodedRepertoire

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
    codes, lengths = repertoire.codes, repertoire.lengths.astype(np.int64)
    n, width = codes.shape
    if width < k or n == 0:
        return np.zeros(N_AMINO_ACIDS ** k, dtype=np.int64)
    n_windows = width - k + 1
    ids = codes[:, :n_windows].astype(np.int32)
    for j in range(1, k):  # (n, T): base-20 id of the window starting at each position
        ids = ids * N_AMINO_ACIDS + codes[:, j:j + n_windows]
    inside = np.arange(n_windows)[None, :] <= (lengths - k)[:, None]  # (n, T)
    return np.bincount(ids[inside], minlength=N_AMINO_ACIDS ** k).astype(np.int64)


@dataclass(frozen=True)
class KmerAssociation:
    kmers: list[str]  # best first
    scores: np.ndarray  # |t| of the association with the labels, same order
    support: np.ndarray  # training repertoires holding each k-mer
    signs: np.ndarray  # +1: more frequent where that label column is higher (the positive class), -1: lower
    columns: np.ndarray  # the label column of the best |t|


def associate_kmers(repertoires: Iterable[EncodedRepertoire], labels: np.ndarray, present: np.ndarray, k: int,
                    n_best: int) -> KmerAssociation:
    """Rank k-mers by how strongly their frequency across repertoires follows the labels.

    labels  (n_repertoires, n_columns) one column per binary/regression target and per class of a
            multiclass target (one-vs-rest indicators); present (same shape) marks known labels.
    The frequency of a k-mer in a repertoire is its occurrences per sequence; its score is the
    largest |t| of a Pearson correlation with any label column, with the frequencies' counting
    (Poisson) noise added to their variance so that rare k-mers cannot score by chance alone. Both directions count:
    a signal may sit in either class. The sums are accumulated one repertoire at a time, so memory
    is O(20**k x columns) whatever the cohort's size.
    """
    n_kmers = N_AMINO_ACIDS ** k
    n_columns = labels.shape[1]
    inverse_size = np.zeros(n_columns)  # sum over repertoires of 1 / (number of sequences)
    sum_x = np.zeros((n_columns, n_kmers))
    sum_xx = np.zeros((n_columns, n_kmers))
    sum_xy = np.zeros((n_columns, n_kmers))
    support = np.zeros(n_kmers, dtype=np.int64)
    for index, repertoire in enumerate(repertoires):
        presence = kmer_presence(repertoire, k)
        support += presence > 0
        frequency = presence / max(len(repertoire), 1)
        for column in np.flatnonzero(present[index]):
            inverse_size[column] += 1.0 / max(len(repertoire), 1)
            sum_x[column] += frequency
            sum_xx[column] += frequency * frequency
            sum_xy[column] += frequency * labels[index, column]
    best_t = np.zeros(n_kmers)
    best_sign = np.ones(n_kmers)
    best_column = np.zeros(n_kmers, dtype=np.int64)
    for column in range(n_columns):
        y = labels[present[:, column], column]
        n = len(y)
        if n < 4 or np.ptp(y) == 0:
            continue
        covariance = n * sum_xy[column] - sum_x[column] * y.sum()
        # n^2 x (the spread of the frequencies across repertoires + their counting noise): a k-mer
        # seen once in each of four repertoires has a frequency known only to about +-100%, and
        # without the counting noise it would "separate" a small cohort perfectly (|t| -> inf).
        mean_frequency = sum_x[column] / n
        variance_x = n * sum_xx[column] - sum_x[column] ** 2 + n * mean_frequency * inverse_size[column]
        variance_y = n * (y * y).sum() - y.sum() ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            r = covariance / np.sqrt(variance_x * variance_y)
            t = np.abs(r) * np.sqrt((n - 2) / (1 - r * r))
        t = np.nan_to_num(t, nan=0.0, posinf=0.0)
        better = t > best_t
        best_t[better] = t[better]
        best_sign[better] = np.sign(covariance[better])
        best_column[better] = column
    best_t[support < MIN_SUPPORT] = 0.0
    order = np.argsort(-best_t, kind="stable")[:n_best]
    order = order[best_t[order] > 0]
    return KmerAssociation(kmers=[kmer_text(int(i), k) for i in order], scores=best_t[order], support=support[order],
                           signs=best_sign[order], columns=best_column[order])


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
