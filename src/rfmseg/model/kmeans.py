"""K-Means fitting and nearest-centre assignment (numpy; scikit-learn is the reference the tests compare with).

Two fitting paths, chosen by the number of points:

* ``exact`` (up to :data:`SCALE_THRESHOLD` points): k-means++ with ``n_init`` restarts on every point, each
  followed by Lloyd iterations, the best inertia kept (:func:`restarts`: what scikit-learn's
  ``KMeans(n_init=10)`` does). The 200-customer study always takes this path.
* ``sample+refine`` (more points): the same restarts on a seeded uniform sample of ``sample_size`` points,
  then Lloyd iterations over *all* points started from the sample's centres (at most ``refine_max_iter``,
  until the centres stop moving). The restarts, which are what makes a full fit slow, run on the sample; the
  refinement costs a few passes over the data, so the centres, labels and inertia are those of all points.
  From :data:`PRE_REFINE_FROM` points, the sample's centres are first refined on a larger seeded sample of
  :data:`PRE_REFINE_SIZE` points (each pass a twentieth of the cost at 10M), which leaves the passes over
  all points little to move: 2 instead of 5 on 9.6M customers, with the same stopping rule.

Both run on our own :func:`lloyd` (scikit-learn's Lloyd loop with its stopping rule) over the blocked,
threaded :func:`nearest`: the last pass gives every point's label, distance and margin, which are the
training customers' assignment, so scoring them again costs nothing. They are our own rather than
scikit-learn's so that a run does not import scikit-learn (about 1.5-1.9 s on this machine, longer than the
whole run at a million order lines); scikit-learn stays the reference: tests/test_scale.py and
bench/bench_scale.py hold both paths' inertia within :data:`INERTIA_BOUND` of its ``KMeans(n_init=10)``.

``fit_kmeans`` picks the path (``method="auto"``); ``fit_on_sample`` is the restarts-on-a-sample step alone,
for callers that score many K on a sample (choose-k).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

SCALE_THRESHOLD = 50_000
"""Above this many points ``fit_kmeans`` fits on a sample and refines on all points. Measured on customers
drawn from 1M generated lines (50,000 and 96,361 customers, transforms minmax and rank, seeds 42 and 7): the
exact fit took 3.3-4.9 s, sample + refine 0.16-0.24 s, with an inertia from -0.008 % to +0.07 % of the exact
fit's (the bound: 0.5 %). It was 200,000 until then, which made a 1M-line run spend most of its time here."""
DEFAULT_SAMPLE_SIZE = 10_000
"""points the restarts run on; the refinement on all points then settles the centres. Measured with 10 restarts
on the customers of 1M and 10M generated lines (96,361 and 961,561 customers, minmax, seeds 42 and 7): 48-64 ms
and 144-185 ms on 10,000 points against 129-173 ms and 199-306 ms on 25,000 (the default until 2026-12-05),
the inertia after refinement from -0.014 % to +0.026 % of scikit-learn's ``KMeans(n_init=10)`` on 10,000
and from -0.019 % to +0.008 % on 25,000 (the bound, :data:`INERTIA_BOUND`: 0.5 %)."""
REFINE_MAX_ITER = 50
PRE_REFINE_SIZE = 500_000
"""points of the intermediate refinement (see the module docstring)"""
PRE_REFINE_FROM = 2_000_000
"""points from which the sample's centres are refined on :data:`PRE_REFINE_SIZE` points before all points.
Measured on the 9.6M customers of 100M generated lines, seeds 42 and 7: 1 iteration over all points (2
passes) instead of 4, the fit 1.2-1.3 s instead of about 2 s, the inertia within 0.01 % (250,000 points
left 2 iterations with one seed; 1M and 2M points cost more than they saved). bench/bench_scale.py
compares the result with scikit-learn's full fit."""
CHUNK = 1 << 16
"""points per block in :func:`nearest` (its temporary arrays stay in cache)"""
THREADS = min(4, os.cpu_count() or 1)
"""threads :func:`nearest` spreads its blocks over"""

Method = Literal["auto", "exact", "sample+refine"]
INERTIA_BOUND = 0.005
"""how far above scikit-learn's ``KMeans(n_init=10)`` inertia our fits may end, as a share (both paths; the
tests and bench/bench_scale.py check it)"""


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
    distance: np.ndarray | None = None
    """distance of each point to its centre and margin to the second nearest, when the fit computed them
    (the refinement's last pass does: they are the training points' assignment)"""
    margin: np.ndarray | None = None
    pre_refine: dict[str, int] | None = None
    """size of the intermediate refinement's sample and its iterations, when it ran"""

    def describe(self) -> dict[str, object]:
        """What the manifest records about the fit."""
        out: dict[str, object] = {"method": self.method, "n_iter": self.n_iter}
        if self.sample_size is not None:
            out["sample_size"] = self.sample_size
            out["sample_n_iter"] = self.sample_n_iter
        if self.pre_refine is not None:
            out["pre_refine"] = self.pre_refine
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
        return restarts(x, k, n_init, random_state)
    if path != "sample+refine":
        raise ValueError(f"unknown K-Means method '{method}'; use auto, exact or sample+refine")
    sample = fit_on_sample(x, k, n_init, random_state, sample_size)
    centers, pre = sample.centers, None
    if x.shape[0] >= PRE_REFINE_FROM and (sample.sample_size or 0) < PRE_REFINE_SIZE:
        sub = np.asfortranarray(x[sample_rows(x.shape[0], PRE_REFINE_SIZE, random_state)])
        pre = lloyd(sub, centers, refine_max_iter, tolerance(sub))
        centers = pre.centers
    refined = lloyd(x, centers, refine_max_iter, tolerance(x))
    return replace(
        refined,
        method="sample+refine",
        sample_size=sample.sample_size,
        sample_n_iter=sample.n_iter,
        pre_refine=None if pre is None else {"size": PRE_REFINE_SIZE, "n_iter": pre.n_iter},
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
    are the sample's). One thread: on tens of thousands of points OpenMP threads waiting for a busy core cost
    more than they share (3 s instead of 0.07 s measured at 25,000 points on this 2-core machine)."""
    size = min(sample_size or DEFAULT_SAMPLE_SIZE, x.shape[0])
    xs = np.ascontiguousarray(x[sample_rows(x.shape[0], size, random_state)])
    fit = restarts(xs, k, n_init, random_state)
    return replace(fit, method="sample", sample_size=size, distance=None, margin=None)


def restarts(x: np.ndarray, k: int, n_init: int = 10, random_state: int = 42, max_iter: int = 300) -> KMeansFit:
    """k-means++ seeding then Lloyd iterations, ``n_init`` times from one seeded generator, the lowest inertia
    kept: what scikit-learn's ``KMeans(init="k-means++", n_init=n_init)`` does, with its defaults (at most 300
    iterations, tolerance 1e-4 of the mean feature variance). Our own so that a run does not import
    scikit-learn: its import takes longer than the whole fit below a million customers (docs/performance.md).
    The seeds differ from scikit-learn's, so the centres may differ where several solutions are nearly as
    good; tests/test_scale.py holds the inertia to scikit-learn's within :data:`INERTIA_BOUND`."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(random_state)
    tol = tolerance(x)
    cols = _columns(x)  # once for every restart
    best: KMeansFit | None = None
    for _ in range(max(1, n_init)):
        centers, n_iter = _settle(x, cols, kmeans_plusplus(x, k, rng, cols=cols), max_iter, tol)
        fit = replace(lloyd(x, centers, 0), n_iter=n_iter)  # the labels, distances and inertia, exactly
        if best is None or fit.inertia < best.inertia:
            best = fit
    assert best is not None
    return replace(best, method="exact")


def kmeans_plusplus(
    x: np.ndarray, k: int, rng: np.random.Generator, trials: int | None = None, cols: list[np.ndarray] | None = None
) -> np.ndarray:
    """``k`` starting centres drawn from the points by greedy k-means++ (Arthur and Vassilvitskii 2007, with
    the greedy variant scikit-learn uses): the first uniformly, each next one the best of ``trials`` (2 + ln k)
    candidates drawn with probability proportional to the squared distance to the nearest centre so far, best
    meaning the lowest total squared distance once it is added. ``cols``: :func:`_columns` of ``x``, when at
    hand."""
    n = x.shape[0]
    trials = trials or 2 + int(np.log(k))
    cols = cols or _columns(x)
    centers = np.empty((k, x.shape[1]))
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = _squared_distances(cols, x[first : first + 1])[0]
    potential = float(closest.sum())
    for c in range(1, k):
        cumulative = np.cumsum(closest)
        picks = np.searchsorted(cumulative, rng.random(trials) * potential)
        np.minimum(picks, n - 1, out=picks)
        to_candidates = _squared_distances(cols, x[picks])
        np.minimum(closest, to_candidates, out=to_candidates)
        totals = to_candidates.sum(axis=1)
        chosen = int(np.argmin(totals))
        potential, closest = float(totals[chosen]), to_candidates[chosen]
        centers[c] = x[picks[chosen]]
    return centers


def _settle(
    x: np.ndarray, cols: list[np.ndarray], centers: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, int]:
    """:func:`lloyd`'s iterations and stopping rule for points that fit in memory at once (the restarts run on
    at most :data:`SCALE_THRESHOLD` or ``sample_size`` points): each pass finds the nearest centres with one
    matrix product (``|c|² - 2 x·c``, scikit-learn's way), several times faster than :func:`nearest`'s exact
    blocks on tens of thousands of points. Returns the centres and the iterations; the caller takes the
    labels, distances and inertia from one exact pass. ``cols``: :func:`_columns` of ``x``."""
    c = np.array(centers, dtype=float)
    k = c.shape[0]

    def nearest_fast(c: np.ndarray) -> np.ndarray:
        scores = x @ (-2.0 * c.T)  # (n, k); written in place below, no other temporary of that size
        scores += (c * c).sum(axis=1)
        return scores.argmin(axis=1)

    labels = nearest_fast(c)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        sums = np.column_stack(
            [np.bincount(labels, minlength=k), *(np.bincount(labels, weights=col, minlength=k) for col in cols)]
        )
        new, shift = _moved(c, sums)
        c, previous = new, labels
        labels = nearest_fast(c)
        if shift <= tol or np.array_equal(labels, previous):
            break
    return c, n_iter


def _squared_distances(cols: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    """(len(points), n) squared distances from each of ``points`` to the n points given column by column
    (one pass per feature: no (points, n, features) temporary)."""
    out = np.zeros((points.shape[0], cols[0].shape[0]))
    tmp = np.empty_like(out)
    for f, col in enumerate(cols):
        np.subtract(col[None, :], points[:, f : f + 1], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        out += tmp
    return out


def tolerance(x: np.ndarray, rel: float = 1e-4) -> float:
    """scikit-learn's convergence tolerance: ``rel`` times the mean variance of the features (each variance
    from one dot product, mean of squares less squared mean: no temporary copy of millions of points)."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    variances = []
    for j in range(x.shape[1]):
        col = np.ascontiguousarray(x[:, j])
        mean = col.sum() / n
        variances.append(max(float(np.dot(col, col)) / n - mean * mean, 0.0))
    return float(rel * np.mean(variances))


def lloyd(x: np.ndarray, centers: np.ndarray, max_iter: int = REFINE_MAX_ITER, tol: float = 0.0) -> KMeansFit:
    """Lloyd iterations over all points from ``centers`` until the labels stop changing, the centres move
    less than ``tol`` (sum of squared shifts, as scikit-learn) or ``max_iter``; the labels, distances and
    margins returned are those of the final centres (so they serve as the training customers' assignment).

    A centre that loses all its points stays where it was."""
    c = np.array(centers, dtype=float)
    labels, best, margin, sums = _assign(x, c, None, with_sums=True)
    spare = (np.empty_like(labels), best, margin)  # the next pass writes here: no new arrays per pass
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        assert sums is not None
        c, shift = _moved(c, sums)
        previous = labels
        labels, best, margin, sums = _assign(x, c, spare, with_sums=True)
        spare = (previous, best, margin)
        if shift <= tol or np.array_equal(labels, previous):
            break
    inertia = float(np.dot(best, best))
    return KMeansFit(c, labels, inertia, n_iter, "lloyd", distance=best, margin=margin)


def _moved(c: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, float]:
    """One Lloyd update: each centre moved to the mean of its points, from ``sums`` (k, 1 + features: the count
    then the coordinate sums of the points nearest each centre); a centre that lost all its points stays where
    it was. Returns the new centres and the sum of squared shifts (scikit-learn's convergence measure)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        new = sums[:, 1:] / sums[:, :1]
    empty = sums[:, 0] == 0
    new[empty] = c[empty]
    return new, float(((new - c) ** 2).sum())


def _columns(x: np.ndarray) -> list[np.ndarray]:
    """The features of ``x`` as contiguous columns (views when ``x`` is column-major)."""
    return [np.ascontiguousarray(x[:, f]) for f in range(x.shape[1])]


def _nearest_block(
    cols: list[np.ndarray],
    centers: np.ndarray,
    labels: np.ndarray,
    best: np.ndarray,
    second: np.ndarray,
    lo: int,
    hi: int,
    with_sums: bool = False,
) -> np.ndarray | None:
    """:func:`nearest` on rows lo:hi, writing squared distances into ``best`` and ``second``; with
    ``with_sums`` returns the block's (k, 1 + features) count and coordinate sums per nearest centre."""
    n = hi - lo
    d = np.empty(n)
    tmp = np.empty(n)
    b, s, lab = best[lo:hi], second[lo:hi], labels[lo:hi]
    for j in range(centers.shape[0]):
        target = b if j == 0 else d
        np.subtract(cols[0][lo:hi], centers[j, 0], out=target)
        np.multiply(target, target, out=target)
        for f in range(1, len(cols)):
            np.subtract(cols[f][lo:hi], centers[j, f], out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            np.add(target, tmp, out=target)
        if j == 0:
            lab[:] = 0
            s[:] = np.inf
            continue
        # in place, no temporary arrays: the second nearest becomes min(second, max(best, d)), the nearest
        # min(best, d); strict comparison, so a tie keeps the lower centre index
        closer = np.less(d, b)
        np.maximum(b, d, out=tmp)
        np.minimum(s, tmp, out=s)
        np.minimum(b, d, out=b)
        np.copyto(lab, j, where=closer)
    if not with_sums:
        return None
    k = centers.shape[0]
    return np.column_stack(
        [np.bincount(lab, minlength=k), *(np.bincount(lab, weights=c[lo:hi], minlength=k) for c in cols)]
    ).astype(float)


Nearest = tuple[np.ndarray, np.ndarray, np.ndarray]


def nearest(x: np.ndarray, centers: np.ndarray, out: Nearest | None = None) -> Nearest:
    """Label of the nearest centre, the distance to it and the margin to the second nearest.

    Ties go to the lower centre index. Works on blocks of :data:`CHUNK` points, column by column (numpy
    releases the GIL, so blocks run on several threads), so memory stays flat at any number of points.
    ``out``: arrays (int32, float, float) of one entry per point to write into instead of allocating."""
    labels, best, margin, _ = _assign(x, centers, out, with_sums=False)
    return labels, best, margin


def _assign(
    x: np.ndarray, centers: np.ndarray, out: Nearest | None, with_sums: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`nearest`, and with ``with_sums`` the (k, 1 + features) count and coordinate sums of the points
    nearest each centre, gathered in the same pass (the next Lloyd step's means)."""
    x = np.asarray(x, dtype=float)
    centers = np.asarray(centers, dtype=float)
    n, k = x.shape[0], centers.shape[0]
    cols = _columns(x)
    labels, best, second = out or (np.empty(n, dtype=np.int32), np.empty(n), np.empty(n))
    blocks = [(lo, min(lo + CHUNK, n)) for lo in range(0, n, CHUNK)]

    def run(block: tuple[int, int]) -> np.ndarray | None:
        return _nearest_block(cols, centers, labels, best, second, *block, with_sums=with_sums)

    if len(blocks) > 1 and THREADS > 1:
        with ThreadPoolExecutor(THREADS) as pool:
            parts = list(pool.map(run, blocks))
    else:
        parts = [run(b) for b in blocks]
    sums = np.sum([p for p in parts if p is not None], axis=0) if with_sums and parts else None
    np.sqrt(best, out=best)
    if k > 1:
        np.sqrt(second, out=second)
        second -= best
    else:
        second[:] = np.inf
    return labels, best, second, sums


def cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, features) mean of each cluster's points (one pass per feature with bincount)."""
    counts = np.bincount(labels, minlength=k).astype(float)
    sums = np.column_stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(x.shape[1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]
