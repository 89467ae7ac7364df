"""Seeded generators of the presets' sample data sets, with the truth they were built from.

Each preset module describes its groups (what K-Means should rediscover and what the vocabulary should
call them) and how one entity's targets become rows in its layout; this module draws the entities and
renders the CSV deterministically. It imports no preset: the registry of the shipped samples is
:mod:`rfmseg.presets.generators`, which imports the preset modules (one direction).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Group:
    """Entities of one behaviour: ranges (inclusive) of their recency, frequency and monetary targets."""

    name: str
    """the segment name the preset's vocabulary should give this group"""
    count: int
    recency: tuple[int, int]
    frequency: tuple[int, int]
    monetary: tuple[float, float]


@dataclass(frozen=True)
class Entity:
    entity_id: str
    group: str
    recency_days: int
    frequency: int
    monetary: float


@dataclass(frozen=True)
class Sample:
    header: tuple[str, ...]
    rows: list[tuple[object, ...]]
    truth: dict[str, str]
    """entity id -> group name"""
    entities: list[Entity]

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header)
        w.writerows(self.rows)
        return buf.getvalue()


def draw_entities(
    groups: Iterable[Group], prefix: str, rng: np.random.Generator, monetary_step: float = 1.0
) -> list[Entity]:
    """Entities with targets drawn uniformly in their group's ranges, ids given in a shuffled order so the
    file is not sorted by group. ``monetary_step`` rounds monetary targets (e.g. 0.01 for cents, 100 for $100)."""
    groups = list(groups)
    labels = [g for g in groups for _ in range(g.count)]
    order = rng.permutation(len(labels))
    width = max(4, len(str(len(labels))))
    out = []
    for i, idx in enumerate(order, start=1):
        g = labels[idx]
        r = int(rng.integers(g.recency[0], g.recency[1] + 1))
        f = int(rng.integers(g.frequency[0], g.frequency[1] + 1))
        lo, hi = (round(v / monetary_step) for v in g.monetary)
        m = round(int(rng.integers(lo, hi + 1)) * monetary_step, 2)
        out.append(Entity(f"{prefix}{i:0{width}d}", g.name, r, f, m))
    return out


def split_total(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``total`` split into ``parts`` whole numbers >= 1 (needs total >= parts)."""
    if parts <= 1:
        return [total]
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False))
    bounds = [0, *cuts.tolist(), total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


def event_days(last_days_ago: int, n: int, span: int, rng: np.random.Generator) -> list[int]:
    """``n`` event dates as days before the as-of date, ascending in time, the latest exactly ``last_days_ago``."""
    if n <= 1:
        return [last_days_ago]
    earlier = rng.integers(last_days_ago + 1, last_days_ago + span + 1, size=n - 1)
    return [*sorted(earlier.tolist(), reverse=True), last_days_ago]


def stamp(as_of: date, days_ago: int, rng: np.random.Generator) -> str:
    """A timestamp ``days_ago`` whole days before ``as_of`` (at a seeded time of day), as text."""
    day = as_of - timedelta(days=days_ago)
    minutes = int(rng.integers(8 * 60, 22 * 60))
    return datetime(day.year, day.month, day.day, minutes // 60, minutes % 60).isoformat(sep=" ")


def data_path(file_name: str) -> Path:
    return Path(str(resources.files("rfmseg.presets").joinpath("data", file_name)))
