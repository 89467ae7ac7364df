"""The embedded profile store: one SQLite file in WAL mode (stdlib sqlite3, no server).

Layout for namespace ``ns``: ``ns_profiles_<n>`` holds one run (customer_id is the primary key of a
WITHOUT ROWID table), ``ns_meta`` is a one-row pointer to the served table with the run's id, as-of
date and model version, and the view ``ns_current`` joins the two; readers query only the view.

A publish runs in one write transaction: create ``ns_profiles_<n+1>``, load it, point ``ns_meta``
and the view at it, drop the old table, commit. WAL readers keep their snapshot until the commit, so
they see the whole old run or the whole new one; a publish killed half way never commits and
leaves nothing behind.

A staged publish loads the same rows in several transactions, from any process that opens the file:
``ns_staged_<token>`` (the same layout, keyed by customer_id, so a customer staged twice is refused at
once) receives each batch with its history joined from the table served at begin, ``ns_stages`` records
the staged publish and the generation it began on, ``ns_stage_batches`` the customers, changed and new of
each batch. The commit is one write transaction: check, rename ``ns_staged_<token>`` to
``ns_profiles_<n+1>``, and the same flip as a publish. Staged publishes that can no longer commit (the
generation moved on) are dropped by the next flip or begin.

The change feed is ``ns_changes`` (``id INTEGER PRIMARY KEY AUTOINCREMENT``, so an id is never used twice,
even after a trim): the publish's transaction inserts the changes, in customer id order, with one
``INSERT ... SELECT`` of the loaded rows joined with the served table, plus the served customers missing
from the new table. A staged batch records its new and moved customers in ``ns_stage_changes`` (in the
batch's transaction); the commit adds those that left and moves them into the feed. ``ns_changes_trim``
records how far :meth:`~rfmseg.stores.base.ProfileStore.trim_changes` removed it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from rfmseg.errors import EnvironmentFailure, StoreError
from rfmseg.stores.base import (
    ProfileStore,
    StagedBatch,
    StageToken,
    stage_duplicated,
    stage_gone,
    stage_moved,
    stage_short,
)
from rfmseg.stores.rows import DRIFT, LEFT, MOVED, NEW, PROFILE_FIELDS, REASON_COLUMN, RHYTHM_COLUMNS, RunInfo
from rfmseg.stores.sqlite_file import BUSY_TIMEOUT_S, disk_full, missing_table, sqlite_path, use_wal
from rfmseg.stores.urls import describe_failure, failed, unreachable

INSERT_BATCH = 50_000
_RHYTHM = ", ".join(RHYTHM_COLUMNS)
_RHYTHM_OF_S, _RHYTHM_OF_P = (", ".join(f"{t}.{c}" for c in RHYTHM_COLUMNS) for t in "sp")
_LEGACY_FIELDS = ", ".join("NULL" if f in RHYTHM_COLUMNS else f for f in PROFILE_FIELDS)
"""The profile fields of a store whose served table predates the rhythm columns (until its next publish)."""
_RUN_COLUMNS = ":run_id AS run_id, :as_of AS as_of, :model_version AS model_version"
"""The run-level columns of a change, as the parameters of :meth:`SqliteStore._append_changes`."""


class SqliteStore(ProfileStore):
    """Profiles in a SQLite file; one instance may be shared by threads (calls are serialised)."""

    backend = "sqlite"

    def __init__(self, url: str, namespace: str | None = None, read_timeout: float | None = None) -> None:
        super().__init__(url, namespace, read_timeout)
        self.path = sqlite_path(self._url)
        ns = self.namespace
        self._meta, self._view, self._prefix = f"{ns}_meta", f"{ns}_current", f"{ns}_profiles_"
        self._staging = f"{ns}_staging"
        self._stages, self._batches, self._staged_prefix = f"{ns}_stages", f"{ns}_stage_batches", f"{ns}_staged_"
        self._feed, self._feed_trim, self._stage_changes = f"{ns}_changes", f"{ns}_changes_trim", f"{ns}_stage_changes"
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._select = f'SELECT {", ".join(PROFILE_FIELDS)} FROM "{self._view}"'

    def _connect(self) -> sqlite3.Connection:
        existed = self.path.exists()
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            mode = use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()  # no file left open (a server would keep it, a full disk could not be unmounted)
            if not existed:  # nor an empty store file where there was none
                for leftover in (self.path, *(self.path.with_name(self.path.name + x) for x in ("-wal", "-shm"))):
                    with suppress(OSError):
                        leftover.unlink()
            if disk_full(exc):
                raise EnvironmentFailure(
                    f"cannot open the profile store at {self.url_display}: the disk is full "
                    f"({describe_failure(exc)}); free space (or fix the disk) and run again"
                ) from exc
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
                if missing_table(exc):
                    return None
                raise failed(self.url_display, "read", exc) from exc
            except sqlite3.Error as exc:
                raise failed(self.url_display, "read", exc) from exc

    def _profiles(self, where: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """The profile rows of the view ``WHERE ...``; a store whose served table predates the rhythm columns
        reads them as NULL (its next publish adds them)."""
        try:
            return self._query(f"{self._select} WHERE {where}", params)
        except StoreError as exc:
            if not isinstance(exc.__cause__, sqlite3.OperationalError) or "no such column" not in str(exc.__cause__):
                raise
        return self._query(f'SELECT {_LEGACY_FIELDS} FROM "{self._view}" WHERE {where}', params)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        rows = self._profiles("customer_id = ?", (customer_id,))
        return dict(zip(PROFILE_FIELDS, rows[0], strict=True)) if rows else None

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not customer_ids:
            return {}
        # one statement = one snapshot, so a batch never mixes two runs
        rows = self._profiles("customer_id IN (SELECT value FROM json_each(?))", (json.dumps(list(customer_ids)),))
        return {row[0]: dict(zip(PROFILE_FIELDS, row, strict=True)) for row in rows or []}

    def current_run(self) -> str | None:
        rows = self._query(f'SELECT run_id FROM "{self._meta}"')
        return rows[0][0] if rows else None

    def count(self) -> int:
        rows = self._query(f'SELECT customers FROM "{self._meta}"')
        return int(rows[0][0]) if rows else 0

    def _changes(self, after: str | None, limit: int) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
        rows = self._query(
            "SELECT CAST(id AS TEXT) AS cursor, customer_id, from_segment, to_segment, reason, segment_reason, run_id, "
            f'as_of, model_version FROM "{self._feed}" WHERE id > ? ORDER BY id LIMIT ?',
            (int(after or 0), limit),
        )
        ends = self._query(  # one statement, so a trim in between cannot hide the last change
            f'SELECT (SELECT CAST(through AS TEXT) FROM "{self._feed_trim}"), '
            f'(SELECT CAST(max(id) AS TEXT) FROM "{self._feed}")'
        )
        trimmed, last = ends[0] if ends else (None, None)
        return rows or [], trimmed, last

    def _trim_changes(self, through: str) -> int:
        with self._transaction("trim the change feed") as conn:
            self._ensure_feed(conn)
            last = conn.execute(f'SELECT max(id) FROM "{self._feed}"').fetchone()[0]
            if last is None or int(through) > last:
                raise StoreError(
                    f"cursor {through} is past the last change of the feed at {self.url_display} "
                    f"({'empty' if last is None else last}); nothing was trimmed"
                )
            removed = conn.execute(f'DELETE FROM "{self._feed}" WHERE id <= ?', (int(through),)).rowcount
            conn.execute(
                f'INSERT INTO "{self._feed_trim}" VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET '
                "through = max(through, excluded.through)",
                (int(through),),
            )
        return int(removed)

    def _drop(self) -> None:
        with self._transaction("drop the store") as conn:
            names = self._tables(conn, self._prefix) + self._tables(conn, self._staged_prefix)
            conn.execute(f'DROP VIEW IF EXISTS "{self._view}"')
            feed = [self._feed, self._feed_trim, self._stage_changes]
            for name in [*names, self._meta, self._stages, self._batches, *feed]:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')

    @staticmethod
    def _tables(conn: sqlite3.Connection, prefix: str) -> list[str]:
        like = prefix.replace("_", r"\_") + "%"
        rows = conn.execute(r"SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\'", (like,))
        return [row[0] for row in rows]

    def _close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- publish ------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, action: str, bulk: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: the write lock, one writer at a time) on a connection of
        its own, committed when the block ends and rolled back if it raises; SQLite errors become StoreError."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise unreachable(self.url_display, exc) from exc
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            if bulk:
                conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while building a table
                conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if disk_full(exc):
                raise EnvironmentFailure(
                    f"the profile store at {self.url_display} failed to {action}: the disk is full "
                    f"({describe_failure(exc)}); free space (or fix the disk) and run again"
                ) from exc
            raise failed(self.url_display, action, exc) from exc
        finally:
            conn.close()

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        with self._transaction(f"publish run {run.run_id}", bulk=True) as conn:
            generation, served = self._pointer(conn)
            table = f"{self._prefix}{generation + 1}"
            self._create_rows_table(conn, table)
            changed, new = self._load(conn, table, assignments, run, served)
            self._flip(conn, table, generation + 1, run, assignments.num_rows, served)
        return changed, new

    def _ensure_feed(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._feed}" (id INTEGER PRIMARY KEY AUTOINCREMENT, '
            "customer_id TEXT NOT NULL, from_segment TEXT, to_segment TEXT, reason TEXT NOT NULL, "
            "segment_reason TEXT, run_id TEXT NOT NULL, as_of TEXT NOT NULL, model_version TEXT NOT NULL)"
        )
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._feed_trim}" (id INTEGER PRIMARY KEY CHECK (id = 1), '
            "through INTEGER NOT NULL)"
        )

    def _append_changes(
        self,
        conn: sqlite3.Connection,
        arrived: str,
        order: str,
        table: str,
        departures: str | None,
        params: dict[str, Any],
    ) -> None:
        """Append to the feed, in customer id order, in the flip's transaction: the changes ``arrived``
        selects (customer_id, from_segment, to_segment, reason, segment_reason, then :data:`_RUN_COLUMNS`;
        ``ORDER BY order`` reads them in customer id order), and, with ``departures`` (the served table, when
        some of its customers are not in the new run), the customers of ``departures`` missing from
        ``table``. ``params`` has run_id, as_of and model_version, and what ``arrived`` needs."""
        self._ensure_feed(conn)
        source = f"{arrived} ORDER BY {order}"
        if departures is not None:
            source = (
                f"{arrived} UNION ALL SELECT o.customer_id, o.segment, NULL, '{LEFT}', NULL, {_RUN_COLUMNS} "
                f'FROM "{departures}" AS o WHERE NOT EXISTS (SELECT 1 FROM "{table}" AS n '
                "WHERE n.customer_id = o.customer_id) ORDER BY 1"
            )
        conn.execute(
            f'INSERT INTO "{self._feed}" (customer_id, from_segment, to_segment, reason, segment_reason, run_id, '
            f"as_of, model_version) {source}",
            params,
        )

    def _departures(self, conn: sqlite3.Connection, served: str | None, found: int) -> str | None:
        """``served`` if some of its customers are not among the ``found`` of the new run, else None (the
        anti-join that finds them is skipped)."""
        if served is None:
            return None
        customers = conn.execute(f'SELECT customers FROM "{self._meta}"').fetchone()[0]
        return served if customers > found else None

    @staticmethod
    def _arrived(source: str, served: str | None, extra: str = "") -> str:
        """The SELECT of the new and moved customers of ``source`` (keyed by customer_id, with a
        segment_reason column) against ``served``, in key order, with the feed's column names (and
        ``extra`` columns after them)."""
        if served is None:
            return (
                "SELECT s.customer_id AS customer_id, NULL AS from_segment, s.segment AS to_segment, "
                f"'{NEW}' AS reason, s.segment_reason AS segment_reason{extra} FROM {source} AS s"
            )
        return (
            "SELECT s.customer_id AS customer_id, o.segment AS from_segment, s.segment AS to_segment, "
            f"CASE WHEN o.customer_id IS NULL THEN '{NEW}' ELSE '{MOVED}' END AS reason, "
            f's.segment_reason AS segment_reason{extra} FROM {source} AS s LEFT JOIN "{served}" AS o '
            "ON o.customer_id = s.customer_id WHERE o.segment IS NOT s.segment"
        )

    @staticmethod
    def _run_params(run: RunInfo) -> dict[str, Any]:
        return {"run_id": run.run_id, "as_of": run.as_of.isoformat(), "model_version": run.model_version}

    def _pointer(self, conn: sqlite3.Connection) -> tuple[int, str | None]:
        """(generation, served table) of the pointer, made if missing; tables of the profiles prefix that it
        does not name (e.g. from an older layout) are dropped."""
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._meta}" ('
            "id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL, "
            "table_name TEXT NOT NULL, run_id TEXT NOT NULL, as_of TEXT NOT NULL, "
            "model_version TEXT NOT NULL, customers INTEGER NOT NULL, published_at TEXT NOT NULL)"
        )
        pointer = conn.execute(f'SELECT generation, table_name FROM "{self._meta}"').fetchone()
        generation, served = (pointer[0], pointer[1]) if pointer else (0, None)
        for name in self._tables(conn, self._prefix):
            if name != served:
                conn.execute(f'DROP TABLE "{name}"')
        return generation, served

    @staticmethod
    def _create_rows_table(conn: sqlite3.Connection, table: str) -> None:
        conn.execute(
            f'CREATE TABLE "{table}" (customer_id TEXT PRIMARY KEY, segment TEXT NOT NULL, '
            "previous_segment TEXT, segment_since TEXT NOT NULL, recency_days INTEGER NOT NULL, "
            "frequency INTEGER NOT NULL, monetary REAL NOT NULL, distance REAL NOT NULL, p_alive REAL, "
            "expected_orders_90d REAL, expected_value_90d REAL) WITHOUT ROWID"
        )

    def _load(
        self, conn: sqlite3.Connection, table: str, assignments: pa.Table, run: RunInfo, served: str | None
    ) -> tuple[int, int]:
        """Insert ``assignments`` into ``table`` with the history joined from ``served`` and append the
        changes to the feed; (changed, new).

        The history is computed in SQL: reading a million rows back into Python costs more than the join.
        """
        ordered = assignments.sort_by("customer_id")  # appending in key order keeps the B-tree build cheap
        self._fill_staging(conn, ordered)
        changed, new = self._insert_staging(conn, table, run.as_of, served)
        staging = f'temp."{self._staging}"'
        arrived = self._arrived(staging, served, f", {_RUN_COLUMNS}")
        departures = self._departures(conn, served, ordered.num_rows - new)
        # the staging table's rowids are in key order, so its rows are read in key order without a sort
        self._append_changes(conn, arrived, "s.rowid", table, departures, self._run_params(run))
        conn.execute(f"DROP TABLE {staging}")
        return changed, new

    def _fill_staging(self, conn: sqlite3.Connection, ordered: pa.Table) -> None:
        """The rows of ``ordered`` (with their segment_reason) in this connection's temporary table, in key
        order, which is rowid order."""
        conn.execute(f'DROP TABLE IF EXISTS temp."{self._staging}"')
        conn.execute(
            f'CREATE TEMP TABLE "{self._staging}" (customer_id TEXT NOT NULL, segment TEXT NOT NULL, '
            "recency_days INTEGER, frequency INTEGER, monetary REAL, distance REAL, p_alive REAL, "
            "expected_orders_90d REAL, expected_value_90d REAL, segment_reason TEXT)"
        )
        if ordered[REASON_COLUMN].null_count == ordered.num_rows:  # no reasons: not sent row by row
            insert = f'INSERT INTO temp."{self._staging}" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)'
            self._insert(conn, insert, ordered.drop_columns([REASON_COLUMN]))
        else:
            self._insert(conn, f'INSERT INTO temp."{self._staging}" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', ordered)

    def _insert_staging(self, conn: sqlite3.Connection, table: str, as_of: date, served: str | None) -> tuple[int, int]:
        """Copy the temporary table into ``table`` with the history joined from ``served``; (changed, new)."""
        staging = f'temp."{self._staging}"'
        if served is None:
            conn.execute(
                f'INSERT INTO "{table}" SELECT customer_id, segment, NULL, ?, recency_days, frequency, monetary, '
                f"distance, {_RHYTHM} FROM {staging}",
                (as_of.isoformat(),),
            )
            return 0, conn.execute(f"SELECT count(*) FROM {staging}").fetchone()[0]
        rows, found, changed = conn.execute(
            f"SELECT count(*), count(o.customer_id), coalesce(sum(o.segment <> s.segment), 0) "
            f'FROM {staging} AS s LEFT JOIN "{served}" AS o ON o.customer_id = s.customer_id'
        ).fetchone()
        # staging rows are in key order (rowid order), so the new table is appended in key order too
        drift = f"(o.customer_id IS NOT NULL AND s.segment_reason = '{DRIFT}')"
        conn.execute(
            f'INSERT INTO "{table}" SELECT s.customer_id, s.segment, '
            # a retrain's drift move (the model moved, not the customer) keeps the history: rows.DRIFT
            f"CASE WHEN o.segment = s.segment OR {drift} THEN o.previous_segment ELSE o.segment END, "
            f"CASE WHEN o.segment = s.segment OR {drift} THEN o.segment_since ELSE ? END, "
            f"s.recency_days, s.frequency, s.monetary, s.distance, {_RHYTHM_OF_S} "
            f'FROM {staging} AS s LEFT JOIN "{served}" AS o ON o.customer_id = s.customer_id',
            (as_of.isoformat(),),
        )
        return changed, rows - found

    def _flip(
        self, conn: sqlite3.Connection, table: str, generation: int, run: RunInfo, customers: int, served: str | None
    ) -> None:
        """Point the meta row and the view at ``table``, drop the table served before and the staged
        publishes that began on an older generation (none of them can commit any more)."""
        conn.execute(
            f'INSERT OR REPLACE INTO "{self._meta}" VALUES (1, ?, ?, ?, ?, ?, ?, ?)',
            (
                generation,
                table,
                run.run_id,
                run.as_of.isoformat(),
                run.model_version,
                customers,
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
        conn.execute(f'DROP VIEW IF EXISTS "{self._view}"')
        conn.execute(
            f'CREATE VIEW "{self._view}" AS SELECT p.customer_id, p.segment, p.previous_segment, '
            f"p.segment_since, p.recency_days, p.frequency, p.monetary, p.distance, {_RHYTHM_OF_P}, m.run_id, "
            f'm.as_of, m.model_version FROM "{table}" AS p CROSS JOIN "{self._meta}" AS m'
        )
        if served:
            conn.execute(f'DROP TABLE "{served}"')
        self._drop_doomed_stages(conn, generation)

    @staticmethod
    def _insert(conn: sqlite3.Connection, sql: str, table: pa.Table) -> None:
        for batch in table.to_batches(max_chunksize=INSERT_BATCH):
            conn.executemany(sql, zip(*(column.to_pylist() for column in batch.columns), strict=True))

    # --- staged publish -----------------------------------------------------------------------------------

    def _ensure_stage_tables(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._stages}" (token TEXT PRIMARY KEY, generation INTEGER NOT NULL, '
            "run_id TEXT NOT NULL, created TEXT NOT NULL, problem TEXT)"
        )
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._batches}" (token TEXT NOT NULL, rows INTEGER NOT NULL, '
            "changed INTEGER NOT NULL, new INTEGER NOT NULL, batch_key TEXT)"
        )
        columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{self._batches}")')}
        if "batch_key" not in columns:  # made by a version without batch keys
            conn.execute(f'ALTER TABLE "{self._batches}" ADD COLUMN batch_key TEXT')
        conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{self._batches}_key" ON "{self._batches}" (token, batch_key)')
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._stage_changes}" (token TEXT NOT NULL, customer_id TEXT NOT NULL, '
            "from_segment TEXT, to_segment TEXT, reason TEXT NOT NULL, segment_reason TEXT, "
            "PRIMARY KEY (token, customer_id)) WITHOUT ROWID"
        )

    @staticmethod
    def _exists(conn: sqlite3.Connection, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

    def _drop_doomed_stages(self, conn: sqlite3.Connection, generation: int) -> None:
        """Drop the staged tables whose publish began on another generation (or is not registered)."""
        tables = self._tables(conn, self._staged_prefix)
        if not self._exists(conn, self._stages):
            live: set[str] = set()
        else:
            conn.execute(f'DELETE FROM "{self._stages}" WHERE generation <> ?', (generation,))
            conn.execute(f'DELETE FROM "{self._batches}" WHERE token NOT IN (SELECT token FROM "{self._stages}")')
            if self._exists(conn, self._stage_changes):  # not made by a version without the feed
                conn.execute(
                    f'DELETE FROM "{self._stage_changes}" WHERE token NOT IN (SELECT token FROM "{self._stages}")'
                )
            live = {row[0] for row in conn.execute(f'SELECT token FROM "{self._stages}"')}
        for name in tables:
            if name.removeprefix(self._staged_prefix) not in live:
                conn.execute(f'DROP TABLE "{name}"')

    def _begin(self, run: RunInfo) -> StageToken:
        stage = uuid.uuid4().hex[:12]
        with self._transaction(f"begin the publish of run {run.run_id}") as conn:
            generation, served = self._pointer(conn)
            self._ensure_stage_tables(conn)
            self._drop_doomed_stages(conn, generation)
            self._create_rows_table(conn, f"{self._staged_prefix}{stage}")
            conn.execute(
                f'INSERT INTO "{self._stages}" VALUES (?, ?, ?, ?, NULL)',
                (stage, generation, run.run_id, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        # an absolute path: workers may run in another folder
        url = f"sqlite:///{self.path.resolve()}"
        return StageToken(url, self.namespace, stage, generation, served, run.run_id, run.as_of, run.model_version)

    def _check_stage(self, conn: sqlite3.Connection, token: StageToken) -> None:
        """Refuse (StoreError) unless ``token``'s publish exists, has no problem and began on the served
        generation."""
        try:
            pointer = conn.execute(f'SELECT generation, run_id FROM "{self._meta}"').fetchone()
            stage = conn.execute(f'SELECT problem FROM "{self._stages}" WHERE token = ?', (token.stage,)).fetchone()
        except sqlite3.OperationalError as exc:
            if missing_table(exc):  # the store was dropped
                raise stage_gone(token, self.url_display) from None
            raise
        generation, current_run = pointer if pointer else (0, None)
        if generation != token.generation:
            raise stage_moved(token, self.url_display, current_run)
        if stage is None:
            raise stage_gone(token, self.url_display)
        if stage[0]:
            raise stage_duplicated(token, self.url_display, stage[0])

    def _stage(self, token: StageToken, assignments: pa.Table, key: str | None) -> StagedBatch:
        table = f"{self._staged_prefix}{token.stage}"
        with self._transaction(f"stage a batch of run {token.run_id}", bulk=True) as conn:
            self._check_stage(conn, token)
            if key is not None:  # writers take turns, so the answer holds until this batch commits
                done = conn.execute(
                    f'SELECT rows, changed, new FROM "{self._batches}" WHERE token = ? AND batch_key = ?',
                    (token.stage, key),
                ).fetchone()
                if done:
                    rows, changed, new = done
                    return StagedBatch(rows, changed, new, repeated=True)
            self._fill_staging(conn, assignments.sort_by("customer_id"))
            twice = conn.execute(
                f'SELECT count(*), min(s.customer_id) FROM temp."{self._staging}" AS s '
                f'JOIN "{table}" AS t ON t.customer_id = s.customer_id'
            ).fetchone()
            if twice[0]:
                # recorded (and committed), so the commit refuses even if the caller goes on
                problem = f"{twice[0]:,} customer(s) of a batch, e.g. {twice[1]!r}, were staged by an earlier batch"
                conn.execute(f'UPDATE "{self._stages}" SET problem = ? WHERE token = ?', (problem, token.stage))
                result = None
            else:
                result = self._insert_staging(conn, table, token.as_of, token.served)
                # the batch's new and moved customers; those that left are known at the commit only
                arrived = self._arrived(f'temp."{self._staging}"', token.served)
                conn.execute(f'INSERT INTO "{self._stage_changes}" SELECT ?, * FROM ({arrived})', (token.stage,))
                conn.execute(
                    f'INSERT INTO "{self._batches}" (token, rows, changed, new, batch_key) VALUES (?, ?, ?, ?, ?)',
                    (token.stage, assignments.num_rows, *result, key),
                )
            conn.execute(f'DROP TABLE temp."{self._staging}"')
        if result is None:
            raise stage_duplicated(token, self.url_display, problem)
        return StagedBatch(assignments.num_rows, *result)

    def _commit(self, token: StageToken, expected_rows: int) -> tuple[int, int, int]:
        with self._transaction(f"publish run {token.run_id}") as conn:
            generation, served = self._pointer(conn)
            self._check_stage(conn, token)
            sums = "coalesce(sum(rows), 0), coalesce(sum(changed), 0), coalesce(sum(new), 0)"
            rows, changed, new = conn.execute(
                f'SELECT {sums} FROM "{self._batches}" WHERE token = ?', (token.stage,)
            ).fetchone()
            if rows != expected_rows:
                raise stage_short(token, self.url_display, rows, expected_rows)
            table = f"{self._prefix}{generation + 1}"
            conn.execute(f'ALTER TABLE "{self._staged_prefix}{token.stage}" RENAME TO "{table}"')
            arrived = (
                f"SELECT customer_id, from_segment, to_segment, reason, segment_reason, {_RUN_COLUMNS} "
                f'FROM "{self._stage_changes}" WHERE token = :token'
            )
            departures = self._departures(conn, served, rows - new)
            params = {**self._run_params(token.run), "token": token.stage}
            self._append_changes(conn, arrived, "customer_id", table, departures, params)
            for name in (self._stages, self._batches, self._stage_changes):
                conn.execute(f'DELETE FROM "{name}" WHERE token = ?', (token.stage,))
            self._flip(conn, table, generation + 1, token.run, rows, served)
        return rows, changed, new

    def _abort(self, token: StageToken) -> None:
        with self._transaction(f"abort the publish of run {token.run_id}") as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{self._staged_prefix}{token.stage}"')
            for name in (self._stages, self._batches, self._stage_changes):
                if self._exists(conn, name):
                    conn.execute(f'DELETE FROM "{name}" WHERE token = ?', (token.stage,))
