"""The embedded profile store: one SQLite file in WAL mode (stdlib sqlite3, no server).

Layout for namespace ``ns``: ``ns_profiles_<n>`` holds one run (customer_id is the primary key of a
WITHOUT ROWID table), ``ns_meta`` is a one-row pointer to the served table with the run's id, as-of
date and model version, and the view ``ns_current`` joins the two; readers query only the view.

A publish runs in one write transaction: create ``ns_profiles_<n+1>``, load it, point ``ns_meta``
and the view at it, drop the old table, commit. WAL readers keep their snapshot until the commit, so
they see the whole old run or the whole new one; a publish killed half way never commits and
leaves nothing behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from rfmseg.errors import StoreError
from rfmseg.stores.base import (
    PROFILE_FIELDS,
    ProfileStore,
    RunInfo,
    failed,
    unreachable,
)

BUSY_TIMEOUT_S = 60.0
INSERT_BATCH = 50_000


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


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return str(exc).startswith("no such table")


class SqliteStore(ProfileStore):
    """Profiles in a SQLite file; one instance may be shared by threads (calls are serialised)."""

    backend = "sqlite"

    def __init__(self, url: str, namespace: str | None = None) -> None:
        super().__init__(url, namespace)
        self.path = sqlite_path(self._url)
        ns = self.namespace
        self._meta, self._view, self._prefix = f"{ns}_meta", f"{ns}_current", f"{ns}_profiles_"
        self._staging = f"{ns}_staging"
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._select = f'SELECT {", ".join(PROFILE_FIELDS)} FROM "{self._view}"'

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise unreachable(self.url_display, exc) from exc
        if mode.lower() != "wal":
            conn.close()
            raise StoreError(
                f"the profile store at {self.url_display} cannot use WAL mode (got {mode}); "
                "put it on a local file system"
            )
        return conn

    # --- reads --------------------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """Rows of ``sql``, or None when nothing was ever published (the view does not exist)."""
        self._ensure_open()
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if _missing_table(exc):
                    return None
                raise failed(self.url_display, "read", exc) from exc
            except sqlite3.Error as exc:
                raise failed(self.url_display, "read", exc) from exc

    def get(self, customer_id: str) -> dict[str, Any] | None:
        rows = self._query(f"{self._select} WHERE customer_id = ?", (customer_id,))
        return dict(zip(PROFILE_FIELDS, rows[0], strict=True)) if rows else None

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not customer_ids:
            return {}
        # one statement = one snapshot, so a batch never mixes two runs
        rows = self._query(
            f"{self._select} WHERE customer_id IN (SELECT value FROM json_each(?))", (json.dumps(list(customer_ids)),)
        )
        return {row[0]: dict(zip(PROFILE_FIELDS, row, strict=True)) for row in rows or []}

    def current_run(self) -> str | None:
        rows = self._query(f'SELECT run_id FROM "{self._meta}"')
        return rows[0][0] if rows else None

    def count(self) -> int:
        rows = self._query(f'SELECT customers FROM "{self._meta}"')
        return int(rows[0][0]) if rows else 0

    def _drop(self) -> None:
        conn = self._write_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            like = self._prefix.replace("_", r"\_") + "%"
            names = [
                row[0]
                for row in conn.execute(
                    r"SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\'", (like,)
                )
            ]
            conn.execute(f'DROP VIEW IF EXISTS "{self._view}"')
            for name in [*names, self._meta]:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise failed(self.url_display, "drop the store", exc) from exc
        finally:
            conn.close()

    def _close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- publish ------------------------------------------------------------------------------------------

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        conn = self._write_connection()
        try:
            conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while building the new table
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("BEGIN IMMEDIATE")  # the write lock: one publisher at a time
            try:
                result = self._load_and_flip(conn, assignments, run)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise failed(self.url_display, f"publish run {run.run_id}", exc) from exc
        finally:
            conn.close()

    def _write_connection(self) -> sqlite3.Connection:
        """A connection of its own for a publish or drop (reads go on while it writes)."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise unreachable(self.url_display, exc) from exc
        return conn

    def _load_and_flip(self, conn: sqlite3.Connection, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._meta}" ('
            "id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL, "
            "table_name TEXT NOT NULL, run_id TEXT NOT NULL, as_of TEXT NOT NULL, "
            "model_version TEXT NOT NULL, customers INTEGER NOT NULL, published_at TEXT NOT NULL)"
        )
        pointer = conn.execute(f'SELECT generation, table_name FROM "{self._meta}"').fetchone()
        generation, served = (pointer[0], pointer[1]) if pointer else (0, None)

        # tables no pointer refers to (e.g. from an older layout) are dropped first
        like = self._prefix.replace("_", r"\_") + "%"
        for (name,) in conn.execute(
            r"SELECT name FROM sqlite_master WHERE type = 'table' "
            r"AND name LIKE ? ESCAPE '\'",
            (like,),
        ).fetchall():
            if name != served:
                conn.execute(f'DROP TABLE "{name}"')

        # the history is computed in SQL: reading a million rows back into Python costs more than the join
        table = f"{self._prefix}{generation + 1}"
        conn.execute(
            f'CREATE TABLE "{table}" (customer_id TEXT PRIMARY KEY, segment TEXT NOT NULL, '
            "previous_segment TEXT, segment_since TEXT NOT NULL, recency_days INTEGER NOT NULL, "
            "frequency INTEGER NOT NULL, monetary REAL NOT NULL, distance REAL NOT NULL) "
            "WITHOUT ROWID"
        )
        ordered = assignments.sort_by("customer_id")  # appending in key order keeps the B-tree build cheap
        if served is None:
            self._insert(conn, f'INSERT INTO "{table}" VALUES (?, ?, NULL, {_quote(run.as_of)}, ?, ?, ?, ?)', ordered)
            changed, new = 0, ordered.num_rows
        else:
            conn.execute(f'DROP TABLE IF EXISTS temp."{self._staging}"')
            conn.execute(
                f'CREATE TEMP TABLE "{self._staging}" (customer_id TEXT NOT NULL, segment TEXT NOT NULL, '
                "recency_days INTEGER, frequency INTEGER, monetary REAL, distance REAL)"
            )
            self._insert(conn, f'INSERT INTO temp."{self._staging}" VALUES (?, ?, ?, ?, ?, ?)', ordered)
            found, changed = conn.execute(
                f"SELECT count(o.customer_id), coalesce(sum(o.segment <> s.segment), 0) "
                f'FROM temp."{self._staging}" AS s LEFT JOIN "{served}" AS o ON o.customer_id = s.customer_id'
            ).fetchone()
            new = ordered.num_rows - found
            # staging rows are in key order (rowid order), so the new table is appended in key order too
            conn.execute(
                f'INSERT INTO "{table}" SELECT s.customer_id, s.segment, '
                "CASE WHEN o.segment = s.segment THEN o.previous_segment ELSE o.segment END, "
                "CASE WHEN o.segment = s.segment THEN o.segment_since ELSE ? END, "
                "s.recency_days, s.frequency, s.monetary, s.distance "
                f'FROM temp."{self._staging}" AS s LEFT JOIN "{served}" AS o ON o.customer_id = s.customer_id',
                (run.as_of.isoformat(),),
            )
            conn.execute(f'DROP TABLE temp."{self._staging}"')

        conn.execute(
            f'INSERT OR REPLACE INTO "{self._meta}" VALUES (1, ?, ?, ?, ?, ?, ?, ?)',
            (
                generation + 1,
                table,
                run.run_id,
                run.as_of.isoformat(),
                run.model_version,
                ordered.num_rows,
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
        conn.execute(f'DROP VIEW IF EXISTS "{self._view}"')
        conn.execute(
            f'CREATE VIEW "{self._view}" AS SELECT p.customer_id, p.segment, p.previous_segment, '
            "p.segment_since, p.recency_days, p.frequency, p.monetary, p.distance, m.run_id, "
            f'm.as_of, m.model_version FROM "{table}" AS p CROSS JOIN "{self._meta}" AS m'
        )
        if served:
            conn.execute(f'DROP TABLE "{served}"')
        return changed, new

    @staticmethod
    def _insert(conn: sqlite3.Connection, sql: str, table: pa.Table) -> None:
        for batch in table.to_batches(max_chunksize=INSERT_BATCH):
            conn.executemany(sql, zip(*(column.to_pylist() for column in batch.columns), strict=True))


def _quote(day: date) -> str:
    return f"'{day.isoformat()}'"
