"""Benchmark of reading transactions from PostgreSQL (``[source] type = "postgres"``): rows per second.

It loads a table of order lines (customer_id and order_id text, order_date timestamp, amount numeric, the
shape a shop's order table has) into the database, reads it with ``rfmseg.io.postgres.PostgresSource``
several times, prints each time and writes ``bench/results/postgres_source.json`` with the machine; the
table is dropped at the end. The server runs on the same machine, so its own work (writing the rows out)
is in the figure.

    .venv/bin/python bench/bench_postgres_source.py                      # 2,000,000 rows, best of 3
    .venv/bin/python bench/bench_postgres_source.py --rows 1e6 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
try:
    from rfmseg.io.postgres import PostgresSource
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
    from rfmseg.io.postgres import PostgresSource

DEFAULT_URL = os.environ.get("RFMSEG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def load_table(url: str, name: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} AS SELECT 'C' || (i % {max(rows // 10, 1)}) AS customer_id, 'INV' || (i / 3) "
            "AS order_id, TIMESTAMP '2024-01-01' + (i % 700) * INTERVAL '1 day' + (i % 86400) * INTERVAL '1 second' "
            "AS order_date, round(((i::bigint * 7919) % 100000) / 100.0, 2)::numeric(12, 2) AS amount "
            f"FROM generate_series(1, {rows}) AS i"
        )
        conn.execute(f"VACUUM ANALYZE {name}")


def machine() -> dict[str, Any]:
    with psycopg.connect(DEFAULT_URL) as conn:
        server = str(conn.execute("SHOW server_version").fetchone()[0])
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "psycopg": psycopg.__version__,
        "postgresql": server,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="2e6", help="rows of the table (default 2e6)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--url", default=DEFAULT_URL)
    args = p.parse_args(argv)
    rows = int(float(args.rows))
    name = f"rfmseg_bench_source_{uuid.uuid4().hex[:8]}"
    about = machine()
    query = f"SELECT customer_id, order_id, order_date, amount FROM {name}"
    load_table(args.url, name, rows)
    try:
        times: list[float] = []
        for n in range(args.repeats):
            source = PostgresSource(args.url, query)
            started = time.perf_counter()
            table = source.read_arrow()
            times.append(time.perf_counter() - started)
            assert table.num_rows == rows, (table.num_rows, rows)
            print(f"read {n + 1}/{args.repeats}: {times[-1]:.2f} s, {rows / times[-1]:,.0f} rows/s", flush=True)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
    best = min(times)
    result = {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bench/bench_postgres_source.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
        "columns": table.schema.names,
        "types": [str(t) for t in table.schema.types],
        "seconds": [round(t, 3) for t in times],
        "best_seconds": round(best, 3),
        "rows_per_second": round(rows / best),
        "stats": source.stats,
        "machine": about,
    }
    out = REPO / "bench" / "results" / "postgres_source.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"best {best:.2f} s: {rows / best:,.0f} rows/s ({rows:,} rows, {len(table.schema)} columns) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
