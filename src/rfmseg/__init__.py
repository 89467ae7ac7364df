"""rfmseg: which of our customers are similar, and what should we do about each group?

The Python API in one import::

    import rfmseg
    result = rfmseg.segment("orders.csv", columns={"customer_id": "cust", "order_id": "invoice"})
    result.summary["segments"]

``segment`` and ``RunResult`` load the run job (pandas, DuckDB, ...) on first use, so importing a light
module such as ``rfmseg.errors`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfmseg.errors import RfmsegError

if TYPE_CHECKING:
    from rfmseg.jobs.run import RunResult, segment

__all__ = ["RfmsegError", "RunResult", "segment"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("segment", "RunResult"):
        from rfmseg.jobs import run

        return getattr(run, name)
    raise AttributeError(f"module 'rfmseg' has no attribute '{name}'")
