"""The names of the files repclass writes into its output folders, in one place: every module
that writes or reads one of them imports its name from here.

May import: nothing.
"""
from __future__ import annotations

# A model folder (`repclass train`, any method; each fold_k/ of a --folds folder).
#: DeepRC's weights and description (safetensors; metadata checked on load).
MODEL_FILENAME = "model.safetensors"
#: The model's description as JSON: targets, splits, metrics, settings (a baseline's too).
DESCRIPTION_NAME = "model.json"
#: A baseline's fitted arrays.
BASELINE_WEIGHTS_NAME = "baseline.safetensors"
#: The settings of the run (train, model, targets, store).
CONFIG_NAME = "config.json"
METRICS_JSON_NAME = "metrics.json"
METRICS_TABLE_NAME = "metrics.tsv"
#: Every repertoire of the training store with its split and predictions.
PREDICTIONS_NAME = "predictions.tsv"
TRAINING_CURVE_NAME = "training_curve.tsv"
TRAINING_CURVE_PLOT_NAME = "training_curve.png"
#: What train's diagnostics found in the training curve (the memorisation warning), for motifs.
DIAGNOSTICS_NAME = "diagnostics.json"
#: The resume checkpoint inside OUT.partial/.
CHECKPOINT_NAME = "checkpoint.pt"
#: The burden baseline's enriched clonotypes.
ENRICHED_NAME = "enriched_clonotypes.tsv"

# A --folds or --method comparison folder.
OUT_OF_FOLD_NAME = "out_of_fold_predictions.tsv"
PERMUTATIONS_NAME = "permutations.tsv"
SUMMARY_NAME = "summary.md"
COMPARISON_NAME = "comparison.tsv"
COMPARISON_PLOT_NAME = "comparison.png"

# A store (`repclass ingest`).
MANIFEST_NAME = "manifest.json"
SAMPLES_NAME = "samples.tsv"
REPERTOIRE_DIR = "repertoires"
