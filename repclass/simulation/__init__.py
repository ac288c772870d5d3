"""`repclass simulate`: synthetic cohorts with implanted witness motifs, as AIRR files + a sheet.

- run: the public entry points (SimulationConfig, simulate_repertoires, simulate_cohort) and the
  overview: what a simulated cohort holds, how it is seeded
- config: SimulationConfig, the one home of the defaults
- backgrounds: where the sequences come from (OLGA, a store's pool, a store's repertoires whole)
- cohort: the plan (labels, motifs, covariates, seeds), each repertoire with its implants, in memory
- write: the cohort as files (AIRR repertoires, samples.tsv, implanted.tsv, simulation.json)
- vdj: the vectorised V(D)J sampler (OLGA models when installed)
- implant: motif implants (gapped variants, positions, noise)

May import: io (AIRR writing, the store for `--background`), the top-level helpers.
"""
