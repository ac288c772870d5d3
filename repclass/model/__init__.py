"""DeepRC itself and what turns a store into its inputs and its outputs into scores.

- deeprc: the model (embedding h, attention f, output o; top-k attention)
- embedding, activation: the sequence embeddings and the SELU used inside them
- data: store to model inputs (encoded repertoires, the bounded repertoire cache, batches)
- scoring: whole repertoires through the model in chunks
- checkpoint: the safe model file (model.safetensors + model.json) and resume checkpoints
- enrichment: the clonotype-enrichment path beside the attention (`--enrichment`; fitted by
  training.enrichment)

May import: io (the store), compute, the top-level helpers. Never training, prediction,
baselines or explain.
"""
