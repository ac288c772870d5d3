"""repclass: immune repertoire classification with DeepRC.

The public API is re-exported here lazily, so that importing repclass (and running
`repclass --help`) does not pay for torch or polars.
"""
from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import InputFileError, ModelFileError, RepclassError, SheetError, StoreError, UsageError

_LAZY = {
    "ingest": ("repclass.ingestion", "ingest"),
    "combine": ("repclass.ingestion", "combine"),
    "Store": ("repclass.store", "Store"),
    "ReadOptions": ("repclass.reader", "ReadOptions"),
    "read_repertoire": ("repclass.reader", "read_repertoire"),
    "ColumnOverrides": ("repclass.formats", "ColumnOverrides"),
    "train": ("repclass.training", "train"),
    "TargetSpec": ("repclass.targets", "TargetSpec"),
    "SplitSpec": ("repclass.splits", "SplitSpec"),
    "TrainConfig": ("repclass.config", "TrainConfig"),
    "ModelConfig": ("repclass.config", "ModelConfig"),
    "DeepRC": ("repclass.model", "DeepRC"),
    "load_model": ("repclass.checkpoint", "load_model"),
    "predict": ("repclass.prediction", "predict"),
    "motifs": ("repclass.explain", "motifs"),
    "train_kmer": ("repclass.baselines.kmer", "train_kmer"),
    "train_burden": ("repclass.baselines.burden", "train_burden"),
    "KmerConfig": ("repclass.baselines.kmer", "KmerConfig"),
    "BurdenConfig": ("repclass.baselines.burden", "BurdenConfig"),
    "kmer_features": ("repclass.baselines.features", "kmer_features"),
    "train_methods": ("repclass.comparison", "train_methods"),
    "simulate_cohort": ("repclass.simulate", "simulate_cohort"),
    "simulate_repertoires": ("repclass.simulate", "simulate_repertoires"),
    "SimulationConfig": ("repclass.simulate", "SimulationConfig"),
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
