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
should be at most 0.6.

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

import pyarrow as pa
import pyarrow.compute as pc
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


def sim_life(seed: int, customers: int, runs: Path, hold: float = life.DEFAULT_HOLD) -> dict[str, Any]:
    """The 12-week life on one simulated base; the warnings' precision and recall on its last week."""
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
    w = early.warnings(runs)
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


def retail(data: Path, runs: Path, **options: Any) -> dict[str, Any]:
    """The weekly replay on Online Retail and, per warning and segment, who buys again in the next 90 days."""
    orders = pq.read_table(data)
    day, n = RETAIL_START, 0
    if not (runs.exists() and any(runs.iterdir())):  # a registry kept from an earlier replay is read again
        segment(data, preset="online-retail", as_of=day, runs_dir=runs)
        while (day := day + timedelta(weeks=1)) <= RETAIL_END:
            n += 1
            job = life.retrain if n % 4 == 0 else life.refresh
            job(data, preset="online-retail", as_of=day, runs_dir=runs, publish=False)
    tl = hist.timeline(runs)
    rows: list[dict[str, Any]] = []
    for meta in tl[8::4]:  # every 4th week from the 8th: the rhythm needs the window's runs behind it
        w = early.warnings(runs, meta.run_id, **options)
        buyers = _buyers(orders, meta.date, meta.date + timedelta(days=HORIZON))
        seg = {str(r["customer_id"]): r["segment"] for r in pq.read_table(meta.file).to_pylist()}
        for wid in ("champions_slowing", "overdue", "loyal_lapsing"):
            flagged = {str(c["customer_id"]) for c in early.find(w, wid)["customers"]}
            for s in sorted({seg[c] for c in flagged if c in seg}):
                members = {c for c, x in seg.items() if x == s}
                f, u = members & flagged, members - flagged
                rf = sum(c in buyers for c in f) / len(f)
                ru = sum(c in buyers for c in u) / len(u) if u else None
                rows.append(
                    {
                        "as_of": meta.date.isoformat(),
                        "warning": wid,
                        "segment": s,
                        "flagged": len(f),
                        "unflagged": len(u),
                        "rebuy_flagged": round(rf, 3),
                        "rebuy_unflagged": round(ru, 3) if ru is not None else None,
                        "ratio": round(rf / ru, 2) if ru else None,
                    }
                )
    as_of = tl[-1].date
    return {"last_as_of": as_of.isoformat(), "horizon_days": HORIZON, "params": options, "rows": rows}


def _buyers(orders: pa.Table, start: date, end: date) -> set[str]:
    """Customers with an order dated in [start, end) (Online Retail's raw columns: CustomerID, InvoiceDate,
    InvoiceNo; cancellations, invoice numbers starting with C, are not orders)."""
    t = orders.select(["CustomerID", "InvoiceDate", "InvoiceNo"]).drop_null()
    d = pc.cast(pc.cast(t.column("InvoiceDate"), pa.timestamp("s")), pa.date32())
    keep = pc.and_(
        pc.and_(pc.greater_equal(d, pa.scalar(start, pa.date32())), pc.less(d, pa.scalar(end, pa.date32()))),
        pc.invert(pc.starts_with(pc.cast(t.column("InvoiceNo"), pa.string()), "C")),
    )
    ids = pc.cast(t.filter(keep).column("CustomerID"), pa.string())
    return {_cid(x) for x in ids.to_pylist()}


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
    a = ap.parse_args(argv)
    report: dict[str, Any] = {"simulator": [], "online_retail": None}
    t0 = time.perf_counter()
    if not a.no_sim:
        for size in (int(x) for x in a.sizes.split(",")):
            for seed in (int(x) for x in a.seeds.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    report["simulator"].append(sim_life(seed, size, Path(tmp) / "runs", a.hold))
                print(f"seed {seed} size {size}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(sim_table(report["simulator"]))
    if a.retail:
        from rfmseg.datasets import online_retail_path

        data = a.data or online_retail_path()
        if a.retail_runs:
            report["online_retail"] = retail(data, a.retail_runs)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                report["online_retail"] = retail(data, Path(tmp) / "runs")
        print()
        print(retail_table(report["online_retail"]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
