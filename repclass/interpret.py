"""`repclass motifs`: the sequences, residues and motifs behind a DeepRC model's predictions.

Three levels, each with a precise definition (docs/motifs.md has the long form):

Sequences. The explained output of a repertoire is one of the model's outputs, y = o(z)[t]
(binary: the logit, negated when the negative class is explained; multiclass: the class's logit;
regression: the standardised value), with z = sum_i w_i h_i the attention-weighted mean of the
embeddings h_i of the repertoire's top-k sequences (the attention softmax's members, as in
`scoring.score_repertoire`). The *contribution* of sequence i is

    c_i = w_i * (g . h_i),    g = integral_0^1 grad_z y(a z) da

g is the output network's average gradient on the straight path from the empty repertoire
(z = 0) to z, so sum_i c_i = y(z) - y(0) exactly: for the paper's linear o, g is the output
weight row and y(0) the bias. Sequences outside the top-k are not in the softmax; their
contribution is 0.

Residues. Integrated gradients (Sundararajan et al. 2017) of y with respect to the 20 one-hot
amino-acid channels of one sequence, the other top-k sequences of its repertoire held fixed
(their embeddings and attention logits enter the softmax as constants). Baseline: the same
sequence with all amino-acid channels zero, i.e. the sequence still in the repertoire at its
length, its 3 position features kept (they are not attributed), but with no residues. The path
integral is a Gauss-Legendre quadrature, batched over sequences x steps; completeness
(attributions sum to y(x) - y(baseline)) is checked for every sequence, and sequences whose
relative error exceeds 1% are recomputed with twice the steps, up to 16x `ig_steps`.

Motifs. Around each positively contributing sequence's peak (the 4-residue window with the
largest summed |attribution|), windows are clustered greedily in order of contribution: a window
joins the first cluster whose seed window it matches in at least 3 of 4 residues at a shift of
at most 2 positions (so the same motif found at offset peaks, or a longer motif, stays one
cluster); otherwise it seeds a new cluster. A cluster whose consensus contains a stronger
cluster's is folded into it. There is no random step: the same inputs give the same motifs.
Per motif: frequency and contribution position weight matrices, the consensus over the
contiguous columns that carry contribution (+-2 flanking columns kept), support.

Memory stays bounded on large stores: repertoires are scored one at a time and only the
`top_sequences` best sequences so far (plus the current repertoire's top-k) are kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from copy import deepcopy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from ._version import __version__
from .alphabet import AMINO_ACIDS, N_AMINO_ACIDS, PAD_CODE, encode
from .airr import write_airr_rearrangements
from .checkpoint import ModelInfo, check_store_fits, load_model, resolve_model_path
from .data import EncodedRepertoire, encode_table
from .ensemble import HELD_OUT, assign_splits, fold_model_paths, out_of_fold
from .errors import RepclassError, UsageError
from .files import check_output_not_input, check_replaceable, output_lock, prepare_parent
from .evidence import (TRUTH_TOP_ATTENTION, TruthInputs, average_precision, confusion, consensus_pattern,
                       effective_number, enrichment, gene_usage, implanted_by_sample, motif_frequencies, pr_points,
                       read_truth, roc_points, score_against_truth)
from .metrics import roc_auc
from .model import DeepRC, position_features
from .progress import progress
from .runtime import resolve_device
from .scoring import score_repertoire
from .store import MANIFEST_NAME, Store, publish, write_atomically

log = logging.getLogger(__name__)

FORMAT = "repclass-motifs"
FORMAT_VERSION = 1
#: Completeness must hold within this relative error; sequences above it get more IG steps.
COMPLETENESS_TOLERANCE = 0.01
#: Denominator floor of the relative completeness error, in output units (logits): a sequence
#: whose residues change the output by less than this is judged on its absolute error.
DELTA_FLOOR = 1e-3
#: At most ig_steps * 2**MAX_REFINEMENTS steps for the sequences that need them.
MAX_REFINEMENTS = 4
#: Rows (sequences x steps) per integrated-gradients batch; bounds memory only.
IG_BATCH_ROWS = 16384
#: Motif core width: the shortest motif the DeepRC papers simulate (SFEN, SZZN).
CORE_WIDTH = 4
#: Columns kept on each side of a motif's consensus in its matrices and logo.
FLANK = 2
#: A window may match a cluster's seed shifted by up to this many positions.
MAX_SHIFT = 2
#: Consensus columns: the contiguous run around the strongest column whose contributions are at
#: least this share of its.
TRIM_FRACTION = 0.2
#: Clusters with less than this share of the top motif's total contribution are noise, not motifs.
MIN_MOTIF_SHARE = 0.01
#: Kernels drawn as logos (the strongest by contribution).
N_KERNEL_LOGOS = 4
#: Sequences of each motif listed in motifs.json and the report.
EXAMPLES_PER_MOTIF = 5
SEQUENCE_COLUMNS = ["junction_aa", "v_call", "j_call", "duplicate_count"]


# ----------------------------------------------------------------------------------------------
# what is explained
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExplainedOutput:
    """The model output that contributions and attributions explain."""

    target: str
    kind: str  # binary / multiclass / regression
    output_index: int  # column of the model's outputs
    sign: float  # -1.0 when a binary model's negative class is explained (its logit is -logit)
    class_name: str | None  # None for regression
    #: binary/multiclass: class index among the target's outputs (multiclass) or in [neg, pos]
    class_index: int = 0

    def pick(self, outputs: torch.Tensor) -> torch.Tensor:
        """(rows, n_outputs) model outputs -> (rows,) explained output."""
        return outputs[:, self.output_index] * self.sign

    def predicted(self, outputs: np.ndarray, offset: int, n_outputs: int) -> bool:
        """Whether a repertoire with these raw outputs is predicted as the explained class."""
        if self.kind == "regression":
            return True
        if self.kind == "binary":
            logit = float(outputs[offset])
            return logit >= 0.0 if self.class_index == 1 else logit < 0.0
        return int(np.argmax(outputs[offset:offset + n_outputs])) == self.class_index

    def describe(self) -> str:
        if self.kind == "regression":
            return f"{self.target} (standardised predicted value)"
        if self.kind == "binary" and self.sign < 0:
            return f"{self.target} = {self.class_name} (negated logit)"
        return f"{self.target} = {self.class_name} (logit)"


def resolve_explained(info: ModelInfo, target: str | None, class_name: str | None) -> ExplainedOutput:
    """Choose the explained output from the model's targets; UsageError names the choices."""
    if not info.targets:
        raise UsageError("the model file names no targets; retrain it with this repclass version")
    names = [t.column for t in info.targets]
    if target is None:
        chosen = info.targets[0]
    else:
        matches = [t for t in info.targets if t.column == target]
        if not matches:
            raise UsageError(f"target {target!r} is not one of the model's targets ({', '.join(names)}); "
                             f"use --target {names[0]}")
        chosen = matches[0]
    if chosen.kind == "regression":
        if class_name is not None:
            raise UsageError(f"target {chosen.column!r} is a regression target and has no classes; drop --class")
        return ExplainedOutput(chosen.column, "regression", chosen.offset, 1.0, None)
    classes = list(chosen.classes or [])
    if class_name is None:
        if chosen.kind == "multiclass":
            raise UsageError(f"target {chosen.column!r} has {len(classes)} classes; name the one to explain with "
                             f"--class (one of {', '.join(classes)})")
        class_name = chosen.positive
    index = _class_index(classes, class_name)
    if index is None:
        raise UsageError(f"class {class_name!r} is not one of target {chosen.column!r}'s classes "
                         f"({', '.join(classes)})")
    if chosen.kind == "binary":
        return ExplainedOutput(chosen.column, "binary", chosen.offset, 1.0 if index == 1 else -1.0, classes[index],
                               class_index=index)
    return ExplainedOutput(chosen.column, "multiclass", chosen.offset + index, 1.0, classes[index], class_index=index)


def _class_index(classes: list[str], name: str) -> int | None:
    if name in classes:
        return classes.index(name)
    lowered = [c.lower() for c in classes]
    return lowered.index(name.lower()) if name.lower() in lowered else None


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclass
class Motif:
    """A cluster of high-contribution windows, with its matrices over aligned columns."""

    rank: int
    consensus: str
    n_sequences: int
    n_repertoires: int
    total_contribution: float
    #: column positions; 1 is the consensus's first residue, flanks are <= 0 and > len(consensus)
    columns: list[int]
    #: [first, last + 1) of the column indices the consensus spans
    consensus_span: tuple[int, int]
    frequencies: np.ndarray  # (n_columns, 20) residue frequencies among the members covering a column
    contributions: np.ndarray  # (n_columns, 20) mean integrated-gradients attribution per member
    members: list[int]  # indices into the ranked sequences (MotifResult.sequences rows)

    @property
    def id(self) -> str:
        return f"M{self.rank}"


@dataclass
class KernelSummary:
    rank: int
    kernel: int  # index of the convolution kernel
    contribution: float  # mean over analysed repertoires of g_d * z_d
    weights: np.ndarray  # (kernel_size, 20) amino-acid weights, centred per position
    #: (kernel_size, 3) weights of the 3 position features (start ramp, end ramp, centre)
    position_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


@dataclass
class MotifResult:
    out: Path
    report: Path
    motifs: list[Motif]
    completeness_error: float  # worst relative completeness error over the attributed sequences
    explained: ExplainedOutput
    samples: list[str]  # the analysed repertoires
    sequences: pl.DataFrame  # the table written to sequences.tsv
    kernels: list[KernelSummary] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: every scored repertoire: split, label, output, probability, attention concentration (scores.tsv)
    scores: pl.DataFrame | None = None
    #: ground-truth scores when `truth` was given (truth.json)
    truth: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------
# pass 1: score repertoires, contributions, keep the best sequences
# ----------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    """One attended sequence, with what integrated gradients needs to replay its repertoire."""

    sample_index: int
    row: int
    junction: str
    v_call: str
    j_call: str
    count: int
    attention: float
    attention_rank: int
    logit: float
    contribution: float
    shift: float  # max attention logit of the repertoire (softmax shift)
    rest_total: float  # sum of exp(logit - shift) over the repertoire's other top-k sequences
    rest_weighted: torch.Tensor  # (D,) sum of exp(logit - shift) * h over them
    model_index: int = 0  # which model explains it (a fold of a cross-validation folder)

    def sort_key(self) -> tuple[float, int, int]:
        return (-self.contribution, self.sample_index, self.row)


@dataclass
class _RepertoireSummary:
    sample_id: str
    n_sequences: int
    n_attended: int
    output: float  # explained output y(z)
    empty_output: float  # y(0): the output of a repertoire without sequences (o's bias for linear o)
    kernel_contributions: np.ndarray  # (D,) g * z: sums to output - empty_output
    model_index: int = 0


@dataclass
class _Scored:
    """One scored repertoire, for the evidence tables (scores.tsv)."""

    sample_id: str
    outputs: np.ndarray  # (n_outputs,) raw model outputs
    n_sequences: int
    top1_attention: float
    effective_n: float
    analysed: bool


@lru_cache(maxsize=16)
def _legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # an eigenvalue problem: worth caching
    return (nodes + 1) / 2, weights / 2


def gauss_legendre(steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of a `steps`-point Gauss-Legendre rule on [0, 1] (float64)."""
    nodes, weights = _legendre(steps)
    return torch.from_numpy(nodes).to(device), torch.from_numpy(weights).to(device)


def output_gradient(model64: DeepRC, pooled: torch.Tensor, explained: ExplainedOutput,
                    steps: int) -> tuple[torch.Tensor, float]:
    """g = mean gradient of y along a * pooled, a in [0, 1]; and y(0). pooled: (D,) float64."""
    nodes, weights = gauss_legendre(steps, pooled.device)
    with torch.enable_grad():
        path = (nodes[:, None] * pooled[None, :]).requires_grad_(True)  # (steps, D)
        outputs = explained.pick(model64.output(path))  # (steps,)
        (grad,) = torch.autograd.grad(outputs.sum(), path)  # (steps, D)
    with torch.no_grad():
        empty = float(explained.pick(model64.output(torch.zeros_like(pooled)[None, :]))[0])
    return (weights[:, None] * grad).sum(dim=0), empty  # (D,)


@torch.no_grad()
def _attended(model: DeepRC, model64: DeepRC, encoded: EncodedRepertoire, rows: np.ndarray,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 embeddings (k, D) and attention logits (k,) of a repertoire's top-k rows."""
    codes = torch.from_numpy(encoded.codes[rows]).to(device)
    lengths = torch.from_numpy(encoded.lengths[rows].astype(np.int64)).to(device)
    counts = torch.from_numpy(encoded.counts[rows].astype(np.float64)).to(device)
    embeddings = model.embed(codes, lengths).double()  # (k, D)
    return embeddings, model64.attention_logits(embeddings, counts)  # (k,)


def _explain_repertoire(model: DeepRC, model64: DeepRC, explained: ExplainedOutput, sample_index: int,
                        sample_id: str, table: pl.DataFrame, encoded: EncodedRepertoire, rows: np.ndarray,
                        top_sequences: int, steps: int, device: torch.device
                        ) -> tuple[_RepertoireSummary, list[_Candidate]]:
    """Contributions of a repertoire's top-k sequences; its `top_sequences` best as candidates."""
    embeddings, logits = _attended(model, model64, encoded, rows, device)
    shift = logits.max()
    exp_logits = torch.exp(logits - shift)  # (k,)
    total = exp_logits.sum()
    weights = exp_logits / total  # (k,)
    pooled = (weights[:, None] * embeddings).sum(dim=0)  # (D,)
    gradient, empty = output_gradient(model64, pooled, explained, steps)
    contributions = weights * (embeddings @ gradient)  # (k,)
    with torch.no_grad():
        output = float(explained.pick(model64.output(pooled[None, :]))[0])
    summary = _RepertoireSummary(sample_id=sample_id, n_sequences=len(encoded), n_attended=len(rows), output=output,
                                 empty_output=empty, kernel_contributions=(gradient * pooled).cpu().numpy())

    contribution_values = contributions.cpu().numpy()
    keep = np.lexsort((np.arange(len(rows)), -contribution_values))[:top_sequences]
    weighted_sum = (exp_logits[:, None] * embeddings).sum(dim=0)  # (D,)
    selected = table[rows[keep].tolist()]
    candidates = []
    for position, record in zip(keep.tolist(), selected.iter_rows(named=True)):
        own = exp_logits[position]
        candidates.append(_Candidate(
            sample_index=sample_index, row=int(rows[position]), junction=record["junction_aa"],
            v_call=record.get("v_call") or "", j_call=record.get("j_call") or "",
            count=int(record.get("duplicate_count") or 1), attention=float(weights[position]),
            attention_rank=position + 1, logit=float(logits[position]),
            contribution=float(contribution_values[position]), shift=float(shift),
            rest_total=float(total - own), rest_weighted=weighted_sum - own * embeddings[position],
        ))
    return summary, candidates


def _keep_best(pool: list[_Candidate], new: list[_Candidate], size: int) -> list[_Candidate]:
    return sorted(pool + new, key=_Candidate.sort_key)[:size]


# ----------------------------------------------------------------------------------------------
# pass 2: integrated gradients
# ----------------------------------------------------------------------------------------------
def _path_outputs(model64: DeepRC, activations: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor,
                  shift: torch.Tensor, rest_total: torch.Tensor, rest_weighted: torch.Tensor,
                  explained: ExplainedOutput) -> torch.Tensor:
    """The explained output from one sequence's convolution activations (rows, D, T), the rest of its
    repertoire fixed (shift, rest_total, rest_weighted and counts given per row). -> (rows,)"""
    k = model64.config.kernel_size
    windows = torch.arange(activations.shape[-1], device=activations.device)
    valid = windows[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]  # (rows, T)
    embeddings = F.selu(activations.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=-1))  # (rows, D)
    own = torch.exp(model64.attention_logits(embeddings, counts) - shift)  # (rows,)
    pooled = (rest_weighted + own[:, None] * embeddings) / (rest_total + own)[:, None]  # (rows, D)
    return explained.pick(model64.output(pooled))  # (rows,)


def _ig_batch(model64: DeepRC, candidates: list[_Candidate], explained: ExplainedOutput, steps: int,
              device: torch.device) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-residue attributions (one array per sequence) and y(x) - y(baseline) for a batch.

    The convolution is linear in its input, so on the path a * one-hot its activations are
    a * A + P (A: the amino acids' part, P: bias and position features): one convolution per
    sequence instead of one per step. Likewise the mean gradient with respect to the input is
    the transposed convolution of the mean gradient with respect to the activations.
    """
    n = len(candidates)
    k = model64.config.kernel_size
    lengths = torch.tensor([len(c.junction) for c in candidates], device=device)
    width = max(int(lengths.max()), k)
    padded = np.full((n, width), PAD_CODE, dtype=np.int64)
    for i, candidate in enumerate(candidates):
        padded[i, :len(candidate.junction)] = encode(candidate.junction)
    codes = torch.from_numpy(padded).to(device)  # (n, W)
    one_hot = F.one_hot(codes, N_AMINO_ACIDS + 1)[:, :, :N_AMINO_ACIDS].transpose(1, 2).double()  # (n, 20, W)
    amino_weight = model64.conv_weight[:, :N_AMINO_ACIDS, :].detach()  # (D, 20, K)
    position_weight = model64.conv_weight[:, N_AMINO_ACIDS:, :].detach()  # (D, 3, K)
    with torch.no_grad():
        residues = F.conv1d(one_hot, amino_weight)  # (n, D, T)
        fixed = F.conv1d(position_features(lengths, width).double(), position_weight,
                         model64.conv_bias.detach())  # (n, D, T)
    counts = torch.tensor([float(c.count) for c in candidates], dtype=torch.float64, device=device)
    shift = torch.tensor([c.shift for c in candidates], dtype=torch.float64, device=device)
    rest_total = torch.tensor([c.rest_total for c in candidates], dtype=torch.float64, device=device)
    rest_weighted = torch.stack([c.rest_weighted for c in candidates])  # (n, D)
    context = (counts, shift, rest_total, rest_weighted)

    nodes, weights = gauss_legendre(steps, device)
    # Rows are (sequence, step) pairs: every sequence's whole path in one forward/backward.
    with torch.enable_grad():
        activations = (nodes[None, :, None, None] * residues[:, None] + fixed[:, None])  # (n, steps, D, T)
        activations = activations.reshape(n * steps, *residues.shape[1:]).requires_grad_(True)
        outputs = _path_outputs(model64, activations, lengths.repeat_interleave(steps),
                                *[t.repeat_interleave(steps, dim=0) for t in context], explained=explained)
        (grad,) = torch.autograd.grad(outputs.sum(), activations)  # (n * steps, D, T)
    mean_grad = (grad.view(n, steps, *residues.shape[1:]) * weights[None, :, None, None]).sum(dim=1)  # (n, D, T)
    input_grad = F.conv_transpose1d(mean_grad, amino_weight)  # (n, 20, W)
    per_residue = (input_grad * one_hot).sum(dim=1)  # (n, W): (x - baseline) * mean gradient, per position
    with torch.no_grad():
        ends = torch.cat([residues + fixed, fixed])  # input, then baseline: (2n, D, T)
        both = _path_outputs(model64, ends, lengths.repeat(2), *[t.repeat(2, *[1] * (t.dim() - 1)) for t in context],
                             explained=explained)
    delta = (both[:n] - both[n:]).cpu().numpy()
    values = per_residue.cpu().numpy()
    return [values[i, :len(c.junction)] for i, c in enumerate(candidates)], delta


def relative_errors(attributions: list[np.ndarray], delta: np.ndarray) -> np.ndarray:
    """|sum of attributions - delta| / max(|delta|, DELTA_FLOOR), per sequence."""
    sums = np.array([a.sum() for a in attributions], dtype=np.float64)
    return np.abs(sums - delta) / np.maximum(np.abs(delta), DELTA_FLOOR)


def integrated_gradients(model64: DeepRC, candidates: list[_Candidate], explained: ExplainedOutput, steps: int,
                         device: torch.device) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Attributions, deltas, relative completeness errors and steps used, per candidate.

    Sequences whose completeness error exceeds COMPLETENESS_TOLERANCE are recomputed with twice
    the steps, up to MAX_REFINEMENTS times: the integrand jumps where a kernel's arg-max window
    changes or a SELU input crosses 0, so a few sequences need a finer grid than most.
    """
    attributions: list[np.ndarray] = [np.zeros(0)] * len(candidates)
    delta = np.zeros(len(candidates))
    used = np.full(len(candidates), steps)
    todo = list(range(len(candidates)))
    current = steps
    for refinement in range(MAX_REFINEMENTS + 1):
        per_batch = max(1, IG_BATCH_ROWS // current)
        batches = [todo[i:i + per_batch] for i in range(0, len(todo), per_batch)]
        label = "motifs: integrated gradients" + (f" ({current} steps)" if refinement else "")
        with progress(len(batches), label) as bar:
            for batch in batches:
                values, batch_delta = _ig_batch(model64, [candidates[i] for i in batch], explained, current, device)
                for i, value, d in zip(batch, values, batch_delta):
                    attributions[i], delta[i], used[i] = value, d, current
                bar.advance()
        errors = relative_errors(attributions, delta)
        todo = [i for i in range(len(candidates)) if errors[i] > COMPLETENESS_TOLERANCE]
        if not todo or refinement == MAX_REFINEMENTS:
            break
        current *= 2
        log.info("integrated gradients: %d of %d sequences above %.0f%% completeness error; %d steps for them",
                 len(todo), len(candidates), 100 * COMPLETENESS_TOLERANCE, current)
    errors = relative_errors(attributions, delta)
    if todo:
        log.warning("integrated gradients: %d sequences still above %.0f%% completeness error after %d steps "
                    "(worst %.3g)", len(todo), 100 * COMPLETENESS_TOLERANCE, current, float(errors.max()))
    return attributions, delta, errors, used


# ----------------------------------------------------------------------------------------------
# motifs: windows around attribution peaks, greedy clustering
# ----------------------------------------------------------------------------------------------
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
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, mean contributions), each (CORE_WIDTH + 2 * _REACH, 20), over the aligned
    columns -_REACH .. CORE_WIDTH + _REACH - 1 relative to the seed window's first residue."""
    n_columns = CORE_WIDTH + 2 * _REACH
    counts = np.zeros((n_columns, N_AMINO_ACIDS))
    contributions = np.zeros((n_columns, N_AMINO_ACIDS))
    for index, start in members:
        codes = encode(sequences[index])
        for column in range(n_columns):
            position = start - _REACH + column
            if 0 <= position < len(codes):
                counts[column, codes[position]] += 1
                contributions[column, codes[position]] += attributions[index][position]
    covered = counts.sum(axis=1, keepdims=True)
    frequencies = np.divide(counts, covered, out=np.zeros_like(counts), where=covered > 0)
    return frequencies, contributions / len(members)


def consensus_span(contributions: np.ndarray) -> tuple[int, int]:
    """[first, last + 1) of the contiguous columns around the strongest one that carry at least
    TRIM_FRACTION of its (positive) contribution; the seed window when no column contributes.

    Contiguous, so that a residue the kernels weigh a few positions away (a junction's final F,
    say) does not stretch the consensus over the weak columns between."""
    column_contribution = np.clip(contributions.sum(axis=1), 0.0, None)  # (n_columns,)
    if column_contribution.max() <= 0:
        return _REACH, _REACH + CORE_WIDTH
    peak = int(np.argmax(column_contribution))
    threshold = TRIM_FRACTION * column_contribution[peak]
    first, last = peak, peak + 1
    while first > 0 and column_contribution[first - 1] >= threshold:
        first -= 1
    while last < len(column_contribution) and column_contribution[last] >= threshold:
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
        self.frequencies, self.contributions = motif_matrices(sequences, attributions, self.members)
        self.span = consensus_span(self.contributions)
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


def rank_kernels(model: DeepRC, summaries: list[_RepertoireSummary], n: int) -> list[KernelSummary]:
    """The kernels with the largest mean contribution g_d * z_d (toward the explained output).

    Weights are centred per position: with one-hot input, adding a constant to all 20 weights of a
    position only adds a constant to every window, so only the differences carry meaning.
    """
    mean = np.mean([s.kernel_contributions for s in summaries], axis=0)  # (D,)
    order = np.lexsort((np.arange(len(mean)), -mean))[:n]
    weights = model.conv_weight.detach()[:, :N_AMINO_ACIDS, :].double().cpu().numpy()  # (D, 20, K)
    positions = model.conv_weight.detach()[:, N_AMINO_ACIDS:, :].double().cpu().numpy()  # (D, 3, K)
    kernels = []
    for rank, kernel in enumerate(order.tolist(), start=1):
        matrix = weights[kernel].T  # (K, 20)
        kernels.append(KernelSummary(rank=rank, kernel=kernel, contribution=float(mean[kernel]),
                                     weights=matrix - matrix.mean(axis=1, keepdims=True),
                                     position_weights=positions[kernel].T))
    return kernels


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
def _round(value: float, digits: int = 6) -> float:
    """Round to `digits` significant digits, so that last-bit noise never reaches a file."""
    return float(f"{value:.{digits}g}")


def _rounded(array: np.ndarray, digits: int = 6) -> list:
    return [[_round(float(v), digits) for v in row] for row in np.asarray(array)]


def _sequence_table(candidates: list[_Candidate], sample_ids: list[str], attributions: list[np.ndarray],
                    delta: np.ndarray, errors: np.ndarray, steps: np.ndarray, motif_of: dict[int, str]) -> pl.DataFrame:
    peaks = [peak_window(a, CORE_WIDTH) if len(a) >= CORE_WIDTH else 0 for a in attributions]
    return pl.DataFrame({
        "rank": list(range(1, len(candidates) + 1)),
        "sample_id": [sample_ids[c.sample_index] for c in candidates],
        "junction_aa": [c.junction for c in candidates],
        "v_call": [c.v_call for c in candidates],
        "j_call": [c.j_call for c in candidates],
        "duplicate_count": [c.count for c in candidates],
        "attention": [_round(c.attention) for c in candidates],
        "attention_rank": [c.attention_rank for c in candidates],
        "attention_logit": [_round(c.logit) for c in candidates],
        "contribution": [_round(c.contribution) for c in candidates],
        "ig_delta": [_round(float(d)) for d in delta],
        "ig_error": [_round(float(e), 3) for e in errors],
        "ig_steps": [int(s) for s in steps],
        "peak_start": peaks,
        "motif": [motif_of.get(i, "") for i in range(len(candidates))],
        "residue_contributions": [",".join(f"{v:.6g}" for v in a) for a in attributions],
    }, schema_overrides={"duplicate_count": pl.Int64, "attention_rank": pl.Int64, "peak_start": pl.Int64})


def _repertoire_table(summaries: list[_RepertoireSummary], sequence_table: pl.DataFrame) -> pl.DataFrame:
    listed = sequence_table.group_by("sample_id").len()
    counts = dict(zip(listed["sample_id"].to_list(), listed["len"].to_list()))
    return pl.DataFrame({
        "sample_id": [s.sample_id for s in summaries],
        "n_sequences": [s.n_sequences for s in summaries],
        "n_attended": [s.n_attended for s in summaries],
        "output": [_round(s.output) for s in summaries],
        "empty_output": [_round(s.empty_output) for s in summaries],
        "sum_contributions": [_round(float(s.kernel_contributions.sum())) for s in summaries],
        "n_top_sequences": [counts.get(s.sample_id, 0) for s in summaries],
    }, schema_overrides={"n_sequences": pl.Int64, "n_attended": pl.Int64, "n_top_sequences": pl.Int64})


def _motif_table(motifs: list[Motif], sequences: list[str]) -> pl.DataFrame:
    return pl.DataFrame({
        "motif": [m.id for m in motifs],
        "rank": [m.rank for m in motifs],
        "consensus": [m.consensus for m in motifs],
        "n_sequences": [m.n_sequences for m in motifs],
        "n_repertoires": [m.n_repertoires for m in motifs],
        "total_contribution": [_round(m.total_contribution) for m in motifs],
        "top_sequence": [sequences[m.members[0]] for m in motifs],
        "logo_png": [f"logos/motif_{m.rank:02d}.png" for m in motifs],
        "logo_svg": [f"logos/motif_{m.rank:02d}.svg" for m in motifs],
    }, schema={"motif": pl.String, "rank": pl.Int64, "consensus": pl.String, "n_sequences": pl.Int64,
               "n_repertoires": pl.Int64, "total_contribution": pl.Float64, "top_sequence": pl.String,
               "logo_png": pl.String, "logo_svg": pl.String})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _summary(model_path: Path, store: Store, explained: ExplainedOutput, selection: str, samples: list[str],
             settings: dict[str, Any], errors: np.ndarray, steps: np.ndarray, motifs: list[Motif],
             kernels: list[KernelSummary], sequences: list[str]) -> dict[str, Any]:
    """The content of motifs.json (no paths, dates or timings: the same inputs give the same bytes)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "repclass_version": __version__,
        "model": {"file": model_path.name, "sha256": _sha256(model_path)},
        "store": {"name": store.path.name, "fingerprint": store.fingerprint},
        "explained": {"target": explained.target, "kind": explained.kind, "class": explained.class_name,
                      "output_index": explained.output_index, "sign": explained.sign,
                      "description": explained.describe()},
        "selection": selection,
        "samples": samples,
        "settings": settings,
        "alphabet": AMINO_ACIDS,
        "integrated_gradients": {
            "baseline": "the sequence with all 20 amino-acid channels zero (position features kept), the other "
                        "top-k sequences of its repertoire fixed",
            "quadrature": "Gauss-Legendre, steps doubled for sequences above the tolerance",
            "n_sequences": len(errors),
            "worst_relative_error": _round(float(errors.max()), 4) if len(errors) else 0.0,
            "mean_relative_error": _round(float(errors.mean()), 4) if len(errors) else 0.0,
            "tolerance": COMPLETENESS_TOLERANCE,
            "delta_floor": DELTA_FLOOR,
            "max_steps": int(steps.max()) if len(steps) else 0,
            "n_above_tolerance": int((errors > COMPLETENESS_TOLERANCE).sum()),
        },
        "motifs": [{
            "id": m.id, "rank": m.rank, "consensus": m.consensus, "n_sequences": m.n_sequences,
            "n_repertoires": m.n_repertoires, "total_contribution": _round(m.total_contribution),
            "columns": m.columns, "consensus_span": list(m.consensus_span),
            "frequencies": _rounded(m.frequencies), "contributions": _rounded(m.contributions),
            "examples": [sequences[i] for i in m.members[:EXAMPLES_PER_MOTIF]],
            "logo_png": f"logos/motif_{m.rank:02d}.png", "logo_svg": f"logos/motif_{m.rank:02d}.svg",
        } for m in motifs],
        "kernels": [{
            "rank": k.rank, "kernel": k.kernel, "contribution": _round(k.contribution),
            "weights": _rounded(k.weights), "position_weights": _rounded(k.position_weights),
            "logo_png": f"logos/kernel_{k.rank:02d}.png",
            "logo_svg": f"logos/kernel_{k.rank:02d}.svg",
        } for k in kernels],
    }


def _write_tsv(table: pl.DataFrame, path: Path) -> None:
    table.write_csv(path, separator="\t")


def _write_folder(folder: Path, summary: dict[str, Any], sequence_table: pl.DataFrame,
                  repertoire_table: pl.DataFrame, motif_table: pl.DataFrame, scores_table: pl.DataFrame,
                  history: list[dict[str, Any]]) -> Path:
    from .logos import draw_kernel_logo, draw_motif_logo
    from .plot import draw_evidence_figures
    from .report import write_report

    folder.mkdir(parents=True)
    _write_tsv(sequence_table, folder / "sequences.tsv")
    _write_tsv(repertoire_table, folder / "repertoires.tsv")
    _write_tsv(motif_table, folder / "motifs.tsv")
    _write_tsv(scores_table, folder / "scores.tsv")
    (folder / "motifs.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if "truth" in summary:
        (folder / "truth.json").write_text(json.dumps(summary["truth"], indent=1, sort_keys=True) + "\n")
    figures = folder / "figures"
    figures.mkdir()
    draw_evidence_figures(summary, scores_table, history, figures)
    logos = folder / "logos"
    logos.mkdir()
    # Drawn from the rounded matrices of motifs.json: last-bit differences (thread counts, say)
    # never change a pixel.
    for motif in summary["motifs"]:
        draw_motif_logo(np.array(motif["contributions"]), np.array(motif["frequencies"]), motif["columns"],
                        f"{motif['id']}  {motif['consensus']}  ({motif['n_sequences']} sequences, "
                        f"{motif['n_repertoires']} repertoires)", folder / Path(motif["logo_png"]).with_suffix(""),
                        highlight=tuple(motif["consensus_span"]))
    for kernel in summary["kernels"]:
        draw_kernel_logo(np.array(kernel["weights"]), np.array(kernel["position_weights"]),
                         f"kernel rank {kernel['rank']} (kernel index {kernel['kernel']}; mean contribution "
                         f"{kernel['contribution']:.3g} logit)", folder / Path(kernel["logo_png"]).with_suffix(""))
    return write_report(folder / "report.html", summary, sequence_table, scores_table)


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def _check_settings(top_sequences: int, n_motifs: int, ig_steps: int) -> None:
    for name, value, option in (("top_sequences", top_sequences, "--top-sequences"),
                                ("n_motifs", n_motifs, "--motifs"), ("ig_steps", ig_steps, "--ig-steps")):
        if value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")


def _chosen_samples(store: Store, samples: Sequence[str] | None) -> list[str] | None:
    if samples is None:
        return None
    samples = list(samples)
    if not samples:
        raise UsageError("the selection of repertoires is empty; name at least one sample id with --sample, or "
                         "leave --sample out to analyse the repertoires predicted as the explained class")
    known = set(store.sample_ids)
    unknown = [s for s in samples if s not in known]
    if unknown:
        shown = ", ".join(store.sample_ids[:5]) + (", ..." if len(store) > 5 else "")
        raise UsageError(f"{store.path}: no sample(s) {', '.join(repr(s) for s in unknown)} in the store "
                         f"(it holds {shown})")
    chosen = set(samples)
    return [s for s in store.sample_ids if s in chosen]


def _no_selection_error(explained: ExplainedOutput, n_scored: int, held_out_only: bool = False) -> RepclassError:
    # Bad data, not bad usage (exit 1): a weak model in one fold of a pipeline is not a usage error.
    scope = "held-out " if held_out_only else ""
    extra = ", or add the training repertoires with --include-training" if held_out_only else ""
    return RepclassError(f"none of the {n_scored} {scope}repertoires is predicted as {explained.target} = "
                         f"{explained.class_name}, so there is nothing to explain; name repertoires with --sample ID, "
                         f"or explain another class with --class{extra}")


def _collect(networks: list[tuple[DeepRC, DeepRC]], model_of: dict[str, int], store: Store,
             explained: ExplainedOutput, offset: int, n_outputs: int, chosen: list[str] | None, eligible: set[str],
             top_sequences: int, steps: int, device: torch.device, implanted: dict[str, set[str]] | None = None
             ) -> tuple[list[_RepertoireSummary], list[_Candidate], list[_Scored], TruthInputs | None]:
    """Score every repertoire of the store one at a time (the evidence needs them all), each with
    its model (`networks[model_of[id]]`: (float32 model, float64 copy)); explain those chosen, or
    else the `eligible` ones predicted as the explained class. Keeps only the `top_sequences` best
    candidates so far: memory does not grow with the store."""
    summaries: list[_RepertoireSummary] = []
    pool: list[_Candidate] = []
    scored: list[_Scored] = []
    seen = TruthInputs(top_attended={}, attention_mass={}) if implanted is not None else None
    wanted = set(chosen) if chosen is not None else None
    with progress(len(store.sample_ids), "motifs: scoring repertoires") as bar:
        for sample_id in store.sample_ids:
            table = store.read(sample_id, SEQUENCE_COLUMNS)
            bar.advance(status=sample_id)
            if table.height == 0:
                log.warning("%s: no sequences; skipped", sample_id)
                continue
            encoded = encode_table(table)
            index = model_of.get(sample_id, 0)
            network, model64 = networks[index]
            score = score_repertoire(network, encoded, device)
            if wanted is not None:
                analyse = sample_id in wanted
            else:
                analyse = sample_id in eligible and explained.predicted(score.outputs, offset, n_outputs)
            scored.append(_Scored(sample_id=sample_id, outputs=score.outputs, n_sequences=score.n_sequences,
                                  top1_attention=float(score.weights[0]), effective_n=effective_number(score.weights),
                                  analysed=analyse))
            if not analyse:
                continue
            if seen is not None:
                junctions = table["junction_aa"]
                top = junctions.gather(score.rows[:TRUTH_TOP_ATTENTION]).to_list()
                seen.top_attended[sample_id] = (top, score.weights[:TRUTH_TOP_ATTENTION].astype(np.float64))
                truths = implanted.get(sample_id, set())
                hit = np.array([j in truths for j in junctions.gather(score.rows).to_list()], dtype=bool)
                seen.attention_mass[sample_id] = float(score.weights[hit].sum())
            summary, candidates = _explain_repertoire(network, model64, explained, len(summaries), sample_id, table,
                                                      encoded, score.rows, top_sequences, steps, device)
            summary.model_index = index
            for candidate in candidates:
                candidate.model_index = index
            summaries.append(summary)
            pool = _keep_best(pool, candidates, top_sequences)
    if not summaries:
        if chosen is not None:
            raise RepclassError(f"the chosen repertoires ({', '.join(chosen)}) hold no sequences; choose others")
        raise _no_selection_error(explained, len(eligible), len(eligible) < len(store.sample_ids))
    return summaries, pool, scored, seen


def _airr_sequences(store: Store, sequence_table: pl.DataFrame) -> pl.DataFrame:
    """sequences.tsv as AIRR rearrangements (repclass.airr), with the stored AIRR fields
    (sequence_id of every merged input row, locus, c_call) joined back by clonotype, so that the
    explained sequences join to the user's own records."""
    from .airr import airr_rearrangements

    key = ["sample_id", "junction_aa", "v_call", "j_call"]
    stored = []
    for sample_id in sequence_table["sample_id"].unique(maintain_order=True).to_list():
        table = store.read(sample_id)
        extra = [c for c in ("sequence_id", "locus", "c_call") if c in table.columns]
        if extra:
            stored.append(table.select(key[1:] + extra).with_columns(pl.lit(sample_id).alias("sample_id")))
    joined = sequence_table
    if stored:
        joined = sequence_table.join(pl.concat(stored, how="diagonal_relaxed"), on=key, how="left", nulls_equal=True)
    productive = True if store.manifest.get("read_options", {}).get("productive_only", True) else None
    extra_columns = [c for c in sequence_table.columns if c not in ("sample_id", "junction_aa", "v_call", "j_call",
                                                                    "duplicate_count")]
    return airr_rearrangements(joined, convention=store.junction_convention, productive=productive,
                               extra=extra_columns)


def _publish(out: Path, force: bool, summary: dict[str, Any], sequence_table: pl.DataFrame,
             repertoire_table: pl.DataFrame, motif_table: pl.DataFrame, scores_table: pl.DataFrame,
             history: list[dict[str, Any]], airr_table: pl.DataFrame) -> None:
    """Write everything into a temporary sibling folder, then rename it to `out`."""
    lock = contextlib.ExitStack()
    lock.enter_context(output_lock(out))  # a second run to the same --out fails instead of mixing files
    check_replaceable(out, "motifs", force)
    temporary = write_atomically(out, force)
    try:
        _write_folder(temporary, summary, sequence_table, repertoire_table, motif_table, scores_table, history)
        write_airr_rearrangements(airr_table, temporary / "sequences.airr.tsv")
        publish(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        lock.close()


def motifs(model: str | Path, store: "str | Path | Store | Sequence[str | Path]", out: str | Path, *,
           samples: Sequence[str] | None = None,
           target: str | None = None, class_name: str | None = None, top_sequences: int = 500, n_motifs: int = 10,
           ig_steps: int = 64, device: str = "auto", seed: int = 0, force: bool = False,
           include_training: bool = False, truth: str | Path | None = None) -> MotifResult:
    """Explain a model's predictions on a store, or on repertoire files (ingested on the fly with the
    training store's rules, as `predict` does); writes the folder `out`.

    `out` holds sequences.tsv (the `top_sequences` sequences with the largest contributions, with
    attention, contribution and per-residue integrated gradients), repertoires.tsv, motifs.tsv,
    motifs.json, scores.tsv (every scored repertoire: split, label, score, attention concentration),
    logos/ and figures/ (PNG and SVG) and report.html. The repertoires analysed are `samples`, or
    by default the held-out ones (the model's test split, or repertoires it never saw;
    `include_training` adds the rest) predicted as the explained class (binary: the positive class
    unless `class_name` names the other; multiclass: `class_name`; regression: all). `truth`, a
    table of implanted sequences (simulated data), adds truth.json (`evidence.score_against_truth`).
    No step draws random numbers: `seed` is recorded in motifs.json, and the same inputs give the
    same bytes.
    """
    inputs = [store] if isinstance(store, (str, Path, Store)) else list(store)
    if not inputs:
        raise UsageError("give a store or repertoire files to explain")
    with contextlib.ExitStack() as cleanup:
        paths = None
        if len(inputs) == 1 and (isinstance(inputs[0], Store) or (Path(inputs[0]) / MANIFEST_NAME).exists()):
            explained_store = inputs[0]
        else:  # repertoire files: ingested with the training store's rules into a temporary store, as predict does
            paths = [Path(p) for p in inputs]
            check_output_not_input(Path(out), [Path(model), *paths])
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="repclass-motifs-"))
            explained_store = _ingest_like_training(model, paths, Path(folder))
        return _motifs(model, explained_store, out, samples=samples, target=target, class_name=class_name,
                       top_sequences=top_sequences, n_motifs=n_motifs, ig_steps=ig_steps, device=device, seed=seed,
                       force=force, include_training=include_training, truth=truth, inputs=paths)


def _ingest_like_training(model: str | Path, paths: list[Path], folder: Path) -> Store:
    """Raw repertoire files -> a store in `folder`, read with the model's training-store rules
    (productive filter, anchors, locus, convention); sample ids are the file stems."""
    from .ingestion import ingest
    from .prediction import _read_options
    from .sheet import file_stem

    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path}: a folder but not a store (no {MANIFEST_NAME}); give the store or the files")
    fold_paths = fold_model_paths(model)
    _, info = load_model(fold_paths[0] if fold_paths else resolve_model_path(model))
    ids = [file_stem(p.name) for p in paths]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"two files give the same sample id: {', '.join(repeated)}; rename one of them")
    sheet = folder / "samples.tsv"
    sheet.write_text("sample_id\n" + "".join(f"{i}\n" for i in ids))
    return ingest(sheet, folder / "inputs.store", paths,
                  options=_read_options(info.read_options, info.junction_convention))


def _motifs(model: str | Path, store: str | Path | Store, out: str | Path, *, samples: Sequence[str] | None,
            target: str | None, class_name: str | None, top_sequences: int, n_motifs: int, ig_steps: int,
            device: str, seed: int, force: bool, include_training: bool, truth: str | Path | None,
            inputs: list[Path] | None = None) -> MotifResult:
    started = time.perf_counter()
    _check_settings(top_sequences, n_motifs, ig_steps)
    out = Path(out)
    # files.py's rules: not an input, --force only replacing a motifs folder, a writable parent.
    check_output_not_input(out, [Path(model), *(inputs or [store.path if isinstance(store, Store) else Path(store)])])
    check_replaceable(out, "motifs", force)
    prepare_parent(out)
    store = store if isinstance(store, Store) else Store.open(store)
    fold_paths = fold_model_paths(model)
    model_paths = fold_paths or [resolve_model_path(model)]
    model_path = model_paths[0]
    device_obj = resolve_device(device)
    loaded = [load_model(path, device_obj) for path in model_paths]
    network, info = loaded[0]
    for _, fold_info in loaded:
        check_store_fits(fold_info, store.junction_convention, store.alphabet, str(store.path))
    explained = resolve_explained(info, target, class_name)
    chosen = _chosen_samples(store, samples)
    truth_table = read_truth(truth) if truth is not None else None
    networks = [(n, deepcopy(n).double()) for n, _ in loaded]
    owner = next(t for t in info.targets if t.column == explained.target)
    if fold_paths:
        assignment, model_of = out_of_fold([i for _, i in loaded], store.sample_ids, store.fingerprint,
                                           str(store.path))
    else:
        assignment = assign_splits([info], store.sample_ids, store.fingerprint, str(store.path))
        model_of = {}
    split_of = dict(zip(store.sample_ids, assignment.splits))
    eligible = {i for i, split in split_of.items() if include_training or split in HELD_OUT}

    summaries, pool, scored, seen = _collect(
        networks, model_of, store, explained, owner.offset, owner.n_outputs, chosen, eligible, top_sequences,
        ig_steps, device_obj, implanted_by_sample(truth_table) if truth_table is not None else None)
    analysed = [s.sample_id for s in summaries]
    if chosen is not None:
        selection = "given"
    else:
        selection = "predicted" if include_training or not assignment.overlaps else "predicted, held out"
    log.info("analysing %d repertoires (%s): %d sequences get residue attributions", len(analysed),
             "given" if chosen is not None else f"predicted {explained.target} = {explained.class_name}", len(pool))
    scored_at = time.perf_counter()

    attributions, delta, errors, steps = _attribute(networks, pool, explained, ig_steps, device_obj)
    log.info("integrated gradients: worst completeness error %.2e (mean %.2e) over %d sequences",
             float(errors.max()), float(errors.mean()), len(pool))
    attributed = time.perf_counter()

    sequences = [c.junction for c in pool]
    sequence_samples = [analysed[c.sample_index] for c in pool]
    contributions = np.array([c.contribution for c in pool])
    found = find_motifs(sequences, sequence_samples, contributions, attributions, n_motifs)
    # Kernels belong to one model: a cross-validation folder shows those of the fold that explains
    # the most analysed repertoires.
    used = [s.model_index for s in summaries]
    kernel_model = max(sorted(set(used)), key=used.count)
    kernels = rank_kernels(networks[kernel_model][0], [s for s in summaries if s.model_index == kernel_model],
                           min(N_KERNEL_LOGOS, network.config.n_kernels))
    motif_of = {i: m.id for m in found for i in m.members}
    sequence_table = _sequence_table(pool, analysed, attributions, delta, errors, steps, motif_of)
    settings = {"top_sequences": top_sequences, "n_motifs": n_motifs, "ig_steps": ig_steps, "seed": seed,
                "core_width": CORE_WIDTH, "flank": FLANK, "max_shift": MAX_SHIFT, "trim_fraction": TRIM_FRACTION,
                "min_motif_share": MIN_MOTIF_SHARE, "include_training": include_training}
    summary = _summary(model_path, store, explained, selection, analysed, settings, errors, steps, found, kernels,
                       sequences)
    if fold_paths:
        summary["model"] = {"file": Path(model).name, "sha256": summary["model"]["sha256"],
                            "folds": [{"file": f"{p.parent.name}/{p.name}", "sha256": _sha256(p)} for p in fold_paths],
                            "kernels_from": f"fold_{kernel_model + 1}"}
    scores_table = _scores_table(scored, owner, explained, store, split_of)
    summary["evidence"] = _evidence(store, info, explained, scores_table, found, sequence_table, split_of,
                                    assignment)
    if fold_paths:
        summary["evidence"]["cross_validation"] = len(fold_paths)
        summary["evidence"]["model_metrics"] = {
            f"fold {k} test": fold_info.metrics.get("test", {}).get(explained.target, {})
            for k, (_, fold_info) in enumerate(loaded, start=1)}
    truth_result = None
    if truth_table is not None:
        truth_result = score_against_truth(sequence_table, truth_table, analysed, [m.consensus for m in found], seen)
        summary["truth"] = truth_result
    clustered = time.perf_counter()

    _publish(out, force, summary, sequence_table, _repertoire_table(summaries, sequence_table),
             _motif_table(found, sequences), scores_table, [] if fold_paths else _training_history(model_path),
             _airr_sequences(store, sequence_table))
    finished = time.perf_counter()
    timings = {"score": scored_at - started, "integrated_gradients": attributed - scored_at,
               "motifs": clustered - attributed, "write": finished - clustered, "total": finished - started}
    log.info("motifs: %s", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return MotifResult(out=out, report=out / "report.html", motifs=found,
                       completeness_error=float(errors.max()) if len(errors) else 0.0, explained=explained,
                       samples=analysed, sequences=sequence_table, kernels=kernels, timings=timings,
                       scores=scores_table, truth=truth_result)


# ----------------------------------------------------------------------------------------------
# evidence: performance on held-out repertoires, attention concentration, motif enrichment
# ----------------------------------------------------------------------------------------------
def _attribute(networks: list[tuple[DeepRC, DeepRC]], pool: list[_Candidate], explained: ExplainedOutput,
               ig_steps: int, device: torch.device) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """integrated_gradients over the pool, each candidate with the model that explained it."""
    if len(networks) == 1:
        return integrated_gradients(networks[0][1], pool, explained, ig_steps, device)
    attributions: list[np.ndarray] = [np.zeros(0)] * len(pool)
    delta, errors, steps = np.zeros(len(pool)), np.zeros(len(pool)), np.zeros(len(pool), dtype=np.int64)
    for index, (_, model64) in enumerate(networks):
        members = [i for i, c in enumerate(pool) if c.model_index == index]
        if not members:
            continue
        values, d, e, s = integrated_gradients(model64, [pool[i] for i in members], explained, ig_steps, device)
        for position, i in enumerate(members):
            attributions[i] = values[position]
        delta[members], errors[members], steps[members] = d, e, s
    return attributions, delta, errors, steps


def _scores_table(scored: list[_Scored], owner: Any, explained: ExplainedOutput, store: Store,
                  split_of: dict[str, str]) -> pl.DataFrame:
    """Every scored repertoire: its split, label, explained output and probability (or predicted
    value), whether it was analysed, and how concentrated its attention is."""
    outputs = np.stack([r.outputs for r in scored]).astype(np.float64)  # (n, n_outputs)
    columns = owner.predictions(outputs)
    if explained.kind == "regression":
        probability = np.asarray(columns[f"{owner.column}:predicted"], dtype=np.float64)
    else:
        probability = np.asarray(columns[f"{owner.column}:p({explained.class_name})"], dtype=np.float64)
    labels = store.labels(owner.column) if owner.column in store.label_columns else {}
    ids = [r.sample_id for r in scored]
    return pl.DataFrame({
        "sample_id": ids,
        "split": [split_of.get(i, "new") for i in ids],
        "label": [labels.get(i) for i in ids],
        "output": [_round(float(explained.sign * r.outputs[explained.output_index])) for r in scored],
        "score": [_round(float(v)) for v in probability],
        "predicted": [str(v) for v in columns[f"{owner.column}:predicted"]],
        "analysed": [r.analysed for r in scored],
        "n_sequences": [r.n_sequences for r in scored],
        "top1_attention": [_round(r.top1_attention) for r in scored],
        "effective_n": [_round(r.effective_n) for r in scored],
    }, schema={"sample_id": pl.String, "split": pl.String, "label": pl.String, "output": pl.Float64,
               "score": pl.Float64, "predicted": pl.String, "analysed": pl.Boolean, "n_sequences": pl.Int64,
               "top1_attention": pl.Float64, "effective_n": pl.Float64})


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"n": 0, "median": None, "p10": None, "p90": None}
    return {"n": int(len(values)), "median": _round(float(np.median(values))),
            "p10": _round(float(np.quantile(values, 0.1))), "p90": _round(float(np.quantile(values, 0.9)))}


def _evidence(store: Store, info: ModelInfo, explained: ExplainedOutput, scores: pl.DataFrame, found: list[Motif],
              sequence_table: pl.DataFrame, split_of: dict[str, str], assignment: Any) -> dict[str, Any]:
    """The numbers behind the report's evidence sections (motifs.json's "evidence")."""
    held = scores.filter(pl.col("split").is_in(list(HELD_OUT)))
    labelled = held.filter(pl.col("label").is_not_null())
    evidence: dict[str, Any] = {
        "splits": assignment.counts(),
        "training_store": "same" if assignment.confirmed else ("overlapping ids" if assignment.overlaps else "none"),
        "model_metrics": {split: info.metrics.get(split, {}).get(explained.target, {})
                          for split in ("train", "validation", "test") if split in info.metrics},
        "best_update": info.metrics.get("best_update"),
        "attention": {
            "top1_weight": _stats(scores["top1_attention"].to_list()),
            "effective_n": _stats(scores["effective_n"].to_list()),
            "top1_weight_above_0.5": int((scores["top1_attention"] > 0.5).sum()),
            "n_repertoires": scores.height,
        },
    }
    if explained.kind != "regression" and labelled.height:
        positive = np.array([v == explained.class_name for v in labelled["label"].to_list()])
        values = labelled["score"].to_numpy()
        fpr, tpr = roc_points(positive, values)
        recall, precision = pr_points(positive, values)
        classes = list(next(t for t in info.targets if t.column == explained.target).classes or [])
        evidence["held_out"] = {
            "n": labelled.height, "n_class": int(positive.sum()),
            "roc_auc": _round(roc_auc(positive, values)) if 0 < positive.sum() < len(positive) else None,
            "average_precision": _round(average_precision(positive, values)) if positive.any() else None,
            "roc": {"fpr": [_round(v) for v in fpr], "tpr": [_round(v) for v in tpr]},
            "pr": {"recall": [_round(v) for v in recall], "precision": [_round(v) for v in precision]},
            "classes": classes,
            "confusion": confusion(labelled["label"].to_list(), labelled["predicted"].to_list(), classes).tolist(),
        }
    # Motif enrichment: each motif's share of sequences in every labelled repertoire of the store.
    in_class: dict[str, bool] = {}
    if explained.kind != "regression" and explained.target in store.label_columns:
        in_class = {i: v == explained.class_name for i, v in store.labels(explained.target).items() if v is not None}
    patterns = [consensus_pattern(m.consensus) for m in found]
    shares = motif_frequencies(store.iter_tables(["junction_aa"]), patterns) if found and in_class else {}
    motifs_evidence = []
    for index, motif in enumerate(found):
        members = sequence_table.filter(pl.col("motif") == motif.id)
        repertoires = sorted(set(members["sample_id"].to_list()))
        item: dict[str, Any] = {
            "id": motif.id, "pattern": patterns[index],
            "v_usage": [[g, _round(f, 3)] for g, f in gene_usage(members["v_call"].to_list())],
            "j_usage": [[g, _round(f, 3)] for g, f in gene_usage(members["j_call"].to_list())],
            "n_repertoires": len(repertoires),
            "n_repertoires_held_out": sum(split_of.get(r, "new") in HELD_OUT for r in repertoires),
            "n_sign_disagreements": int(((members["contribution"] > 0) & (members["ig_delta"] < 0)).sum()),
        }
        if shares:
            per = {i: float(v[index]) for i, v in shares.items()}
            item["enrichment_all"] = enrichment(patterns[index], per, in_class).to_dict()
            held_ids = {i: c for i, c in in_class.items() if split_of.get(i, "new") in HELD_OUT}
            item["enrichment_held_out"] = enrichment(patterns[index], per, held_ids).to_dict()
        motifs_evidence.append(item)
    evidence["motifs"] = motifs_evidence
    evidence["sign_disagreements"] = {
        "n": int(((sequence_table["contribution"] > 0) & (sequence_table["ig_delta"] < 0)).sum()),
        "n_positive": int((sequence_table["contribution"] > 0).sum())}
    return evidence


def _training_history(model_path: Path) -> list[dict[str, Any]]:
    """The model folder's training curve (training_curve.tsv), when the model file sits in one."""
    path = model_path.parent / "training_curve.tsv"
    if not path.exists():
        return []
    table = pl.read_csv(path, separator="\t", infer_schema_length=None)
    return table.to_dicts() if "update" in table.columns and table.height else []
