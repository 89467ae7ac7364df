"""The staged (batch) publish of the profile stores, on every backend against real servers (no mocks).

Batches are staged from separate processes (multiprocessing, spawn), as Spark executors would, and the
result is compared with a one-shot ``publish`` of the same rows into a namespace of its own. The store
fixtures and helpers are those of tests/test_stores.py (SQLite always; PostgreSQL and Redis marked
``services``).
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from multiprocessing.pool import Pool

import pyarrow as pa
import pytest

import test_stores
from rfmseg.errors import InputError, ParameterError, StoreError
from rfmseg.stores import ProfileStore, StagedBatch, StageToken, open_stager, open_store, stage_batch
from test_stores import D1, D2, D3, assignments, leftovers, objects, purge, uniform

# the store fixtures of test_stores.py: each test once per backend, in a namespace of its own
backend, url, namespace, store = test_stores.backend, test_stores.url, test_stores.namespace, test_stores.store


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """Two worker processes started fresh (spawn), shared by the module's tests."""
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        yield workers


@pytest.fixture
def other(backend: str, url: str) -> Iterator[str]:
    """A second namespace in the same database, for the one-shot reference publishes."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    yield ns
    purge(backend, url, ns)


def run_table(n: int, shift: int) -> pa.Table:
    """``n`` customers (ids C0000000...) in four segments; ``shift`` moves some of them to another segment."""
    segments = ["Champions", "Loyal", "At risk", "Lost"]
    return pa.table(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "segment": [segments[(i + (shift if i % 7 == 0 else 0)) % 4] for i in range(n)],
            "recency_days": pa.array([(i * 13 + shift) % 400 for i in range(n)], pa.int64()),
            "frequency": pa.array([1 + i % 9 for i in range(n)], pa.int64()),
            "monetary": pa.array([round(10.5 + i * 0.37, 2) for i in range(n)], pa.float64()),
            "distance": pa.array([(i % 100) / 97 for i in range(n)], pa.float64()),
        }
    )


def parts(table: pa.Table, count: int) -> list[pa.Table]:
    size = -(-table.num_rows // count)
    return [table.slice(start, size) for start in range(0, table.num_rows, size)]


def staged_objects(backend: str, url: str, namespace: str, served_key: str | None = None) -> list[str]:
    """What a staged publish may leave: staged tables, stage records, or Redis versions other than the served."""
    names = objects(backend, url, namespace)
    if backend == "redis":
        return [n for n in names if n.endswith(":stage") or (":v:" in n and served_key and served_key not in n)]
    return [n for n in names if "_staged_" in n]


def served_key(backend: str, url: str, namespace: str) -> str | None:
    if backend != "redis":
        return None
    import json

    import redis

    client = redis.Redis.from_url(url)
    try:
        raw = client.get(f"{namespace}:current")
        return None if raw is None else str(json.loads(raw)["key"])
    finally:
        client.close()


def no_stage_left(backend: str, url: str, namespace: str) -> list[str]:
    return staged_objects(backend, url, namespace, served_key(backend, url, namespace))


# --- staged equals one-shot ---------------------------------------------------------------------------------


def test_batches_from_processes_give_what_a_one_shot_publish_gives(
    pool: Pool, backend: str, url: str, namespace: str, other: str
) -> None:
    n = 3_000
    first = run_table(n, 0)
    # the second run: some customers move (shift), the last 500 are gone, 700 new ones arrive
    second = pa.concat_tables([run_table(n, 1).slice(0, n - 500), run_table(n + 700, 2).slice(n)])
    ids = [*second["customer_id"].to_pylist(), *first["customer_id"].to_pylist()[-5:], "nobody"]
    with open_store(url, namespace=namespace) as staged_store, open_store(url, namespace=other) as reference:
        for run_id, table, as_of in (("r1", first, D1), ("r2", second, D2)):
            expected = reference.publish(table, run_id, as_of, "m1")
            staged = staged_store.begin_publish(run_id, as_of, "m1")
            batches = pool.starmap(stage_batch, [(staged.token, part) for part in parts(table, 5)])
            report = staged.commit(table.num_rows)

            assert all(isinstance(batch, StagedBatch) for batch in batches) and len(batches) == 5
            assert sum(b.rows for b in batches) == table.num_rows
            assert (sum(b.changed for b in batches), sum(b.new for b in batches)) == (report.changed, report.new)
            assert (report.run_id, report.customers, report.changed, report.new) == (
                expected.run_id,
                expected.customers,
                expected.changed,
                expected.new,
            )
            assert staged_store.current_run() == reference.current_run() == run_id
            assert staged_store.count() == reference.count() == table.num_rows
            assert staged_store.get_many(ids) == reference.get_many(ids)
            assert staged_store.get("C0000007") == reference.get("C0000007")
        assert (report.changed, report.new) == (len(range(0, n - 500, 7)), 700)  # moved (of those kept), arrived
        moved = staged_store.get("C0000007")
        assert (moved["segment"], moved["previous_segment"], moved["segment_since"]) == (
            "Champions",
            "Lost",
            "2024-11-30",
        )
        kept = staged_store.get("C0000001")
        assert (kept["previous_segment"], kept["segment_since"]) == (None, "2024-10-31")

        # a staged commit leaves the store as a publish does: the next one-shot publish carries history on
        third = run_table(n, 3)
        after_staged = staged_store.publish(third, "r3", D3, "m2")
        after_one_shot = reference.publish(third, "r3", D3, "m2")
        assert (after_staged.changed, after_staged.new) == (after_one_shot.changed, after_one_shot.new)
        assert staged_store.get_many(ids) == reference.get_many(ids)
    assert leftovers(backend, url, namespace) == []
    assert no_stage_left(backend, url, namespace) == []


def test_a_stager_stages_many_batches_on_one_connection(store: ProfileStore) -> None:
    table = run_table(1_000, 0)
    with store.begin_publish("r1", D1, "m1") as staged, open_stager(staged.token) as stager:
        for part in parts(table, 4):
            stager.stage(part)
        assert (stager.rows, stager.changed, stager.new, stager.batches) == (1_000, 0, 1_000, 4)
        report = staged.commit(1_000)
    assert (report.customers, report.new) == (1_000, 1_000)
    assert staged.state == "committed" and store.current_run() == "r1"


def test_a_batch_sent_again_under_its_key_is_staged_once(
    pool: Pool, store: ProfileStore, backend: str, url: str, other: str
) -> None:
    # what a retried worker does: its first attempt staged some batches and died, the next sends them all again
    first, second = run_table(1_200, 0), run_table(1_200, 1)
    store.publish(first, "r1", D1, "m1")
    batches = parts(second, 4)
    with open_store(url, namespace=other) as reference:
        reference.publish(first, "r1", D1, "m1")
        expected = reference.publish(second, "r2", D2, "m1")
        with store.begin_publish("r2", D2, "m1") as staged:
            died = [stage_batch(staged.token, batch, key=f"0:{n}") for n, batch in enumerate(batches[:2])]
            with open_stager(staged.token) as retry:
                again = [retry.stage(batch, key=f"0:{n}") for n, batch in enumerate(batches)]
                assert (retry.batches, retry.repeated, retry.rows) == (2, 2, 600)
            assert [b.repeated for b in again] == [True, True, False, False]
            assert again[:2] == [StagedBatch(b.rows, b.changed, b.new, repeated=True) for b in died]
            # two attempts of one batch at the same moment (speculative execution): one writes it, the other not
            late = run_table(1_500, 1).slice(1_200)
            raced = pool.starmap(stage_batch, [(staged.token, late, "1:0"), (staged.token, late, "1:0")])
            assert sorted(b.repeated for b in raced) == [False, True] and raced[0].rows == raced[1].rows == 300
            report = staged.commit(1_500)
        assert (report.customers, report.changed, report.new) == (1_500, expected.changed, expected.new + 300)
        ids = second["customer_id"].to_pylist()
        assert store.get_many(ids) == reference.get_many(ids)
    assert store.current_run() == "r2" and store.count() == 1_500


def test_a_batch_key_sent_with_other_customers_is_refused(store: ProfileStore) -> None:
    with store.begin_publish("r1", D1, "m1") as staged:
        stage_batch(staged.token, assignments({"A": "X", "B": "Y"}), key="p0:0")
        with pytest.raises(StoreError, match="got batch 'p0:0' again with 3 customers where it had 2") as caught:
            stage_batch(staged.token, assignments({"A": "X", "B": "Y", "C": "Z"}), key="p0:0")
        assert "\n" not in str(caught.value)
        with pytest.raises(StoreError, match="holds 2 customers where 3 were expected"):
            staged.commit(3)
        with pytest.raises(ParameterError, match="batch key"):
            stage_batch(staged.token, assignments({"C": "Z"}), key="")
    assert store.current_run() is None


# --- what a staged publish refuses ----------------------------------------------------------------------------


def test_abort_leaves_the_served_run_and_no_staged_rows(store: ProfileStore, backend: str, url: str) -> None:
    store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
    before = store.get_many(["A", "B"])
    staged = store.begin_publish("r2", D2, "m1")
    stage_batch(staged.token, assignments({"A": "Lost", "C": "New"}))
    staged.abort()
    staged.abort()  # a second abort does nothing
    assert staged.state == "aborted"
    assert store.current_run() == "r1" and store.get_many(["A", "B", "C"]) == before
    assert no_stage_left(backend, url, store.namespace) == []
    with pytest.raises(StoreError, match="no longer exists"):
        stage_batch(staged.token, assignments({"D": "New"}))
    with pytest.raises(StoreError, match="was aborted already"):
        staged.commit(2)

    with store.begin_publish("r3", D3, "m1") as again:  # the next staged publish works, history from r1
        stage_batch(again.token, assignments({"A": "Lost", "B": "Loyal"}))
        report = again.commit(2)
    assert (report.changed, report.new) == (1, 0)
    assert store.get("A")["previous_segment"] == "Champions" and store.get("B")["segment_since"] == "2024-10-31"


def test_a_commit_short_of_a_batch_refuses_and_changes_nothing(store: ProfileStore) -> None:
    store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
    table = run_table(90, 0)
    first, second, third = parts(table, 3)
    with store.begin_publish("r2", D2, "m1") as staged:
        stage_batch(staged.token, first)
        stage_batch(staged.token, second)
        with pytest.raises(StoreError) as refused:
            staged.commit(90)
        message = str(refused.value)
        assert "holds 60 customers where 90 were expected" in message and "nothing was changed" in message
        assert "\n" not in message
        assert store.current_run() == "r1" and store.count() == 1 and store.get("C0000001") is None
        # the refusal left the stage as it was: the missing batch can still come
        stage_batch(staged.token, third)
        report = staged.commit(90)
    assert (report.customers, store.current_run(), store.count()) == (90, "r2", 90)


def test_a_publish_in_between_makes_the_commit_refuse(store: ProfileStore, backend: str, url: str) -> None:
    store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
    staged = store.begin_publish("r2", D2, "m1")
    stage_batch(staged.token, assignments({"A": "Lost", "B": "Loyal"}))
    store.publish(assignments({"A": "Loyal", "C": "New"}), "other", D2, "m1")
    with pytest.raises(StoreError) as refused:
        staged.commit(2)
    message = str(refused.value)
    assert "another publish (run other)" in message and "nothing was changed" in message
    with pytest.raises(StoreError, match=r"another publish \(run other\)"):
        stage_batch(staged.token, assignments({"D": "New"}))
    staged.abort()
    assert store.current_run() == "other" and store.count() == 2
    assert store.get("A")["segment"] == "Loyal" and store.get("B") is None
    assert leftovers(backend, url, store.namespace) == []
    assert no_stage_left(backend, url, store.namespace) == []


def test_a_customer_in_two_batches_is_refused(store: ProfileStore) -> None:
    store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
    with store.begin_publish("r2", D2, "m1") as staged:
        stage_batch(staged.token, assignments({"A": "Loyal", "B": "New"}))
        try:  # SQLite and Redis see it at once, PostgreSQL when the commit builds the key
            stage_batch(staged.token, assignments({"B": "Lost", "C": "New"}))
        except StoreError as exc:
            assert "more than one batch" in str(exc)
        with pytest.raises(StoreError, match="more than one batch") as refused:
            staged.commit(3)
        assert "nothing was changed" in str(refused.value)
    assert store.current_run() == "r1" and store.get("A")["segment"] == "Champions" and store.get("B") is None


def test_a_staged_publish_checks_what_it_is_given(store: ProfileStore, url: str) -> None:
    staged = store.begin_publish("r1", D1, "m1")
    with pytest.raises(InputError, match="duplicate"):
        stage_batch(staged.token, pa.concat_tables([assignments({"A": "X"}), assignments({"A": "X"})]))
    with pytest.raises(InputError, match="empty"):
        stage_batch(staged.token, assignments({"A": "X"}).slice(0, 0))
    with pytest.raises(ParameterError, match="namespace"), open_store(url, namespace="elsewhere") as foreign:
        foreign.stage(staged.token, assignments({"A": "X"}))
    with pytest.raises(ParameterError, match="expected_rows"):
        staged.commit(0)
    with pytest.raises(ParameterError, match="run_id"):
        store.begin_publish("", D1, "m1")
    stage_batch(staged.token, assignments({"A": "X"}))
    staged.commit(1)
    with pytest.raises(StoreError, match="was committed already"):
        staged.stage(assignments({"B": "X"}))
    staged.abort()  # after a commit: nothing to do, the run stays served
    assert store.current_run() == "r1" and store.count() == 1


def test_the_token_travels_without_showing_its_password() -> None:
    token = StageToken("postgresql://app:secret@db:5432/prod", "rfmseg", "abc", 3, "rfmseg_profiles_3", "r1", D1, "m")
    assert "secret" not in repr(token) and token.url_display == "postgresql://app:***@db:5432/prod"
    assert pickle.loads(pickle.dumps(token)) == token
    assert token.run.run_id == "r1" and token.run.as_of == D1


def test_drop_removes_a_staged_publish(store: ProfileStore, backend: str, url: str) -> None:
    staged = store.begin_publish("r1", D1, "m1")
    stage_batch(staged.token, assignments({"A": "X"}))
    store.drop()
    assert objects(backend, url, store.namespace) == []
    with pytest.raises(StoreError, match="no longer exists"):
        staged.commit(1)
    assert objects(backend, url, store.namespace) == []


# --- a stager killed half way -----------------------------------------------------------------------------------


def stage_uniform(token: StageToken, n: int) -> None:
    """What the killed child does: stage ``n`` customers in one batch."""
    stage_batch(token, uniform(n, "Killed", 99))


def staging(backend: str, url: str, namespace: str, token: StageToken) -> bool:
    """Whether the child is writing its batch (PostgreSQL: its COPY runs; Redis: the staged hash fills;
    SQLite: it holds the write lock)."""
    if backend == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                (f'COPY "{namespace}_staged_%',),
            ).fetchone()
        return bool(row and row[0])
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        try:
            return bool(client.hlen(f"{namespace}:v:{token.stage}"))
        finally:
            client.close()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        conn.close()


@pytest.mark.slow
def test_a_stager_killed_half_way_leaves_the_old_run_served(backend: str, url: str, namespace: str) -> None:
    n = 300_000
    with open_store(url, namespace=namespace) as store:
        store.publish(uniform(n, "Old", 1), "old", D1, "m1")
        staged = store.begin_publish("killed", D2, "m-killed")
        child = multiprocessing.get_context("spawn").Process(target=stage_uniform, args=(staged.token, n))
        child.start()
        try:
            deadline = time.monotonic() + 60
            while not staging(backend, url, namespace, staged.token) and child.is_alive():
                assert time.monotonic() < deadline, "the stager never started writing"
                time.sleep(0.005)
            assert child.is_alive(), "the stager finished before it could be killed"
            child.kill()  # SIGKILL
        finally:
            child.join(30)
        assert child.exitcode == -signal.SIGKILL

        assert store.current_run() == "old" and store.count() == n
        sample = [f"C{i:07d}" for i in range(0, n, 997)]
        assert {(p["run_id"], p["segment"]) for p in store.get_many(sample).values()} == {("old", "Old")}
        with pytest.raises(StoreError, match=f"where {n:,} were expected"):
            staged.commit(n)
        assert store.current_run() == "old"

        report = store.publish(uniform(n, "New", 2), "after", D3, "m2")  # the next publish cleans up
        assert (report.customers, report.changed, report.new) == (n, n, 0)
        assert store.get("C0000007")["previous_segment"] == "Old"
        assert leftovers(backend, url, namespace) == []
        assert no_stage_left(backend, url, namespace) == []
        staged.abort()
        assert store.current_run() == "after"
