"""The Online Retail figures of docs/production.md ("How good the warnings are") come back from the data: the
weekly replay of ``scripts/warning_precision.py`` up to its first week checked gives the published rows."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "warning_precision.json"


@pytest.mark.slow
def test_first_week_of_the_online_retail_replay_is_reproduced(online_retail: Path, tmp_path: Path) -> None:
    script = load_script("warning_precision")
    published = json.loads(RESULTS.read_text(encoding="utf-8"))["online_retail"]
    first = date(2011, 5, 1)  # the 8th week after the run of 2011-03-06: the first the rhythm can be read on
    got = script.retail(online_retail, tmp_path / "runs", end=first)
    assert got["rows"], "no warning flagged anybody on the first week"
    assert got["rows"] == [r for r in published["rows"] if r["as_of"] == first.isoformat()]
    # one week: nothing to train the ceilings' classifier on apart from it
    assert got["ceiling"] == got["ceiling_orders"] == []
    # the pooled ratios are the weeks' counts summed
    for p in script._pooled(published["rows"]):
        rows = [r for r in published["rows"] if (r["warning"], r["segment"]) == (p["warning"], p["segment"])]
        assert p["flagged"] == sum(r["flagged"] for r in rows)
        rf = sum(r["bought_flagged"] for r in rows) / p["flagged"]
        ru = sum(r["bought_unflagged"] for r in rows) / p["unflagged"]
        assert p["ratio"] == round(rf / ru, 2)


def test_the_order_date_ceiling_reads_each_customers_gaps_between_order_days(tmp_path: Path) -> None:
    from datetime import datetime

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rfmseg.runs.history import RunMeta

    script = load_script("warning_precision")
    day = date(2011, 3, 1)
    lines = [  # CustomerID as the raw file has it (a float), InvoiceNo, InvoiceDate
        (1.0, "1", datetime(2011, 3, 1, 9)),
        (1.0, "2", datetime(2011, 3, 1, 15)),  # a second invoice on the same day: one order day
        (1.0, "3", datetime(2011, 3, 3, 10)),
        (1.0, "C4", datetime(2011, 3, 8, 10)),  # a cancellation is not an order
        (1.0, "5", datetime(2011, 3, 10, 10)),
        (1.0, "6", datetime(2011, 3, 12, 10)),  # the as-of day itself: after the history, in the 90 days
        (2.0, "7", datetime(2011, 2, 1, 10)),  # one order day: no gap
        (3.0, "8", datetime(2011, 2, 1, 10)),  # not in the run
        (None, "9", datetime(2011, 3, 2, 10)),
    ]
    orders = pa.table(
        {
            "CustomerID": [x[0] for x in lines],
            "InvoiceNo": [x[1] for x in lines],
            "InvoiceDate": [x[2] for x in lines],
        }
    )
    pq.write_table(orders, tmp_path / "orders.parquet")
    run = tmp_path / "assignments.parquet"
    pq.write_table(pa.table({"customer_id": ["1", "2"], "segment": ["Champions", "Occasional"]}), run)
    as_of = date(2011, 3, 12)
    meta = RunMeta("r", "refresh", as_of, datetime(2026, 1, 1), "m", str(run), ("Champions", "Occasional"))
    con = duckdb.connect()
    script._order_days(con, tmp_path / "orders.parquet")
    rows = {r["customer_id"]: r for r in script.order_features(con, meta).to_pylist()}
    assert set(rows) == {"1", "2"}
    one = rows["1"]  # order days 1, 3 and 10 March: gaps 2 and 7
    assert (one["segment"], one["buys"], one["orders"], one["recency_days"]) == ("Champions", True, 3, 2)
    assert (one["mean_gap"], one["max_gap"], one["age_days"]) == (4.5, 7, (as_of - day).days)
    assert one["sd_gap"] == pytest.approx(3.5355, abs=1e-4)
    assert one["gap_p90"] == pytest.approx(6.5)
    two = rows["2"]
    assert (two["buys"], two["orders"], two["recency_days"], two["max_gap"], two["mean_gap"]) == (
        False,
        1,
        39,
        None,
        None,
    )
