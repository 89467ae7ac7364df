"""Calibration / holdout check of the rhythm models on UCI Online Retail (docs/rhythm.md).

    .venv/bin/python scripts/rhythm_holdout.py [--data PATH] [--models bg,mbg,pnbd] [--out FILE.json]

Needs the clv extra (``pip install 'rfmseg[clv]'``). The RFM of every customer as of the calibration end
(2011-09-09) and as of the last day of the file (2011-12-09) come out of the real pipeline
(``--preset online-retail``); a customer's holdout orders are the difference of the two frequencies, their
holdout spend the difference of the two monetaries. Each repeat-order model is fitted by MAP on the
calibration customers and predicts the holdout's 91 days; the table gives, per model and beside the naive
baselines (past orders alone, recency alone), the AUC for "ordered again in the holdout", the expected and
actual orders in total and per decile of prediction, and the fit time. Prints the markdown tables and writes
the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.metrics import roc_auc_score

import rfmseg
from rfmseg.model import rhythm

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "rhythm_holdout.json"
CAL_END = date(2011, 9, 9)
END = date(2011, 12, 9)
LABELS = {"bg": "BG/NBD", "mbg": "modified BG/NBD", "pnbd": "Pareto/NBD"}


def rfm_as_of(data: Path, as_of: date) -> pa.Table:
    return rfmseg.segment(str(data), preset="online-retail", as_of=as_of, runs_dir=None).rfm


def holdout(data: Path) -> tuple[pa.Table, rhythm.Inputs, np.ndarray, np.ndarray]:
    """The calibration RFM, its BTYD inputs, and each calibration customer's holdout orders and spend."""
    cal, full = rfm_as_of(data, CAL_END), rfm_as_of(data, END)
    ids = {c: i for i, c in enumerate(full.column("customer_id").to_pylist())}
    at = np.array([ids[c] for c in cal.column("customer_id").to_pylist()])
    freq_full = full.column("frequency").to_numpy()[at]
    mon_full = full.column("monetary").to_numpy()[at]
    orders = freq_full - cal.column("frequency").to_numpy()
    spend = mon_full - cal.column("monetary").to_numpy()
    return cal, rhythm.inputs(cal, CAL_END), orders.astype(float), spend.astype(float)


def deciles(pred: np.ndarray, actual: np.ndarray) -> list[dict[str, float]]:
    """Expected and actual totals per decile of prediction (1 = highest predictions)."""
    order = np.argsort(-pred, kind="stable")
    out = []
    for i, part in enumerate(np.array_split(order, 10), start=1):
        out.append(
            {
                "decile": i,
                "customers": int(part.size),
                "expected": round(float(pred[part].sum()), 1),
                "actual": round(float(actual[part].sum()), 1),
            }
        )
    return out


def measure(data: Path, models: list[str], import_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    cal, inp, y, spend = holdout(data)
    t_rfm = time.perf_counter() - t0
    v = inp.valid
    y, spend = y[v], spend[v]
    again = y > 0
    freq = inp.orders[v]
    recency = cal.column("recency_days").to_numpy()[v].astype(float)
    horizon = (END - CAL_END).days
    result: dict[str, Any] = {
        "data": str(data.name),
        "calibration_end": CAL_END.isoformat(),
        "holdout_end": END.isoformat(),
        "horizon_days": horizon,
        "customers": int(v.sum()),
        "ordered_again_share": round(float(again.mean()), 4),
        "actual_orders": int(y.sum()),
        "actual_spend": round(float(spend.sum()), 2),
        "rfm_s": round(t_rfm, 2),
        "import_s": round(import_s, 2),
        "baselines": {
            "past_orders": {"auc": round(float(roc_auc_score(again, freq)), 4)},
            "recency": {"auc": round(float(roc_auc_score(again, -recency)), 4)},
        },
        "models": {},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    clv = rhythm.clv_library()
    result["library"] = {"pymc-marketing": __import__("pymc_marketing").__version__}
    rows = np.flatnonzero(v)
    frame = rhythm.summary_frame(inp, rows)
    for name in models:
        t0 = time.perf_counter()
        fitted = rhythm.fit_library_model(name, frame)
        fit_s = time.perf_counter() - t0
        names = tuple(str(k) for k in fitted.fit_result.data_vars)
        params = rhythm.map_params(fitted, names)
        lib_alive = fitted.expected_probability_alive(data=frame).values.ravel()
        lib_orders = fitted.expected_purchases(data=frame, future_t=horizon).values.ravel()
        entry: dict[str, Any] = {
            "label": LABELS[name],
            "params": params,
            "fit_s": round(fit_s, 2),
            "auc_p_alive": round(float(roc_auc_score(again, lib_alive)), 4),
            "auc_expected_orders": round(float(roc_auc_score(again, lib_orders)), 4),
            "expected_orders": round(float(lib_orders.sum()), 1),
            "one_time_buyers_p_alive_mean": round(float(lib_alive[inp.x[v] == 0].mean()), 4),
            "deciles": deciles(lib_orders, y),
        }
        if name in rhythm.SCORED:
            p = {k: params[k] for k in ("a", "b", "r", "alpha")}
            ours = rhythm.p_alive(name, p, inp.x[v], inp.t_x[v], inp.T[v])
            ours_e = rhythm.expected_orders(name, p, horizon, inp.x[v], inp.t_x[v], inp.T[v])
            entry["closed_form_max_abs_diff"] = {
                "p_alive": float(np.max(np.abs(ours - lib_alive))),
                "expected_orders": float(np.max(np.abs(ours_e - lib_orders))),
            }
        result["models"][name] = entry
        print(f"{name}: fitted in {fit_s:.1f} s", file=sys.stderr)
    if rhythm.DEFAULT_MODEL in result["models"]:
        t0 = time.perf_counter()
        sp = rhythm.fit_spend(clv, inp, rows)
        result["spend"] = {"params": sp, "fit_s": round(time.perf_counter() - t0, 2)}
        if sp is not None:
            p = {k: float(v_) for k, v_ in result["models"][rhythm.DEFAULT_MODEL]["params"].items()}
            e_orders = rhythm.expected_orders(rhythm.DEFAULT_MODEL, p, horizon, inp.x[v], inp.t_x[v], inp.T[v])
            value = e_orders * rhythm.expected_spend(sp, inp.orders[v], inp.mean_spend[v])
            result["spend"]["expected_value"] = round(float(value.sum()), 2)
            result["spend"]["deciles"] = deciles(value, spend)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Calibration to {r['calibration_end']}, holdout the next {r['horizon_days']} days to {r['holdout_end']}: "
        f"{r['customers']:,} customers, {r['ordered_again_share']:.1%} ordered again, "
        f"{r['actual_orders']:,} orders in the holdout.",
        "",
        "| predictor | AUC, ordered again | expected orders (actual "
        f"{r['actual_orders']:,}) | one-time buyers' mean P(alive) | fit, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in r["models"].values():
        lines.append(
            f"| {m['label']}: P(alive) | {m['auc_p_alive']:.3f} | | {m['one_time_buyers_p_alive_mean']:.3f} | "
            f"{m['fit_s']:.1f} |"
        )
        lines.append(
            f"| {m['label']}: expected orders | {m['auc_expected_orders']:.3f} | {m['expected_orders']:,.0f} "
            f"({m['expected_orders'] / r['actual_orders'] - 1:+.0%}) | | |"
        )
    lines.append(f"| past orders alone | {r['baselines']['past_orders']['auc']:.3f} | | | |")
    lines.append(f"| recency alone (fewer days = higher) | {r['baselines']['recency']['auc']:.3f} | | | |")
    chosen = r["models"].get(rhythm.DEFAULT_MODEL)
    if chosen:
        lines += ["", f"Per decile of {chosen['label']}'s expected orders (1 = highest):", ""]
        lines += ["| decile | customers | expected | actual |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {d['decile']} | {d['customers']} | {d['expected']:,.1f} | {d['actual']:,.0f} |"
            for d in chosen["deciles"]
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="default: the data set cache (rfmseg datasets path)")
    ap.add_argument("--models", default="bg,mbg,pnbd")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    t0 = time.perf_counter()
    try:
        rhythm.clv_library()
    except rhythm.MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import_s = time.perf_counter() - t0
    if a.data is None:
        from rfmseg.datasets import online_retail_path

        a.data = online_retail_path()
    r = measure(a.data, [m.strip() for m in a.models.split(",") if m.strip()], import_s)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    print(markdown(r))
    print(f"\nwritten {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
