"""Figures, drawn only from tables (never imported by compute code).

Outputs are byte-deterministic for the same inputs: PNG metadata carries no date, SVGs use a
fixed hash salt and no date.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .store import write_file_atomically


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "repclass"
    return plt


def save_figure(figure, path: Path) -> None:
    """Save deterministically (PNG/SVG/PDF by suffix)."""
    suffix = path.suffix.lower()
    metadata: dict[str, Any] = {"Software": None} if suffix == ".png" else {}
    if suffix == ".svg":
        metadata = {"Date": None}
    elif suffix == ".pdf":
        metadata = {"CreationDate": None, "ModDate": None}
    write_file_atomically(path, lambda temporary: figure.savefig(temporary, format=suffix.lstrip("."),
                                                                 metadata=metadata, dpi=120, bbox_inches="tight"))


def plot_training_curve(history: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if history:
        updates = [row["update"] for row in history]
        loss_axis.plot(updates, [row["train_loss"] for row in history], label="train loss", color="tab:blue")
        loss_axis.plot(updates, [row["validation_loss"] for row in history], label="validation loss",
                       color="tab:orange")
        metric_names = [k for k in history[0] if ":" in k]
        if metric_names:
            metric_axis = loss_axis.twinx()
            values = [row[metric_names[0]] for row in history]
            metric_axis.plot(updates, [math.nan if v is None else v for v in values], color="tab:green",
                             linestyle="--", label=f"validation {metric_names[0]}")
            metric_axis.set_ylabel(metric_names[0])
            metric_axis.legend(loc="lower right")
    loss_axis.set_xlabel("update")
    loss_axis.set_ylabel("loss")
    loss_axis.legend(loc="upper right")
    loss_axis.set_title("training curve")
    save_figure(figure, path)
    plt.close(figure)
