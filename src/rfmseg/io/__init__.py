"""Reading sources into DuckDB and mapping their columns onto the canonical schema."""

from rfmseg.io.readers import Source, open_source
from rfmseg.io.validate import Policy, Prepared, prepare

__all__ = ["Policy", "Prepared", "Source", "open_source", "prepare"]
