"""`repclass predict`: scoring repertoires with a trained model or a folder of fold models.

- run: `predict` (raw files or a store in, predictions.tsv, metrics and attention out)
- ensemble: which split each repertoire was in, fold ensembles, held-out metrics

May import: model, io, baselines (a baseline model folder predicts too), the top-level helpers.
"""
