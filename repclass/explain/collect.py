"""Pass 1 over the store: which repertoires are analysed, and the pass that scores every one of
them (the evidence needs them all) and explains those chosen, keeping the best sequences.

Memory stays bounded on large stores: repertoires are scored one at a time and only the
`top_sequences` best sequences so far (plus the current repertoire's top-k) are kept.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from repclass.model.data import encode_table
from repclass.errors import RepclassError, UsageError
from repclass.explain.evidence import TRUTH_TOP_ATTENTION, TruthInputs, effective_number
from repclass.model.deeprc import DeepRC
from repclass.progress import progress
from repclass.model.scoring import score_repertoire
from repclass.io.store import Store
from repclass.explain.attribution import explain_repertoire, keep_best
from repclass.explain.outputs import ExplainedOutput
from repclass.explain.types import Candidate, RepertoireSummary, ScoredRepertoire

log = logging.getLogger(__name__)

#: The columns read of each repertoire.
SEQUENCE_COLUMNS = ["junction_aa", "v_call", "j_call", "duplicate_count"]


def chosen_samples(store: Store, samples: Sequence[str] | None) -> list[str] | None:
    """The repertoires named with --sample, in store order (None when none were named); UsageError
    for an empty selection or an id the store lacks."""
    if samples is None:
        return None
    samples = list(samples)
    if not samples:
        raise UsageError("the selection of repertoires is empty; name at least one sample id with --sample, or "
                         "leave --sample out to analyse the repertoires predicted as the explained class")
    known = set(store.sample_ids)
    unknown = [s for s in samples if s not in known]
    if unknown:
        shown = ", ".join(store.sample_ids[:5]) + (", ..." if len(store) > 5 else "")
        raise UsageError(f"{store.path}: no sample(s) {', '.join(repr(s) for s in unknown)} in the store "
                         f"(it holds {shown})")
    chosen = set(samples)
    return [s for s in store.sample_ids if s in chosen]


def _no_selection_error(explained: ExplainedOutput, n_scored: int, held_out_only: bool = False) -> RepclassError:
    # Bad data, not bad usage (exit 1): a weak model in one fold of a pipeline is not a usage error.
    scope = "held-out " if held_out_only else ""
    extra = ", or add the training repertoires with --include-training" if held_out_only else ""
    return RepclassError(f"none of the {n_scored} {scope}repertoires is predicted as {explained.target} = "
                         f"{explained.class_name}, so there is nothing to explain; name repertoires with --sample ID, "
                         f"or explain another class with --class{extra}")


def collect(networks: list[tuple[DeepRC, DeepRC]], model_of: dict[str, int], store: Store,
            explained: ExplainedOutput, offset: int, n_outputs: int, chosen: list[str] | None, eligible: set[str],
            top_sequences: int, steps: int, device: torch.device, chunk_size: int,
            implanted: dict[str, set[str]] | None = None
            ) -> tuple[list[RepertoireSummary], list[Candidate], list[ScoredRepertoire], TruthInputs | None]:
    """Score every repertoire of the store one at a time (the evidence needs them all), each with
    its model (`networks[model_of[id]]`: (float32 model, float64 copy)), `chunk_size` sequences
    embedded at a time; explain those chosen, or else the `eligible` ones predicted as the explained
    class. Keeps only the `top_sequences` best candidates so far: memory does not grow with the store."""
    summaries: list[RepertoireSummary] = []
    pool: list[Candidate] = []
    scored: list[ScoredRepertoire] = []
    seen = TruthInputs(top_attended={}, attention_mass={}) if implanted is not None else None
    wanted = set(chosen) if chosen is not None else None
    with progress(len(store.sample_ids), "motifs: scoring repertoires") as bar:
        for sample_id in store.sample_ids:
            table = store.read(sample_id, SEQUENCE_COLUMNS)
            bar.advance(status=sample_id)
            if table.height == 0:
                log.warning("%s: no sequences; skipped", sample_id)
                continue
            encoded = encode_table(table)
            index = model_of.get(sample_id, 0)
            network, model64 = networks[index]
            score = score_repertoire(network, encoded, device, chunk_size)
            if wanted is not None:
                analyse = sample_id in wanted
            else:
                analyse = sample_id in eligible and explained.predicted(score.outputs, offset, n_outputs)
            scored.append(ScoredRepertoire(sample_id=sample_id, outputs=score.outputs,
                                           n_sequences=score.n_sequences, top1_attention=float(score.weights[0]),
                                           effective_n=effective_number(score.weights), analysed=analyse,
                                           enrichment_outputs=score.composition_outputs))
            if not analyse:
                continue
            if seen is not None:
                junctions = table["junction_aa"]
                top = junctions.gather(score.rows[:TRUTH_TOP_ATTENTION]).to_list()
                seen.top_attended[sample_id] = (top, score.weights[:TRUTH_TOP_ATTENTION].astype(np.float64))
                truths = implanted.get(sample_id, set())
                hit = np.array([j in truths for j in junctions.gather(score.rows).to_list()], dtype=bool)
                seen.attention_mass[sample_id] = float(score.weights[hit].sum())
            summary, candidates = explain_repertoire(network, model64, explained, len(summaries), sample_id, table,
                                                     encoded, score.rows, top_sequences, steps, device)
            summary.model_index = index
            for candidate in candidates:
                candidate.model_index = index
            summaries.append(summary)
            pool = keep_best(pool, candidates, top_sequences)
    if not summaries:
        if chosen is not None:
            raise RepclassError(f"the chosen repertoires ({', '.join(chosen)}) hold no sequences; choose others")
        raise _no_selection_error(explained, len(eligible), len(eligible) < len(store.sample_ids))
    return summaries, pool, scored, seen

