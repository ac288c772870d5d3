"""The one module that writes outputs: the rules every command follows so that nothing is lost.

1. An output never equals, contains or lies inside an input of the same command
   (`check_output_not_input`): `--force` can then never delete what the command reads.
2. `--force` replaces only a repclass output of the same kind (`check_replaceable`): a store
   only a store, a model folder only a model folder, a table only a table repclass wrote.
3. Every output is written under a hidden temporary sibling (`.OUT.tmp-PID`) and renamed into
   place at the end (`write_file_atomically`, `publish`): a reader, or a pipeline after a killed
   job, never sees half an output.
4. While an output is written, a lock file `.OUT.lock` next to it names the writing process
   (`output_lock`): a second run to the same output fails at once with a clear message instead
   of mixing files of both. A lock or temporary left by a process that no longer runs (killed
   with `kill -9`, a crashed node) is removed by the next run, which says so in its log.

docs/reliability.md states these promises and what they do not cover.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import OutputError, OutputExistsError, OutputLockedError, UsageError

log = logging.getLogger(__name__)

#: Kinds of output `check_replaceable` knows: what `--force` may replace.
KINDS = ("store", "model", "motifs", "table", "json")
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")


# ----------------------------------------------------------------------------------------------
# checksums
# ----------------------------------------------------------------------------------------------
def sha256_of(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """sha256 of a file, streamed in 4 MB chunks (hashlib releases the GIL while it hashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
def temporary_sibling(final: Path) -> Path:
    """Where an output is written before it is renamed into place (hidden, same folder, so the
    rename never crosses a file system)."""
    final = Path(final)
    return final.parent / f".{final.name}.tmp-{os.getpid()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_file_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write one file through `write(temporary)`, then rename it into place: a reader (or a
    pipeline after a killed job) never sees half a file."""
    path = Path(path)
    temporary = temporary_sibling(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def publish(temporary: Path, final: Path, *, replace: bool = True) -> None:
    """Move a finished temporary output into place.

    With `replace`, an old output is swapped out only at the very end (and removed after the
    new one is in place). Without it, an output that appeared meanwhile (another process that
    did not take the lock) makes this fail instead of being replaced.
    """
    temporary, final = Path(temporary), Path(final)
    if os.path.lexists(final):
        if not replace:
            raise OutputExistsError(final)
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        _remove(old)
        os.replace(final, old)
        os.replace(temporary, final)
        _remove(old)
        return
    if temporary.is_dir():
        # rename() onto an existing empty folder would succeed: check for the race explicitly.
        try:
            os.rename(temporary, final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(final) from exc
            raise
    else:
        # link() fails when the target exists, where rename() would silently replace it.
        try:
            os.link(temporary, final)
        except FileExistsError as exc:
            raise OutputExistsError(final) from exc
        except OSError:  # file systems without hard links
            os.replace(temporary, final)
            return
        temporary.unlink()


# ----------------------------------------------------------------------------------------------
# leftovers of killed runs
# ----------------------------------------------------------------------------------------------
def clean_leftovers(final: Path) -> list[Path]:
    """Remove hidden `.OUT.tmp-PID` / `.OUT.old-PID` siblings of `final` left by dead processes."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    for child in final.parent.iterdir():
        match = _LEFTOVER.match(child.name)
        if not match or match["name"] != final.name:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        _remove(child)
        removed.append(child)
        log.info("removed %s, left by an earlier run (process %d) that did not finish", child, pid)
    return removed


# ----------------------------------------------------------------------------------------------
# the output lock
# ----------------------------------------------------------------------------------------------
def lock_path(final: Path) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.lock"


def _lock_owner(path: Path) -> tuple[int, str] | None:
    try:
        data = json.loads(path.read_text())
        return int(data["pid"]), str(data["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def output_lock(final: str | Path) -> Iterator[Path]:
    """Hold `.OUT.lock` (created with O_CREAT|O_EXCL, so exactly one process gets it) while an
    output is written; released on every way out of the block. A lock whose process no longer
    runs on this machine is taken over."""
    final = Path(final)
    path = lock_path(final)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(path)
            if owner is not None and owner[1] == socket.gethostname() and not pid_alive(owner[0]):
                log.info("removed the lock %s of process %d, which no longer runs", path, owner[0])
                path.unlink(missing_ok=True)
                continue
            if owner is None:  # being written this instant, or garbage: look once more
                owner = _lock_owner(path)
            who = f"process {owner[0]} on {owner[1]}" if owner else "another process"
            raise OutputLockedError(
                f"{final}: {who} is writing this output right now (lock {path}); wait for it to finish, "
                f"or, if no repclass runs there any more, remove {path}")
        except OSError as exc:
            raise OutputError(f"{final}: cannot create the lock file {path} ({exc.strerror}); choose an output "
                              "in a folder you can write to") from exc
        with os.fdopen(descriptor, "w") as handle:
            handle.write(me)
        break
    else:
        raise OutputLockedError(f"{final}: could not take the lock {path}; another process keeps taking it")
    try:
        yield path
    finally:
        # Remove only our own lock (a stale-lock takeover by another process must not be undone).
        if path.exists() and path.read_text() == me:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# what an output may be
# ----------------------------------------------------------------------------------------------
def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_output_not_input(out: str | Path, inputs: Iterable[str | Path], option: str = "--out") -> None:
    """Refuse an output that equals, contains or lies inside an input of the same command."""
    target = _resolved(Path(out))
    inputs = list(inputs)
    for item in inputs:  # the plainest message first: the very same path
        if target == _resolved(Path(item)):
            raise UsageError(f"{option} {out} is also an input of this command ({item}); writing it would destroy "
                             "the input: choose another output path")
    for item in inputs:
        source = _resolved(Path(item))
        if source.is_relative_to(target):
            raise UsageError(f"{option} {out} contains the input {item}; replacing it would destroy the input: "
                             "choose another output path")
        if target.is_relative_to(source):
            raise UsageError(f"{option} {out} lies inside the input {item}; write outputs next to inputs, not into "
                             "them: choose another output path")


def check_distinct_outputs(outputs: dict[str, Path]) -> None:
    """Refuse two outputs of one command that are the same file (e.g. --attention-out equal to --out)."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        key = _resolved(Path(path))
        if key in seen:
            raise UsageError(f"{option} {path} is the same file as {seen[key]}; give them different paths")
        seen[key] = f"{option} {path}"


def output_kind(path: Path) -> str | None:
    """Which kind of repclass output `path` is, judged by its content (None: not one)."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_dir():
        if (path / "manifest.json").is_file():
            try:
                if json.loads((path / "manifest.json").read_text()).get("format") == "repclass-store":
                    return "store"
            except (OSError, ValueError, AttributeError):
                return None
            return None
        if any((path / name).is_file() for name in ("model.safetensors", "model.json", "folds_summary.json")):
            return "model"
        if (path / "motifs.json").is_file():
            return "motifs"
        return None
    if path.is_file():
        try:
            with open(path, "rb") as handle:
                head = handle.read(4096)
        except OSError:
            return None
        if head.startswith(b"sample_id\t"):
            return "table"
        first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
        if first_line.startswith(b"sequence_id\t") and first_line.endswith(b"\trank\tattention\tlogit"):
            return "table"  # repclass's AIRR rearrangement TSV (repclass.airr): its own fields last
        if head.lstrip().startswith(b"{") and path.suffix == ".json":
            return "json"
    return None


_KIND_WORDS = {"store": "a repertoire store", "model": "a model folder", "motifs": "a motifs folder",
               "table": "a table written by repclass", "json": "a JSON file written by repclass"}


def check_replaceable(out: str | Path, kind: str, force: bool, option: str = "--out") -> None:
    """An existing output may only be replaced with --force, and only when it is a repclass
    output of the same kind (so a typo can never replace raw data or another kind of result)."""
    out = Path(out)
    if not os.path.lexists(out):
        return
    if not force:
        raise OutputExistsError(out)
    found = output_kind(out)
    if found != kind:
        what = _KIND_WORDS.get(found, "not something repclass wrote") if found else "not something repclass wrote"
        raise UsageError(f"{option} {out} exists and is {what}; --force only replaces {_KIND_WORDS[kind]}: "
                         "choose another output path or remove it yourself")


def prepare_parent(out: str | Path, option: str = "--out") -> None:
    """Create the output's folder, or say in one line why it cannot be written."""
    out = Path(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"{option} {out}: {exc.filename or parent} is a file, not a folder; "
                          "choose another output path") from exc
    except OSError as exc:
        raise OutputError(f"{option} {out}: cannot create the folder {parent} ({exc.strerror}); "
                          "choose an output in a folder you can write to") from exc
    if not parent.is_dir():
        raise OutputError(f"{option} {out}: {parent} is not a folder; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {out}: the folder {parent} is not writable; choose an output in a folder you "
                          "can write to")


@contextlib.contextmanager
def claim_output(out: str | Path, kind: str, *, inputs: Iterable[str | Path], force: bool,
                 option: str = "--out") -> Iterator[Path]:
    """Every rule at once, for one output: not an input, replaceable, parent writable, locked
    while the block runs, leftovers of dead runs removed. Yields the output path."""
    out = Path(out)
    inputs = list(inputs)
    check_output_not_input(out, inputs, option)
    check_replaceable(out, kind, force, option)
    prepare_parent(out, option)
    with output_lock(out):
        clean_leftovers(out)
        # Checked again under the lock: another run may have published meanwhile.
        check_replaceable(out, kind, force, option)
        yield out
