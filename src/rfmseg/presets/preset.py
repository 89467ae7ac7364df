"""The :class:`Preset` value: a domain's column map, row policy, features, units, vocabulary and currency, with
its full definition as JSON (:meth:`Preset.to_dict`, :meth:`Preset.from_dict`), and the row policy a run
reads with (:func:`build_policy`, :func:`with_features`). The registry of built-in presets is
:mod:`rfmseg.presets`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from rfmseg import schema
from rfmseg.errors import ParameterError
from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS, FeatureSet, Units
from rfmseg.io.rules import BadRows, Decimal, ExtraField, Policy, Returns, Rule
from rfmseg.model.naming import DEFAULT_VOCABULARY, SegmentType, Vocabulary
from rfmseg.model.rhythm import DEFAULT_MODEL as DEFAULT_RHYTHM_MODEL

Measure = Literal["recency_days", "frequency", "monetary", "depth"]
"""a figure of a customer's usage profile: R, F, M, or ``depth`` = frequency / monetary (sessions per feature)"""


@dataclass(frozen=True)
class UsageSignal:
    """A usage signal that leads to an onboarding path: a measure on the ``low`` or ``high`` side of the median
    user of the run, and what that says (a noun phrase: "a recent login", "many sessions on each feature")."""

    measure: Measure
    side: Literal["low", "high"]
    says: str


@dataclass(frozen=True)
class OnboardingPath:
    """The onboarding path for the users of one segment: its name, what it is, and the usage signals that lead
    to it."""

    segment: str
    name: str
    what: str
    signals: tuple[UsageSignal, ...]


@dataclass(frozen=True)
class Onboarding:
    """A preset's onboarding paths, one per segment of its vocabulary, and the words for ``depth``."""

    paths: tuple[OnboardingPath, ...]
    depth: str = "events per item"
    """how the units speak of frequency / monetary ("sessions per feature")"""

    def path_of(self, segment: str) -> OnboardingPath | None:
        return next((p for p in self.paths if p.segment == segment), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "paths": [{**asdict(p), "signals": [asdict(s) for s in p.signals]} for p in self.paths],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Onboarding:
        paths = tuple(
            OnboardingPath(p["segment"], p["name"], p["what"], tuple(UsageSignal(**s) for s in p["signals"]))
            for p in d["paths"]
        )
        return cls(paths, d["depth"])


NOT_PURCHASES = ("crm", "education", "saas")
"""the built-in presets whose events are not purchases (``Preset.rhythm`` None): what a preset definition
recorded before that field says (tests/test_rhythm_wiring.py holds it to the registry)"""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    columns: dict[str, str] = field(default_factory=dict)
    """canonical field -> the column name this domain's files use (user options override)"""
    policy: Policy = field(default_factory=Policy)
    vocabulary: Vocabulary = DEFAULT_VOCABULARY
    currency: str = "$"
    transform: str = "minmax"
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """canonical field -> other names of the same column in variants of the layout (e.g. Online Retail II)"""
    features: FeatureSet = DEFAULT_FEATURES
    """what R, F and M are in this domain, as aggregations over the canonical columns"""
    units: Units = DEFAULT_UNITS
    """how tables and insights speak of R, F, M and their sum (orders/spend/revenue, sessions/features, ...)"""
    sample: str | None = None
    """file name of the preset's generated sample data set in rfmseg/presets/data/"""
    cold_start_segment: str = "Occasional"
    """the segment given to customers with too little history (see rfmseg.model.scoring.ColdStart)"""
    onboarding: Onboarding | None = None
    """the onboarding path of each segment, for domains where users are onboarded (saas); the question
    :func:`rfmseg.questions.onboarding_path` answers from it"""
    rhythm: str | None = DEFAULT_RHYTHM_MODEL
    """the repeat-order model of each customer's rhythm (p_alive, expected orders and value:
    :mod:`rfmseg.model.rhythm`, docs/rhythm.md), or None where it does not apply: an "order" must be a
    repeatable, purchase-like event"""
    rhythm_note: str = ""
    """why the rhythm models do not apply to this domain (when ``rhythm`` is None)"""

    def __post_init__(self) -> None:
        # the naming reasons speak of the entity the units name ("more recent than 80% of users")
        if self.vocabulary.entity != self.units.entity:
            object.__setattr__(self, "vocabulary", replace(self.vocabulary, entity=self.units.entity))

    def to_dict(self) -> dict[str, Any]:
        """The full definition, JSON-able (lists for tuples): what a run records of the preset it used."""
        return {
            "name": self.name,
            "description": self.description,
            "columns": dict(self.columns),
            "policy": _policy_to_dict(self.policy),
            "vocabulary": {
                "types": [asdict(t) for t in self.vocabulary.types],
                "weights": list(self.vocabulary.weights),
                "labels": list(self.vocabulary.labels),
                "entity": self.vocabulary.entity,
            },
            "currency": self.currency,
            "transform": self.transform,
            "alternatives": {k: list(v) for k, v in self.alternatives.items()},
            "features": self.features.to_dict(),
            "units": self.units.to_dict(),
            "sample": self.sample,
            "cold_start_segment": self.cold_start_segment,
            **({"onboarding": self.onboarding.to_dict()} if self.onboarding else {}),
            "rhythm": self.rhythm,
            "rhythm_note": self.rhythm_note,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preset:
        """The preset :meth:`to_dict` wrote (no registry involved: a project-file preset comes back too)."""
        v = d["vocabulary"]
        vocabulary = Vocabulary(
            tuple(SegmentType(**t) for t in v["types"]), tuple(v["weights"]), tuple(v["labels"]), v["entity"]
        )
        return cls(
            name=d["name"],
            description=d["description"],
            columns=dict(d["columns"]),
            policy=_policy_from_dict(d["policy"]),
            vocabulary=vocabulary,
            currency=d["currency"],
            transform=d["transform"],
            alternatives={k: tuple(v) for k, v in d["alternatives"].items()},
            features=FeatureSet.from_dict(d["features"]),
            units=Units.from_dict(d["units"]),
            sample=d["sample"],
            cold_start_segment=d["cold_start_segment"],
            onboarding=Onboarding.from_dict(d["onboarding"]) if d.get("onboarding") else None,
            # a definition recorded before the rhythm models: as the built-in preset of that name says
            rhythm=d["rhythm"] if "rhythm" in d else (None if d["name"] in NOT_PURCHASES else DEFAULT_RHYTHM_MODEL),
            rhythm_note=d.get("rhythm_note", ""),
        )

    def sample_path(self) -> Path:
        if not self.sample:
            raise ParameterError(f"preset '{self.name}' has no sample data set", param="sample")
        return Path(str(resources.files("rfmseg.presets").joinpath("data", self.sample)))

    def columns_for(self, found: Iterable[str], given: dict[str, str] | None = None) -> dict[str, str]:
        """The column map for a source whose columns are ``found``, the user's ``given`` map winning.

        For each field the first of its names present in the source is taken (compared without case, spaces
        or underscores); a field none of whose names is present is left to the generic detection, so a
        missing column gets the usual message. An amount given by the user replaces the preset's quantity
        and unit price (and the other way round).
        """
        given = {k: v for k, v in (given or {}).items() if v}
        by_norm = {schema.normalise(c): c for c in found}
        out: dict[str, str] = {}
        for f, primary in self.columns.items():
            for name in (primary, *self.alternatives.get(f, ())):
                if schema.normalise(name) in by_norm:
                    out[f] = by_norm[schema.normalise(name)]
                    break
        if schema.AMOUNT in given:
            out.pop(schema.QUANTITY, None)
            out.pop(schema.UNIT_PRICE, None)
        if schema.QUANTITY in given or schema.UNIT_PRICE in given:
            out.pop(schema.AMOUNT, None)
        return {**out, **given}


def _policy_to_dict(policy: Policy) -> dict[str, Any]:
    return {
        **asdict(policy),
        "rules_before": [asdict(r) for r in policy.rules_before],
        "extra_columns": [list(c) for c in policy.extra_columns],
        "fields": [{**asdict(f), "aliases": list(f.aliases)} for f in policy.fields],
    }


def _policy_from_dict(d: Mapping[str, Any]) -> Policy:
    return Policy(
        **{
            **d,
            "rules_before": tuple(Rule(**r) for r in d["rules_before"]),
            "extra_columns": tuple((name, sql) for name, sql in d["extra_columns"]),
            "fields": tuple(ExtraField(**{**f, "aliases": tuple(f["aliases"])}) for f in d["fields"]),
            "date_formats": tuple(d.get("date_formats", ())),
        }
    )


def with_features(policy: Policy, features: FeatureSet) -> Policy:
    """``policy`` with the extra columns ``features`` read: the ones it declares keep their bounds and
    aliases, the others are added as plain numbers or text; no amount is looked for if none is read."""
    declared = {f.name for f in policy.fields}
    added = tuple(
        ExtraField(name, "number" if kind == "number" else "text")
        for name, kind in features.extra_columns().items()
        if name not in declared
    )
    return replace(policy, fields=(*policy.fields, *added), needs_amount=features.needs_amount)


class ReadFormats(TypedDict, total=False):
    """How a source is written, where the options say (:func:`build_policy`'s keyword arguments)."""

    decimal: str | None
    encoding: str | None
    sheet: str | None
    max_quarantine: float | None


NEGATIVE_LINES_ARE_RETURNS = "amount < 0"
"""what a return is when ``returns`` is asked for and neither the preset nor the policy defines returns: a
line with a negative amount (a refund, a cancellation), the convention of most order exports"""


def build_policy(
    preset: Preset | None,
    policy: Policy | None = None,
    bad_rows: str | None = None,
    returns: str | None = None,
    date_format: str | None = None,
    *,
    decimal: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    max_quarantine: float | None = None,
) -> Policy:
    """The row policy of a run: ``policy``, else the preset's, else the default, with the options given.
    ``returns`` where nothing defines returns counts the negative lines as returns
    (:data:`NEGATIVE_LINES_ARE_RETURNS`). ``decimal`` (``.`` or ``,``), ``encoding`` and ``sheet`` say how
    the source is read (default: detected); ``max_quarantine`` is the share of the rows one quarantine
    reason may take (default: the preset's)."""
    chosen_rows: BadRows | None
    match bad_rows:
        case None | "error" | "quarantine":
            chosen_rows = bad_rows
        case _:
            raise ParameterError(f"{{bad_rows}} '{bad_rows}' is not allowed; use error or quarantine", param="bad_rows")
    chosen_returns: Returns | None
    match returns:
        case None | "net" | "exclude":
            chosen_returns = returns
        case _:
            raise ParameterError(f"{{returns}} '{returns}' is not allowed; use net or exclude", param="returns")
    if decimal not in (None, ".", ","):
        raise ParameterError(f"{{decimal}} '{decimal}' is not allowed; use . or ,", param="decimal")
    if max_quarantine is not None and not 0 <= max_quarantine <= 1:
        raise ParameterError(
            f"{{max_quarantine}} {max_quarantine} is not allowed; give a share from 0 to 1, e.g. 0.2",
            param="max_quarantine",
        )
    base = policy or (preset.policy if preset else Policy())
    if chosen_returns is not None and base.returns_condition.strip().upper() == "FALSE":
        # asked to handle returns where nothing defines them: the common convention, a negative line
        base = replace(base, returns_condition=NEGATIVE_LINES_ARE_RETURNS)
    return replace(
        base,
        bad_rows=base.bad_rows if chosen_rows is None else chosen_rows,
        returns=base.returns if chosen_returns is None else chosen_returns,
        date_format=base.date_format if date_format is None else date_format,
        decimal=base.decimal if decimal is None else cast(Decimal, decimal),
        encoding=base.encoding if encoding is None else encoding,
        sheet=base.sheet if sheet is None else sheet,
        max_quarantine=base.max_quarantine if max_quarantine is None else max_quarantine,
    )
