"""Reading one repertoire file into the store's normalised table.

Rows are read by polars (never line by line in Python) and normalised:
junction amino acids upper-cased and checked against the 20-letter alphabet, the junction
convention checked, productive-only and locus filters applied, counts parsed (missing -> 1; a
file with frequencies but no counts gets counts from its frequencies, `counts_from_frequencies`),
V/J calls mapped to IMGT names, and identical (junction_aa, v_call, j_call) rows merged by
summing their counts. Every dropped row is counted under one reason.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from repclass.alphabet import AMINO_ACIDS, INVALID_RESIDUE_PATTERN
from repclass.errors import InputFileError, UsageError, excerpt
from repclass.io.formats import CONVENTIONS, NULL_VALUES, ColumnOverrides, FileLayout, sniff
from repclass.io.genes import LOCI, normalise_gene
from repclass.io.store import DROP_REASONS, OPTIONAL_STORE_COLUMNS, STORE_COLUMNS

log = logging.getLogger(__name__)


#: The largest clone count accepted: about the number of T cells in a human body. Larger
#: values are damage (an overflowed export), and they could wrap the 64-bit template sums.
MAX_COUNT = 10**12
#: The longest junction the store holds: lengths are kept as uint16 when repertoires are encoded.
MAX_JUNCTION_LENGTH = 65_535

_NULLS = set(NULL_VALUES)
_NUCLEOTIDES = re.compile(r"[ACGTUNRYKMSWBDHV]*")
_TRUE = {"t", "true", "1", "yes", "y", "in"}
_FALSE = {"f", "false", "0", "no", "n", "out", "stop"}


@dataclass(frozen=True)
class ReadOptions:
    """How rows are filtered and normalised; the same for every file of a store."""

    productive_only: bool = True
    locus: str | None = None
    #: "auto" keeps each file's own convention; "cdr3" strips the anchors from junctions.
    convention: str = "auto"
    #: In the junction convention, keep only junctions that start with C and end with F or W.
    anchor_check: bool = True
    overrides: ColumnOverrides = field(default_factory=ColumnOverrides)
    #: 10x contig tables: keep only contigs of cells (`is_cell`) and `high_confidence` ones.
    cells_only: bool = True
    high_confidence_only: bool = True

    def __post_init__(self) -> None:
        if self.convention not in ("auto", *CONVENTIONS):
            raise UsageError(f"unknown junction convention {self.convention!r}; use auto, junction or cdr3")
        if self.locus is not None and self.locus not in LOCI:
            raise UsageError(f"unknown locus {self.locus!r}; use one of {', '.join(LOCI)}")


@dataclass
class RepertoireRead:
    """One file's normalised rows and what happened to the others."""

    table: pl.DataFrame
    layout: FileLayout
    convention: str
    rows_read: int
    dropped: dict[str, int]
    #: Gene calls that are not IMGT human gene names, as written -> kept rows holding them. Those
    #: rows are kept without the call (None); the ingest summary reports them per sample.
    unresolved_genes: dict[str, int] = field(default_factory=dict)

    @property
    def counts_from(self) -> str | None:
        """The frequency column the counts were derived from (`counts_from_frequencies`), if any."""
        return self.layout.columns.get("frequency") if "count" not in self.layout.columns else None

    @property
    def n_unresolved_rows(self) -> int:
        return self.unresolved_genes.get("", 0)

    @property
    def n_sequences(self) -> int:
        return self.table.height

    @property
    def n_templates(self) -> int:
        return int(self.table["duplicate_count"].sum()) if self.table.height else 0


def _translate_unique(values: list[str]) -> dict[str, str]:
    """Nucleotide junctions to amino acids; out-of-frame ones become '_' (dropped as invalid)."""
    from Bio.Seq import Seq

    table = {}
    for nt in values:
        nt_clean = nt.strip().upper()
        # Out of frame, or not nucleotides at all (a shuffled column): '_', dropped as invalid.
        if len(nt_clean) % 3 or not _NUCLEOTIDES.fullmatch(nt_clean):
            table[nt] = "_"
        else:
            table[nt] = str(Seq(nt_clean).translate())
    return table


class _DistinctValues:
    """A low-cardinality column (gene calls, locus) handled once per distinct value: `function`
    is applied to each distinct value (null spellings -> null) and the results are spread back to
    the rows through one look-up of each row's value (an Enum cast), instead of matching strings
    per row once for the mapping and again for the rows the mapping fails."""

    def __init__(self, series: pl.Series, function: Callable[[str], str | None]) -> None:
        self.series = series
        self.values = series.drop_nulls().unique().to_list()
        self.mapped: list[str | None] = []
        #: written (not a null spelling) but `function` gives None: an unresolved gene call
        self.failed: list[bool] = []
        for value in self.values:
            written = value.strip() not in _NULLS
            result = function(value) if written else None
            self.mapped.append(result)
            self.failed.append(written and result is None)
        self._codes: pl.Series | None = None

    @property
    def codes(self) -> pl.Series:
        """Each row's index into `values` (UInt32; null where the row is null)."""
        if self._codes is None:
            self._codes = self.series.cast(pl.Enum(self.values)).to_physical()
        return self._codes

    def _spread(self, per_value: list, dtype: pl.DataType) -> pl.Series:
        return pl.Series(self.series.name, per_value, dtype=dtype).gather(self.codes)

    def result(self, dtype: pl.DataType = pl.String) -> pl.Series:
        """The column with `function` applied, as `dtype` (String: the column itself when nothing
        changes; Categorical: built from the codes without making a string per row)."""
        if dtype == pl.String and all(k == v for k, v in zip(self.values, self.mapped)):
            return self.series
        return self._spread(self.mapped, dtype)

    def failed_counts(self, keep: pl.Series) -> tuple[pl.Series | None, dict[str, int]]:
        """The kept rows whose value `function` failed on (None when none), and {value as written,
        stripped: kept rows with it}, counted on the codes instead of the strings."""
        rows = self.failed_rows()
        if rows is None:
            return None, {}
        rows = rows & keep
        counts: dict[str, int] = {}
        for code, n in self.codes.filter(rows).value_counts(name="n").iter_rows():
            name = self.values[code].strip()
            counts[name] = counts.get(name, 0) + n
        return (rows if counts else None), counts

    def failed_rows(self) -> pl.Series | None:
        """Rows whose value was written but `function` gave None; None when there are none."""
        if not any(self.failed):
            return None
        return self._spread(self.failed, pl.Boolean).fill_null(False)

    def distinct_results(self) -> set[str]:
        """The distinct non-null values of `result()`."""
        return {value for value in self.mapped if value is not None}


def _count_unresolved(genes: dict[str, _DistinctValues], keep: pl.Series) -> dict[str, int]:
    """{name as written: kept rows with it}, most frequent first, and "" -> kept rows with any."""
    rows: pl.Series | None = None
    counts: dict[str, int] = {}
    for values in genes.values():
        hit, named = values.failed_counts(keep)
        if hit is None:
            continue
        rows = hit if rows is None else rows | hit
        for name, n in named.items():
            counts[name] = counts.get(name, 0) + n
    if rows is None:
        return {}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"": int(rows.sum()), **dict(ordered)}


def _flag_is(df: pl.DataFrame, column: str, layout: FileLayout, wanted: bool) -> pl.Series:
    """Rows whose boolean-ish flag (T/F, True/False, 1/0, In/Out/Stop) is `wanted`; null never is.

    The spellings are checked once per distinct value, not per row.
    """
    raw = df[column]
    matching = []
    for value in raw.drop_nulls().unique().to_list():
        key = value.strip().lower()
        if value.strip() in _NULLS:
            continue
        if key in _TRUE or key in _FALSE:
            if (key in _TRUE) == wanted:
                matching.append(value)
            continue
        row = int((raw == value).arg_true()[0])
        raise InputFileError(layout.path, f"column {layout.columns[column]!r} has {value!r}; expected "
                                          "T/F, True/False, 1/0 or In/Out/Stop", line=layout.header_line + 1 + row)
    return raw.is_in(matching).fill_null(False)


def _counts_fit(values: pl.Series) -> bool:
    return (values.min() or 0) >= 0 and (values.max() or 0) <= MAX_COUNT


def counts_from_frequencies(frequencies: pl.Series, layout: FileLayout) -> pl.Series:
    """Clone counts for a file that has frequencies but no counts.

    Each frequency is divided by the smallest non-zero frequency of the file and rounded, so a
    clone at the file's smallest frequency counts 1 and the others count in its units (an
    export of frequencies only has usually divided counts by the depth: this gives the counts
    back, to rounding, when the smallest clone was a singleton). A non-zero frequency never rounds
    to 0; a zero frequency is a zero count (dropped as `zero_count`); a missing one counts 1.
    Negative, non-numeric or NaN frequencies are refused with their line.
    """
    raw = frequencies.cast(pl.String).str.strip_chars()
    is_null = raw.is_null() | raw.is_in([v for v in NULL_VALUES if v.lower() != "nan"])
    parsed = pl.select(pl.when(is_null).then(None).otherwise(raw)).to_series().cast(pl.Float64, strict=False)
    bad = (~is_null & (parsed.is_null() | parsed.is_nan() | parsed.is_infinite())) | (parsed < 0)
    if bad.any():
        row = int(bad.arg_true()[0])
        problem = "is negative" if parsed[row] is not None and parsed[row] < 0 else "is not a number"
        raise InputFileError(layout.path, f"frequency {excerpt(frequencies[row])} in column "
                                          f"{excerpt(layout.columns['frequency'])} {problem}; frequencies must be "
                                          "non-negative numbers (fix the row, or give a count column with "
                                          "--count-column)", line=layout.header_line + 1 + row)
    smallest = parsed.filter(parsed > 0).min()
    if smallest is None:  # no clone with a frequency: every present row counts 1
        return pl.select(pl.when(parsed == 0).then(0).otherwise(1)).to_series().cast(pl.Int64).alias("count")
    units = (parsed / smallest).round(0).clip(lower_bound=1.0, upper_bound=float(MAX_COUNT))
    return (pl.select(pl.when(parsed.is_null()).then(1.0).when(parsed == 0).then(0.0).otherwise(units))
            .to_series().cast(pl.Int64).alias("count"))


def _parse_counts(df: pl.DataFrame, layout: FileLayout) -> pl.Series:
    if "count" not in df.columns:
        if "frequency" in df.columns:
            return counts_from_frequencies(df["frequency"], layout)
        return pl.repeat(1, df.height, dtype=pl.Int64, eager=True).alias("count")
    raw = df["count"]
    if raw.dtype == pl.Int64:  # read as integers: only the range is left to check
        if _counts_fit(raw):
            return raw.fill_null(1).alias("count")
        raw = raw.cast(pl.String)
    as_int = raw.str.strip_chars().str.to_integer(strict=False)
    if as_int.null_count() == raw.null_count() and _counts_fit(as_int):
        return as_int.fill_null(1).alias("count")  # the common case: whole numbers
    # Null spellings mean "one clone", but NaN is refused: it is what a failed computation
    # writes, and reading it as 1 would hide that.
    stripped = raw.str.strip_chars()
    is_null = stripped.is_in([v for v in NULL_VALUES if v.lower() != "nan"])
    raw = pl.select(pl.when(is_null).then(None).otherwise(raw)).to_series()
    parsed = raw.str.strip_chars().cast(pl.Float64, strict=False)
    bad = (raw.is_not_null() & (parsed.is_null() | parsed.is_nan() | parsed.is_infinite())) | (parsed < 0) \
        | (parsed > MAX_COUNT)
    if bad.any():
        row = int(bad.arg_true()[0])
        value = raw[row]
        number = parsed[row]
        problem = ("is negative" if number is not None and number < 0 else
                   f"is larger than any clone can be (at most {MAX_COUNT:.0e})" if number is not None
                   and number > MAX_COUNT and number != float("inf") else "is not a number")
        raise InputFileError(layout.path, f"count {excerpt(value)} in column {excerpt(layout.columns['count'])} "
                                          f"{problem}; counts must be non-negative numbers (fix the row or give "
                                          "another column with --count-column)", line=layout.header_line + 1 + row)
    # Missing counts mean one clone; fractional counts (MiXCR) round to the nearest whole one, but a
    # present clone never rounds to zero.
    filled = parsed.fill_null(1.0)
    rounded = filled.round(0)
    return (pl.select(pl.when(filled > 0).then(rounded.clip(lower_bound=1.0)).otherwise(rounded))
            .to_series().cast(pl.Int64).alias("count"))


def _read_columns(layout: FileLayout, skip: set[str] = frozenset(), typed_counts: bool = True) -> pl.DataFrame:
    """The file's rows, only the mapped columns, under canonical names.

    Everything is read as strings except the count column, which is first tried as integers
    (much cheaper to parse); a file whose counts are not all whole numbers is read again with
    counts as strings, so that `_parse_counts` can name the offending row.
    """
    # Null spellings ("NA", "None", "unresolved", ...) are not given to the CSV reader: matching
    # them on every field of every row costs more than the whole parse. Each column deals with
    # them where it is cheap (distinct values, or only the rows that fail a check).
    wanted = {canonical: name for canonical, name in layout.columns.items() if canonical not in skip}
    count_column = wanted.get("count")
    # Counts are typed only when no other role reads the same column (--junction-column naming the
    # count column would otherwise hand integers to the string checks).
    shared = count_column is not None and list(wanted.values()).count(count_column) > 1
    overrides = {count_column: pl.Int64} if typed_counts and count_column and not shared else None
    try:
        frame = pl.scan_csv(
            layout.path,
            separator=layout.separator,
            has_header=True,
            skip_rows=layout.header_line - 1,
            infer_schema=False,
            schema_overrides=overrides,
            quote_char='"',
        )
        return frame.select([pl.col(name).alias(canonical) for canonical, name in wanted.items()]).collect()
    except OSError as exc:
        raise InputFileError(layout.path, f"cannot read {layout.compression} data ({exc}); "
                                          "the file is corrupt or truncated: copy it again") from exc
    except pl.exceptions.ComputeError as exc:
        if overrides:
            return _read_columns(layout, skip, typed_counts=False)
        raise _parse_error(layout, exc) from exc
    except pl.exceptions.PolarsError as exc:
        raise _parse_error(layout, exc) from exc


def _parse_error(layout: FileLayout, exc: Exception) -> InputFileError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "utf-8" in first_line.lower() or "utf8" in first_line.lower():
        line = _first_non_utf8_line(layout)
        return InputFileError(layout.path, "is not UTF-8 text (Latin-1 or another legacy encoding?); convert it, "
                                           "e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`", line=line)
    return InputFileError(layout.path, f"cannot parse the table ({excerpt(first_line, 120)}); check that every row "
                                       "has as many fields as the header")


def _first_non_utf8_line(layout: FileLayout) -> int | None:
    """The number of the first line that is not valid UTF-8 (streamed; only on the error path)."""
    import gzip
    import io

    try:
        if layout.compression == "gzip":
            handle = gzip.open(layout.path, "rb")
        elif layout.compression == "zstd":
            import zstandard

            handle = zstandard.ZstdDecompressor().stream_reader(open(layout.path, "rb"), closefd=True)
        else:
            handle = open(layout.path, "rb")
        with handle:
            buffered = handle if layout.compression == "none" else io.BufferedReader(handle)
            for number, line in enumerate(buffered, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except Exception:  # noqa: BLE001 - only for a better message; the caller reports the file anyway
        return None
    return None


def read_repertoire(path: str | Path, options: ReadOptions | None = None) -> RepertoireRead:
    """Read and normalise one repertoire file.

    Returns the merged table (junction_aa, v_call, j_call, duplicate_count and the optional AIRR
    fields, in the store's column types: gene calls and locus Categorical), sorted so that the
    same input always gives the same rows in the same order, with the count of rows read and
    dropped per reason.
    """
    options = options or ReadOptions()
    layout = sniff(path, options.overrides)
    convention = layout.convention if options.convention == "auto" else options.convention
    if layout.convention == "cdr3" and convention == "junction":
        raise UsageError(f"{layout.path}: column {layout.columns['junction_aa']!r} holds CDR3s without the "
                         "conserved anchors; they cannot be turned into junctions: ingest with --convention cdr3 "
                         "(a model trained on junctions cannot score them)")
    # Columns that no option asks for are not parsed at all.
    unused = set()
    if not options.cells_only:
        unused.add("is_cell")
    if not options.high_confidence_only:
        unused.add("high_confidence")
    if not options.productive_only:
        unused |= {"productive", "vj_in_frame", "stop_codon"}
    df = _read_columns(layout, skip=unused)
    rows_read = df.height

    junction = df["junction_aa"] if "junction_aa" in df.columns else pl.repeat(None, rows_read, dtype=pl.String,
                                                                                eager=True)
    if "junction_nt" in df.columns:
        needs = (junction.is_null() | junction.is_in(NULL_VALUES)) & df["junction_nt"].is_not_null()
        if needs.any():
            todo = df["junction_nt"].filter(needs).unique().to_list()
            translated = df["junction_nt"].replace_strict(_translate_unique(todo), default=None,
                                                          return_dtype=pl.String)
            junction = pl.select(pl.when(needs).then(translated).otherwise(junction)).to_series()
    anchored = layout.convention == "junction" and (options.anchor_check or convention == "cdr3")
    junction, junction_reason = _check_junctions(junction.alias("junction_aa"), anchored)

    flags: dict[str, pl.Series] = {"missing_junction": junction_reason == 1}
    # 10x: contigs of barcodes that are not cells, and low-confidence contigs, are not trusted
    if "is_cell" in df.columns:
        flags["not_cell"] = _flag_is(df, "is_cell", layout, False)
    if "high_confidence" in df.columns:
        flags["low_confidence"] = _flag_is(df, "high_confidence", layout, False)
    if options.productive_only:
        # A missing flag counts as productive: many exports leave it out.
        if "productive" in df.columns:
            flags["non_productive"] = _flag_is(df, "productive", layout, False)
        elif "vj_in_frame" in df.columns:
            flags["non_productive"] = _flag_is(df, "vj_in_frame", layout, False)
            if "stop_codon" in df.columns:
                flags["non_productive"] = flags["non_productive"] | _flag_is(df, "stop_codon", layout, True)
    no_calls = pl.repeat(None, rows_read, dtype=pl.Categorical, eager=True)
    genes = {column: _DistinctValues(df[column], normalise_gene) for column in ("v_call", "j_call", "c_call")
             if column in df.columns}
    v_call = genes["v_call"].result(pl.Categorical) if "v_call" in genes else no_calls
    j_call = genes["j_call"].result(pl.Categorical) if "j_call" in genes else no_calls
    c_call = genes["c_call"].result(pl.Categorical) if "c_call" in genes else None
    loci = _DistinctValues(df["locus"], lambda value: value.strip().upper()) if "locus" in df.columns else None
    locus = loci.result() if loci is not None else None
    if options.locus is not None:
        if locus is None:  # inferred from the IMGT gene names (TRBV5-1 -> TRB)
            locus = v_call.cast(pl.String).str.slice(0, 3).fill_null(j_call.cast(pl.String).str.slice(0, 3))
        flags["locus"] = locus.fill_null("") != options.locus
    flags["invalid_residue"] = junction_reason == 2
    flags["no_anchor"] = junction_reason == 3
    counts = _parse_counts(df, layout)
    flags["zero_count"] = counts == 0

    # Each dropped row counts under the first reason that applies.
    dropped = {name: 0 for name in DROP_REASONS}
    keep = pl.repeat(True, rows_read, eager=True)
    for name in DROP_REASONS:
        if name in flags:
            hit = keep & flags[name]
            dropped[name] = int(hit.sum())
            keep = keep & ~hit

    # The kept rows are of one locus (checked here, or --locus): stored as that one value, added
    # after the merge (cheaper than carrying it through).
    file_locus = None
    if locus is not None:
        if loci is not None and len(loci.distinct_results()) <= 1:  # the common case: no filtering needed
            written = (keep & locus.is_not_null()).any()
            file_locus = options.locus or (next(iter(loci.distinct_results())) if written else None)
        else:
            if options.locus is None:
                _check_one_locus(locus.filter(keep), layout)
            file_locus = options.locus or next(iter(locus.filter(keep).drop_nulls().unique().to_list()), None)
    optional = {"c_call": c_call, "sequence_id": df["sequence_id"] if "sequence_id" in df.columns else None}
    kept = pl.DataFrame({"junction_aa": junction, "v_call": v_call, "j_call": j_call, "duplicate_count": counts,
                         **{name: values for name, values in optional.items() if values is not None}})
    # the rows still to drop; None once none are (the merge drops them in its own pass)
    pending: pl.Series | None = None if keep.all() else keep
    if "barcode" in df.columns and "count" not in df.columns:
        # 10x contigs: a clonotype counts once per cell, however many contigs (or UMIs) the cell
        # has for it (the cell's other contigs of it count 0, their ids are still kept); the
        # merge below then sums cells.
        barcodes = df["barcode"]
        if pending is not None:
            kept, barcodes, pending = kept.filter(pending), barcodes.filter(pending), None
        first = pl.struct(barcodes, "junction_aa", "v_call", "j_call").is_first_distinct()
        kept = kept.with_columns(first.cast(pl.Int64).alias("duplicate_count"))
    if layout.convention == "junction" and convention == "cdr3":
        kept = kept.with_columns(pl.col("junction_aa").str.slice(1, pl.col("junction_aa").str.len_bytes() - 2))
    _check_lengths(junction, keep, layout)
    table = _merge_identical(kept, pending)
    if locus is not None:
        table = table.with_columns(pl.lit(file_locus, dtype=pl.String).cast(pl.Categorical).alias("locus"))
    table = table.select([pl.col(name).cast(dtype) for name, dtype in {**STORE_COLUMNS, **OPTIONAL_STORE_COLUMNS}.items()
                          if name in table.columns])
    if table.height and table["duplicate_count"].cast(pl.Float64).sum() >= 2.0**62:
        raise InputFileError(layout.path, "the clone counts add up to more than 2^62 templates; the count column "
                                          f"{excerpt(layout.columns.get('count', ''))} is damaged: fix the file or "
                                          "give another column with --count-column")
    unresolved_genes = _count_unresolved(genes, keep)
    if "frequency" in df.columns and "count" not in df.columns:
        log.debug("%s: no count column; counts derived from the frequencies in column %r (frequency / the "
                  "file's smallest non-zero frequency, rounded, at least 1)", layout.path, layout.columns["frequency"])
    if unresolved_genes:
        log.warning("%s: %d kept rows have a gene call that is not an IMGT human gene name, kept without the "
                    "call (%s)", layout.path, unresolved_genes[""], unresolved_examples(unresolved_genes))
    return RepertoireRead(table=table, layout=layout, convention=convention, rows_read=rows_read, dropped=dropped,
                          unresolved_genes=unresolved_genes)


def unresolved_examples(unresolved_genes: dict[str, int], limit: int = 3) -> str:
    """`TRBV99-1 x12; TRBVXX-XX x3` (the most frequent unresolved names)."""
    # as written, but on one line of samples.tsv (no tabs, newlines or quotes)
    names = [(" ".join(name.replace('"', "'").split()), n) for name, n in unresolved_genes.items() if name]
    shown = "; ".join(f"{name} x{n}" for name, n in names[:limit])
    return shown + (f"; and {len(names) - limit} more" if len(names) > limit else "")


def _check_one_locus(locus: pl.Series, layout: FileLayout) -> None:
    """Refuse a file whose kept rows come from several loci: a repertoire is one receptor chain,
    and TRA and TRB junctions in one bag would be scored as one repertoire."""
    if locus.drop_nulls().n_unique() > 1:
        counts = locus.drop_nulls().value_counts(name="n").sort(["n", locus.name], descending=[True, False]).rows()
        counted = ", ".join(f"{value} {n}" for value, n in counts)
        suggestion = next((value for value, _ in counts if value in LOCI), "TRB")
        raise InputFileError(layout.path, f"holds rearrangements of several loci (column "
                                          f"{excerpt(layout.columns['locus'])}: {counted}); a repertoire is one "
                                          f"locus: pass --locus {suggestion} (or run "
                                          "ingest once per locus, one store each)")


def _check_lengths(junction: pl.Series, keep: pl.Series | None, layout: FileLayout) -> None:
    """Refuse a kept junction (all when `keep` is None) longer than the store can encode (names the line)."""
    too_long = junction.str.len_bytes().fill_null(0) > MAX_JUNCTION_LENGTH
    too_long = too_long if keep is None else keep & too_long
    if too_long.any():
        row = int(too_long.arg_true()[0])
        raise InputFileError(layout.path, f"junction of {junction.str.len_bytes()[row]} residues (starting "
                                          f"{excerpt(junction[row][:20])}); junctions longer than "
                                          f"{MAX_JUNCTION_LENGTH} residues are not CDR3s: fix or remove the row",
                             line=layout.header_line + 1 + row)


_VALID = f"^[{AMINO_ACIDS}]+$"
_VALID_ANCHORED = f"^C[{AMINO_ACIDS}]*[FW]$"


def _check_junctions(junction: pl.Series, anchored: bool) -> tuple[pl.Series, pl.Series]:
    """Normalised junctions and a reason code per row (0 ok, 1 missing, 2 invalid residue, 3 no anchor).

    One regular-expression pass over all rows; only rows failing it are upper-cased, trimmed
    and looked at again (nearly all rows of a real export pass as they are).
    """
    pattern = _VALID_ANCHORED if anchored else _VALID
    ok = junction.str.contains(pattern).fill_null(False)
    if not anchored:  # "NA" and "NONE" are amino acids too
        ok = ok & ~junction.is_in(NULL_VALUES)
    reason = pl.zeros(len(junction), dtype=pl.UInt8, eager=True)
    if ok.all():
        return junction, reason
    failed = (~ok).arg_true()
    normalised = junction.gather(failed).str.strip_chars()
    normalised = pl.select(pl.when(normalised.is_in(NULL_VALUES)).then(None).otherwise(normalised.str.to_uppercase())
                           ).to_series()
    fixed = normalised.str.contains(pattern).fill_null(False)
    if fixed.any():
        junction = junction.scatter(failed.filter(fixed), normalised.filter(fixed))
    rest = normalised.filter(~fixed)
    missing = rest.is_null() | (rest.str.len_bytes() == 0)
    invalid = rest.str.contains(INVALID_RESIDUE_PATTERN).fill_null(False)
    codes = pl.select(pl.when(missing).then(1).when(invalid).then(2).otherwise(3).cast(pl.UInt8)).to_series()
    reason = reason.scatter(failed.filter(~fixed), codes)
    return junction, reason


def _merge_identical(kept: pl.DataFrame, keep: pl.Series | None = None) -> pl.DataFrame:
    """Sum the counts of identical (junction_aa, v_call, j_call) rows, in order of first appearance;
    with `keep`, only of the rows it marks (the others are dropped in the same pass).

    A row whose 64-bit key hash no other row shares is a clonotype of its own and stays as it is.
    Only the rows that share a hash (nearly always true duplicates) are grouped, on the key columns
    themselves, so a hash collision can never merge two different clonotypes; each group's values
    go to its first row and its other rows are dropped.
    """
    keys = ["junction_aa", "v_call", "j_call"]
    if kept.height == 0:
        return kept
    # The junction's hash mixed with one of the gene calls' codes (the same call has the same code
    # within a process; codes are 32-bit, so v * 2^32 + j names the pair): cheaper than a struct hash.
    genes = pl.col("v_call").to_physical().cast(pl.UInt64) * (1 << 32) + pl.col("j_call").to_physical().cast(pl.UInt64)
    hashes = kept.select(pl.col("junction_aa").hash(seed=0) ^ genes.hash(seed=1)).to_series()
    live = hashes if keep is None else hashes.filter(keep)
    ordered = live.sort()  # a sort finds repeated hashes cheaper than is_duplicated's hash table
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.is_empty():
        return kept if keep is None else kept.filter(keep)
    shared = hashes.is_in(repeated.unique().implode())
    if keep is not None:
        shared = shared & keep
    extras = _merged_extras(kept.columns)
    groups = (kept.with_row_index("_row").filter(shared)
              .group_by(keys, maintain_order=True)
              .agg(pl.col("_row").first(), pl.col("_row").alias("_rows"), pl.col("duplicate_count").sum(), *extras))
    later = groups["_rows"].explode()
    survive = pl.repeat(True, kept.height, eager=True) if keep is None else keep.clone()  # scatter writes in place
    # (n_rows,): kept singles and each group's first row
    survive = survive.scatter(later, False).scatter(groups["_row"], True)
    table = kept.filter(survive)
    at = (survive.cast(pl.UInt32).cum_sum() - 1).gather(groups["_row"])  # the groups' rows in `table`
    return table.with_columns(table[c].scatter(at, groups[c].cast(table[c].dtype))
                              for c in ["duplicate_count", *[e.meta.output_name() for e in extras]])


def _merged_extras(columns: list[str]) -> list[pl.Expr]:
    """How a merged clonotype's optional AIRR fields combine: every sequence_id and the distinct
    C calls, comma-separated, in file order; null when none."""
    def joined(column: str, distinct: bool) -> pl.Expr:
        values = pl.col(column).cast(pl.String).drop_nulls()
        values = values.unique(maintain_order=True) if distinct else values
        text = values.str.join(",")
        return pl.when(text.str.len_bytes() > 0).then(text).otherwise(None).alias(column)

    rules = {"c_call": joined("c_call", True), "sequence_id": joined("sequence_id", False)}
    return [expression for column, expression in rules.items() if column in columns]
