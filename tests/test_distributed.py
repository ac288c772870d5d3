"""repclass train under torchrun: 2 CPU processes (gloo) on tiny data."""
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from repclass.model.checkpoint import load_model


def _torchrun(store_path, out, *extra):
    # --stop-loss 0: these tests count updates, and the tiny cohort is solved within a few dozen.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "repclass",
               "train", str(store_path), "--target", "status", "--out", str(out), "--updates", "40",
               "--eval-every", "20", "--device", "cpu", "--stop-loss", "0", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed support")
def test_two_processes_train_reproducibly(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    first = _torchrun(store_path, tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "x 2 processes" in first.stderr
    model, info = load_model(tmp_path / "a")  # a valid model file, written once
    assert info.metrics["updates"] == 40
    second = _torchrun(store_path, tmp_path / "b")
    assert second.returncode == 0, second.stderr[-2000:]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the global batch is split across processes: one process gives (numerically) the same model
    single = subprocess.run([sys.executable, "-m", "repclass", "train", str(store_path), "--target", "status",
                             "--out", str(tmp_path / "single"), "--updates", "40", "--eval-every", "20",
                             "--device", "cpu", "--stop-loss", "0"], capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    c = load_file(tmp_path / "single" / "model.safetensors")
    # Summing the gradient in two halves rounds differently; over 40 Adam updates a weight whose
    # gradient is near 0 can drift by about 1e-3 of its tensor's scale (0.003 of 4.0 for one
    # convolution weight on an AMD EPYC), so each tensor is compared at its own scale, and the
    # predictions, which are what a user reads, closely.
    assert a.keys() == c.keys()
    for key in a:
        assert float((a[key] - c[key]).abs().max()) <= 1e-2 * float(c[key].abs().max()) + 1e-5, key
    import polars as pl

    scores = [pl.read_csv(path / "predictions.tsv", separator="\t").sort("sample_id")["status:p(+)"].to_numpy()
              for path in (tmp_path / "a", tmp_path / "single")]
    assert abs(scores[0] - scores[1]).max() < 1e-3


def test_resume_with_another_process_count(tiny_cohort, tmp_path):
    """A single-process run killed after a checkpoint is finished by two processes."""
    import os
    import signal
    import time

    store_path, _ = tiny_cohort
    out = tmp_path / "m"
    checkpoint = tmp_path / "m.partial" / "checkpoint.pt"
    process = subprocess.Popen([sys.executable, "-m", "repclass", "train", str(store_path), "--target", "status",
                                "--out", str(out), "--updates", "100", "--eval-every", "50", "--patience", "100",
                                "--checkpoint-every", "10", "--device", "cpu", "--stop-loss", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run = _torchrun(store_path, out, "--updates", "100", "--eval-every", "50", "--patience", "100", "--resume")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "resuming from update" in run.stderr
    _, info = load_model(out)
    assert info.metrics["updates"] == 100
