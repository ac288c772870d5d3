"""How many CPUs this process may really use, and thread settings that survive a shared machine.

Read before torch or polars is imported: both size their thread pools once, from the environment.
No heavy imports here.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Set to "off" to keep torch's and OpenMP's own defaults (for benchmarks that compare with them).
POLICY_SWITCH = "REPCLASS_THREAD_POLICY"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup CPU quota (SLURM, containers), or None when there is none."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask (taskset, SLURM's cpusets), capped by a cgroup
    CPU quota, at least 1. os.cpu_count() counts the whole machine, which oversubscribes a job
    that was given 2 of 64 cores."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def configure_threads(threads: int | None) -> int:
    """Set the thread environment of torch (OpenMP, MKL) and polars before they are imported.

    `threads` (--threads) wins; otherwise the CPUs this process may use, unless the user has set
    the variables already; a `threads` above the CPUs available is capped there, with a warning.
    OpenMP's workers are also told to sleep instead of spin while they wait
    (OMP_WAIT_POLICY=PASSIVE): with the default spin-waiting, two jobs that each take every core
    keep preempting each other's spinning workers and each runs about 12x slower than alone
    (docs/performance.md); passive waiting costs a single job a few percent. Returns the count.
    """
    available = available_cpus()
    if threads is not None and threads > available:
        # More threads than CPUs only adds switching (10,000 threads: minutes instead of seconds).
        log.warning("--threads %d is more than the %d CPU(s) this job may use; using %d", threads, available,
                    available)
        threads = available
    count = threads if threads is not None else available
    variables = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS")
    if threads is not None:
        for name in variables:
            os.environ[name] = str(count)
    elif os.environ.get(POLICY_SWITCH) != "off":
        for name in variables:
            os.environ.setdefault(name, str(count))
    if os.environ.get(POLICY_SWITCH) != "off":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return count
