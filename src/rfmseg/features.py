"""RFM per customer, as of a date, in DuckDB SQL.

The definitions (shared with the Spark engine, which runs the same SQL text):

* an order is the set of a customer's rows with the same order id; its date is its latest row's date and
  its amount the sum of its rows' amounts;
* recency_days = whole days from the customer's last (non-return) order date to the as-of date;
* frequency = number of distinct (non-return) orders;
* monetary = sum of the customer's order amounts, returns included (they are negative), rounded to cents;
* first_order_date / last_order_date = dates of the first and last (non-return) orders.

The aggregation is two-level (customer x order, then customer): it streams, unlike count(DISTINCT).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from rfmseg.errors import ParameterError

ORDERS_CTE = """
WITH orders AS (
    SELECT customer_id, order_id, bool_and(is_return) AS is_return, max(ts) AS ts, sum(amount) AS amount
    FROM {source}
    WHERE _reason IS NULL
    GROUP BY customer_id, order_id
)
"""
"""the first level of the default RFM query: one row per (customer, order) of the used rows"""
RFM_SQL = (
    ORDERS_CTE
    + """SELECT
    customer_id,
    CAST(date_diff('day', CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE), DATE '{as_of}') AS BIGINT)
        AS recency_days,
    CAST(count(*) FILTER (WHERE NOT is_return) AS BIGINT) AS frequency,
    CAST(round(sum(amount), 2) AS DOUBLE) AS monetary,
    CAST(min(ts) FILTER (WHERE NOT is_return) AS DATE) AS first_order_date,
    CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE) AS last_order_date
FROM orders
GROUP BY customer_id
"""
)


# ------------------------------------------------------------------------------------ features as definitions
AGG_FNS = ("count", "count_distinct", "sum", "max", "min", "mean")
"""count(*) counts events (rows); count_distinct(c) counts distinct values; sum, max, min, mean aggregate a number."""
CORE_COLUMNS = ("customer_id", "order_id", "ts", "amount", "quantity", "unit_price")
"""canonical columns every transactions source has (quantity and unit_price only for line items)"""
DIALECTS = ("duckdb", "spark")
SET_ASIDE = "rfmseg: a row is set aside"
"""the error a strict RFM pass stops with (:func:`rfm_sql`)"""
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_AGG_TEXT = re.compile(r"^\s*([a-z_]+)\s*\(\s*(\*|[A-Za-z_][A-Za-z0-9_]*)?\s*\)\s*$")


@dataclass(frozen=True)
class Agg:
    """One aggregation over a canonical column, per customer: ``Agg("sum", "amount")`` is ``sum(amount)``.

    Returns (rows with ``is_return``) count for nothing but ``sum``: they are no event, so they neither count
    nor set a max, min or mean, while their (negative) value nets out of a sum.
    """

    fn: str
    column: str | None = None

    def __post_init__(self) -> None:
        if self.fn not in AGG_FNS:
            raise ParameterError(f"unknown aggregation '{self.fn}'; use one of {', '.join(AGG_FNS)}")
        if self.fn == "count":
            if self.column not in (None, "*"):
                raise ParameterError(
                    f"count({self.column}) is not an aggregation; use count(*) for events or "
                    f"count_distinct({self.column}) for distinct values"
                )
            object.__setattr__(self, "column", None)
        elif not self.column or not _IDENT.match(self.column):
            raise ParameterError(
                f"{self.fn}({self.column or ''}) needs a canonical column name (lower-case letters, digits, _), "
                "e.g. sum(amount)"
            )

    @classmethod
    def parse(cls, text: str) -> Agg:
        """``"sum(amount)"``, ``"count(*)"``, ``"count_distinct(feature_name)"`` -> Agg."""
        m = _AGG_TEXT.match(str(text))
        if not m:
            raise ParameterError(
                f"'{text}' is not an aggregation; write FUNCTION(column) with FUNCTION one of "
                f"{', '.join(AGG_FNS)}, e.g. count_distinct(order_id) or count(*)"
            )
        return cls(m.group(1), m.group(2))

    def __str__(self) -> str:
        return f"{self.fn}({self.column or '*'})"

    @property
    def kind(self) -> str:
        """What the column must hold: 'text' (any values, counted distinct) or 'number'."""
        return "text" if self.fn == "count_distinct" else "number"


@dataclass(frozen=True)
class FeatureSet:
    """What recency, frequency and monetary are, as aggregations over the canonical columns.

    recency is always the whole days from the customer's last (non-return) event to the as-of date;
    frequency and monetary are any :class:`Agg`. The default is the e-commerce definition: distinct orders
    and the sum of order amounts. :func:`rfm_sql` turns a FeatureSet into the SQL of the RFM table.
    """

    frequency: Agg = Agg("count_distinct", "order_id")
    monetary: Agg = Agg("sum", "amount")
    recency: Agg = Agg("max", "ts")

    def __post_init__(self) -> None:
        if self.recency != Agg("max", "ts"):
            raise ParameterError(
                f"recency '{self.recency}' is not supported; recency is the days since the last event, max(ts)"
            )
        if self.frequency.column in ("ts", "customer_id") or self.monetary.column in ("ts", "customer_id"):
            raise ParameterError("frequency and monetary aggregate columns other than ts and customer_id")

    def columns(self) -> tuple[str, ...]:
        """The canonical columns the features read (besides customer_id and ts)."""
        cols = [a.column for a in (self.frequency, self.monetary) if a.column]
        return tuple(dict.fromkeys(cols))

    def extra_columns(self) -> dict[str, str]:
        """Columns beyond the core ones, with what they must hold ('number' or 'text')."""
        out: dict[str, str] = {}
        for a in (self.frequency, self.monetary):
            if a.column and a.column not in CORE_COLUMNS:
                out[a.column] = "number" if "number" in (out.get(a.column), a.kind) else "text"
        return out

    @property
    def needs_amount(self) -> bool:
        return "amount" in self.columns()

    def to_dict(self) -> dict[str, str]:
        return {"recency": str(self.recency), "frequency": str(self.frequency), "monetary": str(self.monetary)}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> FeatureSet:
        given = {k: Agg.parse(v) for k, v in d.items() if k in ("recency", "frequency", "monetary") and v}
        return cls(**given)


DEFAULT_FEATURES = FeatureSet()


@dataclass(frozen=True)
class Units:
    """How to speak of R, F and M and of their sums in tables and insights (the JSON keys do not change).

    ``total`` names the sum of monetary over customers ("revenue"); empty when such a sum means nothing
    (the distinct features a user touched), and then the shares of it and the insights built on it are left
    out. ``ratio`` names monetary / frequency ("AOV"); empty hides it.
    """

    entity: str = "customers"
    recency: str = "days since last order"
    frequency: str = "orders"
    event: str = "order"
    """one of what frequency counts, in the singular"""
    monetary: str = "spend"
    total: str = "revenue"
    ratio: str = "AOV"
    money: bool = True
    """monetary is money: shown with the currency"""
    suffix: str = ""
    """shown after a non-money monetary value, e.g. '%' for a progress"""

    def value(self, x: float, currency: str = "$") -> str:
        if self.money:
            return f"{'-' if x < 0 else ''}{currency}{abs(x):,.0f}"
        return f"{x:,.0f}{self.suffix}" if abs(x) >= 10 or float(x).is_integer() else f"{x:,.1f}{self.suffix}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Units:
        """The units stored in a summary or a preset file (JSON values, taken as they are)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})


DEFAULT_UNITS = Units()


@dataclass(frozen=True)
class Words:
    """The phrases prose uses for one run's figures, in its units and currency: every sentence an answer, a
    context pack, a warning or a report writes about a customer's R, F and M goes through here, so a SaaS run
    speaks of sessions and features used and never of orders and dollars."""

    units: Units = DEFAULT_UNITS
    currency: str = "$"

    @classmethod
    def of(cls, summary: Mapping[str, Any] | None) -> Words:
        """The words of a run from its summary (``units`` and ``currency``; older runs: e-commerce, $)."""
        s = summary or {}
        return cls(Units.from_dict(s.get("units")), str(s.get("currency") or "$"))

    @property
    def entity(self) -> str:
        return self.units.entity

    def value(self, m: float) -> str:
        """A monetary figure: '$1,234', '2', '80%'."""
        return self.units.value(float(m), self.currency)

    def count(self, f: float, digits: int | None = None) -> str:
        """A frequency: '6 orders', '4.2 sessions' (``digits``: always that many decimals, for a mean)."""
        f = float(f)
        if digits is None:
            digits = 0 if f.is_integer() else 1
        return f"{f:,.{digits}f} {self.units.frequency}"

    def amount(self, m: float) -> str:
        """A monetary value in a sentence: '$2 spent' for spend, else 'features used 2', 'deal size $5,000'."""
        if self.units.money and self.units.monetary == "spend":
            return f"{self.value(m)} spent"
        return f"{self.units.monetary} {self.value(m)}"

    def ratio(self, x: float | None) -> str:
        """'AOV $129', or '' where the units have no such ratio (sessions per feature is not a price)."""
        return f"{self.units.ratio} {self.value(x)}" if self.units.ratio and x is not None else ""

    def last(self, days: float, before: object | None = None) -> str:
        """'last order 115 days before 2025-06-30' / 'last session 3 days ago'."""
        when = f"before {before}" if before is not None else "ago"
        return f"last {self.units.event} {float(days):,.0f} day{'' if float(days) == 1 else 's'} {when}"

    def total(self, x: float) -> str:
        """A sum over customers, '$94,900 revenue' / '$1.2M pipeline value', or '' where a sum means nothing."""
        return f"{self.value(x)} {self.units.total}" if self.units.total else ""

    def figures(self, r: float, f: float, m: float, before: object | None = None) -> str:
        """'last order 115 days before 2025-06-30, 6 orders, $2 spent (AOV $0)'."""
        ratio = self.ratio(m / f) if f else ""
        return f"{self.last(r, before)}, {self.count(f)}, {self.amount(m)}" + (f" ({ratio})" if ratio else "")


def _level1(fs: FeatureSet) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The per-(customer, order) aggregates, the per-customer expressions of frequency and monetary, and
    the (alias, column) of distinct counts over columns other than order_id (each its own two-level CTE)."""
    cols = ["bool_and(is_return) AS is_return", "max(ts) AS ts"]
    outer: list[str] = []
    distinct: list[tuple[str, str]] = []
    for role, a in (("frequency", fs.frequency), ("monetary", fs.monetary)):
        c = a.column
        if a.fn == "count_distinct" and c == "order_id":
            expr = "count(*) FILTER (WHERE NOT is_return)"
        elif a.fn == "count_distinct":
            alias = f"_d_{role}"
            distinct.append((alias, str(c)))
            expr = f"coalesce({alias}.n, 0)"
        elif a.fn == "count":
            cols.append("count(*) AS _events")
            expr = "sum(_events) FILTER (WHERE NOT is_return)"
        elif a.fn == "sum":
            cols.append(f"sum({c}) AS {c}")
            expr = f"sum({c})"
        elif a.fn in ("max", "min"):
            cols.append(f"{a.fn}({c}) AS _{a.fn}_{c}")
            expr = f"{a.fn}(_{a.fn}_{c}) FILTER (WHERE NOT is_return)"
        else:  # mean over events
            cols += [f"sum({c}) AS _sum_{c}", f"count({c}) AS _n_{c}"]
            expr = f"sum(_sum_{c}) FILTER (WHERE NOT is_return) / sum(_n_{c}) FILTER (WHERE NOT is_return)"
        if role == "frequency":
            outer.append(f"CAST({expr} AS BIGINT)" if a.fn.startswith("count") else f"CAST(round({expr}) AS BIGINT)")
        else:
            outer.append(f"CAST(round({expr}, 2) AS DOUBLE)" if a.fn in ("sum", "mean") else f"CAST({expr} AS DOUBLE)")
    return list(dict.fromkeys(cols)), outer, distinct


def rfm_sql(
    source: str,
    as_of: date | None,
    features: FeatureSet = DEFAULT_FEATURES,
    dialect: str = "duckdb",
    flag: str | None = None,
    strict: bool = False,
) -> str:
    """The SQL text of the RFM table over the judged transactions view ``source`` (DuckDB or Spark SQL).

    The default FeatureSet gives exactly :data:`RFM_SQL`. Other definitions keep its shape: a first
    aggregation per customer x order, then per customer; a distinct count over another column is a
    two-level aggregation of its own (customer x value, then customer), joined on the customer id.
    ``flag``: a condition over ``orders.customer_id`` and ``orders.order_id``, evaluated once per order and
    returned per customer as ``_flag`` (whether any of the customer's orders meets it).
    ``strict``: the query fails (a DuckDB error naming :data:`SET_ASIDE`) at the first row a rule sets
    aside, instead of leaving it out: when it succeeds, every row of ``source`` was used (what settles the
    counts of an input not counted before, without counting; rfmseg.io.passes._rfm_settled).
    ``as_of`` None leaves :data:`AS_OF_SLOT` where the date goes.
    """
    if dialect not in DIALECTS:
        raise ParameterError(f"unknown SQL dialect '{dialect}'; use one of {', '.join(DIALECTS)}")
    day = as_of.isoformat() if as_of is not None else AS_OF_SLOT
    if features == DEFAULT_FEATURES:
        sql = RFM_SQL.format(source=source, as_of=day)
    else:
        sql = _generated_sql(source, day, features)
    if strict:
        used = f"CASE WHEN _reason IS NULL THEN TRUE ELSE error('{SET_ASIDE}') END"
        sql = sql.replace("WHERE _reason IS NULL", f"WHERE {used}")
    if flag is not None:
        flagged = f"AS last_order_date,\n    bool_or({flag}) AS _flag\nFROM orders"
        sql = sql.replace("AS last_order_date\nFROM orders", flagged)
    if dialect == "spark":
        # DuckDB's date_diff('day', a, b) is Spark's datediff(b, a)
        sql = sql.replace(
            f"date_diff('day', CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE), DATE '{day}')",
            f"datediff(DATE '{day}', CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE))",
        )
    return sql


def _generated_sql(source: str, day: str, fs: FeatureSet) -> str:
    level1, (freq, mon), distinct = _level1(fs)
    ctes = [
        "orders AS (\n    SELECT customer_id, order_id, "
        + ", ".join(level1)
        + f"\n    FROM {source}\n    WHERE _reason IS NULL\n    GROUP BY customer_id, order_id\n)"
    ]
    for alias, col in dict.fromkeys(distinct):
        ctes.append(
            f"{alias} AS (\n    SELECT customer_id, count(*) AS n FROM (\n"
            f"        SELECT customer_id, {col} FROM {source}\n"
            f"        WHERE _reason IS NULL AND NOT is_return AND {col} IS NOT NULL\n"
            f"        GROUP BY customer_id, {col}\n    ) AS _v GROUP BY customer_id\n)"
        )
    joins = "".join(f"\nLEFT JOIN {alias} ON {alias}.customer_id = orders.customer_id" for alias, _ in distinct)
    group = ", ".join(["orders.customer_id", *(f"{alias}.n" for alias, _ in distinct)])
    last = "max(ts) FILTER (WHERE NOT is_return)"
    return (
        "WITH " + ",\n".join(ctes) + "\nSELECT\n    orders.customer_id AS customer_id,\n"
        f"    CAST(date_diff('day', CAST({last} AS DATE), DATE '{day}') AS BIGINT) AS recency_days,\n"
        f"    {freq} AS frequency,\n    {mon} AS monetary,\n"
        f"    CAST(min(ts) FILTER (WHERE NOT is_return) AS DATE) AS first_order_date,\n"
        f"    CAST({last} AS DATE) AS last_order_date\n"
        f"FROM orders{joins}\nGROUP BY {group}\n"
    )


AS_OF_SLOT = "$as_of"
"""what stands for the as-of date in :class:`RfmQueries` until a read knows it"""


@dataclass(frozen=True)
class RfmQueries:
    """The RFM queries of one read, over its judged view, in customer id order, with the as-of date left open
    (``slot``, replaced by the date as ``YYYY-MM-DD``): one for each mode of the pass, and the query that takes
    a ready RFM table."""

    by_mode: dict[tuple[bool, bool], str]
    """(strict, flagged) -> query; ``flagged`` only where the read has an id condition to flag"""
    from_table: str
    """a ready RFM table (already judged): the used rows in canonical form"""
    slot: str = AS_OF_SLOT
    set_aside: str = SET_ASIDE
    """what the error of a strict pass that met a row set aside says"""


def _ordered(sql: str) -> str:
    """``sql`` (an RFM query) in customer id order, with the ids as text.

    Ids kept as whole numbers by the typed rows (see validate.customer_expr) sort far faster than their
    text, and become text here, after the aggregation."""
    return f"SELECT * REPLACE (CAST(customer_id AS VARCHAR) AS customer_id) FROM ({sql}) AS r ORDER BY r.customer_id"


def rfm_queries(source: str, features: FeatureSet = DEFAULT_FEATURES, flag: str | None = None) -> RfmQueries:
    """The :class:`RfmQueries` over the judged view ``source``; ``flag``: see :func:`rfm_sql`."""
    modes = [(strict, flagged) for strict in (False, True) for flagged in ((False, True) if flag else (False,))]
    by_mode = {
        (strict, flagged): _ordered(rfm_sql(source, None, features, flag=flag if flagged else None, strict=strict))
        for strict, flagged in modes
    }
    from_table = (
        f"SELECT customer_id, CAST(round(recency_days) AS BIGINT) AS recency_days, "
        f"CAST(round(frequency) AS BIGINT) AS frequency, CAST(monetary AS DOUBLE) AS monetary, "
        f"CAST(NULL AS DATE) AS first_order_date, CAST(NULL AS DATE) AS last_order_date "
        f"FROM {source} WHERE _reason IS NULL ORDER BY customer_id"
    )
    return RfmQueries(by_mode, from_table)


def compute_rfm(
    con: duckdb.DuckDBPyConnection,
    source: str,
    as_of: date,
    features: FeatureSet = DEFAULT_FEATURES,
    flag: str | None = None,
    strict: bool = False,
) -> pa.Table:
    """RFM table from the judged transactions view ``source``, in customer id order (numeric order for ids
    kept as whole numbers, which sort far faster than their text; text order otherwise).
    ``flag``, ``strict``: see :func:`rfm_sql`."""
    return con.sql(_ordered(rfm_sql(source, as_of, features, flag=flag, strict=strict))).to_arrow_table()


# ------------------------------------------------------------------------------------ the mergeable RFM state
STATE_FEATURES = DEFAULT_FEATURES
"""the one feature set the RFM state holds the aggregates of (distinct orders, summed amounts): its R, F and M
are sums, minima and maxima of per-order values, so the state of two sets of whole orders merges exactly.
Another definition (a distinct count of another column, a mean) needs the history: no state."""
STATE_SQL = (
    ORDERS_CTE
    + """SELECT
    customer_id,
    min(ts) FILTER (WHERE NOT is_return) AS first_ts,
    max(ts) FILTER (WHERE NOT is_return) AS last_ts,
    CAST(count(*) FILTER (WHERE NOT is_return) AS BIGINT) AS orders,
    sum(amount) AS spend
FROM orders
GROUP BY customer_id
"""
)
"""The RFM state of the judged view ``{source}``, one row per customer: first and last (non-return) order
time, the number of (non-return) orders and the unrounded sum of the order amounts (returns netted). The
orders are those of :data:`ORDERS_CTE` over ``{used}`` rows: a state keeps the customers whose rows are all
returns too (``orders`` 0), whom a later order brings in."""
STATE_MERGE_SQL = """
SELECT customer_id, min(first_ts) AS first_ts, max(last_ts) AS last_ts, CAST(sum(orders) AS BIGINT) AS orders,
    sum(spend) AS spend
FROM (SELECT * FROM {old} UNION ALL BY NAME SELECT * FROM {new}) AS s
GROUP BY customer_id
"""
"""two RFM states of disjoint sets of orders, merged"""


def state_sql(source: str, used: str = "_reason IS NULL") -> str:
    """The RFM state (:data:`STATE_SQL`) of the judged view ``source`` over the rows that meet ``used``."""
    return STATE_SQL.format(source=source).replace("WHERE _reason IS NULL", f"WHERE {used}")


def state_rfm_sql(state: str, as_of: date) -> str:
    """The RFM table of the RFM state ``state`` as of ``as_of``: what :data:`RFM_SQL` gives on the rows the
    state was built from, in the same customer id order (customers with returns only are left out)."""
    sql = (
        "SELECT customer_id,\n"
        f"    CAST(date_diff('day', CAST(last_ts AS DATE), DATE '{as_of.isoformat()}') AS BIGINT) AS recency_days,\n"
        "    orders AS frequency,\n    CAST(round(spend, 2) AS DOUBLE) AS monetary,\n"
        "    CAST(first_ts AS DATE) AS first_order_date,\n    CAST(last_ts AS DATE) AS last_order_date\n"
        f"FROM {state} WHERE orders > 0"
    )
    return _ordered(sql)
