"""Jobs sharing a machine: wall time of `repclass train` alone and with other jobs at the same time.

A pipeline engine starts more jobs than cores, two users share a workstation, a cluster node runs
other work: each job must then slow down in proportion, not collapse. Side by side in one run:

  before  torch's and OpenMP's own defaults (REPCLASS_THREAD_POLICY=off: spin-waiting workers,
          one thread per core of the machine)
  now     repclass's defaults (threads = CPUs the job may use, OpenMP workers sleep while waiting)

    python benchmarks/perf/concurrency.py [--updates 300] [--jobs 2]

Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import ROOT, commit, machine, make_store  # noqa: E402


def run_jobs(store: Path, work: Path, n_jobs: int, updates: int, policy: str, threads: int | None) -> list[float]:
    """Start `n_jobs` trainings at once; returns each one's wall time (s)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS", "OMP_WAIT_POLICY")}
    env["REPCLASS_THREAD_POLICY"] = policy
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "repclass", "-q", "train", str(store), "--target", "status", "--updates",
               str(updates), "--eval-every", str(updates), "--device", "cpu", "--force"]
    if threads:
        command += ["--threads", str(threads)]
    started, processes = [], []
    for job in range(n_jobs):
        started.append(time.perf_counter())
        processes.append(subprocess.Popen(command + ["--out", str(work / f"job{job}")], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    seconds = [0.0] * n_jobs
    for job, process in enumerate(processes):
        _, stderr = process.communicate()
        seconds[job] = time.perf_counter() - started[job]
        if process.returncode:
            raise SystemExit(f"job {job} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2, help="jobs at once in the shared runs")
    parser.add_argument("--repertoires", type=int, default=56)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        store = make_store(work / "cohort.store", {f"s{i:02d}": 10_000 for i in range(args.repertoires)})
        rows = []
        for policy, name in (("off", "before: torch/OpenMP defaults"), ("on", "now: repclass defaults")):
            for n_jobs, threads in ((1, None), (args.jobs, None), (args.jobs, 1)):
                seconds = run_jobs(store, work, n_jobs, args.updates, policy, threads)
                rows.append((name, n_jobs, "default" if threads is None else str(threads), seconds))
        solo = {name: s[0] for name, n, t, s in rows if n == 1}
        print(f"\n{machine()}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable; commit {commit()}; "
              f"{time.strftime('%Y-%m-%d')}; `repclass train`, {args.updates} updates, {args.repertoires} x 10k "
              f"sequences\n")
        print("| defaults | jobs at once | --threads | wall time per job (s) | speed vs alone |")
        print("|---|---:|---|---:|---:|")
        for name, n_jobs, threads, seconds in rows:
            mean = sum(seconds) / len(seconds)
            print(f"| {name} | {n_jobs} | {threads} | {' / '.join(f'{s:.1f}' for s in seconds)} | "
                  f"{solo[name] / mean:.0%} |")


if __name__ == "__main__":
    main()
