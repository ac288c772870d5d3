"""`motifs()`: the orchestration of `repclass motifs`. Checks the output and settings, resolves the
model file(s) once, loads them, scores and explains the repertoires (collect), attributes residues
(attribution), finds motifs (clustering), ranks kernels, and publishes the folder (writing).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from repclass.model.checkpoint import check_store_fits
from repclass.config import MotifsConfig
from repclass.prediction.ensemble import HELD_OUT, assign_splits, out_of_fold
from repclass.prediction.inputs import Models, load_deeprc, resolve_inputs
from repclass.errors import UsageError
from repclass.explain.evidence import implanted_by_sample, read_truth, score_against_truth
from repclass.files import Output, Outputs, sha256_of
from repclass.compute.runtime import resolve_device
from repclass.io.store import MANIFEST_NAME, Store
from repclass.explain.attribution import attribute, kernel_notice, rank_kernels
from repclass.explain.clustering import (CORE_WIDTH, FLANK, MAX_SHIFT, MIN_MOTIF_SHARE, TRIM_FRACTION,
                                         find_motifs)
from repclass.explain.collect import chosen_samples, collect
from repclass.explain.outputs import resolve_explained
from repclass.explain.summary import build_evidence, build_summary, recorded_auc_intervals, training_warning
from repclass.explain.tables import (airr_sequences, motif_table, path_shares, repertoire_table, scores_table,
                                     sequence_table)
from repclass.explain.types import MotifResult
from repclass.explain.writing import publish_folder, training_curve_figures, training_history

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Kernels drawn as logos (the strongest by contribution).
N_KERNEL_LOGOS = 4


def motifs(model: str | Path, store: "str | Path | Store | Sequence[str | Path]", out: str | Path, *,
           samples: Sequence[str] | None = None,
           target: str | None = None, class_name: str | None = None, top_sequences: int = MotifsConfig.top_sequences,
           n_motifs: int = MotifsConfig.n_motifs, ig_steps: int = MotifsConfig.ig_steps, device: str = "auto",
           seed: int = MotifsConfig.seed,
           force: bool = False,
           include_training: bool = False, truth: str | Path | None = None,
           chunk_size: int = MotifsConfig.chunk_size, allow_other_locus: bool = False) -> MotifResult:
    """Explain a model's predictions on a store, or on repertoire files (ingested on the fly with the
    training store's rules, as `predict` does); writes the folder `out`.

    `out` holds sequences.tsv (the `top_sequences` sequences with the largest contributions, with
    attention, contribution and per-residue integrated gradients), repertoires.tsv, motifs.tsv,
    motifs.json, scores.tsv (every scored repertoire: split, label, score, attention concentration),
    logos/ and figures/ (PNG and SVG) and report.html. The repertoires analysed are `samples`, or
    by default the held-out ones (the model's test split, or repertoires it never saw;
    `include_training` adds the rest) predicted as the explained class (binary: the positive class
    unless `class_name` names the other; multiclass: `class_name`; regression: all). `truth`, a
    table of implanted sequences (simulated data), adds truth.json (`evidence.score_against_truth`).
    No step draws random numbers: `seed` is recorded in motifs.json, and the same inputs give the
    same bytes. `chunk_size`: sequences embedded per chunk when repertoires are scored (memory only;
    results unchanged).
    """
    inputs = [store] if isinstance(store, (str, Path, Store)) else list(store)
    if not inputs:
        raise UsageError("give a store or repertoire files to explain")
    MotifsConfig(top_sequences, n_motifs, ig_steps, seed, chunk_size)  # checked before any work
    with contextlib.ExitStack() as cleanup:
        is_store = len(inputs) == 1 and (isinstance(inputs[0], Store) or (Path(inputs[0]) / MANIFEST_NAME).exists())
        read = [Path(model), *([inputs[0].path if isinstance(inputs[0], Store) else Path(inputs[0])] if is_store
                               else [Path(p) for p in inputs])]
        if truth is not None:
            read.append(Path(truth))
        # files.py's lifecycle: not an input, --force only replacing a motifs folder, locked while
        # the run lasts, written in a temporary folder and published at the end.
        outputs = cleanup.enter_context(Outputs([Output(Path(out), "motifs")], inputs=read, force=force))
        given = resolve_inputs(inputs, what="explain")
        device_obj = resolve_device(device)
        models = load_deeprc(model, device_obj)  # each model file loaded once
        # The passes below read a store: repertoire files are ingested with the training store's
        # rules into a temporary one (predict reads them one at a time instead).
        folder = None if given.store is not None else \
            Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="repclass-motifs-")))
        explained_store = given.as_store(models.info, folder)
        return _motifs(model, models, explained_store, outputs, device_obj, samples=samples, target=target,
                       class_name=class_name, top_sequences=top_sequences, n_motifs=n_motifs, ig_steps=ig_steps,
                       seed=seed, include_training=include_training, truth=truth, chunk_size=chunk_size,
                       allow_other_locus=allow_other_locus)


def _motifs(model: str | Path, files: Models, store: Store, outputs: Outputs, device_obj: "torch.device", *,
            samples: Sequence[str] | None, target: str | None, class_name: str | None, top_sequences: int,
            n_motifs: int, ig_steps: int, seed: int, include_training: bool,
            truth: str | Path | None, chunk_size: int, allow_other_locus: bool = False) -> MotifResult:
    started = time.perf_counter()
    out = outputs.path
    model_path = files.paths[0]
    loaded = files.loaded
    network, info = loaded[0]
    for _, fold_info in loaded:
        check_store_fits(fold_info, store, allow_other_locus)
    explained = resolve_explained(info, target, class_name)
    chosen = chosen_samples(store, samples)
    truth_table = read_truth(truth) if truth is not None else None
    networks = [(n, deepcopy(n).double()) for n, _ in loaded]
    owner = next(t for t in info.targets if t.column == explained.target)
    if files.folds:
        assignment, model_of = out_of_fold([i for _, i in loaded], store.sample_ids, store.fingerprint,
                                           str(store.path))
    else:
        assignment = assign_splits([info], store.sample_ids, store.fingerprint, str(store.path))
        model_of = {}
    split_of = dict(zip(store.sample_ids, assignment.splits))
    eligible = {i for i, split in split_of.items() if include_training or split in HELD_OUT}

    summaries, pool, scored, seen = collect(
        networks, model_of, store, explained, owner.offset, owner.n_outputs, chosen, eligible, top_sequences,
        ig_steps, device_obj, chunk_size, implanted_by_sample(truth_table) if truth_table is not None else None)
    analysed = [s.sample_id for s in summaries]
    if chosen is not None:
        selection = "given"
    else:
        selection = "predicted" if include_training or not assignment.overlaps else "predicted, held out"
    log.info("analysing %d repertoires (%s): %d sequences get residue attributions", len(analysed),
             "given" if chosen is not None else f"predicted {explained.target} = {explained.class_name}", len(pool))
    scored_at = time.perf_counter()

    attributions, delta, errors, steps = attribute(networks, pool, explained, ig_steps, device_obj)
    log.info("integrated gradients: worst completeness error %.2e (mean %.2e) over %d sequences",
             float(errors.max()), float(errors.mean()), len(pool))
    attributed = time.perf_counter()

    sequences = [c.junction for c in pool]
    sequence_samples = [analysed[c.sample_index] for c in pool]
    contributions = np.array([c.contribution for c in pool])
    found = find_motifs(sequences, sequence_samples, contributions, attributions, n_motifs)
    # Kernels belong to one model: a cross-validation folder shows those of the fold that explains
    # the most analysed repertoires.
    used = [s.model_index for s in summaries]
    kernel_model = max(sorted(set(used)), key=used.count)
    kernels = rank_kernels(networks[kernel_model][0], [s for s in summaries if s.model_index == kernel_model],
                           min(N_KERNEL_LOGOS, network.config.n_kernels))
    motif_of = {i: m.id for m in found for i in m.members}
    ranked = sequence_table(pool, analysed, attributions, delta, errors, steps, motif_of)
    settings = {"top_sequences": top_sequences, "n_motifs": n_motifs, "ig_steps": ig_steps, "seed": seed,
                "core_width": CORE_WIDTH, "flank": FLANK, "max_shift": MAX_SHIFT, "trim_fraction": TRIM_FRACTION,
                "min_motif_share": MIN_MOTIF_SHARE, "include_training": include_training}
    summary = build_summary(model_path, store, explained, selection, analysed, settings, errors, steps, found,
                            kernels, sequences)
    notice = kernel_notice(network)
    if notice is not None:  # an LSTM embedding: nothing to rank or draw, and motifs.json says why
        summary["kernels_note"] = notice
    if files.folds:
        summary["model"] = {"file": Path(model).name, "sha256": summary["model"]["sha256"],
                            "folds": [{"file": f"{p.parent.name}/{p.name}", "sha256": sha256_of(p)}
                                      for p in files.paths],
                            "kernels_from": f"fold_{kernel_model + 1}"}
    scores = scores_table(scored, owner, explained, store, split_of)
    summary["evidence"] = build_evidence(store, info, explained, scores, found, ranked, split_of, assignment)
    shares = path_shares(scores)
    if shares is not None:  # a model with the enrichment path: how much each path moved the predictions
        summary["evidence"]["paths"] = shares
    # models whose training left the enrichment path off because its inner CV read nothing
    gated = [{"fold": k if files.folds else None, "held_out_auc": notes["held_out_auc"],
              "chance_bound": notes["chance_bound"]}
             for k, (_, fold_info) in enumerate(loaded, start=1)
             if (notes := fold_info.metrics.get("enrichment")) and notes.get("used") is False]
    if gated:
        summary["evidence"]["enrichment_off"] = gated
    histories = [training_history(path) for path in files.paths]
    # what `repclass train` warned about each model's training, as it recorded it in the model folder
    warnings = [(k if files.folds else None, training_warning(path, fold_info, history))
                for k, (path, history, (_, fold_info)) in enumerate(zip(files.paths, histories, loaded), start=1)]
    summary["evidence"]["training_warnings"] = [{"fold": fold, "warning": warning} for fold, warning in warnings
                                                if warning]
    if files.folds:
        summary["evidence"]["cross_validation"] = len(files.paths)
        summary["evidence"]["model_metrics"] = {
            f"fold {k} test": fold_info.metrics.get("test", {}).get(explained.target, {})
            for k, (_, fold_info) in enumerate(loaded, start=1)}
    summary["evidence"]["model_metrics_intervals"] = recorded_auc_intervals(files.paths, explained, bool(files.folds))
    truth_result = None
    if truth_table is not None:
        truth_result = score_against_truth(ranked, truth_table, analysed, [m.consensus for m in found], seen)
        summary["truth"] = truth_result
    clustered = time.perf_counter()

    publish_folder(outputs, summary, ranked, repertoire_table(summaries, ranked), motif_table(found, sequences),
                   scores, [] if files.folds else histories[0], airr_sequences(store, ranked),
                   [] if files.folds or not histories[0] else training_curve_figures(files.paths[0]))
    finished = time.perf_counter()
    timings = {"score": scored_at - started, "integrated_gradients": attributed - scored_at,
               "motifs": clustered - attributed, "write": finished - clustered, "total": finished - started}
    log.info("motifs: %s", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return MotifResult(out=out, report=out / "report.html", motifs=found,
                       completeness_error=float(errors.max()) if len(errors) else 0.0, explained=explained,
                       samples=analysed, sequences=ranked, kernels=kernels, timings=timings,
                       scores=scores, truth=truth_result)
