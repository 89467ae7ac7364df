"""Reading an input into its RFM table: ``load_rfm`` (read -> validate -> RFM) and the DuckDB connection a
run computes with. The jobs (:mod:`rfmseg.jobs`) and the local engine call these.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import features
from rfmseg.errors import ParameterError
from rfmseg.features import DEFAULT_FEATURES, FeatureSet
from rfmseg.io import Policy, Prepared, open_source, prepare
from rfmseg.io.sources import SourceSpec
from rfmseg.io.validate import settle_as_of, settle_rfm
from rfmseg.presets import Preset, with_features
from rfmseg.timing import Timer

DUCKDB_MEMORY_LIMIT = os.environ.get("RFMSEG_DUCKDB_MEMORY", "2400MB")
"""What DuckDB may hold at once; a larger aggregation spills to a temporary folder instead of growing.
On 100M order lines (9.6M customers) the RFM pass took 15.6 s at 2600MB, 17-18 s at 2200MB and 19-20 s at
1500MB, and the whole run peaked at 2.7, 2.5 and 2.7 GiB (at 1500MB the peak came later, from the customer
tables): 2400MB keeps the run under 3 GiB with the least spilling (docs/scaling.md)."""


def connect() -> duckdb.DuckDBPyConnection:
    """The DuckDB connection a run computes with: a memory limit (with a temporary folder to spill to),
    results in any order unless the query says ORDER BY (every query that needs an order says so), and
    memory handed back to the system after each big query."""
    spill = Path(tempfile.gettempdir()) / "rfmseg-duckdb"
    con = duckdb.connect(
        config={
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            "allocator_flush_threshold": "16MB",
            "allocator_bulk_deallocation_flush_threshold": "16MB",
        }
    )
    # a long query would draw a progress bar on the terminal; in Jupyter without ipywidgets DuckDB refuses
    # the setting (and draws nothing)
    with suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")
    return con


def parse_as_of(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ParameterError(f"--as-of '{value}' is not a date; use YYYY-MM-DD, e.g. 2024-12-31") from None


def load_rfm(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    columns: dict[str, str] | None = None,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    timer: Timer | None = None,
    preset: Preset | None = None,
    feature_set: FeatureSet | None = None,
) -> tuple[Prepared, pa.Table]:
    """Read and judge ``source`` and compute its RFM table (or take a ready RFM table as it is).

    ``feature_set`` (default: the preset's, else distinct orders and summed amounts) says what R, F and M
    are; the extra columns it reads are looked for, typed and judged with the rest."""
    timer = timer or Timer()
    fs = feature_set or (preset.features if preset else DEFAULT_FEATURES)
    policy = with_features(policy or (preset.policy if preset else Policy()), fs)
    with timer.stage("read"):
        src = source.register(con) if isinstance(source, SourceSpec) else open_source(con, source)
    if preset is not None:
        columns = preset.columns_for(src.columns, columns)
    given = parse_as_of(as_of)
    with timer.stage("validate"):
        prepared = prepare(con, src, columns, policy, given)
    if prepared.kind == "rfm":
        with timer.stage("rfm"):
            return prepared, features.rfm_from_table(con, prepared.view)
    prepared, rfm = _rfm_settled(con, prepared, given, fs, timer)
    if prepared.unchecked_ids is not None and pc.any(rfm.column("_flag")).as_py():
        # an id needs cleaning: both passes again, with every id cleaned
        with timer.stage("validate"):
            prepared = prepare(con, src, columns, policy, given, clean_ids=True)
        prepared, rfm = _rfm_settled(con, prepared, given, fs, timer)
    with timer.stage("rfm"):
        rfm = settle_rfm(con, prepared, rfm)
        return prepared, rfm.drop_columns([c for c in ("_flag",) if c in rfm.column_names])


def _rfm_settled(
    con: duckdb.DuckDBPyConnection, prepared: Prepared, given: date | None, fs: FeatureSet, timer: Timer
) -> tuple[Prepared, pa.Table]:
    """The RFM pass over ``prepared``, and the counting pass when it leaves the counts unsettled."""
    with timer.stage("rfm"):
        rfm = _rfm_pass(con, prepared, fs)
    if prepared.count is None:
        assert rfm is not None  # only a strict pass gives up
        return prepared, rfm
    with timer.stage("validate"):
        return _settle_counts(con, prepared, rfm, given, fs, timer)


AS_OF_UNKNOWN = date(1970, 1, 1)
"""the as-of date an RFM pass runs with before the default one is known (recency is then recomputed)"""


def _rfm_pass(con: duckdb.DuckDBPyConnection, prepared: Prepared, fs: FeatureSet) -> pa.Table | None:
    """The RFM table of ``canon``, with the id check ``prepared`` still waits for (``_flag``).

    On an input not counted yet (``prepared.count``) the pass is strict: it stops at the first row a rule
    sets aside and returns None (the counting pass then names the rows, and the pass runs again)."""
    strict = prepared.count is not None
    try:
        return features.compute_rfm(
            con, prepared.view, prepared.as_of or AS_OF_UNKNOWN, fs, flag=prepared.unchecked_ids, strict=strict
        )
    except duckdb.InvalidInputException as e:
        if strict and features.SET_ASIDE in str(e):
            return None
        raise


def _settle_counts(
    con: duckdb.DuckDBPyConnection,
    prepared: Prepared,
    rfm: pa.Table | None,
    given: date | None,
    fs: FeatureSet,
    timer: Timer,
) -> tuple[Prepared, pa.Table]:
    """The counts and as-of date of an input the strict RFM pass read (validate.Prepared.count).

    When that pass used every row (``rfm`` is not None) and, without a given as-of date, no row is dated on
    or after the day after the last order (DuckDB answers the latest date from the Parquet statistics,
    without reading the rows), the pass has settled everything: every row read is used, the as-of date is
    the day after the last order and recency is counted to it. Otherwise (a row set aside, or a return
    after the last order) the counting pass runs, which names the rows set aside by reason and stops on
    them in error mode, and the RFM pass runs again without them."""
    assert prepared.count is not None
    count, prepared.count = prepared.count, None
    at = given
    if rfm is not None and at is None:
        last = pc.max(rfm.column("last_order_date")).as_py()
        at = last + timedelta(days=1) if last is not None else None
        latest = con.execute(f"SELECT max(ts) FROM {prepared.view}").fetchone()[0] if at is not None else None
        if latest is not None and latest.date() >= at:
            at = None  # a return after the last order: the counting pass settles the as-of date
    if rfm is not None and at is not None:
        if given is None:
            settle_as_of(con, prepared, at)
            rfm = _recency_to(rfm, at)
        return prepared, rfm
    counted = count(given)  # raises on bad rows in error mode, or when no row is usable
    counted.unchecked_ids = prepared.unchecked_ids
    with timer.stage("rfm"):
        again = _rfm_pass(con, counted, fs)
    assert again is not None  # counted: not strict
    return counted, again


def _recency_to(rfm: pa.Table, as_of: date) -> pa.Table:
    """``rfm`` with recency counted to ``as_of`` (days from the last order, as the RFM SQL counts it)."""
    recency = pc.days_between(rfm.column("last_order_date"), pa.scalar(as_of, pa.date32()))
    return rfm.set_column(rfm.column_names.index("recency_days"), "recency_days", recency)
