"""`repclass simulate`'s settings: SimulationConfig (the one home of the defaults, checked on
creation) and the background models and covariates it can ask for."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from repclass.errors import UsageError
from repclass.simulation.implant import normalise_motif

#: OLGA's models a background can be drawn from (repclass.simulation.vdj loads them).
BACKGROUND_MODELS = ("human_TRB", "human_IGH", "mouse_TRB")
#: Random covariates unrelated to the status (SimulationConfig.covariates), for multi-target demos.
COVARIATE_COLUMNS = ("age", "hla_group")
AGE_MEAN, AGE_SD, AGE_RANGE = 45.0, 15.0, (18, 90)
HLA_GROUPS = ("A", "B", "C")


@dataclass(frozen=True)
class SimulationConfig:
    """Every setting of a simulated cohort (the one home of the defaults).

    witness_rate: share of a positive repertoire's sequences that get a motif; the count is
        round(witness_rate * n_sequences), at least 1 when the rate is above 0 (the realised
        rates are reported per repertoire).
    motifs: motifs to implant ('.' = a wildcard position); random_motifs adds that many random
        motifs with lengths in random_motif_length. A witness gets one motif, chosen at random.
    gap_probability: chance that an implant loses one interior motif position (SFEN -> SEN/SFN).
    substitution_probability: per non-wildcard motif position, chance of another residue.
    noise_rate: share of a negative repertoire's sequences that get a broken motif (0: none).
    purge_background: regenerate background sequences that already contain a motif.
    background_model: OLGA model to draw from; background_store: a repclass store to sample
        from instead (sequences distinct within a repertoire, shared between repertoires as
        often as the store's pool forces).
    whole_repertoires: with background_store, each simulated repertoire is one of the store's
        repertoires as it is (its sequences, genes, clone counts and sample id, in store order)
        instead of a sample of the pool: the signal goes into real donors' repertoires, whose
        differences in composition stay. n_repertoires, min/max_sequences, zipf_a and max_count
        are then the store's (n_repertoires is set to its number of repertoires).
    zipf_a, max_count: clone counts (duplicate_count) ~ Zipf(zipf_a), clipped to max_count.
    nonproductive_rate: adds round(rate * n_sequences) non-productive rows (productive = F) to
        each repertoire, at random places among the productive ones: further junctions of the
        background model, broken by an in-frame stop codon (a `*`) or a 1-2 nt frameshift (a `_`
        between the V-frame and the J-frame parts), with their own clone counts. They let a
        pipeline check that its ingest drops them. Needs an OLGA background (a store holds no
        nucleotides).
    covariates: adds labels unrelated to the status to samples.tsv, for multi-target demos: age
        ~ round(Normal(45, 15)) clipped to [18, 90], and hla_group uniform over A, B, C.
    """

    n_repertoires: int = 100
    n_positive: int | None = None
    positive_fraction: float = 0.5
    min_sequences: int = 10_000
    max_sequences: int = 10_000
    witness_rate: float = 0.01
    motifs: tuple[str, ...] = ("SFEN",)
    random_motifs: int = 0
    random_motif_length: tuple[int, int] = (4, 4)
    gap_probability: float = 0.0
    substitution_probability: float = 0.0
    noise_rate: float = 0.0
    purge_background: bool = False
    background_model: str = "human_TRB"
    background_store: Path | None = None
    whole_repertoires: bool = False
    zipf_a: float = 2.2
    max_count: int = 1000
    nonproductive_rate: float = 0.0
    covariates: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        motifs = (self.motifs,) if isinstance(self.motifs, str) else tuple(self.motifs)
        object.__setattr__(self, "motifs", tuple(normalise_motif(m) for m in motifs))
        if len(set(self.motifs)) != len(self.motifs):
            raise UsageError(f"motifs are repeated: {', '.join(self.motifs)}; give each once (--motif)")
        object.__setattr__(self, "random_motif_length", tuple(int(x) for x in self.random_motif_length))
        if self.background_store is not None:
            object.__setattr__(self, "background_store", Path(self.background_store))
        if self.n_repertoires < 1:
            raise UsageError(f"the number of repertoires must be at least 1, got {self.n_repertoires} (--repertoires)")
        if self.n_positive is not None and not 0 <= self.n_positive <= self.n_repertoires:
            raise UsageError(f"the number of positives {self.n_positive} is not between 0 and the number of "
                             f"repertoires {self.n_repertoires} (--positives)")
        for name, option, value in (("positive_fraction", "--positive-fraction", self.positive_fraction),
                                    ("witness_rate", "--witness-rate", self.witness_rate),
                                    ("gap_probability", "--gap-probability", self.gap_probability),
                                    ("substitution_probability", "--substitution-probability",
                                     self.substitution_probability),
                                    ("noise_rate", "--noise-rate", self.noise_rate),
                                    ("nonproductive_rate", "--nonproductive-rate", self.nonproductive_rate)):
            if not 0.0 <= float(value) <= 1.0:
                raise UsageError(f"{name.replace('_', ' ')} must be between 0 and 1, got {value} ({option})")
        if not 1 <= self.min_sequences <= self.max_sequences:
            raise UsageError(f"sequences per repertoire: need 1 <= min <= max, got {self.min_sequences}-"
                             f"{self.max_sequences} (--sequences)")
        low, high = self.random_motif_length
        if self.random_motifs < 0 or not 1 <= low <= high:
            raise UsageError(f"random motifs: need a count >= 0 and lengths 1 <= min <= max, got "
                             f"{self.random_motifs} of length {low}-{high} (--random-motifs, --motif-length)")
        if self.witness_rate > 0 and self.positives > 0 and not self.motifs and not self.random_motifs:
            raise UsageError("no motif to implant: give --motif (repeatable) or --random-motifs N")
        if self.background_store is None and self.background_model not in BACKGROUND_MODELS:
            raise UsageError(f"unknown background model {self.background_model!r}; choose one of "
                             f"{', '.join(BACKGROUND_MODELS)} (--background-model)")
        if self.zipf_a <= 1.0 or self.max_count < 1:
            raise UsageError(f"clone counts: need a Zipf exponent above 1 and a cap of at least 1, got "
                             f"{self.zipf_a} and {self.max_count} (--zipf-a, --max-count)")
        if self.whole_repertoires and self.background_store is None:
            raise UsageError("keeping repertoires whole needs a store to take them from (--background STORE)")
        if self.nonproductive_rate > 0 and self.background_store is not None:
            raise UsageError("non-productive rows are broken nucleotide junctions of an OLGA model, and a store "
                             "holds amino acids only: drop --nonproductive-rate or --background")

    @property
    def positives(self) -> int:
        """Number of positive repertoires."""
        if self.n_positive is not None:
            return self.n_positive
        return int(round(self.positive_fraction * self.n_repertoires))

    def to_json(self) -> dict:
        values = asdict(self)
        values["background_store"] = None if self.background_store is None else str(self.background_store)
        return values
