"""The profile stores, one suite run on every backend against real servers (no mocks).

SQLite always runs; PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) are marked
``services``. Every test works in a namespace of its own and removes it afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import rfmseg.stores
from rfmseg.errors import ColumnError, InputError, ParameterError, StoreError
from rfmseg.install import install_command
from rfmseg.stores import PROFILE_FIELDS, ProfileStore, PublishReport, open_store
from rfmseg.stores.base import redact_url

PG_URL = os.environ.get("RFMSEG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RFMSEG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SRC = Path(rfmseg.stores.__file__).resolve().parents[2]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.services),
    pytest.param("redis", id="redis", marks=pytest.mark.services),
]

D1, D2, D3 = dt.date(2024, 10, 31), dt.date(2024, 11, 30), dt.date(2024, 12, 31)


# --- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path) -> str:
    return {"sqlite": f"sqlite:///{tmp_path / 'profiles.db'}", "postgres": PG_URL, "redis": REDIS_URL}[backend]


@pytest.fixture
def namespace(backend: str, url: str) -> Iterator[str]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    yield ns
    purge(backend, url, ns)


@pytest.fixture
def store(url: str, namespace: str) -> Iterator[ProfileStore]:
    with open_store(url, namespace=namespace) as opened:
        yield opened


def purge(backend: str, url: str, namespace: str) -> None:
    """Remove every table, view or key of ``namespace`` (SQLite files go with tmp_path)."""
    if backend == "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v') AND c.relname LIKE %s",
                (namespace + r"\_%",),
            ).fetchall()
            for name, kind in sorted(rows, key=lambda row: row[1] != "v"):  # views first
                what = "VIEW" if kind == "v" else "TABLE"
                conn.execute(sql.SQL(f"DROP {what} IF EXISTS {{}} CASCADE").format(sql.Identifier(name)))
    elif backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


def objects(backend: str, url: str, namespace: str) -> list[str]:
    """Every table, view or key of ``namespace``."""
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE ?", (f"{namespace}_%",))]
        conn.close()
        return names
    if backend == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return [
                r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", (namespace + r"\_%",))
            ]
    import redis

    client = redis.Redis.from_url(url)
    keys = [k.decode() for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    client.close()
    return keys


def leftovers(backend: str, url: str, namespace: str) -> list[str]:
    """Objects of ``namespace`` that hold profiles but are not the served run."""
    if backend == "sqlite":
        import sqlite3

        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (f"{namespace}_profiles_%",)
                )
            ]
            served = conn.execute(f'SELECT table_name FROM "{namespace}_meta"').fetchone()[0]
        conn.close()
        return [t for t in tables if t != served]
    if backend == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s",
                    (namespace + r"\_profiles\_%",),
                )
            ]
            served = conn.execute(f'SELECT table_name FROM "{namespace}_meta"').fetchone()[0]
        return [t for t in tables if t != served]
    import json

    import redis

    client = redis.Redis.from_url(url)
    served_key = json.loads(client.get(f"{namespace}:current"))["key"]
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{namespace}:v:*", count=1000))
    client.close()
    return [k for k in keys if k not in (served_key, f"{served_key}:state")]


def loading(backend: str, url: str, namespace: str) -> bool:
    """Whether the second publish of ``namespace`` is writing rows (PostgreSQL: its COPY runs; Redis: its
    hash fills)."""
    if backend == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                (f'COPY "{namespace}_profiles_2"%',),
            ).fetchone()
        return bool(row and row[0])
    import redis

    client = redis.Redis.from_url(url)
    try:
        return bool(client.hlen(f"{namespace}:v:2"))
    finally:
        client.close()


def read_feed(store: ProfileStore, after: str | None = None) -> list[dict[str, Any]]:
    """Every change of the store's feed after ``after``, page by page."""
    rows: list[dict[str, Any]] = []
    while True:
        page = store.changes(after, 100_000)
        rows += page.rows
        after = page.next_cursor
        if not page.more:
            return rows


def assignments(rows: dict[str, str], recency: int = 10) -> pa.Table:
    """A small assignments table: customer id -> segment, with values derived from the id."""
    ids = list(rows)
    return pa.table(
        {
            "customer_id": ids,
            "segment": [rows[i] for i in ids],
            "recency_days": pa.array([recency + n for n in range(len(ids))], pa.int64()),
            "frequency": pa.array([n + 1 for n in range(len(ids))], pa.int64()),
            "monetary": pa.array([100.25 * (n + 1) for n in range(len(ids))], pa.float64()),
            "distance": pa.array([0.5 / (n + 1) for n in range(len(ids))], pa.float64()),
            "cluster": pa.array(list(range(len(ids))), pa.int32()),  # extra columns are ignored
        }
    )


def uniform(n: int, segment: str, recency: int) -> pa.Table:
    """``n`` customers, all in ``segment`` with ``recency`` (to tell runs apart in a batch)."""
    return pa.table(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "segment": [segment] * n,
            "recency_days": pa.array([recency] * n, pa.int64()),
            "frequency": pa.array([recency + 1] * n, pa.int64()),
            "monetary": pa.array([float(recency)] * n, pa.float64()),
            "distance": pa.array([0.25] * n, pa.float64()),
        }
    )


# --- publish and read -----------------------------------------------------------------------------------


def test_publish_then_get_and_get_many(store: ProfileStore) -> None:
    report = store.publish(assignments({"A": "Champions", "B": "Loyal", "C": "At risk"}), "run-1", D1, "m1")

    assert isinstance(report, PublishReport)
    assert (report.run_id, report.customers, report.changed, report.new) == ("run-1", 3, 0, 3)
    assert report.seconds >= 0
    assert store.get("B") == {
        "customer_id": "B",
        "segment": "Loyal",
        "previous_segment": None,
        "segment_since": "2024-10-31",
        "recency_days": 11,
        "frequency": 2,
        "monetary": 200.5,
        "distance": 0.25,
        "p_alive": None,  # no rhythm columns in these assignments: null (tests/test_rhythm_wiring.py)
        "expected_orders_90d": None,
        "expected_value_90d": None,
        "run_id": "run-1",
        "as_of": "2024-10-31",
        "model_version": "m1",
    }
    assert store.get("nobody") is None
    many = store.get_many(["C", "A", "nobody", "A"])
    assert set(many) == {"A", "C"}
    assert many["C"]["segment"] == "At risk" and many["A"]["recency_days"] == 10
    assert all(tuple(profile) == PROFILE_FIELDS for profile in many.values())
    assert store.get_many([]) == {}


def test_values_keep_their_types_exactly(store: ProfileStore) -> None:
    awkward = pa.table(
        {
            "customer_id": ["id with spaces, commas; \"quotes\" and 'apostrophes'", "émoji-🙂", "x\ny"],
            "segment": ['Can\'t lose "them", really', "Nouveaux clients", "line\nbreak"],
            "recency_days": pa.array([0, 2**40, 7], pa.int64()),
            "frequency": pa.array([1, 2, 3], pa.int64()),
            "monetary": pa.array([0.1 + 0.2, 1e-300, 123456789.123456789], pa.float64()),
            "distance": pa.array([0.0, 1 / 3, 2.5e17], pa.float64()),
        }
    )
    store.publish(awkward, "run-types", D1, "")
    profiles = store.get_many(awkward["customer_id"].to_pylist())
    assert len(profiles) == 3
    for row in awkward.to_pylist():
        got = profiles[row["customer_id"]]
        for field in ("customer_id", "segment", "recency_days", "frequency", "monetary", "distance"):
            assert got[field] == row[field] and type(got[field]) is type(row[field]), field
        assert got["segment_since"] == "2024-10-31" and got["as_of"] == "2024-10-31"
        assert got["model_version"] == ""


def test_history_over_three_publishes(store: ProfileStore) -> None:
    first = store.publish(assignments({"A": "Champions", "B": "Loyal", "C": "New"}), "r1", D1, "m1")
    second = store.publish(assignments({"A": "Champions", "B": "At risk", "D": "New"}), "r2", D2, "m1")
    third = store.publish(assignments({"A": "Loyal", "B": "At risk", "C": "New", "D": "New"}), "r3", D3, "m2")

    assert (first.changed, first.new) == (0, 3)
    assert (second.changed, second.new) == (1, 1)  # B moved, D arrived (C left)
    assert (third.changed, third.new) == (1, 1)  # A moved, C came back as new
    history = {
        cid: (p["segment"], p["previous_segment"], p["segment_since"])
        for cid, p in store.get_many(["A", "B", "C", "D"]).items()
    }
    assert history == {
        "A": ("Loyal", "Champions", "2024-12-31"),  # Champions since D1, moved at D3
        "B": ("At risk", "Loyal", "2024-11-30"),  # moved at D2, kept through D3
        "C": ("New", None, "2024-12-31"),  # absent from r2: new again at D3
        "D": ("New", None, "2024-11-30"),  # new at D2, unchanged at D3
    }
    assert store.get("A")["as_of"] == "2024-12-31" and store.get("A")["model_version"] == "m2"


def test_current_run_count_and_health(store: ProfileStore, backend: str) -> None:
    assert store.current_run() is None
    assert store.count() == 0
    assert store.get("A") is None and store.get_many(["A"]) == {}
    empty = store.health()
    assert empty == {"ok": True, "backend": store.backend, "url": store.url_display, "run_id": None, "customers": 0}

    store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
    store.publish(assignments({"A": "Champions", "B": "Loyal", "C": "New"}), "r2", D2, "m1")

    assert store.current_run() == "r2"
    assert store.count() == 3
    health = store.health()
    assert health["ok"] is True and health["run_id"] == "r2" and health["customers"] == 3
    assert health["backend"] == {"sqlite": "sqlite", "postgres": "postgresql", "redis": "redis"}[backend]


def test_namespaces_are_isolated(store: ProfileStore, url: str, backend: str) -> None:
    other_ns = f"t{uuid.uuid4().hex[:12]}"
    try:
        with open_store(f"{url}?namespace={other_ns}") as other:
            assert other.namespace == other_ns
            store.publish(assignments({"A": "Champions"}), "mine", D1, "m1")
            other.publish(assignments({"A": "Loyal", "B": "New"}), "theirs", D1, "m1")
            assert store.get("A")["segment"] == "Champions" and store.count() == 1
            assert other.get("A")["segment"] == "Loyal" and other.count() == 2
    finally:
        purge(backend, url, other_ns)


def test_bad_assignments_are_refused_and_change_nothing(store: ProfileStore) -> None:
    store.publish(assignments({"A": "Champions"}), "good", D1, "m1")
    with pytest.raises(ColumnError, match="segment"):
        store.publish(assignments({"A": "Loyal"}).drop_columns(["segment"]), "bad", D2, "m1")
    duplicated = pa.concat_tables([assignments({"A": "Loyal"}), assignments({"A": "Loyal"})])
    with pytest.raises(InputError, match="duplicate"):
        store.publish(duplicated, "bad", D2, "m1")
    with pytest.raises(InputError, match="empty"):
        store.publish(assignments({"A": "Loyal"}).slice(0, 0), "bad", D2, "m1")
    assert store.current_run() == "good" and store.get("A")["segment"] == "Champions"


def test_concurrent_publishes_are_serialised(url: str, namespace: str) -> None:
    errors: list[BaseException] = []

    def publish(run_id: str, segment: str) -> None:
        try:
            with open_store(url, namespace=namespace) as own:
                own.publish(uniform(20_000, segment, 1), run_id, D1, "m1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(f"run-{n}", f"S{n}")) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    with open_store(url, namespace=namespace) as store:
        served = store.current_run()
        assert served in {"run-0", "run-1", "run-2"} and store.count() == 20_000
        profile = store.get("C0000042")
        assert profile["segment"] == f"S{served[-1]}"
        # each publish saw the one before it: the last one moved everybody from the previous segment
        assert profile["previous_segment"] in {"S0", "S1", "S2"} - {profile["segment"]}


# --- atomicity ------------------------------------------------------------------------------------------


def test_readers_never_see_a_mix_of_two_runs(url: str, namespace: str) -> None:
    n = 30_000
    runs = {f"run-{k}": k for k in range(1, 5)}  # run-k has recency k for every customer
    with open_store(url, namespace=namespace) as publisher:
        publisher.publish(uniform(n, "S1", 1), "run-1", D1, "m1")
        stop = threading.Event()
        first_read = threading.Event()
        seen: list[str] = []
        problems: list[str] = []

        def read() -> None:
            rng = random.Random(7)
            with open_store(url, namespace=namespace) as reader:
                while True:
                    last = stop.is_set()
                    ids = [f"C{rng.randrange(n):07d}" for _ in range(1_000)]
                    batch = reader.get_many(ids)
                    found = {(p["run_id"], p["recency_days"], p["segment"]) for p in batch.values()}
                    if len(batch) != len(set(ids)) or len(found) != 1:
                        problems.append(f"{len(batch)} of {len(set(ids))} found, runs {sorted(found)}")
                    else:
                        run_id, recency, segment = found.pop()
                        if runs.get(run_id) != recency or segment != f"S{recency}":
                            problems.append(f"{run_id} served recency {recency}, segment {segment}")
                        seen.append(run_id)
                    first_read.set()
                    if last or len(problems) > 10:
                        return

        thread = threading.Thread(target=read)
        thread.start()
        assert first_read.wait(30)
        for run_id, k in list(runs.items())[1:]:
            publisher.publish(uniform(n, f"S{k}", k), run_id, D2, "m1")
        stop.set()
        thread.join(60)

    assert not problems, problems[:5]
    assert seen[0] == "run-1" and seen[-1] == "run-4"
    assert seen == sorted(seen, key=runs.__getitem__)  # never back to an older run


KILL_SCRIPT = textwrap.dedent("""
    import datetime as dt, sys
    import pyarrow as pa
    from rfmseg.stores import open_store
    url, namespace, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    table = pa.table({
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "segment": ["Killed"] * n,
        "recency_days": pa.array([99] * n, pa.int64()),
        "frequency": pa.array([99] * n, pa.int64()),
        "monetary": pa.array([99.0] * n, pa.float64()),
        "distance": pa.array([0.99] * n, pa.float64()),
    })
    with open_store(url, namespace=namespace) as store:
        print("ready", flush=True)
        store.publish(table, "killed", dt.date(2025, 1, 1), "m-killed")
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_publish_killed_half_way_leaves_the_old_run_served(url: str, namespace: str, backend: str) -> None:
    n = 400_000
    with open_store(url, namespace=namespace) as store:
        started = time.perf_counter()
        store.publish(uniform(n, "Old", 1), "old", D1, "m1")
        one_publish = time.perf_counter() - started

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, url, namespace, str(n)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        if backend == "sqlite":  # the load is invisible outside its transaction: kill half way through
            time.sleep(one_publish / 2)  # the killed publish also computes history, so it runs longer
        else:  # kill once rows of the new run are being written (the first publish made version 1)
            deadline = time.monotonic() + 30
            while not loading(backend, url, namespace) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert loading(backend, url, namespace), "the publish never started loading"
        assert proc.poll() is None, "the publish finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    with open_store(url, namespace=namespace) as store:
        assert store.current_run() == "old"
        assert store.count() == n
        sample = [f"C{i:07d}" for i in random.Random(1).sample(range(n), 2_000)]
        profiles = store.get_many(sample)
        assert len(profiles) == len(sample)
        assert {(p["run_id"], p["segment"], p["recency_days"]) for p in profiles.values()} == {("old", "Old", 1)}

        feed = read_feed(store)  # the killed publish added no change
        assert len(feed) == n
        assert {(c["run_id"], c["reason"], c["to_segment"]) for c in feed} == {("old", "new", "Old")}

        report = store.publish(uniform(n, "New", 2), "after", D2, "m2")
        assert (report.customers, report.changed, report.new) == (n, n, 0)  # history from "old", not "killed"
        assert store.current_run() == "after"
        assert store.get("C0000007")["previous_segment"] == "Old"
        assert leftovers(backend, url, namespace) == []
        after = read_feed(store, feed[-1]["cursor"])
        assert len(after) == n
        assert {(c["run_id"], c["reason"], c["from_segment"], c["to_segment"]) for c in after} == {
            ("after", "moved", "Old", "New")
        }


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "down_url",
    [
        "postgresql://app:secret@127.0.0.1:1/test",
        "redis://:secret@127.0.0.1:1/0",
        "redis://default:secret@127.0.0.1:1/0?namespace=x",
    ],
)
def test_a_store_that_is_down_names_its_url_without_the_password(down_url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(down_url)
    message = str(caught.value)
    assert "secret" not in message
    assert "cannot reach the profile store at" in message and "***@127.0.0.1:1" in message
    assert "connection refused" in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_a_sqlite_file_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot reach the profile store at sqlite:///"):
        open_store(f"sqlite:///{tmp_path / 'a-file' / 'profiles.db'}")


def test_stores_opened_together_on_a_new_sqlite_file_all_open(tmp_path: Path) -> None:
    # the first opener switches the new file to WAL; SQLite refuses a concurrent switch at once, busy timeout
    # or not, and the store must wait its turn (CI once failed a concurrent publish on this)
    for attempt in range(40):
        url = f"sqlite:///{tmp_path / f'p{attempt}.db'}"
        ready = threading.Barrier(3)
        errors: list[BaseException] = []

        def open_and_write(
            run_id: str, url: str = url, ready: threading.Barrier = ready, errors: list[BaseException] = errors
        ) -> None:
            try:
                ready.wait()
                with open_store(url, namespace="together") as own:
                    own.publish(assignments({"A": run_id}), run_id, D1, "m1")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_and_write, args=(f"run-{n}",)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, f"attempt {attempt}: {errors}"
        with open_store(url, namespace="together") as store:
            assert store.current_run() in {"run-0", "run-1", "run-2"}


@pytest.mark.parametrize("bad", ["mysql://db/profiles", "profiles.db", "http://user:secret@host/x"])
def test_an_unsupported_scheme_lists_the_supported_ones(bad: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(bad)
    message = str(caught.value)
    assert all(scheme in message for scheme in ("sqlite", "postgresql", "redis"))
    assert "secret" not in message


def test_a_bad_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="namespace"):
        open_store(f"sqlite:///{tmp_path / 'p.db'}?namespace=Robert');DROP")


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "rfmseg.stores.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(StoreError) as caught:
        open_store(PG_URL)
    # this checkout is an editable install: the hint is its own pip on its own folder (tests/test_install.py)
    assert str(caught.value).endswith(f"the psycopg package: {install_command('postgres')}")
    assert "install -e '" in str(caught.value) and "[postgres]'" in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://app:secret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("postgresql://app@db/x?password=secret&sslmode=require") == (
        "postgresql://app@db/x?password=***&sslmode=require"
    )
    assert redact_url("redis://:secret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("sqlite:////var/lib/rfmseg/profiles.db") == "sqlite:////var/lib/rfmseg/profiles.db"


def test_drop_removes_everything_of_the_namespace(store: ProfileStore, backend: str, url: str) -> None:
    store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
    store.publish(assignments({"A": "Loyal"}), "r2", D2, "m1")
    assert objects(backend, url, store.namespace)
    store.drop()
    assert objects(backend, url, store.namespace) == []
    assert store.current_run() is None and store.count() == 0 and store.get("A") is None
    report = store.publish(assignments({"A": "Loyal"}), "r3", D3, "m1")
    assert (report.changed, report.new) == (0, 1) and store.get("A")["previous_segment"] is None


def test_a_closed_store_is_unhealthy_and_refuses_reads(store: ProfileStore) -> None:
    store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
    store.close()
    health = store.health()
    assert health["ok"] is False and health["url"] == store.url_display and "closed" in health["error"]
    with pytest.raises(StoreError, match="closed"):
        store.get("A")


@pytest.mark.services
@pytest.mark.parametrize("server_url", [PG_URL, REDIS_URL], ids=["postgres", "redis"])
def test_reads_survive_a_dropped_connection(server_url: str) -> None:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    backend = "postgres" if server_url.startswith("postgres") else "redis"
    # the store's connections carry the namespace as their name, so only they are cut (others share the server)
    name_param = "application_name" if backend == "postgres" else "client_name"
    try:
        with open_store(f"{server_url}?{name_param}={namespace}", namespace=namespace) as store:
            store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
            assert store.get("A") is not None
            if backend == "postgres":
                import psycopg

                with psycopg.connect(server_url, autocommit=True) as admin:
                    killed = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                        (namespace,),
                    ).fetchone()
            else:
                import redis

                admin = redis.Redis.from_url(server_url)
                ids = [c["id"] for c in admin.client_list() if c.get("name") == namespace]
                killed = [admin.client_kill_filter(_id=client_id) for client_id in ids]
                admin.close()
            assert killed and killed[0]
            assert store.get("A")["segment"] == "Champions"
            assert store.health()["ok"] is True
    finally:
        purge(backend, server_url, namespace)


@pytest.mark.services
def test_postgres_history_without_a_snapshot_is_read_from_the_table() -> None:
    import psycopg

    namespace = f"t{uuid.uuid4().hex[:12]}"
    try:
        with open_store(PG_URL, namespace=namespace) as store:
            store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'DELETE FROM "{namespace}_state"')
            report = store.publish(assignments({"A": "Champions", "B": "New", "C": "New"}), "r2", D2, "m1")
            assert (report.changed, report.new) == (1, 1)
            assert store.get("A")["segment_since"] == "2024-10-31" and store.get("B")["previous_segment"] == "Loyal"
    finally:
        purge("postgres", PG_URL, namespace)


def test_sqlite_urls_follow_the_sqlalchemy_convention() -> None:
    from rfmseg.stores.sqlite_file import sqlite_path

    assert sqlite_path("sqlite:///profiles.db") == Path("profiles.db")
    assert sqlite_path("sqlite:///runs/profiles.db") == Path("runs/profiles.db")
    assert sqlite_path("sqlite:////var/lib/rfmseg/profiles.db") == Path("/var/lib/rfmseg/profiles.db")
    with pytest.raises(StoreError, match="no host"):
        sqlite_path("sqlite://host/profiles.db")
    with pytest.raises(StoreError, match="file path"):
        sqlite_path("sqlite://")


def test_numeric_customer_ids_are_served_as_strings(store: ProfileStore) -> None:
    table = pa.table(
        {
            "customer_id": pa.array([17850, 13047], pa.int64()),
            "segment": ["Loyal", "New"],
            "recency_days": pa.array([3, 40], pa.int32()),
            "frequency": pa.array([12, 1], pa.int32()),
            "monetary": pa.array([5391.21, 99.5], pa.float32()),
            "distance": pa.array([0.5, 1.5], pa.float64()),
        }
    )
    store.publish(table, "r1", D1, "m1")
    profile = store.get("17850")
    assert profile is not None and profile["customer_id"] == "17850" and profile["frequency"] == 12
    assert isinstance(profile["monetary"], float)


# --- each customer's rhythm -------------------------------------------------------------------------------

RHYTHM = {
    "p_alive": [0.875, None, 0.0],
    "expected_orders_90d": [1.5, None, 0.0],
    "expected_value_90d": [420.25, None, 0.0],
}


def with_rhythm(table: pa.Table) -> pa.Table:
    """``table`` (three customers) with the rhythm columns; the second customer's are NaN (null)."""
    for name, values in RHYTHM.items():
        table = table.append_column(name, pa.array([float("nan") if v is None else v for v in values]))
    return table


def test_the_profile_carries_the_rhythm(store: ProfileStore) -> None:
    """Published in one go or staged in batches, a profile has p_alive, expected_orders_90d and
    expected_value_90d; NaN (no dated history) is stored as null."""
    table = with_rhythm(assignments({"A": "Champions", "B": "Loyal", "C": "At risk"}))
    store.publish(table, "run-1", D1, "m1")
    many = store.get_many(["A", "B", "C"])
    for i, cid in enumerate("ABC"):
        assert {name: many[cid][name] for name in RHYTHM} == {name: values[i] for name, values in RHYTHM.items()}
    assert store.get("A")["expected_value_90d"] == 420.25
    with store.begin_publish("run-2", D2, "m1") as staged, rfmseg.stores.open_stager(staged.token) as stager:
        stager.stage(table.slice(0, 2))
        stager.stage(table.slice(2))
        staged.commit(3)
    assert store.get("A")["p_alive"] == 0.875 and store.get("B")["p_alive"] is None
    assert store.get("C")["expected_orders_90d"] == 0.0


def test_a_store_published_before_the_rhythm_reads_it_as_null(backend: str, url: str, store: ProfileStore) -> None:
    """The served table of an earlier rfmseg has no rhythm columns: its profiles read them as null until the
    next publish (which adds them)."""
    store.publish(assignments({"A": "Champions", "B": "Loyal"}), "run-1", D1, "m1")
    ns = store.namespace
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        table = conn.execute(f'SELECT table_name FROM "{ns}_meta"').fetchone()[0]
        conn.execute(f'DROP VIEW "{ns}_current"')
        conn.execute(
            f'CREATE VIEW "{ns}_current" AS SELECT p.customer_id, p.segment, p.previous_segment, p.segment_since, '
            "p.recency_days, p.frequency, p.monetary, p.distance, m.run_id, m.as_of, m.model_version "
            f'FROM "{table}" AS p CROSS JOIN "{ns}_meta" AS m'
        )
        conn.commit()
        conn.close()
    elif backend == "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as conn:
            view, meta = sql.Identifier(f"{ns}_current"), sql.Identifier(f"{ns}_meta")
            table = conn.execute(sql.SQL("SELECT table_name FROM {}").format(meta)).fetchone()[0]
            conn.execute(sql.SQL("DROP VIEW {}").format(view))
            conn.execute(
                sql.SQL(
                    "CREATE VIEW {} AS SELECT p.customer_id, p.segment, p.previous_segment, p.segment_since, "
                    "p.recency_days, p.frequency, p.monetary, p.distance, m.run_id, m.as_of, m.model_version "
                    "FROM {} AS p CROSS JOIN {} AS m"
                ).format(view, sql.Identifier(table), meta)
            )
    else:
        import json

        import redis

        client = redis.Redis.from_url(url)
        key = json.loads(client.get(f"{ns}:current"))["key"]
        packed = client.hget(key, "A").decode().split("\x1f")[:7]  # the seven fields of an earlier publish
        client.hset(key, "A", "\x1f".join(packed))
        client.close()
    old = store.get("A")
    assert old is not None and old["segment"] == "Champions" and old["distance"] == 0.5
    assert [old[name] for name in RHYTHM] == [None, None, None]
    assert tuple(store.get_many(["A"])["A"]) == PROFILE_FIELDS
    store.publish(with_rhythm(assignments({"A": "Champions", "B": "Loyal", "C": "At risk"})), "run-2", D2, "m1")
    assert store.get("A")["p_alive"] == 0.875
