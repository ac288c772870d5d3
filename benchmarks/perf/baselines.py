"""Baselines: k-mer feature extraction speed and memory, and whole k-mer / burden training runs.

A store of N repertoires x S random junctions (10-20 residues; labels alternate, so no signal:
this measures cost, not accuracy). Each measurement runs in a fresh process (peak RSS is its own):

  features k=K   repclass.baselines.kmer_features(store, all ids, K): read each repertoire from
                 the store, count k-mers, one float32 row per repertoire (k=5: the 160,000 k-mers
                 present in most repertoires, chosen in a first pass, as training does)
  train kmer     repclass.baselines.train_kmer (k=4, 5-fold inner CV over 6 penalties, refit)
  train burden   repclass.baselines.train_burden (5-fold inner CV over 5 thresholds)

    python benchmarks/perf/baselines.py [--repertoires 200] [--sequences 20000] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import commit, machine, make_store, run_child  # noqa: E402

FEATURES = r"""
import json, sys, time
from repclass.io.store import Store
from repclass.baselines.features import KmerSpec, kmer_features, select_columns
store = Store.open(sys.argv[1]); k = int(sys.argv[2])
ids = store.sample_ids
start = time.perf_counter()
spec = KmerSpec(k)
columns = select_columns(store, ids, spec, 160_000)
matrix = kmer_features(store, ids, spec, columns)
seconds = time.perf_counter() - start
n = sum(store.n_sequences().values())
print(json.dumps({"seconds": seconds, "sequences": n, "shape": list(matrix.shape),
                  "passes": 1 if columns is None else 2}))
"""

TRAIN = r"""
import json, sys, time, shutil
from repclass.io.store import Store
from repclass.baselines import KmerConfig, train_kmer
from repclass.baselines.burden import train_burden
store = Store.open(sys.argv[1]); method = sys.argv[2]; out = sys.argv[3]
start = time.perf_counter()
if method == "kmer":
    result = train_kmer(store, out, targets=["status"], force=True)
else:
    result = train_burden(store, out, targets=["status"], force=True)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "sequences": sum(store.n_sequences().values()),
                  "test_auc": result.metrics["test"]["status"]["roc_auc"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repertoires", type=int, default=200)
    parser.add_argument("--sequences", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "bench.store"
        started = time.perf_counter()
        make_store(store, {f"s{i:04d}": args.sequences for i in range(args.repertoires)})
        print(f"# {machine()}, commit {commit()}, {args.threads} thread(s); store of {args.repertoires} x "
              f"{args.sequences:,} sequences made in {time.perf_counter() - started:.0f} s")
        print("| run | seconds | sequences/s | peak RSS (MB) | notes |")
        print("|---|---:|---:|---:|---|")
        for k in args.k:
            r = run_child(FEATURES, str(store), str(k), threads=args.threads)
            print(f"| features k={k} | {r['seconds']:.1f} | {r['sequences'] / r['seconds']:,.0f} | "
                  f"{r['peak_rss_mb']:.0f} | matrix {r['shape'][0]} x {r['shape'][1]:,} float32, "
                  f"{r['passes']} pass(es) over the store |")
        if not args.skip_training:
            for method in ("kmer", "burden"):
                r = run_child(TRAIN, str(store), method, str(Path(folder) / method), threads=args.threads)
                print(f"| train {method} | {r['seconds']:.1f} | {r['sequences'] / r['seconds']:,.0f} | "
                      f"{r['peak_rss_mb']:.0f} | test AUC {r['test_auc']:.2f} (no signal: ~0.5 expected) |")


if __name__ == "__main__":
    main()
