"""Scoring: RFM rows or transactions in, segments out, with a stored model. Nothing is written."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from rfmseg.jobs.assign import assign
from rfmseg.model.scoring import OFF, ColdStart
from rfmseg.service.deps import InvalidError, StateDep, TooLargeError, json_response
from rfmseg.service.models import ScorePublic, ScoreRequest

router = APIRouter(tags=["score"])


def _table(rows: list[BaseModel]) -> pa.Table:
    return pa.Table.from_pylist([r.model_dump() for r in rows])


@router.post("/score", response_model=ScorePublic, summary="Score customers with a stored model (writes nothing)")
def score(body: ScoreRequest, state: StateDep) -> Response:
    """Nearest centroid of the model of run ``model`` (the latest by default), with the same transform and
    the cold-start rule of ``rfmseg assign``. Returns each customer's segment, distance, margin and action."""
    rows: list[Any] = body.rfm if body.rfm is not None else body.transactions  # type: ignore[assignment]
    limit = state.settings.max_score_rows
    if len(rows) > limit:
        raise TooLargeError(f"one call scores at most {limit:,} rows, got {len(rows):,}; split them into batches")
    if not rows:
        raise InvalidError("nothing to score: the list of rows is empty")
    if body.rfm is not None and body.as_of is not None:
        raise InvalidError("as_of applies to transactions only; RFM rows already carry recency_days")
    result = assign(
        _table(rows),
        model=body.model,
        runs_dir=state.settings.runs_dir,
        as_of=body.as_of,
        cold_start=ColdStart() if body.cold_start else OFF,
    )
    out = result.to_dict(rows=True)
    actions = state.actions(result.model.run.run_id)
    keep = ("customer_id", "segment", "segment_reason", "recency_days", "frequency", "monetary", "distance", "margin")
    out["customers"] = [
        {**{k: r.get(k) for k in keep}, "action": actions.get(r["segment"], (None, None))[0]}
        for r in out.pop("assignments")
    ]
    return json_response(out)
