"""Run-id prefixes for the tests that look a run up by a prefix of its id."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rfmseg.runs import list_runs


def unique_prefix(run_id: str, runs: Path | Iterable[str]) -> str:
    """The shortest prefix of ``run_id`` that names it alone among ``runs`` (a runs folder or the ids in it) and
    is shorter than the id, so a lookup goes through the prefix match. Run ids made in the same second share all
    but their random tail, and a fixed slice of that tail can collide (CI saw ``[:17]`` match two runs)."""
    ids = [r.run_id for r in list_runs(runs)] if isinstance(runs, Path) else list(runs)
    others = [i for i in ids if i != run_id]
    for n in range(1, len(run_id)):
        if not any(o.startswith(run_id[:n]) for o in others):
            return run_id[:n]
    raise AssertionError(f"{run_id} has no prefix that no other run shares: {others}")
