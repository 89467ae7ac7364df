"""minmax, log-minmax and rank: hand-computed toy cases, storage with the model, and new customers transformed
exactly as the training customers were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import rfmseg
from rfmseg.errors import ParameterError
from rfmseg.model.segment_model import SegmentModel
from rfmseg.model.transform import TRANSFORMS, Transform


def heavy_tailed(n: int = 600, seed: int = 3) -> np.ndarray:
    """RFM-like data: recency uniform, frequency geometric, monetary log-normal with a few whales."""
    rng = np.random.default_rng(seed)
    r = rng.integers(1, 365, n).astype(float)
    f = rng.geometric(0.35, n).astype(float)
    m = np.round(rng.lognormal(5.5, 1.0, n) * f, 2)
    m[rng.choice(n, 3, replace=False)] *= 200  # whales
    return np.column_stack([r, f, m])


def test_minmax_by_hand() -> None:
    x = np.array([[1.0, 10, 0], [2, 20, 50], [5, 30, 100]])
    t = Transform.fit("minmax", x)
    np.testing.assert_allclose(t.apply(x), [[0, 0, 0], [0.25, 0.5, 0.5], [1, 1, 1]])
    np.testing.assert_allclose(t.apply(np.array([[9.0, 40, 200]])), [[2, 1.5, 2]])  # outside: not clipped
    np.testing.assert_allclose(t.invert(t.apply(x)), x)


def test_log_minmax_by_hand() -> None:
    e = np.e
    x = np.array([[0.0, 0, 0], [e - 1, e - 1, e - 1], [e**2 - 1, e**2 - 1, e**2 - 1]])
    t = Transform.fit("log-minmax", x)
    np.testing.assert_allclose(t.apply(x), [[0, 0, 0], [0.5] * 3, [1] * 3])
    assert t.apply(np.array([[0.0, 0, -50]]))[0, 2] == 0.0  # net-negative spend sits with zero spend
    np.testing.assert_allclose(t.invert(t.apply(x)), x, atol=1e-9)


def test_rank_by_hand() -> None:
    x = np.column_stack([np.arange(101.0), np.arange(101.0) ** 3, np.r_[np.zeros(50), np.ones(51)]])
    t = Transform.fit("rank", x)
    z = t.apply(x)
    np.testing.assert_allclose(z[:, 0], np.arange(101) / 100, atol=1e-9)  # uniform: rank = position
    np.testing.assert_allclose(z[:, 1], z[:, 0], atol=1e-9)  # only order matters, not the scale
    # ties sit in the middle of their run of equal values (then min-max over the two tied masses)
    assert len(np.unique(z[:, 2])) == 2 and z[0, 2] == 0.0 and z[-1, 2] == 1.0
    np.testing.assert_allclose(t.apply(np.array([[50.5, 50.5**3, 0]]))[0, :2], [0.505, 0.505], atol=2e-3)


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_training_data_maps_onto_unit_interval(kind: str) -> None:
    x = heavy_tailed()
    z = Transform.fit(kind, x).apply(x)
    np.testing.assert_allclose(z.min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.max(axis=0), 1, atol=1e-12)
    # order is kept on every feature
    for j in range(3):
        order = np.argsort(x[:, j], kind="stable")
        assert (np.diff(z[order, j]) >= -1e-12).all()


def test_whales_stretch_minmax_but_not_rank() -> None:
    x = heavy_tailed()
    spread = {k: float(np.median(Transform.fit(k, x).apply(x)[:, 2])) for k in TRANSFORMS}
    assert spread["minmax"] < 0.01  # the median customer is squashed against zero by the whales
    assert 0.3 < spread["log-minmax"] < 0.7
    assert spread["rank"] == pytest.approx(0.5, abs=0.01)
    # one more whale moves everybody under min-max, almost nobody under rank
    bigger = x.copy()
    bigger[np.argmax(x[:, 2]), 2] *= 10
    for kind, limit in (("minmax", None), ("rank", 1e-3)):
        before = Transform.fit(kind, x).apply(x)[:, 2]
        after = Transform.fit(kind, bigger).apply(bigger)[:, 2]
        others = np.arange(len(x)) != np.argmax(x[:, 2])
        moved = np.abs(after - before)[others]
        if limit is None:  # every ordinary customer's scaled spend collapses to about a tenth
            assert np.median(moved / before[others].clip(1e-12)) > 0.8
        else:
            assert moved.max() < limit and (moved > 1e-9).sum() <= 3  # at most the other whales shift a hair


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_stored_with_the_model_and_new_customers_scored_identically(kind: str) -> None:
    x = heavy_tailed()
    model = SegmentModel(k=4, transform=kind, n_init=4, random_state=0).fit(x)
    loaded = SegmentModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert loaded.to_dict()["transform"] == model.to_dict()["transform"]
    fresh = heavy_tailed(200, seed=11)
    fresh[0] = [1000.0, 500.0, 1e7]  # far outside the training range
    np.testing.assert_array_equal(loaded.transform_.apply(fresh), model.transform_.apply(fresh))
    a, b = model.predict(fresh), loaded.predict(fresh)
    assert a.segments == b.segments
    np.testing.assert_array_equal(a.distance, b.distance)
    # the training fit is not redone on new data: the same customer gets the same scaled values alone or in a crowd
    np.testing.assert_array_equal(model.transform_.apply(fresh[:1]), model.transform_.apply(fresh)[:1])


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_run_writes_the_transform_and_its_model_reproduces_the_run(kind: str, tmp_path: Path) -> None:
    x = heavy_tailed(300, seed=5)
    rng = np.random.default_rng(1)
    rows = []
    for i, (r, f, m) in enumerate(x):
        last = pd.Timestamp("2024-12-31") - pd.Timedelta(days=int(r))
        for j in range(int(f)):
            rows.append((f"C{i:04d}", f"O{i}-{j}", last - pd.Timedelta(days=int(rng.integers(0, 30)) * j), m / f))
    orders = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "amount"])
    result = rfmseg.segment(orders, as_of="2024-12-31", k=4, transform=kind, runs_dir=tmp_path)
    model_json = json.loads((result.path / "model.json").read_text())
    assert model_json["params"]["transform"] == kind and model_json["transform"]["kind"] == kind
    if kind == "rank":
        assert len(model_json["transform"]["quantiles"]) > 2  # the quantile grid travels with the model
    model = SegmentModel.from_dict(model_json)
    a = pq.read_table(result.path / "assignments.parquet").to_pandas()
    again = model.predict(a[["recency_days", "frequency", "monetary"]].to_numpy(float))
    assert again.segments == a["segment"].tolist()
    np.testing.assert_allclose(again.distance, a["distance"].to_numpy())


def test_unknown_transform_is_a_one_line_error(cli, study_orders: Path, runs_dir: Path) -> None:
    r = cli("run", study_orders, "--transform", "zscore", "--runs-dir", runs_dir)
    assert r.code == 2 and "'zscore' is not allowed" in r.err and "log-minmax" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    with pytest.raises(ParameterError, match="unknown transform 'zscore'"):
        Transform.fit("zscore", heavy_tailed(10))
