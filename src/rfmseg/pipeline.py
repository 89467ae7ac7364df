"""The job end to end: read -> validate -> RFM -> fit -> assign -> profile -> write the run.

``segment`` is the Python API behind ``rfmseg run`` and ``rfmseg demo``. The pure stages (features, model,
profile) take and return tables; this module is the edge that opens files and writes the run folder.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rfmseg import features
from rfmseg.errors import ParameterError
from rfmseg.io import Policy, Prepared, open_source, prepare
from rfmseg.model import SegmentModel
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary
from rfmseg.profile import insights, segment_table
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


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("rfmseg", "duckdb", "pyarrow", "numpy", "scikit-learn", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "unknown"
    return out


def parse_as_of(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ParameterError(f"--as-of '{value}' is not a date; use YYYY-MM-DD, e.g. 2024-12-31") from None


def load_rfm(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    columns: dict[str, str] | None = None,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    timer: Timer | None = None,
) -> tuple[Prepared, pa.Table]:
    """Read and judge ``source`` and compute its RFM table (or take a ready RFM table as it is)."""
    timer = timer or Timer()
    with timer.stage("read"):
        src = open_source(con, source)
    with timer.stage("validate"):
        prepared = prepare(con, src, columns, policy, parse_as_of(as_of))
    with timer.stage("rfm"):
        if prepared.kind == "rfm":
            rfm = features.rfm_from_table(con, prepared.view)
        else:
            assert prepared.as_of is not None
            rfm = features.compute_rfm(con, prepared.view, prepared.as_of)
    return prepared, rfm


def rfm_matrix(rfm: pa.Table) -> np.ndarray:
    return np.column_stack(
        [rfm.column(c).to_numpy(zero_copy_only=False).astype(float) for c in ("recency_days", "frequency", "monetary")]
    )


def build_summary(
    run_id: str, as_of: date | None, model: SegmentModel, rfm: pa.Table, segments: list[str], currency: str = "$"
) -> dict[str, Any]:
    df = rfm.select(["recency_days", "frequency", "monetary"]).to_pandas()
    reasons = dict(zip(model.names_, model.reasons_, strict=True))
    table = segment_table(df, segments, model.vocabulary, reasons)
    return {
        "run_id": run_id,
        "as_of": as_of.isoformat() if as_of else None,
        "k": model.k,
        "transform": model.transform,
        "n_customers": rfm.num_rows,
        "total_revenue": round(float(df["monetary"].sum()), 2),
        "currency": currency,
        "segments": table,
        "insights": insights(df, table, currency),
    }


def segment(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    k: int = 4,
    transform: str = "minmax",
    n_init: int = 10,
    random_state: int = 42,
    bad_rows: str = "error",
    policy: Policy | None = None,
    vocabulary: Vocabulary = DEFAULT_VOCABULARY,
    currency: str = "$",
    runs_dir: str | Path | None = DEFAULT_RUNS_DIR,
    input_label: str | None = None,
) -> RunResult:
    """Segment the customers of ``source`` (path, pandas DataFrame or Arrow table).

    ``columns`` maps canonical fields (customer_id, order_id, order_date, amount, or quantity + unit_price;
    or recency_days, frequency, monetary for a ready RFM table) to the source's column names.
    With ``runs_dir=None`` nothing is written.
    """
    started = datetime.now(UTC)
    timer = Timer()
    if bad_rows not in ("error", "quarantine"):
        raise ParameterError(f"--bad-rows '{bad_rows}' is not allowed; use error or quarantine")
    policy = policy or Policy(bad_rows=bad_rows)  # type: ignore[arg-type]
    model = SegmentModel(k=k, transform=transform, n_init=n_init, random_state=random_state, vocabulary=vocabulary)
    con = duckdb.connect()
    try:
        prepared, rfm = load_rfm(con, source, columns, as_of, policy, timer)
        x = rfm_matrix(rfm)
        with timer.stage("fit"):
            model.fit(x)
        with timer.stage("assign"):
            assigned = model.predict(x)
        run_id = new_run_id(started)
        with timer.stage("profile"):
            summary = build_summary(run_id, prepared.as_of, model, rfm, assigned.segments, currency)
            summary["rows"] = prepared.rows_summary()
        assignments = pa.table(
            {
                "customer_id": rfm.column("customer_id"),
                "segment": pa.array(assigned.segments, pa.string()),
                "recency_days": rfm.column("recency_days"),
                "frequency": rfm.column("frequency"),
                "monetary": rfm.column("monetary"),
                "distance": pa.array(assigned.distance),
                "margin": pa.array(assigned.margin),
                "cluster": pa.array(assigned.labels.astype("int32")),
            }
        )
        manifest = {
            "run_id": run_id,
            "created": started.isoformat(),
            "input": {
                "path": input_label or prepared.source.label,
                "sha256": prepared.source.sha256,
                "format": prepared.source.format,
                "kind": prepared.kind,
                "columns": prepared.mapping,
            },
            "as_of": prepared.as_of.isoformat() if prepared.as_of else None,
            "rows": prepared.rows_summary(),
            "customers": rfm.num_rows,
            "params": {
                "k": k,
                "transform": transform,
                "n_init": n_init,
                "random_state": random_state,
                "bad_rows": policy.bad_rows,
            },
            "model": {"inertia": model.inertia_, "n_iter": model.n_iter_},
            "versions": package_versions(),
        }
        run = None
        if runs_dir is not None:
            with timer.stage("write"):
                run = _write_run(
                    Path(runs_dir), run_id, con, prepared, model, rfm, assignments, summary, manifest, timer
                )
        manifest["timings"] = timer.stages
        return RunResult(run_id, run, summary, manifest, model, rfm, assignments)
    finally:
        con.close()


def _write_run(
    runs_dir: Path,
    run_id: str,
    con: duckdb.DuckDBPyConnection,
    prepared: Prepared,
    model: SegmentModel,
    rfm: pa.Table,
    assignments: pa.Table,
    summary: dict[str, Any],
    manifest: dict[str, Any],
    timer: Timer,
) -> Run:
    t0 = time.perf_counter()
    writer = RunWriter(runs_dir, run_id)
    try:
        writer.json("model.json", model.to_dict())
        writer.parquet("rfm.parquet", rfm)
        writer.parquet("assignments.parquet", assignments)
        writer.json("summary.json", summary)
        _write_quarantine(con, prepared, writer.path("quarantine.parquet"))
        # the manifest is the last file: its write timing covers everything written before it
        manifest["timings"] = {**timer.stages, "write": round(time.perf_counter() - t0, 4)}
        writer.json("manifest.json", manifest)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _write_quarantine(con: duckdb.DuckDBPyConnection, prepared: Prepared, path: Path) -> None:
    """Every quarantined row with its reason and its original values (as text), straight from DuckDB."""
    originals = ", ".join(
        'CAST(s."{0}" AS VARCHAR) AS "{0}"'.format(c.replace('"', '""')) for c in prepared.source.columns
    )
    target = str(path).replace("'", "''")
    con.execute(
        f"COPY (SELECT q._row AS row_number, q._reason AS reason, {originals} "
        f"FROM (SELECT _row, _reason FROM {prepared.view} WHERE _reason IS NOT NULL) q "
        f"JOIN {prepared.source.name} s USING (_row) ORDER BY q._row) TO '{target}' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
