"""What refresh and retrain share (rfmseg.jobs.JobOptions, one manifest builder) and the manifest layout
every kind of run has. Real runs of the study and of the saas sample, on disk."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from rfmseg import jobs as life
from rfmseg.datasets import study
from rfmseg.io.intake import read_rfm
from rfmseg.jobs.run import segment
from rfmseg.presets import get_preset
from rfmseg.runs.manifest import run_manifest

LAYOUT = [
    "run_id",
    "kind",
    "model_version",
    "idempotency_key",
    "data_sha256",
    "created",
    "input",
    "as_of",
    "rows",
    "customers",
    "params",
]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, life.LifeResult]:
    """A study run, then a refresh and a retrain of it as of 2024-12-31 (nothing published)."""
    runs = tmp_path_factory.mktemp("jobs") / "runs"
    orders = study.path(study.ORDERS_FILE)
    first = segment(orders, as_of=study.AS_OF, runs_dir=runs)
    refreshed = life.refresh(orders, as_of="2024-12-31", runs_dir=runs, publish=False, input_label="orders")
    retrained = life.retrain(orders, as_of="2024-12-31", runs_dir=runs, publish=False, max_name_shift=0.4)
    return {"first": first, "refresh": refreshed, "retrain": retrained}  # type: ignore[dict-item]


def manifest_file(result: life.LifeResult) -> dict:
    return json.loads((result.run.path / "manifest.json").read_text())


@pytest.mark.parametrize("job", [life.refresh, life.retrain])
def test_an_unknown_keyword_is_refused_before_any_work(job, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=rf"{job.__name__}\(\) got an unexpected keyword argument 'publsh'"):
        job(tmp_path / "no such file.csv", runs_dir=tmp_path / "runs", publsh=False)


def test_a_refresh_manifest_has_the_shared_layout(jobs) -> None:
    first, m = jobs["first"], manifest_file(jobs["refresh"])
    assert list(m) == [*LAYOUT, "versions", "source_run", "held", "rhythm", "cold_start", "timings"]
    assert (m["kind"], m["model_version"], m["source_run"]) == ("refresh", first.run_id, first.run_id)
    assert m["input"]["path"] == "orders" and m["as_of"] == "2024-12-31" and m["customers"] == 200
    # the model's parameters and the reading of its run
    model_params, reading = (
        ["k", "transform", "n_init", "random_state"],
        ["bad_rows", "returns", "preset", "preset_definition", "features"],
    )
    assert list(m["params"]) == model_params + reading
    assert m["params"] == {k: first.manifest["params"][k] for k in m["params"]}
    reasons = jobs["refresh"].run.table("assignments").column("segment_reason").to_pylist()
    cold = reasons.count("cold_start")
    assert m["cold_start"] == {"orders": 2, "days": 30, "segment": "Occasional", "customers": cold}
    assert m == jobs["refresh"].manifest


def test_a_retrain_manifest_has_the_shared_layout_and_its_own_keys(jobs) -> None:
    m = manifest_file(jobs["retrain"])
    extra = ["model", "previous_model", "names", "scoring_key", "held", "drift", "rhythm", "cold_start", "timings"]
    assert list(m) == [*LAYOUT, "versions", *extra]
    assert m["kind"] == "retrain" and m["model_version"] == m["run_id"] == jobs["retrain"].run_id
    assert m["params"]["max_name_shift"] == 0.4 and list(m["params"])[-2:] == ["max_name_shift", "hold"]
    assert m["previous_model"] == jobs["first"].run_id == m["names"]["previous_model"]
    # a refresh of the same day and data with the retrained model finds the retrain instead of writing
    again = life.refresh(
        study.path(study.ORDERS_FILE), as_of="2024-12-31", runs_dir=jobs["retrain"].run.path.parent, publish=False
    )
    assert (again.status, again.kind, again.run_id) == ("existing", "retrain", jobs["retrain"].run_id)


def test_run_manifest_rebuilds_the_manifest_of_a_run(jobs) -> None:
    """jobs.run.segment's manifest is run_manifest's, key for key and in the same order."""
    written = dict(jobs["first"].manifest)
    written.pop("timings")
    con = duckdb.connect()
    try:
        prepared = read_rfm(con, study.path(study.ORDERS_FILE), None, study.AS_OF)
    finally:
        con.close()
    rebuilt = run_manifest(
        run_id=written["run_id"],
        kind="run",
        model_version=written["model_version"],
        started=datetime.fromisoformat(written["created"]),
        prepared=prepared,
        rfm=prepared.rfm,
        data_sha256=written["data_sha256"],
        params=written["params"],
        **{k: written[k] for k in ("warnings", "net_nonpositive", "model", "engine", "rhythm")},
    )
    assert list(rebuilt) == list(written)
    assert rebuilt == written


def test_a_saas_retrain_keeps_speaking_of_users(tmp_path: Path) -> None:
    """model.json does not keep the vocabulary's entity: the retrain takes it from the reading's preset."""
    sample = get_preset("saas").sample_path()
    runs = tmp_path / "runs"
    segment(sample, preset="saas", runs_dir=runs)
    result = life.retrain(sample, runs_dir=runs, publish=False, k=5)  # preset, units: the trained run's
    reasons = [s["reason"] for s in result.summary["segments"] if s["reason"]]  # not the cold-start segment's
    assert len(reasons) == 5
    assert all("% of users)" in r and "customers" not in r for r in reasons)
