"""``rfmseg retrain``, the weekly job: K-Means refitted on today's RFM, the previous model's names carried
over where the profile held (:func:`rfmseg.model.naming.carry_names`), scored with the cold-start rule,
written as a run of kind 'retrain' and published."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, TypedDict, Unpack

import pyarrow as pa

from rfmseg.jobs.job import Job, JobManifest, JobOptions, LifeResult, idempotency_key, job_runs_dir, refresh_key
from rfmseg.jobs.quiet import (
    DEFAULT_HOLD,
    centroid_shift,
    check_hold,
    hold_reference,
    mark_drift,
    previous_labels,
    previous_run,
    shifts_of,
)
from rfmseg.jobs.quiet import hold as hold_labels
from rfmseg.jobs.reading import ModelRef, load_model
from rfmseg.jobs.rhythm import fit_model_rhythm, rhythm_model
from rfmseg.model import SegmentModel
from rfmseg.model.naming import DEFAULT_MAX_NAME_SHIFT, DEFAULT_VOCABULARY, carry_names
from rfmseg.model.scoring import rfm_matrix, score
from rfmseg.runs.lock import one_job_at_a_time
from rfmseg.runs.manifest import provenance
from rfmseg.runs.registry import latest_model_run


class FitParams(TypedDict):
    """The hyper-parameters a retrain fits with (given, else the previous model's, else the defaults)."""

    k: int
    transform: str
    n_init: int
    random_state: int


@one_job_at_a_time("retrain")
def retrain(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    previous: str | None = "latest",
    k: int | None = None,
    transform: str | None = None,
    n_init: int | None = None,
    random_state: int | None = None,
    max_name_shift: float = DEFAULT_MAX_NAME_SHIFT,
    hold: float = DEFAULT_HOLD,
    rhythm: bool | None = None,
    **options: Unpack[JobOptions],
) -> LifeResult:
    """The weekly job: refit K-Means as of ``as_of``, carry names over from ``previous`` (the latest trained
    model by default; None = name from the data alone), score with cold start, write a 'retrain' run, publish.

    K, transform, n_init and random_state default to the previous model's, else 4, minmax, 10, 42.
    ``hold``: a customer within this band of their reference segment (the previous model's label for today's
    data, what a refresh today publishes) keeps it, whether or not they ordered; without a previous model, of
    their previous run's segment. The customers the new model moves although the previous model would not are
    reported as model drift (:mod:`rfmseg.jobs.quiet`).
    ``rhythm`` refits each customer's rhythm model (:mod:`rfmseg.jobs.rhythm`); default: when the previous
    model had one.
    ``options``: see :class:`JobOptions`.
    """
    band = check_hold(hold)
    started = datetime.now(UTC)
    runs_dir = job_runs_dir("retrain", options)
    prev: ModelRef | None = None
    if previous == "latest":
        trained = latest_model_run(runs_dir)
        prev = load_model(trained.run_id, runs_dir) if trained else None
    elif previous:
        prev = load_model(previous, runs_dir)
    base = prev.model if prev else None
    job = Job.start("retrain", started, runs_dir, prev.run if prev else None, options)
    read, cold_start = job.read, job.cold_start
    params: FitParams = {
        "k": k if k is not None else (base.k if base else 4),
        "transform": transform or (base.transform if base else (read.preset.transform if read.preset else "minmax")),
        "n_init": n_init if n_init is not None else (base.n_init if base else 10),
        "random_state": random_state if random_state is not None else (base.random_state if base else 42),
    }
    vocabulary = base.vocabulary if base else (read.preset.vocabulary if read.preset else DEFAULT_VOCABULARY)
    # the reasons speak of the reading's entity (users, leads, ...): model.json does not keep it
    model = SegmentModel(**params, vocabulary=replace(vocabulary, entity=read.units.entity))
    if rhythm is None:
        rhythm = base is not None and base.rhythm_ is not None
    rhythm_choice = rhythm_model(read.preset, rhythm)  # refused before reading when it cannot be fitted
    with job:
        prepared, rfm, data_sha = job.load(source, columns, as_of)
        before = previous_run(runs_dir, prepared.as_of)
        held = (before.run_id if before else None, band)
        key = idempotency_key(
            kind="retrain",
            as_of=prepared.as_of,
            data=data_sha,
            params=params,
            max_name_shift=max_name_shift,
            cold_start=cold_start.to_dict(),
            carry_over=bool(prev),
            reading=read.describe(),
            held=list(held),
            **({"rhythm": rhythm_choice[0]} if rhythm_choice[0] else {}),
        )
        result = job.find(key)
        if result is None:
            x = rfm_matrix(rfm)
            with job.timer.stage("fit"):
                job.engine.fit(model, x)
            with job.timer.stage("rhythm") if rhythm_choice[0] else nullcontext():
                fitted = fit_model_rhythm(model, rhythm_choice, rfm, prepared.as_of, params["random_state"])
            names = (
                carry_names(prev.model, model, x, max_name_shift, prev.model_version)
                if prev
                else {"previous_model": None, "segments": [], "retired": [], "changes": []}
            )
            prov = provenance(job.run_id, started, prepared.as_of, prepared.source.sha256, rfm)
            prov["previous_model"] = prev.model_version if prev else None
            model.provenance_ = prov
            labels_before = previous_labels(before)
            drift: dict[str, Any] = {"previous_run": held[0], "hold": band}

            centroids = centroid_shift(prev.model, model) if prev else []
            moved = {str(c["segment"]): float(c["shift"]) for c in centroids}

            def adjust(assignments: pa.Table) -> pa.Table:
                if prev is None:
                    return hold_labels(assignments, model, x, labels_before, band, moved)
                # the reference: what a refresh today with the previous model publishes; the new model keeps
                # each customer there within the band, so a retrain alone moves only who is past it
                reference = score(prev.model, rfm, prepared.as_of, cold_start, x=x)
                reference = hold_labels(reference, prev.model, x, labels_before, band, shifts_of(prev.run.manifest))
                assignments = hold_reference(assignments, model, x, reference, band, moved)
                assignments, report = mark_drift(assignments, reference, labels_before)
                drift.update(report, centroids=centroids)
                return assignments

            manifest: JobManifest = {
                "model": {"inertia": model.inertia_, "n_iter": model.n_iter_},
                "previous_model": prev.model_version if prev else None,
                "names": names,
                # a refresh of the same day, data and rule with this model would write these very labels
                "scoring_key": refresh_key(prepared.as_of, job.run_id, data_sha, cold_start, read, held),
                "held": {"previous_run": held[0], "hold": band},
                "drift": drift,
                "rhythm": fitted,
            }
            result = job.write(
                prepared,
                rfm,
                data_sha,
                key,
                model,
                job.run_id,
                names=names,
                params={"max_name_shift": max_name_shift, "hold": band},
                manifest=manifest,
                adjust=adjust,
            )
    return job.finish(result)
