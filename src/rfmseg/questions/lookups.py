"""Lookups: a run's segments, one segment's profile, one customer, customers filtered by their RFM values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pandas as pd
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.questions.common import (
    RFM,
    CustomerId,
    History,
    Limit,
    RunRef,
    SegmentName,
    check_limit,
    records,
    rounded,
    slug,
)


def list_segments(runs_dir: str | Path, run: RunRef = "latest") -> dict[str, Any]:
    """All segments of a run with their profile (customers, revenue, shares, mean/median RFM, AOV), recommended
    action and priority, plus the run's insights."""
    h = History(runs_dir)
    snap = h.resolve(run)
    s = h.summary(snap)
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "n_customers": s["n_customers"],
        "total_revenue": s["total_revenue"],
        "segments": s["segments"],
        "insights": s.get("insights", []),
    }


def segment_profile(
    runs_dir: str | Path,
    segment: SegmentName,
    run: RunRef = "latest",
    examples: Annotated[int, Field(ge=0, le=100)] = 5,
) -> dict[str, Any]:
    """One segment's profile, centroid, why it got its name, and its most typical customers."""
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    row = next(s for s in h.summary(snap)["segments"] if s["name"] == name)
    model = h.model(snap)
    centroid = None
    if name in model.names_:
        c = model.centroids_raw_[model.names_.index(name)]
        centroid = {f: rounded(v, 2) for f, v in zip(RFM, c, strict=True)}
    a = h.assignments(snap)
    members = a[a["segment"] == name].sort_values(["distance", "customer_id"])
    ex = members.head(max(0, examples))[["customer_id", *RFM, "distance"]]
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "segment": name,
        "slug": slug(name),
        "profile": row,
        "centroid": centroid,
        "examples": records(ex),
    }


def customer_segment(runs_dir: str | Path, customer_id: CustomerId, run: RunRef = "latest") -> dict[str, Any]:
    """A customer's segment, RFM values and distance in a run, with the segment's action."""
    h = History(runs_dir)
    snap = h.resolve(run)
    a = h.assignments(snap)
    hit = a[a["customer_id"] == customer_id]
    if hit.empty:
        example = a["customer_id"].iloc[0] if len(a) else "?"
        raise NotFoundError(
            f"unknown customer '{customer_id}' in run {snap.run_id}; ids look like {example} "
            "(check the id, or run a newer segmentation that includes it)"
        )
    row = records(hit)[0]
    profile = next(s for s in h.summary(snap)["segments"] if s["name"] == row["segment"])
    keep = ("customer_id", "segment", *RFM, "distance", "margin")
    return {
        **{k: row[k] for k in keep if k in row},
        "action": profile.get("action", ""),
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "source": "run",
    }


SortField = Literal["recency_days", "frequency", "monetary", "distance", "customer_id", "aov"]


def find_customers(
    runs_dir: str | Path,
    *,
    segment: str | None = None,
    recency_min: float | None = None,
    recency_max: float | None = None,
    frequency_min: float | None = None,
    frequency_max: float | None = None,
    monetary_min: float | None = None,
    monetary_max: float | None = None,
    sort_by: SortField = "monetary",
    descending: bool = True,
    limit: Limit = 20,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Customers filtered by segment and recency/frequency/monetary ranges (inclusive), sorted and limited."""
    check_limit(limit)
    if sort_by not in get_args(SortField):
        raise ParameterError(
            f"sort_by '{sort_by}' is not allowed; use recency_days, frequency, monetary, aov, distance or customer_id"
        )
    for lo, hi, what in (
        (recency_min, recency_max, "recency"),
        (frequency_min, frequency_max, "frequency"),
        (monetary_min, monetary_max, "monetary"),
    ):
        if lo is not None and hi is not None and lo > hi:
            raise ParameterError(f"{what}_min={lo} is above {what}_max={hi}; swap them")
    h = History(runs_dir)
    snap = h.resolve(run)
    a = h.assignments(snap)
    a["aov"] = a["monetary"] / a["frequency"].where(a["frequency"] > 0, 1)
    mask = pd.Series(True, index=a.index)
    name = None
    if segment:
        name = h.segment(snap, segment)
        mask &= a["segment"] == name
    for col, lo, hi in (
        ("recency_days", recency_min, recency_max),
        ("frequency", frequency_min, frequency_max),
        ("monetary", monetary_min, monetary_max),
    ):
        if lo is not None:
            mask &= a[col] >= lo
        if hi is not None:
            mask &= a[col] <= hi
    hits = a[mask].sort_values([sort_by, "customer_id"], ascending=[not descending, True], kind="stable")
    rows = hits.head(limit)[["customer_id", "segment", *RFM, "aov", "distance"]].copy()
    rows["aov"] = rows["aov"].round(2)
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "filters": {
            "segment": name,
            "recency_days": [recency_min, recency_max],
            "frequency": [frequency_min, frequency_max],
            "monetary": [monetary_min, monetary_max],
        },
        "sort_by": sort_by,
        "descending": descending,
        "matched": int(mask.sum()),
        "returned": len(rows),
        "customers": records(rows),
    }
