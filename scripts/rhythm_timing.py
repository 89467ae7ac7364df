"""What ``--rhythm`` adds to ``rfmseg run`` on UCI Online Retail (docs/rhythm.md, "Sample and cost").

    .venv/bin/python scripts/rhythm_timing.py [--data PATH] [--repeat 3] [--out FILE.json]

Needs the clv extra. One warm-up run with ``--rhythm`` first (pytensor compiles its C code once per machine
and caches it), then ``rfmseg run FILE --preset online-retail`` without and with ``--rhythm``, alternately,
``--repeat`` times each, every run a fresh process (what a user's command costs, the library's import
included). Reports the median wall time of each, their difference, and the median of the run's own
``rhythm`` stage (manifest timings: the import, the fit of the modified BG/NBD and of Gamma-Gamma).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "rhythm_timing.json"
RFMSEG = str(Path(sys.executable).with_name("rfmseg"))


def one_run(data: Path, rhythm: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [RFMSEG, "run", str(data), "--preset", "online-retail", "--runs-dir", tmp, "--json"]
        if rhythm:
            cmd.append("--rhythm")
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        run_dir = json.loads(done.stdout)["run_dir"]
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    timings = manifest["timings"]
    return {"wall_s": round(wall, 2), "rhythm_s": timings.get("rhythm"), "fit": manifest["rhythm"].get("fit")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="default: the data set cache (rfmseg datasets path)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    if a.data is None:
        from rfmseg.datasets import online_retail_path

        a.data = online_retail_path()
    warm = one_run(a.data, True)
    print(f"warm-up with --rhythm: {warm['wall_s']} s", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for i in range(a.repeat):
        for key in ("without", "with"):
            runs[key].append(one_run(a.data, key == "with"))
            print(f"{i + 1} {key}: {runs[key][-1]['wall_s']} s", file=sys.stderr)
    without = statistics.median(r["wall_s"] for r in runs["without"])
    with_ = statistics.median(r["wall_s"] for r in runs["with"])
    stage = statistics.median(float(r["rhythm_s"]) for r in runs["with"])
    result = {
        "data": a.data.name,
        "repeat": a.repeat,
        "median_wall_s": {"without": without, "with": with_, "added": round(with_ - without, 2)},
        "median_rhythm_stage_s": round(stage, 2),
        "warm_up": warm,
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("median_wall_s", "median_rhythm_stage_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
