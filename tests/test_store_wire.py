"""The stores' hand-written wire encoders (rfmseg.stores.wire), round-tripped: what they encode is compared
byte for byte with what the drivers encode for the same rows, decoded by the driver's parser, and loaded
into the real servers and read back (marked ``services``)."""

from __future__ import annotations

import datetime as dt
import io
import math
import uuid

import pyarrow as pa
import pytest

from rfmseg.stores.rows import ROW_SCHEMA, SEPARATOR
from rfmseg.stores.wire import PGCOPY_HEADER, PGCOPY_TRAILER, hset_commands, packed_profiles, pgcopy_tuples
from test_stores import PG_URL, REDIS_URL

PG_TYPES = ["text", "text", "text", "date", "int8", "int8", "float8", "float8", "float8", "float8", "float8"]


def awkward_rows() -> pa.Table:
    """ROW_SCHEMA rows at the edges of every type: multi-byte and empty-looking text, NULLs, dates on both
    sides of PostgreSQL's epoch, int64 limits, float extremes and signed zero."""
    return pa.table(
        {
            "customer_id": ["C1", "é-ü", "客户-42", "x" * 300, "'\"\\\t\n\r", "🙂", "0"],
            "segment": ["Champions", "At risk", "Новые", "s" * 70, "a,b;c", "🙂 loyal", "z"],
            "previous_segment": [None, "Loyal", None, "p" * 90, "\r\n", None, "q"],
            "segment_since": [
                dt.date(2000, 1, 1),
                dt.date(1999, 12, 31),
                dt.date(1970, 1, 1),
                dt.date(1, 1, 1),
                dt.date(9999, 12, 31),
                dt.date(2024, 2, 29),
                dt.date(2000, 1, 2),
            ],
            "recency_days": [0, -1, 2**63 - 1, -(2**63), 365, 7, 1],
            "frequency": [1, 2**40, 0, 3, -5, 12, 2**31],
            "monetary": [0.1, -0.0, 1.7976931348623157e308, 5e-324, -2.5, 123456.789, math.inf],
            "distance": [0.0, 1e-300, 2.220446049250313e-16, 1 / 3, 0.5, 9.75, -math.inf],
            # the rhythm columns may be NULL (no rhythm model, no dated history)
            "p_alive": [None, 0.5, 1.0, 0.0, None, 1e-9, 0.9999999999999999],
            "expected_orders_90d": [None, 2.25, 0.0, 1 / 7, None, 1e-300, 12.5],
            "expected_value_90d": [None, 1234.5678, -0.0, 5e-324, None, 1.7976931348623157e308, 0.1],
        },
        schema=ROW_SCHEMA,
    )


def batches() -> list[pa.RecordBatch]:
    """The rows as the stores cut them: batches that are slices of one table (non-zero offsets)."""
    return awkward_rows().to_batches(max_chunksize=3)


# --- PostgreSQL COPY binary -----------------------------------------------------------------------------


def ours_pgcopy(parts: list[pa.RecordBatch]) -> bytes:
    return PGCOPY_HEADER + b"".join(bytes(pgcopy_tuples(batch)) for batch in parts) + PGCOPY_TRAILER


@pytest.mark.services
def test_pgcopy_is_what_psycopg_encodes() -> None:
    import psycopg
    from psycopg.copy import Copy, FileWriter

    sink = io.BytesIO()
    with psycopg.connect(PG_URL) as conn, Copy(conn.cursor(), binary=True, writer=FileWriter(sink)) as copy:
        copy.set_types(PG_TYPES)
        for row in awkward_rows().to_pylist():
            copy.write_row(tuple(row.values()))
    assert ours_pgcopy(batches()) == sink.getvalue()


@pytest.mark.services
def test_pgcopy_loads_into_postgresql_and_reads_back() -> None:
    import psycopg
    from psycopg import sql

    rows = awkward_rows()
    table = sql.Identifier(f"t_wire_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(PG_URL) as conn:
        cur = conn.cursor()
        cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} (n serial, customer_id text, segment text, previous_segment text, "
                "segment_since date, recency_days bigint, frequency bigint, monetary float8, distance float8, "
                "p_alive float8, expected_orders_90d float8, expected_value_90d float8)"
            ).format(table)
        )
        columns = sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(table, columns)) as copy:
            copy.write(ours_pgcopy(batches()))
        back = cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY n").format(columns, table)).fetchall()
    expected = [tuple(row.values()) for row in rows.to_pylist()]
    assert back == expected
    signs = [math.copysign(1.0, row[6]) for row in back]
    assert signs == [math.copysign(1.0, row[6]) for row in expected]  # -0.0 stays negative


def test_pgcopy_tuple_layout() -> None:
    """One tuple by hand: field count, then length-prefixed big-endian fields, -1 for NULL."""
    row = awkward_rows().slice(0, 1).to_batches()[0]
    expected = (
        b"\x00\x0b"
        + b"\x00\x00\x00\x02C1"
        + b"\x00\x00\x00\x09Champions"
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x04\x00\x00\x00\x00"  # 2000-01-01 is day 0
        + b"\x00\x00\x00\x08" + (0).to_bytes(8, "big")
        + b"\x00\x00\x00\x08" + (1).to_bytes(8, "big")
        + b"\x00\x00\x00\x08" + bytes.fromhex("3fb999999999999a")  # 0.1
        + b"\x00\x00\x00\x08" + bytes(8)
        + b"\xff\xff\xff\xff" * 3  # no rhythm: three NULLs
    )  # fmt: skip
    assert bytes(pgcopy_tuples(row)) == expected


# --- Redis protocol -------------------------------------------------------------------------------------


def expected_hsets(key: str, parts: list[pa.RecordBatch], per_command: int) -> list[list[bytes]]:
    """The HSET commands as argument lists, built from Python values."""
    commands = []
    for batch in parts:
        ids = batch["customer_id"].to_pylist()
        values = packed_profiles(batch).to_pylist()
        for start in range(0, len(ids), per_command):
            pairs = zip(ids[start : start + per_command], values[start : start + per_command], strict=True)
            commands.append([b"HSET", key.encode(), *(s.encode() for pair in pairs for s in pair)])
    return commands


def test_packed_profiles_are_the_stored_fields() -> None:
    values = packed_profiles(batches()[0]).to_pylist()
    assert values[0] == SEPARATOR.join(["Champions", "", "2000-01-01", "0", "1", "0.1", "0", "", "", ""])
    assert [float(v) for v in values[1].split(SEPARATOR)[7:]] == [0.5, 2.25, 1234.5678]
    assert values[1].split(SEPARATOR)[1:4] == ["Loyal", "1999-12-31", "-1"]
    assert float(values[1].split(SEPARATOR)[5]) == 0.0 and values[1].split(SEPARATOR)[5].startswith("-")


@pytest.mark.parametrize("per_command", [1, 2, 1000])
def test_hset_commands_parse_back_with_hiredis(per_command: int) -> None:
    """hiredis's RESP reader reads our bytes back as the HSETs meant (a command is a RESP array of bulk
    strings, the same grammar as a reply)."""
    hiredis = pytest.importorskip("hiredis")
    reader = hiredis.Reader()
    commands = 0
    for batch in batches():
        encoded, count = hset_commands("ns:v:7", batch, per_command)
        reader.feed(encoded)
        commands += count
    parsed = []
    while (command := reader.gets()) is not False:
        parsed.append(command)
    assert parsed == expected_hsets("ns:v:7", batches(), per_command)
    assert commands == len(parsed)


@pytest.mark.parametrize("per_command", [2, 1000])
def test_hset_commands_are_what_redis_py_packs(per_command: int) -> None:
    from redis.connection import Connection

    conn = Connection()
    ours = b"".join(hset_commands("ns:v:7", batch, per_command)[0] for batch in batches())
    theirs = b"".join(b"".join(conn.pack_command(*c)) for c in expected_hsets("ns:v:7", batches(), per_command))
    assert ours == theirs


@pytest.mark.services
def test_hset_commands_load_into_redis_and_read_back() -> None:
    import redis

    key = f"t_wire:{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(REDIS_URL, single_connection_client=True)
    try:
        conn = client.connection
        replies = []
        for batch in batches():
            data, count = hset_commands(key, batch, 2)
            conn.send_packed_command([data])
            replies += [int(conn.read_response()) for _ in range(count)]
        stored = client.hgetall(key)
        again, count = hset_commands(key, batches()[0], 1000)
        conn.send_packed_command([again])
        assert int(conn.read_response()) == 0 and count == 1  # the same fields again add nothing
    finally:
        client.unlink(key)
        client.close()
    rows = awkward_rows()
    assert sum(replies) == rows.num_rows
    expected = dict(
        zip(rows["customer_id"].to_pylist(), packed_profiles(rows.to_batches()[0]).to_pylist(), strict=True)
    )
    assert {k.decode(): v.decode() for k, v in stored.items()} == expected
