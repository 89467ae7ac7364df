"""How the Redis store writes a publish: HSETs of the packed profiles and RPUSHes of the changes, encoded to
the Redis protocol by Arrow (:mod:`rfmseg.stores.wire`, 4-7x faster than redis-py pipelines with hiredis:
docs/stores.md) and streamed on one connection a batch at a time, the replies of one batch read while Redis
works on the next, each batch renewing the publisher's lock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import redis

from rfmseg.errors import StoreError
from rfmseg.stores.wire import hset_commands, rpush_changes

FIELDS_PER_HSET = 1_000
WRITE_BATCH_ROWS = 50_000
LOCK_TTL_MS = 60_000
"""the publisher lock's time to live, renewed by every batch written"""
CHANGES_PER_RPUSH = 1_000


def text(value: bytes | str) -> str:
    """A reply as text: the store's clients answer bytes (``decode_responses`` is off, so that the state's
    Parquet parts stay bytes); redis-py's types also allow str."""
    return value.decode() if isinstance(value, bytes) else value


def raw(value: bytes | str) -> bytes:
    """A reply as the bytes it is (see :func:`text`)."""
    return value if isinstance(value, bytes) else value.encode()


def _connection(holder: redis.Redis) -> Any:
    conn = holder.connection
    if conn is None:  # pragma: no cover - a single-connection client always has one
        raise StoreError("the publish needs a single-connection Redis client")
    return conn


def write_hash(holder: redis.Redis, key: str, rows: pa.Table, lock_key: str | None) -> int:
    """HSET every packed profile into ``key``, FIELDS_PER_HSET fields per command, on ``holder``'s one
    connection; the number of fields added (fewer than the rows if some were in ``key`` already). With a
    ``lock_key`` each batch also renews that lock."""
    conn = _connection(holder)
    batches = rows.to_batches(max_chunksize=WRITE_BATCH_ROWS)
    try:
        return stream(conn, (hset_commands(key, batch, FIELDS_PER_HSET) for batch in batches), lock_key)
    except BaseException:
        conn.disconnect()  # replies may be left unread: start the next command on a fresh connection
        raise


def write_changes(holder: redis.Redis, key: str, changes: pa.Table, lock_key: str) -> None:
    """RPUSH ``changes`` (in feed order) to ``<key>:changes``, the list the flip appends to the feed."""
    conn = _connection(holder)
    target = f"{key}:changes"
    holder.delete(target)
    batches = changes.to_batches(max_chunksize=WRITE_BATCH_ROWS)
    try:
        stream(conn, (rpush_changes(target, batch, CHANGES_PER_RPUSH) for batch in batches), lock_key)
    except BaseException:
        conn.disconnect()
        raise


def stream(conn: Any, commands: Iterator[tuple[bytes, int]], lock_key: str | None) -> int:
    """Send each (RESP, number of commands) of ``commands`` followed by a renewal of ``lock_key`` (a PING
    without one), reading the replies of one while Redis works on the next; the sum of the integer replies."""
    # a PING when there is no lock to renew keeps one extra reply per batch either way
    renew = ("PEXPIRE", lock_key, LOCK_TTL_MS) if lock_key is not None else ("PING",)
    expire = b"".join(conn.pack_command(*renew))
    written, pending = 0, 0
    for packed, count in commands:
        conn.send_packed_command([packed, expire], check_health=False)  # the PEXPIRE keeps the lock
        written += _read_replies(conn, pending)
        pending = count
    return written + _read_replies(conn, pending)


def _read_replies(conn: Any, commands: int) -> int:
    """Read the replies of one batch (``commands`` writes, then PEXPIRE or PING); their integer sum."""
    if not commands:
        return 0
    added = sum(int(conn.read_response()) for _ in range(commands))
    conn.read_response()
    return added
