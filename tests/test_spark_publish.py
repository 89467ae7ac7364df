"""Publishing from the Spark executors (local[2]) to the profile stores: the executors assign and stage the
customers in batches, the driver commits. Real Spark, real SQLite / PostgreSQL / Redis (the last two
marked ``services``), no mocks; the store fixtures are those of tests/test_stores.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import test_spark
import test_stores
from rfmseg.datasets import study
from rfmseg.engines.spark import SparkEngine, SparkError, executor_error
from rfmseg.errors import StoreError
from rfmseg.jobs.run import segment
from rfmseg.stores import open_store
from rfmseg.stores.base import redact_url
from test_stores import purge

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# the store fixtures of test_stores.py (each test once per backend, in a namespace of its own) and the
# local[2] session of test_spark.py
backend, url, namespace = test_stores.backend, test_stores.url, test_stores.namespace
spark = test_spark.spark

BATCH_ROWS = 16  # small batches: the study's 200 customers are staged in more than a dozen


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rfmseg.engines.spark.PUBLISH_BATCH_ROWS", BATCH_ROWS)


def without_distance(profiles: dict[str, dict]) -> dict[str, dict]:
    return {cid: {k: v for k, v in p.items() if k != "distance"} for cid, p in profiles.items()}


def segments(table) -> dict[str, str]:
    return dict(zip(table["customer_id"].to_pylist(), table["segment"].to_pylist(), strict=True))


def test_executors_publish_the_study_like_a_driver_publish(
    spark, small_batches, backend: str, url: str, namespace: str, tmp_path: Path
) -> None:
    target = f"{url}?namespace={namespace}"
    reference_ns = f"{namespace}r"
    runs = tmp_path / "runs"
    local = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None)
    try:
        with open_store(url, namespace=namespace) as store, open_store(url, namespace=reference_ns) as reference:
            # two runs, the second with three segments so customers move: each compared with a one-shot publish
            for as_of, k in ((study.AS_OF, 4), (study.AS_OF + dt.timedelta(days=45), 3)):
                result = segment(
                    study.path(study.ORDERS_FILE), as_of=as_of, k=k, engine="spark", runs_dir=runs, store=target
                )
                report = result.manifest["publish"]
                expected = reference.publish(result.assignments, result.run_id, as_of, result.run_id)
                assert report["by"] == "executors" and report["store"] == redact_url(target)
                assert report["batches"] >= -(-200 // BATCH_ROWS)
                assert (report["run_id"], report["customers"], report["changed"], report["new"]) == (
                    expected.run_id,
                    expected.customers,
                    expected.changed,
                    expected.new,
                )
                ids = result.assignments["customer_id"].to_pylist()
                served = store.get_many(ids)
                assert without_distance(served) == without_distance(reference.get_many(ids))
                # nearest() rounds the last bit by block length: the executors' blocks are not the driver's
                assert [served[i]["distance"] for i in ids] == pytest.approx(
                    result.assignments["distance"].to_pylist(), rel=1e-12
                )
                assert store.current_run() == result.run_id and store.count() == 200
                assert (runs / result.run_id / "manifest.json").exists()  # the run folder as ever
                if as_of == study.AS_OF:
                    # the executors' segments are the run's, the local engine's and the study's four groups
                    stored = {cid: profile["segment"] for cid, profile in served.items()}
                    assert stored == segments(result.assignments) == segments(local.assignments) == study.truth()
                    assert (report["changed"], report["new"]) == (0, 200)
        assert report["changed"] > 0 and report["new"] == 0  # the same customers, some in another segment
        assert any(p["previous_segment"] is not None and p["segment_since"] == "2025-02-14" for p in served.values())
    finally:
        purge(backend, url, reference_ns)


def test_cli_run_on_spark_says_the_executors_published(spark, small_batches, cli, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    args = ["run", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF.isoformat(), "--engine", "spark"]
    res = cli(*args, "--runs-dir", tmp_path / "runs", "--store", store)
    assert res.code == 0, res.err
    line = next(ln for ln in res.out.splitlines() if ln.startswith("Published to"))
    assert line.startswith(
        f"Published to {store}: 200 customers (0 changed segment, 200 new, published by executors in "
    )
    assert line.endswith(" batches)")
    with open_store(store) as s:
        assert s.count() == 200 and {p["segment"] for p in s.get_many(list(study.truth())).values()} == set(
            study.truth().values()
        )

    res = cli(*args, "--runs-dir", tmp_path / "runs", "--store", store, "--json")
    assert res.code == 0, res.err
    published = json.loads(res.out)["published"]
    assert published["by"] == "executors" and published["customers"] == 200 and published["changed"] == 0


def test_a_store_that_is_down_keeps_the_spark_run(spark, cli, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = ["run", study.path(study.ORDERS_FILE), "--as-of", study.AS_OF.isoformat(), "--engine", "spark"]
    res = cli(*args, "--runs-dir", runs, "--store", "redis://:secret@127.0.0.1:1/0", "--output", tmp_path / "lake")
    assert res.code == 2
    message = res.err.strip()
    assert "\n" not in message and "secret" not in message
    assert message.startswith(
        "error: cannot reach the profile store at redis://:***@127.0.0.1:1/0 (connection refused)"
    )
    run_id = message.split("publish it later with `rfmseg publish ")[1].rstrip("`")
    assert f"run {run_id} is saved in {runs / run_id}" in message
    assert (runs / run_id / "manifest.json").exists()  # the run is on disk
    assert (tmp_path / "lake" / run_id / "assignments").is_dir()  # and so are the executors' tables


def test_an_executor_error_becomes_one_line(spark) -> None:
    def fail(batches):
        for _batch in batches:
            raise StoreError("the profile store at redis://:***@cache:6379/0 failed to read (connection lost)")
        yield from ()

    with pytest.raises(Exception) as raised:
        spark.range(4).mapInArrow(fail, "id long").collect()
    error = executor_error(raised.value, "R1", "redis://:***@cache:6379/0")
    assert isinstance(error, StoreError)
    assert error.message == (
        "the Spark executors could not publish run R1 to redis://:***@cache:6379/0: the profile store at "
        "redis://:***@cache:6379/0 failed to read (connection lost); nothing was changed"
    )

    def crash(batches):
        yield from ()
        raise ZeroDivisionError("division by zero")

    with pytest.raises(Exception) as raised:
        spark.range(4).mapInArrow(crash, "id long").collect()
    error = executor_error(raised.value, "R1", "sqlite:////tmp/p.db")
    assert isinstance(error, SparkError) and "\n" not in error.message
    assert error.message.startswith("the Spark executors could not publish run R1 to sqlite:////tmp/p.db (")
    assert error.message.endswith("); nothing was changed")


def test_executors_reach_a_sqlite_file_in_local_mode(spark) -> None:
    engine = SparkEngine(spark=spark)
    assert engine.executors_reach("sqlite:///profiles.db")  # local[2]: the executors share this disk
    assert engine.executors_reach("redis://cache:6379/0") and engine.executors_reach("postgresql://db/x")
