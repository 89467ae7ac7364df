"""The names of the DuckDB views (and small tables) one read of a source defines: spelled here and nowhere else.

Every function that creates or reads one of them takes its name from a :class:`Views` value passed to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Views:
    """One read's DuckDB views, by role."""

    source: str = "src"
    """the source as registered: its original columns and a 1-based ``_row``"""
    typed: str = "typed"
    """the canonical columns typed from the source's (a view over the source)"""
    typed_returns: str = "typed_r"
    """``typed`` with ``is_return``"""
    judged: str = "judged"
    """the typed rows with the first row rule each one breaks (``_reason``; NULL: used)"""
    canon: str = "canon"
    """``judged`` with the rules that need the data (after-as-of, returns-only) on top: the canonical table"""
    returns_only: str = "returns_only"
    """the ids of the customers whose used rows are all returns"""
    set_aside: str = "set_aside"
    """the rows set aside by a streamed read in quarantine mode, with their reasons, dates, amounts and the
    source's columns as read: what is counted instead of the file, and what the quarantine file is written from"""


VIEWS = Views()
"""The names a read uses."""

ORIGINAL = "_source:"
"""the prefix of a source column carried, as it was read, through the typed views of a streamed read (``"amount"``
as ``"_source:amount"``): the rows set aside keep their original values without the source being read again
for them (:attr:`rfmseg.io.validate.Plan.originals`)"""
