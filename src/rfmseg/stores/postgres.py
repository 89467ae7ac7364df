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
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.copy import QueuedLibpqWriter

from rfmseg.stores.base import (
    PROFILE_FIELDS,
    STATE_SCHEMA,
    ProfileStore,
    RunInfo,
    apply_history,
    describe_failure,
    empty_state,
    failed,
    state_from_parts,
    state_parts,
    unreachable,
)

CONNECT_TIMEOUT_S = 5
APPLICATION_NAME = "rfmseg-store"
COPY_BATCH_ROWS = 100_000
_T = TypeVar("_T")
_DATE_FIELDS = {PROFILE_FIELDS.index("segment_since"), PROFILE_FIELDS.index("as_of")}


class PostgresStore(ProfileStore):
    """Profiles in PostgreSQL; one instance may be shared by threads (reads are serialised on one
    connection, a publish uses a connection of its own)."""

    backend = "postgresql"

    def __init__(self, url: str, namespace: str | None = None) -> None:
        super().__init__(url, namespace)
        ns = self.namespace
        self._meta = sql.Identifier(f"{ns}_meta")
        self._state = sql.Identifier(f"{ns}_state")
        self._view = sql.Identifier(f"{ns}_current")
        self._prefix = f"{ns}_profiles_"
        digest = hashlib.blake2b(f"rfmseg-store:{ns}".encode(), digest_size=8).digest()
        self._lock_id = int.from_bytes(digest, "big", signed=True)
        self._lock = threading.Lock()
        self._conn = self._connect(autocommit=True)
        fields = sql.SQL(", ").join(map(sql.Identifier, PROFILE_FIELDS))
        self._select = sql.SQL("SELECT {} FROM {}").format(fields, self._view)

    def _connect(self, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            given = conninfo_to_dict(self._url)
            defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APPLICATION_NAME}
            extra = {key: value for key, value in defaults.items() if key not in given}  # the URL wins
            conn = psycopg.connect(self._url, autocommit=autocommit, **extra)
            conn.execute("SET DateStyle TO ISO")
        except psycopg.Error as exc:
            raise unreachable(self.url_display, exc, self._secrets) from exc
        return conn

    # --- reads --------------------------------------------------------------------------------------------

    def _read(self, run: Callable[[psycopg.Connection[Any]], _T], default: _T) -> _T:
        """Run a read; ``default`` if nothing was ever published; one reconnect if the connection broke."""
        self._ensure_open()
        with self._lock:
            for attempt in (1, 2):
                if self._conn.closed:
                    self._conn = self._connect(autocommit=True)
                try:
                    return run(self._conn)
                except psycopg.errors.UndefinedTable:
                    return default
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not self._conn.closed:
                        raise failed(self.url_display, "read", exc, self._secrets) from exc
                except psycopg.Error as exc:
                    raise failed(self.url_display, "read", exc, self._secrets) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _profile(row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: (value.isoformat() if i in _DATE_FIELDS and isinstance(value, date) else value)
            for i, (name, value) in enumerate(zip(PROFILE_FIELDS, row, strict=True))
        }

    def get(self, customer_id: str) -> dict[str, Any] | None:
        query = sql.SQL("{} WHERE customer_id = %s").format(self._select)
        row = self._read(lambda conn: conn.execute(query, (customer_id,)).fetchone(), None)
        return self._profile(row) if row else None

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not customer_ids:
            return {}
        query = sql.SQL("{} WHERE customer_id = ANY(%s)").format(self._select)
        rows = self._read(lambda conn: conn.execute(query, (list(customer_ids),)).fetchall(), [])
        return {row[0]: self._profile(row) for row in rows}

    def current_run(self) -> str | None:
        query = sql.SQL("SELECT run_id FROM {}").format(self._meta)
        row = self._read(lambda conn: conn.execute(query).fetchone(), None)
        return row[0] if row else None

    def count(self) -> int:
        query = sql.SQL("SELECT customers FROM {}").format(self._meta)
        row = self._read(lambda conn: conn.execute(query).fetchone(), None)
        return int(row[0]) if row else 0

    def _drop(self) -> None:
        try:
            with self._connect(autocommit=False) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))
                like = self._prefix.replace("_", r"\_") + "%"
                names = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s",
                    (like,),
                ).fetchall()
                conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(self._view))
                for name in [*(sql.Identifier(row[0]) for row in names), self._meta, self._state]:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        except psycopg.Error as exc:
            raise failed(self.url_display, "drop the store", exc, self._secrets) from exc

    def _close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- publish ------------------------------------------------------------------------------------------

    def _publish(self, assignments: pa.Table, run: RunInfo) -> tuple[int, int]:
        conn = self._connect(autocommit=False)
        try:
            with conn:  # commits on success, rolls back on any exception, then closes
                changed, new, served = self._load_and_flip(conn, assignments, run)
                conn.commit()
                if served:
                    self._drop_old(conn, served)
        except psycopg.Error as exc:
            raise failed(self.url_display, f"publish run {run.run_id}", exc, self._secrets) from exc
        return changed, new

    def _drop_old(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Drop the table served before the flip, once the readers still on it are done.

        It runs after the commit, so a long query on the old table cannot hold readers of the new run
        behind the publish; if it does not finish in time the table is kept and the next publish drops it.
        """
        conn.autocommit = True
        try:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        except psycopg.Error as exc:  # the new run is served already: report, do not fail the publish
            warnings.warn(
                f"{self.url_display}: the previous table {table} was kept "
                f"({describe_failure(exc, self._secrets)}); the next publish drops it",
                RuntimeWarning,
                stacklevel=4,
            )

    def _load_and_flip(
        self, conn: psycopg.Connection[Any], assignments: pa.Table, run: RunInfo
    ) -> tuple[int, int, str | None]:
        """Everything up to the flip, in the caller's transaction; returns (changed, new, old table)."""
        cur = conn.cursor()
        if conn.info.server_version >= 140000:
            # a publisher killed during a long statement is noticed within a second, releasing its lock
            cur.execute("SET client_connection_check_interval = '1s'")
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute("SET lock_timeout = '30s'")  # never queue readers behind the flip for long
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_id,))  # one publisher per namespace
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
        pointer = cur.execute(sql.SQL("SELECT generation, table_name FROM {}").format(self._meta)).fetchone()
        generation, served = (int(pointer[0]), str(pointer[1])) if pointer else (0, None)

        # tables no pointer refers to (from an older layout or a manual load) are dropped first
        like = self._prefix.replace("_", r"\_") + "%"
        stale = cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s", (like,)
        ).fetchall()
        for (name,) in stale:
            if name != served:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))

        state = self._read_state(conn, generation, served) if served else empty_state()
        rows, changed, new = apply_history(assignments, state, run.as_of)

        table = sql.Identifier(f"{self._prefix}{generation + 1}")
        # COLLATE "C": ids compare as bytes, which halves the primary key build against a locale collation
        cur.execute(
            sql.SQL(
                'CREATE TABLE {} (customer_id text COLLATE "C" NOT NULL, segment text NOT NULL, previous_segment text, '
                "segment_since date NOT NULL, recency_days bigint NOT NULL, frequency bigint NOT NULL, "
                "monetary double precision NOT NULL, distance double precision NOT NULL)"
            ).format(table)
        )
        self._copy_in(cur, table, rows)
        # building the index once after the load is much cheaper than maintaining it row by row
        cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (customer_id)").format(table))
        cur.execute(sql.SQL("DELETE FROM {}").format(self._state))
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %b)").format(self._state),
            [(generation + 1, part, data) for part, data in enumerate(state_parts(rows))],
        )

        cur.execute(
            sql.SQL(
                "INSERT INTO {} VALUES (1, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "generation = excluded.generation, table_name = excluded.table_name, run_id = excluded.run_id, "
                "as_of = excluded.as_of, model_version = excluded.model_version, customers = excluded.customers, "
                "published_at = excluded.published_at"
            ).format(self._meta),
            (
                generation + 1,
                f"{self._prefix}{generation + 1}",
                run.run_id,
                run.as_of,
                run.model_version,
                rows.num_rows,
                datetime.now(UTC),
            ),
        )
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE VIEW {} AS SELECT p.customer_id, p.segment, p.previous_segment, p.segment_since, "
                "p.recency_days, p.frequency, p.monetary, p.distance, m.run_id, m.as_of, m.model_version "
                "FROM {} AS p CROSS JOIN {} AS m"
            ).format(self._view, table, self._meta)
        )
        return changed, new, served

    def _read_state(self, conn: psycopg.Connection[Any], generation: int, table: str) -> pa.Table:
        """customer_id, segment, previous_segment and segment_since of the served run: from the Arrow
        snapshot stored with it, or (for a run published without one) from the table itself."""
        cur = conn.cursor(binary=True)
        query = sql.SQL("SELECT data FROM {} WHERE generation = %s ORDER BY part").format(self._state)
        parts = [bytes(row[0]) for row in cur.execute(query, (generation,)).fetchall()]
        return state_from_parts(parts) if parts else self._read_state_rows(conn.cursor(), table)

    @staticmethod
    def _read_state_rows(cur: psycopg.Cursor[Any], table: str) -> pa.Table:
        """The state columns of ``table`` via COPY TO as CSV (slower: every row goes through Python)."""
        query = sql.SQL(
            "COPY (SELECT customer_id, segment, previous_segment, segment_since FROM {}) TO STDOUT (FORMAT csv)"
        ).format(sql.Identifier(table))
        buffer = bytearray()
        with cur.copy(query) as copy:
            for chunk in copy:
                buffer += chunk
        if not buffer:
            return empty_state()
        return (
            pcsv.read_csv(
                io.BytesIO(buffer),
                read_options=pcsv.ReadOptions(column_names=STATE_SCHEMA.names, block_size=16 << 20),
                parse_options=pcsv.ParseOptions(newlines_in_values=True),
                # PostgreSQL writes NULL as an unquoted empty field and '' as ""
                convert_options=pcsv.ConvertOptions(
                    column_types=STATE_SCHEMA,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    null_values=[""],
                ),
            )
            .select(STATE_SCHEMA.names)
            .cast(STATE_SCHEMA)
        )

    @staticmethod
    def _copy_in(cur: psycopg.Cursor[Any], table: sql.Identifier, rows: pa.Table) -> None:
        """COPY ``rows`` in, in PostgreSQL's binary format encoded by Arrow and NumPy a batch at a time,
        while a psycopg thread sends the previous batch (binary halves the server's work against CSV)."""
        columns = sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary, FREEZE true)").format(table, columns)
        with cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
            copy.write(_COPY_HEADER)
            for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                copy.write(_binary_rows(batch))
            copy.write(_COPY_TRAILER)


# --- COPY binary encoding -------------------------------------------------------------------------------
# A tuple is an int16 field count, then per field an int32 byte length (-1 for NULL) and the value in
# network byte order: text as UTF-8, date as int32 days since 2000-01-01, bigint and float8 as 8 bytes.

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = (date(2000, 1, 1) - date(1970, 1, 1)).days


def _fixed_width(values: np.ndarray, dtype: str, with_length: bool = True) -> pa.Array:
    """Each value big-endian, after its int32 length when ``with_length``."""
    size = np.dtype(dtype).itemsize
    if with_length:
        record = np.empty(len(values), dtype=[("length", ">i4"), ("value", dtype)])
        record["length"], record["value"] = size, values
    else:
        record = np.ascontiguousarray(values, dtype=dtype)
    width = record.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(record)])
    return fixed.cast(pa.large_binary())


def _text_field(column: pa.Array) -> pa.Array:
    data = pc.cast(column, pa.large_binary())
    lengths = pc.fill_null(pc.binary_length(data), 0).to_numpy(zero_copy_only=False)
    separator = pa.scalar(b"", pa.large_binary())
    field = pc.binary_join_element_wise(
        _fixed_width(lengths, ">i4", with_length=False), pc.fill_null(data, separator), separator
    )
    if data.null_count:
        field = pc.if_else(pc.is_valid(data), field, pa.scalar(b"\xff\xff\xff\xff", pa.large_binary()))
    return field


def _binary_rows(batch: pa.RecordBatch) -> memoryview:
    """The COPY binary tuples of a :data:`~rfmseg.stores.base.ROW_SCHEMA` batch, as one buffer."""
    days = pc.cast(batch["segment_since"], pa.int32()).to_numpy(zero_copy_only=False) - _PG_EPOCH_DAYS
    tuples = pc.binary_join_element_wise(
        pa.scalar(len(batch.schema).to_bytes(2, "big"), pa.large_binary()),
        _text_field(batch["customer_id"]),
        _text_field(batch["segment"]),
        _text_field(batch["previous_segment"]),
        _fixed_width(days, ">i4"),
        _fixed_width(batch["recency_days"].to_numpy(zero_copy_only=False), ">i8"),
        _fixed_width(batch["frequency"].to_numpy(zero_copy_only=False), ">i8"),
        _fixed_width(batch["monetary"].to_numpy(zero_copy_only=False), ">f8"),
        _fixed_width(batch["distance"].to_numpy(zero_copy_only=False), ">f8"),
        pa.scalar(b"", pa.large_binary()),
    )
    _validity, offsets, data = tuples.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64, count=len(tuples) + 1, offset=8 * tuples.offset)
    return memoryview(data)[int(bounds[0]) : int(bounds[-1])]
