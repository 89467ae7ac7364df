"""The production life on the command line, looking back and ahead: simulate, transitions, watch, history
(runs, assign, refresh, retrain, publish: :mod:`rfmseg.cli.life`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from rfmseg import simulate as sim
from rfmseg.cli.common import app, err, out, print_json, rich_table, units_of
from rfmseg.cli.options import ConfigOpt, CustomerId, Json, RunsDir
from rfmseg.config import resolve
from rfmseg.errors import ParameterError, RfmsegError
from rfmseg.runs import DEFAULT_RUNS_DIR, damage, get_run
from rfmseg.runs import history as hist
from rfmseg.runs import warnings as early


# --------------------------------------------------------------------------------------------- simulate
@app.command("simulate")
def simulate_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder for transactions.parquet, truth.parquet, weekly/.")],
    weeks: Annotated[int, typer.Option("--weeks", help="Weeks to simulate after the start date.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same files.")] = 7,
    customers: Annotated[int, typer.Option("--customers", help="Customers at the start.")] = 1_600,
    new_per_week: Annotated[int, typer.Option("--new-per-week", help="New customers arriving per week.")] = 15,
    start: Annotated[str, typer.Option("--start", help="As-of date of week 0 (YYYY-MM-DD).")] = "2024-01-07",
    snapshots: Annotated[
        bool, typer.Option("--snapshots/--no-snapshots", help="Also write each week's export to weekly/<as-of>.")
    ] = True,
    touches: Annotated[
        bool,
        typer.Option(
            "--touches/--no-touches",
            help="Also write touches.csv: seeded campaign contacts and responses, for `rfmseg touches import`.",
        ),
    ] = True,
    as_json: Json = False,
) -> None:
    """A seeded customer base evolving over N weeks, with the truth of who did what."""
    from datetime import date

    try:
        start_date = date.fromisoformat(start)
    except ValueError:
        raise ParameterError(f"--start '{start}' is not a date; use YYYY-MM-DD, e.g. 2024-01-07") from None
    cfg = sim.SimConfig(customers=customers, weeks=weeks, seed=seed, new_per_week=new_per_week, start=start_date)
    simulation = sim.simulate(cfg)
    info = sim.write(simulation, out_dir, snapshots)
    if touches:
        from rfmseg.touches import write_simulated_touches

        info["touches"] = write_simulated_touches(simulation.truth, cfg.start, cfg.end, seed, Path(out_dir))
    if as_json:
        print_json(info)
        return
    out.print(
        f"Simulated {info['customers']:,} customers and {info['orders']:,} orders from {info['start']} "
        f"to {info['end']} ({weeks} weeks, seed {seed}) in {out_dir}/"
    )
    behaviours, weekly = info["behaviours"], info["weekly"]
    assert isinstance(behaviours, dict) and isinstance(weekly, list)  # what sim.write returns under these keys
    out.print("Behaviours: " + ", ".join(f"{k} {v:,}" for k, v in behaviours.items()))
    if snapshots:
        out.print(f"Weekly exports: {out_dir}/weekly/<as-of>.parquet ({len(weekly)} files)")
    if touches:
        t = info["touches"]
        assert isinstance(t, dict)  # write_simulated_touches' summary
        out.print(f"Campaign touches: {t['path']} ({t['rows']:,} contacts; import with `rfmseg touches import`)")


# --------------------------------------------------------------------------------------------- history
def _note_missing(runs_dir: Path, leaves_out: str) -> None:
    """A note on stderr (stdout may be JSON) naming the runs whose assignments.parquet was removed: the
    history leaves them out, which the reader should know before trusting it."""
    missing = damage.runs_missing(runs_dir)
    if missing:
        err.print(f"note: {damage.missing_note(missing, leaves_out=leaves_out)}", markup=False)


@app.command("transitions")
def transitions_cmd(
    ctx: typer.Context,
    from_run: Annotated[str | None, typer.Option("--from", help="Earlier run (default: the one before --to).")] = None,
    to_run: Annotated[str | None, typer.Option("--to", help="Later run (default: the latest).")] = None,
    from_segment: Annotated[str | None, typer.Option("--from-segment", help="Customers who left this.")] = None,
    to_segment: Annotated[str | None, typer.Option("--to-segment", help="Customers who arrived in this.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Moves to print.", min=0)] = 20,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """How customers moved between two runs: matrix in customers and revenue, and who moved."""
    runs_path = resolve(ctx).runs_path
    _note_missing(runs_path, "the transitions")
    t = hist.transitions(runs_path, from_run, to_run, from_segment, to_segment)
    if as_json:
        print_json(t)
        return
    to_summary = get_run(t["to_run"], runs_path).summary
    u, currency = units_of(to_summary), to_summary.get("currency", "$")
    tot = t["totals"]
    out.print(
        f"From {t['from_run']} ({t['from_as_of']}) to {t['to_run']} ({t['to_as_of']}): {tot['stayed']:,} stayed, "
        f"{tot['moved']:,} moved, {tot['new']:,} new, {tot['gone']:,} gone"
    )
    if tot.get("drift"):
        cells = ", ".join(f"{a} → {b} {n:,}" for a, row in t["drift"]["customers"].items() for b, n in row.items())
        out.print(
            f"Of the {tot['moved']:,} moves, {tot['drift']:,} are model drift (the retrain moved the centroids, not "
            f"the customers: {cells}) and {tot['behaviour']:,} behaviour"
        )
    matrices: list[tuple[str, list[list[Any]], Any]] = [(u.entity, t["customers"], lambda v: f"{v:,}" if v else "·")]
    if u.total:  # a sum of monetary that means something (revenue, not distinct features)
        matrices.append((f"{u.total} (to-run)", t["revenue"], lambda v: u.value(v, currency) if v else "·"))
    for what, matrix, fmt in matrices:
        table = rich_table(title=f"Transitions in {what}: rows = from, columns = to")
        table.add_column("from \\ to")
        for c in t["columns"]:
            table.add_column(c, justify="right")
        for name, row in zip(t["rows"], matrix, strict=True):
            table.add_row(name, *(fmt(v) for v in row))
        out.print(table)
    moves = t["moves"]
    if moves and limit:
        title = (
            "Moves" + (f" from {from_segment}" if from_segment else "") + (f" to {to_segment}" if to_segment else "")
        )
        table = rich_table(title=f"{title}: {len(moves):,} {u.entity} (first {min(limit, len(moves))})")
        for c in ("id", "from", "to", "recency", u.frequency, u.monetary):
            table.add_column(c, justify="left" if c in ("id", "from", "to") else "right")
        for mv in moves[:limit]:
            table.add_row(
                str(mv["customer_id"]),
                mv["from"],
                mv["to"],
                f"{_num(mv['recency_days_from'])} → {_num(mv['recency_days_to'])}",
                f"{_num(mv['frequency_from'])} → {_num(mv['frequency_to'])}",
                u.value(mv["monetary_to"] if mv["monetary_to"] is not None else mv["monetary_from"], currency),
            )
        out.print(table)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


@app.command()
def watch(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="Run to check (default: the latest).")] = None,
    overdue_days: Annotated[
        int,
        typer.Option(
            "--overdue-days", "--recency-jump", help="Late by more than this many days past one's own rhythm.", min=0
        ),
    ] = early.RhythmRule.overdue_days,
    late_factor: Annotated[
        float, typer.Option("--late-factor", help="Late past this many times one's own mean gap between orders.")
    ] = early.RhythmRule.late_factor,
    window: Annotated[
        int, typer.Option("--window", "--period", help="Rhythm and orders read since the earliest run in these days.")
    ] = early.RhythmRule.window_days,
    lookback: Annotated[
        int, typer.Option("--lookback", help="Leave out who was already late this many days ago.")
    ] = early.RhythmRule.lookback_days,
    min_orders: Annotated[
        int, typer.Option("--min-orders", help="Orders a customer needs for a rhythm.")
    ] = early.RhythmRule.min_orders,
    trend_runs: Annotated[
        int | None, typer.Option("--trend-runs", help="No longer used (the rhythm rules replaced it).")
    ] = None,
    champions: Annotated[str, typer.Option("--champions", help="Name of the top segment.")] = "Champions",
    loyal: Annotated[str, typer.Option("--loyal", help="Name of the loyal segment.")] = "Loyal Buyers",
    at_risk: Annotated[str, typer.Option("--at-risk", help="Name of the at-risk segment.")] = "At-Risk",
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Overdue customers only in this segment (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Customers to print per warning.", min=0)] = 10,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Early warnings on each customer's own rhythm: Champions slowing, overdue, Loyal Buyers lapsing; changes."""
    runs_dir = resolve(ctx).runs_path
    _note_missing(runs_dir, "the warnings")
    names = {"champions": champions, "loyal": loyal, "at_risk": at_risk}
    given = {k: v for k, v in names.items() if getattr(ctx.get_parameter_source(k), "name", None) != "DEFAULT"}
    if given or segment:  # a name the user gave that these runs lack (a typo) is an error, not a notice
        known, where = early.watched_segments(runs_dir, run)
        names |= {k: _watched(v, known, where, k) for k, v in given.items()}
        segment = [_watched(v, known, where, "segment") for v in segment or []]
    champions, loyal, at_risk = names["champions"], names["loyal"], names["at_risk"]
    w = early.warnings(
        runs_dir,
        run,
        overdue_days=overdue_days,
        late_factor=late_factor,
        window_days=window,
        lookback_days=lookback,
        min_orders=min_orders,
        champions=champions,
        loyal=loyal,
        at_risk=at_risk,
        segments=segment or None,
    )
    if as_json:
        print_json(w)
        return
    out.print(f"Early warnings for run {w['run_id']} (as of {w['as_of']}), previous run {w['previous_run']}")
    for item in w["warnings"]:
        out.print(f"[bold]{item['title']}[/bold]: {item['text']}")
        rows = item["customers"][:limit]
        if not rows:
            continue
        compact = [_compact(r) for r in rows]
        table = rich_table(show_header=True)
        for k in compact[0]:
            table.add_column(k, justify="right" if k in _RIGHT else "left")
        for r in compact:
            table.add_row(*r.values())
        out.print(table)
        if item["count"] > limit:
            out.print(f"… and {item['count'] - limit:,} more (--json for all)")


def _watched(name: str, known: list[str], where: str, param: str) -> str:
    """The segment of ``known`` called ``name`` (exactly, in any case, or as a slug, as export and the
    questions match it), else a one-line error naming the segments and the option ``param``."""
    from rfmseg.questions.common import match_segment  # with pandas: only when a name is checked

    try:
        return match_segment(name, known, where)
    except RfmsegError as exc:  # unknown, or blank
        raise exc.with_hint(f"give {{{param}}} one of them", param=param) from None


_SHORT = {
    "customer_id": "customer",
    "recency_days": "recency",
    "rise_days": "rise",
    "segment_reason": "reason",
    "reason": "reason",
    "segments": "segments",
    "segment_start": "was",
    "expected_gap_days": "gap",
    "days_late": "late",
    "limit_days": "limit",
    "orders_in_span": "done",  # events in the span, beside those due (any preset's units)
    "expected_in_span": "due",
}
_RIGHT = {"recency", "frequency", "monetary", "rise", "gap", "late", "limit", "done", "due"}
_REASONS = {"cold_start": "cold", "nearest_centroid": "model"}


def _compact(row: dict[str, Any]) -> dict[str, str]:
    """A warning's customer row for the terminal: 'x_from'/'x_to' (or 'x_from'/'x') pairs become 'a → b'."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for key, value in row.items():
        if key in used or key == "as_of":
            continue
        if key.endswith("_from"):
            base = key.removesuffix("_from")
            to = next((k for k in (f"{base}_to", base) if k in row), None)
            if to is not None:
                used |= {key, to}
                a, b = (_REASONS.get(row[key], row[key]), _REASONS.get(row[to], row[to]))
                out[_SHORT.get(base, base)] = _cell(a) if a == b and base == "reason" else f"{_cell(a)} → {_cell(b)}"
                continue
        if key.endswith("_to") and f"{key.removesuffix('_to')}_from" in row:
            continue
        out[_SHORT.get(key, key)] = _cell(value)
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return " → ".join(_cell(x) for x in v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


@app.command("history")
def history_cmd(
    ctx: typer.Context,
    customer_id: CustomerId,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """One customer's segment and RFM values across every run."""
    runs_path = resolve(ctx).runs_path
    _note_missing(runs_path, "the history")
    rows = hist.history(runs_path, customer_id)
    if as_json:
        print_json(rows)
        return
    latest: Mapping[str, Any] = get_run(rows[-1]["run_id"], runs_path).summary if rows else {}
    u, currency = units_of(latest), latest.get("currency", "$")
    t = rich_table(title=f"{customer_id} across {len(rows)} runs")
    for c in ("as-of", "run", "kind", "segment", "reason", "recency", u.frequency, u.monetary, "distance"):
        t.add_column(c, justify="right" if c in ("recency", u.frequency, u.monetary, "distance") else "left")
    for r in rows:
        t.add_row(
            r["as_of"],
            r["run_id"],
            r["kind"],
            r["segment"],
            r["segment_reason"] or "",
            f"{r['recency_days']}d",
            str(r["frequency"]),
            u.value(r["monetary"], currency),
            f"{r['distance']:.3f}" if r["distance"] is not None else "",
        )
    out.print(t)
