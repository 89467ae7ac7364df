"""A profile store that stops answering: reads give up after ``read_timeout`` with a one-line StoreError,
then fail at once for a pause, and the API answers 503 instead of stalling its worker.

Real servers only: a Redis server of the test's own, stopped with SIGSTOP (it keeps accepting connections
but never answers); the shared PostgreSQL, whose reads wait behind a lock another session holds; and the
same PostgreSQL behind a TCP relay that stops passing bytes, as a hung host would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rfmseg.errors import ParameterError, StoreError
from rfmseg.stores import ProfileStore, open_store
from servers import free_port, wait_until_listening
from test_stores import D1, PG_URL, assignments, purge

pytestmark = pytest.mark.services

PAUSE_S = 0.3


@pytest.fixture(autouse=True)
def short_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rfmseg.stores.base.SILENT_PAUSE_S", PAUSE_S)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test alone (it will be stopped), on a free port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run `make services`")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp_path],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(port, proc, 30)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


def silent_read(store: ProfileStore, seconds: float) -> None:
    """The first read times out and says so; the next one fails at once, saying why."""
    with pytest.raises(StoreError) as first:
        store.get("A")
    assert f"did not answer a read within {seconds:g} s (timed out)" in str(first.value)
    assert "\n" not in str(first.value)
    with pytest.raises(StoreError, match=r"a moment ago \(reads fail at once for 0.3 s, then try it again\)"):
        store.get_many(["A", "B"])
    assert store.health()["ok"] is False


def test_a_stopped_redis_times_out_and_the_store_recovers(own_redis: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = own_redis
    with open_store(url, read_timeout=0.5) as store:
        store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
        proc.send_signal(signal.SIGSTOP)
        silent_read(store, 0.5)
        proc.send_signal(signal.SIGCONT)
        time.sleep(PAUSE_S)
        assert store.get("A")["segment"] == "Champions" and store.health()["ok"] is True


def test_the_api_answers_503_while_redis_is_stopped(
    own_redis: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from rfmseg.service import Settings, create_app

    url, proc = own_redis
    with open_store(url) as store:
        store.publish(assignments({"A": "Champions"}), "r1", D1, "m1")
    settings = Settings(runs_dir=tmp_path, store_url=url, store_timeout=0.5)
    with TestClient(create_app(settings)) as client:
        assert client.get("/customers/A").status_code == 200
        proc.send_signal(signal.SIGSTOP)
        try:
            slow = client.get("/customers/A")
            assert slow.status_code == 503 and "did not answer a read within 0.5 s" in slow.json()["detail"]
            fast = client.post("/customers/lookup", json={"ids": ["A"]})
            assert fast.status_code == 503 and "reads fail at once" in fast.json()["detail"]
            health = client.get("/health")
            assert health.status_code == 503
        finally:
            proc.send_signal(signal.SIGCONT)
        time.sleep(PAUSE_S)
        assert client.get("/customers/A").json()["segment"] == "Champions"


@pytest.fixture
def pg_namespace() -> Iterator[str]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    yield ns
    purge("postgres", PG_URL, ns)


def test_a_postgres_read_behind_a_lock_times_out(pg_namespace: str) -> None:
    with open_store(PG_URL, namespace=pg_namespace, read_timeout=0.5) as store:
        store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
        with psycopg.connect(PG_URL) as blocker:  # a transaction: the lock is held until it ends
            blocker.execute(f"LOCK TABLE {pg_namespace}_meta IN ACCESS EXCLUSIVE MODE")
            silent_read(store, 0.5)
        time.sleep(PAUSE_S)
        assert store.get("A")["segment"] == "Champions" and store.count() == 2


class Relay:
    """A TCP relay to PostgreSQL that can stop passing bytes while keeping its connections open."""

    def __init__(self, port: int) -> None:
        self.upstream = ("127.0.0.1", port)
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.01)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.frozen.clear()
        self.listener.close()


def test_a_postgres_host_that_stops_answering_is_cut_off(pg_namespace: str) -> None:
    parts = psycopg.conninfo.conninfo_to_dict(PG_URL)
    relay = Relay(int(parts.get("port") or 5432))
    relayed = f"postgresql://{parts.get('user', 'postgres')}@127.0.0.1:{relay.port}/{parts.get('dbname', 'test')}"
    try:
        with open_store(relayed, namespace=pg_namespace, read_timeout=0.5) as store:
            store.publish(assignments({"A": "Champions", "B": "Loyal"}), "r1", D1, "m1")
            assert store.get("B")["segment"] == "Loyal"
            relay.frozen.set()  # the server's answer never arrives, and no statement_timeout can help
            silent_read(store, 0.5)
            relay.frozen.clear()
            time.sleep(PAUSE_S)
            assert store.get("A")["segment"] == "Champions"  # a new connection
    finally:
        relay.close()


def test_a_read_timeout_must_be_a_positive_number(tmp_path: Path) -> None:
    for bad in (0, -1, "2", True):
        with pytest.raises(ParameterError, match="read timeout must be a number of seconds"):
            open_store(f"sqlite:///{tmp_path / 'p.db'}", read_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        (
            {"RFMSEG_STORE_TIMEOUT": "soon"},
            [],
            "error: RFMSEG_STORE_TIMEOUT='soon' is not a number of seconds above 0; e.g. RFMSEG_STORE_TIMEOUT=2",
        ),
        ({}, ["--store-timeout", "0"], "error: --store-timeout 0 is not a number of seconds in (0, 3600]; e.g. 2"),
    ],
)
def test_serve_refuses_a_bad_store_timeout_in_one_line(
    env: dict[str, str], args: list[str], message: str, tmp_path: Path
) -> None:
    res = subprocess.run(
        [str(Path(sys.executable).with_name("rfmseg")), "serve", "--runs-dir", str(tmp_path), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == message
