"""Progress reporting: a rich bar on a terminal, plain log lines anywhere else.

Pipelines capture stderr into log files, where a redrawn bar is noise; there each step is one
log line instead. Library code asks for a `Progress` and never checks where it runs.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Sequence, TypeVar

log = logging.getLogger("repclass")
T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def stderr_shows_info() -> bool:
    """Whether info lines reach stderr: false under `-q`, whatever a --log-file records. Without
    handlers of repclass's own (a Python caller), the logger's level decides."""
    streams = [h for h in log.handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)]
    if not streams:
        return log.isEnabledFor(logging.INFO) or log.level == logging.NOTSET
    return any(h.level <= logging.INFO for h in streams)


def show_on_terminal() -> bool:
    """Bars and tables for a person: stderr is a terminal and the log is not quiet (`-q`)."""
    return on_terminal() and stderr_shows_info()


class Progress:
    """Counts finished steps of a task of known size."""

    def __init__(self, total: int, description: str, *, min_interval: float = 5.0, bound: bool = False,
                 after: float = 0.0) -> None:
        self.total = total
        self.description = description
        self.done = 0
        self.bound = bound  # the task may end before `total` (training that stops early)
        self._min_interval = min_interval
        # a step of a larger task logs only once it has taken `after` seconds: a small cohort's
        # run stays as short in the log as it is in time
        self._after = after
        self._started = time.monotonic()
        self._last_log = 0.0
        self._logged = False
        self._rich = None
        self._task = None

    @property
    def rich(self) -> bool:
        """True when a rich bar shows progress (so per-step log lines would be noise)."""
        return self._rich is not None

    def advance(self, steps: int = 1, status: str = "") -> None:
        self.done += steps
        if self._rich is not None:
            self._rich.update(self._task, advance=steps, status=status)
            return
        now = time.monotonic()
        if now - self._started < self._after:
            return
        finished = self.done >= self.total and (self._logged or not self._after)
        if finished or now - self._last_log >= self._min_interval:
            self._last_log, self._logged = now, True
            log.info("%s: %d/%d%s (%s)", self.description, self.done, self.total, f" {status}" if status else "",
                     self.timing(now))

    def timing(self, now: float) -> str:
        """'1m05s', then what is left at the rate so far: '1m05s, ETA 3m10s' (or 'at most 3m10s
        left' for a task that may stop early); log files have no bar to show it."""
        elapsed = now - self._started
        if self.done <= 0 or self.done >= self.total:
            return duration(elapsed)
        left = duration(elapsed / self.done * (self.total - self.done))
        return f"{duration(elapsed)}, at most {left} left" if self.bound else f"{duration(elapsed)}, ETA {left}"


def duration(seconds: float) -> str:
    """12s, 3m05s, 2h04m."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def counted(items: Sequence[T], description: str, after: float = 5.0) -> Iterator[T]:
    """Yield `items`, logging progress lines (with an ETA) once the loop has taken `after` seconds:
    for the steps inside a command (reading every training repertoire for the k-mer start or the
    enrichment path) that take minutes on a large cohort and a blink on a small one."""
    tracker = Progress(len(items), description, after=after)
    for item in items:
        yield item
        tracker.advance()


@contextmanager
def progress(total: int, description: str, *, enabled: bool | None = None, bound: bool = False
             ) -> Iterator[Progress]:
    """A progress reporter; a rich bar only when stderr is a terminal and `-q` was not given (or
    `enabled` says so). Otherwise the steps are info lines with the time so far and an ETA (`bound`:
    the task may stop before `total`, so the time left is an upper bound), which `-q` keeps off
    stderr."""
    tracker = Progress(total, description, bound=bound)
    use_rich = show_on_terminal() if enabled is None else enabled
    if not use_rich:
        yield tracker
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with RichProgress(*columns, console=Console(stderr=True), transient=False) as bar:
        tracker._rich = bar
        tracker._task = bar.add_task(description, total=total, status="")
        yield tracker
