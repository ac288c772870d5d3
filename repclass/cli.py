"""The `repclass` command line: a thin layer over the library API.

Only this module parses options and turns RepclassError into exit codes (1 bad data, 2 bad
usage). Heavy libraries (torch, polars) are imported inside the commands so that
`repclass --help` and `repclass --version` stay fast, and so that `--threads` can set
POLARS_MAX_THREADS before polars is first imported.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from repclass._version import __version__
from repclass.config import (CHUNK_SIZE, EMBEDDINGS, SAMPLINGS, SELECTIONS, ModelConfig, MotifsConfig,
                             TrainConfig, option_name)
from repclass.errors import RepclassError
from repclass.io.formats import CONVENTIONS, OVERRIDE_OPTIONS

log = logging.getLogger("repclass")


class _Group(click.Group):
    """Turns library errors into one-line messages and exit codes; gives every subcommand the
    logging options (-q, -v, --log-file), also those added by `@main.command()` without them."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "log_file" for p in cmd.params):
            logging_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RepclassError as exc:
            _fail(f"Error: {_one_line(str(exc))}")
            sys.exit(exc.exit_code)
        except OSError as exc:
            # The file system said no (disk full, permissions, a path that vanished): one line,
            # exit 1, never a traceback. Library code names the file where it can.
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"Error: {_one_line(where + (exc.strerror or str(exc)))}")
            sys.exit(1)
        except Exception as exc:
            # A full disk reported by polars or torch in their own exception types (files.Outputs
            # names the output; this is the net for writes outside it, such as --log-file).
            from repclass.files import disk_full_reason

            reason = disk_full_reason(exc)
            if reason is None:
                raise
            _fail(f"Error: {_one_line(f'cannot write ({reason}): the disk is full or a file size limit was reached')}")
            sys.exit(1)


def _fail(message: str) -> None:
    """The error line on stderr, and in the --log-file too (so the file says how the run ended)."""
    click.echo(message, err=True)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _one_line(message: str, limit: int = 2000) -> str:
    """A message as one printable line: control characters (terminal escape codes, line breaks
    from quoted input) escaped, and cut if some quoted input made it huge."""
    cleaned = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + f"... ({len(cleaned)} characters)"


def _configure_logging(quiet: bool = False, verbose: int = 0, log_file: Path | None = None) -> None:
    """stderr gets warnings (-q), info (default) or debug (-v) lines; --log-file gets info (debug
    with -v) whatever -q says, appended, with dates: a pipeline's record of the run."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s repclass %(levelname)s: %(message)s", "%H:%M:%S"))
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s repclass %(levelname)s: %(message)s",
                                                    "%Y-%m-%d %H:%M:%S"))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(file_handler)
    root = logging.getLogger("repclass")
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    root.propagate = False


_LOGGING_STATE = "repclass.logging"


def _logging_state(ctx: click.Context) -> dict[str, Any]:
    return ctx.find_root().meta.setdefault(_LOGGING_STATE, {"quiet": False, "verbose": 0, "log_file": None})


def _logging_option_given(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # Runs while options are parsed, before the group's and the command's own code: the group's
    # options first, then the subcommand's, which add to them (`repclass -q ingest --log-file x`).
    if not value:
        return
    state = _logging_state(ctx)
    if param.name == "verbose":
        state["verbose"] += value
    else:
        state[param.name] = value
    if state["quiet"] and state["verbose"]:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; give one of them", ctx=ctx)
    _configure_logging(**state)
    if param.name == "verbose":
        log.debug("repclass %s, python %s, command line: %s", __version__, sys.version.split()[0],
                  " ".join(sys.argv))


_F = TypeVar("_F", bound=Callable[..., Any])


def logging_options(command: _F) -> _F:
    """-q/--quiet, -v/--verbose and --log-file, accepted by the group and by every subcommand."""
    for option in reversed([
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_logging_option_given,
                     help="Only warnings and errors on stderr."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_logging_option_given,
                     help="Debug messages too (on stderr and in --log-file)."),
        click.option("--log-file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
                     expose_value=False, callback=_logging_option_given,
                     help="Also append the log (info, or debug with -v; whatever -q says) to this file."),
    ]):
        command = option(command)
    return command


class DeviceType(click.ParamType):
    """--device: auto, cpu, cuda or cuda:N, checked while parsing (whether the GPU exists is
    checked when the command starts, by repclass.compute.runtime)."""

    name = "device"
    _PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if not self._PATTERN.fullmatch(text):
            self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N (N: the GPU's index, "
                      "e.g. cuda:1)", param, ctx)
        return text


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    # Runs while options are parsed (given or not), i.e. before any command imports torch or polars.
    from repclass.compute.cpus import configure_threads

    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1")
    count = configure_threads(value)
    return None if value is None else count  # capped at the CPUs available


def _setting(name: str, help: str, **kwargs: Any) -> Callable[[_F], _F]:
    """`repclass train`'s option for a TrainConfig or ModelConfig field: its name (config.option_name),
    type and default come from config.py, the one home of defaults (dataclasses only, cheap to import)."""
    config = TrainConfig if name in _TRAIN_FIELDS else ModelConfig
    field = _TRAIN_FIELDS.get(name) or _MODEL_FIELDS[name]
    if field.type in ("int", "float"):
        kwargs.setdefault("type", {"int": int, "float": float}[field.type])
    declaration = option_name(name)
    if field.type == "bool" and getattr(config, name):  # on by default: --no-<option> turns it off
        declaration = f"{declaration}/--no-{declaration[2:]}"
    return click.option(declaration, name, default=getattr(config, name), show_default=True, help=help,
                        **kwargs)


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}


class _LibraryDefault(click.Option):
    """An option whose default is a field of a library dataclass that lives in a module importing
    numpy or polars (ReadOptions, SimulationConfig, the baselines' configs): looked up the first
    time click needs it (parsing, --help), so that importing this module stays cheap."""

    def __init__(self, *decls: str, default_from: tuple[str, Callable[[Any], Any]], **kwargs: Any) -> None:
        super().__init__(*decls, show_default=True, **kwargs)
        self._default_from: tuple[str, Callable[[Any], Any]] | None = default_from

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        if self._default_from is not None:
            where, pick = self._default_from
            module, _, name = where.partition(":")
            self.default = pick(getattr(importlib.import_module(f"repclass.{module}"), name))
            self._default_from = None
        return super().get_default(ctx, call=call)


class _ChoiceFrom(click.Choice):
    """click.Choice over a library tuple ("baselines.burden:CLONOTYPES") in a module importing numpy
    or torch: imported the first time click needs the choices, as _LibraryDefault does for defaults."""

    def __init__(self, where: str) -> None:
        self._where = where
        super().__init__([])

    @property
    def choices(self) -> tuple[str, ...]:
        module, _, name = self._where.partition(":")
        return tuple(getattr(importlib.import_module(f"repclass.{module}"), name))

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice sets it; the library's tuple wins
        pass


def _default_from(where: str, field: str | Callable[[Any], Any], *decls: str, **kwargs: Any) -> Callable[[_F], _F]:
    """click.option whose default is the dataclass `where`'s ("io.reader:ReadOptions") `field` (a
    field's name, or a function of the class for a default built from several fields)."""
    pick = field if callable(field) else (lambda cls: getattr(cls, field))
    return click.option(*decls, cls=_LibraryDefault, default_from=(where, pick), **kwargs)


threads_option = click.option("--threads", type=int, default=None, callback=_set_threads, is_eager=True,
                              help="CPU threads for reading and computing (default: the CPUs this job may use: "
                                   "its CPU affinity and cgroup quota, e.g. under SLURM or in a container).")
def _set_compile(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from repclass.compute.compiling import configure

    configure(value)


compile_option = click.option(
    "--compile", type=click.Choice(["auto", "on", "off"]), default=None, callback=_set_compile, expose_value=False,
    help="Compiled kernels for the embedding: auto (on CPU the C kernel, built once per machine, for scoring and "
         "training's forward; elsewhere torch.compile once a job is large: 20M sequences embedded), on "
         "(torch.compile from the start; the C kernel still scores), or off (eager kernels only; default: "
         "$REPCLASS_COMPILE, else auto). Results are the same; without a C/C++ compiler the eager kernels run.")
force_option = click.option("--force", is_flag=True, help="Replace an existing output (only one repclass wrote, "
                                                           "of the same kind).")
allow_other_locus_option = click.option(
    "--allow-other-locus", is_flag=True,
    help="Score repertoires of another locus than the model's training store (TRB model, IGH repertoires); "
         "refused by default.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", message="%(version)s", help="Print the version and exit.")
@logging_options
def main() -> None:
    """repclass: immune repertoire classification with DeepRC.

    \b
    ingest   AIRR/Adaptive/MiXCR/10x/VDJtools files -> a repertoire store
    combine  per-sample stores (scatter jobs) -> one store
    train    DeepRC on a store
    predict  score repertoires with a trained model
    motifs   sequences, residues and motifs behind the predictions
    simulate a cohort with implanted motifs (known ground truth)

    -q, -v and --log-file are accepted before or after the command's name.
    """
    _configure_logging(**_logging_state(click.get_current_context()))
    _skip_the_exit_collection()


def _skip_the_exit_collection() -> None:
    """At exit, move every object to the garbage collector's permanent generation.

    The interpreter's last collections walk every object still alive, and torch's and
    matplotlib's modules hold millions of them: that took about a second of CPU after every
    command had done its work (docs/performance.md, "Start-up"). Nothing is lost: atexit handlers
    (logging's flush, temporary folders, prefetch threads) all run, refcounting frees what it
    frees, and the operating system takes back the rest."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)  # once per process, also when the CLI runs in-process many times
    atexit.register(gc.freeze)


# ----------------------------------------------------------------------------------------------
# ingest / combine
# ----------------------------------------------------------------------------------------------
def _print_ingest_summary(store) -> None:
    import polars as pl

    from repclass.progress import show_on_terminal
    from repclass.io.store import DROP_REASONS

    rows = store.samples
    columns = (["sample_id", "rows_read", "n_sequences", "n_templates"] + [f"dropped_{r}" for r in DROP_REASONS]
               + ["unresolved_genes", "unresolved_gene_examples", "counts_from"])
    # drop reasons, unresolved gene names and counts from frequencies only where some sample has them
    optional = [c for c in columns if c.startswith(("dropped_", "unresolved_", "counts_from"))]
    present = {c for c in optional if c in rows.columns and rows[c].drop_nulls().len()
               and (rows[c].dtype == pl.String or rows[c].sum() > 0)}
    shown = [c for c in columns if c not in optional or c in present]
    if show_on_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{store.path}: {len(store)} repertoires")
        for column in shown:
            table.add_column(column.replace("dropped_", "dropped "), justify="left" if column == "sample_id"
                             else "right")
        for row in rows.select(shown).iter_rows():
            table.add_row(*["" if v is None else str(v) for v in row])
        Console(stderr=True).print(table)
    else:
        log.info("summary: %s", "\t".join(shown))
        for row in rows.select(shown).iter_rows():
            log.info("summary: %s", "\t".join("" if v is None else str(v) for v in row))


_READ_OPTIONS = "io.reader:ReadOptions"


@main.command()
@click.argument("sheet", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="The store folder to write.")
@click.option("--sample", "samples", multiple=True,
              help="Ingest only this sample id (repeatable): one scatter job per sample, then `repclass combine`.")
@click.option("--id-column", default=None, help="Sample id column of the sheet (default: detected).")
@_default_from(_READ_OPTIONS, "convention", "--convention", type=click.Choice(["auto", *CONVENTIONS]),
               help="Junction convention of the store: 'junction' keeps the conserved C and F/W, 'cdr3' strips "
                    "them; 'auto' keeps what the files hold.")
@_default_from(_READ_OPTIONS, "anchor_check", "--anchor-check/--no-anchor-check",
               help="Drop junctions that do not start with C and end with F/W (partial CDR3s).")
@_default_from(_READ_OPTIONS, "productive_only", "--productive-only/--all-rows",
               help="Drop rows marked non-productive.")
@_default_from(_READ_OPTIONS, "locus", "--locus",
               help="Keep only this locus (TRB, IGH, ...); needed for a file holding several (a 10x contig table of "
                    "TRA and TRB).")
@_default_from(_READ_OPTIONS, "cells_only", "--cells-only/--all-barcodes",
               help="10x contig tables: keep only contigs of barcodes called cells (is_cell).")
@_default_from(_READ_OPTIONS, "high_confidence_only", "--high-confidence-only/--all-contigs",
               help="10x contig tables: keep only high_confidence contigs.")
@click.option(OVERRIDE_OPTIONS["junction_aa"], "junction_column", default=None,
              help="Column holding junction amino acids (if not detected).")
@click.option(OVERRIDE_OPTIONS["count"], "count_column", default=None,
              help="Column holding clone counts (if not detected).")
@click.option(OVERRIDE_OPTIONS["v_call"], "v_column", default=None, help="Column holding V calls (if not detected).")
@click.option(OVERRIDE_OPTIONS["j_call"], "j_column", default=None, help="Column holding J calls (if not detected).")
@click.option(OVERRIDE_OPTIONS["productive"], "productive_column", default=None,
              help="Column holding the productive flag (if not detected).")
@click.option("--allow-empty", is_flag=True, help="Leave out repertoires with no sequences after filtering "
                                                 "(with a warning) instead of failing.")
@force_option
@threads_option
def ingest(sheet: Path, inputs: tuple[Path, ...], out: Path, samples: tuple[str, ...], id_column: str | None,
           convention: str, anchor_check: bool, productive_only: bool, locus: str | None, cells_only: bool,
           high_confidence_only: bool,
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
    from repclass.io.formats import ColumnOverrides
    from repclass.io.ingestion import ingest as ingest_api
    from repclass.io.reader import ReadOptions

    options = ReadOptions(
        productive_only=productive_only, locus=locus, convention=convention, anchor_check=anchor_check,
        cells_only=cells_only, high_confidence_only=high_confidence_only,
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
    from repclass.io.ingestion import combine as combine_api

    store = combine_api(list(parts), out, force=force)
    log.info("wrote %s: %d repertoires from %d stores", store.path, len(store), len(parts))


# ----------------------------------------------------------------------------------------------
# train / predict
# ----------------------------------------------------------------------------------------------
def _column_map(values: tuple[str, ...], option: str) -> dict[str, str]:
    mapping = {}
    for value in values:
        column, sep, setting = value.partition("=")
        if not sep or not column or not setting:
            raise click.BadParameter(f"expected COLUMN=VALUE, got {value!r}", param_hint=option)
        mapping[column] = setting
    return mapping


def _prepare_compute(threads: int | None) -> None:
    from repclass.compute.runtime import set_threads, tune_allocator

    tune_allocator()
    set_threads(threads)


chunk_option = click.option("--chunk-size", type=int, default=CHUNK_SIZE, show_default=True,
                            help="Sequences embedded per chunk (memory only; results unchanged).")
device_option = click.option("--device", type=DeviceType(), default="auto", show_default=True,
                             help="auto (CUDA when available), cpu, cuda (the current GPU) or cuda:N.")


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("-t", "--target", "targets", multiple=True, required=True,
              help="Label column to predict (repeatable: several targets, one model).")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Model folder to write.")
@click.option("--type", "types", multiple=True, metavar="COLUMN=TYPE",
              help="binary, multiclass or regression (default: inferred from the labels).")
@click.option("--positive", "positives", multiple=True, metavar="COLUMN=CLASS",
              help="Positive class of a binary target (default: inferred from +/-, True/False, 1/0, yes/no).")
@click.option("--loss-weight", "loss_weights", multiple=True, metavar="COLUMN=WEIGHT",
              help="Weight of a target's loss in the sum (default 1).")
@click.option("--split-column", default=None, help="Sheet column with train/validation/test per repertoire.")
@click.option("--folds", type=int, default=None, help="k-fold cross-validation: one model per fold.")
@click.option("--fold", type=int, default=None, help="With --folds: train only this fold (1-based), e.g. one "
                                                      "pipeline job per fold.")
@click.option("--group-column", default="auto", show_default=True, metavar="COLUMN|auto|none",
              help="Sheet column naming each repertoire's donor: a donor's repertoires never sit on both sides of "
                   "a fold or split (auto: subject_id when the sheet has it; none: split repertoires).")
@click.option("--permutations", type=int, default=0, show_default=True,
              help="Label-permutation test: retrain N times on the same folds with permuted labels (whole donors "
                   "when grouped) for a p-value beside the pooled metric; costs N x K trainings per method.")
@_setting("validation_fraction", "Share of repertoires in the validation split (early stopping, model choice).")
@_setting("test_fraction", "Share of repertoires held out as the test split.")
@_setting("seed", "Seed for splits, initialisation and sampling.")
@_setting("max_updates", "Maximum updates.")
@_setting("eval_every", "Updates between evaluations (and an evaluation after 10, 20 and 50 updates if before "
                        "the first).")
@_setting("patience", "Stop after this many evaluations without a better validation loss.")
@_setting("learning_rate", "Adam learning rate.")
@_setting("weight_decay", "Adam weight decay.")
@_setting("batch_size", "Repertoires per update.")
@_setting("sequences_per_bag", "Sequences sampled per repertoire per update.")
@_setting("bag_share", "Each update samples at most this share of a repertoire's sequences (1: repertoires "
                       "smaller than --sequences-per-bag are used whole, as in the paper).")
@_setting("sampling", "Sample sequences uniformly or in proportion to clone counts.",
          type=click.Choice(SAMPLINGS))
@_setting("selection", "Gradient-pass sequences: sampled by attention weight, or the paper's top fraction.",
          type=click.Choice(SELECTIONS))
@_setting("reduction_fraction", "Share of each repertoire's sequences that the attention softmax sees.")
@_setting("use_counts", "Let clone counts raise attention (log-count bias).", is_flag=True)
@_setting("count_readout", "The output also reads the log mean exp of the attention logits, which grows with the "
                           "number of witness-like sequences (not in the paper; --no-count-readout: the paper's "
                           "read-out; docs/method.md).", is_flag=True)
@_setting("evidence_gradient", "With --count-readout: its gradient also trains the attention, not only its "
                               "weight (slower to stop on easy cohorts; docs/method.md).", is_flag=True)
@_setting("enrichment", "deeprc: the output also reads each repertoire's share of junctions enriched in the "
                        "positive training repertoires (cross-fitted on the training split; binary targets; "
                        "docs/method.md, \"An enrichment path\").", is_flag=True)
@_setting("enrichment_folds", "deeprc, with --enrichment: inner folds its enriched set is cross-fitted over.")
@_setting("enrichment_gate", "deeprc, with --enrichment: use the path only where its inner cross-validation reads "
                             "the labels better than chance (--no-enrichment-gate: wherever it can be fitted; "
                             "docs/method.md).", is_flag=True)
@_setting("embedding", "Sequence embedding: the paper's 1D convolution (cnn), or the original DeepRC's LSTM "
                       "option (lstm: --kernels hidden units, no k-mer seeding or kernel logos).",
          type=click.Choice(EMBEDDINGS))
@_setting("kernel_size", "Width of the sequence CNN's kernels, in residues.")
@_setting("n_kernels", "Number of CNN kernels (LSTM: hidden units): the size of a sequence's embedding.")
@_setting("attention_layers", "Hidden layers of the attention network (before its one logit).")
@_setting("attention_units", "Units per hidden layer of the attention network.")
@_setting("output_layers", "Hidden layers of the output network (0: linear).")
@_setting("output_units", "Units per hidden layer of the output network.")
@_setting("checkpoint_every", "Updates between resumable checkpoints (0: at every evaluation).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.partial/.")
@_setting("min_delta", "Early stopping: a validation loss must beat the best by more than this to count as better.")
@_setting("stop_loss", "Stop once the validation split is solved: validation AUC 1.0 for every target and a "
                       "validation loss at most this (0: never; train to --max-updates or patience).")
@_setting("init_kmers", "deeprc: CNN kernels that start as detectors of the k-mers most associated with the labels "
                        "in the training repertoires (0: all random, as in the paper; see docs/method.md).")
@_setting("init_kmer_length", "deeprc: shortest length of those k-mers.")
@_setting("init_kmer_max_length", "deeprc: longest length of those k-mers (capped at the kernel size); every "
          "length in between competes.")
@_setting("init_kmer_amplitude", "deeprc: weight of each k-mer residue in its kernel at the start.")
@_setting("init_kmer_fallback", "deeprc: when no k-mer clears the chance level, seed the best one anyway "
                                "(--no-init-kmer-fallback: seed none).")
@_setting("init_attention", "deeprc: how far above the background the attention logit of a seeded k-mer's match "
                            "starts (0: attention starts random, as in the paper).")
@_setting("init_evidence", "deeprc, with --count-readout: the weight on the attention evidence starts at its "
                           "logistic fit to the training labels instead of 0 (docs/method.md).", is_flag=True)
@click.option("--method", "methods", multiple=True, type=_ChoiceFrom("comparison:METHODS"),
              default=("deeprc",), show_default=True,
              help="deeprc, or a baseline: kmer (k-mer frequencies, L1 logistic) or burden (Emerson 2017 "
                   "enriched clonotypes). Repeatable: several methods on the same splits, OUT/<method>/ and "
                   "OUT/comparison.tsv.")
@_default_from("baselines.kmer:KmerConfig", "k", "--kmer-size", type=int,
               help="kmer: k (3-5; 20^k features); default: chosen from 3, 4, 5 by inner cross-validation.")
@_default_from("baselines.kmer:KmerConfig", "gap", "--kmer-gap", type=int,
               help="kmer: positions skipped in the middle of each k-mer (gapped k-mers).")
@_default_from("baselines.kmer:KmerConfig", "count_weighted", "--kmer-counts", is_flag=True,
               help="kmer: weight each sequence's k-mers by its clone count.")
@_default_from("baselines.kmer:KmerConfig", "inner_folds", "--inner-folds", type=int,
               help="kmer/burden: inner cross-validation folds (on training + validation repertoires, by donor "
                    "when grouped) choosing k and the penalty, or the p-value threshold.")
@_default_from("baselines.burden:BurdenConfig", "clonotype", "--burden-clonotype",
               type=_ChoiceFrom("baselines.burden:CLONOTYPES"),
               help="burden: a clonotype is the junction, or junction + V and J genes.")
@_setting("chunk_size", "Sequences embedded per chunk (memory only; results unchanged).")
@_setting("cache_gb", "Memory for decoded repertoires kept between updates.")
@device_option
@force_option
@compile_option
@threads_option
def train(store: Path, targets: tuple[str, ...], out: Path, types: tuple[str, ...], positives: tuple[str, ...],
          loss_weights: tuple[str, ...], split_column: str | None, folds: int | None, fold: int | None,
          group_column: str, permutations: int, resume: bool, methods: tuple[str, ...], kmer_size: int | None,
          kmer_gap: int, kmer_counts: bool, inner_folds: int, burden_clonotype: str, device: str, force: bool,
          threads: int | None, **settings: Any) -> None:
    """Train DeepRC (or a baseline: --method kmer|burden, repeatable to compare) on a store.

    \b
    repclass train cohort.store --target status --out model/
    repclass train cohort.store --target status --target age --type age=regression --out model/
    repclass train cohort.store --target status --folds 5 --out cv/
    repclass train cohort.store --target status --method deeprc --method kmer --method burden --out compare/
    repclass train cohort.store --target status --method kmer --folds 5 --permutations 99 --out kmer_cv/
    """
    _prepare_compute(threads)
    from repclass.training.splits import SplitSpec
    from repclass.targets import target_specs

    try:
        weights = {k: float(v) for k, v in _column_map(loss_weights, "--loss-weight").items()}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--loss-weight") from exc
    specs = target_specs(targets, kinds=_column_map(types, "--type"), positives=_column_map(positives, "--positive"),
                         weights=weights)
    # **settings: the TrainConfig and ModelConfig fields (`_setting` options); the dataclasses check them.
    config = TrainConfig(**{k: v for k, v in settings.items() if k in _TRAIN_FIELDS})
    model_config = ModelConfig(**{k: v for k, v in settings.items() if k in _MODEL_FIELDS})
    split_spec = SplitSpec(column=split_column, folds=folds, fold=fold, group_column=group_column)
    if permutations < 0:
        raise click.BadParameter(f"must be 0 or more, got {permutations}", param_hint="--permutations")
    if permutations and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.BadParameter("the permutation test runs in one process; run it without torchrun",
                                 param_hint="--permutations")
    kmer = burden = None
    if tuple(dict.fromkeys(methods)) != ("deeprc",):  # a baseline's settings, checked only when one is trained
        from repclass.baselines.burden import BurdenConfig
        from repclass.baselines.kmer import KmerConfig

        kmer = KmerConfig(k=kmer_size, gap=kmer_gap, count_weighted=kmer_counts, inner_folds=inner_folds)
        burden = BurdenConfig(clonotype=burden_clonotype, inner_folds=inner_folds)
    from repclass.comparison import ComparisonResult, train_chosen
    from repclass.targets import HEADLINE_METRICS

    result = train_chosen(methods, store, out, targets=specs, split=split_spec, config=config,
                          model_config=model_config, kmer=kmer, burden=burden, device=device, resume=resume,
                          force=force, permutations=permutations)
    if isinstance(result, ComparisonResult):
        for row in result.table.filter(result.table["fold"].is_in(["all", "pooled"])).iter_rows(named=True):
            if row["metric"] in HEADLINE_METRICS.values():
                interval = "" if row["test_low"] is None else f" [{row['test_low']:.3f}-{row['test_high']:.3f}]"
                log.info("%s %s: validation %s %.3f, test %.3f%s", row["method"], row["target"], row["metric"],
                         row["validation"], row["test"], interval)
        log.info("wrote %s", result.path)
        return
    if result.folds:
        for key, value in sorted(result.metrics.items()):
            if key.startswith("test:"):
                pooled = "" if value.get("pooled") is None else f"; pooled out of fold {value['pooled']:.3f}"
                log.info("%s: %.3f +- %.3f over %d folds%s", key, value["mean"], value["sd"] or 0.0, len(result.folds),
                         pooled)
    else:
        for split in ("validation", "test"):
            for spec in specs:
                values = result.metrics[split].get(spec.column, {})
                shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items() if k != "n")
                log.info("%s %s: %s", split, spec.column, shown)
    log.info("wrote %s", result.path)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Predictions TSV to write.")
@click.option("--sample", "samples", multiple=True, help="Score only this sample of the store (repeatable).")
@click.option("--attention", "attention_top_n", type=int, default=0, show_default=True,
              help="Also write each repertoire's top-N sequences by attention weight.")
@click.option("--attention-out", type=click.Path(path_type=Path), default=None,
              help="Where to write them (default: <out stem>.attention.tsv).")
@chunk_option
@device_option
@allow_other_locus_option
@force_option
@compile_option
@threads_option
def predict(model: Path, inputs: tuple[Path, ...], out: Path, samples: tuple[str, ...], attention_top_n: int,
            attention_out: Path | None, chunk_size: int, device: str, allow_other_locus: bool, force: bool,
            threads: int | None) -> None:
    """Score repertoires with a trained model.

    MODEL is a model folder or its model.safetensors; INPUTS is a store, or repertoire files
    (any format ingest reads; ingested on the fly with the training store's rules).

    \b
    repclass predict model/ cohort.store --out predictions.tsv --attention 50
    repclass predict model/ new_sample.tsv.gz --out new_sample.predictions.tsv
    """
    _prepare_compute(threads)
    from repclass.prediction.run import predict as predict_api

    result = predict_api(model, list(inputs), out, samples=list(samples) or None, attention_top_n=attention_top_n,
                         attention_out=attention_out, device=device, chunk_size=chunk_size, force=force,
                         allow_other_locus=allow_other_locus)
    if result.metrics:
        from repclass.metrics import small_sample_note

        for column, values in result.metrics.items():
            log.info("%s: %s", column, _metrics_line(values))
            if "n_positive" in values:
                note = small_sample_note(values["n_positive"], values["n_negative"], values.get("roc_auc"))
                if note:
                    log.warning("%s: %s", column, note)
    log.info("wrote %s (%d repertoires)", ", ".join(map(str, result.written)), result.table.height)


def _metrics_line(values: dict[str, Any]) -> str:
    """`n 8, roc_auc 1.000 (95% CI 0.750-1.000), ...`: counts as integers, an AUC with its interval."""
    shown = []
    for key, value in values.items():
        if key in ("roc_auc_low", "roc_auc_high", "held_out"):
            continue
        if isinstance(value, int):
            shown.append(f"{key} {value}")
        elif key == "roc_auc" and "roc_auc_low" in values:
            shown.append(f"roc_auc {value:.3f} (95% CI {values['roc_auc_low']:.3f}-{values['roc_auc_high']:.3f})")
        else:
            shown.append(f"{key} {value:.3f}")
    return ", ".join(shown)


# ----------------------------------------------------------------------------------------------
# motifs
# ----------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--sample", "samples", multiple=True,
              help="Analyse these repertoires (repeatable; default: those predicted positive / of --class).")
@click.option("--target", default=None, help="Target to explain (default: the model's first).")
@click.option("--class", "class_name", default=None,
              help="Explain repertoires predicted as this class (default: the positive class).")
@click.option("--top-sequences", type=int, default=MotifsConfig.top_sequences, show_default=True,
              help="Sequences (ranked by sequence contribution, logit) that get residue attributions "
                   "and form motifs.")
@click.option("--motifs", "n_motifs", type=int, default=MotifsConfig.n_motifs, show_default=True,
              help="Motifs to report.")
@click.option("--ig-steps", type=int, default=MotifsConfig.ig_steps, show_default=True,
              help="Integrated-gradients steps (more steps, smaller completeness error).")
@click.option("--include-training", is_flag=True,
              help="Also analyse the repertoires the model trained or was validated on (default: held-out ones "
                   "only: its test split and repertoires it never saw).")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Implanted sequences of a simulated cohort (TSV: sample_id, sequence_id, junction_aa, "
                   "motif_start): score the explanation against them (truth.json, and in the report).")
@chunk_option
@device_option
@click.option("--seed", type=int, default=MotifsConfig.seed, show_default=True,
              help="Seed for the random parts (the same seed gives the same outputs).")
@allow_other_locus_option
@force_option
@compile_option
@threads_option
def motifs(model: Path, inputs: tuple[Path, ...], out: Path, samples: tuple[str, ...], target: str | None,
           class_name: str | None, top_sequences: int, n_motifs: int, ig_steps: int, include_training: bool,
           truth: Path | None, chunk_size: int, device: str, seed: int, allow_other_locus: bool, force: bool,
           threads: int | None) -> None:
    """Which sequences and residues drive the predictions: tables, sequence logos, a report.

    MODEL is a model folder (or a --folds folder); INPUTS is a store, or repertoire files (ingested
    on the fly with the training store's rules, as predict does).

    \b
    repclass motifs model/ cohort.store --out motifs/
    repclass motifs model/ new_sample.tsv.gz --out new_sample.motifs/
    """
    _prepare_compute(threads)
    from repclass.explain import motifs as motifs_api

    result = motifs_api(model, inputs[0] if len(inputs) == 1 else list(inputs), out, samples=list(samples) or None,
                        target=target, class_name=class_name, top_sequences=top_sequences, n_motifs=n_motifs,
                        ig_steps=ig_steps, device=device, seed=seed, force=force,
                        include_training=include_training, truth=truth, chunk_size=chunk_size,
                        allow_other_locus=allow_other_locus)
    contents = sorted(p.name + ("/" if p.is_dir() else "") for p in result.out.iterdir() if not p.name.startswith("."))
    log.info("wrote %s: %s", result.out, ", ".join(contents))
    click.echo(str(result.report))


# ----------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------
def _int_range(value: str, option: str) -> tuple[int, int]:
    """'N' or 'MIN-MAX' -> (min, max)."""
    low, sep, high = value.replace(":", "-").partition("-")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise click.BadParameter(f"expected N or MIN-MAX, got {value!r}", param_hint=option) from None


def _range_text(low: int, high: int) -> str:
    """(min, max) as --sequences/--motif-length write it: 'N' or 'MIN-MAX'."""
    return str(low) if low == high else f"{low}-{high}"


_SIMULATION = "simulation.config:SimulationConfig"


@main.command()
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@_default_from(_SIMULATION, "n_repertoires", "--repertoires", "n_repertoires", type=int, help="Number of repertoires.")
@_default_from(_SIMULATION, "n_positive", "--positives", "n_positive", type=int,
               help="Number of positive repertoires (default: --positive-fraction of them).")
@_default_from(_SIMULATION, "positive_fraction", "--positive-fraction", type=float, help="Share of positives.")
@_default_from(_SIMULATION, lambda c: _range_text(c.min_sequences, c.max_sequences), "--sequences",
               metavar="N|MIN-MAX", help="Sequences per repertoire (uniform in MIN-MAX).")
@_default_from(_SIMULATION, "witness_rate", "--witness-rate", type=float,
               help="Share of a positive repertoire's sequences that carry a motif.")
@click.option("--motif", "motifs", multiple=True, metavar="MOTIF",
              help="Motif to implant, '.' = any residue (repeatable; default SFEN unless --random-motifs).")
@_default_from(_SIMULATION, "random_motifs", "--random-motifs", type=int, help="Add N random motifs.")
@_default_from(_SIMULATION, lambda c: _range_text(*c.random_motif_length), "--motif-length", metavar="N|MIN-MAX",
               help="Length of random motifs.")
@_default_from(_SIMULATION, "gap_probability", "--gap-probability", type=float,
               help="Chance that an implant loses one interior motif position (SFEN -> SEN or SFN).")
@_default_from(_SIMULATION, "substitution_probability", "--substitution-probability", type=float,
               help="Per motif position, chance of another residue.")
@_default_from(_SIMULATION, "noise_rate", "--noise-rate", type=float,
               help="Share of a negative repertoire's sequences that get a broken (shuffled) motif.")
@_default_from(_SIMULATION, "purge_background", "--purge-background", is_flag=True,
               help="Redraw background sequences that already contain a motif.")
@_default_from(_SIMULATION, "background_model", "--background-model",
               type=_ChoiceFrom("simulation.config:BACKGROUND_MODELS"),
               help="OLGA generative model of the background.")
@click.option("--background", "background_store", type=click.Path(path_type=Path), default=None,
              help="Sample the background from this store's sequences instead (implant into real data).")
@_default_from(_SIMULATION, "whole_repertoires", "--keep-repertoires", "whole_repertoires", is_flag=True,
               help="With --background: implant into each of the store's repertoires as it is (its sequences, "
                    "genes, clone counts and sample id) instead of sampling its pooled sequences; the "
                    "number of repertoires and their sizes are then the store's.")
@_default_from(_SIMULATION, "zipf_a", "--zipf-a", type=float, help="Zipf exponent of the clone counts.")
@_default_from(_SIMULATION, "max_count", "--max-count", type=int, help="Largest clone count.")
@_default_from(_SIMULATION, "nonproductive_rate", "--nonproductive-rate", type=float, metavar="RATE",
               help="Add round(RATE x N) non-productive rows (productive F: an in-frame stop '*' or a frameshift "
                    "'_') to each repertoire, for checking that ingest drops them.")
@_default_from(_SIMULATION, "covariates", "--covariates", is_flag=True,
               help="Add random labels unrelated to the status to samples.tsv, for multi-target demos: age "
                    "(Normal(45, 15), 18-90) and hla_group (A/B/C).")
@_default_from(_SIMULATION, "seed", "--seed", type=int, help="Seed: the same seed gives byte-identical files.")
@force_option
@threads_option
def simulate(out: Path, n_repertoires: int, n_positive: int | None, positive_fraction: float, sequences: str,
             witness_rate: float, motifs: tuple[str, ...], random_motifs: int, motif_length: str,
             gap_probability: float, substitution_probability: float, noise_rate: float, purge_background: bool,
             background_model: str, background_store: Path | None, whole_repertoires: bool, zipf_a: float,
             max_count: int, nonproductive_rate: float, covariates: bool, seed: int, force: bool,
             threads: int | None) -> None:
    """Simulate a cohort with motifs implanted in the positive repertoires.

    Writes OUT/samples.tsv, OUT/repertoires/<id>.tsv.gz (AIRR), OUT/implanted.tsv (the ground
    truth) and OUT/simulation.json; the background comes from OLGA (pip install olga) or a store.

    \b
    repclass simulate --out sim/ --repertoires 200 --sequences 20000 --witness-rate 0.001 --motif SFEN
    repclass simulate --out sim/ --random-motifs 3 --gap-probability 0.5 --noise-rate 0.001 --purge-background
    repclass simulate --out sim/ --repertoires 40 --nonproductive-rate 0.02 --covariates
    repclass simulate --out sim/ --background my.store --keep-repertoires --witness-rate 0.001 --random-motifs 3
    repclass ingest sim/samples.tsv sim/repertoires/ --out sim.store
    """
    from repclass.simulation.run import SimulationConfig, simulate_cohort

    if whole_repertoires:  # the store's repertoires decide how many and how large
        context = click.get_current_context()
        for name, option in (("n_repertoires", "--repertoires"), ("sequences", "--sequences")):
            if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{option} cannot be used with --keep-repertoires: the store's repertoires "
                                       "are kept whole, so their number and sizes are the store's")
    low, high = _int_range(sequences, "--sequences")
    config = SimulationConfig(
        n_repertoires=n_repertoires, n_positive=n_positive, positive_fraction=positive_fraction, min_sequences=low,
        max_sequences=high, witness_rate=witness_rate,
        motifs=motifs if motifs or random_motifs else SimulationConfig.motifs, random_motifs=random_motifs,
        random_motif_length=_int_range(motif_length, "--motif-length"), gap_probability=gap_probability,
        substitution_probability=substitution_probability, noise_rate=noise_rate, purge_background=purge_background,
        background_model=background_model, background_store=background_store, whole_repertoires=whole_repertoires,
        zipf_a=zipf_a, max_count=max_count,
        nonproductive_rate=nonproductive_rate, covariates=covariates, seed=seed)
    result = simulate_cohort(out, config, force=force, threads=threads)
    click.echo(f"{result.path}: {result.n_repertoires} repertoires ({result.n_positive} positive), "
               f"{result.n_implanted} witnesses (mean rate {result.mean_witness_rate:.4g}), "
               f"{result.n_noise_implants} noise implants"
               + (f", {result.n_nonproductive} non-productive rows" if result.n_nonproductive else "")
               + f"; motifs {', '.join(result.motifs) or 'none'}")


if __name__ == "__main__":  # pragma: no cover
    main()
