"""Precision and recall of the early warnings (``rfmseg watch``) against the simulator's truth, and the same
warnings on UCI Online Retail replayed week by week (docs/production.md, "How good the warnings are").

    .venv/bin/python scripts/warning_precision.py [--seeds 7,8,9,10,11] [--sizes 1600,5000] [--retail]
                                                   [--data PATH] [--out FILE.json]

**Simulator**: for each seed and customer-base size, the 12-week life the docs describe (week 0 ``run``, a
refresh every week, a retrain every 4th week, all through the real jobs), then ``watch`` on the last week.
Positives: ``champions_slowing`` = the ``champion_slowing`` customers, ``loyal_lapsing`` = the
``loyal_lapsing`` ones, ``overdue`` = both (the customers whose buying rate dropped during the weeks); anyone
else flagged is a false positive. Also the retrain's relabelling: a refresh and a retrain on the same data and
day (weeks 4, 8 and 12), the share of customers whose label differs, and the retrain's drift moves; and the
share of the slowing Champions and lapsing Loyal Buyers caught on the last week, by label (no longer in their
group's segment) or by their warning.

**Online Retail** (``--retail``): a ``run`` as of 2011-03-06, then a weekly refresh each Sunday up to
2011-09-04 and a retrain every 4th week, each on the orders before its date (``--preset online-retail``);
then ``watch`` on every 4th week from the 8th (2011-05-01 to 2011-08-21). For each of those weeks, warning
and segment, the share of the flagged customers who buy again in the next 90 days (orders in the file dated
from the as-of date to 90 days later) against the share among the segment's unflagged customers; the ratio
should be at most 0.6. Also pooled over the five weeks (flagged and unflagged customers summed), and the
*ceiling*: how far any rule on these runs' figures could get. For each segment, a gradient-boosted classifier
(scikit-learn's ``HistGradientBoostingClassifier``, depth 3, seeded) is given every figure a warning could use
(recency, orders, spend, the rhythm's gap, how late against it, orders in the window against the rhythm's
due) and predicts "buys again in 90 days", trained on four of the weeks and scored on the fifth (each week in
turn); the customers it ranks least likely to buy again (the lowest 2, 5 and 10 %) are compared with the rest
of their segment, as a warning's flagged customers are. The same ceiling is computed a second time from each
customer's order dates in the file instead of the runs' figures (the gaps between their order days: mean,
longest, spread, 90th percentile), which say how irregular a customer is, as a run does not.

Prints the markdown tables and writes the JSON (default bench/results/warning_precision.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfmseg import jobs as life
from rfmseg.jobs.run import segment
from rfmseg.runs import history as hist
from rfmseg.runs import warnings as early
from rfmseg.simulate import SimConfig, simulate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "warning_precision.json"
RHYTHM = ("champions_slowing", "overdue", "loyal_lapsing")
TRUTH = {
    "champions_slowing": ("champion_slowing",),
    "loyal_lapsing": ("loyal_lapsing",),
    "overdue": ("champion_slowing", "loyal_lapsing"),
}
CAUGHT = {"champion_slowing": ("Champions", "champions_slowing"), "loyal_lapsing": ("Loyal Buyers", "loyal_lapsing")}
"""behaviour: the segment of their group and the warning that says it"""


def sim_life(seed: int, customers: int, runs: Path, hold: float = life.DEFAULT_HOLD, **options: Any) -> dict[str, Any]:
    """The 12-week life on one simulated base; the warnings' precision and recall on its last week
    (``options``: the rhythm rule's parameters, e.g. ``late_factor``, as :func:`rfmseg.runs.warnings.warnings`
    takes them)."""
    sim = simulate(SimConfig(seed=seed, customers=customers))
    dates = sim.config.as_of_dates()
    relabelled, quiet, drift = [], [], []
    last = segment(sim.snapshot(dates[0]), as_of=dates[0], runs_dir=runs).run
    for week, day in enumerate(dates[1:], start=1):
        if week % 4 == 0:
            # the refresh of the retrain's day first: what the labels would be without the retrain
            refreshed = life.refresh(sim.snapshot(day), as_of=day, runs_dir=runs, publish=False, hold=hold)
            trained = life.retrain(sim.snapshot(day), as_of=day, runs_dir=runs, publish=False, hold=hold)
            before = {r["customer_id"]: r for r in refreshed.run.table("assignments").to_pylist()}
            after = {r["customer_id"]: r for r in trained.run.table("assignments").to_pylist()}
            week_before = {r["customer_id"]: r for r in last.table("assignments").to_pylist()}
            differ = {c for c in after if before[c]["segment"] != after[c]["segment"]}
            relabelled.append(round(len(differ) / len(after), 4))
            # the customers without an order since the week before: only the calendar and the model moved
            still = [c for c in after if c in week_before and week_before[c]["frequency"] == after[c]["frequency"]]
            quiet.append(round(len(differ.intersection(still)) / len(still), 4))
            drift.append(trained.manifest["drift"]["moves"])
            last = trained.run
        else:
            last = life.refresh(sim.snapshot(day), as_of=day, runs_dir=runs, publish=False, hold=hold).run
    w = early.warnings(runs, **options)
    truth = sim.truth.to_pylist()
    final = {r["customer_id"]: r["segment"] for r in last.table("assignments").to_pylist()}
    out: dict[str, Any] = {
        "seed": seed,
        "customers": customers,
        "retrain_relabelled": relabelled,
        "retrain_relabelled_no_order": quiet,
        "drift_moves": drift,
        "caught": {},
    }
    # the quiet retrains must not hide who slowed down: on the last week, relabelled out of their group's
    # segment or flagged by their warning
    for behaviour, (group, wid) in CAUGHT.items():
        ids = {r["customer_id"] for r in truth if r["behaviour"] == behaviour}
        flagged = {c["customer_id"] for c in early.find(w, wid)["customers"]}
        caught = {c for c in ids if c in flagged or final.get(c) != group}
        out["caught"][behaviour] = round(len(caught) / len(ids), 3) if ids else None
    for wid in RHYTHM:
        flagged = {c["customer_id"] for c in early.find(w, wid)["customers"]}
        positive = {r["customer_id"] for r in truth if r["behaviour"] in TRUTH[wid]}
        hit = len(flagged & positive)
        out[wid] = {
            "flagged": len(flagged),
            "positives": len(positive),
            "precision": round(hit / len(flagged), 3) if flagged else None,
            "recall": round(hit / len(positive), 3) if positive else None,
        }
    return out


def _cols(t: pa.Table, *names: str) -> list[list[Any]]:
    return [t.column(n).to_pylist() for n in names]


# ------------------------------------------------------------------------------------------- Online Retail
RETAIL_START = date(2011, 3, 6)
RETAIL_END = date(2011, 9, 4)
HORIZON = 90


def retail(data: Path, runs: Path, end: date = RETAIL_END, **options: Any) -> dict[str, Any]:
    """The weekly replay on Online Retail up to ``end`` and, per warning and segment, who buys again in the next
    90 days (and the ceiling, when there are two weeks or more to check)."""
    day, n = RETAIL_START, 0
    if not (runs.exists() and any(runs.iterdir())):  # a registry kept from an earlier replay is read again
        segment(data, preset="online-retail", as_of=day, runs_dir=runs)
        while (day := day + timedelta(weeks=1)) <= end:
            n += 1
            job = life.retrain if n % 4 == 0 else life.refresh
            job(data, preset="online-retail", as_of=day, runs_dir=runs, publish=False)
    tl = hist.timeline(runs)
    con = duckdb.connect()
    try:
        _order_days(con, data)
        return _retail_figures(con, runs, tl, options)
    finally:
        con.close()


def _retail_figures(con: Any, runs: Path, tl: list[hist.RunMeta], options: dict[str, Any]) -> dict[str, Any]:
    """:func:`retail`'s figures from the replay's timeline ``tl`` and the order days in ``con``."""
    rows: list[dict[str, Any]] = []
    for meta in tl[8::4]:  # every 4th week from the 8th: the rhythm needs the window's runs behind it
        w = early.warnings(runs, meta.run_id, **options)
        buyers = _buyers(con, meta)
        seg = {str(r["customer_id"]): r["segment"] for r in pq.read_table(meta.file).to_pylist()}
        for wid in ("champions_slowing", "overdue", "loyal_lapsing"):
            flagged = {str(c["customer_id"]) for c in early.find(w, wid)["customers"]}
            for s in sorted({seg[c] for c in flagged if c in seg}):
                members = {c for c, x in seg.items() if x == s}
                f, u = members & flagged, members - flagged
                bf, bu = sum(c in buyers for c in f), sum(c in buyers for c in u)
                rf = bf / len(f)
                ru = bu / len(u) if u else None
                rows.append(
                    {
                        "as_of": meta.date.isoformat(),
                        "warning": wid,
                        "segment": s,
                        "flagged": len(f),
                        "unflagged": len(u),
                        "bought_flagged": bf,
                        "bought_unflagged": bu,
                        "rebuy_flagged": round(rf, 3),
                        "rebuy_unflagged": round(ru, 3) if ru is not None else None,
                        "ratio": round(rf / ru, 2) if ru else None,
                    }
                )
    as_of = tl[-1].date
    return {
        "last_as_of": as_of.isoformat(),
        "horizon_days": HORIZON,
        "params": options,
        "rows": rows,
        "pooled": _pooled(rows),
        "ceiling": ceiling(con, tl[8::4], tl) if len(tl[8::4]) > 1 else [],
        "ceiling_orders": ceiling_orders(con, tl[8::4]) if len(tl[8::4]) > 1 else [],
    }


def _pooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per warning and segment, the weeks summed: flagged and unflagged customers and who of them bought again."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["rebuy_unflagged"] is None:
            continue
        a = acc.setdefault((r["warning"], r["segment"]), [0, 0, 0, 0])
        a[0] += r["flagged"]
        a[1] += r["bought_flagged"]
        a[2] += r["unflagged"]
        a[3] += r["bought_unflagged"]
    out = []
    for (wid, seg), (nf, bf, nu, bu) in sorted(acc.items()):
        rf, ru = bf / nf, bu / nu
        out.append(
            {
                "warning": wid,
                "segment": seg,
                "flagged": nf,
                "unflagged": nu,
                "rebuy_flagged": round(rf, 3),
                "rebuy_unflagged": round(ru, 3),
                "ratio": round(rf / ru, 2) if ru else None,
            }
        )
    return out


CEILING_SHARES = (0.02, 0.05, 0.10)
FEATURES = ("recency_days", "frequency", "monetary", "gap", "late", "pace")


def _features(now: hist.RunMeta, tl: list[hist.RunMeta], window_days: int) -> pa.Table:
    """Every customer of ``now`` with the figures a warning could use: recency, orders, spend, and against the
    rhythm read in the base run (as the rhythm warnings read it): the mean gap, recency / gap ("late") and the
    orders placed since the base run / the orders the rhythm had due ("pace"). No rhythm: null."""

    base = next(m for m in tl if 0 < (now.date - m.date).days <= window_days)
    span = (now.date - base.date).days
    cols = early.RHYTHM_COLUMNS
    con = duckdb.connect()
    try:
        return con.sql(
            "SELECT n.customer_id::VARCHAR AS customer_id, n.segment, n.recency_days::DOUBLE AS recency_days, "
            "n.frequency::DOUBLE AS frequency, n.monetary::DOUBLE AS monetary, g.gap, "
            "n.recency_days / g.gap AS late, (n.frequency - g.frequency) / (? / g.gap) AS pace "
            f"FROM {hist.run_table(con, now, cols)} n LEFT JOIN ("
            f"SELECT b.customer_id, b.frequency, {early.gap_sql('b')} AS gap "
            f"FROM {hist.run_table(con, base, cols)} b WHERE b.frequency >= 2) g "
            "ON n.customer_id = g.customer_id AND g.gap > 0",
            params=[span, base.date],
        ).to_arrow_table()
    finally:
        con.close()


def ceiling(con: Any, weeks: list[hist.RunMeta], tl: list[hist.RunMeta], window_days: int = 56) -> list[dict[str, Any]]:
    """Per segment: how much less often the customers a classifier given every figure ranks least likely to
    buy again do buy again, against the rest of the segment (trained on the other weeks, scored on each)."""
    frames = []
    for meta in weeks:
        t = _features(meta, tl, window_days)
        buyers = _buyers(con, meta)
        ids = t.column("customer_id").to_pylist()
        x = np.column_stack([t.column(f).to_numpy(zero_copy_only=False).astype(float) for f in FEATURES])
        frames.append((t.column("segment").to_pylist(), np.array([_cid(c) in buyers for c in ids]), x))
    return _ranked(frames, FEATURES)


ORDER_FEATURES = ("orders", "recency_days", "mean_gap", "max_gap", "sd_gap", "gap_p90", "age_days")


def ceiling_orders(con: Any, weeks: list[hist.RunMeta]) -> list[dict[str, Any]]:
    """The same ceiling, given each customer's order dates instead of a run's figures (:func:`order_features`)."""
    frames = []
    for meta in weeks:
        t = order_features(con, meta)
        x = np.column_stack([t.column(f).to_numpy(zero_copy_only=False).astype(float) for f in ORDER_FEATURES])
        frames.append((t.column("segment").to_pylist(), t.column("buys").to_numpy(zero_copy_only=False), x))
    return _ranked(frames, ORDER_FEATURES)


def _order_days(con: Any, data: Path) -> None:
    """The temporary table ``days``: each customer's order days in Online Retail's raw columns (cancellations,
    invoice numbers starting with C, are not orders)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE days AS SELECT DISTINCT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) "
        "AS customer_id, CAST(InvoiceDate AS DATE) AS day FROM read_parquet(?) "
        "WHERE CustomerID IS NOT NULL AND NOT starts_with(CAST(InvoiceNo AS VARCHAR), 'C')",
        [str(data)],
    )


def order_features(con: Any, meta: hist.RunMeta) -> pa.Table:
    """The customers of ``meta``'s run who ordered before its date (in :func:`_order_days`'s ``days``), with
    their segment in the run, whether they order in the next 90 days (``buys``) and :data:`ORDER_FEATURES`,
    all from the days before the as-of date: how many days they ordered on, the days since the last, the gaps
    between order days (mean, longest, spread, 90th percentile: how irregular they are, which a run does not
    keep) and the days since the first. A single order day: no gap (null)."""
    return con.sql(
        "WITH g AS (SELECT customer_id, day, date_diff('day', lag(day) OVER (PARTITION BY customer_id "
        "ORDER BY day), day) AS gap FROM days WHERE day < ?), "
        "f AS (SELECT customer_id, count(*)::DOUBLE AS orders, date_diff('day', max(day), ?)::DOUBLE "
        "AS recency_days, avg(gap) AS mean_gap, max(gap)::DOUBLE AS max_gap, stddev_samp(gap) AS sd_gap, "
        "quantile_cont(gap, 0.9) AS gap_p90, date_diff('day', min(day), ?)::DOUBLE AS age_days "
        "FROM g GROUP BY customer_id), "
        f"b AS ({BUYERS_SQL}) "
        "SELECT f.customer_id, r.segment, b.customer_id IS NOT NULL AS buys, f.* EXCLUDE (customer_id) "
        "FROM read_parquet(?) r JOIN f ON f.customer_id = CAST(r.customer_id AS VARCHAR) "
        "LEFT JOIN b ON b.customer_id = f.customer_id ORDER BY f.customer_id",
        params=[meta.date, meta.date, meta.date, *_horizon(meta), str(meta.file)],
    ).to_arrow_table()


def _ranked(frames: list[tuple[list[str], np.ndarray, np.ndarray]], features: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per segment, over ``frames`` (one per week: each customer's segment, whether they bought again, their
    ``features``): a classifier trained on the other weeks ranks each week's customers; the lowest 2, 5 and
    10 % against the rest of the segment, with the median figures of the lowest."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    out: list[dict[str, Any]] = []
    segments = sorted({s for segs, _, _ in frames for s in segs})
    for seg in segments:
        xs, ys, gs = [], [], []
        for i, (segs, y, x) in enumerate(frames):
            keep = np.array([s == seg for s in segs], dtype=bool)
            xs.append(x[keep])
            ys.append(y[keep])
            gs.append(np.full(int(keep.sum()), i))
        x, y, g = np.vstack(xs), np.concatenate(ys).astype(bool), np.concatenate(gs)
        if len(y) < 200 or y.all() or not y.any():
            continue
        xf = np.nan_to_num(x, nan=-1.0)  # no rhythm (or a single order day): -1 (every figure is >= 0)
        score = np.empty(len(y))
        for i in range(len(frames)):
            test = g == i
            if not test.any() or y[~test].all() or not y[~test].any():
                score[test] = np.nan
                continue
            clf = HistGradientBoostingClassifier(max_depth=3, random_state=0).fit(xf[~test], y[~test])
            score[test] = clf.predict_proba(xf[test])[:, 1]
        ok = ~np.isnan(score)
        x, y, score = x[ok], y[ok], score[ok]
        order = np.argsort(score, kind="stable")
        for share in CEILING_SHARES:
            k = max(1, int(len(y) * share))
            low, rest = order[:k], order[k:]
            profile = {
                f: (round(float(np.nanmedian(x[low, j])), 1) if not np.isnan(x[low, j]).all() else None)
                for j, f in enumerate(features)
            }
            out.append(
                {
                    "segment": seg,
                    "share": share,
                    "customers": len(y),
                    "flagged": int(k),
                    "rebuy_flagged": round(float(y[low].mean()), 3),
                    "rebuy_rest": round(float(y[rest].mean()), 3),
                    "ratio": round(float(y[low].mean() / y[rest].mean()), 2),
                    "median_of_flagged": profile,
                }
            )
    return out


BUYERS_SQL = "SELECT DISTINCT customer_id FROM days WHERE day >= ? AND day < ?"
"""The customers who buy again: an order day in the 90 days from a run's date (:func:`_horizon`), in
:func:`_order_days`'s ``days``."""


def _horizon(meta: hist.RunMeta) -> tuple[date, date]:
    return meta.date, meta.date + timedelta(days=HORIZON)


def _buyers(con: Any, meta: hist.RunMeta) -> set[str]:
    """The ids (as :func:`_order_days` writes them) of the customers who buy again after ``meta``'s run."""
    return {r[0] for r in con.execute(BUYERS_SQL, list(_horizon(meta))).fetchall()}


def _cid(x: str) -> str:
    return x[:-2] if x.endswith(".0") else x


# ------------------------------------------------------------------------------------------- tables
def sim_table(results: list[dict[str, Any]]) -> str:
    head = (
        "| seed | customers | "
        + " | ".join(f"{w} P / R (flagged)" for w in RHYTHM)
        + " | retrain vs refresh, weeks 4/8/12: all | no order since the week before | drift moves"
        + " | caught by label or warning: slowing / lapsing |"
    )
    lines = [head, "|" + "---|" * (6 + len(RHYTHM))]
    for r in results:
        cells = [f"{r[w]['precision']} / {r[w]['recall']} ({r[w]['flagged']})" for w in RHYTHM]
        share = " / ".join(f"{100 * x:.1f}" for x in r["retrain_relabelled"])
        still = " / ".join(f"{100 * x:.1f}" for x in r["retrain_relabelled_no_order"])
        moves = " / ".join(str(x) for x in r["drift_moves"])
        caught = " / ".join(f"{r['caught'][b]}" for b in CAUGHT)
        row = (
            f"| {r['seed']} | {r['customers']:,} | "
            + " | ".join(cells)
            + f" | {share} % | {still} % | {moves} | {caught} |"
        )
        lines.append(row)
    return "\n".join(lines)


def retail_table(res: dict[str, Any]) -> str:
    lines = [
        "| as of | warning | segment | flagged | buy again in 90 days: flagged | unflagged | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['as_of']} | {r['warning']} | {r['segment']} | {r['flagged']:,} | {r['rebuy_flagged']:.3f} | "
            f"{r['rebuy_unflagged'] if r['rebuy_unflagged'] is not None else '-'} | {r['ratio']} |"
        )
    lines += [
        "",
        "Pooled over the weeks:",
        "",
        "| warning | segment | flagged | buy again in 90 days: flagged | unflagged | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in res.get("pooled", []):
        lines.append(
            f"| {r['warning']} | {r['segment']} | {r['flagged']:,} | {r['rebuy_flagged']:.3f} | "
            f"{r['rebuy_unflagged']:.3f} | {r['ratio']} |"
        )
    lines += [
        "",
        "The ceiling (a classifier given every figure, scored on a week it was not trained on):",
        "",
        "| segment | lowest share | customers (5 weeks) | buy again: lowest | the rest | ratio | median orders, "
        "recency, late of the lowest |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res.get("ceiling", []):
        m = r["median_of_flagged"]
        lines.append(
            f"| {r['segment']} | {100 * r['share']:.0f} % ({r['flagged']:,}) | {r['customers']:,} | "
            f"{r['rebuy_flagged']:.3f} | {r['rebuy_rest']:.3f} | {r['ratio']} | {m['frequency']:g}, "
            f"{m['recency_days']:g} days, {m['late'] if m['late'] is not None else '-'} |"
        )
    if res.get("ceiling_orders"):
        lines += [
            "",
            "The same ceiling given each customer's order dates instead (days ordered on, recency, mean, longest, "
            "spread and 90th percentile of the gaps between order days, days since the first):",
            "",
            "| segment | lowest share | customers (5 weeks) | buy again: lowest | the rest | ratio | "
            "median order days, recency, longest gap of the lowest |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["ceiling_orders"]:
            m = r["median_of_flagged"]
            gap = "-" if m["max_gap"] is None else f"{m['max_gap']:g} day{'s' * (m['max_gap'] != 1)}"
            lines.append(
                f"| {r['segment']} | {100 * r['share']:.0f} % ({r['flagged']:,}) | {r['customers']:,} | "
                f"{r['rebuy_flagged']:.3f} | {r['rebuy_rest']:.3f} | {r['ratio']} | {m['orders']:g}, "
                f"{m['recency_days']:g} days, {gap} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", default="7,8,9,10,11")
    ap.add_argument("--sizes", default="1600,5000")
    ap.add_argument("--retail", action="store_true", help="also replay Online Retail")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator")
    ap.add_argument("--hold", type=float, default=life.DEFAULT_HOLD, help="the retrains' hold band (0: off)")
    ap.add_argument("--data", type=Path, default=None, help="Online Retail (default: the data set cache)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--retail-runs", type=Path, default=None, help="keep the Online Retail registry here (reused)")
    ap.add_argument(
        "--late-factor",
        type=float,
        default=None,
        help=f"the warnings' late factor (default {early.RhythmRule.late_factor:g}; a stricter rule: 5)",
    )
    a = ap.parse_args(argv)
    rule: dict[str, Any] = {} if a.late_factor is None else {"late_factor": a.late_factor}
    report: dict[str, Any] = {"simulator": [], "online_retail": None, "rule": rule}
    t0 = time.perf_counter()
    if not a.no_sim:
        for size in (int(x) for x in a.sizes.split(",")):
            for seed in (int(x) for x in a.seeds.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    report["simulator"].append(sim_life(seed, size, Path(tmp) / "runs", a.hold, **rule))
                print(f"seed {seed} size {size}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(sim_table(report["simulator"]))
    if a.retail:
        from rfmseg.datasets import online_retail_path

        data = a.data or online_retail_path()
        if a.retail_runs:
            report["online_retail"] = retail(data, a.retail_runs, **rule)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                report["online_retail"] = retail(data, Path(tmp) / "runs", **rule)
        print()
        print(retail_table(report["online_retail"]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
