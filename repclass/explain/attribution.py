"""Sequence contributions, residue attributions and kernel ranking: the parts of `repclass
motifs` that run the model (torch, float64).

Sequences. The explained output of a repertoire is one of the model's outputs, y = o(z)[t]
(binary: the logit, negated when the negative class is explained; multiclass: the class's logit;
regression: the standardised value), with z = sum_i w_i h_i the attention-weighted mean of the
embeddings h_i of the repertoire's top-k sequences (the attention softmax's members, as in
`scoring.score_repertoire`). The *contribution* of sequence i is

    c_i = w_i * (g . h_i),    g = integral_0^1 grad_z y(a z) da

g is the output network's average gradient on the straight path from the empty repertoire
(z = 0) to z, so sum_i c_i = o(z)[t] - o(0)[t] exactly: for the paper's linear o, g is the output
weight row and o(0) the bias. Sequences outside the top-k are not in the softmax; their
contribution is 0. A model with the count read-out (ModelConfig.count_readout) adds e = a[t] * E
to y, E the log mean exp of the repertoire's attention logits: a term of the whole repertoire,
reported beside the contributions (sum_i c_i + e = y - o(0)[t]) rather than shared out among them.
Every attended sequence raises E (dE/dlogit_i = w_i), so shared out by weight it would give each
background sequence of a positive repertoire a small positive part, and a positive contribution
would no longer single out the sequences that make a repertoire positive.

Residues. Integrated gradients (Sundararajan et al. 2017) of y with respect to the 20 one-hot
amino-acid channels of one sequence, through any embedding (`repclass.model.embedding`'s outer form),
the other top-k sequences of its repertoire held fixed (their embeddings and attention logits
enter the softmax as constants). Baseline: the same
sequence with all amino-acid channels zero, i.e. the sequence still in the repertoire at its
length, its 3 position features kept (they are not attributed), but with no residues. The path
integral is a Gauss-Legendre quadrature, batched over sequences x steps; completeness
(attributions sum to y(x) - y(baseline)) is checked for every sequence, and sequences whose
relative error exceeds 1% are recomputed with twice the steps, up to 16x `ig_steps`.

Kernels. Each convolution kernel d contributes g_d * z_d to a repertoire's output; the kernels
with the largest mean contribution over the analysed repertoires are ranked. Only a convolution
embedding has kernels to rank (`SequenceEmbedding.kernel_logos`); for the others there are none.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import polars as pl
import torch

from repclass.alphabet import N_AMINO_ACIDS, PAD_CODE, encode
from repclass.model.data import EncodedRepertoire
from repclass.model.embedding import one_hot
from repclass.model.deeprc import DeepRC
from repclass.progress import progress
from repclass.explain.outputs import ExplainedOutput
from repclass.explain.types import Candidate, KernelSummary, RepertoireSummary, ranking_contribution

log = logging.getLogger(__name__)

#: Completeness must hold within this relative error; sequences above it get more IG steps.
COMPLETENESS_TOLERANCE = 0.01
#: Denominator floor of the relative completeness error, in output units (logits): a sequence
#: whose residues change the output by less than this is judged on its absolute error.
DELTA_FLOOR = 1e-3
#: At most ig_steps * 2**MAX_REFINEMENTS steps for the sequences that need them.
MAX_REFINEMENTS = 4
#: Rows (sequences x steps) per integrated-gradients batch; bounds memory only.
IG_BATCH_ROWS = 16384


# ----------------------------------------------------------------------------------------------
# pass 1: contributions of a repertoire's attended sequences
# ----------------------------------------------------------------------------------------------
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


def explain_repertoire(model: DeepRC, model64: DeepRC, explained: ExplainedOutput, sample_index: int,
                       sample_id: str, table: pl.DataFrame, encoded: EncodedRepertoire, rows: np.ndarray,
                       top_sequences: int, steps: int, device: torch.device
                       ) -> tuple[RepertoireSummary, list[Candidate]]:
    """Contributions of a repertoire's top-k sequences; its `top_sequences` best as candidates."""
    embeddings, logits = _attended(model, model64, encoded, rows, device)
    shift = logits.max()
    exp_logits = torch.exp(logits - shift)  # (k,)
    total = exp_logits.sum()
    weights = exp_logits / total  # (k,)
    pooled = (weights[:, None] * embeddings).sum(dim=0)  # (D,)
    gradient, empty = output_gradient(model64, pooled, explained, steps)
    log_size = float(np.log(len(encoded)))
    with torch.no_grad():
        pooled_output = float(explained.pick(model64.output(pooled[None, :]))[0])
        evidence = (shift + torch.log(total) - log_size)[None]  # log mean exp of the logits (the count read-out)
        output = float(explained.pick(model64.read_out(pooled[None, :], evidence))[0])
    evidence_output = output - pooled_output  # 0 without a count read-out
    contributions = weights * (embeddings @ gradient)  # (k,)
    summary = RepertoireSummary(sample_id=sample_id, n_sequences=len(encoded), n_attended=len(rows), output=output,
                                empty_output=empty, kernel_contributions=(gradient * pooled).cpu().numpy(),
                                evidence_output=evidence_output)

    contribution_values = contributions.cpu().numpy()
    # (rows are in attention order: ties, negligible contributions among them, go by attention)
    keep = np.lexsort((np.arange(len(rows)), -ranking_contribution(contribution_values)))[:top_sequences]
    weighted_sum = (exp_logits[:, None] * embeddings).sum(dim=0)  # (D,)
    selected = table[rows[keep].tolist()]
    candidates = []
    for position, record in zip(keep.tolist(), selected.iter_rows(named=True)):
        own = exp_logits[position]
        candidates.append(Candidate(
            sample_index=sample_index, row=int(rows[position]), junction=record["junction_aa"],
            v_call=record.get("v_call") or "", j_call=record.get("j_call") or "",
            count=int(record.get("duplicate_count") or 1), attention=float(weights[position]),
            attention_rank=position + 1, logit=float(logits[position]),
            contribution=float(contribution_values[position]), shift=float(shift),
            rest_total=float(total - own), rest_weighted=weighted_sum - own * embeddings[position],
            log_size=log_size,
        ))
    return summary, candidates


def keep_best(pool: list[Candidate], new: list[Candidate], size: int) -> list[Candidate]:
    return sorted(pool + new, key=Candidate.sort_key)[:size]


# ----------------------------------------------------------------------------------------------
# pass 2: integrated gradients
# ----------------------------------------------------------------------------------------------
def _path_outputs(model64: DeepRC, activations: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor,
                  shift: torch.Tensor, rest_total: torch.Tensor, rest_weighted: torch.Tensor, log_size: torch.Tensor,
                  explained: ExplainedOutput) -> torch.Tensor:
    """The explained output from one sequence's input-layer activations (rows, C, T), the rest of its
    repertoire fixed (shift, rest_total, rest_weighted, log_size and counts given per row). -> (rows,)"""
    embeddings = model64.embedding.activate(activations, lengths)  # (rows, D)
    own = torch.exp(model64.attention_logits(embeddings, counts) - shift)  # (rows,)
    pooled = (rest_weighted + own[:, None] * embeddings) / (rest_total + own)[:, None]  # (rows, D)
    evidence = shift + torch.log(rest_total + own) - log_size  # (rows,) log mean exp of the logits
    return explained.pick(model64.read_out(pooled, evidence))  # (rows,)


def _ig_batch(model64: DeepRC, candidates: list[Candidate], explained: ExplainedOutput, steps: int,
              device: torch.device) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-residue attributions (one array per sequence) and y(x) - y(baseline) for a batch.

    The embedding's input layer is linear in its input, so on the path a * one-hot its
    activations are a * A + P (A: the amino acids' part, P: bias and position features): one
    input layer per sequence instead of one per step. Likewise the mean gradient with respect to
    the input is the input layer's transpose applied to the mean gradient with respect to the
    activations (for the convolution, the transposed convolution).
    """
    n = len(candidates)
    embedding = model64.embedding
    lengths = torch.tensor([len(c.junction) for c in candidates], device=device)
    width = embedding.input_width(int(lengths.max()))
    padded = np.full((n, width), PAD_CODE, dtype=np.int64)
    for i, candidate in enumerate(candidates):
        padded[i, :len(candidate.junction)] = encode(candidate.junction)
    residue_input = one_hot(torch.from_numpy(padded).to(device), width).double()  # (n, 20, W)
    with torch.no_grad():
        residues = embedding.residue_activations(residue_input)  # (n, C, T)
        fixed = embedding.fixed_activations(lengths, width)  # (n, C, T)
    counts = torch.tensor([float(c.count) for c in candidates], dtype=torch.float64, device=device)
    shift = torch.tensor([c.shift for c in candidates], dtype=torch.float64, device=device)
    rest_total = torch.tensor([c.rest_total for c in candidates], dtype=torch.float64, device=device)
    rest_weighted = torch.stack([c.rest_weighted for c in candidates])  # (n, D)
    log_size = torch.tensor([c.log_size for c in candidates], dtype=torch.float64, device=device)
    context = (counts, shift, rest_total, rest_weighted, log_size)

    nodes, weights = gauss_legendre(steps, device)
    # Rows are (sequence, step) pairs: every sequence's whole path in one forward/backward.
    with torch.enable_grad():
        activations = (nodes[None, :, None, None] * residues[:, None] + fixed[:, None])  # (n, steps, D, T)
        activations = activations.reshape(n * steps, *residues.shape[1:]).requires_grad_(True)
        outputs = _path_outputs(model64, activations, lengths.repeat_interleave(steps),
                                *[t.repeat_interleave(steps, dim=0) for t in context], explained=explained)
        (grad,) = torch.autograd.grad(outputs.sum(), activations)  # (n * steps, D, T)
    mean_grad = (grad.view(n, steps, *residues.shape[1:]) * weights[None, :, None, None]).sum(dim=1)  # (n, D, T)
    with torch.no_grad():
        input_grad = embedding.residue_gradient(mean_grad)  # (n, 20, W)
        per_residue = (input_grad * residue_input).sum(dim=1)  # (n, W): (x - baseline) * mean gradient, per position
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


def integrated_gradients(model64: DeepRC, candidates: list[Candidate], explained: ExplainedOutput, steps: int,
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


def attribute(networks: list[tuple[DeepRC, DeepRC]], pool: list[Candidate], explained: ExplainedOutput,
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


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
def rank_kernels(model: DeepRC, summaries: list[RepertoireSummary], n: int) -> list[KernelSummary]:
    """The kernels with the largest mean contribution g_d * z_d (toward the explained output); none
    when the model's embedding has no convolution kernels (`kernel_notice` says so).

    Weights are centred per position: with one-hot input, adding a constant to all 20 weights of a
    position only adds a constant to every window, so only the differences carry meaning.
    """
    if kernel_notice(model) is not None:
        return []
    mean = np.mean([s.kernel_contributions for s in summaries], axis=0)  # (D,)
    order = np.lexsort((np.arange(len(mean)), -mean))[:n]
    kernel_weights = model.embedding.input_kernel().detach()  # (D, 23, K)
    weights = kernel_weights[:, :N_AMINO_ACIDS, :].double().cpu().numpy()  # (D, 20, K)
    positions = kernel_weights[:, N_AMINO_ACIDS:, :].double().cpu().numpy()  # (D, 3, K)
    kernels = []
    for rank, kernel in enumerate(order.tolist(), start=1):
        matrix = weights[kernel].T  # (K, 20)
        kernels.append(KernelSummary(rank=rank, kernel=kernel, contribution=float(mean[kernel]),
                                     weights=matrix - matrix.mean(axis=1, keepdims=True),
                                     position_weights=positions[kernel].T))
    return kernels


def kernel_notice(model: DeepRC) -> str | None:
    """Why there are no kernels to rank and draw (motifs.json's "kernels_note"); None when there are."""
    if model.embedding.kernel_logos:
        return None
    return (f"no kernel ranking or kernel logos: the model's {model.embedding.name} embedding has no convolution "
            "kernels; the residue attributions (integrated gradients) and the motifs explain it")
