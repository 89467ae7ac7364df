"""Health, and the explorer page with its static files (plotly.js from the installed plotly package)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from rfmseg.errors import NotFoundError, RfmsegError
from rfmseg.report.html import plotly_js_path
from rfmseg.runs import list_runs
from rfmseg.service.deps import StateDep, json_response
from rfmseg.service.models import HealthPublic
from rfmseg.stores.urls import redact_url

router = APIRouter()
STATIC = Path(str(resources.files("rfmseg.service").joinpath("static")))
_STATIC_FILES = {"explorer.js": "text/javascript", "warnings.js": "text/javascript", "explorer.css": "text/css"}


def latest_run_info(runs_dir: Path) -> dict[str, Any] | None:
    runs = list_runs(runs_dir)
    if not runs:
        return None
    run = runs[-1]
    manifest = run.manifest
    created = manifest.get("created")
    age = None
    if created:
        age = round((datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds(), 1)
    return {"run_id": run.run_id, "as_of": manifest.get("as_of"), "created": created, "age_seconds": age}


@router.get(
    "/health",
    tags=["system"],
    response_model=HealthPublic,
    summary="Is the store reachable; which run is the latest",
    responses={503: {"model": HealthPublic, "description": "The profile store does not answer"}},
)
def health(state: StateDep) -> Response:
    """200 when the profile store answers, 503 when it does not (the body says why). Also: the run the store
    serves, and the latest run of the registry with its age in seconds."""
    try:
        store: dict[str, Any] = state.store(wait=False).health()
    except RfmsegError as exc:  # the store could not even be opened (or another request is still opening it)
        store = {"ok": False, "url": redact_url(state.settings.store), "error": exc.message}
    ok = bool(store.get("ok"))
    body = {
        "status": "ok" if ok else "degraded",
        "store": store,
        "served_run": store.get("run_id"),
        "latest_run": latest_run_info(state.settings.runs_dir),
    }
    return json_response(body, status_code=200 if ok else 503)


@router.get("/", include_in_schema=False)
def explorer() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


@router.get("/static/plotly.min.js", include_in_schema=False)
def plotly() -> FileResponse:
    return FileResponse(plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    if name not in _STATIC_FILES:
        raise NotFoundError(f"no static file '{name}'")
    return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])
