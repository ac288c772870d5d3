"""The one home of defaults: frozen dataclasses for the model and for training.

Where repclass departs from the DeepRC paper, the field says so and why (see also
docs/method.md).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from repclass.errors import UsageError

#: Sequences embedded per chunk when scoring without gradients: bounds memory, changes no result.
CHUNK_SIZE = 8_192
#: Updates after which training evaluates before its first regular evaluation (TrainConfig.evaluation_due).
EARLY_EVALUATIONS = (10, 20, 50)

#: Sequence embeddings (ModelConfig.embedding; repclass/model/embedding.py builds them).
EMBEDDINGS = ("cnn", "lstm")
#: How each update's sequences are sampled from a repertoire (TrainConfig.sampling).
SAMPLINGS = ("uniform", "count")
#: How the gradient pass's sequences are chosen (TrainConfig.selection).
SELECTIONS = ("sample", "top")

#: Settings whose command-line option is not the field's name with dashes, and settings with no
#: option at all (messages name those by their field name).
_OPTION_NAMES = {"learning_rate": "--lr", "max_updates": "--updates", "n_kernels": "--kernels"}
_NO_OPTION = {"n_outputs", "adam_eps", "extra"}


def option_name(setting: str) -> str:
    """The command-line option of a ModelConfig/TrainConfig field ("learning_rate" -> "--lr"):
    the words error messages use, so that they name what the user typed."""
    if setting in _NO_OPTION:
        return setting
    return _OPTION_NAMES.get(setting, "--" + setting.replace("_", "-"))


def _require(ok: bool, setting: str, rule: str, value: Any) -> None:
    """Refuse a setting's value with a UsageError that names its option ("--lr must be ...")."""
    if not ok:
        shown = repr(value) if isinstance(value, str) else value
        raise UsageError(f"{option_name(setting)} must be {rule}, got {shown}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _at_least(config: Any, minimum: int, *settings: str) -> None:
    for name in settings:
        value = getattr(config, name)
        _require(isinstance(value, numbers.Integral) and value >= minimum, name, f"at least {minimum}", value)


def _zero_or_positive(config: Any, *settings: str) -> None:
    for name in settings:
        value = getattr(config, name)
        _require(_number(value) and value >= 0, name, "zero or a positive number", value)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of DeepRC (h: sequence embedding, f: attention, o: output)."""

    #: Number of outputs of o (sum over targets: 1 per binary/regression target, C per C-class one).
    n_outputs: int = 1
    #: h: how a sequence is embedded (repclass/model/embedding.py). "cnn": the paper's 1D convolution, its
    #: maximum over positions. "lstm": the original DeepRC's LSTM option, n_kernels hidden units, the
    #: hidden state at the sequence's last residue (kernel_size unused; no k-mer seeding, no kernel logos).
    embedding: str = "cnn"
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
    #: o also reads how much attention evidence a repertoire holds: each output gets
    #: `a * (log mean exp of the attention logits)` added, a learned per output and starting at 0,
    #: the mean taken over all of the repertoire's sequences (the logits outside the top-k count as
    #: -inf). Attention pooling alone tells whether a repertoire holds a witness-like sequence, not
    #: how many: once attention concentrates, one natural copy of a motif in a negative and fifteen
    #: witnesses give the same pooled embedding; the log mean exp grows with their number
    #: (docs/method.md, "A read-out that counts"). Not in the paper; on by default
    #: (evidence_gradient off) because it is level with the paper's read-out or ahead on the
    #: accuracy grid, as fast on easy cohorts, and level on the real cohorts (docs/method.md,
    #: "The count read-out by default"). It starts at a = 0, so a fresh
    #: model computes the paper's function; --no-count-readout gives the paper's read-out.
    count_readout: bool = True
    #: With the count read-out, training passes its gradient back into the attention logits as
    #: well as into its weight a. Off by default: the evidence is read from the logits as they are
    #: (their gradient comes from the pooled embedding alone, as in the paper) and only a learns
    #: from it; with the gradient, E spreads the logits apart faster than a learns to weigh E, and
    #: easy cohorts stop 5x later (docs/method.md, "The count read-out without its gradient").
    #: Outputs are the same either way; only training differs.
    evidence_gradient: bool = False
    #: The enrichment path (repclass/model/enrichment.py; docs/method.md, "An enrichment path"): o also
    #: reads each repertoire's share of distinct junctions enriched in the positive training
    #: repertoires (cross-fitted on the training split, log-scaled, standardised) with a weight of
    #: its own, beside the attention-pooled embedding. For cohorts whose label lies in thousands of
    #: rare public clonotypes. Binary targets; the set is saved in the model file. On by default
    #: since issue 30 (docs/method.md, "The enrichment path by default"); a run whose targets are
    #: not one binary target, or whose training split has fewer than 2 repertoires of a class,
    #: trains without it and says so in the log. --no-enrichment turns it off.
    enrichment: bool = True

    def __post_init__(self) -> None:
        _require(_number(self.reduction_fraction) and 0.0 < self.reduction_fraction <= 1.0, "reduction_fraction",
                 "above 0 and at most 1", self.reduction_fraction)
        _require(self.embedding in EMBEDDINGS, "embedding", " or ".join(map(repr, EMBEDDINGS)), self.embedding)
        _at_least(self, 1, "n_outputs", "kernel_size", "n_kernels", "attention_units", "output_units")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown model settings: {', '.join(unknown)}")
        # Model files written before the count read-out existed have none, whatever today's default;
        # those written before evidence_gradient existed trained with it (a resumed run goes on so);
        # those written before the enrichment path was the default have it only where they say so.
        return cls(**{"count_readout": False, "evidence_gradient": True, "enrichment": False, **data})


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Defaults differ from the paper where noted (docs/method.md)."""

    #: Repertoires per update (paper: 4).
    batch_size: int = 4
    #: Sequences sampled from each repertoire per update (paper: 10,000).
    sequences_per_bag: int = 10_000
    #: Each update samples at most this share of a repertoire's sequences (and at most
    #: sequences_per_bag): below 1, repertoires smaller than the bag are subsampled too instead of
    #: being used whole at every update (the paper), so that a small cohort's training repertoires
    #: look a little different each time (issue 30, part 2; docs/real-data.md).
    bag_share: float = 1.0
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
    #: Evaluate on the validation split every this many updates (paper: 5,000), and also at
    #: updates 10, 20 and 50 when they come before the first (`evaluation_due`): a seeded model
    #: often solves an easy cohort within a few dozen updates, and `stop_loss` can end it there.
    eval_every: int = 100
    #: Stop when the validation loss has not improved for this many evaluations (paper: none).
    patience: int = 10
    #: A better validation loss counts as an improvement (resets `patience`, replaces the kept
    #: model) only when it is lower by more than this. With 0 (any decrease counts, the paper's
    #: rule), an easy cohort's validation loss creeps from 0.01 towards 0 by 1e-4 per evaluation
    #: for thousands of updates after the model is done, and early stopping never fires.
    min_delta: float = 0.01
    #: Stop as soon as the validation split is solved: every target is a classification whose
    #: validation AUC is 1.0, and the validation loss is at most this (every repertoire on the
    #: right side with a confident margin). Training on only sharpens margins that no metric can
    #: see: on an easy cohort that is thousands of updates after the model is done. 0: never
    #: (the paper trains for its full budget).
    stop_loss: float = 0.02
    #: Kernels initialised as detectors of the k-mers whose frequency across the training
    #: repertoires is most associated with the labels (0: all kernels random, as in the paper).
    #: At witness rates of 0.1% and below a random start memorises repertoires before it finds
    #: the motif (docs/method.md).
    init_kmers: int = 16
    #: Shortest length of those k-mers: every length from this one to `init_kmer_max_length` competes
    #: (a 5-mer motif stands out as a 5-mer, not as two 4-mers; docs/method.md).
    init_kmer_length: int = 4
    #: Longest k-mers seeded (capped at the kernel size); equal to `init_kmer_length`: one length.
    init_kmer_max_length: int = 5
    #: Weight of each k-mer residue in its kernel (the rest starts small and random); the bias puts
    #: the threshold between a full match and a near miss, the amplitude sets how sharp it is.
    init_kmer_amplitude: float = 4.0
    #: When no k-mer is a clear candidate (none clears the chance level: small cohorts, rare
    #: witnesses), seed the best one anyway (False: seed none, all kernels random).
    init_kmer_fallback: bool = True
    #: How strongly the attention network starts out favouring sequences that the seeded kernels
    #: detect: the attention logit of a full match starts this much above the background's
    #: (0: attention starts random, as in the paper).
    init_attention: float = 5.0
    #: With the count read-out (ModelConfig.count_readout): its weight on the attention evidence
    #: starts at a logistic fit to the training labels instead of 0 (docs/method.md: it lifts a
    #: real cohort whose label lies in clonal expansion, with use_counts, and stops runs on
    #: simulated motif cohorts before the attention has found the witnesses).
    init_evidence: bool = False
    #: Write a resumable checkpoint every this many updates (0: at every evaluation).
    checkpoint_every: int = 0
    #: Train/validation/test shares for a random stratified split.
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    #: Sequences per chunk when scoring without gradients (bounds memory; no effect on results).
    chunk_size: int = CHUNK_SIZE
    #: Memory for decoded repertoires kept between updates (GiB); the rest is re-read from the store.
    cache_gb: float = 4.0
    #: With ModelConfig.enrichment: the inner folds its enriched set is cross-fitted over.
    enrichment_folds: int = 5
    #: With ModelConfig.enrichment: use the path only where its inner CV reads the labels better than
    #: chance (repclass/model/enrichment.py, EnrichmentFit.reads_labels); False: wherever it can be fitted.
    enrichment_gate: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Settings that would train nothing meaningful (NaN, negative, out of range), refused
        before any work with a UsageError in the command line's words."""
        _require(self.selection in SELECTIONS, "selection", " or ".join(map(repr, SELECTIONS)), self.selection)
        _require(self.sampling in SAMPLINGS, "sampling", " or ".join(map(repr, SAMPLINGS)), self.sampling)
        _at_least(self, 1, "batch_size", "sequences_per_bag", "max_updates", "eval_every", "patience", "chunk_size")
        _require(_number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a positive number",
                 self.learning_rate)
        _zero_or_positive(self, "weight_decay", "cache_gb", "min_delta", "stop_loss", "init_kmer_amplitude",
                          "init_attention")
        _at_least(self, 0, "init_kmers")
        _at_least(self, 2, "enrichment_folds")
        _require(_number(self.bag_share) and 0 < self.bag_share <= 1, "bag_share", "a share above 0 and at most 1",
                 self.bag_share)
        for name in ("init_kmer_length", "init_kmer_max_length"):
            length = getattr(self, name)
            _require(isinstance(length, numbers.Integral) and 1 <= length <= 5, name, "from 1 to 5", length)
        if self.init_kmer_max_length < self.init_kmer_length:
            raise UsageError(f"--init-kmer-max-length {self.init_kmer_max_length} is below --init-kmer-length "
                             f"{self.init_kmer_length}; set it to {self.init_kmer_length} for one length")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(_number(value) and 0 <= value < 1, name, "at least 0 and below 1", value)
        if self.validation_fraction + self.test_fraction >= 1:
            raise UsageError(f"--validation-fraction {self.validation_fraction} and --test-fraction "
                             f"{self.test_fraction} leave no repertoires for training; their sum must be below 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The settings as `to_dict` wrote them (model.json's train_config); a setting it left out
        keeps its default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # written only where they differ from the default: default runs' files stay as they were
        for name, default in (("enrichment_folds", 5), ("enrichment_gate", True), ("bag_share", 1.0)):
            if data[name] == default:
                del data[name]
        return data

    def evaluation_due(self, update: int) -> bool:
        """Whether training evaluates on the validation split after `update` updates."""
        return update % self.eval_every == 0 or (update in EARLY_EVALUATIONS and update < self.eval_every)


@dataclass(frozen=True)
class MotifsConfig:
    """`repclass motifs` (repclass.explain): which sequences get residue attributions and form
    motifs, how many motifs are reported, the integrated-gradients steps, the seed recorded in
    motifs.json, and the sequences embedded per chunk (memory only)."""

    top_sequences: int = 500
    n_motifs: int = 10
    ig_steps: int = 64
    seed: int = 0
    chunk_size: int = CHUNK_SIZE

    def __post_init__(self) -> None:
        for value, option in ((self.top_sequences, "--top-sequences"), (self.n_motifs, "--motifs"),
                              (self.ig_steps, "--ig-steps"), (self.chunk_size, "--chunk-size")):
            if value < 1:
                raise UsageError(f"{option} must be at least 1, got {value}")
