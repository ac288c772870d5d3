"""A tiny seeded cohort with an implanted motif, built in seconds for model tests.

Background sequences are drawn from the bundled example cohort's negative repertoires (OLGA
human TRB sequences), so the tests see realistic CDR3s without running OLGA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from support.files import EXAMPLE_DATA, write_airr, write_table

MOTIF = "WQRY"
#: The settings of the tiny model (tests/conftest.py) and of tests that train like it.
TINY_TRAIN = dict(max_updates=300, eval_every=50, patience=100, sequences_per_bag=10_000, seed=0)


def background_pool(motif: str = MOTIF) -> list[str]:
    sheet = pl.read_csv(EXAMPLE_DATA / "samples.tsv", separator="\t")
    negatives = sheet.filter(pl.col("status") == "-")["sample_id"].to_list()
    frames = [pl.read_csv(EXAMPLE_DATA / "repertoires" / f"{s}.tsv.gz", separator="\t",
                          schema_overrides={"junction_aa": pl.String}) for s in negatives]
    table = pl.concat(frames).filter(pl.col("productive") == "T")
    sequences = table["junction_aa"].unique(maintain_order=True)
    return [s for s in sequences.to_list() if motif not in s and 10 <= len(s) <= 20]


def implant(sequence: str, motif: str, rng: np.random.Generator) -> str:
    start = int(rng.integers(3, len(sequence) - len(motif) - 3 + 1))
    return sequence[:start] + motif + sequence[start + len(motif):]


def make_cohort(folder: Path, *, n_repertoires: int = 16, n_sequences: int = 600, witness_rate: float = 0.05,
                motif: str = MOTIF, seed: int = 0, extra_labels: bool = False) -> tuple[Path, Path, dict[str, set[str]]]:
    """Writes folder/reps/*.tsv and folder/samples.tsv; returns (sheet, reps folder, implanted per sample)."""
    rng = np.random.default_rng(seed)
    pool = background_pool(motif)
    reps = folder / "reps"
    reps.mkdir(parents=True, exist_ok=True)
    labels = np.array(["+", "-"] * (n_repertoires // 2))
    rng.shuffle(labels)
    implanted: dict[str, set[str]] = {}
    rows = []
    for index, label in enumerate(labels, start=1):
        sample_id = f"r{index:02d}"
        chosen = [pool[i] for i in rng.choice(len(pool), n_sequences, replace=False)]
        implanted[sample_id] = set()
        if label == "+":
            for i in rng.choice(n_sequences, max(1, int(round(witness_rate * n_sequences))), replace=False):
                chosen[i] = implant(chosen[i], motif, rng)
                implanted[sample_id].add(chosen[i])
        counts = 1 + rng.geometric(0.5, n_sequences)
        write_airr(reps / f"{sample_id}.tsv", [[f"{sample_id}_{i}", s, "TRBV5-1*01", "TRBJ2-7*01", int(c), "T", "TRB"]
                                               for i, (s, c) in enumerate(zip(chosen, counts))])
        row = [sample_id, label]
        if extra_labels:
            row += [str(int(rng.integers(20, 80))), str(rng.choice(["A", "B", "C"])),
                    "" if index == 1 else label]
        rows.append(row)
    header = ["sample_id", "status"] + (["age", "hla", "status_partial"] if extra_labels else [])
    sheet = write_table(folder / "samples.tsv", header, rows)
    return sheet, reps, implanted
