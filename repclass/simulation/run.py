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

from repclass.simulation.cohort import (AIRR_COLUMNS, IMPLANTED_COLUMNS, SAMPLE_COLUMNS, SimulatedCohort,
                                        simulate_repertoires)
from repclass.simulation.config import BACKGROUND_MODELS, COVARIATE_COLUMNS, SimulationConfig
from repclass.simulation.write import SimulationResult, simulate_cohort

__all__ = ["AIRR_COLUMNS", "BACKGROUND_MODELS", "COVARIATE_COLUMNS", "IMPLANTED_COLUMNS", "SAMPLE_COLUMNS",
           "SimulatedCohort", "SimulationConfig", "SimulationResult", "simulate_cohort", "simulate_repertoires"]
