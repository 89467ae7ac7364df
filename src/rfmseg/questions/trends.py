"""Trend questions over the history of runs: who is trending toward another segment, what changed for a
segment's customers, whose recency jumped, where one customer is heading, and the transitions and early
warnings of :mod:`rfmseg.runs.history` with their customer lists limited.

Distances for trends ("tracking toward", "trending toward") are measured with ONE yardstick: the latest
run's model (its transform and centroids) applied to the customer's RFM values in each snapshot, so that a
change in distance is a change in the customer's behaviour, not a refit moving the centroids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.features import Words
from rfmseg.model import SegmentModel
from rfmseg.questions.common import (
    RFM,
    CustomerId,
    Days,
    History,
    Limit,
    RunRef,
    SegmentName,
    SegmentNames,
    check_limit,
    match_segment,
    records,
    rounded,
)
from rfmseg.questions.lookups import customer_segment
from rfmseg.runs import history as run_history
from rfmseg.runs import warnings as early

Membership = Literal["now", "start", "either"]
_MEMBERSHIP = {
    "now": "in {} now",
    "start": "in {} at the start of the period",
    "either": "in {} now or at the start of the period",
}


def _distances(model: SegmentModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Distance of each row's RFM to each of ``model``'s centroids, one column per segment name."""
    d = model.distances(rows[list(RFM)].to_numpy(dtype=float))
    return pd.DataFrame(d, columns=model.names_, index=rows.index)


def trending_toward(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "Loyal Buyers",
    toward: SegmentName = "At-Risk",
    runs: Annotated[int, Field(ge=2, le=100, description="How many recent runs.")] = 3,
    limit: Limit = 50,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Which customers of a segment (default Loyal Buyers) are trending toward another (default At-Risk)? Their
    gap (distance to that centroid minus distance to their own) narrowed at each of the last N runs."""
    # customers of ``segment`` in the latest run, in all of the last ``runs`` runs; the gap is measured with the
    # latest run's model, and a gap of 0 is where they would switch
    check_limit(limit)
    if runs < 2:
        raise ParameterError(f"{{runs}} {runs} should be >= 2 to see a trend", param="runs")
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    target = h.segment(snap, toward)
    if name == target:
        raise ParameterError(f"segment and toward are both '{name}'; pick two different segments")
    window = h.recent(snap, runs)
    if len(window) < 2:
        raise NotFoundError(
            f"only one run up to {snap.run_id} in {h.runs_dir}; a trend needs at least 2 runs at different "
            "as-of dates (`rfmseg refresh` or `rfmseg run FILE --as-of DATE`)"
        )
    a = h.assignments(snap)
    ids = a.loc[a["segment"] == name, "customer_id"].tolist()
    rows = h.customer_rows(window, ids)
    model = h.model(snap)
    rows = pd.concat([rows, _distances(model, rows)[[target, name]].set_axis(["d_toward", "d_own"], axis=1)], axis=1)
    steps = len(window)
    hits = []
    for cid, g in rows.groupby("customer_id", sort=True):
        if len(g) != steps:
            continue
        gap = (g["d_toward"] - g["d_own"]).to_numpy()
        if np.all(np.diff(gap) < 0):
            hits.append(
                {
                    "customer_id": cid,
                    "gap": [rounded(x) for x in gap],
                    "distance_to_toward": [rounded(x) for x in g["d_toward"]],
                    "distance_to_own": [rounded(x) for x in g["d_own"]],
                    "recency_days": [int(x) for x in g["recency_days"]],
                    "frequency": [int(x) for x in g["frequency"]],
                    "monetary": [rounded(x, 2) for x in g["monetary"]],
                    "segments": list(g["segment"]),
                    "closed_by": rounded(gap[0] - gap[-1]),
                    "gap_now": rounded(gap[-1]),
                }
            )
    hits.sort(key=lambda r: (-r["closed_by"], r["customer_id"]))
    entity = Words.of(h.summary(snap)).entity
    answer = (
        f"{len(hits):,} of the {len(ids):,} {entity} in {name} moved closer to {target} (relative to {name}) at every "
        f"one of the last {steps} runs ({window[0].as_of} to {window[-1].as_of})"
    )
    if hits:
        top = hits[0]
        answer += (
            f"; the fastest, {top['customer_id']}, narrowed the gap by {top['closed_by']:.3f} "
            f"(recency {top['recency_days'][0]} → {top['recency_days'][-1]} days) and is "
            f"{top['gap_now']:.3f} from switching."
        )
    else:
        answer += "."
    return {
        "question": f"Which {entity} in {name} are trending toward {target}?",
        "answer": answer,
        "params": {"segment": name, "toward": target, "runs": runs, "limit": limit, "run": run},
        **snap.brief(),
        "runs": [s.brief() for s in window],
        "yardstick": f"the model of run {snap.run_id}",
        "segment_customers": len(ids),
        "trending": len(hits),
        "customers": hits[:limit],
    }


def recent_changes(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "At-Risk",
    days: Days = 30,
    limit: Limit = 50,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """What changed in the last N days (default 30) for the customers now in a segment (default At-Risk): where
    they came from and how their recency, frequency and spend moved."""
    check_limit(limit)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    base = h.baseline(snap, days)
    a = h.assignments(snap)
    now = a[a["segment"] == name][["customer_id", "segment", *RFM]]
    then = h.assignments(base)[["customer_id", "segment", *RFM]]
    m = now.merge(then, on="customer_id", how="left", suffixes=("", "_then"))
    m["segment_then"] = m["segment_then"].fillna("(new)")
    for c in RFM:
        m[f"{c}_change"] = m[c] - m[f"{c}_then"]
    came_from = m["segment_then"].value_counts().sort_index().to_dict()
    moved_in = m[m["segment_then"] != name]
    ordered = int((m["frequency_change"] > 0).sum())
    gap = (snap.as_of - base.as_of).days
    mean_rec = float(m["recency_days_change"].mean()) if m["recency_days_change"].notna().any() else None
    stayed = int(came_from.get(name, 0))
    parts = [f"{cnt} from {seg}" for seg, cnt in sorted(came_from.items(), key=lambda x: -x[1]) if seg != name]
    w = Words.of(h.summary(snap))
    came_back = "placed an order" if w.units.event == "order" else f"had a new {w.units.event}"
    answer = (
        f"Of the {len(m):,} {w.entity} in {name} as of {snap.as_of}, {stayed:,} were already {name} {gap} days "
        f"earlier ({base.as_of})"
        + (f" and {len(moved_in):,} moved in ({', '.join(parts)})" if len(moved_in) else " and none moved in")
        + (f"; their recency changed by {mean_rec:+.1f} days on average" if mean_rec is not None else "")
        + f"; {ordered:,} {came_back} in between."
    )
    cols = ["customer_id", "segment_then"] + [f"{c}{s}" for c in RFM for s in ("_then", "", "_change")]
    m = m.sort_values(
        ["segment_then", "recency_days_change", "customer_id"], ascending=[True, False, True], kind="stable"
    )
    moved_first = pd.concat([m[m["segment_then"] != name], m[m["segment_then"] == name]])
    return {
        "question": f"What changed in the last {days} days for {w.entity} now classified {name}?",
        "answer": answer,
        "params": {"segment": name, "days": days, "limit": limit, "run": run},
        **snap.brief(),
        "baseline": base.brief(),
        "gap_days": gap,
        "segment_customers": len(m),
        "came_from": {str(k): int(v) for k, v in came_from.items()},
        "moved_in": len(moved_in),
        "placed_orders": ordered,
        "mean_recency_change": rounded(mean_rec, 2) if mean_rec is not None else None,
        "mean_frequency_change": rounded(m["frequency_change"].mean(), 3) if len(m) else None,
        "mean_monetary_change": rounded(m["monetary_change"].mean(), 2) if len(m) else None,
        "customers": records(moved_first[cols].head(limit)),
    }


def recency_jump(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "Champions",
    more_than_days: Annotated[int, Field(ge=0, le=3650)] = 10,
    period_days: Days = 30,
    membership: Membership = "either",
    limit: Limit = 100,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Customers of a segment (default Champions) whose recency rose by more than N days (default 10) over the
    period (default 30 days). membership: in the segment now, at the start, or either."""
    check_limit(limit)
    if not 0 <= more_than_days <= 3650:
        raise ParameterError(
            f"{{more_than_days}} {more_than_days} should be from 0 to 3650 days", param="more_than_days"
        )
    if membership not in get_args(Membership):
        raise ParameterError(f"membership '{membership}' is not allowed; use now, start or either")
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    base = h.baseline(snap, period_days)
    now = h.assignments(snap)[["customer_id", "segment", *RFM]]
    then = h.assignments(base)[["customer_id", "segment", *RFM]]
    m = now.merge(then, on="customer_id", how="inner", suffixes=("", "_then"))
    in_now, in_start = m["segment"] == name, m["segment_then"] == name
    pick = {"now": in_now, "start": in_start, "either": in_now | in_start}[membership]
    m = m[pick].copy()
    m["recency_increase"] = m["recency_days"] - m["recency_days_then"]
    m["frequency_change"] = m["frequency"] - m["frequency_then"]
    hits = m[m["recency_increase"] > more_than_days].sort_values(
        ["recency_increase", "monetary", "customer_id"], ascending=[False, False, True], kind="stable"
    )
    gap = (snap.as_of - base.as_of).days
    left = int((hits["segment"] != name).sum())
    entity = Words.of(h.summary(snap)).entity
    answer = (
        f"{len(hits):,} of the {len(m):,} {entity} {_MEMBERSHIP[membership].format(name)} saw recency rise by more "
        f"than {more_than_days} days between {base.as_of} and {snap.as_of} ({gap} days)"
        + (f"; {left:,} of them are no longer {name}" if left else "")
        + "."
    )
    cols = [
        "customer_id",
        "segment_then",
        "segment",
        "recency_days_then",
        "recency_days",
        "recency_increase",
        "frequency_then",
        "frequency",
        "frequency_change",
        "monetary",
    ]
    return {
        "question": f"Which {name} saw recency increase by more than {more_than_days} days in {period_days} days?",
        "answer": answer,
        "params": {
            "segment": name,
            "more_than_days": more_than_days,
            "period_days": period_days,
            "membership": membership,
            "limit": limit,
            "run": run,
        },
        **snap.brief(),
        "baseline": base.brief(),
        "gap_days": gap,
        "segment_customers": len(m),
        "matched": len(hits),
        "no_longer_in_segment": left,
        "customers": records(hits[cols].head(limit)),
    }


DEFAULT_TARGETS = ("Champions", "Occasional")


def customer_tracking(
    runs_dir: str | Path,
    customer_id: CustomerId,
    *,
    targets: SegmentNames = ("Champions", "Occasional"),  # DEFAULT_TARGETS
    runs: Annotated[int, Field(ge=1, le=100)] = 5,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Is a customer's behaviour tracking toward one segment or another (default Champions or Occasional, or
    in another vocabulary its first and last segment by priority)? Distance to every centroid of the latest
    model in each of the last N runs. The answer names the target whose distance fell most ("toward") and
    the nearest now, and says so when they differ."""
    if runs < 1:
        raise ParameterError(f"{{runs}} {runs} should be >= 1", param="runs")
    h = History(runs_dir)
    snap = h.resolve(run)
    names = h.segments(snap)
    if tuple(targets) == DEFAULT_TARGETS and not set(DEFAULT_TARGETS) <= set(names):
        targets = (names[0], names[-1])  # another vocabulary: its first and last segment by priority
    wanted = [match_segment(t, names, snap.run_id) for t in targets]
    if not wanted:
        raise ParameterError(f"give at least one target segment; segments: {', '.join(names)}")
    window = h.recent(snap, runs)
    rows = h.customer_rows(window, [customer_id])
    if rows.empty or snap.run_id not in set(rows["run_id"]):
        customer_segment(runs_dir, customer_id, snap.run_id)  # raises the unknown-customer error
    model = h.model(snap)
    dist = _distances(model, rows)
    points = []
    for i, r in rows.iterrows():
        points.append(
            {
                "run_id": r["run_id"],
                "as_of": pd.Timestamp(r["as_of"]).date().isoformat(),
                "segment": r["segment"],
                "recency_days": int(r["recency_days"]),
                "frequency": int(r["frequency"]),
                "monetary": rounded(r["monetary"], 2),
                "distances": {n: rounded(dist.loc[i, n]) for n in model.names_},
            }
        )
    trend = {}
    for t in wanted:
        first, last = points[0]["distances"][t], points[-1]["distances"][t]
        trend[t] = {"first": first, "last": last, "change": rounded(last - first)}
    now = points[-1]
    nearest_target = min(wanted, key=lambda t: (now["distances"][t], t))
    closing = [t for t in wanted if trend[t]["change"] < 0]
    cid = customer_id
    if len(points) < 2:
        toward = None
        answer = (
            f"{cid} is {now['segment']}; only one run includes them, so no trend yet. Right now they are nearest "
            f"{nearest_target} among {', '.join(wanted)} "
            + ", ".join(f"({t} {now['distances'][t]:.3f})" for t in wanted)
            + "."
        )
    else:
        toward = min(closing, key=lambda t: (trend[t]["change"], t)) if closing else None
        span = f"over {len(points)} runs ({points[0]['as_of']} to {now['as_of']})"
        moves = "; ".join(f"{t} {trend[t]['first']:.3f} → {trend[t]['last']:.3f}" for t in wanted)
        if toward is None:
            answer = (
                f"{cid} ({now['segment']}) is moving away from all of {', '.join(wanted)}: distance {span}: {moves}."
            )
        elif toward == nearest_target:
            answer = (
                f"{cid} ({now['segment']}) is tracking toward {toward}, already the nearest of {', '.join(wanted)}: "
                f"distance {span}: {moves}."
            )
        else:
            answer = (
                f"{cid} ({now['segment']}) is moving toward {toward} but is still nearer {nearest_target} "
                f"({now['distances'][nearest_target]:.3f} vs {now['distances'][toward]:.3f}): distance {span}: "
                f"{moves}."
            )
    return {
        "question": f"Is {cid}'s behaviour tracking toward {' or '.join(wanted)}?",
        "answer": answer,
        "params": {"customer_id": cid, "targets": wanted, "runs": runs, "run": run},
        **snap.brief(),
        "yardstick": f"the model of run {snap.run_id} (scaled-unit Euclidean distance)",
        "segment": now["segment"],
        "toward": toward,
        "nearest_target": nearest_target,
        "trend": trend,
        "points": points,
    }


def transitions(
    runs_dir: str | Path,
    from_run: str | None = None,
    to_run: str | None = None,
    from_segment: str | None = None,
    to_segment: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The transition matrix between two runs (default: the last two) in customers and revenue, and the
    customers who moved (optionally only from one segment and/or to another)."""
    check_limit(limit)
    t = run_history.transitions(runs_dir, from_run, to_run, from_segment, to_segment)
    t["moves"], t["moves_left_out"] = _first(t["moves"], limit)
    return t


def warnings(
    runs_dir: str | Path,
    run: str | None = None,
    overdue_days: Annotated[int | None, Field(ge=0, le=3650)] = None,
    window_days: Annotated[int | None, Field(ge=1, le=3650)] = None,
    late_factor: Annotated[float, Field(ge=1, le=100)] = 2.0,
    lookback_days: Days = 90,
    min_orders: Annotated[int, Field(ge=2, le=1000)] = 4,
    limit: Limit = 50,
    recency_jump_days: Annotated[int | None, Field(ge=0, le=3650)] = None,
    period_days: Annotated[int | None, Field(ge=1, le=3650)] = None,
) -> dict[str, Any]:
    """Early warnings for a run, on each customer's own rhythm: Champions who dropped to Loyal Buyers, Champions
    slowing down, customers overdue (later than their own mean gap between orders allows), Loyal Buyers lapsing
    toward At-Risk, segment changes — each with the customers and their values. recency_jump_days and
    period_days are the former names of overdue_days and window_days."""
    check_limit(limit)
    w = early.warnings(
        runs_dir,
        run,
        overdue_days=overdue_days,
        window_days=window_days,
        late_factor=late_factor,
        lookback_days=lookback_days,
        min_orders=min_orders,
        recency_jump_days=recency_jump_days,
        period_days=period_days,
        limit=limit,
    )
    for item in w["warnings"]:
        item["customers_left_out"] = item["count"] - len(item["customers"])
    return w


def _first(rows: list[Any], limit: int) -> tuple[list[Any], int]:
    """The first ``limit`` rows and how many were left out."""
    return rows[:limit], max(0, len(rows) - limit)
