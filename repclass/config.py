"""The one home of defaults: frozen dataclasses for the model and for training.

Where repclass departs from the DeepRC paper, the field says so and why (see also
docs/method.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of DeepRC (h: sequence embedding, f: attention, o: output)."""

    #: Number of outputs of o (sum over targets: 1 per binary/regression target, C per C-class one).
    n_outputs: int = 1
    #: h: width of the 1D convolution over amino acids + 3 position features (paper: 9).
    kernel_size: int = 9
    #: h: number of convolution kernels = embedding size (paper: 32).
    n_kernels: int = 32
    #: f: hidden layers and their width before the single attention logit (paper: 2 x 32).
    attention_layers: int = 2
    attention_units: int = 32
    #: o: hidden layers before the output layer (paper: 0, i.e. one linear layer).
    output_layers: int = 0
    output_units: int = 32
    #: Use clone counts: each sequence's attention logit gets `count_scale * log(count)` added
    #: (count_scale is learned, starting at 1). Singletons get log(1) = 0 added, so they keep
    #: their features; the original multiplies the one-hot input by log(count), which zeroes them.
    use_counts: bool = False
    #: Top-k reduction: the share of each repertoire's sequences, ranked by attention, that the
    #: softmax and the gradient pass see (paper: 0.1).
    reduction_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.reduction_fraction <= 1.0:
            raise ValueError(f"reduction_fraction must be in (0, 1], got {self.reduction_fraction}")
        for name in ("n_outputs", "kernel_size", "n_kernels", "attention_units", "output_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Defaults differ from the paper where noted (docs/method.md)."""

    #: Repertoires per update (paper: 4).
    batch_size: int = 4
    #: Sequences sampled from each repertoire per update (paper: 10,000).
    sequences_per_bag: int = 10_000
    #: "uniform" (paper) or "count" (sequences drawn in proportion to their clone counts).
    sampling: str = "uniform"
    #: How the gradient pass's sequences are chosen from each sampled repertoire. "top": the top
    #: `reduction_fraction` by attention (paper). "sample": that many drawn without replacement
    #: with probability proportional to their attention weights (Gumbel top-k). While attention is
    #: still flat, "top" keeps showing the gradient the same arbitrary sequences, and rare
    #: witness sequences may never be among them; sampling lets every sequence be seen, and
    #: becomes "top" as attention sharpens. Evaluation and prediction always use "top".
    selection: str = "sample"
    #: Adam learning rate. Paper: 1e-4, which needs ~10^5 updates; 1e-3 learns typical cohorts
    #: in a few thousand updates (minutes on a laptop CPU).
    learning_rate: float = 1e-3
    #: Adam epsilon (paper: 1e-4; kept).
    adam_eps: float = 1e-4
    weight_decay: float = 0.0
    #: Maximum number of updates (paper: 100,000).
    max_updates: int = 5_000
    #: Evaluate on the validation split every this many updates (paper: 5,000).
    eval_every: int = 100
    #: Stop when the validation loss has not improved for this many evaluations (paper: none).
    patience: int = 10
    #: A better validation loss counts as an improvement (resets `patience`, replaces the kept
    #: model) only when it is lower by more than this. With 0 (any decrease counts, the paper's
    #: rule), an easy cohort's validation loss creeps from 0.01 towards 0 by 1e-4 per evaluation
    #: for thousands of updates after the model is done, and early stopping never fires.
    min_delta: float = 0.01
    #: Kernels initialised as detectors of the k-mers whose frequency across the training
    #: repertoires is most associated with the labels (0: all kernels random, as in the paper).
    #: At witness rates of 0.1% and below a random start memorises repertoires before it finds
    #: the motif (docs/method.md).
    init_kmers: int = 16
    #: Length of those k-mers.
    init_kmer_length: int = 4
    #: Weight of each k-mer residue in its kernel (the rest starts small and random).
    init_kmer_amplitude: float = 0.5
    #: How strongly the attention network starts out favouring sequences that the seeded kernels
    #: detect: the attention logit of a full match starts this much above the background's
    #: (0: attention starts random, as in the paper).
    init_attention: float = 5.0
    #: Write a resumable checkpoint every this many updates (0: at every evaluation).
    checkpoint_every: int = 0
    #: Train/validation/test shares for a random stratified split.
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    #: Sequences per chunk when scoring without gradients (bounds memory; no effect on results).
    chunk_size: int = 8_192
    #: Memory for decoded repertoires kept between updates (GiB); the rest is re-read from the store.
    cache_gb: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.selection not in ("sample", "top"):
            raise ValueError(f"selection must be 'sample' or 'top', got {self.selection!r}")
        if self.sampling not in ("uniform", "count"):
            raise ValueError(f"sampling must be 'uniform' or 'count', got {self.sampling!r}")
        if self.batch_size < 1 or self.sequences_per_bag < 1 or self.max_updates < 1 or self.eval_every < 1:
            raise ValueError("batch_size, sequences_per_bag, max_updates and eval_every must be at least 1")
        if min(self.min_delta, self.init_kmers, self.init_kmer_amplitude, self.init_attention) < 0 or \
                not 1 <= self.init_kmer_length <= 5:
            raise ValueError("min_delta, init_kmers, init_kmer_amplitude and init_attention must be at least 0, "
                             "and init_kmer_length from 1 to 5")
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.test_fraction < 1 or \
                self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction and test_fraction must be in [0, 1) and leave training data")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
