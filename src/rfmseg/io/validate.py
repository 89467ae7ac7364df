"""Map a source's columns onto the canonical schema, type them, and give every row a fate.

Each row of the input ends up either *used* (``_reason IS NULL``) or *quarantined* with exactly one reason
code, the first rule it breaks in :data:`RULES` order. Nothing is dropped silently: the counts per reason
plus the used rows add up to the rows read, and the quarantined rows are written to the run directory.

Two modes for rows that break a rule: ``error`` stops with a one-line message naming the first offending
row (the default for order-level files, where a bad row usually means a wrong export), and ``quarantine``
sets them aside and goes on (the default for line-item data such as Online Retail, which is messy by nature).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.io.readers import Source, sql_identifier, sql_string
from rfmseg.io.rules import (
    BAD_CUSTOMER_ID,
    EXCLUDED_RETURN,
    GENERIC_RULES,
    RFM_RULES,
    SOURCE_COLUMNS,
    SOURCE_VIEW,
    Decimal,
    ExtraField,
    Policy,
    Rule,
)
from rfmseg.io.views import ORIGINAL

# date formats tried, in order, on text dates when no date format is given or detected (ISO is tried first by
# CAST); a column of day/month/year dates gets its own (detect_date_formats)
DEFAULT_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d")


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
    by_key: dict[str, list[str]] = {}
    for c in source.columns:
        by_key.setdefault(schema.normalise(c), []).append(c)
    for w in (schema.normalise(field_name), *aliases):
        found = by_key.get(w, [])
        if len(found) > 1:  # 'CustomerID' and 'customer_id': which one is meant cannot be told
            param, option = _option(field_name)
            raise ColumnError(
                f"{source.label}: columns {' and '.join(repr(c) for c in found)} could each be the {field_name} "
                f"column; map the one to read with {option}",
                param=param,
            )
        if found:
            return found[0]
    return None


def _option(field_name: str) -> tuple[str, str]:
    """The parameter that maps ``field_name`` to a column, and how a message shows it (a template)."""
    if field_name in (*schema.TRANSACTION_FIELDS, schema.QUANTITY, schema.UNIT_PRICE):
        return f"columns.{field_name}", f"{{columns.{field_name}}} NAME"
    return "columns", f"{{columns}} {field_name}=NAME"  # a preset's extra field: mapped by its name


def _missing(source: Source, field_name: str, also: str = "") -> ColumnError:
    param, option = _option(field_name)
    return ColumnError(
        f"{source.label}: no {field_name} column{also}; columns found: {', '.join(source.columns)}; "
        f"map yours with {option}",
        param=param,
    )


_RFM_STEMS = {"recency_days": "recen", "frequency": "freq", "monetary": "monet"}
"""how the columns of an RFM table's fields start, whatever else they are called (recency, freq, monetary_value)"""


def _either(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _not_rfm(source: Source, found: dict[str, str]) -> ColumnError | None:
    """The error of a table without an order date that looks like a ready RFM table (columns named for two of
    recency, frequency and monetary) but lacks a field's column by its name: what an RFM table needs and how
    to map the columns it calls otherwise (``recency`` for recency_days). None: it does not look like one."""
    keys = {c: schema.normalise(c) for c in source.columns}
    like = {f: [c for c, k in keys.items() if k.startswith(_RFM_STEMS[f])] for f in schema.RFM_FIELDS}
    if sum(bool(cols) for cols in like.values()) < 2:
        return None
    missing = [f for f in schema.RFM_FIELDS if f not in found]
    maps = " ".join(f"{{columns}} {f}={like[f][0] if len(like[f]) == 1 else 'NAME'}" for f in missing)
    return ColumnError(
        f"{source.label}: no {schema.ORDER_DATE} column, and no {_either(missing)} column for a ready RFM table "
        f"(one row per customer: {', '.join(schema.RFM_TABLE_FIELDS)}); columns found: "
        f"{', '.join(source.columns)}; map yours with {maps}",
        param="columns",
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
        raise _not_rfm(source, found) or _missing(source, schema.ORDER_DATE)
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


_GROUPED = {".": "[+-]?[0-9]{1,3}(,[0-9]{3})+([.][0-9]*)?", ",": "[+-]?[0-9]{1,3}([.][0-9]{3})+(,[0-9]*)?"}
"""a number with thousands separators, by decimal mark (1,234.50; 1.234,50)"""


def number_expr(col: str, duck_type: str, decimal: str = ".") -> str:
    """A number column as DOUBLE; text is read with ``decimal`` as the decimal mark. The other mark is taken
    only as a thousands separator in its place (``1,234.50``, ``1.234,50``): ``6,95`` read with ``.`` is not
    a number (it is quarantined as such), never 695."""
    q = sql_identifier(col)
    if _is_numeric(duck_type):
        return f"CAST({q} AS DOUBLE)"
    t = f"trim(CAST({q} AS VARCHAR))"
    if decimal == ",":
        other, plain, grouped = ".", f"replace({t}, ',', '.')", f"replace(replace({t}, '.', ''), ',', '.')"
    else:
        other, plain, grouped = ",", t, f"replace({t}, ',', '')"
    return (
        f"TRY_CAST(CASE WHEN NOT contains({t}, {sql_string(other)}) THEN {plain} "
        f"WHEN regexp_full_match({t}, {sql_string(_GROUPED[decimal])}) THEN {grouped} END AS DOUBLE)"
    )


_DIRECTIVE = re.compile(r"%(-?[a-zA-Z%]?)")
_KNOWN_DIRECTIVES = set("aAwdbBhmyYHIpMSfgnzZjUWcxX%") | {"-d", "-m", "-y", "-H", "-I", "-M", "-S", "-j"}


def check_date_format(fmt: str) -> str:
    """``fmt`` if it is a strptime format DuckDB reads (and holds a directive), else a one-line refusal."""
    found = _DIRECTIVE.findall(fmt)
    bad = [d for d in found if d not in _KNOWN_DIRECTIVES]
    if bad or not found:
        what = f"%{bad[0]} is not a date directive" if bad else "it holds no % directive"
        raise ParameterError(
            f"{{date_format}} '{fmt}' is not a date format ({what}); use e.g. '%d/%m/%Y %H:%M' or '%Y-%m-%d'",
            param="date_format",
        )
    return fmt


def date_expr(col: str, duck_type: str, date_format: str | None, fallbacks: tuple[str, ...] = ()) -> str:
    """A date column as TIMESTAMP: text with ``date_format``, else ISO, else one of ``fallbacks`` (default:
    :data:`DEFAULT_DATE_FORMATS`)."""
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
        return f"try_strptime({text}, {sql_string(check_date_format(date_format))})"
    fmts = ", ".join(sql_string(f) for f in fallbacks or DEFAULT_DATE_FORMATS)
    return f"coalesce(TRY_CAST({text} AS TIMESTAMP), try_strptime({text}, [{fmts}]))"


@dataclass(frozen=True)
class Dialect:
    """How one SQL engine types a source column: the expression builders and its text type."""

    customer: Callable[[str, str], str]
    id: Callable[[str, str], str]
    number: Callable[[str, str, str], str]
    """(column, type, decimal mark)"""
    date: Callable[[str, str, str | None, tuple[str, ...]], str]
    """(column, type, the format given, the formats detected to try without one; empty: the dialect's own)"""
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
    ts = d.date(mapping[schema.ORDER_DATE], types[mapping[schema.ORDER_DATE]], policy.date_format, policy.date_formats)
    mark = policy.decimal or "."

    def number(col: str, duck_type: str) -> str:
        return d.number(col, duck_type, mark)

    if schema.AMOUNT in mapping:
        amount = number(mapping[schema.AMOUNT], types[mapping[schema.AMOUNT]])
        qty = price = "CAST(NULL AS DOUBLE)"
    elif schema.QUANTITY in mapping:
        q, p = mapping[schema.QUANTITY], mapping[schema.UNIT_PRICE]
        qty, price = number(q, types[q]), number(p, types[p])
        amount = f"({qty} * {price})"
    else:  # the features read no amount
        amount = qty = price = "CAST(NULL AS DOUBLE)"
    fields = "".join(
        f", {(number if f.kind == 'number' else d.id)(mapping[f.name], types[mapping[f.name]])} AS {f.name}"
        for f in policy.fields
    )
    return (
        f"{cust} AS customer_id, {order} AS order_id, {ts} AS ts, {amount} AS amount, {qty} AS quantity, "
        f"{price} AS unit_price{fields}"
    )


def row_rules(policy: Policy, mapping: dict[str, str], text_id: bool = False) -> tuple[tuple[Rule, ...], bool]:
    """The row rules of ``policy`` in the order they are checked (before the as-of and returns-only rules,
    which need the data), and whether the policy recognises returns. Shared with the Spark engine.

    A text customer id (``text_id``: the source's id column is not a number) is also judged by
    :data:`BAD_CUSTOMER_ID`."""
    generic: tuple[Rule, ...] = GENERIC_RULES
    if text_id:
        generic = (GENERIC_RULES[0], BAD_CUSTOMER_ID, *GENERIC_RULES[1:])
    rules = (*policy.rules_before, *generic, *(r for f in policy.fields for r in f.rules()))
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
    originals: str = ""
    """a SELECT list of the source's columns as they were read, each named with :data:`rfmseg.io.views.ORIGINAL`
    before it (empty for a ready RFM table): what a streamed read's typed rows carry (:meth:`carrying`)"""

    def carrying(self, typed: str) -> str:
        """``typed`` (:attr:`typed` or :attr:`typed_ids_as_is`) also carrying the source's columns as read.

        A streamed read carries them so that the pass that finds the rows set aside also keeps their original
        values, for the quarantine file (the RFM pass reads none of them: DuckDB leaves unread columns out of
        the scan); a materialised read leaves them out of its table and joins the small source for the file."""
        if not self.originals:
            return typed
        head, _, tail = typed.rpartition(" FROM ")
        return f"{head}, {self.originals} FROM {tail}"


def plan(source: Source, columns: dict[str, str] | None, policy: Policy) -> Plan:
    """The :class:`Plan` of reading ``source`` with ``policy``; ``columns`` maps canonical fields to the
    source's columns (the rest are found by name and alias). Raises on a column that cannot be found."""
    kind, mapping = resolve_columns(source, columns, policy.fields, policy.needs_amount)
    t = source.columns
    policy = detected(source, mapping, policy)
    mark = policy.decimal or "."
    if kind == "rfm":
        cust = id_expr(mapping[schema.CUSTOMER_ID], t[mapping[schema.CUSTOMER_ID]])
        r, f, m = (number_expr(mapping[x], t[mapping[x]], mark) for x in schema.RFM_FIELDS)
        typed = (
            f"SELECT _row, {cust} AS customer_id, {r} AS recency_days, {f} AS frequency, {m} AS monetary "
            f"FROM {source.name}"
        )
        return Plan("rfm", source, mapping, policy, RFM_RULES, typed, typed)
    rules, has_returns = row_rules(policy, mapping, text_id=not _is_numeric(t[mapping[schema.CUSTOMER_ID]]))
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
        ", ".join(f"{sql_identifier(c)} AS {sql_identifier(ORIGINAL + c)}" for c in t),
    )


# ------------------------------------------------------------------------------------ formats, detected
def detected(source: Source, mapping: dict[str, str], policy: Policy) -> Policy:
    """``policy`` with what it leaves open decided from the source's sample (:attr:`Source.sample`): the
    date formats of a text date column and the decimal mark of the text number columns. Refuses, naming
    the parameter to set, a column that reads two ways."""
    sample = source.sample
    if sample is None:
        return policy
    date_col = mapping.get(schema.ORDER_DATE)
    if policy.date_format is not None:
        check_date_format(policy.date_format)
    elif date_col is not None and date_col in sample.column_names and not policy.date_formats:
        # (formats given, e.g. those an earlier read of the same export found, are taken as they are)
        found = detect_date_formats(source.label, date_col, _texts(sample, date_col), sample.num_rows)
        if found:
            policy = replace(policy, date_formats=found)
    if policy.decimal is None:
        fields = (schema.AMOUNT, schema.QUANTITY, schema.UNIT_PRICE, *schema.RFM_FIELDS, *number_fields(policy.fields))
        cols = [mapping[f] for f in fields if f in mapping and mapping[f] in sample.column_names]
        policy = replace(policy, decimal=detect_decimal(source.label, {c: _texts(sample, c) for c in cols}))
    elif policy.decimal not in (".", ","):
        raise ParameterError(f"{{decimal}} '{policy.decimal}' is not allowed; use . or ,", param="decimal")
    return policy


def _texts(sample: pa.Table, col: str) -> set[str]:
    """The distinct non-empty values of a sample's column, stripped."""
    values = pc.unique(pc.utf8_trim_whitespace(sample.column(col).cast(pa.string()))).to_pylist()
    return {v for v in values if v}


_DAY_MONTH = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})((?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?)")


def detect_date_formats(label: str, col: str, values: Iterable[str], rows: int) -> tuple[str, ...]:
    """The formats to read a text date column with, when its values are written ``dd/mm/yyyy`` or
    ``mm/dd/yyyy`` (with ``/``, ``.`` or ``-``, a 2- or 4-digit year, an optional time): day-first when a
    first number is above 12, month-first when a second one is; refused when no value tells (each reads as
    another date both ways) or when both do. Empty: the column is not written so (ISO and the
    :data:`DEFAULT_DATE_FORMATS` read it)."""
    matches = [m for v in values if (m := _DAY_MONTH.fullmatch(v))]
    if not matches:
        return ()
    firsts = [int(m[1]) for m in matches]
    seconds = [int(m[3]) for m in matches]
    day_first, month_first = max(firsts) > 12, max(seconds) > 12
    if day_first and month_first:
        a = next(m[0] for m in matches if int(m[1]) > 12)
        b = next(m[0] for m in matches if int(m[3]) > 12)
        raise InputError(
            f"{label}: column '{col}' mixes day-first and month-first dates ('{a}', '{b}'); export the dates in "
            "one format and set {date_format} (e.g. '%d/%m/%Y')",
            param="date_format",
        )
    if not day_first and not month_first:
        two_way = [m[0] for m in matches if m[1].lstrip("0") != m[3].lstrip("0")]
        if two_way:
            raise InputError(
                f"{label}: the dates of column '{col}' read both day-first and month-first (no day above 12 in "
                f"the first {rows:,} rows, e.g. '{sorted(two_way)[0]}'); set {{date_format}} to '%d/%m/%Y' or "
                "'%m/%d/%Y' (with the time, e.g. '%d/%m/%Y %H:%M')",
                param="date_format",
            )
    order = ("%d", "%m") if day_first else ("%m", "%d")
    out: list[str] = []
    for sep, year in sorted({(m[2], "%Y" if len(m[4]) == 4 else "%y") for m in matches}):
        base = f"{order[0]}{sep}{order[1]}{sep}{year}"
        for time in (" %H:%M:%S.%f", " %H:%M:%S", " %H:%M", "T%H:%M:%S", ""):
            out.append(base + time)
    return tuple(out)


def _decimal_evidence(value: str) -> str | None:
    """The decimal mark ``value`` shows: '.', ',' or None when it reads the same either way or both ways
    (``1,234``, ``1.234``: a thousands separator or three decimals)."""
    v = value.lstrip("+-")
    comma, point = v.rfind(","), v.rfind(".")
    if comma >= 0 and point >= 0:
        return "," if comma > point else "."
    mark = "," if comma >= 0 else "." if point >= 0 else None
    if mark is None:
        return None
    parts = v.split(mark)
    if len(parts) > 2:  # 1,234,567 / 1.234.567: thousands separators
        return "." if mark == "," else ","
    return None if len(parts[1]) == 3 and parts[0].isdigit() and 0 < len(parts[0]) <= 3 else mark


_NUMBERISH = re.compile(r"[+-]?[0-9][0-9.,]*")


def detect_decimal(label: str, columns: dict[str, set[str]]) -> Decimal:
    """The decimal mark of a source's text number columns (``columns``: each one's values): ``,`` when a value
    shows a decimal comma (``6,95``, ``1.234,50``), ``.`` when one shows a decimal point or none shows any.
    Refused when values show both, or when the only commas read either way (``1,234``)."""
    seen: dict[str, tuple[str, str]] = {}
    ambiguous: tuple[str, str] | None = None
    for col, values in columns.items():
        for v in values:
            if not _NUMBERISH.fullmatch(v):
                continue
            mark = _decimal_evidence(v)
            if mark is not None:
                seen.setdefault(mark, (col, v))
            elif ambiguous is None and "," in v:
                ambiguous = (col, v)
    if len(seen) == 2:
        (c1, v1), (c2, v2) = seen["."], seen[","]
        raise InputError(
            f"{label}: numbers are written with a decimal point ('{v1}' in {c1}) and with a decimal comma "
            f"('{v2}' in {c2}); export them one way and set {{decimal}} (. or ,)",
            param="decimal",
        )
    if seen:
        return "," if "," in seen else "."
    if ambiguous is not None:
        raise InputError(
            f"{label}: '{ambiguous[1]}' in {ambiguous[0]} reads as a thousands separator or as a decimal comma; "
            "set {decimal} to . (1,234 is 1234) or , (1,234 is 1.234)",
            param="decimal",
        )
    return "."


def number_fields(fields: tuple[ExtraField, ...]) -> tuple[str, ...]:
    """The names of the extra fields that hold numbers, in order (each must hold one number somewhere)."""
    return tuple(f.name for f in fields if f.kind == "number")
