"""Multi-process training with PyTorch DistributedDataParallel (launched by `torchrun`).

`repclass train` notices torchrun's environment (WORLD_SIZE > 1) and then: uses NCCL on GPUs
(one per process, cuda:LOCAL_RANK) or gloo on CPUs; splits each update's repertoires across the
processes (the batch size is the global batch, so results do not depend on the process count);
scores validation repertoires in shards and gathers the outputs, so every process takes the same
early-stopping decision; lets only rank 0 write. Checkpoints hold no per-process state, so a run
can resume with a different number of processes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

from repclass.compute.runtime import resolve_device

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of `items` (every world_size-th, starting at its rank)."""
        return list(items[self.rank::self.world_size])

    def gather(self, local: dict[str, Any]) -> dict[str, Any]:
        """Union of every process's dict (all processes get the result)."""
        if not self.active:
            return local
        parts: list[dict[str, Any]] = [{} for _ in range(self.world_size)]
        torch.distributed.all_gather_object(parts, local)
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        return merged

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of every process's `value` (all processes get it)."""
        if not self.active:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(total)
        return float(total) / self.world_size

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the gradient pass goes through: under torchrun a DistributedDataParallel
        wrapper of `model` (gradients averaged across processes), else `model` itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def from_environment(device_name: str) -> tuple[Context, torch.device]:
    """Join the process group when launched by torchrun; returns the context and the device to use
    (`runtime.resolve_device`: under torchrun, a process's GPU is cuda:LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if rank != 0:  # one voice in the logs
        logging.getLogger("repclass").setLevel(logging.WARNING)
    return Context(rank=rank, world_size=world_size, local_rank=local_rank), device


def finish(context: Context) -> None:
    if context.active and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
