"""Scale benchmark: rfmseg against a notebook baseline and the floors, on 1M to 100M synthetic order lines.

For each row count (a file from bench/generate.py, generated when missing) every contender runs in a fresh
process, one after the other, and is measured from outside: wall time from process start to exit and peak
resident memory of its whole process tree (Python + DuckDB threads + the Spark JVM), sampled every 20 ms
(and never below the kernel's peak for the Python process itself, from its getrusage). Contenders:

* ``local``   rfmseg end to end (read -> validate -> RFM -> fit -> assign -> profile -> write the run),
              per-stage times from the run's manifest;
* ``naive``   what a notebook does: pandas read_parquet + groupby, MinMaxScaler, scikit-learn
              KMeans(n_init=10) on all customers;
* ``floor``   DuckDB reading the four needed columns and nothing else (a trivial aggregate per column);
* ``rfm``     the RFM aggregation query alone (features.rfm_sql over the raw columns, result as Arrow);
* ``polars``  the same aggregation in Polars' streaming engine (to choose the RFM engine by measurement);
* ``kmeans``  on the customers of the ``local`` run: scikit-learn KMeans(n_init=10) on all customers
              against rfmseg's fit (sample + refine above 50,000 customers), and choose-k;
* ``spark``   rfmseg with ``engine="spark"`` on local[2];
* ``cli``     the ``rfmseg`` command as a user runs it, the README's scale walkthrough: ``python -m rfmseg run
              FILE --returns net --json`` (the generator's cancellations netted, every row used);
* ``cli-quarantine``  the same with ``--bad-rows quarantine`` instead: the cancellations (1.3 % of the lines)
              set aside with their reason and written to the run's quarantine.parquet.

``--repeats N`` measures each contender N times in turn and keeps the run with the median wall time (every
time is kept in the JSON).

Writes bench/results/scale_<rows>.json and regenerates the ``## Scale`` section of docs/performance.md from
every scale_*.json present.

    .venv/bin/python bench/bench_scale.py --rows 1e6,1e7,1e8
    .venv/bin/python bench/bench_scale.py --rows 1e7 --contenders local,rfm,floor
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
DOC = REPO / "docs" / "performance.md"
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402  (bench/generate.py, next to this file)

CONTENDERS = ("local", "naive", "floor", "rfm", "polars", "kmeans", "spark", "cli", "cli-quarantine")
CLI_OPTIONS = {"cli": ("--returns", "net"), "cli-quarantine": ("--bad-rows", "quarantine")}
"""how each command-line contender is run (after ``rfmseg run FILE``)"""
RETURNS = "order_id LIKE 'C%'"
"""the generated files mark cancellations with a C invoice prefix (as Online Retail does)"""
COLUMNS = ("customer_id", "order_id", "order_date", "amount")
AS_OF = date(2025, 1, 1)
"""the day after the generated window: what the default as-of comes to on every generated file"""
TARGETS = {
    "end_to_end_s": 30.0,
    "peak_rss_gib": 3.0,
    "speedup_vs_naive": 4.0,
    "memory_vs_naive": 0.25,
    "vs_rfm_query": 2.0,
    "kmeans_inertia_gap": 0.005,
    "kmeans_time_vs_full": 0.1,
    "choose_k_s": 60.0,
    # issue 16, the whole `rfmseg run` process: at 1M lines against the notebook; at 100M against the bare
    # RFM query (both paths) and the notebook
    "cli_speedup_vs_naive_1m": 3.0,
    "cli_vs_rfm_query_100m": 1.4,
    "cli_speedup_vs_naive_100m": 6.0,
}
GIB = 2**30


# ------------------------------------------------------------------------------------------------- children
def _stamp(t0: float) -> float:
    return round(time.perf_counter() - t0, 4)


def child_local(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    from rfmseg.io import Policy
    from rfmseg.jobs.run import segment

    imports = _stamp(t0)
    result = segment(
        path, policy=Policy(bad_rows="quarantine", returns_condition=RETURNS), runs_dir=work / "runs", k=args.k
    )
    m = result.manifest
    return {
        "stages": {"import": imports, **m["timings"]},
        "customers": m["customers"],
        "rows": m["rows"],
        "inertia": m["model"]["inertia"],
        "fit": m["model"].get("fit"),
        "run_dir": str(result.path),
    }


def child_naive(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import MinMaxScaler

    stages: dict[str, float] = {"import": _stamp(t0)}
    t = time.perf_counter()
    df = pd.read_parquet(path, columns=list(COLUMNS))
    stages["read"] = _stamp(t)
    t = time.perf_counter()
    cancelled = df["order_id"].str.startswith("C")
    orders = df[~cancelled]
    as_of = orders["order_date"].max().normalize() + pd.Timedelta(days=1)
    rfm = orders.groupby("customer_id").agg(last=("order_date", "max"), frequency=("order_id", "nunique"))
    rfm = rfm.join(df.groupby("customer_id")["amount"].sum().rename("monetary"), how="left")
    rfm["recency_days"] = (as_of - rfm["last"].dt.normalize()).dt.days
    rfm["monetary"] = rfm["monetary"].round(2)
    stages["rfm"] = _stamp(t)
    t = time.perf_counter()
    x = MinMaxScaler().fit_transform(rfm[["recency_days", "frequency", "monetary"]].to_numpy(float))
    km = KMeans(n_clusters=args.k, n_init=10, random_state=42).fit(x)
    stages["fit"] = _stamp(t)
    return {"stages": stages, "customers": len(rfm), "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)}


def child_floor(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    t = time.perf_counter()
    con = duckdb.connect()
    row = con.execute(
        "SELECT min(customer_id), max(order_id), max(order_date), sum(amount) FROM read_parquet(?)", [str(path)]
    ).fetchone()
    return {"stages": {"scan": _stamp(t)}, "check": [str(v) for v in row]}


def rfm_query_text() -> str:
    """rfmseg's RFM SQL (features.rfm_sql) over a view ``tx`` of the raw columns."""
    from rfmseg import features

    return features.rfm_sql("tx", AS_OF)


def child_rfm(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    t = time.perf_counter()
    sql_file = work / "rfm.sql"  # written by the parent: this process imports DuckDB and nothing else
    sql = sql_file.read_text() if sql_file.exists() else rfm_query_text()
    con = duckdb.connect()
    lit = str(path).replace("'", "''")
    con.execute(
        "CREATE VIEW tx AS SELECT customer_id, order_id, order_date AS ts, amount, "
        f"{RETURNS} AS is_return, CAST(NULL AS VARCHAR) AS _reason FROM read_parquet('{lit}')"
    )
    table = con.sql(sql).to_arrow_table()
    return {"stages": {"rfm": _stamp(t)}, "customers": table.num_rows}


def child_polars(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import polars as pl

    t = time.perf_counter()
    ret = pl.col("order_id").str.starts_with("C")
    orders = (
        pl.scan_parquet(path)
        .select(*COLUMNS)
        .group_by("customer_id", "order_id")
        .agg(ret.all().alias("is_return"), pl.col("order_date").max().alias("ts"), pl.col("amount").sum())
    )
    sale = ~pl.col("is_return")
    last = pl.col("ts").filter(sale).max()
    rfm = (
        orders.group_by("customer_id")
        .agg(
            (pl.lit(AS_OF) - last.dt.date()).dt.total_days().alias("recency_days"),
            sale.sum().alias("frequency"),
            pl.col("amount").sum().round(2).alias("monetary"),
            pl.col("ts").filter(sale).min().dt.date().alias("first_order_date"),
            last.dt.date().alias("last_order_date"),
        )
        .collect(engine="streaming")
    )
    return {"stages": {"rfm": _stamp(t)}, "customers": rfm.height}


def child_kmeans(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.cluster import KMeans

    from rfmseg.model.choose_k import choose_k
    from rfmseg.model.kmeans import fit_kmeans
    from rfmseg.model.transform import Transform

    runs = sorted((work / "runs").glob("*/rfm.parquet"))
    if not runs:
        raise SystemExit("kmeans needs the local contender's run (its rfm.parquet); run local first")
    rfm = pq.read_table(runs[-1], columns=["recency_days", "frequency", "monetary"])
    x = np.column_stack([rfm.column(c).to_numpy().astype(float) for c in rfm.column_names])
    z = Transform.fit("minmax", x).apply(x)
    out: dict[str, Any] = {"customers": int(x.shape[0]), "stages": {}}
    t = time.perf_counter()
    full = KMeans(n_clusters=args.k, n_init=10, random_state=42).fit(z)
    out["stages"]["full_kmeans"] = _stamp(t)
    out["full"] = {"inertia": float(full.inertia_), "n_iter": int(full.n_iter_)}
    t = time.perf_counter()
    fit = fit_kmeans(z, args.k, 10, 42)
    out["stages"]["rfmseg_fit"] = _stamp(t)
    out["rfmseg"] = {"inertia": fit.inertia, **fit.describe()}
    out["inertia_gap"] = fit.inertia / float(full.inertia_) - 1.0
    out["time_ratio"] = out["stages"]["rfmseg_fit"] / out["stages"]["full_kmeans"]
    t = time.perf_counter()
    ck = choose_k(x, "minmax")
    out["stages"]["choose_k"] = _stamp(t)
    out["choose_k"] = {
        "recommended_k": ck["recommended_k"],
        "silhouette_sample": ck["silhouette_sample"],
        "stability": ck.get("stability"),
    }
    return out


def child_spark(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    from rfmseg.io import Policy
    from rfmseg.jobs.run import segment

    imports = _stamp(t0)
    result = segment(
        path,
        policy=Policy(bad_rows="quarantine", returns_condition=RETURNS),
        runs_dir=work / "spark-runs",
        k=args.k,
        engine="spark",
        spark_master=args.spark_master,
    )
    m = result.manifest
    return {
        "stages": {"import": imports, **m["timings"]},
        "customers": m["customers"],
        "rows": m["rows"],
        "inertia": m["model"]["inertia"],
        "fit": m["model"].get("fit"),
    }


CHILDREN = {
    "local": child_local,
    "naive": child_naive,
    "floor": child_floor,
    "rfm": child_rfm,
    "polars": child_polars,
    "kmeans": child_kmeans,
    "spark": child_spark,
}


def run_child(args: argparse.Namespace) -> int:
    out = CHILDREN[args.child](Path(args.file), Path(args.work), args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["self_maxrss_gib"] = usage.ru_maxrss * 1024 / GIB
    print("RESULT " + json.dumps(out, default=str), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------- parent
def measure(contender: str, path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure_once` ``args.repeats`` times; the run with the median wall time, with every time."""
    runs = [measure_once(contender, path, work, args) for _ in range(max(1, args.repeats))]
    done = sorted((r for r in runs if r.get("ok")), key=lambda r: r["wall_s"])
    if len(done) < len(runs):
        return next(r for r in runs if not r.get("ok"))
    median = done[len(done) // 2]
    if len(runs) > 1:
        median["wall_s_each"] = [r["wall_s"] for r in runs]
    return median


def cli_result(stdout: str) -> dict[str, Any]:
    """What a command-line contender's run says of itself: its --json summary, then its manifest."""
    summary = json.loads(stdout)
    m = json.loads((Path(summary["run_dir"]) / "manifest.json").read_text(encoding="utf-8"))
    return {
        "stages": m["timings"],
        "customers": m["customers"],
        "rows": m["rows"],
        "inertia": m["model"]["inertia"],
        "fit": m["model"].get("fit"),
        "self_maxrss_gib": 0.0,  # measured from outside only
    }


def measure_once(contender: str, path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one contender in a fresh process; wall time and peak RSS of its process tree."""
    import psutil

    if contender in CLI_OPTIONS:  # the command itself, each time in a registry of its own
        runs_dir = Path(tempfile.mkdtemp(prefix="cli-runs-", dir=work))
        cmd = [sys.executable, "-m", "rfmseg", "run", str(path), *CLI_OPTIONS[contender]]
        cmd += ["--runs-dir", str(runs_dir), "--k", str(args.k), "--json"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", contender, "--file", str(path)]
        cmd += ["--work", str(work), "--k", str(args.k), "--spark-master", args.spark_master]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    ps = psutil.Process(proc.pid)
    peak = 0
    deadline = t0 + args.timeout
    timed_out = False
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        if time.perf_counter() > deadline:
            timed_out = True
            for p in ps.children(recursive=True):
                p.kill()
            proc.kill()
            break
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if contender in CLI_OPTIONS and not timed_out and proc.returncode == 0:
        stdout = "RESULT " + json.dumps(cli_result(stdout))
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if timed_out or proc.returncode != 0 or line is None:
        reason = f"timed out after {args.timeout:.0f} s" if timed_out else f"exit {proc.returncode}"
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        print(f"  {contender}: FAILED ({reason}) {tail}", file=sys.stderr)
        return {"ok": False, "error": f"{reason}: {tail}", "wall_s": round(wall, 2)}
    out = json.loads(line[len("RESULT ") :])
    out["ok"] = True
    out["wall_s"] = round(wall, 3)
    out["peak_rss_gib"] = round(max(peak, out["self_maxrss_gib"] * GIB) / GIB, 3)
    out["self_maxrss_gib"] = round(out["self_maxrss_gib"], 3)
    print(
        f"  {contender:7s} {wall:8.1f} s  peak {out['peak_rss_gib']:.2f} GiB  "
        + " ".join(f"{k}={v}" for k, v in out.get("stages", {}).items()),
        file=sys.stderr,
    )
    return out


def machine() -> dict[str, Any]:
    import psutil

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("duckdb", "polars", "pandas", "numpy", "scikit-learn", "pyarrow", "pyspark"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name)
        except Exception:  # a missing optional package is reported as absent
            versions[name] = "absent"
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "cpu": model,
        "os": platform.platform(),
        "versions": versions,
    }


def ratios(c: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The comparisons the targets are stated in (None where a contender did not run)."""

    def ok(name: str) -> dict[str, Any] | None:
        r = c.get(name)
        return r if r and r.get("ok") else None

    local, naive, rfm, floor = ok("local"), ok("naive"), ok("rfm"), ok("floor")
    out: dict[str, Any] = {}
    if local and naive:
        out["speedup_vs_naive"] = naive["wall_s"] / local["wall_s"]
        out["memory_vs_naive"] = local["peak_rss_gib"] / naive["peak_rss_gib"]
        if naive.get("inertia"):
            out["inertia_vs_naive"] = local["inertia"] / naive["inertia"] - 1.0
    if local and rfm:
        out["vs_rfm_query"] = local["wall_s"] / rfm["wall_s"]
    if local and floor:
        out["vs_floor"] = local["wall_s"] / floor["wall_s"]
    if ok("polars") and rfm:
        out["polars_vs_duckdb_rfm"] = c["polars"]["wall_s"] / rfm["wall_s"]
    if ok("spark") and local:
        out["spark_vs_local"] = c["spark"]["wall_s"] / local["wall_s"]
    for name, key in (("cli", "cli"), ("cli-quarantine", "cliq")):
        cli = ok(name)
        if cli and naive:
            out[f"{key}_speedup_vs_naive"] = naive["wall_s"] / cli["wall_s"]
        if cli and rfm:
            out[f"{key}_vs_rfm_query"] = cli["wall_s"] / rfm["wall_s"]
    return {k: round(v, 4) for k, v in out.items()}


def bench_scale(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    path = generate.ensure(rows)
    print(f"{path.name}: {rows:,} rows", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix=f"rfmseg-bench-{generate.label(rows)}-"))
    (work / "rfm.sql").write_text(rfm_query_text())
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    out = RESULTS / f"scale_{generate.label(rows)}.json"
    earlier = json.loads(out.read_text()) if args.merge and out.exists() else {}
    contenders: dict[str, dict[str, Any]] = dict(earlier.get("contenders", {}))
    try:
        for name in args.contenders:
            if name in args.skip_above and rows > args.skip_above[name]:
                contenders[name] = {"ok": False, "skipped": f"not run above {args.skip_above[name]:,} rows (--skip)"}
                continue
            contenders[name] = measure(name, path, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "rows": rows,
        "file": str(path.relative_to(REPO)),
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "customers": next((c["customers"] for c in contenders.values() if c.get("ok") and "customers" in c), None),
        "started": started.isoformat(timespec="seconds"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "command": " ".join(["python", "bench/bench_scale.py", *sys.argv[1:]]),
        "earlier_commands": [*earlier.get("earlier_commands", []), earlier["command"]] if earlier else [],
        "contenders": contenders,
        "ratios": ratios(contenders),
        "targets": TARGETS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"  -> {out.relative_to(REPO)}  ratios {result['ratios']}", file=sys.stderr)
    return result


# ------------------------------------------------------------------------------------------------- the doc
def _fmt_s(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    if not r.get("ok"):
        return "not run" if r.get("skipped") else "failed"
    return f"{r['wall_s']:.1f} s"


def _fmt_mem(r: dict[str, Any] | None) -> str:
    return f"{r['peak_rss_gib']:.2f} GiB" if r and r.get("ok") else "—"


def _stage_line(r: dict[str, Any] | None) -> str:
    if not r or not r.get("ok"):
        return "—"
    return ", ".join(f"{k} {v:.2f}" for k, v in r.get("stages", {}).items())


def scale_section(results: list[dict[str, Any]]) -> str:
    """The markdown of the ``## Scale`` section."""
    results = sorted(results, key=lambda r: r["rows"])
    m = results[-1]["machine"] if results else machine()
    lines = [
        "## Scale",
        "",
        "Generated by `bench/bench_scale.py` (do not edit by hand: the script rewrites this section). Synthetic",
        "order lines from `bench/generate.py` (heavy-tailed orders per customer, lognormal values, 1 + Poisson(2.5)",
        "lines per invoice, two years, 2 % of invoices cancelled by a `C` invoice). Every contender runs in a fresh",
        "process, one after the other: wall time from process start to exit (interpreter start and imports",
        "included), peak resident memory of the whole process tree (Python, DuckDB threads, the Spark JVM).",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, {m['os']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ". The machine is shared: the load average before each scale is given, and figures taken under load",
        "are slower than on an idle machine.",
        "",
        "Commands:",
        "",
        "```console",
        ".venv/bin/python bench/generate.py --rows 1e6,1e7,1e8    # bench/data/tx_1M.parquet ... (seeded)",
        *sorted(
            {
                c.replace("python ", ".venv/bin/python ", 1)
                for r in results
                for c in [*r.get("earlier_commands", []), r["command"]]
            }
        ),
        "```",
        "",
        "| rows | customers | `rfmseg run` (CLI) | CLI, quarantine path | rfmseg local (API) | naive pandas + sklearn "
        "| DuckDB floor | RFM query alone | Polars RFM | rfmseg Spark local[2] | load before |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r["contenders"]
        lines.append(
            f"| {r['rows']:,} | {r['customers'] or 0:,} | {_fmt_s(c.get('cli'))}, {_fmt_mem(c.get('cli'))} "
            f"| {_fmt_s(c.get('cli-quarantine'))}, {_fmt_mem(c.get('cli-quarantine'))} "
            f"| {_fmt_s(c.get('local'))}, {_fmt_mem(c.get('local'))} "
            f"| {_fmt_s(c.get('naive'))}, {_fmt_mem(c.get('naive'))} | {_fmt_s(c.get('floor'))} "
            f"| {_fmt_s(c.get('rfm'))}, {_fmt_mem(c.get('rfm'))} | {_fmt_s(c.get('polars'))} "
            f"| {_fmt_s(c.get('spark'))}, {_fmt_mem(c.get('spark'))} | {r['load_average_before'][0]:.1f} |"
        )
    lines += [
        "",
        "The command as a user runs it (issue 16's targets: at 1M lines at least 3× faster than the notebook; at",
        "100M at most 1.4× the RFM query on both paths and at least 6× faster than the notebook):",
        "",
        "| rows | notebook / CLI time | CLI / RFM query | notebook / CLI quarantine | CLI quarantine / RFM query |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        q = r["ratios"]

        def g(key: str, fmt: str, q: dict[str, Any] = q) -> str:
            return fmt.format(q[key]) if key in q else "—"

        lines.append(
            f"| {r['rows']:,} | {g('cli_speedup_vs_naive', '{:.2f}×')} | {g('cli_vs_rfm_query', '{:.2f}×')} "
            f"| {g('cliq_speedup_vs_naive', '{:.2f}×')} | {g('cliq_vs_rfm_query', '{:.2f}×')} |"
        )
    lines += [
        "",
        "Ratios (targets for the local engine at 100M rows: under 30 s and 3 GiB end to end, at least 4× faster",
        "than the naive baseline with at most a quarter of its memory, at most 2× the RFM query alone):",
        "",
        "| rows | naive / local time | local / naive memory | local / RFM query | local / floor | "
        "Polars / DuckDB RFM | Spark / local | inertia local vs naive |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        q = r["ratios"]

        def f(key: str, fmt: str = "{:.2f}", q: dict[str, Any] = q) -> str:
            return fmt.format(q[key]) if key in q else "—"

        lines.append(
            f"| {r['rows']:,} | {f('speedup_vs_naive', '{:.1f}×')} | {f('memory_vs_naive')} | {f('vs_rfm_query')} "
            f"| {f('vs_floor', '{:.1f}')} | {f('polars_vs_duckdb_rfm')} | {f('spark_vs_local', '{:.1f}')} "
            f"| {f('inertia_vs_naive', '{:+.4%}')} |"
        )
    lines += ["", "Stage times (seconds) inside each process:", ""]
    for r in results:
        c = r["contenders"]
        lines.append(f"- {r['rows']:,} rows")
        for name in ("cli", "cli-quarantine", "local", "naive", "spark"):
            if c.get(name, {}).get("ok"):
                lines.append(f"  - {name}: {_stage_line(c[name])}")
        fit = (c.get("local") or {}).get("fit")
        if fit:
            lines.append(f"  - local K-Means path: {json.dumps(fit)}")
    km = [r for r in results if (r["contenders"].get("kmeans") or {}).get("ok")]
    if km:
        lines += [
            "",
            "K-Means on the customers of the local run (Min-Max scaled RFM, K=4): scikit-learn's full",
            "`KMeans(n_init=10)` against rfmseg's fit (k-means++ with 10 restarts on a seeded sample, then Lloyd",
            "iterations on all customers, above 50,000 customers; the exact fit below), and `choose_k` (K=2..10,",
            "silhouette on a 10,000-customer sample, bootstrap stability on it) on the same customers:",
            "",
            "| customers | full KMeans(n_init=10) | rfmseg fit | time ratio | inertia gap | path | choose-k |",
            "|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in km:
            k = r["contenders"]["kmeans"]
            s = k["stages"]
            lines.append(
                f"| {k['customers']:,} | {s['full_kmeans']:.1f} s | {s['rfmseg_fit']:.2f} s | {k['time_ratio']:.3f} "
                f"| {k['inertia_gap']:+.4%} | {k['rfmseg']['method']}"
                + (f", sample {k['rfmseg']['sample_size']:,}" if k["rfmseg"].get("sample_size") else "")
                + (f", then {k['rfmseg']['pre_refine']['size']:,}" if k["rfmseg"].get("pre_refine") else "")
                + f" | {s['choose_k']:.1f} s |"
            )
    lines += ["", *target_lines(results)]
    failed = [(r["rows"], n, c) for r in results for n, c in r["contenders"].items() if not c.get("ok")]
    if failed:
        lines += ["", "Not measured:", ""]
        lines += [f"- {rows:,} rows, {n}: {c.get('skipped') or c.get('error')}" for rows, n, c in failed]
    return "\n".join(lines) + "\n"


def target_lines(results: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each with the measured figure and whether it is met (largest scale measured)."""
    if not results:
        return []
    big = results[-1]
    c, q = big["contenders"], big["ratios"]
    local = c.get("local") or {}
    checks: list[tuple[str, str, bool | None]] = []
    if local.get("ok"):
        checks.append(("end to end under 30 s", f"{local['wall_s']:.1f} s", local["wall_s"] < TARGETS["end_to_end_s"]))
        mem = local["peak_rss_gib"]
        checks.append(("peak RSS under 3 GiB", f"{mem:.2f} GiB", mem < TARGETS["peak_rss_gib"]))
    if "speedup_vs_naive" in q:
        v = q["speedup_vs_naive"]
        checks.append(("at least 4× faster than the naive baseline", f"{v:.1f}×", v >= TARGETS["speedup_vs_naive"]))
        m = q["memory_vs_naive"]
        checks.append(("at most 1/4 of its memory", f"{m:.2f}", m <= TARGETS["memory_vs_naive"]))
    if "vs_rfm_query" in q:
        v = q["vs_rfm_query"]
        checks.append(("at most 2× the RFM query alone", f"{v:.2f}×", v <= TARGETS["vs_rfm_query"]))
    for r in results:
        k = r["contenders"].get("kmeans") or {}
        if k.get("ok") and k["rfmseg"]["method"] != "exact":
            gap, ratio = k["inertia_gap"], k["time_ratio"]
            ok = gap <= TARGETS["kmeans_inertia_gap"] and ratio <= TARGETS["kmeans_time_vs_full"]
            checks.append(
                (f"K-Means at {k['customers']:,} customers: inertia within 0.5 %, time ≤ 1/10 of the full fit",
                 f"{gap:+.3%}, {ratio:.3f}", ok)
            )  # fmt: skip
    by_rows = {r["rows"]: r["ratios"] for r in results}
    one_m, big_q = by_rows.get(1_000_000, {}), by_rows.get(100_000_000, {})
    if "cli_speedup_vs_naive" in one_m:
        v = one_m["cli_speedup_vs_naive"]
        checks.append(("`rfmseg run` at 1M lines at least 3× faster than the notebook", f"{v:.2f}×",
                       v >= TARGETS["cli_speedup_vs_naive_1m"]))  # fmt: skip
    for key, label in (("cli", "clean path"), ("cliq", "quarantine path")):
        if f"{key}_vs_rfm_query" in big_q:
            v = big_q[f"{key}_vs_rfm_query"]
            checks.append((f"`rfmseg run` at 100M lines, {label}: at most 1.4× the RFM query", f"{v:.2f}×",
                           v <= TARGETS["cli_vs_rfm_query_100m"]))  # fmt: skip
    if "cli_speedup_vs_naive" in big_q:
        v = big_q["cli_speedup_vs_naive"]
        checks.append(("`rfmseg run` at 100M lines at least 6× faster than the notebook", f"{v:.1f}×",
                       v >= TARGETS["cli_speedup_vs_naive_100m"]))  # fmt: skip
    k = c.get("kmeans") or {}
    if k.get("ok"):
        t = k["stages"]["choose_k"]
        checks.append((f"choose-k at {k['customers']:,} customers under a minute", f"{t:.1f} s", t < 60))
    out = [f"Targets, measured at {big['rows']:,} rows:", "", "| target | measured | met |", "|---|---:|---|"]
    out += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
    return out


def write_doc(path: Path = DOC) -> None:
    """Replace the ``## Scale`` section of docs/performance.md (the rest of the file is left as it is)."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale_*.json"))]
    section = scale_section(results)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    pattern = re.compile(r"^## Scale\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    print(f"{path.relative_to(REPO)}: ## Scale rewritten from {len(results)} result file(s)", file=sys.stderr)


def _skips(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, limit = part.partition(">")
        if name not in CONTENDERS or not limit:
            raise SystemExit(f"error: --skip '{part}' should look like naive>1e7 (contender>rows)")
        out[name] = generate.parse_rows(limit)[0]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1e6,1e7,1e8", help="row counts (1e6,1e7,1e8 or 1M,10M,100M)")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help=f"subset of {','.join(CONTENDERS)}")
    p.add_argument("--skip", default="", help="contender>rows pairs not to run above a size, e.g. spark>1e7")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1, help="runs of each contender; the median is kept")
    p.add_argument("--spark-master", default="local[2]")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a contender is stopped")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    p.add_argument(
        "--merge", action="store_true", help="keep the other contenders' figures from the existing scale_<rows>.json"
    )
    p.add_argument("--doc-only", action="store_true", help="only rewrite the doc from bench/results/scale_*.json")
    p.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args)
    if args.doc_only:
        write_doc()
        return 0
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"error: unknown contender(s) {', '.join(sorted(unknown))}; use {', '.join(CONTENDERS)}")
    if "kmeans" in args.contenders and "local" not in args.contenders:
        raise SystemExit("error: the kmeans contender reads the local run's customers; add local to --contenders")
    args.skip_above = _skips(args.skip)
    for rows in generate.parse_rows(args.rows):
        bench_scale(rows, args)
    if not args.no_doc:
        write_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
