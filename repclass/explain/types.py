"""The explainer's records: what `motifs()` returns (MotifResult with its Motifs and
KernelSummaries), and what the passes hand each other (a Candidate sequence, a repertoire's
RepertoireSummary, a ScoredRepertoire for the evidence tables)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from repclass.explain.outputs import ExplainedOutput


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclass
class Motif:
    """A cluster of high-contribution windows, with its matrices over aligned columns."""

    rank: int
    consensus: str
    n_sequences: int
    n_repertoires: int
    total_contribution: float
    #: column positions; 1 is the consensus's first residue, flanks are <= 0 and > len(consensus)
    columns: list[int]
    #: [first, last + 1) of the column indices the consensus spans
    consensus_span: tuple[int, int]
    frequencies: np.ndarray  # (n_columns, 20) residue frequencies among the members covering a column
    contributions: np.ndarray  # (n_columns, 20) mean integrated-gradients attribution per member
    members: list[int]  # indices into the ranked sequences (MotifResult.sequences rows)

    @property
    def id(self) -> str:
        return f"M{self.rank}"


@dataclass
class KernelSummary:
    rank: int
    kernel: int  # index of the convolution kernel
    contribution: float  # mean over analysed repertoires of g_d * z_d
    weights: np.ndarray  # (kernel_size, 20) amino-acid weights, centred per position
    #: (kernel_size, 3) weights of the 3 position features (start ramp, end ramp, centre)
    position_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


@dataclass
class MotifResult:
    out: Path
    report: Path
    motifs: list[Motif]
    completeness_error: float  # worst relative completeness error over the attributed sequences
    explained: ExplainedOutput
    samples: list[str]  # the analysed repertoires
    sequences: pl.DataFrame  # the table written to sequences.tsv
    kernels: list[KernelSummary] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: every scored repertoire: split, label, output, probability, attention concentration (scores.tsv)
    scores: pl.DataFrame | None = None
    #: ground-truth scores when `truth` was given (truth.json)
    truth: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------
# between the passes
# ----------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One attended sequence, with what integrated gradients needs to replay its repertoire."""

    sample_index: int
    row: int
    junction: str
    v_call: str
    j_call: str
    count: int
    attention: float
    attention_rank: int
    logit: float
    contribution: float
    shift: float  # max attention logit of the repertoire (softmax shift)
    rest_total: float  # sum of exp(logit - shift) over the repertoire's other top-k sequences
    rest_weighted: torch.Tensor  # (D,) sum of exp(logit - shift) * h over them
    log_size: float = 0.0  # log of the repertoire's number of sequences (the count read-out's mean)
    model_index: int = 0  # which model explains it (a fold of a cross-validation folder)

    def sort_key(self) -> tuple[float, float, int, int]:
        """Largest contribution first; negligible ones count as 0 and go by attention logit."""
        return (-float(ranking_contribution(self.contribution)), -self.logit, self.sample_index, self.row)


#: A sequence contribution (in output units) below this is no contribution: a sequence with an
#: attention weight of 1e-8 contributes about 1e-8, positive or negative as the rounding falls.
#: Ranked by that sign, such a witness sorted below background sequences at 1e-10 (the test
#: suite's tiny cohort, docs/motifs.md); ranked as 0, they go by the attention the model gives them.
NEGLIGIBLE_CONTRIBUTION = 1e-6


def ranking_contribution(contribution: float | np.ndarray) -> np.ndarray:
    """The contribution a ranking uses: 0 where it is negligible."""
    return np.where(np.abs(contribution) >= NEGLIGIBLE_CONTRIBUTION, contribution, 0.0)


@dataclass
class RepertoireSummary:
    sample_id: str
    n_sequences: int
    n_attended: int
    output: float  # explained output y(z)
    empty_output: float  # o(0): the output of a repertoire without sequences (o's bias for linear o)
    kernel_contributions: np.ndarray  # (D,) g * z: sums to output - empty_output - evidence_output, as
    #                                   the top-k sequences' contributions do
    model_index: int = 0
    #: the count read-out's part of output, a * log mean exp of the attention logits (0 without one)
    evidence_output: float = 0.0


@dataclass
class ScoredRepertoire:
    """One scored repertoire, for the evidence tables (scores.tsv)."""

    sample_id: str
    outputs: np.ndarray  # (n_outputs,) raw model outputs
    n_sequences: int
    top1_attention: float
    effective_n: float
    analysed: bool
    #: the enrichment path's part of each output, w * c (None for a model without the path)
    enrichment_outputs: np.ndarray | None = None
