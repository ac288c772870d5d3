"""Progress reporting: a rich bar on a terminal, plain log lines anywhere else.

Pipelines capture stderr into log files, where a redrawn bar is noise; there each step is one
log line instead. Library code asks for a `Progress` and never checks where it runs.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("repclass")


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

    def __init__(self, total: int, description: str, *, min_interval: float = 5.0) -> None:
        self.total = total
        self.description = description
        self.done = 0
        self._min_interval = min_interval
        self._last_log = 0.0
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
        if self.done >= self.total or now - self._last_log >= self._min_interval:
            self._last_log = now
            log.info("%s: %d/%d%s", self.description, self.done, self.total, f" {status}" if status else "")


@contextmanager
def progress(total: int, description: str, *, enabled: bool | None = None) -> Iterator[Progress]:
    """A progress reporter; a rich bar only when stderr is a terminal and `-q` was not given (or
    `enabled` says so). Otherwise the steps are info lines, which `-q` keeps off stderr."""
    tracker = Progress(total, description)
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
