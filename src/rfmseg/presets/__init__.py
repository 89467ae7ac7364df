"""Presets: a domain's column map, row policy, segment vocabulary and currency, chosen by name.

``get_preset(name)`` looks a built-in preset up in :data:`PRESETS` (name -> factory); a built-in preset
module is registered by one entry there. A preset is a value: one defined in a project file is built by
:mod:`rfmseg.settings` and passed down, never added to :data:`PRESETS`. :meth:`Preset.to_dict` is its full
definition as JSON (what a run records), :meth:`Preset.from_dict` rebuilds it without any registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rfmseg import schema
from rfmseg.errors import ParameterError
from rfmseg.presets.preset import (
    Onboarding,
    OnboardingPath,
    Preset,
    ReadFormats,
    UsageSignal,
    build_policy,
    with_features,
)

__all__ = [
    "PRESETS",
    "KnownLayout",
    "Onboarding",
    "OnboardingPath",
    "Preset",
    "ReadFormats",
    "UsageSignal",
    "build_policy",
    "get_preset",
    "known_layout",
    "with_features",
]


def _ecommerce() -> Preset:
    from rfmseg.presets.ecommerce import preset

    return preset()


def _saas() -> Preset:
    from rfmseg.presets.saas import preset

    return preset()


def _crm() -> Preset:
    from rfmseg.presets.crm import preset

    return preset()


def _education() -> Preset:
    from rfmseg.presets.education import preset

    return preset()


def _online_retail() -> Preset:
    from rfmseg.presets.online_retail import preset

    return preset()


PRESETS: dict[str, Callable[[], Preset]] = {"ecommerce": _ecommerce, "online-retail": _online_retail}
PRESETS.update({"saas": _saas, "crm": _crm, "education": _education})


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ParameterError(
            f"unknown preset '{name}'; choose one of {', '.join(sorted(PRESETS))}", param="preset"
        ) from None


@dataclass(frozen=True)
class KnownLayout:
    """A public data set recognised by its columns, and the preset made for it."""

    dataset: str
    preset: str

    def hint(self) -> str:
        """What an error about such a file adds (``{preset}``: the parameter, as each adapter names it)."""
        return f"these are the columns of the {self.dataset} data set: run it with {{preset}} {self.preset}"

    def note(self) -> dict[str, object]:
        """The run's note (``summary["notes"]``) when such a file ran without its preset."""
        return {
            "id": "known_layout",
            "text": f"these are the columns of the {self.dataset} data set; its preset, {self.preset}, reads them "
            "as invoice lines (returns netted out of spend, adjustments and duplicate lines set aside)",
            "values": {"dataset": self.dataset, "preset": self.preset},
        }


def known_layout(columns: Iterable[str], preset: Preset | None = None) -> KnownLayout | None:
    """The public data set whose columns ``columns`` hold (every one of its columns, compared without case,
    spaces or underscores), when ``preset`` (the one in force; None: no preset) is not the one made for it.
    None otherwise."""
    from rfmseg.presets import online_retail

    found = {schema.normalise(c) for c in columns}
    for dataset, layout in online_retail.LAYOUTS.items():
        if {schema.normalise(c) for c in layout} <= found:
            made_for = get_preset(online_retail.NAME)
            if preset is not None and (preset.name == made_for.name or preset.columns == made_for.columns):
                return None
            return KnownLayout(dataset, made_for.name)
    return None
