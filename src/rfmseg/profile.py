"""Segment profiles, insights computed from them, and the action per segment.

Pure computation over the RFM table and the labels: no files, no sockets.
Every insight carries the values it was computed from and is left out when the data does not show it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.features import DEFAULT_UNITS, Units
from rfmseg.model.naming import Vocabulary

if TYPE_CHECKING:  # pandas is imported by the functions that take its tables, and comes with them
    import pandas as pd

THREADED_MEDIANS_FROM = 100_000
"""customers from which the segments' medians are computed on two threads (below, threads cost more)"""


money = DEFAULT_UNITS.value
"""a money figure with its currency, '$1,234' (the one formatter: features.Units.value)"""


def segment_table(
    rfm: pd.DataFrame,
    segments: list[str] | np.ndarray | pd.Categorical,
    vocabulary: Vocabulary,
    reasons: dict[str, str],
) -> list[dict[str, Any]]:
    """One row per segment present, ordered by priority (then revenue): the --json ``segments`` list.

    Aggregates on integer codes with numpy (bincount; a mask per segment for the medians): at millions of
    customers a pandas groupby on segment names cost seconds and a copy of the table."""
    import pandas as pd

    if isinstance(segments, pd.Categorical):
        codes, names = segments.codes, [str(c) for c in segments.categories]
    else:
        codes, uniques = pd.factorize(np.asarray(segments))
        names = [str(c) for c in uniques]
    codes = np.asarray(codes, dtype=np.intp)  # bincount's index type: converted once, not per call
    r = rfm["recency_days"].to_numpy(dtype=float)
    f = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary"].to_numpy(dtype=float)
    aov = np.divide(m, f, out=np.zeros_like(m), where=f > 0)
    k = len(names)
    counts = np.bincount(codes, minlength=k)
    sums = {key: np.bincount(codes, weights=v, minlength=k) for key, v in (("r", r), ("f", f), ("m", m), ("aov", aov))}
    n = len(codes)
    total = float(m.sum())

    def medians(c: int) -> list[float]:
        members = codes == c  # one comparison per segment: cheaper than sorting millions of codes
        return [float(np.median(v[members], overwrite_input=True)) for v in (r, f, m)]

    present = [c for c in range(k) if counts[c]]
    if n >= THREADED_MEDIANS_FROM:  # numpy selects and copies without the GIL: one segment per thread
        with ThreadPoolExecutor(2) as pool:
            median = dict(zip(present, pool.map(medians, present), strict=True))
    else:
        median = {c: medians(c) for c in present}
    rows: list[dict[str, Any]] = []
    for c in present:
        name = names[c]
        size = int(counts[c])
        t = vocabulary.get(name)
        revenue = float(sums["m"][c])
        rows.append(
            {
                "name": name,
                "customers": size,
                "share_customers": size / n,
                "revenue": round(revenue, 2),
                "share_revenue": revenue / total if total else 0.0,
                "mean_recency_days": float(sums["r"][c] / size),
                "mean_frequency": float(sums["f"][c] / size),
                "mean_monetary": revenue / size,
                "median_recency_days": median[c][0],
                "median_frequency": median[c][1],
                "median_monetary": median[c][2],
                "aov": float(sums["aov"][c] / size),
                "action": t.action if t else "",
                "description": t.description if t else "",
                "_priority": t.priority if t else 99,
                "reason": reasons.get(name, ""),
            }
        )
    rows.sort(key=lambda r: (r["_priority"], -r["revenue"], r["name"]))
    for rank, r in enumerate(rows, start=1):
        r["priority"] = rank
        del r["_priority"]
    return rows


def activation_project(
    segments: list[dict[str, Any]], currency: str = "$", units: Units | None = None
) -> tuple[str, str] | None:
    """The segment to run as the long-term activation project and its sequencing note, or None.

    A segment is that project when it is the largest by customers and the smallest by the total (revenue),
    each strictly (no tie): many members worth little each, moved up over months rather than by one campaign.
    None when no segment is both, with fewer than two segments, or when the sum of monetary means nothing in
    the run's units (SaaS features used, education progress)."""
    u = units or DEFAULT_UNITS
    if len(segments) < 2 or not u.total:
        return None
    by_count = sorted(segments, key=lambda s: -s["customers"])
    by_total = sorted(segments, key=lambda s: s["revenue"])
    largest, smallest = by_count[0], by_total[0]
    if largest is not smallest:
        return None
    if by_count[1]["customers"] == largest["customers"] or by_total[1]["revenue"] == smallest["revenue"]:
        return None
    return largest["name"], (
        f"the long-term activation project: the largest segment ({largest['customers']:,} {u.entity}, "
        f"{largest['share_customers']:.0%}) and the smallest by {u.total} ({u.value(largest['revenue'], currency)}, "
        f"{largest['share_revenue']:.0%})"
    )


def insights(
    rfm: pd.DataFrame,
    segments: list[dict[str, Any]],
    currency: str = "$",
    loyal_name: str = "Loyal Buyers",
    units: Units | None = None,
    curve: dict[str, list[float]] | None = None,
) -> list[dict[str, Any]]:
    """Rules over the segment table; each returns an insight or nothing.

    ``units`` (a preset's) words the texts in the domain's terms, its ``entity`` (users, leads, students)
    included; rules over the sum of monetary are left out when that sum means nothing (``units.total``
    empty), the AOV rule when ``units.ratio`` is empty. Such engagement data (sessions, features used,
    progress) get rules of their own instead: the segment mix, the most active segment, the longest
    inactive one.
    ``curve``: the :func:`pareto_curve` of ``rfm``'s monetary when already computed (the top-20% rule
    reads its 20% point)."""
    u = units or DEFAULT_UNITS
    out: list[dict[str, Any]] = []
    found: dict[str, Any] | None
    for rule in (_aov_ratio, _pareto, _recoverable, _one_time_buyers):
        if (rule is _aov_ratio and not u.ratio) or (rule in (_pareto, _recoverable) and not u.total):
            continue
        found = rule(rfm, segments, currency, loyal_name)
        if found:
            out.append(found if u == DEFAULT_UNITS else _in_units(found, u, currency))
    found = _customer_concentration(rfm, curve) if u.total else None
    if found:
        out.append(found if u == DEFAULT_UNITS else _in_units(found, u, currency))
    if not u.total:  # engagement data: no money, rules of their own
        for engagement_rule in (_segment_mix, _most_active, _longest_inactive):
            found = engagement_rule(rfm, segments, u)
            if found:
                out.append(found)
    return out


def _in_units(found: dict[str, Any], u: Units, cur: str) -> dict[str, Any]:
    """The same insight, from the same values, in a preset's terms (users and sessions, leads and deals)."""
    v = found["values"]
    val = u.value
    texts = {
        "aov_ratio": lambda: (
            f"{v['segment']} have the highest {u.ratio}, {val(v['aov'], cur)}, {v['ratio']:.1f}× the "
            f"{val(v['other_aov'], cur)} of {v['other_segment']}."
        ),
        "pareto": lambda: (
            f"{v['segment']} are {v['share_customers']:.0%} of {u.entity} and hold {v['share_revenue']:.0%} of "
            f"{u.total} ({val(v['revenue'], cur)}), {v['lift']:.1f}× their share."
        ),
        "recoverable_revenue": lambda: (
            f"{v['segment']}: {v['customers']} {u.entity} with a mean {u.monetary} of {val(v['mean_monetary'], cur)} "
            f"(overall {val(v['mean_monetary_all'], cur)}) have been silent {v['mean_recency_days']:.0f} days on "
            f"average (overall median {v['median_recency_days_all']:.0f}); their {u.total} of "
            f"{val(v['revenue'], cur)} ({v['share_revenue']:.0%} of the total) is at stake."
        ),
        "one_time_buyers": lambda: (
            f"{v['customers']:,} {u.entity} ({v['share_customers']:.0%}) have a single {u.event}"
            + (f" and hold {v['share_revenue']:.0%} of {u.total}." if u.total else ".")
        ),
        "top_20_percent": lambda: (
            f"The top 20% of {u.entity} by {u.monetary} ({v['customers']:,}) bring {v['share_revenue']:.0%} "
            f"of {u.total}."
        ),
    }
    text = texts.get(found["id"])
    return {**found, "text": text()} if text else found


def _aov_ratio(rfm: pd.DataFrame, segs: list[dict[str, Any]], cur: str, loyal_name: str) -> dict[str, Any] | None:
    if len(segs) < 2:
        return None
    top = max(segs, key=lambda s: s["aov"])
    others = [s for s in segs if s is not top]
    loyal = next((s for s in others if s["name"] == loyal_name), None) or max(others, key=lambda s: s["mean_frequency"])
    if loyal["aov"] <= 0:
        return None
    ratio = top["aov"] / loyal["aov"]
    if ratio < 1.5:
        return None
    return {
        "id": "aov_ratio",
        "text": (
            f"{top['name']} have the highest average order value, {money(top['aov'], cur)}, "
            f"{ratio:.1f}× the {money(loyal['aov'], cur)} of {loyal['name']}, who order more often "
            f"({loyal['mean_frequency']:.0f} vs {top['mean_frequency']:.0f} orders)."
        ),
        "values": {
            "segment": top["name"],
            "aov": top["aov"],
            "other_segment": loyal["name"],
            "other_aov": loyal["aov"],
            "ratio": ratio,
        },
    }


def _pareto(rfm: pd.DataFrame, segs: list[dict[str, Any]], cur: str, loyal_name: str) -> dict[str, Any] | None:
    top = max(segs, key=lambda s: s["revenue"])
    if top["share_customers"] <= 0:
        return None
    lift = top["share_revenue"] / top["share_customers"]
    if lift < 1.5:
        return None
    return {
        "id": "pareto",
        "text": (
            f"{top['name']} are {top['share_customers']:.0%} of customers and hold "
            f"{top['share_revenue']:.0%} of revenue ({money(top['revenue'], cur)}), {lift:.1f}× their share."
        ),
        "values": {
            "segment": top["name"],
            "share_customers": top["share_customers"],
            "share_revenue": top["share_revenue"],
            "revenue": top["revenue"],
            "lift": lift,
        },
    }


def _recoverable(rfm: pd.DataFrame, segs: list[dict[str, Any]], cur: str, loyal_name: str) -> dict[str, Any] | None:
    median_recency = float(rfm["recency_days"].median())
    mean_monetary = float(rfm["monetary"].mean())
    silent = [s for s in segs if s["mean_recency_days"] > median_recency and s["mean_monetary"] > mean_monetary]
    if not silent:
        return None
    s = max(silent, key=lambda x: x["revenue"])
    return {
        "id": "recoverable_revenue",
        "text": (
            f"{s['name']}: {s['customers']} customers who spent {money(s['mean_monetary'], cur)} on average "
            f"(overall {money(mean_monetary, cur)}) have been silent {s['mean_recency_days']:.0f} days on "
            f"average (overall median {median_recency:.0f}); their historic revenue of "
            f"{money(s['revenue'], cur)} ({s['share_revenue']:.0%} of the total) is the revenue at stake "
            "for a win-back."
        ),
        "values": {
            "segment": s["name"],
            "customers": s["customers"],
            "revenue": s["revenue"],
            "share_revenue": s["share_revenue"],
            "mean_recency_days": s["mean_recency_days"],
            "median_recency_days_all": median_recency,
            "mean_monetary": s["mean_monetary"],
            "mean_monetary_all": mean_monetary,
        },
    }


def _one_time_buyers(rfm: pd.DataFrame, segs: list[dict[str, Any]], cur: str, loyal_name: str) -> dict[str, Any] | None:
    once = rfm["frequency"] == 1
    share = float(once.mean())
    if share < 0.10:
        return None
    total = float(rfm["monetary"].sum())
    revenue = float(rfm.loc[once, "monetary"].sum())
    return {
        "id": "one_time_buyers",
        "text": (
            f"{int(once.sum()):,} customers ({share:.0%}) ordered only once and hold "
            f"{revenue / total if total else 0:.0%} of revenue."
        ),
        "values": {
            "customers": int(once.sum()),
            "share_customers": share,
            "revenue": revenue,
            "share_revenue": revenue / total if total else 0.0,
        },
    }


def top_sums(values: np.ndarray, counts: list[int]) -> list[float]:
    """The sum of the ``c`` largest values, for each ``c`` in ``counts`` (0 <= c <= len(values)).

    One partial sort at all the cut points (``np.partition``) instead of a full sort: linear in the number
    of values, which matters at millions of customers."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    cuts = sorted({n - c for c in counts if 0 < c < n})
    part = np.partition(v, cuts) if cuts else v
    blocks = np.add.reduceat(part, [0, *cuts]) if n else np.zeros(1)  # block i runs to the next cut
    suffix = np.cumsum(blocks[::-1])[::-1]  # suffix[i]: everything from block i on
    tail = {cut: float(suffix[i + 1]) for i, cut in enumerate(cuts)}
    total = float(v.sum())
    return [0.0 if c <= 0 else total if c >= n else tail[n - c] for c in counts]


def _customer_concentration(rfm: pd.DataFrame, curve: dict[str, list[float]] | None) -> dict[str, Any] | None:
    """The top 20% of customers by spend: the 20% point of the Pareto curve."""
    m = rfm["monetary"].to_numpy(dtype=float)
    if len(m) < 10 or float(m.sum()) <= 0:
        return None
    curve = curve or pareto_curve(m)
    at = curve["share_customers"].index(0.2)
    top_n = int(np.rint(curve["share_customers"][at] * len(m)))
    share = curve["share_revenue"][at]
    if share < 0.5:
        return None
    return {
        "id": "top_20_percent",
        "text": f"The top 20% of customers by spend ({top_n:,}) bring {share:.0%} of revenue.",
        "values": {"customers": top_n, "share_revenue": share},
    }


def _segment_mix(rfm: pd.DataFrame, segs: list[dict[str, Any]], u: Units) -> dict[str, Any] | None:
    """How the entities split over the segments, largest first."""
    if len(segs) < 2:
        return None
    shares = sorted(segs, key=lambda s: (-s["customers"], s["name"]))
    n = sum(s["customers"] for s in segs)
    parts = ", ".join(f"{s['name']} {s['share_customers']:.0%} ({s['customers']:,})" for s in shares)
    return {
        "id": "segment_mix",
        "text": f"Of {n:,} {u.entity}: {parts}.",
        "values": {
            "customers": n,
            "segments": [
                {"segment": s["name"], "customers": s["customers"], "share_customers": s["share_customers"]}
                for s in shares
            ],
        },
    }


def _most_active(rfm: pd.DataFrame, segs: list[dict[str, Any]], u: Units) -> dict[str, Any] | None:
    """The segment with the most activity (frequency) per member, when it stands out (1.5× the mean)."""
    total = float(rfm["frequency"].sum())
    overall = float(rfm["frequency"].mean()) if len(rfm) else 0.0
    if len(segs) < 2 or total <= 0 or overall <= 0:
        return None
    top = max(segs, key=lambda s: s["mean_frequency"])
    ratio = top["mean_frequency"] / overall
    if ratio < 1.5:
        return None
    share = top["mean_frequency"] * top["customers"] / total
    return {
        "id": "most_active",
        "text": (
            f"{top['name']} are {top['share_customers']:.0%} of {u.entity} and account for {share:.0%} of all "
            f"{u.frequency}, {top['mean_frequency']:,.1f} each on average against {overall:,.1f} overall "
            f"({ratio:.1f}×)."
        ),
        "values": {
            "segment": top["name"],
            "share_customers": top["share_customers"],
            "share_frequency": share,
            "mean_frequency": top["mean_frequency"],
            "mean_frequency_all": overall,
            "ratio": ratio,
        },
    }


def _longest_inactive(rfm: pd.DataFrame, segs: list[dict[str, Any]], u: Units) -> dict[str, Any] | None:
    """The segment silent the longest, when its mean recency is past the overall median."""
    if len(segs) < 2:
        return None
    median = float(rfm["recency_days"].median())
    s = max(segs, key=lambda x: x["mean_recency_days"])
    if s["mean_recency_days"] <= median:
        return None
    return {
        "id": "longest_inactive",
        "text": (
            f"{s['name']} have been inactive the longest: {s['mean_recency_days']:.0f} {u.recency} on average "
            f"(overall median {median:.0f}); they are {s['customers']:,} {u.entity} ({s['share_customers']:.0%})."
        ),
        "values": {
            "segment": s["name"],
            "customers": s["customers"],
            "share_customers": s["share_customers"],
            "mean_recency_days": s["mean_recency_days"],
            "median_recency_days_all": median,
        },
    }


def pareto_curve(monetary: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """Cumulative share of revenue against share of customers (customers sorted by spend, largest first)."""
    m = np.asarray(monetary, dtype=float)
    total = float(m.sum())
    xs = np.linspace(0, 1, points)
    idx = np.rint(xs * len(m)).astype(int)
    sums = top_sums(m, idx.tolist())
    share = [v / total if total else 0.0 for v in sums]
    return {"share_customers": xs.tolist(), "share_revenue": share}


# ------------------------------------------------------------------------------------ data sufficiency
MIN_CUSTOMERS_PER_SEGMENT = 10
"""fewer customers than this many per segment (on average) and K-Means groups individuals, not types"""
MIN_HISTORY_DAYS = 90
"""a shorter span between the first and the last order leaves recency too little range to mean something"""
MAX_CUSTOMER_REVENUE_SHARE = 0.10
"""one customer holding more of the revenue than this pulls a centroid on its own"""
NET_NONPOSITIVE_POLICY = (
    "kept and segmented at their net monetary: their orders happened, so recency and frequency are real"
)


def net_nonpositive(rfm: pa.Table) -> dict[str, object]:
    """Customers whose net monetary (purchases less returns) is at or below zero, with the policy applied."""
    mask = pc.less_equal(rfm.column("monetary"), 0)
    ids = rfm.column("customer_id").filter(mask).to_pylist()
    return {"customers": len(ids), "examples": ids[:10], "policy": NET_NONPOSITIVE_POLICY}


def sufficiency_warnings(rfm: pa.Table, k: int, currency: str = "$") -> list[dict[str, object]]:
    """Warnings about whether the data can carry the analysis, each ``{"id", "text", "values"}``."""
    out: list[dict[str, object]] = []
    n = rfm.num_rows
    if n < MIN_CUSTOMERS_PER_SEGMENT * k:
        out.append(
            {
                "id": "few_customers",
                "text": f"only {n:,} customers for K={k} (fewer than {MIN_CUSTOMERS_PER_SEGMENT} per segment): "
                "segments may reflect individuals; use a smaller K or more customers",
                "values": {"customers": n, "k": k, "min_customers": MIN_CUSTOMERS_PER_SEGMENT * k},
            }
        )
    first = pc.min(rfm.column("first_order_date")).as_py() if "first_order_date" in rfm.column_names else None
    last = pc.max(rfm.column("last_order_date")).as_py() if "last_order_date" in rfm.column_names else None
    if first is not None and last is not None and (last - first).days < MIN_HISTORY_DAYS:
        days = (last - first).days
        out.append(
            {
                "id": "short_history",
                "text": f"the orders span only {days} days ({first} to {last}): recency needs at least "
                f"{MIN_HISTORY_DAYS} days of history to tell active from lapsed customers; export a longer history",
                "values": {"days": days, "first_order_date": first.isoformat(), "last_order_date": last.isoformat()},
            }
        )
    monetary = rfm.column("monetary")
    total = pc.sum(pc.max_element_wise(monetary, 0.0)).as_py() or 0.0
    if n and total > 0:
        top = pc.index(monetary, pc.max(monetary)).as_py()
        share = monetary[top].as_py() / total
        if share > MAX_CUSTOMER_REVENUE_SHARE:
            cid = rfm.column("customer_id")[top].as_py()
            out.append(
                {
                    "id": "revenue_concentration",
                    "text": f"customer {cid} holds {share:.0%} of revenue ({currency}{monetary[top].as_py():,.0f}): "
                    "one customer this large pulls a segment on its own; check it is a real customer",
                    "values": {"customer_id": cid, "share_revenue": share, "monetary": monetary[top].as_py()},
                }
            )
    net = net_nonpositive(rfm)
    if net["customers"]:
        out.append(
            {
                "id": "net_nonpositive_customers",
                "text": f"{net['customers']:,} customers end with net monetary at or below zero (returns cancel "
                f"their purchases): {NET_NONPOSITIVE_POLICY}",
                "values": {"customers": net["customers"], "examples": net["examples"]},
            }
        )
    return out
