"""Benchmark of the stores' hand-written wire encoders against the drivers' own, side by side in one run.

The same rows (the ROW_SCHEMA table a publish with history writes: synthetic customers published twice, a
quarter changing segment) are encoded and loaded into real PostgreSQL and Redis by:

* ``pg-ours``: ``rfmseg.stores.wire.pgcopy_tuples`` (Arrow/NumPy) streamed by COPY (FORMAT binary);
* ``pg-psycopg-text``: psycopg 3 ``Copy.write_row`` per row (text format, psycopg's C dumpers);
* ``pg-psycopg-binary``: the same with ``FORMAT binary`` and ``Copy.set_types``;
* ``redis-ours``: ``rfmseg.stores.wire.hset_commands`` (Arrow) streamed on one connection;
* ``redis-py``: redis-py pipelines of ``hset(key, mapping=...)``, 1,000 fields per HSET, executed every
  50,000 rows (the packer is hiredis's when hiredis is installed; the JSON says which was used).

Per method, medians of 3: ``encode`` (rows to wire bytes, nothing sent: psycopg's Copy with a FileWriter into
a null sink, redis-py's ``Connection.pack_commands``) and ``load`` (what a publish spends on the rows: for
PostgreSQL CREATE TABLE + COPY + COMMIT in one transaction, FREEZE as the store does; for Redis every HSET of a
fresh hash and its replies). Each method runs in a subprocess of its own, which reports the peak RSS of each
phase above the RSS before it (Linux: the peak is reset through /proc/self/clear_refs). For scale, today's
whole ``store.publish()`` of the same rows is timed too.
Writes ``bench/results/store_encoders.json``.

    .venv/bin/python bench/bench_store_encoders.py                        # 1,000,000 and 100,000 customers
    .venv/bin/python bench/bench_store_encoders.py --customers 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_store import DEFAULT_URLS, machine, make_assignments, server_version  # noqa: E402

try:
    from rfmseg.stores import open_store
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
    from rfmseg.stores import open_store
from rfmseg.stores.rows import apply_history, empty_state, prepare_assignments  # noqa: E402
from rfmseg.stores.wire import PGCOPY_HEADER, PGCOPY_TRAILER, hset_commands, packed_profiles, pgcopy_tuples  # noqa: E402

METHODS = ("pg-ours", "pg-psycopg-text", "pg-psycopg-binary", "redis-ours", "redis-py")
BASELINES = {"pg-ours": "pg-psycopg-binary", "redis-ours": "redis-py"}
PG_TYPES = ["text", "text", "text", "date", "int8", "int8", "float8", "float8"]
COPY_BATCH_ROWS = 100_000  # as the PostgreSQL store
FIELDS_PER_HSET = 1_000  # as the Redis store
WRITE_BATCH_ROWS = 50_000
AS_OF = dt.date(2025, 1, 31)


def store_rows(customers: int) -> pa.Table:
    """The rows a second publish writes: history carried from a first publish, a quarter of them moved."""
    first = make_assignments(customers, seed=0)
    second = make_assignments(customers, seed=1, previous=first)
    served, _, _ = apply_history(prepare_assignments(first), empty_state(), AS_OF - dt.timedelta(days=31))
    rows, _, _ = apply_history(prepare_assignments(second), served.select(empty_state().column_names), AS_OF)
    return rows


class NullSink(io.RawIOBase):
    """Counts the bytes written to it, keeps none."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


# --- PostgreSQL -------------------------------------------------------------------------------------------


def pg_create(cur: Any, table: str) -> None:
    from psycopg import sql

    cur.execute(
        sql.SQL(
            'CREATE TABLE {} (customer_id text COLLATE "C" NOT NULL, segment text NOT NULL, previous_segment text, '
            "segment_since date NOT NULL, recency_days bigint NOT NULL, frequency bigint NOT NULL, "
            "monetary double precision NOT NULL, distance double precision NOT NULL)"
        ).format(sql.Identifier(table))
    )


def pg_fill(copy: Any, rows: pa.Table, method: str) -> None:
    """Write every row to ``copy`` the way ``method`` does."""
    if method == "pg-ours":
        copy.write(PGCOPY_HEADER)
        for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
            copy.write(pgcopy_tuples(batch))
        copy.write(PGCOPY_TRAILER)
        return
    if method == "pg-psycopg-binary":
        copy.set_types(PG_TYPES)
    for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            copy.write_row(row)


def pg_encode(conn: Any, rows: pa.Table, method: str) -> int:
    from psycopg.copy import Copy, FileWriter

    sink = NullSink()
    with Copy(conn.cursor(), binary=method != "pg-psycopg-text", writer=FileWriter(sink)) as copy:
        pg_fill(copy, rows, method)
    return sink.size


def pg_load(url: str, rows: pa.Table, method: str) -> int:
    import psycopg
    from psycopg import sql
    from psycopg.copy import QueuedLibpqWriter

    table = f"bench_wire_{uuid.uuid4().hex[:8]}"
    columns = sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
    form = "FORMAT text" if method == "pg-psycopg-text" else "FORMAT binary"
    query = sql.SQL("COPY {} ({}) FROM STDIN ({}, FREEZE true)").format(sql.Identifier(table), columns, sql.SQL(form))
    with psycopg.connect(url) as conn:
        try:
            with conn.transaction():
                cur = conn.cursor()
                pg_create(cur, table)
                with cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
                    pg_fill(copy, rows, method)
            stored = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            conn.commit()
    return int(stored)


# --- Redis ------------------------------------------------------------------------------------------------


def redis_py_commands(key: str, batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    """The HSETs of ``batch`` as redis-py arguments (what ``pipe.hset(key, mapping=...)`` queues)."""
    ids = batch["customer_id"].to_pylist()
    values = packed_profiles(batch).to_pylist()
    commands = []
    for start in range(0, len(ids), FIELDS_PER_HSET):
        mapping = dict(zip(ids[start : start + FIELDS_PER_HSET], values[start : start + FIELDS_PER_HSET], strict=True))
        items: list[Any] = []
        for pair in mapping.items():
            items.extend(pair)
        commands.append(("HSET", key, *items))
    return commands


def redis_encode(client: Any, rows: pa.Table, method: str) -> int:
    key, size = "bench:wire:encode", 0
    conn = client.connection
    for batch in rows.to_batches(max_chunksize=WRITE_BATCH_ROWS):
        if method == "redis-ours":
            size += len(hset_commands(key, batch, FIELDS_PER_HSET)[0])
        else:
            size += sum(len(chunk) for chunk in conn.pack_commands(redis_py_commands(key, batch)))
    return size


def redis_load(client: Any, rows: pa.Table, method: str) -> int:
    key = f"bench:wire:{uuid.uuid4().hex[:8]}"
    added = 0
    try:
        if method == "redis-ours":  # the store's loop: send a batch, then read the previous batch's replies
            conn, pending = client.connection, 0
            for batch in rows.to_batches(max_chunksize=WRITE_BATCH_ROWS):
                data, count = hset_commands(key, batch, FIELDS_PER_HSET)
                conn.send_packed_command([data], check_health=False)
                added += sum(int(conn.read_response()) for _ in range(pending))
                pending = count
            added += sum(int(conn.read_response()) for _ in range(pending))
        else:
            with client.pipeline(transaction=False) as pipe:
                for batch in rows.to_batches(max_chunksize=WRITE_BATCH_ROWS):
                    ids = batch["customer_id"].to_pylist()
                    values = packed_profiles(batch).to_pylist()
                    for start in range(0, len(ids), FIELDS_PER_HSET):
                        chunk = slice(start, start + FIELDS_PER_HSET)
                        pipe.hset(key, mapping=dict(zip(ids[chunk], values[chunk], strict=True)))
                    added += sum(pipe.execute())
        if added != rows.num_rows or client.hlen(key) != rows.num_rows:
            raise RuntimeError(f"{method} stored {added} of {rows.num_rows} fields")
    finally:
        client.unlink(key)
    return added


# --- one method, in its own process ---------------------------------------------------------------------


def memory_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of this process, from /proc/self/status (0 where there is none)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return next((int(line.split()[1]) for line in lines if line.startswith(f"{field}:")), 0)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any, int | None]:
    """(seconds of each call, the last result, peak RSS above the RSS before the calls in MiB, or None
    where Linux's peak reset (/proc/self/clear_refs) is not available)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = memory_kib("VmRSS")
    except OSError:
        before = None
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        seconds.append(round(time.perf_counter() - started, 3))
    peak = None if before is None else round((memory_kib("VmHWM") - before) / 1024)
    return seconds, result, peak


def run_method(method: str, customers: int, repeat: int, pg_url: str, redis_url: str) -> dict[str, Any]:
    rows = store_rows(customers)
    result: dict[str, Any] = {"method": method, "customers": customers}
    if method.startswith("pg-"):
        import psycopg

        with psycopg.connect(pg_url) as conn:
            encode_s, size, encode_peak = timed(lambda: pg_encode(conn, rows, method), repeat)
        load_s, stored, load_peak = timed(lambda: pg_load(pg_url, rows, method), repeat)
        result["driver"] = f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})"
    else:
        import redis

        client = redis.Redis.from_url(redis_url, single_connection_client=True)
        client.ping()
        encode_s, size, encode_peak = timed(lambda: redis_encode(client, rows, method), repeat)
        load_s, stored, load_peak = timed(lambda: redis_load(client, rows, method), repeat)
        conn = client.connection
        result["driver"] = (
            f"redis-py {redis.__version__}, packer {type(conn._command_packer).__name__}, "
            f"parser {type(conn._parser).__name__}"
        )
        client.close()
    result.update(
        encode_s=encode_s,
        encode_median_s=statistics.median(encode_s),
        wire_bytes=size,
        load_s=load_s,
        load_median_s=statistics.median(load_s),
        rows_loaded=stored,
        encode_peak_mib=encode_peak,
        load_peak_mib=load_peak,
    )
    return result


def publish_time(backend: str, url: str, customers: int, repeat: int) -> list[float]:
    """Today's whole ``store.publish()`` of the same customers (second publish, with history), for scale."""
    first = make_assignments(customers, seed=0)
    second = make_assignments(customers, seed=1, previous=first)
    seconds = []
    with open_store(url, namespace=f"bench_{uuid.uuid4().hex[:8]}") as store:
        try:
            for k in range(repeat):
                store.publish(first, f"first-{k}", AS_OF - dt.timedelta(days=31), "bench")
                started = time.perf_counter()
                store.publish(second, f"second-{k}", AS_OF, "bench")
                seconds.append(round(time.perf_counter() - started, 3))
        finally:
            store.drop()
    return seconds


def in_subprocess(method: str, customers: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", method, "--customers", str(customers), "--repeat", str(args.repeat)]
    command += ["--postgres-url", args.postgres_url, "--redis-url", args.redis_url]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", default="1000000,100000", help="comma-separated sizes")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=DEFAULT_URLS["postgres"])
    parser.add_argument("--redis-url", default=DEFAULT_URLS["redis"])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "store_encoders.json")
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(float(v)) for v in args.customers.split(",") if v.strip()]
    if args.one:
        print(json.dumps(run_method(args.one, sizes[0], args.repeat, args.postgres_url, args.redis_url)))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    info = machine()
    print(f"{info['nproc']} cores, load {info['loadavg_at_start']}; medians of {args.repeat}", flush=True)
    results: list[dict[str, Any]] = []
    publishes: list[dict[str, Any]] = []
    for customers in sizes:
        for method in methods:
            r = in_subprocess(method, customers, args)
            results.append(r)
            print(
                f"  {customers:>9,} {method:<18} encode {r['encode_median_s']:7.3f} s  load {r['load_median_s']:7.3f} s"
                f"  peak +{r['encode_peak_mib']} / +{r['load_peak_mib']} MiB  ({r['driver']})",
                flush=True,
            )
        for backend, url in (("postgres", args.postgres_url), ("redis", args.redis_url)):
            if any(m.startswith("pg-" if backend == "postgres" else "redis-") for m in methods):
                seconds = publish_time(backend, url, customers, args.repeat)
                publishes.append({"backend": backend, "customers": customers, "publish_s": seconds})
                print(f"  {customers:>9,} {backend} store.publish() today: median {statistics.median(seconds):.3f} s")
    ratios = []
    by_key = {(r["customers"], r["method"]): r for r in results}
    print(f"\n{'customers':>9} {'ours':<11} {'library':<18} {'encode x':>9} {'load x':>7}")
    for (customers, method), ours in by_key.items():
        library = by_key.get((customers, BASELINES.get(method, "")))
        if library is None:
            continue
        ratio = {
            "customers": customers,
            "ours": method,
            "library": library["method"],
            "encode_speedup": round(library["encode_median_s"] / ours["encode_median_s"], 2),
            "load_speedup": round(library["load_median_s"] / ours["load_median_s"], 2),
        }
        ratios.append(ratio)
        print(
            f"{customers:>9,} {method:<11} {library['method']:<18} {ratio['encode_speedup']:>8.2f}x "
            f"{ratio['load_speedup']:>6.2f}x"
        )
    report = {
        "benchmark": "store wire encoders",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_store_encoders.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "repeat": args.repeat,
        "machine": {**info, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "servers": {
            "postgres": server_version("postgres", args.postgres_url),
            "redis": server_version("redis", args.redis_url),
        },
        "results": results,
        "speedups_vs_library": ratios,
        "store_publish_today": publishes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
