"""The production life on the command line: runs (registry), assign, refresh, retrain, publish (simulate,
transitions, watch and history: :mod:`rfmseg.cli.life_history`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from rfmseg import jobs as life
from rfmseg.cli.common import app, as_of_words, err, out, print_json, print_summary, rich_table, units_of
from rfmseg.cli.options import (
    AS_OF,
    COLD_START,
    READING,
    AsOf,
    ConfigOpt,
    Hold,
    Input,
    Json,
    KOrPrevious,
    NInitOrPrevious,
    Publish,
    Rhythm,
    RunId,
    RunsDir,
    SeedOrPrevious,
    Store,
    TransformOrPrevious,
    include,
)
from rfmseg.cli.progress import progress_shown
from rfmseg.config import Settings, resolve
from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.io.outputs import is_stdout
from rfmseg.jobs.job import Kind
from rfmseg.runs import DEFAULT_RUNS_DIR, get_run
from rfmseg.runs.registry import describe_run, latest_run, run_info, runs_table

if TYPE_CHECKING:
    from rfmseg.features import Units
    from rfmseg.presets import Preset


def _set(settings: Settings, key: str) -> Any:
    """``key`` when the project file, the environment or a typed option set it, else None: the life-cycle
    commands then keep their own default (the model's run's preset, K, transform, seed, restarts)."""
    return None if settings.origin(key) == "default" else getattr(settings, key)


def _preset(settings: Settings) -> Preset | None:
    """The preset set by the project file, the environment or an option (a value: a preset defined in the
    project file is passed as it is, never looked up by name), else None: the model's run's."""
    return settings.preset_obj() if _set(settings, "preset") else None


def _cold_start(settings: Settings) -> life.ColdStart:
    """The cold-start rule in force; its segment None (unless set) = the preset of the data's reading."""
    c = settings.cold_start
    return life.ColdStart(c.orders, c.days, c.segment)


def _job_options(s: Settings, publish: bool) -> life.JobOptions:
    """What refresh and retrain share, as in force: the registry, the reading, cold start, the store."""
    return life.JobOptions(
        runs_dir=s.runs_path,
        cold_start=_cold_start(s),
        preset=_preset(s),
        bad_rows=s.bad_rows,
        returns=s.returns,
        date_format=s.date_format,
        formats=s.read_formats(),
        publish=publish,
        store=s.store,
    )


def _publish_line(report: dict[str, Any] | None, units: Units) -> None:
    if not report:
        return
    if report.get("skipped"):
        out.print(f"Store {report['store']}: {report['skipped']} ({report['run_id']})")
        return
    out.print(
        f"Published {report['run_id']} to {report['store']}: {report['customers']:,} {units.entity}, "
        f"{report['changed']:,} changed segment, {report['new']:,} new ({report['seconds']:.2f} s)"
    )


def _cold_line(summary: Mapping[str, Any], units: Units | None = None) -> None:
    cs = summary.get("cold_start") or {}
    u = units or units_of(summary)
    if cs.get("orders") or cs.get("days"):
        out.print(
            f"Cold start: {cs.get('customers', 0):,} {u.entity} with fewer than {cs['orders']} {u.frequency} or a "
            f"first {u.event} less than {cs['days']} days before as-of → {cs['segment']} (segment_reason cold_start)"
        )


# --------------------------------------------------------------------------------------------- runs
runs_app = typer.Typer(help="The run registry: list, show, latest.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _registry(ctx: typer.Context, kind: str | None) -> Path:
    """The run registry in force, once ``kind`` (when given) is a kind of run."""
    kinds = get_args(Kind)
    if kind is not None and kind not in kinds:  # else an unknown kind reads as a registry without such runs
        raise ParameterError(f"--kind '{kind}' is not a kind of run; use {', '.join(kinds)}")
    return resolve(ctx).runs_path


def _runs(ctx: typer.Context, kind: str | None) -> tuple[Path, list[dict[str, Any]]]:
    """The run registry in force and its runs (of ``kind`` only, when given), oldest first."""
    runs_dir = _registry(ctx, kind)
    return runs_dir, [r for r in runs_table(runs_dir) if kind is None or r["kind"] == kind]


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    kind: Annotated[str | None, typer.Option("--kind", help="Only runs of this kind: run, refresh, retrain.")] = None,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Every run, oldest first: id, created, kind, as-of, K, customers, input."""
    runs_dir, rows = _runs(ctx, kind)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(f"No runs in {runs_dir}.")
        return
    t = rich_table(title=f"Runs in {runs_dir}")
    for c in ("run id", "created", "kind", "as-of", "K", "customers", "model", "input"):
        t.add_column(c, justify="right" if c in ("K", "customers") else "left", no_wrap=c != "input")
    for r in rows:
        t.add_row(
            r["run_id"],
            (r["created"] or "")[:19].replace("T", " "),
            r["kind"],
            r["as_of"] or "",
            str(r["k"] or ""),
            f"{r['customers']:,}" if r["customers"] is not None else "",
            "" if r["model_version"] == r["run_id"] else r["model_version"],
            r["input"] or "",
        )
    out.print(t)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: RunId,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """One run: what it is, which model, how it was made, its segment table."""
    info = describe_run(run_id, resolve(ctx).runs_path)
    if as_json:
        print_json(info)
        return
    m = info["manifest"]
    out.print(f"[bold]Run {info['run_id']}[/bold] ({info['kind']}) in {info['path']}/")
    out.print(
        f"Created {info['created']}, {as_of_words(info['as_of'])}, {info['customers']:,} "
        f"{units_of(info['summary']).entity}, "
        f"input {info['input']}"
    )
    model = info["model"]
    if "error" in model:
        out.print(f"[yellow]model:[/yellow] {model['error']}")
    else:
        out.print(
            f"Model {info['model_version']}: K={model['k']}, transform {model['transform']}, "
            f"segments {', '.join(model['names'])}"
        )
    if m.get("source_run"):
        out.print(f"Model read from run {m['source_run']}")
    if m.get("previous_model"):
        out.print(f"Names carried over from model {m['previous_model']}")
    for change in (m.get("names") or {}).get("changes", []):
        out.print(f" • {change}")
    print_summary(info["summary"])
    _cold_line(info["summary"])
    out.print(f"Files: {', '.join(info['files'])}")


@runs_app.command("latest")
def runs_latest(
    ctx: typer.Context,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    kind: Annotated[str | None, typer.Option("--kind", help="Latest of this kind: run, refresh, retrain.")] = None,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """The id of the latest run: the latest as-of date, ties broken by creation (for scripts: `rfmseg show
    $(rfmseg runs latest)`)."""
    runs_dir = _registry(ctx, kind)
    latest = latest_run(runs_dir, kind)
    if latest is None:
        what = f"no {kind} runs" if kind else "no runs"
        raise NotFoundError(f"{what} in {runs_dir}; run `rfmseg run FILE` first (or pass --runs-dir)")
    if as_json:
        print_json(run_info(latest))
        return
    out.print(latest.run_id)


# --------------------------------------------------------------------------------------------- assign
@app.command()
@include(READING, AS_OF, COLD_START, after="model")
def assign(
    ctx: typer.Context,
    path: Input = None,
    model: Annotated[str, typer.Option("--model", help="Run whose model scores: id, prefix or 'latest'.")] = "latest",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write all rows to .parquet or .csv; - for standard output.")
    ] = None,
    show: Annotated[int, typer.Option("--show", help="Rows to print in the table.", min=0)] = 20,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Score customers with a stored model: same transform, nearest centroid, no refit.

    Nothing is written to the registry; -o writes every row to a file.

    Options override rfmseg.toml; `rfmseg config show` prints what is in force."""
    s = resolve(ctx)  # the project file, the environment and the options typed above, merged
    ref = life.load_model(model, s.runs_path)
    read = life.reading(ref.run, _preset(s), None, s.bad_rows, s.returns, s.date_format, s.read_formats())
    result = life.assign(
        s.require_source(),
        dict(s.columns),
        model=ref.run.run_id,
        runs_dir=s.runs_path,
        as_of=s.as_of,
        cold_start=_cold_start(s),
        read=read,
    )
    piped = output is not None and is_stdout(output)
    if piped and as_json:
        raise ParameterError(
            f"--output {output} and --json both write to standard output; write the rows to a file, or drop --json"
        )
    if output is not None:
        life.write_table(result.assignments, output)
    if as_json:
        data = result.to_dict()
        data["output"] = str(output) if output else None
        print_json(data)
        return
    data = result.to_dict(rows=False)
    n = data["n_customers"]
    u, currency = read.units, ref.run.summary.get("currency", "$")
    scored = (
        f"Scored {n:,} {u.entity} with model {data['model_version']} (run {data['model_run']}), "
        f"{as_of_words(data['as_of'])}"
    )
    if piped:  # the rows went to standard output: the one line of what was done goes to stderr
        err.print(f"{scored}; all {n:,} rows written to standard output", markup=False)
        return
    out.print(scored)
    t = rich_table(title="Segments")
    for c in ("segment", u.entity, "share"):
        t.add_column(c, justify="left" if c == "segment" else "right")
    for name, count in data["segments"].items():
        t.add_row(name, f"{count:,}", f"{count / n:.0%}" if n else "")
    out.print(t)
    _cold_line({"cold_start": {**data["cold_start_rule"], "customers": data["cold_start"]}}, u)
    for w in data["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {w}")
    if show:
        t = rich_table(title=f"First {min(show, n):,} of {n:,} {u.entity}")
        for c in ("id", "segment", "reason", "recency", u.frequency, u.monetary, "distance", "margin"):
            t.add_column(c, justify="left" if c in ("id", "segment", "reason") else "right")
        for r in result.assignments.slice(0, show).to_pylist():
            t.add_row(
                str(r["customer_id"]),
                r["segment"],
                r["segment_reason"],
                f"{r['recency_days']}d",
                str(r["frequency"]),
                u.value(r["monetary"], currency),
                f"{r['distance']:.3f}",
                f"{r['margin']:.3f}",
            )
        out.print(t)
    if output is not None:
        out.print(f"All {n:,} rows written to {output}")


# --------------------------------------------------------------------------------------------- refresh / retrain
def _life_report(result: life.LifeResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    s, m = result.summary, result.manifest
    if result.status == "existing":
        out.print(
            f"Already done: run {result.run_id} holds the {result.kind} as of {s.get('as_of')} on the same data "
            f"(model {m.get('model_version')}); nothing new written."
        )
        _publish_line(result.publish, units_of(s))
        return
    print_summary(s)
    _cold_line(s)
    if result.kind == "refresh":
        out.print(f"Model {m['model_version']} (read from run {m['source_run']})")
        state = m.get("state") or {}
        if state.get("note"):
            out.print(f"Note: {state['note']}")
        elif state.get("mode") == "incremental":
            out.print(f"Incremental: {state['rows_new']:,} new rows merged into the state of run {state['built_on']}")
    else:
        names = m.get("names") or {}
        if names.get("previous_model"):
            changes = names.get("changes") or []
            if changes:
                out.print(f"[bold]Names against model {names['previous_model']}:[/bold]")
                for c in changes:
                    out.print(f" • {c}")
            kept = [
                x["name"] + (f" (rules alone: {x['data_driven_name']})" if x["data_driven_name"] != x["name"] else "")
                for x in names.get("segments", [])
                if x["decision"] == "kept"
            ]
            if kept:
                out.print(f"Names kept from model {names['previous_model']}: {', '.join(kept)}")
            for w in names.get("warnings") or []:
                out.print(f"[yellow]Warning:[/yellow] {w}")
        else:
            out.print("No earlier model: names come from the naming rules alone.")
        _drift_lines(cast("dict[str, Any]", m.get("drift") or {}))
    out.print(f"Run {result.run_id} ({result.kind}) written to {result.run.path}/")
    _publish_line(result.publish, units_of(s))


@app.command()
@include(READING, COLD_START, after="model")
def refresh(
    ctx: typer.Context,
    path: Input = None,
    since_last: Annotated[
        Path | None,
        typer.Option(
            "--since-last",
            help="Only the transactions since the last run: merged into its RFM state (the same result as a "
            "refresh of the whole history; recomputed in full when they cannot be merged).",
        ),
    ] = None,
    as_of: AsOf = None,
    model: Annotated[
        str, typer.Option("--model", help="Run whose model scores; 'latest' = the latest trained model.")
    ] = "latest",
    hold: Hold = life.DEFAULT_HOLD,
    publish: Publish = True,
    store: Store = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """The daily job: RFM as of a date, scored with the current model, written as a run and published.

    Running it again for the same date, model and data finds the run already written. With --since-last NEW
    only the new transactions are read (docs/production.md, "Incremental refresh").

    Options override rfmseg.toml; `rfmseg config show` prints what is in force."""
    s = resolve(ctx)  # the project file, the environment and the options typed above, merged
    with progress_shown(as_json, err):
        if since_last is not None:
            if path is not None:
                raise ParameterError("give the new transactions with --since-last NEW_FILE and no input file")
            result = life.refresh_since_last(
                since_last, dict(s.columns), as_of=s.as_of, model=model, hold=hold, **_job_options(s, publish)
            )
        else:
            result = life.refresh(
                s.require_source(), dict(s.columns), as_of=s.as_of, model=model, hold=hold, **_job_options(s, publish)
            )
    _life_report(result, as_json)


@app.command()
@include(READING, COLD_START, after="max_name_shift")
def retrain(
    ctx: typer.Context,
    path: Input = None,
    as_of: AsOf = None,
    previous: Annotated[
        str, typer.Option("--previous", help="Model whose names carry over: id, prefix or 'latest'.")
    ] = "latest",
    carry_over: Annotated[
        bool, typer.Option("--carry-names/--no-carry-names", help="Carry names over from the previous model.")
    ] = True,
    k: KOrPrevious = None,
    transform: TransformOrPrevious = None,
    n_init: NInitOrPrevious = None,
    random_state: SeedOrPrevious = None,
    max_name_shift: Annotated[
        float,
        typer.Option(
            "--max-name-shift",
            help="A matched centroid keeps its name if it moved less than this × the distance to the nearest "
            "other previous centroid.",
        ),
    ] = life.DEFAULT_MAX_NAME_SHIFT,
    hold: Hold = life.DEFAULT_HOLD,
    rhythm: Rhythm = None,
    publish: Publish = True,
    store: Store = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """The weekly job: refit K-Means, keep the previous names where the profile held, publish.

    Names: centroids are matched (Hungarian) with the previous model's in the new model's scaled space; a
    match keeps its name while it moved less than --max-name-shift × the distance to the nearest other
    previous centroid; otherwise the naming rules name it, and the change is reported.

    K, transform, seed and restarts: the options, else rfmseg.toml, else the previous model's. Options
    override rfmseg.toml; `rfmseg config show` prints what is in force."""
    s = resolve(ctx)  # the project file, the environment and the options typed above, merged
    with progress_shown(as_json, err):
        result = life.retrain(
            s.require_source(),
            dict(s.columns),
            as_of=s.as_of,
            previous=previous if carry_over else None,
            k=_set(s, "k"),
            transform=s.transform,
            n_init=_set(s, "n_init"),
            random_state=_set(s, "random_state"),
            max_name_shift=max_name_shift,
            hold=hold,
            rhythm=s.rhythm,
            **_job_options(s, publish),
        )
    _life_report(result, as_json)


def _drift_lines(drift: dict[str, Any]) -> None:
    """The retrain's model drift: the moves it made that the customers' values did not, and the centroids."""
    if not drift.get("previous_run") or "moves" not in drift:
        return
    moves = ", ".join(f"{a} → {b} {n:,}" for a, row in drift["matrix"].items() for b, n in row.items())
    out.print(
        f"Model drift: {drift['moves']:,} customers changed segment because the centroids moved (the previous model "
        "keeps them where they were)"
        + (f" ({moves})" if moves else "")
        + f"; {drift['behaviour_moves']:,} moved on their own values since run {drift['previous_run']} "
        f"(hold band {drift['hold']:g})"
        + (f"; {drift['held']:,} kept in the segment the previous model gives them" if drift.get("held") else "")
    )
    shifts = ", ".join(f"{c['segment']} {c['shift']:.3f}" for c in drift.get("centroids", []))
    if shifts:
        out.print(f"Centroid shifts (scaled units): {shifts}")


@app.command()
def publish(
    ctx: typer.Context,
    run_id: RunId,
    store: Store = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Publish a run's labels to the profile store (atomic: readers see the old run or the new one)."""
    s = resolve(ctx)
    run = get_run(run_id, s.runs_path)
    report = life.publish_run(run, s.runs_path, s.store)
    if as_json:
        print_json(report)
        return
    _publish_line(report, units_of(run.summary))
