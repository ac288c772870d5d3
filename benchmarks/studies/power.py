"""Power analysis: test AUC against witness rate and number of repertoires, DeepRC and the baselines.

For every (witness rate, number of repertoires, seed) it simulates a cohort with `repclass
simulate` (one random motif of length 4-5 with gaps and substitutions, noise implants in the
negatives, motif k-mers purged from the background; OLGA's human TRB model, or the repertoires
of your own store with --background), trains DeepRC (repclass's defaults), the k-mer and the
burden baselines on the same split, prints one table and draws the test AUC against the witness
rate, one line per cohort size and one panel per method:

    python benchmarks/studies/power.py                                   # the default grid, 1 seed
    python benchmarks/studies/power.py --background my_cohort.store --sequences 20000-30000 --seeds 3
    python benchmarks/studies/power.py --rates 0.001,0.0005 --sizes 100,200 --plot docs/power.png

Rows are appended to OUT/runs_power.jsonl, so an interrupted grid resumes and a second call with
more seeds adds to it. Run it alone on the machine if you want the training times.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from accuracy import Cell, parse_overrides, run_one  # noqa: E402
from common import ROOT, commit, machine  # noqa: E402

METHODS = ("deeprc", "kmer", "burden")


def cell_name(rate: float, size: int) -> str:
    return f"w{rate:.3%}-n{size}"


def table(rows: list[dict], rates: list[float], sizes: list[int]) -> str:
    lines = ["| witness rate | repertoires | seeds | " + " | ".join(f"{m} test AUC" for m in METHODS) +
             " | DeepRC s | DeepRC attention on witnesses |",
             "|---|---:|---:|" + "---:|" * (len(METHODS) + 2)]
    for rate in rates:
        for size in sizes:
            mine = [r for r in rows if r["cell"] == cell_name(rate, size)]
            if not mine:
                continue
            aucs = []
            for method in METHODS:
                values = [r["test_auc"] for r in mine if r["method"] == method and not math.isnan(r["test_auc"])]
                aucs.append("n/a" if not values else f"{statistics.mean(values):.3f}" +
                            (f" +- {statistics.stdev(values):.3f}" if len(values) > 1 else ""))
            deep = [r for r in mine if r["method"] == "deeprc"]
            lines.append(f"| {rate:.2%} | {size} | {len(deep)} | " + " | ".join(aucs) +
                         f" | {statistics.median(r['seconds'] for r in deep):.0f} | "
                         f"{statistics.mean(r['attention_mass'] for r in deep):.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], rates: list[float], sizes: list[int], path: Path) -> None:
    from repclass.plot import save_figure, subplots

    figure, axes = subplots(1, len(METHODS), figsize=(4 * len(METHODS), 3.4), sharey=True)
    for axis, method in zip(axes, METHODS):
        for size in sizes:
            x, y = [], []
            for rate in rates:
                values = [r["test_auc"] for r in rows if r["cell"] == cell_name(rate, size) and
                          r["method"] == method and not math.isnan(r["test_auc"])]
                if values:
                    x.append(rate * 100)
                    y.append(statistics.mean(values))
            axis.plot(x, y, marker="o", label=f"{size} repertoires")
        axis.set_xscale("log")
        axis.set_title({"deeprc": "DeepRC (repclass defaults)", "kmer": "k-mer regression",
                        "burden": "burden (Emerson et al.)"}[method])
        axis.set_xlabel("witness rate (%)")
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_ylim(0.3, 1.02)
    axes[0].set_ylabel("test ROC AUC")
    axes[-1].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.01,0.002,0.001,0.0005", help="witness rates, comma-separated")
    parser.add_argument("--sizes", default="40,80,160", help="numbers of repertoires (half positive), comma-separated")
    parser.add_argument("--sequences", default="5000-8000", help="sequences per repertoire, MIN-MAX")
    parser.add_argument("--seeds", type=int, default=1, help="cohorts per (rate, size)")
    parser.add_argument("--background", default=None, help="a repclass store to implant into (default: OLGA)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "power")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig default for DeepRC, e.g. --set max_updates=2000 (repeatable)")
    parser.add_argument("--plot", type=Path, default=None, help="where to draw the figure (default: OUT/power.png)")
    args = parser.parse_args()
    rates = [float(v) for v in args.rates.split(",")]
    sizes = [int(v) for v in args.sizes.split(",")]
    low, _, high = args.sequences.partition("-")
    sequences = (int(low), int(high or low))
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "runs_power.jsonl"
    done = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    started = time.perf_counter()
    for rate in rates:
        for size in sizes:
            cell = Cell(cell_name(rate, size), rate, n_motifs=1, n_repertoires=size, sequences=sequences,
                        background=args.background)
            for seed in range(1, args.seeds + 1):
                if any(r["cell"] == cell.name and r["seed"] == seed for r in done):
                    continue
                rows = run_one(cell, seed, args.out / "work", parse_overrides(args.overrides), METHODS)
                with log_path.open("a") as handle:
                    for row in rows:
                        handle.write(json.dumps(row) + "\n")
                done += rows
                print(f"{cell.name} seed {seed}: " + ", ".join(f"{r['method']} {r['test_auc']:.3f}" for r in rows),
                      flush=True)
    rows = [r for r in done if r["seed"] <= args.seeds]
    print(f"\n{machine()}; commit {commit()}; {time.strftime('%Y-%m-%d')}; "
          f"{time.perf_counter() - started:.0f} s for the runs not already in {log_path}\n")
    print(table(rows, rates, sizes))
    figure = args.plot or args.out / "power.png"
    plot(rows, rates, sizes, figure)
    print(f"\nfigure: {figure}")


if __name__ == "__main__":
    main()
