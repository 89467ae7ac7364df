"""The early warnings over the history of runs (``rfmseg watch``), measured on each customer's own rhythm.

A customer's *rhythm* is their mean gap between orders, from their own history in a run:
``(last order - first order) / (orders - 1)`` — the last order is the run's as-of date minus the recency. It is
read in the *base run* (the earliest run within ``window_days`` before the run checked), so the slowdown being
looked for does not stretch the yardstick, and only for customers with at least ``min_orders`` orders there
(three gaps: fewer say little about a rhythm).

How late a customer is, in days, is the larger of two readings of the same thing:

* ``recency - gap``: the days past the order their rhythm says was due;
* ``span - (orders in the span + 1) * gap``: over the span from the base run to now, the days their rhythm
  would have filled with orders and did not (a customer who slowed down but bought once lately is still late
  on this reading, while their recency looks normal).

A customer is **late** when that exceeds ``max((late_factor - 1) * gap, overdue_days)`` — later than their own
rhythm by more than ``late_factor`` times it, and by more than ``overdue_days`` days — and their recency exceeds
one gap (they have not just ordered). It is an *early* warning: a customer who was already late at the start of
the last ``lookback_days`` days (recency then over gap + that limit: lapsed long ago, At-Risk) is left out.

The warnings:

* ``champions_to_loyal`` — in ``champions`` in the previous run, in ``loyal`` now (a label move);
* ``champions_slowing`` — late customers who were ``champions`` at the start of the lookback or are now;
* ``overdue`` (formerly ``recency_jump``, still accepted) — late customers of any segment (or of ``segments``);
* ``loyal_lapsing`` (formerly ``loyal_trending_at_risk``, still accepted) — late customers who were ``loyal``
  at the start of the lookback or are now: lapsing toward ``at_risk``;
* ``segment_changed`` — a different segment than in the previous run (each with its ``cause``: ``behaviour``
  or ``model_drift``);
* ``model_drift`` — the changes a retrain made although the previous model would have kept the customer
  (:mod:`rfmseg.jobs.quiet`), with the retrain's centroid shifts.

Measured against the simulator's truth and on Online Retail: docs/production.md, ``scripts/warning_precision.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from rfmseg.errors import ParameterError
from rfmseg.features import Words
from rfmseg.model.scoring import REASON_DRIFT
from rfmseg.runs.history import RunMeta, drift_report, query_rows, resolve, run_table, timeline

ALIASES = {"recency_jump": "overdue", "loyal_trending_at_risk": "loyal_lapsing"}
"""old warning id -> the warning that replaced it (both ids are accepted wherever a warning is named)"""

RHYTHM_COLUMNS = ("customer_id", "segment", "recency_days", "frequency", "monetary", "first_order_date")


def gap_sql(table: str) -> str:
    """The SQL of a customer's mean gap between orders in a run's assignments (``table``: its alias) as of the
    run's date (the one ``?`` parameter): (last order - first order) / (orders - 1), the last order being that
    date minus the recency."""
    return f"(date_diff('day', {table}.first_order_date, ?::DATE) - {table}.recency_days) / ({table}.frequency - 1)"


MAX_WARNING_DAYS = 36_500
"""a hundred years: the most days a warning's window, lookback or overdue days may span"""
MAX_LATE_FACTOR = 1_000.0
MAX_MIN_ORDERS = 1_000_000


@dataclass(frozen=True)
class RhythmRule:
    """The parameters of the rhythm warnings (defaults measured in docs/production.md)."""

    overdue_days: int = 7
    """late by more than this many days past the customer's rhythm (and by more than late_factor x it)"""
    late_factor: float = 2.0
    """late when the days since the due order exceed (late_factor - 1) x the customer's mean gap"""
    window_days: int = 56
    """the base run, where the rhythm is read and orders are counted from: the earliest within this many days"""
    lookback_days: int = 90
    """left out: customers already late in the earliest run within this many days (lapsed before)"""
    min_orders: int = 4
    """customers with fewer orders in the base run have no rhythm to be late on"""

    def __post_init__(self) -> None:
        for name, low in (("overdue_days", 0), ("window_days", 1), ("lookback_days", 1)):
            value = getattr(self, name)
            if value < low:
                raise ParameterError(f"{{{name}}} {value} should be >= {low} day{'s' * (low != 1)}", param=name)
            if value > MAX_WARNING_DAYS:
                raise ParameterError(f"{{{name}}} {value} should be <= {MAX_WARNING_DAYS:,} days", param=name)
        if not 1 <= self.late_factor <= MAX_LATE_FACTOR:  # also refuses NaN
            raise ParameterError(
                f"{{late_factor}} {self.late_factor} should be from 1 to {MAX_LATE_FACTOR:g}", param="late_factor"
            )
        if not 2 <= self.min_orders <= MAX_MIN_ORDERS:
            raise ParameterError(
                f"{{min_orders}} {self.min_orders} should be from 2 (a rhythm needs a gap) to {MAX_MIN_ORDERS:,}",
                param="min_orders",
            )


def canonical(warning_id: str) -> str:
    """The current id of a warning named by its current or former id."""
    return ALIASES.get(warning_id, warning_id)


def find(result: dict[str, Any], warning_id: str) -> dict[str, Any]:
    """The warning ``warning_id`` (current or former id) in a :func:`warnings` result."""
    wid = canonical(warning_id)
    for item in result["warnings"]:
        if item["id"] == wid:
            return item
    raise ParameterError(f"no warning '{warning_id}'; warnings: {', '.join(x['id'] for x in result['warnings'])}")


def _known(now: RunMeta, tl: list[RunMeta]) -> list[str]:
    """The segments of the runs compared: ``now``'s, then any other of the timeline ``tl``."""
    return list(dict.fromkeys([*now.segments, *(n for m in tl for n in m.segments)]))


def watched_segments(runs_dir: str | Path, run: str | RunMeta | None = None) -> tuple[list[str], str]:
    """The segments :func:`warnings` knows for ``run`` (those of every run of the timeline up to it, its own
    first) and those runs in words (``run X``, ``runs X to Y``): what a caller checks the names it passes
    against (``rfmseg watch`` refuses a name these runs do not have; :func:`warnings` itself only says so)."""
    now = run if isinstance(run, RunMeta) else resolve(runs_dir, run)
    tl = timeline(runs_dir, until=now)
    where = f"run {now.run_id}" if len(tl) < 2 else f"runs {tl[0].run_id} to {tl[-1].run_id}"
    return _known(now, tl), where


def warnings(
    runs_dir: str | Path,
    run: str | RunMeta | None = None,
    *,
    overdue_days: int | None = None,
    late_factor: float = RhythmRule.late_factor,
    window_days: int | None = None,
    lookback_days: int = RhythmRule.lookback_days,
    min_orders: int = RhythmRule.min_orders,
    champions: str = "Champions",
    loyal: str = "Loyal Buyers",
    at_risk: str = "At-Risk",
    segments: list[str] | None = None,
    recency_jump_days: int | None = None,
    period_days: int | None = None,
    jump_segments: list[str] | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """The early warnings for ``run`` (default: the latest of the timeline) against the runs before it.

    ``offset`` and ``limit`` page each warning's customers (the same page of every warning; ``count`` stays
    all of them; ``limit`` None: to the end).

    ``recency_jump_days``, ``period_days`` and ``jump_segments`` are the former names of ``overdue_days``,
    ``window_days`` and ``segments`` (the calendar rule they configured is gone; they set the rhythm rule's).

    Each warning: id, aliases (its former ids), title, text, params, compared (the runs), count, customers (with
    the values that triggered it), customers sorted by monetary, largest first.
    """
    if overdue_days is None:
        overdue_days = RhythmRule.overdue_days if recency_jump_days is None else recency_jump_days
    if window_days is None:
        window_days = RhythmRule.window_days if period_days is None else period_days
    names = {"overdue_days": "recency_jump_days", "window_days": "period_days"}
    try:
        rule = RhythmRule(overdue_days, late_factor, window_days, lookback_days, min_orders)
    except ParameterError as e:  # name the parameter the caller gave: the former name, if that is what it was
        given = {"recency_jump_days": recency_jump_days, "period_days": period_days}
        param = e.params[0] if e.params else ""
        if param in names and given[names[param]] is not None:
            old = names[param]
            raise ParameterError(e.template.replace(f"{{{param}}}", f"{{{old}}}"), param=old) from None
        raise
    segments = segments if segments is not None else jump_segments
    if offset < 0:
        raise ParameterError(f"{{offset}} {offset} should be >= 0", param="offset")
    if limit is not None and limit < 0:
        raise ParameterError(f"{{limit}} {limit} should be >= 0", param="limit")
    now = run if isinstance(run, RunMeta) else resolve(runs_dir, run)  # a RunMeta: a run not committed yet
    tl = timeline(runs_dir, until=now)
    prev = tl[-2] if len(tl) >= 2 else None
    con = duckdb.connect()
    try:
        late = _late(con, now, tl, rule)
        w = _words(now)
        out = [
            _champions_to_loyal(con, now, prev, champions, loyal),
            _rhythm_warning(late, "champions_slowing", f"{champions} slowing down", rule, [champions], None, w),
            _rhythm_warning(late, "overdue", "Overdue on their own rhythm", rule, None, segments, w),
            _rhythm_warning(late, "loyal_lapsing", f"{loyal} lapsing toward {at_risk}", rule, [loyal], None, w),
            _segment_changed(con, now, prev, w),
            _model_drift(con, now, prev, w),
        ]
        known = set(_known(now, tl))  # every segment of the runs compared
        for x in out:  # a segment the rule names that these runs' vocabulary does not have: say so, not "0"
            named = [
                *(x["params"].get("segments") or []),
                x["params"].get("from_segment"),
                x["params"].get("to_segment"),
            ]
            absent = [n for n in named if n is not None and known and n not in known]
            if absent:
                x["text"] = (
                    f"these runs have no segment {' or '.join(absent)} (segments: {', '.join(now.segments)}); "
                    "give this vocabulary's names as champions, loyal and at_risk to watch them"
                )
    finally:
        con.close()
    end = None if limit is None else offset + limit
    for x in out:
        x["customers"] = x["customers"][offset:end]
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
        "aliases": sorted(old for old, new in ALIASES.items() if new == wid),
        "title": title,
        "text": text,
        "params": params,
        "compared": [m.label() for m in compared],
        "count": len(customers),
        "customers": customers,
    }


@dataclass
class _Late:
    """Every late customer (any segment) with the runs compared, or why there are none."""

    runs: list[RunMeta]
    rows: list[dict[str, Any]]
    missing: str | None = None


def _late(con: duckdb.DuckDBPyConnection, now: RunMeta, tl: list[RunMeta], rule: RhythmRule) -> _Late:
    window = [m for m in tl[:-1] if (now.date - m.date).days <= rule.window_days]
    if not window:
        return _Late([now], [], f"needs a run within the {rule.window_days} days before {now.date} to compare with")
    base = window[0]
    start = next(m for m in tl if (now.date - m.date).days <= rule.lookback_days)
    span = (now.date - base.date).days
    cols = RHYTHM_COLUMNS
    rows = query_rows(
        con,
        "WITH r AS ("
        "SELECT n.customer_id, n.segment, s.segment AS segment_start, n.recency_days, "
        "s.recency_days AS recency_days_start, n.frequency, b.frequency AS frequency_base, n.monetary, "
        f"{gap_sql('b')} AS gap, "
        "n.frequency - b.frequency AS orders_in_span "
        f"FROM {run_table(con, now, cols)} n JOIN {run_table(con, base, cols)} b ON n.customer_id = b.customer_id "
        f"LEFT JOIN {run_table(con, start, cols)} s ON n.customer_id = s.customer_id "
        "WHERE b.frequency >= ? AND b.first_order_date IS NOT NULL), "
        "l AS (SELECT *, greatest(recency_days - gap, ? - (orders_in_span + 1) * gap) AS days_late, "
        "greatest((? - 1) * gap, ?) AS limit_days FROM r WHERE gap > 0) "
        "SELECT customer_id, segment, segment_start, recency_days, round(gap, 1) AS expected_gap_days, "
        "round(days_late, 1) AS days_late, round(limit_days, 1) AS limit_days, orders_in_span, "
        "round(? / gap, 1) AS expected_in_span, frequency, monetary FROM l "
        "WHERE days_late > limit_days AND recency_days > gap "
        "AND (recency_days_start IS NULL OR recency_days_start <= gap + limit_days) "
        "ORDER BY monetary DESC, customer_id",
        [base.date, rule.min_orders, span, rule.late_factor, rule.overdue_days, span],
    )
    runs = [start, base, now] if start is not base else [base, now]
    return _Late(runs, rows)


def _rhythm_warning(
    late: _Late,
    wid: str,
    title: str,
    rule: RhythmRule,
    member_of: list[str] | None,
    now_in: list[str] | None,
    w: Words,
) -> dict[str, Any]:
    """The late customers who were in ``member_of`` at the start of the lookback or are now, and/or are now in
    ``now_in``."""
    params: dict[str, Any] = {**asdict(rule), "segments": member_of or now_in}
    if late.missing is not None:
        return _warning(wid, title, late.missing, params, late.runs, [])
    rows = [
        r
        for r in late.rows
        if (member_of is None or r["segment"] in member_of or r["segment_start"] in member_of)
        and (now_in is None or r["segment"] in now_in)
    ]
    first, last = late.runs[0], late.runs[-1]
    who = f" in {', '.join(member_of or now_in or [])}" if (member_of or now_in) else ""
    text = (
        f"{len(rows)} {w.entity}{who} are later than their own rhythm by more than max({rule.late_factor - 1:g} x "
        f"their mean gap between {w.units.event}s, {rule.overdue_days} days) as of {last.date}, and were not late on "
        f"{first.date}"
    )
    return _warning(wid, title, text, params, late.runs, rows)


def _words(now: RunMeta) -> Words:
    """How ``now``'s run speaks of its people and their events (its summary's units)."""
    summary = Path(now.file).parent / "summary.json"
    return Words.of(json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else None)


def _moved_sql(con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta, where: str) -> str:
    return (
        "SELECT b.customer_id, a.segment AS segment_from, b.segment AS segment_to, "
        "a.segment_reason AS reason_from, b.segment_reason AS reason_to, "
        f"CASE WHEN b.segment_reason = '{REASON_DRIFT}' THEN 'model_drift' ELSE 'behaviour' END AS cause, "
        "a.recency_days AS recency_days_from, b.recency_days AS recency_days_to, "
        "a.frequency AS frequency_from, b.frequency AS frequency_to, "
        "a.monetary AS monetary_from, b.monetary AS monetary_to "
        f"FROM {run_table(con, prev)} a JOIN {run_table(con, now)} b ON a.customer_id = b.customer_id "
        f"WHERE {where} ORDER BY b.monetary DESC, b.customer_id"
    )


def _champions_to_loyal(
    con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta | None, champions: str, loyal: str
) -> dict[str, Any]:
    title = f"{champions} who dropped to {loyal}"
    params = {"from_segment": champions, "to_segment": loyal}
    if prev is None:
        return _warning("champions_to_loyal", title, "needs an earlier run to compare with", params, [now], [])
    rows = query_rows(con, _moved_sql(con, now, prev, "a.segment = ? AND b.segment = ?"), [champions, loyal])
    text = f"{len(rows)} {champions} in {prev.date} are {loyal} in {now.date}"
    return _warning("champions_to_loyal", title, text, params, [prev, now], rows)


def _segment_changed(con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta | None, w: Words) -> dict[str, Any]:
    title = f"{w.entity.capitalize()} whose segment changed"
    if prev is None:
        return _warning("segment_changed", title, "needs an earlier run to compare with", {}, [now], [])
    rows = query_rows(con, _moved_sql(con, now, prev, "a.segment <> b.segment"))
    text = f"{len(rows)} {w.entity} changed segment between {prev.date} and {now.date}"
    return _warning("segment_changed", title, text, {}, [prev, now], rows)


def _model_drift(con: duckdb.DuckDBPyConnection, now: RunMeta, prev: RunMeta | None, w: Words) -> dict[str, Any]:
    title = f"Segment changes made by the retrain, not by the {w.entity} (model drift)"
    report = drift_report(now)
    params: dict[str, Any] = {"hold": report.get("hold") if report else None}
    if prev is None:
        return _warning("model_drift", title, "needs an earlier run to compare with", params, [now], [])
    where = f"a.segment <> b.segment AND b.segment_reason = '{REASON_DRIFT}'"
    rows = query_rows(con, _moved_sql(con, now, prev, where))
    if report is None:
        text = f"{now.run_id} is not a retrain with a drift report: no segment change is the model's"
    else:
        shifts = ", ".join(f"{c['segment']} {c['shift']:.3f}" for c in report.get("centroids", []))
        text = (
            f"{len(rows)} {w.entity} changed segment between {prev.date} and {now.date} because the retrain moved "
            f"the centroids (shift in scaled units: {shifts or 'none'}); their previous_segment and segment_since "
            "stay as they were"
        )
    return _warning("model_drift", title, text, params, [prev, now], rows)
