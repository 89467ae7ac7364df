"""The jobs: one module per job, each the one way through for it, between the adapters (cli, service,
agent) and the edges (io, engines, runs, stores):

* :mod:`rfmseg.jobs.run` — ``segment`` (``rfmseg run``, ``rfmseg demo``): fit a model, write a run;
* :mod:`rfmseg.jobs.refresh` — the daily job: score today's data with the current model;
* :mod:`rfmseg.jobs.incremental` — the daily job from the new transactions only (an RFM state kept with the runs);
* :mod:`rfmseg.jobs.retrain` — the weekly job: refit, carry the names over;
* :mod:`rfmseg.jobs.assign` — score new customers with a stored model, writing nothing;
* :mod:`rfmseg.jobs.publish` — publish a run to the profile store;

all writing their runs with the one run writer, :mod:`rfmseg.jobs.writer`. (The package stays importable
as one: ``rfmseg.jobs.refresh`` is the function; its module is imported as ``rfmseg.jobs.refresh``.)
"""

from rfmseg.jobs.assign import AssignResult, assign, jsonable_rows, write_table
from rfmseg.jobs.incremental import refresh_since_last
from rfmseg.jobs.job import JobOptions, LifeResult, idempotency_key
from rfmseg.jobs.publish import publish_computed, publish_if_configured, publish_run, publish_target
from rfmseg.jobs.quiet import DEFAULT_HOLD
from rfmseg.jobs.reading import ModelRef, Reading, load_model, reading
from rfmseg.jobs.refresh import refresh
from rfmseg.jobs.retrain import retrain
from rfmseg.jobs.run import RunResult, segment
from rfmseg.model.naming import DEFAULT_MAX_NAME_SHIFT
from rfmseg.model.scoring import OFF, ColdStart

__all__ = [
    "DEFAULT_HOLD",
    "DEFAULT_MAX_NAME_SHIFT",
    "OFF",
    "AssignResult",
    "ColdStart",
    "JobOptions",
    "LifeResult",
    "ModelRef",
    "Reading",
    "RunResult",
    "assign",
    "idempotency_key",
    "jsonable_rows",
    "load_model",
    "publish_computed",
    "publish_if_configured",
    "publish_run",
    "publish_target",
    "reading",
    "refresh",
    "refresh_since_last",
    "retrain",
    "segment",
    "write_table",
]
