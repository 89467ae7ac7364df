"""The bad-input catalogue, files: every way a transactions (or RFM) file can be unusable, each given to
`rfmseg run` and refused with one line naming the problem and the fix, exit code 2 and nothing written
(tests/catalogue.py holds the machinery; the commands' options: test_catalogue_commands.py; the API and the
MCP tools: test_catalogue_services.py)."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue import Case, check_cli

HEADER = "customer_id,order_id,order_date,amount\n"
RFM_HEADER = "customer_id,recency_days,frequency,monetary\n"


def good_rows(n: int = 40) -> str:
    """``n`` well-formed order lines, one customer each (no two alike), dated through 2024."""
    return "".join(f"C{i:03d},O{i:03d},2024-{i % 12 + 1:02d}-{i % 27 + 1:02d},{10 + i}.50\n" for i in range(1, n + 1))


def orders(*extra: str, n: int = 40, header: str = HEADER) -> str:
    """A valid orders file with ``extra`` lines after the good ones (each a line without its newline)."""
    return header + good_rows(n) + "".join(f"{e}\n" for e in extra)


def rfm(*extra: str) -> str:
    rows = "".join(f"R{i:03d},{i * 3},{i % 9 + 1},{100 + i * 7}\n" for i in range(1, 31))
    return RFM_HEADER + rows + "".join(f"{e}\n" for e in extra)


def parquet_of(table: pa.Table, cut: float | None = None):
    """A writer of ``table`` as Parquet, cut to the ``cut`` share of its bytes when given (a truncated file)."""

    def write(p: Path) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
        p.write_bytes(data if cut is None else data[: int(len(data) * cut)])

    return write


def order_table(**overrides: pa.Array) -> pa.Table:
    n = 30
    cols = {
        "customer_id": pa.array([f"C{i}" for i in range(n)]),
        "order_id": pa.array([f"O{i}" for i in range(n)]),
        "order_date": pa.array([f"2024-01-{i % 28 + 1:02d}" for i in range(n)]),
        "amount": pa.array([10.0 + i for i in range(n)]),
    }
    cols.update(overrides)
    return pa.table(cols)


def workbook(*sheets: tuple[str, list[list[object]]], cut: float | None = None):
    """A writer of an .xlsx with ``sheets`` (name, rows), cut to a share of its bytes when ``cut`` is given."""

    def write(p: Path) -> None:
        book = openpyxl.Workbook()
        book.remove(book.active)
        for name, rows in sheets:
            sheet = book.create_sheet(name)
            for row in rows:
                sheet.append(row)
        buf = io.BytesIO()
        book.save(buf)
        data = buf.getvalue()
        p.write_bytes(data if cut is None else data[: int(len(data) * cut)])

    return write


SHEET_ROWS: list[list[object]] = [
    ["customer_id", "order_id", "order_date", "amount"],
    *[[f"C{i}", f"O{i}", f"2024-01-{i + 1:02d}", 10 + i] for i in range(20)],
]


def gz(text: str, cut: float | None = None) -> bytes:
    data = gzip.compress(text.encode())
    return data if cut is None else data[: int(len(data) * cut)]


def garbage(seed: int, size: int = 4096) -> bytes:
    return random.Random(seed).randbytes(size)


def run(name: str, content: object, says: str, *options: str, case_id: str | None = None) -> Case:
    """`rfmseg run {tmp}/NAME OPTIONS` on a file holding ``content``."""
    extra = " ".join(options)
    return Case(
        case_id or name,
        f"run {{tmp}}/{name} --runs-dir {{runs}} {extra}".strip(),
        says,
        files={name: content},  # type: ignore[dict-item]
    )


def bad_line(case_id: str, line: str, says: str, *options: str) -> Case:
    """A valid orders file with one bad line at the end (its row number: 41)."""
    return Case(
        case_id, f"run {{tmp}}/o.csv --runs-dir {{runs}} {' '.join(options)}".strip(), says, {"o.csv": orders(line)}
    )


QUARANTINED = "first at row 41"
"""a bad line after the 40 good ones, in error mode (the default): refused naming it"""

FILES = [
    # ------------------------------------------------------------------ nothing there
    run("empty.csv", b"", "the file is empty"),
    run("blank.csv", b"\n\n\n", "the first line is empty"),
    run("spaces.csv", b"   \r\n", "the first line is empty"),
    run("header.csv", HEADER, "has no rows"),
    run("header-crlf.csv", HEADER.replace("\n", "\r\n"), "has no rows"),
    run("header-no-newline.csv", HEADER.rstrip("\n"), "has no rows"),
    run("header-blank-lines.csv", HEADER + "\n\n\n", "has no rows"),
    run("header-empty-fields.csv", HEADER + ",,,\n,,,\n", "holds no readable dates"),
    run("empty.parquet", parquet_of(order_table().slice(0, 0)), "has no rows"),
    run("empty.xlsx", workbook(("Sheet1", [])), "the sheet is empty"),
    run("header-only.xlsx", workbook(("Sheet1", [SHEET_ROWS[0]])), "has no rows"),
    # ------------------------------------------------------------------ not the file it claims to be
    run("garbage.csv", garbage(1), "(a binary file, or another encoding)", case_id="binary-garbage-csv"),
    run("garbage.parquet", garbage(2), "not a parquet file"),
    run("garbage.xlsx", garbage(3), "not a xlsx file"),
    run("png.csv", b"\x89PNG\r\n\x1a\n" + garbage(4, 200), "not latin-1 text"),
    run("csv.parquet", orders(), "not a parquet file"),
    run("csv.xlsx", orders(), "not a xlsx file"),
    run("html.xls", "<html><table><tr><td>customer_id</td></tr></table></html>", "not a xlsx file"),
    run("zip.xlsx", b"PK\x03\x04" + garbage(5, 300), "cannot be read as a workbook"),
    run("truncated.parquet", parquet_of(order_table(), cut=0.6), "cannot be read as parquet"),
    run("magic-only.parquet", b"PAR1", "cannot be read as parquet"),
    run("truncated.xlsx", workbook(("Sheet1", SHEET_ROWS), cut=0.5), "cannot be read as a workbook"),
    run("orders.csv.gz", gz(orders()), "unknown file type '.gz'"),
    run("truncated.csv.gz", gz(orders(), cut=0.5), "unknown file type '.gz'"),
    run("gzip-named.csv", gz(orders()), "export the file again as CSV", case_id="gzip-bytes-named-csv"),
    run("orders.json", '[{"customer_id": "C1"}]', "unknown file type '.json'"),
    run("orders", orders(), "unknown file type ''", case_id="no-extension"),
    Case("missing-file", "run {tmp}/nope.csv --runs-dir {runs}", "no such file"),
    Case("folder", "run {tmp}/dir.csv --runs-dir {runs}", "is a folder", {"dir.csv/x.txt": "x"}),
    Case("dev-null", "run /dev/null --runs-dir {runs}", "unknown file type ''"),
    Case(
        "name-with-newline",
        "run '{tmp}/new\nline.csv' --runs-dir {runs}",
        "new?line.csv: the file is empty",
        {"new\nline.csv": ""},
    ),
    Case(
        "symlink-loop", "run {tmp}/loop.csv --runs-dir {runs}", "no such file", {"loop.csv": lambda p: p.symlink_to(p)}
    ),
    # ------------------------------------------------------------------ CSV dialect
    run("semicolon-rows.csv", HEADER + good_rows().replace(",", ";"), "fewer fields than the header's 4"),
    run("tab-rows.csv", HEADER + good_rows().replace(",", "\t"), "fewer fields than the header's 4"),
    run("unbalanced-quote.csv", orders('C999,"O999,2024-01-01,10'), "opens a quote that never closes"),
    run("stray-quote-id.csv", orders('"C998,O998,2024-01-01,10'), "opens a quote that never closes"),
    run("more-fields.csv", orders("C997,O997,2024-01-01,10,extra"), "line 42 has more fields"),
    run("fewer-fields.csv", orders("C996,O996,2024-01-01"), "line 42 has fewer fields"),
    run("one-field.csv", orders("C995"), "line 42 has fewer fields"),
    run("ragged-middle.csv", HEADER + "A,1,2024-01-01,10\nB,2\n" + good_rows(), "line 3 has fewer fields"),
    run("record-separator.csv", "0\x1e0\n1\n", "no customer_id column; columns found: 0?0", case_id="header-u001e"),
    run("line-separator.csv", "id\u2028x,b\n1,2\n", "columns found: id?x, b", case_id="header-u2028"),
    run("header-one-column.csv", "customer_id\n" + "A\nB\n", "no order_date column"),
    run("header-repeated.csv", orders(HEADER.strip()), "bad_date", case_id="header-repeated-mid-file"),
    run("concatenated-with-bom.csv", orders("\ufeff" + HEADER.strip()), "bad_date"),
    # ------------------------------------------------------------------ encodings and bytes
    run(
        "latin1-forced.csv",
        orders("C994,O994,2024-01-01,1\xa30").encode("latin-1"),
        "not UTF-8 text",
        "--encoding utf-8",
    ),
    run("utf16-bom-utf8-body.csv", b"\xff\xfe" + orders().encode(), "is not utf-16 text"),
    run("utf16-odd-bytes.csv", "\ufeff".encode("utf-16-le") + orders().encode("utf-16-le")[:-1], "is not utf-16 text"),
    run(
        "nul-in-header.csv",
        orders().replace("order_id", "order\x00id"),
        "the header line holds NUL bytes",
        case_id="nul-in-header",
    ),
    run("nul-in-id.csv", orders("C\x00993,O993,2024-01-01,10"), "bad_customer_id", case_id="nul-in-id"),
    run("nul-bytes.csv", b"\x00" * 512, "holds NUL bytes", case_id="all-nul-bytes"),
    run("bom-then-empty.csv", b"\xef\xbb\xbf", "the first line is empty", case_id="utf8-bom-only"),
    run("utf16-bom-only.csv", b"\xff\xfe", "the first line is empty", case_id="utf16-bom-only"),
    run("enc.csv", orders(), "--encoding 'ebcdic' is not supported", "--encoding ebcdic", case_id="unknown-encoding"),
    # ------------------------------------------------------------------ columns
    run("no-customer.csv", "client,order_id,order_date,amount\nA,1,2024-01-01,10\n", "no customer_id column"),
    run("no-date.csv", "customer_id,order_id,day,amount\nA,1,2024-01-01,10\n", "no order_date column"),
    run("no-amount.csv", "customer_id,order_id,order_date,total_ish\nA,1,2024-01-01,10\n", "no amount column"),
    run("quantity-no-price.csv", "customer_id,order_id,order_date,quantity\nA,1,2024-01-01,1\n", "no amount column"),
    run("mapped-missing.csv", orders(), "no column 'price'", "--amount-col price"),
    run("mapped-missing-date.csv", orders(), "no column 'when'", "--date-col when"),
    run(
        "dup-header.csv",
        orders(header="customer_id,customer_id,order_date,amount\n"),
        "columns 1 and 2 are both named 'customer_id'",
    ),
    run(
        "key-clash.csv",
        orders(header="CustomerID,customer_id,order_date,amount\n"),
        "columns 'CustomerID' and 'customer_id' could each be the customer_id column; map the one to read with "
        "--customer-col NAME",
        case_id="names-same-key",
    ),
    run(
        "dup.xlsx",
        workbook(("Data", [["customer_id", "amount", "order_date", "amount"], ["C1", 1, "2024-01-01", 2]])),
        "columns 2 and 4 are both named 'amount'",
        case_id="xlsx-duplicate-header",
    ),
    run("dup-amount.csv", orders(header="customer_id,order_id,amount,amount\n"), "both named 'amount'"),
    run("numeric-date.parquet", parquet_of(order_table(order_date=pa.array(range(30)))), "holds numbers"),
    run(
        "text-amount.parquet",
        parquet_of(order_table(amount=pa.array(["ten"] * 30))),
        "column 'amount' holds no numbers",
    ),
    run("all-null-ids.parquet", parquet_of(order_table(customer_id=pa.nulls(30, pa.string()))), "no customer id"),
    run("saas-plain.csv", orders(), "column", "--preset saas", case_id="saas-preset-on-orders"),
    # ------------------------------------------------------------------ ids
    bad_line("id-tab", '"C\t1",O999,2024-01-01,10', "bad_customer_id"),
    bad_line("id-newline", '"C\n1",O999,2024-01-01,10', "bad_customer_id"),
    bad_line("id-cr", '"C\r1",O999,2024-01-01,10', "bad_customer_id"),
    bad_line("id-del", "C\x7f1,O999,2024-01-01,10", "bad_customer_id"),
    bad_line("id-escape", "C\x1b[31m,O999,2024-01-01,10", "bad_customer_id"),
    bad_line("id-129-chars", f"{'X' * 129},O999,2024-01-01,10", "bad_customer_id"),
    bad_line("id-1000-chars", f"{'é' * 1000},O999,2024-01-01,10", "bad_customer_id"),
    bad_line("id-empty", ",O999,2024-01-01,10", "missing_customer_id"),
    bad_line("id-spaces", "   ,O999,2024-01-01,10", "missing_customer_id"),
    bad_line("order-id-empty", "C999,,2024-01-01,10", "missing_order_id"),
    # ------------------------------------------------------------------ dates
    bad_line("date-9999", "C999,O999,9999-12-31,10", "bad_date"),
    bad_line("date-0001", "C999,O999,0001-01-01,10", "bad_date"),
    bad_line("date-1899", "C999,O999,1899-12-31,10", "bad_date"),
    bad_line("date-3000", "C999,O999,3000-01-01,10", "bad_date"),
    bad_line("date-feb-30", "C999,O999,2024-02-30,10", "bad_date"),
    bad_line("date-month-13", "C999,O999,2024-13-01,10", "bad_date"),
    bad_line("date-hour-25", "C999,O999,2024-01-01 25:00:00,10", "bad_date"),
    bad_line("date-word", "C999,O999,yesterday,10", "bad_date"),
    bad_line("date-empty", "C999,O999,,10", "bad_date"),
    bad_line("date-epoch-number", "C999,O999,1704067200,10", "bad_date"),
    bad_line("date-huge-year", "C999,O999,+275760-09-13,10", "bad_date"),
    run(
        "ambiguous.csv",
        HEADER + "A,1,01/02/2024,10\nB,2,03/04/2024,12\nA,3,05/06/2024,8\n",
        "read both day-first and month-first",
        case_id="ambiguous-dates",
    ),
    run("mixed-order.csv", HEADER + "A,1,13/01/2024,10\nB,2,01/13/2024,12\n", "mixes day-first and month-first"),
    run(
        "date-format-wrong.csv",
        orders(),
        "is written as the --date-format given, '%d/%m/%Y'; give the format its dates are written in",
        "--date-format %d/%m/%Y",
        case_id="date-format-not-matching",
    ),
    # ------------------------------------------------------------------ numbers
    bad_line("amount-1e308", "C999,O999,2024-01-01,1e308", "bad_amount"),
    bad_line("amount-1e400", "C999,O999,2024-01-01,1e400", "bad_amount"),
    bad_line("amount-minus-1e308", "C999,O999,2024-01-01,-1e308", "bad_amount"),
    bad_line("amount-2e15", "C999,O999,2024-01-01,2e15", "bad_amount"),
    bad_line("amount-400-digits", f"C999,O999,2024-01-01,{'9' * 400}", "bad_amount"),
    bad_line("amount-nan", "C999,O999,2024-01-01,NaN", "bad_amount"),
    bad_line("amount-inf", "C999,O999,2024-01-01,inf", "bad_amount"),
    bad_line("amount-minus-infinity", "C999,O999,2024-01-01,-Infinity", "bad_amount"),
    bad_line("amount-currency", "C999,O999,2024-01-01,$10", "bad_amount"),
    bad_line("amount-words", "C999,O999,2024-01-01,ten", "bad_amount"),
    bad_line("amount-empty", "C999,O999,2024-01-01,", "bad_amount"),
    bad_line("amount-hex", "C999,O999,2024-01-01,0x10", "bad_amount"),
    bad_line("amount-negative", "C999,O999,2024-01-01,-5", "negative_amount"),
    run("decimal-mix.csv", orders('C999,O999,2024-01-01,"6,95"'), "decimal point", case_id="decimal-comma-mix"),
    run("thousands.csv", HEADER + 'A,1,2024-01-01,"1,234"\nB,2,2024-01-02,7\n', "reads as a thousands separator"),
    run("comma-forced-point.csv", HEADER + 'A,1,2024-01-01,"6,95"\nB,2,2024-02-01,5\n', "bad_amount", "--decimal ."),
    run(
        "nan.parquet",
        parquet_of(order_table(amount=pa.array([float("nan")] + [10.0] * 29))),
        "bad_amount",
        case_id="parquet-nan-amount",
    ),
    run(
        "inf.parquet",
        parquet_of(order_table(amount=pa.array([float("inf")] + [10.0] * 29))),
        "bad_amount",
        case_id="parquet-inf-amount",
    ),
    run(
        "big.parquet",
        parquet_of(order_table(amount=pa.array([1e308] + [10.0] * 29))),
        "bad_amount",
        case_id="parquet-1e308-amount",
    ),
    run(
        "ts9999.parquet",
        parquet_of(order_table(order_date=pa.array(["9999-12-31"] + ["2024-01-01"] * 29))),
        "bad_date",
        case_id="parquet-date-9999",
    ),
    # ------------------------------------------------------------------ ready RFM tables
    run("rfm-neg.csv", rfm("X1,-1,3,100"), "bad_recency", case_id="rfm-negative-recency"),
    run("rfm-freq0.csv", rfm("X1,3,0,100"), "bad_frequency", case_id="rfm-zero-frequency"),
    run("rfm-nan.csv", rfm("X1,3,2,NaN"), "bad_monetary", case_id="rfm-nan-monetary"),
    run("rfm-inf.csv", rfm("X1,inf,2,10"), "bad_recency", case_id="rfm-inf-recency"),
    run("rfm-huge.csv", rfm("X1,3,2,1e308"), "bad_monetary", case_id="rfm-1e308-monetary"),
    run("rfm-dup.csv", rfm("R001,3,2,10"), "duplicate_customer_id", case_id="rfm-duplicate-id"),
    run("rfm-ctrl.csv", rfm('"X\t1",3,2,10'), "bad_customer_id", case_id="rfm-id-control-char"),
    # ------------------------------------------------------------------ workbooks
    run(
        "two.xlsx",
        workbook(("2010", SHEET_ROWS), ("2011", SHEET_ROWS)),
        "the workbook has 2 sheets with data",
        case_id="xlsx-two-sheets",
    ),
    run("one.xlsx", workbook(("Data", SHEET_ROWS)), "no sheet 'Nope'", "--sheet Nope", case_id="xlsx-unknown-sheet"),
    run(
        "other-cols.xlsx",
        workbook(("a", SHEET_ROWS), ("b", [["x", "y"], [1, 2]])),
        "has other columns",
        "--sheet all",
        case_id="xlsx-sheets-differ",
    ),
    run(
        "dates-numbers.xlsx",
        workbook(("Data", [["customer_id", "order_id", "order_date", "amount"], *[["C", "O", 5, 1]] * 3])),
        "holds numbers",
        case_id="xlsx-date-column-of-numbers",
    ),
    # ------------------------------------------------------------------ what is left cannot be segmented
    run("one-customer.csv", HEADER + "A,1,2024-01-01,10\nA,2,2024-02-01,12\n", "larger than the number of customers"),
    run(
        "mostly-bad.csv",
        orders(*[f"X{i},Y{i},not-a-date,10" for i in range(20)]),
        "more than the 20% allowed",
        "--bad-rows quarantine",
        case_id="quarantine-guard",
    ),
    run(
        "all-bad.csv",
        HEADER + "".join(f"X{i},Y{i},never,10\n" for i in range(10)),
        "holds no readable dates",
        "--bad-rows quarantine --max-quarantine 1",
        case_id="every-row-quarantined",
    ),
    run("future.csv", orders(), "after_as_of", "--as-of 2024-01-15", case_id="as-of-before-most-rows"),
]


@pytest.mark.parametrize("case", [c.param() for c in FILES])
def test_a_bad_file_is_refused_in_one_line_leaving_nothing(
    case: Case, cli, tmp_path: Path, study_orders: Path, study_rfm_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("RFMSEG_RUNS_DIR", "RFMSEG_STORE", "RFMSEG_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    check_cli(case, cli, tmp_path, None, study_orders, study_rfm_file)


def test_the_file_catalogue_has_no_duplicate_ids() -> None:
    ids = [c.id for c in FILES]
    assert len(ids) == len(set(ids))


def test_old_mac_line_endings_read_like_any_other(cli, tmp_path: Path) -> None:
    """Found by the catalogue: a file whose lines end in a lone CR (old Mac exports) stopped with a Python
    traceback from the header's CSV parser; DuckDB reads such lines, and now the header is read alike."""
    lf, cr = tmp_path / "lf.csv", tmp_path / "cr.csv"
    lf.write_text(orders())
    cr.write_bytes(orders().replace("\n", "\r").encode())
    a = cli("run", lf, "--k", "3", "--runs-dir", tmp_path / "a", "--json")
    b = cli("run", cr, "--k", "3", "--runs-dir", tmp_path / "b", "--json")
    assert a.code == b.code == 0, b.err
    assert a.json()["rows"] == b.json()["rows"] == {"read": 40, "used": 40, "quarantined": {}}
    assert a.json()["segments"] == b.json()["segments"]


def test_a_dataframe_naming_a_column_twice_is_refused() -> None:
    import pandas as pd

    import rfmseg
    from rfmseg.errors import InputError

    df = pd.DataFrame(
        [["C1", "O1", "2024-01-01", 10.0, 11.0]], columns=["customer_id", "order_id", "order_date", "amount", "amount"]
    )
    with pytest.raises(InputError, match="columns 4 and 5 are both named 'amount'"):
        rfmseg.segment(df, runs_dir=None)
