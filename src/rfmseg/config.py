"""The project file ``rfmseg.toml``: where the data is, what it means, and how to segment it.

Every command calls :func:`resolve` and gets one :class:`rfmseg.settings.Settings` (the one settings model;
this module reads the file and layers the sources), merged from four layers (later wins):

1. defaults (those of ``rfmseg run``; the preset's for transform, bad_rows and the cold-start segment);
2. the project file: ``--config PATH``, else ``$RFMSEG_CONFIG``, else ``./rfmseg.toml`` when it exists;
3. environment variables: ``RFMSEG_RUNS_DIR``, ``RFMSEG_STORE``, ``RFMSEG_PRESET``, ``RFMSEG_TRANSFORM``,
   ``RFMSEG_BAD_ROWS``, ``RFMSEG_AS_OF``;
4. command-line options the user actually typed (a default left alone never overrides the file); an option
   counts when its declaration binds it to a key (:class:`rfmseg.settings.SettingKey`, see :func:`bindings`).

The file is strict: an unknown key, a wrong type or a value out of range stops with one line naming the
file, the key, what was given and what is allowed (exit code 2). Validation uses pydantic models with
``extra="forbid"`` and strict types (``k = "4"`` is refused, not coerced). Each value remembers where it
came from, which ``rfmseg config show`` prints.

Relative paths in the file (source.path, source.glob, runs_dir) are relative to the file's folder; on the
command line and in the environment, to the working folder.

For other commands::

    from rfmseg import config
    settings = config.resolve(ctx)              # ctx: the click/typer Context of the command
    settings.runs_path, settings.store_url, settings.cold_start_rule(), settings.segment_kwargs()
"""

from __future__ import annotations

import inspect
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from rfmseg.model.segment_model import K_MAX, K_MIN
from rfmseg.settings import (
    CONFIG_ENV,
    CONFIG_FILE,
    ColdStartConfig,
    ConfigError,
    FeaturesConfig,
    FieldConfig,
    PresetConfig,
    SegmentConfig,
    SettingKey,
    Settings,
    UnitsConfig,
    parents,
    redact,
    source_of,
)

__all__ = ["CONFIG_ENV", "CONFIG_FILE", "ConfigError", "Settings", "find_config", "read_file", "resolve"]
ENV_KEYS = {
    "RFMSEG_RUNS_DIR": "runs_dir",
    "RFMSEG_STORE": "store",
    "RFMSEG_PRESET": "preset",
    "RFMSEG_TRANSFORM": "transform",
    "RFMSEG_BAD_ROWS": "bad_rows",
    "RFMSEG_AS_OF": "as_of",
}
OPTION_NAMES = {
    "source": "the FILE argument",
    "columns.customer_id": "--customer-col",
    "columns.order_id": "--order-col",
    "columns.order_date": "--date-col",
    "columns.amount": "--amount-col",
    "columns.quantity": "--quantity-col",
    "columns.unit_price": "--price-col",
}


# ------------------------------------------------------------------------------------------------ loading

# what each key of the project file takes, named in the errors that explain a bad key or value
ALLOWED = {
    "source": 'a path, or a table: {path = "orders.csv"}, {glob = "exports/*.parquet"} or '
    '{type = "postgres", url = "postgresql://user@host:5432/db", query = "SELECT ..."}',
    "source.type": "file or postgres",
    "source.path": "the path of a CSV, Parquet or .xlsx file (text)",
    "source.glob": 'a glob pattern of CSV or Parquet files, e.g. "exports/*.parquet"',
    "source.url": "a PostgreSQL URL, postgresql://user:password@host:5432/database",
    "source.query": "a SELECT query (text)",
    "columns": 'a table: canonical field = your column name, e.g. customer_id = "cust"',
    "columns.*": "a column name (text)",
    "preset": "the name of a built-in preset or of one defined under [presets.NAME]",
    "as_of": 'a date, as_of = 2024-12-31 (or "2024-12-31")',
    "transform": "minmax, log-minmax or rank",
    "k": f"a whole number from {K_MIN} to {K_MAX}",
    "random_state": "a whole number from 0 to 4294967295 (2**32 - 1)",
    "n_init": "a whole number >= 1",
    "bad_rows": "error or quarantine",
    "returns": "net or exclude",
    "date_format": 'a strptime format, e.g. "%d/%m/%Y"',
    "decimal": '"." or "," (the decimal mark of the numbers)',
    "encoding": "utf-8, utf-16 or latin-1 (also for windows-1252)",
    "sheet": 'a sheet name of the workbook, or "all"',
    "max_quarantine": "a share from 0 to 1, e.g. 0.2",
    "rhythm": "true or false: fit each customer's rhythm model (p_alive, expected orders and value; docs/rhythm.md)",
    "cold_start": "a table with orders, days and segment",
    "cold_start.orders": "a whole number >= 0 (0 switches this part of the rule off)",
    "cold_start.days": "a whole number >= 0 (0 switches this part of the rule off)",
    "cold_start.segment": "a segment name (text)",
    "runs_dir": "a folder path (text)",
    "store": "a store URL: sqlite:///path.db, postgresql://user@host:5432/db or redis://host:6379/0",
    "presets": "tables [presets.NAME] defining your own presets",
    "presets.*": "a table with description, extends, columns, features, units, labels, vocabulary, fields, "
    "currency, transform, cold_start_segment",
    "presets.*.description": "text",
    "presets.*.extends": "the name of a built-in preset to start from",
    "presets.*.columns": "a table: canonical field = your column name",
    "presets.*.features": 'a table: frequency = "count_distinct(order_id)", monetary = "sum(amount)" '
    '(aggregations count(*), count_distinct, sum, max, min, mean of a canonical column; recency = "max(ts)")',
    "presets.*.units": "a table with entity, recency, frequency, event, monetary, total, ratio (text), "
    "money (true/false), suffix (text)",
    "presets.*.labels": 'three texts naming R, F and M in reasons, e.g. ["last login", "sessions", "features"]',
    "presets.*.vocabulary": "an array of tables [[presets.NAME.vocabulary]] with name, recency, frequency, "
    "monetary (levels from 0 to 1), action, priority (whole number >= 1), description",
    "presets.*.fields": 'a table: column = {kind = "number" or "text", min = N, max = N}',
    "presets.*.currency": 'text, e.g. "$" (empty for no currency)',
    "presets.*.transform": "minmax, log-minmax or rank",
    "presets.*.cold_start_segment": "a segment name of the preset's vocabulary",
}


def find_config(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """``explicit``, else $RFMSEG_CONFIG, else ./rfmseg.toml if it exists, else None."""
    env = os.environ if env is None else env
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: no such project file; check {{config}} (rfmseg init writes one)", param="config")
        return p
    if env.get(CONFIG_ENV):
        p = Path(env[CONFIG_ENV])
        if not p.is_file():
            raise ConfigError(f"{p}: no such project file (from ${CONFIG_ENV}); fix or unset the variable")
        return p
    here = Path(CONFIG_FILE)
    return here if here.is_file() else None


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax (see docs/configuration.md)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); check the file") from None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a file's values; a preset definition counts as one value (presets.NAME)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key == "presets" and isinstance(v, Mapping):
            out.update({f"presets.{name}": d for name, d in v.items()})
        elif isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[parts[-1]] = value


def _explain(exc: ValidationError, where: Any) -> ConfigError:
    """The first problem as one line: where, key, what was given, what is allowed."""
    err = exc.errors()[0]
    loc = [str(x) for x in err["loc"]]
    if loc[:1] == ["source"] and loc[1:2] in (["file"], ["postgres"]):
        del loc[1]
    loc = [x for x in loc if not x.startswith(("function-", "tagged-union", "lax-", "strict-"))]
    key = ".".join(loc).replace(".vocabulary.", ".vocabulary#") or "(top level)"
    if "#" in key:  # vocabulary entries counted from 1, as a user counts them
        head, _, rest = key.partition("#")
        index, _, tail = rest.partition(".")
        key = f"{head}[{int(index) + 1}]" + (f".{tail}" if tail else "")
    generic = _generic_key(loc)
    source = where(key) if callable(where) else where
    option = source.startswith("--")
    if err["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        keys = _keys_allowed(loc[:-1])
        return ConfigError(
            f"{source}: unknown key '{key}'; allowed{' in ' + parent if parent else ''}: {', '.join(keys)}"
        )
    if err["type"] == "missing":
        return ConfigError(f"{source}: {key} is missing; expected {ALLOWED.get(generic, 'a value')}")
    given = err.get("input")
    shown = (
        "a table"
        if isinstance(given, dict)
        else f"an array of {len(given)}"
        if isinstance(given, list)
        else repr(given)
    )
    if isinstance(given, str) and key.endswith("url"):
        shown = repr(redact(given))
    msg = err["msg"].removeprefix("Value error, ")
    head = f"{source} {shown}" if option else f"{source}: {key} = {shown}"  # '--k 1' or 'rfmseg.toml: k = 1'
    if msg.startswith("not "):  # the validator's own message already says what to write
        return ConfigError(f"{head} is {msg}")
    return ConfigError(f"{head} is not allowed ({msg}); allowed: {ALLOWED.get(generic, msg)}")


def _generic_key(loc: list[str]) -> str:
    if loc[:1] == ["presets"] and len(loc) >= 2:
        rest = loc[2:3]
        return ".".join(["presets", "*", *rest])
    if loc[:1] == ["columns"] and len(loc) >= 2:
        return "columns.*"
    return ".".join(loc[:2])


def _keys_allowed(parent: list[str]) -> list[str]:
    model: Any = Settings
    if parent[:1] == ["presets"] and len(parent) >= 2:
        model = PresetConfig
        rest = parent[2:]
        sub = {"features": FeaturesConfig, "units": UnitsConfig, "vocabulary": SegmentConfig, "fields": FieldConfig}
        if rest:
            model = sub.get(rest[0], model)
    elif parent[:1] == ["cold_start"]:
        model = ColdStartConfig
    elif parent[:1] == ["source"]:
        return ["path", "glob", "type", "url", "query"]
    return list(model.model_fields)


def resolve(
    ctx: Any = None,
    *,
    config: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The effective settings of a command: defaults < project file < environment < options typed.

    ``ctx`` is the command's click/typer Context: every parameter declared with a :class:`SettingKey`
    (``--k``, ``--runs-dir``, ``--store``, ``--cold-start-days``, ``--customer-col``, ...; see
    :func:`bindings`) that the user gave on the command line (or through its own envvar) overrides the file;
    ``--config`` is read from the command or the root command. ``options`` (settings key -> value) does the
    same from Python.
    """
    env = os.environ if env is None else env
    explicit = config or _ctx_config(ctx)
    path = find_config(explicit, env)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path is not None:
        raw = read_file(path)
        try:
            Settings.model_validate(raw)
        except ValidationError as exc:
            raise _explain(exc, str(path)) from None
        merged = raw
        for key in _flatten(raw):
            origins[key] = f"file {path}: {key}"

    layered: list[tuple[str, Any, str]] = []
    for var, key in ENV_KEYS.items():
        if env.get(var):
            layered.append((key, env[var], f"env {var}"))
    layered += _ctx_options(ctx)
    for key, value in (options or {}).items():
        layered.append((key, value, "option"))
    for key, value, origin in layered:
        if key == "source" and isinstance(value, (str, Path)):
            value = str(value)
            merged.pop("source", None)
            sub = "glob" if any(ch in value for ch in "*?[") else "path"
            _set(merged, f"source.{sub}", value)
            _drop_prefix(origins, "source")
            origins[f"source.{sub}"] = origin
            continue
        if isinstance(value, Path):
            value = str(value)
        _set(merged, key, value)
        _drop_prefix(origins, key)
        origins[key] = origin

    def where(key: str) -> str:
        for k in parents(key):
            if k in origins:
                o = origins[k]
                if o == "option":
                    return OPTION_NAMES.get(k, "--" + k.replace("_", "-").replace(".", "-"))
                return source_of(o)
        return "default"

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, where) from None
    settings._origins.update(origins)
    settings._path = path
    settings.preset_obj()  # an unknown preset or a bad preset definition stops here
    return settings


def _drop_prefix(origins: dict[str, str], key: str) -> None:
    for k in [k for k in origins if k == key or k.startswith(key + ".")]:
        del origins[k]


def _ctx_config(ctx: Any) -> Any:
    while ctx is not None:
        value = getattr(ctx, "params", {}).get("config")
        if value:
            return value
        obj = getattr(ctx, "obj", None)
        if isinstance(obj, dict) and obj.get("config"):
            return obj["config"]
        ctx = getattr(ctx, "parent", None)
    return None


def bindings(command: Any) -> dict[str, str]:
    """parameter name -> settings key of a command's parameters declared with :class:`SettingKey`
    (``Annotated[int, typer.Option("--k"), SettingKey("k")]``); its other parameters are not configuration."""
    callback = getattr(command, "callback", None)
    if callback is None:
        return {}
    out = {}
    for name, param in inspect.signature(callback, eval_str=True).parameters.items():
        marks = [m for m in get_args(param.annotation)[1:] if isinstance(m, SettingKey)]
        if marks:
            out[name] = marks[0].key
    return out


def _ctx_options(ctx: Any) -> list[tuple[str, Any, str]]:
    """(key, value, origin) of the parameters bound to settings that the user gave to the command."""
    if ctx is None:
        return []
    out: list[tuple[str, Any, str]] = []
    envvars = {p.name: getattr(p, "envvar", None) for p in getattr(ctx.command, "params", [])}
    bound = bindings(ctx.command)
    for name, value in ctx.params.items():
        key = bound.get(name)
        if key is None or value is None or value == () or value == []:
            continue
        # compared by name: Typer carries its own copy of click (typer._click), with its own enum
        src = getattr(ctx.get_parameter_source(name), "name", None)
        if src in ("DEFAULT", "DEFAULT_MAP", None):
            continue
        if key == SettingKey.COLUMN_PAIRS:
            for item in value:
                field, sep, column = str(item).partition("=")
                if not sep or not field.strip() or not column.strip():
                    raise ConfigError(f"--col {item!r} is not FIELD=COLUMN; e.g. --col session_count=sessions")
                out.append((f"columns.{field.strip()}", column.strip(), "option --col"))
            continue
        origin = f"env {envvars.get(name)}" if src == "ENVIRONMENT" else "option"
        out.append((key, value, origin))
    return out
