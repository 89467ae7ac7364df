"""`rfmseg campaign plan | measure | size | list`: campaigns with a randomised holdout (jobs/campaign.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rfmseg.cli.common import app, out, print_json
from rfmseg.cli.options import ConfigOpt, Input, Json, ModelBadRows, RunsDirEnv
from rfmseg.config import resolve
from rfmseg.runs import DEFAULT_RUNS_DIR

campaign_app = typer.Typer(
    help="Campaigns with a randomised holdout: plan who is held out, measure the uplift, size the holdout.",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _points(x: float) -> str:
    return f"{100 * x:+.1f} pts"


@campaign_app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The campaign's name, e.g. winback-2024-03.")],
    segment: Annotated[list[str], typer.Option("--segment", help="Target segment (repeatable).")],
    action: Annotated[str, typer.Option("--action", help="The campaign kind: win_back, discount, loyalty_offer...")],
    holdout: Annotated[str, typer.Option("--holdout", help="Share held out as the control: 10% or 0.1.")] = "10%",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw (the same seed draws the same group).")] = 7,
    rank_by: Annotated[
        str, typer.Option("--rank-by", help="Value bands by: monetary, frequency, recency_days, expected_value_90d.")
    ] = "monetary",
    bands: Annotated[int, typer.Option("--bands", help="Value bands per segment the holdout is drawn in.")] = 4,
    run: Annotated[str, typer.Option("--run", help="The run whose customers are targeted.")] = "latest",
    send_date: Annotated[str | None, typer.Option("--send-date", help="YYYY-MM-DD (default: the run's as-of).")] = None,
    channel: Annotated[str, typer.Option("--channel", help="Channel of the planned touches.")] = "email",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write the two lists into this folder.")] = None,
    file_format: Annotated[str, typer.Option("--format", help="Lists as csv or parquet.")] = "csv",
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Draw a seeded, stratified control group and write the target and control lists."""
    from rfmseg.jobs import campaign

    r = campaign.plan(
        name,
        segment,
        action,
        holdout,
        runs_dir=resolve(ctx).runs_path,
        run=run,
        seed=seed,
        rank_by=rank_by,
        bands=bands,
        send_date=send_date,
        channel=channel,
        out_dir=out_dir,
        file_format=file_format,
    )
    if as_json:
        print_json(r)
        return
    out.print(
        f"Campaign {r['name']} ({r['action']}) planned on run {r['run_id']}: {r['treated']:,} to contact, "
        f"{r['control']:,} held out ({_pct(r['holdout'])}, seed {r['seed']}), send date {r['send_date']}",
        markup=False,
    )
    for s in r["strata"]:
        out.print(
            f"  {s['segment']} band {s['band']}: {s['treated']:,} treated, {s['control']:,} control", markup=False
        )
    out.print(f"Target list: {r['lists']['target']}; control list: {r['lists']['control']}", markup=False)
    out.print(f"Measure it once the window has passed: rfmseg campaign measure {r['name']} TRANSACTIONS", markup=False)


@campaign_app.command("measure")
def measure_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The planned campaign.")],
    path: Input = None,
    window: Annotated[str, typer.Option("--window", help="Days after the send date: 30d, 4w.")] = "30d",
    confidence: Annotated[float, typer.Option("--confidence", help="Level of the intervals.")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the revenue bootstrap.")] = 7,
    bad_rows: ModelBadRows = None,
    runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Conversion and revenue per customer, treated against control, with the uplift and its interval.

    The transactions must reach the end of the window (default: the source set in rfmseg.toml). With
    --bad-rows quarantine, bad rows are set aside with their reason (quarantine.parquet in the campaign's
    folder) and the rest is measured."""
    from rfmseg.jobs import campaign

    settings = resolve(ctx)  # the transactions: the path given, else the project file's source; --bad-rows
    campaign.planned_folder(name, settings.runs_path)  # an unknown campaign first, before the file is looked for
    source = settings.require_source()
    r = campaign.measure(
        name,
        source,
        runs_dir=settings.runs_path,
        window=window,
        confidence=confidence,
        seed=seed,
        bad_rows=settings.bad_rows,
    )
    if as_json:
        print_json(r)
        return
    out.print(
        f"Campaign {r['campaign']} ({r['action']}), {r['window_days']} days after {r['send_date']} ({r['design']}):",
        markup=False,
    )
    for label, u in [*r["by_segment"].items(), ("all", r["all"])]:
        out.print(
            f"  {label}: converted {_pct(u['treated_rate'])} of {u['treated']:,} treated vs "
            f"{_pct(u['control_rate'])} of {u['control']:,} control; uplift {_points(u['uplift'])} "
            f"[{_points(u['ci'][0])}, {_points(u['ci'][1])}], p={u['p_value']:.3g}; "
            f"revenue/customer {u['revenue_uplift']:+,.2f} [{u['revenue_ci'][0]:+,.2f}, {u['revenue_ci'][1]:+,.2f}]",
            markup=False,
        )
        out.print(f"    {u['verdict']}", markup=False)
    rows = r["rows"]
    quarantined = sum(rows["quarantined"].values())
    detail = ", ".join(f"{k} {v:,}" for k, v in sorted(rows["quarantined"].items())) or "none"
    out.print(
        f"Rows: {rows['read']:,} read, {rows['used']:,} used, {quarantined:,} quarantined ({detail})"
        + (f"; set aside in {r['quarantine']}" if quarantined else ""),
        markup=False,
    )


@campaign_app.command("size")
def size_cmd(
    baseline: Annotated[float, typer.Option("--baseline", help="Expected conversion without the campaign.")],
    uplift: Annotated[float, typer.Option("--uplift", help="The uplift to detect, e.g. 0.03 for 3 points.")],
    customers: Annotated[int | None, typer.Option("--customers", help="Customers the campaign can reach.")] = None,
    holdout: Annotated[str | None, typer.Option("--holdout", help="Share held out: 10% or 0.1.")] = None,
    confidence: Annotated[float, typer.Option("--confidence", help="Level of the test.")] = 0.95,
    as_json: Json = False,
) -> None:
    """How many customers (and what holdout) a campaign needs to detect a given uplift (power 80 %)."""
    from rfmseg.jobs.campaign import parse_share
    from rfmseg.model.uplift import holdout_size

    share = parse_share(holdout) if holdout is not None else None
    r: dict[str, Any] = holdout_size(baseline, uplift, customers, share, confidence)
    if as_json:
        print_json(r)
        return
    out.print(
        f"To detect {_points(uplift)} over {_pct(baseline)} (power 80 %, {round(100 * confidence)} % level) with "
        f"{_pct(r['holdout'])} held out: {r['customers_needed']:,} customers, {r['control_needed']:,} of them in "
        "the control",
        markup=False,
    )
    if customers is not None:
        smallest = r["smallest_holdout"]
        out.print(
            f"With {customers:,} customers: "
            + (
                f"hold out at least {_pct(smallest)}"
                if smallest is not None
                else "no holdout is enough; reach more customers or look for a larger uplift"
            )
            + f"; with {_pct(r['holdout'])} held out they detect {_points(r['detectable_with_holdout'])} or more",
            markup=False,
        )


@campaign_app.command("list")
def list_cmd(
    ctx: typer.Context, runs_dir: RunsDirEnv = DEFAULT_RUNS_DIR, as_json: Json = False, config: ConfigOpt = None
) -> None:
    """Planned campaigns, with their measured uplift once measured."""
    from rfmseg.jobs.campaign import list_campaigns

    rows = list_campaigns(resolve(ctx).runs_path)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(
            "No campaign planned yet: rfmseg campaign plan NAME --segment At-Risk --action win_back", markup=False
        )
    for c in rows:
        m = c.get("measured")
        tail = f"; measured: {m['all']['verdict']}" if m else "; not measured yet"
        out.print(
            f"{c['name']}: {c['action']} to {', '.join(c['segments'])}, {c['treated']:,} treated, "
            f"{c['control']:,} control, sent {c['send_date']}{tail}",
            markup=False,
        )
