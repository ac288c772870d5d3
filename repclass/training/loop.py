"""`repclass train`: DeepRC on a store, with splits, evaluation, checkpoints and resume.

Each update samples `batch_size` training repertoires and up to `sequences_per_bag` sequences
from each (seeded by (seed, update), so a resumed run draws what an uninterrupted one would),
scores all of them without gradients, keeps each repertoire's top `reduction_fraction` by
attention and runs the gradient pass on those. The model with the lowest validation loss wins.

Work happens in `OUT.partial/` (holding a resumable checkpoint); the finished folder is renamed
to OUT at the very end, so a killed run never leaves a folder that looks complete.

The pieces live where they belong: batches and their prefetching in `batching`, the split policy
in `splits`, resume checkpoints (beside model files) in `checkpoint`, the folder's files in
`model_folder`, targets in `targets`, settings and their checks in `config`. This module holds the
update (`train_step`), evaluation, and the loop (`_train_one`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from repclass.training.batching import prefetch, stop_prefetchers, update_batches
from repclass.model.checkpoint import (CHECKPOINT_NAME, MODEL_FILENAME, ModelInfo, check_checkpoints,
                                       load_checkpoint, run_fingerprint, save_checkpoint)
from repclass.config import ModelConfig, TrainConfig
from repclass.model.data import Batch, RepertoireCache, make_batch, sample_rows
from repclass.training.diagnostics import memorisation_warning, validation_perfect
from repclass.training.distributed import Context, finish, from_environment
from repclass.errors import LabelError, RepclassError, UsageError, excerpt
from repclass.files import Output, Outputs, check_output_not_input, clean_leftovers_in, partial_path, prepare_parent
from repclass.model.deeprc import DeepRC, top_k_per_bag
from repclass.names import METRICS_JSON_NAME
from repclass.training.model_folder import TrainResult, write_fold_summary, write_model_folder
from repclass.training.optim import Adam
from repclass.progress import counted, progress
from repclass.compute.runtime import autocast, describe, release_free_memory
from repclass.model.scoring import score_repertoire
from repclass.training.splits import (SPLITS, SplitSpec, group_column, labelled_ids, sample_groups, split_assignments,
                                      split_ids)
from repclass.io.store import Store
from repclass.targets import (BINARY, MULTICLASS, Target, TargetSpec, encode_targets, infer_targets, target_specs,
                              total_loss)

if TYPE_CHECKING:
    from repclass.model.enrichment import EnrichmentFit

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------------------------
# an update, an evaluation
# ----------------------------------------------------------------------------------------------
def train_step(model: DeepRC, optimizer: Adam, batch: Batch, targets: list[Target],
               values: torch.Tensor, present: torch.Tensor, device: torch.device, chunk_size: int,
               network: torch.nn.Module | None = None, composition: torch.Tensor | None = None) -> float:
    """One update: score all sequences without gradients, keep each bag's top fraction, learn.

    `network` is the module the gradient pass goes through (a DistributedDataParallel wrapper of
    `model` under torchrun, so that gradients are averaged across processes). `composition`: the
    bags' enrichment-path inputs (ModelConfig.enrichment; their cross-fitted training values).
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
        bag_sizes = torch.bincount(batch.bag_index, minlength=batch.n_bags)  # the count read-out's denominators
        outputs = network(batch.codes[keep], batch.lengths[keep], batch.bag_index[keep], batch.n_bags,
                          batch.counts[keep], chunk_size, presorted=True, bag_sizes=bag_sizes,
                          **({"composition": composition} if composition is not None else {}))
        loss = total_loss(targets, outputs.float(), values, present)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def evaluate(model: DeepRC, cache: RepertoireCache, ids: list[str], targets: list[Target], labels: _Labels,
             device: torch.device, chunk_size: int, context: Context = Context(), description: str = ""
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Score full repertoires (shared out across processes); returns outputs (n, n_outputs) and
    loss/metrics per target, the same on every process. With a `description`, a pass that takes
    long logs progress lines (the final evaluation of every split: minutes on a large cohort)."""
    model.eval()
    shard = context.shard(ids)
    local = {i: score_repertoire(model, cache.get(i), device, chunk_size).outputs
             for i in (counted(shard, description) if description else shard)}
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
    release_free_memory()  # repertoires read past the cache, and their scoring's buffers
    return outputs, result


def _label_columns(targets: list[Target], values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets' encoded labels as numeric columns: one per binary/regression target, one-vs-rest
    indicators per class of a multiclass target."""
    columns, known = [], []
    for j, target in enumerate(targets):
        if target.kind == MULTICLASS:
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

    from repclass.model.data import encode_sequences
    from repclass.training.seeding import associate_kmers, point_attention, point_output, seed_kernels

    n_kernels = min(config.init_kmers, model.config.n_kernels)
    if config.init_kmer_length > model.config.kernel_size:
        raise UsageError(f"--init-kmer-length {config.init_kmer_length} is longer than the kernel "
                         f"({model.config.kernel_size}); lower it or raise --kernel-size")
    values, present = _label_columns(targets, *labels.rows(train_ids))
    started = time.perf_counter()
    lengths = range(config.init_kmer_length, min(config.init_kmer_max_length, model.config.kernel_size) + 1)
    reading = counted(train_ids, f"{label}k-mer start: reading the training repertoires")
    association = associate_kmers((cache.get(i) for i in reading), values, present, lengths, n_kernels,
                                  seed=config.seed)
    # Only the clear candidates (above the chance level and half the best |t|) become kernels, with
    # a head start in the attention and the output; the other kernels keep their random start.
    # Seeding the rest as plain detectors slows training: detectors of the motif's shifted
    # fragments and of chance k-mers, with random output weights, pull training in directions of
    # their own (docs/method.md, "Only clear candidates become kernels").
    n_found = len(association.kmers)
    chosen = [int(i) for i in np.flatnonzero(association.clear_candidates())]
    # When none is clear (a few dozen training repertoires, or rare witnesses), the best k-mer is
    # still the likeliest signal, and without a seed the model has nothing to start from; where
    # there is no signal, one seed changes nothing (docs/method.md, "When no candidate is clear").
    fallback = not chosen and n_found > 0 and config.init_kmer_fallback
    association = association.take([0] if fallback else chosen)
    seed_kernels(model.conv_weight, model.conv_bias, association.kmers, config.init_kmer_amplitude)
    seeded = list(range(len(association.kmers)))
    strengths = np.clip(2 * association.scores / association.scores[0] - 1, 0, 1) if seeded else np.zeros(0)
    point_output(model.output, seeded, association.signs, association.columns)
    if config.init_attention and seeded:
        background = _sample_sequences(cache, train_ids, 4096, config.seed)
        with torch.no_grad():
            background_mean = model.embed(background.codes, background.lengths).mean(dim=0)  # (D,)
            full = encode_sequences(pl.Series([f"CASS{kmer}TQYF" for kmer in association.kmers]))
            full_match = torch.zeros_like(background_mean)
            full_match[seeded] = model.embed(torch.from_numpy(full[0]), torch.from_numpy(full[1].astype(np.int64))
                                             )[seeded, seeded]
        point_attention(model.attention, seeded, strengths, background_mean, full_match, config.init_attention)
    log.info("%sseeded %d kernels from the %s among the training repertoires' %d most label-associated "
             "%s-mers (above chance, |t| %.1f with the labels shuffled, and above half the best) in %.1f s: %s",
             label, len(seeded), "best k-mer (no clear candidate)" if fallback else "clear candidates", n_found,
             "/".join(map(str, lengths)), association.chance, time.perf_counter() - started,
             ", ".join(f"{kmer} (|t| {score:.1f})" for kmer, score in zip(association.kmers[:8], association.scores))
             or "none")


def _start_count_readout(model: DeepRC, data: _Data, device: torch.device, label: str) -> None:
    """The count read-out's weight on the attention evidence, and the output's bias, start at their
    logistic fit to each binary target's training labels (seeding.fit_evidence_start), given the
    model as it starts (kernels seeded or not); other targets keep 0. On a real cohort whose label
    lies in clonal expansion (`aging`, with --use-counts) this took DeepRC from chance to above the
    k-mer baseline (docs/real-data.md)."""
    from repclass.training.seeding import fit_evidence_start

    ids = data.ids["train"]
    values, present = _label_columns(data.targets, *data.labels.rows(ids))
    with torch.no_grad():
        model.evidence_weight.zero_()
        scores = [score_repertoire(model, data.cache.get(i), device) for i in ids]
    offsets = np.stack([score.outputs for score in scores]).astype(np.float64)  # (n, n_outputs)
    evidence = np.array([score.evidence for score in scores], dtype=np.float64)  # what the read-out sees
    last = [m for m in model.output if isinstance(m, torch.nn.Linear)][-1]
    fitted = []
    for target in data.targets:
        if target.kind == BINARY:  # its label column is its output's (_label_columns keeps that order)
            column = target.offset
            known = present[:, column].astype(bool)
            slope, shift = fit_evidence_start(evidence[known], offsets[known, column], values[known, column])
            with torch.no_grad():
                model.evidence_weight[column] = slope
                last.bias[column] += shift
            fitted.append(f"{target.column} {slope:+.3f}")
    log.info("%scount read-out: the attention evidence's weight starts at its fit to the training labels (%s; "
             "evidence %.2f to %.2f)", label, ", ".join(fitted) or "no binary target: 0",
             evidence.min(), evidence.max())


def _enrichment_applies(data: "_Data", label: str) -> bool:
    """Whether the enrichment path (on by default) can be fitted for this run: one binary target and
    at least 2 training repertoires of each class (its inner cross-fitting needs them). Where not,
    the run trains without it and says so; the model file records it as off."""
    if len(data.targets) != 1 or data.targets[0].kind != BINARY:
        log.info("%senrichment path off: it reads one binary target, this run has %s", label,
                 ", ".join(f"{t.column} ({t.kind})" for t in data.targets))
        return False
    values, present = data.labels.rows(data.ids["train"])
    known = values[present[:, 0].astype(bool), 0]
    smallest = min(int((known == 1).sum()), int((known == 0).sum()))
    if smallest < 2:
        log.info("%senrichment path off: its inner cross-fitting needs 2 training repertoires of each class, "
                 "the training split has %d of one", label, smallest)
        return False
    return True


def _cross_fit_enrichment(store: Store, data: "_Data", config: TrainConfig, label: str,
                          groups: dict[str, str] | None = None) -> tuple["EnrichmentFit | None", dict[str, Any]]:
    """The enrichment path's set, cross-fitted on the training split (repclass/training/enrichment.py),
    and whether the path is used: only where its held-out AUC reads the labels better than chance
    (EnrichmentFit.reads_labels). Returns (the fit, or None where the path is not used; the notes
    for metrics.json). `groups` (each repertoire's donor) keeps a donor's repertoires in one inner fold."""
    from repclass.training.enrichment import fit_enrichment

    ids = data.ids["train"]
    values, present = data.labels.rows(ids)
    known = present[:, 0].astype(bool)
    ids = [i for i, k in zip(ids, known) if k]
    positive = values[known, 0] == 1
    started = time.perf_counter()
    fit = fit_enrichment(store, ids, positive, config.enrichment_folds, config.seed,
                         groups=[groups[i] for i in ids] if groups is not None else None)
    release_free_memory()  # the clonotypes of every training repertoire
    inner = ", ".join(f"{t:g}: {a:.3f}" for t, a in fit.inner_cv)
    used = fit.reads_labels or not config.enrichment_gate
    notes = {"used": used, "threshold": fit.threshold, "n_junctions": len(fit.junctions),
             "inner_folds": fit.n_folds, "held_out_auc": fit.held_out_auc, "chance_bound": fit.chance_bound,
             "inner_cv": [{"threshold": t, "roc_auc": a} for t, a in fit.inner_cv]}
    if not used:
        log.info("%senrichment path off: its %d-fold cross-fitted share reads the training labels no better than "
                 "chance (held-out AUC %.3f at p <= %g, needs > %.3f; by threshold %s): the clonotypes shared by "
                 "the positives do not tell the classes apart; training the attention alone "
                 "(--no-enrichment-gate keeps it; %.1f s)",
                 label, fit.n_folds, fit.held_out_auc, fit.threshold, fit.chance_bound, inner,
                 time.perf_counter() - started)
        return None, notes
    data.composition = dict(zip(ids, ((fit.train_features - fit.mean) / fit.scale).tolist()))
    log.info("%senrichment path: p <= %g chosen by %d-fold cross-fitting on the training split (held-out AUC %s; "
             "chance bound %.3f); %d enriched junctions (%.1f s)", label, fit.threshold, fit.n_folds, inner,
             fit.chance_bound, len(fit.junctions), time.perf_counter() - started)
    return fit, notes


def _install_enrichment(model: DeepRC, fit: "EnrichmentFit", data: "_Data", start: bool, label: str) -> None:
    """Hand the cross-fitted set to the model and (when `start`, i.e. not resuming) start the path's
    weight and the output's bias at their logistic fit to the training labels on the training
    repertoires' cross-fitted inputs (Adam would take hundreds of updates to move it from 0)."""
    from repclass.model.enrichment import encode_junctions
    from repclass.training.seeding import fit_evidence_start

    model.set_enrichment(torch.from_numpy(encode_junctions(fit.junctions)), torch.from_numpy(fit.weights),
                         fit.mean, fit.scale)
    if not start:
        return
    assert data.composition is not None
    ids = list(data.composition)
    values, _ = data.labels.rows(ids)
    standard = np.array([data.composition[i] for i in ids])
    slope, shift = fit_evidence_start(standard, np.zeros(len(ids)), (values[:, 0] == 1).astype(np.float64))
    last = [m for m in model.output if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        model.enrichment_weight[0] = slope
        last.bias[0] += shift
    log.info("%senrichment path: its weight starts at %+.3f", label, slope)


# ----------------------------------------------------------------------------------------------
# one model
# ----------------------------------------------------------------------------------------------
@dataclass
class _Data:
    """What one model trains and is evaluated on: its splits' ids, targets, labels and repertoires."""

    ids: dict[str, list[str]]
    targets: list[Target]
    labels: _Labels
    cache: RepertoireCache
    #: ModelConfig.enrichment: each training repertoire's cross-fitted enrichment-path input
    composition: dict[str, float] | None = None

    @classmethod
    def prepare(cls, store: Store, specs: list[TargetSpec], assignment: dict[str, str], config: TrainConfig,
                context: Context) -> "_Data":
        ids = split_ids(assignment)
        if context.active and (config.batch_size % context.world_size or len(ids["train"]) < config.batch_size):
            raise UsageError(f"--batch-size {config.batch_size} must be a multiple of the {context.world_size} "
                             f"processes and at most the {len(ids['train'])} training repertoires")
        targets = infer_targets(store, specs, ids["train"])
        labels = _Labels(store, targets, ids["train"] + ids["validation"] + ids["test"])
        return cls(ids, targets, labels, RepertoireCache(store, int(config.cache_gb * (1 << 30))))

    def describe(self, label: str, device: torch.device, context: Context) -> None:
        log.info("%straining on %d repertoires (validation %d, test %d), %s%s, targets: %s", label,
                 len(self.ids["train"]), len(self.ids["validation"]), len(self.ids["test"]), describe(device),
                 f" x {context.world_size} processes" if context.active else "",
                 ", ".join(f"{t.column} ({t.kind}{', positive ' + repr(t.positive) if t.positive else ''})"
                           for t in self.targets))

    def evaluate(self, model: DeepRC, split: str, device: torch.device, chunk_size: int,
                 context: Context, description: str = "") -> tuple[np.ndarray, dict[str, Any]]:
        return evaluate(model, self.cache, self.ids[split], self.targets, self.labels, device, chunk_size, context,
                        description)


class TrainingTracker:
    """The loop's bookkeeping, which a resume checkpoint keeps: updates done, the training loss
    since the last evaluation, the training curve, and early stopping (the best validation loss,
    when it was reached, and the weights then)."""

    def __init__(self, model: DeepRC, config: TrainConfig, targets: list[Target], validated: bool) -> None:
        self.model, self.config, self.targets, self.validated = model, config, targets, validated
        self.state: dict[str, Any] = {"update": 0, "best_val_loss": math.inf, "best_update": 0, "stale_evals": 0,
                                      "history": [], "loss_sum": 0.0, "loss_count": 0}
        self.best_weights = self._weights()
        self.status = ""

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @property
    def update(self) -> int:
        return self.state["update"]

    @property
    def best_update(self) -> int:
        return self.state["best_update"]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state["history"]

    def trained(self, update: int, loss: float) -> None:
        self.state["loss_sum"] += loss
        self.state["loss_count"] += 1
        self.state["update"] = update

    def evaluated(self, validation: dict[str, Any]) -> str | None:
        """Record an evaluation (curve row, best model); why to stop now, or None."""
        state = self.state
        train_loss = state["loss_sum"] / max(state["loss_count"], 1)
        state["loss_sum"], state["loss_count"] = 0.0, 0
        row = {"update": state["update"], "train_loss": train_loss, "validation_loss": validation.get("loss", math.nan)}
        for target in self.targets:
            row[target.curve_column] = validation[target.column].get(target.headline_metric, math.nan)
        state["history"].append(row)
        improved = self.validated and validation["loss"] < state["best_val_loss"] - self.config.min_delta
        if improved or not self.validated:
            state["best_val_loss"] = validation.get("loss", math.inf)
            state["best_update"] = state["update"]
            state["stale_evals"] = 0
            self.best_weights = self._weights()
        else:
            state["stale_evals"] += 1
        headline = self.targets[0].curve_column
        self.status = f"val_loss {row['validation_loss']:.4f} val {headline} {row.get(headline, math.nan):.3f}"
        if state["stale_evals"] >= self.config.patience:
            return (f"validation loss has not improved for {self.config.patience} evaluations (best at update "
                    f"{state['best_update']})")
        solved = (self.validated and self.config.stop_loss > 0 and validation["loss"] <= self.config.stop_loss
                  and validation_perfect(row, self.targets))
        if solved:
            return f"validation solved (AUC 1.0, loss {validation['loss']:.4f} <= {self.config.stop_loss:g})"
        return None

    def memorised(self) -> str | None:
        """Whether the kept model only memorised (repclass.training.diagnostics): the warning, or None."""
        if not self.validated:
            return None
        return memorisation_warning(self.history, self.best_update, self.config.eval_every, self.targets,
                                    self.model.config.use_counts and self.config.init_evidence)


def _build_model(data: _Data, config: TrainConfig, model_config: ModelConfig, device: torch.device,
                 context: Context, seed_kernels: bool, label: str
                 ) -> tuple[DeepRC, Adam, torch.nn.Module]:
    """The model (seeded; kernels from k-mers unless resuming), its optimizer, and the module the
    gradient pass goes through (a DistributedDataParallel wrapper under torchrun)."""
    torch.manual_seed(config.seed)
    model = DeepRC(model_config)
    if config.init_kmers and seed_kernels:
        if model.embedding.seedable:
            _seed_kernels_from_kmers(model, data.cache, data.ids["train"], data.targets, data.labels, config, label)
            release_free_memory()  # the pass over every training repertoire
        else:  # an LSTM has no kernels to seed: it starts random, as in the original
            log.info("%sno k-mer start: the %s embedding has no kernels to seed", label, model_config.embedding)
    model = model.to(device)
    if model.config.count_readout and config.init_evidence and seed_kernels:
        _start_count_readout(model, data, device, label)
    optimizer = Adam(model.parameters(), lr=config.learning_rate, eps=config.adam_eps,
                     weight_decay=config.weight_decay)
    return model, optimizer, context.wrap(model, device)


def _train_one(store: Store, work: Path, specs: list[TargetSpec], assignment: dict[str, str], config: TrainConfig,
               model_config: ModelConfig, device: torch.device, resume: bool, label: str,
               context: Context = Context(), groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one model in `work` (a folder that becomes a finished model folder); `groups`: each
    repertoire's donor (the enrichment path's inner folds keep a donor's repertoires together)."""
    data = _Data.prepare(store, specs, assignment, config, context)
    enrichment_fit, enrichment_notes = (_cross_fit_enrichment(store, data, config, label, groups)
                                        if model_config.enrichment and _enrichment_applies(data, label)
                                        else (None, None))
    model_config = ModelConfig(**{**model_config.to_dict(), "n_outputs": sum(t.n_outputs for t in data.targets),
                                  "enrichment": enrichment_fit is not None})
    checkpoint_path = work / CHECKPOINT_NAME
    resuming = resume and checkpoint_path.exists()
    model, optimizer, network = _build_model(data, config, model_config, device, context, not resuming, label)
    if enrichment_fit is not None:
        _install_enrichment(model, enrichment_fit, data, not resuming, label)
    settings = run_fingerprint(store, specs, config, model_config, assignment)
    tracker = TrainingTracker(model, config, data.targets, validated=bool(data.ids["validation"]))
    if resuming:
        tracker.best_weights, tracker.state = load_checkpoint(checkpoint_path, settings, model, optimizer, device)
        log.info("%sresuming from update %d", label, tracker.update)
    elif resume:
        log.info("%sno checkpoint in %s; starting from the beginning", label, work)
    data.describe(label, device, context)
    checkpoint_every = config.checkpoint_every or config.eval_every
    model.train()
    started = time.perf_counter()
    with progress(config.max_updates - tracker.update, f"{label}train", bound=True,
                  enabled=False if not context.is_main else None) as bar:
        pin = device.type == "cuda"
        for update, chosen, batch in prefetch(update_batches(data.cache, data.ids["train"], config, tracker.update,
                                                             pin, context)):
            values, present = (torch.from_numpy(a).to(device) for a in data.labels.rows(chosen))
            composition = (torch.tensor([data.composition[i] for i in chosen], device=device)
                           if data.composition is not None else None)
            loss = train_step(model, optimizer, batch, data.targets, values, present, device, config.chunk_size,
                              network, composition)
            loss = context.mean(loss, device)  # the update's loss over all processes, for logs and the curve
            if not math.isfinite(loss):
                raise RepclassError(f"training diverged at update {update + 1} (loss {loss}); lower --lr")
            tracker.trained(update + 1, loss)
            finished = tracker.update == config.max_updates
            if config.evaluation_due(tracker.update) or finished:
                stop_reason = tracker.evaluated(data.evaluate(model, "validation", device, config.chunk_size,
                                                              context)[1])
                if not bar.rich:
                    log.info("%supdate %d/%d: loss %.4f %s", label, tracker.update, config.max_updates,
                             tracker.history[-1]["train_loss"], tracker.status)
                if stop_reason:
                    log.info("%sstopping early at update %d: %s", label, tracker.update, stop_reason)
                    finished = True
            if context.is_main and (tracker.update % checkpoint_every == 0 or finished):
                save_checkpoint(checkpoint_path, settings, model, optimizer, tracker.best_weights, tracker.state)
            bar.advance(status=f"loss {loss:.4f} | {tracker.status}" if tracker.status else f"loss {loss:.4f}")
            if finished:
                break

    model.load_state_dict(tracker.best_weights)
    # No timings in the outputs: they must be byte-identical for the same inputs and seed.
    log.info("%s%d updates in %.1f s", label, tracker.update, time.perf_counter() - started)
    memorised = tracker.memorised()
    if memorised and context.is_main:
        log.warning("%s%s", label, memorised)
    metrics: dict[str, Any] = {"best_update": tracker.best_update, "updates": tracker.update}
    if enrichment_notes is not None:
        metrics["enrichment"] = enrichment_notes
    prediction_rows = []
    for split in SPLITS:
        outputs, metrics[split] = data.evaluate(model, split, device, config.chunk_size, context,
                                                f"{label}final evaluation: {split} repertoires")
        prediction_rows.append((split, data.ids[split], outputs))
    if context.is_main:
        loci = store.loci()
        info = ModelInfo(model_config=model_config, targets=data.targets, junction_convention=store.junction_convention,
                         locus=",".join(loci) or None, species=store.manifest.get("species"),
                         read_options=store.manifest.get("read_options", {}), store_fingerprint=store.fingerprint,
                         split_seed=config.seed, splits=assignment, metrics=metrics, train_config=config.to_dict())
        write_model_folder(work, model, info, tracker.history, prediction_rows, store, memorised)
        checkpoint_path.unlink(missing_ok=True)
    context.barrier()
    return metrics


# ----------------------------------------------------------------------------------------------
# the public entry point
# ----------------------------------------------------------------------------------------------
def train(store: str | Path | Store, out: str | Path, *, targets: Sequence[TargetSpec | str],
          config: TrainConfig | None = None, model_config: ModelConfig | None = None,
          split: SplitSpec | None = None, device: str = "auto", resume: bool = False,
          force: bool = False) -> TrainResult:
    """Train DeepRC on a store and write a model folder at `out`.

    The folder holds model.safetensors (the shareable model file), metrics.json/.tsv,
    training_curve.tsv/.png, predictions.tsv (every repertoire with its split) and config.json.
    With `split.folds` (and no `split.fold`) it holds fold_1 ... fold_K model folders and
    folds_summary.tsv/.json instead. Settings are checked where they are made (TrainConfig,
    ModelConfig, SplitSpec, `target_specs`): a bad one raises UsageError before any work.
    """
    config = config or TrainConfig()
    model_config = model_config or ModelConfig()
    if config.init_evidence and not model_config.count_readout:
        raise UsageError("--init-evidence starts the count read-out's weight: drop --no-count-readout")
    split = split or SplitSpec()
    specs = target_specs(targets)
    store = store if isinstance(store, Store) else Store.open(store)
    for spec in specs:
        _check_labels(store, spec)
    out = Path(out)
    # The model folder may not be (or hold, or lie in) the store; whether an existing one may be
    # replaced (--force, a model folder only) is checked under the lock, by files.Outputs.
    check_output_not_input(out, [store.path])
    check_output_not_input(partial_path(out), [store.path])
    prepare_parent(out)
    context, device_obj = from_environment(device)
    claimed = None
    try:
        # One process (the main one under torchrun) claims the output (files.Outputs: the lock, the
        # leftovers of dead runs): a second run to the same --out fails at once instead of
        # publishing a folder that mixes both runs' files.
        with Outputs([Output(out, "model")], inputs=[store.path], force=force) if context.is_main \
                else contextlib.nullcontext() as claimed:
            return _train_all(store, out, specs, config, model_config, split, device_obj, resume, context, claimed)
    except RepclassError as exc:
        work = partial_path(out)
        # Only the run that held the lock speaks of (or removes) OUT.partial/: a run refused by the
        # lock must never touch, or suggest removing, the partial folder of the run that holds it.
        if context.is_main and claimed is not None and work.exists():
            if has_progress(work):
                exc.args = (f"{exc} ({work} keeps the unfinished run: after fixing the cause, `--resume` continues "
                            "it; or remove it)",)
            else:  # refused before its first checkpoint: nothing to resume
                shutil.rmtree(work, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        if context.is_main and claimed is not None and partial_path(out).exists():
            if has_progress(partial_path(out)):
                log.warning("interrupted; %s keeps the unfinished run: `--resume` continues it, or remove it",
                            partial_path(out))
            else:
                shutil.rmtree(partial_path(out), ignore_errors=True)
        raise
    finally:
        stop_prefetchers()
        finish(context)


def has_progress(work: Path) -> bool:
    """Whether OUT.partial/ holds anything `--resume` can continue: a checkpoint or a finished fold."""
    return any(work.rglob(CHECKPOINT_NAME)) or any(work.glob(f"fold_*/{MODEL_FILENAME}"))


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


def _train_all(store: Store, out: Path, specs: list[TargetSpec], config: TrainConfig, model_config: ModelConfig,
               split: SplitSpec, device_obj: torch.device, resume: bool, context: Context,
               claimed: Outputs | None) -> TrainResult:
    assignments = split_assignments(store, specs, split, config)
    grouping = group_column(store, split)
    groups = sample_groups(store, labelled_ids(store, specs), grouping) if grouping is not None else None
    work = partial_path(out)
    if context.is_main:
        if work.exists() and not resume:
            log.info("removing %s, left by an earlier run (pass --resume to continue it instead)", work)
            shutil.rmtree(work)
        if resume:
            clean_leftovers_in(work)  # a checkpoint half written when the run was killed
            check_checkpoints(work)
        work.mkdir(parents=True, exist_ok=True)
    context.barrier()

    if len(assignments) == 1:
        metrics = _train_one(store, work, specs, assignments[0], config, model_config, device_obj, resume, "",
                             context, groups)
        if context.is_main:
            claimed.temporary(out, work)
            claimed.publish()
        return TrainResult(path=out, metrics=metrics, best_update=metrics["best_update"])

    fold_metrics = []
    for index, assignment in enumerate(assignments, start=1):
        fold_dir = work / f"fold_{index}"
        if (fold_dir / MODEL_FILENAME).exists() and not (fold_dir / CHECKPOINT_NAME).exists():
            log.info("fold %d/%d already finished", index, len(assignments))
            fold_metrics.append(json.loads((fold_dir / METRICS_JSON_NAME).read_text()))
            continue
        if context.is_main:
            fold_dir.mkdir(exist_ok=True)
        context.barrier()
        fold_metrics.append(_train_one(store, fold_dir, specs, assignment, config, model_config, device_obj,
                                       resume, f"fold {index}/{len(assignments)}: ", context, groups))
    summary = {}
    if context.is_main:
        from repclass.training.splits import split_description

        summary = write_fold_summary(work, fold_metrics, specs, split_description(store, split, specs))
        claimed.temporary(out, work)
        claimed.publish()
    return TrainResult(path=out, metrics=summary, best_update=-1, folds=fold_metrics)
