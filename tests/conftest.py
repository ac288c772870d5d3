"""Shared fixtures: small hand-written repertoire files, the bundled example cohort, and a tiny
seeded cohort with an implanted motif for model tests."""
from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import pytest

# Before anything imports torch: the tests that train in the worker's own process wait the way
# `repclass` itself does (repclass.compute.cpus.configure_threads). With OpenMP's default
# spin-waiting, such a test running beside the other worker's multi-process tests (pipelines,
# torchrun) ran 3-4x slower, its idle threads spinning against them.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from support.cohort import TINY_TRAIN  # noqa: E402
from support.files import write_airr, write_table  # noqa: E402

#: The slowest test files (about 120, 95, 75, 65, 60, 60, 45, 30, 25, 25 s on 2 cores), run first:
#: with `-n 2 --dist loadfile --no-loadscope-reorder` (make test) each file goes to one worker in
#: collection order, and a slow file that started last kept that worker busy long after the other
#: had finished (longest first, as a scheduler would deal jobs). Without --no-loadscope-reorder,
#: pytest-xdist deals the files with the most tests first instead, whatever they cost.
SLOW_FILES_FIRST = ("test_pipelines.py", "test_report.py", "test_training.py", "test_reliability.py",
                    "test_determinism.py", "test_distributed.py", "test_motifs.py", "test_benchmarks.py",
                    "test_seeding.py", "test_baselines.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_unconfigure(config: pytest.Config) -> None:
    """The worker's exit skips the interpreter's last garbage collections, as `repclass` does
    (cli._skip_the_exit_collection): with torch and matplotlib loaded they take about a second."""
    gc.freeze()


@pytest.fixture
def small_cohort(tmp_path: Path) -> tuple[Path, Path]:
    """Three AIRR files with distinct sequences and a sheet; returns (sheet, folder)."""
    folder = tmp_path / "reps"
    folder.mkdir()
    write_airr(folder / "s1.tsv", [
        ["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 3, "T", "TRB"],
        ["b", "CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", 1, "T", "TRB"],
        ["c", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 2, "T", "TRB"],   # merged with a
        ["d", "CASS*GQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "F", "TRB"],   # non-productive
    ])
    write_airr(folder / "s2.tsv.gz", [
        ["a", "CSARDRTGNGYTF", "TRBV20-1*01", "TRBJ1-2*01", 5, "T", "TRB"],
        ["b", "CASSXGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],   # invalid residue
    ], compress=True)
    write_airr(folder / "s3.tsv", [
        ["a", "CAWSVGQGAYEQYF", "TRBV30*01", "TRBJ2-7*01", None, "T", "TRB"],  # count missing -> 1
        ["b", "ASSLGQETQY", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],        # partial: no anchors
    ])
    sheet = write_table(tmp_path / "samples.tsv", ["sample_id", "status", "age"],
                        [["s1", "+", 40], ["s2", "-", 51], ["s3", "+", 33]])
    return sheet, folder


# ---- a tiny trained model, shared by the model, predict and motif tests -------------------------
def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder `build(folder)` fills, made once per test run: under pytest-xdist the workers share
    it (the first one to get the lock builds it, the others wait and read it), so an expensive
    fixture such as the tiny model costs one build per run, not one per worker."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    folder = shared / f"shared_{name}"
    with FileLock(str(shared / f"shared_{name}.lock")):
        if not (folder / ".built").exists():
            if folder.exists():  # a worker that failed half-way
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            (folder / ".built").write_text("")
    return folder


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """(store path, implanted sequences per sample) for a 16-repertoire cohort, motif at 5%."""

    def build(folder: Path) -> None:
        from support.cohort import make_cohort
        from repclass import ingest

        sheet, reps, implanted = make_cohort(folder, seed=0)
        ingest(sheet, folder / "tiny.store", [reps])
        (folder / "implanted.json").write_text(json.dumps({k: sorted(v) for k, v in implanted.items()}))

    folder = _built_once(tmp_path_factory, "tiny", build)
    implanted = {k: set(v) for k, v in json.loads((folder / "implanted.json").read_text()).items()}
    return folder / "tiny.store", implanted


@pytest.fixture(scope="session")
def tiny_model(tiny_cohort, tmp_path_factory):
    """A model trained on the tiny cohort (about 15 s on 2 CPU cores, once per test run)."""
    from repclass.config import TrainConfig
    from repclass.training.loop import TrainResult, train

    store_path, _ = tiny_cohort

    def build(folder: Path) -> None:
        train(store_path, folder / "model", targets=["status"], config=TrainConfig(**TINY_TRAIN), device="cpu")

    out = _built_once(tmp_path_factory, "model", build) / "model"
    metrics = json.loads((out / "metrics.json").read_text())
    return TrainResult(path=out, metrics=metrics, best_update=metrics["best_update"])
