"""Feature transforms fitted on the training customers and stored with the model.

* ``minmax`` — (x - min) / (max - min) per feature; the study's choice.
* ``log-minmax`` — log1p first (monetary clipped at 0), then min-max: tames heavy-tailed spend.
* ``rank`` — the value's percentile among the training customers (interpolated on a stored grid of
  quantiles), then min-max: only order matters, so whales cannot stretch the scale.

Every transform maps the training data into [0, 1]; new customers may fall outside and are not clipped,
so a customer far beyond the training range is still far from every centroid (its distance says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rfmseg.errors import ParameterError

TRANSFORMS = ("minmax", "log-minmax", "rank")
RANK_GRID = 1001


def check_transform(name: str) -> str:
    if name not in TRANSFORMS:
        raise ParameterError(f"unknown transform '{name}'; choose one of {', '.join(TRANSFORMS)}")
    return name


@dataclass
class Transform:
    kind: str
    min_: np.ndarray
    max_: np.ndarray
    quantiles: np.ndarray | None = None  # (RANK_GRID, n_features) for rank

    @classmethod
    def fit(cls, kind: str, x: np.ndarray) -> Transform:
        check_transform(kind)
        quantiles = None
        if kind == "rank":
            quantiles = np.quantile(x, np.linspace(0, 1, RANK_GRID), axis=0, method="linear")
        pre = _pre(kind, x, quantiles)
        return cls(kind, pre.min(axis=0), pre.max(axis=0), quantiles)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` in scaled units, in the same memory layout (column-major in, column-major out)."""
        pre = _pre(self.kind, x, self.quantiles)
        span = np.where(self.max_ > self.min_, self.max_ - self.min_, 1.0)
        out = np.subtract(pre, self.min_)
        out /= span
        return out

    def invert(self, z: np.ndarray) -> np.ndarray:
        """Scaled units back to original units (for centroids)."""
        span = np.where(self.max_ > self.min_, self.max_ - self.min_, 1.0)
        pre = z * span + self.min_
        if self.kind == "minmax":
            return pre
        if self.kind == "log-minmax":
            return np.expm1(pre)
        assert self.quantiles is not None
        grid = np.linspace(0, 1, RANK_GRID)
        return np.column_stack([np.interp(pre[:, j], grid, self.quantiles[:, j]) for j in range(pre.shape[1])])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "min": self.min_.tolist(), "max": self.max_.tolist()}
        if self.quantiles is not None:
            out["quantiles"] = self.quantiles.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transform:
        q = d.get("quantiles")
        return cls(
            d["kind"],
            np.asarray(d["min"], float),
            np.asarray(d["max"], float),
            None if q is None else np.asarray(q, float),
        )


def _pre(kind: str, x: np.ndarray, quantiles: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if kind == "minmax":
        return x
    if kind == "log-minmax":
        return np.log1p(np.clip(x, 0, None))
    assert quantiles is not None
    grid = np.linspace(0, 1, RANK_GRID)
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        q = quantiles[:, j]
        # mid-point of the grid positions a value ties with, so a mass of equal values sits in its middle
        lo = np.searchsorted(q, x[:, j], side="left")
        hi = np.searchsorted(q, x[:, j], side="right")
        inside = np.interp(x[:, j], q, grid)
        tied = hi > lo
        out[:, j] = np.where(
            tied, (grid[np.clip(lo, 0, RANK_GRID - 1)] + grid[np.clip(hi - 1, 0, RANK_GRID - 1)]) / 2, inside
        )
    return out
