"""`repclass motifs`: the sequences, residues and motifs behind a DeepRC model's predictions.

Three levels, each with a precise definition (docs/motifs.md has the long form): sequence
contributions and residue integrated gradients (attribution), motifs clustered from the
attributions (clustering). One module per job:

- outputs: which model output is explained (ExplainedOutput, resolve_explained)
- types: the result records (MotifResult, Motif, KernelSummary) and those the passes share
- collect: pass 1 over the store: which repertoires are analysed, scoring, the best sequences
- attribution: sequence contributions, integrated gradients, kernel ranking (the model, torch)
- clustering: motifs from attributions: peak windows, greedy clusters, matrices (plain numpy)
- tables: the TSV tables, where logos lie, rounding; summary: motifs.json and its evidence
- writing: the output folder, published atomically; logos, report: its logos and report.html
- run: `motifs()`, the orchestration

`motifs` is the entry point (also `repclass.motifs`).

May import: model, prediction (inputs, ensemble), io, training.diagnostics (the warning of model
folders that did not record it), the top-level helpers.
"""
from repclass.explain.run import motifs
from repclass.explain.types import MotifResult

__all__ = ["motifs", "MotifResult"]
