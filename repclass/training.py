"""`repclass train`: DeepRC on a store, with splits, evaluation, checkpoints and resume.

Each update samples `batch_size` training repertoires and up to `sequences_per_bag` sequences
from each (seeded by (seed, update), so a resumed run draws what an uninterrupted one would),
scores all of them without gradients, keeps each repertoire's top `reduction_fraction` by
attention and runs the gradient pass on those. The model with the lowest validation loss wins.

Work happens in `OUT.partial/` (holding a resumable checkpoint); the finished folder is renamed
to OUT at the very end, so a killed run never leaves a folder that looks complete.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import MODEL_FILENAME, ModelInfo, save_model
from .config import ModelConfig, TrainConfig
from .data import Batch, RepertoireCache, make_batch, sample_rows
from .distributed import Context, finish, from_environment
from .errors import LabelError, RepclassError, UsageError, excerpt
from .model import DeepRC, top_k_per_bag
from .model_folder import write_metrics_table, write_predictions_table
from .progress import progress
from .runtime import autocast, describe, resolve_device
from .scoring import score_repertoire
from .splits import SPLITS, column_split, kfold_splits, random_split
from .files import check_output_not_input, check_replaceable, clean_leftovers, output_lock, prepare_parent
from .store import Store, publish, write_file_atomically
from .targets import Target, assign_offsets, encode_targets, infer_target, total_loss

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TargetSpec:
    """A label column to predict, as the user names it."""

    column: str
    kind: str | None = None  # binary / multiclass / regression; inferred when None
    positive: str | None = None  # binary: the positive class; inferred from +/-, True/False, 1/0, ...
    weight: float = 1.0  # weight of this target's loss in the sum


@dataclass(frozen=True)
class SplitSpec:
    """How repertoires are split: a sheet column, k folds, or (default) a seeded stratified split."""

    column: str | None = None
    folds: int | None = None
    fold: int | None = None  # 1-based: train only this fold of `folds`


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    best_update: int
    folds: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# data for one training run
# ----------------------------------------------------------------------------------------------
class _Labels:
    """Per-repertoire target values as arrays aligned with a list of sample ids."""

    def __init__(self, store: Store, targets: list[Target], ids: list[str]) -> None:
        self.index = {sample_id: i for i, sample_id in enumerate(ids)}
        self.values, self.present = encode_targets(store, targets, ids)

    def rows(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        index = [self.index[i] for i in ids]
        return self.values[index], self.present[index]


def _batches(cache: RepertoireCache, train_ids: list[str], config: TrainConfig, first_update: int, pin: bool,
             context: Context) -> Iterator[tuple[int, list[str], Batch]]:
    """This process's share of each update's repertoires, sampled and sorted by length.

    The global choice of repertoires depends on (seed, update) and each repertoire's sampling on
    (seed, update, its slot), so the updates do not depend on how many processes share them.
    """
    n_bags = min(config.batch_size, len(train_ids))
    for update in range(first_update, config.max_updates):
        chosen_slots = np.random.default_rng([config.seed, update]).choice(len(train_ids), n_bags, replace=False)
        mine = context.shard(list(enumerate(chosen_slots)))
        repertoires, rows, noise = [], [], []
        for slot, index in mine:
            rng = np.random.default_rng([config.seed, update, slot])
            repertoire = cache.get(train_ids[index])
            repertoires.append(repertoire)
            rows.append(sample_rows(repertoire, config.sequences_per_bag, rng, config.sampling))
            if config.selection == "sample":
                noise.append(rng.gumbel(size=len(rows[-1])).astype(np.float32))
        batch = make_batch(repertoires, rows, noise or None, sort_by_length=True)
        yield update, [train_ids[i] for _, i in mine], batch.pin_memory() if pin else batch


#: Running prefetch threads and their stop flags. A thread still inside numpy/polars/torch when
#: the interpreter shuts down can abort the process ("terminate called without an active
#: exception", SIGABRT) after a finished run, so every way out of `train()` (success, early
#: stop, error, Ctrl-C), and interpreter exit as a last resort, stops and joins them.
_PREFETCHERS: dict[threading.Thread, threading.Event] = {}
_PREFETCHERS_LOCK = threading.Lock()


def _stop_prefetchers() -> None:
    """Signal every prefetch thread to stop and wait for it (each finishes at most its current batch)."""
    with _PREFETCHERS_LOCK:
        running = list(_PREFETCHERS.items())
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        if thread is not threading.current_thread():
            thread.join()


# Runs before the interpreter joins non-daemon threads and tears down modules (as concurrent.futures does).
getattr(threading, "_register_atexit", __import__("atexit").register)(_stop_prefetchers)


def _prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator in a background thread, `depth` items ahead (numpy/polars release the GIL).

    The producer checks a stop flag between items; the consumer sets it and joins the thread
    when it is closed, and `train()` stops any left over (a generator abandoned by `break` or an
    exception is only closed when it is garbage-collected).
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    return
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            _put_until_stopped(items, done, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            _put_until_stopped(items, exc, stop)
        finally:
            with _PREFETCHERS_LOCK:
                _PREFETCHERS.pop(threading.current_thread(), None)

    thread = threading.Thread(target=work, name="repclass-prefetch", daemon=True)
    with _PREFETCHERS_LOCK:
        _PREFETCHERS[thread] = stop
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put_until_stopped(items: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def train_step(model: DeepRC, optimizer: torch.optim.Optimizer, batch: Batch, targets: list[Target],
               values: torch.Tensor, present: torch.Tensor, device: torch.device, chunk_size: int,
               network: torch.nn.Module | None = None) -> float:
    """One update: score all sequences without gradients, keep each bag's top fraction, learn.

    `network` is the module the gradient pass goes through (a DistributedDataParallel wrapper of
    `model` under torchrun, so that gradients are averaged across processes).
    """
    network = network or model
    batch = batch.to(device, non_blocking=True)
    with autocast(device):
        with torch.no_grad():
            embeddings = model.embed(batch.codes, batch.lengths, chunk_size, presorted=True)
            logits = model.attention_logits(embeddings, batch.counts).float()
            if batch.noise is not None:  # Gumbel top-k: sample without replacement by attention weight
                logits = logits + batch.noise
        keep = top_k_per_bag(logits, batch.bag_index, batch.n_bags, model.config.reduction_fraction)
        outputs = network(batch.codes[keep], batch.lengths[keep], batch.bag_index[keep], batch.n_bags,
                          batch.counts[keep], chunk_size, presorted=True)
        loss = total_loss(targets, outputs.float(), values, present)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def evaluate(model: DeepRC, cache: RepertoireCache, ids: list[str], targets: list[Target], labels: _Labels,
             device: torch.device, chunk_size: int, context: Context = Context()) -> tuple[np.ndarray, dict[str, Any]]:
    """Score full repertoires (shared out across processes); returns outputs (n, n_outputs) and
    loss/metrics per target, the same on every process."""
    model.eval()
    local = {i: score_repertoire(model, cache.get(i), device, chunk_size).outputs for i in context.shard(ids)}
    scored = context.gather(local)
    outputs = np.stack([scored[i] for i in ids]) if ids else np.zeros((0, model.config.n_outputs))
    values, present = labels.rows(ids)
    result: dict[str, Any] = {"n": len(ids)}
    if ids:
        with torch.no_grad():
            result["loss"] = float(total_loss(targets, torch.from_numpy(outputs), torch.from_numpy(values),
                                              torch.from_numpy(present)))
    for j, target in enumerate(targets):
        result[target.column] = target.metrics(outputs, values[:, j], present[:, j])
    model.train()
    return outputs, result


def _label_columns(targets: list[Target], values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets' encoded labels as numeric columns: one per binary/regression target, one-vs-rest
    indicators per class of a multiclass target."""
    columns, known = [], []
    for j, target in enumerate(targets):
        if target.kind == "multiclass":
            for c in range(len(target.classes)):
                columns.append((values[:, j] == c).astype(np.float64))
                known.append(present[:, j])
        else:
            columns.append(values[:, j])
            known.append(present[:, j])
    return np.stack(columns, axis=1), np.stack(known, axis=1)


def _sample_sequences(cache: RepertoireCache, ids: list[str], n: int, seed: int) -> Batch:
    """About `n` sequences drawn evenly from the repertoires `ids` (seeded), as one batch."""
    rng = np.random.default_rng([seed, 7])
    per_repertoire = max(1, n // max(len(ids), 1))
    repertoires = [cache.get(i) for i in ids]
    rows = [sample_rows(r, per_repertoire, rng, "uniform") for r in repertoires]
    return make_batch(repertoires, rows)


def _seed_kernels_from_kmers(model: DeepRC, cache: RepertoireCache, train_ids: list[str], targets: list[Target],
                             labels: _Labels, config: TrainConfig, label: str) -> None:
    import polars as pl

    from .data import encode_sequences
    from .seeding import associate_kmers, point_attention, seed_kernels

    n_kernels = min(config.init_kmers, model.config.n_kernels)
    if config.init_kmer_length > model.config.kernel_size:
        raise UsageError(f"--init-kmer-length {config.init_kmer_length} is longer than the kernel "
                         f"({model.config.kernel_size}); lower it or raise --kernel-size")
    values, present = _label_columns(targets, *labels.rows(train_ids))
    started = time.perf_counter()
    association = associate_kmers((cache.get(i) for i in train_ids), values, present, config.init_kmer_length,
                                  n_kernels)
    seed_kernels(model.conv_weight, model.conv_bias, association.kmers, config.init_kmer_amplitude)
    if config.init_attention and association.kmers:
        background = _sample_sequences(cache, train_ids, 4096, config.seed)
        with torch.no_grad():
            background_mean = model.embed(background.codes, background.lengths).mean(dim=0)  # (D,)
            full = encode_sequences(pl.Series([f"CASS{kmer}TQYF" for kmer in association.kmers]))
            full_match = torch.zeros_like(background_mean)
            seeded = torch.arange(len(association.kmers))
            full_match[seeded] = model.embed(torch.from_numpy(full[0]), torch.from_numpy(full[1].astype(np.int64))
                                             )[seeded, seeded]
        # Attention starts on the clear candidates only: a k-mer scoring half the best |t| or less
        # (in a small cohort, chance associations of common k-mers) gets no head start.
        strengths = np.clip(2 * association.scores / association.scores[0] - 1, 0, 1)
        point_attention(model.attention, seeded.tolist(), strengths, background_mean, full_match,
                        config.init_attention)
    log.info("%sseeded %d kernels from the training repertoires' most label-associated %d-mers in %.1f s: %s",
             label, len(association.kmers), config.init_kmer_length, time.perf_counter() - started,
             ", ".join(f"{kmer} (|t| {score:.1f})" for kmer, score in zip(association.kmers[:8], association.scores)))


# ----------------------------------------------------------------------------------------------
# one model
# ----------------------------------------------------------------------------------------------
def _settings_fingerprint(store: Store, targets: list[TargetSpec], config: TrainConfig, model_config: ModelConfig,
                          assignment: dict[str, str]) -> str:
    # Settings that change no result (memory, checkpoint frequency) may differ on resume.
    train = {k: v for k, v in config.to_dict().items() if k not in ("checkpoint_every", "chunk_size", "cache_gb")}
    return json.dumps({"store": store.fingerprint, "targets": [t.__dict__ for t in targets],
                       "train": train, "model": model_config.to_dict(), "splits": assignment}, sort_keys=True)


def _build_targets(store: Store, specs: list[TargetSpec], train_ids: list[str]) -> list[Target]:
    targets = []
    for spec in specs:
        labels = store.labels(spec.column)
        targets.append(infer_target(spec.column, [labels[i] for i in train_ids], spec.kind, spec.positive,
                                    spec.weight))
    assign_offsets(targets)
    return targets


def _train_one(store: Store, work: Path, specs: list[TargetSpec], assignment: dict[str, str], config: TrainConfig,
               model_config: ModelConfig, device: torch.device, resume: bool, label: str,
               context: Context = Context()) -> dict[str, Any]:
    """Train one model in `work` (a folder that becomes a finished model folder)."""
    ids = {split: sorted(i for i, s in assignment.items() if s == split) for split in SPLITS}
    if not ids["train"]:
        raise UsageError("no repertoires left for training; lower --validation-fraction/--test-fraction")
    if context.active and (config.batch_size % context.world_size or len(ids["train"]) < config.batch_size):
        raise UsageError(f"--batch-size {config.batch_size} must be a multiple of the {context.world_size} processes "
                         f"and at most the {len(ids['train'])} training repertoires")
    targets = _build_targets(store, specs, ids["train"])
    model_config = ModelConfig(**{**model_config.to_dict(), "n_outputs": sum(t.n_outputs for t in targets)})
    all_ids = ids["train"] + ids["validation"] + ids["test"]
    labels = _Labels(store, targets, all_ids)
    cache = RepertoireCache(store, int(config.cache_gb * (1 << 30)))

    torch.manual_seed(config.seed)
    model = DeepRC(model_config)
    if config.init_kmers and not (resume and (work / CHECKPOINT_NAME).exists()):
        _seed_kernels_from_kmers(model, cache, ids["train"], targets, labels, config, label)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=config.adam_eps,
                                 weight_decay=config.weight_decay)
    network: torch.nn.Module = model
    if context.active:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    settings = _settings_fingerprint(store, specs, config, model_config, assignment)
    state: dict[str, Any] = {"update": 0, "best_val_loss": math.inf, "best_update": 0, "stale_evals": 0,
                             "history": [], "loss_sum": 0.0, "loss_count": 0}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint_path = work / CHECKPOINT_NAME
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if saved["settings"] != settings:
            raise UsageError(f"{checkpoint_path}: was made with other data or settings; start again without --resume")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        best_weights = saved["best_model"]
        state = saved["state"]
        log.info("%sresuming from update %d", label, state["update"])
    elif resume:
        log.info("%sno checkpoint in %s; starting from the beginning", label, work)

    def save_checkpoint() -> None:
        if not context.is_main:
            return
        checkpoint = {"settings": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "best_model": best_weights, "state": state}
        write_file_atomically(checkpoint_path, lambda temporary: torch.save(checkpoint, temporary))

    log.info("%straining on %d repertoires (validation %d, test %d), %s%s, targets: %s", label, len(ids["train"]),
             len(ids["validation"]), len(ids["test"]), describe(device),
             f" x {context.world_size} processes" if context.active else "",
             ", ".join(f"{t.column} ({t.kind}{', positive ' + repr(t.positive) if t.positive else ''})"
                       for t in targets))
    train_values, train_present = labels.rows(ids["train"])
    row_of = {sample_id: i for i, sample_id in enumerate(ids["train"])}
    headline = f"{targets[0].column}:{targets[0].headline_metric}"
    checkpoint_every = config.checkpoint_every or config.eval_every
    model.train()
    started = time.perf_counter()
    last_status = ""
    with progress(config.max_updates - state["update"], f"{label}train",
                  enabled=False if not context.is_main else None) as bar:
        batches = _prefetch(_batches(cache, ids["train"], config, state["update"], device.type == "cuda", context))
        for update, chosen, batch in batches:
            rows = [row_of[c] for c in chosen]
            values = torch.from_numpy(train_values[rows]).to(device)
            present = torch.from_numpy(train_present[rows]).to(device)
            loss = train_step(model, optimizer, batch, targets, values, present, device, config.chunk_size, network)
            if context.active:  # the update's loss over all processes, for logs and the curve
                total = torch.tensor([loss], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(total)
                loss = float(total) / context.world_size
            if not math.isfinite(loss):
                raise RepclassError(f"training diverged at update {update + 1} (loss {loss}); lower --lr")
            state["loss_sum"] += loss
            state["loss_count"] += 1
            state["update"] = update + 1
            finished = state["update"] == config.max_updates
            if state["update"] % config.eval_every == 0 or finished:
                _, validation = evaluate(model, cache, ids["validation"], targets, labels, device, config.chunk_size,
                                         context)
                train_loss = state["loss_sum"] / max(state["loss_count"], 1)
                state["loss_sum"], state["loss_count"] = 0.0, 0
                row = {"update": state["update"], "train_loss": train_loss,
                       "validation_loss": validation.get("loss", math.nan)}
                for target in targets:
                    row[f"{target.column}:{target.headline_metric}"] = validation[target.column].get(
                        target.headline_metric, math.nan)
                state["history"].append(row)
                improved = ids["validation"] and validation["loss"] < state["best_val_loss"] - config.min_delta
                if improved or not ids["validation"]:
                    state["best_val_loss"] = validation.get("loss", math.inf)
                    state["best_update"] = state["update"]
                    state["stale_evals"] = 0
                    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    state["stale_evals"] += 1
                last_status = (f"val_loss {row['validation_loss']:.4f} val {headline} "
                               f"{row.get(headline, math.nan):.3f}")
                if not bar.rich:
                    log.info("%supdate %d/%d: loss %.4f %s", label, state["update"], config.max_updates, train_loss,
                             last_status)
                if state["stale_evals"] >= config.patience:
                    log.info("%sstopping early: validation loss has not improved for %d evaluations (best at "
                             "update %d)", label, config.patience, state["best_update"])
                    finished = True
            if state["update"] % checkpoint_every == 0 or finished:
                save_checkpoint()
            bar.advance(status=f"loss {loss:.4f} | {last_status}" if last_status else f"loss {loss:.4f}")
            if finished:
                break

    model.load_state_dict(best_weights)
    # No timings in the outputs: they must be byte-identical for the same inputs and seed.
    log.info("%s%d updates in %.1f s", label, state["update"], time.perf_counter() - started)
    metrics: dict[str, Any] = {"best_update": state["best_update"], "updates": state["update"]}
    prediction_rows = []
    for split in SPLITS:
        outputs, split_metrics = evaluate(model, cache, ids[split], targets, labels, device, config.chunk_size,
                                          context)
        metrics[split] = split_metrics
        prediction_rows.append((split, ids[split], outputs))
    info = ModelInfo(model_config=model_config, targets=targets, junction_convention=store.junction_convention,
                     read_options=store.manifest.get("read_options", {}), store_fingerprint=store.fingerprint,
                     split_seed=config.seed, splits=assignment, metrics=metrics, train_config=config.to_dict())
    if context.is_main:
        _write_outputs(work, model, info, state["history"], prediction_rows, labels, store)
        checkpoint_path.unlink(missing_ok=True)
    context.barrier()
    return metrics


def _write_outputs(work: Path, model: DeepRC, info: ModelInfo, history: list[dict[str, Any]],
                   prediction_rows: list[tuple[str, list[str], np.ndarray]], labels: _Labels, store: Store) -> None:
    import polars as pl

    from .plot import plot_training_curve

    save_model(work / MODEL_FILENAME, model, info)
    (work / "model.json").write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    (work / "config.json").write_text(json.dumps({"train": info.train_config, "model": info.model_config.to_dict(),
                                                  "targets": [t.to_dict() for t in info.targets],
                                                  "store": str(store.path), "store_fingerprint": info.store_fingerprint},
                                                 indent=2, sort_keys=True) + "\n")
    (work / "metrics.json").write_text(json.dumps(info.metrics, indent=2, sort_keys=True, allow_nan=True) + "\n")
    write_metrics_table(work, info.targets, info.metrics)
    curve = pl.DataFrame(history) if history else pl.DataFrame({"update": []})
    curve.write_csv(work / "training_curve.tsv", separator="\t")
    plot_training_curve(history, work / "training_curve.png", best_update=info.metrics["best_update"])
    write_predictions_table(work, info.targets, prediction_rows, store)


# ----------------------------------------------------------------------------------------------
# the public entry point
# ----------------------------------------------------------------------------------------------
def _split_assignments(store: Store, specs: list[TargetSpec], split: SplitSpec, config: TrainConfig
                       ) -> list[dict[str, str]]:
    usable = [i for i in store.sample_ids if any(store.labels(s.column)[i] is not None for s in specs)]
    dropped = len(store.sample_ids) - len(usable)
    if dropped:
        log.warning("%d repertoires have no label for any target and are left out", dropped)
    if split.column is not None:
        values = store.labels(split.column)
        return [column_split(usable, [values[i] for i in usable], split.column)]
    # Stratify by the first classification target (regression targets do not stratify).
    strata: list[str | None] = [None] * len(usable)
    for spec in specs:
        labels = store.labels(spec.column)
        values = [labels[i] for i in usable]
        numeric_many = len({v for v in values if v is not None}) > 2 and spec.kind != "multiclass"
        if spec.kind != "regression" and not numeric_many:
            strata = values
            break
    if split.folds is not None:
        folds = kfold_splits(usable, strata, split.folds, config.seed)
        if split.fold is not None:
            if not 1 <= split.fold <= split.folds:
                raise UsageError(f"--fold must be between 1 and {split.folds}, got {split.fold}")
            return [folds[split.fold - 1]]
        return folds
    return [random_split(usable, strata, config.validation_fraction, config.test_fraction, config.seed)]


def target_specs(targets: Sequence[TargetSpec | str]) -> list[TargetSpec]:
    """The targets as TargetSpecs (a bare column name means an inferred kind), at least one, each once."""
    specs = [TargetSpec(t) if isinstance(t, str) else t for t in targets]
    if not specs:
        raise UsageError("name at least one target column with --target")
    if len({s.column for s in specs}) != len(specs):
        raise UsageError("a target column is named twice")
    return specs


def partial_path(out: Path) -> Path:
    return out.parent / f"{out.name}.partial"


def train(store: str | Path | Store, out: str | Path, *, targets: Sequence[TargetSpec | str],
          config: TrainConfig | None = None, model_config: ModelConfig | None = None,
          split: SplitSpec | None = None, device: str = "auto", resume: bool = False,
          force: bool = False) -> TrainResult:
    """Train DeepRC on a store and write a model folder at `out`.

    The folder holds model.safetensors (the shareable model file), metrics.json/.tsv,
    training_curve.tsv/.png, predictions.tsv (every repertoire with its split) and config.json.
    With `split.folds` (and no `split.fold`) it holds fold_1 ... fold_K model folders and
    folds_summary.tsv/.json instead.
    """
    config = config or TrainConfig()
    model_config = model_config or ModelConfig()
    split = split or SplitSpec()
    specs = target_specs(targets)
    _check_settings(config, specs)
    store = store if isinstance(store, Store) else Store.open(store)
    for spec in specs:
        _check_labels(store, spec)
    out = Path(out)
    # The model folder may not be (or hold, or lie in) the store, and --force only replaces a model folder.
    check_output_not_input(out, [store.path])
    check_output_not_input(partial_path(out), [store.path])
    check_replaceable(out, "model", force)
    prepare_parent(out)
    context, device = from_environment(device)
    try:
        # One process (the main one under torchrun) holds the output's lock: a second run to the
        # same --out fails at once instead of publishing a folder that mixes both runs' files.
        with output_lock(out) if context.is_main else contextlib.nullcontext():
            if context.is_main:
                clean_leftovers(out)
                check_replaceable(out, "model", force)
            return _train_all(store, out, specs, config, model_config, split, resolve_device(device), resume,
                              context)
    except RepclassError as exc:
        work = partial_path(out)
        if context.is_main and work.exists():
            exc.args = (f"{exc} ({work} keeps the unfinished run: after fixing the cause, `--resume` continues it; "
                        "or remove it)",)
        raise
    except KeyboardInterrupt:
        if context.is_main and partial_path(out).exists():
            log.warning("interrupted; %s keeps the unfinished run: `--resume` continues it, or remove it",
                        partial_path(out))
        raise
    finally:
        _stop_prefetchers()
        finish(context)


def _check_labels(store: Store, spec: TargetSpec) -> None:
    """A target column with no labels, or one label for every repertoire, is a data problem (exit 1)."""
    labels = store.labels(spec.column)  # raises a clear error for an unknown column
    values = sorted({v for v in labels.values() if v is not None})
    if not values:
        raise LabelError(f"{store.path}: target {spec.column!r} has no label for any repertoire; fill the column in "
                         "the sample sheet and ingest again, or choose another --target")
    if len(values) == 1:
        raise LabelError(f"{store.path}: every labelled repertoire has {spec.column} = {excerpt(values[0])}; a model "
                         "needs at least two different labels to learn from")


def _check_settings(config: TrainConfig, specs: list[TargetSpec]) -> None:
    """Settings that would train nothing meaningful (NaN, negative), refused before any work."""
    def finite(value: float) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    if not (finite(config.learning_rate) and config.learning_rate > 0):
        raise UsageError(f"--lr must be a positive number, got {config.learning_rate}")
    if not (finite(config.weight_decay) and config.weight_decay >= 0):
        raise UsageError(f"--weight-decay must be zero or a positive number, got {config.weight_decay}")
    if config.chunk_size < 1:
        raise UsageError(f"--chunk-size must be at least 1, got {config.chunk_size}")
    if not (finite(config.cache_gb) and config.cache_gb >= 0):
        raise UsageError(f"--cache-gb must be zero or a positive number, got {config.cache_gb}")
    if config.patience < 1:
        raise UsageError(f"--patience must be at least 1, got {config.patience}")
    for spec in specs:
        if not (finite(spec.weight) and spec.weight >= 0):
            raise UsageError(f"--loss-weight {spec.column}={spec.weight}: a loss weight must be zero or a positive "
                             "number")
    if all(spec.weight == 0 for spec in specs):
        raise UsageError("every --loss-weight is 0: at least one target must carry weight")


def _train_all(store: Store, out: Path, specs: list[TargetSpec], config: TrainConfig, model_config: ModelConfig,
               split: SplitSpec, device_obj: torch.device, resume: bool, context: Context) -> TrainResult:
    assignments = _split_assignments(store, specs, split, config)
    work = partial_path(out)
    if context.is_main:
        if work.exists() and not resume:
            log.info("removing %s, left by an earlier run (pass --resume to continue it instead)", work)
            shutil.rmtree(work)
        if resume:
            _check_checkpoints(work)
        work.mkdir(parents=True, exist_ok=True)
    context.barrier()

    if len(assignments) == 1:
        metrics = _train_one(store, work, specs, assignments[0], config, model_config, device_obj, resume, "",
                             context)
        if context.is_main:
            publish(work, out)
        return TrainResult(path=out, metrics=metrics, best_update=metrics["best_update"])

    fold_metrics = []
    for index, assignment in enumerate(assignments, start=1):
        fold_dir = work / f"fold_{index}"
        if (fold_dir / MODEL_FILENAME).exists() and not (fold_dir / CHECKPOINT_NAME).exists():
            log.info("fold %d/%d already finished", index, len(assignments))
            fold_metrics.append(json.loads((fold_dir / "metrics.json").read_text()))
            continue
        if context.is_main:
            fold_dir.mkdir(exist_ok=True)
        context.barrier()
        fold_metrics.append(_train_one(store, fold_dir, specs, assignment, config, model_config, device_obj,
                                       resume, f"fold {index}/{len(assignments)}: ", context))
    summary = {}
    if context.is_main:
        summary = _write_fold_summary(work, fold_metrics, specs)
        publish(work, out)
    return TrainResult(path=out, metrics=summary, best_update=-1, folds=fold_metrics)


def _check_checkpoints(work: Path) -> None:
    """Refuse a truncated or foreign checkpoint before any training starts, with advice."""
    for path in sorted(work.rglob(CHECKPOINT_NAME)) if work.is_dir() else []:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise RepclassError(f"{path}: the checkpoint cannot be read ({type(exc).__name__}); it is truncated or "
                                f"not one repclass wrote: start again without --resume (this removes {work})") from exc
        if not isinstance(saved, dict) or not {"settings", "model", "optimizer", "best_model", "state"} <= set(saved):
            raise RepclassError(f"{path}: not a repclass training checkpoint; start again without --resume (this "
                                f"removes {work})")


def _write_fold_summary(work: Path, fold_metrics: list[dict[str, Any]], specs: list[TargetSpec]) -> dict[str, Any]:
    import polars as pl

    rows = []
    for fold, metrics in enumerate(fold_metrics, start=1):
        for split in SPLITS:
            for spec in specs:
                for name, value in metrics[split].get(spec.column, {}).items():
                    rows.append({"fold": str(fold), "split": split, "target": spec.column, "metric": name,
                                 "value": float(value)})
    table = pl.DataFrame(rows, schema={"fold": pl.String, "split": pl.String, "target": pl.String,
                                       "metric": pl.String, "value": pl.Float64})
    summary_rows = (table.group_by(["split", "target", "metric"], maintain_order=True)
                    .agg(pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd")))
    table.write_csv(work / "folds.tsv", separator="\t")
    summary_rows.write_csv(work / "folds_summary.tsv", separator="\t")
    summary = {f"{r['split']}:{r['target']}:{r['metric']}": {"mean": r["mean"], "sd": r["sd"]}
               for r in summary_rows.iter_rows(named=True)}
    (work / "folds_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary

