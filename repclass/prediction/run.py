"""`repclass predict`: score repertoires with a trained model.

Input is a store, or raw repertoire files that are ingested on the fly with the training
store's rules. Full repertoires are scored (never subsampled) in bounded memory. One row per
repertoire: probabilities / predicted class / predicted value per target, and the label when
the store has one (then metrics too). `attention_top_n` also exports each repertoire's
top-N sequences with their attention weights.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from repclass.io.airr import airr_path, airr_rearrangements, write_airr_rearrangements
from repclass.config import CHUNK_SIZE
from repclass.model.data import encode_table
from repclass.prediction.ensemble import assign_splits, ensemble_columns, held_out_metrics
from repclass.prediction.inputs import load_deeprc, read_options, resolve_inputs
from repclass.errors import RepclassError, UsageError
from repclass.files import Output, Outputs
from repclass.progress import progress
from repclass.compute.runtime import resolve_device
from repclass.model.scoring import score_repertoire

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    path: Path
    table: pl.DataFrame
    metrics: dict[str, Any] | None
    attention_path: Path | None
    #: Every file written: the table, then the metrics JSON and the attention tables where written.
    written: list[Path] = field(default_factory=list)


def _write_tsv(table: pl.DataFrame, path: Path) -> None:
    table.write_csv(path, separator="\t", float_precision=6)


def predict(model: str | Path, inputs: Sequence[str | Path], out: str | Path, *, samples: Sequence[str] | None = None,
            attention_top_n: int = 0, attention_out: str | Path | None = None, device: str = "auto",
            chunk_size: int = CHUNK_SIZE, force: bool = False, allow_other_locus: bool = False) -> PredictResult:
    """Score repertoires; writes `out` (TSV), `<out stem>.metrics.json` when labels are known, and
    `<out stem>.attention.tsv` (or `attention_out`) when `attention_top_n` > 0, with the same
    sequences as an AIRR rearrangement TSV next to it (`.attention.airr.tsv`, repclass.io.airr)."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    metrics_path = out.parent / f"{stem}.metrics.json"
    attention_path = Path(attention_out) if attention_out else out.parent / f"{stem}.attention.tsv"
    if attention_top_n < 0:
        raise UsageError("--attention must be a positive number of sequences")
    if chunk_size < 1:
        raise UsageError(f"--chunk-size must be at least 1, got {chunk_size}")
    # files.py's lifecycle: outputs distinct, none of them an input, --force only replacing what
    # predict itself writes (a predictions/attention table, a metrics JSON), locked while the run
    # lasts, published together at the end.
    written = [Output(out, "table"), Output(metrics_path, "json", "the metrics file")]
    if attention_top_n > 0:
        written += [Output(attention_path, "table", "--attention-out"),
                    Output(airr_path(attention_path), "table", "--attention-out (its AIRR version)")]
    read_paths = [Path(model), Path(model) / "model.safetensors", *[Path(p) for p in inputs]]
    with Outputs(written, inputs=read_paths, force=force) as claimed:
        return _predict(model, inputs, claimed, samples=samples, attention_top_n=attention_top_n,
                        device=device, chunk_size=chunk_size, allow_other_locus=allow_other_locus)


def _predict(model: str | Path, inputs: Sequence[str | Path], claimed: Outputs, *, samples: Sequence[str] | None,
             attention_top_n: int, device: str, chunk_size: int, allow_other_locus: bool) -> PredictResult:
    out, metrics_path = claimed.outputs[0].path, claimed.outputs[1].path
    attention_path = claimed.outputs[2].path if attention_top_n > 0 else None
    from repclass.baselines.predict import load_baselines

    baselines = load_baselines(model)  # k-mer / burden model folders (repclass.baselines); [] for DeepRC
    if baselines and attention_top_n > 0:
        raise UsageError(f"{model}: --attention needs a DeepRC model; a {baselines[0][1].method} baseline has no "
                         "attention weights")
    device_obj = resolve_device(device)
    models = baselines or load_deeprc(model, device_obj).loaded  # one model, or every fold of a `--folds` output
    network, info = models[0]
    given = resolve_inputs(inputs, info, allow_other_locus)
    store, sources = given.store, given.sources(info, samples, allow_other_locus)
    if not sources:
        raise UsageError("no repertoires to score")

    columns = baselines[0][0].columns if baselines else \
        ["junction_aa", "duplicate_count"] if info.model_config.use_counts else ["junction_aa"]
    rows: list[dict[str, Any]] = []
    outputs = []
    attention_tables = []
    airr_tables = []  # the same rows with every stored column (sequence_id, locus, c_call)
    short: list[str] = []  # repertoires with fewer sequences than --attention asks for
    with progress(len(sources), "predict") as bar:
        for sample_id, read in sources:
            table = read(columns)
            if table.height == 0:
                raise RepclassError(f"sample {sample_id!r} has no sequences to score")
            if baselines:  # a baseline scores the table itself
                outputs.append(np.stack([m.score_table(table) for m, _ in models]))
                rows.append({"sample_id": sample_id, "n_sequences": table.height})
                bar.advance(status=sample_id)
                continue
            encoded = encode_table(table)
            scores = [score_repertoire(m, encoded, device_obj, chunk_size) for m, _ in models]
            score = scores[0]  # the attention export shows the first (fold) model's attention
            outputs.append(np.stack([s.outputs for s in scores]))  # (n_models, n_outputs)
            rows.append({"sample_id": sample_id, "n_sequences": score.n_sequences})
            if score.composition_outputs is not None:  # the enrichment path: its input, its part of the logit
                rows[-1]["enrichment_input"] = float(np.mean([s.composition for s in scores]))
                rows[-1]["enrichment_logit"] = float(np.mean([s.composition_outputs[0] for s in scores]))
            if attention_top_n > 0:
                top = min(attention_top_n, len(score.rows))
                if top < attention_top_n:
                    short.append(f"{sample_id} ({top})")
                full = read(None)[score.rows[:top].tolist()].with_columns(
                    pl.lit(sample_id).alias("sample_id"), pl.Series("rank", np.arange(1, top + 1)),
                    pl.Series("attention", score.weights[:top]), pl.Series("logit", score.logits[:top]))
                attention_tables.append(full.select("sample_id", "rank", "junction_aa", "v_call", "j_call",
                                                    "duplicate_count", "attention", "logit"))
                airr_tables.append(full)
            bar.advance(status=sample_id)

    if short:
        log.info("--attention %d: %d repertoire(s) hold fewer sequences, so the attention tables have all of "
                 "theirs (rows written): %s", attention_top_n, len(short), ", ".join(short))
    table = pl.DataFrame(rows)
    # Which scored repertoires the model(s) trained or selected on: a `split` column, and metrics
    # on the held-out ones only (ensemble.py).
    assignment = assign_splits([i for _, i in models], table["sample_id"].to_list(),
                               store.fingerprint if store is not None else None, str(inputs[0]))
    if assignment.overlaps:
        table = table.with_columns(pl.Series("split", assignment.splits, dtype=pl.String))
    predicted, all_outputs = ensemble_columns(info.targets, list(np.stack(outputs, axis=1)))
    table = table.with_columns(*[pl.Series(name, values) for name, values in predicted.items()])
    metrics = None
    if store is not None:
        known = [t for t in info.targets if t.column in store.label_columns]
        if known:
            ids = table["sample_id"].to_list()
            metrics = {}
            for target in known:
                labels = store.labels(target.column)
                column_labels = [labels[i] for i in ids]
                table = table.with_columns(pl.Series(f"{target.column}:label", column_labels, dtype=pl.String))
                values, present = target.encode(column_labels)
                metrics[target.column] = held_out_metrics(target, all_outputs, values, present, assignment)
    # the enrichment path's columns last: the identifying and predicted and label columns keep their places
    path_columns = [c for c in ("enrichment_input", "enrichment_logit") if c in table.columns]
    table = table.select([c for c in table.columns if c not in path_columns] + path_columns)
    _write_tsv(table, claimed.temporary(out))
    if metrics is not None:
        claimed.temporary(metrics_path).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if attention_path is not None:
        _write_tsv(pl.concat(attention_tables), claimed.temporary(attention_path))
        options = read_options(info.read_options, info.junction_convention)
        productive = True if options.productive_only else None
        write_airr_rearrangements(airr_rearrangements(
            pl.concat(airr_tables, how="diagonal_relaxed"), convention=info.junction_convention,
            productive=productive, extra=["rank", "attention", "logit"]), claimed.temporary(airr_path(attention_path)))
    claimed.publish()
    written_paths = [out] + ([metrics_path] if metrics is not None else []) + (
        [attention_path, airr_path(attention_path)] if attention_path is not None else [])
    return PredictResult(path=out, table=table, metrics=metrics, attention_path=attention_path, written=written_paths)
