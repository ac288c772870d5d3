"""What training saves: model files, and the checkpoints that resume an unfinished run.

A model file is safe to share between labs. It is one safetensors file: the weights (tensors
only, never pickled code) and, in its metadata, a JSON document with everything needed to use
the weights correctly: architecture, alphabet, junction convention, targets (names, types,
classes, positive class), the fingerprint of the store it was trained on, the split seed,
metrics, and the repclass and torch versions. Loading checks all of it and refuses with a
message that says what does not fit.

A resume checkpoint (`checkpoint.pt` in `OUT.partial/`, see the end of this module) is private
to one run: the model and optimizer state, the best weights so far, the loop's bookkeeping, and
a fingerprint of the data and settings that a `--resume` must match. It is removed when the run
finishes and is never a model file.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from repclass._version import __version__
from repclass.alphabet import AMINO_ACIDS
from repclass.config import ModelConfig
from repclass.errors import ModelFileError, RepclassError, UsageError
from repclass.model.deeprc import DeepRC
from repclass.names import CHECKPOINT_NAME, DESCRIPTION_NAME as DESCRIPTION_FILENAME, MODEL_FILENAME
from repclass.files import write_file_atomically
from repclass.targets import Target

if TYPE_CHECKING:
    from repclass.config import TrainConfig
    from repclass.training.optim import Adam
    from repclass.io.store import Store
    from repclass.targets import TargetSpec

log = logging.getLogger(__name__)

MODEL_FORMAT = "repclass-model"
MODEL_FORMAT_VERSION = 1
_METADATA_KEY = "repclass"


@dataclass
class ModelInfo:
    """What a model file says about its weights."""

    model_config: ModelConfig
    targets: list[Target]
    alphabet: str = AMINO_ACIDS
    junction_convention: str = "junction"
    #: the training store's locus ("TRB"; "TRA,TRB" for several) and species, None when unknown
    #: (and in model files written before repclass recorded them)
    locus: str | None = None
    species: str | None = None
    #: read options of the training store, applied when predict ingests raw files
    read_options: dict[str, Any] = field(default_factory=dict)
    store_fingerprint: str = ""
    split_seed: int = 0
    splits: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    repclass_version: str = __version__
    torch_version: str = torch.__version__

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "repclass_version": self.repclass_version,
            "torch_version": self.torch_version,
            "model_config": self.model_config.to_dict(),
            "targets": [t.to_dict() for t in self.targets],
            "alphabet": self.alphabet,
            "junction_convention": self.junction_convention,
            "locus": self.locus,
            "species": self.species,
            "read_options": self.read_options,
            "store_fingerprint": self.store_fingerprint,
            "split_seed": self.split_seed,
            "splits": self.splits,
            "metrics": self.metrics,
            "train_config": self.train_config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> "ModelInfo":
        if data.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"{path}: not a repclass model file")
        version = data.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ModelFileError(f"{path}: model format version {version} is not supported by repclass "
                                 f"{__version__} (it reads version {MODEL_FORMAT_VERSION}); use the repclass "
                                 f"version that wrote it ({data.get('repclass_version', 'unknown')}) or retrain")
        try:
            return cls(
                model_config=ModelConfig.from_dict(data["model_config"]),
                targets=[Target.from_dict(t) for t in data["targets"]],
                alphabet=data["alphabet"],
                junction_convention=data["junction_convention"],
                locus=data.get("locus"),
                species=data.get("species"),
                read_options=data.get("read_options", {}),
                store_fingerprint=data.get("store_fingerprint", ""),
                split_seed=data.get("split_seed", 0),
                splits=data.get("splits", {}),
                metrics=data.get("metrics", {}),
                train_config=data.get("train_config", {}),
                repclass_version=data.get("repclass_version", "unknown"),
                torch_version=data.get("torch_version", "unknown"),
            )
        except (KeyError, TypeError, ValueError, UsageError) as exc:
            raise ModelFileError(f"{path}: model description is incomplete or invalid ({exc})") from exc


def save_model(path: str | Path, model: DeepRC, info: ModelInfo) -> Path:
    """Write weights and description to one safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous()
               for name, tensor in model.state_dict().items()}
    metadata = {_METADATA_KEY: json.dumps(info.to_dict(), sort_keys=True)}
    return write_file_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def resolve_model_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file (give a model file or the folder `repclass train` wrote)")
    return path


def read_info(path: str | Path) -> ModelInfo:
    """The description of a model file, without loading its weights."""
    path = resolve_model_path(path)
    return ModelInfo.from_dict(_read_description(path), path)


def _read_description(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    path = resolve_model_path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for foreign files
        raise ModelFileError(f"{path}: not a safetensors model file ({exc})") from exc
    if _METADATA_KEY not in metadata:
        raise ModelFileError(f"{path}: a safetensors file, but not one written by repclass (no description)")
    try:
        data = json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: model description is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: model description is not a JSON object")
    return data


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[DeepRC, ModelInfo]:
    """Rebuild a model from its file, checking that the weights fit its description."""
    from safetensors.torch import load_file

    path = resolve_model_path(path)
    info = read_info(path)
    if info.alphabet != AMINO_ACIDS:
        raise ModelFileError(f"{path}: model alphabet {info.alphabet!r} differs from this repclass's "
                             f"{AMINO_ACIDS!r}")
    model = DeepRC(info.model_config)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors' own error types: a truncated or damaged file
        raise ModelFileError(f"{path}: the weights cannot be read ({str(exc).splitlines()[0][:120] if str(exc) else exc!r}); "
                             "the model file is truncated or damaged: copy it again") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected weights: {', '.join(unexpected)}")
        raise ModelFileError(f"{path}: weights do not match the architecture it describes ({'; '.join(parts)})")
    wrong = [f"{name} {tuple(tensors[name].shape)} (expected {tuple(t.shape)})" for name, t in expected.items()
             if tensors[name].shape != t.shape and name not in DeepRC.SIZED_BY_FILE]
    if wrong:
        raise ModelFileError(f"{path}: weights of the wrong shape: {', '.join(wrong)}")
    # A flipped exponent bit or an overflowed update gives NaN/inf weights, and then all-NaN or
    # all-0 predictions with exit 0: refuse them, naming the tensor.
    damaged = [name for name in sorted(tensors) if not bool(torch.isfinite(tensors[name]).all())]
    if damaged:
        raise ModelFileError(f"{path}: weights hold NaN or infinite values ({', '.join(damaged[:5])}"
                             f"{' and more' if len(damaged) > 5 else ''}); the model file is damaged or the training "
                             "diverged: use another copy or train again")
    check_description(path)
    model.load_state_dict(tensors)
    model.eval()
    return model.to(device), info


def check_description(path: str | Path) -> None:
    """Refuse a model folder whose model.json does not describe its model file (one of them
    was replaced or edited): the readable description must never mislead."""
    path = resolve_model_path(path)
    described = path.parent / DESCRIPTION_FILENAME
    if not described.is_file():
        return
    try:
        readable = json.loads(described.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{described}: not valid JSON ({exc}); the model folder is damaged: copy it again") from exc
    if json.dumps(readable, sort_keys=True) != json.dumps(_read_description(path), sort_keys=True):
        raise ModelFileError(f"{described}: does not describe {path.name} next to it (one of them was replaced or "
                             "edited); copy the whole model folder again")


def check_locus(info: ModelInfo, loci: set[str] | list[str], where: str | Path,
                allow_other_locus: bool = False) -> None:
    """Refuse sequences of another locus than the model's training store (a TRB model scoring IGH
    repertoires gives numbers without meaning); `allow_other_locus` (--allow-other-locus) lets
    them through with a warning. A model or store that does not know its locus is not checked."""
    locus = getattr(info, "locus", None)  # baseline models do not record one
    if not locus or not loci:
        return
    trained = set(locus.split(","))
    other = sorted(set(loci) - trained)
    if not other:
        return
    message = (f"{where}: holds {', '.join(other)} sequences but the model was trained on {locus} sequences; "
               "score repertoires of the model's locus, or pass --allow-other-locus to score them anyway")
    if not allow_other_locus:
        raise ModelFileError(message)
    log.warning("%s (--allow-other-locus: scoring them anyway)", message.split("; score")[0])


def check_store_fits(info: ModelInfo, store: "Store", allow_other_locus: bool = False) -> None:
    """Refuse a store whose alphabet, junction convention or locus differs from the model's."""
    if store.alphabet != info.alphabet:
        raise ModelFileError(f"{store.path}: alphabet {store.alphabet!r} differs from the model's {info.alphabet!r}")
    if store.junction_convention != info.junction_convention:
        raise ModelFileError(
            f"{store.path}: holds {store.junction_convention} sequences but the model was trained on "
            f"{info.junction_convention} sequences; make a store with `repclass ingest ... --convention "
            f"{info.junction_convention}` and score that")
    if getattr(info, "locus", None):
        check_locus(info, store.loci(), store.path, allow_other_locus)


# ----------------------------------------------------------------------------------------------
# resume checkpoints
# ----------------------------------------------------------------------------------------------
_CHECKPOINT_KEYS = {"settings", "model", "optimizer", "best_model", "state"}


def run_fingerprint(store: "Store", targets: Sequence["TargetSpec"], config: "TrainConfig",
                    model_config: ModelConfig, assignment: dict[str, str]) -> str:
    """What a resumed run must share with the run that wrote the checkpoint: the store, targets,
    settings and splits. Settings that change no result (memory, checkpoint frequency) may differ."""
    train = {k: v for k, v in config.to_dict().items() if k not in ("checkpoint_every", "chunk_size", "cache_gb")}
    return json.dumps({"store": store.fingerprint, "targets": [t.__dict__ for t in targets],
                       "train": train, "model": model_config.to_dict(), "splits": assignment}, sort_keys=True)


def save_checkpoint(path: Path, settings: str, model: DeepRC, optimizer: "Adam",
                    best_weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write a resume checkpoint atomically (a killed run leaves the previous one whole)."""
    checkpoint = {"settings": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "best_model": best_weights, "state": state}
    write_file_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def load_checkpoint(path: Path, settings: str, model: DeepRC, optimizer: "Adam",
                    device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore `model` and `optimizer` from a resume checkpoint made with the same `settings`
    (`run_fingerprint`); returns the best weights so far and the loop's state."""
    saved = torch.load(path, map_location=device, weights_only=True)
    if saved["settings"] != settings:
        raise UsageError(f"{path}: was made with other data or settings; start again without --resume")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return saved["best_model"], saved["state"]


def check_checkpoints(work: Path) -> None:
    """Refuse a truncated or foreign checkpoint anywhere in `work` before any training starts, with advice."""
    for path in sorted(work.rglob(CHECKPOINT_NAME)) if work.is_dir() else []:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise RepclassError(f"{path}: the checkpoint cannot be read ({type(exc).__name__}); it is truncated or "
                                f"not one repclass wrote: start again without --resume (this removes {work})") from exc
        if not isinstance(saved, dict) or not _CHECKPOINT_KEYS <= set(saved):
            raise RepclassError(f"{path}: not a repclass training checkpoint; start again without --resume (this "
                                f"removes {work})")
