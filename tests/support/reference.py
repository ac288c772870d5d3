"""Plain reference implementations of DeepRC's sequence embeddings h, for tests and benchmarks.

Convolution: dense one-hot input (20 amino-acid channels + 3 position features),
`torch.nn.functional.conv1d`, maximum over the valid windows, SELU: the textbook formulation.
LSTM: `torch.nn.LSTM` run on one sequence at a time, unpadded and unpacked, its output at the last
residue. `DeepRC.embed` must equal them within floating-point error, outputs and gradients both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repclass.model.embedding import one_hot, position_features
from repclass.model.deeprc import DeepRC


def one_hot_input(codes: torch.Tensor, lengths: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(n, 23, max(L, K)) float input: one-hot amino acids (padding all-zero) + position features."""
    width = max(int(lengths.max()), kernel_size, codes.shape[1])
    return torch.cat([one_hot(codes, width), position_features(lengths, width)], dim=1)


def reference_embed(model: DeepRC, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """h by dense convolution, or by the LSTM one sequence at a time: (n, d)."""
    if model.config.embedding == "lstm":
        return reference_lstm_embed(model, codes, lengths)
    k = model.config.kernel_size
    inputs = one_hot_input(codes, lengths, k)
    activations = F.conv1d(inputs, model.conv_weight, model.conv_bias)  # (n, D, T)
    n_windows = activations.shape[-1]
    valid = torch.arange(n_windows)[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]  # (n, T)
    activations = activations.masked_fill(~valid[:, None, :], -torch.inf)
    return F.selu(activations.amax(dim=-1))


def reference_lstm_embed(model: DeepRC, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The LSTM embedding, one sequence at a time with no padding or packing: (n, hidden)."""
    lstm = model.embedding.lstm
    rows = []
    for i, length in enumerate(lengths.tolist()):
        inputs = one_hot_input(codes[i:i + 1, :length], lengths[i:i + 1], 1)  # (1, 23, L)
        output, _ = lstm(inputs.transpose(1, 2).to(lstm.weight_ih_l0.dtype))  # (1, L, H)
        rows.append(output[0, -1])
    return torch.stack(rows)


def reference_forward(model: DeepRC, codes: torch.Tensor, lengths: torch.Tensor, bag_index: torch.Tensor,
                      n_bags: int, counts: torch.Tensor | None = None,
                      bag_sizes: torch.Tensor | None = None) -> torch.Tensor:
    """The whole model with the reference embedding and an explicit loop over repertoires."""
    embeddings = reference_embed(model, codes, lengths)
    logits = model.attention_logits(embeddings, counts)
    pooled, evidence = [], []
    # the count read-out's evidence passes its gradient on to the logits only with evidence_gradient
    evidence_logits = logits if model.config.evidence_gradient else logits.detach()
    for bag in range(n_bags):
        members = bag_index == bag
        weights = torch.softmax(logits[members], dim=0)
        pooled.append((embeddings[members] * weights[:, None]).sum(0))
        size = int(members.sum()) if bag_sizes is None else int(bag_sizes[bag])
        evidence.append(torch.log(torch.exp(evidence_logits[members].double()).sum() / size))  # log mean exp, textbook
    return model.read_out(torch.stack(pooled), torch.stack(evidence).to(logits.dtype))
