"""`repclass train` for DeepRC: splits, batches, the update loop, and the model folder it leaves.

- loop: `train` (the orchestration: splits, seeding, updates, evaluation, early stopping)
- splits: train/validation/test splits and folds, grouped by donor (also used by the baselines)
- seeding: the k-mer start of kernels, attention and output
- batching: each update's batch, seeded by (seed, update), prefetched in a thread
- optim: Adam with the bit-for-bit update order the determinism tests check
- distributed: several processes (torchrun) and what they share
- enrichment: fitting the enrichment path's clonotype set on the training split (cross-fitted)
- diagnostics: the memorisation warning and other readings of a training curve
- model_folder: TrainResult; metrics.tsv, predictions.tsv, diagnostics.json and the folds' summaries

May import: model, io, compute, the top-level helpers. Never prediction, baselines or explain.
"""
