"""Figures: one render gives the PNG, cropped to the ink, and the box that crops the SVG."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from repclass.plot import DPI, OVERHANG, render_cropped, save_figure_formats, subplots


def _figure(text_at: tuple[float, float] | None = None):
    figure, axis = subplots(figsize=(3.0, 2.0))
    axis.plot([0, 1, 2], [0, 1, 0.5], color="tab:blue")
    axis.set_xlabel("update")
    axis.legend(["loss"], loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)  # below the axes
    if text_at is not None:
        figure.text(text_at[0] / 3.0, text_at[1] / 2.0, "far away")  # at inches from the corner
    return figure


def test_the_png_is_matplotlibs_own_render_of_the_box():
    figure = _figure()
    pixels, box = render_cropped(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches=box)
    direct = np.asarray(Image.open(buffer).convert("RGBA"))
    assert direct.shape == pixels.shape
    assert np.array_equal(direct, pixels)
    # the legend below the axes, outside the 3 x 2 inch canvas, is inside the crop
    assert box.y0 < 0 < box.y1 <= 2.0 + OVERHANG


def test_png_and_svg_show_the_same_extent_and_keep_their_bytes(tmp_path):
    digests = []
    for name in ("a", "b"):
        png, svg = save_figure_formats(_figure(), tmp_path / name)
        digests.append((png.read_bytes(), svg.read_bytes()))
    assert digests[0] == digests[1]
    with Image.open(png) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    text = svg.read_text()
    svg_width, svg_height = (float(re.search(rf'{key}="([\d.]+)pt"', text).group(1)) for key in ("width", "height"))
    assert svg_width * DPI / 72 == pytest.approx(width, abs=1)
    assert svg_height * DPI / 72 == pytest.approx(height, abs=1)
    # cropped to the ink plus matplotlib's 0.1 inch padding: no blank band on any side
    ink = (pixels != 255).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    pad = round(0.1 * DPI)
    assert (rows[0], cols[0]) == (pad, pad)
    assert (ink.shape[0] - 1 - rows[-1], ink.shape[1] - 1 - cols[-1]) == (pad, pad)


def test_ink_reaching_past_the_overhang_is_measured_by_matplotlib_and_kept(tmp_path):
    figure = _figure(text_at=(-OVERHANG - 0.3, 1.0))  # "far away" straddles the overhang's left edge
    assert render_cropped(figure) is None
    png, _ = save_figure_formats(figure, tmp_path / "far")
    with Image.open(png) as image:
        # from the text, 1.8 in left of the canvas, to the axes' right edge, ~2.7 in right of its left edge
        assert image.size[0] >= (OVERHANG + 0.3 + 2.5) * DPI


def test_an_empty_figure_is_still_written(tmp_path):
    figure, axis = subplots(figsize=(2.0, 2.0))
    axis.set_axis_off()
    assert render_cropped(figure) is None
    png, svg = save_figure_formats(figure, tmp_path / "empty")
    assert png.stat().st_size > 0 and svg.stat().st_size > 0
