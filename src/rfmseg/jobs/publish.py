"""Publishing runs to the online profile store, and which store: ``rfmseg publish``, the publishing rule of
``rfmseg run`` (:func:`publish_target`), a job's run (:func:`publish_computed` for the run just computed
by an engine, :func:`publish_run` for a run folder). When the store is down the run stays on disk and the
error says how to publish it later.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from rfmseg.engines.base import Engine, publish_table
from rfmseg.errors import RfmsegError, StoreError
from rfmseg.model import SegmentModel
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, get_run, list_runs
from rfmseg.settings import default_store_url, store_configured, store_url


def run_date(run: Run) -> date:
    return manifest_date(run.manifest)


def manifest_date(m: Mapping[str, Any]) -> date:
    """The date a run is published as: its as-of date, else the day it was made."""
    if m.get("as_of"):
        return date.fromisoformat(m["as_of"])
    return datetime.fromisoformat(m["created"]).date()


def saved_for_later(exc: RfmsegError, run_id: str, run: Run | None) -> RfmsegError:
    """``exc`` (of the same class) saying where the unpublished run is kept and how to publish it later."""
    if run is None:
        return exc
    later = f"run {run_id} is saved in {run.path}, publish it later with `rfmseg publish {run_id}`"
    return type(exc)(f"{exc.template}; {later}", param=exc.params)  # still naming its parameters


def publish_run(run: Run | str, runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None) -> dict[str, Any]:
    """Publish a run's assignments to the profile store (atomic there). Returns the publish report as a dict.

    A store that cannot be reached raises StoreError naming the URL; the run stays on disk.
    """
    if isinstance(run, str):
        run = get_run(run, Path(runs_dir))
    model_version = str(run.manifest.get("model_version") or run.run_id)
    try:
        return publish_table(
            store_url(runs_dir, store), run.table("assignments"), run.run_id, run_date(run), model_version
        )
    except StoreError as exc:
        raise saved_for_later(exc, run.run_id, run) from None


def publish_target(
    runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None, publish: bool | None = None
) -> str | None:
    """The publishing rule of `rfmseg run`: the store URL a run is published to, or None. ``publish=True``
    publishes (to ``store``, $RFMSEG_STORE or the default SQLite store), ``False`` never does, ``None``
    publishes only when a store is configured (``store`` given or $RFMSEG_STORE set)."""
    if publish is False or (publish is None and not store_configured(store)):
        return None
    from rfmseg.stores import check_store_url

    url = store_url(runs_dir, store)
    check_store_url(url)  # before the run is computed and written: not after
    return url


def publish_if_configured(
    run: Run, runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None, publish: bool | None = None
) -> dict[str, Any] | None:
    """Publish ``run`` by the rule of :func:`publish_target`. Returns the publish report, or None when
    nothing was published."""
    url = publish_target(runs_dir, store, publish)
    return None if url is None else publish_run(run, runs_dir, url)


def publish_computed(
    engine: Engine, manifest: Mapping[str, Any], model: SegmentModel, assignments: pa.Table, url: str, run: Run | None
) -> dict[str, Any]:
    """Publish a run ``engine`` has just computed to the store at ``url`` (:meth:`Engine.publish`: the
    Spark engine from its executors when they reach the store). On failure the error (StoreError,
    SparkError) says where the run is saved and how to publish it later."""
    run_id = manifest["run_id"]
    as_of, model_version = manifest_date(manifest), str(manifest.get("model_version") or run_id)
    try:
        return engine.publish(url, run_id, as_of, model_version, model, assignments)
    except RfmsegError as exc:
        raise saved_for_later(exc, run_id, run) from None


def publish_job_run(run: Run, runs_dir: Path, store: str | None) -> dict[str, Any]:
    """Publish the run of a refresh or retrain, unless the store serves it already (a re-run of the same job)
    or serves a run of this runs folder as of a later day: a job for an earlier day (a backfill, a re-run of
    last week's refresh) does not roll the store back. ``rfmseg publish RUN`` does, on purpose."""
    try:
        served, current, shown = _served(store_url(runs_dir, store), runs_dir)
    except StoreError as exc:
        raise saved_for_later(exc, run.run_id, run) from None
    if served == run.run_id:
        return {"run_id": run.run_id, "store": shown, "skipped": "the store already serves this run"}
    if current is not None and run_date(current) > run_date(run):
        return {
            "run_id": run.run_id,
            "store": shown,
            "skipped": (
                f"the store serves run {served} as of {run_date(current)}, a later day than this run's "
                f"{run_date(run)}, and is not rolled back (`rfmseg publish {run.run_id}` publishes it all the same)"
            ),
        }
    return publish_run(run, runs_dir, store)


def _served(url: str, runs_dir: Path) -> tuple[str | None, Run | None, str]:
    """The run the store at ``url`` serves: its id, the run of ``runs_dir`` with that id (None when it is a
    run of another folder, or none is served) and the store's URL as shown."""
    from rfmseg.stores import open_store  # the store drivers load only when publishing

    with open_store(url) as s:
        served, shown = s.current_run(), s.url_display
    try:
        return served, get_run(served, runs_dir) if served else None, shown
    except RfmsegError:  # a run of another folder: nothing to compare with
        return served, None, shown


DEMO_FOLDER = "demo"
"""the folder, in a runs folder holding runs of other data, where ``rfmseg demo`` writes"""


def demo_runs_dir(runs_dir: Path, label: str) -> Path:
    """Where ``rfmseg demo`` (its input named ``label``) writes: ``runs_dir``, unless it holds runs of other
    data (yours): then its :data:`DEMO_FOLDER` folder, so that the study's model never becomes the one your
    refresh scores with, nor its run (as of 2024-12-31) the latest that watch, export and the API read."""
    mine = [r for r in list_runs(runs_dir) if (r.manifest.get("input") or {}).get("path") != label]
    return runs_dir / DEMO_FOLDER if mine else runs_dir


def publish_demo(run: Run, runs_dir: Path) -> dict[str, Any]:
    """Publish a demo run (``rfmseg demo``) to the embedded store of ``runs_dir``, so that ``rfmseg serve`` answers
    for its customers, unless that store serves a run of other data: a demo never replaces a user's published
    run (the report then says ``skipped`` and which run is served)."""
    url = default_store_url(runs_dir)
    served, other, shown = _served(url, runs_dir)
    of_other_data = other is None or other.manifest["input"].get("path") != run.manifest["input"].get("path")
    if served is not None and served != run.run_id and of_other_data:
        return {"run_id": run.run_id, "store": shown, "skipped": f"the store serves run {served}, not a demo"}
    return publish_run(run, runs_dir, url)
