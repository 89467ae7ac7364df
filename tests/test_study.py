"""The reference study: every figure of issue 2 computed by the real pipeline from the shipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pv
import pytest
from sklearn.metrics import adjusted_rand_score

import rfmseg
from rfmseg.datasets import study
from rfmseg.model.choose_k import choose_k
from rfmseg.model.scoring import rfm_matrix


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> rfmseg.RunResult:
    runs = tmp_path_factory.mktemp("runs")
    return rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs)


def seg(result: rfmseg.RunResult, name: str) -> dict:
    return next(s for s in result.summary["segments"] if s["name"] == name)


def test_shipped_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    for path in study.write(tmp_path):
        assert path.read_bytes() == study.path(path.name).read_bytes(), path.name


def test_pipeline_rfm_equals_the_study_rfm_table(result: rfmseg.RunResult) -> None:
    expected = pv.read_csv(study.path(study.RFM_FILE)).sort_by("customer_id")
    got = result.rfm.sort_by("customer_id")
    assert got.column("customer_id").to_pylist() == expected.column("customer_id").to_pylist()
    for col in ("recency_days", "frequency", "monetary"):
        assert got.column(col).to_pylist() == pytest.approx(expected.column(col).to_pylist()), col


def test_groups_recovered_exactly_for_twenty_seeds(result: rfmseg.RunResult) -> None:
    truth = study.truth()
    ids = result.rfm.column("customer_id").to_pylist()
    x = rfm_matrix(result.rfm)
    for seed in range(20):
        model = rfmseg.model.SegmentModel(k=4, n_init=10, random_state=seed).fit(x)
        labels = model.predict(x).segments
        assert adjusted_rand_score([truth[i] for i in ids], labels) == 1.0, seed
        # and the names match the design groups, not only the partition
        assert labels == [truth[i] for i in ids], seed


def test_segment_sizes_revenue_and_shares(result: rfmseg.RunResult) -> None:
    s = result.summary
    expected = {
        "Champions": (30, 218_300, 0.15),
        "Loyal Buyers": (50, 94_900, 0.25),
        "At-Risk": (40, 154_600, 0.20),
        "Occasional": (80, 17_550, 0.40),
    }
    assert {x["name"] for x in s["segments"]} == set(expected)
    for name, (n, revenue, share) in expected.items():
        assert seg(result, name)["customers"] == n
        assert seg(result, name)["revenue"] == revenue
        assert seg(result, name)["share_customers"] == pytest.approx(share)
    assert s["total_revenue"] == 485_350
    assert round(seg(result, "Champions")["share_revenue"] * 100) == 45


def test_segment_means_and_aov(result: rfmseg.RunResult) -> None:
    c, lb, ar, oc = (seg(result, n) for n in ("Champions", "Loyal Buyers", "At-Risk", "Occasional"))
    assert (round(c["mean_recency_days"]), round(c["mean_frequency"]), round(c["mean_monetary"])) == (9, 32, 7277)
    assert (round(lb["mean_recency_days"]), round(lb["mean_frequency"]), round(lb["mean_monetary"])) == (29, 15, 1898)
    assert round(ar["mean_recency_days"]) == 140
    assert (round(oc["mean_frequency"]), round(oc["mean_monetary"])) == (2, 219)
    assert round(ar["aov"]) == 471 and round(lb["aov"]) == 129
    assert round(ar["aov"] / lb["aov"], 1) == 3.7
    assert max(result.summary["segments"], key=lambda x: x["aov"])["name"] == "At-Risk"


def test_ranges_and_the_six_quoted_customers(result: rfmseg.RunResult) -> None:
    rfm = result.rfm
    assert (min(rfm.column("recency_days").to_pylist()), max(rfm.column("recency_days").to_pylist())) == (3, 200)
    assert (min(rfm.column("monetary").to_pylist()), max(rfm.column("monetary").to_pylist())) == (150, 8500)
    rows = {r["customer_id"]: r for r in result.assignments.to_pylist()}
    quoted = {
        "C001": (5, 35, 8500, "Champions"),
        "C038": (25, 15, 2000, "Loyal Buyers"),
        "C087": (130, 8, 3800, "At-Risk"),
        "C133": (75, 1, 150, "Occasional"),
        "C107": (170, 12, 4800, "At-Risk"),
        "C172": (65, 2, 180, "Occasional"),
    }
    for cid, values in quoted.items():
        r = rows[cid]
        assert (r["recency_days"], r["frequency"], r["monetary"], r["segment"]) == values, cid


def test_priorities_actions_and_reasons(result: rfmseg.RunResult) -> None:
    order = [s["name"] for s in result.summary["segments"]]
    assert order[:2] == ["Champions", "At-Risk"]  # protect Champions first, then At-Risk
    assert [s["priority"] for s in result.summary["segments"]] == [1, 2, 3, 4]
    assert "loyalty programme" in seg(result, "Champions")["action"]
    assert "win-back" in seg(result, "At-Risk")["action"].lower()
    assert "cross-sell" in seg(result, "Loyal Buyers")["action"]
    assert "first-repeat-purchase" in seg(result, "Occasional")["action"].lower()
    assert all(s["reason"] for s in result.summary["segments"])


def test_insights_carry_their_numbers(result: rfmseg.RunResult) -> None:
    ins = {i["id"]: i for i in result.summary["insights"]}
    aov = ins["aov_ratio"]["values"]
    assert (aov["segment"], aov["other_segment"], round(aov["ratio"], 1)) == ("At-Risk", "Loyal Buyers", 3.7)
    assert "3.7×" in ins["aov_ratio"]["text"] and "$471" in ins["aov_ratio"]["text"]
    pareto = ins["pareto"]["values"]
    assert pareto["segment"] == "Champions" and round(pareto["share_revenue"], 2) == 0.45
    assert "15%" in ins["pareto"]["text"] and "45%" in ins["pareto"]["text"]
    rec = ins["recoverable_revenue"]["values"]
    assert (rec["segment"], rec["revenue"]) == ("At-Risk", 154_600)
    assert "$154,600" in ins["recoverable_revenue"]["text"]


def test_insights_say_other_true_things_on_other_data() -> None:
    # a base where the loyal segment has the highest AOV: the AOV insight must not claim At-Risk
    rng = np.random.default_rng(3)
    n = 300
    recency = np.concatenate([rng.integers(1, 20, 100), rng.integers(150, 300, 200)])
    frequency = np.concatenate([rng.integers(10, 20, 100), rng.integers(1, 3, 200)])
    monetary = np.concatenate([rng.uniform(5000, 9000, 100), rng.uniform(20, 60, 200)])
    import pyarrow as pa

    table = pa.table(
        {
            "customer_id": [f"X{i}" for i in range(n)],
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
        }
    )
    res = rfmseg.segment(table, k=2, runs_dir=None)
    ins = {i["id"]: i for i in res.summary["insights"]}
    assert "recoverable_revenue" not in ins  # nobody both silent and high-value
    top = max(res.summary["segments"], key=lambda s: s["revenue"])
    assert ins["pareto"]["values"]["segment"] == top["name"]
    assert ins["pareto"]["values"]["share_customers"] == pytest.approx(100 / 300)


def test_choose_k_recommends_four(result: rfmseg.RunResult) -> None:
    out = choose_k(rfm_matrix(result.rfm))
    assert out["recommended_k"] == 4
    assert [m["k"] for m in out["metrics"]] == list(range(2, 11))
    assert "silhouette" in out["reason"] and out["silhouette_sample"] == 200


# ------------------------------------------------------------------------------------------------ sequencing
def test_occasional_is_named_the_long_term_activation_project(result: rfmseg.RunResult, cli, tmp_path: Path) -> None:
    """Occasional (80 of 200 customers) is the largest segment and, with $17,550, the smallest by revenue: the
    priority order says it is the long-term activation project, with those figures counted here from the run's
    own customers."""
    a = result.assignments.to_pandas()
    customers = a.groupby("segment").size()
    revenue = a.groupby("segment")["monetary"].sum()
    assert customers.idxmax() == "Occasional" == revenue.idxmin()
    assert (customers["Occasional"], revenue["Occasional"]) == (80, 17_550)
    assert sorted(customers)[-2] < 80 and sorted(revenue)[1] > 17_550  # no tie either way
    note = (
        f"the long-term activation project: the largest segment ({customers['Occasional']} customers, "
        f"{customers['Occasional'] / len(a):.0%}) and the smallest by revenue (${revenue['Occasional']:,.0f}, "
        f"{revenue['Occasional'] / revenue.sum():.0%})"
    )
    assert note.endswith("(80 customers, 40%) and the smallest by revenue ($17,550, 4%)")
    assert {s["name"]: s.get("sequencing") for s in result.summary["segments"]} == {
        "Champions": None,
        "At-Risk": None,
        "Loyal Buyers": None,
        "Occasional": note,
    }
    r = cli("run", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r.err
    order = r.out.split("Actions, in priority order\n")[1].split("Insights\n")[0].splitlines()
    assert order[-2:] == [
        " 4. Occasional: First-repeat-purchase incentive, product discovery",
        f"    Occasional is {note}.",
    ]
    assert sum("activation" in line for line in order) == 1
