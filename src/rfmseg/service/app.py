"""The FastAPI app: ``create_app(settings)`` builds it (no globals built at import time, so tests build it
with any store and runs folder); ``app_from_env()`` is the factory uvicorn workers call.

Errors are JSON with a one-line ``detail`` (one body for all, :class:`ErrorPublic`, declared on every
operation): user errors (``RfmsegError``) by their ``http_status``, invalid input as 422 naming the parameter
(and listing each problem in ``errors``), a body over the limit as 413 before it is read, a run file that
cannot be read (damaged or removed) as a 503 naming it (:mod:`rfmseg.runs.damage`), anything unexpected
as a 500 that says nothing about internals (the traceback goes to the server log). With an API key set, every
endpoint needs ``Authorization: Bearer <key>``, except the explorer's static page, which holds no data and asks
for the key.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rfmseg import __version__
from rfmseg.errors import RfmsegError
from rfmseg.runs.damage import READ_ERRORS, damaged_run_file
from rfmseg.service.deps import AppState, Settings, field_of, json_response, printable
from rfmseg.service.middleware import ApiKeyMiddleware, BodyLimitMiddleware
from rfmseg.service.models import ErrorPublic
from rfmseg.service.routes import campaigns, changes, customers, runs, score, segments, system

log = logging.getLogger("rfmseg.service")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A user error in what was sent (bad transactions, a bad option value, a cursor of another store)"),
    401: _error("The API key is missing or wrong (only when the server has RFMSEG_API_KEY set)"),
    404: _error("Unknown customer, run, segment, campaign or endpoint, or nothing published yet"),
    413: _error("The request is too large: over the body limit (RFMSEG_MAX_BODY_BYTES), or too many ids or rows"),
    422: _error("Invalid input: a parameter or body field breaks its rule; `errors` lists each problem"),
    500: _error("A bug: the server log has the traceback"),
    503: _error(
        "The profile store is down or does not answer, or a file of a run on the server cannot be read (damaged "
        "or removed: `detail` names it and the fix)"
    ),
    "4XX": _error("Another client error (405 method not allowed, 410 cursor trimmed); `detail` says why and how"),
}
"""The error responses of every operation, one body for all (:class:`ErrorPublic`): ``{"detail": "<one line:
the problem and the fix>"}``, and for invalid input also ``errors``, each problem with its place and kind."""

DESCRIPTION = """Customer segments over HTTP: one customer's segment from the online profile store in
milliseconds, who changed segment (the store's change feed, read with a cursor), the segments and their customers
from the run registry, scoring with a stored model, runs, transitions and early warnings. The explorer is at `/`.

Every error answers one JSON body, `ErrorPublic`: `{"detail": "<one line: the problem and the fix>"}`, with
`errors: [{"loc", "msg", "type"}, ...]` added for invalid input (422). Request bodies are limited in size (413)."""


SHOWN_INPUT = 60
"""characters of a bad query or path value a 422 repeats"""


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        where = loc[0] if loc else ""
        name = ".".join(loc[1:]) if len(loc) > 1 else ""
        label = {"query": "query parameter", "path": "path parameter", "body": "body field", "header": "header"}.get(
            where, where
        )
        text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        subject = f"{label} '{name}'" if name else ("the request body" if where == "body" else label or "input")
        given = err.get("input")
        shown = ""
        if where in ("query", "path") and isinstance(given, str):
            shown = f" (got {given[:SHOWN_INPUT]!r}{'…' if len(given) > SHOWN_INPUT else ''})"
        parts.append(f"{subject}: {text}{shown}")
    return "; ".join(parts) or "the request is not valid"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RfmsegError)
    async def user_error(request: Request, exc: RfmsegError) -> Response:
        return json_response({"detail": printable(exc.render(field_of))}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [x if isinstance(x, int) else printable(str(x)) for x in e.get("loc", ())],
                "msg": printable(str(e.get("msg"))),
                "type": str(e.get("type", "value_error")),
            }
            for e in exc.errors()
        ]
        return json_response({"detail": printable(_describe_validation(exc)), "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint {request.url.path}; see /docs for the API"
        return json_response({"detail": printable(str(detail))}, status_code=exc.status_code, headers=exc.headers)

    def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        detail = f"internal error while handling {request.method} {request.url.path}; the server log has details"
        return json_response({"detail": detail}, status_code=500)

    async def read_error(request: Request, exc: Exception) -> Response:
        """A file of a run folder that cannot be read (damaged, removed): 503 naming it and the fix, as the
        server's data, not the request, is at fault; any other read error is unexpected (500)."""
        damaged = damaged_run_file(exc)
        if damaged is None:
            return internal_error(request, exc)
        log.error("%s %s: %s", request.method, request.url.path, damaged.message)
        return json_response({"detail": printable(damaged.message)}, status_code=damaged.http_status)

    for error in READ_ERRORS:
        app.add_exception_handler(error, read_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_error(request, exc)


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from local files (the fastapi-offline package ships them), so the docs work with
    no internet; FastAPI's CDN-based page is the fallback when that package is missing."""
    try:
        import fastapi_offline
    except ImportError:  # pragma: no cover - fastapi-offline is in the serve extra
        log.info("fastapi-offline is not installed: /docs loads Swagger UI from a CDN")
        return
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-static", StaticFiles(directory=assets), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title="rfmseg API",
            swagger_js_url="docs-static/swagger-ui-bundle.js",
            swagger_css_url="docs-static/swagger-ui.css",
            swagger_favicon_url="docs-static/favicon.png",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over ``settings.runs_dir`` and the profile store at ``settings.store``."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.rfmseg.close()

    offline_docs = _has_offline_docs()
    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's built-in OpenTelemetry hooks look at the providers on every request; rfmseg sets none up,
        # and the checks cost more than a profile lookup
        extra["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(
        title="rfmseg API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None if offline_docs else "/docs",
        redoc_url=None,
        **extra,
    )
    app.state.rfmseg = AppState(settings)
    install_error_handlers(app)
    if offline_docs:
        install_docs(app)
    for module in (customers, changes, segments, score, runs, campaigns, system):
        app.include_router(module.router, responses=ERRORS)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, key=settings.api_key)
        _document_bearer(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # outermost: before the key check
    return app


def _has_offline_docs() -> bool:
    try:
        import fastapi_offline  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def _document_bearer(app: FastAPI) -> None:
    """Say in the OpenAPI schema that every operation needs the bearer key."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI caches it in app.openapi_schema
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The key in RFMSEG_API_KEY"}
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The factory `rfmseg serve` hands to uvicorn (settings from RFMSEG_RUNS_DIR, RFMSEG_STORE, RFMSEG_API_KEY)."""
    return create_app(Settings.from_env())
