"""The segment model: naming rules, determinism, storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rfmseg
from rfmseg.datasets import study
from rfmseg.errors import ModelFormatError, ParameterError
from rfmseg.model import SegmentModel
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary, levels, name_clusters
from rfmseg.model.scoring import rfm_matrix


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return rfm_matrix(rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None).rfm)


def heavy_tailed(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frequency = rng.geometric(0.35, n).astype(float)
    monetary = np.round(frequency * rng.lognormal(4, 0.8, n), 2)
    recency = rng.integers(0, 700, n).astype(float)
    return np.column_stack([recency, frequency, monetary])


@pytest.mark.parametrize("k", range(2, 11))
def test_every_k_gets_unique_names_and_reasons(x: np.ndarray, k: int) -> None:
    model = SegmentModel(k=k).fit(x)
    assert len(model.names_) == k == len(set(model.names_))
    assert all(n in {t.name for t in DEFAULT_VOCABULARY.types} for n in model.names_)
    assert all(r.startswith("typical member:") for r in model.reasons_)


def test_naming_is_deterministic_and_follows_the_levels() -> None:
    data = heavy_tailed()
    a = SegmentModel(k=5, transform="log-minmax").fit(data)
    b = SegmentModel(k=5, transform="log-minmax").fit(data)
    assert a.names_ == b.names_
    if "Champions" in a.names_:
        c = a.names_.index("Champions")
        lv = np.asarray(a.levels_)
        # the segment called Champions is the best on the sum of its three levels
        assert lv[c].sum() == lv.sum(axis=1).max()


def test_levels_are_shares_of_the_population() -> None:
    population = np.array([[10, 1, 100], [20, 2, 200], [30, 3, 300], [40, 4, 400]], float)
    lv = levels(np.array([[25, 2.5, 250]], float), population)
    # recency 25: two of four customers are less recent (30, 40) -> 0.5; F and M: two below -> 0.5
    assert lv.tolist() == [[0.5, 0.5, 0.5]]
    ties = levels(np.array([[10, 1, 100]], float), population)
    assert ties.tolist() == [[1 - 0.125, 0.125, 0.125]]  # a tie counts half


def test_custom_vocabulary_is_data() -> None:
    voc = Vocabulary.from_records(
        [
            {"name": "Best", "recency": 1, "frequency": 1, "monetary": 1, "action": "thank them", "priority": 1},
            {"name": "Rest", "recency": 0, "frequency": 0, "monetary": 0, "action": "nudge them", "priority": 2},
        ]
    )
    population = heavy_tailed(500)
    centroids = np.array([[5, 10, 2000], [600, 1, 20]], float)
    named = name_clusters(centroids, population, voc)
    assert [n.name for n in named] == ["Best", "Rest"]
    with pytest.raises(ParameterError, match="k 3 is more segments than the vocabulary has names"):
        name_clusters(np.vstack([centroids, centroids[:1]]), population, voc)
    with pytest.raises(ParameterError, match="levels must lie in"):
        Vocabulary.from_records([{"name": "X", "recency": 2, "frequency": 0, "monetary": 0}])


@pytest.mark.parametrize("transform", ["minmax", "log-minmax", "rank"])
def test_stored_model_scores_like_the_fitted_one(tmp_path: Path, transform: str) -> None:
    data = heavy_tailed()
    model = SegmentModel(k=4, transform=transform).fit(data)
    model.save(tmp_path / "model.json")
    loaded = SegmentModel.load(tmp_path / "model.json")
    a, b = model.predict(data), loaded.predict(data)
    assert a.segments == b.segments
    np.testing.assert_allclose(a.distance, b.distance)
    np.testing.assert_allclose(loaded.centroids_raw_, model.centroids_raw_)


def test_model_format_version_is_checked(tmp_path: Path, x: np.ndarray) -> None:
    path = tmp_path / "model.json"
    SegmentModel(k=4).fit(x).save(path)
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="model format version 99 cannot be read"):
        SegmentModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        SegmentModel.load(path)


def test_predict_before_fit_and_bad_k(x: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="not fitted"):
        SegmentModel().predict(x)
    with pytest.raises(ParameterError, match="k 1 should be a whole number >= 2"):
        SegmentModel(k=1).fit(x)
    same = np.repeat(x[:1], 10, axis=0)
    with pytest.raises(ParameterError, match="needs at least 4 customers with different RFM values"):
        SegmentModel(k=4).fit(same)


def test_centroids_in_both_units(x: np.ndarray) -> None:
    model = SegmentModel(k=4).fit(x)
    # min-max is affine, so the raw centroid is the inverse transform of the scaled one
    np.testing.assert_allclose(model.transform_.invert(model.centroids_scaled_), model.centroids_raw_, rtol=1e-9)
    champions = model.centroids_raw_[model.names_.index("Champions")]
    np.testing.assert_allclose(champions, [9, 32, 218_300 / 30])
