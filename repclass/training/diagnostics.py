"""What a training curve says about the model it kept, in the user's words.

One rule for now: a model that memorised its training repertoires without learning anything
they share with the validation ones. `repclass train` logs it as the run ends and `repclass
motifs` shows it in its report; both read the same curve (training_curve.tsv's rows). Kept free
of torch so that either can call it.
"""
from __future__ import annotations

import math
from repclass.targets import REGRESSION
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from repclass.targets import Target

#: The training loss must fall below this share of the kept model's validation loss.
MEMORISED_SHARE = 0.25


def validation_perfect(row: Mapping[str, Any], targets: Sequence["Target"]) -> bool:
    """Whether a training-curve row's validation metrics are perfect: AUC 1.0 for every target
    (never for a regression target, whose r2 cannot tell a solved split)."""
    return all(t.kind != REGRESSION and row.get(t.curve_column) is not None and float(row[t.curve_column]) >= 1.0
               for t in targets)


def memorisation_warning(history: Sequence[Mapping[str, Any]], best_update: int | None, eval_every: int,
                         targets: Sequence["Target"], reads_clone_sizes: bool) -> str | None:
    """Why the kept model is likely no better than its start, or None.

    history: the training curve's rows (update, train_loss, validation_loss and each target's
    curve_column); best_update: the kept model's update. The warning holds when the validation loss
    was best at one of the first evaluations (within `eval_every` updates), not perfect there
    (validation_perfect), and the training loss at the last evaluation is below a quarter of that
    validation loss: how a model that learns nothing shared between repertoires ends on a few dozen
    of them (docs/real-data.md: best at update 10-50, the training loss 0.001 while the validation
    loss climbs).
    """
    if not history or best_update is None or best_update > eval_every or history[-1]["update"] <= best_update:
        return None
    best = next((row for row in history if row["update"] == best_update), None)
    if best is None:
        return None
    best_loss, last_train_loss = float(best["validation_loss"]), float(history[-1]["train_loss"])
    if (validation_perfect(best, targets) or math.isnan(best_loss)
            or not last_train_loss < best_loss * MEMORISED_SHARE):
        return None
    at_best = ", ".join(f"{t.curve_column} {float(best[t.curve_column]):.2f}" for t in targets
                        if best.get(t.curve_column) is not None)
    advice = ("" if reads_clone_sizes else "; if the label may lie in clone sizes rather than in shared "
              "sequences, try --use-counts --init-evidence --init-kmers 0")
    return (f"the validation loss was lowest at update {best_update}, near the start ({at_best} there), and the "
            f"training loss has since fallen to {last_train_loss:.3g} against {best_loss:.3g}: after that update "
            f"the model fitted its training repertoires without doing better on the validation ones, so the kept "
            f"model is close to its start. Compare it with a baseline (--method kmer) before reading its "
            f"motifs{advice} (docs/real-data.md)")
