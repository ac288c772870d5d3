"""Cost of verifying each repertoire file's sha256 once per run, on example_data.

Run from the repository root: `OMP_NUM_THREADS=1 POLARS_MAX_THREADS=1 python benchmarks/perf/verify_cost.py [work folder]`.
"""
import shutil, sys, time
from pathlib import Path
import repclass.io.store as store_module
from repclass.io.ingestion import ingest
from repclass.io.store import Store

root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/repclass_verify_cost")
shutil.rmtree(root, ignore_errors=True)
root.mkdir(parents=True)
store = ingest("example_data/samples.tsv", root / "example.store", ["example_data/repertoires"])
size = sum(p.stat().st_size for p in (root / "example.store" / "repertoires").glob("*.parquet"))
best = {}
for label in ("with", "without"):
    times = []
    for _ in range(5):
        store_module._VERIFIED.clear()
        if label == "without":  # pretend every file was verified already
            original = store_module._verify_once
            store_module._verify_once = lambda path, expected: None
        started = time.perf_counter()
        s = Store.open(root / "example.store")
        rows = sum(s.read(i, ["junction_aa", "duplicate_count"]).height for i in s.sample_ids)
        times.append(time.perf_counter() - started)
        if label == "without":
            store_module._verify_once = original
    best[label] = min(times)
print(f"{len(store)} repertoires, {rows} sequences, {size / 1e6:.2f} MB of Parquet")
print(f"read all, verifying: {best['with']*1e3:.1f} ms; without: {best['without']*1e3:.1f} ms; "
      f"hashing adds {(best['with'] - best['without'])*1e3:.1f} ms ({(best['with'] / best['without'] - 1) * 100:.0f}%)")
