"""The explainer's tables, as written to the output folder: sequences.tsv, repertoires.tsv,
motifs.tsv, scores.tsv and sequences.airr.tsv; where logos lie in the folder; and the rounding
that keeps last-bit noise out of every file."""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from repclass.io.airr import airr_rearrangements
from repclass.io.store import Store
from repclass.explain.clustering import CORE_WIDTH, peak_window
from repclass.explain.outputs import ExplainedOutput
from repclass.explain.types import Candidate, Motif, RepertoireSummary, ScoredRepertoire
from repclass.targets import REGRESSION

#: The output folder's subfolder of motif and kernel logos.
LOGO_FOLDER = "logos"


def logo_file(kind: str, rank: int, suffix: str) -> str:
    """Where a logo lies in the output folder: logo_file("motif", 1, "png") = "logos/motif_01.png"."""
    return f"{LOGO_FOLDER}/{kind}_{rank:02d}.{suffix}"


def significant(value: float, digits: int = 6) -> float:
    """Round to `digits` significant digits, so that last-bit noise never reaches a file."""
    return float(f"{value:.{digits}g}")


def significant_rows(array: np.ndarray, digits: int = 6) -> list:
    return [[significant(float(v), digits) for v in row] for row in np.asarray(array)]


def sequence_table(candidates: list[Candidate], sample_ids: list[str], attributions: list[np.ndarray],
                   delta: np.ndarray, errors: np.ndarray, steps: np.ndarray, motif_of: dict[int, str]) -> pl.DataFrame:
    """sequences.tsv: the ranked sequences with attention, contribution and residue attributions."""
    peaks = [peak_window(a, CORE_WIDTH) if len(a) >= CORE_WIDTH else 0 for a in attributions]
    return pl.DataFrame({
        "rank": list(range(1, len(candidates) + 1)),
        "sample_id": [sample_ids[c.sample_index] for c in candidates],
        "junction_aa": [c.junction for c in candidates],
        "v_call": [c.v_call for c in candidates],
        "j_call": [c.j_call for c in candidates],
        "duplicate_count": [c.count for c in candidates],
        "attention": [significant(c.attention) for c in candidates],
        "attention_rank": [c.attention_rank for c in candidates],
        "attention_logit": [significant(c.logit) for c in candidates],
        "contribution": [significant(c.contribution) for c in candidates],
        "ig_delta": [significant(float(d)) for d in delta],
        "ig_error": [significant(float(e), 3) for e in errors],
        "ig_steps": [int(s) for s in steps],
        "peak_start": peaks,
        "motif": [motif_of.get(i, "") for i in range(len(candidates))],
        "residue_contributions": [",".join(f"{v:.6g}" for v in a) for a in attributions],
    }, schema_overrides={"duplicate_count": pl.Int64, "attention_rank": pl.Int64, "peak_start": pl.Int64})


def repertoire_table(summaries: list[RepertoireSummary], sequence_table: pl.DataFrame) -> pl.DataFrame:
    """repertoires.tsv: each analysed repertoire's output, empty output and listed sequences."""
    listed = sequence_table.group_by("sample_id").len()
    counts = dict(zip(listed["sample_id"].to_list(), listed["len"].to_list()))
    return pl.DataFrame({
        "sample_id": [s.sample_id for s in summaries],
        "n_sequences": [s.n_sequences for s in summaries],
        "n_attended": [s.n_attended for s in summaries],
        "output": [significant(s.output) for s in summaries],
        "empty_output": [significant(s.empty_output) for s in summaries],
        "evidence_output": [significant(s.evidence_output) for s in summaries],
        "sum_contributions": [significant(float(s.kernel_contributions.sum())) for s in summaries],
        "n_top_sequences": [counts.get(s.sample_id, 0) for s in summaries],
    }, schema_overrides={"n_sequences": pl.Int64, "n_attended": pl.Int64, "n_top_sequences": pl.Int64})


def motif_table(motifs: list[Motif], sequences: list[str]) -> pl.DataFrame:
    """motifs.tsv: one row per motif, with its logos."""
    return pl.DataFrame({
        "motif": [m.id for m in motifs],
        "rank": [m.rank for m in motifs],
        "consensus": [m.consensus for m in motifs],
        "n_sequences": [m.n_sequences for m in motifs],
        "n_repertoires": [m.n_repertoires for m in motifs],
        "total_contribution": [significant(m.total_contribution) for m in motifs],
        "top_sequence": [sequences[m.members[0]] for m in motifs],
        "logo_png": [logo_file("motif", m.rank, "png") for m in motifs],
        "logo_svg": [logo_file("motif", m.rank, "svg") for m in motifs],
    }, schema={"motif": pl.String, "rank": pl.Int64, "consensus": pl.String, "n_sequences": pl.Int64,
               "n_repertoires": pl.Int64, "total_contribution": pl.Float64, "top_sequence": pl.String,
               "logo_png": pl.String, "logo_svg": pl.String})


def scores_table(scored: list[ScoredRepertoire], owner: Any, explained: ExplainedOutput, store: Store,
                 split_of: dict[str, str]) -> pl.DataFrame:
    """Every scored repertoire: its split, label, explained output and probability (or predicted
    value), whether it was analysed, and how concentrated its attention is; for a model with the
    enrichment path, the part of the explained output that came from it (`enrichment_output`; the
    rest, output - enrichment_output, came from the attention path and the bias)."""
    outputs = np.stack([r.outputs for r in scored]).astype(np.float64)  # (n, n_outputs)
    columns = owner.predictions(outputs)
    if explained.kind == REGRESSION:
        probability = np.asarray(columns[f"{owner.column}:predicted"], dtype=np.float64)
    else:
        probability = np.asarray(columns[f"{owner.column}:p({explained.class_name})"], dtype=np.float64)
    labels = store.labels(owner.column) if owner.column in store.label_columns else {}
    ids = [r.sample_id for r in scored]
    table = pl.DataFrame({
        "sample_id": ids,
        "split": [split_of.get(i, "new") for i in ids],
        "label": [labels.get(i) for i in ids],
        "output": [significant(float(explained.sign * r.outputs[explained.output_index])) for r in scored],
        "score": [significant(float(v)) for v in probability],
        "predicted": [str(v) for v in columns[f"{owner.column}:predicted"]],
        "analysed": [r.analysed for r in scored],
        "n_sequences": [r.n_sequences for r in scored],
        "top1_attention": [significant(r.top1_attention) for r in scored],
        "effective_n": [significant(r.effective_n) for r in scored],
    }, schema={"sample_id": pl.String, "split": pl.String, "label": pl.String, "output": pl.Float64,
               "score": pl.Float64, "predicted": pl.String, "analysed": pl.Boolean, "n_sequences": pl.Int64,
               "top1_attention": pl.Float64, "effective_n": pl.Float64})
    if all(r.enrichment_outputs is not None for r in scored):
        parts = [significant(float(explained.sign * r.enrichment_outputs[explained.output_index])) for r in scored]
        table = table.insert_column(4, pl.Series("enrichment_output", parts, dtype=pl.Float64))
    return table


def path_shares(scores: pl.DataFrame) -> dict[str, Any] | None:
    """How much of the predictions came from each path of a model with the enrichment path
    (None without one): the spread (SD) across the scored repertoires of the explained output's
    enrichment part and of the rest (attention path; the bias is the same for all), and the
    enrichment part's share of their summed variances."""
    if "enrichment_output" not in scores.columns or scores.height < 2:
        return None
    enrichment = scores["enrichment_output"].to_numpy().astype(np.float64)
    attention = scores["output"].to_numpy().astype(np.float64) - enrichment
    spread_e, spread_a = float(enrichment.std(ddof=1)), float(attention.std(ddof=1))
    total = spread_e ** 2 + spread_a ** 2
    return {"n_repertoires": scores.height, "enrichment_sd": significant(spread_e),
            "attention_sd": significant(spread_a),
            "enrichment_share": significant(spread_e ** 2 / total) if total > 0 else None}


def airr_sequences(store: Store, sequence_table: pl.DataFrame) -> pl.DataFrame:
    """sequences.tsv as AIRR rearrangements (repclass.io.airr), with the stored AIRR fields
    (sequence_id of every merged input row, locus, c_call) joined back by clonotype, so that the
    explained sequences join to the user's own records."""
    key = ["sample_id", "junction_aa", "v_call", "j_call"]
    stored = []
    for sample_id in sequence_table["sample_id"].unique(maintain_order=True).to_list():
        table = store.read(sample_id)
        extra = [c for c in ("sequence_id", "locus", "c_call") if c in table.columns]
        if extra:
            stored.append(table.select(key[1:] + extra).with_columns(pl.lit(sample_id).alias("sample_id")))
    joined = sequence_table
    if stored:
        joined = sequence_table.join(pl.concat(stored, how="diagonal_relaxed"), on=key, how="left", nulls_equal=True)
    productive = True if store.manifest.get("read_options", {}).get("productive_only", True) else None
    extra_columns = [c for c in sequence_table.columns if c not in ("sample_id", "junction_aa", "v_call", "j_call",
                                                                    "duplicate_count")]
    return airr_rearrangements(joined, convention=store.junction_convention, productive=productive,
                               extra=extra_columns)

