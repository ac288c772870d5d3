"""Small helpers the tests share: where the bundled data lives and writers for hand-made
repertoire files and sample sheets."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DATA = ROOT / "example_data"
PUBLIC_DATA = Path(__file__).resolve().parents[1] / "data" / "public"

AIRR_HEADER = ["sequence_id", "junction_aa", "v_call", "j_call", "duplicate_count", "productive", "locus"]


def write_table(path: Path, header: list[str], rows: list[list[object]], separator: str = "\t",
                compress: bool = False) -> Path:
    text = separator.join(header) + "\n" + "".join(
        separator.join("" if v is None else str(v) for v in row) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(text.encode())
    else:
        path.write_text(text)
    return path


def write_airr(path: Path, rows: list[list[object]], compress: bool = False) -> Path:
    return write_table(path, AIRR_HEADER, rows, compress=compress)


def dead_pid() -> int:
    """The id of a process that has ended (what a killed run leaves in its lock)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
