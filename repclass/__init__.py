"""repclass: immune repertoire classification with DeepRC.

The public API is re-exported here lazily, so that importing repclass (and running
`repclass --help`) does not pay for torch or polars.
"""
from __future__ import annotations

from typing import Any

from repclass._version import __version__
from repclass.errors import InputFileError, ModelFileError, RepclassError, SheetError, StoreError, UsageError

_LAZY = {
    "ingest": ("repclass.io.ingestion", "ingest"),
    "combine": ("repclass.io.ingestion", "combine"),
    "Store": ("repclass.io.store", "Store"),
    "ReadOptions": ("repclass.io.reader", "ReadOptions"),
    "read_repertoire": ("repclass.io.reader", "read_repertoire"),
    "ColumnOverrides": ("repclass.io.formats", "ColumnOverrides"),
    "train": ("repclass.training.loop", "train"),
    "TargetSpec": ("repclass.targets", "TargetSpec"),
    "SplitSpec": ("repclass.training.splits", "SplitSpec"),
    "TrainConfig": ("repclass.config", "TrainConfig"),
    "ModelConfig": ("repclass.config", "ModelConfig"),
    "DeepRC": ("repclass.model.deeprc", "DeepRC"),
    "load_model": ("repclass.model.checkpoint", "load_model"),
    "predict": ("repclass.prediction.run", "predict"),
    "motifs": ("repclass.explain", "motifs"),
    "train_kmer": ("repclass.baselines.kmer", "train_kmer"),
    "train_burden": ("repclass.baselines.burden", "train_burden"),
    "KmerConfig": ("repclass.baselines.kmer", "KmerConfig"),
    "BurdenConfig": ("repclass.baselines.burden", "BurdenConfig"),
    "kmer_features": ("repclass.baselines.features", "kmer_features"),
    "train_methods": ("repclass.comparison", "train_methods"),
    "simulate_cohort": ("repclass.simulation.run", "simulate_cohort"),
    "simulate_repertoires": ("repclass.simulation.run", "simulate_repertoires"),
    "SimulationConfig": ("repclass.simulation.run", "SimulationConfig"),
}

__all__ = ["__version__", "RepclassError", "InputFileError", "SheetError", "StoreError", "ModelFileError",
           "UsageError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repclass' has no attribute {name!r}")
