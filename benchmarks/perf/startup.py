"""Start-up: the fixed cost of the commands a pipeline runs once per fold or per job.

On a small cohort (16 repertoires of 300 random junctions, labels alternating), side by side,
alternating, each a fresh process:

  train   `repclass train --updates 20 --eval-every 10` (import torch, the k-mer start, the
          enrichment path's fit, 20 updates, the model folder and its training-curve figure)
  predict `repclass predict` on that model (import torch, score the 16 repertoires, the table)
  motifs  `repclass motifs --motifs 1 --top-sequences 50 --ig-steps 8` on that model (tables,
          report, 9 figures as PNG and SVG)

for the repclass of git revision --baseline REV ("before"; left out without it) and this
checkout ("now"). Median of --repeats. Run it alone on the machine.

    python benchmarks/perf/startup.py [--repeats 3] [--baseline REV] [--threads 2]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import ROOT, baseline_source, child_env, commit, machine, make_store  # noqa: E402


def timed(source: Path, threads: int, *args: str, cwd: Path) -> float:
    env = child_env(threads, source)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "repclass", "-q", *args, "--threads", str(threads), "--device", "cpu"],
                   check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="git revision to compare against (none by default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repclass-startup-") as folder:
        work = Path(folder)
        store = make_store(work / "cohort.store", {f"r{i:02d}": 300 for i in range(16)})
        sources = {"now": ROOT}
        if args.baseline:
            sources = {"before": baseline_source(args.baseline, work), **sources}
        times: dict[tuple[str, str], list[float]] = {}
        for repeat in range(args.repeats):
            for name, source in sources.items():
                run = work / f"{name}_{repeat}"
                run.mkdir()
                times.setdefault((name, "train"), []).append(timed(
                    source, args.threads, "train", str(store), "--target", "status", "--out", "model",
                    "--updates", "20", "--eval-every", "10", "--seed", "0", cwd=run))
                times.setdefault((name, "predict"), []).append(timed(
                    source, args.threads, "predict", "model", str(store), "--out", "predictions.tsv", cwd=run))
                times.setdefault((name, "motifs"), []).append(timed(
                    source, args.threads, "motifs", "model", str(store), "--out", "motifs", "--motifs", "1",
                    "--top-sequences", "50", "--ig-steps", "8", "--seed", "0", cwd=run))
                shutil.rmtree(run)
    print(f"# start-up: 16 x 300 sequences, {args.threads} threads, median of {args.repeats}, alternating")
    print(f"# {machine()}, commit {commit()}, {time.strftime('%Y-%m-%d')}"
          + (f"; before = {args.baseline}" if args.baseline else ""))
    print("| command | " + " | ".join(sources) + " |\n|---|" + "---|" * len(sources))
    for command in ("train", "predict", "motifs"):
        cells = [f"{statistics.median(times[(name, command)]):.2f} s" for name in sources]
        print(f"| `repclass {command}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
