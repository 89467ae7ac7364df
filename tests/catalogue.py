"""The bad-input catalogue's machinery (tests/test_catalogue*.py): a case is data — an id, the files it writes,
the command line, the exit code and a fragment of the one line it must print — and :func:`check_cli` runs it
in-process and asserts the house rule: the exit code (2 for a user error, 3 for the machine's failure), one
non-empty ``error:`` line on stderr with no traceback, and nothing left behind (every file and folder of the
case's folder as it was: no run folder, no ``.tmp-*``, no half-written output, no runs folder created).

Adding a case is adding a row to a table of a test_catalogue*.py module; see docs/data-quality.md."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

Content = bytes | str | Callable[[Path], None]
"""a file of a case: its bytes, its text (UTF-8), or a function writing it at the path given"""


@dataclass(frozen=True)
class Case:
    """One bad input for the CLI.

    ``argv`` is a command line split like a shell's, with ``{tmp}`` (the case's folder), ``{runs}`` (its runs
    folder: missing, or a copy of the catalogue's registry when ``registry``), ``{study}`` (the study's orders)
    and ``{rfm}`` (the study's RFM table) filled in."""

    id: str
    argv: str
    says: str
    """a fragment of the one line printed"""
    files: Mapping[str, Content] = field(default_factory=dict)
    code: int = 2
    registry: bool = False
    """run against a copy of the catalogue's runs folder (runs of the study, a published store, a campaign)"""

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def write_files(root: Path, files: Mapping[str, Content]) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (hidden ones too): relative path -> (size, mtime in ns); a folder's
    size is 0 (its mtime changes when an entry comes or goes)."""
    out: dict[str, tuple[int, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (0 if p.is_dir() else st.st_size, st.st_mtime_ns)
    return out


def assert_one_line(err: str, code: int, says: str) -> str:
    """stderr is one non-empty ``error:`` line (no traceback) holding ``says``; returns the line."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"want one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    if code in (2, 3):
        assert line.startswith("error: "), line
    assert says in line, f"{says!r} not in {line!r}"
    return line


def _sqlite_sidecar(name: str, size: int) -> bool:
    """SQLite's shared-memory index, or an empty write-ahead log: what opening a store leaves beside it (a
    server holding the store open has them too); a WAL holding a commit is not one of them."""
    return name.endswith("-shm") or (name.endswith("-wal") and size == 0)


@dataclass(frozen=True)
class Paths:
    tmp: Path
    runs: Path
    study: Path
    rfm: Path

    def argv(self, template: str) -> list[str]:
        filled = {"tmp": self.tmp, "runs": self.runs, "study": self.study, "rfm": self.rfm}
        return [w.format(**filled) for w in shlex.split(template)]


def check_cli(
    case: Case,
    cli: Callable[..., Any],
    tmp_path: Path,
    registry: Path | None,
    study_orders: Path,
    study_rfm: Path,
    prepare: Callable[[Path], None] | None = None,
) -> str:
    """Run ``case`` and assert the house rule; returns the line printed. ``prepare`` is called on the case's
    folder once its files are written, before the command (e.g. to fill the disk)."""
    runs = tmp_path / "runs"
    if case.registry:
        assert registry is not None
        shutil.copytree(registry, runs, symlinks=True)
    write_files(tmp_path, case.files)
    if prepare is not None:
        prepare(tmp_path)
    paths = Paths(tmp_path, runs, study_orders, study_rfm)
    before = snapshot(tmp_path)
    r = cli(*paths.argv(case.argv))
    assert r.code == case.code, (r.code, r.out[-2000:], r.err[-2000:])
    line = assert_one_line(r.err, case.code, case.says)
    after = snapshot(tmp_path)
    added = sorted(k for k in set(after) - set(before) if not _sqlite_sidecar(k, after[k][0]))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k] and not Path(tmp_path, k).is_dir())
    assert not (added or removed or changed), f"left behind: added {added}, removed {removed}, changed {changed}"
    return line


def build_registry(runs: Path) -> Path:
    """The registry the catalogue's commands, API requests and MCP calls run against: two runs of the study
    (as of 16 and 31 December 2024), the latest published to the embedded SQLite store
    (``<runs>/profiles.db``), and a campaign ``spring`` planned on it."""
    from rfmseg.datasets import study
    from rfmseg.jobs import campaign
    from rfmseg.jobs.publish import publish_run
    from rfmseg.jobs.run import segment

    for as_of in ("2024-12-16", "2024-12-31"):
        latest = segment(study.path(study.ORDERS_FILE), as_of=as_of, runs_dir=runs, bad_rows="quarantine")
    publish_run(latest.run_id, runs, f"sqlite:///{runs / 'profiles.db'}")
    campaign.plan("spring", ["At-Risk"], "win_back", "10%", runs_dir=runs)
    return runs


def fill_disk(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte (a file ``filler`` there)."""
    import errno
    import os

    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    block = b"\0" * (1 << 16)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
