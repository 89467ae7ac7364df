"""Map a source's columns onto the canonical schema, type them, and give every row a fate.

Each row of the input ends up either *used* (``_reason IS NULL``) or *quarantined* with exactly one reason
code, the first rule it breaks in :data:`RULES` order. Nothing is dropped silently: the counts per reason
plus the used rows add up to the rows read, and the quarantined rows are written to the run directory.

Two modes for rows that break a rule: ``error`` stops with a one-line message naming the first offending
row (the default for order-level files, where a bad row usually means a wrong export), and ``quarantine``
sets them aside and goes on (the default for line-item data such as Online Retail, which is messy by nature).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.io.readers import Source, sql_identifier, sql_string
from rfmseg.io.views import VIEWS

BadRows = Literal["error", "quarantine"]
Returns = Literal["net", "exclude"]

# date formats tried, in order, on text dates when no --date-format is given (ISO is tried first by CAST)
DEFAULT_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d")


@dataclass(frozen=True)
class Rule:
    """A reason code, the SQL condition (over the canonical columns) that sends a row to quarantine,
    what it means, and how a user fixes it (a template: ``{date_format}`` names that parameter, which the
    CLI renders as its flag and the API as its field; see :data:`rfmseg.io.passes.RULE_PARAMS`)."""

    reason: str
    condition: str
    meaning: str
    fix: str

    @property
    def sql_reason(self) -> str:
        """the reason code as an SQL string literal"""
        return sql_string(self.reason)


@dataclass(frozen=True)
class ExtraField:
    """A canonical column beyond the core ones (e.g. ``session_count``, ``feature_name``) that a preset's
    features read: found by its name (or an alias, or the user's mapping), typed, and judged.

    A number that is missing or not a number is quarantined as ``bad_<name>``; one outside
    [min_value, max_value] as ``out_of_range_<name>``. Text is kept as clean text (empty -> NULL).
    """

    name: str
    kind: Literal["number", "text"] = "number"
    min_value: float | None = None
    max_value: float | None = None
    aliases: tuple[str, ...] = ()

    def rules(self) -> tuple[Rule, ...]:
        if self.kind != "number":
            return ()
        fix = f"fix the {self.name} values or map another column with {{columns}} {self.name}=COLUMN"
        out = [
            Rule(
                f"bad_{self.name}",
                f"{self.name} IS NULL OR isnan({self.name}) OR isinf({self.name})",
                f"{self.name} missing or not a number",
                fix,
            )
        ]
        bounds = [f"{self.name} < {self.min_value!r}"] if self.min_value is not None else []
        bounds += [f"{self.name} > {self.max_value!r}"] if self.max_value is not None else []
        if bounds:
            lo = "-inf" if self.min_value is None else f"{self.min_value:g}"
            hi = "inf" if self.max_value is None else f"{self.max_value:g}"
            out.append(
                Rule(
                    f"out_of_range_{self.name}",
                    " OR ".join(bounds),
                    f"{self.name} outside [{lo}, {hi}]",
                    f"fix the {self.name} values (allowed: {lo} to {hi})",
                )
            )
        return tuple(out)


@dataclass
class Policy:
    """How rows are judged. Presets extend ``rules`` and set ``returns`` for line-item data."""

    bad_rows: BadRows = "error"
    date_format: str | None = None
    returns_condition: str = "FALSE"
    """SQL over the canonical columns (plus the originals) marking a row as a return."""
    returns: Returns = "net"
    """net: a return's (negative) value is subtracted from monetary; it is no order and sets no recency.
    exclude: returns are quarantined with reason ``excluded_return``."""
    rules_before: tuple[Rule, ...] = ()
    """preset rules checked before the generic ones"""
    extra_columns: tuple[tuple[str, str], ...] = ()
    """(name, SQL over the source's original columns) computed alongside the canonical ones, for rules;
    ``{source_columns}`` in the SQL stands for the list of all original columns (e.g. to find duplicates)"""
    fields: tuple[ExtraField, ...] = ()
    """extra canonical columns the features read (typed and judged like the core ones)"""
    needs_amount: bool = True
    """False when the features read no amount (e.g. SaaS usage): then no amount column is looked for"""


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
    by_key = source.by_key
    for w in (schema.normalise(field_name), *aliases):
        if w in by_key:
            return by_key[w]
    return None


def _missing(source: Source, field_name: str, also: str = "") -> ColumnError:
    if field_name in (*schema.TRANSACTION_FIELDS, schema.QUANTITY, schema.UNIT_PRICE):
        param, option = f"columns.{field_name}", f"{{columns.{field_name}}} NAME"
    else:  # a preset's extra field: mapped through the column map by its name
        param, option = "columns", f"{{columns}} {field_name}=NAME"
    return ColumnError(
        f"{source.label}: no {field_name} column{also}; columns found: {', '.join(source.columns)}; "
        f"map yours with {option}",
        param=param,
    )


def resolve_columns(
    source: Source,
    columns: dict[str, str] | None,
    fields: tuple[ExtraField, ...] = (),
    needs_amount: bool = True,
) -> tuple[str, dict[str, str]]:
    """Which kind of table this is and canonical field -> source column."""
    columns = {k: v for k, v in (columns or {}).items() if v}
    extra = {f.name for f in fields}
    unknown = set(columns) - {*schema.TRANSACTION_FIELDS, schema.QUANTITY, schema.UNIT_PRICE, *schema.RFM_FIELDS}
    unknown -= extra
    if unknown:
        also = f", {', '.join(sorted(extra))}" if extra else ""
        raise ParameterError(
            f"unknown field(s) in the column mapping: {', '.join(sorted(unknown))}; "
            f"map {', '.join(schema.TRANSACTION_FIELDS)}{also} (or quantity, unit_price, or an RFM table's "
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
    if not needs_amount and not {schema.AMOUNT, schema.QUANTITY, schema.UNIT_PRICE} & set(columns):
        pass  # the features read no amount: none is looked for
    elif schema.AMOUNT in found and schema.QUANTITY not in columns:
        mapping[schema.AMOUNT] = found[schema.AMOUNT]
    elif schema.QUANTITY in found and schema.UNIT_PRICE in found:
        mapping[schema.QUANTITY] = found[schema.QUANTITY]
        mapping[schema.UNIT_PRICE] = found[schema.UNIT_PRICE]
    else:
        raise _missing(source, schema.AMOUNT, " (nor quantity and unit price)")
    for wanted in fields:
        col = _find(source, wanted.name, columns.get(wanted.name), wanted.aliases)
        if col is None:
            raise _missing(source, wanted.name)
        mapping[wanted.name] = col
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
    """An id as clean text: 17850.0 -> '17850', '  C1 ' -> 'C1', '' -> NULL.

    Text that is a whole number written as a float ('17850.0', as a float column exported to CSV) loses its
    '.0' too, so the same customer has the same id in the Parquet, the .xlsx and the CSV of one table."""
    q = sql_identifier(col)
    if _is_numeric(duck_type):
        return (
            f"CASE WHEN {q} IS NULL OR isnan(CAST({q} AS DOUBLE)) THEN NULL "
            f"WHEN {q} = floor({q}) THEN CAST(CAST({q} AS HUGEINT) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END"
        )
    text = f"trim(CAST({q} AS VARCHAR))"
    whole = f"regexp_replace({text}, '^([0-9]+)\\.0+$', '\\1')"
    return f"NULLIF(CASE WHEN contains({text}, '.') THEN {whole} ELSE {text} END, '')"


_INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT")


def customer_expr(col: str, duck_type: str) -> str:
    """The customer id as the typed rows keep it: a whole-number column stays a number (grouping 100M rows by a
    number is far cheaper than by text; :func:`rfmseg.features.compute_rfm` makes the ids text after the
    aggregation, the same text :func:`id_expr` gives), any other column goes through :func:`id_expr`."""
    if duck_type.upper().startswith(_INTEGER_TYPES):
        return sql_identifier(col)
    return id_expr(col, duck_type)


def number_expr(col: str, duck_type: str) -> str:
    q = sql_identifier(col)
    if _is_numeric(duck_type):
        return f"CAST({q} AS DOUBLE)"
    return f"TRY_CAST(replace(trim(CAST({q} AS VARCHAR)), ',', '') AS DOUBLE)"


def date_expr(col: str, duck_type: str, date_format: str | None) -> str:
    q = sql_identifier(col)
    if _is_temporal(duck_type):
        return f"CAST({q} AS TIMESTAMP)"
    if _is_numeric(duck_type):
        raise InputError(
            f"column '{col}' holds numbers ({duck_type}), not dates; map the order date with "
            "{columns.order_date} NAME",
            param="columns.order_date",
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
        "fix the date or set {date_format} (e.g. '%d/%m/%Y')",
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
        "fix the amount, or pass {returns} net to count negative lines as returns",
    ),
)
AFTER_AS_OF = Rule(
    "after_as_of",
    "CAST(ts AS DATE) > DATE '{as_of}'",
    "row dated after the as-of date",
    "set a later {as_of} or remove the future-dated rows",
)
RETURNS_ONLY = Rule(
    "returns_only_customer",
    f"customer_id IN (SELECT customer_id FROM {VIEWS.returns_only})",
    "usable rows of a customer who has only returns (no order to give recency or frequency)",
    "nothing to fix if the purchases predate the file; otherwise export the history that holds them",
)
"""Judged per customer, after every row rule (a window over the rows still used): applies when the policy
has returns, since only then can a customer's used rows all be returns."""
EXCLUDED_RETURN = Rule(
    "excluded_return",
    "is_return",
    "return or cancellation, excluded (returns: exclude)",
    "use {returns} net to subtract returns from monetary instead",
)
RFM_RULES = (
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
"""The rules a ready RFM table's rows are judged by, in order."""
SOURCE_COLUMNS = "{source_columns}"
SOURCE_VIEW = "{source}"


@dataclass(frozen=True)
class Dialect:
    """How one SQL engine types a source column: the expression builders and its text type."""

    customer: Callable[[str, str], str]
    id: Callable[[str, str], str]
    number: Callable[[str, str], str]
    date: Callable[[str, str, str | None], str]
    text: str


DUCKDB = Dialect(customer_expr, id_expr, number_expr, date_expr, "VARCHAR")


def _text_as_is(col: str, duck_type: str) -> str:
    return f"CAST({sql_identifier(col)} AS VARCHAR)"


DUCKDB_IDS_AS_IS = Dialect(
    lambda c, t: customer_expr(c, t) if _is_numeric(t) else _text_as_is(c, t),
    lambda c, t: id_expr(c, t) if _is_numeric(t) else _text_as_is(c, t),
    number_expr,
    date_expr,
    "VARCHAR",
)
"""DuckDB with text ids taken as they are: what :data:`DUCKDB` gives whenever no id needs cleaning
(:func:`unclean_id_condition` finds one that does). Cleaning every id of 100M rows (trim, the '.0' rule)
doubled the cost of both passes over the file, and almost no large export needs it."""


def unclean_id_condition(mapping: dict[str, str], types: dict[str, str], table: str = "orders") -> str | None:
    """SQL over ``table``'s canonical customer_id and order_id, taken as they are, that is true exactly when
    :func:`id_expr` would change one (empty; surrounding white space, which DuckDB's trim takes as the space
    and the non-ASCII spaces; a whole number written as '17850.0'); None when neither id column is text.

    Cheap tests first and the costly ones only where they can matter (CASE evaluates a branch only for the
    rows that reach it): a quarter of the cost of comparing every id with its trim."""
    checks = []
    for name in (schema.CUSTOMER_ID, schema.ORDER_ID):
        col = mapping.get(name)
        if col is None or _is_numeric(types[col]):
            continue
        t = f"{table}.{name}"
        checks.append(
            f"CASE WHEN {t} = '' OR {t} LIKE ' %' OR {t} LIKE '% ' THEN true "
            f"WHEN strlen({t}) <> length({t}) THEN {t} <> trim({t}) "
            f"WHEN contains({t}, '.') THEN regexp_full_match({t}, '[0-9]+\\.0+') ELSE false END"
        )
    return f"coalesce({' OR '.join(checks)}, false)" if checks else None


def typed_columns(mapping: dict[str, str], types: dict[str, str], policy: Policy, d: Dialect) -> str:
    """The canonical columns typed from the source's (customer_id, order_id, ts, amount, quantity,
    unit_price and the policy's fields), as a SELECT list in dialect ``d``: one definition for every engine."""
    cust = d.customer(mapping[schema.CUSTOMER_ID], types[mapping[schema.CUSTOMER_ID]])
    order = (
        d.id(mapping[schema.ORDER_ID], types[mapping[schema.ORDER_ID]])
        if schema.ORDER_ID in mapping
        else f"CAST(_row AS {d.text})"
    )
    ts = d.date(mapping[schema.ORDER_DATE], types[mapping[schema.ORDER_DATE]], policy.date_format)
    if schema.AMOUNT in mapping:
        amount = d.number(mapping[schema.AMOUNT], types[mapping[schema.AMOUNT]])
        qty = price = "CAST(NULL AS DOUBLE)"
    elif schema.QUANTITY in mapping:
        q, p = mapping[schema.QUANTITY], mapping[schema.UNIT_PRICE]
        qty, price = d.number(q, types[q]), d.number(p, types[p])
        amount = f"({qty} * {price})"
    else:  # the features read no amount
        amount = qty = price = "CAST(NULL AS DOUBLE)"
    fields = "".join(
        f", {(d.number if f.kind == 'number' else d.id)(mapping[f.name], types[mapping[f.name]])} AS {f.name}"
        for f in policy.fields
    )
    return (
        f"{cust} AS customer_id, {order} AS order_id, {ts} AS ts, {amount} AS amount, {qty} AS quantity, "
        f"{price} AS unit_price{fields}"
    )


def row_rules(policy: Policy, mapping: dict[str, str]) -> tuple[tuple[Rule, ...], bool]:
    """The row rules of ``policy`` in the order they are checked (before the as-of and returns-only rules,
    which need the data), and whether the policy recognises returns. Shared with the Spark engine."""
    rules = (*policy.rules_before, *GENERIC_RULES, *(r for f in policy.fields for r in f.rules()))
    if schema.AMOUNT not in mapping and schema.QUANTITY not in mapping:
        rules = tuple(r for r in rules if r.reason not in ("bad_amount", "negative_amount"))
    has_returns = policy.returns_condition.strip().upper() != "FALSE"
    if policy.returns not in ("net", "exclude"):
        raise ParameterError(f"{{returns}} '{policy.returns}' is not allowed; use net or exclude", param="returns")
    if policy.returns == "exclude" and has_returns:
        rules = (*rules, EXCLUDED_RETURN)
    return rules, has_returns


@dataclass(frozen=True)
class Plan:
    """How one source is read, decided from its columns and the policy before a row is read: the mapping,
    the row rules and the typing SQL. Text only; :func:`rfmseg.io.passes.settle` runs it."""

    kind: Literal["transactions", "rfm"]
    """a table of transactions, or a ready RFM table (taken as it is)"""
    source: Source
    mapping: dict[str, str]
    """canonical field -> the source's column"""
    policy: Policy
    rules: tuple[Rule, ...]
    """the row rules in the order they are checked (before the as-of and returns-only rules, which need the
    data); :data:`RFM_RULES` for an RFM table"""
    typed: str
    """the query of the typed rows: ``_row`` and the canonical columns typed from the source's (every id
    cleaned), with the policy's extra columns"""
    typed_ids_as_is: str
    """the same query with text ids taken as they are (:data:`DUCKDB_IDS_AS_IS`): what large inputs read
    first; equal to ``typed`` when no id is text"""
    unclean_ids: str | None = None
    """SQL over the RFM pass's ``orders`` that is true for an id cleaning would change
    (:func:`unclean_id_condition`); None when no id column is text"""
    nets_returns: bool = False
    """the policy recognises returns and nets them: a customer's used rows can then all be returns"""
    numbers: tuple[str, ...] = ()
    """the extra fields that hold numbers (a column without a single number is a wrong mapping)"""


def plan(source: Source, columns: dict[str, str] | None, policy: Policy) -> Plan:
    """The :class:`Plan` of reading ``source`` with ``policy``; ``columns`` maps canonical fields to the
    source's columns (the rest are found by name and alias). Raises on a column that cannot be found."""
    kind, mapping = resolve_columns(source, columns, policy.fields, policy.needs_amount)
    t = source.columns
    if kind == "rfm":
        cust = id_expr(mapping[schema.CUSTOMER_ID], t[mapping[schema.CUSTOMER_ID]])
        r, f, m = (number_expr(mapping[x], t[mapping[x]]) for x in schema.RFM_FIELDS)
        typed = (
            f"SELECT _row, {cust} AS customer_id, {r} AS recency_days, {f} AS frequency, {m} AS monetary "
            f"FROM {source.name}"
        )
        return Plan("rfm", source, mapping, policy, RFM_RULES, typed, typed)
    rules, has_returns = row_rules(policy, mapping)
    originals = ", ".join(sql_identifier(c) for c in t)
    extra = "".join(
        f", {sql.replace(SOURCE_COLUMNS, originals).replace(SOURCE_VIEW, source.name)} AS {name}"
        for name, sql in policy.extra_columns
    )
    unclean = unclean_id_condition(mapping, t)

    def query(d: Dialect) -> str:
        return f"SELECT _row, {typed_columns(mapping, t, policy, d)}{extra} FROM {source.name}"

    typed = query(DUCKDB)
    return Plan(
        "transactions",
        source,
        mapping,
        policy,
        rules,
        typed,
        typed if unclean is None else query(DUCKDB_IDS_AS_IS),
        unclean,
        has_returns and policy.returns == "net",
        number_fields(policy.fields),
    )


def number_fields(fields: tuple[ExtraField, ...]) -> tuple[str, ...]:
    """The names of the extra fields that hold numbers, in order (each must hold one number somewhere)."""
    return tuple(f.name for f in fields if f.kind == "number")


# ------------------------------------------------------------------------------------ data sufficiency
MIN_CUSTOMERS_PER_SEGMENT = 10
"""fewer customers than this many per segment (on average) and K-Means groups individuals, not types"""
MIN_HISTORY_DAYS = 90
"""a shorter span between the first and the last order leaves recency too little range to mean something"""
MAX_CUSTOMER_REVENUE_SHARE = 0.10
"""one customer holding more of the revenue than this pulls a centroid on its own"""
NET_NONPOSITIVE_POLICY = (
    "kept and segmented at their net monetary: their orders happened, so recency and frequency are real"
)


def net_nonpositive(rfm: pa.Table) -> dict[str, object]:
    """Customers whose net monetary (purchases less returns) is at or below zero, with the policy applied."""
    mask = pc.less_equal(rfm.column("monetary"), 0)
    ids = rfm.column("customer_id").filter(mask).to_pylist()
    return {"customers": len(ids), "examples": ids[:10], "policy": NET_NONPOSITIVE_POLICY}


def sufficiency_warnings(rfm: pa.Table, k: int, currency: str = "$") -> list[dict[str, object]]:
    """Warnings about whether the data can carry the analysis, each ``{"id", "text", "values"}``."""
    out: list[dict[str, object]] = []
    n = rfm.num_rows
    if n < MIN_CUSTOMERS_PER_SEGMENT * k:
        out.append(
            {
                "id": "few_customers",
                "text": f"only {n:,} customers for K={k} (fewer than {MIN_CUSTOMERS_PER_SEGMENT} per segment): "
                "segments may reflect individuals; use a smaller K or more customers",
                "values": {"customers": n, "k": k, "min_customers": MIN_CUSTOMERS_PER_SEGMENT * k},
            }
        )
    first = pc.min(rfm.column("first_order_date")).as_py() if "first_order_date" in rfm.column_names else None
    last = pc.max(rfm.column("last_order_date")).as_py() if "last_order_date" in rfm.column_names else None
    if first is not None and last is not None and (last - first).days < MIN_HISTORY_DAYS:
        days = (last - first).days
        out.append(
            {
                "id": "short_history",
                "text": f"the orders span only {days} days ({first} to {last}): recency needs at least "
                f"{MIN_HISTORY_DAYS} days of history to tell active from lapsed customers; export a longer history",
                "values": {"days": days, "first_order_date": first.isoformat(), "last_order_date": last.isoformat()},
            }
        )
    monetary = rfm.column("monetary")
    total = pc.sum(pc.max_element_wise(monetary, 0.0)).as_py() or 0.0
    if n and total > 0:
        top = pc.index(monetary, pc.max(monetary)).as_py()
        share = monetary[top].as_py() / total
        if share > MAX_CUSTOMER_REVENUE_SHARE:
            cid = rfm.column("customer_id")[top].as_py()
            out.append(
                {
                    "id": "revenue_concentration",
                    "text": f"customer {cid} holds {share:.0%} of revenue ({currency}{monetary[top].as_py():,.0f}): "
                    "one customer this large pulls a segment on its own; check it is a real customer",
                    "values": {"customer_id": cid, "share_revenue": share, "monetary": monetary[top].as_py()},
                }
            )
    net = net_nonpositive(rfm)
    if net["customers"]:
        out.append(
            {
                "id": "net_nonpositive_customers",
                "text": f"{net['customers']:,} customers end with net monetary at or below zero (returns cancel "
                f"their purchases): {NET_NONPOSITIVE_POLICY}",
                "values": {"customers": net["customers"], "examples": net["examples"]},
            }
        )
    return out
