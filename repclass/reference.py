"""A plain reference implementation of DeepRC's sequence embedding h, for tests and benchmarks.

Dense one-hot input (20 amino-acid channels + 3 position features), `torch.nn.functional.conv1d`,
maximum over the valid windows, SELU: the textbook formulation. `DeepRC.embed` must equal it
within floating-point error, outputs and gradients both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .alphabet import N_AMINO_ACIDS
from .model import DeepRC, position_features


def one_hot_input(codes: torch.Tensor, lengths: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(n, 23, max(L, K)) float input: one-hot amino acids (padding all-zero) + position features."""
    n, width = codes.shape
    width = max(int(lengths.max()), kernel_size, width)
    padded = F.pad(codes.long(), (0, width - codes.shape[1]), value=N_AMINO_ACIDS)
    one_hot = F.one_hot(padded, N_AMINO_ACIDS + 1).to(torch.float32)[:, :, :N_AMINO_ACIDS]  # (n, width, 20)
    return torch.cat([one_hot.transpose(1, 2), position_features(lengths, width)], dim=1)


def reference_embed(model: DeepRC, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """h by dense convolution: (n, n_kernels)."""
    k = model.config.kernel_size
    inputs = one_hot_input(codes, lengths, k)
    activations = F.conv1d(inputs, model.conv_weight, model.conv_bias)  # (n, D, T)
    n_windows = activations.shape[-1]
    valid = torch.arange(n_windows)[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]  # (n, T)
    activations = activations.masked_fill(~valid[:, None, :], -torch.inf)
    return F.selu(activations.amax(dim=-1))


def reference_forward(model: DeepRC, codes: torch.Tensor, lengths: torch.Tensor, bag_index: torch.Tensor,
                      n_bags: int, counts: torch.Tensor | None = None) -> torch.Tensor:
    """The whole model with the dense embedding and an explicit loop over repertoires."""
    embeddings = reference_embed(model, codes, lengths)
    logits = model.attention_logits(embeddings, counts)
    pooled = []
    for bag in range(n_bags):
        members = bag_index == bag
        weights = torch.softmax(logits[members], dim=0)
        pooled.append((embeddings[members] * weights[:, None]).sum(0))
    return model.output(torch.stack(pooled))
