"""Campaigns with a randomised holdout: list, plan, measure and size them (the questions of
rfmseg.questions.interventions, as the CLI's `rfmseg campaign` and the MCP tools ask them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from rfmseg import questions as q
from rfmseg.jobs.campaign import measure as measure_campaign
from rfmseg.jobs.campaign import planned_folder
from rfmseg.service.deps import StateDep, json_response
from rfmseg.service.models import (
    CampaignMeasureBody,
    CampaignMeasurePublic,
    CampaignPlanBody,
    CampaignPublic,
    CampaignSizePublic,
    CampaignsPublic,
)

router = APIRouter(tags=["campaigns"])


@router.get("/campaigns", response_model=CampaignsPublic, summary="Campaigns planned with a holdout")
def campaigns(state: StateDep) -> Response:
    """Every campaign planned with a randomised holdout, oldest first, with its measured uplift once measured."""
    return json_response(q.campaigns(state.settings.runs_dir))


@router.get("/campaigns/size", response_model=CampaignSizePublic, summary="The holdout a campaign needs")
def size(
    baseline: Annotated[float, Query(gt=0, lt=1, description="Expected conversion without the campaign")],
    uplift: Annotated[float, Query(gt=0, lt=1, description="The uplift to detect, e.g. 0.03")],
    state: StateDep,
    customers: Annotated[int | None, Query(ge=1, le=10**9, description="Customers the campaign can reach")] = None,
    holdout: Annotated[str | None, Query(description="Share held out: 10% or 0.1")] = None,
    confidence: Annotated[float, Query(ge=0.5, le=0.999)] = 0.95,
) -> Response:
    """Customers needed to detect ``uplift`` over ``baseline`` with 80 % power (and, with ``customers``, the
    smallest holdout share that does)."""
    return json_response(
        q.campaign_size(
            state.settings.runs_dir,
            baseline=baseline,
            uplift=uplift,
            customers=customers,
            holdout=holdout,
            confidence=confidence,
        )
    )


@router.get("/campaigns/{name}", response_model=CampaignPublic, summary="One campaign")
def campaign(name: str, state: StateDep) -> Response:
    """One campaign's plan, with its measurement once measured."""
    return json_response(q.campaigns(state.settings.runs_dir, name)["campaigns"][0])


@router.post("/campaigns", response_model=CampaignPublic, status_code=201, summary="Plan a campaign with a holdout")
def plan(body: CampaignPlanBody, state: StateDep) -> Response:
    """Draw a seeded control group inside each segment x value band of the run's chosen segments; writes the
    target and control lists and the treated customers' planned touches."""
    result = q.campaign_plan(state.settings.runs_dir, **body.model_dump())
    return json_response(result, status_code=201)


@router.post("/campaigns/{name}/measure", response_model=CampaignMeasurePublic, summary="Measure a campaign")
def measure(name: str, body: CampaignMeasureBody, state: StateDep) -> Response:
    """Treated against control in the window after the send date, from a transactions file on the server: in
    the runs folder's parent or the server's working folder, or a folder of ``RFMSEG_DATA_DIRS``. With
    ``bad_rows`` quarantine, bad rows are set aside with their reason (counted in ``rows``; the file
    ``quarantine``) and the rest is measured."""
    runs_dir = state.settings.runs_dir
    planned_folder(name, runs_dir)  # an unknown campaign is a 404, whatever file the request names
    path = state.settings.readable(body.transactions)  # the file checked is the file read (links resolved)
    result = measure_campaign(
        name,
        path,
        runs_dir=runs_dir,
        window=body.window,
        confidence=body.confidence,
        bad_rows=body.bad_rows,
    )
    return json_response(result)
