"""Campaigns with a randomised holdout: plan who is contacted and who is held out, then measure what the
contact caused (:mod:`rfmseg.model.uplift`).

``plan`` takes a run's customers of the chosen segments and draws a seeded random control group inside each
stratum (segment x value band: the customers of a segment ranked by ``rank_by`` and cut into ``bands``
bands of equal size), so treated and control are alike in segment and value and ranked targeting stays
fair (the holdout is drawn within each rank band). It writes the campaign's folder
``<runs_dir>/campaigns/<name>/`` (``plan.json``; ``members.parquet``: every member with its segment, band and
group), the target and control lists (CSV or Parquet) and, as one import of the touches history, a planned
touch for each treated customer (the control customers get none: they are not contacted).

``measure`` reads the transactions as the plan's run read its own (preset, features), with the row policy
``bad_rows`` (default: the preset's, else ``error``, which stops at the first bad row; ``quarantine`` sets the
bad rows aside, with their reason, in the campaign's ``quarantine.parquet``), takes each member's orders in the
window after the send date, and compares treated with control per segment and overall: conversion (ordered
again), revenue per customer and, where a run exists at or after the window's end, the segment each member is
in then.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfmseg.engines.local import LocalEngine
from rfmseg.errors import InputError, NotFoundError, ParameterError, shown_id
from rfmseg.jobs.reading import Reading, reading
from rfmseg.model.uplift import measure as measure_uplift
from rfmseg.runs import DEFAULT_RUNS_DIR, RunWriter, get_run, list_runs
from rfmseg.runs.artifacts import Rows
from rfmseg.timing import Timer
from rfmseg.touches import KINDS, TOUCH_SCHEMA, new_import_id, normalise_kind, touches_dir

CAMPAIGNS_DIR = "campaigns"
QUARANTINE_FILE = "quarantine.parquet"
"""the rows the last measure set aside, with their reason (in the campaign's folder, beside measure.json)"""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RANKABLE = ("monetary", "frequency", "recency_days", "expected_value_90d", "p_alive")
"""the assignments columns a plan can rank customers by (recency: the most recent first; others: highest)"""


def campaigns_dir(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    return Path(runs_dir) / CAMPAIGNS_DIR


def parse_share(value: str | float) -> float:
    """A share given as ``10%``, ``0.1`` or ``10`` (a number above 1 is a percentage)."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ParameterError(f"{{holdout}} '{value}' is not a share; give e.g. 10% or 0.1", param="holdout") from None
    if not text.endswith("%") and share > 1:  # a bare number above 1 is a percentage
        share /= 100
    if not 0 < share < 1:
        raise ParameterError(f"{{holdout}} '{value}' should be between 0 and 100 %", param="holdout")
    return share


def parse_window(value: str | int) -> int:
    """A window given as ``30d``, ``30`` or ``4w`` (days)."""
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+)\s*([dw]?)", text)
    if not m or int(m[1]) == 0:
        raise ParameterError(f"{{window}} '{value}' is not a window; give days, e.g. 30d or 4w", param="window")
    return int(m[1]) * (7 if m[2] == "w" else 1)


# ------------------------------------------------------------------------------------------------- plan
def plan(
    name: str,
    segments: list[str],
    action: str,
    holdout: str | float = 0.10,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    run: str = "latest",
    seed: int = 7,
    rank_by: str = "monetary",
    bands: int = 4,
    send_date: date | str | None = None,
    channel: str = "email",
    out_dir: str | Path | None = None,
    file_format: str = "csv",
) -> dict[str, Any]:
    """Draw the control group of campaign ``name`` among the customers of ``segments`` in run ``run`` and
    write the campaign (see the module docstring); returns what was written, with the counts per stratum."""
    runs_dir = Path(runs_dir)
    if not NAME.match(name):
        raise ParameterError(
            f"campaign name '{name}' should be 1-64 letters, digits, '-', '_' or '.'; e.g. winback-2024-03",
            param="name",
        )
    folder = campaigns_dir(runs_dir) / name
    if folder.exists():
        raise ParameterError(f"campaign '{name}' is already planned ({folder}); choose another name", param="name")
    share = parse_share(holdout)
    kind = normalise_kind(action)
    if kind not in KINDS:
        raise ParameterError(f"unknown action '{action}'; use one of {', '.join(KINDS)}", param="action")
    if rank_by not in RANKABLE:
        raise ParameterError(f"{{rank_by}} '{rank_by}' is not rankable; use {', '.join(RANKABLE)}", param="rank_by")
    if not 1 <= bands <= 20:
        raise ParameterError(f"{{bands}} {bands} should be between 1 and 20", param="bands")
    if file_format not in ("csv", "parquet"):
        raise ParameterError(f"{{file_format}} '{file_format}' is not allowed; use csv or parquet", param="file_format")
    source = get_run(run, runs_dir)
    as_of = date.fromisoformat(str(source.manifest["as_of"]))
    sent = _date(send_date, "send_date") if send_date is not None else as_of
    assignments = pq.read_table(source.path / "assignments.parquet")
    known = sorted(set(assignments.column("segment").to_pylist()))
    if not segments:
        raise ParameterError(f"give at least one {{segment}}; this run has {', '.join(known)}", param="segment")
    unknown = [s for s in segments if s not in known]
    if unknown:
        raise NotFoundError(
            f"no segment '{unknown[0]}' in run {source.run_id}; its segments are {', '.join(known)}", param="segment"
        )
    if rank_by not in assignments.column_names:
        raise ParameterError(
            f"{{rank_by}} '{rank_by}' is not in run {source.run_id}; use monetary, frequency or recency_days",
            param="rank_by",
        )
    members = draw(assignments, segments, share, seed, rank_by, bands)
    strata = _strata(members)
    created = datetime.now(UTC)
    record = {
        "name": name,
        "action": kind,
        "channel": channel,
        "segments": segments,
        "holdout": share,
        "seed": seed,
        "rank_by": rank_by,
        "bands": bands,
        "run_id": source.run_id,
        "as_of": as_of.isoformat(),
        "send_date": sent.isoformat(),
        "created": created.isoformat(),
        "treated": int(pc.sum(pc.equal(members.column("group"), "treatment")).as_py() or 0),
        "control": int(pc.sum(pc.equal(members.column("group"), "control")).as_py() or 0),
        "strata": strata,
        "touches_import": new_import_id(),
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and not out.is_dir():
        raise InputError(
            f"cannot write the lists to {out}: no such folder; create it or choose another {{out_dir}}", param="out_dir"
        )
    writer = RunWriter(campaigns_dir(runs_dir), name)
    lists: dict[str, str] = {}
    try:
        writer.parquet("members.parquet", members)
        for group, file in (("treatment", "target"), ("control", "control")):
            rows = members.filter(pc.equal(members.column("group"), group)).select(
                ["customer_id", "segment", "band", rank_by]
            )
            path = writer.path(f"{file}.{file_format}")
            _write_list(rows, path, file_format)
            lists[file] = str(out / path.name if out is not None else folder / path.name)
        writer.json("plan.json", record)
        committed = writer.commit()
    except BaseException:
        writer.abort()
        raise
    try:
        _planned_touches(runs_dir, record, members)
        if out is not None:
            for file in lists.values():
                _copy(committed.path / Path(file).name, Path(file))
    except BaseException:
        shutil.rmtree(committed.path, ignore_errors=True)  # a campaign is planned whole or not at all
        raise
    return {**record, "folder": str(committed.path), "lists": lists}


def draw(assignments: pa.Table, segments: list[str], share: float, seed: int, rank_by: str, bands: int) -> pa.Table:
    """The members of the chosen segments with their band (1 = the highest ``rank_by``) and their group:
    ``round(share * n)`` customers of each stratum (segment x band), drawn by a generator seeded with
    ``seed``, are the control."""
    con = duckdb.connect()
    try:
        con.register("a", assignments)
        order = "ASC" if rank_by == "recency_days" else "DESC"
        listed = ", ".join("'" + s.replace("'", "''") + "'" for s in segments)
        ranked = con.sql(
            f"SELECT customer_id, segment, CAST({rank_by} AS DOUBLE) AS {rank_by}, "
            f"CAST(ntile({bands}) OVER (PARTITION BY segment ORDER BY {rank_by} {order} NULLS LAST, customer_id) "
            f"AS INTEGER) AS band FROM a WHERE segment IN ({listed}) ORDER BY segment, band, customer_id"
        ).to_arrow_table()
    finally:
        con.close()
    rng = np.random.default_rng(seed)
    seg = ranked.column("segment").to_numpy(zero_copy_only=False)
    band = ranked.column("band").to_numpy()
    control = np.zeros(ranked.num_rows, dtype=bool)
    starts = np.flatnonzero(np.r_[True, (seg[1:] != seg[:-1]) | (band[1:] != band[:-1]), True])
    for lo, hi in itertools.pairwise(starts):
        n = hi - lo
        held = round(share * n)
        control[lo + rng.permutation(n)[:held]] = True
    group = pa.array(np.where(control, "control", "treatment"))
    return ranked.append_column("group", group)


def _strata(members: pa.Table) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        con.register("m", members)
        rows = con.execute(
            "SELECT segment, band, count(*) FILTER (WHERE \"group\" = 'treatment'), "
            "count(*) FILTER (WHERE \"group\" = 'control') FROM m GROUP BY ALL ORDER BY segment, band"
        ).fetchall()
    finally:
        con.close()
    return [{"segment": s, "band": b, "treated": t, "control": c} for s, b, t, c in rows]


def _write_list(rows: pa.Table, path: Path, file_format: str) -> None:
    if file_format == "parquet":
        pq.write_table(rows, path, compression="zstd")
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(rows, path)


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(src.read_bytes())
    tmp.replace(dst)


def _planned_touches(runs_dir: Path, record: dict[str, Any], members: pa.Table) -> None:
    """One touches import (``record["touches_import"]``): a planned touch (campaign, kind, channel, send
    date) per treated customer."""
    treated = members.filter(pc.equal(members.column("group"), "treatment"))
    n = treated.num_rows
    import_id = record["touches_import"]
    sent = datetime.fromisoformat(record["send_date"])
    table = pa.table(
        {
            "import_id": pa.array([import_id] * n),
            "row_number": pa.array(np.arange(1, n + 1), pa.int64()),
            "customer_id": treated.column("customer_id"),
            "campaign": pa.array([record["name"]] * n),
            "kind": pa.array([record["action"]] * n),
            "channel": pa.array([record["channel"]] * n),
            "sent_at": pa.array([sent] * n, pa.timestamp("us")),
            "responded_at": pa.nulls(n, pa.timestamp("us")),
            "converted_at": pa.nulls(n, pa.timestamp("us")),
        }
    ).cast(TOUCH_SCHEMA)
    manifest = {
        "import_id": import_id,
        "created": datetime.now(UTC).isoformat(),
        "input": {"path": f"campaign {record['name']} (planned)", "sha256": None, "format": "plan", "columns": {}},
        "rows": {"read": n, "used": n, "quarantined": {}},
        "kinds": {record["action"]: n},
        "sent_from": sent.isoformat(),
        "sent_to": sent.isoformat(),
        "planned_campaign": record["name"],
        "held_out": record["control"],
    }
    writer = RunWriter(touches_dir(runs_dir), import_id)
    try:
        pq.write_table(table, writer.path("touches.parquet"), compression="zstd")
        pq.write_table(table.slice(0, 0), writer.path("quarantine.parquet"))
        writer.json("manifest.json", manifest)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _date(value: date | str, param: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"{{{param}}} '{value}' is not a date; use YYYY-MM-DD", param=param) from None


# ------------------------------------------------------------------------------------------------- reading
def planned_folder(name: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    """The folder of the planned campaign ``name``; a :class:`NotFoundError` naming the fix (plan it, or one
    of the planned ones) when there is none. A name no campaign can have (``..``, a slash) is never looked up."""
    folder = campaigns_dir(runs_dir) / name
    if NAME.match(name) and (folder / "plan.json").exists():
        return folder
    planned = [p["name"] for p in list_campaigns(runs_dir)]
    shown = shown_id(name, 64)
    to_plan = f"`rfmseg campaign plan {name if NAME.match(name) else 'NAME'} --segment SEGMENT --action ACTION`"
    if planned:
        listed = ", ".join(planned[:10]) + (f" and {len(planned) - 10} more" if len(planned) > 10 else "")
        fix = f"measure one of the planned campaigns ({listed}; `rfmseg campaign list` shows them), or plan it first"
        raise NotFoundError(f"no campaign '{shown}' in {campaigns_dir(runs_dir)}; {fix} with {to_plan}", param="name")
    raise NotFoundError(
        f"no campaign '{shown}' in {campaigns_dir(runs_dir)}: none is planned yet; plan it first with {to_plan}",
        param="name",
    )


def load_plan(name: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> tuple[dict[str, Any], pa.Table]:
    """The plan (``plan.json``) and the members of campaign ``name``."""
    folder = planned_folder(name, runs_dir)
    return json.loads((folder / "plan.json").read_text(encoding="utf-8")), pq.read_table(folder / "members.parquet")


def list_campaigns(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[dict[str, Any]]:
    """Every planned campaign's plan (and its last measurement, when it was measured), oldest first."""
    base = campaigns_dir(runs_dir)
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.iterdir(), key=lambda p: p.name):
        if p.is_dir() and not p.name.startswith(".") and (p / "plan.json").exists():
            record = json.loads((p / "plan.json").read_text(encoding="utf-8"))
            if (p / "measure.json").exists():
                record["measured"] = json.loads((p / "measure.json").read_text(encoding="utf-8"))
            out.append(record)
    return sorted(out, key=lambda r: r["created"])


# ------------------------------------------------------------------------------------------------- measure
def measure(
    name: str,
    source: Any,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    window: str | int = 30,
    columns: dict[str, str] | None = None,
    confidence: float = 0.95,
    seed: int = 7,
    bad_rows: str | None = None,
) -> dict[str, Any]:
    """Measure campaign ``name`` on the transactions of ``source`` (read as the plan's run read its own):
    per segment and overall, treated against control, in the ``window`` days after the send date.

    ``bad_rows`` (default: the preset's, else ``error``): ``error`` stops at the first bad row, ``quarantine``
    sets the bad rows aside with their reason and measures on the rest; either way every row read is counted
    in the result's ``rows`` and the rows set aside are in ``quarantine.parquet`` in the campaign's folder."""
    runs_dir = Path(runs_dir)
    record, members = load_plan(name, runs_dir)
    days = parse_window(window)
    sent = date.fromisoformat(record["send_date"])
    end = sent + timedelta(days=days)
    read = reading(get_run(record["run_id"], runs_dir), bad_rows=bad_rows)
    folder = campaigns_dir(runs_dir) / name
    quarantine = folder / QUARANTINE_FILE
    set_aside = folder / f".{QUARANTINE_FILE}.tmp"
    tmp = folder / ".measure.json.tmp"
    try:
        outcome, rows_read = _outcome(read, source, columns, members, name, sent, end, set_aside)
        groups: dict[str, Any] = {}
        for segment in [*record["segments"], None]:
            rows = outcome if segment is None else outcome.filter(pc.equal(outcome.column("segment"), segment))
            t = rows.filter(pc.equal(rows.column("group"), "treatment"))
            c = rows.filter(pc.equal(rows.column("group"), "control"))
            result = measure_uplift(
                t.column("converted").to_numpy(zero_copy_only=False),
                c.column("converted").to_numpy(zero_copy_only=False),
                t.column("revenue").to_numpy(zero_copy_only=False),
                c.column("revenue").to_numpy(zero_copy_only=False),
                confidence,
                seed,
            )
            groups["all" if segment is None else segment] = result.to_dict()
        moves = _moves(runs_dir, members, end)
        report = {
            "campaign": name,
            "action": record["action"],
            "send_date": sent.isoformat(),
            "window_days": days,
            "window_end": end.isoformat(),
            "confidence": confidence,
            "design": "randomised holdout (experimental)",
            "by_segment": {k: v for k, v in groups.items() if k != "all"},
            "all": groups["all"],
            "moves": moves,
            "rows": rows_read,
            "bad_rows": read.policy.bad_rows,
            "quarantine": str(quarantine),
            "measured": datetime.now(UTC).isoformat(),
        }
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
        set_aside.replace(quarantine)  # the rows set aside by this measure, then the measure itself
        tmp.replace(folder / "measure.json")
    finally:
        set_aside.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return report


def _outcome(
    read: Reading,
    source: Any,
    columns: dict[str, str] | None,
    members: pa.Table,
    name: str,
    sent: date,
    end: date,
    set_aside: Path,
) -> tuple[pa.Table, Rows]:
    """Each member's conversion and revenue in the window (``sent``, ``end``], from the rows of ``source`` used;
    the rows counts of the read, and the rows set aside written to ``set_aside`` with their reason."""
    engine = LocalEngine()
    try:
        intake, _ = read.load(engine, source, columns, None, Timer())
        last = intake.as_of - timedelta(days=1) if intake.as_of else None
        if last is None or last < end:
            raise InputError(
                f"the transactions end on {last}, before the window of campaign '{name}' ends ({end}: "
                f"{(end - sent).days} days after {sent}); measure with data through {end}, or a shorter {{window}}",
                param="window",
            )
        con = engine.con
        con.register("members", members)
        outcome = con.sql(
            f'SELECT m.customer_id, m.segment, m."group", coalesce(o.orders, 0) > 0 AS converted, '
            f"coalesce(o.revenue, 0.0) AS revenue FROM members m LEFT JOIN ("
            f"SELECT customer_id, count(DISTINCT order_id) FILTER (WHERE NOT is_return) AS orders, "
            f"sum(amount) AS revenue FROM {intake.view} WHERE _reason IS NULL "
            f"AND CAST(ts AS DATE) > DATE '{sent.isoformat()}' AND CAST(ts AS DATE) <= DATE '{end.isoformat()}' "
            f"GROUP BY customer_id) o USING (customer_id)"
        ).to_arrow_table()
        engine.write_quarantine(intake, set_aside)  # none set aside: an empty file with the source's columns
        return outcome, intake.rows_summary()
    finally:
        engine.close()


def _moves(runs_dir: Path, members: pa.Table, end: date) -> dict[str, Any] | None:
    """The segment of each member in the first run at or after ``end``, by group (None when there is none)."""
    later = [r for r in list_runs(runs_dir) if (d := r.manifest.get("as_of")) and date.fromisoformat(str(d)) >= end]
    if not later:
        return None
    run = later[0]
    con = duckdb.connect()
    try:
        con.register("m", members)
        con.register("a", pq.read_table(run.path / "assignments.parquet", columns=["customer_id", "segment"]))
        rows = con.execute(
            "SELECT m.\"group\", m.segment, coalesce(a.segment, '(gone)') AS now, count(*) FROM m "
            "LEFT JOIN a USING (customer_id) GROUP BY ALL ORDER BY 1, 2, 3"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, Any] = {"run_id": run.run_id, "as_of": run.manifest["as_of"], "treatment": [], "control": []}
    for group, before, now, n in rows:
        out[group].append({"from": before, "to": now, "customers": n})
    return out
