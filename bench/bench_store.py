"""Benchmark of the online profile stores: publish throughput and lookup latency per backend.

For each backend it publishes synthetic assignments three times into a fresh namespace (the first into
an empty store, the next two carrying segment history forward, with a quarter of the customers moving),
then (after a few seconds for the servers' background work to settle) times random single-id lookups and
batch lookups, prints a table and writes ``bench/results/store.json`` with the machine it ran on and the
CPU seconds each publish cost the client and the local server. The namespace is dropped at the end.

Each publish also appends its changes to the store's change feed (the first publish: every customer, as
new; the next ones: the quarter that moved); after the publishes the whole feed is read back in pages of
10,000 and timed. ``--baseline-src`` runs the same benchmark again in a subprocess with another checkout's
``src`` first on the path (e.g. the commit before the feed) and prints the publish times side by side: the
cost of the feed.

    .venv/bin/python bench/bench_store.py                                  # 1M customers, all backends
    .venv/bin/python bench/bench_store.py --customers 100000 --backends sqlite,redis
    git archive <commit-before-the-feed> src | tar -x -C /tmp/base          # then:
    .venv/bin/python bench/bench_store.py --baseline-src /tmp/base/src --lookups 2000 --batches 20

Targets (reported, not asserted): publish >= 200,000 profiles/s on PostgreSQL and Redis; single-id lookup
p99 < 1 ms on Redis and SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
try:
    import rfmseg
    from rfmseg.stores import ProfileStore, open_store
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
    import rfmseg
    from rfmseg.stores import ProfileStore, open_store

SEGMENTS = np.array(["Champions", "Loyal", "Potential loyalists", "New", "At risk", "Hibernating"])
SEGMENT_WEIGHTS = np.array([0.08, 0.17, 0.2, 0.12, 0.18, 0.25])
PUBLISH_TARGET = 200_000  # profiles/s, PostgreSQL and Redis
LOOKUP_P99_TARGET_MS = 1.0  # single id, Redis and SQLite
DEFAULT_URLS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "redis": "redis://127.0.0.1:6379/0",
}


def make_assignments(n: int, seed: int, previous: pa.Table | None = None, moved: float = 0.25) -> pa.Table:
    """``n`` synthetic customers; with ``previous``, the same customers with ``moved`` of them re-segmented."""
    rng = np.random.default_rng(seed)
    if previous is None:
        ids = pc.binary_join_element_wise("C", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 9, "0"), "")
        segments = pa.array(rng.choice(SEGMENTS, size=n, p=SEGMENT_WEIGHTS))
    else:
        ids = previous["customer_id"]
        move = rng.random(n) < moved
        fresh = rng.choice(SEGMENTS, size=n, p=SEGMENT_WEIGHTS)
        segments = pc.if_else(pa.array(move), pa.array(fresh), previous["segment"])
    return pa.table(
        {
            "customer_id": ids,
            "segment": segments,
            "recency_days": rng.integers(0, 730, n),
            "frequency": rng.geometric(0.35, n).astype(np.int64),
            "monetary": np.round(rng.lognormal(4.5, 1.1, n), 2),
            "distance": rng.random(n) * 2.5,
        }
    )


SERVER_PROCESSES = {"postgres": "postgres", "redis": "redis-server"}


def server_cpu_s(backend: str) -> float | None:
    """CPU seconds used so far by the local server of ``backend`` (None without psutil or a local server).

    For PostgreSQL the postmaster's reaped children count too, so a backend that exited (the publish's
    connection) is not lost.
    """
    name = SERVER_PROCESSES.get(backend)
    try:
        import psutil
    except ImportError:
        return None
    if name is None:
        return None
    total, found = 0.0, False
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != name:
            continue
        try:
            times = proc.cpu_times()
            total += times.user + times.system
            if backend == "postgres" and proc.parent() is not None and proc.parent().name() != name:
                total += times.children_user + times.children_system  # the postmaster
        except psutil.Error:
            continue
        found = True
    return total if found else None


def percentile_ms(samples_ns: list[int], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples_ns), q)) / 1e6, 4)


def round_trip(backend: str, url: str, count: int) -> dict[str, float] | None:
    """p50/p99 of the driver's bare round trip (Redis PING, PostgreSQL SELECT 1): the floor under a lookup,
    which on a busy machine is mostly scheduling delay."""
    samples: list[int] = []
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        call = client.ping
    elif backend == "postgres":
        import psycopg

        client = psycopg.connect(url, autocommit=True)

        def call() -> None:
            client.execute("SELECT 1").fetchone()
    else:
        return None
    try:
        for _ in range(200):
            call()
        for _ in range(count):
            started = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - started)
    finally:
        client.close()
    return {"p50_ms": percentile_ms(samples, 50), "p99_ms": percentile_ms(samples, 99)}


def time_lookups(store: ProfileStore, n: int, singles: int, batches: int, batch_size: int) -> dict[str, Any]:
    rng = random.Random(42)
    single_ids = [f"C{rng.randrange(n):09d}" for _ in range(singles)]
    for cid in single_ids[:200]:  # warm up connections, prepared statements, caches
        store.get(cid)
    single_ns = []
    for cid in single_ids:
        started = time.perf_counter_ns()
        profile = store.get(cid)
        single_ns.append(time.perf_counter_ns() - started)
        if profile is None:
            raise RuntimeError(f"{cid} is missing from the store")
    batch_ns = []
    for _ in range(batches):
        ids = [f"C{rng.randrange(n):09d}" for _ in range(batch_size)]
        started = time.perf_counter_ns()
        found = store.get_many(ids)
        batch_ns.append(time.perf_counter_ns() - started)
        if len(found) != len(set(ids)):
            raise RuntimeError("a batch lookup missed served customers")
    return {
        "get_count": singles,
        "get_p50_ms": percentile_ms(single_ns, 50),
        "get_p99_ms": percentile_ms(single_ns, 99),
        "get_mean_ms": round(statistics.fmean(single_ns) / 1e6, 4),
        "get_many_count": batches,
        "get_many_size": batch_size,
        "get_many_p50_ms": percentile_ms(batch_ns, 50),
        "get_many_p99_ms": percentile_ms(batch_ns, 99),
    }


FEED_PAGE = 10_000


def redis_slowlog(url: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return list(client.slowlog_get(128))
    finally:
        client.close()


def redis_flip_ms(url: str, namespace: str, after_id: int) -> float | None:
    """How long the Redis server spent in the publish's pointer swap (the Lua script that also appends the
    changes to the feed, during which Redis serves nobody else), from its slow log entries after
    ``after_id``; None if it is not there (faster than slowlog-log-slower-than, 10 ms by default)."""
    pointer = f"{namespace}:current".encode()
    durations = [
        e["duration"] / 1000
        for e in redis_slowlog(url)
        if e["id"] > after_id and pointer in e["command"] and e["command"].startswith(b"EVALSHA")
    ]
    return round(max(durations), 1) if durations else None


def time_feed(store: ProfileStore) -> dict[str, Any] | None:
    """Read the whole change feed in pages of :data:`FEED_PAGE`, timed (None for a store without a feed)."""
    if not hasattr(store, "changes"):
        return None
    started = time.perf_counter()
    rows, after = 0, None
    while True:
        page = store.changes(after, FEED_PAGE)
        rows += len(page.rows)
        after = page.next_cursor
        if not page.more:
            break
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds) if seconds else None}


def bench_backend(backend: str, url: str, runs: list[pa.Table], args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"backend": backend, "namespace": namespace, "publishes": []}
    with open_store(url, namespace=namespace) as store:
        result["url"] = store.url_display
        try:
            for k, table in enumerate(runs):
                server_before = server_cpu_s(backend)
                slowlog_id = max((e["id"] for e in redis_slowlog(url)), default=-1) if backend == "redis" else -1
                cpu_before = time.process_time()
                started = time.perf_counter()
                report = store.publish(table, f"bench-{k}", dt.date(2024, 12, 31) + dt.timedelta(days=k), "bench")
                seconds = time.perf_counter() - started
                client_cpu = time.process_time() - cpu_before
                if backend == "postgres":
                    time.sleep(0.5)  # let the postmaster reap the publish's backend, whose CPU then counts
                server_after = server_cpu_s(backend)
                server_cpu = None if server_before is None or server_after is None else server_after - server_before
                result["publishes"].append(
                    {
                        "customers": report.customers,
                        "changed": report.changed,
                        "new": report.new,
                        "seconds": round(seconds, 3),
                        "profiles_per_s": round(report.customers / seconds),
                        "client_cpu_s": round(client_cpu, 3),
                        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
                        "loadavg_1m_after": round(os.getloadavg()[0], 2),
                    }
                )
                if backend == "redis":
                    result["publishes"][-1]["flip_ms"] = redis_flip_ms(url, namespace, slowlog_id)
                cpu = f"cpu {client_cpu:.2f} s client" + ("" if server_cpu is None else f" + {server_cpu:.2f} s server")
                if result["publishes"][-1].get("flip_ms") is not None:
                    cpu += f"; Redis held by the flip {result['publishes'][-1]['flip_ms']:.0f} ms"
                print(
                    f"  {backend:<9} publish {k + 1}/{len(runs)}: {report.customers:,} in {seconds:.2f} s "
                    f"({report.customers / seconds:,.0f}/s; {report.changed:,} changed, {report.new:,} new; {cpu})",
                    flush=True,
                )
            result["feed_read"] = time_feed(store)
            if result["feed_read"]:
                feed = result["feed_read"]
                print(f"  {backend:<9} feed: {feed['rows']:,} changes read in {feed['seconds']:.2f} s", flush=True)
            # lookups are timed in steady state, not against the background work a publish leaves (Redis
            # freeing the old version, PostgreSQL's autovacuum and checkpoint of the new table)
            time.sleep(args.settle)
            result.update(time_lookups(store, args.customers, args.lookups, args.batches, args.batch_size))
            result["round_trip"] = round_trip(backend, url, args.lookups)
        finally:
            if not args.keep:
                store.drop()
    rates = [p["profiles_per_s"] for p in result["publishes"]]
    result["publish_first_per_s"] = rates[0]
    result["publish_history_per_s"] = round(statistics.median(rates[1:])) if len(rates) > 1 else None
    result["publish_min_per_s"] = min(rates)
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if backend in ("postgres", "redis"):
        result["publish_target_met"] = min(rates) >= PUBLISH_TARGET
    if backend in ("redis", "sqlite"):
        result["get_p99_target_met"] = result["get_p99_ms"] < LOOKUP_P99_TARGET_MS
    return result


def server_version(backend: str, url: str) -> str:
    if backend == "sqlite":
        return sqlite3.sqlite_version
    if backend == "postgres":
        import psycopg

        with psycopg.connect(url) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    import redis

    client = redis.Redis.from_url(url)
    version = str(client.info("server")["redis_version"])
    client.close()
    return version


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu": model or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'backend':<9} {'publish 1 /s':>13} {'publish 2-3 /s':>15} {'get p50 ms':>11} {'get p99 ms':>11} "
        f"{'batch p50 ms':>13} {'batch p99 ms':>13} {'ping p99 ms':>12}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        history = f"{r['publish_history_per_s']:,}" if r["publish_history_per_s"] else "-"
        print(
            f"{r['backend']:<9} {r['publish_first_per_s']:>13,} {history:>15} {r['get_p50_ms']:>11.3f} "
            f"{r['get_p99_ms']:>11.3f} {r['get_many_p50_ms']:>13.2f} {r['get_many_p99_ms']:>13.2f} "
            f"{format(r['round_trip']['p99_ms'], '.3f') if r['round_trip'] else '-':>12}"
        )


def run_baseline(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """This benchmark again, in a subprocess that imports rfmseg from ``args.baseline_src``; its report."""
    given = list(sys.argv[1:] if argv is None else argv)
    if "--baseline-src" in given:
        at = given.index("--baseline-src")
        del given[at : at + 2]
    given = [a for a in given if not a.startswith("--baseline-src=")]
    with tempfile.TemporaryDirectory(prefix="rfmseg-bench-base-") as tmp:
        output = Path(tmp) / "baseline.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(args.baseline_src), os.environ.get("PYTHONPATH")])),
        }
        print(f"\nbaseline: the same benchmark with {args.baseline_src} first on the path", flush=True)
        subprocess.run([sys.executable, __file__, *given, "--output", str(output)], env=env, check=True)
        return dict(json.loads(output.read_text(encoding="utf-8")))


def print_comparison(results: list[dict[str, Any]], baseline: list[dict[str, Any]], src: Path) -> None:
    """Publish seconds of this version against the baseline's, publish by publish."""
    print(f"\npublish seconds, this version / baseline ({src}):")
    for mine, theirs in zip(results, baseline, strict=True):
        pairs = [
            f"{a['seconds']:.2f} / {b['seconds']:.2f} ({a['seconds'] / b['seconds']:.2f}x)"
            for a, b in zip(mine["publishes"], theirs["publishes"], strict=True)
        ]
        print(f"  {mine['backend']:<9} " + ";  ".join(pairs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=lambda v: int(float(v)), default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument("--publishes", type=int, default=3, help="publishes per backend (>= 1)")
    parser.add_argument("--lookups", type=int, default=20_000, help="random single-id lookups")
    parser.add_argument("--batches", type=int, default=200, help="random batch lookups")
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the last publish and lookups")
    parser.add_argument("--sqlite-url", help="default: a file in a temporary folder")
    parser.add_argument("--postgres-url", default=DEFAULT_URLS["postgres"])
    parser.add_argument("--redis-url", default=DEFAULT_URLS["redis"])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "store.json")
    parser.add_argument("--keep", action="store_true", help="keep the published data")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the benchmark with this src folder first on the path (another version) and compare",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres", "redis"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose from sqlite, postgres, redis")

    info = machine()
    cores, memory, load = info["nproc"], info["memory_gib"], info["loadavg_at_start"]
    source = str(Path(rfmseg.__file__).resolve().parent)
    print(f"{args.customers:,} customers; {cores} cores, {memory} GiB; load {load}; rfmseg from {source}")
    runs = [make_assignments(args.customers, seed=0)]
    for k in range(1, max(1, args.publishes)):
        runs.append(make_assignments(args.customers, seed=k, previous=runs[-1]))

    results = []
    with tempfile.TemporaryDirectory(prefix="rfmseg-bench-") as tmp:
        urls = {
            "sqlite": args.sqlite_url or f"sqlite:///{Path(tmp) / 'profiles.db'}",
            "postgres": args.postgres_url,
            "redis": args.redis_url,
        }
        for backend in backends:
            result = bench_backend(backend, urls[backend], runs, args)
            result["server_version"] = server_version(backend, urls[backend])
            results.append(result)
    print_table(results)
    baseline = run_baseline(args, argv) if args.baseline_src else None
    if baseline is not None:
        print_comparison(results, baseline["results"], args.baseline_src)

    report = {
        "benchmark": "profile store",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_store.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "customers": args.customers,
        "settle_s": args.settle,
        "machine": info,
        "rfmseg_source": source,
        "targets": {"publish_profiles_per_s": PUBLISH_TARGET, "get_p99_ms": LOOKUP_P99_TARGET_MS},
        "results": results,
    }
    if baseline is not None:
        report["baseline"] = {"src": str(args.baseline_src), **baseline}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
