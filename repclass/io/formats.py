"""Recognising repertoire files: compression, separator, and which column holds what.

Every supported export (AIRR rearrangement TSV, Adaptive immuneACCESS v1/v2, MiXCR clone
tables, 10x Genomics contig tables, VDJtools) is read through the same canonical names:
`junction_aa`, `junction_nt`, `count`, `v_call`, `j_call`, `productive`, `locus`. This module
only looks at the first bytes of a file; reading the rows is `reader.py`'s job.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from repclass.errors import InputFileError, shorten

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Spellings of "no value" met in the wild; read as null in every column.
NULL_VALUES = ["", "NA", "na", "N/A", "nan", "NaN", "null", "NULL", "None", "none",
               "unresolved", "unknown", "no data"]

#: Junction conventions: "junction" keeps the conserved C and F/W, "cdr3" is without them.
CONVENTIONS = ("junction", "cdr3")

# Candidate columns in order of preference (the first present wins).
JUNCTION_AA_COLUMNS = ["junction_aa", "amino_acid", "aminoAcid", "aaSeqCDR3", "cdr3aa", "CDR3.aa",
                       "cdr3_aa"]
#: 10x contig tables call the amino-acid junction `cdr3`; in AIRR files `cdr3` is nucleotides.
TENX_JUNCTION_AA_COLUMN = "cdr3"
#: Columns whose amino acids exclude the conserved C and F/W anchors.
CDR3_CONVENTION_COLUMNS = {"cdr3_aa"}
JUNCTION_NT_COLUMNS = ["junction", "nSeqCDR3", "cdr3nt", "cdr3_nt", "CDR3.nt"]
COUNT_COLUMNS = ["duplicate_count", "umi_count", "consensus_count", "templates",
                 "count (templates/reads)", "count (templates)", "count (reads)", "count",
                 "cloneCount", "readCount", "uniqueMoleculeCount", "umis", "reads"]
V_COLUMNS = ["v_call", "v_gene", "vGeneName", "v_resolved", "vMaxResolved", "allVHitsWithScore", "bestVHit",
             "bestVGene", "allVHits", "v"]
J_COLUMNS = ["j_call", "j_gene", "jGeneName", "j_resolved", "jMaxResolved", "allJHitsWithScore", "bestJHit",
             "bestJGene", "allJHits", "j"]
PRODUCTIVE_COLUMNS = ["productive", "frame_type", "sequenceStatus"]
LOCUS_COLUMNS = ["locus", "chain"]
#: Kept in the store so that outputs join back to the user's rearrangements (AIRR fields).
SEQUENCE_ID_COLUMNS = ["sequence_id", "contig_id", "cloneId"]
C_COLUMNS = ["c_call", "c_gene", "bestCHit", "allCHitsWithScore"]
#: 10x contig tables: the cell barcode and the flags of trusted contigs. A 10x table is counted in
#: cells (one per barcode and clonotype), never in UMIs or reads.
TENX_COLUMNS = ("barcode", "is_cell", "high_confidence")
#: Never used as counts, whatever else a file lacks. A file with none of COUNT_COLUMNS but one of
#: these (first present wins) gets counts derived from its frequencies (reader.py,
#: `counts_from_frequencies`), as many public exports carry frequencies only.
FREQUENCY_COLUMN_ORDER = ["frequency", "productive_frequency", "freq", "cloneFraction"]
FREQUENCY_COLUMNS = set(FREQUENCY_COLUMN_ORDER)

# How many decompressed bytes to look at when sniffing the header.
_SNIFF_BYTES = 1 << 16


#: The `repclass ingest` option that names each column ColumnOverrides can set (locus: none).
OVERRIDE_OPTIONS = {"junction_aa": "--junction-column", "count": "--count-column", "v_call": "--v-column",
                    "j_call": "--j-column", "productive": "--productive-column"}


@dataclass(frozen=True)
class ColumnOverrides:
    """Column names given by the user for the rare file that defeats detection."""

    junction_aa: str | None = None
    count: str | None = None
    v_call: str | None = None
    j_call: str | None = None
    productive: str | None = None
    locus: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class FileLayout:
    """What sniffing found out about one repertoire file."""

    path: Path
    compression: str  # "none", "gzip" or "zstd"
    separator: str
    format_name: str
    header: list[str]
    # canonical name -> column name in the file
    columns: dict[str, str] = field(default_factory=dict)
    #: "junction" (with the conserved C and F/W) or "cdr3" (without them)
    convention: str = "junction"
    #: 1-based line number of the header (data row i, 0-based, is on line header_line + 1 + i)
    header_line: int = 1

    @property
    def productive_kind(self) -> str | None:
        """How the productive column encodes its value: 'bool' (T/F) or 'frame' (In/Out/Stop)."""
        name = self.columns.get("productive")
        if name is None:
            return None
        return "frame" if name in ("frame_type", "sequenceStatus") else "bool"


def detect_compression(path: Path) -> str:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def _head_bytes(path: Path, compression: str) -> bytes:
    """The first decompressed bytes of a file, for sniffing only."""
    try:
        if compression == "gzip":
            with gzip.open(path, "rb") as handle:
                return handle.read(_SNIFF_BYTES)
        if compression == "zstd":
            import zstandard

            with open(path, "rb") as raw:
                reader = zstandard.ZstdDecompressor().stream_reader(raw)
                return reader.read(_SNIFF_BYTES)
        with open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(path, f"cannot decompress {compression} data ({exc}); "
                                   "the file is corrupt or truncated: copy it again") from exc
    except Exception as exc:  # zstandard.ZstdError has no common base we can name without importing
        raise InputFileError(path, f"cannot decompress {compression} data ({exc}); "
                                   "the file is corrupt or truncated: copy it again") from exc


def _first_line(head: bytes, path: Path) -> tuple[str, int]:
    text = head.decode("utf-8", errors="replace")
    for number, line in enumerate(io.StringIO(text), start=1):
        if line.strip():
            return line.rstrip("\r\n"), number
    raise InputFileError(path, "the file is empty: expected a header row and repertoire rows")


def _pick(header: list[str], candidates: list[str]) -> str | None:
    present = set(header)
    for name in candidates:
        if name in present:
            return name
    return None


def _format_name(header: set[str]) -> str:
    if {"aaSeqCDR3", "allVHitsWithScore", "allVHits", "cloneCount"} & header:
        return "mixcr"
    if "amino_acid" in header and ({"templates", "frame_type", "rearrangement"} & header):
        return "adaptive_v2"
    if "aminoAcid" in header:
        return "adaptive_v1"
    if "cdr3" in header and "chain" in header and ({"barcode", "contig_id"} & header):
        return "10x_contigs"
    if "cdr3aa" in header and "cdr3nt" in header:
        return "vdjtools"
    if {"junction_aa", "junction", "cdr3_aa"} & header:
        return "airr"
    return "generic"


def sniff(path: str | Path, overrides: ColumnOverrides | None = None) -> FileLayout:
    """Look at a file's first bytes and decide how to read it.

    Raises InputFileError for a missing or unreadable file and for a header with no junction
    column (the message lists the columns seen and the names accepted).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected a repertoire file")
    compression = detect_compression(path)
    head = _head_bytes(path, compression)
    if not head.strip() and compression != "none":
        raise InputFileError(path, f"the {compression} data decompresses to nothing: the file is truncated, corrupt or "
                                   "empty; copy it again")
    line, line_number = _first_line(head, path)
    separator = "\t" if line.count("\t") >= line.count(",") else ","
    # Quoted headers (some R exports quote every field) are read with the quotes removed.
    raw_header = [name.strip().strip('"') for name in line.split(separator)]
    header = list(raw_header)
    if header and header[0].startswith("#"):  # VDJtools writes "#count"
        header[0] = header[0].lstrip("#")
    overrides = overrides or ColumnOverrides()
    format_name = _format_name(set(header))
    junction_candidates = JUNCTION_AA_COLUMNS
    if format_name == "10x_contigs":
        junction_candidates = [TENX_JUNCTION_AA_COLUMN, *JUNCTION_AA_COLUMNS]

    columns: dict[str, str] = {}
    tenx = format_name == "10x_contigs"
    for canonical, candidates in (
        ("junction_aa", junction_candidates),
        ("junction_nt", JUNCTION_NT_COLUMNS),
        ("count", [] if tenx else COUNT_COLUMNS),  # 10x: cells are counted (see TENX_COLUMNS)
        ("v_call", V_COLUMNS),
        ("j_call", J_COLUMNS),
        ("productive", PRODUCTIVE_COLUMNS),
        ("locus", LOCUS_COLUMNS),
        ("sequence_id", SEQUENCE_ID_COLUMNS),
        ("c_call", C_COLUMNS),
    ):
        chosen = getattr(overrides, canonical, None)
        if chosen is not None:
            if chosen not in header:
                given = f"given with {OVERRIDE_OPTIONS[canonical]}" if canonical in OVERRIDE_OPTIONS else \
                    f"given as the {canonical} column"
                raise InputFileError(path, f"column {chosen!r} {given} is not in the header; columns seen: "
                                           f"{', '.join(header)}", line=line_number)
            columns[canonical] = chosen
            continue
        found = _pick(header, candidates)
        if found is not None:
            columns[canonical] = found
    if tenx:
        columns.update({name: name for name in TENX_COLUMNS if name in header})
    elif "count" not in columns and (frequency := _pick(header, FREQUENCY_COLUMN_ORDER)) is not None:
        columns["frequency"] = frequency
    # Map back to the names as the reader sees them (with VDJtools' leading '#').
    to_raw = dict(zip(header, raw_header))
    # AIRR files that carry vj_in_frame/stop_codon but no productive column.
    if "productive" not in columns and "vj_in_frame" in header:
        columns["vj_in_frame"] = "vj_in_frame"
        if "stop_codon" in header:
            columns["stop_codon"] = "stop_codon"
    columns = {canonical: to_raw[name] for canonical, name in columns.items()}
    if columns.get("count") in FREQUENCY_COLUMNS:
        raise InputFileError(path, f"column {columns['count']!r} holds frequencies, not counts; "
                                   f"give a count column with {OVERRIDE_OPTIONS['count']} or none at all")

    if "junction_aa" not in columns and "junction_nt" not in columns:
        raise InputFileError(
            path,
            f"no junction column in the header; columns seen: {shorten(', '.join(header))}; names accepted: "
            f"{', '.join(JUNCTION_AA_COLUMNS + JUNCTION_NT_COLUMNS)}; "
            f"name the column with {OVERRIDE_OPTIONS['junction_aa']}",
            line=line_number,
        )
    junction_name = columns.get("junction_aa")
    convention = "cdr3" if junction_name in CDR3_CONVENTION_COLUMNS else "junction"
    return FileLayout(
        path=path,
        compression=compression,
        separator=separator,
        format_name=format_name,
        header=header,
        columns=columns,
        convention=convention,
        header_line=line_number,
    )

