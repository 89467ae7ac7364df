"""Benchmark of ``rfmseg export``: time and peak memory of a run's segment lists at scale.

It writes a registry of synthetic run folders (``--customers`` customers, ``--runs`` weekly runs, a tenth of
the customers changing segment each week; only the files the export reads: assignments.parquet, manifest.json,
summary.json), then runs the export in a subprocess per setting (the latest run to Parquet, CSV and JSON
Lines, and the latest run changed since the first to one file per segment), measuring wall time and the
subprocess's peak RSS. ``--memory-limit`` repeats the Parquet export with DuckDB's memory capped (the
subprocess wraps ``duckdb.connect`` to set ``memory_limit``), to show the sort and the history window spill
to disk instead of growing. Writes ``bench/results/export.json`` with the machine's load average.

    .venv/bin/python bench/bench_export.py                          # 1,000,000 customers, 6 runs
    .venv/bin/python bench/bench_export.py --customers 100000 --runs 3 --memory-limit 150MB
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from rfmseg.model.scoring import ASSIGNMENTS_SCHEMA  # noqa: E402

NAMES = np.array(["Champions", "Loyal Buyers", "At-Risk", "Occasional"])
RUNNER = """
import json, sys, duckdb
from rfmseg.jobs import export as job
limit = sys.argv[2]
if limit:
    connect = duckdb.connect
    def capped(*args, **kwargs):
        con = connect(*args, **kwargs)
        con.execute(f"SET memory_limit = '{limit}'")
        return con
    job.duckdb.connect = capped
r = job.export(sys.argv[1], **json.loads(sys.argv[3]))
print(json.dumps({"rows": r.rows, "files": [f.to_dict() for f in r.files]}))
"""


def write_runs(root: Path, customers: int, runs: int, seed: int) -> list[str]:
    """``runs`` run folders a week apart; returns their ids, oldest first."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, len(NAMES), customers)
    ids = pa.array([f"C{i:08d}" for i in range(customers)])
    summary = {"segments": [{"name": str(n), "action": f"act on {n}", "priority": i + 1} for i, n in enumerate(NAMES)]}
    out = []
    for r in range(runs):
        moves = rng.random(customers) < 0.1
        segment = np.where(moves, rng.integers(0, len(NAMES), customers), segment)
        run_id = f"20240101-0000{r:02d}-000{r:03x}"
        folder = root / run_id
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "customer_id": ids,
                "segment": pa.array(NAMES[segment]),
                "segment_reason": pa.array(["nearest_centroid"] * customers),
                "recency_days": pa.array(rng.integers(0, 400, customers)),
                "frequency": pa.array(rng.integers(1, 50, customers)),
                "monetary": pa.array(rng.random(customers) * 5_000),
                "distance": pa.array(rng.random(customers)),
                "margin": pa.array(rng.random(customers)),
                "model_segment": pa.array(NAMES[segment]),
                "cluster": pa.array(segment.astype("int32")),
                "first_order_date": pa.array([date(2023, 1, 1)] * customers, pa.date32()),
            }
        ).cast(ASSIGNMENTS_SCHEMA)
        pq.write_table(table, folder / "assignments.parquet", compression="zstd")
        manifest = {
            "kind": "refresh",
            "as_of": (date(2024, 1, 7) + timedelta(weeks=r)).isoformat(),
            "created": f"2024-01-01T00:00:{r:02d}+00:00",
            "model_version": "synthetic",
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "summary.json").write_text(json.dumps(summary))
        out.append(run_id)
    return out


def measure(runs_dir: Path, kwargs: dict[str, Any], memory_limit: str = "") -> dict[str, Any]:
    """One export in a subprocess: wall seconds, its own peak RSS (MiB, from wait4) and what it wrote."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(runs_dir), memory_limit, json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"the export failed (exit {proc.returncode})")
    written = json.loads(out)
    return {
        "seconds": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rows": written["rows"],
        "files": len(written["files"]),
        "bytes": sum(Path(f["path"]).stat().st_size for f in written["files"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-limit", default="150MB", help="DuckDB memory_limit of the capped run ('' to skip)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "export.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rfmseg-bench-export-") as tmp:
        root = Path(tmp)
        runs_dir = root / "runs"
        ids = write_runs(runs_dir, args.customers, args.runs, args.seed)
        settings: list[tuple[str, dict[str, Any], str]] = [
            ("parquet", {"out": str(root / "all.parquet")}, ""),
            ("csv", {"out": str(root / "all.csv")}, ""),
            ("jsonl", {"out": str(root / "all.jsonl")}, ""),
            ("changed, per segment", {"out_dir": str(root / "lists"), "changed_since": ids[0]}, ""),
        ]
        if args.memory_limit:
            settings.append((f"parquet, DuckDB capped at {args.memory_limit}", settings[0][1], args.memory_limit))
        results = []
        load = [os.getloadavg()[0]]
        for name, kwargs, limit in settings:
            r = {"setting": name, **measure(runs_dir, kwargs, limit)}
            results.append(r)
            print(
                f"{name:40} {r['seconds']:7.2f} s  peak {r['peak_rss_mib']} MiB  {r['rows']:,} rows  {r['bytes']:,} B"
            )
        load.append(os.getloadavg()[0])
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_start_end": load,
        "customers": args.customers,
        "runs": args.runs,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"load average {load[0]:.2f} -> {load[1]:.2f}; written to {args.output}")


if __name__ == "__main__":
    main()
