"""The prepared GPU check: correctness on CUDA against CPU, then timings. One run, a few minutes.

    python benchmarks/checks/gpu_check.py [--out results.json]

1. Correctness (same weights, same inputs): embeddings, outputs and gradients on CUDA (fp32)
   against the CPU, and a whole-repertoire score; bf16 autocast against fp32; the torch.compile
   kernels (repclass/compute/compiling.py: Triton on CUDA) against the eager ones on the device.
2. Timings on the GPU, eager and with torch.compile (`--compile on`): scoring a 1M-sequence
   repertoire (sequences/s, from memory), one training update of 4 x 10,000 sequences (fp32 and
   bf16), and the paper's budget of 100,000 updates with an evaluation every 5,000 updates on 20
   validation repertoires of 300k sequences, extrapolated from measured updates and a measured
   evaluation. The first compiled call (the compilation, Inductor's cache as it is; a fresh folder
   with `--cold-cache`) is timed apart.

Prints a table; `--out` also writes the figures as JSON. `--device cpu` runs the same script on the
CPU with small sizes, so CI can check that it still works (tests/test_benchmarks.py).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/common.py
from common import commit, random_junctions  # noqa: E402

from repclass.compute import compiling  # noqa: E402
from repclass.config import ModelConfig  # noqa: E402
from repclass.model.data import EncodedRepertoire, encode_sequences, make_batch, sample_rows  # noqa: E402
from repclass.model.deeprc import DeepRC  # noqa: E402
from repclass.model.scoring import score_repertoire  # noqa: E402
from repclass.targets import Target  # noqa: E402
from repclass.training.loop import train_step  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def repertoire(n: int, seed: int) -> EncodedRepertoire:
    import polars as pl

    codes, lengths = encode_sequences(pl.Series(random_junctions(n, np.random.default_rng(seed))))
    return EncodedRepertoire(codes, lengths, np.random.default_rng(seed).geometric(0.5, n).astype(np.int64))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def correctness(device: torch.device, n: int) -> dict[str, float]:
    compiling.configure("off")
    torch.manual_seed(0)
    cpu_model = DeepRC(ModelConfig(n_outputs=2, use_counts=True, count_readout=True, enrichment=False))
    with torch.no_grad():
        for parameter in cpu_model.parameters():
            parameter.normal_(0, 0.3)
    gpu_model = DeepRC(ModelConfig(n_outputs=2, use_counts=True, count_readout=True, enrichment=False)).to(device)
    gpu_model.load_state_dict(cpu_model.state_dict())
    rep = repertoire(n, 1)
    codes, lengths = torch.from_numpy(rep.codes), torch.from_numpy(rep.lengths.astype(np.int64))
    counts = torch.from_numpy(rep.counts).float()
    bags = torch.arange(n) % 4
    result = {}
    result["embed fp32"] = relative(gpu_model.embed(codes.to(device), lengths.to(device)),
                                    cpu_model.embed(codes, lengths))
    cpu_out = cpu_model(codes, lengths, bags, 4, counts)
    gpu_out = gpu_model(codes.to(device), lengths.to(device), bags.to(device), 4, counts.to(device))
    result["forward fp32"] = relative(gpu_out, cpu_out)
    weights = torch.randn_like(cpu_out)
    cpu_grads = torch.autograd.grad((cpu_out * weights).sum(), list(cpu_model.parameters()))
    gpu_grads = torch.autograd.grad((gpu_out * weights.to(device)).sum(), list(gpu_model.parameters()))
    scale = max(float(g.abs().max()) for g in cpu_grads)
    result["gradients fp32"] = max(float((a.cpu() - b).abs().max()) for a, b in zip(gpu_grads, cpu_grads)) / scale
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        bf16_out = gpu_model(codes.to(device), lengths.to(device), bags.to(device), 4, counts.to(device))
    result["forward bf16 autocast"] = relative(bf16_out, cpu_out)
    with torch.no_grad():
        cpu_score = score_repertoire(cpu_model, rep, torch.device("cpu"))
        gpu_score = score_repertoire(gpu_model, rep, device)
    result["repertoire score"] = relative(torch.from_numpy(gpu_score.outputs), torch.from_numpy(cpu_score.outputs))
    # torch.compile's kernels against the eager ones, on the device: embeddings, outputs, gradients
    compiling.configure("on")
    with torch.no_grad():
        compiled_embed = gpu_model.embed(codes.to(device), lengths.to(device))
    compiled_out = gpu_model(codes.to(device), lengths.to(device), bags.to(device), 4, counts.to(device))
    compiled_grads = torch.autograd.grad((compiled_out * weights.to(device)).sum(), list(gpu_model.parameters()))
    compiling.configure("off")
    if compiling.failure():  # the "compiled" results were the eager fallback's: nothing was checked
        print(f"torch.compile fell back to eager: {compiling.failure()}")
        return {**result, "torch.compile embed": math.inf, "torch.compile forward": math.inf,
                "torch.compile gradients": math.inf}
    with torch.no_grad():
        eager_embed = gpu_model.embed(codes.to(device), lengths.to(device))
    result["torch.compile embed"] = relative(compiled_embed, eager_embed)
    result["torch.compile forward"] = relative(compiled_out, gpu_out)
    result["torch.compile gradients"] = max(float((a - b).abs().max()) for a, b in zip(compiled_grads, gpu_grads)
                                            ) / max(float(g.abs().max()) for g in gpu_grads)
    return result


def timings(device: torch.device, predict_n: int, updates: int, eval_n: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = DeepRC(ModelConfig(enrichment=False)).to(device)
    figures: dict[str, float] = {}
    big = repertoire(predict_n, 2)
    for mode in ("off", "on"):  # eager, then torch.compile; the warm-up call compiles
        compiling.configure(mode)
        label = "" if mode == "off" else ", compiled"
        synchronize(device)
        start = time.perf_counter()
        score_repertoire(model, repertoire(10_000, 3), device)  # warm-up
        synchronize(device)
        if mode == "on":
            figures["first compiled scoring call seconds (incl. compiling)"] = time.perf_counter() - start
        start = time.perf_counter()
        score_repertoire(model, big, device, chunk_size=65_536 if device.type == "cuda" else 8192)
        synchronize(device)
        figures[f"predict seconds{label}"] = time.perf_counter() - start
        figures[f"predict sequences/s{label}"] = predict_n / figures[f"predict seconds{label}"]

    pool = [repertoire(max(20_000, eval_n // 10), 10 + i) for i in range(4)]
    targets = [Target(column="y", kind="binary", classes=["-", "+"])]
    values = torch.tensor([[1.0], [0.0], [1.0], [0.0]], device=device)
    present = torch.ones(4, 1, dtype=torch.bool, device=device)
    batches = []
    for u in range(8):
        rng = np.random.default_rng([0, u])
        rows = [sample_rows(r, 10_000, rng, "uniform") for r in pool]
        batch = make_batch(pool, rows, [rng.gumbel(size=len(r)) for r in rows], sort_by_length=True)
        batches.append(batch.pin_memory() if device.type == "cuda" else batch)
    chunk = 65_536 if device.type == "cuda" else 8192
    for precision, mode in (("fp32", "off"), ("bf16", "off"), ("fp32", "on"), ("bf16", "on")):
        if precision == "bf16" and device.type != "cuda":
            continue
        compiling.configure(mode)
        label = "" if mode == "off" else ", compiled"
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
        context = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast(
            device.type, enabled=False)
        times = []
        for u in range(updates + 5):
            synchronize(device)
            start = time.perf_counter()
            with context:
                train_step(model, optimizer, batches[u % len(batches)], targets, values, present, device, chunk)
            synchronize(device)
            if u == 0 and mode == "on":
                figures[f"first compiled update {precision} seconds (incl. compiling)"] = time.perf_counter() - start
            if u >= 5:
                times.append(time.perf_counter() - start)
        figures[f"update {precision} ms{label}"] = 1000 * statistics.median(times)
    eval_rep = repertoire(eval_n, 99)
    for mode in ("off", "on"):
        compiling.configure(mode)
        label = "" if mode == "off" else ", compiled"
        synchronize(device)
        start = time.perf_counter()
        score_repertoire(model, eval_rep, device, chunk_size=chunk)
        synchronize(device)
        one_eval = time.perf_counter() - start
        figures[f"evaluation of 20 x 300k seconds{label}"] = one_eval * 20 * 300_000 / eval_n
        best_update = min(v for k, v in figures.items() if k.startswith("update") and k.endswith(f"ms{label}")) / 1000
        figures[f"100k updates + 20 evaluations minutes{label}"] = (
            100_000 * best_update + 20 * figures[f"evaluation of 20 x 300k seconds{label}"]) / 60
    compiling.configure(None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cold-cache", action="store_true",
                        help="compile into a fresh Inductor cache folder (the first compilation on a machine)")
    args = parser.parse_args()
    if args.cold_cache:
        import os
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run with --device cpu for a small CPU dry run)")
        return
    device = torch.device(args.device)
    small = device.type == "cpu"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    checks = correctness(device, 2_000 if small else 20_000)
    figures = timings(device, 50_000 if small else 1_000_000, 3 if small else 50, 20_000 if small else 300_000)
    limits = {"embed fp32": 1e-5, "forward fp32": 1e-5, "gradients fp32": 1e-4, "repertoire score": 1e-5,
              "forward bf16 autocast": 5e-2, "torch.compile embed": 1e-5, "torch.compile forward": 1e-5,
              "torch.compile gradients": 1e-5}
    print(f"# gpu_check on {card}, torch {torch.__version__}, commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print("| check | relative error | limit | ok |\n|---|---:|---:|---|")
    for name, value in checks.items():
        print(f"| {name} | {value:.2e} | {limits[name]:.0e} | {'yes' if value <= limits[name] else 'NO'} |")
    print("\n| timing | value |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value:,.2f} |")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps({"device": card, "checks": checks, "timings": figures}, indent=2) + "\n")
    if any(value > limits[name] for name, value in checks.items()):
        sys.exit(1)


if __name__ == "__main__":
    main()
