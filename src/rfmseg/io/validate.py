"""Map a source's columns onto the canonical schema, type them, and give every row a fate.

Each row of the input ends up either *used* (``_reason IS NULL``) or *quarantined* with exactly one reason
code, the first rule it breaks in :data:`RULES` order. Nothing is dropped silently: the counts per reason
plus the used rows add up to the rows read, and the quarantined rows are written to the run directory.

Two modes for rows that break a rule: ``error`` stops with a one-line message naming the first offending
row (the default for order-level files, where a bad row usually means a wrong export), and ``quarantine``
sets them aside and goes on (the default for line-item data such as Online Retail, which is messy by nature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import duckdb

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.io.readers import Source, _quote, sql_string

BadRows = Literal["error", "quarantine"]

# date formats tried, in order, on text dates when no --date-format is given (ISO is tried first by CAST)
DEFAULT_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d")


@dataclass(frozen=True)
class Rule:
    """A reason code, the SQL condition (over the canonical columns) that sends a row to quarantine,
    what it means, and how a user fixes it."""

    reason: str
    condition: str
    meaning: str
    fix: str


@dataclass
class Policy:
    """How rows are judged. Presets extend ``rules`` and set ``returns`` for line-item data."""

    bad_rows: BadRows = "error"
    date_format: str | None = None
    returns_condition: str = "FALSE"
    """SQL over the canonical columns (plus the originals) marking a row as a return."""
    rules_before: tuple[Rule, ...] = ()
    """preset rules checked before the generic ones"""
    extra_columns: tuple[tuple[str, str], ...] = ()
    """(name, SQL over the source's original columns) computed alongside the canonical ones, for rules"""


@dataclass
class Prepared:
    """The typed, judged input: the view ``canon`` with _row, the canonical columns and _reason."""

    kind: Literal["transactions", "rfm"]
    source: Source
    mapping: dict[str, str]
    as_of: date | None
    rows_read: int
    quarantined: dict[str, int] = field(default_factory=dict)
    view: str = "canon"

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.quarantined.values())

    def rows_summary(self) -> dict[str, object]:
        return {"read": self.rows_read, "used": self.rows_used, "quarantined": dict(self.quarantined)}


def _find(source: Source, field_name: str, explicit: str | None, aliases: tuple[str, ...]) -> str | None:
    if explicit:
        if explicit in source.columns:
            return explicit
        by_lower = {c.lower(): c for c in source.columns}
        if explicit.lower() in by_lower:
            return by_lower[explicit.lower()]
        raise ColumnError(
            f"{source.label}: no column '{explicit}' (given for {field_name}); "
            f"columns found: {', '.join(source.columns)}"
        )
    wanted = (schema.normalise(field_name), *aliases)
    normalised = {schema.normalise(c): c for c in source.columns}
    for w in wanted:
        if w in normalised:
            return normalised[w]
    return None


def _missing(source: Source, field_name: str, also: str = "") -> ColumnError:
    option = schema.FIELD_OPTIONS.get(field_name, f"--columns {field_name}=NAME")
    return ColumnError(
        f"{source.label}: no {field_name} column{also}; columns found: {', '.join(source.columns)}; "
        f"map yours with {option} NAME"
    )


def resolve_columns(source: Source, columns: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """Which kind of table this is and canonical field -> source column."""
    columns = {k: v for k, v in (columns or {}).items() if v}
    unknown = set(columns) - {*schema.TRANSACTION_FIELDS, schema.QUANTITY, schema.UNIT_PRICE, *schema.RFM_FIELDS}
    if unknown:
        raise ParameterError(
            f"unknown field(s) in the column mapping: {', '.join(sorted(unknown))}; "
            f"map {', '.join(schema.TRANSACTION_FIELDS)} (or quantity, unit_price, or an RFM table's "
            f"{', '.join(schema.RFM_FIELDS)})"
        )
    found: dict[str, str] = {}
    for f in (*schema.TRANSACTION_FIELDS, schema.QUANTITY, schema.UNIT_PRICE, *schema.RFM_FIELDS):
        col = _find(source, f, columns.get(f), schema.ALIASES.get(f, ()))
        if col is not None:
            found[f] = col
    cust = found.get(schema.CUSTOMER_ID)
    if cust is None:
        raise _missing(source, schema.CUSTOMER_ID)
    is_rfm = all(f in found for f in schema.RFM_FIELDS) and schema.ORDER_DATE not in columns
    if is_rfm and schema.ORDER_DATE not in found:
        return "rfm", {f: found[f] for f in schema.RFM_TABLE_FIELDS}
    if schema.ORDER_DATE not in found:
        raise _missing(source, schema.ORDER_DATE)
    mapping = {schema.CUSTOMER_ID: cust, schema.ORDER_DATE: found[schema.ORDER_DATE]}
    if schema.ORDER_ID in found:
        mapping[schema.ORDER_ID] = found[schema.ORDER_ID]
    if schema.AMOUNT in found and schema.QUANTITY not in columns:
        mapping[schema.AMOUNT] = found[schema.AMOUNT]
    elif schema.QUANTITY in found and schema.UNIT_PRICE in found:
        mapping[schema.QUANTITY] = found[schema.QUANTITY]
        mapping[schema.UNIT_PRICE] = found[schema.UNIT_PRICE]
    else:
        raise _missing(source, schema.AMOUNT, " (nor quantity and unit price)")
    return "transactions", mapping


def _is_numeric(duck_type: str) -> bool:
    t = duck_type.upper()
    return t.startswith(
        (
            "DECIMAL",
            "DOUBLE",
            "FLOAT",
            "REAL",
            "INTEGER",
            "BIGINT",
            "SMALLINT",
            "TINYINT",
            "HUGEINT",
            "UBIGINT",
            "UINTEGER",
            "USMALLINT",
            "UTINYINT",
        )
    )


def _is_temporal(duck_type: str) -> bool:
    return duck_type.upper().startswith(("TIMESTAMP", "DATE"))


def id_expr(col: str, duck_type: str) -> str:
    """An id as clean text: 17850.0 -> '17850', '  C1 ' -> 'C1', '' -> NULL."""
    q = _quote(col)
    if _is_numeric(duck_type):
        return (
            f"CASE WHEN {q} IS NULL OR isnan(CAST({q} AS DOUBLE)) THEN NULL "
            f"WHEN {q} = floor({q}) THEN CAST(CAST({q} AS HUGEINT) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END"
        )
    return f"NULLIF(trim(CAST({q} AS VARCHAR)), '')"


def number_expr(col: str, duck_type: str) -> str:
    q = _quote(col)
    if _is_numeric(duck_type):
        return f"CAST({q} AS DOUBLE)"
    return f"TRY_CAST(replace(trim(CAST({q} AS VARCHAR)), ',', '') AS DOUBLE)"


def date_expr(col: str, duck_type: str, date_format: str | None) -> str:
    q = _quote(col)
    if _is_temporal(duck_type):
        return f"CAST({q} AS TIMESTAMP)"
    if _is_numeric(duck_type):
        raise InputError(
            f"column '{col}' holds numbers ({duck_type}), not dates; map the order date with --date-col NAME"
        )
    text = f"trim(CAST({q} AS VARCHAR))"
    if date_format:
        return f"try_strptime({text}, {sql_string(date_format)})"
    fmts = ", ".join(sql_string(f) for f in DEFAULT_DATE_FORMATS)
    return f"coalesce(TRY_CAST({text} AS TIMESTAMP), try_strptime({text}, [{fmts}]))"


GENERIC_RULES = (
    Rule(
        "missing_customer_id",
        "customer_id IS NULL",
        "no customer id",
        "fill the customer id or drop the row in the export",
    ),
    Rule("missing_order_id", "order_id IS NULL", "no order id", "fill the order id"),
    Rule(
        "bad_date",
        "ts IS NULL",
        "order date missing or not a date",
        "fix the date or set --date-format (e.g. '%d/%m/%Y')",
    ),
    Rule(
        "bad_amount",
        "amount IS NULL OR isnan(amount) OR isinf(amount)",
        "amount missing or not a number",
        "fix the amount (plain numbers, no currency signs)",
    ),
    Rule(
        "negative_amount",
        "amount < 0 AND NOT is_return",
        "negative amount on an order",
        "fix the amount, or use a preset that treats negative lines as returns",
    ),
)
AFTER_AS_OF = Rule(
    "after_as_of",
    "CAST(ts AS DATE) > DATE '{as_of}'",
    "order dated after the as-of date",
    "set a later --as-of or remove the future-dated rows",
)


def _reason_case(rules: tuple[Rule, ...]) -> str:
    whens = " ".join(f"WHEN {r.condition} THEN {sql_string(r.reason)}" for r in rules)
    return f"CASE {whens} ELSE NULL END"


def prepare(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    columns: dict[str, str] | None = None,
    policy: Policy | None = None,
    as_of: date | None = None,
) -> Prepared:
    """Build the ``canon`` view over ``source``, settle the as-of date and count rows per fate.

    In ``error`` mode a single broken row raises :class:`InputError` naming the row, the rule and the fix.
    """
    policy = policy or Policy()
    kind, mapping = resolve_columns(source, columns)
    types = source.columns
    if kind == "rfm":
        return _prepare_rfm(con, source, mapping, policy)

    cust = id_expr(mapping[schema.CUSTOMER_ID], types[mapping[schema.CUSTOMER_ID]])
    order = (
        id_expr(mapping[schema.ORDER_ID], types[mapping[schema.ORDER_ID]])
        if schema.ORDER_ID in mapping
        else "CAST(_row AS VARCHAR)"
    )
    ts = date_expr(mapping[schema.ORDER_DATE], types[mapping[schema.ORDER_DATE]], policy.date_format)
    if schema.AMOUNT in mapping:
        amount = number_expr(mapping[schema.AMOUNT], types[mapping[schema.AMOUNT]])
    else:
        q, p = mapping[schema.QUANTITY], mapping[schema.UNIT_PRICE]
        amount = f"({number_expr(q, types[q])} * {number_expr(p, types[p])})"
    extra = "".join(f", {sql} AS {name}" for name, sql in policy.extra_columns)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW typed AS SELECT _row, {cust} AS customer_id, {order} AS order_id, "
        f"{ts} AS ts, {amount} AS amount{extra} FROM {source.name}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW typed_r AS SELECT *, coalesce({policy.returns_condition}, FALSE) "
        "AS is_return FROM typed"
    )
    rules = (*policy.rules_before, *GENERIC_RULES)
    _check_whole_columns(con, source, mapping)
    if as_of is None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW judged AS SELECT *, {_reason_case(rules)} AS _reason FROM typed_r")
        last = con.execute("SELECT max(ts) FROM judged WHERE _reason IS NULL AND NOT is_return").fetchone()[0]
        if last is None:
            last = con.execute("SELECT max(ts) FROM judged WHERE _reason IS NULL").fetchone()[0]
        if last is None:
            raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, rules)}")
        as_of = last.date() + timedelta(days=1)
    after = Rule(
        AFTER_AS_OF.reason, AFTER_AS_OF.condition.format(as_of=as_of.isoformat()), AFTER_AS_OF.meaning, AFTER_AS_OF.fix
    )
    all_rules = (*rules, after)
    con.execute(f"CREATE OR REPLACE TEMP VIEW canon AS SELECT *, {_reason_case(all_rules)} AS _reason FROM typed_r")
    counts = dict(con.execute("SELECT coalesce(_reason, ''), count(*) FROM canon GROUP BY ALL").fetchall())
    used = counts.pop("", 0)
    prepared = Prepared("transactions", source, mapping, as_of, used + sum(counts.values()), counts)
    if counts and policy.bad_rows == "error":
        raise InputError(f"{source.label}: {_first_problem(con, all_rules, view='canon')}")
    if used == 0:
        raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, all_rules, view='canon')}")
    return prepared


def _check_whole_columns(con: duckdb.DuckDBPyConnection, source: Source, mapping: dict[str, str]) -> None:
    """A column that holds no value of its type at all is a wrong mapping, not bad rows."""
    total, dates, amounts = con.execute("SELECT count(*), count(ts), count(amount) FROM typed").fetchone()
    if total == 0:
        raise InputError(f"{source.label}: has no rows; give transactions to segment")
    if dates == 0:
        col = mapping[schema.ORDER_DATE]
        raise InputError(
            f"{source.label}: column '{col}' holds no readable dates; map the order date with --date-col "
            "NAME or give --date-format"
        )
    if amounts == 0:
        col = mapping.get(schema.AMOUNT) or mapping.get(schema.QUANTITY)
        raise InputError(
            f"{source.label}: column '{col}' holds no numbers; map the amount with --amount-col NAME "
            "(or --quantity-col and --price-col)"
        )


def _first_problem(con: duckdb.DuckDBPyConnection, rules: tuple[Rule, ...], view: str = "judged") -> str:
    """The first broken rule, as 'N row(s) with <meaning> (first at row R); <fix>'."""
    counts = dict(
        con.execute(
            f"SELECT _reason, (count(*), min(_row)) FROM {view} WHERE _reason IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    for rule in rules:
        if rule.reason in counts:
            n, first = counts[rule.reason].values() if isinstance(counts[rule.reason], dict) else counts[rule.reason]
            return (
                f"{n} row(s) with {rule.meaning} (reason {rule.reason}, first at row {first}); {rule.fix}, "
                "or pass --bad-rows quarantine to set such rows aside"
            )
    return "check the file"


def _prepare_rfm(con: duckdb.DuckDBPyConnection, source: Source, mapping: dict[str, str], policy: Policy) -> Prepared:
    t = source.columns
    cust = id_expr(mapping[schema.CUSTOMER_ID], t[mapping[schema.CUSTOMER_ID]])
    r, f, m = (number_expr(mapping[x], t[mapping[x]]) for x in schema.RFM_FIELDS)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW typed_r AS SELECT _row, {cust} AS customer_id, {r} AS recency_days, "
        f"{f} AS frequency, {m} AS monetary FROM {source.name}"
    )
    rules = (
        Rule("missing_customer_id", "customer_id IS NULL", "no customer id", "fill the customer id"),
        Rule(
            "bad_recency",
            "recency_days IS NULL OR recency_days < 0",
            "recency missing or negative",
            "recency_days must be a whole number of days >= 0",
        ),
        Rule(
            "bad_frequency",
            "frequency IS NULL OR frequency < 1",
            "frequency missing or below 1",
            "frequency must be a count of orders >= 1",
        ),
        Rule(
            "bad_monetary",
            "monetary IS NULL OR isnan(monetary) OR monetary < 0",
            "monetary missing, not a number or negative",
            "monetary must be a number >= 0",
        ),
        Rule(
            "duplicate_customer_id",
            "count(*) OVER (PARTITION BY customer_id) > 1 AND customer_id IS NOT NULL",
            "customer id listed more than once",
            "keep one row per customer",
        ),
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW canon AS SELECT *, {_reason_case(rules)} AS _reason FROM typed_r")
    counts = dict(con.execute("SELECT coalesce(_reason, ''), count(*) FROM canon GROUP BY ALL").fetchall())
    used = counts.pop("", 0)
    prepared = Prepared("rfm", source, mapping, None, used + sum(counts.values()), counts)
    if (counts and policy.bad_rows == "error") or used == 0:
        raise InputError(f"{source.label}: {_first_problem(con, rules, view='canon')}")
    return prepared
