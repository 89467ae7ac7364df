"""Choosing K: silhouette on a seeded sample, bootstrap stability, and a recommendation that says which metrics
agreed and which did not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfmseg.cli.options import flag_of
from rfmseg.errors import ParameterError
from rfmseg.model.choose_k import STABLE_ARI, bootstrap_stability, choose_k, recommend


def blobs(k: int, per: int, seed: int = 0, spread: float = 0.03) -> np.ndarray:
    """k well-separated groups in the unit cube (RFM-shaped: 3 columns)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (k, 3))
    while min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]) < 0.3:
        centres = rng.uniform(0.1, 0.9, (k, 3))
    return np.vstack([c + rng.normal(0, spread, (per, 3)) for c in centres])


def test_stability_separates_real_groups_from_arbitrary_cuts() -> None:
    x = blobs(3, 80)
    assert bootstrap_stability(x, 3, resamples=4, n_init=3)["stability"] > 0.95
    # a uniform ball has no groups: how K-Means cuts it into 2 depends on the sample
    rng = np.random.default_rng(1)
    ball = rng.normal(size=(400, 3))
    ball /= np.linalg.norm(ball, axis=1, keepdims=True)
    ball *= rng.uniform(0, 1, (400, 1)) ** (1 / 3)
    cut = bootstrap_stability(ball, 2, resamples=5, n_init=3)
    assert cut["stability"] < STABLE_ARI and cut["stability_min"] <= cut["stability"]


def test_stability_is_seeded() -> None:
    x = blobs(4, 40, seed=2, spread=0.12)
    assert bootstrap_stability(x, 5, 4, 2, seed=7) == bootstrap_stability(x, 5, 4, 2, seed=7)


def test_study_recommends_four_and_says_why(study_orders: Path) -> None:
    import rfmseg
    from rfmseg.datasets import study
    from rfmseg.model.scoring import rfm_matrix

    result = rfmseg.segment(study_orders, as_of=study.AS_OF, runs_dir=None)
    out = choose_k(rfm_matrix(result.rfm))
    assert out["recommended_k"] == 4
    four = next(m for m in out["metrics"] if m["k"] == 4)
    assert four["stability"] == pytest.approx(1.0) and four["stability_min"] == pytest.approx(1.0)
    assert out["stability"] == {"resamples": 5, "n_init": 3, "sample": 200, "threshold": STABLE_ARI}
    assert 4 in out["stable_k"]
    assert out["reason"].startswith("K=4: ") and "stable across bootstrap resamples (mean ARI 1.00)" in out["reason"]
    for metric in out["agreed"]:
        assert out["votes"][metric] == 4 and metric in out["reason"]
    for metric, k in out["disagreed"].items():
        assert k != 4 and f"{metric} prefers K={k}" in out["reason"]


def _row(k: int, sil: float, ch: float, db: float, inertia: float, stab: float | None = None) -> dict:
    row = {"k": k, "silhouette": sil, "calinski_harabasz": ch, "davies_bouldin": db, "inertia": inertia}
    if stab is not None:
        row["stability"] = stab
    return row


def test_unstable_k_is_not_recommended_even_with_most_votes() -> None:
    # silhouette, CH and DB all prefer K=5, but its segments change with the sample
    rows = [
        _row(2, 0.40, 100, 0.9, 100, 0.99),
        _row(3, 0.45, 120, 0.8, 60, 0.95),
        _row(4, 0.47, 130, 0.7, 35, 0.90),
        _row(5, 0.50, 150, 0.6, 30, 0.55),
        _row(6, 0.30, 110, 1.0, 27, 0.60),
    ]
    rec = recommend(rows)
    assert recommend([{k: v for k, v in r.items() if k != "stability"} for r in rows])["recommended_k"] == 5
    assert rec["recommended_k"] == 4
    assert rec["stable_k"] == [2, 3, 4]
    assert "K=5 not recommended: its segments change with the sample (mean ARI 0.55)" in rec["reason"]
    assert "silhouette (highest) prefers K=5" in rec["reason"]


def test_no_stable_k_is_said_plainly() -> None:
    rows = [_row(2, 0.3, 10, 1.0, 10, 0.4), _row(3, 0.35, 12, 0.9, 5, 0.5), _row(4, 0.2, 11, 1.1, 4, 0.3)]
    rec = recommend(rows)
    assert rec["recommended_k"] == 3 and rec["stable_k"] == []
    assert "no K is stable (best mean ARI 0.50 < 0.8)" in rec["reason"]


def test_silhouette_on_a_seeded_sample_is_reported() -> None:
    x = blobs(3, 700, seed=4)
    a = choose_k(x, k_max=4, n_init=2, sample_size=500, stability=False)
    b = choose_k(x, k_max=4, n_init=2, sample_size=500, stability=False)
    assert a["silhouette_sample"] == 500 and a["n_customers"] == 2100
    assert [m["silhouette"] for m in a["metrics"]] == [m["silhouette"] for m in b["metrics"]]
    assert a["recommended_k"] == 3
    assert "stability" not in a and "stability" not in a["metrics"][0] and "stable" not in a["reason"]
    c = choose_k(x, k_max=4, n_init=2, sample_size=500, resamples=3)
    assert c["stability"]["sample"] == 500 and c["recommended_k"] == 3


def test_bad_settings_are_parameter_errors() -> None:
    x = blobs(2, 10)
    with pytest.raises(ParameterError, match="resamples"):
        choose_k(x, resamples=1)
    with pytest.raises(ParameterError, match=r"^sample_size 1 should be at least 2 customers$") as caught:
        choose_k(x, sample_size=1)  # the Python parameter; the CLI names its flag
    assert caught.value.render(flag_of) == "--sample-size 1 should be at least 2 customers"
    with pytest.raises(ParameterError, match="needs more customers"):
        choose_k(x[:2])


@pytest.mark.parametrize(("k_min", "k_max"), [(11, 13), (2, 50), (1, 4)])
def test_choose_k_tries_only_the_k_run_accepts(cli, study_orders: Path, tmp_path: Path, k_min: int, k_max: int) -> None:
    """A K choose-k recommends is one `run --k` takes: a range reaching beyond it is refused with that range."""
    r = cli("choose-k", study_orders, "--k-min", k_min, "--k-max", k_max)
    assert r.code == 2 and r.out == ""
    assert r.err.strip() == (
        f"error: --k-min {k_min} to --k-max {k_max} goes beyond the K a run accepts, 2 to 10; give --k-min and "
        "--k-max within 2 to 10"
    )
    with pytest.raises(ParameterError, match="goes beyond the K a run accepts, 2 to 10"):
        choose_k(blobs(2, 10), k_min=k_min, k_max=k_max)
    run = cli("run", study_orders, "--k", "11", "--runs-dir", tmp_path / "runs")
    assert run.code == 2 and "from 2 to 10" in run.err  # the same range, from the same constants
    assert not (tmp_path / "runs").exists()


def test_choose_k_command_shows_stability(cli, study_orders: Path) -> None:
    r = cli("choose-k", study_orders, "--as-of", "2024-12-31", "--resamples", "3", "--k-max", "6")
    assert r.code == 0, r.err
    assert "stability (ARI)" in r.out and "stability over 3 bootstrap resamples" in r.out
    assert "Recommended: K=4" in r.out
    data = cli("choose-k", study_orders, "--as-of", "2024-12-31", "--no-stability", "--json", "--k-max", "6").json()
    assert data["recommended_k"] == 4 and "stability" not in data


def test_a_metric_without_a_choice_is_named() -> None:
    # inertia falling in a straight line has no knee
    rows = [_row(k, 0.5 - 0.01 * k, 100 - k, 0.5 + 0.01 * k, 100 - 10 * k, 0.95) for k in range(2, 7)]
    rec = recommend(rows)
    assert rec["votes"]["elbow (inertia knee)"] is None
    assert "elbow (inertia knee) finds no clear K" in rec["reason"] and rec["recommended_k"] == 2
