"""`repclass ingest` and `repclass combine`: raw repertoire files to a store, and stores to one.

Scatter/gather: `ingest(..., samples=["s1"])` writes a one-sample store (one pipeline job per
sample); `combine([...])` merges such stores into one without reading the raw files again.
Both give the same bytes as ingesting everything at once.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from repclass.errors import RepclassError, StoreError
from repclass.progress import progress
from repclass.io.reader import ReadOptions, read_repertoire, unresolved_examples
from repclass.io.sheet import match_files, read_sheet
from repclass.files import sha256_of
from repclass.io.store import SampleRecord, Store, StoreWriter

log = logging.getLogger(__name__)


def _options_manifest(options: ReadOptions) -> dict:
    data = asdict(options)
    data["overrides"] = options.overrides.as_dict()
    return data


def ingest(
    sheet: str | Path,
    out: str | Path,
    inputs: Sequence[str | Path] = (),
    *,
    samples: Sequence[str] | None = None,
    id_column: str | None = None,
    options: ReadOptions | None = None,
    allow_empty: bool = False,
    force: bool = False,
) -> Store:
    """Read the repertoires a sample sheet names into a new store at `out`.

    `inputs` are repertoire files or folders matched to the sheet's ids by file name or stem;
    with none, the sheet's file column is used. `samples` restricts the run to some ids (one
    scatter job per sample). Raises RepclassError subclasses for bad input; nothing is left at
    `out` unless every sample was read.
    """
    options = options or ReadOptions()
    sample_sheet = read_sheet(sheet, id_column=id_column)
    pairs = match_files(sample_sheet, list(inputs), only=list(samples) if samples is not None else None)
    # Everything this command reads: the store may not equal, contain or lie inside any of it.
    read_paths = [Path(sheet), *[Path(p) for p in inputs], *pairs.values()]
    with StoreWriter(out, convention=options.convention, read_options=_options_manifest(options),
                     label_columns=sample_sheet.label_columns, force=force, inputs=read_paths,
                     id_column=sample_sheet.id_column) as writer, \
            ThreadPoolExecutor(max_workers=1) as hasher, \
            progress(len(pairs), "ingest") as bar:
        conventions: dict[str, str] = {}
        kept = 0
        from_frequencies: dict[str, int] = {}  # frequency column -> repertoires whose counts came from it
        for sample_id, path in pairs.items():
            # The source checksum is computed while polars reads the file (hashlib releases the GIL).
            source_digest = hasher.submit(sha256_of, path) if Path(path).is_file() else None
            read = read_repertoire(path, options)
            conventions[read.convention] = str(path)
            if len(conventions) > 1:
                raise StoreError(
                    f"files use different junction conventions: {conventions['junction']} holds junctions (with "
                    f"the conserved C and F/W), {conventions['cdr3']} holds CDR3s without them; pass "
                    "--convention cdr3 to strip the anchors from the junctions")
            if read.n_sequences == 0:
                message = (f"{path}: no sequences left after filtering ({read.rows_read} rows read; dropped: "
                           + ", ".join(f"{k} {v}" for k, v in read.dropped.items() if v) + ")")
                if not allow_empty:
                    raise RepclassError(message + "; check the filters (--locus, --all-rows) or pass --allow-empty "
                                                  "to leave the sample out")
                log.warning("%s; left out of the store (--allow-empty)", message)
                bar.advance(status=sample_id)
                continue
            record = SampleRecord(
                sample_id=sample_id,
                labels=sample_sheet.row(sample_id).labels,
                n_sequences=read.n_sequences,
                n_templates=read.n_templates,
                rows_read=read.rows_read,
                dropped=read.dropped,
                source_file=Path(path).name,
                source_sha256=source_digest.result() if source_digest else "",
                source_format=read.layout.format_name,
                unresolved_genes=read.n_unresolved_rows,
                unresolved_gene_examples=unresolved_examples(read.unresolved_genes),
                counts_from=read.counts_from or "",
            )
            if read.counts_from:
                from_frequencies[read.counts_from] = from_frequencies.get(read.counts_from, 0) + 1
            writer.add(record, read.table)
            kept += 1
            bar.advance(status=sample_id)
        if kept == 0:
            raise RepclassError(f"{sheet}: every repertoire was empty after filtering; no store written")
        if from_frequencies:
            log.warning("%d of %d repertoires have no count column: their clone counts were derived from the "
                        "frequencies in column %s (each frequency divided by the file's smallest non-zero "
                        "frequency, rounded, at least 1; samples.tsv's counts_from column names them)",
                        sum(from_frequencies.values()), kept,
                        ", ".join(f"{name!r} ({n})" for name, n in from_frequencies.items()))
        writer.convention = next(iter(conventions))
        return writer.commit()


def combine(parts: Sequence[str | Path], out: str | Path, *, force: bool = False) -> Store:
    """Merge stores (for example one per sample from scatter jobs) into one store at `out`."""
    if not parts:
        raise StoreError("no stores to combine")
    stores = [Store.open(part) for part in parts]
    first = stores[0]
    for store in stores[1:]:
        for key in ("junction_convention", "read_options", "alphabet", "id_column"):
            if store.manifest.get(key) != first.manifest.get(key):
                raise StoreError(f"{store.path}: {key} {store.manifest.get(key)!r} differs from "
                                 f"{first.path}'s {first.manifest.get(key)!r}; stores can only be combined when "
                                 "they were ingested with the same options")
    label_columns: list[str] = []
    for store in stores:
        label_columns += [c for c in store.label_columns if c not in label_columns]
    seen: dict[str, Path] = {}
    with StoreWriter(out, convention=first.junction_convention, read_options=first.manifest["read_options"],
                     label_columns=label_columns, force=force, inputs=[Path(p) for p in parts],
                     id_column=first.id_column) as writer:
        for store in stores:
            for record in store.records():
                if record.sample_id in seen:
                    raise StoreError(f"sample {record.sample_id!r} is in both {seen[record.sample_id]} and "
                                     f"{store.path}; each sample must come from one store")
                seen[record.sample_id] = store.path
                record.labels = {c: record.labels.get(c) for c in label_columns}
                writer.add_file(record, store.path / record.file, store.format_version)
        return writer.commit()
