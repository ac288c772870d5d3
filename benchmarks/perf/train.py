"""Seconds per training update: 4 repertoires x 10,000 sampled sequences, top-10% reduction, fp32.

Side by side in one run (same data, same weights, same threads):
  reference  the plain model: dense one-hot input, torch conv1d, for the no-gradient scoring pass
             and the gradient pass (tests/support/reference.py)
  before     the fast path as git revision --baseline REV had it (left out without one), imported
             from `git archive` under another package name
  repclass, eager kernels   the fast path (look-up embedding, length-sorted chunks, sparse max
             backward) with torch's eager kernels only (--compile off)
  repclass   the same with the defaults (--compile auto): the no-gradient pass through the C kernel
             (repclass/compute/native.py), alternating with the eager row
  repclass, torch.compile   the fast path with its window kernels compiled (--compile on;
                    repclass/compute/compiling.py), alternating with `repclass`; its first update
                    is timed apart, with Inductor's cache cold (a fresh folder) and warm (compiled
                    again from that folder after torch._dynamo.reset())
  repclass + data   the same plus sampling the batch from four 300k-sequence repertoires
                    (what `repclass train` does per update, without the prefetch thread)

    python benchmarks/perf/train.py [--updates 30] [--threads 2] [--baseline REV] [--no-compile]

"before" and "repclass" alternate in rounds, so that a slow spell of a shared machine hits both.

The original DeepRC needs 0.296 s per such update on 2 CPU cores in fp32 (issue #4's measurement).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import baseline_source, commit, machine, random_junctions  # noqa: E402

from repclass.compute import compiling  # noqa: E402
from repclass.config import ModelConfig  # noqa: E402
from repclass.model.data import EncodedRepertoire, encode_sequences, make_batch, sample_rows  # noqa: E402
from repclass.model.deeprc import DeepRC, top_k_per_bag  # noqa: E402
from repclass.training.optim import Adam  # noqa: E402
from support.reference import reference_embed  # noqa: E402
from repclass.compute.runtime import tune_allocator  # noqa: E402
from repclass.targets import Target, total_loss  # noqa: E402
from repclass.training.loop import train_step  # noqa: E402

ORIGINAL_SECONDS = 0.296


def import_baseline(revision: str, workdir: Path):
    """(DeepRC, ModelConfig, train_step) of `revision`, imported as package `repclass_before`."""
    import importlib
    import shutil

    source = baseline_source(revision, workdir)
    renamed = workdir / f"renamed-{revision}"
    if not (renamed / "repclass_before").is_dir():
        renamed.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / "repclass", renamed / "repclass_before")
        # Its own modules, not this checkout's: every absolute import of repclass renamed too.
        renames = [("from repclass.", "from repclass_before."), ("import repclass.", "import repclass_before."),
                   ("from repclass import", "from repclass_before import")]
        for path in (renamed / "repclass_before").rglob("*.py"):
            text = path.read_text()
            for old, new in renames:
                text = text.replace(old, new)
            path.write_text(text)
    sys.path.insert(0, str(renamed))

    def first(*names: str) -> Any:  # the module as the revision laid it out (stage subpackages or not)
        for name in names:
            try:
                return importlib.import_module(f"repclass_before.{name}")
            except ModuleNotFoundError:
                continue
        raise ModuleNotFoundError(names[-1])

    return (first("model.deeprc", "model").DeepRC, first("config").ModelConfig,
            first("training.loop", "training").train_step)


def reference_step(model, optimizer, batch, targets, values, present) -> float:
    """The same update with the dense reference embedding (paper's top-k selection)."""
    with torch.no_grad():
        logits = model.attention_logits(reference_embed(model, batch.codes, batch.lengths))
    keep = top_k_per_bag(logits, batch.bag_index, batch.n_bags, model.config.reduction_fraction)
    embeddings = reference_embed(model, batch.codes[keep], batch.lengths[keep])
    kept_logits = model.attention_logits(embeddings)
    weights = model.attention_weights(kept_logits, batch.bag_index[keep], batch.n_bags)
    evidence = model.attention_evidence(kept_logits, batch.bag_index[keep], batch.n_bags,
                                        torch.bincount(batch.bag_index, minlength=batch.n_bags))
    outputs = model.read_out(model.pool(embeddings, weights, batch.bag_index[keep], batch.n_bags), evidence)
    loss = total_loss(targets, outputs, values, present)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def timed(step, n: int) -> list[float]:
    for _ in range(3):
        step()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repertoire-size", type=int, default=300_000)
    parser.add_argument("--baseline", default="none",
                        help="git revision for 'before' (default none: left out)")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "train")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the torch.compile row (and its compilation)")
    args = parser.parse_args()
    compiling.configure("off")
    torch.set_num_threads(args.threads)
    tune_allocator()
    rng = np.random.default_rng(0)
    import polars as pl

    repertoires = []
    for _ in range(4):
        codes, lengths = encode_sequences(pl.Series(random_junctions(args.repertoire_size, rng)))
        repertoires.append(EncodedRepertoire(codes, lengths, np.ones(len(lengths), dtype=np.int64)))

    def sampled_batch(update: int):
        generator = np.random.default_rng([0, update])
        rows = [sample_rows(r, 10_000, generator, "uniform") for r in repertoires]
        return make_batch(repertoires, rows, sort_by_length=True)

    fixed = sampled_batch(0)
    targets = [Target(column="y", kind="binary", classes=["-", "+"])]
    values = torch.tensor([[1.0], [0.0], [1.0], [0.0]], dtype=torch.float64)
    present = torch.ones(4, 1, dtype=torch.bool)
    device = torch.device("cpu")

    def fresh(model_class=DeepRC, config_class=ModelConfig, optimizer_class=Adam):
        torch.manual_seed(0)
        model = model_class(config_class())
        return model, optimizer_class(model.parameters(), lr=1e-3, eps=1e-4)

    ref_model, ref_optimizer = fresh(optimizer_class=torch.optim.Adam)
    reference = timed(lambda: reference_step(ref_model, ref_optimizer, fixed, targets, values, present),
                      max(5, args.updates // 3))
    contenders = {}
    if args.baseline != "none":
        before_class, before_config, before_step = import_baseline(args.baseline, args.workdir.resolve())
        before_model, before_optimizer = fresh(before_class, before_config, torch.optim.Adam)  # what it used
        contenders[f"before ({args.baseline})"] = lambda: before_step(before_model, before_optimizer, fixed, targets,
                                                                      values, present, device, 8192)
    eager_model, eager_optimizer = fresh()
    contenders["repclass, eager kernels (--compile off)"] = lambda: (
        compiling.configure("off"),
        train_step(eager_model, eager_optimizer, fixed, targets, values, present, device, 8192))
    fast_model, fast_optimizer = fresh()
    # the default (--compile auto): the no-gradient pass through the C kernel (compute/native.py)
    contenders["repclass"] = lambda: (compiling.configure("auto"),
                                      train_step(fast_model, fast_optimizer, fixed, targets, values, present, device,
                                                 8192))
    first_updates = {}
    if args.compile:
        import tempfile

        compiled_model, compiled_optimizer = fresh()

        def compiled_step():
            compiling.configure("on")
            train_step(compiled_model, compiled_optimizer, fixed, targets, values, present, device, 8192)

        # Inductor reads its cache folder when it compiles: a fresh one makes the first compilation cold.
        args.workdir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-", dir=args.workdir.resolve())
        for cache in ("cold", "warm"):
            if cache == "warm":  # forget the compiled kernels in memory: compile again from the disk cache
                from torch._dynamo import reset

                reset()
                compiling.reset()
            start = time.perf_counter()
            compiled_step()
            first_updates[cache] = time.perf_counter() - start
        contenders["repclass, torch.compile"] = compiled_step
    times: dict[str, list[float]] = {name: [] for name in contenders}
    rounds = 3
    for _ in range(rounds):
        for name, step in contenders.items():
            times[name] += timed(step, max(1, args.updates // rounds))
    compiling.configure("auto")
    counter = iter(range(10 ** 9))
    data_model, data_optimizer = fresh()
    with_data = timed(lambda: train_step(data_model, data_optimizer, sampled_batch(next(counter)), targets, values,
                                         present, device, 8192), args.updates)
    sampling = timed(lambda: sampled_batch(next(counter)), args.updates)

    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median
    print(f"# training update: 4 x 10,000 sequences, top-10% reduction, fp32, {args.threads} threads")
    print(f"# {machine()}, commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print("| path | s/update (median) | min | x faster than reference | x faster than original DeepRC |")
    print("|---|---:|---:|---:|---:|")
    rows = [("reference (dense conv1d)", reference), *times.items(), ("repclass + data sampling", with_data)]
    for name, times in rows:
        print(f"| {name} | {median(times):.4f} | {min(times):.4f} | {median(reference) / median(times):.1f} | "
              f"{ORIGINAL_SECONDS / median(times):.1f} |")
    print(f"| data sampling alone (4 x 10k of 300k) | {median(sampling):.4f} | {min(sampling):.4f} | | |")
    for cache, seconds in first_updates.items():
        print(f"| first update with torch.compile, Inductor cache {cache} (incl. compiling) | {seconds:.2f} | | | |")
    print(f"\npeak RSS {peak:.0f} MB (four {args.repertoire_size:,}-sequence repertoires in memory)")


if __name__ == "__main__":
    main()
