"""Progress off a terminal: one log line per step (at most every few seconds), with the time so far
and what is left, since a pipeline's log file has no bar to show it."""
from __future__ import annotations

import logging

import pytest

from repclass import progress as progress_module
from repclass.progress import duration, progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (12.4, "12s"), (59.6, "1m00s"), (185, "3m05s"),
                                           (7440, "2h04m"), (-3, "0s")])
def test_durations_read_like_a_clock(seconds, text):
    assert duration(seconds) == text


def test_log_lines_give_the_time_so_far_and_an_eta(clock, caplog):
    with caplog.at_level(logging.INFO, logger="repclass"), progress(400, "ingest", enabled=False) as bar:
        clock.now += 30
        bar.advance(100)
        clock.now += 90
        bar.advance(300)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["ingest: 100/400 (30s, ETA 1m30s)", "ingest: 400/400 (2m00s)"]


def test_a_task_that_may_stop_early_gives_an_upper_bound(clock, caplog):
    with caplog.at_level(logging.INFO, logger="repclass"), progress(5000, "train", enabled=False, bound=True) as bar:
        clock.now += 12
        bar.advance(100, status="loss 0.4123")
    assert [r.getMessage() for r in caplog.records] == ["train: 100/5000 loss 0.4123 (12s, at most 9m48s left)"]


def test_steps_closer_than_the_interval_share_a_line(clock, caplog):
    with caplog.at_level(logging.INFO, logger="repclass"), progress(10, "predict", enabled=False) as bar:
        for _ in range(9):
            clock.now += 1  # the first step logs (nothing logged yet), then one line per 5 s
            bar.advance()
        clock.now += 1
        bar.advance()  # the last step always logs
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["predict: 1/10", "predict: 6/10",
                                                                      "predict: 10/10"]


def test_a_step_inside_a_command_logs_only_once_it_takes_long(clock, caplog):
    from repclass.progress import counted

    with caplog.at_level(logging.INFO, logger="repclass"):
        assert list(counted(["a", "b", "c"], "quick")) == ["a", "b", "c"]  # a blink: no line at all
        for _ in counted(list(range(4)), "slow", after=5.0):
            clock.now += 3  # lines from 5 s on, every 5 s, and the last one once any was written
    assert [r.getMessage() for r in caplog.records] == ["slow: 2/4 (6s, ETA 6s)", "slow: 4/4 (12s)"]
