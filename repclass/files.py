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
5. `Outputs` is the one lifecycle every command uses for its whole set of outputs: claim them
   all (rules 1, 2, 4), write each under its temporary path, publish them together. Before the
   first rename the lock records the set (a journal); a run killed between two renames is rolled
   back by the next run (its new files removed, the replaced ones put back), so the plain retry
   of the same command starts from where the killed run started. A full disk (ENOSPC, EFBIG,
   a quota) becomes one line naming the output, with the temporaries removed.

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
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

from repclass.errors import OutputError, OutputExistsError, OutputLockedError, RepclassError, UsageError

log = logging.getLogger(__name__)

#: Kinds of output `check_replaceable` knows: what `--force` may replace.
KINDS = ("store", "model", "motifs", "simulation", "table", "json")


class Output(NamedTuple):
    """One output of a command: its path, its kind (KINDS) and the option that names it."""

    path: Path
    kind: str
    option: str = "--out"
_LEFTOVER = re.compile(r"^\.(?P<name>.+?)(?P<lock>\.lock)?\.(?:tmp|old)-(?P<pid>\d+)$")
#: Test hook: REPCLASS_FAULT=<point> kills the process with SIGKILL at that point of `Outputs.publish`
#: ("before-publish", "during-publish", "after-publish"), as `kill -9` would.
FAULT_VARIABLE = "REPCLASS_FAULT"


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


def partial_path(out: Path) -> Path:
    """The work folder of a training run beside its output (OUT.partial/): it holds the resume
    checkpoint and becomes OUT when the run finishes."""
    return out.parent / f"{out.name}.partial"


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
        # also a file written atomically onto a temporary (`..OUT.tmp-PID.tmp-PID`)
        if not match or (match["name"] != final.name and not match["name"].startswith(f".{final.name}.tmp-")):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        _remove(child)
        removed.append(child)
        log.info("removed %s, left by an earlier run (process %d) that did not finish", child, pid)
    return removed


def clean_leftovers_in(folder: Path) -> list[Path]:
    """Remove every `.NAME.tmp-PID` / `.NAME.old-PID` of a dead process anywhere under `folder`
    (train's OUT.partial/, whose checkpoints are written atomically inside it)."""
    removed = []
    for child in sorted(Path(folder).rglob(".*"), reverse=True):
        match = _LEFTOVER.match(child.name)
        if match and int(match["pid"]) != os.getpid() and not pid_alive(int(match["pid"])):
            _remove(child)
            removed.append(child)
    return removed


# ----------------------------------------------------------------------------------------------
# the output lock
# ----------------------------------------------------------------------------------------------
def lock_path(final: Path) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.lock"


def _lock_record(path: Path) -> dict | None:
    """What a lock file says: {"pid", "host"} and, once its run publishes, the journal
    ("outputs": [{"final", "temporary", "old"}])."""
    try:
        data = json.loads(path.read_text())
        data["pid"], data["host"] = int(data["pid"]), str(data["host"])
        return data
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _lock_owner(path: Path) -> tuple[int, str] | None:
    record = _lock_record(path)
    return None if record is None else (record["pid"], record["host"])


def _take_lock(final: Path) -> tuple[Path, dict | None]:
    """Create `.OUT.lock` (O_CREAT|O_EXCL: exactly one process gets it). Returns its path and the
    record of a dead process whose lock was taken over (None when there was none)."""
    path = lock_path(final)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    taken_over = None
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            record = _lock_record(path)
            if record is not None and record["host"] == socket.gethostname() and not pid_alive(record["pid"]):
                log.info("removed the lock %s of process %d, which no longer runs", path, record["pid"])
                path.unlink(missing_ok=True)
                taken_over = record
                continue
            if record is None:  # being written this instant, or garbage: look once more
                record = _lock_record(path)
            who = f"process {record['pid']} on {record['host']}" if record else "another process"
            raise OutputLockedError(
                f"{final}: {who} is writing this output right now (lock {path}); wait for it to finish, "
                f"or, if no repclass runs there any more, remove {path}")
        except OSError as exc:
            raise OutputError(f"{final}: cannot create the lock file {path} ({exc.strerror}); choose an output "
                              "in a folder you can write to") from exc
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(me)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        return path, taken_over
    raise OutputLockedError(f"{final}: could not take the lock {path}; another process keeps taking it")


def _release_lock(path: Path) -> None:
    # Remove only our own lock (a stale-lock takeover by another process must not be undone).
    record = _lock_record(path)
    if record is not None and record["pid"] == os.getpid() and record["host"] == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(final: str | Path) -> Iterator[Path]:
    """Hold `.OUT.lock` (created with O_CREAT|O_EXCL, so exactly one process gets it) while an
    output is written; released on every way out of the block. A lock whose process no longer
    runs on this machine is taken over (and a publish it left half done rolled back)."""
    final = Path(final)
    path, taken_over = _take_lock(final)
    try:
        if taken_over is not None:
            _roll_back(taken_over)
        yield path
    finally:
        _release_lock(path)


def _write_record(path: Path, record: dict) -> None:
    """Replace the lock's content in one rename (a kill never leaves half a journal)."""
    temporary = path.parent / f".{path.name[1:]}.tmp-{os.getpid()}"
    try:
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _roll_back(record: dict) -> None:
    """Undo the publish of a run killed before it released its lock, from its journal: remove the
    files it had renamed into place and put back the outputs they replaced. A journal is only
    written once every temporary is complete, and the replaced outputs are only removed after the
    lock is released, so each entry is in one of a few states, all recognisable here. An output
    counts as written once its command released the lock: the plain retry of a killed command
    then starts from what that command started from (and succeeds)."""
    entries = record.get("outputs") or []
    for entry in entries:
        final, temporary = Path(entry["final"]), Path(entry["temporary"])
        old = Path(entry["old"]) if entry.get("old") else None
        hidden = temporary.name.startswith(".")
        if os.path.lexists(temporary):
            if hidden:  # train's OUT.partial/ stays where it is
                _remove(temporary)
        elif entry.get("written", True) and os.path.lexists(final):
            if hidden:
                _remove(final)
            else:  # train's finished folder goes back to OUT.partial/ rather than away
                os.replace(final, temporary)
        if old is not None and os.path.lexists(old) and not os.path.lexists(final):
            os.replace(old, final)
    if entries:
        log.warning("the publish of process %d did not finish (%s); it was rolled back", record["pid"],
                    ", ".join(e["final"] for e in entries))


# ----------------------------------------------------------------------------------------------
# a full disk
# ----------------------------------------------------------------------------------------------
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# torch.save reports a short write as "file write failed" or, from its zip writer, "unexpected pos".
_DISK_FULL_WORDS = ("no space left on device", "file too large", "disk quota exceeded", "os error 28",
                    "os error 27", "os error 122", "file write failed", "unexpected pos")


def disk_full_reason(exc: BaseException) -> str | None:
    """Why a write failed when the disk (or the file size limit, or a quota) is full: the
    operating system's words, found in the exception or the ones it came from (polars and torch
    wrap the OSError in their own exceptions); None for any other failure."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return os.strerror(current.errno)
        text = str(current).lower()
        for words in _DISK_FULL_WORDS:
            if words in text:
                return {"os error 28": "No space left on device", "os error 27": "File too large",
                        "os error 122": "Disk quota exceeded", "file write failed": "a write failed",
                        "unexpected pos": "a write failed"}.get(
                    words, words.capitalize())
        current = current.__cause__ or current.__context__
    return None


def disk_full_error(exc: BaseException, where: str | Path) -> OutputError | None:
    """The one-line error for a full disk while writing `where` (None: not a full disk)."""
    reason = disk_full_reason(exc)
    if reason is None:
        return None
    return OutputError(f"{where}: cannot write the output ({reason}): the disk is full or a file size limit or "
                       "quota was reached; nothing was written: free some space (or write elsewhere) and run the "
                       "command again")


def _fault(point: str) -> None:
    """Kill this process at a named point when the test hook asks for it (REPCLASS_FAULT)."""
    if os.environ.get(FAULT_VARIABLE) == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


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
        if (path / "simulation.json").is_file() and (path / "samples.tsv").is_file():
            return "simulation"
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
            return "table"  # repclass's AIRR rearrangement TSV (repclass.io.airr): its own fields last
        if head.lstrip().startswith(b"{") and path.suffix == ".json":
            return "json"
    return None


_KIND_WORDS = {"store": "a repertoire store", "model": "a model folder", "motifs": "a motifs folder",
               "simulation": "a simulated cohort (repclass simulate)",
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


class Outputs:
    """The one lifecycle of a command's outputs: claim them all, write each under `temporary()`,
    `publish()` the whole set together. Use as a context manager:

        with Outputs([Output(out, "table"), Output(metrics, "json", "the metrics file")],
                     inputs=[model, store], force=force) as outputs:
            write(outputs.temporary(out)); ...
            outputs.publish()

    Entering checks every rule (outputs distinct, none an input, only same-kind outputs replaced
    and only with --force, parent folders writable), takes every output's lock, rolls back a
    publish a killed run left half done, removes the temporaries of dead runs, and checks again
    under the locks. Leaving without `publish()` removes this run's temporaries; a full disk
    becomes one `OutputError` line naming the output.
    """

    def __init__(self, outputs: Sequence[Output], *, inputs: Iterable[str | Path] = (), force: bool = False) -> None:
        self.outputs = [Output(Path(o.path), o.kind, o.option) for o in outputs]
        if not self.outputs:
            raise ValueError("Outputs needs at least one output")
        self.inputs = [Path(p) for p in inputs]
        self.force = force
        self._stack = contextlib.ExitStack()
        self._temporaries: dict[Path, Path] = {}
        self._locks: list[Path] = []
        self._old: list[Path] = []
        self.published = False

    @property
    def path(self) -> Path:
        return self.outputs[0].path

    def check(self) -> None:
        """The rules on paths alone: outputs distinct, none of them an input. (Whether an existing
        output may be replaced is checked under the locks, once a killed run's half publish is
        rolled back.)"""
        check_distinct_outputs({o.option: o.path for o in self.outputs})
        for output in self.outputs:
            check_output_not_input(output.path, self.inputs, output.option)

    def __enter__(self) -> "Outputs":
        self.check()
        for output in self.outputs:
            prepare_parent(output.path, output.option)
        try:
            for output in self.outputs:
                path, taken_over = _take_lock(output.path)
                self._locks.append(path)
                self._stack.callback(_release_lock, path)
                if taken_over is not None:
                    _roll_back(taken_over)
            for output in self.outputs:
                clean_leftovers(output.path)
            # Under the locks: no other run can publish meanwhile.
            for output in self.outputs:
                check_replaceable(output.path, output.kind, self.force, output.option)
        except BaseException:
            self._stack.close()
            raise
        return self

    def temporary(self, final: str | Path, temporary: str | Path | None = None) -> Path:
        """Where `final` (one of the claimed outputs) is written before the publish; `temporary`
        names another place (train's resumable OUT.partial/)."""
        final = Path(final)
        if final not in {o.path for o in self.outputs}:
            raise ValueError(f"{final} is not one of the claimed outputs")
        path = Path(temporary) if temporary is not None else temporary_sibling(final)
        if temporary is None and os.path.lexists(path):
            _remove(path)
        self._temporaries[final] = path
        return path

    def publish(self) -> None:
        """Rename every written temporary into place, replacing the old outputs together; a
        claimed output this run did not write is removed with the old set (a --force run that
        writes no metrics file leaves no stale one). The lock records the set first: a kill
        between two renames is rolled back by the next run."""
        _fault("before-publish")
        pid = os.getpid()
        entries = []
        for output in self.outputs:
            temporary = self._temporaries.get(output.path)
            written = temporary is not None and os.path.lexists(temporary)
            if not written and not os.path.lexists(output.path):
                continue
            old = output.path.parent / f".{output.path.name}.old-{pid}" if os.path.lexists(output.path) else None
            if not written:
                temporary = temporary_sibling(output.path)
            entries.append({"final": str(output.path), "temporary": str(temporary),
                            "old": str(old) if old else None, "written": written})
        record = {"pid": pid, "host": socket.gethostname(), "outputs": entries}
        _write_record(self._locks[0], record)
        try:
            for index, entry in enumerate(entries):
                final = Path(entry["final"])
                if entry["old"]:
                    _remove(Path(entry["old"]))
                    os.replace(final, entry["old"])
                if entry["written"]:
                    os.replace(entry["temporary"], final)
                if index == 0:
                    _fault("during-publish")
        except BaseException:
            _roll_back(record)  # a rename failed: the old set back in place, never half of each
            raise
        self._old = [Path(e["old"]) for e in entries if e["old"]]
        self.published = True
        _fault("after-publish")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.published:
                for temporary in self._temporaries.values():
                    if temporary.name.startswith("."):  # train's OUT.partial/ is the caller's to keep
                        _remove(temporary)
        finally:
            self._stack.close()  # the locks: released before the replaced outputs are removed
        if self.published:
            for old in self._old:
                _remove(old)
        if exc is not None and not isinstance(exc, RepclassError):
            error = disk_full_error(exc, self.path)
            if error is not None:
                raise error from exc


@contextlib.contextmanager
def claim_output(out: str | Path, kind: str, *, inputs: Iterable[str | Path], force: bool,
                 option: str = "--out") -> Iterator[Path]:
    """Every rule at once, for one output: not an input, replaceable, parent writable, locked
    while the block runs, leftovers of dead runs removed. Yields the output path (the caller
    publishes with `publish`; `Outputs` is the whole lifecycle)."""
    with Outputs([Output(Path(out), kind, option)], inputs=inputs, force=force):
        yield Path(out)
