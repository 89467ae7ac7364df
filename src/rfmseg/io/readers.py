"""Open a file, DataFrame or Arrow table as a DuckDB view, without materialising it in Python.

CSV is read as text (every column VARCHAR) so that a bad date or amount becomes a quarantined row with a
reason instead of a failed read; Parquet keeps its types; .xlsx goes through python-calamine.

A CSV is opened with a dialect decided here, not sniffed row by row: the encoding from its bytes (a BOM,
else UTF-8 if its first 64 MB decode, else Latin-1; or the ``encoding`` given), the delimiter and the
column names from its header line, and a strict parser, so that a line with too few or too many fields or
an unclosed quote stops the read with its line number (:func:`read_error`) instead of turning the file into
one column or a quote into an id. A workbook with several sheets is read only when told which
(``sheet``: a name, or ``all``). Each source keeps its first :data:`SAMPLE_ROWS` rows of text columns
(:attr:`Source.sample`), from which :mod:`rfmseg.io.validate` decides how dates and numbers are written.
"""

from __future__ import annotations

import codecs
import csv
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from rfmseg import schema
from rfmseg.digest import file_sha256
from rfmseg.errors import InputError, ParameterError
from rfmseg.install import install_command
from rfmseg.io.views import VIEWS

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".xls": "xlsx",
}
_MAGIC = {"parquet": b"PAR1", "xlsx": b"PK\x03\x04"}
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-16": "utf-16", "utf16": "utf-16", "latin-1": "latin-1"}
ENCODINGS.update({"latin1": "latin-1", "iso-8859-1": "latin-1", "windows-1252": "latin-1", "cp1252": "latin-1"})
"""the encodings ``encoding`` accepts -> the one DuckDB's CSV reader reads (Windows-1252 is read as Latin-1,
which differs only in the rarely used 0x80-0x9F range: the euro sign, typographic quotes)"""
DETECT_BYTES = 64 << 20
"""how much of a CSV is looked at to tell UTF-8 from Latin-1 when no encoding is given (decoding runs at over
1 GB/s: 64 MB take tens of milliseconds; the UCI Online Retail CSV, 45 MB, has its first Latin-1 byte
3 MB in). A byte of another encoding further on stops the read with its line (:func:`read_error`)."""
SAMPLE_ROWS = 100_000
"""the first rows of a source whose text columns decide how its dates and numbers are written"""
DELIMITERS = (",", ";", "\t", "|")
_LINE_END = re.compile(r"\r\n?|\n")
ALL_SHEETS = "all"


@dataclass(frozen=True)
class Source:
    """A registered input: the DuckDB view ``name`` with a 1-based ``_row`` column and the originals."""

    name: str
    columns: dict[str, str]
    """original column name -> DuckDB type"""
    label: str
    """how to name the input to a user: a path, or 'DataFrame'"""
    digest: str | Future[str] | None
    """the SHA-256 of the input's bytes, or its computation (a file is hashed on a thread while it is read)"""
    format: str
    sample: pa.Table | None = None
    """the first :data:`SAMPLE_ROWS` rows of the text columns (None: not taken), to detect formats from"""

    @property
    def by_key(self) -> dict[str, str]:
        """each column by its key (:func:`rfmseg.schema.normalise`: lower case, letters and digits only), which
        is how a field finds its column whatever the source calls it (``Customer ID``, ``customer_id``)"""
        return {schema.normalise(c): c for c in self.columns}

    @property
    def sha256(self) -> str | None:
        return self.digest.result() if isinstance(self.digest, Future) else self.digest


_hasher: ThreadPoolExecutor | None = None


def file_sha256_soon(path: Path) -> Future[str]:
    """:func:`file_sha256` on a thread of its own: hashing a large file (0.7 s for 1 GB) then overlaps the
    pass DuckDB makes over it, which does not hold the GIL."""
    global _hasher
    if _hasher is None:
        _hasher = ThreadPoolExecutor(1, thread_name_prefix="rfmseg-sha256")
    return _hasher.submit(file_sha256, path)


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (a column name with spaces or quotes in it)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def check_file(path: Path, fmt: str) -> None:
    """Refuse, with one line naming the fix, a path that is missing, a folder, empty, or not of format ``fmt``."""
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file; give the path of a CSV, Parquet or .xlsx file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; export the transactions again")
    magic = _MAGIC.get(fmt)
    if magic:
        with path.open("rb") as f:
            head = f.read(len(magic))
        if head != magic:
            raise InputError(
                f"{path}: not a {fmt} file although its name ends in {path.suffix}; "
                "rename it to its real format or export it again"
            )


def open_source(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    name: str = VIEWS.source,
    fmt: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> Source:
    """Register ``source`` (path, pandas DataFrame or pyarrow Table) as the view ``name``, with its sample.

    ``encoding`` (a CSV's; default: detected) and ``sheet`` (a workbook's sheet name, or ``all``; needed when
    it has several sheets) say how a file is read."""
    if isinstance(source, (str, Path)):
        return _open_path(con, Path(source), name, fmt, encoding, sheet)
    table = to_arrow(source)
    return register_arrow(con, table, name, "DataFrame", None, "dataframe")


def to_arrow(obj: Any) -> pa.Table:
    """An in-memory table (pyarrow Table, pandas DataFrame, anything with the Arrow stream interface) as Arrow."""
    if isinstance(obj, pa.Table):
        return obj
    if hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "to_arrow"):
        try:
            return pa.table(obj)
        except (TypeError, ValueError, pa.ArrowInvalid):  # ValueError: a DataFrame naming a column twice
            pass
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pd = None
    if pd is not None and isinstance(obj, pd.DataFrame):
        unique_names("DataFrame", [str(c) for c in obj.columns])  # Arrow refuses a column named twice
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise InputError(f"cannot read a {type(obj).__name__}; pass a file path, a pandas DataFrame or a pyarrow Table")


def register_arrow(
    con: duckdb.DuckDBPyConnection, table: pa.Table, name: str, label: str, sha: str | Future[str] | None, fmt: str
) -> Source:
    """Register ``table`` as the view ``name`` with a 1-based ``_row`` column (``label`` names it to a user)."""
    if table.num_rows == 0:
        raise InputError(f"{label}: has no rows; give transactions to segment")
    unique_names(label, list(table.column_names))  # a column named twice (a DataFrame's) is refused
    if "_row" in table.column_names:
        table = table.drop_columns(["_row"])
    table = table.append_column("_row", pa.array(range(1, table.num_rows + 1), pa.int64()))
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_arrow")
    columns = view_columns(con, name)
    return Source(name, columns, label, sha, fmt, text_sample(table.slice(0, SAMPLE_ROWS), columns))


def text_sample(table: pa.Table, columns: dict[str, str]) -> pa.Table:
    """The text columns of ``table`` (the first rows of a source), as formats are detected from them."""
    return table.select([c for c, t in columns.items() if t.upper() == "VARCHAR" and c in table.column_names])


def sample_view(con: duckdb.DuckDBPyConnection, source: Source, rows: int = SAMPLE_ROWS) -> Source:
    """``source`` with its sample, read from its view (a registered glob or query) when it has none."""
    if source.sample is not None:
        return source
    text = [c for c, t in source.columns.items() if t.upper() == "VARCHAR"]
    if not text:
        return Source(source.name, source.columns, source.label, source.digest, source.format, pa.table({}))
    cols = ", ".join(sql_identifier(c) for c in text)
    try:
        sample = con.sql(f"SELECT {cols} FROM {source.name} LIMIT {rows}").to_arrow_table()
    except duckdb.Error as exc:
        raise read_error(source.label, exc) from None
    return Source(source.name, source.columns, source.label, source.digest, source.format, sample)


def view_columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """The columns of the DuckDB view ``view`` and their types, ``_row`` left out."""
    rows = con.execute(f"DESCRIBE {view}").fetchall()
    return {r[0]: r[1] for r in rows if r[0] != "_row"}


def _open_path(
    con: duckdb.DuckDBPyConnection, path: Path, name: str, fmt: str | None, encoding: str | None, sheet: str | None
) -> Source:
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        if path.is_dir() or not path.exists():  # named so, whatever the name ends in
            check_file(path, "")
        raise InputError(f"{path}: unknown file type '{path.suffix}'; use .csv, .parquet or .xlsx (or rename the file)")
    check_file(path, fmt)
    if fmt == "xlsx":
        return register_arrow(con, read_xlsx(path, sheet), name, str(path), file_sha256(path), fmt)
    sha = file_sha256_soon(path)
    lit = sql_string(str(path))
    try:
        if fmt == "parquet":
            reader = f"read_parquet({lit}, file_row_number = true)"
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * EXCLUDE (file_row_number), "
                f"file_row_number + 1 AS _row FROM {reader}"
            )
        else:
            reader = csv_reader(path, encoding)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT *, row_number() OVER () AS _row FROM {reader}")
        columns = view_columns(con, name)
        text = [c for c, t in columns.items() if t.upper() == "VARCHAR"]
        head = reader if fmt == "csv" else f"read_parquet({lit})"
        picked = ", ".join(sql_identifier(c) for c in text) or "NULL AS _none"
        sample = con.sql(f"SELECT {picked} FROM {head} LIMIT {SAMPLE_ROWS}").to_arrow_table().select(text)
    except duckdb.Error as exc:
        raise read_error(str(path), exc, fmt) from None
    return Source(name, columns, str(path), sha, fmt, sample)


def csv_encoding(path: Path, given: str | None = None) -> str:
    """The encoding DuckDB reads ``path`` with: ``given`` (checked), else a BOM's, else UTF-8 when the first
    :data:`DETECT_BYTES` decode as UTF-8, else Latin-1."""
    if given is not None:
        known = ENCODINGS.get(given.strip().lower())
        if known is None:
            raise ParameterError(
                f"{{encoding}} '{given}' is not supported; use utf-8, utf-16 or latin-1 (also for windows-1252)",
                param="encoding",
            )
        return known
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        read = 0
        try:
            while read < DETECT_BYTES and (block := f.read(1 << 20)):
                read += len(block)
                decoder.decode(block)
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8"


def csv_header(path: Path, encoding: str) -> tuple[str, list[str]]:
    """The delimiter and the column names of a CSV, from its first line (ended by ``\n``, ``\r\n`` or a lone
    ``\r``, as old Mac exports end lines). A header naming a column twice is refused: which of the two a field
    would read cannot be told (a PostgreSQL source is refused alike)."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    try:
        if encoding == "utf-16":
            text = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
        else:
            text = head.split(b"\n")[0].decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeError:
        raise InputError(
            f"{path}: the header line is not {encoding} text; set {{encoding}} (utf-8, utf-16 or latin-1)",
            param="encoding",
        ) from None
    line = _LINE_END.split(text, maxsplit=1)[0]
    if not line.strip():
        raise InputError(f"{path}: the first line is empty; put the column names on the first line")
    if "\x00" in line:
        raise InputError(
            f"{path}: the header line holds NUL bytes, so this is not {encoding} CSV text (a binary file, or "
            "another encoding); export the file again as CSV, or set {encoding} (utf-8, utf-16 or latin-1)",
            param="encoding",
        )
    delim = max(DELIMITERS, key=line.count) if any(d in line for d in DELIMITERS) else ","
    try:
        names = next(csv.reader([line], delimiter=delim))
    except csv.Error as exc:
        raise InputError(f"{path}: the header line cannot be read as CSV ({exc}); export the file again") from None
    return delim, unique_names(str(path), [n.strip() for n in names])


def unique_names(label: str, names: list[str]) -> list[str]:
    """A header's column names, a blank one named ``column<i>`` (0-based); a name given twice is refused."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n and n in seen:
            raise InputError(
                f"{label}: columns {seen[n] + 1} and {i + 1} are both named '{n}', and which one to read cannot be "
                "told; give each column its own name in the export"
            )
        seen.setdefault(n, i)
    return [n or f"column{i}" for i, n in enumerate(names)]


def csv_reader(path: Path, encoding: str | None = None) -> str:
    """The DuckDB ``read_csv`` of ``path`` as text with the dialect read from its header: every line must
    have the header's fields, quotes must close (a line that breaks the dialect stops the read with its
    number, :func:`read_error`)."""
    enc = csv_encoding(path, encoding)
    delim, names = csv_header(path, enc)
    columns = "{" + ", ".join(f"{sql_string(n)}: 'VARCHAR'" for n in names) + "}"
    return (
        f"read_csv({sql_string(str(path))}, auto_detect = false, header = true, delim = {sql_string(delim)}, "
        f"quote = '\"', escape = '\"', strict_mode = true, encoding = {sql_string(enc)}, columns = {columns})"
    )


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_FIELDS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_NOT_ENCODED = re.compile(r"not ([a-z0-9-]+) encoded")


def read_error(label: str, exc: Exception, fmt: str = "csv") -> InputError:
    """The one line a failed read of ``label`` gives: for a CSV, the line that breaks it and the fix."""
    text = str(exc)
    line = _CSV_LINE.search(text)
    at = f"line {line[1]}" if line else "a line"
    if "not utf-8 encoded" in text or "Invalid unicode" in text:
        return InputError(
            f"{label}: {at} is not UTF-8 text; set {{encoding}} latin-1 (or utf-16), or save the file as UTF-8",
            param="encoding",
        )
    other = _NOT_ENCODED.search(text)
    if other:  # bytes no text encoding gives (NUL, a binary file), or the wrong encoding given
        return InputError(
            f"{label}: {at} is not {other[1]} text (a binary file, or another encoding); export the file again as "
            "CSV, or set {encoding} (utf-8, utf-16 or latin-1)",
            param="encoding",
        )
    fields = _FIELDS.search(text)
    if fields:
        more = "more" if int(fields[2]) > int(fields[1]) else "fewer"
        return InputError(
            f"{label}: {at} has {more} fields than the header's {fields[1]}; fix that line (a missing or extra "
            "delimiter, an unquoted value holding one) or export the file again"
        )
    if "unterminated quote" in text:
        return InputError(f"{label}: {at} opens a quote that never closes; fix the quote or export the file again")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InputError(f"{label}: cannot be read as {fmt} ({first}); check the file and its format")


def read_xlsx(path: Path, sheet: int | str | None = None) -> pa.Table:
    """A workbook's sheet as an Arrow table, header on the first row: ``sheet`` (a name, an index, or ``all``:
    every non-empty sheet, which must share their columns, one after the other). Without ``sheet`` the
    workbook must have one non-empty sheet; several are refused with their names."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError as exc:  # pragma: no cover - core dependency
        raise InputError(f"reading .xlsx needs python-calamine, a dependency of rfmseg: {install_command()}") from exc
    try:
        book = CalamineWorkbook.from_path(str(path))
        names = list(book.sheet_names)
        if isinstance(sheet, int):
            sheets = {names[sheet]: book.get_sheet_by_index(sheet).to_python(skip_empty_area=True)}
        elif sheet is None or sheet.strip().lower() == ALL_SHEETS:
            sheets = {n: book.get_sheet_by_name(n).to_python(skip_empty_area=True) for n in names}
        elif sheet in names:
            sheets = {sheet: book.get_sheet_by_name(sheet).to_python(skip_empty_area=True)}
        else:
            raise InputError(
                f"{path}: no sheet '{sheet}'; sheets: {', '.join(names)}; set {{sheet}} to one of them or all",
                param="sheet",
            )
    except InputError:
        raise
    except Exception as exc:  # calamine raises its own error types for broken workbooks
        raise InputError(f"{path}: cannot be read as a workbook ({exc}); save it again as .xlsx") from None
    filled = {n: rows for n, rows in sheets.items() if rows and any(v != "" for v in rows[0])}
    if not filled:
        which = "the sheet" if len(sheets) == 1 else "every sheet"
        raise InputError(f"{path}: {which} is empty; put the transactions on a sheet, header on the first row")
    if sheet is None and len(filled) > 1:
        raise InputError(
            f"{path}: the workbook has {len(filled)} sheets with data ({', '.join(filled)}); "
            f"set {{sheet}} to the one to read, or to all to read them one after the other",
            param="sheet",
        )
    tables = [_sheet_table(path, n, rows) for n, rows in filled.items()]
    first = tables[0].column_names
    for (n, _), t in zip(filled.items(), tables, strict=True):
        if t.column_names != first:
            raise InputError(
                f"{path}: sheet '{n}' has other columns than sheet '{next(iter(filled))}' "
                f"({', '.join(t.column_names)}); set {{sheet}} to one sheet",
                param="sheet",
            )
    if len(tables) == 1:
        return tables[0]
    return pa.table({c: _joined([t.column(c) for t in tables]) for c in first})


def _joined(parts: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """One column of several sheets, one after the other, keeping its type where the sheets agree: dates stay
    dates (a sheet of date-only cells and one with times: timestamps), numbers numbers (whole and decimal:
    decimals); a column of other mixed types (numbers on one sheet, text on another) is read as text, as a
    CSV's is."""
    kinds = {p.type for p in parts if not pa.types.is_null(p.type)}
    target: pa.DataType | None = None
    if len(kinds) <= 1:
        target = kinds.pop() if kinds else pa.null()
    elif all(pa.types.is_date(k) or pa.types.is_timestamp(k) for k in kinds):
        target = pa.timestamp("us")
    elif all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in kinds):
        target = pa.float64()
    if target is not None:
        try:
            return pa.chunked_array([chunk for p in parts for chunk in p.cast(target).chunks], target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass  # e.g. a time of day on one sheet, a date on another: read as text
    return pa.chunked_array([pa.array([_text(v) for v in p.to_pylist()], pa.string()) for p in parts], pa.string())


def _text(v: Any) -> str | None:
    """A cell as text: a date ``2024-01-31``, a date-time ``2024-01-31 08:26:00`` (ISO, as dates are read)."""
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    return v.isoformat() if isinstance(v, date) else str(v)


def _cell_values(values: tuple[Any, ...]) -> list[Any]:
    """A sheet column's cells for Arrow: an empty cell as None, and in a column of dates where some cells hold a
    time and others only a date, each date as midnight (Arrow takes one type per column)."""
    cleaned = [None if v == "" else v for v in values]
    kinds = {type(v) for v in cleaned if v is not None}
    if kinds and all(issubclass(k, date) for k in kinds) and len(kinds) > 1:
        return [v if v is None or isinstance(v, datetime) else datetime.combine(v, time()) for v in cleaned]
    return cleaned


def _sheet_table(path: Path, name: str, rows: list[list[Any]]) -> pa.Table:
    header = unique_names(f"{path}: sheet '{name}'", [("" if h is None else str(h)).strip() for h in rows[0]])
    columns = list(zip(*rows[1:], strict=True)) if len(rows) > 1 else [() for _ in header]
    arrays = {}
    for h, values in zip(header, columns, strict=True):
        cleaned = _cell_values(values)
        try:
            arrays[h] = pa.array(cleaned)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[h] = pa.array([None if v is None else str(v) for v in cleaned], pa.string())
    return pa.table(arrays)
