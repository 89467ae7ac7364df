"""Load benchmark of the HTTP API's hot path, ``GET /customers/{id}``, on loopback.

1. Segments a seeded synthetic base of ``--customers`` customers (an RFM table) with the real pipeline, into
   ``bench/data/api/runs`` (reused on the next run; ``--fresh`` rebuilds it), and reports how long the run
   took and what its report.html cost.
2. Publishes the run to a SQLite store and to a Redis store (``rfmseg.jobs.publish.publish_run``).
3. For each store and each ``--workers`` setting, starts ``rfmseg serve`` (uvicorn, a subprocess bound to
   127.0.0.1), checks a few answers against the run's assignments, then drives it with wrk (Debian package
   ``wrk``; a Lua script asks for random customer ids) for ``--duration`` seconds per connection count,
   after a short warm-up. Without wrk, a bounded asyncio generator (raw keep-alive HTTP/1.1) in a separate
   process does it.
4. Prints throughput and p50/p99 latency and writes ``bench/results/api.json``.

With ``--compare-fast-path``, step 3 instead starts two servers side by side on the same store, one worker
each, under the same uvicorn settings: the app as built (``create_app``: ``GET /customers/{id}`` answered
from ASGI by its route class, ``RawLookupRoute``) and the same app with that route's class set back to
FastAPI's ``APIRoute`` (the same endpoint and lookup, ``customer_json``, through FastAPI's request parsing,
validation and dependencies), and drives them in turn at each connection count (``--repeat`` rounds), with
the server process's CPU time per request next to the throughput (the machine is shared: requests/s follow
the other work on it, CPU per request much less), writing ``bench/results/api_fast_path.json``.

    .venv/bin/python bench/bench_api.py                         # 1M customers, sqlite + redis
    .venv/bin/python bench/bench_api.py --customers 100000 --backends sqlite --duration 5
    .venv/bin/python bench/bench_api.py --customers 100000 --backends sqlite --compare-fast-path

Target on the 2-core machine (reported, not asserted): >= 3,000 requests/s with p99 < 25 ms.
Every request goes to 127.0.0.1 only, and every load is bounded in requests and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
try:
    import rfmseg  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
from rfmseg.jobs.publish import publish_run  # noqa: E402
from rfmseg.jobs.run import segment  # noqa: E402
from rfmseg.runs import Run, list_runs  # noqa: E402
from rfmseg.stores import open_store  # noqa: E402

TARGET_RPS = 3_000
TARGET_P99_MS = 25.0
DATA = REPO / "bench" / "data" / "api"
RESULTS = REPO / "bench" / "results" / "api.json"
FAST_PATH_RESULTS = REPO / "bench" / "results" / "api_fast_path.json"
ID_WIDTH = 7

WRK_SCRIPT = textwrap.dedent(
    """
    -- random customer ids B0000001 .. B<n>; prints a JSON summary at the end
    local n = tonumber(os.getenv("RFMSEG_BENCH_N"))
    local threads = {}
    function setup(thread)
      table.insert(threads, thread)
      thread:set("tid", #threads)
    end
    function init(args)
      math.randomseed(os.time() * 100 + tid)
    end
    function request()
      return wrk.format("GET", string.format("/customers/B%07d", math.random(1, n)))
    end
    function done(summary, latency, requests)
      local e = summary.errors
      io.write(string.format(
        '\\nRFMSEG_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, '
        .. '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, '
        .. '"max": %d, "mean": %.1f}}\\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
    end
    """
)

PY_LOAD = textwrap.dedent(
    """
    # bounded closed-loop load over raw keep-alive HTTP/1.1 connections (an HTTP client library would cost
    # more CPU than the server): `conns` connections send requests until `seconds` pass or `limit` is reached
    import asyncio, json, random, sys, time
    from urllib.parse import urlsplit

    base, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds, limit = float(sys.argv[4]), int(sys.argv[5])
    host, port = urlsplit(base).hostname, urlsplit(base).port
    lat, errors = [], 0

    async def connection(rng, stop):
        global errors
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < stop and len(lat) < limit:
            t0 = time.perf_counter_ns()
            writer.write(f"GET /customers/B{rng.randint(1, n):07d} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode())
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            lines = head.split(b"\\r\\n")
            length = int(next(x.split(b":")[1] for x in lines if x.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            lat.append(time.perf_counter_ns() - t0)
            errors += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    async def main():
        t0 = time.perf_counter()
        await asyncio.gather(*(connection(random.Random(i), t0 + seconds) for i in range(conns)))
        return time.perf_counter() - t0

    took = asyncio.run(main())
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] // 1000
    latency = {"p50": q(50), "p90": q(90), "p99": q(99), "max": lat[-1] // 1000, "mean": sum(lat) / len(lat) / 1000}
    out = {"requests": len(lat), "duration_us": int(took * 1e6), "errors": {"status": errors}, "latency_us": latency}
    print("RFMSEG_JSON " + json.dumps(out))
    """
)


SERVE = textwrap.dedent(
    """
    # one uvicorn worker serving create_app(...) on host:port; with layer=route, GET /customers/{id} goes through
    # FastAPI's request handling (its route class set back to APIRoute), with layer=raw it is served as built
    import sys
    from pathlib import Path

    import uvicorn
    from fastapi.routing import APIRoute

    from rfmseg.service import Settings, create_app
    from rfmseg.service.routes.customers import RawLookupRoute, router

    host, port, runs_dir, store, layer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    app = create_app(Settings(runs_dir=Path(runs_dir), store_url=store))
    for route in router.routes:
        if layer == "route" and isinstance(route, RawLookupRoute):
            route.__class__ = APIRoute
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    """
)


# ------------------------------------------------------------------------------------------------ data
def synthetic_rfm(n: int, seed: int) -> pa.Table:
    """A seeded customer base with four behaviours (recent heavy buyers, regulars, lapsed big spenders and
    one-off buyers), so K-Means finds real groups."""
    rng = np.random.default_rng(seed)
    group = rng.choice(4, size=n, p=[0.1, 0.25, 0.2, 0.45])
    rec_mu = np.array([8.0, 30.0, 150.0, 70.0])[group]
    freq_mu = np.array([30.0, 14.0, 9.0, 1.6])[group]
    mon_mu = np.array([7000.0, 1900.0, 3900.0, 220.0])[group]
    recency = np.maximum(0, np.round(rng.normal(rec_mu, rec_mu * 0.3))).astype(np.int64)
    frequency = np.maximum(1, np.round(rng.normal(freq_mu, freq_mu * 0.25))).astype(np.int64)
    monetary = np.round(np.maximum(10.0, rng.normal(mon_mu, mon_mu * 0.2)), 2)
    ids = pc.binary_join_element_wise(
        "B", pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), ID_WIDTH, "0"), ""
    )
    return pa.table({"customer_id": ids, "recency_days": recency, "frequency": frequency, "monetary": monetary})


def the_run(n: int, seed: int, fresh: bool) -> tuple[Run, dict[str, Any]]:
    label = f"bench-api synthetic RFM: {n} customers, seed {seed}"
    runs_dir = DATA / "runs"
    if fresh and DATA.exists():
        shutil.rmtree(DATA)
    for run in reversed(list_runs(runs_dir)):
        if run.manifest.get("input", {}).get("path") == label and (run.path / "report.html").exists():
            print(f"reusing run {run.run_id} ({n:,} customers) in {runs_dir}", flush=True)
            return run, {"reused": True, **_run_cost(run)}
    print(f"segmenting {n:,} synthetic customers with the pipeline ...", flush=True)
    started = time.perf_counter()
    result = segment(synthetic_rfm(n, seed), runs_dir=runs_dir, input_label=label)
    seconds = time.perf_counter() - started
    assert result.run is not None
    return result.run, {"reused": False, "pipeline_seconds": round(seconds, 2), **_run_cost(result.run)}


def _run_cost(run: Run) -> dict[str, Any]:
    m = run.manifest
    return {
        "run_id": run.run_id,
        "customers": m.get("customers"),
        "timings": m.get("timings"),
        "report_html_mb": round((run.path / "report.html").stat().st_size / 1e6, 2),
    }


def time_report(run: Run) -> float:
    """Seconds to build the report of the run from its files (what the pipeline adds to a run, plus reading)."""
    from rfmseg.report import report_html

    started = time.perf_counter()
    report_html(run.run_id, run.path.parent)
    return round(time.perf_counter() - started, 2)


# ------------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`rfmseg serve` as a subprocess on a free loopback port."""

    def __init__(self, runs_dir: Path, store: str, workers: int, layer: str | None = None) -> None:
        """``layer`` None: `rfmseg serve`; "route" or "raw": one worker of the SERVE script."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("RFMSEG_API_KEY", "RFMSEG_STORE")}
        serve_cmd = [
            sys.executable,
            "-m",
            "rfmseg",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--runs-dir",
            str(runs_dir),
            "--store",
            store,
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        script_cmd = [sys.executable, "-c", SERVE, "127.0.0.1", str(self.port), str(runs_dir), store, str(layer)]
        cmd = serve_cmd if layer is None else script_cmd
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rfmseg serve did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc; one worker, no children)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_answers(base: str, assignments: pa.Table, k: int = 50) -> None:
    """Random ids answer with the run's segment; an unknown id answers 404."""
    rng = random.Random(1)
    ids = assignments.column("customer_id")
    segs = assignments.column("segment")
    with httpx.Client(base_url=base, timeout=10) as c:
        for _ in range(k):
            i = rng.randrange(assignments.num_rows)
            got = c.get(f"/customers/{ids[i].as_py()}").json()
            if got.get("segment") != segs[i].as_py():
                raise RuntimeError(f"wrong answer for {ids[i].as_py()}: {got}")
        if c.get("/customers/NOPE").status_code != 404:
            raise RuntimeError("an unknown id did not answer 404")


def drive(base: str, n: int, connections: int, seconds: float, threads: int) -> dict[str, Any]:
    """One bounded load: wrk if installed, else the Python generator. Returns requests/s and latencies."""
    wrk = shutil.which("wrk")
    if wrk:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_SCRIPT)
            script = f.name
        try:
            secs = max(1, round(seconds))
            cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{secs}s", "--timeout", "5s", "-s", script, base]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=secs + 60, env={**os.environ, "RFMSEG_BENCH_N": str(n)}
            )
            if proc.returncode:
                raise RuntimeError(f"wrk failed: {proc.stderr.strip() or proc.stdout.strip()}")
        finally:
            os.unlink(script)
        tool = "wrk"
    else:
        limit = int(seconds * 20_000)
        cmd = [sys.executable, "-c", PY_LOAD, base, str(n), str(connections), str(seconds), str(limit)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
        tool = "python-asyncio"
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RFMSEG_JSON "))
    raw = json.loads(line.removeprefix("RFMSEG_JSON "))
    lat = raw["latency_us"]
    errors = sum(raw["errors"].values())
    return {
        "tool": tool,
        "connections": connections,
        "seconds": round(raw["duration_us"] / 1e6, 2),
        "requests": raw["requests"],
        "errors": errors,
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6)),
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p90_ms": round(lat["p90"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "max_ms": round(lat["max"] / 1000, 2),
    }


def measured(server: Server, n: int, connections: int, seconds: float, threads: int) -> dict[str, Any]:
    """:func:`drive`, plus the server's CPU time per request (what the machine's other work does not change)."""
    before = server.cpu_seconds()
    r = drive(server.base, n, connections, seconds, threads)
    r["server_cpu_us"] = round((server.cpu_seconds() - before) / max(1, r["requests"]) * 1e6)
    return r


def compare_fast_path(
    run: Run, url: str, n: int, assignments: pa.Table, args: argparse.Namespace, duration: float
) -> list[dict[str, Any]]:
    """The route through FastAPI against the same route answered from ASGI, one worker each, driven in turn."""
    servers = {layer: Server(run.path.parent, url, 1, layer) for layer in ("route", "raw")}
    rows: list[dict[str, Any]] = []
    try:
        for server in servers.values():
            check_answers(server.base, assignments)
            drive(server.base, n, 16, args.warmup, args.threads)
        for round_ in range(1, args.repeat + 1):
            for conns in [int(c) for c in args.connections.split(",")]:
                got = {layer: measured(server, n, conns, duration, args.threads) for layer, server in servers.items()}
                ratio = round(got["raw"]["rps"] / got["route"]["rps"], 2)
                cpu_ratio = round(got["route"]["server_cpu_us"] / got["raw"]["server_cpu_us"], 2)
                row = {"round": round_, "connections": conns, **got}
                rows.append({**row, "raw_over_route": ratio, "route_cpu_over_raw": cpu_ratio})
                print(
                    f"  round {round_} conns={conns:<3} route {got['route']['rps']:>6,} req/s "
                    f"(p50 {got['route']['p50_ms']:5.2f} ms, server CPU {got['route']['server_cpu_us']:4} us/req)  "
                    f"raw {got['raw']['rps']:>6,} req/s (p50 {got['raw']['p50_ms']:5.2f} ms, server CPU "
                    f"{got['raw']['server_cpu_us']:4} us/req)  raw/route {ratio} req/s, {cpu_ratio} CPU",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    return rows


# ------------------------------------------------------------------------------------------------ main
def versions() -> dict[str, str]:
    out = {}
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "redis"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    wrk = shutil.which("wrk")
    out["wrk"] = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0] if wrk else ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=lambda v: int(float(v)), default=1_000_000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to try, e.g. 1,2")
    parser.add_argument("--connections", default="8,16,32,64", help="concurrent connections to try")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (one leaves more CPU to the server)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per setting (max 120)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="rebuild the run instead of reusing it")
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS} ({FAST_PATH_RESULTS})")
    parser.add_argument("--compare-fast-path", action="store_true", help="the route against the raw ASGI layer")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of --compare-fast-path")
    args = parser.parse_args(argv)
    duration = min(args.duration, 120.0)
    out_file = args.out or (FAST_PATH_RESULTS if args.compare_fast_path else RESULTS)

    load_start = [round(x, 2) for x in os.getloadavg()]
    run, run_info = the_run(args.customers, args.seed, args.fresh)
    run_info["report_rebuild_seconds"] = time_report(run)
    assignments = run.table("assignments")
    urls = {
        "sqlite": f"sqlite:///{DATA / 'profiles.db'}",
        "redis": f"{args.redis_url}{'&' if '?' in args.redis_url else '?'}namespace=rfmseg_bench_api",
    }
    results: list[dict[str, Any]] = []
    publishes: dict[str, Any] = {}
    comparisons: dict[str, list[dict[str, Any]]] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        url = urls[backend]
        started = time.perf_counter()
        report = publish_run(run.run_id, run.path.parent, url)
        publishes[backend] = {"seconds": round(time.perf_counter() - started, 2), "customers": report["customers"]}
        print(
            f"{backend}: published {report['customers']:,} customers in {publishes[backend]['seconds']} s", flush=True
        )
        try:
            if args.compare_fast_path:
                comparisons[backend] = compare_fast_path(run, url, args.customers, assignments, args, duration)
                continue
            for workers in [int(w) for w in args.workers.split(",")]:
                server = Server(run.path.parent, url, workers)
                try:
                    check_answers(server.base, assignments)
                    drive(server.base, args.customers, 16, args.warmup, args.threads)
                    for conns in [int(c) for c in args.connections.split(",")]:
                        r = drive(server.base, args.customers, conns, duration, args.threads)
                        r.update(
                            backend=backend,
                            workers=workers,
                            target_met=r["rps"] >= TARGET_RPS and r["p99_ms"] < TARGET_P99_MS and not r["errors"],
                        )
                        results.append(r)
                        print(
                            f"  {backend:<6} workers={workers} conns={conns:<3} {r['rps']:>7,} req/s  "
                            f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}",
                            flush=True,
                        )
                finally:
                    server.stop()
        finally:
            if backend == "redis":
                with open_store(url) as store:
                    store.drop()

    best: dict[str, Any] = {}
    for backend in publishes:
        ok = [r for r in results if r["backend"] == backend and r["target_met"]]
        pool = ok or [r for r in results if r["backend"] == backend]
        best[backend] = max(pool, key=lambda r: r["rps"]) if pool else None
    out = {
        "benchmark": "GET /customers/{id} on loopback",
        "command": "python bench/bench_api.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "target": {"rps": TARGET_RPS, "p99_ms": TARGET_P99_MS},
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions(),
        "run": run_info,
        "publish": publishes,
        "duration_s": duration,
        "results": results,
        "best": best,
        "target_met": {b: bool(r and r["target_met"]) for b, r in best.items()},
    }
    if args.compare_fast_path:
        out["benchmark"] = "GET /customers/{id} on loopback: through FastAPI (APIRoute) and from ASGI (RawLookupRoute)"
        for key in ("results", "best", "target_met"):
            del out[key]
        out["fast_path"] = comparisons
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if args.compare_fast_path:
        print(f"wrote {out_file}")
        return 0
    print(f"\nbest per store (target >= {TARGET_RPS:,} req/s, p99 < {TARGET_P99_MS:g} ms):")
    for backend, r in best.items():
        if r:
            print(
                f"  {backend:<6} {r['rps']:>7,} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
                f"(workers={r['workers']}, connections={r['connections']})  target met: {r['target_met']}"
            )
    print(f"wrote {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
