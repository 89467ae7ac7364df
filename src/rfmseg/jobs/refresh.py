"""``rfmseg refresh``, the daily job: today's RFM scored with the current model (no refit), written as a run
of kind 'refresh' and published."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Unpack

import pyarrow as pa

from rfmseg.errors import NotFoundError
from rfmseg.io.intake import Intake
from rfmseg.jobs.job import Job, JobManifest, JobOptions, LifeResult, job_runs_dir, refresh_key
from rfmseg.jobs.quiet import DEFAULT_HOLD, check_hold, previous_labels, previous_run, shifts_of
from rfmseg.jobs.quiet import hold as hold_labels
from rfmseg.jobs.reading import ModelRef, load_model
from rfmseg.model.scoring import rfm_matrix
from rfmseg.runs.lock import one_job_at_a_time
from rfmseg.runs.registry import latest_model_run


@one_job_at_a_time("refresh")
def refresh(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    model: str = "latest",
    hold: float = DEFAULT_HOLD,
    **options: Unpack[JobOptions],
) -> LifeResult:
    """The daily job: RFM as of ``as_of`` for every customer, scored with the current model, written as a run
    of kind 'refresh' and published. ``model='latest'`` is the most recent run that trained a model.
    ``hold``: a customer within this band of their previous run's segment keeps it (:mod:`rfmseg.jobs.quiet`;
    0 = off). ``options``: see :class:`JobOptions`."""
    band = check_hold(hold)
    started = datetime.now(UTC)
    runs_dir = job_runs_dir("refresh", options)
    ref = model_ref(model, runs_dir)
    with Job.start("refresh", started, runs_dir, ref.run, options) as job:
        prepared, rfm, data_sha = job.load(source, columns, as_of)
        result = scored(job, ref, prepared, rfm, data_sha, band)
    return job.finish(result)


def scored(
    job: Job,
    ref: ModelRef,
    prepared: Intake,
    rfm: pa.Table,
    data_sha: str,
    band: float,
    *,
    state: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> LifeResult:
    """A refresh's run: ``rfm`` scored with ``ref``'s model, the labels held within ``band`` against the run
    before (:mod:`rfmseg.jobs.quiet`), written; or the run written before with the same key. ``state`` and
    ``extra``: an incremental refresh's state (its manifest entry, and the files it writes into the run)."""
    before = previous_run(job.runs_dir, prepared.as_of)
    held = (before.run_id if before else None, band)
    key = refresh_key(prepared.as_of, ref.model_version, data_sha, job.cold_start, job.read, held)
    found = job.find(key)
    if found is not None and (state is None or found.manifest.get("state")):
        return found
    manifest: JobManifest = {"source_run": ref.run.run_id, "held": {"previous_run": held[0], "hold": band}}
    if state is not None:
        manifest["state"] = state
    x = rfm_matrix(rfm)
    return job.write(
        prepared,
        rfm,
        data_sha,
        key,
        ref.model,
        ref.model_version,
        manifest=manifest,
        adjust=lambda a: hold_labels(a, ref.model, x, previous_labels(before), band, shifts_of(ref.run.manifest)),
        extra=extra,
    )


def model_ref(model: str, runs_dir: Path) -> ModelRef:
    """The model a refresh scores with: run ``model``'s, or for 'latest' the most recent trained one."""
    if model == "latest":
        trained = latest_model_run(runs_dir)
        if trained is None:
            raise NotFoundError(
                f"no trained model in {runs_dir}; train one first with `rfmseg run FILE` or `rfmseg retrain FILE`"
            )
        model = trained.run_id
    return load_model(model, runs_dir)
