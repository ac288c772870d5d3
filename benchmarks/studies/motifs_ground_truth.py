"""Ground truth for `repclass motifs`: the bundled example cohort, whose positives carry SFEN.

example_data/ holds 40 repertoires (20 positive); SFEN is implanted in 1% of each positive's
sequences, listed in example_data/implanted.tsv. This script runs

    ingest -> train (default TrainConfig, eval_every=50) -> motifs (top 1000 sequences)

and prints, for the analysed repertoires (those predicted positive):
  precision@k       share of implanted sequences among the k best-ranked by contribution,
                    k = number of implanted sequences in the analysed repertoires
  attended ceiling  share of those k that are in their repertoire's top-k attention softmax at
                    all: no ranking of what the model attends can do better than this
  positive precision share of implanted sequences among those with a positive contribution
  top motif         the top motif's consensus, and whether it contains SFEN
  completeness      worst relative integrated-gradients completeness error
and the seconds each step took.

    python benchmarks/studies/motifs_ground_truth.py [--workdir benchmarks/out/motifs] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_data"
MOTIF = "SFEN"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "motifs")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--top-sequences", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _attended_implanted(model_path: Path, store, samples: list[str], implanted: set[tuple[str, str]]) -> int:
    """Implanted sequences that are in their repertoire's top-k attention softmax."""
    import torch

    from repclass.model.checkpoint import load_model
    from repclass.model.data import encode_table
    from repclass.model.scoring import score_repertoire

    model, _ = load_model(model_path)
    found = 0
    for sample_id in samples:
        table = store.read(sample_id, ["junction_aa", "duplicate_count"])
        rows = score_repertoire(model, encode_table(table), torch.device("cpu")).rows
        junctions = table["junction_aa"].to_list()
        found += sum((sample_id, junctions[r]) in implanted for r in rows)
    return found


def main() -> None:
    args = _arguments()
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)
    import polars as pl
    import torch

    from repclass import ingest
    from repclass.config import TrainConfig
    from repclass.explain import motifs
    from repclass.compute.runtime import set_threads, tune_allocator
    from repclass.training.loop import train

    tune_allocator()
    set_threads(args.threads)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)

    started = time.perf_counter()
    store = ingest(EXAMPLE / "samples.tsv", args.workdir / "store", [EXAMPLE / "repertoires"])
    ingested = time.perf_counter()
    model = train(store.path, args.workdir / "model", targets=["status"], config=TrainConfig(eval_every=50),
                  device="cpu")
    trained = time.perf_counter()
    result = motifs(model.path, store, args.workdir / "motifs", top_sequences=args.top_sequences, device="cpu",
                    seed=args.seed)
    explained = time.perf_counter()

    truth = pl.read_csv(EXAMPLE / "implanted.tsv", separator="\t")
    implanted = set(zip(truth["sample_id"].to_list(), truth["junction_aa"].to_list()))
    k = sum(1 for sample_id, _ in implanted if sample_id in set(result.samples))
    table = result.sequences
    pairs = list(zip(table["sample_id"].to_list(), table["junction_aa"].to_list()))
    hits = sum(pair in implanted for pair in pairs[:k])
    positive = [pair for pair, c in zip(pairs, table["contribution"].to_list()) if c > 0]
    attended = _attended_implanted(model.path, store, result.samples, implanted)
    top = result.motifs[0] if result.motifs else None
    labels = store.labels("status")

    print(f"repclass motifs ground truth: example_data ({len(store)} repertoires, {MOTIF} in 1% of positives)")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}; "
          f"git {commit()}")
    print(f"test metrics: {model.metrics['test']['status']}")
    rows = [
        ("analysed repertoires", f"{len(result.samples)} predicted +, of which "
                                 f"{sum(labels[s] == '+' for s in result.samples)} labelled +"),
        ("k (implanted in them)", str(k)),
        ("precision@k", f"{hits / k:.3f}" if k else "n/a"),
        ("attended ceiling", f"{attended / k:.3f} ({attended} of {k} in the top-k softmax)" if k else "n/a"),
        ("positive precision", f"{sum(p in implanted for p in positive) / max(len(positive), 1):.3f} "
                               f"({len(positive)} sequences with contribution > 0)"),
        ("top motif", f"{top.consensus} ({top.n_sequences} sequences, {top.n_repertoires} repertoires)"
         if top else "none"),
        (f"top motif matches {MOTIF}", str(bool(top and MOTIF in top.consensus.upper()))),
        ("worst completeness error", f"{result.completeness_error:.2e}"),
        ("ingest s", f"{ingested - started:.1f}"),
        ("train s", f"{trained - ingested:.1f} (best update {model.best_update})"),
        ("motifs s", f"{explained - trained:.1f} ("
                     + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result.timings.items()) + ")"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for motif in result.motifs[:5]:
        print(f"  {motif.id:>3}  {motif.consensus:<10} {motif.n_sequences:>4} sequences  {motif.n_repertoires:>3} "
              f"repertoires  contribution {motif.total_contribution:.3g}")
    print(f"report: {result.report}")


if __name__ == "__main__":
    sys.exit(main())
