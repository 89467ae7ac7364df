"""Reading sources into DuckDB and mapping their columns onto the canonical schema.

The one entry point of a read is :func:`rfmseg.io.intake.read_rfm`."""

from rfmseg.io.readers import Source, open_source
from rfmseg.io.rules import Policy

__all__ = ["Policy", "Source", "open_source"]
