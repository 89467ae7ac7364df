"""Map a source's columns onto the canonical schema, type them, and give every row a fate.

Each row of the input ends up either *used* (``_reason IS NULL``) or *quarantined* with exactly one reason
code, the first rule it breaks in :data:`RULES` order. Nothing is dropped silently: the counts per reason
plus the used rows add up to the rows read, and the quarantined rows are written to the run directory.

Two modes for rows that break a rule: ``error`` stops with a one-line message naming the first offending
row (the default for order-level files, where a bad row usually means a wrong export), and ``quarantine``
sets them aside and goes on (the default for line-item data such as Online Retail, which is messy by nature).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.io.readers import Source, _quote, sql_string

BadRows = Literal["error", "quarantine"]
Returns = Literal["net", "exclude"]

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
        fix = f"fix the {self.name} values or map another column with --col {self.name}=COLUMN"
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


@dataclass
class Deferred:
    """What :func:`settle_rfm` needs to apply the returns-only rule after the RFM pass (streaming path)."""

    rules: tuple[Rule, ...]
    """every row rule, the after-as-of rule included"""
    late: tuple[Rule, ...]
    """the rules that ``canon`` applies on top of the row rules (after-as-of)"""
    bad_rows: BadRows


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
    deferred: Deferred | None = None
    """set on large inputs: the returns-only rule is settled from the RFM table (:func:`settle_rfm`)"""
    unchecked_ids: str | None = None
    """set on large inputs with text ids, which ``canon`` then takes as they are (cleaning every id of 100M
    rows, trim and the '.0' rule, doubled the cost of both passes over the file): the condition, over the
    RFM pass's ``orders``, of an id that cleaning would change. If any order meets it, the input must be
    prepared again with ``clean_ids=True`` (:func:`rfmseg.pipeline.load_rfm` does)."""
    count: Callable[[date | None], Prepared] | None = None
    """set when the rows were not counted yet (a large Parquet or Arrow input, whose row count is known
    without reading it): ``canon`` judges the rows, ``as_of`` is None unless given, and the RFM pass is
    strict: it stops at the first row a rule sets aside. If it stops, or the as-of date cannot be settled
    from the RFM table, ``count(as_of)`` runs the counting pass and returns the Prepared it gives
    (:func:`rfmseg.pipeline.load_rfm` decides). Counting in the RFM pass instead (a row count per order
    and per customer) made its hash tables spill to disk at 100M rows: 28 s instead of 20 s."""

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
    option = (
        f"{schema.FIELD_OPTIONS[field_name]} NAME" if field_name in schema.FIELD_OPTIONS else f"--col {field_name}=NAME"
    )
    return ColumnError(
        f"{source.label}: no {field_name} column{also}; columns found: {', '.join(source.columns)}; "
        f"map yours with {option}"
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
    for f in fields:
        col = _find(source, f.name, columns.get(f.name), f.aliases)
        if col is None:
            raise _missing(source, f.name)
        mapping[f.name] = col
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
    q = _quote(col)
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
        return _quote(col)
    return id_expr(col, duck_type)


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
    "row dated after the as-of date",
    "set a later --as-of or remove the future-dated rows",
)
RETURNS_ONLY = Rule(
    "returns_only_customer",
    "customer_id IN (SELECT customer_id FROM returns_only)",
    "usable rows of a customer who has only returns (no order to give recency or frequency)",
    "nothing to fix if the purchases predate the file; otherwise export the history that holds them",
)
"""Judged per customer, after every row rule (a window over the rows still used): applies when the policy
has returns, since only then can a customer's used rows all be returns."""
EXCLUDED_RETURN = Rule(
    "excluded_return",
    "is_return",
    "return or cancellation, excluded (--returns exclude)",
    "use --returns net to subtract returns from monetary instead",
)
SOURCE_COLUMNS = "{source_columns}"
SOURCE_VIEW = "{source}"


def _reason_case(rules: tuple[Rule, ...]) -> str:
    whens = " ".join(f"WHEN {r.condition} THEN {sql_string(r.reason)}" for r in rules)
    return f"CASE {whens} ELSE NULL END"


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
    return f"CAST({_quote(col)} AS VARCHAR)"


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


def prepare(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    columns: dict[str, str] | None = None,
    policy: Policy | None = None,
    as_of: date | None = None,
    clean_ids: bool = False,
) -> Prepared:
    """Build the ``canon`` view over ``source``, settle the as-of date and count rows per fate.

    In ``error`` mode a single broken row raises :class:`InputError` naming the row, the rule and the fix.
    Large inputs take text ids as they are unless ``clean_ids`` (see :attr:`Prepared.unchecked_ids`), and
    large Parquet or Arrow inputs are counted only when the strict RFM pass finds a row to set aside
    (see :attr:`Prepared.count`).
    """
    policy = policy or Policy()
    kind, mapping = resolve_columns(source, columns, policy.fields, policy.needs_amount)
    types = source.columns
    if kind == "rfm":
        return _prepare_rfm(con, source, mapping, policy)

    originals = ", ".join(_quote(c) for c in source.columns)
    extra = "".join(
        f", {sql.replace(SOURCE_COLUMNS, originals).replace(SOURCE_VIEW, source.name)} AS {name}"
        for name, sql in policy.extra_columns
    )
    rules, has_returns = row_rules(policy, mapping)

    def typed_views(dialect: Dialect) -> None:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW typed AS SELECT _row, {typed_columns(mapping, types, policy, dialect)}"
            f"{extra} FROM {source.name}"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW typed_r AS SELECT *, coalesce({policy.returns_condition}, FALSE) "
            "AS is_return FROM typed"
        )

    rows = estimated_rows(con, source)
    if rows > MATERIALISE_MAX_ROWS:
        unclean = None if clean_ids else unclean_id_condition(mapping, types)
        typed_views(DUCKDB if unclean is None else DUCKDB_IDS_AS_IS)

        def count(at: date | None) -> Prepared:
            return _prepare_streaming(con, source, mapping, policy, rules, at, has_returns)

        if source.format != "csv":  # the row count is exact: the RFM pass counts the rest
            prepared = _uncounted(con, source, mapping, policy, rules, as_of, has_returns, rows)
            prepared.count = count
        elif unclean is not None:
            # a problem found with the ids as they are is judged again on clean ids
            try:
                prepared = count(as_of)
            except InputError:
                typed_views(DUCKDB)
                return count(as_of)
        else:
            return count(as_of)
        # text ids as they are: the RFM pass checks them per order (``unchecked_ids``), and the caller
        # prepares again with clean ids if one needs cleaning
        prepared.unchecked_ids = unclean
        return prepared
    typed_views(DUCKDB)
    # the source is read and every row judged once, into a table: the later stages read it, not the file
    con.execute(f"CREATE OR REPLACE TEMP TABLE judged AS SELECT *, {_reason_case(rules)} AS _reason FROM typed_r")
    _check_whole_columns(con, source, mapping)
    _check_field_columns(con, source, mapping, policy.fields)
    if as_of is None:
        last = con.execute("SELECT max(ts) FROM judged WHERE _reason IS NULL AND NOT is_return").fetchone()[0]
        if last is None:
            last = con.execute("SELECT max(ts) FROM judged WHERE _reason IS NULL").fetchone()[0]
        if last is None:
            raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, rules)}")
        as_of = last.date() + timedelta(days=1)
    after = _after(as_of)
    late = (after,)
    if has_returns and policy.returns == "net":
        # customers left with returns only, once every row rule has spoken: a (small) table of ids
        late = (after, RETURNS_ONLY)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE returns_only AS SELECT customer_id FROM judged "
            f"WHERE coalesce(_reason, {_reason_case((after,))}) IS NULL GROUP BY customer_id "
            "HAVING NOT bool_or(NOT is_return)"
        )
    all_rules = (*rules, *late)
    settle_canon(con, late)
    counts = dict(con.execute("SELECT coalesce(_reason, ''), count(*) FROM canon GROUP BY ALL").fetchall())
    used = counts.pop("", 0)
    prepared = Prepared("transactions", source, mapping, as_of, used + sum(counts.values()), counts)
    if counts and policy.bad_rows == "error":
        raise InputError(f"{source.label}: {_first_problem(con, all_rules, view='canon')}")
    if used == 0:
        raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, all_rules, view='canon')}")
    return prepared


def row_rules(policy: Policy, mapping: dict[str, str]) -> tuple[tuple[Rule, ...], bool]:
    """The row rules of ``policy`` in the order they are checked (before the as-of and returns-only rules,
    which need the data), and whether the policy recognises returns. Shared with the Spark engine."""
    rules = (*policy.rules_before, *GENERIC_RULES, *(r for f in policy.fields for r in f.rules()))
    if schema.AMOUNT not in mapping and schema.QUANTITY not in mapping:
        rules = tuple(r for r in rules if r.reason not in ("bad_amount", "negative_amount"))
    has_returns = policy.returns_condition.strip().upper() != "FALSE"
    if policy.returns not in ("net", "exclude"):
        raise ParameterError(f"--returns '{policy.returns}' is not allowed; use net or exclude")
    if policy.returns == "exclude" and has_returns:
        rules = (*rules, EXCLUDED_RETURN)
    return rules, has_returns


def problem_text(rules: tuple[Rule, ...], found: dict[str, tuple[int, int]]) -> str:
    """'N row(s) with <meaning> (reason R, first at row N); <fix>' for the first rule in ``rules`` order
    that ``found`` (reason -> (rows, first row)) has."""
    for rule in rules:
        if rule.reason in found:
            n, first = found[rule.reason]
            return (
                f"{n} row(s) with {rule.meaning} (reason {rule.reason}, first at row {first}); {rule.fix}, "
                "or pass --bad-rows quarantine to set such rows aside"
            )
    return "check the file"


def _check_whole_columns(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    mapping: dict[str, str],
    counts: tuple[int, int, int] | None = None,
) -> None:
    """A column that holds no value of its type at all is a wrong mapping, not bad rows.

    ``counts`` (rows, dates, amounts) when already known; else they are counted over ``judged``."""
    total, dates, amounts = counts or con.execute("SELECT count(*), count(ts), count(amount) FROM judged").fetchone()
    if total == 0:
        raise InputError(f"{source.label}: has no rows; give transactions to segment")
    if dates == 0:
        col = mapping[schema.ORDER_DATE]
        raise InputError(
            f"{source.label}: column '{col}' holds no readable dates; map the order date with --date-col "
            "NAME or give --date-format"
        )
    if amounts == 0 and (schema.AMOUNT in mapping or schema.QUANTITY in mapping):
        col = mapping.get(schema.AMOUNT) or mapping.get(schema.QUANTITY)
        raise InputError(
            f"{source.label}: column '{col}' holds no numbers; map the amount with --amount-col NAME "
            "(or --quantity-col and --price-col)"
        )


def _check_field_columns(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    mapping: dict[str, str],
    fields: tuple[ExtraField, ...],
    known: tuple[int, ...] | None = None,
) -> None:
    """An extra number column without a single number is a wrong mapping, not bad rows.

    ``known``: the counts of the number fields, in order, when already counted."""
    numbers = [f.name for f in fields if f.kind == "number"]
    if not numbers:
        return
    counts = known or con.execute(f"SELECT {', '.join(f'count({n})' for n in numbers)} FROM judged").fetchone()
    for name, n in zip(numbers, counts, strict=True):
        if n == 0:
            raise InputError(
                f"{source.label}: column '{mapping[name]}' holds no numbers for {name}; "
                f"map {name} with --col {name}=COLUMN"
            )


def _first_problem(con: duckdb.DuckDBPyConnection, rules: tuple[Rule, ...], view: str = "judged") -> str:
    """The first broken rule, as 'N row(s) with <meaning> (first at row R); <fix>'."""
    counts = dict(
        con.execute(
            f"SELECT _reason, (count(*), min(_row)) FROM {view} WHERE _reason IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    found = {r: tuple(v.values()) if isinstance(v, dict) else tuple(v) for r, v in counts.items()}
    return problem_text(rules, found)  # type: ignore[arg-type]


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


# ------------------------------------------------------------------------------------ large inputs
MATERIALISE_MAX_ROWS = 5_000_000
"""Up to this many rows the judged rows are kept in a DuckDB table that the later stages read; above it the
file is streamed instead (a table of 100M judged rows would need gigabytes): one pass counts the rows per
fate and finds the default as-of date, the RFM pass reads the file again, and the returns-only rule, which
needs to see each customer's rows, is settled from the RFM table (:func:`settle_rfm`)."""
CSV_BYTES_PER_ROW = 32
"""to estimate a CSV's rows from its size without reading it (a CSV export of order lines: 40-100 bytes)"""


def estimated_rows(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    """Rows of ``source``: exact for Parquet (metadata), Arrow and workbooks; a size estimate for CSV."""
    if source.format == "csv":
        try:
            return os.path.getsize(source.label) // CSV_BYTES_PER_ROW
        except OSError:
            return 0
    return int(con.execute(f"SELECT count(*) FROM {source.name}").fetchone()[0])


def _after(as_of: date) -> Rule:
    return Rule(
        AFTER_AS_OF.reason, AFTER_AS_OF.condition.format(as_of=as_of.isoformat()), AFTER_AS_OF.meaning, AFTER_AS_OF.fix
    )


def _uncounted(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    mapping: dict[str, str],
    policy: Policy,
    rules: tuple[Rule, ...],
    as_of: date | None,
    has_returns: bool,
    rows: int,
) -> Prepared:
    """:func:`prepare` for a large input whose row count is known: the views, no pass over the file (the
    strict RFM pass shows whether every row is used; see :attr:`Prepared.count`)."""
    _judge(con, rules)
    late = (_after(as_of),) if as_of is not None else ()
    settle_canon(con, late)
    prepared = Prepared("transactions", source, mapping, as_of, rows, {})
    if has_returns and policy.returns == "net":
        prepared.deferred = Deferred((*rules, *late), late, policy.bad_rows)
    return prepared


def _judge(con: duckdb.DuckDBPyConnection, rules: tuple[Rule, ...]) -> None:
    """``judged``: the typed rows (a view over the file) with the first row rule each one breaks."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW judged AS SELECT *, {_reason_case(rules)} AS _reason FROM typed_r")


def settle_canon(con: duckdb.DuckDBPyConnection, late: tuple[Rule, ...]) -> None:
    """``canon``: ``judged`` with the rules that need the data (after-as-of, returns-only) applied on top."""
    con.execute(
        "CREATE OR REPLACE TEMP VIEW canon AS SELECT * EXCLUDE (_reason), "
        f"coalesce(_reason, {_reason_case(late) if late else 'NULL'}) AS _reason FROM judged"
    )


def settle_as_of(con: duckdb.DuckDBPyConnection, prepared: Prepared, as_of: date) -> None:
    """The default as-of date found by the RFM pass of an uncounted input (:attr:`Prepared.count`)."""
    prepared.as_of = as_of
    late = (_after(as_of),)
    settle_canon(con, late)
    if prepared.deferred is not None:
        prepared.deferred = Deferred((*prepared.deferred.rules, *late), late, prepared.deferred.bad_rows)


def _prepare_streaming(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    mapping: dict[str, str],
    policy: Policy,
    rules: tuple[Rule, ...],
    as_of: date | None,
    has_returns: bool,
) -> Prepared:
    """:func:`prepare` for inputs too large to keep: ``judged`` and ``canon`` are views over the file, and
    one pass counts what the checks, the default as-of date and the per-reason counts need."""
    _judge(con, rules)
    numbers = [f.name for f in policy.fields if f.kind == "number"]
    extra = "".join(f", count({n})" for n in numbers)
    groups = con.execute(
        "SELECT _reason, is_return, CASE WHEN _reason IS NULL THEN CAST(ts AS DATE) END AS d, "
        f"count(*), count(ts), count(amount){extra} FROM judged GROUP BY ALL"
    ).fetchall()
    sums = [sum(g[i] for g in groups) for i in range(3, 6 + len(numbers))]
    _check_whole_columns(con, source, mapping, (sums[0], sums[1], sums[2]))
    _check_field_columns(con, source, mapping, policy.fields, tuple(sums[3:]) or None)
    if as_of is None:
        used_days = [(g[1], g[2]) for g in groups if g[0] is None and g[2] is not None]
        last = max((d for ret, d in used_days if not ret), default=None) or max((d for _, d in used_days), default=None)
        if last is None:
            raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, rules)}")
        as_of = last + timedelta(days=1)
    after = _after(as_of)
    counts: dict[str, int] = {}
    for reason, _, d, n, *_ in groups:
        key = reason if reason is not None else (after.reason if d is not None and d > as_of else "")
        counts[key] = counts.get(key, 0) + n
    settle_canon(con, (after,))
    used = counts.pop("", 0)
    all_rules = (*rules, after)
    prepared = Prepared("transactions", source, mapping, as_of, used + sum(counts.values()), counts)
    if counts and policy.bad_rows == "error":
        raise InputError(f"{source.label}: {_first_problem(con, all_rules, view='canon')}")
    if used == 0:
        raise InputError(f"{source.label}: no usable order rows; {_first_problem(con, all_rules, view='canon')}")
    if has_returns and policy.returns == "net":
        prepared.deferred = Deferred(all_rules, (after,), policy.bad_rows)
    return prepared


def settle_rfm(con: duckdb.DuckDBPyConnection, prepared: Prepared, rfm: pa.Table) -> pa.Table:
    """The RFM table with the returns-only rule applied, when :func:`prepare` left it to the RFM pass.

    A customer whose used rows are all returns is the customer the RFM pass finds with no last order date;
    their rows are quarantined as ``returns_only_customer`` (``canon`` and the counts say so) and they leave
    the table. Nothing happens when there is no such customer or the rule was applied before.
    """
    pending, prepared.deferred = prepared.deferred, None
    if pending is None or "last_order_date" not in rfm.column_names:
        return rfm
    orphan = pc.is_null(rfm.column("last_order_date"))
    if not pc.any(orphan).as_py():
        return rfm
    con.register("_returns_only_ids", rfm.filter(orphan).select(["customer_id"]))
    kept_as = dict((r[0], r[1]) for r in con.execute("DESCRIBE judged").fetchall())["customer_id"]
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE returns_only AS SELECT CAST(customer_id AS {kept_as}) AS customer_id "
            "FROM _returns_only_ids"
        )
    finally:
        con.unregister("_returns_only_ids")
    late = (*pending.late, RETURNS_ONLY)
    settle_canon(con, late)
    n = con.execute(f"SELECT count(*) FROM canon WHERE _reason = {sql_string(RETURNS_ONLY.reason)}").fetchone()[0]
    prepared.quarantined[RETURNS_ONLY.reason] = int(n)
    all_rules = (*pending.rules, RETURNS_ONLY)
    if pending.bad_rows == "error":
        raise InputError(f"{prepared.source.label}: {_first_problem(con, all_rules, view='canon')}")
    if prepared.rows_used == 0:
        raise InputError(
            f"{prepared.source.label}: no usable order rows; {_first_problem(con, all_rules, view='canon')}"
        )
    return rfm.filter(pc.invert(orphan))


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
