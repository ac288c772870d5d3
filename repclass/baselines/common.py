"""What the baselines share: model description, metrics, the model folder, splits and folds.

A baseline model folder keeps DeepRC's contract: `model.json` (the description: method, targets,
alphabet, junction convention, read options, training-store fingerprint, splits, metrics,
settings), `baseline.safetensors` (the numbers: coefficients, intercepts, feature ids, scaler
means and scales; safetensors, never pickle), `metrics.json`, `metrics.tsv`, `predictions.tsv`
(every repertoire with its split) and `config.json`. With k folds, fold_1 ... fold_K and
folds_summary.tsv/.json as for DeepRC.
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from repclass._version import __version__
from repclass.alphabet import AMINO_ACIDS
from repclass.errors import ModelFileError, UsageError
from repclass.training.splits import SPLITS
from repclass.names import BASELINE_WEIGHTS_NAME as WEIGHTS_NAME, DESCRIPTION_NAME

if TYPE_CHECKING:
    from repclass.config import TrainConfig
    from repclass.training.splits import SplitSpec
    from repclass.io.store import Store
    from repclass.targets import Target, TargetSpec
    from repclass.training.model_folder import TrainResult

log = logging.getLogger(__name__)

BASELINE_FORMAT = "repclass-baseline"
BASELINE_FORMAT_VERSION = 1
METHODS = ("kmer", "burden")


@dataclass
class BaselineInfo:
    """A baseline model's description (model.json). `alphabet`, `junction_convention` and
    `read_options` have the meaning they have in DeepRC's ModelInfo, so predict reads raw files and
    checks stores the same way."""

    method: str
    targets: list["Target"]
    settings: dict[str, Any]  # the method's own settings (k, gap, ... or the clonotype definition)
    fits: list[dict[str, Any]] = field(default_factory=list)  # per target: chosen hyperparameter, inner CV
    alphabet: str = AMINO_ACIDS
    junction_convention: str = "junction"
    read_options: dict[str, Any] = field(default_factory=dict)
    store_fingerprint: str = ""
    split_seed: int = 0
    splits: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    repclass_version: str = __version__
    sklearn_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": BASELINE_FORMAT, "format_version": BASELINE_FORMAT_VERSION, "method": self.method,
                "repclass_version": self.repclass_version, "sklearn_version": self.sklearn_version,
                "targets": [t.to_dict() for t in self.targets], "settings": self.settings, "fits": self.fits,
                "alphabet": self.alphabet, "junction_convention": self.junction_convention,
                "read_options": self.read_options, "store_fingerprint": self.store_fingerprint,
                "split_seed": self.split_seed, "splits": self.splits, "metrics": self.metrics,
                "train_config": self.train_config}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> "BaselineInfo":
        from repclass.targets import Target

        if data.get("format") != BASELINE_FORMAT:
            raise ModelFileError(f"{path}: not a repclass baseline model description")
        if data.get("format_version") != BASELINE_FORMAT_VERSION:
            raise ModelFileError(f"{path}: baseline format version {data.get('format_version')} is not supported by "
                                 f"repclass {__version__} (it reads {BASELINE_FORMAT_VERSION}); retrain")
        if data.get("method") not in METHODS:
            raise ModelFileError(f"{path}: unknown baseline method {data.get('method')!r}")
        try:
            return cls(method=data["method"], targets=[Target.from_dict(t) for t in data["targets"]],
                       settings=data["settings"], fits=data.get("fits", []), alphabet=data["alphabet"],
                       junction_convention=data["junction_convention"], read_options=data.get("read_options", {}),
                       store_fingerprint=data.get("store_fingerprint", ""), split_seed=data.get("split_seed", 0),
                       splits=data.get("splits", {}), metrics=data.get("metrics", {}),
                       train_config=data.get("train_config", {}),
                       repclass_version=data.get("repclass_version", "unknown"),
                       sklearn_version=data.get("sklearn_version", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: baseline description is incomplete or invalid ({exc})") from exc


def baseline_method(path: str | Path) -> str | None:
    """The method of a baseline model folder (or its model.json / baseline.safetensors); None when
    `path` is not a baseline (e.g. a DeepRC model)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name not in (DESCRIPTION_NAME, WEIGHTS_NAME):
        return None
    description = folder / DESCRIPTION_NAME
    if not (folder / WEIGHTS_NAME).exists() or not description.exists():
        return None
    try:
        data = json.loads(description.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    return data.get("method") if data.get("format") == BASELINE_FORMAT else None


def read_baseline(path: str | Path) -> tuple[BaselineInfo, dict[str, np.ndarray], Path]:
    """(description, tensors, folder) of a baseline model folder."""
    from safetensors.numpy import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    description = folder / DESCRIPTION_NAME
    try:
        data = json.loads(description.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{description}: cannot read the model description ({exc})") from exc
    info = BaselineInfo.from_dict(data, description)
    try:
        tensors = load_file(str(folder / WEIGHTS_NAME))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelFileError(f"{folder / WEIGHTS_NAME}: not a readable safetensors file ({exc})") from exc
    return info, tensors, folder


def save_tensors(folder: Path, tensors: dict[str, np.ndarray], info: BaselineInfo) -> None:
    from safetensors.numpy import save_file

    from repclass.files import write_file_atomically

    arrays = {name: np.ascontiguousarray(value) for name, value in sorted(tensors.items())}
    metadata = {"repclass-baseline": json.dumps({"method": info.method, "format": BASELINE_FORMAT}, sort_keys=True)}
    write_file_atomically(folder / WEIGHTS_NAME, lambda temporary: save_file(arrays, str(temporary), metadata=metadata))


# ----------------------------------------------------------------------------------------------
# metrics, shared with DeepRC's definitions (repclass.targets)
# ----------------------------------------------------------------------------------------------
def split_metrics(targets: list["Target"], outputs: np.ndarray, values: np.ndarray,
                  present: np.ndarray) -> dict[str, Any]:
    """Loss and per-target metrics of one split, as repclass.training.loop.evaluate reports them."""
    import torch

    from repclass.targets import total_loss

    result: dict[str, Any] = {"n": len(outputs)}
    if len(outputs):
        with torch.no_grad():
            result["loss"] = float(total_loss(targets, torch.from_numpy(outputs), torch.from_numpy(values),
                                              torch.from_numpy(present)))
    for j, target in enumerate(targets):
        result[target.column] = target.metrics(outputs, values[:, j], present[:, j])
    return result


def quiet_fit(fit: Callable[[], Any], what: str) -> Any:
    """Run a scikit-learn fit, turning its convergence warnings into one log line (pytest and
    users run with warnings as errors; a not-quite-converged penalised fit is still usable)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit()
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    if convergence:
        log.debug("%s: %d fit(s) stopped at the iteration limit", what, len(convergence))
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def inner_folds(labels: np.ndarray, n_folds: int, classification: bool, seed: int, what: str,
                groups: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner cross-validation folds over the fitting repertoires (stratified for classes; with
    `groups`, each repertoire's donor, a donor's repertoires share an inner fold)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if groups is not None and len(set(groups)) < n:
        return _grouped_inner_folds(labels, n_folds, classification, seed, what, groups)
    if classification:
        _, class_counts = np.unique(labels, return_counts=True)
        n_folds = min(n_folds, int(class_counts.min()))
        if n_folds < 2:
            raise UsageError(f"{what}: inner cross-validation needs at least 2 training repertoires of every class; "
                             "use more repertoires or a smaller --test-fraction/--validation-fraction")
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), labels))
    n_folds = min(n_folds, n)
    if n_folds < 2:
        raise UsageError(f"{what}: inner cross-validation needs at least 2 training repertoires")
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n)))


def _grouped_inner_folds(labels: np.ndarray, n_folds: int, classification: bool, seed: int, what: str,
                         groups: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(codes.max()) + 1
    if classification:
        # every class must be able to appear in each inner fold: count donors per (majority) class
        _, class_counts = np.unique(labels, return_counts=True)
        n_folds = min(n_folds, int(class_counts.min()), n_groups)
        if n_folds < 2:
            raise UsageError(f"{what}: inner cross-validation needs at least 2 donors of every class among the "
                             "fitting repertoires; use more repertoires or a smaller --test-fraction")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = [(train, held) for train, held in splitter.split(np.zeros(len(labels)), labels, codes)]
    else:
        n_folds = min(n_folds, n_groups)
        if n_folds < 2:
            raise UsageError(f"{what}: inner cross-validation needs at least 2 donors")
        folds = list(GroupKFold(n_splits=n_folds).split(np.zeros(len(labels)), labels, codes))
    return [(train, held) for train, held in folds if len(held) and len(train)]


# ----------------------------------------------------------------------------------------------
# the model folder
# ----------------------------------------------------------------------------------------------
def write_folder(work: Path, store: "Store", info: BaselineInfo, tensors: dict[str, np.ndarray],
                 prediction_rows: list[tuple[str, list[str], np.ndarray]]) -> None:
    """Write a finished baseline model folder's common files into `work`."""
    from repclass.training.model_folder import write_metrics_table, write_predictions_table

    save_tensors(work, tensors, info)
    (work / DESCRIPTION_NAME).write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    (work / "config.json").write_text(json.dumps({"method": info.method, "train": info.train_config,
                                                  "settings": info.settings,
                                                  "targets": [t.to_dict() for t in info.targets],
                                                  "store": str(store.path), "store_fingerprint": info.store_fingerprint},
                                                 indent=2, sort_keys=True) + "\n")
    (work / "metrics.json").write_text(json.dumps(info.metrics, indent=2, sort_keys=True, allow_nan=True) + "\n")
    write_metrics_table(work, info.targets, info.metrics)
    write_predictions_table(work, info.targets, prediction_rows, store)


# A method's fit: (store, ids per split, targets, config, method settings, label, groups=donor per
# repertoire or None) -> fitted on ids["train"] + ids["validation"], inner folds grouped by donor;
#   (outputs per split (n, n_outputs), tensors, settings for the description, per-target fit notes,
#    extra files to write: name -> writer(path))
FitFunction = Callable[..., tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any],
                                  list[dict[str, Any]], dict[str, Callable[[Path], None]]]]


def train_one(method: str, fit: FitFunction, store: "Store", work: Path, specs: list["TargetSpec"],
              assignment: dict[str, str], config: "TrainConfig", settings: Any, label: str = "",
              groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Fit one baseline on one split assignment and write its model folder into `work` (`groups`:
    each repertoire's donor, for donor-grouped inner cross-validation)."""
    import sklearn

    from repclass.training.splits import split_ids
    from repclass.targets import encode_targets, infer_targets

    ids = split_ids(assignment)
    targets = infer_targets(store, specs, ids["train"])
    log.info("%s%s: fitting on %d training + %d validation repertoires (test %d)", label, method, len(ids["train"]),
             len(ids["validation"]), len(ids["test"]))
    outputs, tensors, described, fits, extra = fit(store, ids, targets, config, settings, label, groups=groups)
    metrics: dict[str, Any] = {"method": method}
    prediction_rows = []
    for split in SPLITS:
        values, present = encode_targets(store, targets, ids[split])
        metrics[split] = split_metrics(targets, outputs[split], values, present)
        prediction_rows.append((split, ids[split], outputs[split]))
    info = BaselineInfo(method=method, targets=targets, settings=described, fits=fits,
                        junction_convention=store.junction_convention,
                        read_options=store.manifest.get("read_options", {}), store_fingerprint=store.fingerprint,
                        split_seed=config.seed, splits=assignment, metrics=metrics, train_config=config.to_dict(),
                        sklearn_version=sklearn.__version__)
    write_folder(work, store, info, tensors, prediction_rows)
    for name, writer in extra.items():
        writer(work / name)
    return metrics


def train_baseline(method: str, fit: FitFunction, store: "str | Path | Store", out: str | Path, *,
                   targets: Sequence["TargetSpec | str"], split: "SplitSpec | None", config: "TrainConfig | None",
                   settings: Any, force: bool) -> "TrainResult":
    """The public entry point behind train_kmer / train_burden: splits (or folds) exactly as DeepRC
    makes them for the same seed, one model folder (or fold_1 ... fold_K), published atomically."""
    from repclass.config import TrainConfig
    from repclass.files import check_output_not_input, claim_output, partial_path, publish
    from repclass.training.model_folder import write_fold_summary
    from repclass.training.splits import (SplitSpec, group_column, labelled_ids, sample_groups,
                                          split_assignments)
    from repclass.io.store import Store
    from repclass.targets import target_specs
    from repclass.training.model_folder import TrainResult

    config = config or TrainConfig()
    split = split or SplitSpec()
    specs = target_specs(targets)
    store = store if isinstance(store, Store) else Store.open(store)
    for spec in specs:
        store.labels(spec.column)  # raises a clear error for an unknown column
    out = Path(out)
    # repclass's output rules (repclass.files): not an input, --force replaces only a model folder,
    # one writer at a time, leftovers of dead runs removed, published whole at the end.
    check_output_not_input(partial_path(out), [store.path])
    with claim_output(out, "model", inputs=[store.path], force=force):
        assignments = split_assignments(store, specs, split, config)
        grouping = group_column(store, split)
        groups = sample_groups(store, labelled_ids(store, specs), grouping) if grouping is not None else None
        work = partial_path(out)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            if len(assignments) == 1:
                metrics = train_one(method, fit, store, work, specs, assignments[0], config, settings, groups=groups)
                publish(work, out)
                return TrainResult(path=out, metrics=metrics, best_update=-1)
            fold_metrics = []
            for index, assignment in enumerate(assignments, start=1):
                fold_dir = work / f"fold_{index}"
                fold_dir.mkdir()
                fold_metrics.append(train_one(method, fit, store, fold_dir, specs, assignment, config, settings,
                                              f"fold {index}/{len(assignments)}: ", groups=groups))
            from repclass.training.splits import split_description

            summary = write_fold_summary(work, fold_metrics, specs, split_description(store, split, specs))
            publish(work, out)
            return TrainResult(path=out, metrics=summary, best_update=-1, folds=fold_metrics)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
