"""The rhythm model fitted on a seeded sample against the fit on every customer, on UCI Online Retail
(docs/rhythm.md, "Sample and cost").

    .venv/bin/python scripts/rhythm_sample_check.py [--data PATH] [--sizes 50000,3000,2000] [--out FILE.json]

Needs the clv extra. The RFM as of the file's last day (2011-12-09) comes out of the real pipeline
(``--preset online-retail``); the modified BG/NBD and Gamma-Gamma are fitted by MAP on every customer
(``sample_size=None``), then on a seeded sample of each size (the run's default, 50,000, is larger than
Online Retail's customers: that sample is all of them). For each sample: the largest relative difference of
a parameter from the full fit's, and the Spearman correlation of every customer's p_alive (and expected
value) scored by the two fits. Prints a markdown table and writes the JSON.
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


def compare(full: rhythm.Rhythm, part: rhythm.Rhythm, rfm: Any) -> dict[str, Any]:
    """Largest relative parameter difference and Spearman correlations of ``part`` against ``full``."""
    diffs = {k: abs(part.params[k] / full.params[k] - 1) for k in full.params}
    if full.spend is not None and part.spend is not None:
        diffs.update({f"spend.{k}": abs(part.spend[k] / full.spend[k] - 1) for k in full.spend})
    a, b = full.score(rfm, END), part.score(rfm, END)
    out: dict[str, Any] = {"max_param_rel_diff": round(max(diffs.values()), 5), "param_rel_diff": diffs}
    for c in rhythm.COLUMNS:
        x, y = a[c].to_numpy(zero_copy_only=False), b[c].to_numpy(zero_copy_only=False)
        ok = np.isfinite(x) & np.isfinite(y)
        out[f"spearman_{c}"] = round(float(spearmanr(x[ok], y[ok]).statistic), 6)
    return out


def measure(data: Path, sizes: list[int]) -> dict[str, Any]:
    rfm = rfmseg.segment(str(data), preset="online-retail", as_of=END, runs_dir=None).rfm
    t0 = time.perf_counter()
    full = rhythm.fit_rhythm(rfm, END, sample_size=None)
    result: dict[str, Any] = {
        "data": data.name,
        "as_of": END.isoformat(),
        "customers": full.fit["customers"],
        "full": {"params": full.params, "spend": full.spend, "fit_s": round(time.perf_counter() - t0, 2)},
        "samples": [],
    }
    for size in sizes:
        t0 = time.perf_counter()
        part = rhythm.fit_rhythm(rfm, END, sample_size=size)
        entry = {"sample_size": size, "sample": part.fit["sample"], "fit_s": round(time.perf_counter() - t0, 2)}
        entry.update(params=part.params, spend=part.spend, **compare(full, part, rfm))
        result["samples"].append(entry)
        print(f"sample {size}: {entry['max_param_rel_diff']:.2%}, {entry['spearman_p_alive']}", file=sys.stderr)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"{r['customers']:,} customers as of {r['as_of']}; full fit in {r['full']['fit_s']:.1f} s.",
        "",
        "| sample size | customers fitted | largest parameter difference | Spearman p_alive | Spearman expected value |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in r["samples"]:
        lines.append(
            f"| {s['sample_size']:,} | {s['sample']:,} | {s['max_param_rel_diff']:.2%} | "
            f"{s['spearman_p_alive']:.4f} | {s['spearman_expected_value_90d']:.4f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="default: the data set cache (rfmseg datasets path)")
    ap.add_argument("--sizes", default=f"{rhythm.SAMPLE_SIZE},3000,2000")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    try:
        rhythm.clv_library()
    except rhythm.MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.data is None:
        from rfmseg.datasets import online_retail_path

        a.data = online_retail_path()
    r = measure(a.data, [int(s) for s in a.sizes.split(",") if s.strip()])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    print(markdown(r))
    print(f"\nwritten {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
