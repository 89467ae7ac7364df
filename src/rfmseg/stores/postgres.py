"""The PostgreSQL profile store (psycopg 3; bulk load with COPY).

Layout for namespace ``ns`` in the connection's current schema: ``ns_profiles_<n>`` holds one run
(customer_id is the primary key, byte-ordered with COLLATE "C"), ``ns_meta`` is a one-row pointer to the
served table with the run's id, as-of date and model version, the view ``ns_current`` joins the two, and
``ns_state`` keeps an Arrow snapshot of the served run's segment history for the next publish. Readers
query only the view, one statement per call, so a batch always comes from one run.

A publish is one transaction on its own connection, serialised per namespace by a transaction-level
advisory lock: read the served history back (the snapshot), compute the new one in Arrow, create
``ns_profiles_<n+1>``, COPY the rows in (PostgreSQL's binary format, encoded by Arrow; FREEZE), add the
primary key, replace the snapshot, point ``ns_meta`` and the view at the new table, commit; then drop the
old table. Until the commit no other session can see the new table; a publish that dies half way rolls
back entirely (its lock goes with its session), and an old table left behind by a publish that died after
its commit is dropped by the next one. The new table is a normal, logged table: an UNLOGGED one would be
emptied by a server crash, and ``SET LOGGED`` afterwards would write it all again.

A staged publish splits the same work over transactions of several processes. Begin (under the lock):
create ``ns_staged_<token>`` (the profiles layout, no key yet) and register it in ``ns_stages`` with the
generation served. Each batch, one transaction of any process: check that the generation is still the
one served and the stage still exists, read the served history of the batch's ids only
(``customer_id = ANY(array)`` on the served table), compute the history in Arrow, COPY the rows in (binary,
without FREEZE: the table is older than the transaction), and insert one row into ``ns_stage_batches``
with the batch's counts and its Arrow history snapshot. Commit (under the lock, one transaction): check the
generation and the row count, rename ``ns_staged_<token>`` to ``ns_profiles_<n+1>``, add the primary key
(which refuses a customer staged twice), write the snapshot from the batches' parts, and the same flip as
a publish. Staged publishes that can no longer commit are dropped after the next flip or begin.

The change feed is ``ns_changes`` (``id bigint GENERATED ALWAYS AS IDENTITY``, the cursor): a publish computes
its changes in Arrow with the history and COPYs them in (binary), in customer id order, in its transaction
and under its lock, so the ids grow in the order publishes commit and a reader never sees a change of a run
that is not served. A staged batch keeps its new and moved customers as an Arrow snapshot in its
``ns_stage_batches`` row; the commit adds those that left (the served snapshot against the staged ids) and
COPYs them all. ``ns_changes_trim`` records how far the feed was trimmed.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from rfmseg.errors import StoreError
from rfmseg.stores.base import (
    ProfileStore,
    StagedBatch,
    StageToken,
    stage_duplicated,
    stage_gone,
    stage_moved,
    stage_short,
)
from rfmseg.stores.postgres_sql import (
    add_key,
    copy_changes,
    copy_in,
    create_rows_table,
    ensure_feed,
    one,
    read_state_rows,
    served_state,
    tables,
)
from rfmseg.stores.rows import (
    PROFILE_FIELDS,
    RHYTHM_COLUMNS,
    RunInfo,
    changes_from_parts,
    changes_parts,
    departed,
    empty_state,
    history_and_changes,
    in_feed_order,
    state_from_parts,
    state_parts,
)
from rfmseg.stores.urls import describe_failure, failed, unreachable
from rfmseg.stores.watchdog import WATCHDOG_GRACE_S, Watchdog

CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "rfmseg-store"
CLEANUP_LOCK_TIMEOUT = "2s"
"""How long dropping a dead staged publish may wait for a lock before it is left to the next publish."""
_T = TypeVar("_T")
_DATE_FIELDS = {PROFILE_FIELDS.index("segment_since"), PROFILE_FIELDS.index("as_of")}


class PostgresStore(ProfileStore):
    """Profiles in PostgreSQL; one instance may be shared by threads (reads are serialised on one
    connection, a publish uses a connection of its own)."""

    backend = "postgresql"

    def __init__(self, url: str, namespace: str | None = None, read_timeout: float | None = None) -> None:
        super().__init__(url, namespace, read_timeout)
        ns = self.namespace
        self._meta = sql.Identifier(f"{ns}_meta")
        self._state = sql.Identifier(f"{ns}_state")
        self._view = sql.Identifier(f"{ns}_current")
        self._prefix = f"{ns}_profiles_"
        self._stages = sql.Identifier(f"{ns}_stages")
        self._batches = sql.Identifier(f"{ns}_stage_batches")
        self._batch_keys = sql.Identifier(f"{ns}_stage_batches_key")
        self._staged_prefix = f"{ns}_staged_"
        self._feed = sql.Identifier(f"{ns}_changes")
        self._feed_trim = sql.Identifier(f"{ns}_changes_trim")
        digest = hashlib.blake2b(f"rfmseg-store:{ns}".encode(), digest_size=8).digest()
        self._lock_id = int.from_bytes(digest, "big", signed=True)
        self._lock = threading.Lock()
        self._watchdog = Watchdog() if self.read_timeout is not None else None
        self._conn = self._reader()
        fields = sql.SQL(", ").join(map(sql.Identifier, PROFILE_FIELDS))
        self._select = sql.SQL("SELECT {} FROM {}").format(fields, self._view)
        legacy = [sql.SQL("NULL::float8") if f in RHYTHM_COLUMNS else sql.Identifier(f) for f in PROFILE_FIELDS]
        self._legacy_select = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(legacy), self._view)
        """a served table that predates the rhythm columns reads them as NULL (until the next publish)"""

    def _connect(self, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            given = conninfo_to_dict(self._url)
            defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APPLICATION_NAME}
            extra: dict[str, Any] = {key: value for key, value in defaults.items() if key not in given}  # URL wins
            conn = psycopg.connect(self._url, autocommit=autocommit, **extra)
            conn.execute("SET DateStyle TO ISO")
        except psycopg.Error as exc:
            raise unreachable(self.url_display, exc, self._secrets) from exc
        return conn

    # --- reads --------------------------------------------------------------------------------------------

    def _reader(self) -> psycopg.Connection[Any]:
        """The connection reads share; with ``read_timeout``, the server cancels a read that waits longer
        (a lock, an overloaded server) and the watchdog cuts one the server never answers."""
        conn = self._connect(autocommit=True)
        if self.read_timeout is not None:
            try:
                conn.execute(sql.SQL("SET statement_timeout = {}").format(int(self.read_timeout * 1000)))
            except psycopg.Error as exc:
                conn.close()
                raise unreachable(self.url_display, exc, self._secrets) from exc
        return conn

    def _read(self, run: Callable[[psycopg.Connection[Any]], _T], default: _T) -> _T:
        """Run a read; ``default`` if nothing was ever published; one reconnect if the connection broke."""
        self._ensure_answering()
        with self._lock:
            for attempt in (1, 2):
                if self._conn.closed:
                    self._conn = self._reader()
                if self._watchdog is not None:
                    self._watchdog.arm(self._conn, (self.read_timeout or 0) + WATCHDOG_GRACE_S)
                try:
                    return run(self._conn)
                except psycopg.errors.UndefinedTable:
                    return default
                except psycopg.errors.QueryCanceled as exc:  # statement_timeout
                    raise self._silent(exc) from exc
                except psycopg.OperationalError as exc:
                    if self._watchdog is not None and self._watchdog.fired:
                        self._conn.close()
                        raise self._silent(exc) from exc
                    if attempt == 2 or not self._conn.closed:
                        raise failed(self.url_display, "read", exc, self._secrets) from exc
                except psycopg.Error as exc:
                    raise failed(self.url_display, "read", exc, self._secrets) from exc
                finally:
                    if self._watchdog is not None:
                        self._watchdog.disarm()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _profile(row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: (value.isoformat() if i in _DATE_FIELDS and isinstance(value, date) else value)
            for i, (name, value) in enumerate(zip(PROFILE_FIELDS, row, strict=True))
        }

    def _profiles(self, where: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The profile rows of the view ``WHERE ...`` (autocommit: nothing to roll back before the legacy one)."""

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            try:
                return conn.execute(sql.SQL("{} WHERE " + where).format(self._select), params).fetchall()
            except psycopg.errors.UndefinedColumn:
                return conn.execute(sql.SQL("{} WHERE " + where).format(self._legacy_select), params).fetchall()

        return self._read(run, [])

    def get(self, customer_id: str) -> dict[str, Any] | None:
        rows = self._profiles("customer_id = %s", (customer_id,))
        return self._profile(rows[0]) if rows else None

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not customer_ids:
            return {}
        rows = self._profiles("customer_id = ANY(%s)", (list(customer_ids),))
        return {row[0]: self._profile(row) for row in rows}

    def current_run(self) -> str | None:
        query = sql.SQL("SELECT run_id FROM {}").format(self._meta)
        row = self._read(lambda conn: conn.execute(query).fetchone(), None)
        return row[0] if row else None

    def count(self) -> int:
        query = sql.SQL("SELECT customers FROM {}").format(self._meta)
        row = self._read(lambda conn: conn.execute(query).fetchone(), None)
        return int(row[0]) if row else 0

    def _changes(self, after: str | None, limit: int) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
        query = sql.SQL(
            "SELECT id::text AS cursor, customer_id, from_segment, to_segment, reason, segment_reason, run_id, "
            "as_of::text AS as_of, model_version FROM {} WHERE id > %s ORDER BY id LIMIT %s"
        ).format(self._feed)
        rows: list[tuple[Any, ...]] = self._read(
            lambda conn: conn.execute(query, (int(after or 0), limit)).fetchall(), []
        )
        # one statement (one snapshot), so a trim in between cannot hide the last change
        ends = sql.SQL("SELECT (SELECT through::text FROM {}), (SELECT max(id)::text FROM {})").format(
            self._feed_trim, self._feed
        )
        row = self._read(lambda conn: conn.execute(ends).fetchone(), None)
        trimmed, last = row if row else (None, None)
        return rows, trimmed, last

    def _trim_changes(self, through: str) -> int:
        try:
            with self._connect(autocommit=False) as conn:
                cur = conn.cursor()
                try:  # made by the first publish; not here, where two sessions could race to make it
                    last = one(cur.execute(sql.SQL("SELECT max(id) FROM {}").format(self._feed)))
                except psycopg.errors.UndefinedTable:
                    last = None
                if last is None or int(through) > last:
                    raise StoreError(
                        f"cursor {through} is past the last change of the feed at {self.url_display} "
                        f"({'empty' if last is None else last}); nothing was trimmed"
                    )
                removed = cur.execute(
                    sql.SQL("DELETE FROM {} WHERE id <= %s").format(self._feed), (int(through),)
                ).rowcount
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET "
                        "through = greatest({}.through, excluded.through)"
                    ).format(self._feed_trim, self._feed_trim),
                    (int(through),),
                )
        except psycopg.Error as exc:
            raise failed(self.url_display, "trim the change feed", exc, self._secrets) from exc
        return int(removed)

    def _drop(self) -> None:
        try:
            with self._connect(autocommit=False) as conn:
                cur = conn.cursor()
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
                names = tables(cur, self._prefix) + tables(cur, self._staged_prefix)
                cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(self._view))
                doomed = [*map(sql.Identifier, names), self._meta, self._state, self._stages, self._batches]
                doomed += [self._feed, self._feed_trim]
                for name in doomed:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        except psycopg.Error as exc:
            raise failed(self.url_display, "drop the store", exc, self._secrets) from exc

    def _close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._watchdog is not None:
                self._watchdog.stop()

    # --- publish ------------------------------------------------------------------------------------------

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        conn = self._connect(autocommit=False)
        try:
            with conn:  # commits on success, rolls back on any exception, then closes
                cur = conn.cursor()
                generation, served = self._lock_pointer(cur)
                state = self._read_state(conn, generation, served) if served else empty_state()
                rows, changed, new, changes = history_and_changes(assignments, state, run.as_of, departures=True)
                table = f"{self._prefix}{generation + 1}"
                create_rows_table(cur, table)
                copy_in(cur, sql.Identifier(table), rows)
                add_key(cur, table)
                copy_changes(cur, self._feed, changes, run)
                cur.execute(sql.SQL("DELETE FROM {}").format(self._state))
                cur.executemany(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %b)").format(self._state),
                    [(generation + 1, part, data) for part, data in enumerate(state_parts(rows))],
                )
                self._flip(cur, table, generation + 1, run, rows.num_rows)
                conn.commit()
                self._after_flip(conn, served, generation + 1)
        except psycopg.Error as exc:
            raise failed(self.url_display, f"publish run {run.run_id}", exc, self._secrets) from exc
        return changed, new

    def _lock_pointer(self, cur: psycopg.Cursor[Any]) -> tuple[int, str | None]:
        """Take the publisher lock for the transaction (one publisher per namespace), make the pointer and
        snapshot tables if missing, drop tables of the profiles prefix the pointer does not name (from an
        older layout or a manual load); (generation, served table)."""
        if cur.connection.info.server_version >= 140000:
            # a publisher killed during a long statement is noticed within a second, releasing its lock
            cur.execute("SET client_connection_check_interval = '1s'")
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute("SET lock_timeout = '30s'")  # never queue readers behind the flip for long
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY CHECK (id = 1), generation bigint NOT NULL, "
                "table_name text NOT NULL, run_id text NOT NULL, as_of date NOT NULL, model_version text NOT NULL, "
                "customers bigint NOT NULL, published_at timestamptz NOT NULL)"
            ).format(self._meta)
        )
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (generation bigint NOT NULL, part integer NOT NULL, "
                "data bytea NOT NULL, PRIMARY KEY (generation, part))"
            ).format(self._state)
        )
        ensure_feed(cur, self._feed, self._feed_trim)
        pointer = cur.execute(sql.SQL("SELECT generation, table_name FROM {}").format(self._meta)).fetchone()
        generation, served = (int(pointer[0]), str(pointer[1])) if pointer else (0, None)
        for name in tables(cur, self._prefix):
            if name != served:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        return generation, served

    def _flip(self, cur: psycopg.Cursor[Any], table: str, generation: int, run: RunInfo, customers: int) -> None:
        """Make the keyed ``table`` the served one, in the caller's transaction (the snapshot is written by
        the caller)."""
        cur.execute(
            sql.SQL(
                "INSERT INTO {} VALUES (1, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "generation = excluded.generation, table_name = excluded.table_name, run_id = excluded.run_id, "
                "as_of = excluded.as_of, model_version = excluded.model_version, customers = excluded.customers, "
                "published_at = excluded.published_at"
            ).format(self._meta),
            (generation, table, run.run_id, run.as_of, run.model_version, customers, datetime.now(UTC)),
        )
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE VIEW {} AS SELECT p.customer_id, p.segment, p.previous_segment, p.segment_since, "
                "p.recency_days, p.frequency, p.monetary, p.distance, m.run_id, m.as_of, m.model_version, "
                # last: CREATE OR REPLACE VIEW adds columns only at the end of a view made before them
                "p.p_alive, p.expected_orders_90d, p.expected_value_90d "
                "FROM {} AS p CROSS JOIN {} AS m"
            ).format(self._view, sql.Identifier(table), self._meta)
        )

    def _after_flip(self, conn: psycopg.Connection[Any], served: str | None, generation: int) -> None:
        """After the commit of a flip: drop the table served before and the staged publishes that can no
        longer commit (best effort: what is left is dropped by the next publish)."""
        try:
            conn.autocommit = True
        except psycopg.Error as exc:  # the connection broke after the commit: the new run is served
            self._kept(f"the previous table {served}" if served else "any staged table", exc)
            return
        if served:
            self._drop_old(conn, served)
        self._drop_doomed_stages(conn, generation)

    def _drop_old(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Drop the table served before the flip, once the readers still on it are done.

        It runs after the commit, so a long query on the old table cannot hold readers of the new run
        behind the publish; if it does not finish in time the table is kept and the next publish drops it.
        """
        try:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        except psycopg.Error as exc:  # the new run is served already: report, do not fail the publish
            self._kept(f"the previous table {table}", exc)

    def _kept(self, what: str, exc: psycopg.Error) -> None:
        warnings.warn(
            f"{self.url_display}: {what} was kept ({describe_failure(exc, self._secrets)}); the next publish drops it",
            RuntimeWarning,
            stacklevel=5,
        )

    # --- staged publish -----------------------------------------------------------------------------------

    def _drop_doomed_stages(self, conn: psycopg.Connection[Any], generation: int) -> None:
        """Drop the staged publishes that began on another generation, each in a transaction of its own
        (``conn`` is in autocommit); one whose table a worker still holds is left to the next publish."""
        doomed: list[tuple[str]] = []
        try:
            if one(conn.execute("SELECT to_regclass(%s)", (f"{self.namespace}_stages",))) is None:
                return
            doomed = conn.execute(
                sql.SQL("SELECT token FROM {} WHERE generation <> %s").format(self._stages), (generation,)
            ).fetchall()
            conn.execute(f"SET lock_timeout = '{CLEANUP_LOCK_TIMEOUT}'")
        except psycopg.Error as exc:
            self._kept(f"any staged table {self._staged_prefix}*", exc)
        for (token,) in doomed:
            try:
                with conn.transaction():
                    self._remove_stage(conn.cursor(), token)
            except psycopg.Error as exc:
                self._kept(f"the staged table {self._staged_prefix}{token}", exc)

    def _remove_stage(self, cur: psycopg.Cursor[Any], token: str) -> None:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"{self._staged_prefix}{token}")))
        cur.execute(sql.SQL("DELETE FROM {} WHERE token = %s").format(self._batches), (token,))
        cur.execute(sql.SQL("DELETE FROM {} WHERE token = %s").format(self._stages), (token,))

    def _begin(self, run: RunInfo) -> StageToken:
        stage = uuid.uuid4().hex[:12]
        conn = self._connect(autocommit=False)
        try:
            with conn:
                cur = conn.cursor()
                generation, served = self._lock_pointer(cur)
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (token text PRIMARY KEY, generation bigint NOT NULL, "
                        "run_id text NOT NULL, created timestamptz NOT NULL)"
                    ).format(self._stages)
                )
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (token text NOT NULL, batch bigint GENERATED ALWAYS AS "
                        "IDENTITY, rows bigint NOT NULL, changed bigint NOT NULL, new bigint NOT NULL, "
                        "state bytea NOT NULL, batch_key text, changes bytea, PRIMARY KEY (token, batch))"
                    ).format(self._batches)
                )
                # a table made by a version without batch keys or the feed gets the column; NULL keys never collide
                cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS batch_key text").format(self._batches))
                cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS changes bytea").format(self._batches))
                cur.execute(
                    sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (token, batch_key)").format(
                        self._batch_keys, self._batches
                    )
                )
                create_rows_table(cur, f"{self._staged_prefix}{stage}")
                cur.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(self._stages),
                    (stage, generation, run.run_id, datetime.now(UTC)),
                )
                conn.commit()
                conn.autocommit = True
                self._drop_doomed_stages(conn, generation)
        except psycopg.Error as exc:
            raise failed(self.url_display, f"begin the publish of run {run.run_id}", exc, self._secrets) from exc
        return StageToken(
            self._url, self.namespace, stage, generation, served, run.run_id, run.as_of, run.model_version
        )

    def _check_stage(self, cur: psycopg.Cursor[Any], token: StageToken) -> None:
        """Refuse (StoreError) unless ``token``'s publish is registered and began on the served generation."""
        pointer = cur.execute(sql.SQL("SELECT generation, run_id FROM {}").format(self._meta)).fetchone()
        generation, current_run = (int(pointer[0]), str(pointer[1])) if pointer else (0, None)
        if generation != token.generation:
            raise stage_moved(token, self.url_display, current_run)
        found = cur.execute(sql.SQL("SELECT 1 FROM {} WHERE token = %s").format(self._stages), (token.stage,))
        if found.fetchone() is None:
            raise stage_gone(token, self.url_display)

    def _stage(self, token: StageToken, assignments: pa.Table, key: str | None) -> StagedBatch:
        try:
            try:
                return self._stage_once(token, assignments, key)
            except psycopg.errors.UniqueViolation:
                if key is None:
                    raise
                # another attempt of this batch committed it meanwhile (this one's rows were rolled back)
                return self._stage_once(token, assignments, key)
        except psycopg.errors.UndefinedTable:  # the store was dropped, or the stage removed under the batch
            raise stage_gone(token, self.url_display) from None
        except psycopg.Error as exc:
            raise failed(self.url_display, f"stage a batch of run {token.run_id}", exc, self._secrets) from exc

    def _stage_once(self, token: StageToken, assignments: pa.Table, key: str | None) -> StagedBatch:
        """One transaction: the recorded figures of ``key``'s batch, or the batch written and recorded."""
        with self._connect(autocommit=False) as conn:
            cur = conn.cursor()
            if conn.info.server_version >= 140000:
                cur.execute("SET client_connection_check_interval = '1s'")
            self._check_stage(cur, token)
            done = self._staged_batch(cur, token, key)
            if done is not None:
                return done
            state = served_state(cur, token.served, assignments) if token.served else empty_state()
            # the batch's new and moved customers; those that left are known at the commit only
            rows, changed, new, changes = history_and_changes(assignments, state, token.as_of, departures=False)
            copy_in(cur, sql.Identifier(f"{self._staged_prefix}{token.stage}"), rows, freeze=False)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (token, rows, changed, new, state, changes, batch_key) "
                    "VALUES (%s, %s, %s, %s, %b, %b, %s)"
                ).format(self._batches),
                (
                    token.stage,
                    rows.num_rows,
                    changed,
                    new,
                    b"".join(state_parts(rows)),
                    b"".join(changes_parts(changes)),
                    key,
                ),
            )
        return StagedBatch(rows.num_rows, changed, new)

    def _staged_batch(self, cur: psycopg.Cursor[Any], token: StageToken, key: str | None) -> StagedBatch | None:
        """The figures of the batch staged under ``key`` (``repeated``), or None if there is none."""
        if key is None:
            return None
        found = cur.execute(
            sql.SQL("SELECT rows, changed, new FROM {} WHERE token = %s AND batch_key = %s").format(self._batches),
            (token.stage, key),
        ).fetchone()
        return None if found is None else StagedBatch(int(found[0]), int(found[1]), int(found[2]), repeated=True)

    def _commit(self, token: StageToken, expected_rows: int) -> tuple[int, int, int]:
        conn = self._connect(autocommit=False)
        try:
            with conn:
                cur = conn.cursor()
                generation, served = self._lock_pointer(cur)
                self._check_stage(cur, token)
                table = f"{self._prefix}{generation + 1}"
                staged = sql.Identifier(f"{self._staged_prefix}{token.stage}")
                # renamed first: its exclusive lock waits for a batch still being written, which is then counted
                cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(staged, sql.Identifier(table)))
                try:
                    add_key(cur, table)
                except psycopg.errors.UniqueViolation as exc:
                    detail = (exc.diag.message_detail or "a customer id is duplicated").removesuffix(".")
                    raise stage_duplicated(token, self.url_display, detail) from None
                totals = cur.execute(
                    sql.SQL(
                        "SELECT coalesce(sum(rows), 0), coalesce(sum(changed), 0), coalesce(sum(new), 0) FROM {} "
                        "WHERE token = %s"
                    ).format(self._batches),
                    (token.stage,),
                ).fetchone()
                assert totals is not None  # an aggregate without GROUP BY always answers one row
                rows, changed, new = totals
                if rows != expected_rows:
                    raise stage_short(token, self.url_display, int(rows), expected_rows)
                copy_changes(cur, self._feed, self._staged_changes(conn, token, generation, served), token.run)
                # the snapshot is the batches' parts, one Arrow stream each, in the order they were staged
                cur.execute(sql.SQL("DELETE FROM {}").format(self._state))
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT %s, (row_number() OVER (ORDER BY batch))::integer - 1, state "
                        "FROM {} WHERE token = %s"
                    ).format(self._state, self._batches),
                    (generation + 1, token.stage),
                )
                self._flip(cur, table, generation + 1, token.run, int(rows))
                cur.execute(sql.SQL("DELETE FROM {} WHERE token = %s").format(self._batches), (token.stage,))
                cur.execute(sql.SQL("DELETE FROM {} WHERE token = %s").format(self._stages), (token.stage,))
                conn.commit()
                self._after_flip(conn, served, generation + 1)
        except psycopg.errors.UndefinedTable:  # the store was dropped since the begin
            raise stage_gone(token, self.url_display) from None
        except psycopg.Error as exc:
            raise failed(self.url_display, f"publish run {token.run_id}", exc, self._secrets) from exc
        return int(rows), int(changed), int(new)

    def _staged_changes(
        self, conn: psycopg.Connection[Any], token: StageToken, generation: int, served: str | None
    ) -> pa.Table:
        """The changes of a staged publish at its commit: the batches' new and moved customers, and the
        served customers no batch staged (read before the snapshot is replaced)."""
        cur = conn.cursor(binary=True)
        query = sql.SQL("SELECT state, changes FROM {} WHERE token = %s ORDER BY batch").format(self._batches)
        found = cur.execute(query, (token.stage,)).fetchall()
        arrived = changes_from_parts([bytes(row[1]) for row in found if row[1] is not None])
        if served is None:
            return in_feed_order([arrived])
        staged_ids = state_from_parts([bytes(row[0]) for row in found])["customer_id"]
        return in_feed_order([arrived, departed(self._read_state(conn, generation, served), staged_ids)])

    def _abort(self, token: StageToken) -> None:
        try:
            with self._connect(autocommit=False) as conn:
                cur = conn.cursor()
                cur.execute("SET lock_timeout = '30s'")
                if one(cur.execute("SELECT to_regclass(%s)", (f"{self.namespace}_stages",))) is not None:
                    self._remove_stage(cur, token.stage)
        except psycopg.Error as exc:
            raise failed(self.url_display, f"abort the publish of run {token.run_id}", exc, self._secrets) from exc

    def _read_state(self, conn: psycopg.Connection[Any], generation: int, table: str) -> pa.Table:
        """customer_id, segment, previous_segment and segment_since of the served run: from the Arrow
        snapshot stored with it, or (for a run published without one) from the table itself."""
        cur = conn.cursor(binary=True)
        query = sql.SQL("SELECT data FROM {} WHERE generation = %s ORDER BY part").format(self._state)
        parts = [bytes(row[0]) for row in cur.execute(query, (generation,)).fetchall()]
        return state_from_parts(parts) if parts else read_state_rows(conn.cursor(), table)
