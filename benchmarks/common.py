"""Shared pieces of the benchmark scripts: synthetic data, a throwaway model, measuring a child."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The dense reference implementations live with the tests (tests/support/reference.py).
if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))
AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)


def random_junctions(n: int, rng: np.random.Generator, min_length: int = 10, max_length: int = 20) -> list[str]:
    """Anchored junctions (C...F) with CDR3-like lengths."""
    lengths = rng.integers(min_length, max_length + 1, size=n)
    width = max_length
    body = AMINO[rng.integers(0, 20, size=(n, width))]
    body[:, 0] = ord("C")
    body[np.arange(n), lengths - 1] = ord("F")
    flat = body[np.arange(width)[None, :] < lengths[:, None]].tobytes().decode()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[offsets[i]:offsets[i + 1]] for i in range(n)]


def make_store(path: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """A store with one repertoire per entry of `sizes` (sample id -> number of sequences)."""
    import polars as pl

    from repclass import ingest

    rng = np.random.default_rng(seed)
    raw = path.parent / f"{path.name}_raw"
    raw.mkdir(parents=True, exist_ok=True)
    for sample_id, n in sizes.items():
        pl.DataFrame({"junction_aa": random_junctions(n, rng), "v_call": "TRBV5-1*01", "j_call": "TRBJ2-7*01",
                      "duplicate_count": rng.geometric(0.5, n)}).write_csv(raw / f"{sample_id}.tsv", separator="\t")
    labels = "".join(f"{s}\t{'+' if i % 2 else '-'}\n" for i, s in enumerate(sizes))
    (raw / "samples.tsv").write_text("sample_id\tstatus\n" + labels)
    ingest(raw / "samples.tsv", path, [raw / f"{s}.tsv" for s in sizes], force=True)
    return path


def make_model(path: Path, seed: int = 0, enriched: int = 10_000) -> Path:
    """A randomly initialised binary DeepRC saved as a model file (for speed, not accuracy), with an
    enrichment set of `enriched` junctions, as a model trained on a cohort with public clonotypes has
    (scoring looks every repertoire up in it)."""
    import torch

    from repclass.model.checkpoint import ModelInfo, save_model
    from repclass.config import ModelConfig
    from repclass.model.deeprc import DeepRC
    from repclass.model.enrichment import encode_junctions
    from repclass.targets import Target

    torch.manual_seed(seed)
    model = DeepRC(ModelConfig())
    rng = np.random.default_rng(seed + 1)
    model.set_enrichment(torch.from_numpy(encode_junctions(random_junctions(enriched, rng))),
                         torch.from_numpy(rng.choice([0.2, 0.4, 0.6, 0.8, 1.0], enriched)), 0.0, 1.0)
    info = ModelInfo(model_config=model.config, targets=[Target(column="status", kind="binary", classes=["-", "+"])])
    path.mkdir(parents=True, exist_ok=True)
    save_model(path / "model.safetensors", model, info)
    return path


def child_env(threads: int, source: Path = ROOT) -> dict[str, str]:
    """The environment of a measured child process: `threads` for polars and OpenMP, and the
    repclass of `source` (this checkout, or a `baseline_source`) first on PYTHONPATH."""
    return dict(os.environ, POLARS_MAX_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                PYTHONPATH=str(source) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_child(code: str, *args: str, threads: int, source: Path = ROOT) -> dict:
    """Run `code` in a fresh interpreter, importing repclass from `source` (this checkout, or a
    `baseline_source`); it prints one JSON object. Adds the child's peak RSS (MB)."""
    probe = ("import json, resource, subprocess, sys\n"
             "out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)\n"
             "result = json.loads(out.stdout.strip().splitlines()[-1])\n"
             "result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
             "print(json.dumps(result))\n")
    env = child_env(threads, source)
    # Run from `source`: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-c", code, *args], check=True,
                         capture_output=True, text=True, env=env, cwd=source)
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_source(revision: str, workdir: Path) -> Path:
    """The `repclass` package of git `revision` of this checkout, extracted under `workdir`: the
    "before" of a side-by-side benchmark. Returns the folder to put first on PYTHONPATH."""
    import io
    import tarfile

    target = workdir / f"baseline-{revision}"
    if not (target / "repclass").is_dir():
        archive = subprocess.run(["git", "archive", revision, "repclass"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        staging = workdir / f".baseline-{revision}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(target)
    return target


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
