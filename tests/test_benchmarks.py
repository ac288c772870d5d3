"""The prepared benchmark scripts must keep working: the GPU check's CPU dry run, the power analysis on a tiny grid."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_dry_run(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "checks" / "gpu_check.py"), "--device", "cpu", "--out",
                             str(tmp_path / "gpu.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| forward fp32 |" in result.stdout and "| update fp32 ms |" in result.stdout
    assert (tmp_path / "gpu.json").exists()


def test_power_analysis_runs_every_method_and_draws_the_figure(tmp_path):
    """benchmarks/studies/power.py end to end on a tiny grid: one row per method, a table and a figure."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "studies" / "power.py"), "--rates", "0.05", "--sizes", "16", "--sequences",
         "200-300", "--set", "max_updates=20", "--set", "eval_every=10", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "runs_power.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["burden", "deeprc", "kmer"]
    assert all(0.0 <= r["test_auc"] <= 1.0 or math.isnan(r["test_auc"]) for r in rows)
    assert "| 5.00% | 16 | 1 |" in result.stdout
    assert (tmp_path / "power.png").stat().st_size > 10_000


def test_ingest_benchmark_times_reference_before_and_now_side_by_side(tmp_path):
    """benchmarks/perf/ingest.py on a tiny file: the bare polars read, a git revision's ingest and this
    checkout's, on the plain and the gzipped file, each a row with its ratio to the reference."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perf" / "ingest.py"), "--rows", "2000", "--repeats", "1", "--threads", "1",
         "--baseline", "HEAD", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| bench_2000")]
    assert [row.split(" | ")[1] for row in rows] == ["polars.read_csv", "repclass ingest before (HEAD)",
                                                      "repclass ingest"] * 2
    assert all(row.rstrip(" |").endswith("1.00") for row in rows[::3])  # the reference is its own 1.00


def test_accuracy_table_pairs_deeprc_and_kmer_by_cohort():
    """The accuracy grid's table compares the two methods seed by seed (same cohort, same split)."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
    import accuracy

    cell = accuracy.Cell("demo", 0.001)
    rows = [{"cell": "demo", "seed": seed, "method": method, "test_auc": auc, "seconds": 1.0, "attention_mass": 0.9,
             "recall_top50": 0.5, "top1_weight": 0.5}
            for seed, deep, kmer in [(1, 0.96, 0.99), (2, 1.0, 0.97), (3, 0.99, 0.99)]
            for method, auc in [("deeprc", deep), ("kmer", kmer)]]
    line = accuracy.table([cell], rows).splitlines()[2]
    assert "| 0.983 +- 0.021 | 0.983 +- 0.012 | +0.000 +- 0.030 | 2/3 |" in line


def test_accuracy_overrides_reach_the_model_and_the_training():
    """`benchmarks/studies/accuracy.py --set` takes ModelConfig fields as well as TrainConfig ones."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
    import accuracy

    config, model_config = accuracy.deeprc_configs(4, accuracy.parse_overrides(["count_readout=false",
                                                                                "init_kmers=0"]))
    assert (config.seed, config.init_kmers, model_config.count_readout) == (4, 0, False)
    default_config, default_model = accuracy.deeprc_configs(4, {})
    assert default_model.count_readout and default_config.init_kmers > 0
    with pytest.raises(SystemExit, match="count_readouts is not a TrainConfig or ModelConfig field"):
        accuracy.deeprc_configs(4, {"count_readouts": False})


def test_accuracy_keeps_tuning_and_reporting_seeds_apart():
    sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
    import accuracy

    assert accuracy.seed_range("tuning", 3) == ("tuning", range(1, 4))
    assert accuracy.seed_range("reporting", 3) == ("reporting", range(1001, 1004))
    assert accuracy.seed_range("4-9", 3) == ("tuning", range(4, 10))
    assert accuracy.seed_range("5", 3, first_seed=1001) == ("reporting", range(1001, 1006))
    with pytest.raises(SystemExit, match="keep them apart"):
        accuracy.seed_range("98-1002", 3)


def test_accuracy_resumes_only_rows_with_the_same_settings(tmp_path, monkeypatch):
    """A row made with other --set values (or before settings were recorded) is run again, not
    reprinted; rows record --set, the seed set and the commit."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
    import accuracy

    calls = []

    def fake_run(cell, seed, work, overrides=None, methods=accuracy.METHODS):
        calls.append((cell.name, seed, dict(overrides or {})))
        return [{"cell": cell.name, "seed": seed, "method": m, "test_auc": 0.5 + seed / 100, "seconds": 1.0,
                 "attention_mass": 0.5, "recall_top50": 0.5, "top1_weight": 0.5} for m in methods]

    monkeypatch.setattr(accuracy, "run_one", fake_run)
    monkeypatch.setattr(accuracy, "machine", lambda: "a test machine")  # (it imports torch)
    cell = next(c for c in accuracy.QUICK_GRID if c.name == "easy-1%")
    defaults = accuracy.run_settings(cell, {})
    old = [{"cell": "easy-1%", "seed": 1, "method": m, "test_auc": 0.99, "seconds": 1.0, "attention_mass": 0.5,
            "recall_top50": 0.5, "top1_weight": 0.5, "settings": defaults} for m in accuracy.METHODS]
    old.append({"cell": "easy-1%", "seed": 2, "method": "deeprc", "test_auc": 0.98})  # before settings were recorded
    (tmp_path / "runs_quick.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    args = ["--quick", "--cells", "easy-1%", "--seeds", "1-2", "--out", str(tmp_path)]
    accuracy.main(args + ["--set", "init_kmers=0"])  # the paper's start: nothing of the defaults' rows is reused
    assert calls == [("easy-1%", 1, {"init_kmers": 0}), ("easy-1%", 2, {"init_kmers": 0})]
    accuracy.main(args)  # the defaults: seed 1 is resumed, seed 2's row has no settings and is run again
    assert calls[2:] == [("easy-1%", 2, {})]
    accuracy.main(args + ["--set", "init_kmers=0"])  # everything done: nothing runs
    assert len(calls) == 3
    rows = [json.loads(line) for line in (tmp_path / "runs_quick.jsonl").read_text().splitlines()]
    new = rows[len(old):]
    assert [r["settings"]["overrides"] for r in new] == [{"init_kmers": 0}] * 4 + [{}] * 2
    assert all(r["seed_set"] == "tuning" and r["commit"] for r in new)
