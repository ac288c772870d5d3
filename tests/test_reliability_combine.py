"""Issue 11, `repclass combine`: parts are never replaced, damaged parts are named in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from repclass.ingestion import ingest
from test_reliability_ingest import _cohort, assert_refused, assert_unchanged, run_cli, snapshot
from test_reliability_train import _flip_byte


def _parts(root: Path) -> None:
    _cohort(root)
    for sample in ("s1", "s2"):
        ingest(root / "s.tsv", root / f"{sample}.store", [root / "reps"], samples=[sample])


def _setup_no_samples_tsv(root: Path) -> None:
    (root / "s2.store" / "samples.tsv").unlink()


def _setup_manifest_without_samples(root: Path) -> None:
    path = root / "s2.store" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["samples"]
    path.write_text(json.dumps(manifest))


def _setup_flipped_parquet(root: Path) -> None:
    _flip_byte(next((root / "s2.store" / "repertoires").glob("*.parquet")))


def _setup_results_folder(root: Path) -> None:
    (root / "results").mkdir()
    (root / "results" / "notes.txt").write_text("precious\n")


COMBINE = ["combine", "s1.store", "s2.store"]
# (case, setup, command line, exit code, message fragments)
REFUSED = [
    ("out_equal_to_a_part_keeps_it", None, [*COMBINE, "--out", "s1.store", "--force"], 2, ["also an input"]),
    ("out_inside_a_part_refused", None, [*COMBINE, "--out", "s1.store/all"], 2, ["lies inside the input"]),
    ("force_replaces_only_a_store", _setup_results_folder, [*COMBINE, "--out", "results", "--force"], 2,
     ["only replaces a repertoire store"]),
    ("part_without_samples_tsv", _setup_no_samples_tsv, [*COMBINE, "--out", "all.store"], 1,
     ["samples.tsv", "missing"]),
    ("part_manifest_without_samples", _setup_manifest_without_samples, [*COMBINE, "--out", "all.store"], 1,
     ["list of samples is missing"]),
    ("flipped_bit_in_a_part_caught", _setup_flipped_parquet, [*COMBINE, "--out", "all.store"], 1,
     ["checksum differs"]),
    ("missing_part", None, ["combine", "s1.store", "nope.store", "--out", "all.store"], 1, ["no such store"]),
]


@pytest.mark.parametrize("case, setup, args, code, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_combine_refuses(case, setup, args, code, fragments, tmp_path):
    _parts(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    assert_refused(*run_cli(args, tmp_path), code, fragments)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "all.store").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock")]
