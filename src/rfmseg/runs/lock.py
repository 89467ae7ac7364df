"""One job at a time in a runs folder.

A refresh reads the latest run (its model, its labels, its RFM state) and writes the next one; a retrain reads
the latest model. Two of them at once in the same folder would both build on the same run, and the second to
finish would drop the first one's day (an incremental state merged twice from the same base) or write a
second run of the same day. :func:`runs_lock` makes them take turns: a file lock for processes (held through
the operating system, so a killed job leaves nothing to clean up; the file is in the temporary folder, named
after the runs folder's path, so that a job leaves nothing in the runs folder it did not write), and a
re-entrant thread lock for the threads of one process (the API's jobs), re-entered when a job publishes its
own run. A job that finds the folder busy says so on stderr and waits for its turn.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from filelock import FileLock, Timeout

from rfmseg.runs.registry import DEFAULT_RUNS_DIR

P = ParamSpec("P")
R = TypeVar("R")


def lock_file(runs_dir: Path) -> Path:
    """The lock file of the runs folder ``runs_dir``: in the temporary folder (one per user), named after the
    folder's resolved path."""
    digest = hashlib.sha256(str(runs_dir.resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"rfmseg-locks-{getpass.getuser()}" / f"{digest}.lock"


_locks: dict[Path, tuple[threading.RLock, FileLock]] = {}
_guard = threading.Lock()


def _lock_of(runs_dir: Path) -> tuple[threading.RLock, FileLock]:
    key = runs_dir.resolve()
    with _guard:
        if key not in _locks:
            path = lock_file(key)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            _locks[key] = (threading.RLock(), FileLock(str(path), thread_local=False))
        return _locks[key]


@contextmanager
def runs_lock(runs_dir: str | Path, job: str) -> Iterator[None]:
    """Hold ``runs_dir``'s job lock while ``job`` (a name for the waiting note) reads and writes the folder.
    A folder that does not exist yet holds no run to build on: nothing to wait for."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        yield
        return
    threads, processes = _lock_of(folder)
    with threads:
        try:
            processes.acquire(timeout=0)
        except Timeout:
            print(f"rfmseg {job}: another job is writing to {folder}; waiting for it to finish", file=sys.stderr)
            processes.acquire()
        try:
            yield
        finally:
            processes.release()


def one_job_at_a_time(job: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated job function under :func:`runs_lock` of its ``runs_dir`` keyword argument (default
    :data:`~rfmseg.runs.registry.DEFAULT_RUNS_DIR`): from reading the latest run to publishing the one it
    writes."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            runs_dir = kwargs.get("runs_dir", DEFAULT_RUNS_DIR)
            with runs_lock(runs_dir if isinstance(runs_dir, str | Path) else DEFAULT_RUNS_DIR, job):
                return fn(*args, **kwargs)

        return locked

    return decorate
