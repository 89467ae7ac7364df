"""What ``--rhythm`` adds to ``rfmseg run`` (docs/rhythm.md, "Sample and cost"): on UCI Online Retail, and on
the bench's 100M order lines (9.6M customers).

    .venv/bin/python scripts/rhythm_timing.py [--data PATH] [--repeat 3] [--out FILE.json]
    .venv/bin/python scripts/rhythm_timing.py --scale bench/data/tx_100M.parquet [--repeat 3]

Needs the clv extra. One warm-up run with ``--rhythm`` first (pytensor compiles its C code once per machine
and caches it; the data file gets into the page cache), then ``rfmseg run FILE`` without and with
``--rhythm``, alternately, ``--repeat`` times each, every run a fresh process (what a user's command costs,
the library's import included). Online Retail runs with ``--preset online-retail`` (writes
bench/results/rhythm_timing.json); ``--scale`` runs a file of bench/generate.py with ``--returns net`` as
bench/bench_scale.py does (writes bench/results/rhythm_timing_<rows>.json). Reports the median wall time of
each, their difference, the peak resident memory of each run, the run's own stage times (manifest timings:
``rhythm`` is the import wait and the two fits; ``assign`` scores every customer) and the load average
before each run: the machine may be shared, so compare the two sides of one set, not figures of two days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RFMSEG = str(Path(sys.executable).with_name("rfmseg"))


def one_run(data: Path, options: list[str], rhythm: bool) -> dict[str, Any]:
    """One ``rfmseg run`` in a fresh process: wall time, peak RSS (the process's own rusage), the manifest's
    stage times."""
    load = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [RFMSEG, "run", str(data), *options, "--runs-dir", tmp, "--json"]
        if rhythm:
            cmd.append("--rhythm")
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out.open("w") as fo, err.open("w") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read_text().strip()}")
        run_dir = json.loads(out.read_text())["run_dir"]
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    return {
        "wall_s": round(wall, 2),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "load_before": load,
        "stages": manifest["timings"],
        "fit": manifest["rhythm"].get("fit"),
    }


def measure(data: Path, options: list[str], repeat: int) -> dict[str, Any]:
    warm = one_run(data, options, True)
    print(f"warm-up with --rhythm: {warm['wall_s']} s", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for i in range(repeat):
        for key in ("without", "with"):
            runs[key].append(one_run(data, options, key == "with"))
            r = runs[key][-1]
            print(f"{i + 1} {key}: {r['wall_s']} s, {r['peak_rss_gib']} GiB, load {r['load_before']}", file=sys.stderr)
    without = statistics.median(r["wall_s"] for r in runs["without"])
    with_ = statistics.median(r["wall_s"] for r in runs["with"])
    stages = sorted({s for r in runs["with"] for s in r["stages"]}, key=list(runs["with"][0]["stages"]).index)
    median_stages = {
        key: {s: round(statistics.median(float(r["stages"].get(s) or 0.0) for r in runs[key]), 2) for s in stages}
        for key in runs
    }
    loads = [r["load_before"] for key in runs for r in runs[key]]
    return {
        "data": data.name,
        "options": options,
        "repeat": repeat,
        "median_wall_s": {"without": without, "with": with_, "added": round(with_ - without, 2)},
        "median_rhythm_stage_s": median_stages["with"].get("rhythm"),
        "median_stages_s": median_stages,
        "median_peak_rss_gib": {key: statistics.median(r["peak_rss_gib"] for r in runs[key]) for key in runs},
        "load_average": {"min": min(loads), "max": max(loads)},
        "warm_up": warm,
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="Online Retail; default: the data set cache")
    ap.add_argument("--scale", type=Path, default=None, help="a bench/generate.py file instead (--returns net)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.scale is not None:
        data, options = a.scale, ["--returns", "net"]
        out = a.out or RESULTS / f"rhythm_timing_{a.scale.stem.removeprefix('tx_')}.json"
    else:
        if a.data is None:
            from rfmseg.datasets import online_retail_path

            a.data = online_retail_path()
        data, options = a.data, ["--preset", "online-retail"]
        out = a.out or RESULTS / "rhythm_timing.json"
    result = measure(data, options, a.repeat)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    keys = ("median_wall_s", "median_rhythm_stage_s", "median_peak_rss_gib", "load_average")
    print(json.dumps({k: result[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
