"""DeepRC: sequence embedding h, attention f, output o (Widrich et al., NeurIPS 2020).

The model takes integer-coded sequences (see `alphabet.py`) and never moves its inputs between
devices; callers do that. h is a part, `repclass.model.embedding.SequenceEmbedding` (the paper's 1D
convolution, or the original's LSTM option, as `ModelConfig.embedding` says); f and o only see
its (n, out_features) output.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from repclass.model.activation import SELU
from repclass.config import CHUNK_SIZE, ModelConfig
from repclass.model.embedding import SequenceEmbedding, make_embedding, position_features

if TYPE_CHECKING:
    from repclass.model.data import EncodedRepertoire

__all__ = ["DeepRC", "position_features", "top_k_per_bag"]


class DeepRC(nn.Module):
    """DeepRC built from a ModelConfig.

    forward(codes, lengths, bag_index, n_bags, counts=None, bag_sizes=None) -> (n_bags, n_outputs)
      codes      (n, L) uint8/int64 amino-acid codes, padded with PAD_CODE
      lengths    (n,) int64 sequence lengths
      bag_index  (n,) int64 repertoire of each sequence, in [0, n_bags)
      counts     (n,) clone counts (used when config.use_counts)
      bag_sizes  (n_bags,) sequences each repertoire had before its top-k were chosen (the count
                 read-out's denominator, config.count_readout; default: the sequences passed)
    Every sequence passed is attended over; the top-k reduction is `top_k_per_bag`'s job.
    """

    #: Buffers whose size comes from the model file (the enrichment path's set), not the config.
    SIZED_BY_FILE = ("enrichment_codes", "enrichment_weights")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # h: the sequence embedding, (n, L) codes -> (n, d).
        self.embedding: SequenceEmbedding = make_embedding(config)
        d = self.embedding.out_features
        if self.embedding.top_level_state:
            self.register_state_dict_post_hook(_lift_embedding_state)
            self.register_load_state_dict_pre_hook(_nest_embedding_state)
        # f: attention network, one logit per sequence.
        layers: list[nn.Module] = []
        width = d
        for _ in range(config.attention_layers):
            layers += [nn.Linear(width, config.attention_units), SELU(inplace=True)]
            width = config.attention_units
        layers.append(nn.Linear(width, 1))
        self.attention = nn.Sequential(*layers)
        # o: output network.
        layers = []
        width = d
        for _ in range(config.output_layers):
            layers += [nn.Linear(width, config.output_units), SELU()]
            width = config.output_units
        layers.append(nn.Linear(width, config.n_outputs))
        self.output = nn.Sequential(*layers)
        if config.use_counts:
            self.count_scale = nn.Parameter(torch.ones(()))
        if config.count_readout:
            # a: each output's weight of the repertoire's attention evidence (`read_out`).
            self.evidence_weight = nn.Parameter(torch.zeros(config.n_outputs))
        if config.enrichment:
            # w: each output's weight of the repertoire's enriched-clonotype composition (`read_out`),
            # and the set itself (repclass/model/enrichment.py) as buffers, so that the model file holds it.
            self.enrichment_weight = nn.Parameter(torch.zeros(config.n_outputs))
            self.register_buffer("enrichment_codes", torch.zeros(0, 1, dtype=torch.uint8))
            self.register_buffer("enrichment_weights", torch.zeros(0, dtype=torch.float64))
            self.register_buffer("enrichment_scaler", torch.tensor([0.0, 1.0], dtype=torch.float64))
            self.register_load_state_dict_pre_hook(_size_enrichment_buffers)
            self._lookup = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The embedding's own initialisation (see its reset_parameters), then LeCun normal for the
        linear layers of f and o; the evidence weight starts at 0, so that a count read-out starts
        as the paper's read-out."""
        with torch.no_grad():
            self.embedding.reset_parameters()
            if self.config.count_readout:
                self.evidence_weight.zero_()
            if self.config.enrichment:
                self.enrichment_weight.zero_()
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features))
                    module.bias.zero_()

    # ---- h: sequence embedding -------------------------------------------------------------
    @property
    def conv_weight(self) -> nn.Parameter:
        """The convolution's weights (n_kernels, 23, kernel_size); a convolution embedding's only."""
        return self._convolution().conv_weight

    @property
    def conv_bias(self) -> nn.Parameter:
        """The convolution's bias (n_kernels,); a convolution embedding's only."""
        return self._convolution().conv_bias

    def _convolution(self) -> SequenceEmbedding:
        if not self.embedding.seedable:  # hasattr(model, "conv_weight") is False for the others
            raise AttributeError(f"the {self.embedding.name} embedding has no convolution kernels")
        return self.embedding

    def embed(self, codes: torch.Tensor, lengths: torch.Tensor, chunk_size: int = CHUNK_SIZE,
              presorted: bool = False) -> torch.Tensor:
        """h: (n, L) codes -> (n, d) embeddings, in length-sorted chunks.

        `presorted=True` promises that `lengths` is non-decreasing (batches from `data.make_batch`
        are), which saves sorting and un-sorting.
        """
        return self.embedding(codes, lengths, chunk_size, presorted)

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
        _, exp, total = _softmax_parts(logits, bag_index, n_bags)
        return exp / total[bag_index]

    @staticmethod
    def attention_evidence(logits: torch.Tensor, bag_index: torch.Tensor, n_bags: int,
                           bag_sizes: torch.Tensor | None = None) -> torch.Tensor:
        """Log mean exp of each repertoire's attention logits: (n_bags,).

        The sum runs over the sequences passed (a repertoire's top-k), the mean divides by
        `bag_sizes` (the sequences the top-k were chosen from; default: those passed): the
        sequences left out count as exp(logit) = 0, a fair approximation since the top-k hold
        nearly all of the attention. Each witness-like sequence adds its exp(logit), so the
        evidence grows with their number where the softmax's weights do not; its gradient with
        respect to each logit is that sequence's attention weight.
        """
        top, _, total = _softmax_parts(logits, bag_index, n_bags)
        return _log_mean_exp(top, total, bag_index, n_bags, bag_sizes)

    def pool(self, embeddings: torch.Tensor, weights: torch.Tensor, bag_index: torch.Tensor,
             n_bags: int) -> torch.Tensor:
        """Attention-weighted mean of the embeddings per repertoire: (n_bags, D)."""
        return embeddings.new_zeros(n_bags, embeddings.shape[1]).index_add(0, bag_index,
                                                                           embeddings * weights[:, None])

    def read_out(self, pooled: torch.Tensor, evidence: torch.Tensor | None,
                 composition: torch.Tensor | None = None) -> torch.Tensor:
        """o: (n_bags, D) pooled embeddings and (n_bags,) attention evidence -> (n_bags, n_outputs).

        The paper's read-out is o(pooled); with config.count_readout each output also gets
        a * evidence (`attention_evidence`; `evidence` may be None otherwise); with
        config.enrichment and a (n_bags,) `composition` (`composition`), w * composition.
        Without `composition` that term is left out: the attention path alone.
        """
        outputs = self.output(pooled)
        if self.config.count_readout:
            if evidence is None:
                raise ValueError("this model reads out the attention evidence; pass it")
            outputs = outputs + evidence[:, None].to(outputs.dtype) * self.evidence_weight
        if composition is not None:
            outputs = outputs + self.composition_part(composition).to(outputs.dtype)
        return outputs

    # ---- the enrichment path (repclass/model/enrichment.py) --------------------------------------
    def composition_part(self, composition: torch.Tensor) -> torch.Tensor:
        """(n_bags,) standardised composition -> (n_bags, n_outputs), its share of the outputs."""
        return composition[:, None].to(self.enrichment_weight.dtype) * self.enrichment_weight

    def set_enrichment(self, codes: torch.Tensor, weights: torch.Tensor, mean: float, scale: float) -> None:
        """Hold an enriched set (junction codes (m, width) uint8, weights (m,)) and the standardisation."""
        device = self.enrichment_weight.device
        self.enrichment_codes = codes.to(device=device, dtype=torch.uint8)
        self.enrichment_weights = weights.to(device=device, dtype=torch.float64)
        self.enrichment_scaler = torch.tensor([mean, scale], dtype=torch.float64, device=device)
        self._lookup = None

    def composition(self, repertoire: "EncodedRepertoire") -> float:
        """A repertoire's standardised composition input: its enriched share, log-scaled."""
        from repclass.model.enrichment import EnrichedLookup, standardised

        if self._lookup is None:
            self._lookup = EnrichedLookup(self.enrichment_codes.cpu().numpy(), self.enrichment_weights.cpu().numpy())
        mean, scale = self.enrichment_scaler.tolist()
        return standardised(self._lookup.share(repertoire), mean, scale)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, bag_index: torch.Tensor, n_bags: int,
                counts: torch.Tensor | None = None, chunk_size: int = CHUNK_SIZE,
                presorted: bool = False, bag_sizes: torch.Tensor | None = None,
                composition: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = self.embed(codes, lengths, chunk_size, presorted)  # (n, D)
        logits = self.attention_logits(embeddings, counts).float()  # (n,) fp32 softmax under autocast too
        # the softmax's parts once, for the weights and (count read-out) the log mean exp
        top, exp, total = _softmax_parts(logits, bag_index, n_bags)
        pooled = self.pool(embeddings, exp / total[bag_index], bag_index, n_bags)  # (n_bags, D)
        evidence = None
        if self.config.count_readout:
            # top is already a constant; detaching total leaves the logits to the pooled path
            evidence_total = total if self.config.evidence_gradient else total.detach()
            evidence = _log_mean_exp(top, evidence_total, bag_index, n_bags, bag_sizes)
        return self.read_out(pooled, evidence, composition)  # (n_bags, n_outputs)


def _softmax_parts(logits: torch.Tensor, bag_index: torch.Tensor, n_bags: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per repertoire: the largest logit (n_bags,), exp(logit - it) (n,) and their sum (n_bags,).
    The largest logit is a constant to autograd: the softmax and the log-sum-exp do not depend on it."""
    top = logits.new_full((n_bags,), -torch.inf).scatter_reduce(0, bag_index, logits.detach(), "amax")
    exp = torch.exp(logits - top[bag_index])
    total = exp.new_zeros(n_bags).index_add(0, bag_index, exp)
    return top, exp, total


def _log_mean_exp(top: torch.Tensor, total: torch.Tensor, bag_index: torch.Tensor, n_bags: int,
                  bag_sizes: torch.Tensor | None) -> torch.Tensor:
    """log(sum of exp(logit)) - log(bag size) per repertoire, from `_softmax_parts`' top and total."""
    if bag_sizes is None:
        bag_sizes = torch.bincount(bag_index, minlength=n_bags)
    return top + torch.log(total) - torch.log(bag_sizes.to(total.dtype))


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


def _size_enrichment_buffers(module: DeepRC, state: dict, prefix: str, local_metadata: dict, strict: bool,
                             missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Load pre-hook: the enriched set's buffers take the loaded set's size."""
    for name in ("enrichment_codes", "enrichment_weights"):
        if prefix + name in state:
            loaded = state[prefix + name]
            setattr(module, name, torch.empty(loaded.shape, dtype=getattr(module, name).dtype,
                                              device=getattr(module, name).device))
    module._lookup = None


def _lift_embedding_state(module: DeepRC, state: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook: the embedding's tensors under their own names at the top (conv_weight,
    conv_bias), first, as model files written before the embedding was a part hold them."""
    nested = prefix + "embedding."
    keys = list(state)
    mine = [k for k in keys if k.startswith(prefix)]
    ordered = [(prefix + k[len(nested):], state[k]) for k in mine if k.startswith(nested)]
    ordered += [(k, state[k]) for k in mine if not k.startswith(nested)]
    for key in mine:
        del state[key]
    state.update(ordered)


def _nest_embedding_state(module: DeepRC, state: dict, prefix: str, local_metadata: dict, strict: bool,
                          missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Load pre-hook, the reverse of `_lift_embedding_state`."""
    for name in module.embedding.state_dict():
        if prefix + name in state:
            state[prefix + "embedding." + name] = state.pop(prefix + name)
