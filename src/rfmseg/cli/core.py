"""demo, run, choose-k, show: the core analysis commands."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow.compute as pc
import typer

from rfmseg.cli.common import app, err, out, parse_ids, print_json, print_summary, rfmseg_command, units_of
from rfmseg.cli.options import (
    BARE_COLUMNS,
    COLUMNS,
    FORMATS,
    AsOf,
    BadRows,
    ColumnPairs,
    ConfigOpt,
    CustomerIds,
    DateFormat,
    Json,
    K,
    NInit,
    Preset,
    Returns,
    Rhythm,
    RunId,
    RunsDirBrief,
    RunStore,
    Seed,
    Source,
    Transform,
    include,
    params,
)
from rfmseg.cli.progress import progress_shown
from rfmseg.config import resolve
from rfmseg.datasets import study
from rfmseg.errors import NotFoundError
from rfmseg.install import install_command
from rfmseg.io.intake import read_rfm
from rfmseg.jobs.run import RunResult, segment
from rfmseg.model.choose_k import check_k_range, choose_k
from rfmseg.model.scoring import rfm_matrix
from rfmseg.model.segment_model import K_MAX, K_MIN
from rfmseg.presets import build_policy
from rfmseg.runs import DEFAULT_RUNS_DIR, get_run
from rfmseg.settings import Settings, default_store_url

DEMO_CUSTOMER = "C087"
"""the customer the demo's next steps look up: an At-Risk customer of the study (docs/study.md)"""


def customers_of(result: RunResult, ids: list[str]) -> list[dict[str, object]]:
    a = result.assignments
    mask = pc.is_in(a.column("customer_id"), value_set=__import__("pyarrow").array(ids))
    found = {r["customer_id"]: r for r in a.filter(mask).to_pylist()}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(
            f"unknown customer id(s): {', '.join(missing)}; ids look like {a.column('customer_id')[0].as_py()}"
        )
    return [{k: found[i][k] for k in ("customer_id", "recency_days", "frequency", "monetary", "segment")} for i in ids]


def command_here(settings: Settings, *words: str, store: str | None = None, runs_dir: Path | None = None) -> str:
    """``rfmseg WORDS`` on the runs folder in force (and ``store``), as it can be typed here: the folder is
    named only when an option chose it (the environment and rfmseg.toml reach the command too), or when it is
    another one, ``runs_dir``."""
    words = (rfmseg_command(), *words)
    if runs_dir is not None and runs_dir != settings.runs_path:
        words += ("--runs-dir", shlex.quote(str(runs_dir)))
    elif settings.origin("runs_dir") == "option":
        words += ("--runs-dir", shlex.quote(str(settings.runs_path)))
    if store is not None:
        words += ("--store", shlex.quote(store))
    return " ".join(words)


def _report_kept(
    result: RunResult,
    settings: Settings,
    as_json: bool,
    ids: list[str],
    published: dict[str, Any] | None,
    serve: str | None,
    publish: str = "rfmseg publish",
) -> None:
    """:func:`_report`; an unknown ``ids`` id, looked up once the run is written (and published), stops with
    one line that says so: the run is kept, where it is, and how to see it."""
    try:
        _report(result, as_json, ids, published, serve, publish)
    except NotFoundError as exc:
        if result.path is None:
            raise
        served = published is not None and "skipped" not in published
        to = f" and published to {published['store']}" if served and published else ""
        raise exc.with_hint(
            f"run {result.run_id} is written all the same, in {result.path}/{to} "
            f"(`{command_here(settings, 'runs', 'show', result.run_id, runs_dir=result.path.parent)}`)"
        ) from None


def _report(
    result: RunResult,
    as_json: bool,
    ids: list[str],
    published: dict[str, Any] | None = None,
    serve: str | None = "rfmseg serve",
    publish: str = "rfmseg publish",
) -> None:
    summary: dict[str, Any] = dict(result.summary)
    if ids:
        summary["customers"] = customers_of(result, ids)
    if as_json:
        summary["run_dir"] = str(result.path) if result.path else None
        if published is not None:
            summary["published"] = published
        print_json(summary)
        return
    print_summary(summary)
    u = units_of(summary)
    rhythm = summary.get("rhythm") or {}
    if rhythm.get("all"):
        every, model = rhythm["all"], {"mbg": "modified BG/NBD", "bg": "BG/NBD"}.get(str(rhythm.get("model")), "")
        value = every["expected_value_90d"]["mean"] or 0.0
        shown = f"{summary.get('currency', '')}{value:,.2f}" if u.money else f"{value:,.2f} {u.monetary}"
        out.print(
            f"Rhythm ({model}, next 90 days): median P(alive) {every['p_alive']['median']:.0%}; mean expected "
            f"{u.frequency} {every['expected_orders_90d']['mean']:,.2f}, {u.monetary} {shown}. Each of the {u.entity} "
            "in assignments.parquet, per segment in --json and the report.",
            markup=False,
        )
    for c in summary.get("customers", []):
        out.print(
            f"{c['customer_id']}: {c['segment']} — {c['recency_days']} days, {c['frequency']} {u.frequency}, "
            f"{c['monetary']:,.2f}{'' if u.money else ' ' + u.monetary}"
        )
    if result.path:
        out.print(
            f"Run {result.run_id} written to {result.path}/ (summary.json, assignments.parquet, model.json, "
            "rfm.parquet, manifest.json, quarantine.parquet)"
        )
        explorer = f", or run `{serve}` for the explorer" if serve else ""
        out.print(f"Open {result.path / 'report.html'} in a browser{explorer}.", markup=False)
    if published is not None and "skipped" in published:
        again = f"{publish} {result.run_id}"
        out.print(f"Not published: {published['skipped']}; `{again}` serves this run.", markup=False)
    elif published is not None:
        executors = published.get("by") == "executors"
        by = f", published by executors in {published['batches']:,} batches" if executors else ""
        out.print(
            f"Published to {published['store']}: {published['customers']:,} {u.entity} "
            f"({published['changed']:,} changed segment, {published['new']:,} new{by})"
        )


@app.command()
def demo(
    ctx: typer.Context,
    as_json: Json = False,
    customers: CustomerIds = None,
    runs_dir: RunsDirBrief = DEFAULT_RUNS_DIR,
    config: ConfigOpt = None,
) -> None:
    """Segment the built-in 200-customer study, print its segment table and publish it to the embedded store
    (SQLite in the runs folder; never over a published run of other data), so `rfmseg serve` answers for it.
    In a runs folder that holds runs of other data (yours), the demo writes to its `demo` folder instead."""
    from rfmseg.jobs.publish import demo_runs_dir, publish_demo

    settings = resolve(ctx)  # only runs_dir applies: the demo's data and settings are the study's
    label = f"rfmseg:datasets/{study.ORDERS_FILE}"
    runs = demo_runs_dir(settings.runs_path, label)
    result = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs, input_label=label)
    assert result.run is not None
    published = publish_demo(result.run, runs)
    embedded = default_store_url(runs)
    # a store configured elsewhere (RFMSEG_STORE, rfmseg.toml) would be the one serve reads: name the demo's
    store = embedded if settings.store and settings.store != embedded else None
    serve = command_here(settings, "serve", store=store, runs_dir=runs)
    publish = command_here(settings, "publish", store=store, runs_dir=runs)
    _report_kept(result, settings, as_json, parse_ids(customers), published, None, publish)  # next steps: serve
    if as_json:
        return
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
        out.print(f"The explorer and the API need the serve extra: {install_command('serve')}", markup=False)
    lookup = "" if "skipped" in published else f"\n  curl 127.0.0.1:8000/customers/{DEMO_CUSTOMER}"
    out.print(
        "Next: the explorer at http://127.0.0.1:8000/ and the API (Ctrl-C stops the server), then a customer "
        f"from another terminal:\n  {serve}{lookup}",
        markup=False,
    )


@app.command()
@include(COLUMNS, after="path")
def run(
    ctx: typer.Context,
    path: Source = None,
    bad_rows: BadRows = None,
    preset: Preset = None,
    returns: Returns = None,
    as_of: AsOf = None,
    k: K = 4,
    transform: Transform = None,
    n_init: NInit = 10,
    random_state: Seed = 42,
    runs_dir: RunsDirBrief = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    customers: CustomerIds = None,
    col: ColumnPairs = None,
    config: ConfigOpt = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (DuckDB + scikit-learn) or spark (Spark SQL + MLlib).")
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="With --engine spark: local[*], spark://HOST:7077, yarn... (default: SPARK_REMOTE, else local[*]).",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="With --engine spark: write rfm and assignments under this Hadoop path (s3a://, hdfs://, file:/).",
        ),
    ] = None,
    sample_size: Annotated[
        int | None,
        typer.Option(
            "--sample-size",
            help="Customers the K-Means restarts run on when there are more than 50,000 (default 10,000).",
        ),
    ] = None,
    store: RunStore = None,
    publish: Annotated[
        bool | None,
        typer.Option(
            "--publish/--no-publish",
            help="Publish the labels to the profile store (default: only when a store is configured).",
            show_default=False,
        ),
    ] = None,
    rhythm: Rhythm = None,
) -> None:
    """Segment the customers of your own transactions file (or of the source set in rfmseg.toml).

    Options override the project file; `rfmseg config show` prints what is in force."""
    from rfmseg.jobs.publish import publish_run, publish_target

    settings = resolve(ctx)  # the project file, the environment and the options typed above, merged
    target = publish_target(settings.runs_path, settings.store, publish)
    # a Spark run is published by its executors inside segment(), a local one from here once it is written
    executors = engine == "spark" and target is not None
    with progress_shown(as_json, err):
        result = segment(
            settings.require_source(),
            **settings.segment_kwargs(),
            engine=engine,
            spark_master=spark_master,
            output=output,
            sample_size=sample_size,
            store=target if executors else None,
        )
    published = result.manifest.get("publish")
    if published is None and target is not None and result.run is not None:
        published = publish_run(result.run, settings.runs_path, target)
    _report_kept(result, settings, as_json, parse_ids(customers), published, command_here(settings, "serve"))


@app.command("choose-k")
@include(BARE_COLUMNS, params(date_format=DateFormat), FORMATS, after="path")
def choose_k_cmd(
    ctx: typer.Context,
    path: Source = None,
    as_of: AsOf = None,
    transform: Transform = None,
    k_min: Annotated[int, typer.Option("--k-min", help=f"The smallest K to try ({K_MIN} or more).")] = K_MIN,
    k_max: Annotated[int, typer.Option("--k-max", help=f"The largest K to try ({K_MAX} or less, as for run).")] = K_MAX,
    n_init: NInit = 10,
    random_state: Seed = 42,
    sample_size: Annotated[int, typer.Option("--sample-size", help="Customers in the silhouette sample.")] = 10_000,
    preset: Preset = None,
    stability: Annotated[
        bool,
        typer.Option(
            "--stability/--no-stability", help="Refit each K on bootstrap resamples and compare (adjusted Rand)."
        ),
    ] = True,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples per K for stability.")] = 5,
    col: ColumnPairs = None,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """Which K, and why: elbow, silhouette, Calinski-Harabasz, Davies-Bouldin and stability for each K."""
    check_k_range(k_min, k_max)  # before the data is read: a K run would refuse is never recommended
    settings = resolve(ctx)  # the project file, the environment and the options typed above, merged
    preset_ = settings.preset_obj()
    transform, n_init, random_state = settings.effective_transform(), settings.n_init, settings.random_state
    con = duckdb.connect()
    try:
        policy = build_policy(preset_, None, None, None, settings.date_format, **settings.read_formats())
        rfm = read_rfm(con, settings.require_source(), settings.columns, settings.as_of, policy, preset_).rfm
    finally:
        con.close()
    result = choose_k(rfm_matrix(rfm), transform, k_min, k_max, n_init, random_state, sample_size, stability, resamples)
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    entity = preset_.units.entity
    t = Table(title=f"Choosing K — {result['n_customers']:,} {entity}, transform {transform}")
    columns = ["K", "inertia", "silhouette", "Calinski-Harabasz", "Davies-Bouldin"]
    for c in [*columns, *(["stability (ARI)"] if stability else []), "segment sizes"]:
        t.add_column(c, justify="right")
    for r in result["metrics"]:
        mark = " ◀" if r["k"] == result["recommended_k"] else ""
        t.add_row(
            f"{r['k']}{mark}",
            f"{r['inertia']:.3f}",
            f"{r['silhouette']:.3f}",
            f"{r['calinski_harabasz']:.1f}",
            f"{r['davies_bouldin']:.3f}",
            *([f"{r['stability']:.2f}"] if stability else []),
            " ".join(map(str, r["sizes"])),
        )
    out.print(t)
    where = f"silhouette on {result['silhouette_sample']:,} {entity}"
    if stability:
        where += f", stability over {resamples} bootstrap resamples of them"
    out.print(f"Recommended: {result['reason']} ({where})")


@app.command()
def show(
    ctx: typer.Context,
    run_id: RunId,
    runs_dir: RunsDirBrief = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    config: ConfigOpt = None,
) -> None:
    """The segment table of an earlier run."""
    run_ = get_run(run_id, resolve(ctx).runs_path)
    summary = run_.summary
    if as_json:
        print_json(summary)
        return
    print_summary(summary)
    out.print(f"Run {run_.run_id} in {run_.path}/")
