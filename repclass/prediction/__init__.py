"""`repclass predict`: scoring repertoires with a trained model or a folder of fold models.

- inputs: what predict and motifs are given, resolved once for both (a store or raw files; one
  model or the folds of a `--folds` folder, loaded once; the training store's read options)
- run: `predict` (predictions.tsv, metrics and attention out)
- ensemble: which split each repertoire was in, fold ensembles, held-out metrics

May import: model, io, baselines (a baseline model folder predicts too), the top-level helpers.
"""
