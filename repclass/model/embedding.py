"""h, DeepRC's sequence embedding: what turns one encoded sequence into a vector, as a part.

Every embedding reads the same input, 20 one-hot amino-acid channels and DeepRC's 3 position
features per position (`N_INPUT_FEATURES`), and has the same outer form

    h(x) = activate(A x_aa + P(lengths), lengths)

an affine *input layer* (a kernel over the 23 channels, `input_kernel()`, and a bias,
`input_bias()`: A is its amino-acid part, P its position part plus the bias), followed by a
nonlinear map of the input layer's activations. The attention and output networks only see
`forward`'s (n, out_features); interpretation (`repclass.explain.attribution`) uses the form:
on the integrated-gradients path a * x_aa the activations are a * A x_aa + P, so the input layer
runs once per sequence, and the gradient with respect to the residues is the input layer's
transpose applied to the gradient with respect to the activations (`residue_gradient`).

Implementations, chosen by `ModelConfig.embedding`:
  "cnn"  `ConvolutionEmbedding`: the paper's 1D convolution, maximum over positions, SELU.
  "lstm" `LSTMEmbedding`: the original DeepRC's LSTM option: an LSTM over the input, the hidden
         state at each sequence's last residue.
"""
from __future__ import annotations

import math
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from repclass.model.activation import selu_
from repclass.alphabet import N_AMINO_ACIDS, PAD_CODE
from repclass.compute import compiling, native
from repclass.config import CHUNK_SIZE, ModelConfig

N_POSITION_FEATURES = 3
N_INPUT_FEATURES = N_AMINO_ACIDS + N_POSITION_FEATURES
#: Added to the windows past a sequence's end, so that the maximum never picks them.
_MASKED = -1.0e6
#: Standard deviation of the convolution's amino-acid weights at initialisation.
CONV_INIT_STD = 0.02
#: Inductor settings of the compiled window kernels: no bounds check per look-up (the window
#: indices lie in the table by construction, `_window_indices`); the checks cost 15% of the kernel.
_WINDOW_KERNEL_OPTIONS = {"assert_indirect_indexing": False}


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


def one_hot(codes: torch.Tensor, width: int) -> torch.Tensor:
    """(n, 20, width) float32 one-hot amino acids of (n, L) codes; PAD_CODE and positions past L are 0."""
    codes = codes[:, :width].long()
    if codes.shape[1] < width:
        codes = F.pad(codes, (0, width - codes.shape[1]), value=PAD_CODE)
    return F.one_hot(codes, N_AMINO_ACIDS + 1)[:, :, :N_AMINO_ACIDS].transpose(1, 2).to(torch.float32)


def _unsort(values: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Rows computed in `order` back to the caller's order."""
    if order is None:
        return values
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return values[inverse]


class SequenceEmbedding(nn.Module):
    """h: encoded sequences -> one vector each. The interface every embedding implements.

    forward(codes, lengths, chunk_size, presorted) -> (n, out_features)
      codes      (n, L) uint8/int64 amino-acid codes, padded with PAD_CODE
      lengths    (n,) sequence lengths (at least 1)
      chunk_size sequences per chunk: bounds memory, never changes a result
      presorted  `lengths` is non-decreasing (batches from `data.make_batch` are)
    The result of a sequence never depends on the other sequences or the padding of its batch.
    `dense` computes the same function from the outer form (module docstring), plainly.
    """

    #: The name ModelConfig.embedding gives it.
    name: ClassVar[str]
    #: Training may start some of its kernels as k-mer detectors (`seeding.seed_kernels` on
    #: `conv_weight`/`conv_bias`): a convolution whose kernels are motif detectors.
    seedable: ClassVar[bool] = False
    #: Its input kernels are convolution kernels that `repclass motifs` ranks and draws as logos.
    kernel_logos: ClassVar[bool] = False
    #: Its tensors sit at the top of DeepRC's state dict, without the "embedding." prefix: the
    #: names of model files written before the embedding was a part (conv_weight, conv_bias).
    top_level_state: ClassVar[bool] = False

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features

    def reset_parameters(self) -> None:
        raise NotImplementedError

    # ---- the outer form, for interpretation and reference ------------------------------------
    def input_kernel(self) -> torch.Tensor:
        """(C, 23, K): the input layer's weights, as a Conv1d over the 23 input channels stores them."""
        raise NotImplementedError

    def input_bias(self) -> torch.Tensor:
        """(C,): the input layer's bias."""
        raise NotImplementedError

    def activate(self, activations: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The nonlinear rest of h: (n, C, T) input-layer activations -> (n, out_features)."""
        raise NotImplementedError

    def input_width(self, max_length: int) -> int:
        """Positions of the dense input for sequences up to `max_length` (at least the kernel's width)."""
        return max(max_length, self.input_kernel().shape[-1])

    def residue_activations(self, amino_acids: torch.Tensor) -> torch.Tensor:
        """A x_aa: the input layer's activations from (n, 20, W) amino-acid channels, without bias: (n, C, T)."""
        return F.conv1d(amino_acids, self.input_kernel()[:, :N_AMINO_ACIDS, :])

    def fixed_activations(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """P: the input layer's activations from the position features, plus its bias: (n, C, T)."""
        kernel = self.input_kernel()[:, N_AMINO_ACIDS:, :]
        return F.conv1d(position_features(lengths, width).to(kernel.dtype), kernel, self.input_bias())

    def residue_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """The transpose of `residue_activations`: (n, C, T) gradient -> (n, 20, W) gradient."""
        return F.conv_transpose1d(grad, self.input_kernel()[:, :N_AMINO_ACIDS, :])

    def dense(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """h from the outer form with a dense one-hot input: forward's function, computed plainly."""
        width = self.input_width(int(lengths.max()))
        dtype = self.input_kernel().dtype
        activations = self.residue_activations(one_hot(codes, width).to(dtype)) + self.fixed_activations(lengths,
                                                                                                         width)
        return self.activate(activations, lengths)


class ConvolutionEmbedding(SequenceEmbedding):
    """The paper's h: one 1D convolution of `n_kernels` kernels of `kernel_size` positions over the
    23 input channels, maximum over positions, SELU.

    Fast path. The input is one-hot, so window t of a sequence of length L gives

        h_t = bias + sum_j W_aa[:, code[t + j], j] + sum_j W_pos[:, :, j] . pos(L)[t + j]

    i.e. K looked-up weight columns plus a position term that depends only on (L, t). The table
    holds the sums for pairs of adjacent taps (21 x 21 rows per pair) and, for the last tap, its
    column plus each (L, t) position term, so a window is one `embedding_bag` sum of 5 rows for
    K = 9 (`taps_per_row`); the maximum over windows follows, then SELU (monotonic, so
    max-then-SELU equals SELU-then-max). Sequences are sorted by length and cut into chunks, so a
    chunk carries almost no padding. The gradient of the maximum only reaches the arg-max window
    of each kernel, so the backward pass is a scatter-add of n x kernels x 5 entries into the table
    (`_WindowMax`) instead of `embedding_bag`'s dense backward; autograd takes it from the table's
    rows to the weights.

    A sequence shorter than the kernel is padded with zero input to the kernel's width, so every
    sequence has at least one window; the result never depends on how a batch is padded.
    `tests.support.reference` holds a plain dense-convolution implementation of the same function,
    against which tests check this one.
    """

    name = "cnn"
    seedable = True
    kernel_logos = True
    top_level_state = True

    #: Adjacent taps summed by one look-up row (`_tables`): pairs make 21 x 21 rows per pair of
    #: taps (under 1 MB for 32 kernels, in cache) and, with the position term folded into the last
    #: tap's rows, 5 look-ups per window instead of 10 (docs/performance.md). 1 and 3 give the
    #: same results (tests/test_model.py); 3 is slower (its 3.5 MB table falls out of cache).
    taps_per_row: int = 2

    def __init__(self, kernel_size: int, n_kernels: int) -> None:
        super().__init__(n_kernels)
        self.kernel_size = kernel_size
        # Stored as Conv1d stores its weights: (kernels, 20 one-hot + 3 position channels, width).
        self.conv_weight = nn.Parameter(torch.empty(n_kernels, N_INPUT_FEATURES, kernel_size))
        self.conv_bias = nn.Parameter(torch.zeros(n_kernels))

    def reset_parameters(self) -> None:
        # The original divides its input by the batch's standard deviation, which makes a
        # sequence's score depend on the other sequences of its batch; repclass feeds the plain
        # one-hot input and puts the scale in the initialisation instead. The convolution starts
        # small (std 0.02 per weight, about the original's effective scale): random kernels then
        # barely respond to the background, and the few that start to match a motif outgrow it
        # within a few hundred updates. A unit-variance start (std 1/sqrt(K)) buries rare motifs
        # under strong random responses and, on small cohorts, lets the model memorise
        # repertoires first (docs/method.md has the measurements).
        with torch.no_grad():
            self.conv_weight[:, :N_AMINO_ACIDS].normal_(0.0, CONV_INIT_STD)
            self.conv_weight[:, N_AMINO_ACIDS:].normal_(0.0, CONV_INIT_STD / math.sqrt(N_POSITION_FEATURES))
            self.conv_bias.zero_()

    def input_kernel(self) -> torch.Tensor:
        return self.conv_weight

    def input_bias(self) -> torch.Tensor:
        return self.conv_bias

    def activate(self, activations: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        windows = torch.arange(activations.shape[-1], device=activations.device)
        valid = windows[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]  # (n, T)
        return F.selu(activations.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=-1))  # (n, D)

    # ---- fast path ---------------------------------------------------------------------------
    def _tap_groups(self) -> list[tuple[int, int]]:
        """(first tap, taps) of each look-up row of a window: adjacent taps in groups of
        `taps_per_row`, the last group shorter when the kernel's width is not a multiple."""
        k, g = self.kernel_size, self.taps_per_row
        return [(first, min(g, k - first)) for first in range(0, k, g)]

    def _folds_position(self) -> bool:
        """Whether the position rows are folded into the last group's rows: when that group is one
        tap, its 21 rows x (length, window) rows stay small (about 5,000 for K = 9), and each window
        sums one row fewer."""
        return self._tap_groups()[-1][1] == 1

    def _columns(self) -> int:
        """Rows summed per window: one per tap group, plus the position row unless folded."""
        return len(self._tap_groups()) + (0 if self._folds_position() else 1)

    def _tables(self, max_length: int, parts: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None
                ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Look-up rows for sequences up to `max_length`: per tap group, one row per combination of
        its taps' codes (21 ** taps rows, the padding code's columns are 0) holding the sum of their
        weight columns; then one row per (length, window) holding bias + position term, or the
        mask for windows past the end (added to each of the last group's rows when folded).
        Returns the table and its layout: (windows per length, number of (length, window) rows).
        `parts`: `_parts(max_length)` where the caller has it already."""
        d = self.out_features
        aa, position, layout = self._parts(max_length) if parts is None else parts
        rows = []
        for first, taps in self._tap_groups():
            combined = aa[first]
            for tap in range(first + 1, first + taps):  # every combination of codes: (21 ** taps, D)
                combined = (combined[:, None, :] + aa[tap][None, :, :]).reshape(-1, d)
            rows.append(combined)
        if self._folds_position():  # row code * P + p: the last tap's column plus position row p
            rows[-1] = (rows[-1][:, None, :] + position[None, :, :]).reshape(-1, d)
        else:
            rows.append(position)
        return torch.cat(rows, dim=0), layout

    def _parts(self, max_length: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """What `_tables` combines: each tap's weight columns by code, (K, 21, D), the padding code's
        0; one row per (length, window) with bias + position term, or the mask for windows past the
        end, ((max_length + 1) * T, D); and the layout (T windows per length, number of those rows).
        The C kernel (compute/native.py) sums these in `_tables`' order."""
        k, d = self.kernel_size, self.out_features
        width = max(max_length, k)
        n_windows = width - k + 1
        aa = self.conv_weight[:, :N_AMINO_ACIDS, :].permute(2, 1, 0)  # (K, 20, D)
        aa = torch.cat([aa, aa.new_zeros(k, 1, d)], dim=1)  # (K, 21, D): code 20 (padding) adds 0
        lengths = torch.arange(max_length + 1, device=aa.device)
        features = position_features(lengths, width).to(aa.dtype)  # (L+1, 3, width)
        # fp32 even under autocast: these rows are added to fp32 look-ups, and cost next to nothing.
        with torch.autocast(device_type=aa.device.type, enabled=False):
            position = F.conv1d(features, self.conv_weight[:, N_AMINO_ACIDS:, :], self.conv_bias)  # (L+1, D, T)
        valid = torch.arange(n_windows, device=aa.device)[None, :] < (lengths.clamp(min=k) - k + 1)[:, None]
        position = position.transpose(1, 2).masked_fill(~valid[:, :, None], _MASKED).reshape(-1, d)  # ((L+1)T, D)
        return aa, position, (n_windows, (max_length + 1) * n_windows)

    def _window_indices(self, codes: torch.Tensor, lengths: torch.Tensor, layout: tuple[int, int],
                        out: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Rows of `_tables` (of that `layout`) summed by each window: (n * T, `_columns()`) int32,
        T this chunk's windows."""
        table_windows, position_rows = layout
        k, base = self.kernel_size, N_AMINO_ACIDS + 1
        groups = self._tap_groups()
        columns = self._columns()
        n = codes.shape[0]
        n_windows = max(int(lengths[-1]), k) - k + 1  # lengths are sorted
        width = n_windows + k - 1
        codes = codes[:, :width].to(torch.int32)  # int32 + int32 below: no type promotion per element
        if codes.shape[1] < width:
            codes = F.pad(codes, (0, width - codes.shape[1]), value=PAD_CODE)
        size = n * n_windows * columns
        if out is None or out.numel() < size:
            out = torch.empty(size, dtype=torch.int32, device=codes.device)
        indices = out[:size].view(n, n_windows, columns)
        # The code of each run of 1, 2, ... taps starting at every position: (n, width - taps + 1).
        runs = {1: codes}
        for taps in range(2, max(taps for _, taps in groups) + 1):
            runs[taps] = runs[taps - 1][:, :-1] * base + codes[:, taps - 1:]
        # Every group but the last has `taps_per_row` taps: all their columns in one strided add.
        full, g = len(groups) - 1, self.taps_per_row
        if full:
            starts = runs[g].unfold(1, g * (full - 1) + 1, 1)[:, :n_windows, ::g]  # (n, T, full)
            offsets = torch.arange(0, full * base ** g, base ** g, device=codes.device, dtype=torch.int32)
            torch.add(starts, offsets, out=indices[:, :, :full])
        first, taps = groups[-1]
        offset = full * base ** g
        position = (lengths * table_windows).to(torch.int32)[:, None] + torch.arange(
            n_windows, device=codes.device, dtype=torch.int32)  # (n, T): the (length, window) row
        last = runs[taps][:, first:first + n_windows]
        if self._folds_position():  # row offset + code * P + position row
            torch.add(position + offset, last, alpha=position_rows, out=indices[:, :, -1])
        else:
            torch.add(last, offset, out=indices[:, :, full])
            torch.add(position, offset + base ** taps, out=indices[:, :, -1])
        return indices.view(-1, columns), n_windows

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, chunk_size: int = CHUNK_SIZE,
                presorted: bool = False) -> torch.Tensor:
        n = codes.shape[0]
        d = self.out_features
        if n == 0:
            return self.conv_bias.new_zeros((0, d))
        lengths = lengths.long()  # index arithmetic below needs int64 (caches keep uint16)
        if presorted:
            sorted_lengths, sorted_codes, order = lengths, codes, None
        else:
            sorted_lengths, order = torch.sort(lengths, stable=True)
            sorted_codes = codes[order]
        grad = torch.is_grad_enabled() and self.conv_weight.requires_grad
        if not grad and self._native(self.conv_weight, sorted_codes):
            best = self._native_window_max(sorted_codes, sorted_lengths, self._parts(int(sorted_lengths[-1])))
            for start in range(0, n, chunk_size):  # per chunk, in cache: selu_ makes several passes
                selu_(best[start:start + chunk_size])
            return _unsort(best, order)
        parts = self._parts(int(sorted_lengths[-1]))
        table, layout = self._tables(int(sorted_lengths[-1]), parts)
        if torch.is_grad_enabled() and table.requires_grad:
            # By default the C kernel gives the forward's maxima and winning windows (the eager
            # floats and windows); the backward scatters into the table's rows as the eager path
            # does. `--compile on` asks for torch.compile's kernel here instead.
            use_native = compiling.mode() == "auto" and self._native(self.conv_weight, sorted_codes)
            pieces = []
            for start in range(0, n, chunk_size):
                rows = slice(start, start + chunk_size)
                chunk_codes, chunk_lengths = sorted_codes[rows], sorted_lengths[rows]
                indices, n_windows = self._window_indices(chunk_codes, chunk_lengths, layout)
                found = self._native_window_max(chunk_codes, chunk_lengths, parts, argmax=True) if use_native else None
                pieces.append(_WindowMax.apply(indices, table, n_windows, found))
            best = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
            return F.selu(_unsort(best, order))
        best = table.new_empty((n, d))
        for start, maxima in self._chunk_maxima(sorted_codes, sorted_lengths, chunk_size, table, layout):
            selu_(maxima)  # per chunk, in cache: selu_ makes several passes
            if order is None:
                best[start:start + maxima.shape[0]] = maxima
            else:
                best.index_copy_(0, order[start:start + maxima.shape[0]], maxima)
        return best

    @staticmethod
    def _native(weight: torch.Tensor, codes: torch.Tensor) -> bool:
        """Whether the C kernel (compute/native.py) can run: on CPU in fp32, unless `--compile off`
        asks for the eager kernels, where the library is built or can be. The no-gradient pass
        takes it whenever it can, the gradient pass's forward in mode auto."""
        return (weight.device.type == "cpu" and weight.dtype == torch.float32 and codes.dtype == torch.uint8
                and compiling.mode() != "off" and native.library() is not None)

    def _native_window_max(self, codes: torch.Tensor, lengths: torch.Tensor,
                           parts: tuple[torch.Tensor, torch.Tensor, tuple[int, int]], argmax: bool = False):
        """native.window_max of length-sorted sequences with this embedding's `_parts`: the maxima
        before SELU, (n, D), and with `argmax` their windows too."""
        aa, position, layout = parts
        return native.window_max(codes, lengths, aa, position, kernel_size=self.kernel_size,
                                 groups=self._tap_groups(), folded=self._folds_position(), layout=layout,
                                 threads=torch.get_num_threads(), argmax=argmax)

    def _chunk_maxima(self, codes: torch.Tensor, lengths: torch.Tensor, chunk_size: int, table: torch.Tensor,
                      layout: tuple[int, int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, maximum over windows before SELU) of each chunk of length-sorted sequences, no gradient."""
        # One index buffer for all chunks: the last (longest) chunk needs at most this much.
        buffer = torch.empty(min(codes.shape[0], chunk_size) * layout[0] * self._columns(),
                             dtype=torch.int32, device=codes.device)
        for start in range(0, codes.shape[0], chunk_size):
            indices, n_windows = self._window_indices(codes[start:start + chunk_size],
                                                      lengths[start:start + chunk_size], layout, buffer)
            n = indices.shape[0] // n_windows
            fused = compiling.kernel(window_max, n, table.device.type, _WINDOW_KERNEL_OPTIONS)
            if fused is window_max:  # eager: embedding_bag is faster than window_max uncompiled
                sums = F.embedding_bag(indices, table, mode="sum")  # (n_chunk * T, D)
                yield start, sums.view(-1, n_windows, self.out_features).amax(dim=1)
            else:
                yield start, fused(indices.view(n, n_windows, -1), table)


def window_max(indices: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(n, T, columns) row indices -> (n, D): the maximum over windows of each window's row sum.

    `torch.compile`'s kernel for `_chunk_maxima` (compute/compiling.py): the look-ups, the sum and
    the maximum in one pass, where the eager path writes every window's sum to memory first
    (embedding_bag) and reads it back (amax). It adds the rows in the order embedding_bag does,
    starting from the first, so the sums are the same floats.
    """
    sums = table[indices[:, :, 0]]  # (n, T, D)
    for column in range(1, indices.shape[2]):
        sums = sums + table[indices[:, :, column]]
    return sums.amax(dim=1)


def window_argmax(indices: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`window_max` with the winning window of each (sequence, kernel): ((n, D), (n, D)); the
    gradient pass's kernel (`_WindowMax`)."""
    sums = table[indices[:, :, 0]]  # (n, T, D)
    for column in range(1, indices.shape[2]):
        sums = sums + table[indices[:, :, column]]
    return sums.max(dim=1)


class _WindowMax(torch.autograd.Function):
    """max over windows of embedding_bag(window_indices, table), with a sparse backward."""

    @staticmethod
    def forward(ctx, indices: torch.Tensor, table: torch.Tensor, n_windows: int,
                found: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`found`: (maxima, winning windows) computed already (the C kernel), else computed here."""
        n = indices.shape[0] // n_windows
        if found is not None:
            best, arg = found
        elif (fused := compiling.kernel(window_argmax, n, table.device.type, _WINDOW_KERNEL_OPTIONS)) is window_argmax:
            sums = F.embedding_bag(indices, table, mode="sum").view(n, n_windows, -1)  # (n, T, D)
            best, arg = sums.max(dim=1)  # (n, D) each
        else:
            best, arg = fused(indices.view(n, n_windows, -1), table.detach())  # a graph without autograd
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
        return None, grad_table.view(n_rows, width), None, None


class LSTMEmbedding(SequenceEmbedding):
    """The original DeepRC's LSTM option: one LSTM layer of `hidden_size` units over the 23 input
    channels, read left to right; the embedding is its hidden state at the sequence's last residue
    (the original reads the output at position length - 1; the hidden state there never depends on
    the padding after it).

    Fast path: chunks of length-sorted sequences, packed (`pack_padded_sequence`), so the
    recurrence stops at each sequence's end; `torch.nn.LSTM` does the rest (cuDNN on CUDA). The
    recurrence runs in the weights' precision, also under autocast: bf16 rounding would compound
    over the steps. The outer form's input layer is the LSTM's input projection (a width-1 kernel,
    C = 4 x hidden_size gate pre-activations, both biases), `activate` its recurrence.
    """

    name = "lstm"

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        self.lstm = nn.LSTM(N_INPUT_FEATURES, hidden_size, batch_first=True)

    def reset_parameters(self) -> None:
        # torch's default, as the original: uniform in +-1/sqrt(hidden_size).
        self.lstm.reset_parameters()

    def input_kernel(self) -> torch.Tensor:
        return self.lstm.weight_ih_l0[:, :, None]  # (4H, 23, 1)

    def input_bias(self) -> torch.Tensor:
        return self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0

    def activate(self, activations: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The recurrence, step by step over (n, 4H, T) gate pre-activations (torch's gate order i, f, g, o)."""
        n, _, steps = activations.shape
        recurrent = self.lstm.weight_hh_l0.t()  # (H, 4H)
        hidden = activations.new_zeros(n, self.out_features)
        cell = torch.zeros_like(hidden)
        last = (lengths.clamp(min=1) - 1).to(activations.device)
        result = torch.zeros_like(hidden)
        for t in range(min(steps, int(last.max()) + 1)):
            gates = activations[:, :, t] + hidden @ recurrent
            i, f, g, o = gates.chunk(4, dim=1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            result = torch.where((last == t)[:, None], hidden, result)
        return result

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, chunk_size: int = CHUNK_SIZE,
                presorted: bool = False) -> torch.Tensor:
        n = codes.shape[0]
        weight = self.lstm.weight_ih_l0
        if n == 0:
            return weight.new_zeros((0, self.out_features))
        lengths = lengths.long().clamp(min=1)
        if presorted:
            sorted_lengths, sorted_codes, order = lengths, codes, None
        else:
            sorted_lengths, order = torch.sort(lengths, stable=True)
            sorted_codes = codes[order]
        pieces = []
        with torch.autocast(device_type=weight.device.type, enabled=False):
            for start in range(0, n, chunk_size):
                chunk_lengths = sorted_lengths[start:start + chunk_size]
                width = int(chunk_lengths[-1])
                inputs = torch.cat([one_hot(sorted_codes[start:start + chunk_size], width),
                                    position_features(chunk_lengths, width)], dim=1)  # (m, 23, width)
                # pack_padded_sequence wants decreasing lengths: the chunk, longest first.
                packed = nn.utils.rnn.pack_padded_sequence(inputs.flip(0).transpose(1, 2).to(weight.dtype),
                                                           chunk_lengths.flip(0).cpu(), batch_first=True)
                _, (hidden, _) = self.lstm(packed)
                pieces.append(hidden[-1].flip(0))  # (m, H), back in increasing-length order
        return _unsort(torch.cat(pieces) if len(pieces) > 1 else pieces[0], order)


def make_embedding(config: ModelConfig) -> SequenceEmbedding:
    """The embedding `config.embedding` names, sized by the config (n_kernels = out_features)."""
    if config.embedding == "cnn":
        return ConvolutionEmbedding(config.kernel_size, config.n_kernels)
    if config.embedding == "lstm":
        return LSTMEmbedding(config.n_kernels)
    raise ValueError(f"unknown embedding {config.embedding!r}")
