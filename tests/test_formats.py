"""Inputs read right or refused: dates, decimal marks, encodings, sheets and CSV dialects detected (or refused
with the option to set), the quarantine guard, and the one id rule. Files are built here from a slice of the
Online Retail Parquet (every 100th line: a year of dates, days above 12 included)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import online_retail_or_skip
from rfmseg.errors import InputError, ParameterError
from rfmseg.io.intake import read_rfm
from rfmseg.io.rules import Policy
from rfmseg.io.validate import detect_date_formats, detect_decimal
from rfmseg.presets import build_policy, get_preset
from test_bad_input import ORDERS_HEADER, assert_clean_failure, write

RETAIL = get_preset("online-retail")


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    table = pq.read_table(online_retail_or_skip())
    df = table.take(list(range(0, table.num_rows, 100))).to_pandas()
    pounds = table.to_pandas()
    pounds = pounds[pounds["Description"].fillna("").str.contains("£")]
    return pd.concat([df, pounds], ignore_index=True)


def rfm_of(path: Path, **formats: str) -> tuple[pd.DataFrame, dict]:
    """The RFM table and row counts of ``path`` read with the online-retail preset and ``formats``."""
    intake = read_rfm(duckdb.connect(), path, policy=build_policy(RETAIL, **formats), preset=RETAIL)
    rfm = intake.rfm.to_pandas().set_index("customer_id").sort_index()
    return rfm, intake.rows_summary()


def assert_same_rfm(got: tuple[pd.DataFrame, dict], want: tuple[pd.DataFrame, dict]) -> None:
    (a, rows_a), (b, rows_b) = got, want
    assert rows_a == rows_b
    assert a.index.tolist() == b.index.tolist()
    for col in ("recency_days", "frequency", "first_order_date", "last_order_date"):
        assert a[col].tolist() == b[col].tolist(), col
    assert np.allclose(a["monetary"], b["monetary"], rtol=1e-12)


def text_export(lines: pd.DataFrame, date_format: str, decimal: str = ".") -> pd.DataFrame:
    """``lines`` as an export writes them: dates in ``date_format``, numbers with ``decimal`` as the mark
    (and the other one between thousands), ids as whole numbers."""

    def number(v: float) -> str:
        text = f"{v:,}"
        return text if decimal == "." else text.translate(str.maketrans(",.", ".,"))

    out = lines.copy()
    out["InvoiceDate"] = out["InvoiceDate"].dt.strftime(date_format)
    out["UnitPrice"] = out["UnitPrice"].map(number)
    out["CustomerID"] = out["CustomerID"].map(lambda v: "" if math.isnan(v) else str(int(v)))
    return out


# ------------------------------------------------------------------------------------------------ dates
def test_a_day_first_european_export_reads_as_the_parquet(lines: pd.DataFrame, tmp_path: Path) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "eu.csv"
    text_export(lines, "%d/%m/%Y %H:%M").to_csv(csv, index=False)
    assert "01/12/2010 08:26" in csv.read_text()
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))
    # every row read as a date: none quarantined as bad_date (47 % were, read month-first)
    assert "bad_date" not in rfm_of(csv)[1]["quarantined"]


def test_a_month_first_export_reads_as_the_parquet(lines: pd.DataFrame, tmp_path: Path) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "us.csv"
    text_export(lines, "%m/%d/%Y %H:%M").to_csv(csv, index=False)
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))


AMBIGUOUS = ORDERS_HEADER + "A,1,01/02/2024,10\nB,2,03/04/2024,12\nA,3,05/06/2024,8\nC,4,07/08/2024,9\n"


def test_ambiguous_dates_are_refused_naming_the_option(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = write(tmp_path, "o.csv", AMBIGUOUS)
    r = cli("run", p, "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "read both day-first and month-first", "e.g. '01/02/2024'", "--date-format")
    assert not runs_dir.exists()


@pytest.mark.parametrize(("fmt", "first"), [("%d/%m/%Y", "2024-02-01"), ("%m/%d/%Y", "2024-01-02")])
def test_ambiguous_dates_read_as_the_format_given(cli, tmp_path: Path, runs_dir: Path, fmt: str, first: str) -> None:
    p = write(tmp_path, "o.csv", AMBIGUOUS)
    r = cli("run", p, "--k", "2", "--date-format", fmt, "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    rfm = pq.read_table(Path(r.json()["run_dir"]) / "rfm.parquet").to_pandas().set_index("customer_id")
    assert str(rfm.loc["A", "first_order_date"]) == first


def test_ambiguous_dates_read_as_the_project_file_says(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = write(tmp_path, "o.csv", AMBIGUOUS)
    config = write(tmp_path, "rfmseg.toml", 'date_format = "%d/%m/%Y"\n')
    r = cli("run", p, "--k", "2", "--config", config, "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err


def test_dates_that_mix_both_orders_are_refused(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "A,1,13/01/2024,10\nB,2,01/13/2024,12\n")
    r = cli("run", p, "--bad-rows", "quarantine", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "mixes day-first and month-first dates", "--date-format")


def test_date_detection() -> None:
    assert detect_date_formats("f", "d", {"2024-01-05", "2024-02-01 10:00:00"}, 2) == ()
    day_first = detect_date_formats("f", "d", {"13.01.2024", "01.02.2024"}, 2)
    assert day_first[0].startswith("%d.%m.%Y") and all(f.startswith("%d.%m.%Y") for f in day_first)
    assert detect_date_formats("f", "d", {"1/13/24 8:26"}, 1)[0].startswith("%m/%d/%y")
    assert detect_date_formats("f", "d", {"01/01/2024", "12/12/2024"}, 2)  # reads the same both ways
    with pytest.raises(InputError, match="read both day-first and month-first"):
        detect_date_formats("f", "d", {"01/02/2024"}, 1)


# ------------------------------------------------------------------------------------------------ numbers
def test_a_decimal_comma_export_reads_as_the_parquet(lines: pd.DataFrame, tmp_path: Path) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "eu.csv"
    text_export(lines, "%d.%m.%Y %H:%M", decimal=",").to_csv(csv, index=False, sep=";")
    assert ";2,55;" in csv.read_text()
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))
    assert_same_rfm(rfm_of(csv, decimal=","), rfm_of(parquet))


def test_thousands_separators_with_a_decimal_point(lines: pd.DataFrame, tmp_path: Path) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "uk.csv"
    export = text_export(lines, "%Y-%m-%d %H:%M:%S")
    export.loc[0, "UnitPrice"] = "1,234.50"  # one line with a thousands separator
    lines = lines.copy()
    lines.loc[0, "UnitPrice"] = 1234.5
    lines.to_parquet(parquet, index=False)
    export.to_csv(csv, index=False)
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))


@pytest.mark.parametrize(
    ("amounts", "want"),
    [
        (["6,95", "12,00", "1.234,50"], ","),
        (["6.95", "12", "1,234.50"], "."),
        (["1.234.567", "12"], ","),
        (["1,234,567", "12"], "."),
        (["12", "7"], "."),
        (["1.234", "7"], "."),  # no comma anywhere: the point is the decimal mark
    ],
)
def test_decimal_detection(amounts: list[str], want: str) -> None:
    assert detect_decimal("f", {"amount": set(amounts)}) == want


def test_a_decimal_comma_is_never_read_as_hundreds(cli, tmp_path: Path, runs_dir: Path) -> None:
    """6,95 once read as 695: now detected, and with --decimal . (wrong) it is a bad amount, not 695."""
    text = ORDERS_HEADER + 'A,1,2024-01-01,"6,95"\nB,2,2024-02-01,"12,50"\nC,3,2024-03-01,"3,00"\nD,4,2024-04-01,5\n'
    p = write(tmp_path, "o.csv", text)
    r = cli("run", p, "--k", "2", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["total_revenue"] == pytest.approx(6.95 + 12.5 + 3.0 + 5)
    r = cli("run", p, "--k", "2", "--decimal", ".", "--runs-dir", tmp_path / "other")
    assert_clean_failure(r, tmp_path / "other", "amount missing or not a number", "--decimal")


@pytest.mark.parametrize(
    ("amounts", "fragments"),
    [
        (['"6,95"', "7.50"], ("decimal point ('7.50' in amount) and with a decimal comma ('6,95'", "--decimal")),
        (['"1,234"', "7"], ("'1,234' in amount reads as a thousands separator or as a decimal comma", "--decimal")),
    ],
)
def test_numbers_that_read_two_ways_are_refused(
    cli, tmp_path: Path, runs_dir: Path, amounts: list[str], fragments: tuple[str, ...]
) -> None:
    text = ORDERS_HEADER + "".join(f"C{i},{i},2024-0{i + 1}-01,{a}\n" for i, a in enumerate(amounts))
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, *fragments)


def test_a_bad_decimal_option_is_refused(cli, study_orders: Path, runs_dir: Path) -> None:
    r = cli("run", study_orders, "--decimal", ";", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "--decimal ';' is not allowed", '"." or ","')


# ------------------------------------------------------------------------------------------------ encodings
def test_a_latin1_online_retail_csv_reads_as_the_parquet(lines: pd.DataFrame, tmp_path: Path) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "latin1.csv"
    text_export(lines, "%m/%d/%Y %H:%M").to_csv(csv, index=False, encoding="latin-1")
    assert b"\xa3" in csv.read_bytes()  # a pound sign, as Latin-1 writes it
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))
    assert_same_rfm(rfm_of(csv, encoding="latin-1"), rfm_of(parquet))
    # the descriptions come through as text: the quarantine keeps the pound signs
    con = duckdb.connect()
    read_rfm(con, csv, preset=RETAIL)
    assert con.execute("SELECT count(*) FROM src WHERE contains(Description, '£')").fetchall() == [(32,)]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_utf8_with_a_bom_and_utf16_are_detected(lines: pd.DataFrame, tmp_path: Path, encoding: str) -> None:
    parquet = tmp_path / "part.parquet"
    lines.to_parquet(parquet, index=False)
    csv = tmp_path / "o.csv"
    text_export(lines, "%m/%d/%Y %H:%M").to_csv(csv, index=False, encoding=encoding)
    assert_same_rfm(rfm_of(csv), rfm_of(parquet))


def test_latin1_read_as_utf8_is_one_line_naming_the_encoding(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_bytes((ORDERS_HEADER + "A,1,2024-01-01,10\nB\xe9,2,2024-01-02,12\n").encode("latin-1"))
    r = cli("run", p, "--encoding", "utf-8", "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "line 3 is not UTF-8 text", "--encoding latin-1")
    r = cli("run", p, "--encoding", "ebcdic", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "--encoding 'ebcdic' is not supported; use utf-8, utf-16 or latin-1")


def test_latin1_after_the_first_megabyte_is_detected(cli, tmp_path: Path, runs_dir: Path) -> None:
    """As in the UCI CSV, whose first Latin-1 byte (a pound sign) is 3 MB in."""
    body = "".join(f"C{i % 50},{i},2024-01-{i % 28 + 1:02d},10\n" for i in range(50_000))
    p = tmp_path / "o.csv"
    p.write_bytes((ORDERS_HEADER + body).encode() + "Z\xa3,1,2024-02-01,10\n".encode("latin-1"))
    assert p.stat().st_size > 1 << 20
    r = cli("run", p, "--k", "2", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    rfm = pq.read_table(Path(r.json()["run_dir"]) / "rfm.parquet").to_pandas()
    assert "Z£" in set(rfm["customer_id"])


# ------------------------------------------------------------------------------------------------ workbooks
@pytest.fixture
def two_sheets(lines: pd.DataFrame, tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    first, second = lines.iloc[:1500], lines.iloc[1500:3000]
    book = openpyxl.Workbook(write_only=True)
    for name, part in (("2010", first), ("2011", second)):
        sheet = book.create_sheet(name)
        sheet.append(list(part.columns))
        for row in part.itertuples(index=False):
            sheet.append([None if isinstance(v, float) and np.isnan(v) else v for v in row])
    book.create_sheet("empty")
    path = tmp_path / "two.xlsx"
    book.save(path)
    return path, first, second


def test_a_workbook_with_several_sheets_is_refused_with_their_names(cli, two_sheets, runs_dir: Path) -> None:
    path, _, _ = two_sheets
    r = cli("run", "--preset", "online-retail", path, "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "has 2 sheets with data (2010, 2011)", "set --sheet")
    r = cli("run", "--preset", "online-retail", path, "--sheet", "2012", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "no sheet '2012'; sheets: 2010, 2011, empty")


def test_sheet_picks_one_sheet_or_all(two_sheets, tmp_path: Path) -> None:
    path, first, second = two_sheets
    one = tmp_path / "one.parquet"
    first.to_parquet(one, index=False)
    assert_same_rfm(rfm_of(path, sheet="2010"), rfm_of(one))
    both = tmp_path / "both.parquet"
    pd.concat([first, second]).to_parquet(both, index=False)
    assert_same_rfm(rfm_of(path, sheet="all"), rfm_of(both))


def dated_workbook(path: Path, sheets: dict[str, list[tuple[str, str, datetime, float]]]) -> Path:
    """A workbook of order sheets as Excel saves them: a cell at midnight is a date-only cell (a spreadsheet
    reader gives a date), one with a time a date-time."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append(["customer_id", "order_id", "order_date", "amount"])
        for row in rows:
            sheet.append(list(row))
    book.save(path)
    return path


def rfm_rows(cli, path: Path, runs: Path, *options: str) -> list[dict]:
    """The rfm.parquet of `rfmseg run PATH OPTIONS`, one dict per customer in id order."""
    r = cli("run", path, "--k", "2", "--as-of", "2024-02-01", "--runs-dir", runs, "--json", *options)
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {}
    return pq.read_table(Path(r.json()["run_dir"]) / "rfm.parquet").sort_by("customer_id").to_pylist()


def test_date_only_cells_read_as_dates_from_one_sheet_or_all(cli, tmp_path: Path) -> None:
    """Sheets of date-only cells (and one that mixes them with date-times) read as the same orders written in
    a CSV with ISO dates, one sheet or all of them: dates stay dates (a reader returns a date for a date-only
    cell, a date-time for one with a time)."""
    first = [(f"C{i}", f"O{i}", datetime(2023, 1, i), 10.0 * i) for i in range(1, 8)]
    second = [(f"C{i}", f"P{i}", datetime(2024, 1, i), 5.0 * i) for i in range(1, 8)]
    second.append(("C1", "P8", datetime(2024, 1, 9, 14, 30), 7.5))  # a date-time among the dates
    book = dated_workbook(tmp_path / "two.xlsx", {"2023": first, "2024": second})

    def csv_of(name: str, rows: list) -> Path:
        lines = [f"{c},{o},{d:%Y-%m-%d %H:%M:%S},{a}" for c, o, d, a in rows]
        return write(tmp_path, name, ORDERS_HEADER + "\n".join(lines) + "\n")

    for sheet, rows in (("2023", first), ("2024", second), ("all", first + second)):
        got = rfm_rows(cli, book, tmp_path / f"x{sheet}", "--sheet", sheet)
        assert got == rfm_rows(cli, csv_of(f"{sheet}.csv", rows), tmp_path / f"c{sheet}"), sheet
    every = rfm_rows(cli, book, tmp_path / "all", "--sheet", "all")
    c1 = every[0]
    assert (c1["customer_id"], c1["frequency"], c1["monetary"]) == ("C1", 3, 22.5)
    assert str(c1["first_order_date"])[:10] == "2023-01-01" and str(c1["last_order_date"])[:10] == "2024-01-09"


# ------------------------------------------------------------------------------------------------ CSV dialect
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("A,1,2024-01-01,10\nB,2,2024-01-02,12\nC,3,2024-02-01\n", ("line 4 has fewer fields than the header's 4",)),
        (
            "A,1,2024-01-01,10\nB,2,2024-01-02,12,5,6\nC,3,2024-02-01,8\n",
            ("line 3 has more fields than the header's 4",),
        ),
        ('A,1,2024-01-01,10\n"C1,2,2024-01-02,12\nC,3,2024-02-01,8\n', ("line 3 opens a quote that never closes",)),
    ],
    ids=["short-last-line", "long-line", "unbalanced-quote"],
)
def test_a_line_that_breaks_the_csv_is_named(
    cli, tmp_path: Path, runs_dir: Path, text: str, fragments: tuple[str, ...]
) -> None:
    r = cli("run", write(tmp_path, "o.csv", ORDERS_HEADER + text), "--k", "2", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, *fragments)
    assert "columns found" not in r.err


def test_semicolon_and_tab_delimiters_are_read(cli, tmp_path: Path, runs_dir: Path) -> None:
    rows = ["A,1,2024-01-01,10", "B,2,2024-02-01,12", "C,3,2024-03-01,8", "A,4,2024-04-01,9"]
    for sep, name in ((";", "o.csv"), ("\t", "o.tsv")):
        text = "\n".join(r.replace(",", sep) for r in [ORDERS_HEADER.strip(), *rows]) + "\n"
        r = cli("run", write(tmp_path, name, text), "--k", "2", "--runs-dir", runs_dir, "--json")
        assert r.code == 0, r.err
        assert r.json()["rows"]["used"] == 4


def test_unknown_file_type_names_no_option_that_does_not_exist(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", write(tmp_path, "o.json", "{}"), "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "unknown file type '.json'")
    assert "--format" not in r.err


# ------------------------------------------------------------------------------------------------ the guard
def guard_file(tmp_path: Path, bad: int, good: int = 20) -> Path:
    rows = [f"C{i % 7},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(good)]
    rows += [f"X{i},{100 + i},2024-01-05,n/a" for i in range(bad)]
    return write(tmp_path, "o.csv", ORDERS_HEADER + "\n".join(rows) + "\n")


def test_one_reason_above_the_limit_stops_the_run(cli, tmp_path: Path, runs_dir: Path) -> None:
    p = guard_file(tmp_path, bad=10)  # 10 of 30 rows: 33 %
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir)
    assert_clean_failure(
        r,
        runs_dir,
        "33% of the rows judged (10 of 30) are set aside as bad_amount",
        "more than the 20% allowed",
        "--decimal",
        "raise --max-quarantine",
    )
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--max-quarantine", "0.4", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    r = cli("run", guard_file(tmp_path, bad=5), "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir)
    assert r.code == 0, r.err  # 5 of 25: exactly 20 %, allowed


def test_a_misread_date_format_cannot_pass_as_a_segmentation(lines: pd.DataFrame, cli, tmp_path: Path) -> None:
    """Day-first dates read month-first (--date-format wrong) set aside every day above 12: refused."""
    csv = tmp_path / "eu.csv"
    text_export(lines, "%d/%m/%Y %H:%M").to_csv(csv, index=False)
    runs = tmp_path / "runs"
    r = cli("run", "--preset", "online-retail", csv, "--date-format", "%m/%d/%Y %H:%M", "--runs-dir", runs)
    assert_clean_failure(r, runs, "are set aside as bad_date", "more than the 40% allowed", "--date-format")


def test_the_guard_leaves_out_the_reasons_the_user_chose(cli, tmp_path: Path, runs_dir: Path) -> None:
    rows = [f"C{i % 9},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(40)]
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "\n".join(rows) + "\n")
    r = cli("run", p, "--k", "2", "--as-of", "2024-04-30", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"]["after_as_of"] > 20


def test_max_quarantine_must_be_a_share(cli, study_orders: Path, runs_dir: Path) -> None:
    r = cli("run", study_orders, "--max-quarantine", "3", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "--max-quarantine", "from 0 to 1")


# ------------------------------------------------------------------------------------------------ the id rule
BAD_IDS = {"control": "C\x01X", "tab": "C\tX", "newline": "C\nX", "long": "C" * 129}


@pytest.mark.parametrize("kind", sorted(BAD_IDS))
def test_an_id_that_could_not_be_served_is_quarantined(cli, tmp_path: Path, runs_dir: Path, kind: str) -> None:
    bad = BAD_IDS[kind]
    good = [f"C{i % 9},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(40)]
    text = ORDERS_HEADER + "\n".join(good) + f'\n"{bad}",99,2024-05-05,10\n'
    p = write(tmp_path, "o.csv", text)
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json", "--publish")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"bad_customer_id": 1}
    q = pq.read_table(Path(r.json()["run_dir"]) / "quarantine.parquet").to_pylist()
    assert [(row["reason"], row["customer_id"]) for row in q] == [("bad_customer_id", bad)]
    r = cli("run", p, "--k", "2", "--runs-dir", tmp_path / "strict")
    assert_clean_failure(r, tmp_path / "strict", "customer id with a control character", "first at row 41")


def test_the_id_rule_holds_for_parquet_and_rfm_tables(tmp_path: Path) -> None:
    orders = pd.DataFrame(
        {"customer_id": ["A", "B\nC", "D"], "order_id": ["1", "2", "3"], "amount": [1.0, 2.0, 3.0]}
        | {"order_date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])}
    )
    path = tmp_path / "o.parquet"
    orders.to_parquet(path)
    intake = read_rfm(duckdb.connect(), path, policy=Policy(bad_rows="quarantine", max_quarantine=0.5))
    assert intake.quarantined == {"bad_customer_id": 1}
    rfm = pd.DataFrame(
        {"customer_id": ["A", "B" * 200, "D"], "recency_days": [1, 2, 3]}
        | {"frequency": [1, 2, 3], "monetary": [1.0, 2.0, 3.0]}
    )
    intake = read_rfm(duckdb.connect(), rfm, policy=Policy(bad_rows="quarantine", max_quarantine=0.5))
    assert intake.quarantined == {"bad_customer_id": 1}


def test_an_id_with_a_slash_is_served_by_the_query_route(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    import rfmseg
    from rfmseg.jobs.publish import publish_run
    from rfmseg.service.app import Settings, create_app

    rows = [f"A/{i % 9},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(40)]
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    result = rfmseg.segment(p, k=2, runs_dir=runs)
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    publish_run(result.run_id, runs, store)
    with TestClient(create_app(Settings(runs_dir=runs, store_url=store))) as client:
        r = client.get("/customers", params={"id": "A/3"})
        assert r.status_code == 200, r.text
        assert r.json()["customer_id"] == "A/3"
        assert r.json()["segment"] == result.segment_of("A/3")
        assert client.get("/customers", params={"id": "A/99"}).status_code == 404
        assert client.get("/customers", params={"id": "A\x01"}).status_code == 422
        lookup = client.post("/customers/lookup", json={"ids": ["A/3", "A/4"]}).json()
        assert [c["customer_id"] for c in lookup["customers"]] == ["A/3", "A/4"]


# ------------------------------------------------------------------------------------------------ no traceback
def test_huge_amounts_are_quarantined_not_summed_to_infinity(cli, tmp_path: Path, runs_dir: Path) -> None:
    good = [f"C{i % 9},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(40)]
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "\n".join(good) + "\nZ,98,2024-05-05,1e308\nZ,99,2024-05-06,1e308\n")
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"bad_amount": 2}
    r = cli("run", p, "--k", "2", "--runs-dir", tmp_path / "strict")
    assert_clean_failure(r, tmp_path / "strict", "amount missing or not a number (or beyond ±1e+15)", "row 41")
    r = cli("choose-k", p, "--k-max", "3", "--no-stability")
    assert_clean_failure(r, tmp_path / "strict", "amount missing or not a number", "row 41")


@pytest.mark.parametrize("day", ["9999-12-31", "10000-01-01", "1000-01-01"])
def test_dates_out_of_range_are_quarantined(cli, tmp_path: Path, runs_dir: Path, day: str) -> None:
    good = [f"C{i % 9},{i},2024-{i % 12 + 1:02d}-01,{10 + i}" for i in range(40)]
    p = write(tmp_path, "o.csv", ORDERS_HEADER + "\n".join(good) + f"\nZ,99,{day},10\n")
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"bad_date": 1}
    assert r.json()["as_of"] == "2024-12-02"
    r = cli("run", p, "--k", "2", "--runs-dir", tmp_path / "strict")
    assert_clean_failure(r, tmp_path / "strict", "not in the years 1900-2999", "row 41")


def test_a_date_format_that_is_no_format_is_one_line(cli, study_orders: Path, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", study_orders, "--date-format", "%Q", "--runs-dir", runs_dir)
    assert_clean_failure(r, runs_dir, "--date-format '%Q' is not a date format (%Q is not a date directive)")
    assert cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir).code == 0
    r = cli("assign", study_orders, "--date-format", "%Q", "--runs-dir", runs_dir)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert "--date-format '%Q' is not a date format" in r.err


def test_an_rfm_table_with_nan_is_quarantined(cli, tmp_path: Path, runs_dir: Path) -> None:
    rows = [f"C{i},{i % 30},{i % 7 + 1},{10.0 * i}" for i in range(1, 41)]
    text = "customer_id,recency_days,frequency,monetary\n" + "\n".join(rows) + "\nZ,3,nan,12\nY,inf,2,5\n"
    p = write(tmp_path, "rfm.csv", text)
    r = cli("run", p, "--k", "2", "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"bad_frequency": 1, "bad_recency": 1}
    r = cli("run", p, "--k", "2", "--runs-dir", tmp_path / "strict")
    assert_clean_failure(r, tmp_path / "strict", "recency missing or negative")


@pytest.mark.parametrize("where", ["file", "under-dev-null", "proc", "sys"])
def test_a_runs_folder_that_cannot_be_one(cli, study_orders: Path, tmp_path: Path, where: str) -> None:
    runs = {
        "file": write(tmp_path, "runs", "not a folder"),
        "under-dev-null": Path("/dev/null/runs"),
        "proc": Path("/proc/rfmseg-runs"),
        "sys": Path("/sys/rfmseg-runs"),
    }[where]
    r = cli("run", study_orders, "--runs-dir", runs)
    assert r.code == 2, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("error: "), r.err
    assert "--runs-dir" in r.err
    if where == "file":
        assert runs.read_text() == "not a folder"
    else:
        assert not runs.exists()


def test_a_full_disk_is_exit_3_and_leaves_nothing(cli, study_orders: Path, tmp_path: Path) -> None:
    """A real full disk: a 256 KB tmpfs (needs the right to mount; skipped elsewhere)."""
    import subprocess

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        runs = tiny / "runs"
        r = cli("run", study_orders, "--runs-dir", runs)
        assert r.code == 3, (r.out, r.err)
        assert r.err.count("\n") == 1, r.err
        assert "No space left on device" in r.err and "free space" in r.err
        assert not runs.exists()
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_a_full_disk_error_is_an_environment_failure() -> None:
    import errno

    from rfmseg.errors import EnvironmentFailure, os_failure

    full = os_failure(OSError(errno.ENOSPC, "No space left on device", "/x/runs"), "writing the run to /x")
    assert isinstance(full, EnvironmentFailure) and full.exit_code == 3
    assert (
        str(full)
        == "writing the run to /x: No space left on device (/x/runs); free space (or fix the disk) and run again"
    )
    denied = os_failure(PermissionError(errno.EACCES, "Permission denied", "/x"), "cannot write runs in /x", "runs_dir")
    assert isinstance(denied, ParameterError) and denied.exit_code == 2 and denied.params == ("runs_dir",)


def test_a_killed_runs_temporary_folder_is_removed_and_never_listed(cli, study_orders: Path, runs_dir: Path) -> None:
    import os
    import time

    from rfmseg.runs import list_runs
    from rfmseg.runs.registry import TMP_GRACE_SECONDS

    stale, fresh = runs_dir / ".tmp-20240101-000000-000abc", runs_dir / ".tmp-20240101-000000-000def"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / "rfm.parquet").write_text("half written")
    old = time.time() - TMP_GRACE_SECONDS - 60
    os.utime(stale, (old, old))
    assert list_runs(runs_dir) == []
    r = cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    assert not stale.exists() and fresh.exists()  # a run in progress keeps its folder
    assert [p.name for p in runs_dir.iterdir() if not p.name.startswith(".")] == [list_runs(runs_dir)[0].run_id]
    r = cli("runs", "list", "--runs-dir", runs_dir, "--json")
    assert ".tmp" not in r.out


def test_a_failed_run_leaves_no_runs_folder(cli, tmp_path: Path) -> None:
    runs = tmp_path / "a" / "b" / "runs"
    text = ORDERS_HEADER + "A,1,2024-01-01,10\nB,2,2024-01-02,12\nC,3,2024-02-01,8\n"
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "5", "--runs-dir", runs)
    assert_clean_failure(r, runs, "--k 5 is larger than the number of customers (3); use a smaller --k")
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    r = cli("run", write(tmp_path, "o.csv", text), "--k", "5", "--runs-dir", existing)
    assert r.code == 2 and existing.is_dir()  # a folder the user had stays


def test_not_contacted_before_year_one_is_one_line(cli, tmp_path: Path, study_orders: Path) -> None:
    runs = tmp_path / "runs"
    assert cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs).code == 0
    r = cli("ask", "not-contacted", "--reference", "0001-01-01", "--runs-dir", runs)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert "starts before the year 1; give a later --reference or fewer --days" in r.err


def test_the_mcp_tool_says_what_is_wrong_with_the_reference(tmp_path: Path, study_orders: Path) -> None:
    import asyncio

    import rfmseg
    from test_mcp import connect, error

    runs = tmp_path / "runs"
    rfmseg.segment(study_orders, as_of="2024-12-31", runs_dir=runs)

    async def go() -> str:
        async with connect(runs) as s:
            return await error(s, "customers_without_touch", reference="0001-01-01")

    text = asyncio.run(go())
    assert "starts before the year 1" in text and "reference" in text


@pytest.mark.parametrize("start", ["9999-12-31", "0001-01-01"])
def test_simulate_out_of_range_start_is_one_line(cli, tmp_path: Path, start: str) -> None:
    r = cli("simulate", tmp_path / "sim", "--start", start)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert f"--start {start} is outside" in r.err
    assert not (tmp_path / "sim").exists()
