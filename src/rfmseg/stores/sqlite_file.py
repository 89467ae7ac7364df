"""The SQLite file under the embedded profile store (:mod:`rfmseg.stores.sqlite`): its path from the store URL,
switching it to WAL mode, and telling the machine's failures (a full disk, an I/O error) and a missing table
from the store's own errors."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rfmseg.errors import ENVIRONMENT_ERRNOS, StoreError

BUSY_TIMEOUT_S = 60.0


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreError(
            f"a SQLite store URL has no host: use sqlite:///relative/path.db or sqlite:////absolute/path.db, not {url}"
        )
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:":
        raise StoreError("a SQLite store needs a file path, e.g. sqlite:///profiles.db")
    return Path(path)


def use_wal(conn: sqlite3.Connection) -> str:
    """Switch ``conn``'s file to WAL mode; the journal mode it is in afterwards.

    Switching a new file needs its exclusive lock, and SQLite answers "database is locked" at once, without
    the busy timeout, when another connection switches the same file at the same moment (two stores opened
    together on a file nobody has written yet): retry until the busy timeout is spent.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's failure (a full disk, an I/O error): exit code 3, not a bad URL."""
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
        return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


def missing_table(exc: sqlite3.OperationalError) -> bool:
    return str(exc).startswith("no such table")
