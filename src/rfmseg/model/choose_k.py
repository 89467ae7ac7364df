"""Which K? Inertia (elbow, knee found by kneed), silhouette, Calinski-Harabasz, Davies-Bouldin and
bootstrap stability for a range of K, and a recommendation that says which metrics agreed and which did not.

Scale: silhouette is O(n^2), so on more customers than ``sample_size`` it is computed on a seeded sample
(the sample size is reported); the K-Means fits themselves go through :func:`fit_kmeans`, which restarts on
a sample and refines on all points when there are many.

Stability: for each K, ``resamples`` bootstrap resamples of the (sampled) customers are each clustered
(k-means++ with ``stability_n_init`` restarts); every fit then labels the same customers, and the mean
adjusted Rand index over all pairs of fits says how much the segments depend on which customers happened to
be in the data. A K below :data:`STABLE_ARI` is not recommended, whatever the other metrics say.
"""

from __future__ import annotations

import sys
from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rfmseg.errors import ParameterError
from rfmseg.model.kmeans import fit_kmeans, nearest, sample_rows
from rfmseg.model.segment_model import K_MAX, K_MIN
from rfmseg.model.transform import Transform

STABLE_ARI = 0.8
"""mean pairwise adjusted Rand index between bootstrap fits at or above which a K counts as stable"""
DEFAULT_RESAMPLES = 5
DEFAULT_STABILITY_N_INIT = 3
SINGLE_THREAD_BELOW = 100_000
"""below this many customers the fits run on one thread: on small data OpenMP threads only add overhead, and
on a busy machine their spin-waiting made choose-k an order of magnitude slower (measured: 85 s vs 4 s on
the 4,338 Online Retail customers with the machine's 2 cores shared)"""
PRECOMPUTE_BELOW = 2_500
"""up to this many customers in the silhouette sample, their distance matrix (at most 50 MB) is computed once
and shared by every K instead of recomputed for each (the same scores, a third of the time)"""


def choose_k(
    x: np.ndarray,
    transform: str = "minmax",
    k_min: int = K_MIN,
    k_max: int = K_MAX,
    n_init: int = 10,
    random_state: int = 42,
    sample_size: int = 10_000,
    stability: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    stability_n_init: int = DEFAULT_STABILITY_N_INIT,
) -> dict[str, Any]:
    """Metrics per K on the RFM matrix ``x`` (n, 3: recency_days, frequency, monetary), transformed with
    ``transform``, and the recommended K with its reason."""
    n = x.shape[0]
    check_k_range(k_min, k_max)
    k_max = min(k_max, n - 1)
    if k_max < k_min:
        raise ParameterError(f"choosing K needs more customers: {n} customers allow no K in {k_min}..{k_max}")
    if sample_size < 2:
        raise ParameterError(f"{{sample_size}} {sample_size} should be at least 2 customers", param="sample_size")
    if stability and resamples < 2:
        raise ParameterError(
            f"{{resamples}} {resamples} should be at least 2 (stability compares fits)", param="resamples"
        )
    z = Transform.fit(transform, x).apply(x)
    sample = sample_rows(n, sample_size, random_state)
    with threadpool_limits(1 if n < SINGLE_THREAD_BELOW else None):
        rows = _metrics(z, sample, k_min, k_max, n_init, random_state, stability, resamples, stability_n_init)
    out: dict[str, Any] = {
        "n_customers": n,
        "transform": transform,
        "silhouette_sample": len(sample),
        "metrics": rows,
    }
    if stability:
        out["stability"] = {
            "resamples": resamples,
            "n_init": stability_n_init,
            "sample": len(sample),
            "threshold": STABLE_ARI,
        }
    return {**out, **recommend(rows)}


def check_k_range(k_min: int, k_max: int) -> None:
    """Refuse a range of K that is empty or reaches beyond what a run fits (:data:`K_MIN` to :data:`K_MAX`):
    a recommended K must be one `run --k` accepts."""
    if k_max < k_min:  # the range given is empty, whatever the customers
        raise ParameterError(
            f"{{k_min}} {k_min} is above {{k_max}} {k_max}: no K to try; give {{k_min}} <= {{k_max}}",
            param=("k_min", "k_max"),
        )
    if k_min < K_MIN or k_max > K_MAX:
        raise ParameterError(
            f"{{k_min}} {k_min} to {{k_max}} {k_max} goes beyond the K a run accepts, {K_MIN} to {K_MAX}; "
            f"give {{k_min}} and {{k_max}} within {K_MIN} to {K_MAX}",
            param=("k_min", "k_max"),
        )


def _metrics(
    z: np.ndarray,
    sample: np.ndarray,
    k_min: int,
    k_max: int,
    n_init: int,
    random_state: int,
    stability: bool,
    resamples: int,
    stability_n_init: int,
) -> list[dict[str, Any]]:
    from sklearn.metrics import (  # imported where used: a run does not (rfmseg.model.kmeans)
        calinski_harabasz_score,
        davies_bouldin_score,
        pairwise_distances,
        silhouette_score,
    )

    rows = []
    if len(sample) <= PRECOMPUTE_BELOW:
        between, metric = pairwise_distances(z[sample]), "precomputed"
    else:
        between, metric = z[sample], "euclidean"
    # Calinski-Harabasz and Davies-Bouldin on the same sample as silhouette when there is one: on millions of
    # customers each is a full pass per K, and on a seeded sample of 10,000 their ranking of K is the same
    sampled = len(sample) < z.shape[0]
    for k in range(k_min, k_max + 1):
        km = fit_kmeans(z, k, n_init, random_state)
        labels_s = km.labels[sample]
        ok = len(np.unique(labels_s)) > 1
        zs, ls = (z[sample], labels_s) if sampled else (z, km.labels)
        row: dict[str, Any] = {
            "k": k,
            "inertia": km.inertia,
            "silhouette": float(silhouette_score(between, labels_s, metric=metric)) if ok else float("nan"),
            "calinski_harabasz": float(calinski_harabasz_score(zs, ls)) if ok else float("nan"),
            "davies_bouldin": float(davies_bouldin_score(zs, ls)) if ok else float("nan"),
            "sizes": np.bincount(km.labels, minlength=k).tolist(),
        }
        if stability:
            row.update(bootstrap_stability(z[sample], k, resamples, stability_n_init, random_state))
        rows.append(row)
    return rows


def bootstrap_stability(
    z: np.ndarray, k: int, resamples: int = DEFAULT_RESAMPLES, n_init: int = DEFAULT_STABILITY_N_INIT, seed: int = 42
) -> dict[str, float]:
    """Mean and lowest adjusted Rand index between the labelings of ``z`` by fits on bootstrap resamples."""
    m = z.shape[0]
    rng = np.random.default_rng([seed, k])
    labelings = []
    with threadpool_limits(1 if m < SINGLE_THREAD_BELOW else None):
        for b in range(resamples):
            idx = np.asarray(rng.integers(0, m, size=m))
            if np.unique(z[idx], axis=0).shape[0] < k:  # too few distinct customers drawn for K centres
                idx = np.concatenate([idx, np.arange(m)])
            fit = fit_kmeans(z[idx], k, n_init, seed + b, method="exact")
            labelings.append(nearest(z, fit.centers)[0])
    from sklearn.metrics import adjusted_rand_score  # imported where used: a run does not (rfmseg.model.kmeans)

    scores = [adjusted_rand_score(a, b) for a, b in combinations(labelings, 2)]
    return {"stability": float(np.mean(scores)), "stability_min": float(np.min(scores))}


def knee_locator() -> type:
    """kneed's KneeLocator, imported without matplotlib: kneed imports pyplot (about 0.4 s) only for its
    plotting helpers, which rfmseg never calls; a None entry in sys.modules makes that import fail fast and
    kneed carries on without plots. Imported on first use, not with rfmseg (a run imports it on a thread
    while DuckDB reads: it brings scipy.signal, about 0.45 s)."""
    if "kneed" in sys.modules or "matplotlib.pyplot" in sys.modules:
        from kneed import KneeLocator

        return KneeLocator
    sys.modules["matplotlib.pyplot"] = None  # type: ignore[assignment]
    try:
        from kneed import KneeLocator
    finally:
        del sys.modules["matplotlib.pyplot"]
    return KneeLocator


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric votes for its best K (knee of inertia, max silhouette, max CH, min DB); among the stable K
    (when stability was measured) most votes wins, a tie goes to the K silhouette prefers among the tied."""
    ks = [r["k"] for r in rows]
    votes: dict[str, int | None] = {}
    knee = None
    if len(ks) >= 3:
        knee = knee_locator()(ks, [r["inertia"] for r in rows], curve="convex", direction="decreasing").knee
    votes["elbow (inertia knee)"] = int(knee) if knee is not None else None
    sil = [r for r in rows if not np.isnan(r["silhouette"])]
    votes["silhouette (highest)"] = max(sil, key=lambda r: r["silhouette"])["k"] if sil else None
    ch = [r for r in rows if not np.isnan(r["calinski_harabasz"])]
    db = [r for r in rows if not np.isnan(r["davies_bouldin"])]
    votes["Calinski-Harabasz (highest)"] = max(ch, key=lambda r: r["calinski_harabasz"])["k"] if ch else None
    votes["Davies-Bouldin (lowest)"] = min(db, key=lambda r: r["davies_bouldin"])["k"] if db else None
    tally = Counter(v for v in votes.values() if v is not None)
    by_sil = {r["k"]: r["silhouette"] for r in sil}
    measured = all("stability" in r for r in rows)
    ari = {r["k"]: r["stability"] for r in rows} if measured else {}
    stable = [k for k in ks if ari.get(k, 1.0) >= STABLE_ARI] if measured else ks

    def rank(k: int) -> tuple[int, float, int]:
        return (tally.get(k, 0), by_sil.get(k, -1.0), -k)

    overall = max(ks, key=rank)
    candidates = stable or ks
    best = max(candidates, key=rank)
    agreed = [m for m, v in votes.items() if v == best]
    disagreed = {m: v for m, v in votes.items() if v is not None and v != best}
    reason = f"K={best}: " + (f"{', '.join(agreed)} agree" if agreed else "no metric's first choice")
    if disagreed:
        reason += "; " + "; ".join(f"{m} prefers K={v}" for m, v in disagreed.items())
    undecided = [m for m, v in votes.items() if v is None]
    if undecided:
        reason += "; " + "; ".join(f"{m} finds no clear K" for m in undecided)
    if measured:
        if best in stable:
            reason += f"; stable across bootstrap resamples (mean ARI {ari[best]:.2f})"
        else:
            reason += f"; no K is stable (best mean ARI {max(ari.values()):.2f} < {STABLE_ARI})"
        for k in sorted({*disagreed.values(), overall} - {best}):
            if k not in stable:
                reason += f"; K={k} not recommended: its segments change with the sample (mean ARI {ari[k]:.2f})"
    out: dict[str, Any] = {
        "recommended_k": best,
        "votes": votes,
        "agreed": agreed,
        "disagreed": disagreed,
        "reason": reason,
    }
    if measured:
        out["stable_k"] = stable
    return out
