"""The one run writer: every kind of run (run, refresh, retrain) writes its folder with :func:`write_run`,
its assignments made by :func:`rfmseg.model.scoring.score` (one schema, ``ASSIGNMENT_COLUMNS``) and its
summary by :func:`build_summary`.

The cold-start rule is a parameter of the scoring, not of the writer: a refresh and a retrain apply the rule
they are given (default 2 orders, 30 days); ``rfmseg run`` scores with the rule off
(:data:`rfmseg.model.scoring.OFF`), so a first segmentation's segments are its clusters (see
docs/production.md, "Cold start").
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rfmseg.engines.base import Engine
from rfmseg.errors import EnvironmentFailure, os_failure
from rfmseg.features import DEFAULT_UNITS, Units
from rfmseg.io.intake import Intake
from rfmseg.model import SegmentModel
from rfmseg.model.scoring import RHYTHM_COLUMNS
from rfmseg.profile import activation_project, insights, pareto_curve, segment_table
from rfmseg.report import write_run_report
from rfmseg.runs import Run, RunWriter
from rfmseg.runs.artifacts import Manifest, Rows, Summary
from rfmseg.timing import Timer


def build_summary(
    run_id: str,
    as_of: date | None,
    model: SegmentModel,
    rfm: pa.Table,
    segments: Any,
    currency: str = "$",
    units: Units = DEFAULT_UNITS,
    x: np.ndarray | None = None,
    *,
    preset: str | None,
    rows: Rows,
    warnings: list[Any],
) -> Summary:
    """The run's summary (segment table, insights) for the customers of ``rfm`` in ``segments`` (a name per
    customer), with the preset's name, the input's ``rows`` and the run's ``warnings``; ``x`` is the RFM
    matrix of ``rfm`` when at hand (read in place instead of copying the three columns again). The kind of
    run adds its own keys (:class:`rfmseg.runs.artifacts.Summary`)."""
    import pandas as pd  # imported where used (a run imports it on a thread while DuckDB reads the data)

    if x is None:
        df = rfm.select(["recency_days", "frequency", "monetary"]).to_pandas()
    else:
        df = pd.DataFrame(x, columns=["recency_days", "frequency", "monetary"], copy=False)
    reasons = dict(zip(model.names_, model.reasons_, strict=True))
    table = segment_table(df, segments, model.vocabulary, reasons)
    project = activation_project(table, currency, units)
    for row in table:
        if project and row["name"] == project[0]:
            row["sequencing"] = project[1]  # said with its action: where the priority order is told
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
        "preset": preset,
        "rows": rows,
        "warnings": warnings,
    }


def rhythm_summary(assignments: pa.Table, status: dict[str, Any]) -> dict[str, Any]:
    """The rhythm model's ``status`` (:func:`rfmseg.jobs.rhythm.fit_model_rhythm`) and, when it scored,
    per segment (in the order of the segment table's largest first) and over all customers: the customers
    scored, and the mean, 25th percentile, median and 75th percentile of p_alive, expected_orders_90d and
    expected_value_90d (customers without a dated order history left out)."""
    out: dict[str, Any] = {k: v for k, v in status.items() if k in ("status", "model", "reason")}
    if not all(c in assignments.column_names for c in RHYTHM_COLUMNS) or assignments.column("p_alive").null_count == (
        assignments.num_rows
    ):
        return out
    con = duckdb.connect()
    try:
        con.register("a", assignments.select(["segment", *RHYTHM_COLUMNS]))
        # one quantile_cont of the three quartiles per column: one sort each, not three (at 9.6M customers
        # 1.6 s instead of 2.6-3.0 s; the same interpolated values)
        figures = ", ".join(f"avg({c}), quantile_cont({c}, [0.25, 0.5, 0.75])" for c in RHYTHM_COLUMNS)
        rows = con.execute(
            f"SELECT segment, count(p_alive), {figures} FROM a GROUP BY GROUPING SETS ((segment), ()) "
            "ORDER BY segment IS NULL, count(*) DESC, segment"
        ).fetchall()
    finally:
        con.close()
    table = []
    for row in rows:
        entry: dict[str, Any] = {"segment": row[0], "customers": row[1]}
        for i, c in enumerate(RHYTHM_COLUMNS):
            mean, quartiles = row[2 + 2 * i], row[3 + 2 * i] or [None, None, None]
            vals = (mean, *quartiles)
            entry[c] = dict(zip(("mean", "p25", "median", "p75"), (_round(v) for v in vals), strict=True))
        table.append(entry)
    out["segments"] = [e for e in table if e["segment"] is not None]
    out["all"] = next(({k: v for k, v in e.items() if k != "segment"} for e in table if e["segment"] is None), None)
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def write_run(
    writer: RunWriter,
    engine: Engine,
    prepared: Intake,
    model: SegmentModel,
    rfm: pa.Table,
    assignments: pa.Table,
    summary: Summary | dict[str, Any],
    manifest: Manifest | dict[str, Any],
    timer: Timer,
    *,
    files: dict[str, Future[None]] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Run:
    """Write the run folder opened by ``writer`` and commit it: rfm.parquet, assignments.parquet, model.json,
    summary.json, quarantine.parquet (by ``engine``), report.html, and manifest.json last (its ``timings``
    cover the writing). ``files``: the files among rfm.parquet, assignments.parquet and quarantine.parquet
    whose writing was started already, by name (on other threads, while the model was fitted and the profile
    made); ``extra`` writes the files a kind of run adds into the folder it is given (an incremental
    refresh's RFM state). On failure nothing is left behind."""
    t0 = time.perf_counter()
    started: dict[str, Future[None]] = dict(files or {})
    try:
        # the big tables are encoded on threads of their own (Arrow releases the GIL) while this one writes
        # the rest; the pool is left only once they are written or failed
        with ThreadPoolExecutor(2) as pool:
            for name, table in (("rfm.parquet", rfm), ("assignments.parquet", assignments)):
                if name not in started:
                    started[name] = pool.submit(writer.parquet, name, table)
            writer.json("model.json", model.to_dict())
            writer.json("summary.json", summary)
            if "quarantine.parquet" not in started:
                engine.write_quarantine(prepared, writer.path("quarantine.parquet"))
            # the HTML report (with the K choice it shows) is part of the run, written before the commit
            tables = [started["rfm.parquet"], started["assignments.parquet"]]
            write_run_report(
                writer.tmp,
                writer.runs_dir,
                summary,
                manifest,
                assignments,
                assignments_written=lambda: [written.result() for written in tables],
            )
            if extra is not None:
                extra(writer.tmp)
            for written in started.values():
                written.result()
        # the manifest is the last file: its write timing covers everything written before it
        manifest["timings"] = {**timer.stages, "write": round(time.perf_counter() - t0, 4)}
        writer.json("manifest.json", manifest)
        return writer.commit()
    except BaseException as exc:
        for written in started.values():
            written.cancel()
        concurrent.futures.wait(started.values())  # nothing may still be writing into the folder removed next
        writer.abort()
        if isinstance(exc, OSError):
            raise os_failure(exc, f"writing the run to {writer.runs_dir}", "runs_dir") from None
        if isinstance(exc, duckdb.IOException):
            raise EnvironmentFailure(
                f"writing the run to {writer.runs_dir}: {str(exc).splitlines()[0]}; free space and run again"
            ) from None
        raise
