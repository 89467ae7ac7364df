"""Campaign questions: which segment fits a campaign kind, who is likely to respond, who was not contacted,
and which intervention moved customers between segments, from the runs and the campaign touches.

The formulas (also in docs/agents.md):

* campaign fit: ``fit`` = how many of the campaign kind's keywords (:data:`KIND_KEYWORDS`) occur in the
  segment's recommended action; segments are ranked by fit, then by revenue at stake (the segment's revenue:
  sum of its customers' monetary value).
* discount response score = (w_aov × AOV / max AOV + w_freq × frequency / max frequency) × 0.5^(recency /
  half-life) × response factor, maxima taken within the segment; response factor = 2 × (r + 1) / (n + 2)
  for n past touches of the kind of which r were responded to or converted (1.0 with no history).
* intervention effect: customers of a segment at the start run (default: the earliest run); contacted = at
  least one touch (of the kind) sent in [start as-of, end as-of); control = no touch at all in that window;
  moved = in one of the target segments at the end run. The data is *too thin* when fewer than
  ``min_contacted`` (default 30) were contacted or fewer than ``min_control`` (default 30) were not.
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
from rfmseg.io.readers import sql_string
from rfmseg.questions.common import (
    RFM,
    Days,
    History,
    Kind,
    Limit,
    RunRef,
    SegmentName,
    SegmentNames,
    check_limit,
    match_segment,
    money,
    records,
    rounded,
)
from rfmseg.touches import normalise_kind, register_touches

KIND_KEYWORDS: dict[str, tuple[str, ...]] = {
    "loyalty_offer": ("loyalty", "early access", "vip", "membership", "premium", "concierge"),
    "discount": ("discount", "incentive", "offer", "limited-time"),
    "win_back": ("win-back", "reactivation", "outreach", "exit survey", "reminder"),
    "onboarding": ("onboarding", "welcome", "first-repeat", "second order", "discovery"),
    "cross_sell": ("cross-sell", "recommendation", "bundle", "second-category", "discovery"),
    "subscription": ("subscription", "membership", "volume"),
    "survey": ("survey", "feedback"),
    "newsletter": ("new products", "discovery", "reminder"),
}
"""Which words in a segment's recommended action make a campaign kind fit it (matched case-insensitively
at the start of a word, hyphens and spaces alike). Data, not code: pass ``keywords`` to override."""


def _kw_norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


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
                "why": f"{why}; revenue at stake {money(s['revenue'])} ({s['share_revenue']:.0%} of revenue, "
                f"{s['customers']:,} customers)",
            }
        )
    ranking.sort(key=lambda r: (-r["fit"], -r["revenue_at_stake"], r["segment"]))
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
        **snap.brief(),
        "recommended": best["segment"] if best else None,
        "ranking": ranking,
        "method": "fit = number of the kind's keywords in the segment's action; ties broken by revenue at stake "
        "(sum of the segment's monetary value)",
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
    m["score"] = (m["aov_part"] + m["frequency_part"]) * m["decay"] * m["response_factor"]
    m = m.sort_values(["score", "customer_id"], ascending=[False, True], kind="stable")
    top = m.head(limit).copy()
    for c in ("aov", "aov_part", "frequency_part", "decay", "response_factor", "score"):
        top[c] = top[c].round(4 if c != "aov" else 2)
    with_history = int((m["touches"] > 0).sum())
    if top.empty:
        answer = f"{name} has no customers in run {snap.run_id}."
    else:
        best = top.iloc[0]
        answer = (
            f"Most likely to respond to a {k} among the {len(m):,} customers in {name}: "
            f"{', '.join(top['customer_id'].head(5))}"
            f"{' …' if len(top) > 5 else ''}; the top one, {best['customer_id']}, scores {best['score']:.3f} "
            f"(AOV {money(best['aov'])}, {int(best['frequency'])} orders, last order {int(best['recency_days'])} "
            f"day(s) ago, {int(best['touches'])} past {k} touches)."
        )
        answer += (
            f" {with_history:,} of them have {k} history in the touches."
            if with_history
            else f" No {k} touches are recorded for them, so the score rests on AOV, frequency and recency."
        )
    return {
        "question": f"Which customers in {name} are most likely to respond to a {k}?",
        "answer": answer,
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
        "formula": "score = (aov_weight*aov/max_aov + frequency_weight*frequency/max_frequency) "
        "* 0.5**(recency_days/half_life_days) * response_factor; response_factor = 2*(responses+1)/(touches+2)",
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
        raise ParameterError(f"days={days} should be >= 1")
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
    answer = (
        f"{len(miss):,} of the {len(df):,} customers in {name} received no {k} in the {days} days to {ref} "
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


def _as_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"'{value}' is not a date; use YYYY-MM-DD") from None


def measured_campaigns(
    runs_dir: str | Path, segment: str, targets: Sequence[str], kind: str | None = None
) -> list[dict[str, Any]]:
    """The measured holdout campaigns (``rfmseg campaign measure``) that targeted ``segment`` (of ``kind``):
    their measured conversion uplift in that segment and, where a later run shows it, the uplift in the share
    of its customers now in ``targets``, each with its interval."""
    from rfmseg.jobs.campaign import list_campaigns
    from rfmseg.model.uplift import newcombe

    out = []
    for c in list_campaigns(runs_dir):
        m = c.get("measured")
        if not m or segment not in m["by_segment"] or (kind and c["action"] != kind):
            continue
        conv = m["by_segment"][segment]
        row: dict[str, Any] = {
            "campaign": c["name"],
            "kind": c["action"],
            "send_date": c["send_date"],
            "window_days": m["window_days"],
            "treated": conv["treated"],
            "control": conv["control"],
            "conversion_uplift": rounded(conv["uplift"]),
            "conversion_ci": [rounded(x) for x in conv["ci"]],
            "conversion_effect": conv["effect"],
            "moved_uplift": None,
            "moved_ci": None,
        }
        text = f"{c['name']} ({c['action']}, sent {c['send_date']}): conversion {conv['verdict']}"
        moves = m.get("moves")
        if moves:
            counts: dict[str, tuple[int, int]] = {}
            for group in ("treatment", "control"):
                cells = [x for x in moves[group] if x["from"] == segment]
                counts[group] = (
                    sum(x["customers"] for x in cells if x["to"] in targets),
                    sum(x["customers"] for x in cells),
                )
            (x_t, n_t), (x_c, n_c) = counts["treatment"], counts["control"]
            if n_t and n_c:
                lo, hi = newcombe(x_t, n_t, x_c, n_c, m["confidence"])
                row["moved_uplift"] = rounded(x_t / n_t - x_c / n_c)
                row["moved_ci"] = [rounded(lo), rounded(hi)]
                text += (
                    f"; moved to {' or '.join(targets)} by run {moves['run_id']}: {x_t} of {n_t} treated vs {x_c} of "
                    f"{n_c} held out, {100 * (x_t / n_t - x_c / n_c):+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                )
        row["verdict"] = text
        out.append(row)
    return out


def intervention_effect(
    runs_dir: str | Path,
    *,
    segment: SegmentName = "Occasional",
    to: SegmentNames = ("Loyal Buyers",),
    kind: str | None = None,
    from_run: str | None = None,
    to_run: RunRef = "latest",
    min_contacted: Annotated[int, Field(ge=1)] = 30,
    min_control: Annotated[int, Field(ge=1)] = 30,
) -> dict[str, Any]:
    """What intervention has historically moved a segment's customers (default Occasional) into target
    segments (default Loyal Buyers)? Share that moved among contacted vs not contacted, per campaign kind,
    with counts; says plainly when the data is too thin."""
    # the window and the too-thin rule: the module's docstring
    from scipy.stats import fisher_exact

    if min_contacted < 1 or min_control < 1:
        raise ParameterError("min_contacted and min_control should be >= 1")
    h = History(runs_dir)
    end = h.resolve(to_run)
    start = h.resolve(from_run) if from_run else h.before(end)[0]
    if start.as_of >= end.as_of:
        raise NotFoundError(
            f"the start run ({start.run_id}, as of {start.as_of}) is not before the end run ({end.run_id}, as of "
            f"{end.as_of}); pass {{from_run}} with an earlier run, or produce more runs over time",
            param="from_run",
        )
    name = h.segment(start, segment)
    targets = [match_segment(t, h.segments(end), end.run_id) for t in to]
    if not targets:
        raise ParameterError("give at least one target segment ({to})", param="to")
    pop = h.assignments(start)
    pop = pop[pop["segment"] == name][["customer_id"]]
    after = h.assignments(end)[["customer_id", "segment"]].rename(columns={"segment": "segment_end"})
    pop = pop.merge(after, on="customer_id", how="left")
    pop["moved"] = pop["segment_end"].isin(targets)
    k = normalise_kind(kind) if kind else None
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("pop", pop[["customer_id"]])
        t = con.sql(
            "SELECT customer_id, kind, count(*) AS n FROM touches "
            f"WHERE CAST(sent_at AS DATE) >= DATE '{start.as_of}' AND CAST(sent_at AS DATE) < DATE '{end.as_of}' "
            "AND customer_id IN (SELECT customer_id FROM pop) GROUP BY ALL"
        ).df()
    finally:
        con.close()
    any_touch = set(t["customer_id"])
    control = pop[~pop["customer_id"].isin(any_touch)]
    kinds = [k] if k else sorted(set(t["kind"]))
    groups = ([] if k else [("any", any_touch)]) + [(x, set(t.loc[t["kind"] == x, "customer_id"])) for x in kinds]
    results = []
    for label, ids in groups:
        contacted = pop[pop["customer_id"].isin(ids)]
        nc, mc = len(contacted), int(contacted["moved"].sum())
        nn, mn = len(control), int(control["moved"].sum())
        thin = nc < min_contacted or nn < min_control
        share_c = mc / nc if nc else None
        share_n = mn / nn if nn else None
        uplift = share_c - share_n if share_c is not None and share_n is not None else None
        p = float(fisher_exact([[mc, nc - mc], [mn, nn - mn]])[1]) if nc and nn else None
        if thin:
            verdict = (
                f"too thin to say: {nc} contacted (need {min_contacted}) and {nn} not contacted (need {min_control})"
            )
        else:
            assert share_c is not None and share_n is not None and uplift is not None  # nc, nn >= 1 when not thin
            verdict = (
                f"{mc} of {nc} contacted ({share_c:.0%}) moved vs {mn} of {nn} not contacted ({share_n:.0%}): "
                f"{uplift * 100:+.1f} points (Fisher exact p={p:.3g})"
            )
        results.append(
            {
                "kind": label,
                "contacted": nc,
                "contacted_moved": mc,
                "contacted_share": rounded(share_c) if share_c is not None else None,
                "not_contacted": nn,
                "not_contacted_moved": mn,
                "not_contacted_share": rounded(share_n) if share_n is not None else None,
                "uplift": rounded(uplift) if uplift is not None else None,
                "p_value": rounded(p, 6) if p is not None else None,
                "too_thin": thin,
                "verdict": verdict,
            }
        )
    solid = [r for r in results if not r["too_thin"] and r["uplift"] is not None]
    best = max(solid, key=lambda r: (r["uplift"], r["kind"] != "any"), default=None)
    target_text = " or ".join(targets)
    outcome = f"{name} → {target_text}"
    if t.empty:
        answer = (
            f"No touches were sent to the {len(pop):,} customers in {name} between {start.as_of} and {end.as_of}, "
            "so there is nothing to compare: import the campaign history with `rfmseg touches import FILE`."
        )
    elif not solid:
        answer = (
            f"The data is too thin to say what moves {outcome}: "
            + "; ".join(f"{r['kind']}: {r['contacted']} contacted, {r['not_contacted']} not" for r in results)
            + f" (need at least {min_contacted} contacted and {min_control} not contacted)."
        )
    elif best is not None and best["uplift"] > 0:
        answer = f"For {outcome} ({start.as_of} to {end.as_of}), {best['kind']} did best: {best['verdict']}."
    else:
        answer = f"No intervention beat no contact for {outcome} ({start.as_of} to {end.as_of}): " + "; ".join(
            f"{r['kind']}: {r['verdict']}" for r in solid
        )
    experiments = measured_campaigns(runs_dir, name, targets, k)
    if experiments:
        shown = "; ".join(e["verdict"] for e in experiments)
        answer = (
            f"Measured with a randomised holdout (experimental, what the campaign caused): {shown}. "
            f"Observational, contacted vs not (customers who were contacted differ from those who were not, so "
            f"this is no proof): {answer}"
        )
    return {
        "question": f"What intervention has historically moved customers in {name} to {target_text}?",
        "answer": answer,
        "experimental": experiments,
        "params": {
            "segment": name,
            "to": targets,
            "kind": k,
            "min_contacted": min_contacted,
            "min_control": min_control,
        },
        "start": start.brief(),
        "end": end.brief(),
        "window": [start.as_of.isoformat(), (end.as_of - timedelta(days=1)).isoformat()],
        "population": len(pop),
        "moved": int(pop["moved"].sum()),
        "missing_at_end": int(pop["segment_end"].isna().sum()),
        "too_thin_rule": f"fewer than {min_contacted} contacted or fewer than {min_control} not contacted",
        "best": best["kind"] if best is not None and best["uplift"] > 0 else None,
        "interventions": results,
    }


# ------------------------------------------------------------------------------------------------ holdout campaigns
def campaigns(runs_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """The campaigns planned with a randomised holdout (`rfmseg campaign plan`): each one's action, segments,
    treated and control counts, and, once measured, its uplift per segment with the interval (experimental
    evidence: what the campaign caused). ``name`` gives one campaign."""
    from rfmseg.jobs.campaign import list_campaigns, load_plan

    if name is not None:
        load_plan(name, runs_dir)  # a clear error for an unknown name
    rows = [c for c in list_campaigns(runs_dir) if name is None or c["name"] == name]
    return {"campaigns": rows, "count": len(rows)}


def campaign_plan(
    runs_dir: str | Path,
    *,
    name: Annotated[str, Field(min_length=1, max_length=64)],
    segments: Annotated[list[str], Field(min_length=1)],
    action: str = "win_back",
    holdout: str = "10%",
    seed: int = 7,
    rank_by: str = "monetary",
    bands: Annotated[int, Field(ge=1, le=20)] = 4,
    run: RunRef = "latest",
    send_date: str | None = None,
) -> dict[str, Any]:
    """Plan a campaign with a randomised holdout: among the customers of ``segments`` in ``run``, draw a seeded
    control group of ``holdout`` inside each segment x value band, write the target and control lists and the
    treated customers' planned touches. Measure it later with campaign_measure."""
    from rfmseg.jobs.campaign import plan

    return plan(
        name,
        segments,
        action,
        holdout,
        runs_dir=runs_dir,
        run=run,
        seed=seed,
        rank_by=rank_by,
        bands=bands,
        send_date=send_date,
    )


def campaign_measure(
    runs_dir: str | Path,
    *,
    name: str,
    transactions: str,
    window: str = "30d",
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95,
) -> dict[str, Any]:
    """Measure a planned campaign on ``transactions`` (a file path on the server, through the window's end):
    per segment, conversion and revenue per customer of the treated against the held-out control, the uplift
    with its interval and p-value, the minimum detectable effect, and no effect claimed when the interval
    holds zero."""
    from rfmseg.jobs.campaign import measure

    return measure(name, transactions, runs_dir=runs_dir, window=window, confidence=confidence)


def campaign_size(
    runs_dir: str | Path,
    *,
    baseline: Annotated[float, Field(gt=0, lt=1)],
    uplift: Annotated[float, Field(gt=0, lt=1)],
    customers: Annotated[int | None, Field(ge=1)] = None,
    holdout: str | None = None,
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95,
) -> dict[str, Any]:
    """How many customers, and what holdout share, a campaign needs to detect ``uplift`` (points of
    conversion, e.g. 0.03) over ``baseline`` with 80 % power; with ``customers``, the smallest holdout that
    detects it and the effect the given holdout can detect."""
    from rfmseg.jobs.campaign import parse_share
    from rfmseg.model.uplift import holdout_size

    share = parse_share(holdout) if holdout is not None else None
    return holdout_size(baseline, uplift, customers, share, confidence)
