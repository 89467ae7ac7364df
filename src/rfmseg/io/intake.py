"""Read a source into the canonical table and its RFM table: :func:`read_rfm`, the one entry point.

The read registers the source, maps its columns, types and judges every row (a reason code for each row set
aside, :mod:`rfmseg.io.validate`), settles the as-of date and the row counts per reason, and computes the RFM
table. How it gets there depends on the input's size, and that choice is made here and only here:

* up to :data:`MATERIALISE_MAX_ROWS` rows (and every ready RFM table), the judged rows are kept in a DuckDB
  table and counted before the RFM pass (:func:`_materialised`);
* a larger CSV is streamed: a counting pass over the file, then the RFM pass over it again (:func:`_count`);
* a larger Parquet or Arrow input, whose row count is known without reading it, is not counted first: the
  RFM pass is strict, it stops at the first row a rule sets aside, and only then does the counting pass run
  (:func:`_rfm_settled`). Counting in the RFM pass instead (a row count per order and per customer) made its
  hash tables spill to disk at 100M rows: 28 s instead of 20 s;
* a large input takes text ids as they are (cleaning every id of 100M rows doubled the cost of both passes);
  the RFM pass flags an order whose id cleaning would change, and then everything is read again with clean
  ids (:func:`read_rfm`);
* a policy with returns settles the returns-only rule (a customer whose used rows are all returns) from the
  RFM table when the rows were streamed (:func:`_settle_returns_only`).

The state of one read is a frozen :class:`Prepared`, passed from step to step; the DuckDB views it defines
are named by its :class:`~rfmseg.io.views.Views`.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import features, schema
from rfmseg.errors import InputError, ParameterError
from rfmseg.features import DEFAULT_FEATURES, FeatureSet
from rfmseg.io.readers import Source, open_source, sql_identifier, sql_string
from rfmseg.io.sources import SourceSpec
from rfmseg.io.validate import (
    AFTER_AS_OF,
    DUCKDB,
    DUCKDB_IDS_AS_IS,
    RETURNS_ONLY,
    RFM_RULES,
    SOURCE_COLUMNS,
    SOURCE_VIEW,
    Dialect,
    Policy,
    Rule,
    check_field_columns,
    check_whole_columns,
    id_expr,
    number_expr,
    number_fields,
    problem_text,
    reason_case,
    resolve_columns,
    row_rules,
    typed_columns,
    unclean_id_condition,
)
from rfmseg.io.views import VIEWS, Views
from rfmseg.presets import with_features

if TYPE_CHECKING:
    from rfmseg.presets import Preset

DUCKDB_MEMORY_LIMIT = os.environ.get("RFMSEG_DUCKDB_MEMORY", "2400MB")
"""What DuckDB may hold at once; a larger aggregation spills to a temporary folder instead of growing.
On 100M order lines (9.6M customers) the RFM pass took 15.6 s at 2600MB, 17-18 s at 2200MB and 19-20 s at
1500MB, and the whole run peaked at 2.7, 2.5 and 2.7 GiB (at 1500MB the peak came later, from the customer
tables): 2400MB keeps the run under 3 GiB with the least spilling (docs/scaling.md)."""

MATERIALISE_MAX_ROWS = 5_000_000
"""Up to this many rows the judged rows are kept in a DuckDB table that the later stages read; above it the
file is streamed instead (a table of 100M judged rows would need gigabytes): the rows are counted per fate
in a pass of their own (or, for an input whose row count is known, only when the strict RFM pass meets a row
to set aside), the RFM pass reads the file again, and the returns-only rule, which needs to see each
customer's rows, is settled from the RFM table (:func:`_settle_returns_only`)."""
CSV_BYTES_PER_ROW = 32
"""to estimate a CSV's rows from its size without reading it (a CSV export of order lines: 40-100 bytes)"""
AS_OF_UNKNOWN = date(1970, 1, 1)
"""the as-of date an RFM pass runs with before the default one is known (recency is then recomputed)"""


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


def _row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query (which always has one)."""
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return row


def parse_as_of(value: str | date | None) -> date | None:
    """An as-of date given as ``YYYY-MM-DD`` text, a date, or None (the day after the last order)."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ParameterError(
            f"{{as_of}} '{value}' is not a date; use YYYY-MM-DD, e.g. 2024-12-31", param="as_of"
        ) from None


class Stages(Protocol):
    """What times the stages of a read (``read``, ``validate``, ``rfm``): :class:`rfmseg.pipeline.Timer` is one."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...


class _Untimed:
    def stage(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()


@dataclass(frozen=True)
class Intake:
    """A source read into the canonical table: what the read found, and the RFM table."""

    kind: Literal["transactions", "rfm"]
    """a table of transactions, or a ready RFM table (taken as it is)"""
    source: Source
    mapping: dict[str, str]
    """canonical field -> the source's column"""
    as_of: date | None
    rows_read: int
    quarantined: dict[str, int]
    """rows set aside, per reason code"""
    view: str
    """the canonical table, a view on the connection the read used: every row read (``_row``, the canonical
    columns) with ``_reason``, NULL for a used row; the quarantine file is read from it"""
    rfm: pa.Table = field(repr=False, compare=False)
    """one row per customer: customer_id, recency_days, frequency, monetary, first and last order date"""

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.quarantined.values())

    def rows_summary(self) -> dict[str, object]:
        return {"read": self.rows_read, "used": self.rows_used, "quarantined": dict(self.quarantined)}


def read_rfm(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    columns: dict[str, str] | None = None,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    preset: Preset | None = None,
    feature_set: FeatureSet | None = None,
    timer: Stages | None = None,
) -> Intake:
    """Read and judge ``source`` (a path, a DataFrame or Arrow table, or a :class:`SourceSpec`) on ``con``
    and compute its RFM table (or take a ready RFM table as it is).

    ``columns`` maps canonical fields to the source's columns (the preset's map fills the rest); ``as_of``
    defaults to the day after the last order. ``feature_set`` (default: the preset's, else distinct orders
    and summed amounts) says what R, F and M are; the extra columns it reads are looked for, typed and judged
    with the rest. In ``error`` mode a single broken row raises :class:`InputError` naming the row, the rule
    and the fix."""
    timer = timer or _Untimed()
    views = VIEWS
    fs = feature_set or (preset.features if preset else DEFAULT_FEATURES)
    policy = with_features(policy or (preset.policy if preset else Policy()), fs)
    with timer.stage("read"):
        if isinstance(source, SourceSpec):
            src = source.register(con, views.source)
        else:
            src = open_source(con, source, views.source)
    if preset is not None:
        columns = preset.columns_for(src.columns, columns)
    given = parse_as_of(as_of)
    with timer.stage("validate"):
        prepared = _prepare(con, src, columns, policy, given, views)
    if prepared.kind == "rfm":
        with timer.stage("rfm"):
            return prepared.intake(features.rfm_from_table(con, views.canon))
    prepared, rfm = _rfm_settled(con, prepared, given, fs, timer)
    if prepared.unchecked_ids is not None and pc.any(rfm.column("_flag")).as_py():
        # an id needs cleaning: both passes again, with every id cleaned
        with timer.stage("validate"):
            prepared = _prepare(con, src, columns, policy, given, views, clean_ids=True)
        prepared, rfm = _rfm_settled(con, prepared, given, fs, timer)
    with timer.stage("rfm"):
        prepared, rfm = _settle_returns_only(con, prepared, rfm)
        return prepared.intake(rfm.drop_columns([c for c in ("_flag",) if c in rfm.column_names]))


# ------------------------------------------------------------------------------------ the state of a read
@dataclass(frozen=True)
class Prepared:
    """The typed, judged input as far as the read has settled it; each step returns a new one."""

    kind: Literal["transactions", "rfm"]
    source: Source
    mapping: dict[str, str]
    policy: Policy
    rules: tuple[Rule, ...]
    """the row rules, in the order they are checked (before the as-of and returns-only rules)"""
    views: Views
    as_of: date | None
    nets_returns: bool = False
    """the policy recognises returns and nets them: a customer's used rows can then all be returns"""
    rows_read: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    counted: bool = True
    """False while the rows of a large Parquet or Arrow input are not counted yet: ``as_of`` is None unless
    given, the counts are empty, and the RFM pass is strict (:func:`_rfm_settled`)"""
    returns_pending: bool = False
    """the returns-only rule waits for the RFM table (:func:`_settle_returns_only`)"""
    unchecked_ids: str | None = None
    """set on large inputs with text ids, which ``canon`` then takes as they are: the condition, over the RFM
    pass's ``orders``, of an id that cleaning would change; if any order meets it, the input is prepared
    again with clean ids (:func:`read_rfm`)"""

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.quarantined.values())

    def intake(self, rfm: pa.Table) -> Intake:
        return Intake(
            self.kind, self.source, self.mapping, self.as_of, self.rows_read, self.quarantined, self.views.canon, rfm
        )


def _prepare(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    columns: dict[str, str] | None,
    policy: Policy,
    as_of: date | None,
    views: Views,
    clean_ids: bool = False,
) -> Prepared:
    """Map, type and judge ``source``: ``canon`` and, where the strategy for its size settles them here, the
    as-of date and the row counts. Large inputs take text ids as they are unless ``clean_ids``."""
    kind, mapping = resolve_columns(source, columns, policy.fields, policy.needs_amount)
    if kind == "rfm":
        return _prepare_rfm(con, source, mapping, policy, views)
    rules, has_returns = row_rules(policy, mapping)
    base = Prepared(
        "transactions", source, mapping, policy, rules, views, as_of, has_returns and policy.returns == "net"
    )
    rows = _estimated_rows(con, source)
    if rows <= MATERIALISE_MAX_ROWS:
        _typed_views(con, base, DUCKDB)
        return _materialised(con, base)
    unclean = None if clean_ids else unclean_id_condition(mapping, source.columns)
    _typed_views(con, base, DUCKDB if unclean is None else DUCKDB_IDS_AS_IS)
    if source.format != "csv":  # the row count is exact: the strict RFM pass counts the rest
        return replace(_uncounted(con, base, rows), unchecked_ids=unclean)
    if unclean is None:
        return _count(con, base, as_of)
    try:
        counted = _count(con, base, as_of)
    except InputError:
        # a problem found with the ids as they are is judged again on clean ids
        _typed_views(con, base, DUCKDB)
        return _count(con, base, as_of)
    return replace(counted, unchecked_ids=unclean)


def _estimated_rows(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    """Rows of ``source``: exact for Parquet (metadata), Arrow and workbooks; a size estimate for CSV."""
    if source.format == "csv":
        try:
            return os.path.getsize(source.label) // CSV_BYTES_PER_ROW
        except OSError:
            return 0
    return int(_row(con, f"SELECT count(*) FROM {source.name}")[0])


# ------------------------------------------------------------------------------------ the strategies
def _materialised(con: duckdb.DuckDBPyConnection, p: Prepared) -> Prepared:
    """The source read and every row judged once, into a table the later stages read: the checks, the
    default as-of date, the returns-only customers and the counts, all before the RFM pass."""
    v = p.views
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {v.judged} AS SELECT *, {reason_case(p.rules)} AS _reason FROM {v.typed_returns}"
    )
    numbers = number_fields(p.policy.fields)
    counts = _row(
        con, f"SELECT count(*), count(ts), count(amount){''.join(f', count({n})' for n in numbers)} FROM {v.judged}"
    )
    check_whole_columns(p.source, p.mapping, (counts[0], counts[1], counts[2]))
    check_field_columns(p.source, p.mapping, p.policy.fields, tuple(counts[3:]))
    as_of = p.as_of
    if as_of is None:
        last = _row(con, f"SELECT max(ts) FROM {v.judged} WHERE _reason IS NULL AND NOT is_return")[0]
        if last is None:
            last = _row(con, f"SELECT max(ts) FROM {v.judged} WHERE _reason IS NULL")[0]
        if last is None:
            raise InputError(f"{p.source.label}: no usable order rows; {_first_problem(con, p.rules, v.judged)}")
        as_of = last.date() + timedelta(days=1)
    after = _after(as_of)
    late: tuple[Rule, ...] = (after,)
    if p.nets_returns:
        # customers left with returns only, once every row rule has spoken: a (small) table of ids
        late = (after, RETURNS_ONLY)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {v.returns_only} AS SELECT customer_id FROM {v.judged} "
            f"WHERE coalesce(_reason, {reason_case((after,))}) IS NULL GROUP BY customer_id "
            "HAVING NOT bool_or(NOT is_return)"
        )
    _settle_canon(con, v, late)
    by_reason = dict(con.execute(f"SELECT coalesce(_reason, ''), count(*) FROM {v.canon} GROUP BY ALL").fetchall())
    return _with_counts(con, replace(p, as_of=as_of), by_reason, (*p.rules, *late))


def _count(con: duckdb.DuckDBPyConnection, p: Prepared, as_of: date | None) -> Prepared:
    """The counting pass of a streamed input: ``judged`` and ``canon`` are views over the file, and one pass
    counts what the checks, the default as-of date and the per-reason counts need. The returns-only rule is
    left to the RFM table."""
    v = p.views
    _judge(con, p)
    numbers = number_fields(p.policy.fields)
    extra = "".join(f", count({n})" for n in numbers)
    groups = con.execute(
        "SELECT _reason, is_return, CASE WHEN _reason IS NULL THEN CAST(ts AS DATE) END AS d, "
        f"count(*), count(ts), count(amount){extra} FROM {v.judged} GROUP BY ALL"
    ).fetchall()
    sums = [sum(g[i] for g in groups) for i in range(3, 6 + len(numbers))]
    check_whole_columns(p.source, p.mapping, (sums[0], sums[1], sums[2]))
    check_field_columns(p.source, p.mapping, p.policy.fields, tuple(sums[3:]))
    if as_of is None:
        used_days = [(g[1], g[2]) for g in groups if g[0] is None and g[2] is not None]
        last = max((d for ret, d in used_days if not ret), default=None) or max((d for _, d in used_days), default=None)
        if last is None:
            raise InputError(f"{p.source.label}: no usable order rows; {_first_problem(con, p.rules, v.judged)}")
        as_of = last + timedelta(days=1)
    after = _after(as_of)
    counts: dict[str, int] = {}
    for reason, _, d, n, *_ in groups:
        key = reason if reason is not None else (after.reason if d is not None and d > as_of else "")
        counts[key] = counts.get(key, 0) + n
    _settle_canon(con, v, (after,))
    counted = _with_counts(con, replace(p, as_of=as_of), counts, (*p.rules, after))
    return replace(counted, counted=True, returns_pending=p.nets_returns)


def _uncounted(con: duckdb.DuckDBPyConnection, p: Prepared, rows: int) -> Prepared:
    """A large input whose row count is known: the views, and no pass over the file (the strict RFM pass
    shows whether every row is used)."""
    _judge(con, p)
    _settle_canon(con, p.views, _late(p.as_of))
    return replace(p, rows_read=rows, counted=False, returns_pending=p.nets_returns)


def _rfm_settled(
    con: duckdb.DuckDBPyConnection, p: Prepared, given: date | None, fs: FeatureSet, timer: Stages
) -> tuple[Prepared, pa.Table]:
    """The RFM pass over ``canon``. On an input not counted yet the pass is strict: when it stops at a row
    set aside, or leaves the as-of date open, the counting pass runs and then the RFM pass again."""
    with timer.stage("rfm"):
        rfm = _rfm_pass(con, p, fs)
    if p.counted:
        assert rfm is not None  # only a strict pass gives up
        return p, rfm
    with timer.stage("validate"):
        settled = _settled_by_strict_pass(con, p, rfm, given)
        if settled is not None:
            return settled
        counted = _count(con, p, given)  # raises on bad rows in error mode, or when no row is usable
    with timer.stage("rfm"):
        again = _rfm_pass(con, counted, fs)
    assert again is not None  # counted: not strict
    return counted, again


def _rfm_pass(con: duckdb.DuckDBPyConnection, p: Prepared, fs: FeatureSet) -> pa.Table | None:
    """The RFM table of ``canon``, with the id check ``p`` still waits for (``_flag``).

    On an input not counted yet the pass is strict: it stops at the first row a rule sets aside and
    returns None."""
    strict = not p.counted
    try:
        return features.compute_rfm(
            con, p.views.canon, p.as_of or AS_OF_UNKNOWN, fs, flag=p.unchecked_ids, strict=strict
        )
    except duckdb.InvalidInputException as e:
        if strict and features.SET_ASIDE in str(e):
            return None
        raise


def _settled_by_strict_pass(
    con: duckdb.DuckDBPyConnection, p: Prepared, rfm: pa.Table | None, given: date | None
) -> tuple[Prepared, pa.Table] | None:
    """What a strict RFM pass settles on its own, or None when the counting pass must run.

    When that pass used every row (``rfm`` is not None) and, without a given as-of date, no row is dated on
    or after the day after the last order (DuckDB answers the latest date from the Parquet statistics,
    without reading the rows), the pass has settled everything: every row read is used, the as-of date is
    the day after the last order and recency is counted to it. Otherwise (a row set aside, or a return
    after the last order) the counting pass names the rows set aside by reason and stops on them in error
    mode, and the RFM pass runs again without them."""
    if rfm is None:
        return None
    if given is not None:
        return replace(p, counted=True), rfm
    last = pc.max(rfm.column("last_order_date")).as_py()
    if last is None:
        return None
    at = last + timedelta(days=1)
    latest = _row(con, f"SELECT max(ts) FROM {p.views.canon}")[0]
    if latest is not None and latest.date() >= at:
        return None  # a return after the last order: the counting pass settles the as-of date
    _settle_canon(con, p.views, _late(at))
    return replace(p, as_of=at, counted=True), _recency_to(rfm, at)


def _recency_to(rfm: pa.Table, as_of: date) -> pa.Table:
    """``rfm`` with recency counted to ``as_of`` (days from the last order, as the RFM SQL counts it)."""
    recency = pc.days_between(rfm.column("last_order_date"), pa.scalar(as_of, pa.date32()))
    return rfm.set_column(rfm.column_names.index("recency_days"), "recency_days", recency)


def _settle_returns_only(con: duckdb.DuckDBPyConnection, p: Prepared, rfm: pa.Table) -> tuple[Prepared, pa.Table]:
    """The returns-only rule, when the strategy left it to the RFM table.

    A customer whose used rows are all returns is the customer the RFM pass finds with no last order date;
    their rows are quarantined as ``returns_only_customer`` (``canon`` and the counts say so) and they leave
    the table. Nothing happens when there is no such customer or the rule was applied before.
    """
    if not p.returns_pending or "last_order_date" not in rfm.column_names:
        return p, rfm
    orphan = pc.is_null(rfm.column("last_order_date"))
    if not pc.any(orphan).as_py():
        return replace(p, returns_pending=False), rfm
    assert p.as_of is not None  # settled by every strategy before the RFM table exists
    v = p.views
    ids = f"{v.returns_only}_ids"
    con.register(ids, rfm.filter(orphan).select(["customer_id"]))
    kept_as = dict((r[0], r[1]) for r in con.execute(f"DESCRIBE {v.judged}").fetchall())["customer_id"]
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {v.returns_only} AS SELECT CAST(customer_id AS {kept_as}) AS customer_id "
            f"FROM {ids}"
        )
    finally:
        con.unregister(ids)
    late = (*_late(p.as_of), RETURNS_ONLY)
    _settle_canon(con, v, late)
    n = _row(con, f"SELECT count(*) FROM {v.canon} WHERE _reason = {sql_string(RETURNS_ONLY.reason)}")[0]
    settled = replace(p, quarantined={**p.quarantined, RETURNS_ONLY.reason: int(n)}, returns_pending=False)
    all_rules = (*p.rules, *late)
    if p.policy.bad_rows == "error":
        raise InputError(f"{p.source.label}: {_first_problem(con, all_rules, v.canon)}")
    if settled.rows_used == 0:
        raise InputError(f"{p.source.label}: no usable order rows; {_first_problem(con, all_rules, v.canon)}")
    return settled, rfm.filter(pc.invert(orphan))


def _prepare_rfm(
    con: duckdb.DuckDBPyConnection, source: Source, mapping: dict[str, str], policy: Policy, views: Views
) -> Prepared:
    """A ready RFM table: typed and judged (one row per customer), counted."""
    t = source.columns
    cust = id_expr(mapping[schema.CUSTOMER_ID], t[mapping[schema.CUSTOMER_ID]])
    r, f, m = (number_expr(mapping[x], t[mapping[x]]) for x in schema.RFM_FIELDS)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {views.typed} AS SELECT _row, {cust} AS customer_id, {r} AS recency_days, "
        f"{f} AS frequency, {m} AS monetary FROM {source.name}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {views.canon} AS SELECT *, {reason_case(RFM_RULES)} AS _reason FROM {views.typed}"
    )
    counts = dict(con.execute(f"SELECT coalesce(_reason, ''), count(*) FROM {views.canon} GROUP BY ALL").fetchall())
    used = counts.pop("", 0)
    if (counts and policy.bad_rows == "error") or used == 0:
        raise InputError(f"{source.label}: {_first_problem(con, RFM_RULES, views.canon)}")
    return Prepared("rfm", source, mapping, policy, RFM_RULES, views, None, False, used + sum(counts.values()), counts)


# ------------------------------------------------------------------------------------ the views
def _typed_views(con: duckdb.DuckDBPyConnection, p: Prepared, dialect: Dialect) -> None:
    """``typed``: the canonical columns typed from the source's (and the policy's extra columns), and
    ``typed_r``: those with ``is_return``. Views over the source: nothing is read yet."""
    v, policy, source = p.views, p.policy, p.source
    originals = ", ".join(sql_identifier(c) for c in source.columns)
    extra = "".join(
        f", {sql.replace(SOURCE_COLUMNS, originals).replace(SOURCE_VIEW, source.name)} AS {name}"
        for name, sql in policy.extra_columns
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.typed} AS SELECT _row, "
        f"{typed_columns(p.mapping, source.columns, policy, dialect)}{extra} FROM {source.name}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.typed_returns} AS SELECT *, coalesce({policy.returns_condition}, FALSE) "
        f"AS is_return FROM {v.typed}"
    )


def _judge(con: duckdb.DuckDBPyConnection, p: Prepared) -> None:
    """``judged``: the typed rows (a view over the file) with the first row rule each one breaks."""
    v = p.views
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.judged} AS SELECT *, {reason_case(p.rules)} AS _reason FROM {v.typed_returns}"
    )


def _settle_canon(con: duckdb.DuckDBPyConnection, v: Views, late: tuple[Rule, ...]) -> None:
    """``canon``: ``judged`` with the rules that need the data (after-as-of, returns-only) applied on top."""
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.canon} AS SELECT * EXCLUDE (_reason), "
        f"coalesce(_reason, {reason_case(late) if late else 'NULL'}) AS _reason FROM {v.judged}"
    )


def _after(as_of: date) -> Rule:
    return Rule(
        AFTER_AS_OF.reason, AFTER_AS_OF.condition.format(as_of=as_of.isoformat()), AFTER_AS_OF.meaning, AFTER_AS_OF.fix
    )


def _late(as_of: date | None) -> tuple[Rule, ...]:
    """The rules ``canon`` applies on top of ``judged`` once the as-of date is known."""
    return (_after(as_of),) if as_of is not None else ()


def _with_counts(
    con: duckdb.DuckDBPyConnection, p: Prepared, counts: dict[str, int], rules: tuple[Rule, ...]
) -> Prepared:
    """``p`` with its rows counted (``counts``: reason -> rows, '' for the used ones); stops on a row set
    aside in error mode, and when no row is usable."""
    used = counts.pop("", 0)
    if counts and p.policy.bad_rows == "error":
        raise InputError(f"{p.source.label}: {_first_problem(con, rules, p.views.canon)}")
    if used == 0:
        raise InputError(f"{p.source.label}: no usable order rows; {_first_problem(con, rules, p.views.canon)}")
    return replace(p, rows_read=used + sum(counts.values()), quarantined=counts)


def _first_problem(con: duckdb.DuckDBPyConnection, rules: tuple[Rule, ...], view: str) -> str:
    """The first broken rule, as 'N row(s) with <meaning> (first at row R); <fix>'."""
    counts = dict(
        con.execute(
            f"SELECT _reason, (count(*), min(_row)) FROM {view} WHERE _reason IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    found = {r: tuple(v.values()) if isinstance(v, dict) else tuple(v) for r, v in counts.items()}
    return problem_text(rules, found)
