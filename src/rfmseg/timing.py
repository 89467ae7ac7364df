"""Stage timings of a run: ``with timer.stage("fit"): ...`` adds the stage's seconds to ``timer.stages``.

A timer also tells an observer (a progress display) when each stage starts and ends, and hands it the
engine's measure of how far its running query is. The observer is the one in force where the timer is
made (:func:`observed`): a command sets it around the job it runs, and the jobs know nothing of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

Percent = Callable[[], float | None]
"""how far the running query of an engine is, in percent (None: no query, or the engine cannot say)"""


class StageObserver(Protocol):
    """What follows a run's stages as they happen (the CLI's progress display on a terminal)."""

    def started(self, name: str, detail: str = "") -> None: ...

    def finished(self, name: str) -> None: ...

    def watch(self, percent: Percent) -> None:
        """From now on, ``percent`` says how far the running query is."""
        ...


class ProgressSource(Protocol):
    def track_progress(self) -> Percent:
        """Start measuring the progress of each query (it may cost a little), and how to read it."""
        ...


_OBSERVER: ContextVar[StageObserver | None] = ContextVar("rfmseg_stage_observer", default=None)


@contextmanager
def observed(observer: StageObserver | None) -> Iterator[None]:
    """Timers made inside this block report their stages to ``observer`` (None: to nobody)."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)
    observer: StageObserver | None = field(default_factory=_OBSERVER.get, repr=False, compare=False)

    def watch(self, engine: ProgressSource) -> None:
        """Let the observer, if there is one, see how far ``engine``'s queries are."""
        if self.observer is not None:
            self.observer.watch(engine.track_progress())

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        """Time the block as stage ``name``; ``detail`` (e.g. ``96,361 customers``) is for the observer."""
        if self.observer is not None:
            self.observer.started(name, detail)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 4)
            if self.observer is not None:
                self.observer.finished(name)
