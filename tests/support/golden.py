"""Golden files: the CLI's main outputs on the tiny seeded cohort, kept under tests/data/golden/.

A table or JSON file is compared with its golden copy value by value: text exactly, floats within
a relative 1e-3 (plus 1e-6 absolute), which tolerates another CPU's rounding but not a change of
behaviour. `REPCLASS_UPDATE_GOLDEN=1 pytest tests/test_golden.py` writes the golden files anew
(after a change that is meant to change the outputs; review the diff before committing it).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
UPDATE = os.environ.get("REPCLASS_UPDATE_GOLDEN") == "1"
RTOL, ATOL = 1e-3, 1e-6


def _close(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [m for k in a for m in _close(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [m for i, (x, y) in enumerate(zip(a, b)) for m in _close(x, y, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
                math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(a) and math.isnan(b))):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _table(path: Path) -> dict[str, list]:
    frame = pl.read_csv(path, separator="\t", infer_schema_length=None)
    return {name: frame[name].to_list() for name in frame.columns}


def check_golden(actual: Path, name: str) -> None:
    """Compare `actual` (a .tsv or .json file) with tests/data/golden/`name`, or write it there
    when REPCLASS_UPDATE_GOLDEN=1."""
    golden = GOLDEN / name
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(actual, golden)
        pytest.skip(f"wrote {golden}")
    assert golden.exists(), f"no golden file {golden}: run with REPCLASS_UPDATE_GOLDEN=1 to write it"
    if name.endswith(".json"):
        got, expected = json.loads(actual.read_text()), json.loads(golden.read_text())
    else:
        got, expected = _table(actual), _table(golden)
    differences = _close(got, expected, name)
    assert differences == [], "\n".join(differences[:20])
