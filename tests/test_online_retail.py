"""The UCI Online Retail file end to end with ``--preset online-retail``.

Every expectation is computed here, independently, with pandas from the raw invoice lines (the fate of each
row, the RFM of each customer) or taken from the data set's README (its validation figures), and compared
with what rfmseg wrote. The file comes from the data set cache (``rfmseg datasets fetch online-retail``, filled
from ``../shared/data`` beside the checkout when it is there); the tests are skipped, saying why, without it.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

import rfmseg
from rfmseg.cli.common import run_app
from rfmseg.model.choose_k import STABLE_ARI, choose_k
from rfmseg.model.scoring import rfm_matrix
from rfmseg.model.segment_model import SegmentModel
from rfmseg.presets import get_preset

README_ROWS = 541_909  # validation figures of shared/data/online_retail/README.md
README_NULL_CUSTOMERS = 135_080
README_BAD_DEBT = 3


@pytest.fixture(scope="module")
def data(online_retail: Path) -> Path:
    return online_retail


def cli_json(*args: object) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = run_app([str(a) for a in args])
    assert code == 0, buf.getvalue()[-2000:]
    return json.loads(buf.getvalue())


# ------------------------------------------------------------------------------------ the reference, in pandas
def reference_fates(lines: pd.DataFrame, returns: str = "net") -> tuple[pd.Series, pd.Series, object]:
    """The documented policy applied by hand: each row's reason (None = used), its return flag, the as-of."""
    assert lines["InvoiceNo"].notna().all() and lines["InvoiceDate"].notna().all()  # no such reasons in this file
    reason = pd.Series([None] * len(lines), index=lines.index, dtype=object)

    def mark(mask: pd.Series, code: str) -> None:
        reason[mask & reason.isna()] = code

    invoice = lines["InvoiceNo"].str.strip().str.upper()
    is_return = invoice.str.startswith("C") | (lines["Quantity"] < 0)
    mark(invoice.str.startswith("A"), "bad_debt_adjustment")
    mark(lines["CustomerID"].isna(), "missing_customer_id")
    mark(lines.duplicated(keep="first"), "duplicate_line")
    mark(lines["UnitPrice"] < 0, "negative_price")
    mark(lines["UnitPrice"] == 0, "zero_price")
    if returns == "exclude":
        mark(is_return, "excluded_return")
    as_of = lines.loc[reason.isna() & ~is_return, "InvoiceDate"].max().date() + timedelta(days=1)
    mark(lines["InvoiceDate"].dt.date > as_of, "after_as_of")
    if returns == "net":
        used = reason.isna()
        buyers = set(lines.loc[used & ~is_return, "CustomerID"])
        mark(used & ~lines["CustomerID"].isin(buyers), "returns_only_customer")
    return reason, is_return, as_of


def reference_rfm(lines: pd.DataFrame, reason: pd.Series, is_return: pd.Series, as_of: object) -> pd.DataFrame:
    """Orders are invoices (date = latest line, amount = sum of lines); an all-returns invoice is no order."""
    used = lines[reason.isna()].assign(
        customer_id=lambda d: d["CustomerID"].astype("int64").astype(str),
        amount=lambda d: d["Quantity"] * d["UnitPrice"],
        is_return=is_return[reason.isna()],
    )
    orders = used.groupby(["customer_id", "InvoiceNo"]).agg(
        ts=("InvoiceDate", "max"), amount=("amount", "sum"), all_returns=("is_return", "all")
    )
    orders = orders.reset_index()
    bought = orders[~orders["all_returns"]].groupby("customer_id").agg(last=("ts", "max"), frequency=("ts", "size"))
    out = pd.DataFrame({"monetary": orders.groupby("customer_id")["amount"].sum().round(2)}).join(bought)
    out["recency_days"] = (pd.Timestamp(as_of) - out["last"].dt.normalize()).dt.days
    return out.sort_index()


@pytest.fixture(scope="module")
def lines(data: Path) -> pd.DataFrame:
    return pd.read_parquet(data)


@pytest.fixture(scope="module")
def reference(lines: pd.DataFrame) -> dict:
    reason, is_return, as_of = reference_fates(lines)
    return {"reason": reason, "as_of": as_of, "rfm": reference_rfm(lines, reason, is_return, as_of)}


@pytest.fixture(scope="module")
def default_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """`rfmseg run --preset online-retail FILE --json`, once for the module."""
    summary = cli_json(
        "run", "--preset", "online-retail", data, "--runs-dir", tmp_path_factory.mktemp("runs"), "--json"
    )
    return summary, Path(summary["run_dir"])


# ------------------------------------------------------------------------------------ the real file
def test_every_row_is_used_or_quarantined(default_run: tuple[dict, Path], reference: dict) -> None:
    summary, run_dir = default_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = manifest["rows"]
    assert rows["read"] == README_ROWS
    assert rows["read"] == rows["used"] + sum(rows["quarantined"].values())
    assert summary["rows"] == rows
    assert rows["quarantined"]["bad_debt_adjustment"] == README_BAD_DEBT
    # the A... adjustments have no customer either: together they are the README's null CustomerIDs
    assert rows["quarantined"]["missing_customer_id"] + README_BAD_DEBT == README_NULL_CUSTOMERS
    want = reference["reason"]
    assert rows["quarantined"] == dict(Counter(want.dropna()))
    assert rows["used"] == int(want.isna().sum())
    q = pq.read_table(run_dir / "quarantine.parquet", columns=["row_number", "reason"]).to_pandas()
    assert len(q) == sum(rows["quarantined"].values())
    expected = want.dropna()
    assert q["row_number"].tolist() == (expected.index + 1).tolist()
    assert q["reason"].tolist() == expected.tolist()


def test_rfm_matches_the_definition(default_run: tuple[dict, Path], reference: dict) -> None:
    summary, run_dir = default_run
    assert summary["as_of"] == reference["as_of"].isoformat()
    rfm = pq.read_table(run_dir / "rfm.parquet").to_pandas().set_index("customer_id").sort_index()
    ref = reference["rfm"]
    assert rfm.index.tolist() == ref.index.tolist()
    assert (rfm["frequency"].to_numpy() == ref["frequency"].to_numpy()).all()
    assert (rfm["recency_days"].to_numpy() == ref["recency_days"].to_numpy()).all()
    np.testing.assert_allclose(rfm["monetary"].to_numpy(), ref["monetary"].to_numpy(), atol=0.006)
    net = summary["net_nonpositive"]
    assert net["customers"] == int((ref["monetary"] <= 0).sum()) > 0
    assert "kept" in net["policy"]


def test_default_segments_fit_their_names(default_run: tuple[dict, Path]) -> None:
    summary, _ = default_run
    assert summary["transform"] == get_preset("online-retail").transform and summary["currency"] == "£"
    assert summary["k"] == 4
    segs = summary["segments"]
    assert min(s["share_customers"] for s in segs) >= 0.02
    champions = next(s for s in segs if s["name"] == "Champions")
    assert champions["mean_recency_days"] == min(s["mean_recency_days"] for s in segs)
    assert champions["mean_frequency"] == max(s["mean_frequency"] for s in segs)
    assert {i["id"] for i in summary["insights"]} >= {"pareto"}


def test_no_activation_project_when_the_largest_segment_is_not_the_smallest(default_run: tuple[dict, Path]) -> None:
    """On Online Retail the largest segment by customers is not the smallest by revenue: the priority order
    names no long-term activation project (the sentence would be false)."""
    segs = default_run[0]["segments"]
    largest = max(segs, key=lambda s: s["customers"])
    smallest = min(segs, key=lambda s: s["revenue"])
    assert largest["name"] != smallest["name"]
    assert [s["name"] for s in segs if s.get("sequencing")] == []


def test_data_warnings_on_the_real_file(default_run: tuple[dict, Path], reference: dict) -> None:
    summary, run_dir = default_run
    ref = reference["rfm"]
    ids = {w["id"] for w in summary["warnings"]}
    assert ("revenue_concentration" in ids) == (ref["monetary"].max() / ref["monetary"].clip(lower=0).sum() > 0.10)
    assert "few_customers" not in ids and "short_history" not in ids  # 4,338 customers over a year
    assert "net_nonpositive_customers" in ids
    assert json.loads((run_dir / "manifest.json").read_text())["warnings"] == summary["warnings"]


def test_model_scores_new_customers_like_the_run(default_run: tuple[dict, Path]) -> None:
    _, run_dir = default_run
    model = SegmentModel.load(run_dir / "model.json")
    a = pq.read_table(run_dir / "assignments.parquet").to_pandas()
    again = model.predict(a[["recency_days", "frequency", "monetary"]].to_numpy(float))
    assert again.segments == a["segment"].tolist()


def test_returns_excluded(data: Path, lines: pd.DataFrame, tmp_path: Path) -> None:
    summary = cli_json(
        "run", "--preset", "online-retail", data, "--returns", "exclude", "--runs-dir", tmp_path, "--json"
    )
    reason, _, _ = reference_fates(lines, returns="exclude")
    assert summary["rows"]["quarantined"] == dict(Counter(reason.dropna()))
    assert "returns_only_customer" not in summary["rows"]["quarantined"]
    assert summary["net_nonpositive"]["customers"] == 0


def test_online_retail_ii_layout_is_recognised(data: Path, default_run: tuple[dict, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "online_retail_ii.parquet"
    duckdb.sql(
        f'COPY (SELECT * RENAME (InvoiceNo AS Invoice, UnitPrice AS Price, CustomerID AS "Customer ID") '
        f"FROM '{data}') TO '{renamed}'"
    )
    summary = cli_json("run", "--preset", "online-retail", renamed, "--runs-dir", tmp_path / "runs", "--json")
    manifest = json.loads((Path(summary["run_dir"]) / "manifest.json").read_text())
    assert manifest["input"]["columns"]["order_id"] == "Invoice"
    assert manifest["input"]["columns"]["unit_price"] == "Price"
    assert manifest["input"]["columns"]["customer_id"] == "Customer ID"
    first, first_dir = default_run
    assert summary["rows"] == first["rows"]
    assert pq.read_table(Path(summary["run_dir"]) / "rfm.parquet").equals(pq.read_table(first_dir / "rfm.parquet"))


@pytest.mark.slow
def test_csv_export_gives_the_same_run(data: Path, default_run: tuple[dict, Path], tmp_path: Path) -> None:
    csv = tmp_path / "online_retail.csv"
    duckdb.sql(f"COPY (SELECT * FROM '{data}') TO '{csv}' (FORMAT csv, HEADER)")
    summary = cli_json("run", "--preset", "online-retail", csv, "--runs-dir", tmp_path / "runs", "--json")
    first, first_dir = default_run
    assert summary["rows"] == first["rows"]
    assert pq.read_table(Path(summary["run_dir"]) / "rfm.parquet").equals(pq.read_table(first_dir / "rfm.parquet"))
    assert [s["customers"] for s in summary["segments"]] == [s["customers"] for s in first["segments"]]


def test_xlsx_gives_the_same_run_as_parquet(lines: pd.DataFrame, tmp_path: Path) -> None:
    part = lines.iloc[:4000]
    parquet = tmp_path / "part.parquet"
    part.to_parquet(parquet, index=False)
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(list(part.columns))
    for row in part.itertuples(index=False):
        sheet.append([None if isinstance(v, float) and np.isnan(v) else v for v in row])
    xlsx = tmp_path / "part.xlsx"
    book.save(xlsx)
    runs = tmp_path / "runs"
    from_xlsx = cli_json("run", "--preset", "online-retail", xlsx, "--k", "3", "--runs-dir", runs, "--json")
    from_parquet = cli_json("run", "--preset", "online-retail", parquet, "--k", "3", "--runs-dir", runs, "--json")
    assert from_xlsx["rows"] == from_parquet["rows"] and from_xlsx["rows"]["read"] == 4000
    reason, is_return, as_of = reference_fates(part)
    assert from_xlsx["rows"]["quarantined"] == dict(Counter(reason.dropna()))
    rfm_x = pq.read_table(Path(from_xlsx["run_dir"]) / "rfm.parquet")
    assert rfm_x.equals(pq.read_table(Path(from_parquet["run_dir"]) / "rfm.parquet"))
    assert rfm_x.column("customer_id").to_pylist() == reference_rfm(part, reason, is_return, as_of).index.tolist()


@pytest.mark.slow
def test_choose_k_on_the_real_file_recommends_a_stable_k(data: Path) -> None:
    result = rfmseg.segment(data, preset="online-retail", runs_dir=None)
    out = choose_k(rfm_matrix(result.rfm), result.summary["transform"], k_max=6, resamples=3)
    rec = next(m for m in out["metrics"] if m["k"] == out["recommended_k"])
    assert rec["stability"] >= STABLE_ARI
    assert out["silhouette_sample"] == result.rfm.num_rows  # fewer customers than the 10,000 sample
    assert out["reason"].startswith(f"K={out['recommended_k']}: ") and "stable" in out["reason"]
    assert all(f"{m} prefers K={k}" in out["reason"] for m, k in out["disagreed"].items())


# ------------------------------------------------------------------------------------ data-sufficiency warnings
def test_sufficiency_warnings_name_the_figures(cli, tmp_path: Path) -> None:
    days = pd.date_range("2024-03-01", periods=12, freq="5D")
    orders = pd.DataFrame(
        {
            "customer_id": [f"K{i:02d}" for i in range(12)] * 2,
            "order_id": [f"O{i}" for i in range(24)],
            "order_date": list(days) * 2,
            "amount": [10.0 + i for i in range(11)] + [5000.0] + [12.0] * 12,
        }
    )
    path = tmp_path / "orders.csv"
    orders.to_csv(path, index=False)
    runs = tmp_path / "runs"
    summary = cli("run", path, "--k", "2", "--runs-dir", runs, "--json").json()
    warnings = {w["id"]: w for w in summary["warnings"]}
    assert set(warnings) == {"few_customers", "short_history", "revenue_concentration"}
    assert warnings["few_customers"]["values"] == {"customers": 12, "k": 2, "min_customers": 20}
    assert warnings["short_history"]["values"]["days"] == (days[-1] - days[0]).days == 55
    top = warnings["revenue_concentration"]["values"]
    assert top["customer_id"] == "K11"
    assert top["share_revenue"] == pytest.approx(5012 / orders["amount"].sum())
    manifest = json.loads((Path(summary["run_dir"]) / "manifest.json").read_text())
    assert manifest["warnings"] == summary["warnings"]
    text = cli("run", path, "--k", "2", "--runs-dir", runs).out
    assert sum(line.startswith("warning: ") for line in text.splitlines()) == 3
    assert "only 12 customers for K=2" in text and "span only 55 days" in text and "customer K11 holds" in text


def test_no_warnings_on_the_study(cli, runs_dir: Path) -> None:
    assert cli("demo", "--json", "--runs-dir", runs_dir).json()["warnings"] == []
