"""Quiet retrains (rfmseg.jobs.quiet): the hysteresis band on a small hand-made model, and the profile stores
keeping a drift move's history on every backend (SQLite; PostgreSQL and Redis when reachable: the databases
``RFMSEG_TEST_POSTGRES_URL`` and ``RFMSEG_TEST_REDIS_URL`` name)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rfmseg.errors import ParameterError, StoreError
from rfmseg.jobs import quiet
from rfmseg.model import SegmentModel
from rfmseg.model.scoring import REASON_DRIFT, REASON_HELD, score
from rfmseg.stores import open_store
from rfmseg.stores.rows import history_and_changes

PG_URL = os.environ.get("RFMSEG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RFMSEG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
D1, D2, D3 = dt.date(2024, 1, 7), dt.date(2024, 1, 14), dt.date(2024, 1, 21)


# --------------------------------------------------------------------------------------------- the band
def _model() -> tuple[SegmentModel, np.ndarray]:
    """Two well-separated groups on recency (0-10 and 90-100 days), same frequency and monetary spread."""
    rng = np.random.default_rng(3)
    near = np.column_stack([rng.uniform(0, 10, 50), rng.integers(5, 10, 50), rng.uniform(100, 200, 50)])
    far = np.column_stack([rng.uniform(90, 100, 50), rng.integers(5, 10, 50), rng.uniform(100, 200, 50)])
    x = np.vstack([near, far])
    return SegmentModel(k=2, random_state=1).fit(x), x


def _rfm(x: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"C{i}" for i in range(len(x))],
            "recency_days": pa.array(x[:, 0].round().astype(int)),
            "frequency": pa.array(x[:, 1].astype(int)),
            "monetary": pa.array(x[:, 2]),
            "first_order_date": pa.array([dt.date(2023, 1, 1)] * len(x)),
        }
    )


def test_the_band_holds_the_borderline_who_did_not_order() -> None:
    model, _ = _model()
    names = list(model.names_)
    recent = names[int(np.argmin(model.centroids_raw_[:, 0]))]
    # three customers just past the middle (on the far side), all "recent" in the previous run
    x = np.array([[52.0, 7, 150], [52.0, 7, 150], [80.0, 7, 150]])
    rfm = _rfm(x)
    a = score(model, rfm, D2, x=x)
    assert set(a.column("model_segment").to_pylist()) == {n for n in names if n != recent}
    previous = pa.table(
        {
            "customer_id": ["C0", "C1", "C2"],
            "segment": [recent] * 3,
            "segment_reason": ["nearest_centroid"] * 3,
            "frequency": [7.0, 6.0, 7.0],  # C1 ordered since: its own values moved
            "monetary": [150.0, 120.0, 150.0],
        }
    )
    held = quiet.hold(a, model, x, previous, 0.05).to_pylist()
    assert [r["segment"] for r in held] == [recent, held[1]["model_segment"], held[2]["model_segment"]]
    assert [r["segment_reason"] for r in held] == [REASON_HELD, "nearest_centroid", "nearest_centroid"]
    d = model.distances(x[:1])[0]
    assert held[0]["distance"] == pytest.approx(d[names.index(recent)])  # to the segment it keeps
    assert held[0]["model_segment"] != recent  # the nearest centroid is still said
    # no band, or no previous run: the model's labels as they are
    assert quiet.hold(a, model, x, previous, 0.0).equals(a) and quiet.hold(a, model, x, None, 0.05).equals(a)
    # the centroid shifts of the model's retrain widen the band: C2, far past the middle, is held too
    wide = quiet.hold(a, model, x, previous, 0.05, {n: 0.5 for n in names}).to_pylist()
    assert [r["segment"] for r in wide] == [recent, held[1]["segment"], recent]
    with pytest.raises(ParameterError, match=r"^hold -1"):
        quiet.check_hold(-1)


def test_a_retrain_holds_its_reference_label_whether_or_not_they_ordered() -> None:
    """In a retrain the band is around the reference label (the previous model's, what the same day's refresh
    publishes): a customer who ordered is held too, their behavioural move is in the reference already."""
    model, _ = _model()
    names = list(model.names_)
    recent = names[int(np.argmin(model.centroids_raw_[:, 0]))]
    far = next(n for n in names if n != recent)
    # C0 just past the middle, C1 far past it, C2 the same as C0 but cold start in the reference
    x = np.array([[52.0, 7, 150], [80.0, 7, 150], [52.0, 7, 150]])
    a = score(model, _rfm(x), D2, x=x)
    assert a.column("model_segment").to_pylist() == [far] * 3
    reference = a.set_column(1, "segment", pa.array([recent] * 3)).set_column(
        2, "segment_reason", pa.array(["nearest_centroid", "held", "cold_start"])
    )
    held = quiet.hold_reference(a, model, x, reference, 0.05).to_pylist()
    assert [r["segment"] for r in held] == [recent, far, far]
    assert [r["segment_reason"] for r in held] == [REASON_HELD, "nearest_centroid", "nearest_centroid"]
    assert held[0]["model_segment"] == far  # the new model's nearest is still said
    # the centroid shifts of the retrain widen the band (C1 is held too); no band: the model's labels
    wide = quiet.hold_reference(a, model, x, reference, 0.05, {n: 0.5 for n in names}).to_pylist()
    assert [r["segment"] for r in wide] == [recent, recent, far]
    assert quiet.hold_reference(a, model, x, reference, 0.0).equals(a)


def test_drift_is_a_move_the_previous_model_did_not_make() -> None:
    model, _ = _model()
    names = list(model.names_)
    x = np.array([[52.0, 7, 150], [52.0, 7, 150], [52.0, 7, 150], [52.0, 7, 150]])
    a = score(model, _rfm(x), D2, x=x)
    other = a.column("segment")[0].as_py()
    stay = next(n for n in names if n != other)
    previous = pa.table(
        {
            "customer_id": ["C0", "C1", "C2", "C3"],
            "segment": [stay, stay, other, stay],
            "segment_reason": ["nearest_centroid"] * 4,
            "frequency": [7.0, 6.0, 7.0, 6.0],  # C1 and C3 ordered since
            "monetary": [150.0, 150.0, 150.0, 150.0],
        }
    )
    # the previous model kept C0 and C3 where they were, moved C1
    reference = a.set_column(1, "segment", pa.array([stay, other, other, stay]))
    marked, report = quiet.mark_drift(a, reference, previous)
    reasons = marked.column("segment_reason").to_pylist()
    # C0 and C3: the previous model kept them, the new one moved them: drift, whether or not they ordered (by
    # the previous model's yardstick C3's order did not change their segment). C1: the previous model moved
    # it too: behaviour. C2 stayed.
    assert reasons == [REASON_DRIFT, "nearest_centroid", "nearest_centroid", REASON_DRIFT]
    assert report["moves"] == 2 and report["matrix"] == {stay: {other: 2}} and report["behaviour_moves"] == 1
    assert report["relabelled_vs_refresh"] == 2 and report["held"] == 0


# --------------------------------------------------------------------------------------------- the stores
def _assignments(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "segment": [r[1] for r in rows],
            "segment_reason": [r[2] for r in rows],
            "recency_days": pa.array([5] * len(rows)),
            "frequency": pa.array([3] * len(rows)),
            "monetary": pa.array([100.0] * len(rows)),
            "distance": pa.array([0.1] * len(rows)),
        }
    )


RUNS = [
    (D1, [("A", "Occasional", "nearest_centroid"), ("B", "Occasional", "nearest_centroid")]),
    (D2, [("A", "Loyal Buyers", "nearest_centroid"), ("B", "Loyal Buyers", REASON_DRIFT)]),
    (D3, [("A", "Loyal Buyers", "nearest_centroid"), ("B", "Champions", "nearest_centroid")]),
]


def test_the_history_rule_keeps_a_drift_moves_history() -> None:
    served = pa.table(
        {
            "customer_id": pa.array([], pa.string()),
            "segment": pa.array([], pa.string()),
            "previous_segment": pa.array([], pa.string()),
            "segment_since": pa.array([], pa.date32()),
        }
    )
    for day, rows in RUNS:
        out, changed, new, changes = history_and_changes(_assignments(rows), served, day, departures=False)
        served = out
        if day == D2:
            got = {r["customer_id"]: r for r in out.to_pylist()}
            assert (got["A"]["previous_segment"], got["A"]["segment_since"]) == ("Occasional", D2)  # behaviour
            assert (got["B"]["previous_segment"], got["B"]["segment_since"]) == (None, D1)  # drift: as it was
            assert changed == 2 and new == 0  # both moved (the feed records both)
            assert changes.column("segment_reason").to_pylist() == ["nearest_centroid", REASON_DRIFT]
    got = {r["customer_id"]: r for r in served.to_pylist()}
    assert (got["B"]["previous_segment"], got["B"]["segment_since"]) == ("Loyal Buyers", D3)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    backend = str(request.param)
    url = {"sqlite": f"sqlite:///{tmp_path / 'profiles.db'}", "postgres": PG_URL, "redis": REDIS_URL}[backend]
    namespace = f"q{uuid.uuid4().hex[:12]}"
    try:
        with open_store(url, namespace=namespace):
            pass
    except StoreError as exc:
        pytest.skip(f"{backend} not reachable: {exc}")
    yield url, namespace
    _purge(backend, url, namespace)


def test_every_store_keeps_a_drift_moves_history(store_url: tuple[str, str]) -> None:
    url, namespace = store_url
    with open_store(url, namespace=namespace) as store:
        for i, (day, rows) in enumerate(RUNS):
            store.publish(_assignments(rows), f"run{i}", day, f"model{i}")
            got = store.get_many(["A", "B"])
            if day == D2:
                assert (got["A"]["previous_segment"], got["A"]["segment_since"]) == ("Occasional", D2.isoformat())
                assert got["B"]["segment"] == "Loyal Buyers"
                assert (got["B"]["previous_segment"], got["B"]["segment_since"]) == (None, D1.isoformat())
        assert (got["B"]["previous_segment"], got["B"]["segment_since"]) == ("Loyal Buyers", D3.isoformat())


def _purge(backend: str, url: str, namespace: str) -> None:
    if backend == "postgres":
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
    elif backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()
