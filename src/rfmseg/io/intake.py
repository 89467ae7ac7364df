"""Read a source into the canonical table and its RFM table: :func:`read_rfm`, the one entry point.

A read goes one way through four modules, each entered once: :mod:`~rfmseg.io.readers` registers the
source as a DuckDB view; :mod:`~rfmseg.io.validate` plans the read from its columns (the mapping, the row
rules, the typing SQL); :mod:`~rfmseg.features` writes the RFM queries; :mod:`~rfmseg.io.passes` runs them,
choosing the strategy for the input's size, and settles the as-of date and the row counts per reason.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa

from rfmseg.errors import InputError, ParameterError
from rfmseg.features import DEFAULT_FEATURES, FeatureSet, rfm_queries
from rfmseg.io.passes import Stages, Untimed, settle
from rfmseg.io.readers import Source, open_source, sample_view
from rfmseg.io.rules import FIRST_YEAR, LAST_YEAR, Policy, Rule
from rfmseg.io.sources import SourceSpec
from rfmseg.io.validate import plan
from rfmseg.io.views import VIEWS
from rfmseg.presets import known_layout, with_features

if TYPE_CHECKING:
    from rfmseg.presets import Preset
    from rfmseg.runs.artifacts import Rows

DUCKDB_MEMORY_LIMIT = os.environ.get("RFMSEG_DUCKDB_MEMORY", "2400MB")
"""What DuckDB may hold at once; a larger aggregation spills to a temporary folder instead of growing.
On 100M order lines (9.6M customers) the RFM pass took 15.6 s at 2600MB, 17-18 s at 2200MB and 19-20 s at
1500MB, and the whole run peaked at 2.7, 2.5 and 2.7 GiB (at 1500MB the peak came later, from the customer
tables): 2400MB keeps the run under 3 GiB with the least spilling (docs/scaling.md)."""


def connect() -> duckdb.DuckDBPyConnection:
    """The DuckDB connection a run computes with: a memory limit (with a temporary folder to spill to),
    results in any order unless the query says ORDER BY (every query that needs an order says so), and
    memory handed back to the system after each big query."""
    spill = Path(tempfile.gettempdir()) / "rfmseg-duckdb"
    con = duckdb.connect(
        config={
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            "allocator_flush_threshold": "16MB",
            "allocator_bulk_deallocation_flush_threshold": "16MB",
        }
    )
    # a long query would draw a progress bar on the terminal; in Jupyter without ipywidgets DuckDB refuses
    # the setting (and draws nothing)
    with suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")
    return con


def parse_as_of(value: str | date | None) -> date | None:
    """An as-of date given as ``YYYY-MM-DD`` text, a date, or None (the day after the last order)."""
    if value is None:
        return value
    try:
        day = value if isinstance(value, date) else date.fromisoformat(value)
    except ValueError:
        raise ParameterError(
            f"{{as_of}} '{value}' is not a date; use YYYY-MM-DD, e.g. 2024-12-31", param="as_of"
        ) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:  # 9999-12-31 is a placeholder, as in an order date
        raise ParameterError(
            f"{{as_of}} '{value}' is not a date in the years {FIRST_YEAR}-{LAST_YEAR}; use YYYY-MM-DD, e.g. 2024-12-31",
            param="as_of",
        )
    return day


@dataclass(frozen=True)
class Intake:
    """A source read into the canonical table: what the read found, and the RFM table."""

    kind: Literal["transactions", "rfm"]
    """a table of transactions, or a ready RFM table (taken as it is)"""
    source: Source
    mapping: dict[str, str]
    """canonical field -> the source's column"""
    as_of: date | None
    rows_read: int
    quarantined: dict[str, int]
    """rows set aside, per reason code"""
    view: str
    """the canonical table, a view on the connection the read used: every row read (``_row``, the canonical
    columns) with ``_reason``, NULL for a used row; the quarantine file is read from it"""
    rfm: pa.Table = field(repr=False, compare=False)
    """one row per customer: customer_id, recency_days, frequency, monetary, first and last order date"""
    rules: tuple[Rule, ...] = field(default=(), kw_only=True)
    """the row rules the rows were judged by, in order (what :func:`rfmseg.io.passes.check_shares` reads)"""
    policy: Policy | None = field(default=None, kw_only=True, repr=False, compare=False)
    """the policy as the read settled it: with the date formats and decimal mark it found in the source"""
    originals: bool = field(default=False, kw_only=True)
    """whether ``view`` carries the source's columns as read, named with :data:`rfmseg.io.views.ORIGINAL`
    (a streamed read): the quarantine file is then written from ``view`` alone"""
    set_aside: str | None = field(default=None, kw_only=True)
    """a table holding every row set aside with its reason and the source's columns as read, when the read
    kept one (a streamed read in quarantine mode): the quarantine file is written from it"""

    @property
    def rows_used(self) -> int:
        return self.rows_read - sum(self.quarantined.values())

    def rows_summary(self) -> Rows:
        return {"read": self.rows_read, "used": self.rows_used, "quarantined": dict(self.quarantined)}


def read_rfm(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    columns: dict[str, str] | None = None,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    preset: Preset | None = None,
    feature_set: FeatureSet | None = None,
    timer: Stages | None = None,
) -> Intake:
    """Read and judge ``source`` (a path, a DataFrame or Arrow table, or a :class:`SourceSpec`) on ``con``
    and compute its RFM table (or take a ready RFM table as it is).

    ``columns`` maps canonical fields to the source's columns (the preset's map fills the rest); ``as_of``
    defaults to the day after the last order. ``feature_set`` (default: the preset's, else distinct orders
    and summed amounts) says what R, F and M are; the extra columns it reads are looked for, typed and judged
    with the rest. In ``error`` mode a single broken row raises :class:`InputError` naming the row, the rule
    and the fix."""
    fs = feature_set or (preset.features if preset else DEFAULT_FEATURES)
    policy = with_features(policy or (preset.policy if preset else Policy()), fs)
    with (timer or Untimed()).stage("read"):
        if isinstance(source, SourceSpec):
            src = sample_view(con, source.register(con, VIEWS.source))
        else:
            src = open_source(con, source, VIEWS.source, encoding=policy.encoding, sheet=policy.sheet)
    layout = known_layout(src.columns, preset)  # a public data set run without the preset made for it
    if preset is not None:
        columns = preset.columns_for(src.columns, columns)
    given = parse_as_of(as_of)
    try:
        read = plan(src, columns, policy)
        queries = rfm_queries(VIEWS.canon, fs, flag=read.unclean_ids)
        p, rfm = settle(con, read, queries, given, timer)
    except InputError as exc:
        if layout is None:
            raise
        raise exc.with_hint(layout.hint(), param="preset") from None
    kept = (p.rows_read, p.quarantined, VIEWS.canon, rfm)
    return Intake(
        p.kind,
        src,
        read.mapping,
        p.as_of,
        *kept,
        rules=read.rules,
        policy=read.policy,
        originals=p.originals,
        set_aside=p.set_aside,
    )
