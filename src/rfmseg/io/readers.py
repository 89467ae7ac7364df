"""Open a file, DataFrame or Arrow table as a DuckDB view, without materialising it in Python.

CSV is read as text (every column VARCHAR) so that a bad date or amount becomes a quarantined row with a
reason instead of a failed read; Parquet keeps its types; .xlsx goes through python-calamine.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from rfmseg import schema
from rfmseg.errors import InputError
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

    @property
    def by_key(self) -> dict[str, str]:
        """each column by its key (:func:`rfmseg.schema.normalise`: lower case, letters and digits only), which
        is how a field finds its column whatever the source calls it (``Customer ID``, ``customer_id``)"""
        return {schema.normalise(c): c for c in self.columns}

    @property
    def sha256(self) -> str | None:
        return self.digest.result() if isinstance(self.digest, Future) else self.digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    con: duckdb.DuckDBPyConnection, source: Any, name: str = VIEWS.source, fmt: str | None = None
) -> Source:
    """Register ``source`` (path, pandas DataFrame or pyarrow Table) as the view ``name``."""
    if isinstance(source, (str, Path)):
        return _open_path(con, Path(source), name, fmt)
    table = to_arrow(source)
    return register_arrow(con, table, name, "DataFrame", None, "dataframe")


def to_arrow(obj: Any) -> pa.Table:
    """An in-memory table (pyarrow Table, pandas DataFrame, anything with the Arrow stream interface) as Arrow."""
    if isinstance(obj, pa.Table):
        return obj
    if hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "to_arrow"):
        try:
            return pa.table(obj)
        except (TypeError, pa.ArrowInvalid):
            pass
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pd = None
    if pd is not None and isinstance(obj, pd.DataFrame):
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise InputError(f"cannot read a {type(obj).__name__}; pass a file path, a pandas DataFrame or a pyarrow Table")


def register_arrow(
    con: duckdb.DuckDBPyConnection, table: pa.Table, name: str, label: str, sha: str | Future[str] | None, fmt: str
) -> Source:
    """Register ``table`` as the view ``name`` with a 1-based ``_row`` column (``label`` names it to a user)."""
    if table.num_rows == 0:
        raise InputError(f"{label}: has no rows; give transactions to segment")
    if "_row" in table.column_names:
        table = table.drop_columns(["_row"])
    table = table.append_column("_row", pa.array(range(1, table.num_rows + 1), pa.int64()))
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_arrow")
    return Source(name, view_columns(con, name), label, sha, fmt)


def view_columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """The columns of the DuckDB view ``view`` and their types, ``_row`` left out."""
    rows = con.execute(f"DESCRIBE {view}").fetchall()
    return {r[0]: r[1] for r in rows if r[0] != "_row"}


def _open_path(con: duckdb.DuckDBPyConnection, path: Path, name: str, fmt: str | None) -> Source:
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type '{path.suffix}'; use .csv, .parquet or .xlsx (or pass {{format}})",
            param="format",
        )
    check_file(path, fmt)
    if fmt == "xlsx":
        return register_arrow(con, read_xlsx(path), name, str(path), file_sha256(path), fmt)
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
            reader = f"read_csv({lit}, all_varchar = true, header = true)"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT *, row_number() OVER () AS _row FROM {reader}")
        columns = view_columns(con, name)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: cannot be read as {fmt} ({first}); check the file and its format") from None
    return Source(name, columns, str(path), sha, fmt)


def read_xlsx(path: Path, sheet: int | str = 0) -> pa.Table:
    """First sheet (or ``sheet``) of a workbook as an Arrow table, header on the first row."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError as exc:  # pragma: no cover - core dependency
        raise InputError(f"reading .xlsx needs python-calamine, a dependency of rfmseg: {install_command()}") from exc
    try:
        book = CalamineWorkbook.from_path(str(path))
        sheet_obj = book.get_sheet_by_index(sheet) if isinstance(sheet, int) else book.get_sheet_by_name(sheet)
        rows = sheet_obj.to_python(skip_empty_area=True)
    except Exception as exc:  # calamine raises its own error types for broken workbooks
        raise InputError(f"{path}: cannot be read as a workbook ({exc}); save it again as .xlsx") from None
    if not rows:
        raise InputError(f"{path}: the first sheet is empty; put the transactions on the first sheet")
    header = [str(h).strip() for h in rows[0]]
    columns = list(zip(*rows[1:], strict=True)) if len(rows) > 1 else [() for _ in header]
    arrays = {}
    for h, values in zip(header, columns, strict=True):
        cleaned = [None if v == "" else v for v in values]
        try:
            arrays[h] = pa.array(cleaned)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[h] = pa.array([None if v is None else str(v) for v in cleaned], pa.string())
    return pa.table(arrays)
