"""``rfmseg refresh --since-last NEW_FILE``: the daily refresh from the new transactions only, identical to a
full refresh over the whole history.

A refresh of this kind keeps an *RFM state* in its run folder, written with the run (nothing is left on
failure):

* ``state.parquet``: per customer, the mergeable aggregates behind R, F and M (:data:`rfmseg.features.STATE_SQL`):
  first and last non-return order time, the number of non-return orders and the unrounded sum of the order
  amounts, returns netted; customers with returns only are kept (``orders`` 0), so a later order brings
  their returns in as a full read would;
* ``orders.parquet``: the (customer, order) pairs of the file(s) this run read, any row's fate;
* the manifest's ``state``: the files the history is made of, the runs whose ``orders.parquet`` make up the
  orders seen, the as-of date and last order date, the history's rows per fate, the rows dated after their
  as-of date, the reading, and the date formats and decimal mark the history's read found (a day of the
  1st-12th reads both day-first and month-first on its own).

The new file is read and judged by the one read path (:func:`rfmseg.io.intake.read_rfm`, the same rules and
reasons); its state is merged into the last run's (SQL over Parquet, :data:`rfmseg.features.STATE_MERGE_SQL`),
recency is counted to the new as-of date for every customer, and everyone is scored with the current model.

Which rules are row-local and which need the history: every row rule of the generic and preset policies
reads one row, except the online-retail ``duplicate_line`` (a copy of an earlier line) and the per-customer
``returns_only_customer`` and ``after_as_of``. A duplicate shares its (customer, order), so it is caught as an
order seen before; the returns-only rule is settled against the merged state (a customer with orders in the
history is not returns-only); a row set aside as after the as-of date would come back in a later full read,
so a history holding one is not merged. Whatever cannot be merged falls back, with a one-line note, to a
full recompute over the history (the files the state names, and the new file), which writes a new state:

* the last run keeps no state (a ``run``, ``retrain`` or plain ``refresh``): its input is the history;
* a (customer, order) of the new file seen in an earlier file (an order across files, a repeated line);
* a feature set other than distinct orders and summed amounts (:data:`rfmseg.features.STATE_FEATURES`), or
  a reading other than the state's;
* an as-of date before the state's, a new file that ends before the history's last order (without
  ``--as-of``) or holds no order, earlier rows dated after their as-of date;
* a new file the read refuses (a broken row in ``error`` mode, a misread format).

The quarantine guard (one reason over the policy's share of the rows) is a full read's: it is checked on the
history's counts plus the new file's, so a day with many lines set aside merges as long as the whole does.

Without the history at hand the refresh stops with one line naming what to do.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg import schema
from rfmseg.digest import file_sha256
from rfmseg.errors import InputError
from rfmseg.features import STATE_FEATURES, STATE_MERGE_SQL, state_rfm_sql, state_sql
from rfmseg.io.intake import Intake, parse_as_of
from rfmseg.io.passes import check_shares
from rfmseg.io.readers import sql_string
from rfmseg.io.rules import AFTER_AS_OF, RETURNS_ONLY
from rfmseg.io.sources import FileList
from rfmseg.jobs.job import Job, JobOptions, LifeResult, job_runs_dir, publish_result
from rfmseg.jobs.quiet import DEFAULT_HOLD, check_hold
from rfmseg.jobs.reading import ModelRef
from rfmseg.jobs.refresh import model_ref, scored
from rfmseg.presets.online_retail import DUPLICATE
from rfmseg.runs import Run
from rfmseg.runs.artifacts import Rows
from rfmseg.runs.lock import one_job_at_a_time
from rfmseg.runs.manifest import rfm_sha256
from rfmseg.runs.registry import latest_run

STATE_FILE = "state.parquet"
ORDERS_FILE = "orders.parquet"
USED = f"_reason IS NULL OR _reason = {RETURNS_ONLY.sql_reason}"
"""the rows a state is built from: the used ones, and those of customers with returns only (a later order
makes them used)"""
STATE, NEW_STATE, NEW_ORDERS, CANON = "_rfm_state", "_rfm_state_new", "_rfm_orders_new", "_rfm_canon_incr"
"""the DuckDB tables and view of a refresh with a state, on the job's connection"""


class Unmergeable(Exception):
    """What makes the new file unmergeable into the state: the refresh falls back to a full recompute.
    ``refusal``: the read's own error when the new file read alone was refused (said instead, when the full
    read refuses too: it names the new file and its row, where the full read names the history)."""

    def __init__(self, why: str, refusal: InputError | None = None) -> None:
        super().__init__(why)
        self.refusal = refusal


def _last_day(as_of: date, last_order: date) -> date:
    """The last day a history read as of ``as_of`` holds: its last order, or the day before its as-of date when
    that is later (the days an as-of date covers). A line of an order already read dated on or before it
    repeats the history (:func:`_check_orders`)."""
    return max(last_order, as_of - timedelta(days=1))


def _history_last_day(base: Run, state: dict[str, Any] | None) -> date | None:
    """:func:`_last_day` of the history up to ``base``: from its state, else from its run (the last order is
    its as-of date less the smallest recency); None for a run without an as-of date."""
    if state:
        return _last_day(date.fromisoformat(state["as_of"]), date.fromisoformat(state["last_order"]))
    given = base.manifest.get("as_of")
    if not given:
        return None
    as_of = date.fromisoformat(given)
    recency = pc.min(base.table("assignments").column("recency_days")).as_py()
    return _last_day(as_of, as_of - timedelta(days=int(recency)) if recency is not None else as_of)


@one_job_at_a_time("refresh --since-last")
def refresh_since_last(
    new: str | Path,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    model: str = "latest",
    hold: float = DEFAULT_HOLD,
    **options: Unpack[JobOptions],
) -> LifeResult:
    """The refresh of the last run's history plus ``new`` (a file of the transactions since), scored with the
    current model, written as a run of kind 'refresh' with its RFM state and published: merged into the last
    run's state when it can be, else a full recompute (the manifest's ``state.note`` says why). Identical,
    customer by customer, to :func:`rfmseg.jobs.refresh.refresh` over the whole history (``hold`` too)."""
    band = check_hold(hold)
    started = datetime.now(UTC)
    runs_dir = job_runs_dir("refresh", options)
    ref = model_ref(model, runs_dir)
    base = latest_run(runs_dir)  # the latest as-of date: a backfill for an earlier day written after is not it
    assert base is not None  # model_ref found a trained run
    path = Path(new).resolve()
    if not path.is_file():
        raise InputError(f"{new}: no such file; give the file of the transactions since the last run")
    sha = file_sha256(path)
    state = base.manifest.get("state")
    if state and any(f["sha256"] == sha for f in state["files"][:-1]):
        raise InputError(
            f"{path.name} is in the history of run {base.run_id} already (the same bytes were merged before); "
            "--since-last takes only the transactions since the last run: give the file of the new ones"
        )
    if state and state["files"][-1]["sha256"] == sha:  # this very file was the last one merged
        asked = parse_as_of(as_of)
        if asked is not None and asked.isoformat() != state["as_of"]:
            raise InputError(
                f"{path.name} is the last file merged into run {base.run_id}, as of {state['as_of']}; --since-last "
                f"takes only new transactions: to refresh as of {asked} without new ones, refresh the whole "
                f"history with `rfmseg refresh FILE --as-of {asked}`"
            )
        found = LifeResult("refresh", base, "existing", base.summary, base.manifest)
        if options.get("publish", True):
            found.publish = publish_result(found, runs_dir, options.get("store"))
        return found
    with Job.start("refresh", started, runs_dir, ref.run, options) as job:
        held = _history_last_day(base, state)
        try:
            if not state:
                raise Unmergeable(f"run {base.run_id} keeps no RFM state")
            read = _merged(job, base, state, path, sha, columns, as_of)
        except Unmergeable as why:
            history = _history(base, state)
            note = f"{why}: recomputed in full over {len(history)} earlier file(s) and {path.name}"
            probe = _probe(job, path, columns, as_of)
            try:
                read = _full(job, base, [*history, {"path": str(path), "sha256": sha}], columns, as_of, note)
            except InputError:
                if why.refusal is not None:  # the day was refused alone too: its own line names its file and row
                    raise why.refusal from None
                raise
            if probe is not None and held is not None:
                _check_overlap(job.engine.con, read[0], probe, held, path)
        result = _written(job, ref, *read, band)
    return job.finish(result)


def _history(base: Run, state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The files the history up to ``base`` is made of: its state's, else its own input."""
    if state:
        files = list(state["files"])
    else:
        given = (base.manifest.get("input") or {}).get("path")
        files = [{"path": str(Path(given).resolve()), "sha256": base.manifest["input"].get("sha256")}] if given else []
    missing = [f["path"] for f in files if not Path(f["path"]).is_file()]
    if not files or missing:
        raise InputError(
            f"run {base.run_id} cannot be merged into and its history is not at hand "
            f"({missing[0] if missing else 'no input file'}); put the files back, or refresh the whole history once "
            "with `rfmseg refresh HISTORY_FILE` and then `--since-last` the files after it"
        )
    return files


def _reading_key(job: Job) -> dict[str, Any]:
    p = job.read.policy
    return {**job.read.describe(), "returns": p.returns, "bad_rows": p.bad_rows}


def _canonical(value: Any) -> str:
    """``value`` as the JSON text a manifest holds (tuples are lists there)."""
    return json.dumps(value, sort_keys=True, default=str)


Read = tuple[Intake, pa.Table, str, dict[str, Any]]
"""what a refresh read: the prepared input, its RFM table, the table's fingerprint, the state's manifest entry"""


def _merged(
    job: Job,
    base: Run,
    state: dict[str, Any],
    path: Path,
    sha: str,
    columns: dict[str, str] | None,
    as_of: str | date | None,
) -> Read:
    """The read from the new file and ``base``'s state; :class:`Unmergeable` when it cannot be exact."""
    if job.read.features != STATE_FEATURES:
        raise Unmergeable(f"the features {job.read.features.to_dict()} have no mergeable state")
    if _canonical(state.get("reading")) != _canonical(_reading_key(job)):
        raise Unmergeable(f"the reading differs from the one run {base.run_id}'s state was built with")
    if "rows" not in state:
        raise Unmergeable(f"the state of run {base.run_id} does not count its rows")
    if state.get("after_as_of"):
        raise Unmergeable(f"{state['after_as_of']:,} row(s) of the history are dated after their as-of date")
    orders = [base.path.parent / r / ORDERS_FILE for r in state["orders"]]
    gone = [str(p) for p in orders if not p.is_file()]
    if gone or not (base.path / STATE_FILE).is_file():
        raise Unmergeable(f"the state of run {base.run_id} is incomplete ({(gone or [STATE_FILE])[0]} is gone)")
    # the quarantine guard is a full read's: on the history's counts with the new file's (a day may set aside
    # a larger share than the history as a whole)
    # and the date formats and decimal mark are the history's (a day's dates may all read both ways)
    policy = job.read.policy
    found = state.get("formats") or {}
    unguarded = replace(
        job.read,
        policy=replace(
            policy,
            max_quarantine=1.0,
            date_formats=policy.date_formats or tuple(found.get("date_formats") or ()),
            decimal=policy.decimal or found.get("decimal"),
        ),
    )
    try:
        intake, _ = unguarded.load(job.engine, str(path), columns, as_of, job.timer)
    except InputError as exc:
        raise Unmergeable(f"{path.name} read alone is refused ({str(exc).splitlines()[0]})", exc) from None
    con = job.engine.con
    with job.timer.stage("merge"):
        _state_tables(con, intake.view)
        held = _last_day(date.fromisoformat(state["as_of"]), date.fromisoformat(state["last_order"]))
        _check_orders(con, intake, orders, held, path)
        new_as_of = _check_dates(con, intake, state, as_of)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STATE} AS "
            + STATE_MERGE_SQL.format(old=f"read_parquet({sql_string(str(base.path / STATE_FILE))})", new=NEW_STATE)
        )
        rfm = con.sql(state_rfm_sql(STATE, new_as_of)).to_arrow_table()
        prepared = _returns_settled(con, intake)
    history = _added(state["rows"], prepared.rows_summary())
    rules = (*prepared.rules, RETURNS_ONLY)
    check_shares(f"the history and {path.name}", history["read"], history["quarantined"], policy, rules)
    data_sha = rfm_sha256(rfm)
    meta = _meta(job, con, prepared, "incremental", base.run_id, None)
    meta.update(
        files=[*state["files"], {"path": str(path), "sha256": sha, "rows": prepared.rows_read}],
        orders=[*state["orders"], job.run_id],
        after_as_of=int(state.get("after_as_of", 0)) + meta["after_as_of"],
        rows=history,
    )
    return prepared, rfm, data_sha, meta


def _full(
    job: Job,
    base: Run,
    files: list[dict[str, Any]],
    columns: dict[str, str] | None,
    as_of: str | date | None,
    note: str,
) -> Read:
    """The read of the whole history (``files``, read as one table), making a new state."""
    paths = tuple(str(f["path"]) for f in files)
    source: Any = paths[0] if len(paths) == 1 else FileList(f"{paths[0]} and {len(paths) - 1} more", paths)
    prepared, rfm, data_sha = job.load(source, columns, as_of)
    con = job.engine.con
    with job.timer.stage("merge"):
        _state_tables(con, prepared.view)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {STATE} AS SELECT * FROM {NEW_STATE}")
    meta = _meta(job, con, prepared, "full", base.run_id, note)
    meta.update(
        files=[{"path": f["path"], "sha256": f["sha256"]} for f in files],
        orders=[job.run_id],
        rows=prepared.rows_summary(),
    )
    return prepared, rfm, data_sha, meta


def _added(history: Rows, new: Rows) -> Rows:
    """The rows of the history and of a new file, per fate (a customer with returns only in the history who
    orders in the new file stays counted as such: the sum is an upper bound of that reason)."""
    quarantined = dict(history["quarantined"])
    for reason, n in new["quarantined"].items():
        quarantined[reason] = quarantined.get(reason, 0) + n
    return {"read": history["read"] + new["read"], "used": history["used"] + new["used"], "quarantined": quarantined}


def _state_tables(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """The state and the (customer, order) pairs of the judged view ``view``."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {NEW_STATE} AS {state_sql(view, USED)}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {NEW_ORDERS} AS SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id, "
        f"CAST(order_id AS VARCHAR) AS order_id FROM {view} WHERE customer_id IS NOT NULL AND order_id IS NOT NULL"
    )


OVERLAP_FIX = (
    "--since-last takes only the transactions since the last run: give the file of the new ones, or refresh the "
    "whole history with `rfmseg refresh FILE`"
)
PROBE = "_rfm_probe_new"
"""the new file's used lines per (customer, order): how many, and the first day (a full recompute's check)"""


def _overlap(path: Path, lines: int, held: date, customer: Any, order: Any) -> InputError:
    return InputError(
        f"{path.name} repeats {lines:,} line(s) of orders already read, dated on or before {held}, the last day "
        f"the history holds (e.g. order {order} of customer {customer}); {OVERLAP_FIX}"
    )


def _no_order_id(path: Path, lines: int, held: date, first: Any) -> InputError:
    return InputError(
        f"{path.name} has {lines:,} line(s) dated on or before {held}, the last day the history holds (from "
        f"{first}); without an order id they cannot be told from lines already read; {OVERLAP_FIX}"
    )


def _after(held: date) -> str:
    """SQL: the first day after ``held`` (a line dated before it is in the days the history holds)."""
    return f"DATE '{(held + timedelta(days=1)).isoformat()}'"


def _probe(job: Job, path: Path, columns: dict[str, str] | None, as_of: str | date | None) -> Intake | None:
    """The new file read alone, its used lines per (customer, order) kept in :data:`PROBE` for
    :func:`_check_overlap` after the full read; None when it is refused alone (the full read then says why)."""
    try:
        intake, _ = job.read.load(job.engine, str(path), columns, as_of, job.timer)
    except InputError:
        return None
    _keep_lines(job.engine.con, intake.view)
    return intake


def _keep_lines(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """:data:`PROBE`: the used lines of the new file's judged view ``view`` per (customer, order)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PROBE} AS SELECT CAST(customer_id AS VARCHAR) AS customer_id, "
        f"CAST(order_id AS VARCHAR) AS order_id, count(*) AS lines, min(CAST(ts AS DATE)) AS day "
        f"FROM {view} WHERE _reason IS NULL GROUP BY ALL"
    )


def _check_dated_lines(con: duckdb.DuckDBPyConnection, held: date, path: Path) -> None:
    """Without an order id (each line is its own order): refuse the new file (its lines in :data:`PROBE`)
    when a line is dated on or before ``held``, the last day the history holds: it cannot be told from a
    line already read."""
    row = con.execute(f"SELECT sum(lines), min(day) FROM {PROBE} WHERE day < {_after(held)}").fetchone()
    if row and row[0]:
        raise _no_order_id(path, int(row[0]), held, row[1])


def _check_overlap(con: duckdb.DuckDBPyConnection, whole: Intake, probe: Intake, held: date, path: Path) -> None:
    """After a full read of the history and the new file (``whole``): refuse the new file when it repeats the
    history (:func:`_check_orders`'s rule): an order of the new file has more used lines in the whole than
    in the new file alone, on a line dated on or before the last day the history holds (:func:`_last_day`)."""
    day = _after(held)
    if schema.ORDER_ID not in probe.mapping:
        _check_dated_lines(con, held, path)
        return
    if DUPLICATE in whole.rules:
        return
    row = con.execute(
        f"SELECT sum(p.lines), min(p.customer_id), min(p.order_id) FROM {PROBE} AS p JOIN ("
        f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(order_id AS VARCHAR) AS order_id, "
        f"count(*) AS lines FROM {whole.view} WHERE _reason IS NULL GROUP BY ALL) AS w "
        f"ON w.customer_id = p.customer_id AND w.order_id = p.order_id WHERE w.lines > p.lines AND p.day < {day}"
    ).fetchone()
    if row and row[0]:
        raise _overlap(path, int(row[0]), held, row[1], row[2])


def _check_orders(con: duckdb.DuckDBPyConnection, intake: Intake, orders: list[Path], held: date, path: Path) -> None:
    """Refuse a new file that repeats the history (an overlap, a day fed twice): its copies would count twice
    where the reading does not set copies aside. Unmergeable when a (customer, order) of the new file was seen
    in an earlier one otherwise: an order across files (its date and return flag need all its rows, e.g. a
    later return) or a line repeated that the preset's ``duplicate_line`` sets aside (it needs the first copy).

    An order of the history repeated on a line dated on or before ``held``, the last day the history holds
    (:func:`_last_day`), is an overlap (a later line of it, a return, is not). Without an order id column
    (each line is its own order) an overlap cannot be told from a new order: any line dated on or before
    ``held`` is refused (:func:`_check_dated_lines`)."""
    day = _after(held)
    if schema.ORDER_ID not in intake.mapping:
        _keep_lines(con, intake.view)
        _check_dated_lines(con, held, path)
        return
    files = "[" + ", ".join(sql_string(str(p)) for p in orders) + "]"
    seen = con.execute(
        f"SELECT n.customer_id, n.order_id FROM read_parquet({files}) AS o "
        f"JOIN {NEW_ORDERS} AS n ON o.customer_id = n.customer_id AND o.order_id = n.order_id LIMIT 1"
    ).fetchone()
    if seen is None:
        return
    copies = con.execute(
        f"SELECT count(*), min(v.customer_id), min(v.order_id) FROM {intake.view} AS v "
        f"SEMI JOIN read_parquet({files}) AS o ON CAST(v.customer_id AS VARCHAR) = o.customer_id "
        f"AND CAST(v.order_id AS VARCHAR) = o.order_id WHERE v._reason IS NULL AND CAST(v.ts AS DATE) < {day}"
    ).fetchone()
    if copies and copies[0] and DUPLICATE not in intake.rules:
        raise _overlap(path, int(copies[0]), held, copies[1], copies[2])
    raise Unmergeable(
        f"order {seen[1]} of customer {seen[0]} is in an earlier file too (an order across files, a repeated line)"
    )


def _check_dates(
    con: duckdb.DuckDBPyConnection, intake: Intake, state: dict[str, Any], given: str | date | None
) -> date:
    """The as-of date of the merged history (the new read's), when it is the one a full read would settle."""
    assert intake.as_of is not None  # a read of transactions settles it
    row = con.execute(f"SELECT CAST(max(last_ts) AS DATE) FROM {NEW_STATE}").fetchone()
    last_new = row[0] if row else None
    if last_new is None:
        raise Unmergeable("the new file holds no order (its as-of date would come from its returns)")
    if intake.as_of < date.fromisoformat(state["as_of"]):
        raise Unmergeable(f"the as-of date {intake.as_of} is before the state's, {state['as_of']}")
    last_old = date.fromisoformat(state["last_order"])
    if given is None and last_old > last_new:
        raise Unmergeable(f"the new file's last order ({last_new}) is before the history's ({last_old})")
    return intake.as_of


def _returns_settled(con: duckdb.DuckDBPyConnection, intake: Intake) -> Intake:
    """The new file's read with the returns-only rule settled against the merged state: the rows of a customer
    whose new rows are all returns but who has orders in the history are used."""
    n = intake.quarantined.get(RETURNS_ONLY.reason, 0)
    if not n:
        return intake
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {CANON} AS SELECT * REPLACE (CASE WHEN _reason = {RETURNS_ONLY.sql_reason} "
        f"AND customer_id IN (SELECT customer_id FROM {STATE} WHERE orders > 0) THEN NULL ELSE _reason END AS _reason) "
        f"FROM {intake.view}"
    )
    row = con.execute(f"SELECT count(*) FROM {CANON} WHERE _reason = {RETURNS_ONLY.sql_reason}").fetchone()
    left = int(row[0]) if row else 0
    quarantined = {k: v for k, v in intake.quarantined.items() if k != RETURNS_ONLY.reason}
    if left:
        quarantined[RETURNS_ONLY.reason] = left
    return replace(intake, view=CANON, quarantined=quarantined, set_aside=None)


def _meta(
    job: Job, con: duckdb.DuckDBPyConnection, prepared: Intake, mode: str, base: str, note: str | None
) -> dict[str, Any]:
    """The manifest's ``state`` entry, as far as the mode of building it does not change it."""
    assert prepared.as_of is not None
    row = con.execute(f"SELECT CAST(max(last_ts) AS DATE), count(*) FROM {STATE}").fetchone()
    last, customers = (row[0], int(row[1])) if row else (None, 0)
    return {
        "mode": mode,
        "built_on": base,
        "note": note,
        "rows_new": prepared.rows_read,
        "as_of": prepared.as_of.isoformat(),
        "last_order": (last or prepared.as_of - timedelta(days=1)).isoformat(),
        "customers": customers,
        "after_as_of": int(prepared.quarantined.get(AFTER_AS_OF.reason, 0)),
        "reading": _reading_key(job),
        "formats": {
            "date_formats": list(prepared.policy.date_formats) if prepared.policy else [],
            "decimal": prepared.policy.decimal if prepared.policy else None,
        },
    }


def _written(
    job: Job, ref: ModelRef, prepared: Intake, rfm: pa.Table, data_sha: str, meta: dict[str, Any], band: float
) -> LifeResult:
    """The run, scored with the model (the labels held within ``band`` as a full refresh holds them) and written
    with its state (or found written already)."""
    con = job.engine.con

    def write_state(folder: Path) -> None:
        for table, name in ((STATE, STATE_FILE), (NEW_ORDERS, ORDERS_FILE)):
            con.execute(f"COPY {table} TO {sql_string(str(folder / name))} (FORMAT parquet, COMPRESSION zstd)")

    return scored(job, ref, prepared, rfm, data_sha, band, state=meta, extra=write_state)
