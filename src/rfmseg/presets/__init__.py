"""Presets: a domain's column map, row policy, segment vocabulary and currency, chosen by name.

``get_preset(name)`` looks a built-in preset up in :data:`PRESETS` (name -> factory); a built-in preset
module is registered by one entry there. A preset is a value: one defined in a project file is built by
:mod:`rfmseg.settings` and passed down, never added to :data:`PRESETS`. :meth:`Preset.to_dict` is its full
definition as JSON (what a run records), :meth:`Preset.from_dict` rebuilds it without any registry.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "Onboarding",
    "OnboardingPath",
    "Preset",
    "ReadFormats",
    "UsageSignal",
    "build_policy",
    "get_preset",
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
