"""The two database wire formats the stores encode themselves, from Arrow, a batch of rows at a time:
PostgreSQL's binary COPY tuples and the Redis protocol (RESP) of HSET commands.

The drivers encode both too (psycopg's ``Copy.write_row``, redis-py's pipelines), but row by row in
Python; these encoders are kept because they encode the store's rows 3.6-8.7x (COPY) and 4.6-7.3x (HSET)
faster than the drivers (measured side by side by ``bench/bench_store_encoders.py``, figures in
docs/stores.md). Each is checked against the server and the driver by tests/test_store_wire.py.

Both take a :data:`~rfmseg.stores.rows.ROW_SCHEMA` batch (ids and segments are valid UTF-8, checked by
:func:`~rfmseg.stores.rows.prepare_assignments`). The change feed's rows (:data:`~rfmseg.stores.rows.CHANGE_SCHEMA`)
go the same ways: COPY tuples (:func:`pgcopy_changes`) and the RESP of the RPUSHes that hand them to the
Redis flip script (:func:`rpush_changes`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.stores.rows import RHYTHM_COLUMNS, SEPARATOR, RunInfo

# --- PostgreSQL COPY binary -------------------------------------------------------------------------------
# A tuple is an int16 field count, then per field an int32 byte length (-1 for NULL) and the value in
# network byte order: text as UTF-8, date as int32 days since 2000-01-01, bigint and float8 as 8 bytes.

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
"""What a COPY ... (FORMAT binary) stream starts with."""
PGCOPY_TRAILER = b"\xff\xff"
"""What it ends with (a field count of -1)."""
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


def _nullable_float8(column: pa.Array) -> pa.Array:
    """A float8 field that may be NULL (length -1, no value)."""
    field = _fixed_width(pc.fill_null(column, 0.0).to_numpy(zero_copy_only=False), ">f8")
    if column.null_count:
        field = pc.if_else(pc.is_valid(column), field, pa.scalar(b"\xff\xff\xff\xff", pa.large_binary()))
    return field


def pgcopy_tuples(batch: pa.RecordBatch) -> memoryview:
    """The COPY binary tuples of a ROW_SCHEMA batch, as one buffer (without header and trailer)."""
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
        *(_nullable_float8(batch[c]) for c in RHYTHM_COLUMNS),
        pa.scalar(b"", pa.large_binary()),
    )
    return _joined(tuples)


def pgcopy_changes(batch: pa.RecordBatch, run: RunInfo) -> memoryview:
    """The COPY binary tuples of a CHANGE_SCHEMA batch followed by the run's run_id, as_of and
    model_version (the columns of the feed table but its id)."""
    constant = b"".join(
        [
            _text_bytes(run.run_id),
            (4).to_bytes(4, "big") + ((run.as_of - date(2000, 1, 1)).days).to_bytes(4, "big", signed=True),
            _text_bytes(run.model_version),
        ]
    )
    tuples = pc.binary_join_element_wise(
        pa.scalar((len(batch.schema) + 3).to_bytes(2, "big"), pa.large_binary()),
        *(_text_field(batch[name]) for name in batch.schema.names),
        pa.scalar(constant, pa.large_binary()),
        pa.scalar(b"", pa.large_binary()),
    )
    return _joined(tuples)


def _text_bytes(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(4, "big") + data


# --- Redis protocol ---------------------------------------------------------------------------------------


def packed_profiles(batch: pa.RecordBatch) -> pa.Array:
    """Each row's profile as the Redis store keeps it: ``segment, previous_segment (empty for none),
    segment_since, recency_days, frequency, monetary, distance, p_alive, expected_orders_90d,
    expected_value_90d`` (the last three empty for none) as text joined by :data:`SEPARATOR`."""
    return pc.binary_join_element_wise(
        batch["segment"],
        pc.fill_null(batch["previous_segment"], ""),
        pc.cast(batch["segment_since"], pa.string()),
        pc.cast(batch["recency_days"], pa.string()),
        pc.cast(batch["frequency"], pa.string()),
        pc.cast(batch["monetary"], pa.string()),
        pc.cast(batch["distance"], pa.string()),
        *(pc.fill_null(pc.cast(batch[c], pa.string()), "") for c in RHYTHM_COLUMNS),
        SEPARATOR,
    )


def resp_bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def hset_commands(key: str, batch: pa.RecordBatch, fields_per_command: int) -> tuple[bytes, int]:
    """The RESP of the HSETs that write every row of ``batch`` into the hash ``key`` (field: customer id,
    value: :func:`packed_profiles`), ``fields_per_command`` fields per HSET; (bytes, number of HSETs)."""
    ids = batch["customer_id"]
    packed = packed_profiles(batch)
    pairs = pc.binary_join_element_wise(
        "$",
        pc.cast(pc.binary_length(ids), pa.string()),
        "\r\n",
        ids,
        "\r\n$",
        pc.cast(pc.binary_length(packed), pa.string()),
        "\r\n",
        packed,
        "\r\n",
        "",
    )
    return _commands(b"HSET", key, pairs, 2, fields_per_command)


CHANGE_VALUES = 5
"""Values per change in the list the Redis flip script turns into stream entries: customer_id, from_segment,
to_segment, reason, segment_reason (NULL as the empty string; segments are never empty)."""


def rpush_changes(key: str, batch: pa.RecordBatch, changes_per_command: int) -> tuple[bytes, int]:
    """The RESP of the RPUSHes that append the :data:`CHANGE_VALUES` values of every change of a
    CHANGE_SCHEMA ``batch`` to the list ``key``, ``changes_per_command`` changes per RPUSH; (bytes, number
    of RPUSHes)."""
    bulks = []
    for name in batch.schema.names:
        value = pc.fill_null(batch[name], "")
        bulks += ["$", pc.cast(pc.binary_length(value), pa.string()), "\r\n", value, "\r\n"]
    return _commands(b"RPUSH", key, pc.binary_join_element_wise(*bulks, ""), CHANGE_VALUES, changes_per_command)


def _commands(verb: bytes, key: str, items: pa.Array, values_per_item: int, per_command: int) -> tuple[bytes, int]:
    """RESP commands ``VERB key <item> <item> ...``, ``per_command`` items each, where every item is already the
    RESP of its ``values_per_item`` bulk strings; (bytes, number of commands). The items are sliced out of one
    Arrow buffer, not copied one by one."""
    items = pc.cast(items, pa.large_binary())
    _validity, offsets, data = items.buffers()
    starts = np.frombuffer(offsets, dtype=np.int64, count=len(items) + 1, offset=8 * items.offset)
    view = memoryview(data)
    head = b"*%%d\r\n$%d\r\n%s\r\n" % (len(verb), verb)
    key_bulk = resp_bulk(key.encode())
    chunks: list[bytes | memoryview] = []
    for start in range(0, len(items), per_command):
        stop = min(start + per_command, len(items))
        chunks += [head % (2 + values_per_item * (stop - start)), key_bulk, view[starts[start] : starts[stop]]]
    return b"".join(chunks), -(-len(items) // per_command)


def _joined(values: pa.Array) -> memoryview:
    """The bytes of a large_binary array's values, one after the other, without a copy."""
    _validity, offsets, data = values.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64, count=len(values) + 1, offset=8 * values.offset)
    return memoryview(data)[int(bounds[0]) : int(bounds[-1])]
