"""The tables of the PostgreSQL profile store, as statements on a cursor: a profiles table created and keyed,
the tables of a namespace listed, the change feed's tables, rows copied in (PostgreSQL's binary COPY format,
:mod:`rfmseg.stores.wire`) and a run's history read back. :mod:`rfmseg.stores.postgres` decides when each
runs, in which transaction and under which lock."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from rfmseg.stores.rows import CHANGE_SCHEMA, STATE_SCHEMA, RunInfo, empty_state
from rfmseg.stores.wire import PGCOPY_HEADER, PGCOPY_TRAILER, pgcopy_changes, pgcopy_tuples

COPY_BATCH_ROWS = 100_000


def one(cur: psycopg.Cursor[Any]) -> Any:
    """The first value of the one row a query such as ``SELECT to_regclass(...)`` always answers."""
    row = cur.fetchone()
    assert row is not None  # a SELECT without FROM answers exactly one row
    return row[0]


def tables(cur: psycopg.Cursor[Any], prefix: str) -> list[str]:
    """The tables of the current schema whose name starts with ``prefix``."""
    like = prefix.replace("_", r"\_") + "%"
    rows = cur.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s", (like,)
    ).fetchall()
    return [row[0] for row in rows]


def create_rows_table(cur: psycopg.Cursor[Any], table: str) -> None:
    """A profiles table, without its key (added once the rows are in)."""
    # COLLATE "C": ids compare as bytes, which halves the primary key build against a locale collation
    cur.execute(
        sql.SQL(
            'CREATE TABLE {} (customer_id text COLLATE "C" NOT NULL, segment text NOT NULL, previous_segment text, '
            "segment_since date NOT NULL, recency_days bigint NOT NULL, frequency bigint NOT NULL, "
            "monetary double precision NOT NULL, distance double precision NOT NULL, p_alive double precision, "
            "expected_orders_90d double precision, expected_value_90d double precision)"
        ).format(sql.Identifier(table))
    )


def add_key(cur: psycopg.Cursor[Any], table: str) -> None:
    # building the index once after the load is much cheaper than maintaining it row by row
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (customer_id)").format(sql.Identifier(table)))


def ensure_feed(cur: psycopg.Cursor[Any], feed: sql.Identifier, trim: sql.Identifier) -> None:
    """The change feed (``id``, the cursor, grows in the order publishes commit) and its trim record."""
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            'customer_id text COLLATE "C" NOT NULL, from_segment text, to_segment text, reason text NOT NULL, '
            "segment_reason text, "
            "run_id text NOT NULL, as_of date NOT NULL, model_version text NOT NULL)"
        ).format(feed)
    )
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY CHECK (id = 1), through bigint NOT NULL)"
        ).format(trim)
    )


def copy_in(cur: psycopg.Cursor[Any], table: sql.Identifier, rows: pa.Table, freeze: bool = True) -> None:
    """COPY ``rows`` in, in PostgreSQL's binary format encoded by Arrow and NumPy a batch at a time,
    while a psycopg thread sends the previous batch (binary halves the server's work against CSV).
    ``freeze`` needs a table created in the current transaction."""
    columns = sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
    options = sql.SQL("FORMAT binary, FREEZE true" if freeze else "FORMAT binary")
    query = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(table, columns, options)
    with cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(PGCOPY_HEADER)
        for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
            copy.write(pgcopy_tuples(batch))
        copy.write(PGCOPY_TRAILER)


def copy_changes(cur: psycopg.Cursor[Any], feed: sql.Identifier, changes: pa.Table, run: RunInfo) -> None:
    """COPY ``changes`` (in feed order) into the feed, in the caller's transaction: the identity gives them
    ids in that order."""
    if not changes.num_rows:
        return
    columns = sql.SQL(", ").join(map(sql.Identifier, [*CHANGE_SCHEMA.names, "run_id", "as_of", "model_version"]))
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(feed, columns)
    with cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(PGCOPY_HEADER)
        for batch in changes.to_batches(max_chunksize=COPY_BATCH_ROWS):
            copy.write(pgcopy_changes(batch, run))
        copy.write(PGCOPY_TRAILER)


def served_state(cur: psycopg.Cursor[Any], served: str, assignments: pa.Table) -> pa.Table:
    """The history columns of the served rows of ``assignments``' ids (one lookup of the whole batch)."""
    query = sql.SQL(
        "SELECT customer_id, segment, previous_segment, segment_since FROM {} WHERE customer_id = ANY(%s)"
    ).format(sql.Identifier(served))
    rows = cur.execute(query, (assignments["customer_id"].to_pylist(),)).fetchall()
    if not rows:
        return empty_state()
    columns = zip(*rows, strict=True)
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, STATE_SCHEMA, strict=True)], schema=STATE_SCHEMA)


def read_state_rows(cur: psycopg.Cursor[Any], table: str) -> pa.Table:
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
