"""The HTTP API on real runs of the study and a real SQLite profile store (Redis once): every endpoint and
every error status, with the exact ``detail`` a client sees."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pandas as pd
import plotly
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from rfmseg.datasets import study
from rfmseg.jobs.publish import publish_run
from rfmseg.jobs.run import RunResult, segment
from rfmseg.runs import list_runs
from rfmseg.service import Settings, create_app
from rfmseg.stores import open_store
from runids import unique_prefix
from servers import free_port

BEFORE_AS_OF = "2024-11-30"


@dataclass(frozen=True)
class StudyRuns:
    root: Path
    runs_dir: Path
    store_url: str
    before: RunResult
    """the study's orders up to 2024-11-30 plus two bad rows (quarantined), as of 2024-11-30"""
    latest: RunResult
    """the study as of 2024-12-31: the latest run, and the one the store serves"""

    def row(self, customer_id: str, run: str = "latest") -> dict:
        a = getattr(self, run).assignments
        return a.filter(pc.equal(a.column("customer_id"), customer_id)).to_pylist()[0]

    def segments_of(self, run: str) -> dict[str, str]:
        a = getattr(self, run).assignments
        return dict(zip(a.column("customer_id").to_pylist(), a.column("segment").to_pylist(), strict=True))


def build_study_runs(root: Path) -> StudyRuns:
    """Two real runs (an earlier cut of the study, then the study) published in turn to a SQLite store."""
    runs_dir = root / "runs"
    orders = pd.read_csv(study.path(study.ORDERS_FILE))
    early = orders[orders["order_date"] <= BEFORE_AS_OF]
    bad = pd.DataFrame(
        [
            {"customer_id": "C001", "order_id": "BAD-1", "order_date": "2024-11-05", "amount": -5.0},
            {"customer_id": "C002", "order_id": "BAD-2", "order_date": "not a date", "amount": 10.0},
        ]
    )
    before = segment(
        pd.concat([early, bad], ignore_index=True), as_of=BEFORE_AS_OF, runs_dir=runs_dir, bad_rows="quarantine"
    )
    latest = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs_dir)
    store_url = f"sqlite:///{root / 'profiles.db'}"
    publish_run(before.run_id, runs_dir, store_url)
    publish_run(latest.run_id, runs_dir, store_url)
    return StudyRuns(root, runs_dir, store_url, before, latest)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    return build_study_runs(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def client(runs: StudyRuns):
    with TestClient(create_app(Settings(runs_dir=runs.runs_dir, store_url=runs.store_url))) as c:
        yield c


def movers(runs: StudyRuns) -> dict[str, tuple[str, str]]:
    a, b = runs.segments_of("before"), runs.segments_of("latest")
    return {cid: (a[cid], b[cid]) for cid in b if cid in a and a[cid] != b[cid]}


# ----------------------------------------------------------------------------------------------- customers
def test_customer_profile_comes_from_the_store_with_its_action(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/customers/C087")
    assert r.status_code == 200
    body = r.json()
    row = runs.row("C087")
    at_risk = next(s for s in runs.latest.summary["segments"] if s["name"] == "At-Risk")
    assert body["segment"] == row["segment"] == "At-Risk"
    assert (body["recency_days"], body["frequency"], body["monetary"]) == (130, 8, 3800.0)
    assert body["distance"] == pytest.approx(row["distance"])
    assert body["aov"] == pytest.approx(3800 / 8)
    assert body["action"] == at_risk["action"]
    assert body["priority"] == at_risk["priority"]
    assert body["run_id"] == runs.latest.run_id
    assert body["as_of"] == "2024-12-31"
    assert body["model_version"] == runs.latest.run_id


def test_previous_segment_and_segment_since_follow_the_published_runs(client: TestClient, runs: StudyRuns) -> None:
    moved = movers(runs)
    assert moved, "the earlier cut of the study should move some customers"
    cid, (was, now) = sorted(moved.items())[0]
    body = client.get(f"/customers/{cid}").json()
    assert (body["segment"], body["previous_segment"], body["segment_since"]) == (now, was, "2024-12-31")
    stayer = client.get("/customers/C001").json()
    assert (stayer["segment"], stayer["previous_segment"], stayer["segment_since"]) == ("Champions", None, BEFORE_AS_OF)


def test_unknown_customer_is_a_404_that_says_so(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/customers/C999")
    assert r.status_code == 404
    assert r.json() == {
        "detail": f"customer 'C999' not found in run {runs.latest.run_id}; check the id, or publish a run that has it "
        "(`rfmseg publish RUN`)"
    }


@pytest.mark.parametrize(("raw", "shown"), [("%01C001", "?C001"), ("%20%20", "  "), ("X" * 129, "X" * 40 + "…")])
def test_bad_customer_id_is_a_422(client: TestClient, raw: str, shown: str) -> None:
    r = client.get(f"/customers/{raw}")
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"customer id '{shown}' is not valid: ids are 1 to 128 characters, not blank, with no control characters"
    )


def test_a_store_with_nothing_published_says_how_to_publish(runs: StudyRuns, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with TestClient(create_app(Settings(runs_dir=runs.runs_dir, store_url=url))) as c:
        for r in (c.get("/customers/C001"), c.post("/customers/lookup", json={"ids": ["C001"]})):
            assert r.status_code == 404
            assert r.json()["detail"] == (
                f"no run is published in the profile store at {url}; publish one with `rfmseg publish latest`"
            )


def test_a_store_that_is_down_is_a_503_naming_the_url(runs: StudyRuns) -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with TestClient(create_app(Settings(runs_dir=runs.runs_dir, store_url=url))) as c:
        r = c.get("/customers/C001")
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert detail.startswith(f"cannot reach the profile store at {url} (")
        assert detail.endswith("; start it or fix the store URL (store)")  # the API names the setting
        h = c.get("/health")
        assert h.status_code == 503
        assert h.json()["status"] == "degraded"
        assert h.json()["store"]["ok"] is False
        assert h.json()["latest_run"]["run_id"] == runs.latest.run_id


def test_lookup_returns_the_found_in_order_and_lists_the_missing(client: TestClient, runs: StudyRuns) -> None:
    r = client.post("/customers/lookup", json={"ids": ["C087", "NOPE", "C001", "C087"]})
    assert r.status_code == 200
    body = r.json()
    assert body["run_id"] == runs.latest.run_id
    assert [c["customer_id"] for c in body["customers"]] == ["C087", "C001"]
    assert [c["segment"] for c in body["customers"]] == ["At-Risk", "Champions"]
    assert body["missing"] == ["NOPE"]
    assert body["customers"][1]["action"] == runs.latest.summary["segments"][0]["action"]


def test_lookup_of_1000_ids_works_and_1001_is_refused(client: TestClient, runs: StudyRuns) -> None:
    ids = [f"C{i:03d}" for i in range(1, 1001)]
    ok = client.post("/customers/lookup", json={"ids": ids})
    assert ok.status_code == 200
    assert len(ok.json()["customers"]) == runs.latest.assignments.num_rows == 200
    assert len(ok.json()["missing"]) == 800
    over = client.post("/customers/lookup", json={"ids": [*ids, "C1001"]})
    assert over.status_code == 413
    assert over.json() == {"detail": "a lookup takes at most 1,000 ids, got 1,001; split them into batches"}


def test_lookup_input_errors(client: TestClient) -> None:
    empty = client.post("/customers/lookup", json={"ids": []})
    assert empty.status_code == 422
    assert empty.json()["detail"] == 'the lookup has no ids; send {"ids": ["C001", ...]}'
    wrong = client.post("/customers/lookup", json={"customers": ["C001"]})
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "body field 'ids': Field required"
    bad = client.post("/customers/lookup", json={"ids": ["C001", "a\nb"]})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("customer id 'a?b' is not valid")


def test_customer_history_across_runs(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/customers/C087/history")
    assert r.status_code == 200
    rows = r.json()["history"]
    assert [h["run_id"] for h in rows] == [runs.before.run_id, runs.latest.run_id]
    assert [h["segment"] for h in rows] == [runs.row("C087", "before")["segment"], "At-Risk"]
    missing = client.get("/customers/C999/history")
    assert missing.status_code == 404
    assert (
        missing.json()["detail"] == f"customer 'C999' is in none of the 2 runs in {runs.runs_dir}; ids look like C001"
    )


# ----------------------------------------------------------------------------------------------- segments
def test_segments_is_the_latest_runs_summary(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/segments")
    assert r.status_code == 200
    assert r.json() == json.loads(json.dumps(runs.latest.summary))
    champions = r.json()["segments"][0]
    assert (champions["name"], champions["customers"], champions["revenue"]) == ("Champions", 30, 218300.0)
    older = client.get("/segments", params={"run": runs.before.run_id})
    assert older.json()["run_id"] == runs.before.run_id


def test_at_risk_over_3000_sorted_by_aov_is_one_call(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/segments/At-Risk/customers", params={"min_monetary": 3000, "sort": "aov", "order": "desc"})
    assert r.status_code == 200
    body = r.json()
    df = runs.latest.assignments.to_pandas()
    want = df[(df.segment == "At-Risk") & (df.monetary >= 3000)].assign(aov=lambda d: d.monetary / d.frequency)
    want = want.sort_values(["aov", "customer_id"], ascending=[False, True])
    assert body["total"] == len(want) == 40
    assert [c["customer_id"] for c in body["customers"]] == want["customer_id"].tolist()
    assert [c["aov"] for c in body["customers"]] == [round(x, 2) for x in want["aov"]]
    assert body["filters"] == {"min_monetary": 3000.0}
    assert r.headers["X-Total-Count"] == "40"


def test_filters_sort_and_pages(client: TestClient, runs: StudyRuns) -> None:
    params = {"min_recency": 5, "max_recency": 12, "min_frequency": 30, "sort": "recency_days", "order": "asc"}
    first = client.get("/segments/champions/customers", params={**params, "page_size": 4}).json()
    second = client.get("/segments/champions/customers", params={**params, "page_size": 4, "page": 2}).json()
    df = runs.latest.assignments.to_pandas()
    want = df[(df.segment == "Champions") & df.recency_days.between(5, 12) & (df.frequency >= 30)]
    want = want.sort_values(["recency_days", "customer_id"])["customer_id"].tolist()
    assert first["segment"] == "Champions"
    assert first["total"] == len(want)
    assert first["pages"] == -(-len(want) // 4)
    assert [c["customer_id"] for c in first["customers"] + second["customers"]] == want[:8]
    beyond = client.get("/segments/Champions/customers", params={**params, "page": 99}).json()
    assert beyond["customers"] == [] and beyond["total"] == len(want)


@pytest.mark.parametrize("how", ["query", "accept"])
def test_segment_customers_as_csv(client: TestClient, runs: StudyRuns, how: str) -> None:
    params = {"min_monetary": 4000, "sort": "monetary"}
    if how == "query":
        r = client.get("/segments/at-risk/customers", params={**params, "format": "csv"})
    else:
        r = client.get("/segments/at-risk/customers", params=params, headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    as_json = client.get("/segments/at-risk/customers", params=params).json()
    assert [x["customer_id"] for x in rows] == [c["customer_id"] for c in as_json["customers"]]
    assert list(rows[0]) == ["customer_id", "recency_days", "frequency", "monetary", "aov", "distance", "margin"]
    assert all(float(x["monetary"]) >= 4000 for x in rows)


def big_orders(n_customers: int = 3_000) -> pd.DataFrame:
    """Orders of ``n_customers`` customers (1-12 orders each over 2024), seeded."""
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 13, n_customers)
    ids = np.repeat([f"B{i:05d}" for i in range(n_customers)], counts)
    days = rng.integers(0, 366, len(ids))
    return pd.DataFrame(
        {
            "customer_id": ids,
            "order_id": [f"O{i}" for i in range(len(ids))],
            "order_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"),
            "amount": np.round(rng.lognormal(4, 1, len(ids)), 2),
        }
    )


@pytest.fixture(scope="module")
def big_run(runs: StudyRuns, tmp_path_factory: pytest.TempPathFactory):
    """A 3,000-customer run with K=2 (both segments far beyond a page of 100 and the 1,000 page limit)."""
    runs_dir = tmp_path_factory.mktemp("big") / "runs"
    result = segment(big_orders(), as_of="2024-12-31", k=2, runs_dir=runs_dir)
    with TestClient(create_app(Settings(runs_dir=runs_dir, store_url=runs.store_url))) as c:
        yield result, c


def test_csv_of_a_segment_is_the_whole_segment_streamed(big_run) -> None:
    result, client = big_run
    a = result.assignments.to_pandas()
    sizes = a.segment.value_counts()
    assert sizes.min() > 1_000
    for name, size in sizes.items():
        with client.stream("GET", f"/segments/{name}/customers", params={"format": "csv", "sort": "recency_days"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/csv")
            assert r.headers["x-csv-scope"] == "segment" and r.headers["x-total-count"] == str(size)
            assert r.headers["content-disposition"].startswith(f'attachment; filename="{result.run_id}-')
            text = b"".join(r.iter_bytes()).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == size
        assert list(rows[0]) == ["customer_id", "recency_days", "frequency", "monetary", "aov", "distance", "margin"]
        assert {x["customer_id"] for x in rows} == set(a.customer_id[a.segment == name])
        want = a[a.segment == name].sort_values(["recency_days", "customer_id"], ascending=[False, True])
        assert [x["customer_id"] for x in rows] == want.customer_id.tolist()
    by_accept = client.get(f"/segments/{sizes.index[0]}/customers", headers={"Accept": "text/csv"})
    assert by_accept.text.count("\n") == sizes.iloc[0] + 1
    json_page = client.get(f"/segments/{sizes.index[0]}/customers").json()
    assert len(json_page["customers"]) == 100 and json_page["pages"] == -(-sizes.iloc[0] // 100)


def test_the_csv_stream_comes_in_chunks_of_record_batches(big_run, monkeypatch: pytest.MonkeyPatch) -> None:
    from rfmseg.service.routes import segments as segments_route

    result, client = big_run
    monkeypatch.setattr(segments_route, "CSV_BATCH_ROWS", 500)
    name = result.assignments.to_pandas().segment.value_counts().index[0]
    size = int(result.assignments.to_pandas().segment.value_counts().iloc[0])
    with client.stream("GET", f"/segments/{name}/customers", params={"format": "csv"}) as r:
        chunks = list(r.iter_raw())
    assert len(chunks) == 1 + -(-size // 500)  # the header row, then one chunk per batch
    assert sum(c.count(b"\n") for c in chunks) == size + 1


@pytest.mark.parametrize(
    "base",
    [
        os.environ.get("RFMSEG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        os.environ.get("RFMSEG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    ],
    ids=["postgres", "redis"],
)
def test_the_whole_segment_csv_with_a_postgres_or_redis_store(big_run, base: str) -> None:
    result, _ = big_run
    url = f"{base}?namespace=apitest_{uuid.uuid4().hex[:10]}"
    publish_run(result.run_id, result.path.parent, url)
    try:
        with TestClient(create_app(Settings(runs_dir=result.path.parent, store_url=url))) as c:
            assert c.get("/health").json()["served_run"] == result.run_id
            for name, size in result.assignments.to_pandas().segment.value_counts().items():
                r = c.get(f"/segments/{name}/customers", params={"format": "csv"})
                assert r.headers["x-csv-scope"] == "segment"
                assert len(list(csv.DictReader(io.StringIO(r.text)))) == size > 1_000
    finally:
        with open_store(url) as store:
            store.drop()


def test_a_paged_csv_is_asked_for_and_says_so(big_run) -> None:
    result, client = big_run
    name = result.assignments.to_pandas().segment.value_counts().index[0]
    whole = client.get(f"/segments/{name}/customers", params={"format": "csv"}).text.splitlines()
    r = client.get(f"/segments/{name}/customers", params={"format": "csv", "page": 3, "page_size": 50})
    assert r.headers["x-csv-scope"] == "page"
    assert (r.headers["x-page"], r.headers["x-page-size"]) == ("3", "50")
    assert r.headers["x-pages"] == str(-(-(len(whole) - 1) // 50))
    lines = r.text.splitlines()
    assert lines[0] == whole[0] and lines[1:] == whole[1 + 100 : 1 + 150]
    only_size = client.get(f"/segments/{name}/customers", params={"format": "csv", "page_size": 7})
    assert only_size.headers["x-csv-scope"] == "page" and len(only_size.text.splitlines()) == 8
    over = client.get(f"/segments/{name}/customers", params={"format": "csv", "page_size": 1001})
    assert over.status_code == 422


def test_segment_customer_errors(client: TestClient, runs: StudyRuns) -> None:
    unknown = client.get("/segments/VIPs/customers")
    assert unknown.status_code == 404
    names = ", ".join(s["name"] for s in runs.latest.summary["segments"])
    assert unknown.json() == {"detail": f"no segment 'VIPs' in run {runs.latest.run_id}; valid names: {names}"}
    big = client.get("/segments/At-Risk/customers", params={"page_size": 1001})
    assert big.status_code == 422
    assert big.json()["detail"] == "page_size 1,001 is over the limit of 1,000; ask for the next page instead"
    swapped = client.get("/segments/At-Risk/customers", params={"min_monetary": 5000, "max_monetary": 100})
    assert swapped.status_code == 422
    assert swapped.json()["detail"] == "min_monetary 5000 is greater than max_monetary 100; swap them"
    sort = client.get("/segments/At-Risk/customers", params={"sort": "name"})
    assert sort.status_code == 422
    assert sort.json()["detail"] == (
        "query parameter 'sort': Input should be 'recency_days', 'frequency', 'monetary', 'aov' or 'distance' "
        "(got 'name')"
    )
    page = client.get("/segments/At-Risk/customers", params={"page": 0})
    assert page.status_code == 422
    assert page.json()["detail"] == "query parameter 'page': Input should be greater than or equal to 1 (got '0')"


# ----------------------------------------------------------------------------------------------- score
def test_score_rfm_rows_reproduces_the_training_labels_and_writes_nothing(client: TestClient, runs: StudyRuns) -> None:
    rfm = runs.latest.rfm.select(["customer_id", "recency_days", "frequency", "monetary"]).to_pylist()
    before_runs = [r.run_id for r in list_runs(runs.runs_dir)]
    r = client.post("/score", json={"rfm": rfm, "cold_start": False})
    assert r.status_code == 200
    body = r.json()
    assert body["model_run"] == runs.latest.run_id
    assert {c["customer_id"]: c["segment"] for c in body["customers"]} == runs.segments_of("latest")
    actions = {s["name"]: s["action"] for s in runs.latest.summary["segments"]}
    assert all(c["action"] == actions[c["segment"]] for c in body["customers"])
    assert [r.run_id for r in list_runs(runs.runs_dir)] == before_runs
    assert client.get("/customers/C087").json()["run_id"] == runs.latest.run_id


def test_score_transactions(client: TestClient, runs: StudyRuns) -> None:
    orders = pd.read_csv(study.path(study.ORDERS_FILE))
    c087 = orders[orders.customer_id == "C087"].to_dict("records")
    r = client.post("/score", json={"transactions": c087, "as_of": "2024-12-31", "model": runs.before.run_id})
    assert r.status_code == 200
    body = r.json()
    assert body["model_run"] == runs.before.run_id
    (c,) = body["customers"]
    assert (c["customer_id"], c["recency_days"], c["frequency"], c["monetary"]) == ("C087", 130, 8, 3800.0)
    assert c["segment"] == "At-Risk"
    assert c["segment_reason"] == "nearest_centroid"


def test_score_errors(client: TestClient, runs: StudyRuns) -> None:
    row = {"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}
    neither = client.post("/score", json={})
    assert neither.status_code == 422
    assert neither.json()["detail"] == (
        "the request body: give either 'rfm' (rows of customer_id, recency_days, frequency, monetary) or "
        "'transactions' (rows of customer_id, order_id, order_date, amount), not both or none"
    )
    negative = client.post("/score", json={"rfm": [{**row, "recency_days": -1}]})
    assert negative.status_code == 422
    assert negative.json()["detail"] == "body field 'rfm.0.recency_days': Input should be greater than or equal to 0"
    as_of = client.post("/score", json={"rfm": [row], "as_of": "2024-12-31"})
    assert as_of.status_code == 422
    assert as_of.json()["detail"] == "as_of applies to transactions only; RFM rows already carry recency_days"
    empty = client.post("/score", json={"rfm": []})
    assert empty.status_code == 422
    assert empty.json()["detail"] == "nothing to score: the list of rows is empty"
    model = client.post("/score", json={"rfm": [row], "model": "nope"})
    assert model.status_code == 404
    assert model.json()["detail"].startswith(f"no run 'nope' in {runs.runs_dir}; recent runs: ")
    bad_amount = client.post(
        "/score",
        json={"transactions": [{"customer_id": "N1", "order_id": "1", "order_date": "2024-12-01", "amount": -3}]},
    )
    assert bad_amount.status_code == 400
    assert "amount" in bad_amount.json()["detail"]


def test_score_row_limit(runs: StudyRuns) -> None:
    settings = Settings(runs_dir=runs.runs_dir, store_url=runs.store_url, max_score_rows=2)
    with TestClient(create_app(settings)) as c:
        rows = [{"customer_id": f"N{i}", "recency_days": 5, "frequency": 3, "monetary": 90} for i in range(3)]
        r = c.post("/score", json={"rfm": rows})
        assert r.status_code == 413
        assert r.json() == {"detail": "one call scores at most 2 rows, got 3; split them into batches"}


# ----------------------------------------------------------------------------------------------- runs
def test_runs_and_one_run(client: TestClient, runs: StudyRuns) -> None:
    listing = client.get("/runs").json()
    assert [r["run_id"] for r in listing["runs"]] == [runs.before.run_id, runs.latest.run_id]
    assert listing["latest"] == runs.latest.run_id
    assert all("path" not in r for r in listing["runs"])
    one = client.get(f"/runs/{unique_prefix(runs.before.run_id, runs.runs_dir)}")
    assert one.status_code == 200
    body = one.json()
    assert body["run_id"] == runs.before.run_id
    assert body["manifest"]["rows"]["quarantined"] == {"negative_amount": 1, "bad_date": 1}
    assert "report.html" in body["files"]
    missing = client.get("/runs/nope")
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        f"no run 'nope' in {runs.runs_dir}; recent runs: {runs.before.run_id}, {runs.latest.run_id} "
        "(see `rfmseg runs list`)"
    )


def test_run_view_is_what_the_explorer_draws(client: TestClient, runs: StudyRuns) -> None:
    view = client.get("/runs/latest/view").json()
    assert view["run"]["run_id"] == runs.latest.run_id
    assert view["summary"]["segments"][0]["revenue"] == 218300.0
    assert (view["scatter"]["shown"], view["scatter"]["sampled"]) == (200, False)
    assert view["scatter"]["note"] == "showing all 200 customers"
    assert view["choose_k"]["recommended_k"] == 4
    assert view["transitions"]["from_run"] == runs.before.run_id
    assert view["transitions"]["moved"] == len(movers(runs))
    assert view["quality"] == {"read": 2200, "used": 2200, "quarantined": {}, "quarantined_total": 0}
    before = client.get(f"/runs/{runs.before.run_id}/view").json()
    assert before["quality"]["quarantined"] == {"bad_date": 1, "negative_amount": 1}
    # the K choice is computed when a run is first shown, and kept in its folder
    assert "choose_k.json" in client.get(f"/runs/{runs.before.run_id}").json()["files"]
    assert before["transitions"] is None


def test_run_report_is_served(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/runs/latest/report")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    from rfmseg.report import inline_assets

    # the run folder's page, standing alone: the plotly.js its registry shares is put inline
    assert r.text == inline_assets((runs.latest.path / "report.html").read_text(encoding="utf-8"))
    assert "<script src=" not in r.text


def test_transitions_between_two_runs(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/transitions", params={"from": runs.before.run_id, "to": runs.latest.run_id})
    assert r.status_code == 200
    t = r.json()
    assert (t["from_run"], t["to_run"]) == (runs.before.run_id, runs.latest.run_id)
    moved = movers(runs)
    assert t["totals"]["moved"] == len(moved)
    assert sorted(m["customer_id"] for m in t["moves"]) == sorted(moved)
    assert client.get("/transitions").json()["customers"] == t["customers"]  # default: the last two runs
    # the explorer's Sankey shows the same flows
    links = client.get("/runs/latest/view").json()["transitions"]["links"]
    for link in links:
        i, j = t["rows"].index(link["source"]), t["columns"].index(link["target"])
        assert t["customers"][i][j] == link["customers"]


def test_transition_errors_name_the_query_parameters(client: TestClient, runs: StudyRuns) -> None:
    first = client.get("/transitions", params={"to": runs.before.run_id})
    assert first.status_code == 404
    assert first.json()["detail"] == (f"run {runs.before.run_id} has no earlier run to compare with; give from RUN")
    seg = client.get("/transitions", params={"from_segment": "VIPs"})
    assert seg.status_code == 400
    assert seg.json()["detail"].startswith("from_segment 'VIPs' is not a segment of these runs; use one of ")


def test_warnings(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/warnings")
    assert r.status_code == 200
    body = r.json()
    assert body["run_id"] == runs.latest.run_id
    changed = next(w for w in body["warnings"] if w["id"] == "segment_changed")
    assert changed["count"] == len(movers(runs))
    bad = client.get("/warnings", params={"recency_jump": -1})
    assert bad.status_code == 400
    assert bad.json()["detail"] == "recency_jump -1 should be >= 0 days"
    bad = client.get("/warnings", params={"period": 0})  # history's period_days, named by its query field
    assert bad.status_code == 400
    assert bad.json()["detail"] == "period 0 should be >= 1 day"


def test_warnings_paged(client: TestClient, runs: StudyRuns) -> None:
    everyone = {w["id"]: w for w in client.get("/warnings").json()["warnings"]}
    changed = everyone["segment_changed"]
    assert changed["count"] >= 3
    page = {w["id"]: w for w in client.get("/warnings", params={"limit": 2, "offset": 1}).json()["warnings"]}
    assert page["segment_changed"]["count"] == changed["count"]  # the count is every customer, the list a page
    assert page["segment_changed"]["customers"] == changed["customers"][1:3]
    assert all(len(w["customers"]) <= 2 for w in page.values())
    rest = client.get("/warnings", params={"offset": 2}).json()["warnings"]
    assert next(w for w in rest if w["id"] == "segment_changed")["customers"] == changed["customers"][2:]
    none = client.get("/warnings", params={"limit": 0}).json()["warnings"]
    assert all(w["customers"] == [] for w in none) and any(w["count"] for w in none)
    bad = client.get("/warnings", params={"limit": -1})
    assert bad.status_code == 422


def test_health(client: TestClient, runs: StudyRuns) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["store"]["backend"] == "sqlite"
    assert body["store"]["customers"] == 200
    assert body["served_run"] == runs.latest.run_id
    assert body["latest_run"]["run_id"] == runs.latest.run_id
    assert body["latest_run"]["as_of"] == "2024-12-31"
    assert 0 <= body["latest_run"]["age_seconds"] < 3600


# ----------------------------------------------------------------------------------------------- HTTP, docs, explorer
def test_openapi_and_offline_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/customers/{customer_id}",
        "/customers/lookup",
        "/segments",
        "/segments/{name}/customers",
        "/score",
        "/runs",
        "/runs/{run_id}",
        "/transitions",
        "/warnings",
        "/health",
        "/changes",
    ):
        assert path in schema["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "docs-static/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200


def test_every_json_route_declares_its_payload_and_real_responses_match_it(client: TestClient, runs: StudyRuns) -> None:
    """Each JSON route's 200 response in /openapi.json is a declared model, and a real answer of every one of
    them validates against that published schema (jsonschema, with the schema's own components)."""
    spec = client.get("/openapi.json").json()
    rfm = [{"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}]
    calls = {
        ("get", "/customers/{customer_id}"): lambda: client.get("/customers/C087"),
        ("get", "/customers"): lambda: client.get("/customers", params={"id": "C087"}),
        ("post", "/customers/lookup"): lambda: client.post("/customers/lookup", json={"ids": ["C001", "C999"]}),
        ("get", "/customers/{customer_id}/history"): lambda: client.get("/customers/C087/history"),
        ("get", "/segments"): lambda: client.get("/segments"),
        ("get", "/segments/{name}/customers"): lambda: client.get("/segments/at-risk/customers?min_monetary=3000"),
        ("post", "/score"): lambda: client.post("/score", json={"rfm": rfm}),
        ("get", "/runs"): lambda: client.get("/runs"),
        ("get", "/runs/{run_id}"): lambda: client.get("/runs/latest"),
        ("get", "/runs/{run_id}/view"): lambda: client.get("/runs/latest/view"),
        ("get", "/transitions"): lambda: client.get("/transitions"),
        ("get", "/warnings"): lambda: client.get("/warnings?recency_jump=0"),
        ("get", "/health"): lambda: client.get("/health"),
        ("get", "/changes"): lambda: client.get("/changes?limit=5"),
    }
    rows = {
        "/customers/lookup": "customers",
        "/customers/{customer_id}/history": "history",
        "/segments": "segments",
        "/segments/{name}/customers": "customers",
        "/score": "customers",
        "/runs": "runs",
        "/transitions": "moves",
        "/warnings": "warnings",
        "/changes": "items",
    }
    json_routes = {
        (method, path)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "application/json" in op["responses"].get("200", {}).get("content", {})
    }
    campaign_routes = {(m, path) for m, path in json_routes if path.startswith("/campaigns")}
    assert len(campaign_routes) == 4  # checked on a registry with a measured campaign: tests/test_campaigns.py
    assert json_routes - campaign_routes == set(calls)
    for (method, path), call in calls.items():
        schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("$ref", "").startswith("#/components/schemas/"), (method, path, schema)
        r = call()
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
        if path in rows:
            assert body[rows[path]], path  # the rows themselves were checked, not an empty list
    report = spec["paths"]["/runs/{run_id}/report"]["get"]["responses"]["200"]["content"]
    assert list(report) == ["text/html"]
    errors = [
        ("/customers/{customer_id}", client.get("/customers/C999")),
        ("/segments/{name}/customers", client.get("/segments/at-risk/customers?sort=name")),
        ("/score", client.post("/score", json={})),
    ]
    for path, r in errors:
        method = "post" if path == "/score" else "get"
        assert r.status_code in (404, 422), r.text
        schema = spec["paths"][path][method]["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorPublic"}
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(r.json())


def test_explorer_page_and_plotly_come_from_this_server(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<script src="static/plotly.min.js">' in page.text and "http" not in page.text
    js = client.get("/static/plotly.min.js")
    assert js.content == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert client.get("/static/explorer.js").headers["content-type"].startswith("text/javascript")
    missing = client.get("/static/secrets.txt")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no static file 'secrets.txt'"}


def test_unknown_endpoint_and_wrong_method(client: TestClient) -> None:
    r = client.get("/segmnts")
    assert r.status_code == 404
    assert r.json() == {"detail": "no endpoint /segmnts; see /docs for the API"}
    m = client.delete("/segments")
    assert m.status_code == 405
    assert m.json() == {"detail": "Method Not Allowed"}


def test_unexpected_errors_are_a_500_that_leaks_nothing(runs: StudyRuns, tmp_path: Path) -> None:
    broken = tmp_path / "runs"
    shutil.copytree(runs.runs_dir / runs.latest.run_id, broken / runs.latest.run_id)
    (broken / runs.latest.run_id / "summary.json").write_text('"text"', encoding="utf-8")  # JSON, not a summary
    with TestClient(
        create_app(Settings(runs_dir=broken, store_url=runs.store_url)), raise_server_exceptions=False
    ) as c:
        r = c.get("/segments")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error while handling GET /segments; the server log has details"}


# ----------------------------------------------------------------------------------------------- security
def test_api_key_is_required_on_every_endpoint_when_set(runs: StudyRuns) -> None:
    settings = Settings(runs_dir=runs.runs_dir, store_url=runs.store_url, api_key="s3cret-key")
    with TestClient(create_app(settings)) as c:
        for path in ("/customers/C001", "/segments", "/runs", "/health", "/openapi.json", "/docs", "/nope"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json() == {
                "detail": "this API needs a key: send the header 'Authorization: Bearer <key>' (RFMSEG_API_KEY)"
            }
            assert r.headers["www-authenticate"] == 'Bearer realm="rfmseg"'
        wrong = c.get("/segments", headers={"Authorization": "Bearer s3cret-kez"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == (
            "the API key is not valid; send the key set in RFMSEG_API_KEY as 'Authorization: Bearer <key>'"
        )
        assert c.get("/segments", headers={"Authorization": "Basic s3cret-key"}).status_code == 401
        good = {"Authorization": "Bearer s3cret-key"}
        assert c.get("/customers/C087", headers=good).json()["segment"] == "At-Risk"
        assert c.post("/customers/lookup", json={"ids": ["C001"]}).status_code == 401
        assert c.post("/customers/lookup", json={"ids": ["C001"]}, headers=good).status_code == 200
        schema = c.get("/openapi.json", headers=good).json()
        assert schema["security"] == [{"bearer": []}]
        # the explorer's page holds no data: it loads, then asks for the key
        assert c.get("/").status_code == 200
        assert c.get("/static/explorer.js").status_code == 200


def test_serve_refuses_a_public_address_without_a_key(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RFMSEG_API_KEY", raising=False)
    result = cli("serve", "--host", "0.0.0.0")
    assert result.code == 2
    assert result.err.strip() == (
        "error: refusing to serve on 0.0.0.0 without an API key: set RFMSEG_API_KEY (clients then send "
        "'Authorization: Bearer <key>') or keep the default --host 127.0.0.1"
    )


def test_rfmseg_serve_runs_uvicorn_with_the_key(runs: StudyRuns) -> None:
    port = free_port()
    env = {**os.environ, "RFMSEG_API_KEY": "k-123"}
    env.pop("RFMSEG_STORE", None)
    cmd = [
        sys.executable,
        "-m",
        "rfmseg",
        "serve",
        "--port",
        str(port),
        "--runs-dir",
        str(runs.runs_dir),
        "--store",
        runs.store_url,
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{base}/health", headers={"Authorization": "Bearer k-123"}, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "rfmseg serve did not start"
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json()["served_run"] == runs.latest.run_id
        assert httpx.get(f"{base}/customers/C087").status_code == 401
        ok = httpx.get(f"{base}/customers/C087", headers={"Authorization": "Bearer k-123"})
        assert ok.json()["segment"] == "At-Risk"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ----------------------------------------------------------------------------------------------- redis
@pytest.mark.services
def test_the_api_over_a_redis_store(runs: StudyRuns) -> None:
    namespace = f"apitest_{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:6379/0?namespace={namespace}"
    publish_run(runs.latest.run_id, runs.runs_dir, url)
    try:
        with TestClient(create_app(Settings(runs_dir=runs.runs_dir, store_url=url))) as c:
            one = c.get("/customers/C087").json()
            assert (one["segment"], one["run_id"], one["as_of"]) == ("At-Risk", runs.latest.run_id, "2024-12-31")
            assert one["previous_segment"] is None and one["segment_since"] == "2024-12-31"
            many = c.post("/customers/lookup", json={"ids": ["C001", "C999"]}).json()
            assert [x["segment"] for x in many["customers"]] == ["Champions"] and many["missing"] == ["C999"]
            missing = c.get("/customers/C999")
            assert missing.status_code == 404
            health = c.get("/health").json()
            assert (health["store"]["backend"], health["served_run"]) == ("redis", runs.latest.run_id)
    finally:
        with open_store(url) as store:
            store.drop()


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"RFMSEG_RUNS_DIR": str(tmp_path), "RFMSEG_API_KEY": "abc"}
    s = Settings.from_env(env)
    assert (s.runs_dir, s.api_key, s.store) == (tmp_path, "abc", f"sqlite:///{tmp_path / 'profiles.db'}")
    assert "abc" not in repr(s)
    assert Settings.from_env({"RFMSEG_STORE": "redis://h:6379/0"}, runs_dir=tmp_path).store == "redis://h:6379/0"


def test_a_core_parameter_error_names_the_json_field(runs: StudyRuns) -> None:
    import numpy as np

    from rfmseg.model.segment_model import SegmentModel

    app = create_app(Settings(runs_dir=runs.runs_dir, store_url=runs.store_url))

    @app.get("/fit-tiny")  # a route that fits a model on 3 customers: the core's own error reaches the handler
    def fit_tiny(k: int) -> dict:
        SegmentModel(k=k).fit(np.array([[1.0, 1, 1], [2, 2, 2], [3, 3, 3]]))
        return {}

    with TestClient(app) as c:
        r = c.get("/fit-tiny", params={"k": 4})
    assert r.status_code == 400
    assert r.json() == {"detail": "k 4 is larger than the number of customers (3); use a smaller k"}
