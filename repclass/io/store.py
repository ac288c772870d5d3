"""The repertoire store: a folder any polars/pandas/DuckDB user can open.

    STORE/
      manifest.json            format version, repclass version, alphabet, junction convention,
                               read options, per-sample file and sha256
      samples.tsv              one row per repertoire: id, labels, sequences and templates kept,
                               rows read and dropped by reason, source file and its sha256
      repertoires/<id>.parquet junction_aa, v_call, j_call, duplicate_count, and where the input
                               has them locus, c_call, sequence_id (zstd Parquet; since format 3
                               the gene calls and the locus are dictionary-encoded: Categorical)

A store is written into a temporary sibling folder and renamed into place at the end, so a
failed or killed write never leaves a folder that looks complete. The same inputs give
byte-identical files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import polars as pl

from repclass._version import __version__
from repclass.alphabet import AMINO_ACIDS
from repclass.errors import OutputExistsError, StoreError, excerpt
from repclass.files import Output, Outputs, check_replaceable, prepare_parent, sha256_of, temporary_sibling
from repclass.io.sheet import MAX_ID_BYTES
from repclass.names import MANIFEST_NAME, REPERTOIRE_DIR, SAMPLES_NAME

log = logging.getLogger(__name__)

STORE_FORMAT = "repclass-store"
#: 2: repertoire files may also hold locus, c_call and sequence_id (the AIRR fields the input
#: had), 10x contig tables count cells. Version 1 stores (without those columns) are still read.
#: 3: v_call, j_call, c_call and locus are Categorical (dictionary-encoded) columns instead of
#: strings. Versions 1 and 2 are still read; `Store.read` gives the same table for all three.
STORE_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
#: Columns stored as Categorical since version 3; `Store.read` gives them as strings.
CATEGORICAL_COLUMNS = ("v_call", "j_call", "c_call", "locus")
SOURCE_COLUMNS = ("source_file", "source_sha256", "source_format")
#: samples.tsv's text columns besides the id, labels and sources.
TEXT_COLUMNS = ("unresolved_gene_examples", "counts_from")
#: Why ingest left a row out, in the order the checks apply (a row counts under the first):
#: samples.tsv's `dropped_<reason>` columns.
DROP_REASONS = ("not_cell", "low_confidence", "missing_junction", "non_productive", "locus", "invalid_residue",
                "no_anchor", "zero_count")
#: Columns of a repertoire table in the store.
#: Gene calls and the locus repeat a few hundred values over millions of rows: Categorical (a
#: dictionary-encoded Parquet column; store format 3).
STORE_COLUMNS = {"junction_aa": pl.String, "v_call": pl.Categorical, "j_call": pl.Categorical,
                 "duplicate_count": pl.Int64}
#: AIRR fields kept after those where the input has them: the rearrangement's locus, its C gene
#: (the distinct calls of a merged clonotype, comma-separated) and the `sequence_id`s of all the
#: rows merged into the clonotype (comma-separated, in file order), to join outputs back.
OPTIONAL_STORE_COLUMNS = {"locus": pl.Categorical, "c_call": pl.Categorical, "sequence_id": pl.String}

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def reserved_sample_columns() -> tuple[str, ...]:
    """The columns a store's samples.tsv writes itself: a sheet's label column may not take one's name."""
    return ("sample_id", "n_sequences", "n_templates", "rows_read", "rows_kept",
            *[f"dropped_{reason}" for reason in DROP_REASONS], "unresolved_genes", *TEXT_COLUMNS, *SOURCE_COLUMNS)


def as_strings(table: pl.DataFrame) -> pl.DataFrame:
    """The table with its Categorical columns as strings: what every reader of a store gets,
    whichever format version wrote it (string operations and joins need them as strings)."""
    categorical = [name for name, dtype in table.schema.items() if dtype == pl.Categorical]
    return table.with_columns(pl.col(categorical).cast(pl.String)) if categorical else table


def repertoire_filename(sample_id: str) -> str:
    """A file name for a sample id: unsafe characters become '_' (the id itself is kept intact)."""
    return f"{_UNSAFE_FILENAME.sub('_', sample_id)}.parquet"


@dataclass
class SampleRecord:
    """One repertoire's row of samples.tsv and its entry in the manifest."""

    sample_id: str
    labels: dict[str, str | None]
    n_sequences: int
    n_templates: int
    rows_read: int
    dropped: dict[str, int]
    source_file: str
    source_sha256: str
    source_format: str
    file: str = ""
    sha256: str = ""
    #: Kept rows with a gene call that names no IMGT gene (kept without the call), and the most
    #: frequent such names as written (`TRBV99-1 x12; TRBVXX-XX x3`).
    unresolved_genes: int = 0
    unresolved_gene_examples: str = ""
    #: The frequency column the clone counts were derived from, for a file without counts
    #: (reader.counts_from_frequencies); empty when the file had counts (or neither).
    counts_from: str = ""


def write_atomically(final: Path, force: bool, kind: str | None = None) -> Path:
    """Check an output path and return a temporary sibling to write into (see `publish`).

    With `kind`, an existing output is only replaced when it is a repclass output of that kind
    (`files.check_replaceable`); callers that already checked (under `files.claim_output`) omit it.
    """
    final = Path(final)
    if kind is not None:
        check_replaceable(final, kind, force)
    elif final.exists() and not force:
        raise OutputExistsError(final)
    prepare_parent(final)
    temporary = temporary_sibling(final)
    if temporary.exists():
        shutil.rmtree(temporary) if temporary.is_dir() else temporary.unlink()
    return temporary


class StoreWriter:
    """Builds a store in a temporary folder; `commit()` moves it into place.

    Use as a context manager: leaving the block with an exception removes the temporary folder.
    While the writer is open it holds the output's lock (`files.claim_output`): a second ingest
    to the same store fails at once instead of replacing this one's store. `inputs` are the
    paths the command reads; the store may not equal, contain or lie inside any of them.
    """

    def __init__(self, path: str | Path, *, convention: str, read_options: dict[str, Any],
                 label_columns: list[str], force: bool = False, inputs: Sequence[str | Path] = (),
                 id_column: str = "sample_id") -> None:
        self.path = Path(path)
        #: The sample sheet's id column (AIRR's `repertoire_id`, `sample_id`, ...), kept for outputs.
        self.id_column = id_column
        self.convention = convention
        self.read_options = read_options
        self.label_columns = list(label_columns)
        self._force = force
        self._claim = contextlib.ExitStack()
        self._outputs = self._claim.enter_context(Outputs([Output(self.path, "store")], inputs=inputs, force=force))
        try:
            self._temporary = self._outputs.temporary(self.path)
            (self._temporary / REPERTOIRE_DIR).mkdir(parents=True)
        except BaseException as exc:
            self._close(exc)
            raise
        self._records: dict[str, SampleRecord] = {}
        self._files: set[str] = set()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        """Leave the output lifecycle: temporaries removed unless published, locks released, a
        full disk turned into one line (files.Outputs)."""
        if exc is None:
            self._claim.close()
        else:
            self._claim.__exit__(type(exc), exc, exc.__traceback__)

    def _claim_file(self, record: SampleRecord) -> str:
        if record.sample_id in self._records:
            raise StoreError(f"sample id {record.sample_id!r} occurs twice; sample ids must be unique")
        if len(record.sample_id.encode()) > MAX_ID_BYTES:
            raise StoreError(f"sample id {excerpt(record.sample_id)} is longer than {MAX_ID_BYTES} bytes, the most a "
                             "repertoire file name can take; shorten it")
        name = repertoire_filename(record.sample_id)
        if name in self._files:
            raise StoreError(f"sample id {record.sample_id!r} gives the same file name {name!r} as another id; "
                             "rename one of them")
        self._files.add(name)
        return f"{REPERTOIRE_DIR}/{name}"

    def add(self, record: SampleRecord, table: pl.DataFrame) -> None:
        """Write one repertoire's table."""
        record.file = self._claim_file(record)
        target = self._temporary / record.file
        table.write_parquet(target, compression="zstd", compression_level=1, statistics=False)
        record.sha256 = sha256_of(target)
        self._records[record.sample_id] = record

    def add_file(self, record: SampleRecord, parquet: Path, format_version: int = STORE_FORMAT_VERSION) -> None:
        """Copy an already written repertoire file (from another store), checking its checksum; a
        file of an older format version is written again in this version's column types."""
        expected = record.sha256
        if format_version != STORE_FORMAT_VERSION:
            if sha256_of(parquet) != expected:
                raise StoreError(f"{parquet}: checksum differs from the one in its store's manifest; "
                                 "the store is corrupt: ingest that sample again")
            table = pl.read_parquet(parquet)
            self.add(record, table.with_columns(pl.col(c).cast(pl.Categorical) for c in CATEGORICAL_COLUMNS
                                                if c in table.columns))
            return
        record.file = self._claim_file(record)
        target = self._temporary / record.file
        shutil.copyfile(parquet, target)
        record.sha256 = sha256_of(target)
        if record.sha256 != expected:
            raise StoreError(f"{parquet}: checksum differs from the one in its store's manifest; "
                             "the store is corrupt: ingest that sample again")
        self._records[record.sample_id] = record

    def abort(self) -> None:
        self._claim.close()

    def commit(self) -> "Store":
        if not self._records:
            raise StoreError(f"{self.path}: no repertoires to write")
        records = [self._records[sample_id] for sample_id in sorted(self._records)]
        _samples_frame(records, self.label_columns).write_csv(self._temporary / SAMPLES_NAME, separator="\t")
        manifest = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "repclass_version": __version__,
            "alphabet": AMINO_ACIDS,
            "junction_convention": self.convention,
            "read_options": self.read_options,
            "label_columns": self.label_columns,
            "id_column": self.id_column,
            "samples": [{"sample_id": r.sample_id, "file": r.file, "sha256": r.sha256,
                         "n_sequences": r.n_sequences} for r in records],
        }
        # The manifest is written last: a folder without it is never taken for a store.
        (self._temporary / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        self._outputs.publish()
        self._claim.close()
        return Store.open(self.path)


def _samples_frame(records: list[SampleRecord], label_columns: list[str]) -> pl.DataFrame:
    data: dict[str, list[Any]] = {"sample_id": [r.sample_id for r in records]}
    for column in label_columns:
        data[column] = [r.labels.get(column) for r in records]
    data["n_sequences"] = [r.n_sequences for r in records]
    data["n_templates"] = [r.n_templates for r in records]
    data["rows_read"] = [r.rows_read for r in records]
    data["rows_kept"] = [r.rows_read - sum(r.dropped.values()) for r in records]
    for reason in DROP_REASONS:
        data[f"dropped_{reason}"] = [r.dropped.get(reason, 0) for r in records]
    data["unresolved_genes"] = [r.unresolved_genes for r in records]
    # none -> an empty field (polars would write an empty string as "")
    data["unresolved_gene_examples"] = [r.unresolved_gene_examples or None for r in records]
    data["counts_from"] = [r.counts_from or None for r in records]
    data["source_file"] = [r.source_file for r in records]
    data["source_sha256"] = [r.source_sha256 for r in records]
    data["source_format"] = [r.source_format for r in records]
    schema = {name: (pl.String if name in label_columns or name in ("sample_id", *SOURCE_COLUMNS, *TEXT_COLUMNS)
                     else pl.Int64)
              for name in data}
    return pl.DataFrame(data, schema=schema)


#: Stores whose format version was logged in this process (by resolved path).
_ANNOUNCED: set[str] = set()

#: Files whose checksum was verified in this process, by (path, size, mtime): each repertoire
#: file is hashed once per run, when it is first read, not at every read.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def _verify_once(path: Path, expected: str) -> None:
    """Refuse a repertoire file whose sha256 differs from the manifest's (a flipped bit that
    still decodes would otherwise change the junctions silently)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _VERIFIED:
        return
    if sha256_of(path) != expected:
        raise StoreError(f"{path}: checksum differs from the one in the store's manifest; the file is damaged: "
                         "ingest that sample again (or restore the store from a backup)")
    _VERIFIED.add(key)


def table_loci(table: "pl.DataFrame | pl.LazyFrame") -> set[str]:
    """The loci of a repertoire table: its `locus` column, else its V (or J) calls' prefixes."""
    from repclass.io.genes import LOCI

    frame = table.lazy()
    names = frame.collect_schema().names()
    for column in ("locus", "v_call", "j_call"):
        if column in names:
            # distinct values first: cheap on a Categorical column, and fewer strings to slice
            values = frame.select(pl.col(column).drop_nulls().unique().cast(pl.String).str.slice(0, 3)
                                  .str.to_uppercase().unique()).collect()
            found = {v for v in values.to_series().to_list() if v in LOCI}
            if found:
                return found
    return set()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return excerpt(text.splitlines()[0], 120) if text else type(exc).__name__


@dataclass
class Store:
    """An ingested cohort: open with `Store.open(path)`."""

    path: Path
    manifest: dict[str, Any]
    samples: pl.DataFrame = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not path.is_dir():
            raise StoreError(f"{path}: no such store (expected a folder written by `repclass ingest`)")
        if not manifest_path.exists():
            raise StoreError(f"{path}: not a repertoire store, or an incomplete one ({MANIFEST_NAME} is missing); "
                             "run `repclass ingest` again")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{manifest_path}: not valid JSON ({exc}); the store is corrupt") from exc
        if manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"{manifest_path}: not a repertoire store manifest")
        version = manifest.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            raise StoreError(f"{path}: store format version {version} is not supported by repclass {__version__} "
                             f"(it reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}); ingest the data "
                             "again with this version")
        entries = manifest.get("samples")
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and {"sample_id", "file", "sha256", "n_sequences"} <= set(e) for e in entries):
            raise StoreError(f"{manifest_path}: the list of samples is missing or incomplete; the store is corrupt: "
                             "ingest the data again")
        label_columns = manifest.get("label_columns", [])
        samples_path = path / SAMPLES_NAME
        if not samples_path.is_file():
            raise StoreError(f"{samples_path}: missing from the store; the store is incomplete: ingest the data again")
        schema = {"sample_id": pl.String, **{c: pl.String for c in label_columns}}
        try:
            samples = pl.read_csv(samples_path, separator="\t", schema_overrides=schema,
                                  null_values=[""], quote_char=None)
        except pl.exceptions.PolarsError as exc:
            raise StoreError(f"{samples_path}: cannot be read ({_first_line(exc)}); the store is corrupt: ingest the "
                             "data again") from exc
        missing = {"sample_id", *label_columns} - set(samples.columns)
        if missing or sorted(samples["sample_id"].to_list()) != sorted(e["sample_id"] for e in entries):
            raise StoreError(f"{samples_path}: does not match {MANIFEST_NAME} (other samples or columns); the store "
                             "is corrupt: ingest the data again")
        key = str(path.resolve())
        if key not in _ANNOUNCED:  # once per store and process: commands open a store several times
            _ANNOUNCED.add(key)
            log.info("%s: store format version %d%s", path, version,
                     "" if version == STORE_FORMAT_VERSION else
                     f" (an older format, read as it is; this repclass writes version {STORE_FORMAT_VERSION})")
        return cls(path=path, manifest=manifest, samples=samples)

    # --- what the store holds ---------------------------------------------------------------
    @property
    def sample_ids(self) -> list[str]:
        return [entry["sample_id"] for entry in self.manifest["samples"]]

    @property
    def label_columns(self) -> list[str]:
        return list(self.manifest.get("label_columns", []))

    @property
    def junction_convention(self) -> str:
        return self.manifest["junction_convention"]

    @property
    def id_column(self) -> str:
        """The id column of the sample sheet the store was ingested from (e.g. `repertoire_id`)."""
        return self.manifest.get("id_column", "sample_id")

    @property
    def alphabet(self) -> str:
        return self.manifest["alphabet"]

    @property
    def fingerprint(self) -> str:
        """sha256 of the manifest: names the exact data a model was trained on."""
        return hashlib.sha256((self.path / MANIFEST_NAME).read_bytes()).hexdigest()

    def __len__(self) -> int:
        return len(self.manifest["samples"])

    def labels(self, column: str) -> dict[str, str | None]:
        if column not in self.label_columns:
            raise StoreError(f"{self.path}: no label column {column!r}; the store has: "
                             f"{', '.join(self.label_columns) or 'no label columns'}")
        return dict(zip(self.samples["sample_id"].to_list(), self.samples[column].to_list()))

    def n_sequences(self) -> dict[str, int]:
        return {entry["sample_id"]: int(entry["n_sequences"]) for entry in self.manifest["samples"]}

    def _entry(self, sample_id: str) -> dict[str, Any]:
        for entry in self.manifest["samples"]:
            if entry["sample_id"] == sample_id:
                return entry
        raise StoreError(f"{self.path}: no sample {excerpt(sample_id)} in the store")

    def repertoire_path(self, sample_id: str) -> Path:
        return self.path / self._entry(sample_id)["file"]

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    def read(self, sample_id: str, columns: list[str] | None = None) -> pl.DataFrame:
        """One repertoire's table (all columns unless `columns` names some), gene calls and locus
        as strings whichever format version the store has (`as_strings`)."""
        entry = self._entry(sample_id)
        path = self.path / entry["file"]
        if not path.is_file():
            raise StoreError(f"{path}: repertoire file missing from the store; ingest the data again")
        _verify_once(path, entry["sha256"])
        try:
            table = pl.read_parquet(path, columns=columns)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(f"{path}: cannot be decoded ({_first_line(exc)}); the store is corrupt: ingest that "
                             "sample again") from exc
        if table.height != int(entry["n_sequences"]):
            raise StoreError(f"{path}: holds {table.height} sequences where the manifest says {entry['n_sequences']}; "
                             "the store is corrupt: ingest that sample again")
        return as_strings(table)

    def loci(self) -> list[str]:
        """The loci (TRB, IGH, ...) of the store's sequences: each file's `locus` column, or the
        first letters of its IMGT V/J calls (TRBV5-1 -> TRB); [] when the files say nothing."""
        found: set[str] = set()
        for sample_id in self.sample_ids:
            entry = self._entry(sample_id)
            path = self.path / entry["file"]
            if not path.is_file():
                raise StoreError(f"{path}: repertoire file missing from the store; ingest the data again")
            _verify_once(path, entry["sha256"])  # damage named as for any read (and hashed once per run)
            try:
                found |= table_loci(pl.scan_parquet(path))
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise StoreError(f"{path}: cannot be decoded ({_first_line(exc)}); the store is corrupt: ingest "
                                 "that sample again") from exc
        return sorted(found)

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
        for sample_id in self.sample_ids:
            yield sample_id, self.read(sample_id, columns)

    def records(self) -> list[SampleRecord]:
        """The per-sample records, as `combine` needs them to copy samples into another store."""
        entries = {e["sample_id"]: e for e in self.manifest["samples"]}
        result = []
        for row in self.samples.iter_rows(named=True):
            entry = entries[row["sample_id"]]
            result.append(SampleRecord(
                sample_id=row["sample_id"],
                labels={c: row[c] for c in self.label_columns},
                n_sequences=row["n_sequences"], n_templates=row["n_templates"], rows_read=row["rows_read"],
                dropped={reason: row[f"dropped_{reason}"] for reason in DROP_REASONS},
                source_file=row["source_file"], source_sha256=row["source_sha256"],
                source_format=row["source_format"], file=entry["file"], sha256=entry["sha256"],
                unresolved_genes=row.get("unresolved_genes") or 0,
                unresolved_gene_examples=row.get("unresolved_gene_examples") or "",
                counts_from=row.get("counts_from") or "",
            ))
        return result

    def verify(self) -> None:
        """Check every repertoire file against the checksum in the manifest."""
        for entry in self.manifest["samples"]:
            path = self.path / entry["file"]
            if not path.exists():
                raise StoreError(f"{path}: repertoire file missing from the store")
            _verify_once(path, entry["sha256"])
