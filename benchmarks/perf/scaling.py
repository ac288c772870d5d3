"""Scale: a synthetic cohort the size of the CMV study (700 repertoires x 300,000 sequences).

    python benchmarks/perf/scaling.py [--repertoires 700] [--sequences 300000] [--threads 2]

1. Writes the cohort as gzipped AIRR TSVs (not timed as part of the figures).
2. Ingests it with `repclass ingest` (wall time, peak RSS, store size vs the gzipped TSVs).
3. The training data path without the model, in a fresh process: repertoires/s sampled from the
   store (read, decode, sample 10,000 sequences, sort by length; 4 per update), with no cache
   (every repertoire read from disk) and with the default cache, and the peak RSS.
4. One evaluation pass over 20 of its repertoires (full repertoires, top-10% reduction) with a
   randomly initialised model.

Prints a table; docs/scaling.md discusses the figures. Needs ~5 GB of disk at the default size.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import commit, machine, make_model, random_junctions, run_child  # noqa: E402

DATA_PATH = r"""
import json, sys, time
import numpy as np
from repclass.config import TrainConfig
from repclass.model.data import RepertoireCache
from repclass.training.distributed import Context
from repclass.io.store import Store
from repclass.training.batching import update_batches
store = Store.open(sys.argv[1]); cache_gb = float(sys.argv[2]); updates = int(sys.argv[3])
ids = store.sample_ids
cache = RepertoireCache(store, int(cache_gb * (1 << 30)))
config = TrainConfig(max_updates=updates, seed=0)
start = time.perf_counter(); n = 0
for update, chosen, batch in update_batches(cache, ids, config, 0, False, Context()):
    n += len(chosen)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "repertoires": n, "rate": n / seconds, "cached_gb": cache._bytes / 2**30}))
"""

EVALUATION = r"""
import json, sys, time
import torch
from repclass.model.checkpoint import load_model
from repclass.model.data import RepertoireCache
from repclass.compute.runtime import tune_allocator
from repclass.model.scoring import score_repertoire
from repclass.io.store import Store
tune_allocator(); torch.set_num_threads(int(sys.argv[3]))
model, _ = load_model(sys.argv[1]); store = Store.open(sys.argv[2])
cache = RepertoireCache(store, 0)
ids = store.sample_ids[:20]
start = time.perf_counter(); n = 0
for sample in ids:
    rep = cache.get(sample); n += len(rep)
    score_repertoire(model, rep, torch.device("cpu"))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "sequences": n, "rate": n / seconds}))
"""


def implant(junctions: list[str], motif: str, rate: float, rng: np.random.Generator) -> int:
    """Write `motif` over interior residues of round(rate x n) random junctions (those long enough
    to keep their anchors); returns how many got it."""
    n = round(rate * len(junctions))
    chosen = rng.choice(len(junctions), size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
    done = 0
    for index in chosen.tolist():
        junction = junctions[index]
        room = len(junction) - 2 - len(motif)  # after the leading C, before the trailing F
        if room < 0:
            continue
        at = 1 + int(rng.integers(0, room + 1))
        junctions[index] = junction[:at] + motif + junction[at + len(motif):]
        done += 1
    return done


def _write_repertoire(job: tuple[Path, int, int, float, str]) -> None:
    import polars as pl

    path, index, sequences, witness_rate, motif = job
    genes_v = np.array([f"TRBV{f}-{g}*01" for f in range(2, 31) for g in (1, 2)])
    genes_j = np.array([f"TRBJ{f}-{g}*01" for f in (1, 2) for g in range(1, 8)])
    rng = np.random.default_rng(index)
    junctions = random_junctions(sequences, rng)
    if witness_rate > 0 and index % 2:  # the positives: odd indices
        implant(junctions, motif, witness_rate, np.random.default_rng([index, 1]))
    table = pl.DataFrame({"junction_aa": junctions,
                          "v_call": genes_v[rng.integers(0, len(genes_v), sequences)],
                          "j_call": genes_j[rng.integers(0, len(genes_j), sequences)],
                          "duplicate_count": rng.geometric(0.4, sequences),
                          "productive": np.where(rng.random(sequences) < 0.02, "F", "T")})
    temporary = path.with_suffix(".tmp")
    with gzip.open(temporary, "wb", compresslevel=1) as handle:
        handle.write(table.write_csv(separator="\t").encode())
    temporary.replace(path)


def write_cohort(folder: Path, repertoires: int, sequences: int, witness_rate: float = 0.0, motif: str = "",
                 workers: int = 1) -> None:
    """Gzipped AIRR TSVs rep_0000.tsv.gz ... and samples.tsv (odd indices positive); with a
    `witness_rate`, `motif` is implanted in that share of each positive repertoire's sequences.
    Files already written are kept (a long write can be resumed)."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    rows, jobs = [], []
    for i in range(repertoires):
        sample = f"rep_{i:04d}"
        rows.append(f"{sample}\t{'+' if i % 2 else '-'}")
        path = folder / f"{sample}.tsv.gz"
        if not path.exists():
            jobs.append((path, i, sequences, witness_rate, motif))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_repertoire, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_repertoire(job)
    (folder / "samples.tsv").write_text("sample_id\tstatus\n" + "\n".join(rows) + "\n")


def folder_size(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repertoires", type=int, default=700)
    parser.add_argument("--sequences", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=100, help="updates of 4 repertoires for the data path")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "scaling")
    parser.add_argument("--keep", action="store_true", help="keep the cohort and the store afterwards")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # children run from elsewhere (common.run_child)
    raw = args.workdir / f"raw_{args.repertoires}x{args.sequences}"
    store = args.workdir / "cohort.store"
    started = time.perf_counter()
    write_cohort(raw, args.repertoires, args.sequences)
    print(f"cohort written in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    ingest = ("import json, subprocess, sys, time\nstart = time.perf_counter()\n"
              "subprocess.run(sys.argv[1:], check=True)\n"
              "print(json.dumps({'seconds': time.perf_counter() - start}))\n")
    shutil.rmtree(store, ignore_errors=True)
    ingested = run_child(ingest, sys.executable, "-m", "repclass", "-q", "ingest", str(raw / "samples.tsv"),
                         str(raw), "--out", str(store), "--threads", str(args.threads), threads=args.threads)
    rows = args.repertoires * args.sequences
    gz_bytes, store_bytes = folder_size(raw, "*.tsv.gz"), folder_size(store)

    no_cache = run_child(DATA_PATH, str(store), "0", str(args.updates), threads=args.threads)
    cached = run_child(DATA_PATH, str(store), "4", str(args.updates), threads=args.threads)
    model = make_model(args.workdir / "model")
    evaluation = run_child(EVALUATION, str(model), str(store), str(args.threads), threads=args.threads)

    print(f"# scaling: {args.repertoires} repertoires x {args.sequences:,} sequences = {rows / 1e6:.0f}M rows, "
          f"{args.threads} threads")
    print(f"# {machine()}, commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print("| step | figure |\n|---|---|")
    print(f"| ingest (CLI, all repertoires) | {ingested['seconds']:.0f} s, {rows / ingested['seconds'] / 1e6:.2f} M rows/s, "
          f"peak RSS {ingested['peak_rss_mb']:.0f} MB |")
    print(f"| gzipped TSVs / store | {gz_bytes / 1e9:.2f} GB / {store_bytes / 1e9:.2f} GB "
          f"({store_bytes / gz_bytes:.2f}x) |")
    print(f"| data path, no cache (read + decode + sample 10k) | {no_cache['rate']:.1f} repertoires/s, "
          f"peak RSS {no_cache['peak_rss_mb']:.0f} MB |")
    print(f"| data path, 4 GB cache | {cached['rate']:.1f} repertoires/s over {cached['repertoires']} draws, "
          f"peak RSS {cached['peak_rss_mb']:.0f} MB, {cached['cached_gb']:.2f} GB cached |")
    print(f"| evaluation pass, 20 repertoires | {evaluation['seconds']:.1f} s, "
          f"{evaluation['rate'] / 1e6:.2f} M sequences/s, peak RSS {evaluation['peak_rss_mb']:.0f} MB |")
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
