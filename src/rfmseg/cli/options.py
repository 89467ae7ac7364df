"""The options and arguments the `rfmseg` commands share, each defined once.

A command declares a shared option with its alias, ``runs_dir: RunsDir = DEFAULT_RUNS_DIR``; options only one
command has stay with that command. Where commands word the same flag differently (the registry commands
say where the runs folder defaults from, the agent commands also take it from $RFMSEG_RUNS_DIR), each wording
is its own alias, side by side here.

An option that overrides a setting says which, where it is declared: ``SettingKey("k")`` in its ``Annotated``
(checked when declared; ``config.resolve(ctx)`` reads these bindings, never the parameter's name, so renaming
a parameter cannot drop an option). Options a command never reads itself (the column map, the row policy,
the cold-start rule) come in groups that :func:`include` adds to the command's signature::

    @app.command()
    @include(READING, COLD_START, after="model")
    def refresh(ctx: typer.Context, path: Input = None, as_of: AsOf = None, model: ... = "latest", ...) -> None:
        settings = resolve(ctx)  # --customer-col, --bad-rows, --cold-start-days, ... are in there
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from rfmseg import schema
from rfmseg import settings as cfg
from rfmseg.settings import RUNS_ENV, STORE_ENV, SettingKey

# --------------------------------------------------------------------------------------------- project file
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"Project file to read (default: ${cfg.CONFIG_ENV}, else ./{cfg.CONFIG_FILE} if present).",
        show_default=False,
    ),
]
"""Add ``config: ConfigOpt = None`` to a command to accept ``--config`` after its name too."""

# --------------------------------------------------------------------------------------------- output
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout, nothing else.")]
JsonBrief = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, nothing else.")]
"""the wording of `rfmseg config show` and `rfmseg presets`"""

# --------------------------------------------------------------------------------------------- runs and store
_RUNS_DIR = SettingKey("runs_dir")
RunsDir = Annotated[
    Path,
    typer.Option("--runs-dir", help="Folder of the run registry (default: runs_dir of rfmseg.toml, else this)."),
    _RUNS_DIR,
]
RunsDirBrief = Annotated[Path, typer.Option("--runs-dir", help="Folder of the run registry."), _RUNS_DIR]
"""the wording of demo, run and show"""
RunsDirEnv = Annotated[
    Path,
    typer.Option(
        "--runs-dir",
        envvar=RUNS_ENV,
        help=f"Folder of the run registry (env {RUNS_ENV}; default: runs_dir of rfmseg.toml, else this).",
    ),
    _RUNS_DIR,
]
"""the agent commands' (touches, ask, context, mcp): the option itself reads $RFMSEG_RUNS_DIR"""
_STORE = SettingKey("store")
Store = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=STORE_ENV,
        help="Profile store URL (sqlite:///path, postgresql://..., redis://...); "
        "default: store of rfmseg.toml, else sqlite:///<runs-dir>/profiles.db.",
    ),
    _STORE,
]
"""where refresh, retrain and publish publish to"""
RunStore = Annotated[
    str | None,
    typer.Option("--store", help="Profile store URL to publish the labels to (sqlite:///, postgresql://, redis://)."),
    _STORE,
]
"""where run publishes to"""
ReadStore = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=STORE_ENV,
        help=f"Profile store URL (env {STORE_ENV}; default: store of rfmseg.toml, else <runs-dir>/profiles.db).",
    ),
    _STORE,
]
"""where context and mcp read profiles from"""
ServeStore = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Profile store URL (default: $RFMSEG_STORE, else store of rfmseg.toml, "
        "else sqlite:///<runs-dir>/profiles.db).",
    ),
    _STORE,
]
"""where serve reads profiles from"""
Publish = Annotated[bool, typer.Option("--publish/--no-publish", help="Publish to the profile store.")]
Hold = Annotated[
    float,
    typer.Option(
        "--hold",
        min=0,
        help="A customer within this distance (scaled units) of their previous segment's centroid keeps it; 0 = off.",
    ),
]
Rhythm = Annotated[
    bool | None,
    typer.Option(
        "--rhythm/--no-rhythm",
        help="Fit each customer's rhythm model: p_alive, expected orders and value over 90 days (needs the clv "
        "extra; docs/rhythm.md). Default: rhythm in rfmseg.toml, else off for run and as the previous model for "
        "retrain.",
        show_default=False,
    ),
    SettingKey("rhythm"),
]

_RUN_REF = "Run id, unique prefix, or 'latest'."
RunId = Annotated[str, typer.Argument(help=_RUN_REF)]
RunOpt = Annotated[str, typer.Option("--run", help=_RUN_REF)]
CustomerId = Annotated[str, typer.Argument(help="Customer id.")]
CustomerIds = Annotated[str | None, typer.Option("--customers", help="Comma-separated ids to show.")]
Segment = Annotated[str, typer.Option("--segment", help="Segment name (any case, or a slug like at-risk).")]
Limit = Annotated[int, typer.Option("--limit", help="Most rows to show.")]

# --------------------------------------------------------------------------------------------- the input
Source = Annotated[
    Path | None,
    typer.Argument(
        help="Transactions (or an RFM table): CSV, Parquet or .xlsx; default: the source set in rfmseg.toml.",
        show_default=False,
    ),
    SettingKey("source"),
]
"""the data of run and choose-k"""
Input = Annotated[
    Path | None,
    typer.Argument(
        help="Transactions (or an RFM table): CSV, Parquet or .xlsx; default: the source set in rfmseg.toml.",
        show_default=False,
    ),
    SettingKey("source"),
]
"""the data of assign, refresh and retrain"""
AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Date recency is counted to (YYYY-MM-DD); default: the day after the last order."),
    SettingKey("as_of"),
]
_DATE_FORMAT = typer.Option("--date-format", help="strptime format, e.g. %d/%m/%Y.")
DateFormat = Annotated[str | None, _DATE_FORMAT, SettingKey("date_format")]
TouchesDateFormat = Annotated[str | None, _DATE_FORMAT]
"""the date format of a campaign file (touches import): not the transactions' date_format setting"""
_BAD_ROWS = SettingKey("bad_rows")
BadRows = Annotated[
    str | None,
    typer.Option(
        "--bad-rows",
        help="error: stop on the first bad row; quarantine: set bad rows aside with their reason "
        "(default: the preset's, else error).",
    ),
    _BAD_ROWS,
]
"""the wording of run"""
ModelBadRows = Annotated[
    str | None,
    typer.Option("--bad-rows", help="error: stop on the first bad row; quarantine: set bad rows aside with reasons."),
    _BAD_ROWS,
]
"""the wording of assign, refresh and retrain (and of Preset, Returns below: Model*)"""
_PRESET = SettingKey("preset")
Preset = Annotated[
    str | None,
    typer.Option("--preset", help="Column map and row policy of a known layout, e.g. online-retail."),
    _PRESET,
]
ModelPreset = Annotated[
    str | None, typer.Option("--preset", help="Column map and row policy; default: the model's run's preset."), _PRESET
]
ShowPreset = Annotated[str | None, typer.Option("--preset", help="Show with this preset."), _PRESET]
"""the wording of `rfmseg config show`"""
_RETURNS = SettingKey("returns")
Returns = Annotated[
    str | None,
    typer.Option(
        "--returns", help="net: subtract returns from monetary (not orders, no recency); exclude: quarantine them."
    ),
    _RETURNS,
]
ModelReturns = Annotated[
    str | None, typer.Option("--returns", help="net or exclude (presets that know returns)."), _RETURNS
]

_COLUMNS = {  # parameter: (canonical field, option, help)
    "customer_col": (schema.CUSTOMER_ID, "--customer-col", "Customer id column."),
    "order_col": (schema.ORDER_ID, "--order-col", "Order id column."),
    "date_col": (schema.ORDER_DATE, "--date-col", "Order date column."),
    "amount_col": (schema.AMOUNT, "--amount-col", "Order amount column."),
    "quantity_col": (schema.QUANTITY, "--quantity-col", "Quantity (with --price-col)."),
    "price_col": (schema.UNIT_PRICE, "--price-col", "Unit price (with --quantity-col)."),
}


def _column(name: str, explained: bool = True) -> Any:
    field, flag, text = _COLUMNS[name]
    return Annotated[str | None, typer.Option(flag, help=text if explained else None), SettingKey(f"columns.{field}")]


ColumnPairs = Annotated[
    list[str] | None,
    typer.Option("--col", help="FIELD=COLUMN for any canonical field, e.g. session_count=sessions (repeatable)."),
    SettingKey(SettingKey.COLUMN_PAIRS),
]
"""--col FIELD=COLUMN, repeatable: any canonical field (run, choose-k)"""


# --------------------------------------------------------------------------------------------- K-Means
_N_INIT = typer.Option("--n-init", help="K-Means restarts.")
_SEED = typer.Option("--random-state", help="K-Means seed.")
_K, _TRANSFORM = SettingKey("k"), SettingKey("transform")
K = Annotated[int, typer.Option("--k", "-k", help="Number of segments."), _K]
Transform = Annotated[
    str | None,
    typer.Option("--transform", help="minmax, log-minmax or rank (default: the preset's, else minmax)."),
    _TRANSFORM,
]
NInit = Annotated[int, _N_INIT, SettingKey("n_init")]
Seed = Annotated[int, _SEED, SettingKey("random_state")]
# retrain: unset = the previous model's
KOrPrevious = Annotated[int | None, typer.Option("--k", "-k", help="Segments (default: the previous model's)."), _K]
TransformOrPrevious = Annotated[
    str | None, typer.Option("--transform", help="Default: the previous model's."), _TRANSFORM
]
NInitOrPrevious = Annotated[int | None, _N_INIT, SettingKey("n_init")]
SeedOrPrevious = Annotated[int | None, _SEED, SettingKey("random_state")]

# --------------------------------------------------------------------------------------------- cold start
ColdOrders = Annotated[
    int,
    typer.Option("--cold-start-orders", help="Fewer orders than this → cold start (0 = off).", min=0),
    SettingKey("cold_start.orders"),
]
ColdDays = Annotated[
    int,
    typer.Option("--cold-start-days", help="First order fewer days than this before as-of → cold start.", min=0),
    SettingKey("cold_start.days"),
]
ColdSegment = Annotated[
    str | None,
    typer.Option(
        "--cold-start-segment", help="Segment given to cold-start customers (default: the preset's, else Occasional)."
    ),
    SettingKey("cold_start.segment"),
]


# --------------------------------------------------------------------------------------------- errors
FLAGS = {
    **{f"columns.{field}": flag for field, flag, _ in _COLUMNS.values()},
    "columns": "--col",
    "extra_kinds": "--kind",
    "keywords": "--keyword",
    "from_run": "--from",
    "recency_jump_days": "--recency-jump",
    "period_days": "--period",
    "window_days": "--window",
    "lookback_days": "--lookback",
    "half_life_days": "--half-life",
    "more_than_days": "--more-than",
}
"""parameter -> flag, where the flag is not the parameter with dashes (the column map's fields, touches' kinds)"""


def flag_of(param: str) -> str:
    """How the CLI names a core parameter in an error message: ``k`` -> ``--k``, ``as_of`` -> ``--as-of``,
    ``columns.customer_id`` -> ``--customer-col``."""
    return FLAGS.get(param) or "--" + param.replace("_", "-").replace(".", "-")


# --------------------------------------------------------------------------------------------- groups
Params = tuple[inspect.Parameter, ...]


def params(**spec: Any) -> Params:
    """Command parameters for :func:`include`: ``name=Alias`` (default None) or ``name=(Alias, default)``."""
    out = []
    for name, value in spec.items():
        alias, default = value if isinstance(value, tuple) else (value, None)
        out.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=alias))
    return tuple(out)


Decimal = Annotated[
    str | None,
    typer.Option("--decimal", help="Decimal mark of the numbers: '.' or ',' (default: detected; 1.234,50 needs ',')."),
    SettingKey("decimal"),
]
Encoding = Annotated[
    str | None,
    typer.Option("--encoding", help="A CSV's encoding: utf-8, utf-16 or latin-1 (default: detected)."),
    SettingKey("encoding"),
]
Sheet = Annotated[
    str | None,
    typer.Option("--sheet", help="The workbook's sheet to read, or all (needed when it has several)."),
    SettingKey("sheet"),
]
MaxQuarantine = Annotated[
    float | None,
    typer.Option(
        "--max-quarantine",
        help="Largest share of the rows one quarantine reason may take before the run stops "
        "(default: the preset's, else 0.2).",
    ),
    SettingKey("max_quarantine"),
]
FORMATS = params(decimal=Decimal, encoding=Encoding, sheet=Sheet, max_quarantine=MaxQuarantine)
"""how the input is written: --decimal, --encoding, --sheet, and the quarantine guard --max-quarantine"""
COLUMNS = params(**{name: _column(name) for name in _COLUMNS}, date_format=DateFormat) + FORMATS
"""the column map (--customer-col ... --price-col), --date-format and the formats"""
BARE_COLUMNS = params(**{name: _column(name, explained=False) for name in list(_COLUMNS)[:4]})
"""--customer-col, --order-col, --date-col, --amount-col without help texts (choose-k has always shown them so)"""
READING = (*COLUMNS, *params(bad_rows=ModelBadRows, preset=ModelPreset, returns=ModelReturns))
"""how assign, refresh and retrain read their input: columns, date format, row policy, preset, returns"""
AS_OF = params(as_of=AsOf)
COLD_START = params(cold_start_orders=(ColdOrders, 2), cold_start_days=(ColdDays, 30), cold_start_segment=ColdSegment)

F = TypeVar("F", bound=Callable[..., Any])


def include(*groups: Params, after: str) -> Callable[[F], F]:
    """Add the parameters of ``groups``, in order, to a command's signature after its parameter ``after``.

    For options the command does not read itself: Typer shows and parses them, ``config.resolve(ctx)``
    finds them by name, and the command is called without them. Put it below ``@app.command()``."""

    def decorate(command: F) -> F:
        sig = inspect.signature(command, eval_str=True)
        own = list(sig.parameters.values())
        added = [p for group in groups for p in group]
        clash = sorted({p.name for p in added} & set(sig.parameters))
        if clash:
            raise TypeError(f"{command.__name__} declares {', '.join(clash)} itself; leave them out of include()")
        at = [p.name for p in own].index(after) + 1
        full = sig.replace(parameters=[*own[:at], *added, *own[at:]])

        @functools.wraps(command)
        def with_options(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **{k: v for k, v in kwargs.items() if k in sig.parameters})

        with_options.__signature__ = full  # type: ignore[attr-defined]  # what Typer reads
        with_options.__annotations__ = {p.name: p.annotation for p in full.parameters.values()}
        with_options.__annotations__["return"] = sig.return_annotation
        return cast(F, with_options)

    return decorate
