"""The sample sheet: one row per repertoire, an id column, optionally a file column, and labels.

Labels are kept exactly as written (`+`/`-`, `True`, class names, numbers); what they mean is
decided when a model is trained on them (`targets.py`).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from repclass.errors import SheetError, excerpt
from repclass.io.formats import NULL_VALUES

ID_COLUMNS = ("sample_id", "repertoire_id", "sample", "sample_name", "id", "subject_id", "filename", "file")
FILE_COLUMNS = ("file", "filename", "path", "file_path", "repertoire_file")
#: The longest sample id, in UTF-8 bytes: it names the repertoire's file (`<id>.parquet` in a
#: store, `<id>.tsv.gz` in a simulated cohort), and file systems take names of at most 255 bytes.
MAX_ID_BYTES = 200
#: Suffixes stripped from file names when matching them to sample ids.
_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd", ".tsv", ".csv", ".txt", ".tab", ".airr")
_UNSTORABLE = re.compile(r'["\x00-\x1f\x7f]')
REPERTOIRE_SUFFIXES = (".tsv", ".csv", ".txt", ".tab", ".gz", ".zst", ".zstd")


@dataclass(frozen=True)
class SheetRow:
    sample_id: str
    file: str | None
    labels: dict[str, str | None]
    line: int


@dataclass(frozen=True)
class SampleSheet:
    path: Path
    id_column: str
    file_column: str | None
    label_columns: list[str]
    rows: list[SheetRow]

    @property
    def ids(self) -> list[str]:
        return [row.sample_id for row in self.rows]

    def row(self, sample_id: str) -> SheetRow:
        for row in self.rows:
            if row.sample_id == sample_id:
                return row
        raise SheetError(self.path, f"no row for sample {sample_id!r}; ids in the sheet: {_listing(self.ids)}")


def file_stem(name: str) -> str:
    """`sample_01.tsv.gz` -> `sample_01`."""
    stem = Path(name).name
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                changed = True
    return stem


def _listing(values: list[str], limit: int = 10) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _check_column_names(path: Path, header: list[str], label_columns: list[str]) -> None:
    """A column named twice, or a label column named like a column the store writes itself
    (n_sequences, rows_read, dropped_*, source_file, ...), would clash in the store's samples.tsv."""
    from repclass.io.store import reserved_sample_columns

    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise SheetError(path, f"column {excerpt(repeated[0])} appears more than once in the header; rename one",
                         line=1)
    reserved = [c for c in label_columns if c in reserved_sample_columns()]
    if reserved:
        raise SheetError(path, f"column {excerpt(reserved[0])} has the name of a column the store writes itself "
                               f"({', '.join(reserved_sample_columns())}); rename it in the sheet (e.g. "
                               f"sheet_{reserved[0]})", line=1)


def _utf16(data: bytes) -> bool:
    """A UTF-16 file: its byte-order mark, or a NUL byte next to every ASCII character."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = data[:200]
    return len(head) >= 4 and head.count(b"\x00") >= len(head) // 3


def read_sheet(path: str | Path, id_column: str | None = None) -> SampleSheet:
    """Read a TSV/CSV sample sheet (separator sniffed from the header)."""
    path = Path(path)
    if not path.exists():
        raise SheetError(path, "no such sample sheet")
    if path.is_dir():
        raise SheetError(path, "is a folder; the first argument is the sample sheet (a TSV/CSV file), the "
                               "repertoire files or folders come after it")
    try:
        data = path.read_bytes()
        if _utf16(data):
            raise SheetError(path, "is UTF-16 text (as Excel's 'Unicode text' saves it); save it as UTF-8 (Excel: "
                                   "'CSV UTF-8'), or convert it: `iconv -f utf-16 -t utf-8 SHEET > SHEET.utf8`")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SheetError(path, "is not UTF-8 text (Latin-1 or another legacy encoding?); convert it, e.g. "
                               "`iconv -f latin1 -t utf-8 SHEET > SHEET.utf8`", line=line) from exc
    except OSError as exc:
        raise SheetError(path, f"cannot be read ({exc.strerror})") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise SheetError(path, "the sample sheet is empty; expected a header row and one row per repertoire")
    separator = "\t" if lines[0].count("\t") >= lines[0].count(",") else ","
    reader = csv.reader(lines, delimiter=separator)
    header = [name.strip() for name in next(reader)]
    if id_column is None:
        id_column = next((c for c in ID_COLUMNS if c in header), None)
        if id_column is None:
            raise SheetError(path, f"no sample id column; columns seen: {', '.join(header)}; names accepted: "
                                   f"{', '.join(ID_COLUMNS)}; or name it with --id-column", line=1)
    elif id_column not in header:
        raise SheetError(path, f"id column {id_column!r} is not in the header; columns seen: {', '.join(header)}",
                         line=1)
    file_column = next((c for c in FILE_COLUMNS if c in header and c != id_column), None)
    if id_column in FILE_COLUMNS and file_column is None:
        file_column = id_column  # immuneML style: the file name is the id
    label_columns = [c for c in header if c not in (id_column, file_column)]
    _check_column_names(path, header, label_columns)

    rows: list[SheetRow] = []
    seen: dict[str, int] = {}
    for line_number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise SheetError(path, f"{len(values)} fields where the header has {len(header)}", line=line_number)
        record = {name: (value.strip() if value.strip() not in NULL_VALUES else None)
                  for name, value in zip(header, values)}
        raw_id = record[id_column]
        if raw_id is None:
            raise SheetError(path, f"empty sample id in column {id_column!r}", line=line_number)
        for name, value in record.items():
            # The store's samples.tsv is read without quoting: these characters could not be read back.
            if value is not None and _UNSTORABLE.search(value):
                what = "sample id" if name == id_column else f"value in column {excerpt(name)}"
                raise SheetError(path, f"{what} {excerpt(value)} holds a quote, tab, line break or control "
                                       "character, which a store cannot hold; rename it", line=line_number)
        sample_id = file_stem(raw_id) if id_column in FILE_COLUMNS else raw_id
        if len(sample_id.encode()) > MAX_ID_BYTES:
            raise SheetError(path, f"sample id {excerpt(sample_id)} is longer than {MAX_ID_BYTES} bytes, the most a "
                                   "repertoire file name can take; shorten it", line=line_number)
        if sample_id in seen:
            raise SheetError(path, f"duplicate sample id {sample_id!r} (first on line {seen[sample_id]}); "
                                   "sample ids must be unique", line=line_number)
        seen[sample_id] = line_number
        rows.append(SheetRow(sample_id=sample_id, file=record[file_column] if file_column else None,
                             labels={c: record[c] for c in label_columns}, line=line_number))
    if not rows:
        raise SheetError(path, "the sample sheet has a header but no rows")
    return SampleSheet(path=path, id_column=id_column, file_column=file_column, label_columns=label_columns,
                       rows=rows)


def _expand(inputs: list[Path], sheet_path: Path) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            for child in sorted(item.iterdir()):
                if (child.is_file() and not child.name.startswith(".") and child.resolve() != sheet_path.resolve()
                        and child.name.lower().endswith(REPERTOIRE_SUFFIXES)):
                    files.append(child)
        else:
            files.append(item)
    return files


def match_files(sheet: SampleSheet, inputs: list[str | Path], only: list[str] | None = None) -> dict[str, Path]:
    """Pair sheet rows with repertoire files.

    Files come from `inputs` (files or folders), matched to ids by name or stem; with no inputs,
    from the sheet's file column (relative to the sheet). Every file must have a row and every
    row a file (restricted to the ids in `only`, when given); otherwise SheetError lists the ids.
    """
    wanted = sheet.ids if only is None else list(only)
    unknown = [sample_id for sample_id in wanted if sample_id not in set(sheet.ids)]
    if unknown:
        raise SheetError(sheet.path, f"no row for sample(s) {_listing(unknown)}; ids in the sheet: "
                                     f"{_listing(sheet.ids)}")
    if not inputs:
        if sheet.file_column is None:
            raise SheetError(sheet.path, "no repertoire files given and the sheet has no file column "
                                         f"({', '.join(FILE_COLUMNS)}); give the files or a folder after the sheet")
        pairs: dict[str, Path] = {}
        for sample_id in wanted:
            row = sheet.row(sample_id)
            if row.file is None:
                raise SheetError(sheet.path, f"no file for sample {sample_id!r} in column {sheet.file_column!r}",
                                 line=row.line)
            candidate = Path(row.file)
            pairs[sample_id] = candidate if candidate.is_absolute() else sheet.path.parent / candidate
        return pairs

    files = _expand([Path(p) for p in inputs], sheet.path)
    by_key: dict[str, str] = {}
    for row in sheet.rows:
        by_key[row.sample_id] = row.sample_id
        if row.file:
            by_key[Path(row.file).name] = row.sample_id
            by_key[file_stem(row.file)] = row.sample_id
    pairs = {}
    orphans: list[str] = []
    for path in files:
        sample_id = by_key.get(path.name) or by_key.get(file_stem(path.name))
        if sample_id is None:
            orphans.append(str(path))
            continue
        if sample_id in pairs:
            raise SheetError(sheet.path, f"sample {sample_id!r} matches two files: {pairs[sample_id]} and {path}")
        pairs[sample_id] = path
    if only is not None:
        pairs = {k: v for k, v in pairs.items() if k in set(wanted)}
        orphans = []  # a scatter job may be handed the whole folder
    missing = [sample_id for sample_id in wanted if sample_id not in pairs]
    problems = []
    if orphans:
        problems.append(f"file(s) with no row in the sheet: {_listing(orphans)}")
    if missing:
        problems.append(f"sheet row(s) with no file: {_listing(missing)}")
    if problems:
        raise SheetError(sheet.path, "; ".join(problems) + f" (sheet ids are matched to file names or stems, "
                                                           f"e.g. {wanted[0]!r} <-> {wanted[0]}.tsv.gz)")
    return {sample_id: pairs[sample_id] for sample_id in wanted}
