"""What every question shares: the runs as an ordered history with cached reads of their files, segment
matching, JSON-able rows and rounding, and the annotated parameter types whose constraints and descriptions
the MCP tools publish (direct calls check their values in the question itself).

History: every run folder is a snapshot of all customers as of its as-of date. Snapshots are ordered by
as-of date (ties: the run created last wins, so a retrain replaces a refresh of the same day). "The latest
run" is the last snapshot in that order. "N days ago" is the earlier snapshot whose as-of date is closest to
the latest as-of minus N days; the real gap is reported with every answer.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import duckdb
import numpy as np
import pandas as pd
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.io.readers import sql_string
from rfmseg.model import SegmentModel
from rfmseg.model.naming import match_segment as match_segment  # the one rule, here with the questions' names
from rfmseg.model.naming import slug as slug
from rfmseg.runs import DEFAULT_RUNS_DIR, Run
from rfmseg.runs import history as run_history
from rfmseg.runs.history import RunMeta

RFM = ("recency_days", "frequency", "monetary")

# ------------------------------------------------------------------------------------------------ parameters
Limit = Annotated[int, Field(ge=1, le=1000, description="Most rows to return.")]
RunRef = Annotated[str, Field(description="Run id, unique prefix, or 'latest'.")]
SegmentName = Annotated[str, Field(min_length=1, max_length=100, description="Segment name, e.g. At-Risk.")]
CustomerId = Annotated[str, Field(min_length=1, max_length=200, description="Customer id, e.g. C087.")]
Kind = Annotated[str, Field(min_length=1, max_length=60, description="Campaign kind, e.g. discount, win_back.")]
Days = Annotated[int, Field(ge=1, le=3650)]
SegmentNames = Annotated[Sequence[str], Field(min_length=1, max_length=20)]

# ------------------------------------------------------------------------------------------------ history


@dataclass(frozen=True)
class Snapshot:
    """One run seen as a point in the history."""

    run_id: str
    as_of: date
    created: str
    path: Path

    @property
    def run(self) -> Run:
        return Run(self.run_id, self.path)

    def brief(self) -> dict[str, str]:
        return {"run_id": self.run_id, "as_of": self.as_of.isoformat()}


def _snapshot(meta: RunMeta) -> Snapshot:
    return Snapshot(meta.run_id, meta.date, meta.created.isoformat(), Path(meta.file).parent)


def no_runs_error(runs_dir: Path) -> NotFoundError:
    return NotFoundError(
        f"no runs in {runs_dir}; run `rfmseg run FILE` (or `rfmseg demo`) first, or point {{runs_dir}} / "
        "RFMSEG_RUNS_DIR at the folder that holds them",
        param="runs_dir",
    )


class History:
    """The runs of one runs folder as an ordered history (the timeline of :mod:`rfmseg.runs.history`: one run per
    as-of date, the last written), with cached reads of their files."""

    def __init__(self, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> None:
        self.runs_dir = Path(runs_dir)
        self.all = [_snapshot(m) for m in run_history.run_metas(self.runs_dir)]
        self.snapshots = [_snapshot(m) for m in run_history.timeline(self.runs_dir)] if self.all else []

    # ------------------------------------------------------------------------------------------ selection
    def resolve(self, run: str | None = "latest") -> Snapshot:
        """``latest`` (the last snapshot), a run id or a unique prefix of one."""
        if not self.all:
            raise no_runs_error(self.runs_dir)
        if run in (None, "", "latest"):
            return self.snapshots[-1]
        found = run_history.resolve(self.runs_dir, run)
        return next(s for s in self.all if s.run_id == found.run_id)

    def before(self, snap: Snapshot) -> list[Snapshot]:
        """The history up to and including ``snap`` (one snapshot per day, ``snap`` itself last)."""
        earlier = [s for s in self.snapshots if s.as_of < snap.as_of]
        return [*earlier, snap]

    def recent(self, snap: Snapshot, n: int) -> list[Snapshot]:
        if n < 1:
            raise ParameterError(f"{{runs}} {n} should be >= 1", param="runs")
        return self.before(snap)[-n:]

    def baseline(self, snap: Snapshot, days: int) -> Snapshot:
        """The earlier snapshot whose as-of date is closest to ``snap.as_of - days`` (ties: the earlier)."""
        if days < 1:
            raise ParameterError(f"the period of {days} days should be at least 1 day")
        earlier = [s for s in self.snapshots if s.as_of < snap.as_of]
        if not earlier:
            raise NotFoundError(
                f"there is no run before {snap.run_id} (as of {snap.as_of}) to compare with; "
                "history questions need at least two runs at different as-of dates (`rfmseg refresh` daily, "
                "or `rfmseg run FILE --as-of DATE`)"
            )
        target = snap.as_of - timedelta(days=days)
        return min(earlier, key=lambda s: (abs((s.as_of - target).days), s.as_of))

    # ------------------------------------------------------------------------------------------ reading
    def summary(self, snap: Snapshot) -> dict[str, Any]:
        return copy.deepcopy(_read_json(str(snap.path / "summary.json")))

    def model(self, snap: Snapshot) -> SegmentModel:
        return _read_model(str(snap.path / "model.json"))

    def assignments(self, snap: Snapshot) -> pd.DataFrame:
        return _read_assignments(str(snap.path / "assignments.parquet")).copy()

    def segments(self, snap: Snapshot) -> list[str]:
        return [s["name"] for s in self.summary(snap)["segments"]]

    def segment(self, snap: Snapshot, name: str) -> str:
        """The segment called ``name`` in ``snap`` (any case, or a slug such as loyal-buyers)."""
        return match_segment(name, self.segments(snap), snap.run_id)

    def customer_rows(self, snaps: Sequence[Snapshot], customer_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Assignments of ``snaps`` stacked, with run_id, as_of and step (0 = first snapshot) columns."""
        if not snaps:
            return pd.DataFrame()
        con = duckdb.connect()
        try:
            runs = pd.DataFrame(
                {
                    "path": [str(s.path / "assignments.parquet") for s in snaps],
                    "run_id": [s.run_id for s in snaps],
                    "as_of": [s.as_of for s in snaps],
                    "step": list(range(len(snaps))),
                }
            )
            con.register("runs_meta", runs)
            files = ", ".join(sql_string(p) for p in runs["path"])
            where = ""
            if customer_ids is not None:
                con.register("wanted", pd.DataFrame({"customer_id": list(customer_ids)}))
                where = "WHERE a.customer_id IN (SELECT customer_id FROM wanted)"
            return con.sql(
                "SELECT a.customer_id, a.segment, a.recency_days, a.frequency, a.monetary, a.distance, "
                "m.run_id, m.as_of, m.step "
                f"FROM read_parquet([{files}], filename = true, union_by_name = true) a "
                "JOIN runs_meta m ON a.filename = m.path "
                f"{where} ORDER BY a.customer_id, m.step"
            ).df()
        finally:
            con.close()


@lru_cache(maxsize=64)
def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=16)
def _read_model(path: str) -> SegmentModel:
    return SegmentModel.load(Path(path))


@lru_cache(maxsize=4)
def _read_assignments(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def rounded(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain JSON-able dicts (numpy scalars, NaN -> None, dates -> ISO)."""
    out = []
    for row in df.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or v is pd.NA:
                v = None
            elif isinstance(v, (pd.Timestamp, datetime, date)):
                v = v.isoformat()
            clean[k] = v
        out.append(clean)
    return out


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise ParameterError(f"{{limit}} {limit} should be a whole number >= 1", param="limit")
    return limit
