"""touches, ask, context, mcp: campaign history, the marketer's questions, context packs, the MCP server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from rfmseg.cli.common import app, out, print_json, rich_table, units_of
from rfmseg.cli.options import (
    ConfigOpt,
    CustomerId,
    Json,
    Limit,
    ReadStore,
    RunOpt,
    RunsDirEnv,
    Segment,
    TouchesDateFormat,
)
from rfmseg.config import resolve
from rfmseg.errors import ParameterError
from rfmseg.runs import DEFAULT_RUNS_DIR
from rfmseg.touches import KIND_KEYWORDS

# the commands import rfmseg.questions (and with it pandas, a third of a second) when they run, so that the
# other commands do not wait for it

if TYPE_CHECKING:
    from rich.table import Table

    from rfmseg.questions.trends import Membership
    from rfmseg.touches import BadRows

touches_app = typer.Typer(
    help="Campaign history: import and list who was contacted, with what, when.", no_args_is_help=True
)
ask_app = typer.Typer(
    help="The marketer's questions, answered from the runs and the campaign touches.", no_args_is_help=True
)
app.add_typer(touches_app, name="touches")
app.add_typer(ask_app, name="ask")


# ------------------------------------------------------------------------------------------------ output


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, list):
        return " → ".join(_cell(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
    return str(v)


Columns = Sequence[str | tuple[str, str]]


def rows_table(rows: list[dict[str, Any]], title: str | None = None, columns: Columns | None = None) -> Table:
    """A Rich table of ``rows``; ``columns`` are keys or (key, header) pairs."""
    cols = [(c, c) if isinstance(c, str) else c for c in (columns or (list(rows[0]) if rows else []))]
    t = rich_table(title=title)
    for key, header in cols:
        left = key in (
            *("customer_id", "segment", "segment_then", "kind", "verdict", "why", "action", "matched"),
            *("from_segment", "to_segment", "reason", "run_id"),
            *("signal", "label"),
        )
        t.add_column(header, justify="left" if left else "right")
    for r in rows:
        t.add_row(*(", ".join(r[k]) if k == "matched" else _cell(r.get(k)) for k, _ in cols))
    return t


def report(result: dict[str, Any], as_json: bool, rows_key: str | None = None, columns: Columns | None = None) -> None:
    if as_json:
        print_json(result)
        return
    out.print(f"[bold]{result['question']}[/bold]", markup=True)
    out.print(result["answer"], markup=False)
    rows = result.get(rows_key) if rows_key else None
    if rows:
        out.print(rows_table(rows, columns=columns))
    where = result.get("run_id") or (result.get("end") or {}).get("run_id")
    if where:
        out.print(f"(run {where}; --json for every number)", markup=False)


# ------------------------------------------------------------------------------------------------ touches


def _parse_map(values: list[str] | None) -> dict[str, str]:
    mapping = {}
    for v in values or []:
        field, sep, col = v.partition("=")
        if not sep or not field.strip() or not col.strip():
            raise ParameterError(f"--map '{v}' should look like FIELD=COLUMN, e.g. --map sent_at=SendDate")
        mapping[field.strip()] = col.strip()
    return mapping


@touches_app.command("import")
def touches_import(
    ctx: typer.Context,
    touches_file: Annotated[Path, typer.Argument(help="Campaign contacts: CSV or Parquet.", metavar="path")],
    columns: Annotated[  # named as import_touches names it, so an error about it names --map
        list[str] | None,
        typer.Option(
            "--map",
            help="FIELD=COLUMN for customer_id, campaign, kind, channel, sent_at, responded_at, converted_at "
            "(repeatable; common names are recognised without it).",
        ),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Accept this campaign kind besides the known ones (repeatable).")
    ] = None,
    # named touches_*: the project file's bad_rows and date_format are about transactions, not touches
    touches_bad_rows: Annotated[
        str, typer.Option("--bad-rows", help="quarantine: set bad rows aside with their reason; error: stop.")
    ] = "quarantine",
    touches_date_format: TouchesDateFormat = None,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Load campaign contacts, validated row by row; bad rows are quarantined with a reason."""
    from rfmseg.touches import import_touches

    runs_dir = resolve(ctx).runs_path
    r = import_touches(
        touches_file,
        runs_dir,
        _parse_map(columns),
        bad_rows=cast("BadRows", touches_bad_rows),  # import_touches refuses any other value, naming the option
        date_format=touches_date_format,
        extra_kinds=kind or (),
    )
    d = r.to_dict()
    if as_json:
        print_json(d)
        return
    q_ = d["rows"]["quarantined"]
    detail = ", ".join(f"{k} {v:,}" for k, v in q_.items()) or "none"
    out.print(f"Imported {r.rows_used:,} touches from {r.path} as {r.import_id} into {r.folder}/", markup=False)
    out.print(
        f"Rows: {r.rows_read:,} read, {r.rows_used:,} used, {sum(q_.values()):,} quarantined ({detail})", markup=False
    )
    assert r.sent_from is not None and r.sent_to is not None  # set by every import that stored rows
    out.print(
        f"Kinds: {', '.join(f'{k} {v:,}' for k, v in r.kinds.items())}; sent {r.sent_from[:10]} to {r.sent_to[:10]}",
        markup=False,
    )
    if r.unknown_customers:
        out.print(f"note: {r.unknown_customers:,} customers are not in the latest run (kept)", markup=False)


@touches_app.command("list")
def touches_list(
    ctx: typer.Context,
    customer: Annotated[str | None, typer.Option("--customer", help="List this customer's touches.")] = None,
    limit: Limit = 50,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """The imports (or one customer's touches, newest last)."""
    runs_dir = resolve(ctx).runs_path
    from rfmseg.touches import list_imports, load_touches

    if customer:
        rows = load_touches(runs_dir, customer).to_pylist()
        rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]
        if as_json:
            print_json({"customer_id": customer, "touches": rows})
            return
        if not rows:
            out.print(f"No touches recorded for {customer} in {runs_dir}.", markup=False)
            return
        cols = ["sent_at", "campaign", "kind", "channel", "responded_at", "converted_at", "import_id"]
        out.print(rows_table(rows[-limit:], title=f"Touches of {customer}", columns=cols))
        return
    imports = list_imports(runs_dir)
    if as_json:
        print_json({"imports": imports})
        return
    if not imports:
        out.print(f"No touches imported in {runs_dir}; use `rfmseg touches import FILE`.", markup=False)
        return
    rows = [
        {
            "import_id": m["import_id"],
            "file": m["input"]["path"],
            "read": m["rows"]["read"],
            "used": m["rows"]["used"],
            "quarantined": sum(m["rows"]["quarantined"].values()),
            "sent": f"{m['sent_from'][:10]} to {m['sent_to'][:10]}",
            "kinds": m["kinds"],
        }
        for m in imports[-limit:]
    ]
    out.print(rows_table(rows, title=f"Touch imports in {runs_dir}"))


# ------------------------------------------------------------------------------------------------ ask


@ask_app.command("campaign")
def ask_campaign(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Campaign kind: " + ", ".join(KIND_KEYWORDS) + ".")],
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", help="Match these words instead of the kind's (repeatable).")
    ] = None,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which segment should receive this campaign? Ranked by fit of the action, then revenue at stake."""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.campaign_segments(runs_dir, kind, keywords=keyword or None, run=run)
    u = units_of(r)
    stake = [("revenue_at_stake", f"{u.total} at stake")] if u.total else []
    report(r, as_json, "ranking", ["rank", "segment", "fit", "matched", ("customers", u.entity), *stake, "action"])


@ask_app.command("discount")
def ask_discount(
    ctx: typer.Context,
    segment: Segment = "At-Risk",
    kind: Annotated[str, typer.Option("--kind", help="Campaign kind whose response history counts.")] = "discount",
    limit: Limit = 10,
    half_life: Annotated[float, typer.Option("--half-life", help="Recency half-life in days.")] = 90.0,
    aov_weight: Annotated[float, typer.Option("--aov-weight")] = 0.5,
    frequency_weight: Annotated[float, typer.Option("--frequency-weight")] = 0.5,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which customers of a segment are most likely to respond to a discount? With the run's rhythm model, by
    what a win-back can recover (P(alive) x value if active); else a heuristic score. The parts shown."""
    runs_dir = resolve(ctx).runs_path
    weights = {"half_life_days": half_life, "aov_weight": aov_weight, "frequency_weight": frequency_weight}
    from rfmseg import questions as q

    r = q.discount_candidates(runs_dir, segment=segment, kind=kind, limit=limit, run=run, **weights)
    ratio = units_of(r).ratio or "M/F"
    rfm = [("customer_id", "customer"), ("recency_days", "R days"), ("frequency", "F"), ("monetary", "M")]
    if r.get("ranking") == "win_back_value":  # the run's rhythm model: what a win-back can recover
        parts = [
            ("p_alive", "P(alive)"),
            ("value_if_active_90d", "90d if active"),
            ("recoverable_90d", "recoverable"),
            ("touches", "touches"),
            ("response_factor", "resp. factor"),
            ("score", "score"),
            ("heuristic_score", "heuristic"),
        ]
    else:
        parts = [
            ("aov", ratio),
            ("aov_part", f"{ratio} part"),
            ("frequency_part", "F part"),
            ("decay", "decay"),
            ("touches", "touches"),
            ("responses", "resp."),
            ("response_factor", "resp. factor"),
            ("score", "score"),
        ]
    report(r, as_json, "customers", [*rfm, *parts])


@ask_app.command("not-contacted")
def ask_not_contacted(
    ctx: typer.Context,
    segment: Segment = "Champions",
    kind: Annotated[str, typer.Option("--kind")] = "loyalty_offer",
    days: Annotated[int, typer.Option("--days", help="Look-back window in days.")] = 90,
    reference: Annotated[
        str | None, typer.Option("--reference", help="End of the window (YYYY-MM-DD); default the run's as-of.")
    ] = None,
    limit: Limit = 50,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which customers of a segment received no campaign of a kind in the last N days?"""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.not_contacted(runs_dir, segment=segment, kind=kind, days=days, reference=reference, limit=limit, run=run)
    report(r, as_json, "customers")


@ask_app.command("trending")
def ask_trending(
    ctx: typer.Context,
    segment: Segment = "Loyal Buyers",
    toward: Annotated[str, typer.Option("--toward", help="The segment they are heading for.")] = "At-Risk",
    runs: Annotated[int, typer.Option("--runs", help="How many recent runs the trend spans.")] = 3,
    limit: Limit = 50,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which customers of a segment are trending toward another (gap narrowing at every run)?"""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.trending_toward(runs_dir, segment=segment, toward=toward, runs=runs, limit=limit, run=run)
    report(
        r,
        as_json,
        "customers",
        [
            ("customer_id", "customer"),
            ("gap", "gap per run"),
            ("recency_days", "R days per run"),
            ("frequency", "F per run"),
            ("gap_now", "gap now"),
        ],
    )


@ask_app.command("changed")
def ask_changed(
    ctx: typer.Context,
    segment: Segment = "At-Risk",
    days: Annotated[int, typer.Option("--days", help="How far back to compare.")] = 30,
    limit: Limit = 50,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """What changed in the last N days for the customers now in a segment?"""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.recent_changes(runs_dir, segment=segment, days=days, limit=limit, run=run)
    report(
        r,
        as_json,
        "customers",
        [
            ("customer_id", "customer"),
            ("segment_then", "then"),
            ("recency_days_then", "R then"),
            ("recency_days", "R now"),
            ("frequency_then", "F then"),
            ("frequency", "F now"),
            ("monetary_change", "M change"),
        ],
    )


@ask_app.command("changes-since")
def ask_changes_since(
    ctx: typer.Context,
    after: Annotated[
        str | None,
        typer.Option("--after", help="The next cursor of the page read before (default: the oldest change kept)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most changes to show (1-10,000).")] = 100,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    store: ReadStore = None,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Who changed segment in the profile store after a cursor (its change feed): new, moved, left."""
    settings = resolve(ctx)  # runs_dir and store: options, else $RFMSEG_RUNS_DIR / $RFMSEG_STORE, else rfmseg.toml
    from rfmseg import questions as q

    r = q.changes_since(settings.runs_path, after=after, limit=limit, store=settings.store)
    report(
        r,
        as_json,
        "items",
        [
            ("cursor", "cursor"),
            ("customer_id", "customer"),
            ("from_segment", "from"),
            ("to_segment", "to"),
            ("reason", "reason"),
            ("run_id", "run"),
            ("as_of", "as of"),
        ],
    )
    if not as_json and r["next"] is not None:
        out.print(f"Next: --after {r['next']}" + (" (more changes wait)" if r["more"] else ""), markup=False)


@ask_app.command("recency-jump")
def ask_recency_jump(
    ctx: typer.Context,
    segment: Segment = "Champions",
    more_than: Annotated[int, typer.Option("--more-than", help="Days of recency increase.")] = 10,
    period: Annotated[int, typer.Option("--period", help="Period in days ('this month' = 30).")] = 30,
    membership: Annotated[
        str, typer.Option("--membership", help="In the segment now, at the start of the period, or either.")
    ] = "either",
    limit: Limit = 100,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Customers of a segment whose recency rose by more than N days over the period."""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.recency_jump(
        runs_dir,
        segment=segment,
        more_than_days=more_than,
        period_days=period,
        membership=cast("Membership", membership),  # recency_jump refuses any other value
        limit=limit,
        run=run,
    )
    report(
        r,
        as_json,
        "customers",
        [
            ("customer_id", "customer"),
            ("segment_then", "then"),
            ("segment", "now"),
            ("recency_days_then", "R then"),
            ("recency_days", "R now"),
            ("recency_increase", "R up"),
            ("frequency_change", "F change"),
            ("monetary", "M"),
        ],
    )


@ask_app.command("tracking")
def ask_tracking(
    ctx: typer.Context,
    customer_id: CustomerId,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Target segment (repeatable; default Champions, Occasional).")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", help="How many recent runs.")] = 5,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Is this customer's behaviour tracking toward one segment or another? Distances across recent runs."""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.customer_tracking(runs_dir, customer_id, targets=target or ("Champions", "Occasional"), runs=runs, run=run)
    if as_json:
        print_json(r)
        return
    rows = [
        {
            "as_of": p["as_of"],
            "segment": p["segment"],
            "R": p["recency_days"],
            "F": p["frequency"],
            "M": p["monetary"],
            **{f"d({n})": d for n, d in p["distances"].items()},
        }
        for p in r["points"]
    ]
    report({**r, "points_table": rows}, False, "points_table")


@ask_app.command("intervention")
def ask_intervention(
    ctx: typer.Context,
    segment: Segment = "Occasional",
    to: Annotated[list[str] | None, typer.Option("--to", help="Target segment(s) (default Loyal Buyers).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this campaign kind.")] = None,
    from_run: Annotated[str | None, typer.Option("--from-run", help="Start run (default the earliest).")] = None,
    to_run: Annotated[str, typer.Option("--to-run", help="End run.")] = "latest",
    min_contacted: Annotated[int, typer.Option("--min-contacted", help="Fewer contacted is too thin.")] = 30,
    min_control: Annotated[int, typer.Option("--min-control", help="Fewer not contacted is too thin.")] = 30,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """What intervention has historically moved a segment's customers to the target segment(s)?"""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.intervention_effect(
        runs_dir,
        segment=segment,
        to=to or ("Loyal Buyers",),
        kind=kind,
        from_run=from_run,
        to_run=to_run,
        min_contacted=min_contacted,
        min_control=min_control,
    )
    report(
        r,
        as_json,
        "interventions",
        [
            "kind",
            "contacted",
            ("contacted_moved", "moved"),
            ("contacted_share", "share"),
            ("not_contacted", "not contacted"),
            ("not_contacted_moved", "moved"),
            ("not_contacted_share", "share"),
            "uplift",
            ("p_value", "p"),
            ("too_thin", "too thin"),
        ],
    )


@ask_app.command("onboarding")
def ask_onboarding(
    ctx: typer.Context,
    customer_id: CustomerId,
    usage: Annotated[
        str | None,
        typer.Option("--usage", help="The usage file the run read (default: the run's input, if unchanged)."),
    ] = None,
    run: RunOpt = "latest",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which onboarding path matches this customer's usage profile? The segment's path (saas preset) and its
    usage signals checked on the customer's figures."""
    runs_dir = resolve(ctx).runs_path
    from rfmseg import questions as q

    r = q.onboarding_path(runs_dir, customer_id, run=run, usage=usage)
    report(
        r,
        as_json,
        "signals",
        [
            "signal",
            ("label", "measure"),
            ("value", customer_id),
            ("median_user", "median user"),
            ("segment_median", f"typical {r['segment']}"),
            ("holds", "shown"),
        ],
    )
    if not as_json and r["features_note"]:
        out.print(f"note: {r['features_note']}", markup=False)


# ------------------------------------------------------------------------------------------------ context, mcp


@app.command("context")
def context_cmd(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A segment name (or slug) or a customer id.")],
    format_: Annotated[str, typer.Option("--format", help="json or markdown.")] = "markdown",
    examples: Annotated[int, typer.Option("--examples", help="Typical customers in a segment pack.")] = 5,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    store: ReadStore = None,
    config: ConfigOpt = None,
) -> None:
    """The context pack an AI system consumes: profile, action, recent movement, example customers."""
    from rfmseg.agent.context import context_pack, to_markdown

    settings = resolve(ctx)  # runs_dir and store: options, else $RFMSEG_RUNS_DIR / $RFMSEG_STORE, else rfmseg.toml
    if format_ not in ("json", "markdown"):
        raise ParameterError(f"--format '{format_}' is not allowed; use json or markdown")
    pack = context_pack(settings.runs_path, target, examples=examples, store=settings.store)
    if format_ == "json":
        print_json(pack)
    else:
        import sys

        sys.stdout.write(to_markdown(pack))


@app.command("mcp")
def mcp_cmd(
    ctx: typer.Context,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    store: ReadStore = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1 instead of stdio.")] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --http.")] = 8765,
    config: ConfigOpt = None,
) -> None:
    """Serve the segments and the questions to AI clients over the Model Context Protocol (stdio by default)."""
    settings = resolve(ctx)  # runs_dir and store: options, else $RFMSEG_RUNS_DIR / $RFMSEG_STORE, else rfmseg.toml
    runs_dir = settings.runs_path
    if not 1 <= port <= 65535:
        raise ParameterError(f"--port {port} is not a port number; use 1-65535")
    from rfmseg.agent.mcp_server import serve

    if http:
        import sys

        from rfmseg.cli.serve import check_port

        check_port("127.0.0.1", port)  # a port in use: one line and exit 2, before saying it serves
        print(f"rfmseg MCP server on http://127.0.0.1:{port}/mcp (runs: {runs_dir})", file=sys.stderr)
    serve(runs_dir, settings.store, http=http, host="127.0.0.1", port=port)
