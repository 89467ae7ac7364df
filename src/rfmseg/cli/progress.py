"""The progress display of a long run on a terminal: the running stage, how far its query is (the engine's
measure: DuckDB's progress of the running query, Spark's share of finished tasks), the time it has taken and
what it works on (the customers a fit clusters).

It shows only on a terminal (stderr is a TTY), never with ``--json`` or on a pipe, and only once a stage has
run for :data:`SHOW_AFTER` seconds: a quick run prints exactly what it printed before. The display is
cleared when the run ends, so the run's own output follows as usual.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rfmseg.timing import Percent, observed

if TYPE_CHECKING:  # rich's display is imported where it is drawn: a run on a pipe or with --json draws nothing
    from rich.console import Console
    from rich.progress import TaskID

SHOW_AFTER = float(os.environ.get("RFMSEG_PROGRESS_AFTER", "2"))
"""seconds a stage runs before the display appears (the environment variable sets it, e.g. 0 in tests)"""
POLL = 0.1
"""seconds between two readings of the engine's measure"""


class TerminalProgress:
    """A :class:`rfmseg.timing.StageObserver` drawing one line per stage on ``console`` (stderr)."""

    def __init__(self, console: Console, show_after: float = SHOW_AFTER) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self.show_after = show_after
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.fields[done]:>4}"),
            TextColumn("{task.fields[elapsed]:>7}"),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=True,
        )
        self._lock = threading.Lock()
        self._percent: Percent = lambda: None
        self._stage: tuple[str, str, float, TaskID | None] | None = None
        self._shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rfmseg-progress", daemon=True)

    # the observer ------------------------------------------------------------------------------
    def watch(self, percent: Percent) -> None:
        self._percent = percent

    def started(self, name: str, detail: str = "") -> None:
        with self._lock:
            self._stage = (name, detail, time.monotonic(), None)
            if self.show_after <= 0:  # no delay asked (RFMSEG_PROGRESS_AFTER=0): every stage drawn as it starts
                self._draw()

    def finished(self, name: str) -> None:
        with self._lock:
            if self._stage is not None and self._stage[3] is not None:
                self.progress.update(self._stage[3], visible=False)
            self._stage = None

    # drawing -----------------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(POLL):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        """Draw the running stage once it has run ``show_after`` seconds (the caller holds the lock)."""
        if self._stage is None:
            return
        name, detail, since, task = self._stage
        elapsed = time.monotonic() - since
        if elapsed < self.show_after:
            return
        if not self._shown:
            self.progress.start()
            self._shown = True
        percent = self._read()
        if task is None:
            task = self.progress.add_task(name, total=None, done="", elapsed="", detail=detail)
            self._stage = (name, detail, since, task)
        shown = f"{elapsed:.1f} s"
        if percent is None:  # the bar pulses: the stage runs, the engine cannot say how far
            self.progress.update(task, total=None, done="", elapsed=shown)
        else:
            self.progress.update(task, total=100.0, completed=percent, done=f"{percent:.0f}%", elapsed=shown)
        if self.show_after <= 0:
            self.progress.refresh()  # drawn now, not at the next tick: a short stage is seen too

    def _read(self) -> float | None:
        try:
            return self._percent()
        except Exception:  # a measure is a courtesy: never let it break the run
            return None

    def __enter__(self) -> TerminalProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._shown:
            self.progress.stop()


def wants_progress(as_json: bool) -> bool:
    """A progress display fits: stderr is a terminal (not a pipe or a file), no ``--json``, a real TERM."""
    return not as_json and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def progress_shown(as_json: bool, console: Console) -> Iterator[None]:
    """Around a job: the stages of the timers made inside are drawn on ``console`` when a display fits."""
    if not wants_progress(as_json):
        yield
        return
    with TerminalProgress(console) as display, observed(display):
        yield
