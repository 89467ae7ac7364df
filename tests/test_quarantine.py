"""Every row used or quarantined with its reason, on generated messy invoice lines (the online-retail preset),
and files that cannot be used at all stopped before anything is written.

The generator builds each row to break exactly the rule it is labelled with (and no earlier one), so the
expected fate of every row is known by construction; the tests compare it row by row with quarantine.parquet
and with the counts of the manifest and of ``--json``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
AS_OF = date(2011, 12, 1)


@dataclass
class Messy:
    rows: list[dict[str, str]] = field(default_factory=list)
    expected: list[str | None] = field(default_factory=list)
    """the fate of each row with --returns net: None (used) or the reason code"""
    returns: list[bool] = field(default_factory=list)
    """the row is a return (a C invoice or a negative quantity)"""
    net_nonpositive: set[str] = field(default_factory=set)

    def add(self, row: dict[str, str], reason: str | None, is_return: bool = False, at: int | None = None) -> None:
        at = len(self.rows) if at is None else at
        self.rows.insert(at, row)
        self.expected.insert(at, reason)
        self.returns.insert(at, is_return)

    def expected_exclude(self) -> list[str | None]:
        """With --returns exclude: every return that would have been used (or was only quarantined because its
        customer had nothing else) is an excluded return."""
        return [
            "excluded_return" if ret and reason in (None, "returns_only_customer") else reason
            for reason, ret in zip(self.expected, self.returns, strict=True)
        ]


def messy_lines(seed: int, customers: int = 40) -> Messy:
    """Seeded UCI-layout invoice lines (all values as text) with every reason code of the preset mixed in."""
    rng = random.Random(seed)
    m = Messy()
    invoice = iter(range(536000 + seed * 10_000, 10**7))
    start = datetime(2011, 1, 3, 9, 0)

    def when(lo: int = 0, hi: int = 320) -> str:
        return (start + timedelta(days=rng.randint(lo, hi), minutes=rng.randint(0, 600))).strftime("%Y-%m-%d %H:%M:%S")

    def line(inv: str, cust: str, qty: int | str, price: float | str, ts: str) -> dict[str, str]:
        code = f"{rng.randint(20000, 23999)}"
        return {
            "InvoiceNo": inv,
            "StockCode": code,
            "Description": f"ITEM {code}",
            "Quantity": str(qty),
            "InvoiceDate": ts,
            "UnitPrice": str(price),
            "CustomerID": cust,
            "Country": rng.choice(["United Kingdom", "France", "EIRE"]),
        }

    def price() -> float:
        return round(rng.uniform(0.5, 20), 2)

    purchases: list[int] = []  # positions of used purchase lines (copied to make duplicates)
    for c in range(customers):
        cust = f"{12000 + c}.0" if c % 3 == 0 else str(12000 + c)  # ids as floats, as pandas exports them
        for _ in range(rng.randint(1, 5)):
            inv, ts = str(next(invoice)), when()
            for _ in range(rng.randint(1, 4)):
                m.add(line(inv, cust, rng.randint(1, 24), price(), ts), None)
                purchases.append(len(m.rows) - 1)
        if rng.random() < 0.5:  # a cancellation of part of an order: used, netted
            m.add(line(f"C{next(invoice)}", cust, -rng.randint(1, 3), price(), when()), None, is_return=True)
        if rng.random() < 0.2:  # a negative line on a regular invoice: a return too
            m.add(line(str(next(invoice)), cust, -1, price(), when()), None, is_return=True)
        if rng.random() < 0.3:  # bought after the as-of date
            late = (
                datetime.combine(AS_OF, datetime.min.time()) + timedelta(days=rng.randint(1, 8), hours=10)
            ).strftime("%Y-%m-%d %H:%M:%S")
            m.add(line(str(next(invoice)), cust, 2, price(), late), "after_as_of")

    def some_customer() -> str:
        return str(12000 + rng.randrange(customers))

    for _ in range(rng.randint(1, 3)):  # bad-debt adjustments, with and without a customer
        m.add(line(f"A{next(invoice)}", rng.choice(["", some_customer()]), 1, rng.choice([-1500.5, 1500.5]), when()),
              "bad_debt_adjustment")  # fmt: skip
    for _ in range(rng.randint(3, 8)):  # no customer: purchases and cancellations alike
        if rng.random() < 0.5:
            m.add(line(str(next(invoice)), rng.choice(["", "  "]), rng.randint(1, 9), price(), when()),
                  "missing_customer_id")  # fmt: skip
        else:
            m.add(line(f"C{next(invoice)}", "", -2, price(), when()), "missing_customer_id", is_return=True)
    for _ in range(rng.randint(1, 3)):
        m.add(line("", some_customer(), 3, price(), when()), "missing_order_id")
    for _ in range(rng.randint(1, 4)):
        bad = rng.choice(["not a date", "2011-13-45 10:00:00", ""])
        m.add(line(str(next(invoice)), some_customer(), 3, price(), bad), "bad_date")
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            m.add(line(str(next(invoice)), some_customer(), rng.choice(["x", ""]), price(), when()), "bad_amount")
        else:
            m.add(line(str(next(invoice)), some_customer(), 2, rng.choice(["n/a", ""]), when()), "bad_amount")
    for _ in range(rng.randint(1, 3)):
        m.add(line(str(next(invoice)), some_customer(), 4, -round(rng.uniform(1, 9), 2), when()), "negative_price")
    for _ in range(rng.randint(2, 5)):
        qty = rng.choice([1, 6, -2])  # a free line, even a returned one, is a zero-price line
        m.add(line(str(next(invoice)), some_customer(), qty, "0", when()), "zero_price", is_return=qty < 0)

    # customers with returns only (their purchases predate the file), one of them with a free line as well
    for j in range(rng.randint(1, 3)):
        cust = str(19000 + j)
        for _ in range(rng.randint(1, 2)):
            m.add(line(f"C{next(invoice)}", cust, -rng.randint(1, 5), price(), when()), "returns_only_customer", True)
        if j == 0:
            m.add(line(str(next(invoice)), cust, 3, "0.0", when()), "zero_price")
    # customers whose returns cancel what they bought: kept, reported
    for j in range(rng.randint(1, 2)):
        cust = str(18000 + j)
        m.add(line(str(next(invoice)), cust, 2, 5.0, when(0, 100)), None)
        m.add(line(f"C{next(invoice)}", cust, -2 - j, 5.0, when(150, 300)), None, is_return=True)
        m.net_nonpositive.add(cust)

    # exact copies of earlier used lines (purchases, and one return), each placed somewhere after its original
    originals = rng.sample(purchases, k=min(len(purchases), rng.randint(3, 8)))
    returns_used = [i for i, (r, e) in enumerate(zip(m.returns, m.expected, strict=True)) if r and e is None]
    originals.append(returns_used[0])
    for pos in sorted(originals, reverse=True):
        original, ret = dict(m.rows[pos]), m.returns[pos]
        m.add(original, "duplicate_line", ret, at=rng.randint(pos + 1, len(m.rows)))
    return m


def write_messy(m: Messy, path: Path) -> Path:
    table = pa.table({c: [r[c] for r in m.rows] for c in COLUMNS})
    if path.suffix == ".csv":
        duckdb.from_arrow(table).write_csv(str(path))
    elif path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(list(COLUMNS))
        for r in m.rows:
            sheet.append([r[c] for c in COLUMNS])
        book.save(path)
    return path


def run_preset(cli, path: Path, runs_dir: Path, *extra: str) -> tuple[dict, Path]:
    r = cli("run", "--preset", "online-retail", path, "--as-of", AS_OF.isoformat(), "--k", "3", "--runs-dir",
            runs_dir, "--json", *extra)  # fmt: skip
    assert r.code == 0, r.err
    data = r.json()
    return data, Path(data["run_dir"])


def check_every_row(m: Messy, expected: list[str | None], data: dict, run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    quarantined = Counter(e for e in expected if e is not None)
    want = {"read": len(m.rows), "used": expected.count(None), "quarantined": dict(quarantined)}
    assert manifest["rows"] == want
    assert data["rows"] == want  # --json repeats the manifest's object
    assert want["read"] == want["used"] + sum(want["quarantined"].values())
    q = pq.read_table(run_dir / "quarantine.parquet").to_pylist()
    got = {r["row_number"]: r["reason"] for r in q}
    assert got == {i + 1: e for i, e in enumerate(expected) if e is not None}
    for r in q:  # the original values travel with the reason
        assert (r["InvoiceNo"] or "") == m.rows[r["row_number"] - 1]["InvoiceNo"]


@pytest.mark.parametrize(("seed", "fmt"), [(0, "csv"), (1, "csv"), (2, "parquet"), (3, "xlsx")])
def test_every_row_used_or_quarantined_with_its_reason(cli, tmp_path: Path, seed: int, fmt: str) -> None:
    m = messy_lines(seed)
    assert {e for e in m.expected if e} >= {
        "bad_debt_adjustment",
        "missing_customer_id",
        "missing_order_id",
        "bad_date",
        "bad_amount",
        "duplicate_line",
        "negative_price",
        "zero_price",
        "after_as_of",
        "returns_only_customer",
    }
    data, run_dir = run_preset(cli, write_messy(m, tmp_path / f"lines.{fmt}"), tmp_path / "runs")
    check_every_row(m, m.expected, data, run_dir)


def test_rfm_of_the_used_rows(cli, tmp_path: Path) -> None:
    """Recency from the last purchase, frequency = distinct purchase invoices, monetary net of returns."""
    m = messy_lines(4)
    data, run_dir = run_preset(cli, write_messy(m, tmp_path / "lines.csv"), tmp_path / "runs")
    last: dict[str, date] = {}
    invoices: dict[str, set[str]] = defaultdict(set)
    money: dict[str, float] = defaultdict(float)
    for row, reason, ret in zip(m.rows, m.expected, m.returns, strict=True):
        if reason is not None:
            continue
        cust = row["CustomerID"].removesuffix(".0")
        money[cust] += int(row["Quantity"]) * float(row["UnitPrice"])
        if not ret:
            invoices[cust].add(row["InvoiceNo"])
            day = datetime.fromisoformat(row["InvoiceDate"]).date()
            last[cust] = max(last.get(cust, day), day)
    rfm = {r["customer_id"]: r for r in pq.read_table(run_dir / "rfm.parquet").to_pylist()}
    assert set(rfm) == set(invoices)
    for cust, r in rfm.items():
        assert r["frequency"] == len(invoices[cust])
        assert r["recency_days"] == (AS_OF - last[cust]).days
        assert r["monetary"] == pytest.approx(round(money[cust], 2), abs=0.005)
    net = data["net_nonpositive"]
    nonpositive = {c for c, v in money.items() if round(v, 2) <= 0}
    assert m.net_nonpositive <= nonpositive  # the generator's netted-out customers, kept in the RFM table
    assert net["customers"] == len(nonpositive) and set(net["examples"]) <= nonpositive
    assert net["policy"].startswith("kept")
    assert "net_nonpositive_customers" in {w["id"] for w in data["warnings"]}


def test_returns_excluded_instead_of_netted(cli, tmp_path: Path) -> None:
    m = messy_lines(5)
    data, run_dir = run_preset(cli, write_messy(m, tmp_path / "lines.csv"), tmp_path / "runs", "--returns", "exclude")
    expected = m.expected_exclude()
    assert "excluded_return" in expected and "returns_only_customer" not in expected
    check_every_row(m, expected, data, run_dir)
    assert json.loads((run_dir / "manifest.json").read_text())["params"]["returns"] == "exclude"
    monetary = pq.read_table(run_dir / "rfm.parquet").column("monetary").to_pylist()
    assert min(monetary) > 0  # nothing subtracted


def test_terminal_summary_gives_the_counts(cli, tmp_path: Path) -> None:
    m = messy_lines(6)
    path = write_messy(m, tmp_path / "lines.csv")
    r = cli("run", "--preset", "online-retail", path, "--as-of", AS_OF.isoformat(), "--k", "3", "--runs-dir",
            tmp_path / "runs")  # fmt: skip
    assert r.code == 0, r.err
    q = Counter(e for e in m.expected if e is not None)
    line = next(x for x in r.out.splitlines() if x.startswith("Rows:"))
    assert f"{len(m.rows):,} read, {m.expected.count(None):,} used, {sum(q.values()):,} quarantined" in line
    for reason, n in q.items():
        assert f"{reason} {n:,}" in line


def test_error_mode_stops_at_the_first_broken_rule(cli, tmp_path: Path) -> None:
    m = messy_lines(7)
    runs = tmp_path / "runs"
    r = cli("run", "--preset", "online-retail", write_messy(m, tmp_path / "lines.csv"), "--bad-rows", "error",
            "--as-of", AS_OF.isoformat(), "--runs-dir", runs)  # fmt: skip
    n = m.expected.count("bad_debt_adjustment")
    first = m.expected.index("bad_debt_adjustment") + 1
    assert_clean_failure(r, runs, f"{n} row(s) with bad-debt adjustment", f"first at row {first}", "--bad-rows")


# ------------------------------------------------------------------------------------ files that cannot be used
def assert_clean_failure(r, runs_dir: Path, *fragments: str) -> None:
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    for f in fragments:
        assert f in lines[0], lines[0]
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory: pytest.TempPathFactory, online_retail: Path) -> Path:
    path = tmp_path_factory.mktemp("slice") / "slice.parquet"
    duckdb.sql(f"COPY (SELECT * FROM '{online_retail}' LIMIT 2000) TO '{path}'")
    return path


def _variant(real_slice: Path, tmp_path: Path, name: str, select: str, tail: str = "") -> Path:
    out = tmp_path / name
    fmt = "csv" if out.suffix == ".csv" else "parquet"
    duckdb.sql(f"COPY (SELECT {select} FROM '{real_slice}' {tail}) TO '{out}' (FORMAT {fmt})")
    return out


@pytest.mark.parametrize(
    ("name", "select", "fragments"),
    [
        (
            "renamed.parquet",
            "* RENAME (CustomerID AS Kunde)",
            ("no customer_id column", "columns found: InvoiceNo, StockCode", "Kunde", "--customer-col"),
        ),
        ("no_price.csv", "* EXCLUDE (UnitPrice)", ("no amount column (nor quantity and unit price)", "--amount-col")),
        ("numeric_dates.parquet", "* REPLACE (epoch(InvoiceDate)::BIGINT AS InvoiceDate)", ("holds numbers",)),
        ("text_dates.csv", "* REPLACE ('soon' AS InvoiceDate)", ("'InvoiceDate' holds no readable dates", "--date-")),
        ("text_quantity.csv", "* REPLACE ('many' AS Quantity)", ("'Quantity' holds no numbers",)),
        ("header_only.csv", "* EXCLUDE (Country)", ("has no rows",)),
    ],
)
def test_unusable_layout_stops_before_writing(
    cli, real_slice: Path, tmp_path: Path, name: str, select: str, fragments: tuple[str, ...]
) -> None:
    runs = tmp_path / "runs"
    tail = "LIMIT 0" if name.startswith("header_only") else ""
    r = cli("run", "--preset", "online-retail", _variant(real_slice, tmp_path, name, select, tail), "--runs-dir", runs)
    assert_clean_failure(r, runs, *fragments)


def test_misnamed_mapping_names_the_columns_found(cli, real_slice: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    r = cli("run", "--preset", "online-retail", real_slice, "--customer-col", "Client", "--runs-dir", runs)
    assert_clean_failure(r, runs, "no column 'Client' (given for customer_id)", "columns found: InvoiceNo")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.parquet", b"", "the file is empty"),
        ("really_csv.parquet", b"InvoiceNo,CustomerID\n1,2\n", "not a parquet file although its name ends in .parquet"),
        ("really_text.xlsx", b"InvoiceNo\tCustomerID\n", "not a xlsx file although its name ends in .xlsx"),
        ("broken.xlsx", b"PK\x03\x04" + bytes(range(256)) * 8, "cannot be read as a workbook"),
        ("garbage.csv", b"InvoiceNo,CustomerID\n" + bytes(range(256)) * 20, "is not latin-1 text (a binary file"),
    ],
)
def test_unreadable_file_stops_before_writing(cli, tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    runs = tmp_path / "runs"
    assert_clean_failure(cli("run", "--preset", "online-retail", path, "--runs-dir", runs), runs, fragment)


def test_truncated_parquet_stops_before_writing(cli, real_slice: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.parquet"
    path.write_bytes(real_slice.read_bytes()[:3000])
    runs = tmp_path / "runs"
    r = cli("run", "--preset", "online-retail", path, "--runs-dir", runs)
    assert_clean_failure(r, runs, "cannot be read as parquet", "check the file")


def test_installed_command_exits_2_with_one_line(real_slice: Path, tmp_path: Path) -> None:
    renamed = _variant(real_slice, tmp_path, "r.parquet", "* RENAME (InvoiceDate AS Wann)")
    runs = tmp_path / "runs"
    exe = Path(sys.executable).with_name("rfmseg")
    proc = subprocess.run(
        [str(exe), "run", "--preset", "online-retail", str(renamed), "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no order_date column" in lines[0] and "--date-col" in lines[0], proc.stderr
    assert not runs.exists()


def test_returns_option_without_a_preset_counts_negative_lines_as_returns(cli, tmp_path: Path) -> None:
    """Order lines with refunds written as negative lines: refused as they are (the message says how to
    count them as returns), netted with --returns net, set aside with --returns exclude."""
    lines = ["customer_id,order_id,order_date,amount"]
    for i in range(24):
        lines += [f"K{i},{i}a,2024-01-{1 + i % 28:02d},{50 + i}", f"K{i},{i}b,2024-02-{1 + i % 28:02d},{20 + i}"]
    lines += ["K1,1r,2024-02-20,-30", "K2,2r,2024-02-21,-10"]
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(lines) + "\n")
    runs = tmp_path / "runs"
    r = cli("run", path, "--k", "2", "--runs-dir", runs)
    assert_clean_failure(r, runs, "2 row(s) with negative amount", "pass --returns net to count negative lines")
    net = cli("run", path, "--k", "2", "--returns", "net", "--runs-dir", runs, "--json")
    assert net.code == 0, net.err
    assert net.json()["rows"] == {"read": 50, "used": 50, "quarantined": {}}
    rfm = pq.read_table(next(runs.glob("*/rfm.parquet"))).to_pylist()
    by = {row["customer_id"]: row for row in rfm}
    assert by["K1"]["monetary"] == 51 + 21 - 30 and by["K1"]["frequency"] == 2  # the refund is no order
    excl = cli(
        "run",
        path,
        "--k",
        "2",
        "--returns",
        "exclude",
        "--bad-rows",
        "quarantine",
        "--runs-dir",
        tmp_path / "runs2",
        "--json",
    )
    assert excl.code == 0, excl.err
    assert excl.json()["rows"]["quarantined"] == {"excluded_return": 2}
    runs = tmp_path / "runs3"
    study_orders = tmp_path / "study.csv"
    study_orders.write_text("\n".join(lines[:-2]) + "\n")
    r = cli("run", "--preset", "online-retail", study_orders, "--returns", "sometimes", "--runs-dir", runs)
    assert_clean_failure(r, runs, "--returns", "'sometimes' is not allowed", "net or exclude")


def test_every_reason_code_is_documented() -> None:
    from rfmseg.io import rules as validate
    from rfmseg.presets.online_retail import RULES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "data-quality.md").read_text(encoding="utf-8")
    rules = [*RULES, *validate.GENERIC_RULES, validate.AFTER_AS_OF, validate.RETURNS_ONLY, validate.EXCLUDED_RETURN]
    rfm_codes = ("bad_recency", "bad_frequency", "bad_monetary", "duplicate_customer_id")
    missing = [code for code in [*(r.reason for r in rules), *rfm_codes] if f"`{code}`" not in doc]
    assert not missing, f"reason codes missing from docs/data-quality.md: {missing}"
