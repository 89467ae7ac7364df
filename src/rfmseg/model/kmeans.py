"""K-Means fitting and the metrics used to choose K (scikit-learn underneath)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans


@dataclass
class KMeansFit:
    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def fit_kmeans(x: np.ndarray, k: int, n_init: int = 10, random_state: int = 42) -> KMeansFit:
    """k-means++ with ``n_init`` restarts (scikit-learn's Lloyd/Elkan), best inertia kept."""
    km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state, init="k-means++").fit(x)
    return KMeansFit(km.cluster_centers_, km.labels_, float(km.inertia_), int(km.n_iter_))


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label of the nearest centre, the distance to it and the margin to the second nearest."""
    d = np.sqrt(((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
    order = np.argsort(d, axis=1, kind="stable")
    labels = order[:, 0]
    best = d[np.arange(len(x)), labels]
    second = d[np.arange(len(x)), order[:, 1]] if centers.shape[0] > 1 else np.full(len(x), np.inf)
    return labels, best, second - best
