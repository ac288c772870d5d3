"""Simulated cohorts with known signal: how many repertoires, and how rare a motif, can a model find?

    simulate_repertoires(config) -> SimulatedCohort(samples, repertoires, implanted, motifs)   in memory
    simulate_cohort(out, config)  -> SimulationResult                                            files

Each repertoire is a background of productive junctions, either drawn from one of OLGA's V(D)J
generative models by a vectorised sampler (repclass.simulation.vdj), sampled from the pooled
sequences of a repclass store, or one of a store's repertoires kept whole (`whole_repertoires`:
real donors' repertoires with their own composition, genes and clone sizes), into which a share
`witness_rate` of the positive repertoires' sequences get a motif implanted
(repclass.simulation.implant says exactly how: wildcards, substitutions, gaps). Negatives can get
broken copies of the motifs at `noise_rate`. Optional extras for pipeline checks and demos:
non-productive rows (`nonproductive_rate`, for ingest to drop) and random covariates unrelated to
the status (`covariates`: age and hla_group).

The files written under OUT:

    samples.tsv                sample_id, status (+/-), [age, hla_group,] simulated_sequences
                               (productive), [nonproductive_rows,] witnesses, witness_rate (realised),
                               noise_implants (names that do not clash with the columns `repclass
                               ingest` adds to a store's samples.tsv; [...] only when asked for)
    repertoires/<id>.tsv.gz    AIRR rearrangement TSV (repclass.io.airr; valid for the `airr`
                               package): sequence_id, productive (T, or F for non-productive rows),
                               v_call, j_call, junction_aa, locus, duplicate_count, repertoire_id,
                               and the other required fields empty (no nucleotides, alignments)
    implanted.tsv              ground truth, one row per implant: sample_id, sequence_id,
                               junction_aa, motif_start, motif, implanted_text, noise, original_junction_aa
    simulation.json            the configuration, the motifs and the software versions

Determinism: everything derives from `config.seed` through numpy's SeedSequence: child 0 draws
the labels, random motifs and covariates (three streams), child i+1 repertoire i, itself split
into a background stream (size, sequences, clone counts), an implant stream and a non-productive
stream. So the same seed gives the same backgrounds whatever the implant settings (paired
comparisons across witness rates), turning the non-productive rows or covariates on changes
nothing else (with both off the files are those of earlier versions), the output does not depend
on the thread count, and gzip members carry no time stamp: the same inputs and seed give
byte-identical files (for the same numpy, polars and zlib).
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple

import numpy as np

from repclass._version import __version__
from repclass.errors import UsageError
from repclass.simulation.implant import (FLANK, gapped_variants, implant_position, motif_pattern, noise_text,
                                         normalise_motif, random_motifs, witness_text)

if TYPE_CHECKING:
    import polars as pl

    from repclass.io.store import Store

log = logging.getLogger(__name__)

BACKGROUND_MODELS = ("human_TRB", "human_IGH", "mouse_TRB")
AIRR_COLUMNS = ("sequence_id", "junction_aa", "v_call", "j_call", "duplicate_count", "productive", "locus")
IMPLANTED_COLUMNS = ("sample_id", "sequence_id", "junction_aa", "motif_start", "motif", "implanted_text", "noise",
                     "original_junction_aa")
SAMPLE_COLUMNS = ("sample_id", "status", "simulated_sequences", "witnesses", "witness_rate", "noise_implants")
#: Random covariates unrelated to the status (SimulationConfig.covariates), for multi-target demos.
COVARIATE_COLUMNS = ("age", "hla_group")
AGE_MEAN, AGE_SD, AGE_RANGE = 45.0, 15.0, (18, 90)
HLA_GROUPS = ("A", "B", "C")
GZIP_LEVEL = 3  # much faster than the default 6 on repertoire text, for slightly larger files (docs/method.md)


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


class SimulatedCohort(NamedTuple):
    """An in-memory cohort: `samples, repertoires, implanted, motifs = simulate_repertoires(config)`."""

    samples: "pl.DataFrame"            # one row per repertoire (SAMPLE_COLUMNS)
    repertoires: list["pl.DataFrame"]  # AIRR_COLUMNS, in the order of samples
    implanted: "pl.DataFrame"          # IMPLANTED_COLUMNS, one row per implant
    motifs: tuple[str, ...]            # the motifs implanted (given ones first, then random ones)


@dataclass
class SimulationResult:
    """What `simulate_cohort` wrote."""

    path: Path
    samples_path: Path
    implanted_path: Path
    repertoire_dir: Path
    n_repertoires: int
    n_positive: int
    n_implanted: int                    # witness implants (in positives)
    n_noise_implants: int               # broken-motif implants (in negatives)
    motifs: tuple[str, ...]
    witness_rates: dict[str, float] = field(default_factory=dict)  # positive sample id -> realised rate
    n_nonproductive: int = 0            # non-productive rows, all repertoires

    @property
    def mean_witness_rate(self) -> float:
        return float(np.mean(list(self.witness_rates.values()))) if self.witness_rates else 0.0


# ----------------------------------------------------------------------------------------------
# backgrounds
# ----------------------------------------------------------------------------------------------
class _SampledBackground:
    """A background whose repertoires are drawn: a size, that many junctions, Zipf clone counts."""

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        raise NotImplementedError

    def repertoire(self, sample_id: str, rng: np.random.Generator, config: SimulationConfig
                   ) -> tuple["pl.DataFrame", np.ndarray]:
        """(junction_aa, v_call, j_call) and the clone counts of one repertoire."""
        n = int(rng.integers(config.min_sequences, config.max_sequences + 1))
        table = self.draw(rng, n)
        return table, np.minimum(rng.zipf(config.zipf_a, size=n), config.max_count)


class _OlgaBackground(_SampledBackground):
    """Distinct productive junctions drawn from an OLGA model, with a motif filter."""

    def __init__(self, name: str, purge: re.Pattern[str] | None) -> None:
        from repclass.simulation.vdj import load_model

        self.model = load_model(name)
        self.locus = self.model.locus
        self.purge = purge
        self._v_names = np.array(self.model.v_names, dtype=object)
        self._j_names = np.array(self.model.j_names, dtype=object)

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        import polars as pl

        from repclass.simulation.vdj import sample_junctions

        parts: list[pl.DataFrame] = []
        have = drawn = 0
        seen: pl.Series | None = None
        while have < n:
            if drawn > 20 * n + 10_000:
                # Only when nearly every junction holds a motif (e.g. a purged motif "C").
                raise UsageError(f"only {have} of {drawn} junctions drawn from {self.model.name} are distinct and "
                                 f"free of the motifs; a motif this common cannot be purged (drop "
                                 f"--purge-background or use a longer motif)")
            # A few percent more than needed covers duplicates and purged sequences.
            want = int((n - have) * 1.05) + 16
            drawn += want
            aa, _lengths, v, j = sample_junctions(self.model, rng, want)
            junctions = pl.Series("junction_aa", aa.view(f"S{aa.shape[1]}").ravel()).cast(pl.String)
            frame = pl.DataFrame({"junction_aa": junctions, "v_call": self._v_names[v].tolist(),
                                  "j_call": self._j_names[j].tolist()})
            frame = frame.filter(pl.col("junction_aa").is_first_distinct())
            if seen is not None:
                frame = frame.filter(~pl.col("junction_aa").is_in(seen.implode()))
            if self.purge is not None:
                frame = frame.filter(~pl.col("junction_aa").str.contains(self.purge.pattern))
            parts.append(frame)
            have += frame.height
            seen = pl.concat([p["junction_aa"] for p in parts])
        return pl.concat(parts).head(n)

    def draw_nonproductive(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        """n non-productive rows (junction_aa, v_call, j_call): junctions of at least 6 codons, broken."""
        import polars as pl

        from repclass.simulation.vdj import nonproductive_junction, sample_junctions

        texts, v_calls, j_calls = [], [], []
        while len(texts) < n:
            _, lengths, v, j, nt = sample_junctions(self.model, rng, n - len(texts) + 16, nucleotides=True)
            for i in np.flatnonzero(lengths >= 6)[:n - len(texts)]:  # room for an internal stop or frameshift
                texts.append(nonproductive_junction(nt[i, :3 * lengths[i]].tobytes().decode("ascii"), rng))
                v_calls.append(self._v_names[v[i]])
                j_calls.append(self._j_names[j[i]])
        return pl.DataFrame({"junction_aa": texts, "v_call": v_calls, "j_call": j_calls},
                            schema={"junction_aa": pl.String, "v_call": pl.String, "j_call": pl.String})


def _junction_store(path: Path) -> "Store":
    from repclass.io.store import Store

    store = Store.open(path)
    if store.junction_convention != "junction":
        raise UsageError(f"{path}: the store holds CDR3s without the conserved C and F/W (convention "
                         f"{store.junction_convention!r}); ingest it again with --convention junction")
    return store


class _StoreBackground(_SampledBackground):
    """Sequences of a repclass store: each repertoire samples distinct junctions from the pool."""

    def __init__(self, path: Path, purge: re.Pattern[str] | None) -> None:
        import polars as pl

        store = _junction_store(path)
        pool = pl.concat([table for _, table in store.iter_tables(["junction_aa", "v_call", "j_call"])])
        pool = pool.filter(pl.col("junction_aa").is_first_distinct())
        if purge is not None:
            pool = pool.filter(~pl.col("junction_aa").str.contains(purge.pattern))
        self.pool = pool.with_columns(pl.col("v_call").fill_null(""), pl.col("j_call").fill_null(""))
        self.path = path
        self.locus = None

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        if n > self.pool.height:
            raise UsageError(f"{self.path}: the store has {self.pool.height} distinct usable junctions, fewer than "
                             f"the {n} a repertoire needs; lower --sequences")
        return self.pool[rng.choice(self.pool.height, size=n, replace=False)]


class _WholeRepertoires:
    """The repertoires of a repclass store, each kept as it is (SimulationConfig.whole_repertoires)."""

    def __init__(self, path: Path, purge: re.Pattern[str] | None) -> None:
        self.store = _junction_store(path)
        self.purge = purge
        self.path = path
        self.locus = None

    def repertoire(self, sample_id: str, rng: np.random.Generator, config: SimulationConfig
                   ) -> tuple["pl.DataFrame", np.ndarray]:
        import polars as pl

        table = self.store.read(sample_id)
        table = table.select(c for c in ("junction_aa", "v_call", "j_call", "duplicate_count") if c in table.columns)
        if self.purge is not None:  # (a real repertoire's own motif occurrences go, the rest stays)
            table = table.filter(~pl.col("junction_aa").str.contains(self.purge.pattern))
        table = table.with_columns(*[pl.col(c).fill_null("") if c in table.columns else pl.lit("").alias(c)
                                     for c in ("v_call", "j_call")])
        if table.height == 0:
            raise UsageError(f"{self.path}: repertoire {sample_id} has no sequences left to implant into")
        counts = (table["duplicate_count"].fill_null(1).clip(lower_bound=1).to_numpy()
                  if "duplicate_count" in table.columns else np.ones(table.height, dtype=np.int64))
        return table.select("junction_aa", "v_call", "j_call"), counts


# ----------------------------------------------------------------------------------------------
# one repertoire
# ----------------------------------------------------------------------------------------------
def _implant(junctions: list[str], rng: np.random.Generator, n_wanted: int, make_text, is_clean,
             sample_id: str, what: str) -> list[tuple[int, int, str, str]]:
    """Overwrite parts of n_wanted randomly chosen junctions; returns (index, start, motif, text).

    `make_text()` -> (motif name, text); `is_clean(new)` says whether the result is acceptable.
    Junctions stay distinct within the repertoire: an implant that would duplicate one is skipped.
    """
    present = set(junctions)
    done: list[tuple[int, int, str, str]] = []
    for index in rng.permutation(len(junctions)):
        if len(done) == n_wanted:
            break
        original = junctions[index]
        motif, text = make_text()
        start = implant_position(rng, len(original), len(text))
        if start is None:
            continue
        new = original[:start] + text + original[start + len(text):]
        if new != original and new in present or not is_clean(new):
            continue
        present.add(new)
        junctions[index] = new
        done.append((int(index), start, motif, text))
    if len(done) < n_wanted:
        raise UsageError(f"{sample_id}: only {len(done)} of {n_wanted} {what} implants fit (junctions need at least "
                         f"{2 * FLANK} residues besides the motif, and a negative's junction must hold no motif "
                         f"after a noise implant); use shorter or less common motifs, or more sequences")
    return done


def _repertoire(sample_id: str, positive: bool, seed: np.random.SeedSequence, background,
                motifs: tuple[str, ...], config: SimulationConfig, locus: str
                ) -> tuple["pl.DataFrame", "pl.DataFrame", dict]:
    import polars as pl

    # Spawning a third child leaves the first two as they were: the same streams as without it.
    background_seed, implant_seed, nonproductive_seed = seed.spawn(3)
    table, counts = background.repertoire(sample_id, np.random.default_rng(background_seed), config)
    n = table.height

    implant_rng = np.random.default_rng(implant_seed)
    junctions = table["junction_aa"].to_list()
    original = list(junctions)
    # What a negative must never contain: the motifs and, when gaps are on, their gapped copies.
    forbidden = gapped_variants(motifs) if config.gap_probability > 0 else motifs
    matcher = re.compile(motif_pattern(forbidden)) if motifs else None
    implants: list[tuple[int, int, str, str]] = []
    noise = False
    rate = config.witness_rate if positive else config.noise_rate
    n_wanted = 0 if rate == 0 or not motifs else max(1, int(round(rate * n)))
    if n_wanted and positive:
        def make_text() -> tuple[str, str]:
            motif = motifs[int(implant_rng.integers(len(motifs)))]
            return motif, witness_text(implant_rng, motif, config.substitution_probability, config.gap_probability)

        implants = _implant(junctions, implant_rng, n_wanted, make_text, lambda new: True, sample_id, "motif")
    elif n_wanted:
        noise = True

        def make_text() -> tuple[str, str]:
            motif = motifs[int(implant_rng.integers(len(motifs)))]
            return motif, noise_text(implant_rng, motif, matcher, config.substitution_probability,
                                     config.gap_probability)

        # A broken motif next to the right residues could spell a real one: such implants are redrawn.
        implants = _implant(junctions, implant_rng, n_wanted, make_text,
                            lambda new: not matcher.search(new), sample_id, "noise")

    repertoire = pl.DataFrame({
        "junction_aa": pl.Series(junctions, dtype=pl.String),
        "v_call": table["v_call"],
        "j_call": table["j_call"],
        "duplicate_count": counts.astype(np.int64),
        "productive": pl.repeat("T", n, eager=True, dtype=pl.String),
    })
    row_of = np.arange(n)  # row of each background sequence in the file
    n_nonproductive = int(round(config.nonproductive_rate * n))
    if n_nonproductive:
        nonproductive_rng = np.random.default_rng(nonproductive_seed)
        broken = background.draw_nonproductive(nonproductive_rng, n_nonproductive).with_columns(
            pl.Series("duplicate_count", np.minimum(nonproductive_rng.zipf(config.zipf_a, size=n_nonproductive),
                                                    config.max_count).astype(np.int64)),
            pl.lit("F").alias("productive"))
        # Spread among the background rows at random places; the background keeps its order.
        is_broken = np.zeros(n + n_nonproductive, dtype=bool)
        is_broken[nonproductive_rng.choice(n + n_nonproductive, n_nonproductive, replace=False)] = True
        order = np.empty(n + n_nonproductive, dtype=np.int64)
        order[~is_broken], order[is_broken] = np.arange(n), n + np.arange(n_nonproductive)
        repertoire = pl.concat([repertoire, broken])[order]
        row_of = np.flatnonzero(~is_broken)
    rows = repertoire.height
    repertoire = repertoire.select(
        (pl.lit(f"{sample_id}_") + pl.int_range(1, rows + 1).cast(pl.String).str.zfill(max(5, len(str(rows)))))
        .alias("sequence_id"),
        *repertoire.columns,
        pl.col("v_call").str.slice(0, 3).alias("locus") if locus is None else pl.lit(locus).alias("locus"),
    )
    sequence_ids = repertoire["sequence_id"]
    implants.sort()
    implanted = pl.DataFrame({
        "sample_id": [sample_id] * len(implants),
        "sequence_id": sequence_ids.gather([int(row_of[i]) for i, *_ in implants]),
        "junction_aa": [junctions[i] for i, *_ in implants],
        "motif_start": [start for _, start, _, _ in implants],
        "motif": [motif for _, _, motif, _ in implants],
        "implanted_text": [text for *_, text in implants],
        "noise": [noise] * len(implants),
        "original_junction_aa": [original[i] for i, *_ in implants],
    }, schema={"sample_id": pl.String, "sequence_id": pl.String, "junction_aa": pl.String,
               "motif_start": pl.Int64, "motif": pl.String, "implanted_text": pl.String, "noise": pl.Boolean,
               "original_junction_aa": pl.String})
    n_witnesses = 0 if noise else len(implants)
    row = {"sample_id": sample_id, "status": "+" if positive else "-", "simulated_sequences": n,
           "nonproductive_rows": n_nonproductive, "witnesses": n_witnesses, "witness_rate": n_witnesses / n,
           "noise_implants": len(implants) if noise else 0}
    return repertoire, implanted, row


class _Plan(NamedTuple):
    sample_ids: list[str]
    positive: np.ndarray                    # bool per repertoire
    motifs: tuple[str, ...]
    seeds: list[np.random.SeedSequence]     # one per repertoire
    covariates: list[dict]                  # per repertoire: {} or {"age": ..., "hla_group": ...}


def _resolved(config: SimulationConfig) -> SimulationConfig:
    """The config with n_repertoires set to the store's number of repertoires when they are kept whole."""
    if not config.whole_repertoires:
        return config
    n = len(_junction_store(config.background_store))
    if config.n_positive is not None and config.n_positive > n:
        raise UsageError(f"the number of positives {config.n_positive} is above the {n} repertoires of "
                         f"{config.background_store} (--positives)")
    return replace(config, n_repertoires=n)


def _plan(config: SimulationConfig) -> _Plan:
    children = np.random.SeedSequence(config.seed).spawn(config.n_repertoires + 1)
    label_seed, motif_seed, covariate_seed = children[0].spawn(3)  # the first two as with spawn(2)
    n = config.n_repertoires
    positive = np.zeros(n, dtype=bool)
    positive[:config.positives] = True
    positive = positive[np.random.default_rng(label_seed).permutation(n)]
    motifs = config.motifs + random_motifs(np.random.default_rng(motif_seed), config.random_motifs,
                                           config.random_motif_length, config.motifs)
    width = max(2, len(str(n)))
    sample_ids = [f"sample_{i + 1:0{width}d}" for i in range(n)]
    if config.whole_repertoires:  # the store's own ids, so that its metadata (subjects, ...) still joins
        sample_ids = list(_junction_store(config.background_store).sample_ids)
    covariates: list[dict] = [{} for _ in range(n)]
    if config.covariates:
        rng = np.random.default_rng(covariate_seed)
        ages = np.clip(np.rint(rng.normal(AGE_MEAN, AGE_SD, size=n)), *AGE_RANGE).astype(int)
        groups = rng.choice(np.array(HLA_GROUPS), size=n)
        covariates = [{"age": int(a), "hla_group": str(g)} for a, g in zip(ages, groups)]
    return _Plan(sample_ids, positive, motifs, children[1:], covariates)


def _iter_repertoires(config: SimulationConfig, plan: _Plan, threads: int | None
                      ) -> Iterator[tuple["pl.DataFrame", "pl.DataFrame", dict]]:
    sample_ids, positive, motifs, seeds, covariates = plan
    purge = re.compile(motif_pattern(motifs)) if config.purge_background and motifs else None
    if config.whole_repertoires:
        background = _WholeRepertoires(config.background_store, purge)
    elif config.background_store is not None:
        background = _StoreBackground(config.background_store, purge)
    else:
        background = _OlgaBackground(config.background_model, purge)
    log.info("simulating %d repertoires (%d positive), motifs %s, background %s", config.n_repertoires,
             int(positive.sum()), ", ".join(motifs) or "none", config.background_store or config.background_model)

    def one(i: int):
        repertoire, implanted, row = _repertoire(sample_ids[i], bool(positive[i]), seeds[i], background, motifs,
                                                 config, background.locus)
        return repertoire, implanted, {**row, **covariates[i]}

    from repclass.compute.cpus import available_cpus

    workers = max(1, min(threads or available_cpus(), available_cpus()))  # never more threads than CPUs
    if workers == 1:
        yield from (one(i) for i in range(config.n_repertoires))
        return
    # numpy releases the GIL in the sampler's array work. Results come back in order, and only a
    # few repertoires run ahead of the consumer, so memory stays bounded.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for i in range(config.n_repertoires):
            pending.append(pool.submit(one, i))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def simulate_repertoires(config: SimulationConfig, *, threads: int | None = None) -> SimulatedCohort:
    """Simulate a cohort in memory (see the module docstring for what it holds); `threads`
    repertoires (default: one per core) at once, with the same result whatever the number."""
    import polars as pl

    config = _resolved(config)
    plan = _plan(config)
    repertoires, implanted, rows = [], [], []
    for repertoire, implants, row in _iter_repertoires(config, plan, threads):
        repertoires.append(repertoire)
        implanted.append(implants)
        rows.append(row)
    return SimulatedCohort(samples=pl.DataFrame(rows, schema=_samples_schema(config)), repertoires=repertoires,
                           implanted=pl.concat(implanted), motifs=plan.motifs)


def _samples_schema(config: SimulationConfig) -> dict:
    """samples.tsv's columns: SAMPLE_COLUMNS, with the covariates and non-productive counts when asked for."""
    import polars as pl

    schema = {"sample_id": pl.String, "status": pl.String}
    if config.covariates:
        schema |= {"age": pl.Int64, "hla_group": pl.String}
    schema["simulated_sequences"] = pl.Int64
    if config.nonproductive_rate > 0:
        schema["nonproductive_rows"] = pl.Int64
    return schema | {"witnesses": pl.Int64, "witness_rate": pl.Float64, "noise_implants": pl.Int64}


def _tsv_bytes(frame: "pl.DataFrame") -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, separator="\t", quote_style="never", float_precision=8)
    return buffer.getvalue()


def simulate_cohort(out: str | Path, config: SimulationConfig, *, force: bool = False,
                    threads: int | None = None) -> SimulationResult:
    """Simulate a cohort and write it under `out` (built in a temporary sibling, renamed at the end).

    An existing `out` is refused unless `force`, and `force` only replaces a simulated cohort
    (files.Outputs: the rules every command follows). `threads` repertoires (default: one per core) are
    simulated at once; the files do not depend on it.
    """
    import polars as pl

    from repclass.io.airr import airr_rearrangements, airr_tsv_bytes
    from repclass.files import Output, Outputs
    from repclass.simulation import vdj

    out = Path(out)
    config = _resolved(config)
    plan = _plan(config)
    if config.whole_repertoires:  # the store's ids name the repertoire files
        for sample_id in plan.sample_ids:
            if "/" in sample_id or "\\" in sample_id or sample_id in (".", ".."):
                raise UsageError(f"{config.background_store}: sample id {sample_id!r} cannot name a repertoire "
                                 "file; ingest the store again with ids without '/' or '\\'")
    # files.py's lifecycle: --force only replaces a simulated cohort, never the --background store
    # (or anything inside or around it), one run per --out at a time, written in a temporary
    # folder and published at the end.
    inputs = [config.background_store] if config.background_store is not None else []
    with Outputs([Output(out, "simulation")], inputs=inputs, force=force) as claimed:
        temporary = claimed.temporary(out)
        (temporary / "repertoires").mkdir(parents=True)
        rows, implanted = [], []
        for repertoire, implants, row in _iter_repertoires(config, plan, threads):
            airr = airr_rearrangements(repertoire.with_columns(pl.lit(row["sample_id"]).alias("repertoire_id")),
                                       repertoire_column="repertoire_id")
            data = gzip.compress(airr_tsv_bytes(airr), compresslevel=GZIP_LEVEL, mtime=0)
            (temporary / "repertoires" / f"{row['sample_id']}.tsv.gz").write_bytes(data)
            rows.append(row)
            implanted.append(implants)
        samples = pl.DataFrame(rows, schema=_samples_schema(config))
        implanted_table = pl.concat(implanted)
        (temporary / "samples.tsv").write_bytes(_tsv_bytes(samples))
        (temporary / "implanted.tsv").write_bytes(_tsv_bytes(implanted_table))
        motifs = plan.motifs
        described = {"config": config.to_json(), "motifs": list(motifs), "repclass_version": __version__,
                     "numpy_version": np.__version__, "polars_version": pl.__version__}
        if config.background_store is None:
            described["olga_version"] = vdj.olga_version()
        (temporary / "simulation.json").write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")
        claimed.publish()
    positives = samples.filter(pl.col("status") == "+")
    result = SimulationResult(
        path=out, samples_path=out / "samples.tsv", implanted_path=out / "implanted.tsv",
        repertoire_dir=out / "repertoires", n_repertoires=samples.height, n_positive=positives.height,
        n_implanted=int(samples["witnesses"].sum()), n_noise_implants=int(samples["noise_implants"].sum()),
        motifs=motifs, witness_rates=dict(zip(positives["sample_id"], positives["witness_rate"])),
        n_nonproductive=int(samples["nonproductive_rows"].sum()) if "nonproductive_rows" in samples.columns else 0,
    )
    log.info("wrote %s: %d repertoires (%d positive), %d witness and %d noise implants, %d non-productive rows",
             out, result.n_repertoires, result.n_positive, result.n_implanted, result.n_noise_implants,
             result.n_nonproductive)
    return result
