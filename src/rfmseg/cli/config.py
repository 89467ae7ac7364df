"""init, config show, presets: the project file and the domains rfmseg knows.

Also the root option ``rfmseg --config PATH`` (any command then reads that project file).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypedDict

import typer

from rfmseg import config as cfg
from rfmseg.cli.common import app, out, print_json, rich_table
from rfmseg.cli.options import ConfigOpt, JsonBrief, ShowPreset  # ConfigOpt stays importable from here too
from rfmseg.errors import InputError, ParameterError

config_app = typer.Typer(help=f"The project file ({cfg.CONFIG_FILE}): what is in force and where it came from.")
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from rfmseg import __version__

        try:
            installed = version("rfmseg")
        except PackageNotFoundError:  # running from a source tree that is not installed
            installed = __version__
        out.print(f"rfmseg {installed}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Which customers are similar, and what to do about each group: RFM + K-Means segmentation."""
    ctx.obj = {"config": config}


@config_app.command("show")
def show_config(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: ShowPreset = None,
    as_json: JsonBrief = False,
) -> None:
    """Print the effective configuration and where each value came from (default, file, env, option)."""
    settings = cfg.resolve(ctx)
    rows = settings.rows()
    if as_json:
        print_json(
            {
                "config_file": str(settings.path) if settings.path else None,
                "settings": {k: {"value": v, "origin": o} for k, v, o in rows},
            }
        )
        return
    where = str(settings.path) if settings.path else f"none (no ./{cfg.CONFIG_FILE}; `rfmseg init` writes one)"
    t = rich_table(title=f"Configuration — project file: {where}")
    for c in ("key", "value", "from"):
        t.add_column(c, no_wrap=c != "value")
    for k, v, o in rows:
        t.add_row(k, "" if v is None else str(v), o)
    out.print(t)


@app.command()
def init(
    source: Annotated[
        str | None, typer.Argument(help="Your data: a file path or glob (columns are detected from it).")
    ] = None,
    preset: Annotated[str, typer.Option("--preset", help="ecommerce, online-retail, saas, crm or education.")] = (
        "ecommerce"
    ),
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the project file.")] = Path(
        cfg.CONFIG_FILE
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented rfmseg.toml: source, column map, preset, K, cold start, runs folder, store."""
    from rfmseg.presets import get_preset

    if output.exists() and not force:
        raise ParameterError(f"{output} exists; edit it, or pass --force to write a fresh one")
    p = get_preset(preset)
    columns = dict(p.columns)
    if source:
        columns = {**columns, **_detect_columns(source, p)}
    text = template(p, source, columns)
    cfg.Settings.model_validate(tomllib.loads(text))  # what we write must load
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    out.print(f"Wrote {output} (preset {p.name}). Check it with `rfmseg config show`, then run `rfmseg run`.")


class _PresetItem(TypedDict):
    """One preset as ``rfmseg presets --json`` lists it."""

    name: str
    description: str
    features: dict[str, str]
    units: dict[str, object]
    segments: list[str]
    sample: str | None


@app.command("presets")
def presets_cmd(
    as_json: JsonBrief = False,
    sample: Annotated[
        str | None, typer.Option("--sample", help="Print only the path of this preset's sample data set.")
    ] = None,
) -> None:
    """The built-in presets: what R, F and M mean in each, their vocabulary, and their sample data."""
    from rfmseg.presets import PRESETS, get_preset

    if sample:
        print(get_preset(sample).sample_path())
        return

    items: list[_PresetItem] = []
    for name in PRESETS:
        p = get_preset(name)
        items.append(
            {
                "name": p.name,
                "description": p.description,
                "features": p.features.to_dict(),
                "units": p.units.to_dict(),
                "segments": [t.name for t in p.vocabulary.types],
                "sample": str(p.sample_path()) if p.sample else None,
            }
        )
    if as_json:
        print_json(items)
        return
    t = rich_table(title="Presets")
    for c in ("preset", "R / F / M", "segments", "sample"):
        t.add_column(c)
    for i in items:
        u = i["units"]
        t.add_row(
            f"{i['name']}\n{i['description']}",
            f"{u['recency']}\n{u['frequency']} = {i['features']['frequency']}\n"
            f"{u['monetary']} = {i['features']['monetary']}",
            ", ".join(i["segments"]),
            Path(i["sample"]).name if i["sample"] else "",
        )
    out.print(t)
    out.print(
        "A sample's path: rfmseg presets --sample NAME, "
        'e.g. rfmseg run --preset saas "$(rfmseg presets --sample saas)"'
    )


def _detect_columns(source: str, preset: Any) -> dict[str, str]:
    """canonical field -> column of the file ``source``, as ``rfmseg run`` would map it (empty if unreadable)."""
    import duckdb

    from rfmseg.io.readers import open_source
    from rfmseg.io.sources import FileGlob
    from rfmseg.io.validate import resolve_columns
    from rfmseg.presets import with_features

    con = duckdb.connect()
    try:
        spec = FileGlob(source) if any(ch in source for ch in "*?[") else source
        src = spec.register(con) if isinstance(spec, FileGlob) else open_source(con, spec)
        policy = with_features(preset.policy, preset.features)
        _, mapping = resolve_columns(src, preset.columns_for(src.columns, None), policy.fields, policy.needs_amount)
    except (InputError, ParameterError):
        return {}
    finally:
        con.close()
    return mapping


def _q(value: str) -> str:
    return json.dumps(value)


def template(preset: Any, source: str | None, columns: dict[str, str]) -> str:
    """The commented project file ``rfmseg init`` writes (every key, with its default)."""
    f = preset.features.to_dict()
    lines = [
        "# rfmseg project file. Every rfmseg command reads it from this folder (or from --config PATH);",
        "# options typed on the command line override it. `rfmseg config show` prints what is in force and",
        "# where each value came from. Unknown keys and wrong values are refused. See docs/configuration.md.",
        "",
        "# The domain: column map, features, segment vocabulary and wording.",
        "# Built in: ecommerce (default), online-retail, saas, crm, education; or your own under [presets.NAME].",
        f"preset = {_q(preset.name)}",
        f"# here: recency = days since the last event, frequency = {f['frequency']}, monetary = {f['monetary']}",
        "",
        "# Date recency is counted to; default: the day after the last event in the data.",
        "# as_of = 2024-12-31",
        "",
        f"# Scaling before K-Means: minmax, log-minmax or rank (default: the preset's, {preset.transform}).",
        f"# transform = {_q(preset.transform)}",
        "",
        "# K-Means: number of segments (2-10), seed and restarts.",
        "k = 4",
        "random_state = 42",
        "n_init = 10",
        "",
        '# Rows that break a rule: "error" stops at the first, "quarantine" sets them aside with a reason code.',
        f'# bad_rows = "{preset.policy.bad_rows}"',
        "# Text dates in another format than ISO: a strptime format.",
        '# date_format = "%d/%m/%Y"',
        "",
        "# Where runs are written, and the online profile store runs are published to",
        "# (default: sqlite:///<runs_dir>/profiles.db; also postgresql://... or redis://...).",
        'runs_dir = "rfmseg-runs"',
        '# store = "sqlite:///rfmseg-runs/profiles.db"',
        "",
    ]
    if source:
        key = "glob" if any(ch in source for ch in "*?[") else "path"
        lines += ["[source]", f"{key} = {_q(source)}"]
    else:
        lines += ["# [source]", '# path = "orders.csv"']
    lines += [
        '# glob = "exports/*.parquet"          # instead of path: every matching file, read as one table',
        '# type = "postgres"                    # or straight from PostgreSQL (needs rfmseg[postgres]):',
        '# url = "postgresql://user@localhost:5432/shop"',
        '# query = "SELECT customer_id, order_id, order_date, amount FROM orders"',
        "",
        "[columns]",
        "# canonical field = the column in your data (found automatically when the names match)",
    ]
    for k, v in columns.items():
        lines.append(f"{k} = {_q(v)}")
    if not columns:
        lines += ['# customer_id = "cust"', '# order_id = "invoice"', '# order_date = "ts"', '# amount = "total"']
    lines += [
        "",
        "[cold_start]",
        "# Too little history to score: a frequency below `orders` (orders, sessions, touchpoints: what the",
        "# preset's frequency counts), or a first event fewer than `days` days before the as-of date (0 switches",
        "# a part off). They get `segment` until their history is there (rfmseg assign / refresh).",
        "orders = 2",
        "days = 30",
        f"segment = {_q(preset.cold_start_segment)}",
        "",
        "# Your own preset: features, vocabulary and wording of your domain (docs/presets.md).",
        "# [presets.newsletter]",
        '# description = "newsletter engagement"',
        '# extends = "ecommerce"',
        '# columns = { customer_id = "subscriber", order_date = "opened_at" }',
        '# features = { frequency = "count(*)", monetary = "count_distinct(campaign)" }',
        '# units.entity = "subscribers"',
        '# units.frequency = "opens"',
        '# units.event = "open"',
        '# units.monetary = "campaigns"',
        '# units.total = ""                     # a sum of campaigns over subscribers means nothing',
        '# units.ratio = ""',
        "# units.money = false",
        '# labels = ["last open", "opens", "campaigns"]',
        "# one [[presets.newsletter.vocabulary]] table per segment name (at least K of them); levels 0-1:",
        "# [[presets.newsletter.vocabulary]]",
        '# name = "Fans"',
        "# recency = 0.9",
        "# frequency = 0.9",
        "# monetary = 0.9",
        '# action = "Early access to new editions"',
        "# priority = 1",
        "",
    ]
    return "\n".join(lines)
