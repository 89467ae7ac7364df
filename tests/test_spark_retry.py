"""A Spark task that dies half way through its publish is retried, and the retry's batches are staged once.

Its own module: the run starts its own Spark session with ``local[2,3]`` (two cores, a task may fail three
times), which a session still open from another module would shadow. The failure is real: a PostgreSQL
trigger refuses the first attempt of one batch, so that task has staged a batch and dies on the next one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rfmseg.datasets import study
from rfmseg.jobs.run import segment
from rfmseg.stores import open_store
from test_stores import PG_URL, purge

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    pair = (f"t{uuid.uuid4().hex[:12]}", f"t{uuid.uuid4().hex[:12]}")
    yield pair
    for ns in pair:
        purge("postgres", PG_URL, ns)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SEQUENCE IF EXISTS {pair[0]}_attempts")
        conn.execute(f"DROP FUNCTION IF EXISTS {pair[0]}_fail_once() CASCADE")


def fail_first_attempt_of(batch_key: str, namespace: str) -> None:
    """A trigger that refuses the first insert of ``batch_key``'s record (a sequence is not rolled back)."""
    with open_store(PG_URL, namespace=namespace) as store:
        store.begin_publish("setup", study.AS_OF, "m").abort()  # makes the stage tables
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE {namespace}_attempts")
        conn.execute(
            f"CREATE FUNCTION {namespace}_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.batch_key = '{batch_key}' AND nextval('{namespace}_attempts') = 1 THEN "
            "RAISE EXCEPTION 'the first attempt of this task dies here'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER fail_once BEFORE INSERT ON {namespace}_stage_batches "
            f"FOR EACH ROW EXECUTE FUNCTION {namespace}_fail_once()"
        )


def test_a_retried_task_publishes_every_customer_once(
    monkeypatch: pytest.MonkeyPatch, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RFMSEG_SPARK_DRIVER_MEMORY", "1g")
    monkeypatch.setattr("rfmseg.engines.spark.PUBLISH_BATCH_ROWS", 16)  # two or more batches per task
    staged_ns, reference_ns = namespaces
    fail_first_attempt_of("0:1", staged_ns)  # task 0 stages batch 0:0, then dies

    result = segment(
        study.path(study.ORDERS_FILE),
        as_of=study.AS_OF,
        engine="spark",
        spark_master="local[2,3]",
        runs_dir=tmp_path / "runs",
        store=f"{PG_URL}?namespace={staged_ns}",
    )

    assert result.manifest["engine"]["master"] == "local[2,3]"
    report = result.manifest["publish"]
    assert report["by"] == "executors" and report["batches_resent"] == 1
    with psycopg.connect(PG_URL, autocommit=True) as conn:  # the trigger did fire: the first attempt died
        assert conn.execute(f"SELECT last_value FROM {staged_ns}_attempts").fetchone()[0] == 2
    with open_store(PG_URL, namespace=staged_ns) as staged, open_store(PG_URL, namespace=reference_ns) as reference:
        expected = reference.publish(result.assignments, result.run_id, study.AS_OF, result.run_id)
        assert (
            (report["customers"], report["changed"], report["new"])
            == (200, 0, 200)
            == (
                expected.customers,
                expected.changed,
                expected.new,
            )
        )
        assert staged.current_run() == result.run_id and staged.count() == 200
        served = staged.get_many(list(study.truth()))
        assert {cid: p["segment"] for cid, p in served.items()} == study.truth()
