"""Benchmark of publishing from the Spark executors (the staged publish of the profile stores).

For each input it runs the Spark engine's read, RFM and K-Means once (local[2] by default), then per
backend, in a fresh namespace: publishes from the executors into the empty store, again (the history
read back for every batch), and once from the driver as ``rfmseg publish`` does (the assignments table
in one process) for comparison. Wall times of the whole publish (begin, the executors' job, commit);
prints a table and writes ``bench/results/spark_publish.json`` with the machine it ran on. The
namespaces are dropped at the end.

    .venv/bin/python bench/bench_spark_publish.py                          # the study, then ~1M customers
    .venv/bin/python bench/bench_spark_publish.py --inputs study --backends sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
try:
    import rfmseg  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from bench_scale import machine  # noqa: E402  (bench/bench_scale.py, next to this file)
from rfmseg.datasets import study  # noqa: E402
from rfmseg.engines.spark import PUBLISH_BATCH_ROWS, SparkEngine  # noqa: E402
from rfmseg.io import Policy  # noqa: E402
from rfmseg.model import SegmentModel  # noqa: E402
from rfmseg.model.scoring import rfm_matrix  # noqa: E402
from rfmseg.stores import open_store  # noqa: E402
from rfmseg.timing import Timer  # noqa: E402

INPUTS = {"study": str(study.path(study.ORDERS_FILE)), "10M": str(REPO / "bench/data/tx_10M.parquet")}
POLICIES = {
    "study": Policy(),
    # as bench_scale.py reads the generated files: cancellations have a C invoice prefix
    "10M": Policy(bad_rows="quarantine", returns_condition="order_id LIKE 'C%'"),
}
AS_OF = {"study": study.AS_OF, "10M": dt.date(2025, 1, 1)}
URLS = {"postgres": "postgresql://postgres@127.0.0.1:5432/test", "redis": "redis://127.0.0.1:6379/0"}


def prepare(engine: SparkEngine, name: str) -> tuple[SegmentModel, pa.Table, dict[str, float]]:
    timer = Timer()
    rfm = engine.load_rfm(INPUTS[name], None, AS_OF[name], POLICIES[name], timer, None, None).rfm
    x = rfm_matrix(rfm)
    model = SegmentModel(k=4, random_state=42)
    with timer.stage("fit"):
        engine.fit(model, x)
    assigned = model.predict(x)
    table = pa.table(
        {
            "customer_id": rfm["customer_id"],
            "segment": pc.take(pa.array(model.names_, pa.string()), pa.array(assigned.labels)),
            "recency_days": rfm["recency_days"],
            "frequency": rfm["frequency"],
            "monetary": rfm["monetary"],
            "distance": pa.array(assigned.distance),
        }
    )
    return model, table, timer.stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="study,10M", help="comma-separated: study, 10M")
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--batch-rows", type=int, default=PUBLISH_BATCH_ROWS)
    parser.add_argument("--out", default=str(REPO / "bench/results/spark_publish.json"))
    args = parser.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    engine = SparkEngine(spark_master=args.master)
    workdir = Path(tempfile.mkdtemp(prefix="rfmseg-spark-publish-"))
    results: dict[str, Any] = {
        "command": "python bench/bench_spark_publish.py " + " ".join(sys.argv[1:]),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "master": args.master,
        "batch_rows": args.batch_rows,
        "machine": {**machine(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "runs": [],
    }
    try:
        for name in args.inputs.split(","):
            as_of = AS_OF[name]
            t0 = time.perf_counter()
            model, table, stages = prepare(engine, name)
            print(f"{name}: {table.num_rows:,} customers prepared in {time.perf_counter() - t0:.1f} s", flush=True)
            results.setdefault("prepare", {})[name] = stages
            for backend in args.backends.split(","):
                url = f"sqlite:///{workdir / 'profiles.db'}" if backend == "sqlite" else URLS[backend]
                namespace = f"bench{uuid.uuid4().hex[:8]}"
                target = f"{url}?namespace={namespace}"
                row: dict[str, Any] = {"input": name, "customers": table.num_rows, "backend": backend}
                try:
                    for label, run_id in (("executors_empty", "run-1"), ("executors_history", "run-2")):
                        started = time.perf_counter()
                        report = engine.publish_from_executors(run_id, as_of, run_id, model, target, args.batch_rows)
                        row[label] = round(time.perf_counter() - started, 3)
                        row["batches"] = report["batches"]
                        assert report["customers"] == table.num_rows, report
                    with open_store(target) as store:
                        started = time.perf_counter()
                        store.publish(table, "run-3", as_of, "run-3")
                        row["driver_history"] = round(time.perf_counter() - started, 3)
                        assert store.count() == table.num_rows
                finally:
                    with open_store(target) as store:
                        store.drop()
                row["rate_executors_history"] = round(table.num_rows / row["executors_history"])
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        engine.close()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    header = ("input", "customers", "backend", "batches", "exec empty", "exec hist", "driver")
    print("\n{:>6} {:>10} {:>9} {:>7} {:>10} {:>10} {:>8}".format(*header))
    for r in results["runs"]:
        print(
            f"{r['input']:>6} {r['customers']:>10,} {r['backend']:>9} {r['batches']:>7} {r['executors_empty']:>9.2f}s "
            f"{r['executors_history']:>9.2f}s {r['driver_history']:>7.2f}s"
        )


if __name__ == "__main__":
    main()
