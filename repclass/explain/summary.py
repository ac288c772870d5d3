"""motifs.json's content: what was explained and how, the integrated-gradients checks, the motifs
and kernels, and the evidence beside them (held-out performance, attention concentration, motif
enrichment). No paths, dates or timings: the same inputs give the same bytes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from repclass._version import __version__
from repclass.alphabet import AMINO_ACIDS
from repclass.model.checkpoint import ModelInfo
from repclass.training.diagnostics import memorisation_warning
from repclass.prediction.ensemble import HELD_OUT
from repclass.explain.evidence import (average_precision, confusion, consensus_pattern, enrichment,
                                       gene_usage, motif_frequencies, pr_points, roc_points)
from repclass.files import sha256_of
from repclass.metrics import roc_auc_interval
from repclass.names import DIAGNOSTICS_NAME, PREDICTIONS_NAME
from repclass.io.store import Store
from repclass.explain.attribution import COMPLETENESS_TOLERANCE, DELTA_FLOOR
from repclass.explain.outputs import ExplainedOutput
from repclass.explain.tables import logo_file, significant, significant_rows
from repclass.explain.types import KernelSummary, Motif
from repclass.targets import BINARY, REGRESSION

FORMAT = "repclass-motifs"
FORMAT_VERSION = 1
#: Sequences of each motif listed in motifs.json and the report.
EXAMPLES_PER_MOTIF = 5


def build_summary(model_path: Path, store: Store, explained: ExplainedOutput, selection: str, samples: list[str],
                  settings: dict[str, Any], errors: np.ndarray, steps: np.ndarray, motifs: list[Motif],
                  kernels: list[KernelSummary], sequences: list[str]) -> dict[str, Any]:
    """The content of motifs.json (no paths, dates or timings: the same inputs give the same bytes)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "repclass_version": __version__,
        "model": {"file": model_path.name, "sha256": sha256_of(model_path)},
        "store": {"name": store.path.name, "fingerprint": store.fingerprint},
        "explained": {"target": explained.target, "kind": explained.kind, "class": explained.class_name,
                      "output_index": explained.output_index, "sign": explained.sign,
                      "description": explained.describe()},
        "selection": selection,
        "samples": samples,
        "settings": settings,
        "alphabet": AMINO_ACIDS,
        "integrated_gradients": {
            "baseline": "the sequence with all 20 amino-acid channels zero (position features kept), the other "
                        "top-k sequences of its repertoire fixed",
            "quadrature": "Gauss-Legendre, steps doubled for sequences above the tolerance",
            "n_sequences": len(errors),
            "worst_relative_error": significant(float(errors.max()), 4) if len(errors) else 0.0,
            "mean_relative_error": significant(float(errors.mean()), 4) if len(errors) else 0.0,
            "tolerance": COMPLETENESS_TOLERANCE,
            "delta_floor": DELTA_FLOOR,
            "max_steps": int(steps.max()) if len(steps) else 0,
            "n_above_tolerance": int((errors > COMPLETENESS_TOLERANCE).sum()),
        },
        "motifs": [{
            "id": m.id, "rank": m.rank, "consensus": m.consensus, "n_sequences": m.n_sequences,
            "n_repertoires": m.n_repertoires, "total_contribution": significant(m.total_contribution),
            "columns": m.columns, "consensus_span": list(m.consensus_span),
            "frequencies": significant_rows(m.frequencies), "contributions": significant_rows(m.contributions),
            "examples": [sequences[i] for i in m.members[:EXAMPLES_PER_MOTIF]],
            "logo_png": logo_file("motif", m.rank, "png"), "logo_svg": logo_file("motif", m.rank, "svg"),
        } for m in motifs],
        "kernels": [{
            "rank": k.rank, "kernel": k.kernel, "contribution": significant(k.contribution),
            "weights": significant_rows(k.weights), "position_weights": significant_rows(k.position_weights),
            "logo_png": logo_file("kernel", k.rank, "png"),
            "logo_svg": logo_file("kernel", k.rank, "svg"),
        } for k in kernels],
    }


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"n": 0, "median": None, "p10": None, "p90": None}
    return {"n": int(len(values)), "median": significant(float(np.median(values))),
            "p10": significant(float(np.quantile(values, 0.1))),
            "p90": significant(float(np.quantile(values, 0.9)))}


def training_warning(model_path: Path, info: ModelInfo, history: Sequence[dict[str, Any]]) -> str | None:
    """The warning `repclass train` logged about this model's training curve, if any, as train
    recorded it in the model folder (diagnostics.json); a folder without that file (written by an
    older repclass) gets it made again from the model file and its training_curve.tsv
    (repclass.training.diagnostics)."""
    recorded = Path(model_path).parent / DIAGNOSTICS_NAME
    if recorded.exists():
        return json.loads(recorded.read_text())["training_warning"]
    settings = info.train_config
    return memorisation_warning(history, info.metrics.get("best_update"), int(settings.get("eval_every", 100)),
                                info.targets, bool(info.model_config.use_counts and settings.get("init_evidence")))


def build_evidence(store: Store, info: ModelInfo, explained: ExplainedOutput, scores: pl.DataFrame,
                   found: list[Motif], sequence_table: pl.DataFrame, split_of: dict[str, str],
                   assignment: Any) -> dict[str, Any]:
    """The numbers behind the report's evidence sections (motifs.json's "evidence")."""
    held = scores.filter(pl.col("split").is_in(list(HELD_OUT)))
    labelled = held.filter(pl.col("label").is_not_null())
    evidence: dict[str, Any] = {
        "splits": assignment.counts(),
        "training_store": "same" if assignment.confirmed else ("overlapping ids" if assignment.overlaps else "none"),
        "model_metrics": {split: info.metrics.get(split, {}).get(explained.target, {})
                          for split in ("train", "validation", "test") if split in info.metrics},
        "best_update": info.metrics.get("best_update"),
        "attention": {
            "top1_weight": _stats(scores["top1_attention"].to_list()),
            "effective_n": _stats(scores["effective_n"].to_list()),
            "top1_weight_above_0.5": int((scores["top1_attention"] > 0.5).sum()),
            "n_repertoires": scores.height,
        },
    }
    if explained.kind != REGRESSION and labelled.height:
        positive = np.array([v == explained.class_name for v in labelled["label"].to_list()])
        values = labelled["score"].to_numpy()
        fpr, tpr = roc_points(positive, values)
        recall, precision = pr_points(positive, values)
        classes = list(next(t for t in info.targets if t.column == explained.target).classes or [])
        auc = roc_auc_interval(positive, values) if 0 < positive.sum() < len(positive) else (None, None, None)
        evidence["held_out"] = {
            "n": labelled.height, "n_class": int(positive.sum()),
            "roc_auc": significant(auc[0]) if auc[0] is not None else None,
            # stratified bootstrap 95% interval (metrics.roc_auc_interval)
            "roc_auc_low": significant(auc[1]) if auc[1] is not None else None,
            "roc_auc_high": significant(auc[2]) if auc[2] is not None else None,
            "average_precision": significant(average_precision(positive, values)) if positive.any() else None,
            "roc": {"fpr": [significant(v) for v in fpr], "tpr": [significant(v) for v in tpr]},
            "pr": {"recall": [significant(v) for v in recall], "precision": [significant(v) for v in precision]},
            "classes": classes,
            "confusion": confusion(labelled["label"].to_list(), labelled["predicted"].to_list(), classes).tolist(),
        }
    # Motif enrichment: each motif's share of sequences in every labelled repertoire of the store.
    in_class: dict[str, bool] = {}
    if explained.kind != REGRESSION and explained.target in store.label_columns:
        in_class = {i: v == explained.class_name for i, v in store.labels(explained.target).items() if v is not None}
    patterns = [consensus_pattern(m.consensus) for m in found]
    shares = motif_frequencies(store.iter_tables(["junction_aa"]), patterns) if found and in_class else {}
    motifs_evidence = []
    for index, motif in enumerate(found):
        members = sequence_table.filter(pl.col("motif") == motif.id)
        repertoires = sorted(set(members["sample_id"].to_list()))
        item: dict[str, Any] = {
            "id": motif.id, "pattern": patterns[index],
            "v_usage": [[g, significant(f, 3)] for g, f in gene_usage(members["v_call"].to_list())],
            "j_usage": [[g, significant(f, 3)] for g, f in gene_usage(members["j_call"].to_list())],
            "n_repertoires": len(repertoires),
            "n_repertoires_held_out": sum(split_of.get(r, "new") in HELD_OUT for r in repertoires),
            "n_sign_disagreements": int(((members["contribution"] > 0) & (members["ig_delta"] < 0)).sum()),
        }
        if shares:
            per = {i: float(v[index]) for i, v in shares.items()}
            item["enrichment_all"] = enrichment(patterns[index], per, in_class).to_dict()
            held_ids = {i: c for i, c in in_class.items() if split_of.get(i, "new") in HELD_OUT}
            item["enrichment_held_out"] = enrichment(patterns[index], per, held_ids).to_dict()
        motifs_evidence.append(item)
    evidence["motifs"] = motifs_evidence
    evidence["sign_disagreements"] = {
        "n": int(((sequence_table["contribution"] > 0) & (sequence_table["ig_delta"] < 0)).sum()),
        "n_positive": int((sequence_table["contribution"] > 0).sum())}
    return evidence


def recorded_auc_intervals(model_paths: Sequence[Path], explained: ExplainedOutput, folds: bool
                           ) -> dict[str, list[float]]:
    """Bootstrap 95% intervals (metrics.roc_auc_interval) of the ROC AUCs recorded at training, keyed
    like the evidence's "model_metrics" (train / validation / test, or "fold k test"), from each model
    folder's predictions.tsv. Binary targets only: a multiclass model records its macro AUC."""
    if explained.kind != BINARY:
        return {}
    intervals: dict[str, list[float]] = {}
    label = f"{explained.target}:label"
    for k, path in enumerate(model_paths, start=1):
        table_path = Path(path).parent / PREDICTIONS_NAME
        if not table_path.exists():
            continue
        table = pl.read_csv(table_path, separator="\t", infer_schema_length=0)  # every column as text
        probability = [c for c in table.columns if c.startswith(f"{explained.target}:p(")]
        if len(probability) != 1 or label not in table.columns:
            continue
        positive_class = probability[0][len(explained.target) + 3:-1]
        for split in (("test",) if folds else ("train", "validation", "test")):
            rows = table.filter((pl.col("split") == split) & pl.col(label).is_not_null())
            positive = (rows[label] == positive_class).to_numpy()
            if 0 < positive.sum() < len(positive):
                _, low, high = roc_auc_interval(positive, rows[probability[0]].cast(pl.Float64).to_numpy())
                intervals[f"fold {k} test" if folds else split] = [significant(low), significant(high)]
    return intervals
