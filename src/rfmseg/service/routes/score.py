"""Scoring: RFM rows or transactions in, segments out, with a stored model. Nothing is written."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator

from rfmseg.jobs.assign import assign
from rfmseg.model.scoring import OFF, ColdStart
from rfmseg.service.deps import InvalidError, StateDep, TooLargeError, json_response

router = APIRouter(tags=["score"])


class RfmRow(BaseModel):
    customer_id: str
    recency_days: Annotated[float, Field(ge=0)]
    frequency: Annotated[int, Field(ge=0)]
    monetary: float


class Transaction(BaseModel):
    customer_id: str
    order_id: str
    order_date: str = Field(description="YYYY-MM-DD or an ISO timestamp")
    amount: float


class ScoreRequest(BaseModel):
    rfm: list[RfmRow] | None = Field(None, description="Ready RFM rows (give these or transactions)")
    transactions: list[Transaction] | None = Field(None, description="Orders; RFM is computed as of `as_of`")
    as_of: date | None = Field(None, description="Date recency is counted to (transactions only)")
    model: str = Field("latest", description="The run whose model scores: id, unique prefix or 'latest'")
    cold_start: bool = Field(True, description="Give customers with a thin history the cold-start segment")

    @model_validator(mode="after")
    def one_input(self) -> ScoreRequest:
        if (self.rfm is None) == (self.transactions is None):
            raise ValueError(
                "give either 'rfm' (rows of customer_id, recency_days, frequency, monetary) or "
                "'transactions' (rows of customer_id, order_id, order_date, amount), not both or none"
            )
        return self

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"rfm": [{"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}]},
                {
                    "transactions": [
                        {"customer_id": "N1", "order_id": "1", "order_date": "2024-12-20", "amount": 120.0},
                        {"customer_id": "N1", "order_id": "2", "order_date": "2024-12-27", "amount": 80.0},
                    ],
                    "as_of": "2024-12-31",
                },
            ]
        }
    }


def _table(rows: list[BaseModel]) -> pa.Table:
    return pa.Table.from_pylist([r.model_dump() for r in rows])


@router.post("/score", summary="Score customers with a stored model (writes nothing)")
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
