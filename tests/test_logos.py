"""Sequence logos (repclass.explain.logos): what each draws, and that sharing logomaker's letter
paths leaves every figure's bytes as logomaker alone draws them."""
from __future__ import annotations

import numpy as np
import pytest

from repclass.explain import logos


def _draw_both(folder, tag: str) -> list[bytes]:
    rng = np.random.default_rng(7)
    # a motif logo with letters below the axis (flipped) and a kernel logo with its position features
    contributions = rng.normal(size=(5, 20)) * 0.1
    frequencies = rng.dirichlet(np.full(20, 0.3), size=5)
    paths = logos.draw_motif_logo(contributions, frequencies, list(range(1, 6)), "motif", folder / f"{tag}_motif",
                                  highlight=(1, 4))
    paths += logos.draw_kernel_logo(rng.normal(size=(4, 20)), rng.normal(size=(4, 3)), "kernel",
                                    folder / f"{tag}_kernel")
    return [path.read_bytes() for path in paths]


def test_shared_letter_paths_draw_the_same_bytes_as_logomaker(tmp_path, monkeypatch):
    from logomaker.src import Glyph
    from matplotlib.textpath import TextPath

    shared = _draw_both(tmp_path, "shared")
    assert isinstance(Glyph.TextPath, logos._MeasuredTextPath)
    # logomaker's own way: a new text path, measured anew, for every glyph
    monkeypatch.setattr(logos, "_reuse_letter_paths", lambda: None)
    monkeypatch.setattr(Glyph, "TextPath", TextPath)
    own = _draw_both(tmp_path, "own")
    assert len(shared) == 4 and all(len(b) > 1000 for b in shared)
    assert shared == own


def test_shared_letter_paths_are_built_once_and_measured_as_matplotlib_does():
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    paths = logos._MeasuredTextPath()
    bold = FontProperties(family=logos.FONT, weight="bold")
    first = paths((0, 0), "W", size=1, prop=bold)
    assert paths((0, 0), "W", size=1, prop=FontProperties(family=logos.FONT, weight="bold")) is first
    assert paths((0, 0), "W", size=1, prop=FontProperties(family=logos.FONT)) is not first  # another weight
    fresh = TextPath((0, 0), "W", size=1, prop=bold)
    assert np.array_equal(first.vertices, fresh.vertices)
    extents = first.get_extents()
    assert np.array_equal(extents.get_points(), fresh.get_extents().get_points())
    extents.x0 = -99.0  # a caller changing its copy changes nothing shared
    assert first.get_extents().x0 == pytest.approx(fresh.get_extents().x0)
