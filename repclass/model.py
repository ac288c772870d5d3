"""DeepRC: sequence embedding h, attention f, output o (Widrich et al., NeurIPS 2020).

The model takes integer-coded sequences (see `alphabet.py`) and never moves its inputs between
devices; callers do that.

Fast path for h. The convolution's input is one-hot, so window t of a sequence of length L gives

    h_t = bias + sum_j W_aa[:, code[t + j], j] + sum_j W_pos[:, :, j] . pos(L)[t + j]

i.e. K looked-up weight columns plus a position term that depends only on (L, t). The K
look-ups and the position term are one `embedding_bag` sum over K + 1 rows; the maximum over
windows follows, then SELU (monotonic, so max-then-SELU equals SELU-then-max). Sequences are
sorted by length and cut into chunks, so a chunk carries almost no padding. The gradient of the
maximum only reaches the arg-max window of each kernel, so the backward pass is a scatter-add of
n x kernels x K entries instead of `embedding_bag`'s dense backward (`_WindowMax`).

A sequence shorter than the kernel is padded with zero input to the kernel's width, so every
sequence has at least one window; the result never depends on how a batch is padded.
`repclass.reference` holds a plain dense-convolution implementation of the same function, against
which tests check this one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .alphabet import N_AMINO_ACIDS, PAD_CODE
from .config import ModelConfig

N_POSITION_FEATURES = 3
N_INPUT_FEATURES = N_AMINO_ACIDS + N_POSITION_FEATURES
#: Added to the windows past a sequence's end, so that the maximum never picks them.
_MASKED = -1.0e6
#: Standard deviation of the convolution's amino-acid weights at initialisation.
CONV_INIT_STD = 0.02


def position_features(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """DeepRC's 3 position features for sequences of `lengths`, padded to `width` positions.

    Feature 0 ramps from 1 at the first residue down to the centre, feature 1 from the centre up
    to 1 at the last residue, feature 2 peaks at 1 in the centre; positions past the end are 0.
    Returns (n, 3, width).
    """
    position = torch.arange(width, device=lengths.device, dtype=torch.float32)[None, :]  # (1, width)
    length = lengths.to(torch.float32)[:, None]  # (n, 1)
    span = (length - 1).clamp(min=1)
    distance = torch.where(length > 1, (position / span - 0.5).abs() * 2, torch.ones_like(position))
    inside = position < length
    first_half = position < torch.ceil(length / 2)
    zero = torch.zeros((), device=lengths.device)
    return torch.stack([
        torch.where(inside & first_half, distance, zero),
        torch.where(inside & ~first_half, distance, zero),
        torch.where(inside, 1 - distance, zero),
    ], dim=1)


class _WindowMax(torch.autograd.Function):
    """max over windows of embedding_bag(window_indices, table), with a sparse backward."""

    @staticmethod
    def forward(ctx, indices: torch.Tensor, table: torch.Tensor, n_windows: int) -> torch.Tensor:
        n = indices.shape[0] // n_windows
        sums = F.embedding_bag(indices, table, mode="sum").view(n, n_windows, -1)  # (n, T, D)
        best, arg = sums.max(dim=1)  # (n, D) each
        ctx.save_for_backward(indices, arg)
        ctx.table_shape = table.shape
        ctx.n_windows = n_windows
        return best

    @staticmethod
    def backward(ctx, grad_best: torch.Tensor):
        indices, arg = ctx.saved_tensors
        n_rows, width = ctx.table_shape
        n, n_kernels = arg.shape
        # Rows of the table used by the winning window of each (sequence, kernel): (n, D, K + 1).
        winner = (torch.arange(n, device=arg.device)[:, None] * ctx.n_windows + arg).reshape(-1)
        rows = indices.index_select(0, winner).view(n, n_kernels, -1)  # int32: the table is small
        kernel = torch.arange(n_kernels, device=arg.device, dtype=rows.dtype)[None, :, None]
        flat = (rows * width + kernel).reshape(-1)
        values = grad_best[:, :, None].expand_as(rows).reshape(-1)
        grad_table = torch.zeros(n_rows * width, device=grad_best.device, dtype=grad_best.dtype)
        grad_table.index_add_(0, flat, values)
        return None, grad_table.view(n_rows, width), None


class DeepRC(nn.Module):
    """DeepRC built from a ModelConfig.

    forward(codes, lengths, bag_index, n_bags, counts=None) -> (n_bags, n_outputs)
      codes      (n, L) uint8/int64 amino-acid codes, padded with PAD_CODE
      lengths    (n,) int64 sequence lengths
      bag_index  (n,) int64 repertoire of each sequence, in [0, n_bags)
      counts     (n,) clone counts (used when config.use_counts)
    Every sequence passed is attended over; the top-k reduction is `select_top`'s job.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k, d = config.kernel_size, config.n_kernels
        # h: one 1D convolution over 20 one-hot + 3 position channels, stored as Conv1d stores it.
        self.conv_weight = nn.Parameter(torch.empty(d, N_INPUT_FEATURES, k))
        self.conv_bias = nn.Parameter(torch.zeros(d))
        # f: attention network, one logit per sequence.
        layers: list[nn.Module] = []
        width = d
        for _ in range(config.attention_layers):
            layers += [nn.Linear(width, config.attention_units), nn.SELU(inplace=True)]
            width = config.attention_units
        layers.append(nn.Linear(width, 1))
        self.attention = nn.Sequential(*layers)
        # o: output network.
        layers = []
        width = d
        for _ in range(config.output_layers):
            layers += [nn.Linear(width, config.output_units), nn.SELU()]
            width = config.output_units
        layers.append(nn.Linear(width, config.n_outputs))
        self.output = nn.Sequential(*layers)
        if config.use_counts:
            self.count_scale = nn.Parameter(torch.ones(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The original divides its input by the batch's standard deviation, which makes a
        # sequence's score depend on the other sequences of its batch; repclass feeds the plain
        # one-hot input and puts the scale in the initialisation instead. The convolution starts
        # small (std 0.02 per weight, about the original's effective scale): random kernels then
        # barely respond to the background, and the few that start to match a motif outgrow it
        # within a few hundred updates. A unit-variance start (std 1/sqrt(K)) buries rare motifs
        # under strong random responses and, on small cohorts, lets the model memorise
        # repertoires first (docs/method.md has the measurements). Linear layers: LeCun normal.
        with torch.no_grad():
            self.conv_weight[:, :N_AMINO_ACIDS].normal_(0.0, CONV_INIT_STD)
            self.conv_weight[:, N_AMINO_ACIDS:].normal_(0.0, CONV_INIT_STD / math.sqrt(N_POSITION_FEATURES))
            self.conv_bias.zero_()
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features))
                    module.bias.zero_()

    # ---- h: sequence embedding -------------------------------------------------------------
    def _tables(self, max_length: int) -> tuple[torch.Tensor, int]:
        """Look-up rows for sequences up to `max_length`: K x 21 amino-acid rows (the padding code's
        rows are 0), then one row per (length, window) holding bias + position term, or the mask
        for windows past the end. Returns the table and its number of windows per length."""
        k, d = self.config.kernel_size, self.config.n_kernels
        width = max(max_length, k)
        n_windows = width - k + 1
        aa = self.conv_weight[:, :N_AMINO_ACIDS, :].permute(2, 1, 0)  # (K, 20, D)
        aa = torch.cat([aa, aa.new_zeros(k, 1, d)], dim=1).reshape(k * (N_AMINO_ACIDS + 1), d)  # (K*21, D)
        lengths = torch.arange(max_length + 1, device=aa.device)
        features = position_features(lengths, width)  # (L+1, 3, width)
        # fp32 even under autocast: these rows are added to fp32 look-ups, and cost next to nothing.
        with torch.autocast(device_type=aa.device.type, enabled=False):
            position = F.conv1d(features, self.conv_weight[:, N_AMINO_ACIDS:, :], self.conv_bias)  # (L+1, D, T)
        valid = torch.arange(n_windows, device=aa.device)[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]
        position = position.transpose(1, 2).masked_fill(~valid[:, :, None], _MASKED)  # (L+1, T, D)
        return torch.cat([aa, position.reshape(-1, d)], dim=0), n_windows

    def _window_indices(self, codes: torch.Tensor, lengths: torch.Tensor, table_windows: int,
                        out: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Rows of `_tables` summed by each window: (n * T, K + 1) int32, T this chunk's windows."""
        k = self.config.kernel_size
        n = codes.shape[0]
        n_windows = max(int(lengths[-1]), k) - k + 1  # lengths are sorted
        width = n_windows + k - 1
        codes = codes[:, :width].to(torch.int32)  # int32 + int32 below: no type promotion per element
        if codes.shape[1] < width:
            codes = F.pad(codes, (0, width - codes.shape[1]), value=PAD_CODE)
        size = n * n_windows * (k + 1)
        if out is None or out.numel() < size:
            out = torch.empty(size, dtype=torch.int32, device=codes.device)
        indices = out[:size].view(n, n_windows, k + 1)
        offsets = torch.arange(0, k * (N_AMINO_ACIDS + 1), N_AMINO_ACIDS + 1, device=codes.device,
                               dtype=torch.int32)
        torch.add(codes.unfold(1, k, 1), offsets, out=indices[:, :, :k])  # (n, T, K)
        window = torch.arange(n_windows, device=codes.device, dtype=torch.int32)
        torch.add((k * (N_AMINO_ACIDS + 1) + lengths * table_windows).to(torch.int32)[:, None], window,
                  out=indices[:, :, k])
        return indices.view(-1, k + 1), n_windows

    def embed(self, codes: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 8192,
              presorted: bool = False) -> torch.Tensor:
        """h: (n, L) codes -> (n, n_kernels) embeddings, in length-sorted chunks.

        `presorted=True` promises that `lengths` is non-decreasing (batches from `data.make_batch`
        are), which saves sorting and un-sorting.
        """
        n = codes.shape[0]
        d = self.config.n_kernels
        if n == 0:
            return self.conv_bias.new_zeros((0, d))
        lengths = lengths.long()  # index arithmetic below needs int64 (caches keep uint16)
        if presorted:
            sorted_lengths, sorted_codes, order = lengths, codes, None
        else:
            sorted_lengths, order = torch.sort(lengths, stable=True)
            sorted_codes = codes[order]
        table, table_windows = self._tables(int(sorted_lengths[-1]))
        if torch.is_grad_enabled() and table.requires_grad:
            pieces = []
            for start in range(0, n, chunk_size):
                chunk_lengths = sorted_lengths[start:start + chunk_size]
                indices, n_windows = self._window_indices(sorted_codes[start:start + chunk_size], chunk_lengths,
                                                          table_windows)
                pieces.append(_WindowMax.apply(indices, table, n_windows))
            best = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
            if order is not None:
                inverse = torch.empty_like(order)
                inverse[order] = torch.arange(n, device=order.device)
                best = best[inverse]
            return F.selu(best)
        best = table.new_empty((n, d))
        # One index buffer for all chunks: the last (longest) chunk needs at most this much.
        buffer = torch.empty(min(n, chunk_size) * table_windows * (self.config.kernel_size + 1), dtype=torch.int32,
                             device=codes.device)
        for start in range(0, n, chunk_size):
            chunk_lengths = sorted_lengths[start:start + chunk_size]
            indices, n_windows = self._window_indices(sorted_codes[start:start + chunk_size], chunk_lengths,
                                                      table_windows, buffer)
            sums = F.embedding_bag(indices, table, mode="sum").view(-1, n_windows, d)  # (n_chunk, T, D)
            if order is None:
                torch.amax(sums, dim=1, out=best[start:start + chunk_size])
            else:
                best.index_copy_(0, order[start:start + chunk_size], sums.amax(dim=1))
        return F.selu(best, inplace=True)

    # ---- f: attention ----------------------------------------------------------------------
    def attention_logits(self, embeddings: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """f: (n, D) -> (n,) attention logits (before the softmax over a repertoire)."""
        logits = self.attention(embeddings).squeeze(-1)
        if self.config.use_counts:
            if counts is None:
                raise ValueError("this model uses clone counts; pass counts")
            logits = logits + self.count_scale * torch.log(counts.to(logits.dtype).clamp(min=1))
        return logits

    # ---- pooling and o ---------------------------------------------------------------------
    @staticmethod
    def attention_weights(logits: torch.Tensor, bag_index: torch.Tensor, n_bags: int) -> torch.Tensor:
        """Softmax of the logits within each repertoire, for bags of any sizes (no loop): (n,)."""
        top = logits.new_full((n_bags,), -torch.inf).scatter_reduce(0, bag_index, logits.detach(), "amax")
        exp = torch.exp(logits - top[bag_index])
        total = exp.new_zeros(n_bags).index_add(0, bag_index, exp)
        return exp / total[bag_index]

    def pool(self, embeddings: torch.Tensor, weights: torch.Tensor, bag_index: torch.Tensor,
             n_bags: int) -> torch.Tensor:
        """Attention-weighted mean of the embeddings per repertoire: (n_bags, D)."""
        return embeddings.new_zeros(n_bags, embeddings.shape[1]).index_add(0, bag_index,
                                                                           embeddings * weights[:, None])

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, bag_index: torch.Tensor, n_bags: int,
                counts: torch.Tensor | None = None, chunk_size: int = 8192, presorted: bool = False) -> torch.Tensor:
        embeddings = self.embed(codes, lengths, chunk_size, presorted)  # (n, D)
        logits = self.attention_logits(embeddings, counts).float()  # (n,) fp32 softmax under autocast too
        weights = self.attention_weights(logits, bag_index, n_bags)  # (n,)
        return self.output(self.pool(embeddings, weights, bag_index, n_bags))  # (n_bags, n_outputs)


def top_k_per_bag(logits: torch.Tensor, bag_index: torch.Tensor, n_bags: int, fraction: float) -> torch.Tensor:
    """Sorted indices of each repertoire's top `fraction` of sequences by logit (at least one).

    One `topk` per repertoire: a batch holds a handful of repertoires, and this is far cheaper
    than sorting all sequences by (repertoire, logit).
    """
    if n_bags == 1:
        k = max(1, math.ceil(logits.shape[0] * fraction))
        return torch.sort(torch.topk(logits, k, sorted=False).indices).values
    selected = []
    for bag in range(n_bags):
        members = torch.nonzero(bag_index == bag).squeeze(1)
        k = max(1, math.ceil(members.shape[0] * fraction))
        selected.append(members[torch.topk(logits[members], k, sorted=False).indices])
    return torch.sort(torch.cat(selected)).values
