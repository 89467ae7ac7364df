"""Production life: the run registry, stored models, assign, cold start, refresh, retrain with stable names,
publishing (and recovering from a store that is down). Real files, real DuckDB, real stores."""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rfmseg import jobs as life
from rfmseg import settings
from rfmseg.datasets import study
from rfmseg.errors import ModelFormatError, ParameterError
from rfmseg.jobs.run import segment
from rfmseg.model import SegmentModel
from rfmseg.model.naming import carry_names
from rfmseg.model.scoring import rfm_matrix
from rfmseg.runs import list_runs
from rfmseg.stores import open_store

PG_URL = os.environ.get("RFMSEG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RFMSEG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_PORT = 1  # nothing listens on port 1 on the loopback: connections are refused at once


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A registry with one run of the study (min-max, K=4), shared read-only by the tests (they copy it)."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    result = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs)
    return runs, result.run_id


@pytest.fixture
def runs(trained: tuple[Path, str], tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    shutil.copytree(trained[0], out)
    return out


def labels(run_dir: Path) -> dict[str, str]:
    t = pq.read_table(run_dir / "assignments.parquet", columns=["customer_id", "segment"]).to_pylist()
    return {r["customer_id"]: r["segment"] for r in t}


def write_orders(path: Path, rows: list[tuple[str, str, date, float]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "order_id", "order_date", "amount"])
        for r in rows:
            w.writerow([r[0], r[1], r[2].isoformat(), r[3]])
    return path


def study_plus(path: Path, extra: list[tuple[str, str, date, float]]) -> Path:
    """The study's orders with ``extra`` orders appended."""
    with study.path(study.ORDERS_FILE).open() as f:
        rows = [
            (r["customer_id"], r["order_id"], date.fromisoformat(r["order_date"]), float(r["amount"]))
            for r in csv.DictReader(f)
        ]
    return write_orders(path, rows + extra)


# --------------------------------------------------------------------------------------------- registry + model
def test_model_json_holds_everything_needed_to_score(trained: tuple[Path, str]) -> None:
    runs, run_id = trained
    d = json.loads((runs / run_id / "model.json").read_text())
    manifest = json.loads((runs / run_id / "manifest.json").read_text())
    for key in ("format_version", "transform", "centroids_scaled", "centroids_raw", "names", "params"):
        assert key in d
    prov = d["provenance"]
    assert prov["model_version"] == run_id == manifest["model_version"]
    assert prov["input_sha256"] == manifest["input"]["sha256"] and len(prov["input_sha256"]) == 64
    assert prov["data_sha256"] == manifest["data_sha256"]
    assert prov["versions"]["scikit-learn"] and prov["versions"]["duckdb"]
    assert d["params"]["k"] == 4 and d["params"]["random_state"] == 42
    # the stored model alone scores the training data back to the training labels
    model = SegmentModel.from_dict(d)
    rfm = pq.read_table(runs / run_id / "rfm.parquet")
    assert (
        model.predict(rfm_matrix(rfm)).segments
        == pq.read_table(runs / run_id / "assignments.parquet")["segment"].to_pylist()
    )


def test_a_model_of_another_format_version_is_refused_with_what_to_do(runs: Path, cli) -> None:
    run_id = list_runs(runs)[0].run_id
    path = runs / run_id / "model.json"
    d = json.loads(path.read_text())
    d["format_version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(ModelFormatError, match="format version 99"):
        life.load_model(run_id, runs)
    r = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs)
    assert r.code == 2
    assert r.err.count("\n") == 1 and "format version 99" in r.err and "retrain" in r.err
    path.write_text("{not json")
    r = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs)
    assert r.code == 2 and "not valid JSON" in r.err


def test_the_fix_a_model_of_another_format_version_names_works(runs: Path, cli) -> None:
    """The refusal names a way out that works: `rfmseg retrain FILE` alone would load the same model to carry
    its names over and be refused the same way; `--no-carry-names` (or `rfmseg run FILE`) trains a new model,
    which the next refresh then reads."""
    run_id = list_runs(runs)[0].run_id
    path = runs / run_id / "model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 99}))
    orders = study.path(study.ORDERS_FILE)
    refused = (
        f"error: {runs / run_id / 'model.json'}: model format version 99 cannot be read by this rfmseg (reads version "
        "1); train a new model without it (`rfmseg retrain FILE --no-carry-names`, or `rfmseg run FILE`) or install "
        "the rfmseg that wrote it\n"
    )
    for command in ("refresh", "retrain"):
        r = cli(command, orders, "--as-of", "2025-01-07", "--runs-dir", runs, "--no-publish")
        assert (r.code, r.err) == (2, refused), command
    assert len(list_runs(runs)) == 1  # nothing written

    r = cli("retrain", orders, "--as-of", "2025-01-07", "--no-carry-names", "--runs-dir", runs, "--no-publish")
    assert r.code == 0, r.err
    retrained = list_runs(runs)[-1]
    assert retrained.run_id != run_id and retrained.manifest["kind"] == "retrain"
    r = cli("refresh", orders, "--as-of", "2025-01-08", "--runs-dir", runs, "--no-publish")
    assert r.code == 0, r.err
    assert f"Model {retrained.run_id}" in r.out  # the new model, of the format this rfmseg reads

    fresh = runs.parent / "fresh"  # the other way named: a new run, then a refresh from its model
    shutil.copytree(runs / run_id, fresh / run_id)
    r = cli("run", orders, "--runs-dir", fresh, "--no-publish")
    assert r.code == 0, r.err
    r = cli("refresh", orders, "--as-of", "2025-01-08", "--runs-dir", fresh, "--no-publish")
    assert r.code == 0, r.err


def test_runs_list_show_latest(runs: Path, cli) -> None:
    first = list_runs(runs)[0].run_id
    r = cli("refresh", study.path(study.ORDERS_FILE), "--as-of", "2025-01-07", "--runs-dir", runs, "--no-publish")
    assert r.code == 0, r.err
    r = cli("runs", "list", "--runs-dir", runs, "--json")
    rows = r.json()
    assert [x["kind"] for x in rows] == ["run", "refresh"]
    assert rows[0]["run_id"] == first and rows[0]["as_of"] == study.AS_OF.isoformat() and rows[0]["k"] == 4
    assert rows[1]["as_of"] == "2025-01-07" and rows[1]["model_version"] == first
    assert rows[1]["customers"] == rows[0]["customers"] == 200
    assert rows[0]["input"].endswith("study_orders.csv")
    table = cli("runs", "list", "--runs-dir", runs)
    assert table.code == 0 and "refresh" in table.out and first in table.out
    latest = cli("runs", "latest", "--runs-dir", runs)
    assert latest.out.strip() == rows[1]["run_id"]
    assert cli("runs", "latest", "--runs-dir", runs, "--kind", "run").out.strip() == first
    none = cli("runs", "latest", "--runs-dir", runs, "--kind", "retrain")
    assert none.code == 2 and "no retrain runs" in none.err
    show = cli("runs", "show", rows[1]["run_id"], "--runs-dir", runs, "--json").json()
    assert show["kind"] == "refresh" and show["manifest"]["source_run"] == first
    assert show["model"]["provenance"]["model_version"] == first
    assert {"manifest.json", "model.json", "assignments.parquet"} <= set(show["files"])
    text = cli("runs", "show", rows[1]["run_id"], "--runs-dir", runs)
    assert text.code == 0 and f"Model {first}" in text.out
    missing = cli("runs", "show", "nope", "--runs-dir", runs)
    assert missing.code == 2 and "no run 'nope'" in missing.err


# --------------------------------------------------------------------------------------------- assign
def test_assigning_the_training_data_reproduces_the_training_labels(trained: tuple[Path, str], cli) -> None:
    runs, run_id = trained
    r = cli(
        "assign", study.path(study.ORDERS_FILE), "--model", run_id, "--as-of", study.AS_OF.isoformat(),
        "--cold-start-orders", "0", "--cold-start-days", "0", "--runs-dir", runs, "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    data = r.json()
    trained_rows = {x["customer_id"]: x for x in pq.read_table(runs / run_id / "assignments.parquet").to_pylist()}
    got = {x["customer_id"]: x for x in data["assignments"]}
    assert got.keys() == trained_rows.keys()
    for cid, row in got.items():
        assert row["segment"] == trained_rows[cid]["segment"]
        assert row["distance"] == trained_rows[cid]["distance"] and row["margin"] == trained_rows[cid]["margin"]
        assert row["segment_reason"] == "nearest_centroid"
    assert data["model_version"] == run_id and data["cold_start"] == 0
    # the study's one-order customers are Occasional: the default cold-start rule changes only the reason
    default = cli("assign", study.path(study.ORDERS_FILE), "--model", "latest", "--runs-dir", runs, "--json").json()
    one_order = {x["customer_id"] for x in default["assignments"] if x["frequency"] < 2}
    cold = {x["customer_id"] for x in default["assignments"] if x["segment_reason"] == "cold_start"}
    assert cold == one_order and default["cold_start"] == len(one_order) > 0
    assert {x["customer_id"]: x["segment"] for x in default["assignments"]} == labels(runs / run_id)


@pytest.mark.parametrize("transform", ["log-minmax", "rank"])
def test_assign_reproduces_labels_of_other_transforms_from_an_rfm_table(tmp_path: Path, transform: str) -> None:
    runs = tmp_path / "runs"
    result = segment(study.path(study.RFM_FILE), transform=transform, runs_dir=runs)
    got = life.assign(study.path(study.RFM_FILE), model=result.run_id, runs_dir=runs, cold_start=life.OFF)
    trained = result.assignments.to_pylist()
    scored = got.assignments.to_pylist()
    assert [x["customer_id"] for x in scored] == [x["customer_id"] for x in trained]
    assert [x["segment"] for x in scored] == [x["segment"] for x in trained]
    assert [x["distance"] for x in scored] == [x["distance"] for x in trained]
    assert got.model.model.transform == transform


def test_assign_writes_parquet_and_csv_and_refuses_other_suffixes(
    trained: tuple[Path, str], tmp_path: Path, cli
) -> None:
    runs, run_id = trained
    for name in ("out.parquet", "out.csv"):
        out = tmp_path / name
        r = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs, "-o", out)
        assert r.code == 0, r.err
        table = pq.read_table(out) if name.endswith("parquet") else pacsv.read_csv(out)
        assert table.num_rows == 200
        assert {"customer_id", "segment", "segment_reason", "distance", "margin"} <= set(table.column_names)
        assert "Scored 200 customers" in r.out and f"written to {out}" in r.out
    bad = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs, "-o", tmp_path / "o.txt")
    assert bad.code == 2 and not (tmp_path / "o.txt").exists()
    assert bad.err == (  # export's rule (rfmseg.io.outputs.format_of), with the formats assign writes
        f"error: {tmp_path / 'o.txt'}: .txt is not a format this writes (csv, parquet); end the name of --output in "
        ".csv, .parquet (or .pq)\n"
    )


def test_cold_start_thin_histories_then_scored_once_the_history_is_there(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    runs, run_id = trained
    as_of = study.AS_OF
    d = lambda n: as_of - timedelta(days=n)  # noqa: E731
    rows = [
        ("ONE", "o1", d(100), 80.0),  # one order: too few
        ("YOUNG", "y1", d(10), 2000.0),  # three big orders, but the first only 10 days ago
        ("YOUNG", "y2", d(5), 2500.0),
        ("YOUNG", "y3", d(2), 2600.0),
        ("SETTLED", "s1", d(60), 2000.0),  # three orders over two months: scored
        ("SETTLED", "s2", d(30), 2500.0),
        ("SETTLED", "s3", d(3), 2600.0),
    ]
    src = write_orders(tmp_path / "new.csv", rows)
    got = life.assign(src, model=run_id, runs_dir=runs, as_of=as_of)
    by = {r["customer_id"]: r for r in got.assignments.to_pylist()}
    assert by["ONE"]["segment_reason"] == by["YOUNG"]["segment_reason"] == "cold_start"
    assert by["ONE"]["segment"] == by["YOUNG"]["segment"] == "Occasional"
    assert by["SETTLED"]["segment_reason"] == "nearest_centroid"
    assert by["SETTLED"]["segment"] == by["SETTLED"]["model_segment"]
    # YOUNG's own history puts it elsewhere: only the cold-start rule holds it back
    assert by["YOUNG"]["model_segment"] != "Occasional"
    # the distance given is to the centroid of the segment given
    model = got.model.model
    x = np.array([[by["YOUNG"]["recency_days"], by["YOUNG"]["frequency"], by["YOUNG"]["monetary"]]], float)
    assert by["YOUNG"]["distance"] == pytest.approx(model.distances(x)[0, model.names_.index("Occasional")])
    # 40 days later, one more order: YOUNG has its history and is scored normally
    later = write_orders(tmp_path / "later.csv", [*rows, ("YOUNG", "y4", as_of + timedelta(days=25), 900.0)])
    again = life.assign(later, model=run_id, runs_dir=runs, as_of=as_of + timedelta(days=30))
    young = next(r for r in again.assignments.to_pylist() if r["customer_id"] == "YOUNG")
    assert young["segment_reason"] == "nearest_centroid" and young["segment"] == young["model_segment"]
    # the rule's parameters are options; a segment name the model lacks is used and warned about
    custom = life.assign(
        src, model=run_id, runs_dir=runs, as_of=as_of, cold_start=life.ColdStart(1, 30, "New Customers")
    )
    by = {r["customer_id"]: r for r in custom.assignments.to_pylist()}
    assert by["ONE"]["segment_reason"] == "nearest_centroid"  # 1 order is enough with --cold-start-orders 1
    assert by["YOUNG"]["segment"] == "New Customers"
    assert custom.warnings and "not one of this model's segments" in custom.warnings[0]


def test_cold_start_options_are_checked(trained: tuple[Path, str], cli) -> None:
    runs, run_id = trained
    r = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs, "--cold-start-segment", " ")
    assert r.code == 2 and "--cold-start-segment" in r.err
    r = cli("assign", study.path(study.ORDERS_FILE), "--model", run_id, "--runs-dir", runs, "--cold-start-days", "-1")
    assert r.code == 2 and "--cold-start-days" in r.err


# --------------------------------------------------------------------------------------------- refresh
def test_refresh_writes_a_run_from_the_current_model_and_is_idempotent(runs: Path, tmp_path: Path, cli) -> None:
    source = list_runs(runs)[0]
    later = study_plus(tmp_path / "orders.csv", [("C090", "late-1", date(2025, 1, 5), 120.0)])
    args = ("refresh", later, "--as-of", "2025-01-07", "--runs-dir", runs)
    r = cli(*args)
    assert r.code == 0, r.err
    assert "(refresh) written to" in r.out and "Published" in r.out
    first = list_runs(runs)[-1]
    m = first.manifest
    assert m["kind"] == "refresh" and m["model_version"] == source.run_id and m["source_run"] == source.run_id
    # the model is the source's, byte for byte
    assert (first.path / "model.json").read_text() == (source.path / "model.json").read_text()
    # RFM recomputed as of the new date: 7 more days of recency, except for C090's new order
    before = {x["customer_id"]: x for x in source.table("assignments").to_pylist()}
    after = {x["customer_id"]: x for x in first.table("assignments").to_pylist()}
    assert after["C001"]["recency_days"] == before["C001"]["recency_days"] + 7
    assert after["C090"]["recency_days"] == 2 and after["C090"]["frequency"] == before["C090"]["frequency"] + 1
    with open_store(settings.store_url(runs)) as store:
        assert store.current_run() == first.run_id and store.count() == 200
        assert store.get("C001")["model_version"] == source.run_id
    # the same job again: the run already written is found, nothing new, the store left as it is
    n = len(list_runs(runs))
    again = cli(*args)
    assert again.code == 0, again.err
    assert len(list_runs(runs)) == n
    assert f"Already done: run {first.run_id}" in again.out and "already serves" in again.out
    data = cli(*args, "--json").json()
    assert data["status"] == "existing" and data["run_id"] == first.run_id
    # another date is another run
    assert cli("refresh", later, "--as-of", "2025-01-08", "--runs-dir", runs, "--no-publish").code == 0
    assert len(list_runs(runs)) == n + 1


def test_refresh_without_a_trained_model_says_what_to_do(tmp_path: Path, cli) -> None:
    r = cli("refresh", study.path(study.ORDERS_FILE), "--runs-dir", tmp_path / "empty")
    assert r.code == 2 and "no trained model" in r.err and "rfmseg run" in r.err


# --------------------------------------------------------------------------------------------- publish + recovery
def test_a_store_that_is_down_keeps_the_run_to_publish_later(runs: Path, cli) -> None:
    down = f"postgresql://postgres:s3cret@127.0.0.1:{CLOSED_PORT}/test"
    r = cli("refresh", study.path(study.ORDERS_FILE), "--as-of", "2025-01-03", "--runs-dir", runs, "--store", down)
    assert r.code == 2
    assert r.err.count("\n") == 1 and r.err.startswith("error: ")
    assert f"127.0.0.1:{CLOSED_PORT}" in r.err and "s3cret" not in r.err
    run = list_runs(runs)[-1]
    assert run.manifest["kind"] == "refresh" and f"rfmseg publish {run.run_id}" in r.err
    assert (run.path / "assignments.parquet").exists()
    # redis down too: same one-line error
    r = cli("publish", run.run_id, "--runs-dir", runs, "--store", f"redis://127.0.0.1:{CLOSED_PORT}/0")
    assert r.code == 2 and f"127.0.0.1:{CLOSED_PORT}" in r.err and r.err.count("\n") == 1
    # later, with the store back (the default SQLite store here): publish the run that waited
    ok = cli("publish", run.run_id, "--runs-dir", runs, "--json")
    assert ok.code == 0, ok.err
    report = ok.json()
    assert report["run_id"] == run.run_id and report["customers"] == 200
    with open_store(settings.store_url(runs)) as store:
        assert store.current_run() == run.run_id
        assert store.get("C087")["segment"] == labels(run.path)["C087"]
        assert store.get("C087")["as_of"] == "2025-01-03"


def test_the_store_comes_from_the_environment(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv(settings.STORE_ENV, url)
    r = cli("refresh", study.path(study.ORDERS_FILE), "--runs-dir", runs)
    assert r.code == 0, r.err
    assert (tmp_path / "elsewhere.db").exists() and not (runs / "profiles.db").exists()
    with open_store(url) as store:
        assert store.current_run() == list_runs(runs)[-1].run_id


def _purge(url: str, namespace: str) -> None:
    if url.startswith("postgresql"):
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v') AND c.relname LIKE %s",
                (namespace + r"\_%",),
            ).fetchall()
            for name, kind in sorted(rows, key=lambda row: row[1] != "v"):
                what = "VIEW" if kind == "v" else "TABLE"
                conn.execute(sql.SQL(f"DROP {what} IF EXISTS {{}} CASCADE").format(sql.Identifier(name)))
    else:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.mark.services
@pytest.mark.parametrize("server", [PG_URL, REDIS_URL], ids=["postgres", "redis"])
def test_refresh_and_publish_to_a_server_store(runs: Path, server: str, cli) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    url = f"{server}?namespace={ns}"
    try:
        r = cli("refresh", study.path(study.ORDERS_FILE), "--runs-dir", runs, "--store", url, "--json")
        assert r.code == 0, r.err
        data = r.json()
        assert data["publish"]["customers"] == 200 and data["publish"]["new"] == 200
        run = list_runs(runs)[-1]
        expected = {x["customer_id"]: x for x in run.table("assignments").to_pylist()}
        with open_store(url) as store:
            assert store.current_run() == run.run_id
            got = store.get_many(["C001", "C087", "C172"])
            for cid, profile in got.items():
                assert profile["segment"] == expected[cid]["segment"]
                assert profile["recency_days"] == expected[cid]["recency_days"]
                assert profile["model_version"] == run.manifest["model_version"]
        # republishing the earlier training run over it works too, and says who changed (nobody)
        first = list_runs(runs)[0]
        again = cli("publish", first.run_id, "--runs-dir", runs, "--store", url, "--json").json()
        assert again["customers"] == 200 and again["changed"] == 0
    finally:
        _purge(server, ns)


# --------------------------------------------------------------------------------------------- retrain + names
def test_retrain_on_the_same_data_keeps_every_name_and_is_idempotent(runs: Path, cli) -> None:
    source = list_runs(runs)[0]
    r = cli("retrain", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF.isoformat(), "--runs-dir", runs, "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["kind"] == "retrain" and data["status"] == "created"
    names = data["names"]
    assert names["previous_model"] == source.run_id and names["changes"] == []
    assert all(s["decision"] == "kept" and s["distance"] < s["limit"] for s in names["segments"])
    retrained = list_runs(runs)[-1]
    assert labels(retrained.path) == labels(source.path)
    assert retrained.manifest["model_version"] == retrained.run_id
    assert retrained.manifest["previous_model"] == source.run_id
    model = json.loads((retrained.path / "model.json").read_text())
    assert model["provenance"]["model_version"] == retrained.run_id
    assert model["provenance"]["previous_model"] == source.run_id
    # again: found, not written twice
    n = len(list_runs(runs))
    again = cli("retrain", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF.isoformat(), "--runs-dir", runs)
    assert again.code == 0 and "Already done" in again.out and len(list_runs(runs)) == n
    # the refresh of the same day finds the retrain's labels: the same model, data and rule wrote them
    same_day = cli("refresh", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF.isoformat(), "--runs-dir", runs)
    assert same_day.code == 0 and f"Already done: run {retrained.run_id} holds the retrain" in same_day.out
    assert len(list_runs(runs)) == n
    # the next refresh scores with the retrained model
    cli("refresh", study.path(study.ORDERS_FILE), "--as-of", "2025-01-02", "--runs-dir", runs, "--no-publish")
    assert list_runs(runs)[-1].manifest["model_version"] == retrained.run_id


def test_carry_names_keeps_a_name_the_rules_alone_would_change(trained: tuple[Path, str]) -> None:
    runs, run_id = trained
    previous = life.load_model(run_id, runs).model
    rfm = pq.read_table(runs / run_id / "rfm.parquet")
    x = rfm_matrix(rfm)
    new = SegmentModel(k=4).fit(x)
    rules = list(new.names_)
    new.names_ = rules[1:] + rules[:1]  # as if the naming rules named every cluster differently today
    report = carry_names(previous, new, x, previous_version=run_id)
    by_centroid = {tuple(np.round(c, 6)): n for c, n in zip(previous.centroids_raw_, previous.names_, strict=True)}
    assert [by_centroid[tuple(np.round(c, 6))] for c in new.centroids_raw_] == new.names_
    assert report["changes"] == []
    assert all("the naming rules alone would say" in s["why"] for s in report["segments"])


def test_retrain_renames_a_segment_whose_profile_really_changed(runs: Path, tmp_path: Path) -> None:
    source = list_runs(runs)[0]
    rfm = pacsv.read_csv(study.path(study.RFM_FILE))
    at_risk = {cid for cid, seg in labels(source.path).items() if seg == "At-Risk"}
    freq = [
        f * 3 if c in at_risk else f
        for c, f in zip(rfm["customer_id"].to_pylist(), rfm["frequency"].to_pylist(), strict=True)
    ]
    changed = rfm.set_column(2, "frequency", pa.array(freq, pa.int64()))  # the silent high spenders bought 3x as often
    result = life.retrain(changed, previous=source.run_id, runs_dir=runs, publish=False)
    names = result.summary["names"]
    gone = next(s for s in names["segments"] if s["previous_name"] == "At-Risk")
    assert gone["decision"] == "renamed" and gone["distance"] > gone["limit"]
    assert gone["name"] != "At-Risk" and gone["name"] == gone["data_driven_name"]
    assert any(c.startswith("'At-Risk' → ") and "moved" in c for c in names["changes"])
    assert "At-Risk" in names["retired"]
    others = [s for s in names["segments"] if s is not gone]
    assert all(s["decision"] == "kept" and s["name"] == s["previous_name"] for s in others)
    final = [s["name"] for s in names["segments"]]
    assert len(set(final)) == len(final) == 4
    assert result.manifest["names"] == names  # the manifest records it too
    # and the new labels follow: the At-Risk customers now carry the new name
    assert {labels(result.run.path)[c] for c in at_risk} == {gone["name"]}


def test_retrain_with_more_segments_reports_the_new_one(runs: Path, cli) -> None:
    r = cli("retrain", study.path(study.ORDERS_FILE), "--k", "5", "--runs-dir", runs, "--no-publish")
    assert r.code == 0, r.err
    assert "new segment '" in r.out and "K went from 4 to 5" in r.out
    names = list_runs(runs)[-1].summary["names"]
    assert [s["decision"] for s in names["segments"]].count("new") == 1
    assert {s["name"] for s in names["segments"] if s["decision"] == "kept"} == {
        "Champions",
        "Loyal Buyers",
        "At-Risk",
        "Occasional",
    }


def test_refresh_reads_the_input_as_the_model_was_trained_preset_features_cold_start(tmp_path: Path) -> None:
    from rfmseg.presets import get_preset

    runs = tmp_path / "runs"
    preset = get_preset("saas")
    trained = segment(preset.sample_path(), preset="saas", runs_dir=runs)
    result = life.refresh(preset.sample_path(), runs_dir=runs, publish=False)  # no preset given: the model's
    assert result.manifest["params"]["preset"] == "saas" == result.summary["preset"]
    assert result.manifest["params"]["features"] == trained.manifest["params"]["features"]
    rfm = result.run.table("rfm")
    assert rfm.equals(trained.rfm)  # same features computed the same way
    rows = result.run.table("assignments").to_pylist()
    as_of = date.fromisoformat(result.summary["as_of"])
    thin = {
        r["customer_id"]
        for r in rows
        if r["frequency"] < 2 or (r["first_order_date"] and (as_of - r["first_order_date"]).days < 30)
    }
    assert {r["customer_id"] for r in rows if r["segment_reason"] == "cold_start"} == thin
    assert {r["segment"] for r in rows if r["customer_id"] in thin} <= {preset.cold_start_segment}
    assert result.summary["cold_start"]["segment"] == preset.cold_start_segment
    if thin and preset.cold_start_segment not in trained.model.names_:
        assert any("not one of this model's segments" in w for w in result.summary["warnings"])


def test_publish_if_configured_follows_the_run_rule(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = list_runs(runs)[0]
    monkeypatch.delenv(settings.STORE_ENV, raising=False)
    assert life.publish_if_configured(run, runs) is None and not (runs / "profiles.db").exists()
    assert life.publish_if_configured(run, runs, publish=True)["customers"] == 200
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv(settings.STORE_ENV, url)
    assert life.publish_if_configured(run, runs)["store"] == url
    assert life.publish_if_configured(run, runs, publish=False) is None


def test_segment_with_a_store_publishes_the_local_run(tmp_path: Path) -> None:
    """segment(store=...) publishes what it wrote on the local engine too, and needs a run folder to do so."""
    url = f"sqlite:///{tmp_path / 'profiles.db'}"
    result = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=tmp_path / "runs", store=url)
    assert result.manifest["publish"]["customers"] == 200 and result.manifest["publish"]["run_id"] == result.run_id
    with open_store(url) as s:
        assert s.current_run() == result.run_id
        assert s.get("C087")["segment"] == result.segment_of("C087") == "At-Risk"
    with pytest.raises(ParameterError, match="runs_dir=None writes none; give runs_dir"):
        segment(study.path(study.ORDERS_FILE), runs_dir=None, store=url)
