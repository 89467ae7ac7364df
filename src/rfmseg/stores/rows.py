"""What a publish writes, on every backend: the profile fields and the Arrow schemas of the rows, the
checked input, the segment history carried forward from the served run, the changes a publish appends to the
change feed, and the Arrow snapshot of that history which the next publish reads back.

A publish computes each customer's segment history against the run currently served, then hands a
table of :data:`ROW_SCHEMA` to the backend, which makes it visible in one atomic step, together with the
customers whose segment changed (:data:`CHANGE_SCHEMA`, see :func:`history_and_changes`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.model.scoring import REASON_DRIFT as DRIFT

PROFILE_FIELDS = (
    "customer_id",
    "segment",
    "previous_segment",
    "segment_since",
    "recency_days",
    "frequency",
    "monetary",
    "distance",
    "p_alive",
    "expected_orders_90d",
    "expected_value_90d",
    "run_id",
    "as_of",
    "model_version",
)
"""The keys of every profile returned by :meth:`~rfmseg.stores.base.ProfileStore.get`, in this order."""

ASSIGNMENT_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("recency_days", pa.int64()),
        ("frequency", pa.int64()),
        ("monetary", pa.float64()),
        ("distance", pa.float64()),
    ]
)
"""The columns :meth:`~rfmseg.stores.base.ProfileStore.publish` needs in ``assignments`` (others are ignored,
but for the optional :data:`REASON_COLUMN` and :data:`RHYTHM_COLUMNS`)."""

RHYTHM_COLUMNS = ("p_alive", "expected_orders_90d", "expected_value_90d")
"""Optional columns of ``assignments``: each customer's rhythm (:mod:`rfmseg.model.rhythm`), stored with the
profile, null when absent (no rhythm model, or a customer without a dated order history)."""

REASON_COLUMN = "segment_reason"
"""An optional column of ``assignments`` (why the customer got its segment: ``nearest_centroid``,
``cold_start``, ``held``, ``model_drift``); a publish keeps it in the change feed, and a ``model_drift`` move
keeps the customer's previous_segment and segment_since (:func:`history_and_changes`).
:func:`prepare_assignments` always returns it (null when absent)."""

STATE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("previous_segment", pa.string()),
        ("segment_since", pa.date32()),
    ]
)
"""The part of the served run a publish reads back to carry segment history forward."""

ROW_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("previous_segment", pa.string()),
        ("segment_since", pa.date32()),
        ("recency_days", pa.int64()),
        ("frequency", pa.int64()),
        ("monetary", pa.float64()),
        ("distance", pa.float64()),
        *[(c, pa.float64()) for c in RHYTHM_COLUMNS],
    ]
)
"""What a backend stores per customer; run_id, as_of and model_version are stored once per run."""

CHANGE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("from_segment", pa.string()),
        ("to_segment", pa.string()),
        ("reason", pa.string()),
        ("segment_reason", pa.string()),
    ]
)
"""One change of the feed as a publish computes it; run_id, as_of and model_version are the publish's."""

CHANGE_FIELDS = (
    "cursor",
    "customer_id",
    "from_segment",
    "to_segment",
    "reason",
    "segment_reason",
    "run_id",
    "as_of",
    "model_version",
)
"""The keys of every change returned by :meth:`~rfmseg.stores.base.ProfileStore.changes`, in this order."""

NEW, MOVED, LEFT = "new", "moved", "left"
"""The reasons of a change: a customer the store did not serve, one served in another segment, one no
longer in the published run (``to_segment`` null)."""

STATE_PART_BYTES = 64 << 20
SEPARATOR = "\x1f"
"""The field separator of packed values (ASCII unit separator); ids and segments may not contain it."""


@dataclass(frozen=True)
class RunInfo:
    """The run-level fields stored once per published run."""

    run_id: str
    as_of: dt.date
    model_version: str


def run_info(run_id: str, as_of: dt.date, model_version: str) -> RunInfo:
    """The checked run-level fields of a publish (a datetime ``as_of`` counts as its date)."""
    if not isinstance(run_id, str) or not run_id:
        raise ParameterError("run_id must be a non-empty string")
    if not isinstance(model_version, str):
        raise ParameterError("model_version must be a string")
    if not isinstance(as_of, dt.date):
        raise ParameterError(f"as_of must be a date, got {type(as_of).__name__}")
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    return RunInfo(run_id, as_of, model_version)


def prepare_assignments(assignments: pa.Table) -> pa.Table:
    """Select and cast the needed columns; reject null or duplicate ids and null or empty segments."""
    if not isinstance(assignments, pa.Table):
        raise InputError(f"assignments must be a pyarrow.Table, got {type(assignments).__name__}")
    missing = [name for name in ASSIGNMENT_SCHEMA.names if name not in assignments.column_names]
    if missing:
        raise ColumnError(
            f"assignments lack the column(s) {', '.join(missing)}; a publish needs {', '.join(ASSIGNMENT_SCHEMA.names)}"
        )
    try:
        table = assignments.select(ASSIGNMENT_SCHEMA.names).cast(ASSIGNMENT_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"assignments have a column of the wrong type ({exc}); expected {ASSIGNMENT_SCHEMA}") from exc
    if not table.num_rows:
        raise InputError("assignments are empty; publishing them would unpublish every customer")
    table = table.combine_chunks()
    for name in ASSIGNMENT_SCHEMA.names:
        if table[name].null_count:
            raise InputError(f"assignments have {table[name].null_count} null value(s) in {name}")
    if len(pc.unique(table["customer_id"])) != table.num_rows:
        raise InputError("assignments have duplicate customer ids; each customer must appear once")
    if pc.min(pc.utf8_length(table["segment"])).as_py() == 0:
        raise InputError("assignments have an empty segment name")
    for name in ("customer_id", "segment"):
        if pc.any(pc.match_substring(table[name], SEPARATOR)).as_py():
            raise InputError(f"assignments have a {name} containing the control character \\x1f")
    for name in RHYTHM_COLUMNS:
        table = table.append_column(name, _rhythm(assignments, name))
    return table.append_column(REASON_COLUMN, _reasons(assignments))


def _rhythm(assignments: pa.Table, name: str) -> pa.Array:
    """The rhythm column ``name`` of ``assignments`` as one float64 array (NaN as null; all null when absent)."""
    if name not in assignments.column_names:
        return pa.nulls(assignments.num_rows, pa.float64())
    try:
        values = assignments[name].cast(pa.float64()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"assignments have a {name} column that is not a number ({exc})") from exc
    return pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)


def _reasons(assignments: pa.Table) -> pa.Array:
    """The :data:`REASON_COLUMN` of ``assignments`` as one string array (all null when it has none)."""
    if REASON_COLUMN not in assignments.column_names:
        return pa.nulls(assignments.num_rows, pa.string())
    try:
        return assignments[REASON_COLUMN].cast(pa.string()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"assignments have a {REASON_COLUMN} column that is not text ({exc})") from exc


def empty_state() -> pa.Table:
    return STATE_SCHEMA.empty_table()


def apply_history(assignments: pa.Table, served: pa.Table, as_of: dt.date) -> tuple[pa.Table, int, int]:
    """Carry ``previous_segment`` and ``segment_since`` forward from the served run.

    Same segment as served: both are kept. Different segment: previous_segment is the served one and
    segment_since is ``as_of`` — unless the segment_reason is ``model_drift`` (a retrain moved the customer, not
    their behaviour: :mod:`rfmseg.jobs.quiet`), which keeps both. New customer: previous_segment is null and
    segment_since is ``as_of``.
    Returns the :data:`ROW_SCHEMA` table (in the order of ``assignments``), the number changed and new.
    """
    rows, changed, new, _changes = history_and_changes(assignments, served, as_of, departures=False)
    return rows, changed, new


def history_and_changes(
    assignments: pa.Table, served: pa.Table, as_of: dt.date, departures: bool
) -> tuple[pa.Table, int, int, pa.Table]:
    """:func:`apply_history`, and the changes it makes (:data:`CHANGE_SCHEMA`, in customer id order).

    A change is a customer of ``assignments`` not in ``served`` (reason ``new``, from_segment null) or in
    another segment there (``moved``); with ``departures``, also a customer of ``served`` that is not in
    ``assignments`` (``left``, to_segment null). ``segment_reason`` is that of the assignments (null for
    departures). A staged batch leaves departures to the commit (:func:`departed`): only the commit knows
    every customer of the run.
    """
    served = served.combine_chunks()
    if served.num_rows:
        positions = pc.index_in(assignments["customer_id"], value_set=served["customer_id"])
    else:
        positions = pa.nulls(assignments.num_rows, pa.int32())
    old_segment = pc.take(served["segment"], positions)
    found = pc.is_valid(positions)
    same = pc.fill_null(pc.equal(assignments["segment"], old_segment), False)
    reasons = assignments[REASON_COLUMN] if REASON_COLUMN in assignments.column_names else None
    # a move the model made (a retrain's drift), not the customer: the history stays as it was
    keep = same
    if reasons is not None:
        keep = pc.or_(same, pc.and_(found, pc.fill_null(pc.equal(reasons, DRIFT), False)))
    previous = pc.if_else(keep, pc.take(served["previous_segment"], positions), old_segment)
    since = pc.if_else(keep, pc.take(served["segment_since"], positions), pa.scalar(as_of, pa.date32()))
    rows = pa.table(
        [
            assignments["customer_id"],
            assignments["segment"],
            previous,
            since,
            assignments["recency_days"],
            assignments["frequency"],
            assignments["monetary"],
            assignments["distance"],
            *[_rhythm(assignments, c) for c in RHYTHM_COLUMNS],
        ],
        schema=ROW_SCHEMA,
    )
    new = assignments.num_rows - _count_true(found)
    changed = _count_true(pc.and_(found, pc.invert(same)))
    arrived = pc.invert(same)  # null segments (new customers) compare as not the same
    changes = pa.table(
        [
            assignments["customer_id"],
            old_segment,
            assignments["segment"],
            pc.if_else(found, pa.scalar(MOVED), pa.scalar(NEW)),
            reasons if reasons is not None else pa.nulls(assignments.num_rows, pa.string()),
        ],
        schema=CHANGE_SCHEMA,
    ).filter(arrived)
    parts = [changes, _left(served, positions)] if departures else [changes]
    return rows, changed, new, in_feed_order(parts)


def departed(served: pa.Table, ids: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The customers of ``served`` whose id is not in ``ids`` as changes with reason ``left``."""
    if not served.num_rows:
        return CHANGE_SCHEMA.empty_table()
    served = served.combine_chunks()
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return _left(served, pc.index_in(ids, value_set=served["customer_id"]))


def _left(served: pa.Table, positions: pa.Array) -> pa.Table:
    """The rows of ``served`` that no value of ``positions`` (indices into ``served``, null for none)
    points at, as changes with reason ``left``."""
    kept = np.zeros(served.num_rows, dtype=bool)
    kept[positions.drop_null().to_numpy()] = True
    gone = served.filter(pa.array(~kept))
    nulls = pa.nulls(gone.num_rows, pa.string())
    return pa.table(
        [gone["customer_id"], gone["segment"], nulls, pa.repeat(pa.scalar(LEFT), gone.num_rows), nulls],
        schema=CHANGE_SCHEMA,
    )


def in_feed_order(parts: list[pa.Table]) -> pa.Table:
    """The changes of ``parts`` in the order a publish appends them to the feed: by customer id (byte order,
    as SQLite and PostgreSQL's ``COLLATE "C"`` compare)."""
    table = pa.concat_tables([CHANGE_SCHEMA.empty_table(), *parts]).combine_chunks()
    return table.sort_by("customer_id") if table.num_rows > 1 else table


def changes_parts(changes: pa.Table) -> list[bytes]:
    """``changes`` as an Arrow IPC stream cut in parts (as :func:`state_parts`): what a staged batch keeps
    for the commit."""
    return _ipc_parts(changes, CHANGE_SCHEMA)


def changes_from_parts(parts: list[bytes]) -> pa.Table:
    """The changes written by one or more calls of :func:`changes_parts`."""
    return _from_parts(parts, CHANGE_SCHEMA)


def _count_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def state_parts(rows: pa.Table) -> list[bytes]:
    """The :data:`STATE_SCHEMA` columns of ``rows`` as an Arrow IPC stream (LZ4 when available), cut in
    parts of at most :data:`STATE_PART_BYTES`: what the next publish reads back instead of every row."""
    return _ipc_parts(rows, STATE_SCHEMA)


def _ipc_parts(table: pa.Table, schema: pa.Schema) -> list[bytes]:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4_frame") else None)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_table(table.select(schema.names).cast(schema), max_chunksize=256_000)
    data = memoryview(sink.getvalue())
    return [bytes(data[i : i + STATE_PART_BYTES]) for i in range(0, len(data), STATE_PART_BYTES)]


def state_from_parts(parts: list[bytes]) -> pa.Table:
    """The table written by :func:`state_parts`, or by several calls of it one after the other (a staged
    publish stores the parts of each batch)."""
    return _from_parts(parts, STATE_SCHEMA)


def _from_parts(parts: list[bytes], schema: pa.Schema) -> pa.Table:
    data = pa.py_buffer(b"".join(parts))
    source = pa.BufferReader(data)
    tables = []
    while source.tell() < data.size:
        tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if tables else schema.empty_table()
