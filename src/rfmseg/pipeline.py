"""The job end to end: read -> validate -> RFM -> fit -> assign -> profile -> write the run.

``segment`` is the Python API behind ``rfmseg run`` and ``rfmseg demo``. The pure stages (features, model,
profile) take and return tables; this module is the edge that opens files and writes the run folder.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from rfmseg.engines import open_engine
from rfmseg.errors import ParameterError
from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS, FeatureSet, Units
from rfmseg.io import Policy
from rfmseg.io.intake import Intake, connect, read_rfm
from rfmseg.io.validate import net_nonpositive, sufficiency_warnings
from rfmseg.manifest import package_versions, run_manifest
from rfmseg.model import SegmentModel
from rfmseg.model.choose_k import SINGLE_THREAD_BELOW
from rfmseg.model.kmeans import preload_fit_modules
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary
from rfmseg.presets import Preset, build_policy, get_preset
from rfmseg.profile import insights, pareto_curve, segment_table
from rfmseg.report import write_run_report
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, RunWriter, new_run_id


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 4)


@dataclass
class RunResult:
    run_id: str
    run: Run | None
    summary: dict[str, Any]
    manifest: dict[str, Any]
    model: SegmentModel
    rfm: pa.Table
    assignments: pa.Table

    @property
    def path(self) -> Path | None:
        return self.run.path if self.run else None

    def segment_of(self, customer_id: str) -> str:
        ids = self.assignments.column("customer_id").to_pylist()
        return self.assignments.column("segment")[ids.index(customer_id)].as_py()


class _Digest:
    """A write-only file that feeds what is written to it into a SHA-256."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


HASH_BATCH = 1 << 20
"""rows per record batch of the fingerprint's stream (a table up to this size is one batch)"""


def rfm_sha256(rfm: pa.Table) -> str:
    """A fingerprint of an RFM table's content (ids and values, in its order): same data, same hash.

    The SHA-256 of the table's Arrow IPC stream in record batches of :data:`HASH_BATCH` rows (however
    the table happens to be chunked), hashed as it is written: memory for one batch, not a copy of the table."""
    wanted = ("customer_id", "recency_days", "frequency", "monetary", "first_order_date")
    table = rfm.select([c for c in wanted if c in rfm.column_names])
    digest = _Digest()
    with pa.ipc.new_stream(pa.PythonFile(digest, mode="w"), table.schema) as writer:
        for start in range(0, max(table.num_rows, 1), HASH_BATCH):  # an empty table is one empty batch
            writer.write_table(table.slice(start, HASH_BATCH).combine_chunks())
    return digest.hash.hexdigest()


def provenance(
    run_id: str,
    created: datetime,
    as_of: date | None,
    input_sha256: str | None,
    rfm: pa.Table,
    data_sha256: str | None = None,
) -> dict[str, Any]:
    """What model.json records about how it was trained (the model version is the id of the training run)."""
    return {
        "model_version": run_id,
        "trained_by_run": run_id,
        "created": created.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "input_sha256": input_sha256,
        "data_sha256": data_sha256 or rfm_sha256(rfm),
        "n_customers": rfm.num_rows,
        "versions": package_versions(),
    }


def rfm_matrix(rfm: pa.Table) -> np.ndarray:
    """(n, 3) recency_days, frequency, monetary as floats, column-major: every later step (transform,
    K-Means passes, naming, profiles) reads it a column at a time."""
    x = np.empty((rfm.num_rows, 3), order="F")
    for j, c in enumerate(("recency_days", "frequency", "monetary")):
        x[:, j] = rfm.column(c).to_numpy(zero_copy_only=False)
    return x


def build_summary(
    run_id: str,
    as_of: date | None,
    model: SegmentModel,
    rfm: pa.Table,
    segments: list[str],
    currency: str = "$",
    units: Units = DEFAULT_UNITS,
    x: np.ndarray | None = None,
) -> dict[str, Any]:
    """The run's summary (segment table, insights); ``x`` is the RFM matrix of ``rfm`` when at hand (read
    in place instead of copying the three columns again)."""
    if x is None:
        df = rfm.select(["recency_days", "frequency", "monetary"]).to_pandas()
    else:
        df = pd.DataFrame(x, columns=["recency_days", "frequency", "monetary"], copy=False)
    reasons = dict(zip(model.names_, model.reasons_, strict=True))
    table = segment_table(df, segments, model.vocabulary, reasons)
    curve = pareto_curve(df["monetary"].to_numpy(dtype=float))
    return {
        "run_id": run_id,
        "as_of": as_of.isoformat() if as_of else None,
        "k": model.k,
        "transform": model.transform,
        "n_customers": rfm.num_rows,
        "total_revenue": round(float(df["monetary"].sum()), 2),
        "currency": currency,
        "segments": table,
        "insights": insights(df, table, currency, units=units, curve=curve),
        "units": units.to_dict(),
        "pareto": curve,
    }


def segment(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    k: int = 4,
    transform: str | None = None,
    n_init: int = 10,
    random_state: int = 42,
    bad_rows: str | None = None,
    policy: Policy | None = None,
    vocabulary: Vocabulary | None = None,
    currency: str | None = None,
    runs_dir: str | Path | None = DEFAULT_RUNS_DIR,
    input_label: str | None = None,
    preset: str | Preset | None = None,
    returns: str | None = None,
    date_format: str | None = None,
    feature_set: FeatureSet | None = None,
    sample_size: int | None = None,
    engine: str = "local",
    spark_master: str | None = None,
    output: str | None = None,
    store: str | None = None,
) -> RunResult:
    """Segment the customers of ``source`` (path, pandas DataFrame or Arrow table).

    ``columns`` maps canonical fields (customer_id, order_id, order_date, amount, or quantity + unit_price;
    or recency_days, frequency, monetary for a ready RFM table) to the source's column names.
    With ``runs_dir=None`` nothing is written.
    ``preset`` (a name such as ``"online-retail"``, or a Preset) supplies the column map, the row policy, the
    transform, vocabulary and currency; arguments given explicitly win. ``returns`` is ``net`` or ``exclude``.
    ``feature_set`` (default: the preset's) defines R, F and M; ``source`` may also be a
    :class:`rfmseg.io.sources.SourceSpec` (a file glob, a PostgreSQL query).
    ``store``: the profile store URL to publish the run to once it is written (``manifest["publish"]`` is
    the report): from the Spark executors on engine "spark", with :func:`rfmseg.lifecycle.publish_run`
    (as ``rfmseg run`` does) on the local engine, which needs ``runs_dir`` for the run it publishes.
    """
    if store is not None and runs_dir is None and engine == "local":
        raise ParameterError("store= publishes the run folder, and runs_dir=None writes none; give runs_dir")
    # engine "local": this function does the work; "spark": read, judge, RFM and K-Means run on Spark
    backend = open_engine(engine, spark_master=spark_master, output=output)
    started = datetime.now(UTC)
    timer = Timer()
    preset = get_preset(preset) if isinstance(preset, str) else preset
    policy = build_policy(preset, policy, bad_rows, returns, date_format)
    transform = transform or (preset.transform if preset else "minmax")
    currency = currency or (preset.currency if preset else "$")
    vocabulary = vocabulary or (preset.vocabulary if preset else DEFAULT_VOCABULARY)
    feature_set = feature_set or (preset.features if preset else DEFAULT_FEATURES)
    units = preset.units if preset else DEFAULT_UNITS
    model = SegmentModel(
        k=k,
        transform=transform,
        n_init=n_init,
        random_state=random_state,
        vocabulary=vocabulary,
        sample_size=sample_size,
    )
    con = connect()
    run_id = new_run_id(started)
    writer: RunWriter | None = None
    background = ThreadPoolExecutor(2)
    # DuckDB reads and judges the data without the GIL: the libraries the fit, the naming and the report's
    # K chart use are imported meanwhile
    background.submit(preload_fit_modules)
    try:
        if backend is None:
            prepared = read_rfm(con, source, columns, as_of, policy, preset, feature_set, timer)
        else:
            prepared = backend.load_rfm(source, columns, as_of, policy, timer, preset, feature_set)
        rfm = prepared.rfm
        # the run's fingerprint and its rfm.parquet need only the RFM table: they are computed on threads of
        # their own (hashing and Parquet encoding release the GIL) while the model is fitted
        writer = RunWriter(Path(runs_dir), run_id) if runs_dir is not None else None
        digest = background.submit(rfm_sha256, rfm)
        rfm_file = background.submit(writer.parquet, "rfm.parquet", rfm) if writer is not None else None
        x = rfm_matrix(rfm)
        # one thread below 100,000 customers: OpenMP threads spin-waiting for a busy core made this stage
        # 0.6-3 s instead of 0.05 s on the Online Retail run (bench/bench_online_retail.py)
        with timer.stage("fit"), threadpool_limits(1 if x.shape[0] < SINGLE_THREAD_BELOW else None):
            if backend is None:
                assigned = model.fit_predict(x)  # the fit's last pass scores the training customers
            else:
                backend.fit(model, x)
        with timer.stage("assign"):
            if backend is not None:
                assigned = model.predict(x)
            labels = pa.array(assigned.labels.astype(np.int32, copy=False))
            assignments = pa.table(
                {
                    "customer_id": rfm.column("customer_id"),
                    "segment": pc.take(pa.array(model.names_, pa.string()), labels),
                    "recency_days": rfm.column("recency_days"),
                    "frequency": rfm.column("frequency"),
                    "monetary": rfm.column("monetary"),
                    "distance": pa.array(assigned.distance),
                    "margin": pa.array(assigned.margin),
                    "cluster": labels,
                }
            )
        # encoding 9.6M assignments takes seconds on one core: it runs while the profile and report are made
        assignments_file = (
            background.submit(writer.parquet, "assignments.parquet", assignments) if writer is not None else None
        )
        with timer.stage("profile"):
            segments = pd.Categorical.from_codes(assigned.labels, categories=model.names_)
            summary = build_summary(run_id, prepared.as_of, model, rfm, segments, currency, units, x)
            summary["preset"] = preset.name if preset else None
            summary["rows"] = prepared.rows_summary()
            summary["warnings"] = sufficiency_warnings(rfm, k, currency)
            summary["net_nonpositive"] = net_nonpositive(rfm)
        model.provenance_ = provenance(
            run_id, started, prepared.as_of, prepared.source.sha256, rfm, data_sha256=digest.result()
        )
        manifest = run_manifest(
            run_id=run_id,
            kind="run",
            model_version=run_id,
            started=started,
            prepared=prepared,
            rfm=rfm,
            data_sha256=model.provenance_["data_sha256"],
            input_label=input_label,
            params={
                "k": k,
                "transform": transform,
                "n_init": n_init,
                "random_state": random_state,
                "sample_size": sample_size,
                "bad_rows": policy.bad_rows,
                "preset": preset.name if preset else None,
                "features": feature_set.to_dict(),
                "returns": policy.returns,
            },
            warnings=summary["warnings"],
            net_nonpositive=summary["net_nonpositive"],
            model={"inertia": model.inertia_, "n_iter": model.n_iter_, "fit": model.fit_info_},
            engine="local" if backend is None else backend.describe(),
        )
        if backend is not None and output is not None:
            with timer.stage("output"):
                manifest["output"] = backend.write_output(run_id, model)
        run = None
        if writer is not None:
            with timer.stage("write"):
                run = _write_run(
                    Path(writer.runs_dir),
                    run_id,
                    con,
                    prepared,
                    model,
                    rfm,
                    assignments,
                    summary,
                    manifest,
                    timer,
                    writer=writer,
                    files=[f for f in (rfm_file, assignments_file) if f is not None],
                )
        if store is not None:
            from rfmseg.lifecycle import publish_from_executors, publish_run  # (lifecycle imports this module)

            with timer.stage("publish"):
                if backend is not None:
                    manifest["publish"] = publish_from_executors(backend, manifest, model, assignments, store, run)
                else:
                    assert run is not None and runs_dir is not None
                    manifest["publish"] = publish_run(run, runs_dir, store)
        manifest["timings"] = timer.stages
        return RunResult(run_id, run, summary, manifest, model, rfm, assignments)
    except BaseException:
        background.shutdown(wait=True)  # nothing may still be writing into the folder removed next
        if writer is not None:
            writer.abort()
        if backend is not None:
            backend.discard_output()
        raise
    finally:
        background.shutdown(wait=True)
        con.close()
        if backend is not None:
            backend.close()


def _write_run(
    runs_dir: Path,
    run_id: str,
    con: duckdb.DuckDBPyConnection,
    prepared: Intake,
    model: SegmentModel,
    rfm: pa.Table,
    assignments: pa.Table,
    summary: dict[str, Any],
    manifest: dict[str, Any],
    timer: Timer,
    *,
    writer: RunWriter | None = None,
    files: list[Future[None]] | None = None,
) -> Run:
    """Write the run folder and commit it. ``writer``: the run's folder when it was opened earlier, and
    ``files`` the writing of rfm.parquet and assignments.parquet into it when that was started already (on
    other threads, while the model was fitted and the profile made)."""
    t0 = time.perf_counter()
    writer = writer or RunWriter(runs_dir, run_id)
    started: list[Future[None]] = list(files or [])
    try:
        # the big tables are encoded on threads of their own (Arrow releases the GIL) while this one writes
        # the rest; the pool is left only once they are written or failed
        with ThreadPoolExecutor(2) as pool:
            if not started:
                started.append(pool.submit(writer.parquet, "rfm.parquet", rfm))
                started.append(pool.submit(writer.parquet, "assignments.parquet", assignments))
            writer.json("model.json", model.to_dict())
            writer.json("summary.json", summary)
            _write_quarantine(con, prepared, writer.path("quarantine.parquet"))
            # the HTML report (with the K choice it shows) is part of the run, written before the commit
            write_run_report(writer.tmp, runs_dir, summary, manifest, assignments)
            for written in started:
                written.result()
        # the manifest is the last file: its write timing covers everything written before it
        manifest["timings"] = {**timer.stages, "write": round(time.perf_counter() - t0, 4)}
        writer.json("manifest.json", manifest)
        return writer.commit()
    except BaseException:
        for written in started:
            written.cancel()
        concurrent.futures.wait(started)  # nothing may still be writing into the folder removed next
        writer.abort()
        raise


def _write_quarantine(con: duckdb.DuckDBPyConnection, prepared: Intake, path: Path) -> None:
    """Every quarantined row with its reason and its original values (as text), straight from DuckDB."""
    if hasattr(prepared, "write_quarantine"):  # judged by another engine, which writes them itself
        prepared.write_quarantine(path)
        return
    originals = ", ".join(
        'CAST(s."{0}" AS VARCHAR) AS "{0}"'.format(c.replace('"', '""')) for c in prepared.source.columns
    )
    target = str(path).replace("'", "''")
    rows = (
        f"(SELECT _row, _reason FROM {prepared.view} WHERE _reason IS NOT NULL) q "
        f"JOIN {prepared.source.name} s USING (_row)"
    )
    if not any(prepared.quarantined.values()):
        # nothing quarantined (the counts say so): the same columns, no rows, without reading the input again
        rows = f"(SELECT CAST(NULL AS BIGINT) AS _row, CAST(NULL AS VARCHAR) AS _reason) q, {prepared.source.name} s"
        rows += " WHERE false"
    con.execute(
        f"COPY (SELECT q._row AS row_number, q._reason AS reason, {originals} FROM {rows} ORDER BY q._row) "
        f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
    )
