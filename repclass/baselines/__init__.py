"""Built-in baselines to measure DeepRC against: `repclass train --method kmer|burden`.

- k-mer: per-repertoire k-mer frequencies, standardised, L1 / elastic-net logistic (multinomial,
  or penalised linear regression), penalty chosen by inner cross-validation on training data.
- burden: Emerson et al. (Nature Genetics 2017): clonotypes enriched in positive training
  repertoires (one-sided Fisher's exact test), a repertoire scored by the share of its clonotypes
  that are enriched, then a 1-D logistic regression.

Library API::

    from repclass.baselines import train_kmer, KmerConfig, kmer_features, fit_kmer
    result = train_kmer("cohort.store", "kmer_model", targets=["status"], kmer=KmerConfig(k=4))
    result.metrics["test"]["status"]["roc_auc"]        # with SplitSpec(folds=K): result.folds, a summary
    X = kmer_features(store, ids, 4)                     # (len(ids), 160000) float32 frequencies
    fit = fit_kmer(X[train], y[train], "binary")         # penalty by inner CV on these rows only
    logits = fit.outputs(X[test][:, fit.feature_ids])    # P(positive) = sigmoid(logits)

    from repclass.comparison import train_methods        # several methods on the same splits
    train_methods(store, "compare", ["deeprc", "kmer"], targets=["status"])
"""
from __future__ import annotations

from repclass.baselines.burden import BurdenConfig, train_burden
from repclass.baselines.common import BaselineInfo, baseline_method, read_baseline
from repclass.baselines.features import KmerSpec, kmer_counts, kmer_features, kmer_vector
from repclass.baselines.kmer import KmerConfig, KmerFit, KmerModel, fit_kmer, train_kmer

__all__ = ["BurdenConfig", "train_burden", "BaselineInfo", "baseline_method", "read_baseline", "KmerSpec", "kmer_counts", "kmer_features",
           "kmer_vector", "KmerConfig", "KmerFit", "KmerModel", "fit_kmer", "train_kmer"]
