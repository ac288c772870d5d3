"""Sequence logos of motifs and convolution kernels, drawn with logomaker from matrices.

Every logo is written as PNG and SVG through `plot.save_figure`, which makes the bytes depend
only on the matrices (no dates, a fixed SVG hash salt). The font is named explicitly (matplotlib
ships DejaVu Sans), so no machine falls back to another font and draws different glyphs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from repclass.alphabet import AMINO_ACIDS, N_AMINO_ACIDS
from repclass.plot import save_figure_formats, subplots

FONT = "DejaVu Sans"
COLOR_SCHEME = "chemistry"
#: Figure width per logo column and fixed margins (inches).
COLUMN_WIDTH = 0.42
MARGIN_WIDTH = 1.3
SUFFIXES = (".png", ".svg")
#: Letters lower than this share of a logo's height are left out of the drawing.
VISIBLE = 0.02
#: Kernel logos show only the residues whose centred weight is positive and at least this share of
#: the kernel's largest weight: with ~20 letters per column the rest would hide what matters.
KERNEL_THRESHOLD = 0.25
POSITION_FEATURES = ("start ramp", "end ramp", "centre")
#: The one name of each quantity drawn (the report and docs/motifs.md use the same words).
RESIDUE_AXIS = "mean residue\nattribution (logit)"


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


class _MeasuredTextPath:
    """Builds each letter's text path once per process, and measures it once.

    logomaker draws every glyph from two text paths, its letter's and the widest letter's, built
    from the font and measured (`get_extents`, a walk over every Bezier curve) anew each time: 40%
    of a logo's time. It only reads them (each glyph's own path is a transformed copy), so one
    shared path per letter, font and size gives the same glyphs, and the same figure bytes."""

    def __init__(self) -> None:
        self._paths: dict[tuple, object] = {}

    def __call__(self, xy, s, size=None, prop=None, **options):
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextPath

        if options or not isinstance(prop, FontProperties):
            return TextPath(xy, s, size=size, prop=prop, **options)
        key = (tuple(xy), s, size, prop.copy())  # FontProperties compare by all their settings
        if key not in self._paths:
            path = TextPath(xy, s, size=size, prop=prop)
            extents = path.get_extents()

            def get_extents(transform=None, **kwargs):
                if transform is None and not kwargs:
                    return extents.frozen()  # a copy: the caller may change it
                return TextPath.get_extents(path, transform, **kwargs)

            path.get_extents = get_extents
            self._paths[key] = path
        return self._paths[key]


def _reuse_letter_paths() -> None:
    """Hand logomaker's glyphs `_MeasuredTextPath`'s shared letter paths (once per process;
    nothing changes where logomaker no longer builds its glyphs this way)."""
    from logomaker.src import Glyph

    if getattr(Glyph, "TextPath", None) is not None and not isinstance(Glyph.TextPath, _MeasuredTextPath):
        Glyph.TextPath = _MeasuredTextPath()


def _draw(matrix: np.ndarray, positions: list[int], axis, ylabel: str) -> None:
    from repclass.plot import matplotlib_config

    matplotlib_config()
    import logomaker

    _reuse_letter_paths()
    logomaker.Logo(_frame(matrix, positions), ax=axis, color_scheme=COLOR_SCHEME, font_name=FONT,
                   flip_below=True)
    axis.axhline(0.0, color="0.6", linewidth=0.6)
    axis.set_ylabel(ylabel)
    axis.set_xticks(positions)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)


def draw_motif_logo(contributions: np.ndarray, frequencies: np.ndarray, columns: list[int], title: str, stem: Path,
                    highlight: tuple[int, int] | None = None) -> list[Path]:
    """Two stacked logos over the motif's aligned columns: mean integrated-gradients contribution
    per member (letters below the axis argue against the class), and information content (bits).
    `highlight` is the [first, last + 1) column index range of the consensus. Writes stem.png/.svg."""
    figure, (top, bottom) = subplots(2, 1, figsize=(MARGIN_WIDTH + COLUMN_WIDTH * len(columns), 3.6),
                                     sharex=True)
    _draw(contributions, columns, top, RESIDUE_AXIS)
    _draw(information_heights(frequencies), columns, bottom, "bits")
    bottom.set_ylim(0, math.log2(N_AMINO_ACIDS))
    if highlight is not None:
        for axis in (top, bottom):
            axis.axvspan(columns[highlight[0]] - 0.5, columns[highlight[1] - 1] + 0.5, color="0.93", zorder=-1)
    bottom.set_xlabel("position (1: first residue of the consensus)")
    top.set_title(title, fontsize=9)
    return save_figure_formats(figure, stem, SUFFIXES)


def kernel_residues(weights: np.ndarray, threshold: float = KERNEL_THRESHOLD) -> np.ndarray:
    """The weights a kernel logo draws: positive centred weights of at least `threshold` of the
    kernel's largest, others 0. (kernel_size, 20) -> (kernel_size, 20)."""
    weights = np.asarray(weights, dtype=np.float64)
    top = weights.max()
    if top <= 0:
        return np.zeros_like(weights)
    return np.where(weights >= threshold * top, weights, 0.0)


def draw_kernel_logo(weights: np.ndarray, position_weights: np.ndarray | None, title: str, stem: Path) -> list[Path]:
    """Logo of one convolution kernel: the residues it responds to (positive centred weights above
    KERNEL_THRESHOLD of its largest), and below it the weights of the 3 position features per
    kernel position. weights: (kernel_size, 20); position_weights: (kernel_size, 3) or None."""
    positions = list(range(1, weights.shape[0] + 1))
    with_positions = position_weights is not None and np.asarray(position_weights).size > 0
    figure, axes = subplots(2 if with_positions else 1, 1, sharex=True, squeeze=False,
                            figsize=(MARGIN_WIDTH + 0.3 + COLUMN_WIDTH * len(positions),
                                     3.4 if with_positions else 2.0),
                            gridspec_kw={"height_ratios": [2, 1]} if with_positions else None)
    axis = axes[0, 0]
    shown = kernel_residues(weights)
    _draw(shown, positions, axis, "residue weight\n(centred, > 0)")
    axis.set_ylim(0, max(float(shown.sum(axis=1).max()), 1e-9) * 1.05)
    if with_positions:
        lower = axes[1, 0]
        matrix = np.asarray(position_weights, dtype=np.float64)
        for column, (name, style) in enumerate(zip(POSITION_FEATURES, ("-", "--", ":"))):
            lower.plot(positions, matrix[:, column], style, color="0.25", linewidth=1.2, label=name)
        lower.axhline(0.0, color="0.7", linewidth=0.6)
        lower.set_ylabel("position\nfeature weight")
        lower.legend(fontsize=6, frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.45))
        for side in ("top", "right"):
            lower.spines[side].set_visible(False)
        axis = lower
    axis.set_xlabel("kernel position")
    axes[0, 0].set_title(title, fontsize=9)
    return save_figure_formats(figure, stem, SUFFIXES)
