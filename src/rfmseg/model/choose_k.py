"""Which K? Inertia (elbow, knee found by kneed), silhouette, Calinski-Harabasz and Davies-Bouldin for a
range of K, and a recommendation that says which metrics agreed.

Silhouette is O(n^2): on more customers than ``sample_size`` it is computed on a seeded sample, and the
sample size is reported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from kneed import KneeLocator
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from rfmseg.errors import ParameterError
from rfmseg.model.kmeans import fit_kmeans
from rfmseg.model.transform import Transform


def choose_k(
    x: np.ndarray,
    transform: str = "minmax",
    k_min: int = 2,
    k_max: int = 10,
    n_init: int = 10,
    random_state: int = 42,
    sample_size: int = 10_000,
) -> dict[str, Any]:
    """Metrics per K on the transformed RFM matrix ``x`` (n, 3) and the recommended K with its reason."""
    n = x.shape[0]
    k_max = min(k_max, n - 1)
    if k_max < k_min:
        raise ParameterError(f"choosing K needs more customers: {n} customers allow no K in {k_min}..{k_max}")
    z = Transform.fit(transform, x).apply(x)
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, size=sample_size, replace=False)) if n > sample_size else np.arange(n)
    rows = []
    for k in range(k_min, k_max + 1):
        km = fit_kmeans(z, k, n_init, random_state)
        labels_s = km.labels[sample]
        ok = len(np.unique(labels_s)) > 1
        rows.append(
            {
                "k": k,
                "inertia": km.inertia,
                "silhouette": float(silhouette_score(z[sample], labels_s)) if ok else float("nan"),
                "calinski_harabasz": float(calinski_harabasz_score(z, km.labels)),
                "davies_bouldin": float(davies_bouldin_score(z, km.labels)),
                "sizes": np.bincount(km.labels, minlength=k).tolist(),
            }
        )
    return {
        "n_customers": n,
        "transform": transform,
        "silhouette_sample": len(sample),
        "metrics": rows,
        **recommend(rows),
    }


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric votes for its best K (knee of inertia, max silhouette, max CH, min DB); most votes wins,
    a tie goes to the K silhouette prefers among the tied."""
    ks = [r["k"] for r in rows]
    votes: dict[str, int | None] = {}
    knee = None
    if len(ks) >= 3:
        knee = KneeLocator(ks, [r["inertia"] for r in rows], curve="convex", direction="decreasing").knee
    votes["elbow (inertia knee)"] = int(knee) if knee is not None else None
    sil = [r for r in rows if not np.isnan(r["silhouette"])]
    votes["silhouette (highest)"] = max(sil, key=lambda r: r["silhouette"])["k"] if sil else None
    votes["Calinski-Harabasz (highest)"] = max(rows, key=lambda r: r["calinski_harabasz"])["k"]
    votes["Davies-Bouldin (lowest)"] = min(rows, key=lambda r: r["davies_bouldin"])["k"]
    tally = Counter(v for v in votes.values() if v is not None)
    top = max(tally.values())
    tied = [k for k, c in tally.items() if c == top]
    by_sil = {r["k"]: r["silhouette"] for r in sil}
    best = max(tied, key=lambda k: (by_sil.get(k, -1.0), -k))
    agreed = [m for m, v in votes.items() if v == best]
    other = [f"{m} prefers K={v}" for m, v in votes.items() if v is not None and v != best]
    reason = f"K={best}: {', '.join(agreed)} agree"
    if other:
        reason += "; " + "; ".join(other)
    return {"recommended_k": best, "votes": votes, "reason": reason}
