"""Ingest speed and memory: `repclass ingest` against a bare `polars.read_csv` of the same file.

Makes a synthetic AIRR rearrangement TSV (default 5 million rows) and its gzip, then times, each
in a fresh subprocess so peak RSS is that run's own:
  reference   polars.read_csv(file, separator="\\t")  (parse only, nothing normalised)
  before      repclass ingest of git revision --baseline REV, the same command (left out without
              --baseline)
  repclass    repclass ingest sheet file --out store   (parse, filter, normalise, merge, write)
The three alternate, round after round, so that a slow spell of a shared machine hits all of them.

    python benchmarks/perf/ingest.py [--rows 5000000] [--threads 2] [--baseline REV|none] [--workdir benchmarks/out]

Prints a table (seconds, rows/s, peak RSS, ratio to the reference, CPU seconds and their ratio,
size of the store written).
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import ROOT, baseline_source, commit  # noqa: E402

AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)


def make_airr(path: Path, n_rows: int, seed: int = 0) -> None:
    """A realistic-looking AIRR TSV: anchored junctions of 10-20 residues, TRB genes, counts, ~2% F."""
    import polars as pl

    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    v_genes = np.array([f"TRBV{f}-{g}*01" for f in range(2, 31) for g in (1, 2)])
    j_genes = np.array([f"TRBJ{f}-{g}*01" for f in (1, 2) for g in range(1, 8)])
    with open(path, "wb") as handle:
        for start in range(0, n_rows, chunk):
            n = min(chunk, n_rows - start)
            lengths = rng.integers(10, 21, size=n)
            width = 20
            body = AMINO[rng.integers(0, 20, size=(n, width))]
            body[:, 0] = ord("C")
            body[np.arange(n), lengths - 1] = ord("F")
            mask = np.arange(width)[None, :] < lengths[:, None]
            flat = body[mask]
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            raw = flat.tobytes()
            junctions = [raw[offsets[i]:offsets[i + 1]].decode() for i in range(n)]
            productive = np.where(rng.random(n) < 0.02, "F", "T")
            frame = pl.DataFrame({
                "sequence_id": [f"seq{start + i}" for i in range(n)],
                "junction_aa": junctions,
                "v_call": v_genes[rng.integers(0, len(v_genes), n)],
                "j_call": j_genes[rng.integers(0, len(j_genes), n)],
                "duplicate_count": rng.geometric(0.5, n),
                "productive": productive,
                "locus": ["TRB"] * n,
            })
            buffer = frame.write_csv(separator="\t", include_header=start == 0)
            handle.write(buffer.encode())


def measure(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, float, float]:
    """Run `command` (from `cwd`) under a fresh Python that reports that child's own wall time, peak
    RSS and CPU time (user + system, all threads): on a machine shared with other jobs the CPU time
    moves far less from run to run than the wall time."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(time.perf_counter() - t, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime)")
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, env=env, capture_output=True,
                         text=True, cwd=cwd)
    seconds, peak, cpu = out.stdout.split()
    return float(seconds), float(peak), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "ingest")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per row of the table")
    parser.add_argument("--baseline", default="none",
                        help="git revision whose `repclass ingest` runs as 'before' (default none: left out)")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # children run from elsewhere (common.run_child)
    args.workdir.mkdir(parents=True, exist_ok=True)
    tsv = args.workdir / f"bench_{args.rows}.tsv"
    gz = args.workdir / f"bench_{args.rows}.tsv.gz"
    if not tsv.exists():
        t = time.perf_counter()
        make_airr(tsv, args.rows)
        print(f"made {tsv} ({tsv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if not gz.exists():
        with open(tsv, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    sheet = args.workdir / "sheet.tsv"
    env = dict(os.environ, POLARS_MAX_THREADS=str(args.threads))

    # `python -m repclass` imports the package from its working directory (first on sys.path).
    sources = [("repclass ingest", ROOT)]
    if args.baseline != "none":
        sources.insert(0, (f"repclass ingest before ({args.baseline})", baseline_source(args.baseline, args.workdir)))
    rows = []
    for path in (tsv, gz):
        sheet.write_text(f"sample_id\tfile\tstatus\nbench\t{path.name}\t+\n")
        reference = [sys.executable, "-c", f"import polars as pl; pl.read_csv({str(path)!r}, separator='\\t')"]
        store = args.workdir / "store"
        ours = [sys.executable, "-m", "repclass", "-q", "ingest", str(sheet), "--out", str(store), "--force",
                "--threads", str(args.threads)]
        runs: dict[str, list[tuple[float, float, float]]] = {"polars.read_csv": []}
        sizes: dict[str, float] = {}
        for _ in range(args.repeats):
            runs["polars.read_csv"].append(measure(reference, env))
            for name, source in sources:
                runs.setdefault(name, []).append(measure(ours, env, cwd=source))
                sizes[name] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
        ref_s = min(r[0] for r in runs["polars.read_csv"])
        ref_cpu = min(r[2] for r in runs["polars.read_csv"])
        for name, measured in runs.items():
            seconds = min(r[0] for r in measured)
            cpu = min(r[2] for r in measured)
            rows.append((path.name, name, seconds, args.rows / seconds, max(r[1] for r in measured), seconds / ref_s,
                         cpu, cpu / ref_cpu, sizes.get(name)))

    print(f"# ingest benchmark: {args.rows:,} rows, {args.threads} threads, {platform.processor() or platform.machine()}"
          f", {os.cpu_count()} cores, python {platform.python_version()}; commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print("| file | method | seconds | rows/s | peak RSS (MB) | x reference | CPU s | CPU x reference | store (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, method, seconds, rate, rss, ratio, cpu, cpu_ratio, size in rows:
        print(f"| {name} | {method} | {seconds:.2f} | {rate / 1e6:.2f} M | {rss:.0f} | {ratio:.2f} | {cpu:.2f} | "
              f"{cpu_ratio:.2f} | {'' if size is None else f'{size:.1f}'} |")


if __name__ == "__main__":
    main()
