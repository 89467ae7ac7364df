"""History over the run registry: the runs are the offline store, queried with DuckDB over
``<runs_dir>/*/assignments.parquet``.

* :func:`history` — one customer's segment and RFM values in every run that has them;
* :func:`transitions` — the segment-to-segment matrix between two runs, in customers and revenue, and
  the customers who moved (customers in one run only appear as ``(new)`` / ``(gone)``);
* the early warnings read this history in :mod:`rfmseg.runs.warnings`.

Runs are put on a *timeline* by their as-of date (the creation date for RFM-table runs, which have none),
then creation time (:func:`rfmseg.runs.registry.timeline_key`); when several runs share an as-of date (a
refresh and a retrain on the same day) the timeline keeps the last one written, which is the one that was
published last. The last run of the timeline is the registry's 'latest' (:func:`rfmseg.runs.registry.latest_run`).

Every function returns plain dicts and lists of JSON-able values (strings, numbers, ISO dates, None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from rfmseg.errors import NotFoundError, ParameterError, RunFileError, shown_id
from rfmseg.model.scoring import ASSIGNMENTS_SCHEMA, REASON_DRIFT
from rfmseg.runs.registry import DEFAULT_RUNS_DIR, Run, get_run, list_runs, run_day, timeline_key

_Date = date
"""``date`` where RunMeta's ``date`` property hides the type"""

NEW, GONE = "(new)", "(gone)"
COLUMNS = ("customer_id", "segment", "segment_reason", "recency_days", "frequency", "monetary", "distance", "margin")
"""the columns of assignments.parquet (:data:`rfmseg.model.scoring.ASSIGNMENTS_SCHEMA`) the history reads"""


@dataclass(frozen=True)
class RunMeta:
    run_id: str
    kind: str
    as_of: date | None
    created: datetime
    model_version: str
    file: str
    segments: tuple[str, ...]
    """segment names in the run's priority order (from its summary)"""

    @property
    def date(self) -> date:
        return run_day(self.as_of, self.created)

    @property
    def key(self) -> tuple[_Date, datetime, str]:
        """The run's place in time (:func:`rfmseg.runs.registry.timeline_key`, the order of 'latest')."""
        return timeline_key(self.as_of, self.created, self.run_id)

    def label(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "kind": self.kind, "as_of": self.date.isoformat()}


def _meta(run: Run) -> RunMeta | None:
    file = run.path / "assignments.parquet"
    if not file.exists():
        return None
    m = run.manifest
    try:
        segments = tuple(s["name"] for s in run.summary.get("segments", []))
    except (OSError, ValueError, KeyError, TypeError, RunFileError):
        segments = ()
    return RunMeta(
        run_id=run.run_id,
        kind=m.get("kind", "run"),
        as_of=date.fromisoformat(as_of) if (as_of := m.get("as_of")) else None,
        created=datetime.fromisoformat(m["created"]),
        model_version=str(m.get("model_version") or run.run_id),
        file=str(file),
        segments=segments,
    )


def run_metas(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[RunMeta]:
    """Every run with assignments, ordered by as-of date then creation."""
    metas = [m for m in (_meta(r) for r in list_runs(Path(runs_dir))) if m is not None]
    return sorted(metas, key=lambda m: m.key)


def timeline(runs_dir: str | Path = DEFAULT_RUNS_DIR, until: RunMeta | None = None) -> list[RunMeta]:
    """One run per as-of date (the last written), in date order; with ``until``, up to and ending at it."""
    by_date: dict[date, RunMeta] = {}
    for m in run_metas(runs_dir):
        if until is not None and m.date > until.date:
            continue
        by_date[m.date] = m
    if until is not None:
        by_date[until.date] = until
    return [by_date[d] for d in sorted(by_date)]


def resolve(runs_dir: str | Path, ref: str | None) -> RunMeta:
    """A run by id, unique prefix or 'latest' (None = the last run of the timeline)."""
    metas = run_metas(runs_dir)
    if not metas:
        raise NotFoundError(f"no runs in {runs_dir}; run `rfmseg run FILE` or `rfmseg refresh FILE` first")
    if ref is None or ref == "latest":
        return metas[-1]  # the last by timeline_key, the timeline's last: the registry's latest_run
    run = get_run(ref, Path(runs_dir))
    meta = next((m for m in metas if m.run_id == run.run_id), None)
    if meta is None:
        raise NotFoundError(f"run {run.run_id} has no assignments.parquet; it cannot be compared")
    return meta


def _lit(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def scan(con: duckdb.DuckDBPyConnection, files: list[str], columns: tuple[str, ...] = COLUMNS) -> str:
    """A SELECT of :data:`COLUMNS` and the file name over ``files``, read by column name against the one
    assignments schema. Every run writes all its columns; a run folder written by an earlier version (whose
    'run' kind wrote 8 columns, without segment_reason) reads NULL for the columns it lacks."""
    con.register("rfmseg_assignments_schema", ASSIGNMENTS_SCHEMA.empty_table())
    listing = ", ".join(_lit(f) for f in files)
    files_sql = f"read_parquet([{listing}], union_by_name = true, filename = true)"
    rows = f"SELECT * FROM rfmseg_assignments_schema UNION ALL BY NAME SELECT * FROM {files_sql}"
    return f"SELECT {', '.join(columns)}, filename FROM ({rows})"


def run_table(con: duckdb.DuckDBPyConnection, meta: RunMeta, columns: tuple[str, ...] = COLUMNS) -> str:
    """A run's assignments as a parenthesised SELECT of ``columns`` (and the file name)."""
    return f"({scan(con, [meta.file], columns)})"


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts of plain (JSON-able) values."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def plain(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, float) and v != v:  # NaN
        return None
    return v


# --------------------------------------------------------------------------------------------- history
def history(runs_dir: str | Path, customer_id: str) -> list[dict[str, Any]]:
    """One customer across every run: run_id, kind, as_of, model_version, segment, segment_reason,
    recency_days, frequency, monetary, distance, margin — in timeline order."""
    metas = run_metas(runs_dir)
    if not metas:
        raise NotFoundError(f"no runs in {runs_dir}; run `rfmseg run FILE` or `rfmseg refresh FILE` first")
    by_file = {m.file: m for m in metas}
    con = duckdb.connect()
    try:
        found = query_rows(con, f"SELECT * FROM ({scan(con, list(by_file))}) WHERE customer_id = ?", [customer_id])
        if not found:
            sample = con.execute(f"SELECT customer_id FROM {run_table(con, metas[-1])} LIMIT 1").fetchone()
            hint = f"; ids look like {sample[0]}" if sample else ""
            raise NotFoundError(
                f"customer '{shown_id(customer_id)}' is in none of the {len(metas)} runs in {runs_dir}{hint}"
            )
    finally:
        con.close()
    out = []
    for row in found:
        m = by_file[row.pop("filename")]
        out.append({**m.label(), "model_version": m.model_version, **row})
    order = {m.run_id: i for i, m in enumerate(metas)}
    return sorted(out, key=lambda r: order[r["run_id"]])


# --------------------------------------------------------------------------------------------- transitions
def drift_report(meta: RunMeta) -> dict[str, Any] | None:
    """A retrain's drift report from its manifest (None for other runs, or runs written before it)."""
    if meta.kind != "retrain":
        return None
    try:
        report = get_run(meta.run_id, Path(meta.file).parent.parent).manifest.get("drift")
    except (NotFoundError, OSError, ValueError):
        return None
    return dict(report) if isinstance(report, dict) else None


def previous_run(runs_dir: str | Path, to: RunMeta) -> RunMeta:
    tl = timeline(runs_dir, until=to)
    if len(tl) < 2:
        raise NotFoundError(
            f"run {to.run_id} has no earlier run to compare with; give {{from_run}} RUN", param="from_run"
        )
    return tl[-2]


def _segment_order(a: RunMeta, b: RunMeta, seen: set[str]) -> list[str]:
    """The from-run's segments in its priority order, then the to-run's new ones, then any others."""
    order: list[str] = []
    for name in (*a.segments, *b.segments, *sorted(seen)):
        if name not in order and name in seen:
            order.append(name)
    return order


def transitions(
    runs_dir: str | Path,
    from_run: str | None = None,
    to_run: str | None = None,
    from_segment: str | None = None,
    to_segment: str | None = None,
) -> dict[str, Any]:
    """How customers moved between two runs (default: the last two of the timeline).

    ``customers[i][j]`` counts customers in ``rows[i]`` of the from-run and ``columns[j]`` of the to-run;
    rows end with ``(new)`` (only in the to-run), columns with ``(gone)`` (only in the from-run).
    ``revenue`` sums the to-run's monetary, ``revenue_from`` the from-run's. ``moves`` lists the customers
    who changed segment (or, with ``from_segment``/``to_segment``, those of that pair), each with its ``cause``:
    ``behaviour``, or ``model_drift`` when a retrain moved them although the previous model would not have
    (:mod:`rfmseg.jobs.quiet`). ``totals`` counts both (``behaviour``, ``drift``); ``drift`` has the drift
    moves' from -> to matrix and, when the to-run is a retrain, its drift report (centroid shifts).
    """
    to = resolve(runs_dir, to_run)
    fr = resolve(runs_dir, from_run) if from_run else previous_run(runs_dir, to)
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE TEMP VIEW pair AS SELECT coalesce(a.customer_id, b.customer_id) AS customer_id, "
            f"coalesce(a.segment, '{NEW}') AS seg_from, coalesce(b.segment, '{GONE}') AS seg_to, "
            "a.segment_reason AS reason_from, b.segment_reason AS reason_to, "
            "a.recency_days AS recency_days_from, b.recency_days AS recency_days_to, "
            "a.frequency AS frequency_from, b.frequency AS frequency_to, "
            "a.monetary AS monetary_from, b.monetary AS monetary_to "
            f"FROM {run_table(con, fr)} a FULL OUTER JOIN {run_table(con, to)} b ON a.customer_id = b.customer_id"
        )
        cells = con.execute(
            "SELECT seg_from, seg_to, count(*), coalesce(sum(monetary_to), 0), coalesce(sum(monetary_from), 0) "
            "FROM pair GROUP BY ALL"
        ).fetchall()
        seen = {c[0] for c in cells} | {c[1] for c in cells}
        segments = _segment_order(fr, to, seen - {NEW, GONE})
        rows, columns = [*segments, NEW], [*segments, GONE]
        for given, allowed, what in ((from_segment, rows, "from_segment"), (to_segment, columns, "to_segment")):
            if given is not None and given not in allowed:
                raise ParameterError(
                    f"{{{what}}} '{given}' is not a segment of these runs; use one of {', '.join(allowed)}",
                    param=what,
                )
        n_r, n_c = len(rows), len(columns)
        customers = [[0] * n_c for _ in range(n_r)]
        revenue = [[0.0] * n_c for _ in range(n_r)]
        revenue_from = [[0.0] * n_c for _ in range(n_r)]
        for f, t, n, rev_to, rev_from in cells:
            i, j = rows.index(f), columns.index(t)
            customers[i][j] = int(n)
            revenue[i][j] = round(float(rev_to), 2)
            revenue_from[i][j] = round(float(rev_from), 2)
        where, params = ["seg_from <> seg_to"], []
        if from_segment is not None:
            where, params = ["seg_from = ?"], [from_segment]
            if to_segment is None:
                where.append("seg_to <> seg_from")
        if to_segment is not None:
            where.append("seg_to = ?")
            params.append(to_segment)
            if from_segment is None:
                where.append("seg_from <> seg_to")
        moves = query_rows(
            con,
            'SELECT customer_id, seg_from AS "from", seg_to AS "to", reason_from, reason_to, '
            f"CASE WHEN seg_from = '{NEW}' OR seg_to = '{GONE}' THEN NULL "
            f"WHEN reason_to = '{REASON_DRIFT}' THEN 'model_drift' ELSE 'behaviour' END AS cause, recency_days_from, "
            "recency_days_to, frequency_from, frequency_to, monetary_from, monetary_to FROM pair "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY coalesce(monetary_to, monetary_from) DESC, customer_id",
            params,
        )
        totals = con.execute(
            f"SELECT count(*) FILTER (seg_from <> '{NEW}'), count(*) FILTER (seg_to <> '{GONE}'), "
            f"count(*) FILTER (seg_from <> seg_to AND seg_from <> '{NEW}' AND seg_to <> '{GONE}'), "
            f"count(*) FILTER (seg_from = '{NEW}'), count(*) FILTER (seg_to = '{GONE}'), "
            "count(*) FILTER (seg_from = seg_to), "
            f"count(*) FILTER (seg_from <> seg_to AND seg_from <> '{NEW}' AND seg_to <> '{GONE}' "
            f"AND reason_to = '{REASON_DRIFT}') FROM pair"
        ).fetchone()
        assert totals is not None  # an aggregate has one row
        drift: dict[str, dict[str, int]] = {}
        for f, t, n in con.execute(
            f"SELECT seg_from, seg_to, count(*) FROM pair WHERE seg_from <> seg_to AND reason_to = '{REASON_DRIFT}' "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            drift.setdefault(f, {})[t] = int(n)
    finally:
        con.close()
    return {
        "from_run": fr.run_id,
        "to_run": to.run_id,
        "from_as_of": fr.date.isoformat(),
        "to_as_of": to.date.isoformat(),
        "segments": segments,
        "rows": rows,
        "columns": columns,
        "customers": customers,
        "revenue": revenue,
        "revenue_from": revenue_from,
        "totals": {
            **dict(
                zip(("customers_from", "customers_to", "moved", "new", "gone", "stayed", "drift"), totals, strict=True)
            ),
            "behaviour": totals[2] - totals[6],
        },
        "drift": {"customers": drift, "retrain": drift_report(to)},
        "filter": {"from_segment": from_segment, "to_segment": to_segment},
        "moves": moves,
    }
