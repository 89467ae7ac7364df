"""Lookups: a run's segments, one segment's profile, one customer, customers filtered by their RFM values, and
the onboarding path that fits one customer's usage profile (presets with onboarding paths: saas)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pandas as pd
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError, check_customer_id
from rfmseg.features import Units
from rfmseg.presets import Onboarding
from rfmseg.questions.common import (
    RFM,
    CustomerId,
    History,
    Limit,
    RunRef,
    SegmentName,
    Snapshot,
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
    if not 0 <= examples <= 100:
        raise ParameterError(f"{{examples}} {examples} should be from 0 to 100 customers", param="examples")
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
    ex = members.head(examples)[["customer_id", *RFM, "distance"]]
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
    check_customer_id(customer_id)
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


# ------------------------------------------------------------------------------------------------ onboarding
def onboarding_path(
    runs_dir: str | Path,
    customer_id: CustomerId,
    *,
    run: RunRef = "latest",
    usage: Annotated[
        str | None,
        Field(
            description="The usage file the run read (a path on the server); default: the run's input, if unchanged."
        ),
    ] = None,
) -> dict[str, Any]:
    """Which onboarding path matches this customer's usage profile? The path of the customer's segment, from the
    run's preset (saas), with each usage signal that leads to it checked on the customer's own figures (days
    since last login, sessions, features used, sessions per feature) against the median user and the segment's
    typical member; with the usage file, the features they use and the ones most used in their segment that they
    have not tried."""
    h = History(runs_dir)
    snap = h.resolve(run)
    onboarding = _onboarding_of(snap)
    a = h.assignments(snap)
    a["depth"] = a["frequency"] / a["monetary"].where(a["monetary"] > 0)
    me = _member(a, customer_id, snap.run_id)
    segment = str(me["segment"])
    path = onboarding.path_of(segment)
    if path is None:
        raise NotFoundError(
            f"the run's preset has no onboarding path for segment '{segment}'; paths exist for "
            f"{', '.join(p.segment for p in onboarding.paths)}"
        )
    members = a[a["segment"] == segment]
    u = Units.from_dict(h.summary(snap).get("units"))
    labels = {"recency_days": u.recency, "frequency": u.frequency, "monetary": u.monetary, "depth": onboarding.depth}
    figures = {m: _figure(me[m]) for m in labels}
    typical = {m: _figure(members[m].median()) for m in labels}
    median_user = {m: _figure(a[m].median()) for m in labels}
    signals: list[dict[str, Any]] = []
    for s in path.signals:
        v, all_, seg = figures[s.measure], median_user[s.measure], typical[s.measure]
        if v is None or all_ is None:
            continue  # no features used: sessions per feature is not a figure
        holds = v < all_ if s.side == "low" else v > all_
        text = (
            f"{'shows' if holds else 'does not show'} {s.says}: {_count(v, labels[s.measure])}, "
            f"{_than(v, all_)} the median user's {_num(all_)}"
            + (f" and {_than(v, seg)} the typical {segment} member's {_num(seg)}" if seg is not None else "")
        )
        signals.append(
            {
                "measure": s.measure,
                "label": labels[s.measure],
                "signal": s.says,
                "side": s.side,
                "value": v,
                "median_user": all_,
                "segment_median": seg,
                "holds": holds,
                "text": text,
            }
        )
    shown = sum(s["holds"] for s in signals)
    answer = (
        f"{customer_id} ({segment}) fits the {path.name} path: {path.what}. "
        f"The path's usage signals ({shown} of {len(signals)} shown): " + "; ".join(s["text"] for s in signals) + "."
    )
    features, note = _features(snap, customer_id, segment, members, usage)
    if features is not None:
        used = features["used"]
        answer += f" Features used: {', '.join(used)}." if used else ""
        nxt = features["next"]
        if nxt:
            shown_next = (f"{x['feature']} ({x['share_of_segment']:.0%} of {segment} use it)" for x in nxt)
            answer += f" Not tried yet, most used in {segment}: {', '.join(shown_next)}."
    return {
        "question": f"Which onboarding path matches {customer_id}'s usage profile?",
        "answer": answer,
        "params": {"customer_id": customer_id, "run": run, "usage": usage},
        **snap.brief(),
        "customer_id": customer_id,
        "segment": segment,
        "path": {"name": path.name, "what": path.what, "segment": path.segment},
        "usage_profile": figures,
        "segment_median": typical,
        "median_user": median_user,
        "segment_customers": len(members),
        "signals": signals,
        "signals_shown": shown,
        "features": features,
        "features_note": note,
    }


def _onboarding_of(snap: Snapshot) -> Onboarding:
    """The onboarding paths of the run's preset (recorded with the run, else the built-in preset of its name),
    or a one-line refusal naming the presets that have them."""
    from rfmseg.presets import PRESETS, Preset, get_preset

    params = snap.run.manifest["params"]
    name = params.get("preset")
    recorded = params.get("preset_definition")
    preset = Preset.from_dict(recorded) if recorded else None
    if preset is not None and preset.onboarding is not None:
        return preset.onboarding
    built_in = get_preset(name).onboarding if name in PRESETS else None
    if built_in is not None:
        return built_in  # a run recorded before presets carried their paths
    having = [n for n in PRESETS if get_preset(n).onboarding is not None]
    used = f"the {name} preset" if name else "no preset"
    raise ParameterError(
        f"onboarding paths apply to product-usage runs of the {' or '.join(having)} preset; run {snap.run_id} "
        f"used {used}; segment usage data with `rfmseg run --preset {having[0]} FILE`",
        param="run",
    )


def _member(a: pd.DataFrame, customer_id: str, run_id: str) -> pd.Series:
    check_customer_id(customer_id)
    hit = a[a["customer_id"] == customer_id]
    if hit.empty:
        example = a["customer_id"].iloc[0] if len(a) else "?"
        raise NotFoundError(
            f"unknown customer '{customer_id}' in run {run_id}; ids look like {example} "
            "(check the id, or run a newer segmentation that includes it)"
        )
    return hit.iloc[0]


def _figure(x: Any) -> float | int | None:
    """A figure as the answer shows it: whole numbers as int, others to 1 decimal, NaN as None."""
    if x is None or pd.isna(x):
        return None
    x = float(x)
    x = rounded(x, 1)  # the figure the text shows is the one compared
    return int(x) if x.is_integer() else x


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _count(v: float, label: str) -> str:
    """'3 sessions', '1 session', '1 feature used', '21.5 days since last login'."""
    first, _, rest = label.partition(" ")
    if v == 1 and first.endswith("s"):
        first = first[:-1]
    return f"{_num(v)} {first}{' ' if rest else ''}{rest}"


def _than(v: float, ref: float) -> str:
    return "fewer than" if v < ref else "more than" if v > ref else "the same as"


NEXT_FEATURES = 3
"""how many of the features the customer has not tried are named, the most used in their segment first"""


def _features(
    snap: Snapshot, customer_id: str, segment: str, members: pd.DataFrame, usage: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The items behind monetary (the features, when monetary counts distinct ones) that the customer used, and
    the :data:`NEXT_FEATURES` they have not that most of their segment uses; read from the usage file.
    (None, why) when that cannot be told truly: no file, a changed file, or a file whose count for the customer
    is not the run's."""
    import duckdb

    from rfmseg.features import FeatureSet
    from rfmseg.io import open_source
    from rfmseg.io.readers import sql_identifier
    from rfmseg.io.validate import id_expr

    manifest = snap.run.manifest
    monetary = FeatureSet.from_dict(manifest["params"]["features"]).monetary
    if monetary.fn != "count_distinct" or not monetary.column:
        return None, f"monetary is {monetary}, not a count of distinct features: no feature list"
    given = Path(usage) if usage else None
    if given is not None and not given.is_file():
        raise NotFoundError(f"usage file {given}: not found; give the file the run read with {{usage}}", param="usage")
    path = given or Path(manifest["input"].get("path") or "")
    if given is None and not path.is_file():
        return None, f"the run's input {path} is not there any more: pass the usage file to list the features"
    columns = manifest["input"].get("columns") or {}
    con = duckdb.connect()
    try:
        src = open_source(con, path, name="usage")
        if given is None and src.sha256 != manifest["input"].get("sha256"):
            return None, f"{path} changed since the run: pass the usage file the run read to list the features"
        cust = columns.get("customer_id", "customer_id")
        item = columns.get(monetary.column, monetary.column)
        missing = [c for c in (cust, item) if c not in src.columns]
        if missing:
            return None, f"{src.label} has no column {missing[0]}: no feature list"
        rows = con.sql(
            f"SELECT DISTINCT {id_expr(cust, src.columns[cust])} AS customer_id, "
            f"NULLIF(trim(CAST({sql_identifier(item)} AS VARCHAR)), '') AS feature FROM usage"
        ).df()
    finally:
        con.close()
    rows = rows[rows["feature"].notna() & rows["customer_id"].isin(set(members["customer_id"]) | {customer_id})]
    counted = rows.groupby("customer_id")["feature"].nunique()
    run_count = members.set_index("customer_id")["monetary"]
    mine = sorted(rows.loc[rows["customer_id"] == customer_id, "feature"])
    if len(mine) != int(run_count.get(customer_id, -1)):
        return None, (
            f"{src.label} holds {len(mine)} features for {customer_id} where the run counted "
            f"{int(run_count.get(customer_id, 0))} (rows set aside or after the as-of date): no feature list"
        )
    agree = counted.reindex(run_count.index).eq(run_count)
    compared = set(agree[agree].index)
    peers = rows[rows["customer_id"].isin(compared)]
    share = (peers.groupby("feature")["customer_id"].nunique() / max(len(compared), 1)).sort_index()
    untried = [(f, s) for f, s in share.items() if f not in mine]
    nxt = [
        {"feature": f, "share_of_segment": rounded(s, 4)}
        for f, s in sorted(untried, key=lambda fs: (-fs[1], fs[0]))[:NEXT_FEATURES]
    ]
    return {
        "source": src.label,
        "column": item,
        "used": mine,
        "next": nxt,
        "members_compared": len(compared),
    }, None
