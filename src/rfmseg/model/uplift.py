"""What a randomised holdout can say about a campaign: the uplift in conversion and in revenue per customer
between the treated and the control group, its confidence interval, the smallest effect the groups can
detect, and how large a holdout must be to detect a given effect.

Conversion ("ordered again in the window") is a difference of two proportions. Its interval is Newcombe's
hybrid score interval (Newcombe 1998, method 10: the Wilson intervals of the two groups combined), which
keeps its coverage near the nominal level for small groups and rates near 0 or 1, where the textbook Wald
interval does not; ``tests/test_campaigns.py`` measures the coverage over many simulated campaigns. Its
p-value is Fisher's exact test. Revenue per customer is a difference of two means of heavy-tailed values
(mostly zeros): its interval is a seeded percentile bootstrap.

An effect is claimed only when the interval excludes zero; otherwise the answer says the data shows none and
gives the minimum detectable effect (two-sided level ``1 - confidence``, power 80 %), so "no effect" is never
read as "no effect exists" when the groups could not have shown one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rfmseg.errors import ParameterError

POWER = 0.80
"""the power the minimum detectable effect and the holdout size are computed for"""
BOOTSTRAP = 2_000
"""resamples of the revenue interval"""


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0 to 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    z = _z(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x_t: int, n_t: int, x_c: int, n_c: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p_t - p_c."""
    p_t, p_c = x_t / n_t, x_c / n_c
    l_t, u_t = wilson(x_t, n_t, confidence)
    l_c, u_c = wilson(x_c, n_c, confidence)
    d = p_t - p_c
    return d - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2), d + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)


def min_detectable_uplift(n_t: int, n_c: int, baseline: float, confidence: float = 0.95, power: float = POWER) -> float:
    """The smallest difference in conversion the two groups detect with ``power`` at level ``1 - confidence``
    (normal approximation around ``baseline``, the control's rate; at least one conversion's worth)."""
    p = min(max(baseline, 1 / (n_t + n_c)), 1 - 1 / (n_t + n_c))
    z = _z(0.5 + confidence / 2) + _z(power)
    return z * math.sqrt(p * (1 - p) * (1 / n_t + 1 / n_c))


@dataclass(frozen=True)
class Uplift:
    """Treated versus control for one group of customers (a segment, or all)."""

    treated: int
    control: int
    treated_converted: int
    control_converted: int
    treated_rate: float
    control_rate: float
    uplift: float
    """difference in conversion rate, treated minus control"""
    ci: tuple[float, float]
    p_value: float
    mde: float
    """the smallest uplift these group sizes detect (power 80 %)"""
    revenue_per_customer_treated: float
    revenue_per_customer_control: float
    revenue_uplift: float
    revenue_ci: tuple[float, float]
    effect: bool
    """the conversion interval excludes zero: an effect is shown"""
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"], out["revenue_ci"] = list(self.ci), list(self.revenue_ci)
        return out


def measure(
    treated_converted: np.ndarray,
    control_converted: np.ndarray,
    treated_revenue: np.ndarray,
    control_revenue: np.ndarray,
    confidence: float = 0.95,
    seed: int = 7,
) -> Uplift:
    """The uplift of a campaign from each customer's outcome in the window: converted (bool) and revenue."""
    if not 0.5 <= confidence < 1:
        raise ParameterError(f"{{confidence}} {confidence} should be at least 0.5 and below 1", param="confidence")
    n_t, n_c = len(treated_converted), len(control_converted)
    if n_t == 0 or n_c == 0:
        raise ParameterError("a campaign is measured with customers in both groups; this one has an empty group")
    from scipy.stats import fisher_exact

    x_t, x_c = int(np.sum(treated_converted)), int(np.sum(control_converted))
    p_t, p_c = x_t / n_t, x_c / n_c
    lo, hi = newcombe(x_t, n_t, x_c, n_c, confidence)
    p_value = float(fisher_exact([[x_t, n_t - x_t], [x_c, n_c - x_c]]).pvalue)
    mde = min_detectable_uplift(n_t, n_c, p_c, confidence)
    rev_t = np.asarray(treated_revenue, float)
    rev_c = np.asarray(control_revenue, float)
    r_lo, r_hi = _bootstrap_difference(rev_t, rev_c, confidence, seed)
    effect = lo > 0 or hi < 0
    if effect:
        verdict = (
            f"the campaign {'raised' if lo > 0 else 'lowered'} conversion by {100 * abs(p_t - p_c):.1f} points "
            f"({100 * p_t:.1f} % vs {100 * p_c:.1f} %; {round(100 * confidence)} % interval {100 * lo:+.1f} to "
            f"{100 * hi:+.1f})"
        )
    else:
        verdict = (
            f"no effect shown: the uplift is {100 * (p_t - p_c):+.1f} points, anywhere from {100 * lo:+.1f} to "
            f"{100 * hi:+.1f} ({round(100 * confidence)} % interval); groups of {n_t:,} and {n_c:,} detect "
            f"only effects of about {100 * mde:.1f} points or more"
        )
    return Uplift(
        n_t,
        n_c,
        x_t,
        x_c,
        p_t,
        p_c,
        p_t - p_c,
        (lo, hi),
        p_value,
        mde,
        float(rev_t.mean()),
        float(rev_c.mean()),
        float(rev_t.mean() - rev_c.mean()),
        (r_lo, r_hi),
        effect,
        verdict,
    )


def _bootstrap_difference(a: np.ndarray, b: np.ndarray, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), seeded (each group resampled on its own)."""
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))].mean(axis=1) if len(a) else np.zeros(BOOTSTRAP)
    mb = b[rng.integers(0, len(b), size=(BOOTSTRAP, len(b)))].mean(axis=1) if len(b) else np.zeros(BOOTSTRAP)
    d = ma - mb
    tail = (1 - confidence) / 2
    return float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail))


MAX_CUSTOMERS_NEEDED = 1e12
"""more customers than any campaign has: an uplift that needs more cannot be detected (and tiny ones overflow)"""


def holdout_size(
    baseline: float,
    uplift: float,
    customers: int | None = None,
    holdout: float | None = None,
    confidence: float = 0.95,
    power: float = POWER,
) -> dict[str, Any]:
    """How large a campaign must be to detect ``uplift`` (points of conversion, e.g. 0.03) over ``baseline``
    (the control's expected rate): with a ``holdout`` share, the customers needed; with ``customers`` (the
    segment's size), the holdout share needed (None when no split of that many customers can)."""
    if not 0 < baseline < 1:
        raise ParameterError(f"{{baseline}} {baseline} should be a rate between 0 and 1", param="baseline")
    if not 0 < uplift < 1 - baseline:
        raise ParameterError(
            f"{{uplift}} {uplift} should be above 0 and leave the treated rate below 1", param="uplift"
        )
    if holdout is not None and not 0 < holdout < 1:
        raise ParameterError(f"{{holdout}} {holdout} should be a share between 0 and 1", param="holdout")
    if not 0 < confidence < 1:
        raise ParameterError(f"{{confidence}} {confidence} should be a level between 0 and 1", param="confidence")
    if customers is not None and customers < 1:
        raise ParameterError(f"{{customers}} {customers} should be a whole number >= 1", param="customers")
    z = _z(0.5 + confidence / 2) + _z(power)
    p = baseline + uplift / 2
    square = uplift * uplift
    unit = z * z * p * (1 - p) / square if square > 0 else math.inf
    """customers needed = unit * (1/h + 1/(1-h)) for a holdout share h"""
    out: dict[str, Any] = {"baseline": baseline, "uplift": uplift, "confidence": confidence, "power": power}
    share = holdout if holdout is not None else 0.5
    exact = unit * (1 / share + 1 / (1 - share))
    if not math.isfinite(exact) or exact > MAX_CUSTOMERS_NEEDED:
        raise ParameterError(
            f"{{uplift}} {uplift:g} over {{baseline}} {baseline:g} cannot be detected by any campaign (it needs more "
            f"than {MAX_CUSTOMERS_NEEDED:.0e} customers at this holdout and confidence); ask for a larger uplift, a "
            "holdout nearer 50 % or a lower confidence",
            param=("uplift", "baseline"),
        )
    needed = math.ceil(exact)
    out.update(holdout=share, customers_needed=needed, control_needed=math.ceil(needed * share))
    if customers is not None:
        k = customers / unit
        fits = k >= 4
        out["customers"] = customers
        out["smallest_holdout"] = (1 - math.sqrt(1 - 4 / k)) / 2 if fits else None
        out["detectable_with_holdout"] = z * math.sqrt(
            p * (1 - p) * (1 / (customers * (1 - share)) + 1 / (customers * share))
        )
    return out
