"""A CMV-sized cohort end to end through the CLI: ingest, train (defaults), predict, motifs.

    python benchmarks/perf/end_to_end.py [--repertoires 700] [--sequences 300000]
        [--witness-rate 0.001] [--motif KDLT] [--threads 2] [--workdir DIR] [--keep]

1. Writes the cohort as benchmarks/perf/scaling.py does (gzipped AIRR TSVs: random anchored
   junctions, 60 V and 14 J genes, geometric counts, 2% non-productive), with `--motif` written
   into `--witness-rate` of each positive repertoire's sequences (not timed).
2. Runs each stage as its own `repclass` process with its defaults, as a user would:
   `ingest`, `train --target status`, `predict` on every repertoire, `motifs` (the predicted
   held-out positives). Each stage's log (its progress lines included) is kept in the workdir.
3. Prints a table: wall time and peak RSS per stage, and what each found (the test AUC and the
   updates training took, the AUC of the predictions on the held-out repertoires, the motifs
   listed and whether the implanted one is among them).

docs/scaling.md discusses the figures. Needs ~6 GB of disk at the default size.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scaling.py
from common import ROOT, child_env, commit, machine  # noqa: E402
from scaling import folder_size, write_cohort  # noqa: E402

#: Runs one stage and reports its wall time and peak RSS (of that process and its children).
PROBE = ("import json, resource, subprocess, sys, time\n"
         "start = time.perf_counter()\n"
         "with open(sys.argv[1], 'w') as log:\n"
         "    code = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode\n"
         "print(json.dumps({'code': code, 'seconds': time.perf_counter() - start,\n"
         "                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n")


def run_stage(name: str, workdir: Path, threads: int, *args: str) -> dict:
    log = workdir / f"{name}.log"
    env = child_env(threads)
    command = [sys.executable, "-m", "repclass", *args, "--threads", str(threads)]
    print(f"{time.strftime('%H:%M:%S')} {name}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-c", PROBE, str(log), *command], check=True, capture_output=True,
                         text=True, env=env, cwd=workdir)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{time.strftime('%H:%M:%S')} {name}: {result['seconds']:.0f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)
    if result["code"] != 0:
        sys.exit(f"{name} failed (exit {result['code']}); its log: {log}\n" + log.read_text()[-3000:])
    return result


def held_out_auc(predictions: Path) -> tuple[float, int]:
    """ROC AUC of the predictions on the repertoires the model held out (its test split)."""
    import polars as pl

    from repclass.metrics import roc_auc

    table = pl.read_csv(predictions, separator="\t", schema_overrides={"status:label": pl.String})
    held = table.filter(pl.col("split") == "test")
    return roc_auc(held["status:label"].to_numpy() == "+", held["status:p(+)"].to_numpy()), held.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repertoires", type=int, default=700)
    parser.add_argument("--sequences", type=int, default=300_000)
    parser.add_argument("--witness-rate", type=float, default=0.001)
    parser.add_argument("--motif", default="KDLT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "end_to_end")
    parser.add_argument("--keep", action="store_true", help="keep the cohort, the store and the outputs")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    raw = workdir / f"raw_{args.repertoires}x{args.sequences}_{args.motif}_{args.witness_rate:g}"
    started = time.perf_counter()
    write_cohort(raw, args.repertoires, args.sequences, args.witness_rate, args.motif, workers=args.threads)
    written = time.perf_counter() - started
    print(f"cohort written in {written:.0f} s", file=sys.stderr)
    for output in ("cohort.store", "model", "predictions.tsv", "motifs"):
        path = workdir / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    stages = {
        "ingest": run_stage("ingest", workdir, args.threads, "ingest", str(raw / "samples.tsv"), str(raw),
                            "--out", "cohort.store"),
        "train": run_stage("train", workdir, args.threads, "train", "cohort.store", "--target", "status",
                           "--out", "model"),
        "predict": run_stage("predict", workdir, args.threads, "predict", "model", "cohort.store",
                             "--out", "predictions.tsv"),
        "motifs": run_stage("motifs", workdir, args.threads, "motifs", "model", "cohort.store", "--out", "motifs"),
    }
    metrics = json.loads((workdir / "model" / "metrics.json").read_text())
    auc, n_held = held_out_auc(workdir / "predictions.tsv")
    motifs = [line.split("\t") for line in (workdir / "motifs" / "motifs.tsv").read_text().splitlines()]
    consensus = [row[motifs[0].index("consensus")] for row in motifs[1:]] if motifs else []
    found = any(args.motif in c.upper() for c in consensus)
    rows = args.repertoires * args.sequences

    print(f"# end to end: {args.repertoires} repertoires x {args.sequences:,} sequences = {rows / 1e6:.0f}M rows, "
          f"motif {args.motif} in {args.witness_rate:.3%} of each positive repertoire, {args.threads} threads")
    print(f"# {machine()}, commit {commit()}, {time.strftime('%Y-%m-%d')}; cohort written in {written:.0f} s")
    print("| stage | wall time | peak RSS | result |\n|---|---|---|---|")
    print(f"| ingest | {stages['ingest']['seconds']:.0f} s ({rows / stages['ingest']['seconds'] / 1e6:.2f} M rows/s) "
          f"| {stages['ingest']['peak_rss_mb']:.0f} MB | store {folder_size(workdir / 'cohort.store') / 1e9:.2f} GB "
          f"from {folder_size(raw, '*.tsv.gz') / 1e9:.2f} GB of gzipped TSVs |")
    test = metrics.get("test", {}).get("status", {})
    print(f"| train (defaults) | {stages['train']['seconds']:.0f} s | {stages['train']['peak_rss_mb']:.0f} MB "
          f"| {metrics.get('updates', '?')} updates (best {metrics.get('best_update', '?')}), "
          f"test ROC AUC {test.get('roc_auc', float('nan')):.3f} |")
    print(f"| predict (all repertoires) | {stages['predict']['seconds']:.0f} s "
          f"({rows / stages['predict']['seconds'] / 1e6:.2f} M sequences/s) "
          f"| {stages['predict']['peak_rss_mb']:.0f} MB "
          f"| ROC AUC {auc:.3f} on the {n_held} held-out repertoires |")
    print(f"| motifs (defaults) | {stages['motifs']['seconds']:.0f} s | {stages['motifs']['peak_rss_mb']:.0f} MB "
          f"| {len(consensus)} motifs ({', '.join(consensus[:5])}); implanted {args.motif} "
          f"{'found' if found else 'not found'} |")
    if not args.keep:
        shutil.rmtree(workdir / "cohort.store", ignore_errors=True)


if __name__ == "__main__":
    main()
