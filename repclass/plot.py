"""Figures, drawn only from tables (never imported by compute code).

Outputs are byte-deterministic for the same inputs: PNG metadata carries no date, SVGs use a
fixed hash salt and no date.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from repclass.files import write_file_atomically
from repclass.targets import BINARY, REGRESSION


def _writable_folder(folder: Path) -> bool:
    """Whether `folder` exists and can be written, or could be created (its nearest existing parent
    can be written). By the permission bits, also for root, whom os.access never refuses: a folder
    its owner made read-only is not one to write into."""
    import os
    import stat

    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return False
    if os.geteuid() != 0:
        return os.access(existing, os.W_OK | os.X_OK)
    mode = existing.stat()
    bits = stat.S_IWUSR if mode.st_uid == 0 else stat.S_IWGRP | stat.S_IWOTH
    return bool(mode.st_mode & bits)


def matplotlib_config() -> None:
    """Point matplotlib at a temporary config/cache folder when its default ones (under $HOME)
    cannot be written: it would otherwise create folders there anyway (as root), or warn and make
    its own at every run. Called before matplotlib (or logomaker, which imports it) is imported."""
    import atexit
    import os
    import shutil
    import tempfile

    if os.environ.get("MPLCONFIGDIR"):
        return
    home = Path(os.path.expanduser("~"))
    defaults = [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
                Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"]
    if all(_writable_folder(folder) for folder in defaults):
        return
    temporary = tempfile.mkdtemp(prefix="repclass-matplotlib-")
    atexit.register(shutil.rmtree, temporary, True)
    os.environ["MPLCONFIGDIR"] = temporary


def subplots(*grid: int, figsize: tuple[float, float] | None = None, **layout: Any):
    """`pyplot.subplots` without pyplot: a figure on an Agg canvas and its axes. pyplot's figure
    registry is of no use to files written and closed at once, and importing it costs about half a
    second at every start of `repclass train`. (logomaker imports pyplot itself.)"""
    matplotlib_config()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "repclass"
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*grid, **layout)


#: Resolution of the PNGs (the SVGs are vectors).
DPI = 120
#: How far past the figure's canvas the first render reaches, in inches: legends and labels placed
#: outside the axes (below them, right of them) land in it and are kept.
OVERHANG = 1.5


def _metadata(suffix: str) -> dict[str, Any]:
    """No date and no software version in the file: bytes depend only on the drawing."""
    return {".png": {"Software": None}, ".svg": {"Date": None},
            ".pdf": {"CreationDate": None, "ModDate": None}}.get(suffix, {})


def tight_bounds(figure):
    """The figure's drawn extent plus matplotlib's padding, in inches: what savefig(bbox_inches=
    "tight") measures at DPI. A layout pass of every text: as costly as drawing the figure."""
    import matplotlib

    figure.set_dpi(DPI)
    figure.draw_without_rendering()
    return figure.get_tightbbox().padded(matplotlib.rcParams["savefig.pad_inches"])


def render_cropped(figure):
    """Render the figure once at DPI on a canvas OVERHANG larger on every side and crop it to its
    ink plus matplotlib's padding: returns (RGBA pixels (h, w, 4) uint8, their box in inches), or
    None when nothing is drawn or the ink reaches the canvas's edge (more overhang than allowed).

    savefig(bbox_inches="tight") draws a figure twice (a layout pass to measure, then the
    drawing); a figure wanted as PNG and SVG, three times. Cropping this render gives the PNG from
    one drawing, and its box crops the SVG, so both show the same extent. The box is in whole
    pixels from the canvas's corner, so the crop is matplotlib's own render of that box (tested; in
    the training curve 36 of its 466k pixels differ in antialiasing).
    (Ink lying wholly beyond the overhang would not be seen; no figure here places any that far.)"""
    import io

    import matplotlib
    import numpy as np
    from matplotlib.colors import to_rgba_array
    from matplotlib.transforms import Bbox

    figure.set_dpi(DPI)
    width, height = figure.get_size_inches()
    canvas = Bbox.from_extents(-OVERHANG, -OVERHANG, width + OVERHANG, height + OVERHANG)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="rgba", dpi=DPI, bbox_inches=canvas)
    raw = buffer.getvalue()
    # Agg truncates the canvas's size in pixels, which a float product can put a pixel either side
    # of the exact value: the one size that matches the buffer, else matplotlib's measure.
    sizes = {(rows, columns) for rows in (int(canvas.height * DPI), round(canvas.height * DPI))
             for columns in (int(canvas.width * DPI), round(canvas.width * DPI)) if rows * columns * 4 == len(raw)}
    if len(sizes) != 1:
        return None
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(*sizes.pop(), 4)
    background = np.round(to_rgba_array(figure.get_facecolor())[0] * 255).astype(np.uint8)
    ink = (pixels != background).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not rows.size or rows[0] == 0 or cols[0] == 0 or rows[-1] == ink.shape[0] - 1 or cols[-1] == ink.shape[1] - 1:
        return None
    pad = round(matplotlib.rcParams["savefig.pad_inches"] * DPI)
    top, bottom = max(int(rows[0]) - pad, 0), min(int(rows[-1]) + 1 + pad, ink.shape[0])
    left, right = max(int(cols[0]) - pad, 0), min(int(cols[-1]) + 1 + pad, ink.shape[1])
    canvas_top = canvas.y0 + ink.shape[0] / DPI  # row 0 of the buffer
    box = Bbox.from_extents(canvas.x0 + left / DPI, canvas_top - bottom / DPI,
                            canvas.x0 + right / DPI, canvas_top - top / DPI)
    return np.ascontiguousarray(pixels[top:bottom, left:right]), box


def save_figure(figure, path: Path) -> None:
    """Save deterministically (PNG/SVG/PDF by suffix), cropped to the figure's ink."""
    _save_all(figure, [path])


#: Headline metrics bounded by [0, 1] whose chance level is 0.5: drawn on a fixed [0.5, 1] axis so
#: that a small change never looks dramatic.
_FIXED_AXIS_METRICS = {"roc_auc", "macro_auc"}
_METRIC_WORDS = {"roc_auc": "ROC AUC", "macro_auc": "macro ROC AUC", "r2": "R\u00b2", "balanced_accuracy":
                 "balanced accuracy", "f1": "F1", "accuracy": "accuracy", "mae": "mean absolute error",
                 "pearson_r": "Pearson r"}
SPLIT_COLORS = {"train": "#9e9e9e", "validation": "#ff7f0e", "test": "#1f77b4", "new": "#2ca02c"}
SPLIT_MARKERS = {"train": "o", "validation": "s", "test": "D", "new": "^"}


def metric_words(name: str) -> str:
    """'status:roc_auc' -> 'status ROC AUC' (a label in words)."""
    target, _, metric = name.rpartition(":")
    words = _METRIC_WORDS.get(metric, metric.replace("_", " "))
    return f"{target} {words}".strip()


def _finite(values: list[Any]) -> list[float]:
    return [math.nan if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v) for v in values]


def save_figure_formats(figure, stem: Path, suffixes: tuple[str, ...] = (".png", ".svg")) -> list[Path]:
    """Save one figure as stem.png and stem.svg (deterministic bytes)."""
    return _save_all(figure, [stem.with_suffix(suffix) for suffix in suffixes])


def _save_all(figure, paths: list[Path]) -> list[Path]:
    """Save one figure to every path (format by suffix): rendered once and cropped to its ink
    (render_cropped), which is the PNG, and drawn again for each vector format within that box.
    A figure whose ink reaches past the overhang is measured by matplotlib instead."""
    import matplotlib.image

    rendered = render_cropped(figure)
    if rendered is None:
        pixels, bounds = None, tight_bounds(figure)
    else:
        pixels, bounds = rendered
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".png" and pixels is not None:
            # What savefig itself does with the canvas's pixels (same writer, dpi and metadata).
            write_file_atomically(path, lambda temporary: matplotlib.image.imsave(
                temporary, pixels, format="png", origin="upper", dpi=DPI, metadata=_metadata(suffix)))
        else:
            write_file_atomically(path, lambda temporary: figure.savefig(
                temporary, format=suffix.lstrip("."), metadata=_metadata(suffix), dpi=DPI, bbox_inches=bounds))
    return paths


def plot_training_curve(history: list[dict[str, Any]], path: Path, best_update: int | None = None) -> list[Path]:
    """The training curve from training_curve.tsv's rows (update, train_loss, validation_loss,
    <target>:<metric>): losses on a log axis, the validation metric on a second axis ([0.5, 1]
    for ROC AUC), the best update (the lowest validation loss unless `best_update` is given)
    marked. Writes `path` and, for a .png path, the same figure as .svg beside it."""
    figure, loss_axis = subplots(figsize=(7.5, 4.2))
    handles = []
    if history:
        updates = [row["update"] for row in history]
        train = _finite([row.get("train_loss") for row in history])
        validation = _finite([row.get("validation_loss") for row in history])
        handles += loss_axis.plot(updates, train, label="training loss", color="tab:blue", linewidth=1.2)
        handles += loss_axis.plot(updates, validation, label="validation loss", color="tab:orange", linewidth=1.6)
        positive = [v for v in train + validation if v == v and v > 0]
        if positive:
            loss_axis.set_yscale("log")
        if best_update is None and any(v == v for v in validation):
            best_update = updates[min(range(len(updates)), key=lambda i: (validation[i] != validation[i],
                                                                          validation[i]))]
        if best_update is not None:
            handles.append(loss_axis.axvline(best_update, color="0.3", linestyle=":", linewidth=1.2,
                                             label=f"best model (update {best_update})"))
        metric_names = [k for k in history[0] if ":" in k]
        if metric_names:
            name = metric_names[0]
            metric_axis = loss_axis.twinx()
            handles += metric_axis.plot(updates, _finite([row.get(name) for row in history]), color="tab:green",
                                        linestyle="--", label=f"validation {metric_words(name)}")
            metric_axis.set_ylabel(f"validation {metric_words(name)}")
            if name.rpartition(":")[2] in _FIXED_AXIS_METRICS:
                metric_axis.set_ylim(0.5, 1.0)
    loss_axis.set_xlabel("update (training step)")
    loss_axis.set_ylabel("loss (log scale)" if loss_axis.get_yscale() == "log" else "loss")
    loss_axis.set_title("Training curve")
    if handles:
        # Below the axes: a legend inside would sit on the lines.
        loss_axis.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8,
                         frameon=False)
    return _save_all(figure, [path, path.with_suffix(".svg")] if path.suffix.lower() == ".png" else [path])


def plot_roc_pr(roc: dict[str, list[float]], pr: dict[str, list[float]], auc: float | None,
                average_precision: float | None, n_class: int, n: int, class_name: str, stem: Path) -> list[Path]:
    """ROC and precision-recall curves of the held-out repertoires, side by side."""
    figure, (left, right) = subplots(1, 2, figsize=(8.5, 3.9))
    left.step(roc["fpr"], roc["tpr"], where="post", color="tab:blue", linewidth=1.6)
    left.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    left.set_xlabel("false positive rate")
    left.set_ylabel("true positive rate")
    left.set_title(f"ROC, held out (AUC {auc:.3f})" if auc is not None else "ROC, held out", fontsize=10)
    right.step(pr["recall"], pr["precision"], where="post", color="tab:red", linewidth=1.6)
    right.axhline(n_class / n if n else 0, color="0.7", linestyle=":", linewidth=1)
    right.set_xlabel(f"recall ({class_name})")
    right.set_ylabel("precision")
    right.set_title(f"precision-recall (AP {average_precision:.3f})" if average_precision is not None
                    else "precision-recall", fontsize=10)
    for axis in (left, right):
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.set_aspect("equal")
    figure.suptitle(f"{n} held-out repertoires ({n_class} of class {class_name}); dotted: chance", fontsize=9)
    return save_figure_formats(figure, stem)


def plot_scores(scores: Any, class_name: str | None, score_label: str, stem: Path,
                threshold: float | None = 0.5) -> list[Path]:
    """Each repertoire's score (probability of the explained class) by label, coloured by split;
    the decision threshold dashed. scores: the scores.tsv table."""
    labels = ["(no label)" if v is None else str(v) for v in scores["label"].to_list()]
    classes = sorted(set(labels))
    figure, axis = subplots(figsize=(max(4.0, 1.6 * len(classes) + 2.5), 3.8))
    values = scores["score"].to_list()
    splits = scores["split"].to_list()
    for split in SPLIT_COLORS:
        rows = [i for i, s in enumerate(splits) if s == split]
        if not rows:
            continue
        # Deterministic horizontal jitter: the row's position among its class, spread over +-0.3.
        xs = []
        for i in rows:
            same = [j for j in range(len(labels)) if labels[j] == labels[i]]
            offset = (same.index(i) / max(len(same) - 1, 1) - 0.5) * 0.6
            xs.append(classes.index(labels[i]) + offset)
        axis.scatter(xs, [values[i] for i in rows], s=22, color=SPLIT_COLORS[split], marker=SPLIT_MARKERS[split],
                     label=f"{split} ({len(rows)})", alpha=0.85, edgecolors="none")
    if threshold is not None:
        axis.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axis.set_xticks(range(len(classes)))
    axis.set_xticklabels([f"label {c}" for c in classes])
    axis.set_ylabel(score_label)
    if threshold is not None:
        axis.set_ylim(-0.03, 1.03)
    axis.set_title("Per-repertoire scores by label and split", fontsize=10)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure_formats(figure, stem)


def plot_attention(scores: Any, stem: Path) -> list[Path]:
    """How much each prediction rests on few sequences: the top-1 attention weight and the
    effective number of attended sequences (1 / sum w^2) per repertoire, by label."""
    figure, (left, right) = subplots(1, 2, figsize=(8.5, 3.4))
    labels = ["(no label)" if v is None else str(v) for v in scores["label"].to_list()]
    top1 = scores["top1_attention"].to_list()
    effective = scores["effective_n"].to_list()
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    high = max([e for e in effective if e == e] + [1.0])
    bins_n = [10 ** x for x in [i * math.log10(max(high, 1.0) * 1.05) / 20 for i in range(21)]] if high > 1 else 10
    groups = sorted(set(labels))
    rows = [[i for i, v in enumerate(labels) if v == label] for label in groups]
    palette = [colors[i % len(colors)] for i in range(len(groups))]
    # Stacked: overlapping translucent bars would mix into a third colour.
    left.hist([[top1[i] for i in r] for r in rows], bins=[i / 20 for i in range(21)], stacked=True, color=palette,
              label=[f"label {g} ({len(r)})" for g, r in zip(groups, rows)])
    right.hist([[effective[i] for i in r] for r in rows], bins=bins_n, stacked=True, color=palette)
    left.set_xlabel("attention weight of the most attended sequence")
    left.set_ylabel("repertoires")
    right.set_xlabel("effective number of attended sequences (1 / \u03a3 w\u00b2)")
    if high > 1:
        right.set_xscale("log")
    left.legend(fontsize=8, frameon=False)
    figure.suptitle("Attention concentration, every scored repertoire", fontsize=10)
    return save_figure_formats(figure, stem)


def draw_evidence_figures(summary: dict[str, Any], scores: Any, folder: Path) -> dict[str, Path]:
    """The report's figures from motifs.json's `summary` and scores.tsv (PNG and SVG) in `folder`,
    the training curve aside (the writer copies train's); returns {name: PNG path} of those drawn."""
    evidence = summary.get("evidence", {})
    explained = summary["explained"]
    drawn: dict[str, Path] = {}
    held = evidence.get("held_out")
    if held and held.get("n_class") and held["n_class"] < held["n"]:
        plot_roc_pr(held["roc"], held["pr"], held.get("roc_auc"), held.get("average_precision"), held["n_class"],
                    held["n"], str(explained["class"]), folder / "roc_pr")
        drawn["roc_pr"] = folder / "roc_pr.png"
    if scores.height:
        regression = explained["kind"] == REGRESSION
        label = (f"predicted {explained['target']}" if regression
                 else f"probability of {explained['target']} = {explained['class']}")
        plot_scores(scores, explained["class"], label, folder / "scores",
                    threshold=0.5 if explained["kind"] == BINARY else None)
        drawn["scores"] = folder / "scores.png"
        plot_attention(scores, folder / "attention")
        drawn["attention"] = folder / "attention.png"
    return drawn
