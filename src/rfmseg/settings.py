"""The one settings model of rfmseg, and the one place the runs folder and the profile store are resolved.

:class:`Settings` is what every command runs with (the CLI builds it with :func:`rfmseg.config.resolve` from
defaults, the project file, the environment and the options typed); the API and the MCP server resolve the
runs folder and the store with :func:`runs_path` and :func:`store_url` below, so the rules live here once:

* runs folder: the value given, else ``$RFMSEG_RUNS_DIR``, else :data:`DEFAULT_RUNS_DIR`;
* profile store: the URL given, else ``$RFMSEG_STORE``, else ``sqlite:///<runs_dir>/profiles.db``
  (:func:`existing_store_url`: the default only if that file exists, for readers that must not create one).

A project-file preset is a value of the settings (:meth:`Settings.preset_obj`), never registered globally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypedDict

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
    field_validator,
    model_validator,
)

from rfmseg.errors import ParameterError
from rfmseg.model.segment_model import K_MAX, K_MIN
from rfmseg.runs import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from rfmseg.presets import Preset, ReadFormats

CONFIG_FILE = "rfmseg.toml"


class SegmentKwargs(TypedDict):
    """Keyword arguments of :func:`rfmseg.jobs.run.segment` that the settings decide (all but the source)."""

    columns: dict[str, str]
    as_of: date | None
    k: int
    transform: str | None
    n_init: int
    random_state: int
    bad_rows: Literal["error", "quarantine"] | None
    returns: Literal["net", "exclude"] | None
    date_format: str | None
    decimal: str | None
    encoding: str | None
    sheet: str | None
    max_quarantine: float | None
    preset: Preset
    runs_dir: Path
    rhythm: bool | None


CONFIG_ENV = "RFMSEG_CONFIG"
RUNS_ENV = "RFMSEG_RUNS_DIR"
STORE_ENV = "RFMSEG_STORE"
STORE_FILE = "profiles.db"
"""the default store's file in the runs folder"""

__all__ = ["CONFIG_ENV", "CONFIG_FILE", "DEFAULT_RUNS_DIR", "RUNS_ENV", "STORE_ENV", "ConfigError", "Settings"]


# ------------------------------------------------------------------------------------------------ runs and store
def runs_path(runs_dir: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The runs folder: ``runs_dir``, else $RFMSEG_RUNS_DIR, else :data:`DEFAULT_RUNS_DIR`."""
    env = os.environ if env is None else env
    return Path(runs_dir or env.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


def default_store_url(runs_dir: str | Path) -> str:
    """The store when none is configured: SQLite in the runs folder, ``sqlite:///<runs_dir>/profiles.db``."""
    return f"sqlite:///{Path(runs_dir) / STORE_FILE}"


def store_url(
    runs_dir: str | Path = DEFAULT_RUNS_DIR, url: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The profile store to use: ``url``, else $RFMSEG_STORE, else ``sqlite:///<runs_dir>/profiles.db``."""
    env = os.environ if env is None else env
    return url or env.get(STORE_ENV) or default_store_url(runs_dir)


def store_configured(url: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a store is configured (``url`` given or $RFMSEG_STORE set), rather than the default."""
    env = os.environ if env is None else env
    return bool(url or env.get(STORE_ENV))


def existing_store_url(
    runs_dir: str | Path, url: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The store to read: ``url``, else $RFMSEG_STORE, else ``<runs_dir>/profiles.db`` if that file exists.

    None when no store is configured and the default file does not exist (reading must not create one)."""
    if store_configured(url, env):
        return store_url(runs_dir, url, env)
    return default_store_url(runs_dir) if (Path(runs_dir) / STORE_FILE).exists() else None


class ConfigError(ParameterError):
    """The project file (or an option or variable that overrides it) has a key or value that is not allowed."""


# ------------------------------------------------------------------------------------------------ models
def _as_date(value: Any) -> Any:
    if isinstance(value, datetime):
        raise ValueError("a date without a time is needed")
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not a date; use YYYY-MM-DD, e.g. 2024-12-31") from None
    if isinstance(value, date):
        from rfmseg.io.rules import FIRST_YEAR, LAST_YEAR

        if not FIRST_YEAR <= value.year <= LAST_YEAR:  # 9999-12-31 is a placeholder, as in an order date
            raise ValueError(f"not a date in the years {FIRST_YEAR}-{LAST_YEAR}; use YYYY-MM-DD, e.g. 2024-12-31")
        return value
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
    k: Annotated[StrictInt, Field(ge=K_MIN, le=K_MAX)] = 4
    random_state: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] = 42  # what scikit-learn seeds with
    n_init: Annotated[StrictInt, Field(ge=1)] = 10
    bad_rows: Literal["error", "quarantine"] | None = None
    returns: Literal["net", "exclude"] | None = None
    date_format: StrictStr | None = None
    decimal: Literal[".", ","] | None = None
    encoding: StrictStr | None = None
    sheet: StrictStr | None = None
    max_quarantine: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = None
    rhythm: StrictBool | None = None
    """fit each customer's rhythm model (rfmseg.jobs.rhythm); None: off for run, as the previous model for retrain"""
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    runs_dir: StrictStr = str(DEFAULT_RUNS_DIR)
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
    _preset: Preset | None = PrivateAttr(default=None)
    _user_presets: dict[str, Preset] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------------------------- provenance
    @property
    def path(self) -> Path | None:
        """The project file read, if any."""
        return self._path

    def origin(self, key: str) -> str:
        """Where ``key`` (dotted, e.g. ``cold_start.days``) got its value: default, file, env or option."""
        for k in parents(key):
            if k in self._origins:
                return self._origins[k]
        return "default"

    # ------------------------------------------------------------------------------------- what to run
    def preset_obj(self) -> Preset:
        """The :class:`rfmseg.presets.Preset` in force (built in, or defined in the file): a value passed down
        to the jobs, never registered globally."""
        if self._preset is None:
            self._preset = _choose_preset(self)
        return self._preset

    def user_presets(self) -> dict[str, Preset]:
        """The presets defined under ``[presets.NAME]``, built (name -> Preset)."""
        if self._user_presets is None:
            self._user_presets = _build_user_presets(self)
        return self._user_presets

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

            origin = self.origin("source.glob")
            given_in = f"source.glob of {self._path}" if origin.startswith("file") else ""
            return FileGlob(str(_join(base, s.glob)), given_in=given_in)
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
        return store_url(self.runs_path, self.store, env={})  # $RFMSEG_STORE is already in self.store

    @property
    def cold_start_segment(self) -> str:
        return self.cold_start.segment or self.preset_obj().cold_start_segment

    def cold_start_rule(self) -> Any:
        """The cold-start rule as :class:`rfmseg.model.scoring.ColdStart`."""
        from rfmseg.model.scoring import ColdStart

        return ColdStart(self.cold_start.orders, self.cold_start.days, self.cold_start_segment)

    def effective_transform(self) -> str:
        return self.transform or self.preset_obj().transform

    def segment_kwargs(self) -> SegmentKwargs:
        """Keyword arguments of :func:`rfmseg.jobs.run.segment` (all but the source)."""
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
            "decimal": self.decimal,
            "encoding": self.encoding,
            "sheet": self.sheet,
            "max_quarantine": None if self.max_quarantine is None else float(self.max_quarantine),
            "preset": self.preset_obj(),
            "runs_dir": self.runs_path,
            "rhythm": self.rhythm,
        }

    def read_formats(self) -> ReadFormats:
        """How the source is written, as set (decimal, encoding, sheet, max_quarantine; None: detected, or the
        preset's limit)."""
        share = None if self.max_quarantine is None else float(self.max_quarantine)
        return {"decimal": self.decimal, "encoding": self.encoding, "sheet": self.sheet, "max_quarantine": share}

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
                    shown = redact(v) if k == "url" else v
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
        out.append(("date_format", self.date_format or "(detected from the column)", self.origin("date_format")))
        out.append(("decimal", self.decimal or "(detected from the numbers)", self.origin("decimal")))
        out.append(("encoding", self.encoding or "(detected from the bytes)", self.origin("encoding")))
        out.append(("sheet", self.sheet or "(the workbook's only sheet with data)", self.origin("sheet")))
        limit = p.policy.max_quarantine if self.max_quarantine is None else self.max_quarantine
        out.append(("max_quarantine", limit, self._or_preset("max_quarantine")))
        rhythm = "(off; retrain: as the previous model)" if self.rhythm is None else self.rhythm
        out.append(("rhythm", rhythm, self.origin("rhythm")))
        out.append(("cold_start.orders", self.cold_start.orders, self.origin("cold_start.orders")))
        out.append(("cold_start.days", self.cold_start.days, self.origin("cold_start.days")))
        seg_origin = self.origin("cold_start.segment") if self.cold_start.segment else f"preset {p.name}"
        out.append(("cold_start.segment", self.cold_start_segment, seg_origin))
        out.append(("runs_dir", str(self.runs_path), self.origin("runs_dir")))
        out.append(("store", redact(self.store_url), self.origin("store")))
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


def redact(url: str) -> str:
    from rfmseg.stores.base import redact_url

    return redact_url(url)


def parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def source_of(origin: str) -> str:
    """'file rfmseg.toml: k' -> 'rfmseg.toml' (for messages); other origins as they are."""
    return origin[5:].rsplit(": ", 1)[0] if origin.startswith("file ") else origin


@dataclass(frozen=True)
class SettingKey:
    """Binds a command parameter to the setting it overrides, declared with the option itself::

        K = Annotated[int, typer.Option("--k", "-k", help="Number of segments."), SettingKey("k")]

    The key is checked when declared: a dotted settings key (``cold_start.days``, ``columns.customer_id``),
    or :attr:`COLUMN_PAIRS` for repeated ``FIELD=COLUMN`` values."""

    key: str
    COLUMN_PAIRS: ClassVar[str] = "columns.*"

    def __post_init__(self) -> None:
        if not is_setting_key(self.key):
            raise ValueError(f"SettingKey({self.key!r}): no such setting; see rfmseg.settings.Settings")


def is_setting_key(key: str) -> bool:
    """Whether ``key`` (dotted) names a setting a command option may override."""
    head, _, rest = key.partition(".")
    if head == "columns":
        return bool(rest) and "." not in rest
    if head == "cold_start":
        return rest in ColdStartConfig.model_fields
    return not rest and head in Settings.model_fields and head != "presets"


# ------------------------------------------------------------------------------------------------ presets
def _build_user_presets(settings: Settings) -> dict[str, Preset]:
    """The presets the project file defines, by name (a bad definition stops here)."""
    return {name: _user_preset(name, d, settings) for name, d in settings.presets.items()}


def _choose_preset(settings: Settings) -> Preset:
    from rfmseg.presets import PRESETS, get_preset

    user = settings.user_presets()
    if settings.preset in user:
        return user[settings.preset]
    if settings.preset not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(
            f"{source_of(settings.origin('preset'))}: preset = {settings.preset!r} is not allowed (no such preset); "
            f"allowed: {known} or a preset defined under [presets.NAME]",
            param="preset",
        )
    return get_preset(settings.preset)


def _user_preset(name: str, d: PresetConfig, settings: Settings) -> Preset:
    from dataclasses import replace

    from rfmseg.features import FeatureSet
    from rfmseg.io.rules import ExtraField
    from rfmseg.model.naming import Vocabulary
    from rfmseg.presets import PRESETS, get_preset

    where = source_of(settings.origin(f"presets.{name}"))
    if name in PRESETS:
        raise ConfigError(f"{where}: [presets.{name}] has the name of a built-in preset; choose another name")
    if d.extends not in PRESETS:
        raise ConfigError(
            f"{where}: presets.{name}.extends = {d.extends!r} is not allowed; allowed: {', '.join(PRESETS)}"
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
