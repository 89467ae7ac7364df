"""The passes over a source that a read plan asks for: judge every row, count the rows per fate, settle the
as-of date and compute the RFM table (:func:`settle`). The only module of a read that runs SQL on the data.

What to run was decided before, as text: :class:`rfmseg.io.validate.Plan` (the typed columns and the row
rules) and :class:`rfmseg.features.RfmQueries` (the RFM SQL, the as-of date left open). Here the strategy for
the input's size is chosen, and this is the only place that chooses it:

* up to :data:`MATERIALISE_MAX_ROWS` rows (and every ready RFM table), the judged rows are kept in a DuckDB
  table and counted before the RFM pass (:func:`_materialised`), except where the strict pass below reads a
  clean file sooner (:func:`_strict_pass_first`);
* a larger CSV is streamed: a counting pass over the file, then the RFM pass over it again (:func:`_count`);
* a larger Parquet or Arrow input, whose row count is known without reading it, is not counted first: the
  RFM pass is strict, it stops at the first row a rule sets aside, and only then does the counting pass run
  (:func:`_rfm_settled`), or, in quarantine mode, the pass that keeps the rows set aside in a table of their
  own and counts them there (:func:`_set_aside`). Counting in the RFM pass instead (a row count per order and
  per customer) made its hash tables spill to disk at 100M rows: 28 s instead of 20 s;
* a large input takes text ids as they are (cleaning every id of 100M rows doubled the cost of both passes);
  the RFM pass flags an order whose id cleaning would change, and then everything is read again with clean
  ids (:func:`settle`);
* a policy with returns settles the returns-only rule (a customer whose used rows are all returns) from the
  RFM table when the rows were streamed (:func:`_settle_returns_only`).

The state of one read is a frozen :class:`Prepared`, passed from step to step; the DuckDB views it defines
are named by its :class:`~rfmseg.io.views.Views`. The messages that interpret the counts (a column with no
value of its type, the first broken rule) are here too, and the Spark engine uses them.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import schema
from rfmseg.errors import EnvironmentFailure, InputError, shown_id
from rfmseg.io.readers import read_error, sql_identifier
from rfmseg.io.rules import AFTER_AS_OF, EXCLUDED_RETURN, RETURNS_ONLY, SOURCE_VIEW, Policy, Rule
from rfmseg.io.views import ORIGINAL, VIEWS, Views

if TYPE_CHECKING:
    from rfmseg.features import RfmQueries
    from rfmseg.io.readers import Source
    from rfmseg.io.rules import ExtraField
    from rfmseg.io.validate import Plan

MATERIALISE_MAX_ROWS = 5_000_000
"""Up to this many rows the judged rows are kept in a DuckDB table that the later stages read; above it the
file is streamed instead (a table of 100M judged rows would need gigabytes): the rows are counted per fate
in a pass of their own (or, for an input whose row count is known, only when the strict RFM pass meets a row
to set aside), the RFM pass reads the file again, and the returns-only rule, which needs to see each
customer's rows, is settled from the RFM table (:func:`_settle_returns_only`)."""
STRICT_FIRST_FROM_ROWS = 1_000_000
"""From this many rows, a Parquet or Arrow input read in error mode is streamed even below
:data:`MATERIALISE_MAX_ROWS` (:func:`_strict_pass_first`): on a clean file its strict RFM pass is the whole read,
where the table of judged rows costs a pass of its own. On 1M generated lines (`--returns net`), validate + rfm
took 0.18 s instead of 0.29 s, and the whole `rfmseg run` process 1.14 s instead of 1.22 s (medians of 4,
alternating); at 200,000 and 500,000 lines the two were within noise of each other, so smaller inputs keep
their table."""
CSV_BYTES_PER_ROW = 32
"""to estimate a CSV's rows from its size without reading it (a CSV export of order lines: 40-100 bytes)"""
AS_OF_UNKNOWN = date(1970, 1, 1)
"""the as-of date an RFM pass runs with before the default one is known (recency is then recomputed)"""


class Stages(Protocol):
    """What times the stages of a read (``validate``, ``rfm``): :class:`rfmseg.timing.Timer` is one."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...


class Untimed:
    """Stages that time nothing."""

    def stage(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()


# ------------------------------------------------------------------------------------ the state of a read
@dataclass(frozen=True)
class Prepared:
    """The typed, judged input as far as the read has settled it; each step returns a new one."""

    plan: Plan
    as_of: date | None
    views: Views = VIEWS
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
    again with clean ids (:func:`settle`)"""
    originals: bool = False
    """whether ``canon`` carries the source's columns as read (:meth:`rfmseg.io.validate.Plan.carrying`): a
    streamed read's does, a materialised one's table leaves them out"""
    set_aside: str | None = None
    """the table holding every row set aside (:attr:`Views.set_aside`) when the read kept one (:func:`_set_aside`)
    and no later rule set aside more"""

    @property
    def kind(self) -> Literal["transactions", "rfm"]:
        return self.plan.kind

    @property
    def source(self) -> Source:
        return self.plan.source

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.plan.rules

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.quarantined.values())


def settle(
    con: duckdb.DuckDBPyConnection, plan: Plan, queries: RfmQueries, as_of: date | None, timer: Stages | None = None
) -> tuple[Prepared, pa.Table]:
    """Run ``plan`` on ``con``: every row judged and counted per fate, the as-of date settled (``as_of``, else
    the day after the last order) and the RFM table computed with ``queries``. In ``error`` mode a single
    broken row raises :class:`InputError` naming the row, the rule and the fix; in ``quarantine`` mode, one
    reason taking more than the policy's ``max_quarantine`` of the rows does (:func:`check_shares`). A file
    that cannot be read (a line that breaks the CSV dialect, a byte of another encoding) raises the one line
    of :func:`rfmseg.io.readers.read_error`; a full disk while spilling, :class:`EnvironmentFailure`."""
    try:
        p, rfm = _settle(con, plan, queries, as_of, timer or Untimed())
    except duckdb.IOException as exc:
        if "space" in str(exc).lower():
            raise EnvironmentFailure(
                f"{plan.source.label}: the disk is full while reading ({str(exc).splitlines()[0]}); free space "
                "in the temporary folder and run again"
            ) from None
        raise read_error(plan.source.label, exc, plan.source.format) from None
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise read_error(plan.source.label, exc, plan.source.format) from None
    check_shares(plan.source.label, p.rows_read, p.quarantined, plan.policy, (*p.rules, RETURNS_ONLY))
    return p, rfm


def _settle(
    con: duckdb.DuckDBPyConnection, plan: Plan, queries: RfmQueries, as_of: date | None, timer: Stages
) -> tuple[Prepared, pa.Table]:
    with timer.stage("validate"):
        p = _prepare(con, plan, as_of)
    if p.kind == "rfm":
        with timer.stage("rfm"):
            return p, con.sql(queries.from_table).to_arrow_table()
    p, rfm = _rfm_settled(con, p, as_of, queries, timer)
    if p.unchecked_ids is not None and pc.any(rfm.column("_flag")).as_py():
        # an id needs cleaning: both passes again, with every id cleaned
        with timer.stage("validate"):
            p = _prepare(con, plan, as_of, clean_ids=True)
        p, rfm = _rfm_settled(con, p, as_of, queries, timer)
    with timer.stage("rfm"):
        p, rfm = _settle_returns_only(con, p, rfm)
        return p, rfm.drop_columns([c for c in ("_flag",) if c in rfm.column_names])


def _row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query (which always has one)."""
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return row


def _prepare(con: duckdb.DuckDBPyConnection, plan: Plan, as_of: date | None, clean_ids: bool = False) -> Prepared:
    """Type and judge the source: ``canon`` and, where the strategy for its size settles them here, the
    as-of date and the row counts. Large inputs take text ids as they are unless ``clean_ids``."""
    if plan.kind == "rfm":
        return _prepare_rfm(con, plan)
    base = Prepared(plan, as_of)
    rows = _estimated_rows(con, plan.source)
    if rows <= MATERIALISE_MAX_ROWS and not _strict_pass_first(plan, rows):
        _typed_views(con, base, plan.typed)
        return _materialised(con, base)
    unclean = None if clean_ids else plan.unclean_ids
    base = replace(base, originals=True)
    _typed_views(con, base, plan.carrying(plan.typed if unclean is None else plan.typed_ids_as_is))
    if plan.source.format != "csv":  # the row count is exact: the strict RFM pass counts the rest
        return replace(_uncounted(con, base, rows), unchecked_ids=unclean)
    if unclean is None:
        return _count(con, base, as_of)
    try:
        counted = _count(con, base, as_of)
    except InputError:
        # a problem found with the ids as they are is judged again on clean ids
        _typed_views(con, base, plan.carrying(plan.typed))
        return _count(con, base, as_of)
    return replace(counted, unchecked_ids=unclean)


def _strict_pass_first(plan: Plan, rows: int) -> bool:
    """Whether an input of ``rows`` that could be kept in a table is streamed instead, its strict RFM pass
    first (:data:`STRICT_FIRST_FROM_ROWS`): a Parquet or Arrow input, whose row count is known; error mode, where
    a file with a row set aside stops with its message either way (in quarantine mode such a file would take a
    pass of its own for the rows set aside, then the RFM pass again); and no column of the policy computed over
    the whole source (the duplicate-line check), which every pass of a stream would compute again."""
    return (
        rows >= STRICT_FIRST_FROM_ROWS
        and plan.source.format != "csv"
        and plan.policy.bad_rows == "error"
        and not any(SOURCE_VIEW in sql for _, sql in plan.policy.extra_columns)
    )


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
    numbers = p.plan.numbers
    counts = _row(
        con, f"SELECT count(*), count(ts), count(amount){''.join(f', count({n})' for n in numbers)} FROM {v.judged}"
    )
    check_whole_columns(p.source, p.plan.mapping, (counts[0], counts[1], counts[2]), p.plan.policy.date_format)
    check_field_columns(p.source, p.plan.mapping, p.plan.policy.fields, tuple(counts[3:]))
    as_of = p.as_of
    if as_of is None:
        last = _row(con, f"SELECT max(ts) FROM {v.judged} WHERE _reason IS NULL AND NOT is_return")[0]
        if last is None:
            last = _row(con, f"SELECT max(ts) FROM {v.judged} WHERE _reason IS NULL")[0]
        if last is None:
            raise problem_error(f"{p.source.label}: no usable order rows; {_first_problem(con, p.rules, v.judged)}")
        as_of = last.date() + timedelta(days=1)
    after = _after(as_of)
    late: tuple[Rule, ...] = (after,)
    if p.plan.nets_returns:
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
    numbers = p.plan.numbers
    extra = "".join(f", count({n})" for n in numbers)
    groups = con.execute(
        "SELECT _reason, is_return, CASE WHEN _reason IS NULL THEN CAST(ts AS DATE) END AS d, "
        f"count(*), count(ts), count(amount){extra} FROM {v.judged} GROUP BY ALL"
    ).fetchall()
    sums = [sum(g[i] for g in groups) for i in range(3, 6 + len(numbers))]
    check_whole_columns(p.source, p.plan.mapping, (sums[0], sums[1], sums[2]), p.plan.policy.date_format)
    check_field_columns(p.source, p.plan.mapping, p.plan.policy.fields, tuple(sums[3:]))
    if as_of is None:
        used_days = [(g[1], g[2]) for g in groups if g[0] is None and g[2] is not None]
        last = max((d for ret, d in used_days if not ret), default=None) or max((d for _, d in used_days), default=None)
        if last is None:
            raise problem_error(f"{p.source.label}: no usable order rows; {_first_problem(con, p.rules, v.judged)}")
        as_of = last + timedelta(days=1)
    after = _after(as_of)
    counts: dict[str, int] = {}
    for reason, _, d, n, *_ in groups:
        key = reason if reason is not None else (after.reason if d is not None and d > as_of else "")
        counts[key] = counts.get(key, 0) + n
    _settle_canon(con, v, (after,))
    counted = _with_counts(con, replace(p, as_of=as_of), counts, (*p.rules, after))
    return replace(counted, counted=True, returns_pending=p.plan.nets_returns)


def _uncounted(con: duckdb.DuckDBPyConnection, p: Prepared, rows: int) -> Prepared:
    """A large input whose row count is known: the views, and no pass over the file (the strict RFM pass
    shows whether every row is used)."""
    _judge(con, p)
    _settle_canon(con, p.views, _late(p.as_of))
    return replace(p, rows_read=rows, counted=False, returns_pending=p.plan.nets_returns)


def _rfm_settled(
    con: duckdb.DuckDBPyConnection, p: Prepared, given: date | None, queries: RfmQueries, timer: Stages
) -> tuple[Prepared, pa.Table]:
    """The RFM pass over ``canon``. On an input not counted yet the pass is strict: when it stops at a row
    set aside, or leaves the as-of date open, the counting pass runs and then the RFM pass again."""
    with timer.stage("rfm"):
        rfm = _rfm_pass(con, p, queries)
    if p.counted:
        assert rfm is not None  # only a strict pass gives up
        return p, rfm
    with timer.stage("validate"):
        settled = _settled_by_strict_pass(con, p, rfm, given)
        if settled is not None:
            return settled
        aside = _set_aside(con, p, given) if rfm is None else None
    if aside is not None:
        with timer.stage("rfm"):
            again = _rfm_pass(con, aside, queries)
        assert again is not None  # counted: not strict
        if aside.as_of is not None:
            return aside, again
        with timer.stage("validate"):
            settled = _settled_by_strict_pass(con, aside, again, None)
        if settled is not None:
            return settled
    with timer.stage("validate"):
        counted = _count(con, p, given)  # raises on bad rows in error mode, or when no row is usable
    with timer.stage("rfm"):
        again = _rfm_pass(con, counted, queries)
    assert again is not None  # counted: not strict
    return counted, again


def _set_aside(con: duckdb.DuckDBPyConnection, p: Prepared, given: date | None) -> Prepared | None:
    """After a strict pass met a row set aside, in quarantine mode: the rows set aside kept in a table of their
    own (one pass over the file, the same as the counting pass's) and counted from it, with the rest known
    without reading the file again. The rows read are known, every used row has a date and an amount (the row
    rules set aside those without), and the as-of date, when not given, is settled from the RFM table as after
    a strict pass (:func:`_settled_by_strict_pass`; when it cannot be, the counting pass runs after all). The
    quarantine file is then written from that table instead of another scan.

    None (the counting pass runs) in error mode, which stops on the first problem, and for a policy with extra
    number fields, whose whole-column check needs the used rows' counts."""
    if p.plan.policy.bad_rows != "quarantine" or p.plan.numbers or not p.originals:
        return None
    v = p.views
    carried = ", ".join(sql_identifier(ORIGINAL + c) for c in p.source.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {v.set_aside} AS SELECT _row, _reason, ts, amount, {carried} "
        f"FROM {v.canon} WHERE _reason IS NOT NULL"
    )
    counting = f"SELECT _reason, count(*), count(ts), count(amount) FROM {v.set_aside} GROUP BY ALL"
    groups = con.execute(counting).fetchall()
    used = p.rows_read - sum(g[1] for g in groups)
    dates, amounts = used + sum(g[2] for g in groups), used + sum(g[3] for g in groups)
    check_whole_columns(p.source, p.plan.mapping, (p.rows_read, dates, amounts), p.plan.policy.date_format)
    counts = {"": used, **{g[0]: g[1] for g in groups}}
    counted = _with_counts(con, p, counts, (*p.rules, *_late(p.as_of)))
    return replace(counted, counted=True, set_aside=v.set_aside)


def _rfm_pass(con: duckdb.DuckDBPyConnection, p: Prepared, queries: RfmQueries) -> pa.Table | None:
    """The RFM table of ``canon``, with the id check ``p`` still waits for (``_flag``).

    On an input not counted yet the pass is strict: it stops at the first row a rule sets aside and
    returns None."""
    strict = not p.counted
    sql = queries.by_mode[(strict, p.unchecked_ids is not None)]
    try:
        return con.sql(sql.replace(queries.slot, (p.as_of or AS_OF_UNKNOWN).isoformat())).to_arrow_table()
    except duckdb.InvalidInputException as e:
        if strict and queries.set_aside in str(e):
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
    n = _row(con, f"SELECT count(*) FROM {v.canon} WHERE _reason = {RETURNS_ONLY.sql_reason}")[0]
    settled = replace(
        p, quarantined={**p.quarantined, RETURNS_ONLY.reason: int(n)}, returns_pending=False, set_aside=None
    )
    all_rules = (*p.rules, *late)
    if p.plan.policy.bad_rows == "error":
        raise problem_error(f"{p.source.label}: {_first_problem(con, all_rules, v.canon)}")
    if settled.rows_used == 0:
        raise problem_error(f"{p.source.label}: no usable order rows; {_first_problem(con, all_rules, v.canon)}")
    return settled, rfm.filter(pc.invert(orphan))


def _prepare_rfm(con: duckdb.DuckDBPyConnection, plan: Plan) -> Prepared:
    """A ready RFM table: typed and judged (one row per customer), counted."""
    v = VIEWS
    con.execute(f"CREATE OR REPLACE TEMP VIEW {v.typed} AS {plan.typed}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.canon} AS SELECT *, {reason_case(plan.rules)} AS _reason FROM {v.typed}"
    )
    counts = dict(con.execute(f"SELECT coalesce(_reason, ''), count(*) FROM {v.canon} GROUP BY ALL").fetchall())
    used = counts.pop("", 0)
    if (counts and plan.policy.bad_rows == "error") or used == 0:
        raise problem_error(f"{plan.source.label}: {_first_problem(con, plan.rules, v.canon)}")
    return Prepared(plan, None, v, used + sum(counts.values()), counts)


# ------------------------------------------------------------------------------------ the views
def _typed_views(con: duckdb.DuckDBPyConnection, p: Prepared, typed: str) -> None:
    """``typed``: the canonical columns typed from the source's (``typed``, a query of the plan), and
    ``typed_r``: those with ``is_return``. Views over the source: nothing is read yet."""
    v = p.views
    con.execute(f"CREATE OR REPLACE TEMP VIEW {v.typed} AS {typed}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {v.typed_returns} AS SELECT *, "
        f"coalesce({p.plan.policy.returns_condition}, FALSE) AS is_return FROM {v.typed}"
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
    if counts and p.plan.policy.bad_rows == "error":
        raise problem_error(f"{p.source.label}: {_first_problem(con, rules, p.views.canon)}")
    if used == 0:
        raise problem_error(f"{p.source.label}: no usable order rows; {_first_problem(con, rules, p.views.canon)}")
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


# ------------------------------------------------------------------------------------ reading the counts
def reason_case(rules: tuple[Rule, ...]) -> str:
    """The SQL CASE giving a row the reason of the first rule in ``rules`` it breaks (NULL: it breaks none)."""
    whens = " ".join(f"WHEN {r.condition} THEN {r.sql_reason}" for r in rules)
    return f"CASE {whens} ELSE NULL END"


RULE_PARAMS = ("bad_rows", "date_format", "as_of", "returns", "columns", "decimal", "max_quarantine", "encoding")
"""the parameters the rules' fixes and :func:`problem_text` name"""


def problem_error(message: str) -> InputError:
    """The error of a message built with :func:`problem_text`, naming the parameters its text names."""
    return InputError(message, param=tuple(p for p in RULE_PARAMS if "{" + p + "}" in message))


def problem_text(rules: tuple[Rule, ...], found: dict[str, tuple[int, int]]) -> str:
    """'N row(s) with <meaning> (reason R, first at row N); <fix>' for the first rule in ``rules`` order
    that ``found`` (reason -> (rows, first row)) has."""
    for rule in rules:
        if rule.reason in found:
            n, first = found[rule.reason]
            return (
                f"{n} row(s) with {rule.meaning} (reason {rule.reason}, first at row {first}); {rule.fix}, "
                "or pass {bad_rows} quarantine to set such rows aside"
            )
    return "check the file"


UNGUARDED = (AFTER_AS_OF.reason, EXCLUDED_RETURN.reason)
"""reasons the user chose (an earlier as-of date, excluded returns): however many rows they take, no guard"""


def check_shares(
    label: str, rows_read: int, quarantined: dict[str, int], policy: Policy, rules: tuple[Rule, ...]
) -> None:
    """Stop when one quarantine reason takes more than ``policy.max_quarantine`` of the rows it judged (the
    rows read less those an earlier rule set aside: a row has one reason, the first rule it breaks): that
    many rows set aside for one reason is a misread file (a date or number format, a wrong column), not bad
    rows, and must not pass as a segmentation. The message names the reason, what it means and its fix."""
    limit = policy.max_quarantine
    order = {r.reason: i for i, r in reversed(list(enumerate(rules)))}
    earlier = 0
    for reason, n in sorted(quarantined.items(), key=lambda kv: order.get(kv[0], len(order))):
        judged = rows_read - earlier if reason in order else rows_read
        earlier += n
        if reason in UNGUARDED or not judged or n / judged <= limit:
            continue
        rule = next(r for r in rules if r.reason == reason) if reason in order else None
        meaning, fix = (rule.meaning, rule.fix) if rule else (reason, "check the file")
        raise problem_error(
            f"{label}: {n / judged:.0%} of the rows judged ({n:,} of {judged:,}) are set aside as {reason} "
            f"({meaning}), more than the {limit:.0%} allowed: check the file and its format ({fix}), or raise "
            "{max_quarantine} if so many are expected"
        )


def check_whole_columns(
    source: Source, mapping: dict[str, str], counts: tuple[int, int, int], date_format: str | None = None
) -> None:
    """A column that holds no value of its type at all is a wrong mapping (or a wrong ``date_format``, the one
    given), not bad rows.

    ``counts``: the typed rows' count, and the count of their dates and of their amounts."""
    total, dates, amounts = counts
    if total == 0:
        raise InputError(f"{source.label}: has no rows; give transactions to segment")
    if dates == 0:
        col = mapping[schema.ORDER_DATE]
        value = first_text(source, col)
        shown = f" (e.g. '{value}')" if value is not None else ""
        if date_format:
            raise InputError(
                f"{source.label}: no date of column '{col}'{shown} is written as the {{date_format}} given, "
                f"'{date_format}'; give the format its dates are written in, or leave out {{date_format}} to have it "
                "detected",
                param="date_format",
            )
        raise InputError(
            f"{source.label}: column '{col}' holds no readable dates{shown}; map the order date with "
            "{columns.order_date} NAME or give {date_format}",
            param=("columns.order_date", "date_format"),
        )
    if amounts == 0 and (schema.AMOUNT in mapping or schema.QUANTITY in mapping):
        numbers = mapping.get(schema.AMOUNT) or mapping.get(schema.QUANTITY)
        raise InputError(
            f"{source.label}: column '{numbers}' holds no numbers; map the amount with {{columns.amount}} NAME "
            "(or {columns.quantity} and {columns.unit_price})",
            param=("columns.amount", "columns.quantity", "columns.unit_price"),
        )


def first_text(source: Source, col: str, width: int = 40) -> str | None:
    """The first non-blank value of the text column ``col`` in the source's sample, to show in a message (one
    line, cut after ``width`` characters); None when the sample has none."""
    if source.sample is None or col not in source.sample.column_names:
        return None
    for v in source.sample.column(col).to_pylist():
        if v is not None and str(v).strip():
            return shown_id(str(v).strip(), width)
    return None


def check_field_columns(
    source: Source, mapping: dict[str, str], fields: tuple[ExtraField, ...], counts: tuple[int, ...]
) -> None:
    """An extra number column without a single number is a wrong mapping, not bad rows.

    ``counts``: the count of each extra field holding numbers (``Plan.numbers``), in order."""
    numbers = [f.name for f in fields if f.kind == "number"]
    for name, n in zip(numbers, counts, strict=True):
        if n == 0:
            raise InputError(
                f"{source.label}: column '{mapping[name]}' holds no numbers for {name}; "
                f"map {name} with {{columns}} {name}=COLUMN",
                param="columns",
            )
