"""Sequence logos of motifs and convolution kernels, drawn with logomaker from matrices.

Every logo is written as PNG and SVG through `plot.save_figure`, which makes the bytes depend
only on the matrices (no dates, a fixed SVG hash salt). The font is named explicitly (matplotlib
ships DejaVu Sans), so no machine falls back to another font and draws different glyphs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .alphabet import AMINO_ACIDS, N_AMINO_ACIDS
from .plot import _pyplot, save_figure

FONT = "DejaVu Sans"
COLOR_SCHEME = "chemistry"
#: Figure width per logo column and fixed margins (inches).
COLUMN_WIDTH = 0.42
MARGIN_WIDTH = 1.3
SUFFIXES = (".png", ".svg")
#: Letters lower than this share of a logo's height are left out of the drawing.
VISIBLE = 0.02


def visible_letters(matrix: np.ndarray) -> list[int]:
    """Amino acids whose letter is at least VISIBLE of the logo's height somewhere (at least one).

    logomaker draws a glyph for every cell, even an empty one, and glyphs are what makes logos
    slow; letters under this height cannot be seen at the resolution written anyway. The
    matrices in motifs.json keep every amino acid.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    height = np.clip(matrix, 0, None).sum(axis=1).max() - np.clip(matrix, None, 0).sum(axis=1).min()
    largest = np.abs(matrix).max(axis=0)  # (20,)
    keep = np.nonzero(largest >= VISIBLE * height)[0] if height > 0 else np.zeros(0, dtype=int)
    return keep.tolist() or [int(np.argmax(largest))]


def _frame(matrix: np.ndarray, positions: list[int]):
    import pandas as pd

    keep = visible_letters(matrix)
    return pd.DataFrame(np.asarray(matrix, dtype=np.float64)[:, keep], index=pd.Index(positions, name="pos"),
                        columns=[AMINO_ACIDS[i] for i in keep])


def information_heights(frequencies: np.ndarray) -> np.ndarray:
    """Letter heights in bits: p * (log2(20) - entropy), per column; empty columns are 0.

    (n_columns, 20) -> (n_columns, 20). No small-sample correction: support is reported beside it.
    """
    p = np.asarray(frequencies, dtype=np.float64)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logs).sum(axis=1, keepdims=True)  # (n_columns, 1)
    covered = p.sum(axis=1, keepdims=True) > 0
    return np.where(covered, p * (math.log2(N_AMINO_ACIDS) - entropy), 0.0)


def _draw(matrix: np.ndarray, positions: list[int], axis, ylabel: str) -> None:
    import logomaker

    logomaker.Logo(_frame(matrix, positions), ax=axis, color_scheme=COLOR_SCHEME, font_name=FONT,
                   flip_below=True)
    axis.axhline(0.0, color="0.6", linewidth=0.6)
    axis.set_ylabel(ylabel)
    axis.set_xticks(positions)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)


def _save(figure, stem: Path) -> list[Path]:
    paths = []
    for suffix in SUFFIXES:
        path = stem.with_suffix(suffix)
        save_figure(figure, path)
        paths.append(path)
    return paths


def draw_motif_logo(contributions: np.ndarray, frequencies: np.ndarray, columns: list[int], title: str, stem: Path,
                    highlight: tuple[int, int] | None = None) -> list[Path]:
    """Two stacked logos over the motif's aligned columns: mean integrated-gradients contribution
    per member (letters below the axis argue against the class), and information content (bits).
    `highlight` is the [first, last + 1) column index range of the consensus. Writes stem.png/.svg."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(MARGIN_WIDTH + COLUMN_WIDTH * len(columns), 3.6),
                                         sharex=True)
    _draw(contributions, columns, top, "contribution")
    _draw(information_heights(frequencies), columns, bottom, "bits")
    bottom.set_ylim(0, math.log2(N_AMINO_ACIDS))
    if highlight is not None:
        for axis in (top, bottom):
            axis.axvspan(columns[highlight[0]] - 0.5, columns[highlight[1] - 1] + 0.5, color="0.93", zorder=-1)
    bottom.set_xlabel("position (1: first residue of the consensus)")
    top.set_title(title, fontsize=9)
    try:
        return _save(figure, stem)
    finally:
        plt.close(figure)


def draw_kernel_logo(weights: np.ndarray, title: str, stem: Path) -> list[Path]:
    """Logo of one convolution kernel's amino-acid weights, (kernel_size, 20), centred per position."""
    plt = _pyplot()
    positions = list(range(1, weights.shape[0] + 1))
    figure, axis = plt.subplots(figsize=(MARGIN_WIDTH + COLUMN_WIDTH * len(positions), 2.0))
    _draw(weights, positions, axis, "weight")
    axis.set_xlabel("kernel position")
    axis.set_title(title, fontsize=9)
    try:
        return _save(figure, stem)
    finally:
        plt.close(figure)
