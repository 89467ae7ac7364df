"""Customers: one profile from the online store (the hot path), a batch lookup, and a customer's history
across the runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from rfmseg.errors import NotFoundError, RfmsegError
from rfmseg.runs import history as run_history
from rfmseg.service.deps import (
    AppState,
    InvalidError,
    StateDep,
    TooLargeError,
    check_id,
    dumps,
    json_response,
    not_served,
)

router = APIRouter(tags=["customers"])


class Profile(BaseModel):
    customer_id: str
    segment: str
    previous_segment: str | None = Field(description="The segment before the last change; null if it never changed")
    segment_since: str = Field(description="As-of date of the run where the customer entered this segment")
    recency_days: int | float
    frequency: int
    monetary: float
    aov: float = Field(description="Average order value: monetary / frequency")
    distance: float = Field(description="Distance to the segment's centroid, in scaled units")
    action: str | None = Field(description="The recommended action for the segment")
    priority: int | None = Field(description="1 = act first")
    run_id: str
    as_of: str
    model_version: str


class LookupRequest(BaseModel):
    ids: list[str] = Field(description="Customer ids (at most 1,000)", examples=[["C001", "C087"]])


class LookupResult(BaseModel):
    run_id: str | None
    customers: list[Profile] = Field(description="The profiles found, in the order asked")
    missing: list[str] = Field(description="Ids the served run does not have")


def _profile(state: AppState, p: dict[str, Any]) -> dict[str, Any]:
    action, priority = state.actions(p["run_id"]).get(p["segment"], (None, None))
    freq = p["frequency"] or 0
    return {
        **p,
        "aov": round(p["monetary"] / freq, 2) if freq else 0.0,
        "action": action,
        "priority": priority,
    }


def customer_json(state: AppState, customer_id: str) -> bytes:
    """The JSON body of ``GET /customers/{id}``; user errors raise (404 unknown id, 422 bad id, 503 store)."""
    store = state.store()
    found = store.get(check_id(customer_id))
    if found is None:
        run_id = store.current_run()
        if run_id is None:
            raise not_served(store)
        raise NotFoundError(
            f"customer '{customer_id}' not found in run {run_id}; check the id, or publish a run that has it "
            "(`rfmseg publish RUN`)"
        )
    return dumps(_profile(state, found))


@router.get("/customers/{customer_id}", response_model=Profile, summary="One customer's segment (online store)")
def get_customer(customer_id: str, state: StateDep) -> Response:
    """The customer's profile in the run the profile store serves: segment, previous segment, segment since,
    RFM values, distance, the segment's action, run id and as-of date."""
    return Response(customer_json(state, customer_id), media_type="application/json")


class CustomerFastPath:
    """``GET /customers/{id}`` answered in a few lines of ASGI, before FastAPI's routing, validation and
    dependency machinery, which cost several times the lookup itself; this is the route systems call per
    customer and the one the load benchmark drives. Same body and same errors as the FastAPI route above
    (which documents it in the OpenAPI schema); unexpected errors go to the app's 500 handler. The store
    call runs on the event loop: a lookup takes well under a millisecond, less than a thread hand-off."""

    PREFIX = "/customers/"

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") != "GET" or not path.startswith(self.PREFIX) or "/" in path[len(self.PREFIX) :]:
            await self.app(scope, receive, send)
            return
        try:
            status, body = 200, customer_json(self.state, path[len(self.PREFIX) :])
        except RfmsegError as exc:
            status, body = exc.http_status, dumps({"detail": exc.message})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@router.post(
    "/customers/lookup",
    response_model=LookupResult,
    summary="Many customers in one call",
    responses={413: {"description": "More ids than one call may ask for"}},
)
def lookup(body: LookupRequest, state: StateDep) -> Response:
    """Profiles of up to 1,000 ids from one run of the profile store; unknown ids are listed in ``missing``."""
    limit = state.settings.max_lookup
    if len(body.ids) > limit:
        raise TooLargeError(f"a lookup takes at most {limit:,} ids, got {len(body.ids):,}; split them into batches")
    if not body.ids:
        raise InvalidError('the lookup has no ids; send {"ids": ["C001", ...]}')
    ids = list(dict.fromkeys(check_id(i) for i in body.ids))
    store = state.store()
    found = store.get_many(ids)
    run_id = next(iter(found.values()))["run_id"] if found else store.current_run()
    if run_id is None:
        raise not_served(store)
    return json_response(
        {
            "run_id": run_id,
            "customers": [_profile(state, found[i]) for i in ids if i in found],
            "missing": [i for i in ids if i not in found],
        }
    )


@router.get("/customers/{customer_id}/history", summary="One customer across the runs")
def customer_history(customer_id: str, state: StateDep) -> Response:
    """The customer's segment and RFM values in every run of the registry (oldest first)."""
    rows = run_history.history(state.settings.runs_dir, check_id(customer_id))
    return json_response({"customer_id": customer_id, "history": rows})
