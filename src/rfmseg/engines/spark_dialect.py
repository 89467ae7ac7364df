"""Spark SQL for the Spark engine: DuckDB SQL text (rules, features, preset columns) in Spark's dialect,
the typing of source columns, the judging helpers and the tables read back from Spark (see
:mod:`rfmseg.engines.spark`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfmseg.errors import InputError, ParameterError
from rfmseg.io.intake import Intake
from rfmseg.io.passes import problem_text, reason_case
from rfmseg.io.readers import sql_string
from rfmseg.io.rules import BAD_CUSTOMER_ID, MAX_ID_LENGTH, Rule
from rfmseg.io.validate import Dialect

_SPARK_INTEGER = ("tinyint", "smallint", "int", "bigint", "byte", "short", "long", "integer")
_SPARK_NUMERIC = (*_SPARK_INTEGER, "float", "double", "decimal", "real")


# ------------------------------------------------------------------------------------------------ dialect
def _calls(sql: str, name: str) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, top-level arguments) of each call ``name(...)`` in ``sql`` (quotes and nesting aware)."""
    pattern = re.compile(rf"\b{re.escape(name)}\s*\(", re.I)
    pos = 0
    while True:
        m = pattern.search(sql, pos)
        if not m:
            return
        depth, i, quote, args, start_arg = 1, m.end(), "", [], m.end()
        while i < len(sql) and depth:
            ch = sql[i]
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(sql[start_arg:i].strip())
                start_arg = i + 1
            i += 1
        args.append(sql[start_arg : i - 1].strip())
        yield m.start(), i, args
        pos = i


def _rewrite(sql: str, name: str, build: Callable[[list[str]], str]) -> str:
    out, last = [], 0
    for start, end, args in _calls(sql, name):
        out += [sql[last:start], build([spark_sql(a) for a in args])]
        last = end
    return "".join(out) + sql[last:]


DUCKDB_ONLY = ("unnest(", "list(", "strptime(", "try_strptime(", "regexp_full_match(", "epoch_ms(", "hugeint")
"""DuckDB functions and types without a translation here: a rule using them cannot run on Spark."""

KNOWN_FORMS = {
    # the Online Retail preset's duplicate-line flag: every copy of a line but the first (lowest _row)
    "_row IN (SELECT unnest(list(_row ORDER BY _row)[2:]) FROM {source} GROUP BY {source_columns} "
    "HAVING count(*) > 1)": "row_number() OVER (PARTITION BY {source_columns} ORDER BY _row) > 1",
    # the one id rule: Java's \p{Cntrl} is [\x00-\x1f\x7f]
    BAD_CUSTOMER_ID.condition: f"length(customer_id) > {MAX_ID_LENGTH} OR customer_id RLIKE '\\\\p{{Cntrl}}'",
}
"""Whole DuckDB expressions (preset SQL) and their Spark SQL equivalents."""


def spark_sql(sql: str) -> str:
    """DuckDB SQL text (rules, features, preset columns) in Spark SQL's dialect.

    Translated: ``isinf(x)``, ``starts_with(s, p)``, ``date_diff('day', a, b)``, and the whole expressions in
    :data:`KNOWN_FORMS`; the rest of the text the rules use (CASE, IS NULL, LIKE, upper, CAST ... AS DATE,
    DATE literals, count(*) FILTER, bool_and, round) means the same in both. Raises ParameterError for text
    with DuckDB-only functions.
    """
    if sql in KNOWN_FORMS:
        return KNOWN_FORMS[sql]
    lowered = sql.lower()
    bad = [f for f in DUCKDB_ONLY if f in lowered]
    if bad:
        raise ParameterError(
            f"this rule has no Spark SQL form yet ({bad[0].rstrip('(')} in '{sql[:80]}'); run it with {{engine}} local",
            param="engine",
        )
    sql = _rewrite(sql, "isinf", lambda a: f"(abs({a[0]}) = CAST('Infinity' AS DOUBLE))")
    sql = _rewrite(sql, "starts_with", lambda a: f"startswith({a[0]}, {a[1]})")

    def _date_diff(a: list[str]) -> str:
        if len(a) != 3 or a[0].strip("'\"").lower() != "day":
            raise ParameterError(f"date_diff({', '.join(a)}) has no Spark SQL form here; use date_diff('day', a, b)")
        return f"datediff({a[2]}, {a[1]})"

    return _rewrite(sql, "date_diff", _date_diff)


def is_numeric(spark_type: str) -> bool:
    return spark_type.lower().startswith(_SPARK_NUMERIC)


def spark_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def id_expr(col: str, spark_type: str) -> str:
    """validate.id_expr in Spark SQL: 17850.0 -> '17850', '  C1 ' -> 'C1', '17850.0' -> '17850', '' -> NULL."""
    q = spark_ident(col)
    t = spark_type.lower()
    if t.startswith(_SPARK_INTEGER):
        return f"CAST({q} AS STRING)"
    if is_numeric(t):
        return (
            f"CASE WHEN {q} IS NULL OR isnan(CAST({q} AS DOUBLE)) THEN NULL "
            f"WHEN {q} = floor({q}) THEN CAST(CAST({q} AS DECIMAL(38, 0)) AS STRING) ELSE CAST({q} AS STRING) END"
        )
    text = f"trim(CAST({q} AS STRING))"
    whole = f"regexp_replace({text}, '^([0-9]+)\\\\.0+$', '$1')"
    return f"NULLIF(CASE WHEN contains({text}, '.') THEN {whole} ELSE {text} END, '')"


def number_expr(col: str, spark_type: str, decimal: str = ".") -> str:
    """validate.number_expr in Spark SQL: text read with ``decimal`` as the decimal mark, the other mark
    taken as a thousands separator."""
    q = spark_ident(col)
    if is_numeric(spark_type):
        return f"CAST({q} AS DOUBLE)"
    t = f"trim(CAST({q} AS STRING))"
    if decimal == ",":
        return f"try_cast(replace(replace({t}, '.', ''), ',', '.') AS DOUBLE)"
    return f"try_cast(replace({t}, ',', '') AS DOUBLE)"


_STRPTIME = {
    "%Y": "yyyy",
    "%y": "yy",
    "%m": "M",
    "%d": "d",
    "%H": "H",
    "%I": "h",
    "%M": "m",
    "%S": "s",
    "%p": "a",
    "%b": "MMM",
    "%B": "MMMM",
    "%f": "SSSSSS",
    "%%": "%",
}


def spark_pattern(fmt: str) -> str:
    """A strptime format (what --date-format takes) as a Spark datetime pattern."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            token = fmt[i : i + 2]
            if token not in _STRPTIME:
                raise ParameterError(
                    f"{{date_format}} '{fmt}': {token} has no Spark equivalent here; use %Y %m %d %H %M %S %b %p",
                    param="date_format",
                )
            out.append(_STRPTIME[token])
            i += 2
        else:
            ch = fmt[i]
            out.append(f"'{ch}'" if ch.isalpha() else ch)
            i += 1
    return "".join(out)


SPARK_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d")
"""the formats the Spark engine tries on text dates without a date format (it detects none)"""


def date_expr(col: str, spark_type: str, date_format: str | None, fallbacks: tuple[str, ...] = ()) -> str:
    q = spark_ident(col)
    t = spark_type.lower()
    if t.startswith(("timestamp", "date")):
        return f"CAST({q} AS TIMESTAMP_NTZ)"
    if is_numeric(t):
        raise InputError(
            f"column '{col}' holds numbers ({spark_type}), not dates; "
            "map the order date with {columns.order_date} NAME",
            param="columns.order_date",
        )
    text = f"trim(CAST({q} AS STRING))"
    if date_format:
        return f"try_to_timestamp({text}, {sql_string(spark_pattern(date_format))})"
    tries = ", ".join(
        f"try_to_timestamp({text}, {sql_string(spark_pattern(f))})" for f in fallbacks or SPARK_DATE_FORMATS
    )
    return f"CAST(coalesce(try_cast({text} AS TIMESTAMP_NTZ), {tries}) AS TIMESTAMP_NTZ)"


# ------------------------------------------------------------------------------------------------ session
SPARK = Dialect(id_expr, id_expr, number_expr, date_expr, "STRING")
"""Spark SQL's typing of source columns (customer ids are text from the start: no numeric grouping trick)."""


def first_problem(spark: Any, rules: tuple[Rule, ...], view: str = "rfmseg_canon") -> str:
    """validate's 'N row(s) with <meaning> (reason R, first at row N); <fix>' for the first broken rule."""
    rows = spark.sql(
        f"SELECT _reason, count(*), min(_row) FROM {view} WHERE _reason IS NOT NULL GROUP BY _reason"
    ).collect()
    return problem_text(rules, {r[0]: (int(r[1]), int(r[2])) for r in rows})


def spark_case(rules: tuple[Rule, ...]) -> str:
    return reason_case(tuple(Rule(r.reason, spark_sql(r.condition), r.meaning, r.fix) for r in rules))


RFM_TYPES = {
    "customer_id": pa.string(),
    "recency_days": pa.int64(),
    "frequency": pa.int64(),
    "monetary": pa.float64(),
    "first_order_date": pa.date32(),
    "last_order_date": pa.date32(),
}


def spark_to_arrow(df: Any) -> pa.Table:
    """A Spark DataFrame as an Arrow table."""
    if hasattr(df, "toArrow"):
        return df.toArrow()
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)  # pragma: no cover - pyspark < 4


def normalise_rfm(table: pa.Table) -> pa.Table:
    """The RFM table as the local engine types it (Spark's Arrow export may differ in widths)."""
    return pa.table({name: table.column(name).cast(t) for name, t in RFM_TYPES.items() if name in table.column_names})


def sorted_by_customer(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("customer_id", "ascending")]))


@dataclass(frozen=True)
class SparkIntake(Intake):
    """A source read and judged on Spark: it writes its own quarantine file."""

    spark: Any = None
    source_columns: tuple[str, ...] = ()

    def write_quarantine(self, path: Path) -> None:
        cols = ", ".join(f"CAST(s.{spark_ident(c)} AS STRING) AS {spark_ident(c)}" for c in self.source_columns)
        rows = self.spark.sql(
            f"SELECT q._row AS row_number, q._reason AS reason, {cols} FROM (SELECT _row, _reason FROM "
            f"rfmseg_canon WHERE _reason IS NOT NULL) q JOIN rfmseg_src s ON q._row = s._row ORDER BY q._row"
        )
        table = rows.toArrow() if any(self.quarantined.values()) else None
        if table is None:
            names = ["row_number", "reason", *self.source_columns]
            types = [pa.int64(), pa.string(), *[pa.string()] * len(self.source_columns)]
            table = pa.table({n: pa.array([], t) for n, t in zip(names, types, strict=True)})
        pq.write_table(table.cast(_quarantine_schema(table.schema)), path, compression="zstd")


def _quarantine_schema(schema_: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.int64() if f.name == "row_number" else pa.string()) for f in schema_])
