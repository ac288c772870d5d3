"""The `repclass` command line: a thin layer over the library API.

Only this module parses options and turns RepclassError into exit codes (1 bad data, 2 bad
usage). Heavy libraries (torch, polars) are imported inside the commands so that
`repclass --help` and `repclass --version` stay fast, and so that `--threads` can set
POLARS_MAX_THREADS before polars is first imported.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from ._version import __version__
from .errors import RepclassError

log = logging.getLogger("repclass")


class _Group(click.Group):
    """Turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RepclassError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s repclass %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("repclass")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    # Runs while options are parsed, i.e. before any command imports polars.
    if value is not None:
        if value < 1:
            raise click.BadParameter("must be at least 1")
        os.environ["POLARS_MAX_THREADS"] = str(value)
        os.environ["OMP_NUM_THREADS"] = str(value)
    return value


threads_option = click.option("--threads", type=int, default=None, callback=_set_threads, is_eager=True,
                              help="CPU threads for reading and computing (default: all cores).")
force_option = click.option("--force", is_flag=True, help="Replace an existing output.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", message="%(version)s")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def main(quiet: bool) -> None:
    """repclass: immune repertoire classification with DeepRC.

    \b
    ingest   AIRR/Adaptive/MiXCR/10x/VDJtools files -> a repertoire store
    combine  per-sample stores (scatter jobs) -> one store
    train    DeepRC on a store
    predict  score repertoires with a trained model
    motifs   sequences, residues and motifs behind the predictions
    """
    _configure_logging(quiet)


# ----------------------------------------------------------------------------------------------
# ingest / combine
# ----------------------------------------------------------------------------------------------
def _print_ingest_summary(store) -> None:
    from .reader import DROP_REASONS

    rows = store.samples
    columns = ["sample_id", "rows_read", "n_sequences", "n_templates"] + [f"dropped_{r}" for r in DROP_REASONS]
    shown = [c for c in columns if not c.startswith("dropped_") or rows[c].sum() > 0]
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{store.path}: {len(store)} repertoires")
        for column in shown:
            table.add_column(column.replace("dropped_", "dropped "), justify="left" if column == "sample_id"
                             else "right")
        for row in rows.select(shown).iter_rows():
            table.add_row(*[str(v) for v in row])
        Console(stderr=True).print(table)
    else:
        log.info("summary: %s", "\t".join(shown))
        for row in rows.select(shown).iter_rows():
            log.info("summary: %s", "\t".join(str(v) for v in row))


@main.command()
@click.argument("sheet", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="The store folder to write.")
@click.option("--sample", "samples", multiple=True,
              help="Ingest only this sample id (repeatable): one scatter job per sample, then `repclass combine`.")
@click.option("--id-column", default=None, help="Sample id column of the sheet (default: detected).")
@click.option("--convention", type=click.Choice(["auto", "junction", "cdr3"]), default="auto", show_default=True,
              help="Junction convention of the store: 'junction' keeps the conserved C and F/W, 'cdr3' strips them; "
                   "'auto' keeps what the files hold.")
@click.option("--anchor-check/--no-anchor-check", default=True, show_default=True,
              help="Drop junctions that do not start with C and end with F/W (partial CDR3s).")
@click.option("--productive-only/--all-rows", default=True, show_default=True,
              help="Drop rows marked non-productive.")
@click.option("--locus", default=None, help="Keep only this locus (TRB, IGH, ...).")
@click.option("--junction-column", default=None, help="Column holding junction amino acids (if not detected).")
@click.option("--count-column", default=None, help="Column holding clone counts (if not detected).")
@click.option("--v-column", default=None, help="Column holding V calls (if not detected).")
@click.option("--j-column", default=None, help="Column holding J calls (if not detected).")
@click.option("--productive-column", default=None, help="Column holding the productive flag (if not detected).")
@click.option("--allow-empty", is_flag=True, help="Leave out repertoires with no sequences after filtering "
                                                 "(with a warning) instead of failing.")
@force_option
@threads_option
def ingest(sheet: Path, inputs: tuple[Path, ...], out: Path, samples: tuple[str, ...], id_column: str | None,
           convention: str, anchor_check: bool, productive_only: bool, locus: str | None,
           junction_column: str | None, count_column: str | None, v_column: str | None, j_column: str | None,
           productive_column: str | None, allow_empty: bool, force: bool, threads: int | None) -> None:
    """Read repertoire files into a store.

    SHEET is a TSV/CSV sample sheet: one row per repertoire, an id column (sample_id,
    repertoire_id, sample, ...) and label columns. INPUTS are repertoire files or folders whose
    file names (or stems) are the sheet's ids; without INPUTS the sheet's file column is used.

    \b
    repclass ingest samples.tsv repertoires/ --out cohort.store
    repclass ingest samples.tsv repertoires/ --sample s01 --out parts/s01.store   # scatter
    repclass combine parts/*.store --out cohort.store                           # gather
    """
    from .formats import ColumnOverrides
    from .ingestion import ingest as ingest_api
    from .reader import ReadOptions

    options = ReadOptions(
        productive_only=productive_only, locus=locus, convention=convention, anchor_check=anchor_check,
        overrides=ColumnOverrides(junction_aa=junction_column, count=count_column, v_call=v_column,
                                  j_call=j_column, productive=productive_column),
    )
    store = ingest_api(sheet, out, inputs, samples=list(samples) or None, id_column=id_column, options=options,
                       allow_empty=allow_empty, force=force)
    _print_ingest_summary(store)
    log.info("wrote %s: %d repertoires (%s convention)", store.path, len(store), store.junction_convention)


@main.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="The store folder to write.")
@force_option
def combine(parts: tuple[Path, ...], out: Path, force: bool) -> None:
    """Merge stores (one per scatter job) into one, without re-reading raw files."""
    from .ingestion import combine as combine_api

    store = combine_api(list(parts), out, force=force)
    log.info("wrote %s: %d repertoires from %d stores", store.path, len(store), len(parts))


if __name__ == "__main__":  # pragma: no cover
    main()
