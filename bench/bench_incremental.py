"""Benchmark: a full refresh against an incremental one (``rfmseg refresh --since-last``), side by side, on the
same history plus one day of new lines (issue 16).

The bench data (bench/generate.py: two years of order lines in date order) is cut at its last two days: the
*base* (everything before the day before the last), the *previous day* and the *new day* (the last one,
about 1/730 of the lines: 140k of 100M). Then, in this one process and on the same model:

1. ``rfmseg run`` on the base trains the model;
2. ``refresh --since-last PREVIOUS_DAY`` builds the first RFM state: the trained run keeps none, so this is a
   full recompute over base + previous day (timed, reported as the bootstrap);
3. **incremental**: ``refresh --since-last NEW_DAY``, merged into that state, scored and published;
4. **full**: ``rfmseg refresh WHOLE_FILE`` in a registry of its own holding the same trained run, scored and
   published (the whole history read again);

and checks that both give every customer the same R, F, M and label. Each job publishes to the default
store (SQLite in its registry). Writes bench/results/incremental_<rows>.json.

    .venv/bin/python bench/bench_incremental.py                # 2M lines (about a minute here)
    .venv/bin/python bench/bench_incremental.py --rows 1e8     # the issue's size (generates 100M lines first)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))
from generate import default_path, label  # noqa: E402

RETURNS = "upper(order_id) LIKE 'C%'"
COLUMNS = ["customer_id", "recency_days", "frequency", "monetary", "segment"]


def _cut(whole: Path, work: Path) -> tuple[Path, Path, Path, str]:
    """base, previous day and new day files of ``whole`` (in its row order), and the new day's date."""
    last = duckdb.sql(f"SELECT CAST(max(order_date) AS DATE) FROM read_parquet('{whole}')").fetchall()[0]
    assert last is not None
    day = last[0]
    files = []
    for name, where in (
        ("base", f"CAST(order_date AS DATE) < DATE '{day}' - 1"),
        ("previous_day", f"CAST(order_date AS DATE) = DATE '{day}' - 1"),
        ("new_day", f"CAST(order_date AS DATE) = DATE '{day}'"),
    ):
        path = work / f"{name}.parquet"
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{whole}') WHERE {where}) TO '{path}' (FORMAT parquet)")
        files.append(path)
    return files[0], files[1], files[2], str(day)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _job(result: Any, seconds: float) -> dict[str, Any]:
    m = result.manifest
    publish = result.publish or {}
    published = float(publish.get("seconds") or 0.0)
    return {
        "seconds": round(seconds, 3),
        "before_publish_s": round(seconds - published, 3),
        "publish_s": round(published, 3),
        "timings": m.get("timings"),
        "rows_read": m["rows"]["read"],
        "customers": m["customers"],
        "state": {k: m["state"][k] for k in ("mode", "note", "built_on")} if m.get("state") else None,
        "publish": publish,
    }


def bench(rows: int, work: Path, k: int) -> dict[str, Any]:
    from rfmseg import jobs as life
    from rfmseg.io import Policy

    whole = default_path(rows)
    if not whole.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "generate.py"), "--rows", str(rows)], check=True)
    base, previous, new, day = _cut(whole, work)
    policy = Policy(bad_rows="quarantine", returns_condition=RETURNS)
    inc, full = work / "incremental", work / "full"
    trained, t_train = _timed(life.segment, base, runs_dir=inc, policy=policy, k=k)
    shutil.copytree(trained.run.path, full / trained.run_id)
    boot, t_boot = _timed(life.refresh_since_last, previous, runs_dir=inc, policy=policy)
    incremental, t_inc = _timed(life.refresh_since_last, new, runs_dir=inc, policy=policy)
    refreshed, t_full = _timed(life.refresh, whole, runs_dir=full, policy=policy)
    a = pq.read_table(incremental.run.path / "assignments.parquet", columns=COLUMNS).sort_by("customer_id")
    b = pq.read_table(refreshed.run.path / "assignments.parquet", columns=COLUMNS).sort_by("customer_id")
    return {
        "rows": rows,
        "new_day": day,
        "new_day_rows": pq.read_metadata(new).num_rows,
        "identical": a.equals(b),
        "train_s": round(t_train, 3),
        "bootstrap": _job(boot, t_boot),
        "incremental": _job(incremental, t_inc),
        "full": _job(refreshed, t_full),
        "ratio": round(t_inc / t_full, 3),
        "ratio_before_publish": round(
            (t_inc - float((incremental.publish or {}).get("seconds") or 0))
            / (t_full - float((refreshed.publish or {}).get("seconds") or 0)),
            3,
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="2e6", help="lines of bench data (2e6 default; 1e8 for the issue's size)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    rows = int(float(args.rows))
    work = args.work or Path(tempfile.mkdtemp(prefix="rfmseg-bench-incremental-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = bench(rows, work, args.k)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["machine"] = {"nproc": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__}
    out["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"incremental_{label(rows)}.json"
    target.write_text(json.dumps(out, indent=1, default=str) + "\n")
    inc, full = out["incremental"], out["full"]
    print(
        f"{label(rows)} lines, new day {out['new_day']} ({out['new_day_rows']:,} lines), "
        f"{inc['customers']:,} customers\n"
        f"  full refresh        {full['seconds']:8.2f} s  ({full['before_publish_s']:.2f} s + publish "
        f"{full['publish_s']:.2f} s; {full['rows_read']:,} lines read)\n"
        f"  incremental refresh {inc['seconds']:8.2f} s  ({inc['before_publish_s']:.2f} s + publish "
        f"{inc['publish_s']:.2f} s; {inc['rows_read']:,} lines read, {inc['state']['mode']})\n"
        f"  ratio {out['ratio']:.3f} (before publishing {out['ratio_before_publish']:.3f})  identical: "
        f"{out['identical']}  (bootstrap of the state: "
        f"{out['bootstrap']['seconds']:.2f} s)\n  -> {target.relative_to(REPO)}"
    )
    return 0 if out["identical"] and inc["state"]["mode"] == "incremental" else 1


if __name__ == "__main__":
    sys.exit(main())
