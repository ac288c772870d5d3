"""Files in, store out: everything `repclass ingest` and `repclass combine` need.

- formats: recognising a repertoire file (compression, separator, format, which column holds what)
- reader: one file into the store's normalised table (filters, gene names, junction convention)
- genes: V/D/J/C calls to IMGT nomenclature
- sheet: the sample sheet (ids, labels, files)
- ingestion: `ingest` and `combine`
- store: the store folder (manifest, samples.tsv, Parquet repertoires, fingerprint)
- airr: AIRR rearrangement TSVs repclass writes

May import: the top-level helpers (errors, files, alphabet, progress, _version). Nothing here
knows about models.
"""
