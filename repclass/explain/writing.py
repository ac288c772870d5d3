"""The output folder: tables, motifs.json, truth.json, logos, figures and report.html written into
a temporary sibling folder, then published as `out` in one rename (under the output's lock)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from repclass.io.airr import write_airr_rearrangements
from repclass.files import Outputs
from repclass.explain.tables import LOGO_FOLDER
from repclass.names import TRAINING_CURVE_NAME, TRAINING_CURVE_PLOT_NAME


def training_history(model_path: Path) -> list[dict[str, Any]]:
    """The model folder's training curve (training_curve.tsv), when the model file sits in one."""
    path = model_path.parent / TRAINING_CURVE_NAME
    if not path.exists():
        return []
    table = pl.read_csv(path, separator="\t", infer_schema_length=None)
    return table.to_dicts() if "update" in table.columns and table.height else []


def training_curve_figures(model_path: Path) -> list[Path]:
    """The model folder's training-curve figure (PNG and SVG) that `repclass train` drew, or []
    when either is missing. It shows the history and best update the report would draw again."""
    png = model_path.parent / TRAINING_CURVE_PLOT_NAME
    paths = [png, png.with_suffix(".svg")]
    return paths if all(path.is_file() for path in paths) else []


def _write_tsv(table: pl.DataFrame, path: Path) -> None:
    table.write_csv(path, separator="\t")


def _write_folder(folder: Path, summary: dict[str, Any], sequence_table: pl.DataFrame,
                  repertoire_table: pl.DataFrame, motif_table: pl.DataFrame, scores_table: pl.DataFrame,
                  history: list[dict[str, Any]], curve_figures: list[Path]) -> Path:
    from repclass.plot import draw_evidence_figures, plot_training_curve
    from repclass.explain.logos import draw_kernel_logo, draw_motif_logo
    from repclass.explain.report import write_report

    folder.mkdir(parents=True)
    _write_tsv(sequence_table, folder / "sequences.tsv")
    _write_tsv(repertoire_table, folder / "repertoires.tsv")
    _write_tsv(motif_table, folder / "motifs.tsv")
    _write_tsv(scores_table, folder / "scores.tsv")
    (folder / "motifs.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if "truth" in summary:
        (folder / "truth.json").write_text(json.dumps(summary["truth"], indent=1, sort_keys=True) + "\n")
    figures = folder / "figures"
    figures.mkdir()
    # The training curve as train drew it (drawing it again costs a second of matplotlib); drawn
    # from the model's history only where the model folder has no figure.
    for path in curve_figures:
        shutil.copyfile(path, figures / path.name)
    if history and not curve_figures:
        plot_training_curve(history, figures / "training_curve.png", summary.get("evidence", {}).get("best_update"))
    draw_evidence_figures(summary, scores_table, figures)
    (folder / LOGO_FOLDER).mkdir()
    # Drawn from the rounded matrices of motifs.json: last-bit differences (thread counts, say)
    # never change a pixel.
    for motif in summary["motifs"]:
        draw_motif_logo(np.array(motif["contributions"]), np.array(motif["frequencies"]), motif["columns"],
                        f"{motif['id']}  {motif['consensus']}  ({motif['n_sequences']} sequences, "
                        f"{motif['n_repertoires']} repertoires)", folder / Path(motif["logo_png"]).with_suffix(""),
                        highlight=tuple(motif["consensus_span"]))
    for kernel in summary["kernels"]:
        draw_kernel_logo(np.array(kernel["weights"]), np.array(kernel["position_weights"]),
                         f"kernel rank {kernel['rank']} (kernel index {kernel['kernel']}; mean contribution "
                         f"{kernel['contribution']:.3g} logit)", folder / Path(kernel["logo_png"]).with_suffix(""))
    return write_report(folder / "report.html", summary, sequence_table, scores_table)


def publish_folder(outputs: Outputs, summary: dict[str, Any], sequence_table: pl.DataFrame,
                   repertoire_table: pl.DataFrame, motif_table: pl.DataFrame, scores_table: pl.DataFrame,
                   history: list[dict[str, Any]], airr_table: pl.DataFrame, curve_figures: list[Path]) -> None:
    """Write everything into the output's temporary folder, then publish it (files.Outputs).
    `curve_figures`: the model folder's training-curve PNG and SVG, copied instead of drawing
    `history` again (training_curve_figures)."""
    temporary = outputs.temporary(outputs.path)
    _write_folder(temporary, summary, sequence_table, repertoire_table, motif_table, scores_table, history,
                  curve_figures)
    write_airr_rearrangements(airr_table, temporary / "sequences.airr.tsv")
    outputs.publish()
