"""``rfmseg assign``: score new customers with a stored model (no refit), after the cold-start rule; writes
no run (the assignments table has the schema of every run's, :data:`rfmseg.model.scoring.ASSIGNMENT_COLUMNS`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rfmseg.engines.local import LocalEngine
from rfmseg.io import Policy
from rfmseg.io.outputs import format_of, is_stream, put_in_place, staging_folder
from rfmseg.jobs.reading import ModelRef, Reading, load_model, reading
from rfmseg.model.scoring import OFF, REASON_COLD, ColdStart, cold_warnings, score
from rfmseg.presets import ReadFormats
from rfmseg.runs import DEFAULT_RUNS_DIR
from rfmseg.runs.artifacts import Rows
from rfmseg.timing import Timer

WRITES = ("csv", "parquet")
"""the formats ``assign -o`` writes"""


@dataclass
class AssignResult:
    model: ModelRef
    as_of: date | None
    assignments: pa.Table
    rows: Rows
    warnings: list[str] = field(default_factory=list)
    cold_start: ColdStart = OFF

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.assignments.column("segment").to_pylist()).most_common())

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        reasons = Counter(self.assignments.column("segment_reason").to_pylist())
        out: dict[str, Any] = {
            "model_run": self.model.run.run_id,
            "model_version": self.model.model_version,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "n_customers": self.assignments.num_rows,
            "segments": self.counts(),
            "cold_start": reasons.get(REASON_COLD, 0),
            "cold_start_rule": self.cold_start.to_dict(),
            "rows": self.rows,
            "warnings": self.warnings,
        }
        if rows:
            out["assignments"] = jsonable_rows(self.assignments)
        return out


def assign(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    model: str = "latest",
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    cold_start: ColdStart | None = None,
    read: Reading | None = None,
    preset: str | None = None,
    bad_rows: str | None = None,
    returns: str | None = None,
    date_format: str | None = None,
    formats: ReadFormats | None = None,
) -> AssignResult:
    """Score the customers of ``source`` (transactions or an RFM table) with a stored model; writes nothing.
    ``read`` (default: as the model's run read its input) sets preset, row policy and features."""
    ref = load_model(model, runs_dir)
    read = read or reading(ref.run, preset, policy, bad_rows, returns, date_format, formats)
    cold_start = (cold_start or ColdStart(segment=None)).resolved(read.preset)
    engine = LocalEngine()
    try:
        prepared, rfm = read.load(engine, source, columns, as_of, Timer())
    finally:
        engine.close()
    table = score(ref.model, rfm, prepared.as_of, cold_start)
    warnings = cold_warnings(ref.model, cold_start, read.units.entity)
    return AssignResult(ref, prepared.as_of, table, prepared.rows_summary(), warnings, cold_start)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write assignments as Parquet or CSV, by the file's suffix as export decides it
    (:func:`rfmseg.io.outputs.format_of`: ``.parquet``/``.pq``, ``.csv``, CSV without a suffix; another
    suffix is refused); written aside and renamed into place, or into ``-``, a pipe or a device."""
    path = Path(path)
    fmt = format_of(path, None, WRITES, param="output", format_param=None)
    if not is_stream(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_folder(path) / f".{path.name}.{os.getpid()}.tmp"
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp, compression="zstd")
        else:
            pacsv.write_csv(table, tmp)
        put_in_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def jsonable_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, date):
                r[k] = v.isoformat()
            elif isinstance(v, float) and not np.isfinite(v):
                r[k] = None
    return rows
