"""The run registry over HTTP: runs, one run, its explorer view and report, transitions between two runs and
the early warnings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from rfmseg.report import REPORT_FILE, inline_assets, render_html, view_for_run
from rfmseg.runs import history
from rfmseg.runs import warnings as early
from rfmseg.runs.registry import describe_run, runs_table
from rfmseg.runs.warnings import MAX_LATE_FACTOR, MAX_MIN_ORDERS, MAX_WARNING_DAYS
from rfmseg.service.deps import StateDep, json_response
from rfmseg.service.models import RunPublic, RunsPublic, RunViewPublic, TransitionsPublic, WarningsPublic

router = APIRouter(tags=["runs"])


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "path"}


@router.get("/runs", response_model=RunsPublic, summary="Every run of the registry")
def runs(state: StateDep) -> Response:
    """Runs oldest first: id, created, kind (run, refresh, retrain), as-of, K, customers, input, model version."""
    table = [_public(r) for r in runs_table(state.settings.runs_dir)]
    return json_response({"runs": table, "latest": table[-1]["run_id"] if table else None})


@router.get("/runs/{run_id}", response_model=RunPublic, summary="One run: manifest, summary, model")
def run(run_id: str, state: StateDep) -> Response:
    return json_response(_public(describe_run(state.run(run_id).run_id, state.settings.runs_dir)))


@router.get("/runs/{run_id}/view", response_model=RunViewPublic, summary="What the explorer draws for a run")
def view(run_id: str, state: StateDep) -> Response:
    """The run's summary, a per-segment sample of its customers for the scatter, the K choice (computed once
    and cached in the run folder), the Pareto curve, transitions from the previous run and data quality."""
    run_ = state.run(run_id)
    runs_dir = state.settings.runs_dir
    return json_response(state.view(run_, lambda: view_for_run(run_, runs_dir)))


@router.get(
    "/runs/{run_id}/report",
    summary="The run's self-contained HTML report",
    response_class=Response,  # not HTMLResponse: the errors stay declared as JSON
    responses={200: {"description": "The report page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def report(run_id: str, state: StateDep) -> Response:
    run_ = state.run(run_id)
    file = run_.path / REPORT_FILE
    if file.exists():  # the run folder's page, with the plotly.js its registry shares put inline
        return HTMLResponse(inline_assets(file.read_text(encoding="utf-8")))
    return HTMLResponse(render_html(view_for_run(run_, state.settings.runs_dir, searchable=True)))


@router.get("/transitions", response_model=TransitionsPublic, summary="How customers moved between two runs")
def transitions(
    state: StateDep,
    from_run: Annotated[str | None, Query(alias="from", description="Run id (default: the one before `to`)")] = None,
    to_run: Annotated[str | None, Query(alias="to", description="Run id (default: the latest)")] = None,
    from_segment: Annotated[str | None, Query(description="List the movers out of this segment")] = None,
    to_segment: Annotated[str | None, Query(description="List the movers into this segment")] = None,
) -> Response:
    """The segment-to-segment matrix in customers and revenue (rows: from, columns: to; ``(new)`` and
    ``(gone)`` for customers in one run only) and the customers who moved."""
    runs_dir = state.settings.runs_dir
    return json_response(history.transitions(runs_dir, from_run, to_run, from_segment, to_segment))


MAX_LISTED = 1_000_000_000
"""the schema's bound on a warning list's limit and offset"""


@router.get("/warnings", response_model=WarningsPublic, summary="Early warnings for a run")
def warnings(
    state: StateDep,
    run: Annotated[str | None, Query(description="Run id (default: the latest of the timeline)")] = None,
    overdue_days: Annotated[
        int | None,
        Query(le=MAX_WARNING_DAYS, description="Late by more than this many days past the customer's own rhythm (7)"),
    ] = None,
    late_factor: Annotated[
        float, Query(ge=1, le=MAX_LATE_FACTOR, description="Late past this many times the customer's mean gap")
    ] = 2.0,
    window: Annotated[
        int | None, Query(le=MAX_WARNING_DAYS, description="Rhythm read in the earliest run within these days (56)")
    ] = None,
    lookback: Annotated[
        int, Query(le=MAX_WARNING_DAYS, description="Leave out who was already late this many days ago")
    ] = 90,
    min_orders: Annotated[int, Query(le=MAX_MIN_ORDERS, description="Orders a customer needs for a rhythm")] = 4,
    recency_jump: Annotated[int | None, Query(le=MAX_WARNING_DAYS, description="Former name of overdue_days")] = None,
    period: Annotated[int | None, Query(le=MAX_WARNING_DAYS, description="Former name of window")] = None,
    trend_runs: Annotated[
        int | None, Query(le=1_000, description="No longer used (the rhythm rules replaced it)")
    ] = None,
    limit: Annotated[
        int | None,
        Query(ge=0, le=MAX_LISTED, description="List at most this many customers per warning (default: all)"),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_LISTED, description="Skip this many customers of each warning's list first")
    ] = 0,
) -> Response:
    """Champions who dropped to Loyal Buyers, Champions slowing down, customers overdue on their own rhythm,
    Loyal Buyers lapsing toward At-Risk and every segment change; each lists the customers with the values that
    triggered it. ``recency_jump`` and ``loyal_trending_at_risk`` are the former ids of ``overdue`` and
    ``loyal_lapsing`` (each warning lists its ``aliases``). Each warning's ``count`` is all its customers;
    ``limit`` and ``offset`` page the ``customers`` listed (largest spend first), the same page of every warning."""
    runs_dir = state.settings.runs_dir
    return json_response(
        early.warnings(
            runs_dir,
            run,
            overdue_days=overdue_days,
            late_factor=late_factor,
            window_days=window,
            lookback_days=lookback,
            min_orders=min_orders,
            recency_jump_days=recency_jump,
            period_days=period,
            offset=offset,
            limit=limit,
        )
    )
