"""Campaign questions: which segment fits a campaign kind, who is likely to respond (or worth a win-back), who
was not contacted, from the runs and the campaign touches (what moved customers: ``interventions``).

The formulas (also in docs/agents.md):

* campaign fit: ``fit`` = how many of the campaign kind's keywords (:data:`KIND_KEYWORDS`) occur in the
  segment's recommended action; segments are ranked by fit, then by revenue at stake (the segment's revenue:
  sum of its customers' monetary value).
* discount / win-back ranking: with the run's rhythm model, by what a win-back can recover in 90 days,
  P(alive) × the value if still active (expected value / P(alive)) × response factor; without it, by the
  heuristic score = (w_aov × AOV / max AOV + w_freq × frequency / max frequency) × 0.5^(recency /
  half-life) × response factor, maxima taken within the segment (shown in both cases); response factor =
  2 × (r + 1) / (n + 2) for n past touches of the kind of which r were responded to or converted (1.0 with
  no history).
* intervention effect: :mod:`rfmseg.questions.interventions`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import duckdb
import numpy as np
import pandas as pd
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.features import Words
from rfmseg.io.readers import sql_string
from rfmseg.questions.common import (
    RFM,
    Days,
    History,
    Kind,
    Limit,
    RunRef,
    SegmentName,
    check_limit,
    records,
    rounded,
)
from rfmseg.touches import KIND_KEYWORDS, normalise_kind, register_touches


def _kw_norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _at_stake(w: Words, s: dict[str, Any]) -> str:
    """What a campaign to segment ``s`` has at stake: its share of the run's total ('revenue at stake $94,900
    (20% of revenue, 50 customers)'), or its people where the units have no meaningful total."""
    if w.units.total:
        return (
            f"{w.units.total} at stake {w.value(s['revenue'])} ({s['share_revenue']:.0%} of {w.units.total}, "
            f"{s['customers']:,} {w.entity})"
        )
    return f"{s['customers']:,} {w.entity} at stake ({s['share_customers']:.0%} of {w.entity})"


def keyword_hits(action: str, keywords: Sequence[str]) -> list[str]:
    """The keywords found in ``action`` (at the start of a word; case, hyphens and spaces ignored)."""
    text = _kw_norm(action)
    return [k for k in keywords if _kw_norm(k) and re.search(r"\b" + re.escape(_kw_norm(k)), text)]


def campaign_segments(
    runs_dir: str | Path,
    kind: Kind,
    *,
    keywords: Sequence[str] | None = None,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Which segment should receive a campaign of this kind? Segments ranked by how many of the kind's keywords
    their recommended action contains, then by revenue at stake; says why."""
    k = normalise_kind(kind or "")
    if keywords is None:
        if k not in KIND_KEYWORDS:
            raise NotFoundError(
                f"unknown campaign kind '{kind}'; known kinds: {', '.join(KIND_KEYWORDS)} "
                "(or pass your own keywords with {keywords})",
                param="keywords",
            )
        keywords = KIND_KEYWORDS[k]
    keywords = [w for w in keywords if w and w.strip()]
    if not keywords:
        raise ParameterError("give at least one keyword to match against the segments' actions")
    h = History(runs_dir)
    snap = h.resolve(run)
    summary = h.summary(snap)
    w = Words.of(summary)
    ranking = []
    for s in summary["segments"]:
        hits = keyword_hits(s.get("action", ""), keywords)
        why = (
            f"its action '{s.get('action', '')}' mentions {', '.join(hits)}"
            if hits
            else f"its action '{s.get('action', '')}' mentions none of {', '.join(keywords)}"
        )
        ranking.append(
            {
                "segment": s["name"],
                "fit": len(hits),
                "matched": hits,
                "action": s.get("action", ""),
                "customers": s["customers"],
                "revenue_at_stake": s["revenue"],
                "share_revenue": s["share_revenue"],
                "why": f"{why}; {_at_stake(w, s)}",
            }
        )
    # without a meaningful sum of monetary (features used, progress) the stake is the people, not a sum
    stake = "revenue_at_stake" if w.units.total else "customers"
    ranking.sort(key=lambda r: (-r["fit"], -r[stake], r["segment"]))
    for i, r in enumerate(ranking, start=1):
        r["rank"] = i
    best = ranking[0] if ranking and ranking[0]["fit"] > 0 else None
    if best:
        answer = f"Send the {k or kind} campaign to {best['segment']}: {best['why']}."
        runners = [r["segment"] for r in ranking[1:] if r["fit"] > 0]
        if runners:
            answer += f" Next: {', '.join(runners)}."
    else:
        answer = (
            f"No segment's recommended action fits a {k or kind} campaign (keywords: {', '.join(keywords)}); "
            "check the kind or pass keywords."
        )
    return {
        "question": f"Which segment should receive a {k or kind} campaign?",
        "answer": answer,
        "params": {"kind": k or kind, "keywords": list(keywords), "run": run},
        "units": w.units.to_dict(),
        **snap.brief(),
        "recommended": best["segment"] if best else None,
        "ranking": ranking,
        "method": "fit = number of the kind's keywords in the segment's action; ties broken by "
        + (
            f"{w.units.total} at stake (sum of the segment's {w.units.monetary})"
            if w.units.total
            else f"{w.entity} at stake (a sum of {w.units.monetary} means nothing)"
        ),
    }


def discount_candidates(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "At-Risk",
    kind: Kind = "discount",
    limit: Limit = 10,
    half_life_days: Annotated[float, Field(gt=0, le=3650)] = 90.0,
    aov_weight: Annotated[float, Field(ge=0)] = 0.5,
    frequency_weight: Annotated[float, Field(ge=0)] = 0.5,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Which customers of a segment (default At-Risk) are most likely to respond to a campaign kind (default
    discount)? Score = (AOV part + frequency part) x recency decay x response factor from past touches; every
    part is shown."""
    # the formula in full: the module's docstring
    check_limit(limit)
    if not half_life_days > 0:  # NaN too
        raise ParameterError(f"{{half_life_days}} {half_life_days} should be > 0 days", param="half_life_days")
    if not (aov_weight >= 0 and frequency_weight >= 0 and aov_weight + frequency_weight > 0):
        raise ParameterError(
            f"{{aov_weight}} {aov_weight} and {{frequency_weight}} {frequency_weight} should be >= 0 and not both 0",
            param=("aov_weight", "frequency_weight"),
        )
    k = normalise_kind(kind)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    a = h.assignments(snap)
    m = a[a["segment"] == name][["customer_id", *RFM]].copy()
    m["aov"] = m["monetary"] / m["frequency"].where(m["frequency"] > 0, 1)
    max_aov = float(m["aov"].max()) or 1.0
    max_f = float(m["frequency"].max()) or 1.0
    m["aov_part"] = aov_weight * m["aov"] / max_aov
    m["frequency_part"] = frequency_weight * m["frequency"] / max_f
    m["decay"] = np.power(0.5, m["recency_days"] / half_life_days)
    hist = _touch_counts(runs_dir, k, m["customer_id"].tolist())
    m = m.merge(hist, on="customer_id", how="left").fillna({"touches": 0, "responses": 0})
    m["touches"] = m["touches"].astype(int)
    m["responses"] = m["responses"].astype(int)
    m["response_factor"] = 2 * (m["responses"] + 1) / (m["touches"] + 2)
    m["heuristic_score"] = (m["aov_part"] + m["frequency_part"]) * m["decay"] * m["response_factor"]
    w = Words.of(h.summary(snap))
    rhythm = [c for c in ("p_alive", "expected_orders_90d", "expected_value_90d") if c in a.columns]
    by_value = len(rhythm) == 3 and bool(a.loc[a["segment"] == name, "p_alive"].notna().any())
    if by_value:
        # what a win-back can recover: P(alive) x the 90 days' value if still active (the model's expected value
        # is that value already weighed by P(alive)), x what past touches of the kind say of their response
        m = m.merge(a[["customer_id", *rhythm]], on="customer_id", how="left")
        alive = m["p_alive"].where(m["p_alive"] > 0)
        m["value_if_active_90d"] = (m["expected_value_90d"] / alive).fillna(0.0)
        m["recoverable_90d"] = m["p_alive"].fillna(0.0) * m["value_if_active_90d"]
        m["score"] = m["recoverable_90d"] * m["response_factor"]
        method = (
            f"ranked by what a win-back can recover in 90 days: P(alive) x the value of {w.units.event}s if still "
            f"active (the run's rhythm model: {w.units.event}s expected x spend per {w.units.event}), x the response "
            f"factor of past {k} touches; the heuristic score is shown beside it"
        )
    else:
        m["score"] = m["heuristic_score"]
        method = (
            "ranked by the heuristic score (the run has no rhythm model"
            + (
                ": run or retrain with rhythm on to rank by P(alive) x expected value"
                if "p_alive" not in a.columns or not a["p_alive"].notna().any()
                else ""
            )
            + ")"
        )
    m = m.sort_values(["score", "customer_id"], ascending=[False, True], kind="stable")
    top = m.head(limit).copy()
    for c in ("aov", "aov_part", "frequency_part", "decay", "response_factor", "heuristic_score", "score"):
        top[c] = top[c].round(4 if c != "aov" else 2)
    for c in ("p_alive", "expected_orders_90d"):
        if c in top:
            top[c] = top[c].round(4)
    for c in ("expected_value_90d", "value_if_active_90d", "recoverable_90d"):
        if c in top:
            top[c] = top[c].round(2)
    with_history = int((m["touches"] > 0).sum())
    if top.empty:
        answer = f"{name} has no customers in run {snap.run_id}."
    else:
        best = top.iloc[0]
        ratio = w.units.ratio or f"{w.units.monetary} per {w.units.event}"
        if by_value:
            why = (
                f"P(alive) {best['p_alive']:.2f} x {w.value(best['value_if_active_90d'])} if active = "
                f"{w.value(best['recoverable_90d'])} recoverable in 90 days"
            )
        else:
            why = f"scores {best['score']:.3f}"
        answer = (
            f"Most likely to respond to a {k} among the {len(m):,} {w.entity} in {name}: "
            f"{', '.join(top['customer_id'].head(5))}"
            f"{' …' if len(top) > 5 else ''}; the top one, {best['customer_id']}, {why} "
            f"({w.ratio(best['aov']) or f'{ratio} {best.aov:,.2f}'}, {w.count(int(best['frequency']))}, "
            f"{w.last(int(best['recency_days']))}, {int(best['touches'])} past {k} touches)."
        )
        answer += (
            f" {with_history:,} of them have {k} history in the touches."
            if with_history
            else f" No {k} touches are recorded for them."
        )
        answer += f" How: {method}."
    return {
        "question": f"Which {w.entity} in {name} are most likely to respond to a {k}?",
        "answer": answer,
        "units": w.units.to_dict(),
        "params": {
            "segment": name,
            "kind": k,
            "limit": limit,
            "half_life_days": half_life_days,
            "aov_weight": aov_weight,
            "frequency_weight": frequency_weight,
            "run": run,
        },
        **snap.brief(),
        "ranking": "win_back_value" if by_value else "heuristic",
        "method": method,
        "formula": (
            "score = recoverable_90d * response_factor; recoverable_90d = p_alive * value_if_active_90d; "
            "value_if_active_90d = expected_value_90d / p_alive; response_factor = 2*(responses+1)/(touches+2)"
            if by_value
            else "score = heuristic_score"
        )
        + "; heuristic_score = (aov_weight*aov/max_aov + frequency_weight*frequency/max_frequency) "
        "* 0.5**(recency_days/half_life_days) * response_factor",
        "max_aov": rounded(max_aov, 2),
        "max_frequency": max_f,
        "segment_customers": len(m),
        "customers_with_history": with_history,
        "customers": records(top),
    }


def _touch_counts(runs_dir: str | Path, kind: str, ids: list[str]) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("ids", pd.DataFrame({"customer_id": ids}, dtype=object))
        return con.sql(
            "SELECT customer_id, count(*) AS touches, "
            "count(*) FILTER (WHERE responded_at IS NOT NULL OR converted_at IS NOT NULL) AS responses "
            f"FROM touches WHERE kind = {sql_string(kind)} AND customer_id IN (SELECT customer_id FROM ids) "
            "GROUP BY customer_id"
        ).df()
    finally:
        con.close()


def _as_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"'{value}' is not a date; use YYYY-MM-DD") from None


def not_contacted(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "Champions",
    kind: Kind = "loyalty_offer",
    days: Days = 90,
    reference: Annotated[str | date | None, Field(description="YYYY-MM-DD; default the run's as-of date")] = None,
    limit: Limit = 100,
    run: RunRef = "latest",
) -> dict[str, Any]:
    """Which customers of a segment (default Champions) were sent no campaign of a kind (default loyalty_offer)
    in the last N days (default 90) up to a reference date (default the run's as-of)?"""
    # not contacted: no touch of the kind with reference - days <= sent date <= reference
    check_limit(limit)
    if days < 1:
        raise ParameterError(f"{{days}} {days} should be >= 1", param="days")
    k = normalise_kind(kind)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    ref = _as_date(reference) if reference is not None else snap.as_of
    try:
        start = ref - timedelta(days=days)
    except OverflowError:
        raise ParameterError(
            f"the window of {days} days before {ref} starts before the year 1; give a later {{reference}} "
            "or fewer {days}",
            param=("reference", "days"),
        ) from None
    a = h.assignments(snap)
    members = a[a["segment"] == name][["customer_id", *RFM]]
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("members", members)
        df = con.sql(
            "SELECT m.customer_id, m.recency_days, m.frequency, m.monetary, "
            f"max(t.sent_at) FILTER (WHERE CAST(t.sent_at AS DATE) <= DATE '{ref}') AS last_sent_at, "
            f"count(t.sent_at) FILTER (WHERE CAST(t.sent_at AS DATE) BETWEEN DATE '{start}' AND DATE '{ref}') "
            "AS in_window "
            f"FROM members m LEFT JOIN touches t ON t.customer_id = m.customer_id AND t.kind = {sql_string(k)} "
            "GROUP BY ALL ORDER BY m.monetary DESC, m.customer_id"
        ).df()
    finally:
        con.close()
    miss = df[df["in_window"] == 0].copy()
    miss["days_since_last"] = pd.array(
        [None if pd.isna(t) else (ref - pd.Timestamp(t).date()).days for t in miss["last_sent_at"]], dtype="Int64"
    )
    never = int(miss["last_sent_at"].isna().sum())
    rows = miss[["customer_id", *RFM, "last_sent_at", "days_since_last"]]
    entity = Words.of(h.summary(snap)).entity
    answer = (
        f"{len(miss):,} of the {len(df):,} {entity} in {name} received no {k} in the {days} days to {ref} "
        f"({never:,} never received one); {len(df) - len(miss):,} did."
    )
    return {
        "question": f"Which {name} haven't received a {k} in {days} days?",
        "answer": answer,
        "params": {"segment": name, "kind": k, "days": days, "reference": ref.isoformat(), "limit": limit, "run": run},
        **snap.brief(),
        "window": [start.isoformat(), ref.isoformat()],
        "segment_customers": len(df),
        "contacted": len(df) - len(miss),
        "not_contacted": len(miss),
        "never_contacted": never,
        "customers": records(rows.head(limit)),
    }
