"""K-Means fitting and nearest-centre assignment (scikit-learn underneath).

Two fitting paths, chosen by the number of points:

* ``exact`` (up to :data:`SCALE_THRESHOLD` points): scikit-learn's KMeans, k-means++ with ``n_init``
  restarts on every point, the best inertia kept. The 200-customer study always takes this path.
* ``sample+refine`` (more points): the same k-means++ with ``n_init`` restarts on a seeded uniform sample of
  ``sample_size`` points, then Lloyd iterations over *all* points started from the sample's centres
  (scikit-learn KMeans with ``init=centres, n_init=1``, at most ``refine_max_iter`` iterations, until the
  centres stop moving). The restarts, which are what makes a full fit slow, run on the sample; the refinement
  costs a few passes over the data, so the centres, labels and inertia are those of all points.
  bench/bench_scale.py measures both paths side by side (docs/performance.md): within 0.5 % of the full
  ``KMeans(n_init=10)`` inertia at a small fraction of its time at 1M and 10M customers.

``fit_kmeans`` picks the path (``method="auto"``); ``fit_on_sample`` is the restarts-on-a-sample step alone,
for callers that score many K on a sample (choose-k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import KMeans

SCALE_THRESHOLD = 200_000
"""Above this many points ``fit_kmeans`` fits on a sample and refines on all points."""
DEFAULT_SAMPLE_SIZE = 25_000
"""points the restarts run on: 10 k-means++ restarts on 25,000 points cost about 2 % of a full fit on 1M
points (docs/performance.md); the refinement on all points then settles the centres"""
REFINE_MAX_ITER = 50
CHUNK = 1 << 18
"""points per block in :func:`nearest` (bounds the temporary arrays to a few MB)"""

Method = Literal["auto", "exact", "sample+refine"]


@dataclass
class KMeansFit:
    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    method: str = "exact"
    sample_size: int | None = None
    """points in the sample the restarts ran on (None for the exact path)"""
    sample_n_iter: int | None = None

    def describe(self) -> dict[str, object]:
        """What the manifest records about the fit."""
        out: dict[str, object] = {"method": self.method, "n_iter": self.n_iter}
        if self.sample_size is not None:
            out["sample_size"] = self.sample_size
            out["sample_n_iter"] = self.sample_n_iter
        return out


def choose_method(n: int, method: Method = "auto", sample_size: int | None = None) -> str:
    """The path ``fit_kmeans`` takes for ``n`` points."""
    if method != "auto":
        return method
    size = sample_size or DEFAULT_SAMPLE_SIZE
    return "sample+refine" if n > SCALE_THRESHOLD and n > size else "exact"


def fit_kmeans(
    x: np.ndarray,
    k: int,
    n_init: int = 10,
    random_state: int = 42,
    *,
    method: Method = "auto",
    sample_size: int | None = None,
    refine_max_iter: int = REFINE_MAX_ITER,
) -> KMeansFit:
    """k-means++ with ``n_init`` restarts, best inertia kept; on many points, restarts on a sample and
    Lloyd refinement on all points (see the module docstring). No input validation (callers check)."""
    path = choose_method(x.shape[0], method, sample_size)
    if path == "exact":
        km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state, init="k-means++").fit(x)
        return KMeansFit(km.cluster_centers_, km.labels_, float(km.inertia_), int(km.n_iter_))
    if path != "sample+refine":
        raise ValueError(f"unknown K-Means method '{method}'; use auto, exact or sample+refine")
    sample = fit_on_sample(x, k, n_init, random_state, sample_size)
    km = KMeans(n_clusters=k, init=sample.centers, n_init=1, max_iter=refine_max_iter, random_state=random_state)
    km.fit(x)
    return KMeansFit(
        km.cluster_centers_,
        km.labels_,
        float(km.inertia_),
        int(km.n_iter_),
        "sample+refine",
        sample.sample_size,
        sample.n_iter,
    )


def sample_rows(n: int, size: int, random_state: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of ``size`` of ``n`` rows (all rows if size >= n)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, size=size, replace=False))


def fit_on_sample(
    x: np.ndarray, k: int, n_init: int = 10, random_state: int = 42, sample_size: int | None = None
) -> KMeansFit:
    """k-means++ with ``n_init`` restarts on a seeded sample of ``sample_size`` points (labels and inertia
    are the sample's)."""
    size = min(sample_size or DEFAULT_SAMPLE_SIZE, x.shape[0])
    xs = x[sample_rows(x.shape[0], size, random_state)]
    km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state, init="k-means++").fit(xs)
    return KMeansFit(km.cluster_centers_, km.labels_, float(km.inertia_), int(km.n_iter_), "sample", size)


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label of the nearest centre, the distance to it and the margin to the second nearest.

    Ties go to the lower centre index. Works block by block, so memory stays flat at any number of points.
    """
    x = np.asarray(x, dtype=float)
    centers = np.asarray(centers, dtype=float)
    n, k = x.shape[0], centers.shape[0]
    labels = np.empty(n, dtype=np.intp)
    best = np.empty(n)
    margin = np.empty(n)
    d2 = np.empty((min(n, CHUNK), k))
    for start in range(0, n, CHUNK):
        xb = x[start : start + CHUNK]
        db = d2[: xb.shape[0]]
        for j in range(k):
            diff = xb - centers[j]
            np.einsum("ij,ij->i", diff, diff, out=db[:, j])
        lab = np.argmin(db, axis=1)
        rows = np.arange(xb.shape[0])
        first = db[rows, lab]
        labels[start : start + xb.shape[0]] = lab
        best[start : start + xb.shape[0]] = first
        if k > 1:
            db[rows, lab] = np.inf
            margin[start : start + xb.shape[0]] = np.sqrt(db.min(axis=1))
        else:
            margin[start : start + xb.shape[0]] = np.inf
    np.sqrt(best, out=best)
    if k > 1:
        margin -= best
    return labels, best, margin


def cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, features) mean of each cluster's points (one pass per feature with bincount)."""
    counts = np.bincount(labels, minlength=k).astype(float)
    sums = np.column_stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(x.shape[1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]
