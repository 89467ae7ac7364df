"""The context pack an AI system consumes about one segment or one customer, as JSON or Markdown.

A segment pack: what the segment is (profile, centroid, why it got its name), what to do (action,
priority), how it moved since the previous run (customers in and out, by segment) and typical customers
(nearest the centroid). A customer pack: the customer's segment and values (from the online profile store
when it serves the customer, else the latest run), the segment's profile and action, the customer's history
across runs, their distance to every centroid, and their recent campaign touches.

``target`` is looked up as a segment first (exact name, any case, or slug such as ``loyal-buyers``), then as
a customer id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rfmseg import questions as q
from rfmseg.errors import NotFoundError, StoreError, check_customer_id, shown_id
from rfmseg.features import Units, Words
from rfmseg.runs import history as run_history
from rfmseg.settings import DEFAULT_RUNS_DIR, existing_store_url
from rfmseg.touches import load_touches

PROFILE_KEYS = (
    "customers",
    "share_customers",
    "revenue",
    "share_revenue",
    "mean_recency_days",
    "median_recency_days",
    "mean_frequency",
    "median_frequency",
    "mean_monetary",
    "median_monetary",
    "aov",
    "priority",
)


# ------------------------------------------------------------------------------------------------ store


def default_store_url(runs_dir: str | Path, store: str | None = None) -> str | None:
    """The store to read: ``store``, else $RFMSEG_STORE, else ``<runs_dir>/profiles.db`` if that file exists.

    None when no store is configured and the default file does not exist (reading must not create one)."""
    return existing_store_url(runs_dir, store)


def store_profile(runs_dir: str | Path, customer_id: str, store: str | None = None) -> dict[str, Any] | None:
    """The customer's profile in the online store, None when no store is configured or it does not serve
    the customer. A store that is configured but down raises StoreError."""
    url = default_store_url(runs_dir, store)
    if url is None:
        return None
    from rfmseg.stores import open_store

    with open_store(url) as s:
        profile = s.get(customer_id)
        if profile is None:
            return None
        out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in profile.items()}
        out["store"] = s.url_display
        return out


def lookup_customer(runs_dir: str | Path, customer_id: str, store: str | None = None) -> dict[str, Any]:
    """get_customer_segment: the online store's answer when it serves the customer (with previous segment
    and segment-since date), else the latest run's. A store that is down is reported, not fatal."""
    check_customer_id(customer_id)
    from_run: dict[str, Any] | None = None
    store_error = None
    try:
        profile = store_profile(runs_dir, customer_id, store)
    except StoreError as exc:
        profile, store_error = None, exc.message
    try:
        from_run = q.customer_segment(runs_dir, customer_id)
    except NotFoundError:
        if profile is None:
            raise
    if profile is not None:
        out = {**profile, "source": "store"}
        if from_run is not None:
            out["action"] = from_run["action"]
            out["margin"] = from_run.get("margin")
        return out
    assert from_run is not None
    if store_error:
        from_run["store_error"] = store_error
    return from_run


# ------------------------------------------------------------------------------------------------ packs


def context_pack(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    target: str = "",
    *,
    examples: int = 5,
    touches: int = 10,
    history_runs: int = 6,
    store: str | None = None,
) -> dict[str, Any]:
    """The pack for a segment (name or slug) or, failing that, a customer id."""
    if not target or not target.strip():
        raise NotFoundError("give a segment name or a customer id")
    h = q.History(runs_dir)
    snap = h.resolve("latest")
    names = h.segments(snap)
    try:
        name = q.match_segment(target, names, snap.run_id)
    except NotFoundError:
        name = None
    if name is not None:
        return segment_pack(runs_dir, name, examples=examples)
    try:
        return customer_pack(runs_dir, target, touches=touches, history_runs=history_runs, store=store)
    except NotFoundError:
        raise NotFoundError(
            f"'{shown_id(target)}' is neither a segment nor a customer of run {snap.run_id}; "
            f"segments: {', '.join(names)}; "
            "customer ids look like "
            + str(h.assignments(snap)["customer_id"].iloc[0] if len(h.assignments(snap)) else "?")
        ) from None


def segment_pack(runs_dir: str | Path, segment: str, *, examples: int = 5) -> dict[str, Any]:
    prof = q.segment_profile(runs_dir, segment, examples=examples)
    row = prof["profile"]
    name = prof["segment"]
    summary = q.History(runs_dir)
    snap = summary.resolve("latest")
    insights = [
        i
        for i in summary.summary(snap).get("insights", [])
        if name in (i.get("values", {}).get("segment"), i.get("values", {}).get("other_segment"))
    ]
    pack = {
        "kind": "segment",
        "segment": name,
        "slug": prof["slug"],
        "run_id": prof["run_id"],
        "as_of": prof["as_of"],
        "description": row.get("description", ""),
        "why_this_name": row.get("reason", ""),
        "action": row.get("action", ""),
        "profile": {k: row[k] for k in PROFILE_KEYS if k in row},
        "centroid": prof["centroid"],
        "movement": segment_movement(runs_dir, name),
        "examples": prof["examples"],
        "insights": insights,
    }
    words = Words.of(summary.summary(snap))
    pack["units"] = words.units.to_dict()  # how the run speaks of R, F and M (a prompt words its examples so)
    pack["currency"] = words.currency
    pack["summary"] = _segment_sentence(pack, words)
    return pack


def segment_movement(runs_dir: str | Path, segment: str, to_run: str | None = None) -> dict[str, Any] | None:
    """Customers into and out of ``segment`` between the previous run and the latest (None with one run)."""
    try:
        t = run_history.transitions(runs_dir, None, to_run)
    except NotFoundError:
        return None
    rows, cols, m = t["rows"], t["columns"], t["customers"]
    into = {rows[i]: m[i][cols.index(segment)] for i in range(len(rows)) if segment in cols and rows[i] != segment}
    out = {cols[j]: m[rows.index(segment)][j] for j in range(len(cols)) if segment in rows and cols[j] != segment}
    stayed = m[rows.index(segment)][cols.index(segment)] if segment in rows and segment in cols else 0
    into = {k: v for k, v in into.items() if v}
    out = {k: v for k, v in out.items() if v}
    return {
        "from_run": t["from_run"],
        "to_run": t["to_run"],
        "from_as_of": t["from_as_of"],
        "to_as_of": t["to_as_of"],
        "stayed": stayed,
        "moved_in": into,
        "moved_out": out,
        "net": sum(into.values()) - sum(out.values()),
    }


def _segment_sentence(p: dict[str, Any], w: Words) -> str:
    pr = p["profile"]
    total = f", {w.total(pr['revenue'])} ({pr['share_revenue']:.0%})" if w.units.total else ""
    ratio = f", {w.ratio(pr['aov'])}" if w.units.ratio else ""
    text = (
        f"{p['segment']} ({p['description']}): {pr['customers']:,} {w.entity} ({pr['share_customers']:.0%})"
        f"{total}; on average {pr['mean_recency_days']:.0f} {w.units.recency}, "
        f"{w.count(pr['mean_frequency'], 1)}, {w.amount(pr['mean_monetary'])}{ratio}. "
        f"Recommended: {p['action']} (priority {pr['priority']})."
    )
    mv = p.get("movement")
    if mv:
        text += (
            f" Since {mv['from_as_of']}: {sum(mv['moved_in'].values())} moved in, "
            f"{sum(mv['moved_out'].values())} moved out."
        )
    return text


def customer_pack(
    runs_dir: str | Path, customer_id: str, *, touches: int = 10, history_runs: int = 6, store: str | None = None
) -> dict[str, Any]:
    now = lookup_customer(runs_dir, customer_id, store)
    h = q.History(runs_dir)
    snap = h.resolve("latest")
    run_row = q.customer_segment(runs_dir, customer_id)
    seg = run_row["segment"]
    prof = next(s for s in h.summary(snap)["segments"] if s["name"] == seg)
    hist = [
        {k: r.get(k) for k in ("run_id", "as_of", "segment", "recency_days", "frequency", "monetary")}
        for r in run_history.history(runs_dir, customer_id)
    ][-history_runs:]
    model = h.model(snap)
    x = np.array([[run_row["recency_days"], run_row["frequency"], run_row["monetary"]]], dtype=float)
    dist = dict(zip(model.names_, (q.rounded(v) for v in model.distances(x)[0]), strict=True))
    others = sorted((d, n) for n, d in dist.items() if n != seg)
    t = load_touches(runs_dir, customer_id).to_pylist()[-touches:]
    recent_touches = [
        {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in r.items()
            if k in ("campaign", "kind", "channel", "sent_at", "responded_at", "converted_at")
        }
        for r in t
    ]
    freq = run_row["frequency"] or 1
    pack = {
        "kind": "customer",
        "customer_id": customer_id,
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "segment": seg,
        "source": now.get("source"),
        "previous_segment": now.get("previous_segment"),
        "segment_since": now.get("segment_since"),
        "recency_days": run_row["recency_days"],
        "frequency": run_row["frequency"],
        "monetary": run_row["monetary"],
        "aov": q.rounded(run_row["monetary"] / freq, 2),
        "distance": q.rounded(run_row["distance"]),
        "margin": q.rounded(run_row["margin"]) if run_row.get("margin") is not None else None,
        "action": prof.get("action", ""),
        "segment_profile": {k: prof[k] for k in PROFILE_KEYS if k in prof},
        "segment_description": prof.get("description", ""),
        "distances": dist,
        "next_nearest_segment": others[0][1] if others else None,
        "history": hist,
        "touches": recent_touches,
    }
    if now.get("store_error"):
        pack["store_error"] = now["store_error"]
    words = Words.of(h.summary(snap))
    pack["units"] = words.units.to_dict()
    pack["currency"] = words.currency
    pack["summary"] = _customer_sentence(pack, words)
    return pack


def _customer_sentence(p: dict[str, Any], w: Words) -> str:
    sp = p["segment_profile"]
    text = (
        f"{p['customer_id']} is {p['segment']}: "
        f"{w.figures(p['recency_days'], p['frequency'], p['monetary'], p['as_of'])}; the segment averages "
        f"{sp['mean_recency_days']:.0f} days, {w.count(sp['mean_frequency'], 1)}, "
        f"{w.value(sp['mean_monetary']) if w.units.money else w.amount(sp['mean_monetary'])}. "
        f"Recommended: {p['action']}."
    )
    if p.get("next_nearest_segment"):
        text += f" Next nearest segment: {p['next_nearest_segment']}."
    segs = [r["segment"] for r in p["history"]]
    if len(segs) > 1 and len(set(segs)) > 1:
        text += f" Segment across the last {len(segs)} runs: {' → '.join(segs)}."
    if p["touches"]:
        last = p["touches"][-1]
        text += f" Last contact: {last['kind']} ({last['campaign']}) on {str(last['sent_at'])[:10]}."
    return text


# ------------------------------------------------------------------------------------------------ markdown


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    if not rows:
        return "_none_\n"
    cols = cols or list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _profile_rows(profile: dict[str, Any], u: Units) -> list[dict[str, Any]]:
    """A segment profile as table rows labelled in the run's units (the JSON keys stay): 'users', 'mean
    sessions', 'mean features used'; sums and ratios the units do not have (a total of features used) are left
    out."""
    labels = {
        "customers": u.entity,
        "share_customers": f"share of {u.entity}",
        "revenue": u.total,
        "share_revenue": f"share of {u.total}" if u.total else "",
        "mean_recency_days": f"mean {u.recency}",
        "median_recency_days": f"median {u.recency}",
        "mean_frequency": f"mean {u.frequency}",
        "median_frequency": f"median {u.frequency}",
        "mean_monetary": f"mean {u.monetary}",
        "median_monetary": f"median {u.monetary}",
        "aov": u.ratio,
    }
    return [{"measure": labels.get(k, k), "value": v} for k, v in profile.items() if labels.get(k, k)]


def to_markdown(pack: dict[str, Any]) -> str:
    """The pack as Markdown: a summary paragraph, then tables, worded in the run's units."""
    u = Units.from_dict(pack.get("units"))
    if pack["kind"] == "segment":
        out = [f"# Segment: {pack['segment']}", "", f"Run {pack['run_id']}, as of {pack['as_of']}.", ""]
        out += [pack["summary"], "", f"**Why this name:** {pack['why_this_name']}", ""]
        out += [f"**Recommended action:** {pack['action']}", "", "## Profile", ""]
        out.append(_table(_profile_rows(pack["profile"], u)))
        if pack.get("centroid"):
            out += ["## Centroid", "", _table([pack["centroid"]])]
        out += ["## Recent movement", ""]
        mv = pack.get("movement")
        if mv:
            moved_in = ", ".join(f"{v:,} from {k}" for k, v in mv["moved_in"].items()) or "none"
            moved_out = ", ".join(f"{v:,} to {k}" for k, v in mv["moved_out"].items()) or "none"
            out += [
                f"From {mv['from_as_of']} ({mv['from_run']}) to {mv['to_as_of']} ({mv['to_run']}): "
                f"{mv['stayed']:,} stayed, net {mv['net']:+,}.",
                "",
                f"- Moved in: {moved_in}",
                f"- Moved out: {moved_out}",
                "",
            ]
        else:
            out.append("_only one run: no movement yet_\n")
        out += [f"## Typical {u.entity} (nearest the centroid)", "", _table(pack["examples"])]
        if pack.get("insights"):
            out += ["## Insights", ""] + [f"- {i['text']}" for i in pack["insights"]] + [""]
        return "\n".join(out)
    out = [f"# Customer: {pack['customer_id']}", "", f"Run {pack['run_id']}, as of {pack['as_of']}.", ""]
    out += [pack["summary"], ""]
    facts = {
        k: pack.get(k)
        for k in (
            "segment",
            "previous_segment",
            "segment_since",
            "recency_days",
            "frequency",
            "monetary",
            *(("aov",) if u.ratio else ()),
            "distance",
            "margin",
            "next_nearest_segment",
            "source",
        )
    }
    out += ["## Now", "", _table([{"field": k, "value": v} for k, v in facts.items()])]
    out += [f"**Recommended action ({pack['segment']}):** {pack['action']}", ""]
    out += ["## Segment profile", "", _table(_profile_rows(pack["segment_profile"], u))]
    out += [
        "## Distance to each centroid",
        "",
        _table([{"segment": k, "distance": v} for k, v in pack["distances"].items()]),
    ]
    out += ["## History", "", _table(pack["history"])]
    out += ["## Recent campaign touches", "", _table(pack["touches"])]
    return "\n".join(out)


__all__ = [
    "context_pack",
    "customer_pack",
    "default_store_url",
    "lookup_customer",
    "segment_pack",
    "to_markdown",
]
