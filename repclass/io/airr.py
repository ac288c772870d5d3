"""Per-sequence outputs as AIRR rearrangement TSVs (https://docs.airr-community.org).

Every file repclass calls AIRR is written here: the top sequences by attention of `predict
--attention`, the top sequences of `motifs` (sequences.airr.tsv) and the repertoires of `simulate`.
repclass's sequence tables name clonotypes by junction, V and J; written as AIRR rearrangements
they join back to the user's
own records (`sequence_id`, `repertoire_id`) and open in AIRR tools (scirpy, immunarch, the
`airr` package). Every field the AIRR schema requires is present, empty where repclass does not
know it (the nucleotide sequence, alignments); repclass's own values (rank, attention, logit,
...) follow as extra fields, which the standard allows. Tested with `airr.validate_rearrangement`.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import polars as pl

#: The fields the AIRR Rearrangement schema requires, in its order.
REQUIRED_FIELDS = ("sequence_id", "sequence", "rev_comp", "productive", "v_call", "d_call", "j_call",
                   "sequence_alignment", "germline_alignment", "junction", "junction_aa", "v_cigar", "d_cigar",
                   "j_cigar")
#: Optional AIRR fields repclass fills where it knows them.
KNOWN_FIELDS = ("locus", "c_call", "duplicate_count", "repertoire_id")


def airr_rearrangements(table: pl.DataFrame, *, repertoire_column: str = "sample_id", convention: str = "junction",
                        productive: bool | None = True, extra: Sequence[str] = ()) -> pl.DataFrame:
    """`table` (junction_aa, v_call, j_call, duplicate_count; optionally sequence_id, locus, c_call,
    and `repertoire_column`) as AIRR rearrangement fields, then the `extra` columns as they are.

    `convention` "cdr3" puts the amino acids in `cdr3_aa` (AIRR's `junction_aa` includes the
    conserved anchors). `productive` is every row's value (None: unknown), unless `table` has a
    `productive` column (T/F), which is used as it is. Rows without a stored `sequence_id` get
    `<repertoire>_<row number>`.
    A merged clonotype's `sequence_id` lists the ids of its input rows, comma-separated.
    """
    n = table.height
    empty = pl.lit(None, dtype=pl.String)
    row_ids = pl.int_range(1, n + 1, eager=True).cast(pl.String)
    synthetic = (table[repertoire_column].cast(pl.String) + "_" + row_ids if repertoire_column in table.columns
                 else "row_" + row_ids)
    sequence_id = (table["sequence_id"].fill_null(synthetic) if "sequence_id" in table.columns else synthetic)
    aa = table["junction_aa"]
    fields: dict[str, pl.Series | pl.Expr] = {name: empty for name in REQUIRED_FIELDS}
    fields.update(
        sequence_id=sequence_id,
        productive=(table["productive"] if "productive" in table.columns
                    else pl.lit(None if productive is None else ("T" if productive else "F"), dtype=pl.String)),
        v_call=table["v_call"] if "v_call" in table.columns else empty,
        j_call=table["j_call"] if "j_call" in table.columns else empty,
        junction_aa=aa if convention == "junction" else empty,
    )
    if convention != "junction":
        fields["cdr3_aa"] = aa
    for name in ("locus", "c_call", "duplicate_count"):
        if name in table.columns:
            fields[name] = table[name]
    if repertoire_column in table.columns:
        fields["repertoire_id"] = table[repertoire_column].cast(pl.String)
    for name in extra:
        if name in fields:
            raise ValueError(f"extra column {name!r} is an AIRR field; rename it")
        fields[name] = table[name]
    # Series give the rows; the empty and constant fields (expressions) are broadcast to them.
    frame = pl.select(**{name: value for name, value in fields.items()})
    assert frame.height == n
    return frame


def airr_tsv_bytes(frame: pl.DataFrame) -> bytes:
    """An `airr_rearrangements` frame as AIRR TSV text: tab-separated, nulls as empty fields, no
    quoting (AIRR TSV has none), floats with 6 significant digits."""
    buffer = io.BytesIO()
    frame.write_csv(buffer, separator="\t", null_value="", quote_style="never", float_precision=6)
    return buffer.getvalue()


def write_airr_rearrangements(frame: pl.DataFrame, path: Path) -> None:
    """Write an `airr_rearrangements` frame (`airr_tsv_bytes`) atomically (repclass.files)."""
    from repclass.files import write_file_atomically

    def write(temporary: Path) -> None:
        temporary.write_bytes(airr_tsv_bytes(frame))

    write_file_atomically(path, write)


def airr_path(table_path: Path) -> Path:
    """Where the AIRR version of a table goes: x.attention.tsv -> x.attention.airr.tsv."""
    name = table_path.name
    return table_path.with_name(name[: -len(".tsv")] + ".airr.tsv" if name.endswith(".tsv") else name + ".airr.tsv")
