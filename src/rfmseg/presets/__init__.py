"""Presets: a domain's column map, row policy, segment vocabulary and currency, chosen by name.

``get_preset(name)`` looks a preset up in :data:`PRESETS` (name -> factory). A preset module registers
itself by adding one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rfmseg.errors import ParameterError
from rfmseg.io.validate import Policy
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary


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


def _ecommerce() -> Preset:
    return Preset("ecommerce", "order-level e-commerce history: one row per order (the default)")


PRESETS: dict[str, Callable[[], Preset]] = {"ecommerce": _ecommerce}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ParameterError(f"unknown preset '{name}'; choose one of {', '.join(sorted(PRESETS))}") from None
