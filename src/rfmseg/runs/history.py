"""History over the run registry: the runs are the offline store, queried with DuckDB over
``<runs_dir>/*/assignments.parquet``.

* :func:`history` — one customer's segment and RFM values in every run that has them;
* :func:`transitions` — the segment-to-segment matrix between two runs, in customers and revenue, and
  the customers who moved (customers in one run only appear as ``(new)`` / ``(gone)``);
* :func:`warnings` — the early warnings: Champions who dropped to Loyal Buyers, recency that jumped while
  frequency stayed flat, Loyal Buyers trending toward At-Risk, and every segment change.

Runs are put on a *timeline* by their as-of date (the creation date for RFM-table runs, which have none),
then creation time; when several runs share an as-of date (a refresh and a retrain on the same day) the
timeline keeps the last one written, which is the one that was published last.

Every function returns plain dicts and lists of JSON-able values (strings, numbers, ISO dates, None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.model.scoring import ASSIGNMENTS_SCHEMA
from rfmseg.runs.registry import DEFAULT_RUNS_DIR, Run, get_run, list_runs

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
        return self.as_of or self.created.date()

    @property
    def key(self) -> tuple[_Date, datetime, str]:
        return (self.date, self.created, self.run_id)

    def label(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "kind": self.kind, "as_of": self.date.isoformat()}


def _meta(run: Run) -> RunMeta | None:
    file = run.path / "assignments.parquet"
    if not file.exists():
        return None
    m = run.manifest
    try:
        segments = tuple(s["name"] for s in run.summary.get("segments", []))
    except (OSError, ValueError, KeyError, TypeError):
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
        return timeline(runs_dir)[-1]
    run = get_run(ref, Path(runs_dir))
    meta = next((m for m in metas if m.run_id == run.run_id), None)
    if meta is None:
        raise NotFoundError(f"run {run.run_id} has no assignments.parquet; it cannot be compared")
    return meta


def _lit(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def _scan(con: duckdb.DuckDBPyConnection, files: list[str]) -> str:
    """A SELECT of :data:`COLUMNS` and the file name over ``files``, read by column name against the one
    assignments schema. Every run writes all its columns; a run folder written by an earlier version (whose
    'run' kind wrote 8 columns, without segment_reason) reads NULL for the columns it lacks."""
    con.register("rfmseg_assignments_schema", ASSIGNMENTS_SCHEMA.empty_table())
    listing = ", ".join(_lit(f) for f in files)
    files_sql = f"read_parquet([{listing}], union_by_name = true, filename = true)"
    rows = f"SELECT * FROM rfmseg_assignments_schema UNION ALL BY NAME SELECT * FROM {files_sql}"
    return f"SELECT {', '.join(COLUMNS)}, filename FROM ({rows})"


def _one(con: duckdb.DuckDBPyConnection, meta: RunMeta) -> str:
    return f"({_scan(con, [meta.file])})"


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _plain(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, list):
        return [_plain(x) for x in v]
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
        found = _rows(con, f"SELECT * FROM ({_scan(con, list(by_file))}) WHERE customer_id = ?", [customer_id])
        if not found:
            sample = con.execute(f"SELECT customer_id FROM {_one(con, metas[-1])} LIMIT 1").fetchone()
            hint = f"; ids look like {sample[0]}" if sample else ""
            raise NotFoundError(f"customer '{customer_id}' is in none of the {len(metas)} runs in {runs_dir}{hint}")
    finally:
        con.close()
    out = []
    for row in found:
        m = by_file[row.pop("filename")]
        out.append({**m.label(), "model_version": m.model_version, **row})
    order = {m.run_id: i for i, m in enumerate(metas)}
    return sorted(out, key=lambda r: order[r["run_id"]])


# --------------------------------------------------------------------------------------------- transitions
def _previous(runs_dir: str | Path, to: RunMeta) -> RunMeta:
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
    who changed segment (or, with ``from_segment``/``to_segment``, those of that pair).
    """
    to = resolve(runs_dir, to_run)
    fr = resolve(runs_dir, from_run) if from_run else _previous(runs_dir, to)
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE TEMP VIEW pair AS SELECT coalesce(a.customer_id, b.customer_id) AS customer_id, "
            f"coalesce(a.segment, '{NEW}') AS seg_from, coalesce(b.segment, '{GONE}') AS seg_to, "
            "a.segment_reason AS reason_from, b.segment_reason AS reason_to, "
            "a.recency_days AS recency_days_from, b.recency_days AS recency_days_to, "
            "a.frequency AS frequency_from, b.frequency AS frequency_to, "
            "a.monetary AS monetary_from, b.monetary AS monetary_to "
            f"FROM {_one(con, fr)} a FULL OUTER JOIN {_one(con, to)} b ON a.customer_id = b.customer_id"
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
        moves = _rows(
            con,
            'SELECT customer_id, seg_from AS "from", seg_to AS "to", reason_from, reason_to, recency_days_from, '
            "recency_days_to, frequency_from, frequency_to, monetary_from, monetary_to FROM pair "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY coalesce(monetary_to, monetary_from) DESC, customer_id",
            params,
        )
        totals = con.execute(
            f"SELECT count(*) FILTER (seg_from <> '{NEW}'), count(*) FILTER (seg_to <> '{GONE}'), "
            f"count(*) FILTER (seg_from <> seg_to AND seg_from <> '{NEW}' AND seg_to <> '{GONE}'), "
            f"count(*) FILTER (seg_from = '{NEW}'), count(*) FILTER (seg_to = '{GONE}'), "
            "count(*) FILTER (seg_from = seg_to) FROM pair"
        ).fetchone()
        assert totals is not None  # an aggregate has one row
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
        "totals": dict(zip(("customers_from", "customers_to", "moved", "new", "gone", "stayed"), totals, strict=True)),
        "filter": {"from_segment": from_segment, "to_segment": to_segment},
        "moves": moves,
    }


# --------------------------------------------------------------------------------------------- warnings
MAX_WARNING_DAYS = 36_500
"""a hundred years: the most days a warning's recency jump or period may span"""
MAX_TREND_RUNS = 1_000


def warnings(
    runs_dir: str | Path,
    run: str | RunMeta | None = None,
    recency_jump_days: int = 10,
    period_days: int = 30,
    trend_runs: int = 3,
    champions: str = "Champions",
    loyal: str = "Loyal Buyers",
    at_risk: str = "At-Risk",
    jump_segments: list[str] | None = None,
) -> dict[str, Any]:
    """The early warnings for ``run`` (default: the latest of the timeline) against the runs before it; ``run``
    may be a :class:`RunMeta` of a run not committed yet (the report written with it).

    * ``champions_to_loyal``: in ``champions`` in the previous run, in ``loyal`` now;
    * ``recency_jump``: recency rose by more than ``recency_jump_days`` since the earliest run within the
      last ``period_days`` days while frequency did not grow (only customers now in ``jump_segments``
      when given, e.g. ``["Champions"]``);
    * ``loyal_trending_at_risk``: in ``loyal`` at the start of the last ``trend_runs`` runs, recency rising
      at every one of them, and now ``loyal`` or ``at_risk``;
    * ``segment_changed``: a different segment than in the previous run.

    Each warning: id, title, text, params, compared (the runs), count, customers (with the values that
    triggered it), customers sorted by monetary, largest first.
    """
    if recency_jump_days < 0:
        raise ParameterError(
            f"{{recency_jump_days}} {recency_jump_days} should be >= 0 days", param="recency_jump_days"
        )
    if period_days < 1:
        raise ParameterError(f"{{period_days}} {period_days} should be >= 1 day", param="period_days")
    if trend_runs < 2:
        raise ParameterError(f"{{trend_runs}} {trend_runs} should be >= 2 (a trend needs two runs)", param="trend_runs")
    for param, value, most in (
        ("recency_jump_days", recency_jump_days, MAX_WARNING_DAYS),
        ("period_days", period_days, MAX_WARNING_DAYS),
        ("trend_runs", trend_runs, MAX_TREND_RUNS),
    ):
        if value > most:
            raise ParameterError(f"{{{param}}} {value} should be <= {most:,}", param=param)
    now = run if isinstance(run, RunMeta) else resolve(runs_dir, run)
    tl = timeline(runs_dir, until=now)
    prev = tl[-2] if len(tl) >= 2 else None
    con = duckdb.connect()
    try:
        out = [
            _champions_to_loyal(con, now, prev, champions, loyal),
            _recency_jump(con, now, tl, recency_jump_days, period_days, jump_segments),
            _loyal_trend(con, tl, trend_runs, loyal, at_risk),
            _segment_changed(con, now, prev),
        ]
    finally:
        con.close()
    return {
        "run_id": now.run_id,
        "as_of": now.date.isoformat(),
        "previous_run": prev.run_id if prev else None,
        "timeline": [m.run_id for m in tl],
        "warnings": out,
    }


def _warning(
    wid: str, title: str, text: str, params: dict[str, Any], compared: list[RunMeta], customers: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": wid,
        "title": title,
        "text": text,
        "params": params,
        "compared": [m.label() for m in compared],
        "count": len(customers),
        "customers": customers,
    }


def _moved_sql(con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta, where: str) -> str:
    return (
        "SELECT b.customer_id, a.segment AS segment_from, b.segment AS segment_to, "
        "a.segment_reason AS reason_from, b.segment_reason AS reason_to, "
        "a.recency_days AS recency_days_from, b.recency_days AS recency_days_to, "
        "a.frequency AS frequency_from, b.frequency AS frequency_to, "
        "a.monetary AS monetary_from, b.monetary AS monetary_to "
        f"FROM {_one(con, prev)} a JOIN {_one(con, now)} b ON a.customer_id = b.customer_id "
        f"WHERE {where} ORDER BY b.monetary DESC, b.customer_id"
    )


def _champions_to_loyal(
    con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta | None, champions: str, loyal: str
) -> dict[str, Any]:
    title = f"{champions} who dropped to {loyal}"
    params = {"from_segment": champions, "to_segment": loyal}
    if prev is None:
        return _warning("champions_to_loyal", title, "needs an earlier run to compare with", params, [now], [])
    rows = _rows(con, _moved_sql(con, now, prev, "a.segment = ? AND b.segment = ?"), [champions, loyal])
    text = f"{len(rows)} {champions} in {prev.date} are {loyal} in {now.date}"
    return _warning("champions_to_loyal", title, text, params, [prev, now], rows)


def _recency_jump(
    con: duckdb.DuckDBPyConnection,
    now: RunMeta,
    tl: list[RunMeta],
    jump: int,
    period: int,
    segments: list[str] | None,
) -> dict[str, Any]:
    who = f" ({', '.join(segments)})" if segments else ""
    title = f"Recency up more than {jump} days within {period} days, frequency flat{who}"
    params = {"recency_jump_days": jump, "period_days": period, "segments": segments}
    window = [m for m in tl[:-1] if (now.date - m.date).days <= period]
    if not window:
        text = f"needs a run within the {period} days before {now.date} to compare with"
        return _warning("recency_jump", title, text, params, [now], [])
    base = window[0]
    rows = _rows(
        con,
        "SELECT b.customer_id, b.segment, a.segment AS segment_from, a.recency_days AS recency_days_from, "
        "b.recency_days AS recency_days_to, b.recency_days - a.recency_days AS rise_days, "
        "b.frequency, a.frequency AS frequency_from, b.monetary "
        f"FROM {_one(con, base)} a JOIN {_one(con, now)} b ON a.customer_id = b.customer_id "
        "WHERE b.recency_days - a.recency_days > ? AND b.frequency <= a.frequency "
        f"{'AND list_contains(?, b.segment) ' if segments else ''}"
        "ORDER BY b.monetary DESC, b.customer_id",
        [jump, segments] if segments else [jump],
    )
    days = (now.date - base.date).days
    text = (
        f"{len(rows)} customers{who}' recency rose by more than {jump} days between {base.date} and {now.date} "
        f"({days} days) while their frequency stayed flat"
    )
    return _warning("recency_jump", title, text, params, [base, now], rows)


def _loyal_trend(con: duckdb.DuckDBPyConnection, tl: list[RunMeta], n: int, loyal: str, at_risk: str) -> dict[str, Any]:
    title = f"{loyal} trending toward {at_risk}"
    params = {"trend_runs": n, "from_segment": loyal, "toward_segment": at_risk}
    if len(tl) < n:
        text = f"needs {n} runs on the timeline, there are {len(tl)}"
        return _warning("loyal_trending_at_risk", title, text, params, tl[-1:], [])
    window = tl[-n:]
    union = " UNION ALL ".join(f"SELECT {i} AS idx, * FROM {_one(con, m)}" for i, m in enumerate(window))
    rows = _rows(
        con,
        f"WITH w AS ({union}), l AS (SELECT *, lag(recency_days) OVER (PARTITION BY customer_id ORDER BY idx) "
        "AS prev_r FROM w) "
        "SELECT customer_id, arg_max(segment, idx) AS segment, list(recency_days ORDER BY idx) AS recency_days, "
        "list(segment ORDER BY idx) AS segments, arg_max(frequency, idx) AS frequency, "
        "arg_max(monetary, idx) AS monetary FROM l GROUP BY customer_id "
        "HAVING count(*) = ? AND bool_and(prev_r IS NULL OR recency_days > prev_r) "
        "AND arg_min(segment, idx) = ? AND arg_max(segment, idx) IN (?, ?) "
        "ORDER BY monetary DESC, customer_id",
        [n, loyal, loyal, at_risk],
    )
    dates = [m.date.isoformat() for m in window]
    for r in rows:
        r["as_of"] = dates
    text = (
        f"{len(rows)} {loyal} in {window[0].date} saw their recency rise at each of the last {n} runs "
        f"(to {window[-1].date}); {sum(r['segment'] == at_risk for r in rows)} of them are {at_risk} now"
    )
    return _warning("loyal_trending_at_risk", title, text, params, window, rows)


def _segment_changed(con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta | None) -> dict[str, Any]:
    title = "Customers whose segment changed"
    if prev is None:
        return _warning("segment_changed", title, "needs an earlier run to compare with", {}, [now], [])
    rows = _rows(con, _moved_sql(con, now, prev, "a.segment <> b.segment"))
    text = f"{len(rows)} customers changed segment between {prev.date} and {now.date}"
    return _warning("segment_changed", title, text, {}, [prev, now], rows)
