"""Customers: one profile from the online store (the hot path), a batch lookup, and a customer's history
across the runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from rfmseg.errors import NotFoundError
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
from rfmseg.service.models import (
    CustomerHistoryPublic,
    CustomerPublic,
    CustomersLookupPublic,
    ErrorPublic,
    LookupRequest,
)

router = APIRouter(tags=["customers"])


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


class RawLookupRoute(APIRoute):
    """The route class of ``GET /customers/{id}``, the call systems make per customer: declared like any route
    (its response model and errors are in the OpenAPI schema), but a GET is answered straight from ASGI with
    :func:`customer_json`, without FastAPI's request parsing, validation and dependency resolution, which cost
    several times the lookup itself (bench/bench_api.py --compare-fast-path; figures in docs/api.md). User errors
    go to the app's handlers like any route's. The store call runs in the thread pool, as every route's does:
    on the event loop, a store that stops answering held up every other request of the worker (``/segments``,
    ``/health``) for the whole read timeout."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await super().handle(scope, receive, send)  # 405, as for any route
            return
        body = await run_in_threadpool(customer_json, scope["app"].state.rfmseg, scope["path_params"]["customer_id"])
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def get_customer(customer_id: str, state: StateDep) -> Response:
    """The customer's profile in the run the profile store serves: segment, previous segment, segment since,
    RFM values, distance, the segment's action, run id and as-of date."""
    return Response(customer_json(state, customer_id), media_type="application/json")


router.add_api_route(
    "/customers/{customer_id}",
    get_customer,
    methods=["GET"],
    response_model=CustomerPublic,
    summary="One customer's segment (online store)",
    route_class_override=RawLookupRoute,
)


@router.get("/customers", response_model=CustomerPublic, summary="One customer's segment, the id as a query")
def get_customer_by_query(
    state: StateDep,
    id: Annotated[str, Query(description="The customer id, as stored: any id a run accepts, '/' included.")],
) -> Response:
    """The same profile as ``GET /customers/{id}``, for an id the path cannot carry: an id with a ``/``
    (``GET /customers?id=A/B``; ``/customers/A%2FB`` is decoded into two path segments before routing)."""
    return Response(customer_json(state, id), media_type="application/json")


@router.post(
    "/customers/lookup",
    response_model=CustomersLookupPublic,
    summary="Many customers in one call",
    responses={
        413: {"model": ErrorPublic, "description": "More ids than one call may ask for, or a body over the limit"}
    },
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


@router.get(
    "/customers/{customer_id}/history", response_model=CustomerHistoryPublic, summary="One customer across the runs"
)
def customer_history(customer_id: str, state: StateDep) -> Response:
    """The customer's segment and RFM values in every run of the registry (oldest first)."""
    rows = run_history.history(state.settings.runs_dir, check_id(customer_id))
    return json_response({"customer_id": customer_id, "history": rows})
