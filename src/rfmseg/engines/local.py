"""The local engine: DuckDB reads, judges and aggregates; scikit-learn fits; all in this process."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rfmseg.engines.base import publish_table
from rfmseg.errors import ParameterError
from rfmseg.features import FeatureSet
from rfmseg.io import Policy
from rfmseg.io.intake import Intake, connect, read_rfm
from rfmseg.io.readers import sql_identifier
from rfmseg.io.views import ORIGINAL
from rfmseg.model import SegmentModel
from rfmseg.model.segment_model import Assignment
from rfmseg.presets import Preset
from rfmseg.timing import Percent, Timer


class LocalEngine:
    """The engine of ``--engine local`` (the default), computing with one DuckDB connection (``con``,
    default :func:`rfmseg.io.intake.connect`) that it closes with :meth:`close`."""

    quarantine_alongside = True
    """the quarantine file is one DuckDB query on ``con``, which the fit, profile and report never use"""

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.con = con if con is not None else connect()

    def describe(self) -> str:
        return "local"

    def check_publish(self, writes_folder: bool) -> None:
        """The local engine publishes the run folder it wrote (as ``rfmseg publish`` would later)."""
        if not writes_folder:
            raise ParameterError("store= publishes the run folder, and runs_dir=None writes none; give runs_dir")

    def load_rfm(
        self,
        source: Any,
        columns: dict[str, str] | None,
        as_of: str | date | None,
        policy: Policy,
        timer: Timer,
        preset: Preset | None,
        feature_set: FeatureSet | None,
    ) -> Intake:
        return read_rfm(self.con, source, columns, as_of, policy, preset, feature_set, timer)

    def track_progress(self) -> Percent:
        """DuckDB's own measure of the running query (its progress bar, not printed); read from another thread."""
        try:
            self.con.execute("SET enable_progress_bar = true")
            self.con.execute("SET enable_progress_bar_print = false")
        except duckdb.Error:  # Jupyter without ipywidgets refuses the setting: no measure, only the stage
            return lambda: None
        con = self.con

        def percent() -> float | None:
            p = con.query_progress()
            return p if p >= 0 else None

        return percent

    def fit(self, model: SegmentModel, x: np.ndarray) -> Assignment:
        return model.fit_predict(x)  # the fit's last pass scores the training customers

    def write_quarantine(self, prepared: Intake, path: Path) -> None:
        """Every quarantined row with its reason and its original values (as text), straight from DuckDB: from
        the table of the rows set aside when the read kept one, else in one pass over the canonical view when it
        carries the source's columns (a streamed read), else joined to the source by row number."""
        target = str(path).replace("'", "''")
        src = prepared.source.name
        columns = [sql_identifier(c) for c in prepared.source.columns]
        carried = [f"q.{sql_identifier(ORIGINAL + c)}" for c in prepared.source.columns]
        if prepared.set_aside is not None:
            values, rows = carried, f"{prepared.set_aside} q"
        elif prepared.originals and any(prepared.quarantined.values()):
            values, rows = carried, f"{prepared.view} q WHERE q._reason IS NOT NULL"
        else:
            values = [f"s.{c}" for c in columns]
            rows = f"(SELECT _row, _reason FROM {prepared.view} WHERE _reason IS NOT NULL) q JOIN {src} s USING (_row)"
            if not any(prepared.quarantined.values()):
                # nothing quarantined (the counts say so): the same columns, no rows, without reading the input again
                rows = f"(SELECT CAST(NULL AS BIGINT) AS _row, CAST(NULL AS VARCHAR) AS _reason) q, {src} s WHERE false"
        originals = ", ".join(f"CAST({v} AS VARCHAR) AS {c}" for v, c in zip(values, columns, strict=True))
        self.con.execute(
            f"COPY (SELECT q._row AS row_number, q._reason AS reason, {originals} FROM {rows} ORDER BY q._row) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )

    def write_output(self, run_id: str, model: SegmentModel, timer: Timer) -> None:
        return None  # the run folder holds the customer tables

    def publish(
        self, url: str, run_id: str, as_of: date, model_version: str, model: SegmentModel, assignments: pa.Table
    ) -> dict[str, Any]:
        return publish_table(url, assignments, run_id, as_of, model_version)

    def discard_output(self) -> None:
        pass

    def close(self) -> None:
        self.con.close()
