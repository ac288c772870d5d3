"""Time to a usable model: `repclass train` with default settings on an easy cohort, start-up included.

An easy cohort (1% witnesses, one motif, 80 repertoires of 8-12k OLGA sequences, 56 of them for
training) is what a new user tries first. Side by side, alternating, each a fresh
`python -m repclass train` with default settings:

  before          the repclass of git revision --baseline REV (both before rows left out without it)
  before, capped  the same, stopped by --updates at the update where its validation AUC first
                  reached 1.0 (what "time to a usable model" meant before runs stopped by themselves)
  now             this checkout: the run ends once the validation split is solved (--stop-loss)
  now, --compile on  the same with torch.compile from the first update (mode auto, the default,
                  leaves a job this small eager: what compiling would cost it; `--no-compile`
                  leaves this row out). Inductor's cache is as the machine has it.

    python benchmarks/perf/time_to_model.py [--repeats 2] [--baseline REV]

Needs olga (pip install olga, or the `simulate` extra). Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import ROOT, baseline_source, commit, machine  # noqa: E402


def make_cohort(work: Path, seed: int) -> Path:
    repclass = [sys.executable, "-m", "repclass", "-q"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(repclass + ["simulate", "--out", str(work / "sim"), "--repertoires", "80", "--sequences",
                               "8000-12000", "--witness-rate", "0.01", "--random-motifs", "1", "--seed", str(seed)],
                   check=True, env=env)
    subprocess.run(repclass + ["ingest", str(work / "sim" / "samples.tsv"), str(work / "sim" / "repertoires"),
                               "--out", str(work / "cohort.store")], check=True, env=env)
    return work / "cohort.store"


def train(store: Path, out: Path, source: Path, extra: list[str]) -> dict:
    """One `repclass train` in a fresh interpreter: wall time, updates, when validation AUC hit 1.0."""
    env = dict(os.environ, PYTHONPATH=str(source) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    store, out = store.resolve(), out.resolve()
    command = [sys.executable, "-m", "repclass", "-q", "train", str(store), "--target", "status", "--out", str(out),
               "--validation-fraction", "0.15", "--test-fraction", "0.15", "--device", "cpu", "--force", *extra]
    start = time.perf_counter()
    # From `source`: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH.
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, cwd=source)
    seconds = time.perf_counter() - start
    curve = pl.read_csv(out / "training_curve.tsv", separator="\t")
    solved = curve.filter(pl.col("status:roc_auc") >= 1.0)["update"]
    metrics = json.loads((out / "metrics.json").read_text())
    return {"seconds": seconds, "updates": int(curve["update"][-1]),
            "first_perfect": int(solved[0]) if len(solved) else None,
            "test_auc": metrics["test"]["status"]["roc_auc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per row (the table shows the fastest)")
    parser.add_argument("--baseline", default="none", help="git revision for 'before' (default none: left out)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated cohort")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the `--compile on` row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        store = make_cohort(work, args.seed)
        contenders = [("now", ROOT, [])]
        if args.baseline != "none":
            before = baseline_source(args.baseline, work)
            first = train(store, work / "probe", before, [])
            contenders[:0] = [(f"before ({args.baseline})", before, []),
                              (f"before ({args.baseline}), capped at update {first['first_perfect']}", before,
                               ["--updates", str(first["first_perfect"])])]
        if args.compile:
            contenders.append(("now, --compile on", ROOT, ["--compile", "on"]))
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for name, source, extra in contenders:
                result = train(store, work / "model", source, extra)
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
    print(f"\n# {machine()}, commit {commit()}, {time.strftime('%Y-%m-%d')}; `repclass train` defaults, 1% witnesses, "
          f"80 x 8-12k (56 training), fastest of {args.repeats}\n")
    print("| version | updates run | first update with validation AUC 1.0 | test AUC | wall time (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, result in best.items():
        print(f"| {name} | {result['updates']:,} | {result['first_perfect']} | {result['test_auc']:.3f} | "
              f"{result['seconds']:.1f} |")


if __name__ == "__main__":
    main()
