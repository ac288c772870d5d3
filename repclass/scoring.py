"""Scoring whole repertoires in bounded memory; shared by evaluation during training and predict.

A repertoire is never subsampled and its one-hot tensor is never built: sequences are sorted by
length and embedded block by block; only the attention logits and embeddings of the current
top-k candidates are kept between blocks. The result equals running the model on the
repertoire's top `reduction_fraction` sequences, as in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .data import EncodedRepertoire
from .model import DeepRC
from .runtime import autocast

#: Sequences scored per block (embeddings of a block are kept until its candidates are merged).
BLOCK_SIZE = 65_536


@dataclass
class RepertoireScore:
    outputs: np.ndarray  # (n_outputs,) raw model outputs (logits / standardised values)
    rows: np.ndarray  # rows of the repertoire in the attention softmax, by descending weight
    weights: np.ndarray  # their attention weights (sum to 1)
    logits: np.ndarray  # their attention logits
    n_sequences: int


@torch.no_grad()
def score_repertoire(model: DeepRC, repertoire: EncodedRepertoire, device: torch.device,
                     chunk_size: int = 8192, block_size: int = BLOCK_SIZE) -> RepertoireScore:
    n = len(repertoire)
    if n == 0:
        raise ValueError("cannot score an empty repertoire")
    keep = max(1, math.ceil(n * model.config.reduction_fraction))
    # Radix sort: lengths fit in 16 bits, and numpy's stable sort of small integers is O(n).
    order = np.argsort(repertoire.lengths.astype(np.uint16), kind="stable")
    codes = torch.from_numpy(repertoire.codes)
    lengths = torch.from_numpy(repertoire.lengths.astype(np.int64))
    counts = torch.from_numpy(repertoire.counts.astype(np.float32)) if model.config.use_counts else None
    order_t = torch.from_numpy(order)

    pool_logits = torch.empty(0, device=device)
    pool_embeddings = torch.empty(0, model.config.n_kernels, device=device)
    pool_rows = torch.empty(0, dtype=torch.long, device=device)
    with autocast(device):
        for start in range(0, n, block_size):
            rows = order_t[start:start + block_size]
            block_codes = codes[rows].to(device, non_blocking=True)
            block_lengths = lengths[rows].to(device, non_blocking=True)
            block_counts = counts[rows].to(device, non_blocking=True) if counts is not None else None
            embeddings = model.embed(block_codes, block_lengths, chunk_size, presorted=True)  # (b, D)
            logits = model.attention_logits(embeddings, block_counts).float()  # (b,)
            pool_logits = torch.cat([pool_logits, logits])
            pool_embeddings = torch.cat([pool_embeddings, embeddings.float()])
            pool_rows = torch.cat([pool_rows, rows.to(device)])
            if pool_logits.shape[0] > 2 * keep:
                best = torch.topk(pool_logits, keep, sorted=False).indices
                pool_logits, pool_embeddings, pool_rows = pool_logits[best], pool_embeddings[best], pool_rows[best]
        best = torch.topk(pool_logits, min(keep, pool_logits.shape[0]), sorted=True).indices
        logits, embeddings, rows = pool_logits[best], pool_embeddings[best], pool_rows[best]
        weights = torch.softmax(logits, dim=0)  # (k,)
        pooled = (embeddings * weights[:, None]).sum(dim=0, keepdim=True)  # (1, D)
        outputs = model.output(pooled).float()[0]  # (n_outputs,)
    return RepertoireScore(outputs=outputs.cpu().numpy(), rows=rows.cpu().numpy(), weights=weights.cpu().numpy(),
                           logits=logits.cpu().numpy(), n_sequences=n)
