"""The project file ``rfmseg.toml``: where the data is, what it means, and how to segment it.

Every command calls :func:`resolve` and gets one :class:`Settings`, merged from four layers (later wins):

1. defaults (those of ``rfmseg run``; the preset's for transform, bad_rows and the cold-start segment);
2. the project file: ``--config PATH``, else ``$RFMSEG_CONFIG``, else ``./rfmseg.toml`` when it exists;
3. environment variables: ``RFMSEG_RUNS_DIR``, ``RFMSEG_STORE``, ``RFMSEG_PRESET``, ``RFMSEG_TRANSFORM``,
   ``RFMSEG_BAD_ROWS``, ``RFMSEG_AS_OF``;
4. command-line options the user actually typed (a default left alone never overrides the file).

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

import os
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from rfmseg.errors import ParameterError

CONFIG_FILE = "rfmseg.toml"
CONFIG_ENV = "RFMSEG_CONFIG"
DEFAULT_RUNS_DIR = "rfmseg-runs"
ENV_KEYS = {
    "RFMSEG_RUNS_DIR": "runs_dir",
    "RFMSEG_STORE": "store",
    "RFMSEG_PRESET": "preset",
    "RFMSEG_TRANSFORM": "transform",
    "RFMSEG_BAD_ROWS": "bad_rows",
    "RFMSEG_AS_OF": "as_of",
}
OPTION_KEYS = {
    "path": "source",
    "source": "source",
    "preset": "preset",
    "as_of": "as_of",
    "transform": "transform",
    "k": "k",
    "random_state": "random_state",
    "n_init": "n_init",
    "bad_rows": "bad_rows",
    "returns": "returns",
    "date_format": "date_format",
    "runs_dir": "runs_dir",
    "store": "store",
    "store_url": "store",
    "cold_start_orders": "cold_start.orders",
    "cold_start_days": "cold_start.days",
    "cold_start_segment": "cold_start.segment",
    "customer_col": "columns.customer_id",
    "order_col": "columns.order_id",
    "date_col": "columns.order_date",
    "amount_col": "columns.amount",
    "quantity_col": "columns.quantity",
    "price_col": "columns.unit_price",
}
"""command parameter name -> settings key; a command's other parameters are not configuration"""
OPTION_NAMES = {
    "source": "the FILE argument",
    "columns.customer_id": "--customer-col",
    "columns.order_id": "--order-col",
    "columns.order_date": "--date-col",
    "columns.amount": "--amount-col",
    "columns.quantity": "--quantity-col",
    "columns.unit_price": "--price-col",
}

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
    "k": "a whole number from 2 to 10",
    "random_state": "a whole number >= 0",
    "n_init": "a whole number >= 1",
    "bad_rows": "error or quarantine",
    "returns": "net or exclude",
    "date_format": 'a strptime format, e.g. "%d/%m/%Y"',
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


class ConfigError(ParameterError):
    """The project file (or an option or variable that overrides it) has a key or value that is not allowed."""


# ------------------------------------------------------------------------------------------------ models
def _as_date(value: Any) -> Any:
    if isinstance(value, datetime):
        raise ValueError("a date without a time is needed")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not a date; use YYYY-MM-DD, e.g. 2024-12-31") from None
    raise ValueError("a date is needed")


Day = Annotated[date, BeforeValidator(_as_date)]


def _as_transform(value: Any) -> Any:
    from rfmseg.model.transform import TRANSFORMS

    if value is not None and value not in TRANSFORMS:
        raise ValueError(f"unknown transform {value!r}")
    return value


Transform = Annotated[StrictStr, BeforeValidator(_as_transform)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSourceConfig(_Strict):
    type: Literal["file"] = "file"
    path: StrictStr | None = None
    glob: StrictStr | None = None

    @model_validator(mode="after")
    def _one_of(self) -> FileSourceConfig:
        if (self.path is None) == (self.glob is None):
            raise ValueError("give exactly one of path and glob")
        return self


class PostgresSourceConfig(_Strict):
    type: Literal["postgres"]
    url: StrictStr
    query: StrictStr

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("the URL must start with postgresql://")
        return v

    @field_validator("query")
    @classmethod
    def _select(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the query is empty")
        return v


def _source(value: Any) -> Any:
    """``source = "orders.csv"`` is short for ``{path = ...}`` (or ``{glob = ...}`` with a wildcard)."""
    if isinstance(value, str):
        return {"type": "file", "glob" if any(ch in value for ch in "*?[") else "path": value}
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "file"}
    return value


SourceConfig = Annotated[FileSourceConfig | PostgresSourceConfig, Field(discriminator="type")]


class ColdStartConfig(_Strict):
    orders: Annotated[StrictInt, Field(ge=0)] = 2
    days: Annotated[StrictInt, Field(ge=0)] = 30
    segment: StrictStr | None = None
    """None: the preset's cold-start segment (Occasional for e-commerce)"""

    @field_validator("segment")
    @classmethod
    def _named(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("not a segment name (it is empty); give one, e.g. Occasional")
        return v


class SegmentConfig(_Strict):
    name: StrictStr
    recency: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]
    frequency: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]
    monetary: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]
    action: StrictStr = ""
    priority: Annotated[StrictInt, Field(ge=1)] = 5
    description: StrictStr = ""


class FeaturesConfig(_Strict):
    recency: StrictStr = "max(ts)"
    frequency: StrictStr = "count_distinct(order_id)"
    monetary: StrictStr = "sum(amount)"

    @field_validator("recency", "frequency", "monetary")
    @classmethod
    def _parse(cls, v: str, info: Any) -> str:
        from rfmseg.features import FeatureSet

        try:
            FeatureSet.from_dict({info.field_name: v})
        except ParameterError as exc:
            raise ValueError(exc.message) from None
        return v


class UnitsConfig(_Strict):
    entity: StrictStr | None = None
    recency: StrictStr | None = None
    frequency: StrictStr | None = None
    event: StrictStr | None = None
    monetary: StrictStr | None = None
    total: StrictStr | None = None
    ratio: StrictStr | None = None
    money: StrictBool | None = None
    suffix: StrictStr | None = None


class FieldConfig(_Strict):
    kind: Literal["number", "text"] = "number"
    min: StrictFloat | StrictInt | None = None
    max: StrictFloat | StrictInt | None = None


class PresetConfig(_Strict):
    description: StrictStr = ""
    extends: StrictStr = "ecommerce"
    columns: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    features: FeaturesConfig | None = None
    units: UnitsConfig | None = None
    labels: tuple[StrictStr, StrictStr, StrictStr] | None = None
    vocabulary: list[SegmentConfig] | None = None
    fields: dict[StrictStr, FieldConfig] = Field(default_factory=dict)
    currency: StrictStr | None = None
    transform: Transform | None = None
    cold_start_segment: StrictStr | None = None

    @field_validator("vocabulary")
    @classmethod
    def _unique(cls, v: list[SegmentConfig] | None) -> list[SegmentConfig] | None:
        if v is not None:
            names = [s.name for s in v]
            if len(v) < 2:
                raise ValueError("a vocabulary needs at least 2 segment names")
            if len(set(names)) != len(names):
                raise ValueError(f"segment names must be unique, got {', '.join(names)}")
        return v


class Settings(_Strict):
    """The effective configuration of a command. ``origin(key)`` says where a value came from."""

    source: SourceConfig | None = None
    columns: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    preset: StrictStr = "ecommerce"
    as_of: Day | None = None
    transform: Transform | None = None
    k: Annotated[StrictInt, Field(ge=2, le=10)] = 4
    random_state: Annotated[StrictInt, Field(ge=0)] = 42
    n_init: Annotated[StrictInt, Field(ge=1)] = 10
    bad_rows: Literal["error", "quarantine"] | None = None
    returns: Literal["net", "exclude"] | None = None
    date_format: StrictStr | None = None
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    runs_dir: StrictStr = DEFAULT_RUNS_DIR
    store: StrictStr | None = None
    presets: dict[StrictStr, PresetConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source" in data:
            data = {**data, "source": _source(data["source"])}
        return data

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _path: Path | None = PrivateAttr(default=None)
    _preset: Any = PrivateAttr(default=None)

    # ------------------------------------------------------------------------------------- provenance
    @property
    def path(self) -> Path | None:
        """The project file read, if any."""
        return self._path

    def origin(self, key: str) -> str:
        """Where ``key`` (dotted, e.g. ``cold_start.days``) got its value: default, file, env or option."""
        for k in _parents(key):
            if k in self._origins:
                return self._origins[k]
        return "default"

    # ------------------------------------------------------------------------------------- what to run
    def preset_obj(self) -> Any:
        """The :class:`rfmseg.presets.Preset` in force (built in, or defined in the file)."""
        if self._preset is None:
            self._preset = _build_preset(self)
        return self._preset

    def source_spec(self) -> Any:
        """What the pipeline reads: a path, a :class:`FileGlob` or a :class:`PostgresSource`; None if unset."""
        s = self.source
        if s is None:
            return None
        if isinstance(s, PostgresSourceConfig):
            from rfmseg.io.postgres import PostgresSource

            return PostgresSource(s.url, s.query)
        base = self._base_dir("source.glob" if s.glob is not None else "source.path")
        if s.glob is not None:
            from rfmseg.io.sources import FileGlob

            return FileGlob(str(_join(base, s.glob)))
        return _join(base, str(s.path))

    def require_source(self) -> Any:
        spec = self.source_spec()
        if spec is None:
            where = f" in {self._path}" if self._path else ""
            raise ConfigError(
                f"no input: give a file (rfmseg run FILE) or set [source] path, glob or a postgres query{where} "
                f"(rfmseg init writes a {CONFIG_FILE} to fill in)"
            )
        return spec

    @property
    def runs_path(self) -> Path:
        return _join(self._base_dir("runs_dir"), self.runs_dir)

    @property
    def store_url(self) -> str:
        """The profile store: ``store``, else sqlite in the runs folder (``<runs_dir>/profiles.db``)."""
        return self.store or f"sqlite:///{self.runs_path / 'profiles.db'}"

    @property
    def cold_start_segment(self) -> str:
        return self.cold_start.segment or self.preset_obj().cold_start_segment

    def cold_start_rule(self) -> Any:
        """The cold-start rule as :class:`rfmseg.model.scoring.ColdStart`."""
        from rfmseg.model.scoring import ColdStart

        return ColdStart(self.cold_start.orders, self.cold_start.days, self.cold_start_segment)

    def effective_transform(self) -> str:
        return self.transform or self.preset_obj().transform

    def segment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`rfmseg.segment` (all but the source)."""
        return {
            "columns": dict(self.columns),
            "as_of": self.as_of,
            "k": self.k,
            "transform": self.transform,
            "n_init": self.n_init,
            "random_state": self.random_state,
            "bad_rows": self.bad_rows,
            "returns": self.returns,
            "date_format": self.date_format,
            "preset": self.preset_obj(),
            "runs_dir": self.runs_path,
        }

    # ------------------------------------------------------------------------------------- showing
    def rows(self) -> list[tuple[str, Any, str]]:
        """(key, effective value, origin) for every setting, as ``rfmseg config show`` prints them."""
        p = self.preset_obj()
        out: list[tuple[str, Any, str]] = []
        if self.source is None:
            out.append(("source", None, self.origin("source")))
        else:
            for k, v in self.source.model_dump().items():
                if v is not None:
                    shown = _redact(v) if k == "url" else v
                    out.append((f"source.{k}", shown, self.origin(f"source.{k}")))
        mapping = {**p.columns, **self.columns}
        for k, v in mapping.items():
            where = self.origin(f"columns.{k}") if k in self.columns else f"preset {p.name}"
            out.append((f"columns.{k}", v, where))
        out.append(("preset", self.preset, self.origin("preset")))
        out.append(("features", ", ".join(f"{k} = {v}" for k, v in p.features.to_dict().items()), f"preset {p.name}"))
        out.append(
            ("as_of", self.as_of.isoformat() if self.as_of else "(the day after the last event)", self.origin("as_of"))
        )
        out.append(("transform", self.effective_transform(), self._or_preset("transform")))
        for key in ("k", "random_state", "n_init"):
            out.append((key, getattr(self, key), self.origin(key)))
        out.append(("bad_rows", self.bad_rows or p.policy.bad_rows, self._or_preset("bad_rows")))
        no_returns = p.policy.returns_condition.strip().upper() == "FALSE"
        shown = "(none: this preset has no returns)" if no_returns and not self.returns else self.returns
        out.append(("returns", shown or p.policy.returns, self._or_preset("returns")))
        out.append(("date_format", self.date_format or "(ISO and common formats)", self.origin("date_format")))
        out.append(("cold_start.orders", self.cold_start.orders, self.origin("cold_start.orders")))
        out.append(("cold_start.days", self.cold_start.days, self.origin("cold_start.days")))
        seg_origin = self.origin("cold_start.segment") if self.cold_start.segment else f"preset {p.name}"
        out.append(("cold_start.segment", self.cold_start_segment, seg_origin))
        out.append(("runs_dir", str(self.runs_path), self.origin("runs_dir")))
        out.append(("store", _redact(self.store_url), self.origin("store")))
        for name in self.presets:
            out.append(
                (f"presets.{name}", self.presets[name].description or "(defined)", self.origin(f"presets.{name}"))
            )
        return out

    def _or_preset(self, key: str) -> str:
        return self.origin(key) if getattr(self, key) is not None else f"preset {self.preset_obj().name}"

    def _base_dir(self, key: str) -> Path | None:
        origin = self.origin(key)
        return self._path.parent if (self._path is not None and origin.startswith("file")) else None


def _join(base: Path | None, value: str) -> Path:
    p = Path(value).expanduser()
    return p if (base is None or p.is_absolute()) else base / p


def _redact(url: str) -> str:
    from rfmseg.stores.base import redact_url

    return redact_url(url)


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


# ------------------------------------------------------------------------------------------------ loading
def find_config(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """``explicit``, else $RFMSEG_CONFIG, else ./rfmseg.toml if it exists, else None."""
    env = os.environ if env is None else env
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: no such project file; check --config (rfmseg init writes one)")
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
        shown = repr(_redact(given))
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

    ``ctx`` is the command's click/typer Context: every parameter named in :data:`OPTION_KEYS` (``k``,
    ``runs_dir``, ``store``, ``cold_start_days``, ``customer_col``, ...) that the user gave on the command line
    (or through its own envvar) overrides the file; ``--config`` is read from the command or the root
    command. ``options`` (settings key -> value) does the same from Python.
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
        for k in _parents(key):
            if k in origins:
                o = origins[k]
                if o == "option":
                    return OPTION_NAMES.get(k, "--" + k.replace("_", "-").replace(".", "-"))
                return _source_of(o)
        return "default"

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, where) from None
    settings._origins.update(origins)
    settings._path = path
    settings.preset_obj()  # an unknown preset or a bad preset definition stops here
    return settings


def _source_of(origin: str) -> str:
    """'file rfmseg.toml: k' -> 'rfmseg.toml' (for messages); other origins as they are."""
    return origin[5:].rsplit(": ", 1)[0] if origin.startswith("file ") else origin


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


def _ctx_options(ctx: Any) -> list[tuple[str, Any, str]]:
    """(key, value, origin) of the parameters the user gave to the command."""
    if ctx is None:
        return []
    out: list[tuple[str, Any, str]] = []
    envvars = {p.name: getattr(p, "envvar", None) for p in getattr(ctx.command, "params", [])}
    for name, value in ctx.params.items():
        if value is None or value == () or value == []:
            continue
        # compared by name: Typer carries its own copy of click (typer._click), with its own enum
        src = getattr(ctx.get_parameter_source(name), "name", None)
        if src in ("DEFAULT", "DEFAULT_MAP", None):
            continue
        if name == "col":
            for item in value:
                field, sep, column = str(item).partition("=")
                if not sep or not field.strip() or not column.strip():
                    raise ConfigError(f"--col {item!r} is not FIELD=COLUMN; e.g. --col session_count=sessions")
                out.append((f"columns.{field.strip()}", column.strip(), "option --col"))
            continue
        key = OPTION_KEYS.get(name)
        if key is None:
            continue
        origin = f"env {envvars.get(name)}" if src == "ENVIRONMENT" else "option"
        out.append((key, value, origin))
    return out


# ------------------------------------------------------------------------------------------------ presets
def _build_preset(settings: Settings) -> Any:
    from rfmseg.presets import PRESETS, get_preset

    user = {name: _user_preset(name, d, settings) for name, d in settings.presets.items()}
    for name, p in user.items():
        PRESETS[name] = lambda p=p: p  # so that later stages (refresh, retrain) find it by name
    if settings.preset in user:
        return user[settings.preset]
    if settings.preset not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(
            f"{_source_of(settings.origin('preset'))}: preset = {settings.preset!r} is not allowed (no such preset); "
            f"allowed: {known} or a preset defined under [presets.NAME]"
        )
    return get_preset(settings.preset)


BUILT_IN = ("ecommerce", "online-retail", "saas", "crm", "education")


def _user_preset(name: str, d: PresetConfig, settings: Settings) -> Any:
    from dataclasses import replace

    from rfmseg.features import FeatureSet
    from rfmseg.io.validate import ExtraField
    from rfmseg.model.naming import Vocabulary
    from rfmseg.presets import get_preset

    where = _source_of(settings.origin(f"presets.{name}"))
    if name in BUILT_IN:
        raise ConfigError(f"{where}: [presets.{name}] has the name of a built-in preset; choose another name")
    if d.extends not in BUILT_IN:
        raise ConfigError(
            f"{where}: presets.{name}.extends = {d.extends!r} is not allowed; allowed: {', '.join(BUILT_IN)}"
        )
    base = get_preset(d.extends)
    features = FeatureSet.from_dict(d.features.model_dump()) if d.features else base.features
    units = replace(base.units, **(d.units.model_dump(exclude_none=True) if d.units else {}))
    labels = d.labels or base.vocabulary.labels
    try:
        vocabulary = (
            Vocabulary.from_records([s.model_dump() for s in d.vocabulary], base.vocabulary.weights, labels)
            if d.vocabulary
            else replace(base.vocabulary, labels=labels)
        )
    except ParameterError as exc:
        raise ConfigError(f"{where}: presets.{name}.vocabulary: {exc.message}") from None
    declared = tuple(
        ExtraField(col, f.kind, None if f.min is None else float(f.min), None if f.max is None else float(f.max))
        for col, f in d.fields.items()
    )
    # the base's declared columns stay only where the new features still read them
    reads = features.extra_columns()
    kept = tuple(f for f in base.policy.fields if f.name not in d.fields and f.name in reads)
    policy = replace(base.policy, fields=(*kept, *declared))
    cold = d.cold_start_segment or (
        base.cold_start_segment if vocabulary.get(base.cold_start_segment) else vocabulary.types[-1].name
    )
    return replace(
        base,
        name=name,
        description=d.description or f"defined in {settings.path}",
        columns={**base.columns, **d.columns},
        policy=policy,
        vocabulary=vocabulary,
        currency=base.currency if d.currency is None else d.currency,
        transform=d.transform or base.transform,
        features=features,
        units=units,
        sample=None,
        cold_start_segment=cold,
    )
