"""The rhythm model fitted on a seeded sample against the fit on every customer, on UCI Online Retail
(docs/rhythm.md, "Sample and cost").

    .venv/bin/python scripts/rhythm_sample_check.py [--data PATH] [--sizes 50000,3000,2000] [--out FILE.json]
    .venv/bin/python scripts/rhythm_sample_check.py --scale bench/data/tx_10M.parquet --sizes 50000 --seeds 3

Needs the clv extra. The RFM as of the file's last day (2011-12-09) comes out of the real pipeline
(``--preset online-retail``); the modified BG/NBD and Gamma-Gamma are fitted by MAP on every customer
(``sample_size=None``), then on a seeded sample of each size (the run's default, 50,000, is larger than
Online Retail's customers: that sample is all of them). For each sample: the largest relative difference of
a parameter from the full fit's, and the Spearman correlation of every customer's p_alive (and expected
value) scored by the two fits. Prints a markdown table and writes the JSON.

``--scale FILE`` does the same on a bench/generate.py file (read with ``--returns net``, as bench/bench_scale.py
does, as of its default as-of date): 96,361 customers at 1M lines, 961,561 at 10M, where a 50,000 sample is a
part of the base; ``--seeds N`` draws N samples of each size (random_state 42, 43, ...), to see how much the
parameters move from one sample to the next. The times leave out the models' compilation (a first small fit).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

import rfmseg
from rfmseg.model import rhythm

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "rhythm_sample.json"
END = date(2011, 12, 9)


def compare(full: rhythm.Rhythm, part: rhythm.Rhythm, rfm: Any, as_of: date) -> dict[str, Any]:
    """Largest relative parameter difference and Spearman correlations of ``part`` against ``full``."""
    diffs = {k: abs(part.params[k] / full.params[k] - 1) for k in full.params}
    if full.spend is not None and part.spend is not None:
        diffs.update({f"spend.{k}": abs(part.spend[k] / full.spend[k] - 1) for k in full.spend})
    a, b = full.score(rfm, as_of), part.score(rfm, as_of)
    out: dict[str, Any] = {"max_param_rel_diff": round(max(diffs.values()), 5), "param_rel_diff": diffs}
    for c in rhythm.COLUMNS:
        x, y = a[c].to_numpy(zero_copy_only=False), b[c].to_numpy(zero_copy_only=False)
        ok = np.isfinite(x) & np.isfinite(y)
        out[f"spearman_{c}"] = round(float(spearmanr(x[ok], y[ok]).statistic), 6)
        out[f"max_abs_diff_{c}"] = round(float(np.max(np.abs(x[ok] - y[ok]))), 6)
        out[f"total_rel_diff_{c}"] = round(float(y[ok].sum() / x[ok].sum() - 1), 6)  # the base's sum of each
    return out


def measure(data: Path, sizes: list[int], scale: bool = False, seeds: int = 1) -> dict[str, Any]:
    """The full fit and, per sample size, ``seeds`` seeded samples (random_state 42, 43, ...) against it."""
    if scale:  # a bench/generate.py file, read as bench/bench_scale.py reads it, as of the day after its last
        res = rfmseg.segment(str(data), returns="net", runs_dir=None)
        rfm, as_of = res.rfm, date.fromisoformat(str(res.summary["as_of"])[:10])
    else:
        rfm = rfmseg.segment(str(data), preset="online-retail", as_of=END, runs_dir=None).rfm
        as_of = END
    rhythm.fit_rhythm(rfm.slice(0, 2000), as_of, sample_size=None)  # compiles the models: not in the times
    t0 = time.perf_counter()
    full = rhythm.fit_rhythm(rfm, as_of, sample_size=None)
    result: dict[str, Any] = {
        "data": data.name,
        "as_of": as_of.isoformat(),
        "customers": full.fit["customers"],
        "full": {"params": full.params, "spend": full.spend, "fit_s": round(time.perf_counter() - t0, 2)},
        "samples": [],
    }
    for size in sizes:
        for seed in range(seeds):
            t0 = time.perf_counter()
            part = rhythm.fit_rhythm(rfm, as_of, sample_size=size, random_state=42 + seed)
            entry = {
                "sample_size": size,
                "random_state": 42 + seed,
                "sample": part.fit["sample"],
                "fit_s": round(time.perf_counter() - t0, 2),
            }
            entry.update(params=part.params, spend=part.spend, **compare(full, part, rfm, as_of))
            result["samples"].append(entry)
            print(f"sample {size}: {entry['max_param_rel_diff']:.2%}, {entry['spearman_p_alive']}", file=sys.stderr)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"{r['customers']:,} customers as of {r['as_of']}; full fit in {r['full']['fit_s']:.1f} s.",
        "",
        "| sample size | seed | customers fitted | largest parameter difference | Spearman p_alive | "
        "Spearman expected value | largest p_alive difference | total expected orders, value |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["samples"]:
        worst = sorted(s["param_rel_diff"].items(), key=lambda kv: -kv[1])[:2]
        which = ", ".join(f"{k} {v:.1%}" for k, v in worst)
        lines.append(
            f"| {s['sample_size']:,} | {s['random_state']} | {s['sample']:,} | {s['max_param_rel_diff']:.2%} "
            f"({which}) | {s['spearman_p_alive']:.4f} | {s['spearman_expected_value_90d']:.4f} | "
            f"{s['max_abs_diff_p_alive']:.4f} | {s['total_rel_diff_expected_orders_90d']:+.2%}, "
            f"{s['total_rel_diff_expected_value_90d']:+.2%} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="default: the data set cache (rfmseg datasets path)")
    ap.add_argument("--sizes", default=f"{rhythm.SAMPLE_SIZE},3000,2000")
    ap.add_argument("--scale", type=Path, default=None, help="a bench/generate.py file instead (--returns net)")
    ap.add_argument("--seeds", type=int, default=1, help="samples of each size (random_state 42, 43, ...)")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/rhythm_sample[_<rows>].json")
    a = ap.parse_args()
    try:
        rhythm.clv_library()
    except rhythm.MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    if a.scale is not None:
        out = a.out or OUT.with_name(f"rhythm_sample_{a.scale.stem.removeprefix('tx_')}.json")
        r = measure(a.scale, sizes, scale=True, seeds=a.seeds)
    else:
        if a.data is None:
            from rfmseg.datasets import online_retail_path

            a.data = online_retail_path()
        out = a.out or OUT
        r = measure(a.data, sizes, seeds=a.seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    print(markdown(r))
    print(f"\nwritten {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
