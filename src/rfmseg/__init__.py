"""rfmseg: which of our customers are similar, and what should we do about each group?

The Python API in one import::

    import rfmseg
    result = rfmseg.segment("orders.csv", columns={"customer_id": "cust", "order_id": "invoice"})
    result.summary["segments"]
"""

from rfmseg.errors import RfmsegError
from rfmseg.pipeline import RunResult, segment

__all__ = ["RfmsegError", "RunResult", "segment"]
__version__ = "0.1.0"
