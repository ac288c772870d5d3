"""Where computations run: device choice, threads, mixed precision, allocator tuning.

The model never chooses its device; training and prediction ask this module once.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import platform

import torch

from repclass.errors import UsageError

log = logging.getLogger(__name__)
_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Keep freed memory in the process instead of returning it to the OS after every tensor.

    glibc hands large allocations (> 128 KiB) to mmap and gives them back on free, so every
    new activation tensor costs page faults; on small CPU machines (and in VMs) that is a large
    share of a training update. Raising the thresholds, as tcmalloc/jemalloc users get by
    default, makes updates ~20-30% faster here (benchmarks/perf/train.py). Linux/glibc only; a no-op
    elsewhere.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)
    _ALLOCATOR_TUNED = True


def release_free_memory() -> None:
    """Hand memory freed inside the process back to the OS (glibc's malloc_trim), after a phase
    that read many repertoires: with the thresholds `tune_allocator` raises, each malloc arena
    keeps its freed pages, and on a CMV-sized cohort training's RSS grew to almost twice its
    repertoire cache (docs/scaling.md). Linux/glibc only; a no-op elsewhere."""
    if platform.system() != "Linux":
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return


def set_threads(threads: int | None) -> None:
    """torch's threads: `threads` (--threads), never more than the CPUs this job may use."""
    from repclass.compute.cpus import available_cpus

    if threads is not None:
        torch.set_num_threads(max(1, min(threads, available_cpus())))


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The one reading of --device: 'auto' -> cuda when available, else cpu; 'cuda' without a GPU
    is an error. Under torchrun (`local_rank` given) a CUDA device is the process's own GPU,
    cuda:LOCAL_RANK, whatever index was asked for."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if local_rank is not None and name.startswith("cuda"):
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); pick one of them")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 mixed precision on CUDA; plain fp32 on CPU (fp16/bf16 are slower there, not faster)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"

