"""The UCI Online Retail data set: where it comes from, how its checksums are known, and the conversion of its
workbook to the table rfmseg's documents and tests are measured on.

The reference table is the Parquet file of ``shared/data/online_retail/`` (its README gives the provenance):
541,909 rows, the eight columns of the workbook with their names, InvoiceNo and StockCode as text (the
workbook stores 536365 as a number and C536379 as text), Description and CustomerID null where the cell is
empty, Quantity an integer, InvoiceDate a timestamp (UK local time, to the minute), UnitPrice and CustomerID
floats (CustomerID as pandas reads the workbook). :func:`read_workbook` gives that table from the workbook:
its :func:`~rfmseg.datasets.base.table_sha256` equals :data:`TABLE_SHA256`.

The checksums of the official download cannot be measured on a machine without internet access; the two
below are the ones several independent public projects record for the official zip (:data:`URL`) and for the
``Online Retail.xlsx`` inside it. A file that matches neither is still accepted
offline when the table converted from it is the reference table (a workbook saved again, a zip packed again).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfmseg.datasets.base import Dataset
from rfmseg.errors import DatasetError

if TYPE_CHECKING:
    import pyarrow as pa

NAME = "online-retail"
URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
PAGE = "https://archive.ics.uci.edu/dataset/352/online+retail"
ZIP_SHA256 = "f5385cbb54bbebf7196389109c6b0621faab0c304e3702548165e71c84aede8b"
XLSX_SHA256 = "43465a06f2ccf7c8b5bd2892bc7defb52f97487934fe93b16ae4c3936424676d"
TABLE_SHA256 = "05bd31a39a74f90b568a3ae10497d5e47062110fc9ba4d15b2d2681d00e64e93"
"""table_sha256 of shared/data/online_retail/online_retail.parquet"""
SHARED_PARQUET_SHA256 = "d6c1e0ce4a57972909782370b03a3dcb008d2b3501c5cd006ac355b75c2d6c2d"
"""the file's SHA-256, from shared/data/online_retail/README.md"""
ROWS = 541_909
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
NOT_IT = f"this is not the UCI Online Retail workbook; use the one in {URL}"
TEXT = frozenset({"InvoiceNo", "StockCode", "Description", "Country"})


def _text(value: Any) -> str | None:
    """A text cell as the reference has it: numbers the workbook stores as numbers (536365) in their digits."""
    if value == "" or value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _when(value: Any, row: int) -> datetime:
    if not isinstance(value, datetime):
        raise DatasetError(f"row {row}: InvoiceDate {value!r} is not a date; {NOT_IT}")
    if value.microsecond:  # a date stored as a day fraction comes back a few microseconds off the second
        value = (value + timedelta(microseconds=500_000)).replace(microsecond=0)
    return value


def _number(value: Any, column: str, row: int) -> float | None:
    if value == "" or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"row {row}: {column} {value!r} is not a number; {NOT_IT}")
    return float(value)


def read_workbook(path: Path) -> pa.Table:
    """The first sheet of the UCI ``Online Retail.xlsx`` as the reference table (see the module's docstring).
    A workbook of another layout raises :class:`DatasetError` naming what differs."""
    import pyarrow as pa
    from python_calamine import CalamineWorkbook

    try:
        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception as exc:  # calamine raises its own error types for what is not a workbook
        raise DatasetError(f"{path}: cannot be read as a workbook ({exc})") from None
    header = tuple(str(h).strip() for h in rows[0]) if rows else ()
    if header != COLUMNS:
        raise DatasetError(
            f"{path}: the columns are {', '.join(header) or 'none'}, not those of UCI Online Retail "
            f"({', '.join(COLUMNS)})"
        )
    body = rows[1:]
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    quantity, when, price, customer = cols["Quantity"], cols["InvoiceDate"], cols["UnitPrice"], cols["CustomerID"]
    texts = [(i, cols[c]) for i, c in enumerate(COLUMNS) if c in TEXT]
    for n, r in enumerate(body, start=2):
        for i, out in texts:
            out.append(_text(r[i]))
        q = _number(r[3], "Quantity", n)
        if q is None or not q.is_integer():
            raise DatasetError(f"row {n}: Quantity {r[3]!r} is not a whole number; {NOT_IT}")
        quantity.append(int(q))
        when.append(_when(r[4], n))
        price.append(_number(r[5], "UnitPrice", n))
        customer.append(_number(r[6], "CustomerID", n))
    types = {
        "Quantity": pa.int64(),
        "InvoiceDate": pa.timestamp("us"),
        "UnitPrice": pa.float64(),
        "CustomerID": pa.float64(),
    }
    return pa.table({c: pa.array(cols[c], types.get(c, pa.string())) for c in COLUMNS})


DATASET = Dataset(
    name=NAME,
    title="UCI Online Retail",
    url=URL,
    page=PAGE,
    citation="Chen, D. (2015). Online Retail [Dataset]. UCI Machine Learning Repository. https://doi.org/10.24432/C5BW33",
    license="CC BY 4.0",
    download_sha256=ZIP_SHA256,
    member="Online Retail.xlsx",
    member_sha256=XLSX_SHA256,
    table_sha256=TABLE_SHA256,
    rows=ROWS,
    file_name="online_retail.parquet",
    shared_folder="online_retail",
    shared_parquet_sha256=SHARED_PARQUET_SHA256,
    convert=read_workbook,
)
