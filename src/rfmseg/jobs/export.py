"""``rfmseg export``: a run's segment lists as files a CRM or a marketing platform imports.

One row per customer of the run (or of the chosen segments) with the profile columns (:data:`COLUMNS`): the
segment and why, the segment before the last change and since when, the RFM values, the average order value,
the distance and margin, the first order date, the segment's action and priority, and the run. Written as
CSV, Parquet or JSON Lines to one file, or to one file per segment.

``previous_segment`` and ``segment_since`` are not in assignments.parquet: they are computed from the run
timeline up to the exported run (:func:`rfmseg.runs.history.timeline`) by the rules the profile store applies
at each publish (docs/stores.md), so a store that published every run of the timeline in order serves the
same values.

With ``changed_since``, only the customers whose segment differs from that run's are written: ``change`` is
``new`` (not in that run), ``moved`` or ``left`` (in that run, not in this one: the row's ``segment`` and
profile columns are empty, ``from_segment`` says where the customer was), the vocabulary of the profile
store's change feed.

Everything is done by DuckDB over the runs' assignments.parquet, streamed: the rows go once into a Parquet
file in a hidden folder beside the destination (ordered by customer id; a large sort spills there), the
counts are read from it, and each requested file is copied from it in its format and renamed into place, so
a file is never seen half written. A destination that is not a regular file (``-`` for standard output, a
named pipe, ``/dev/stdout``) is not renamed over: the hidden folder is in the temporary folder and the file's
bytes are copied into the destination (:func:`rfmseg.io.outputs.put_in_place`). No table is held in Python.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from rfmseg.errors import ENVIRONMENT_ERRNOS, NotFoundError, ParameterError, RfmsegError, os_failure
from rfmseg.io.outputs import EXTENSIONS, format_of, is_stream, put_in_place, staging_folder
from rfmseg.io.readers import sql_string
from rfmseg.model.naming import match_segment, slug
from rfmseg.model.scoring import ASSIGNMENTS_SCHEMA, REASON_DRIFT
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, get_run
from rfmseg.runs import history as run_history
from rfmseg.runs.history import RunMeta

COLUMNS = (
    "customer_id",
    "segment",
    "previous_segment",
    "segment_since",
    "segment_reason",
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "distance",
    "margin",
    "first_order_date",
    "action",
    "priority",
    "run_id",
    "as_of",
    "model_version",
)
"""the columns of every export, in this order"""
CHANGE_COLUMNS = ("change", "from_segment")
"""added after ``segment`` with ``changed_since``"""
CHANGES = ("new", "moved", "left")


@dataclass(frozen=True)
class ExportFile:
    path: Path
    rows: int
    segment: str | None = None
    """the segment of a per-segment file; None for the one file of ``out``"""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "segment": self.segment, "rows": self.rows}


@dataclass
class ExportResult:
    run_id: str
    as_of: str | None
    format: str
    rows: int
    """customers written (a customer in two per-segment files counts once)"""
    segments: dict[str, int]
    """customers per segment of the run among the rows (departed customers have none)"""
    files: list[ExportFile]
    columns: tuple[str, ...]
    changed_since: dict[str, Any] | None = None
    """the run compared with and the rows by change: {run_id, as_of, new, moved, left}"""
    selected: list[str] = field(default_factory=list)
    """the segments asked for (empty: all)"""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "format": self.format,
            "rows": self.rows,
            "segments": self.segments,
            "selected": self.selected,
            "changed_since": self.changed_since,
            "columns": list(self.columns),
            "files": [f.to_dict() for f in self.files],
        }


def _gzip(path: Path, fmt: str) -> bool:
    if path.suffix.lower() != ".gz":
        return False
    if fmt == "parquet":
        raise ParameterError(f"{path}: Parquet is compressed inside the file; drop the .gz from {{out}}", param="out")
    return True


def file_stem(name: str) -> str:
    """'Loyal Buyers' -> 'loyal-buyers': the file name of a segment's list (its slug)."""
    return slug(name) or "segment"


def _selected(asked: Sequence[str], known: Sequence[str], where: str) -> list[str]:
    """The segments called ``asked`` (:func:`~rfmseg.model.naming.match_segment`), in the order asked, once
    each."""
    out: list[str] = []
    for name in asked:
        try:
            hit = match_segment(name, known, where)
        except RfmsegError as exc:  # unknown, or blank
            raise exc.with_hint("give {segment} one of them", param="segment") from None
        if hit not in out:
            out.append(hit)
    return out


def _meta(run: Run, runs_dir: Path) -> RunMeta:
    meta = next((m for m in run_history.run_metas(runs_dir) if m.run_id == run.run_id), None)
    if meta is None:
        raise NotFoundError(
            f"run {run.run_id} has no assignments.parquet, so it cannot be exported; restore the file from a "
            f"backup, or remove the run folder {run.path} and run the job that wrote it again"
        )
    return meta


def _assignments(con: duckdb.DuckDBPyConnection, file: str) -> str:
    """A SELECT of every column of :data:`ASSIGNMENTS_SCHEMA` from ``file`` by name (a run written by an
    earlier version reads NULL for what it lacks)."""
    con.register("rfmseg_export_schema", ASSIGNMENTS_SCHEMA.empty_table())
    return (
        "SELECT * FROM rfmseg_export_schema UNION ALL BY NAME "
        f"SELECT * FROM read_parquet({sql_string(file)}, union_by_name = true)"
    )


def _history(con: duckdb.DuckDBPyConnection, steps: list[RunMeta]) -> str:
    """Per customer of the last of ``steps`` (the timeline up to the exported run): the step where the
    customer entered the segment it has now (``since_step``) and the segment before that
    (``previous_segment``), by the profile store's rules: a customer present in consecutive runs with the same
    segment keeps both; one whose segment changed has the old one as previous; one absent from the run before
    (new, or back after leaving) has none; a move a retrain made without the customer's behaviour changing
    (segment_reason ``model_drift``) changes neither."""
    con.register("rfmseg_assignments_schema", ASSIGNMENTS_SCHEMA.empty_table())  # old folders lack segment_reason
    con.register(
        "rfmseg_export_steps",
        pa.table({"file": [m.file for m in steps], "step": pa.array(range(len(steps)), pa.int32())}),
    )
    files = ", ".join(sql_string(m.file) for m in steps)
    return f"""
        WITH hist AS (
            SELECT CAST(h.customer_id AS VARCHAR) AS customer_id, h.segment, h.segment_reason, s.step
            FROM (SELECT * FROM rfmseg_assignments_schema UNION ALL BY NAME
                  SELECT * FROM read_parquet([{files}], union_by_name = true, filename = true)) h
            JOIN rfmseg_export_steps s ON h.filename = s.file
        ), marks AS (
            SELECT customer_id, segment, segment_reason, step,
                   lag(step) OVER w AS prev_step, lag(segment) OVER w AS prev_segment
            FROM hist WINDOW w AS (PARTITION BY customer_id ORDER BY step)
        )
        SELECT customer_id, step AS since_step,
               CASE WHEN prev_step = step - 1 THEN prev_segment END AS previous_segment
        FROM marks
        WHERE prev_step IS NULL OR prev_step <> step - 1
           OR (prev_segment IS DISTINCT FROM segment AND segment_reason IS DISTINCT FROM '{REASON_DRIFT}')
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY step DESC) = 1"""


def _query(
    con: duckdb.DuckDBPyConnection,
    run: Run,
    meta: RunMeta,
    steps: list[RunMeta],
    base: RunMeta | None,
    selected: list[str],
) -> tuple[str, tuple[str, ...]]:
    """The SELECT of the export's rows (ordered by customer id) and its columns."""
    summary = run.summary
    segs = summary.get("segments", [])
    con.register(
        "rfmseg_export_segments",
        pa.table(
            {
                "segment": pa.array([s["name"] for s in segs], pa.string()),
                "action": pa.array([s.get("action") for s in segs], pa.string()),
                "priority": pa.array([s.get("priority") for s in segs], pa.int64()),
            }
        ),
    )
    con.register(
        "rfmseg_export_steps_as_of",
        pa.table({"step": pa.array(range(len(steps)), pa.int32()), "day": [m.date for m in steps]}),
    )
    manifest = run.manifest
    as_of = manifest.get("as_of")
    model_version = str(manifest.get("model_version") or run.run_id)
    constants = (
        f"{sql_string(run.run_id)} AS run_id, "
        f"{'CAST(' + sql_string(str(as_of)) + ' AS DATE)' if as_of else 'CAST(NULL AS DATE)'} AS as_of, "
        f"{sql_string(model_version)} AS model_version"
    )
    current = f"""
        SELECT CAST(a.customer_id AS VARCHAR) AS customer_id, a.segment, h.previous_segment,
               d.day AS segment_since, a.segment_reason, a.recency_days, a.frequency, a.monetary,
               CASE WHEN a.frequency > 0 THEN a.monetary / a.frequency ELSE 0 END AS aov,
               a.distance, a.margin, a.first_order_date, g.action, g.priority
        FROM ({_assignments(con, meta.file)}) a
        LEFT JOIN ({_history(con, steps)}) h ON h.customer_id = CAST(a.customer_id AS VARCHAR)
        LEFT JOIN rfmseg_export_steps_as_of d ON d.step = h.since_step
        LEFT JOIN rfmseg_export_segments g ON g.segment = a.segment"""
    listed = ", ".join(sql_string(s) for s in selected)
    if base is None:
        where = f"WHERE segment IN ({listed})" if selected else ""
        sql = f"SELECT *, {constants} FROM ({current}) {where} ORDER BY customer_id"
        return sql, COLUMNS
    profile = [c for c in COLUMNS if c not in ("customer_id", "segment", "run_id", "as_of", "model_version")]
    where = f"AND (c.segment IN ({listed}) OR b.segment IN ({listed}))" if selected else ""
    sql = f"""
        SELECT coalesce(c.customer_id, b.customer_id) AS customer_id, c.segment,
               CASE WHEN b.customer_id IS NULL THEN 'new' WHEN c.customer_id IS NULL THEN 'left' ELSE 'moved' END
                   AS change,
               b.segment AS from_segment, {", ".join("c." + p for p in profile)}, {constants}
        FROM ({current}) c
        FULL OUTER JOIN (
            SELECT CAST(customer_id AS VARCHAR) AS customer_id, segment
            FROM read_parquet({sql_string(base.file)}, union_by_name = true)
        ) b ON b.customer_id = c.customer_id
        WHERE c.segment IS DISTINCT FROM b.segment {where}
        ORDER BY customer_id"""
    columns = (COLUMNS[0], COLUMNS[1], *CHANGE_COLUMNS, *COLUMNS[2:])
    return sql, columns


def _cannot_write(dest: Path, exc: OSError, param: str) -> RfmsegError:
    if exc.errno in ENVIRONMENT_ERRNOS:  # a full disk: the machine's failure (exit code 3)
        return os_failure(exc, f"writing the export to {dest}")
    blocker = next((p for p in (dest, *dest.parents) if p.is_file()), None)
    if blocker is not None and isinstance(exc, (FileExistsError, NotADirectoryError)):
        why = f"{blocker} is a file, not a folder"
    else:
        why = (exc.strerror or type(exc).__name__).lower()
    return ParameterError(
        f"cannot write the export to {dest} ({why}); choose a location you can write to with {{{param}}}",
        param=param,
    )


def export(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    run: str = "latest",
    *,
    out: str | Path | None = None,
    out_dir: str | Path | None = None,
    file_format: str | None = None,
    segments: Sequence[str] | None = None,
    changed_since: str | None = None,
) -> ExportResult:
    """Write run ``run``'s customers (of ``segments``, default all) to the file ``out`` or to one file per
    segment in the folder ``out_dir``, as CSV, Parquet or JSON Lines (``file_format``, default: the suffix of
    ``out``, csv when it has none; a suffix that names no format is refused). ``out`` ``-`` is standard output;
    a named pipe or a device is written into, not replaced (:mod:`rfmseg.io.outputs`). With ``changed_since``
    (a run), only the customers whose segment differs from that run's, departures included (see the module
    docstring)."""
    runs_dir = Path(runs_dir)
    if out is not None and out_dir is None:
        target, param = Path(out), "out"
        fmt = format_of(target, file_format)
        gzip = _gzip(target, fmt)
        if target.is_dir():
            raise ParameterError(
                f"{target} is a folder; give {{out}} a file name, or use {{out_dir}} for one file per segment",
                param=("out", "out_dir"),
            )
        folder = staging_folder(target)  # beside a file; the temporary folder for '-', a pipe or a device
    elif out_dir is not None and out is None:
        target, param = Path(out_dir), "out_dir"
        fmt, gzip = format_of(None, file_format), False
        if is_stream(target):  # '-', a pipe, a device: one file can go there, not a folder of them
            raise ParameterError(
                f"{target} is not a folder; give {{out_dir}} a folder, or write one file to {target} with {{out}}",
                param=("out_dir", "out"),
            )
        if target.exists() and not target.is_dir():
            raise ParameterError(f"{target} is a file; give {{out_dir}} a folder", param="out_dir")
        folder = target
    else:
        raise ParameterError(
            "give one destination: {out} FILE for one file, or {out_dir} FOLDER for one file per segment",
            param=("out", "out_dir"),
        )

    source = get_run(run, runs_dir)
    meta = _meta(source, runs_dir)
    base = _meta(get_run(changed_since, runs_dir), runs_dir) if changed_since is not None else None
    known = list(meta.segments)
    if base is not None:
        known += [s for s in base.segments if s not in known]
    where = f"run {source.run_id}" + (f" or run {base.run_id}" if base is not None else "")
    selected = _selected(segments or [], known, where)

    created = next((p for p in (*reversed(folder.parents), folder) if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".rfmseg-export-", dir=folder))
    except OSError as exc:
        raise _cannot_write(target, exc, param) from None
    con = duckdb.connect()
    failed = True
    try:
        con.execute(f"SET temp_directory = {sql_string(str(staging / 'spill'))}")
        with suppress(duckdb.Error):  # a long COPY would draw DuckDB's progress bar on stdout (Jupyter refuses it)
            con.execute("SET enable_progress_bar = false")
        sql, columns = _query(con, source, meta, run_history.timeline(runs_dir, until=meta), base, selected)
        rows_file = staging / "rows.parquet"
        total = _copy(con, sql, rows_file, "parquet", False)
        rows = f"read_parquet({sql_string(str(rows_file))})"
        counts = dict(con.execute(f"SELECT segment, count(*) FROM {rows} GROUP BY segment").fetchall())
        shown = selected or known
        by_segment = {s: int(counts.get(s, 0)) for s in [*shown, *sorted(k for k in counts if k and k not in shown)]}
        changed = None
        if base is not None:
            kinds = dict(con.execute(f"SELECT change, count(*) FROM {rows} GROUP BY change").fetchall())
            changed = {
                "run_id": base.run_id,
                "as_of": base.date.isoformat(),
                **{k: int(kinds.get(k, 0)) for k in CHANGES},
            }
        staged: list[tuple[Path, Path, int, str | None]] = []  # written aside, destination, rows, segment
        if out is not None:
            if fmt == "parquet":
                staged.append((rows_file, target, total, None))
            else:
                aside = staging / f"export{EXTENSIONS[fmt]}"
                staged.append((aside, target, _copy(con, f"SELECT * FROM {rows}", aside, fmt, gzip), None))
        else:
            stems: set[str] = set()
            for name in shown:
                stem = file_stem(name)
                while stem in stems:  # two names with one slug ('At Risk', 'At-Risk'): both kept
                    stem += "-2"
                stems.add(stem)
                aside = staging / f"{stem}{EXTENSIONS[fmt]}"
                cond = f"segment = {sql_string(name)}"
                if base is not None:  # who joined the segment and who left it
                    cond += f" OR from_segment = {sql_string(name)}"
                n = _copy(con, f"SELECT * FROM {rows} WHERE {cond}", aside, fmt, False)
                staged.append((aside, target / aside.name, n, name))
        files = []
        for aside, dest, n, segment in staged:
            try:
                put_in_place(aside, dest)
            except BrokenPipeError:  # the reader of '-' or a pipe left (`| head`): it wanted no more
                raise
            except OSError as exc:
                raise _cannot_write(dest, exc, param) from None
            files.append(ExportFile(dest, n, segment))
        failed = False
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _cannot_write(target, exc, param) from None
    finally:
        con.close()
        shutil.rmtree(staging, ignore_errors=True)
        if failed and created is not None:  # the folders this export made go with it
            shutil.rmtree(created, ignore_errors=True)
    as_of = source.manifest.get("as_of")
    return ExportResult(
        run_id=source.run_id,
        as_of=str(as_of) if as_of else None,
        format=fmt,
        rows=total,
        segments=by_segment,
        files=files,
        columns=columns,
        changed_since=changed,
        selected=selected,
    )


def _copy(con: duckdb.DuckDBPyConnection, select: str, dest: Path, fmt: str, gzip: bool) -> int:
    """``COPY (select) TO dest`` in format ``fmt``: DuckDB streams the rows into the file; returns how many it
    wrote."""
    if fmt == "parquet":
        options = "FORMAT parquet, COMPRESSION zstd"
    else:
        options = ("FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT json") + (
            ", COMPRESSION gzip" if gzip else ""
        )
    try:
        result = con.execute(f"COPY ({select}) TO {sql_string(str(dest))} ({options})").fetchall()
    except duckdb.IOException as exc:  # the file system refused the write: an OSError with DuckDB's errno
        code = re.search(r'"errno":"(\d+)"', str(exc))
        err = int(code[1]) if code else errno.EIO
        raise OSError(err, os.strerror(err), str(dest)) from None
    return int(result[0][0]) if result else 0
