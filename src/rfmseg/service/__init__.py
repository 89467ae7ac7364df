"""The HTTP API and the explorer page: ``create_app(settings)`` builds the FastAPI app (``rfmseg serve`` runs
it with uvicorn). FastAPI is imported only when the app is built, so the report (which reads the explorer's
static files from this package) works with the core install."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rfmseg.service.app import create_app
    from rfmseg.service.deps import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from rfmseg.service.app import create_app

        return create_app
    if name == "Settings":
        from rfmseg.service.deps import Settings

        return Settings
    raise AttributeError(f"module 'rfmseg.service' has no attribute {name!r}")
