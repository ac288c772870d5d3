"""A simulated cohort in memory: the plan (labels, motifs, covariates, one seed per repertoire),
each repertoire's background with its implants, and `simulate_repertoires`."""
from __future__ import annotations

import logging
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator, NamedTuple

import numpy as np

from repclass.errors import UsageError
from repclass.simulation.backgrounds import junction_store, make_background
from repclass.simulation.config import AGE_MEAN, AGE_RANGE, AGE_SD, HLA_GROUPS, SimulationConfig
from repclass.simulation.implant import (FLANK, gapped_variants, implant_position, motif_pattern, noise_text,
                                         random_motifs, witness_text)

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

AIRR_COLUMNS = ("sequence_id", "junction_aa", "v_call", "j_call", "duplicate_count", "productive", "locus")
IMPLANTED_COLUMNS = ("sample_id", "sequence_id", "junction_aa", "motif_start", "motif", "implanted_text", "noise",
                     "original_junction_aa")
SAMPLE_COLUMNS = ("sample_id", "status", "simulated_sequences", "witnesses", "witness_rate", "noise_implants")


class SimulatedCohort(NamedTuple):
    """An in-memory cohort: `samples, repertoires, implanted, motifs = simulate_repertoires(config)`."""

    samples: "pl.DataFrame"            # one row per repertoire (SAMPLE_COLUMNS)
    repertoires: list["pl.DataFrame"]  # AIRR_COLUMNS, in the order of samples
    implanted: "pl.DataFrame"          # IMPLANTED_COLUMNS, one row per implant
    motifs: tuple[str, ...]            # the motifs implanted (given ones first, then random ones)


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


class Plan(NamedTuple):
    sample_ids: list[str]
    positive: np.ndarray                    # bool per repertoire
    motifs: tuple[str, ...]
    seeds: list[np.random.SeedSequence]     # one per repertoire
    covariates: list[dict]                  # per repertoire: {} or {"age": ..., "hla_group": ...}


def resolved_config(config: SimulationConfig) -> SimulationConfig:
    """The config with n_repertoires set to the store's number of repertoires when they are kept whole."""
    if not config.whole_repertoires:
        return config
    n = len(junction_store(config.background_store))
    if config.n_positive is not None and config.n_positive > n:
        raise UsageError(f"the number of positives {config.n_positive} is above the {n} repertoires of "
                         f"{config.background_store} (--positives)")
    return replace(config, n_repertoires=n)


def plan_cohort(config: SimulationConfig) -> Plan:
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
        sample_ids = list(junction_store(config.background_store).sample_ids)
    covariates: list[dict] = [{} for _ in range(n)]
    if config.covariates:
        rng = np.random.default_rng(covariate_seed)
        ages = np.clip(np.rint(rng.normal(AGE_MEAN, AGE_SD, size=n)), *AGE_RANGE).astype(int)
        groups = rng.choice(np.array(HLA_GROUPS), size=n)
        covariates = [{"age": int(a), "hla_group": str(g)} for a, g in zip(ages, groups)]
    return Plan(sample_ids, positive, motifs, children[1:], covariates)


def iter_repertoires(config: SimulationConfig, plan: Plan, threads: int | None
                      ) -> Iterator[tuple["pl.DataFrame", "pl.DataFrame", dict]]:
    sample_ids, positive, motifs, seeds, covariates = plan
    purge = re.compile(motif_pattern(motifs)) if config.purge_background and motifs else None
    background = make_background(config, purge)
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

    config = resolved_config(config)
    plan = plan_cohort(config)
    repertoires, implanted, rows = [], [], []
    for repertoire, implants, row in iter_repertoires(config, plan, threads):
        repertoires.append(repertoire)
        implanted.append(implants)
        rows.append(row)
    return SimulatedCohort(samples=pl.DataFrame(rows, schema=samples_schema(config)), repertoires=repertoires,
                           implanted=pl.concat(implanted), motifs=plan.motifs)


def samples_schema(config: SimulationConfig) -> dict:
    """samples.tsv's columns: SAMPLE_COLUMNS, with the covariates and non-productive counts when asked for."""
    import polars as pl

    schema = {"sample_id": pl.String, "status": pl.String}
    if config.covariates:
        schema |= {"age": pl.Int64, "hla_group": pl.String}
    schema["simulated_sequences"] = pl.Int64
    if config.nonproductive_rate > 0:
        schema["nonproductive_rows"] = pl.Int64
    return schema | {"witnesses": pl.Int64, "witness_rate": pl.Float64, "noise_implants": pl.Int64}
