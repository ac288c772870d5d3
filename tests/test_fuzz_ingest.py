"""Seeded fuzzing of `ingest` (issue 11): a few hundred malformed repertoire files.

Each file is a real export (bundled public examples and a hand-written AIRR file) damaged one
way: truncated, bytes flipped, re-encoded (Latin-1, UTF-16), columns shuffled (consistently or
only in the header), a column dropped, binary garbage inserted, compressed and cut, line
endings changed, quotes scattered. The outcome must be one of two things: a valid store
(it opens and every repertoire reads back), or a RepclassError whose message is one line and
no output at all. Never another exception, never a traceback. A sample also goes through the
command line, where the exit code must be 0, 1 or 2 with a single `Error:` line.
"""
from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from support.files import AIRR_HEADER, PUBLIC_DATA
from repclass.cli import main
from repclass.errors import RepclassError
from repclass.io.ingestion import ingest
from repclass.io.store import Store

N_CASES = 300
CLI_EVERY = 10  # every 10th case also through the command line

_AIRR_ROWS = [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", "3", "T", "TRB"],
              ["b", "CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", "1", "T", "TRB"],
              ["c", "CSARDRTGNGYTF", "TRBV20-1*01", "TRBJ1-2*01", "12", "T", "TRB"],
              ["d", "CASS*GQETQYF", "TRBV5-1*01", "TRBJ2-5*01", "1", "F", "TRB"],
              ["e", "CAWSVGQGAYEQYF", "TRBV30*01", "TRBJ2-7*01", "", "T", "TRB"]] * 4


def _bases() -> list[bytes]:
    airr = ("\t".join(AIRR_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in _AIRR_ROWS)).encode()
    bases = [airr]
    for name in ("airr_standards_good_rearrangement.tsv", "tcrdist3_adaptive_v2_Adaptive2020_first300.tsv",
                 "ireceptor_mixcr_TRB-Pt-1-8_S150.clones_first500.txt", "scirpy_10x_filtered_contig_annotations.csv"):
        lines = (PUBLIC_DATA / name).read_bytes().splitlines(keepends=True)
        bases.append(b"".join(lines[:40]))  # small: the damage is what is tested, not the size
    return bases


def _split(data: bytes) -> tuple[bytes, list[list[bytes]]]:
    lines = data.splitlines()
    separator = b"\t" if lines[0].count(b"\t") >= lines[0].count(b",") else b","
    return separator, [line.split(separator) for line in lines]


def _join(separator: bytes, rows: list[list[bytes]]) -> bytes:
    return b"".join(separator.join(row) + b"\n" for row in rows)


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes, str]:
    """(what was done, new bytes, file suffix)."""
    kind = rng.choice(["truncate", "flip", "latin1", "utf16", "shuffle_columns", "shuffle_header", "drop_column",
                       "garbage", "empty", "header_only", "gzip_cut", "zstd_cut", "crlf", "quotes", "flip_gzip"])
    suffix = ".tsv"
    if kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "flip":
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
        data = bytes(mutable)
    elif kind == "latin1":
        lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
        row = rng.randrange(1, len(lines))
        lines[row] = lines[row].replace("\t", "\tZürich ", 1).replace(",", ",Zürich ", 1)
        data = "".join(lines).encode("latin-1", errors="replace")
    elif kind == "utf16":
        data = data.decode("utf-8", errors="replace").encode("utf-16")
    elif kind in ("shuffle_columns", "shuffle_header", "drop_column"):
        separator, rows = _split(data)
        order = list(range(len(rows[0])))
        rng.shuffle(order)
        if kind == "shuffle_columns":
            rows = [[row[i] for i in order if i < len(row)] for row in rows]
        elif kind == "shuffle_header":
            rows[0] = [rows[0][i] for i in order]
        else:
            rows[0] = rows[0][:order[0]] + rows[0][order[0] + 1:]
        data = _join(separator, rows)
    elif kind == "garbage":
        at = rng.randrange(len(data))
        data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + data[at:]
    elif kind == "empty":
        data = b"" if rng.random() < 0.5 else b"\n\n  \n"
    elif kind == "header_only":
        data = data.splitlines(keepends=True)[0]
    elif kind in ("gzip_cut", "flip_gzip"):
        compressed = bytearray(gzip.compress(data, mtime=0))
        if kind == "gzip_cut":
            compressed = compressed[: rng.randrange(1, len(compressed))]
        else:
            compressed[rng.randrange(10, len(compressed))] ^= 0xFF
        data, suffix = bytes(compressed), ".tsv.gz"
    elif kind == "zstd_cut":
        import zstandard

        compressed = zstandard.ZstdCompressor().compress(data)
        data, suffix = compressed[: rng.randrange(1, len(compressed))], ".tsv.zst"
    elif kind == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif kind == "quotes":
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 5)):
            mutable.insert(rng.randrange(len(mutable)), ord('"'))
        data = bytes(mutable)
    return kind, data, suffix


def _case(index: int, root: Path) -> tuple[str, Path, Path, Path]:
    rng = random.Random(index)
    bases = _bases_cached()
    kind, data, suffix = _mutate(bases[rng.randrange(len(bases))], rng)
    folder = root / f"case{index}"
    (folder / "reps").mkdir(parents=True)
    (folder / "reps" / f"f{suffix}").write_bytes(data)
    (folder / "s.tsv").write_text("sample_id\tstatus\nf\t+\n")
    return kind, folder / "s.tsv", folder / "reps", folder / "out.store"


_CACHE: list[bytes] = []


def _bases_cached() -> list[bytes]:
    if not _CACHE:
        _CACHE.extend(_bases())
    return _CACHE


def _check_outcome(out: Path, error: BaseException | None, what: str) -> str:
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"{what}: leftovers {leftovers}"
    if error is None:
        store = Store.open(out)
        for sample_id in store.sample_ids:
            assert store.read(sample_id).height == store.n_sequences()[sample_id], what
        return "store"
    assert isinstance(error, RepclassError), f"{what}: {type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and len(message) < 2500, f"{what}: {message[:3000]!r}"
    assert not out.exists(), what
    return type(error).__name__


@pytest.mark.parametrize("block", range(3))
def test_fuzzed_files_give_a_store_or_one_line(block, tmp_path):
    outcomes: dict[str, int] = {}
    for index in range(block * N_CASES // 3, (block + 1) * N_CASES // 3):
        kind, sheet, reps, out = _case(index, tmp_path)
        what = f"case {index} ({kind})"
        error = None
        try:
            ingest(sheet, out, [reps])
        except Exception as exc:  # noqa: BLE001 - judged below: only RepclassError is acceptable
            error = exc
        outcome = _check_outcome(out, error, what)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # Both outcomes occur: the damage is neither always fatal nor always harmless.
    assert outcomes.get("store", 0) > 0 and sum(v for k, v in outcomes.items() if k != "store") > 0, outcomes


def test_fuzzed_files_through_the_command_line(tmp_path):
    runner = CliRunner()
    codes = set()
    for index in range(0, N_CASES, CLI_EVERY):
        kind, sheet, reps, out = _case(index, tmp_path)
        result = runner.invoke(main, ["ingest", str(sheet), str(reps), "--out", str(out)])
        what = f"case {index} ({kind}): {result.output[-500:]}"
        assert result.exit_code in (0, 1, 2), what
        assert result.exception is None or isinstance(result.exception, SystemExit), what
        assert "Traceback" not in result.output, what
        if result.exit_code:
            assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1, what
            assert "\x1b" not in result.output, what
            assert not out.exists(), what
        else:
            Store.open(out)
        codes.add(result.exit_code)
    assert 0 in codes and 1 in codes, codes
