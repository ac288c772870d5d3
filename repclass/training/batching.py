"""Feeding training updates: each update's repertoires, sampled and batched, prepared ahead.

`update_batches` draws what every update trains on from (seed, update) alone, so a resumed run
draws what an uninterrupted one would, whatever the number of processes; `prefetch` prepares the
next batches in a background thread while the current one trains, and `stop_prefetchers` ends
every such thread (each way out of `repclass.training.loop.train` calls it).
"""
from __future__ import annotations

import atexit
import math
import queue
import threading
from typing import Iterator

import numpy as np

from repclass.config import TrainConfig
from repclass.model.data import Batch, RepertoireCache, make_batch, sample_rows
from repclass.training.distributed import Context


def update_batches(cache: RepertoireCache, train_ids: list[str], config: TrainConfig, first_update: int, pin: bool,
                   context: Context) -> Iterator[tuple[int, list[str], Batch]]:
    """This process's share of each update's repertoires, sampled and sorted by length.

    The global choice of repertoires depends on (seed, update) and each repertoire's sampling on
    (seed, update, its slot), so the updates do not depend on how many processes share them.
    """
    n_bags = min(config.batch_size, len(train_ids))
    for update in range(first_update, config.max_updates):
        chosen_slots = np.random.default_rng([config.seed, update]).choice(len(train_ids), n_bags, replace=False)
        mine = context.shard(list(enumerate(chosen_slots)))
        repertoires, rows, noise = [], [], []
        for slot, index in mine:
            rng = np.random.default_rng([config.seed, update, slot])
            repertoire = cache.get(train_ids[index])
            repertoires.append(repertoire)
            rows.append(sample_rows(repertoire, bag_size(len(repertoire), config), rng, config.sampling))
            if config.selection == "sample":
                noise.append(rng.gumbel(size=len(rows[-1])).astype(np.float32))
        batch = make_batch(repertoires, rows, noise or None, sort_by_length=True)
        yield update, [train_ids[i] for _, i in mine], batch.pin_memory() if pin else batch


def bag_size(n_sequences: int, config: TrainConfig) -> int:
    """How many of a repertoire's `n_sequences` one update samples: at most --sequences-per-bag and
    at most --bag-share of them (at least 1)."""
    if config.bag_share >= 1.0:
        return config.sequences_per_bag
    return max(1, min(config.sequences_per_bag, math.ceil(config.bag_share * n_sequences)))


#: Running prefetch threads and their stop flags. A thread still inside numpy/polars/torch when
#: the interpreter shuts down can abort the process ("terminate called without an active
#: exception", SIGABRT) after a finished run, so every way out of `train()` (success, early
#: stop, error, Ctrl-C), and interpreter exit as a last resort, stops and joins them.
_PREFETCHERS: dict[threading.Thread, threading.Event] = {}
_PREFETCHERS_LOCK = threading.Lock()


def stop_prefetchers() -> None:
    """Signal every prefetch thread to stop and wait for it (each finishes at most its current batch)."""
    with _PREFETCHERS_LOCK:
        running = list(_PREFETCHERS.items())
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        if thread is not threading.current_thread():
            thread.join()


# Runs before the interpreter joins non-daemon threads and tears down modules (as concurrent.futures does).
getattr(threading, "_register_atexit", atexit.register)(stop_prefetchers)


def prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator in a background thread, `depth` items ahead (numpy/polars release the GIL).

    The producer checks a stop flag between items; the consumer sets it and joins the thread
    when it is closed, and `train()` stops any left over (a generator abandoned by `break` or an
    exception is only closed when it is garbage-collected).
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in iterator:
                if not _put_until_stopped(items, item, stop):
                    return
            _put_until_stopped(items, done, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            _put_until_stopped(items, exc, stop)
        finally:
            with _PREFETCHERS_LOCK:
                _PREFETCHERS.pop(threading.current_thread(), None)

    thread = threading.Thread(target=work, name="repclass-prefetch", daemon=True)
    with _PREFETCHERS_LOCK:
        _PREFETCHERS[thread] = stop
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put_until_stopped(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` in the queue, waiting for room unless told to stop; whether it went in."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
