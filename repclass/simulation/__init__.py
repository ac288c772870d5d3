"""`repclass simulate`: synthetic cohorts with implanted witness motifs, as AIRR files + a sheet.

- run: the simulation config, backgrounds, cohorts and the written folder
- vdj: the vectorised V(D)J sampler (OLGA models when installed)
- implant: motif implants (gapped variants, positions, noise)

May import: io (AIRR writing, the store for `--background`), the top-level helpers.
"""
