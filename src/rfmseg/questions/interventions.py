"""What moved customers between segments: the intervention effect of past campaign touches (contacted vs not
contacted, observational) beside the campaigns measured with a randomised holdout (experimental), and the
holdout campaigns themselves (plan, measure, list, size) as questions.

The formula of the intervention effect (also in docs/agents.md): customers of a segment at the start run
(default: the earliest run); contacted = at least one touch (of the kind) sent in [start as-of, end as-of);
control = no touch at all in that window; moved = in one of the target segments at the end run. The data is
*too thin* when fewer than ``min_contacted`` (default 30) were contacted or fewer than ``min_control`` (default
30) were not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.questions.common import (
    History,
    RunRef,
    SegmentName,
    SegmentNames,
    match_segment,
    rounded,
)
from rfmseg.touches import normalise_kind, register_touches


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
    bad_rows: Literal["error", "quarantine"] | None = None,
) -> dict[str, Any]:
    """Measure a planned campaign on ``transactions`` (a file path on the server, through the window's end):
    per segment, conversion and revenue per customer of the treated against the held-out control, the uplift
    with its interval and p-value, the minimum detectable effect, and no effect claimed when the interval
    holds zero. ``bad_rows='quarantine'`` sets bad rows aside (counted in ``rows``) instead of stopping."""
    from rfmseg.jobs.campaign import measure

    return measure(name, transactions, runs_dir=runs_dir, window=window, confidence=confidence, bad_rows=bad_rows)


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
