"""Scoring whole repertoires in bounded memory; shared by evaluation during training and predict.

A repertoire is never subsampled and its one-hot tensor is never built: sequences are sorted by
length and embedded block by block; only the attention logits and embeddings of the current
top-k candidates are kept between blocks. The result equals running the model on the
repertoire's top `reduction_fraction` sequences with `bag_sizes` its number of sequences, as in
training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from repclass.config import CHUNK_SIZE
from repclass.model.data import EncodedRepertoire
from repclass.model.deeprc import DeepRC
from repclass.compute.runtime import autocast

#: Sequences scored per block.
BLOCK_SIZE = 65_536
#: Sequences per slice of the attention network's pass (fixed: results must not depend on chunk_size).
ATTENTION_ROWS = 8_192
#: Embeddings of a whole repertoire are kept up to this many bytes (256 MB: 2M sequences);
#: larger repertoires embed their top-k a second time instead.
KEEP_BYTES = 256 << 20


@dataclass
class RepertoireScore:
    outputs: np.ndarray  # (n_outputs,) raw model outputs (logits / standardised values)
    rows: np.ndarray  # rows of the repertoire in the attention softmax, by descending weight
    weights: np.ndarray  # their attention weights (sum to 1)
    logits: np.ndarray  # their attention logits
    n_sequences: int
    #: the count read-out's E (log mean exp of the attention logits over all n sequences, those
    #: outside the top-k as exp = 0); None for a model without it
    evidence: float | None = None
    #: the enrichment path's input (ModelConfig.enrichment: the standardised enriched share) and its
    #: part of `outputs` (n_outputs,); the rest of `outputs` came through the attention; None without it
    composition: float | None = None
    composition_outputs: np.ndarray | None = None


@torch.no_grad()
def score_repertoire(model: DeepRC, repertoire: EncodedRepertoire, device: torch.device,
                     chunk_size: int = CHUNK_SIZE, block_size: int = BLOCK_SIZE) -> RepertoireScore:
    """Score one whole repertoire: two passes over length-sorted sequences.

    Pass 1 computes every sequence's attention logit block by block. Pass 2 pools the top
    `reduction_fraction`: their embeddings are kept from pass 1 for repertoires up to KEEP_BYTES
    of embeddings, and computed again for larger ones (10% more work, memory bounded by the block).
    """
    n = len(repertoire)
    if n == 0:
        raise ValueError("cannot score an empty repertoire")
    keep = max(1, math.ceil(n * model.config.reduction_fraction))
    # Radix sort: lengths fit in 16 bits, and numpy's stable sort of small integers is O(n).
    order = np.argsort(repertoire.lengths.astype(np.uint16), kind="stable")
    codes = torch.from_numpy(repertoire.codes[order])  # (n, max_length) uint8, by length
    lengths = torch.from_numpy(repertoire.lengths[order].astype(np.int64))
    counts = torch.from_numpy(repertoire.counts[order].astype(np.float32)) if model.config.use_counts else None

    def block(rows: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return (codes[rows].to(device, non_blocking=True), lengths[rows].to(device, non_blocking=True),
                counts[rows].to(device, non_blocking=True) if counts is not None else None)

    logits = torch.empty(n, device=device)
    # Keep every embedding when that is cheap in memory; otherwise embed the top-k a second time.
    d = model.embedding.out_features
    kept = torch.empty(n, d, device=device) if n * d * 4 <= KEEP_BYTES else None
    with autocast(device):
        for start in range(0, n, block_size):
            block_codes, block_lengths, block_counts = block(slice(start, start + block_size))
            embeddings = model.embed(block_codes, block_lengths, chunk_size, presorted=True)  # (b, D)
            if kept is not None:
                kept[start:start + block_size] = embeddings
            # The attention network in slices of a fixed size (its SELUs make several passes each):
            # the same rows in every run whatever `chunk_size` is, so results never depend on it.
            for offset in range(0, embeddings.shape[0], ATTENTION_ROWS):
                rows = slice(offset, offset + ATTENTION_ROWS)
                slice_counts = block_counts[rows] if block_counts is not None else None
                logits[start + offset:start + offset + embeddings[rows].shape[0]] = model.attention_logits(
                    embeddings[rows], slice_counts).float()
        # Positions (in length order) of the top-k, kept in length order for the second pass.
        top = torch.sort(torch.topk(logits, keep, sorted=False).indices).values  # (k,)
        top_cpu = top.cpu()
        if kept is not None:
            embeddings = kept[top]  # (k, D)
        else:
            top_codes, top_lengths, _ = block(top_cpu)
            embeddings = torch.cat([model.embed(top_codes[i:i + block_size], top_lengths[i:i + block_size],
                                                chunk_size, presorted=True)
                                    for i in range(0, keep, block_size)]).float()  # (k, D)
        top_logits = logits[top]
        weights = torch.softmax(top_logits, dim=0)  # (k,)
        pooled = (embeddings * weights[:, None]).sum(dim=0, keepdim=True)  # (1, D)
        # The log mean exp over all n sequences, those outside the top-k counting as exp = 0 (as in training).
        evidence = (torch.logsumexp(top_logits, dim=0) - math.log(n))[None] if model.config.count_readout else None
        composition = (torch.tensor([model.composition(repertoire)], device=device)
                       if model.config.enrichment else None)
        outputs = model.read_out(pooled, evidence, composition).float()[0]  # (n_outputs,)
    by_weight = torch.argsort(weights, descending=True, stable=True).cpu()
    rows = order[top_cpu.numpy()][by_weight.numpy()]
    return RepertoireScore(outputs=outputs.cpu().numpy(), rows=rows, weights=weights.cpu().numpy()[by_weight.numpy()],
                           logits=top_logits.cpu().numpy()[by_weight.numpy()], n_sequences=n,
                           evidence=float(evidence[0]) if evidence is not None else None,
                           composition=float(composition[0]) if composition is not None else None,
                           composition_outputs=(model.composition_part(composition).float()[0].cpu().numpy()
                                                if composition is not None else None))
