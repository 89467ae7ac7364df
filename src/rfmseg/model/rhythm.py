"""Each customer's own rhythm: buy-till-you-die models over the RFM table.

A repeat-order model (BG/NBD, modified BG/NBD or Pareto/NBD) gives each customer the probability of still
being a customer (``p_alive``) and the orders to expect over the next ``horizon`` days; a Gamma-Gamma model
gives the spend to expect per order. Their product is ``expected_value``.

The models are fitted (maximum a posteriori, the library's default priors) with pymc-marketing, which lives
in the optional ``clv`` extra (the install command: :func:`rfmseg.install.install_command`) and is imported only by
:func:`fit_rhythm`.
Scoring needs only the fitted parameters: the closed-form expectations of the published models are computed
here with numpy and scipy (Fader, Hardie & Lee 2005 for BG/NBD; Batislam, Denizel & Filiztekin 2007 for the
modified BG/NBD; Fader & Hardie 2013 for Gamma-Gamma), so a refresh scores millions of customers without
the extra. The Pareto/NBD is fitted for the comparison (docs/rhythm.md) but not scored here.

The inputs per customer, in days, from the RFM table: ``x`` = repeat orders (frequency - 1), ``t_x`` =
days from the first to the last order, ``T`` = days from the first order to the as-of date; the mean spend
per order is monetary / frequency. A customer without a first order date (an RFM table read as it is) has
no rhythm: null.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.errors import ParameterError
from rfmseg.install import install_command

MODELS = {"bg": "BetaGeoModel", "mbg": "ModifiedBetaGeoModel", "pnbd": "ParetoNBDModel"}
"""the repeat-order models, by short name -> pymc-marketing class"""
SCORED = ("bg", "mbg")
"""the models whose closed-form expectations are computed here"""
DEFAULT_MODEL = "mbg"
"""chosen by measurement on Online Retail (docs/rhythm.md)"""
HORIZON_DAYS = 90
SAMPLE_SIZE = 50_000
COLUMNS = ("p_alive", "expected_orders_90d", "expected_value_90d")


class MissingExtra(ParameterError):
    """The optional ``clv`` extra is not installed."""


@dataclass(frozen=True)
class Inputs:
    """The BTYD summary of each customer (days), and which customers have one."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    orders: np.ndarray
    mean_spend: np.ndarray
    valid: np.ndarray


def inputs(rfm: pa.Table, as_of: date) -> Inputs:
    """x, t_x, T, orders and mean spend per customer of an RFM table (rfmseg.features), as of ``as_of``."""
    n = rfm.num_rows
    freq = rfm.column("frequency").to_numpy(zero_copy_only=False).astype(float)
    monetary = rfm.column("monetary").to_numpy(zero_copy_only=False).astype(float)
    if "first_order_date" in rfm.column_names and "last_order_date" in rfm.column_names:
        end = pa.scalar(as_of, pa.date32())
        first, last = rfm.column("first_order_date"), rfm.column("last_order_date")
        T = pc.days_between(first, end).to_numpy(zero_copy_only=False).astype(float)
        t_x = pc.days_between(first, last).to_numpy(zero_copy_only=False).astype(float)
    else:
        T = t_x = np.full(n, np.nan)
    valid = np.isfinite(T) & np.isfinite(t_x) & (freq >= 1) & (t_x <= T) & (t_x >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_spend = np.where(freq > 0, monetary / np.maximum(freq, 1), np.nan)
    return Inputs(np.maximum(freq - 1, 0), t_x, T, freq, mean_spend, valid)


# ----------------------------------------------------------------------------------- closed-form expectations
def p_alive(model: str, p: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T). BG/NBD: 1 / (1 + δ(x>0)·a/(b+x-1)·((α+T)/(α+t_x))^(r+x)) (Fader, Hardie & Lee
    2005, eq. 13); modified BG/NBD: 1 / (1 + a/(b+x)·((α+T)/(α+t_x))^(r+x)) (Batislam et al. 2007)."""
    a, b, r, alpha = p["a"], p["b"], p["r"], p["alpha"]
    ratio = ((alpha + T) / (alpha + t_x)) ** (r + x)
    if model == "bg":
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(x > 0, a / (b + x - 1) * ratio, 0.0)
    elif model == "mbg":
        odds = a / (b + x) * ratio
    else:
        raise ParameterError(f"no closed-form scoring for rhythm model '{model}'; use one of {', '.join(SCORED)}")
    return 1.0 / (1.0 + odds)


def expected_orders(
    model: str,
    p: dict[str, float],
    t: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    alive: np.ndarray | None = None,
) -> np.ndarray:
    """E[X(t) | x, t_x, T], the orders to expect in the next ``t`` days (Fader, Hardie & Lee 2005, eq. 10;
    Batislam et al. 2007, eq. 6 for the modified BG/NBD): :func:`orders_if_alive` times P(alive) (``alive``:
    :func:`p_alive` of the same customers, when already computed)."""
    if_alive = orders_if_alive(model, p, t, x, T)
    return if_alive * (p_alive(model, p, x, t_x, T) if alive is None else alive)


def orders_if_alive(model: str, p: dict[str, float], t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The factor of E[X(t) | x, t_x, T] before P(alive): lead · (1 − decay · ₂F₁(…; z)), a function of x
    and T alone. Computed once per distinct (x, T) pair (:func:`per_distinct_pair`)."""
    if model not in SCORED:
        raise ParameterError(f"no closed-form scoring for rhythm model '{model}'; use one of {', '.join(SCORED)}")
    a, b, r, alpha = p["a"], p["b"], p["r"], p["alpha"]
    from scipy.special import hyp2f1  # imported where used: a third of a second, for --rhythm runs only

    def factor(x: np.ndarray, T: np.ndarray) -> np.ndarray:
        z = t / (alpha + T + t)
        decay = ((alpha + T) / (alpha + T + t)) ** (r + x)
        if model == "bg":
            lead = (a + b + x - 1) / (a - 1)
            bracket = 1.0 - decay * hyp2f1(r + x, b + x, a + b + x - 1, z)
        else:
            lead = (a + b + x) / (a - 1)
            bracket = 1.0 - decay * hyp2f1(r + x, b + x + 1, a + b + x, z)
        out: np.ndarray = lead * bracket
        return out

    return per_distinct_pair(factor, x, T)


PAIRS_FROM = 100_000
"""from this many customers on, :func:`per_distinct_pair` computes once per distinct pair"""


def per_distinct_pair(f: Any, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``f(x, T)`` elementwise, computed once per distinct (x, T) pair and gathered, when x (repeat orders)
    and T (days) are whole numbers: the 9,630,462 customers of the bench's 100M order lines have 40,248
    distinct pairs, so the hypergeometric function is evaluated 40,248 times instead of 9.6M
    (docs/rhythm.md, "Sample and cost"). The same values as ``f(x, T)``: the same operations on the same
    numbers (below :data:`PAIRS_FROM` customers, or when the values are not whole, it is ``f(x, T)``)."""
    n = x.size
    if n < PAIRS_FROM:
        return np.asarray(f(x, T))
    with np.errstate(invalid="ignore"):
        xi, Ti = x.astype(np.int64), T.astype(np.int64)
    if not (np.array_equal(xi, x) and np.array_equal(Ti, T)) or min(xi.min(), Ti.min()) < 0:
        return np.asarray(f(x, T))
    if max(xi.max(), Ti.max()) > n:
        return np.asarray(f(x, T))
    # the distinct values of each, numbered; then the distinct pairs among their combinations
    xs, Ts = np.flatnonzero(np.bincount(xi)), np.flatnonzero(np.bincount(Ti))
    if xs.size * Ts.size > n:
        return np.asarray(f(x, T))
    x_no = np.zeros(xs[-1] + 1, np.int64)
    x_no[xs] = np.arange(xs.size) * Ts.size
    T_no = np.zeros(Ts[-1] + 1, np.int64)
    T_no[Ts] = np.arange(Ts.size)
    key = x_no[xi]
    key += T_no[Ti]
    pairs = np.flatnonzero(np.bincount(key, minlength=xs.size * Ts.size))
    pair_no = np.zeros(xs.size * Ts.size, np.int64)
    pair_no[pairs] = np.arange(pairs.size)
    table = np.asarray(f(xs[pairs // Ts.size].astype(float), Ts[pairs % Ts.size].astype(float)))
    out: np.ndarray = table[pair_no[key]]
    return out


def expected_spend(spend: dict[str, float], orders: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
    """Gamma-Gamma E[spend per order | n orders, mean spend m] = p(v + n·m)/(p·n + q - 1); a customer whose
    mean spend is not positive (returns netted it out) gets the population mean p·v/(q - 1)."""
    p_, q, v = spend["p"], spend["q"], spend["v"]
    ok = np.isfinite(mean_spend) & (mean_spend > 0)
    n = np.where(ok, orders, 0.0)
    m = np.where(ok, mean_spend, 0.0)
    return p_ * (v + n * m) / (p_ * n + q - 1)


# ----------------------------------------------------------------------------------------------- the model
@dataclass
class Rhythm:
    """A fitted repeat-order model and Gamma-Gamma spend model (parameters only), and how they were fitted."""

    model: str
    params: dict[str, float]
    spend: dict[str, float] | None
    horizon_days: int = HORIZON_DAYS
    fit: dict[str, Any] = field(default_factory=dict)

    def score(self, rfm: pa.Table, as_of: date) -> dict[str, pa.Array]:
        """p_alive, expected_orders_90d, expected_value_90d per customer of ``rfm`` (null where no rhythm)."""
        inp = inputs(rfm, as_of)
        v = inp.valid
        every = bool(v.all())
        x, t_x, T = (inp.x, inp.t_x, inp.T) if every else (inp.x[v], inp.t_x[v], inp.T[v])
        alive = p_alive(self.model, self.params, x, t_x, T)
        orders = expected_orders(self.model, self.params, self.horizon_days, x, t_x, T, alive)
        value = None
        if self.spend is not None:
            n, m = (inp.orders, inp.mean_spend) if every else (inp.orders[v], inp.mean_spend[v])
            value = orders * expected_spend(self.spend, n, m)
        out = {}
        for c, figures in zip(COLUMNS, (alive, orders, value), strict=True):
            if every and figures is not None:
                out[c] = figures
            else:
                out[c] = np.full(rfm.num_rows, np.nan)
                if figures is not None:
                    out[c][v] = figures
        return {c: pa.array(a, pa.float64(), from_pandas=True) for c, a in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "fitted",
            "model": self.model,
            "library_class": MODELS[self.model],
            "params": self.params,
            "spend_model": "GammaGammaModel",
            "spend": self.spend,
            "horizon_days": self.horizon_days,
            "time_unit": "days",
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rhythm:
        return cls(
            model=str(d["model"]),
            params={k: float(v) for k, v in d["params"].items()},
            spend=None if d.get("spend") is None else {k: float(v) for k, v in d["spend"].items()},
            horizon_days=int(d.get("horizon_days", HORIZON_DAYS)),
            fit=dict(d.get("fit") or {}),
        )


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused meanwhile (re-entrant, from any thread; it is enabled again
    when the last pause ends, if it was enabled before the first).

    Importing pymc-marketing and building and compiling its models' graphs create hundreds of thousands of
    objects: each allocation burst triggers collections, and the full ones walk every object of the run (the
    data frames, the imported libraries). Paused, the import takes 0.5 s less and the two fits 0.6 s less on
    Online Retail (docs/rhythm.md, "Sample and cost"), for 10-30 MB of cyclic garbage kept until the
    collector runs again."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def clv_library() -> Any:
    """pymc_marketing.clv, or MissingExtra with the one-line install.

    The first import in a process runs with the garbage collector paused, then freezes what is alive
    (:func:`gc.freeze`, once per process): the modules it loads (pymc, pytensor, arviz: about half a million
    objects) are never garbage, and later collections, and the last one when the process exits, no longer
    walk them. On Online Retail a run with ``--rhythm`` took 1.5 to 2 s longer without the freeze, most
    of it in the interpreter's shutdown."""
    import sys

    first = "pymc_marketing.clv" not in sys.modules
    try:
        with warnings.catch_warnings(), gc_paused():
            warnings.simplefilter("ignore")
            from pymc_marketing import clv

            if first:
                gc.freeze()
    except ImportError:
        raise MissingExtra(f"the rhythm models need the clv extra: {install_command('clv')}") from None
    return clv


def compile_settings() -> Any:
    """The pytensor settings the MAP fits compile their functions with (a context manager).

    A MAP fit compiles about seven functions of the model's graph (the initial point, the start values'
    check, the log-density and its gradient, the fitted values) and evaluates them a few dozen times: with
    pytensor's default mode (all rewrites, C loop) compiling is nearly all of the fit's time. Here the
    graphs get the rewrites up to the numerical stabilisation (canonicalize, stabilize: the same
    log-density, computed stably) but not those that only make repeated evaluation faster (specialisation,
    fusion of elementwise loops, in-place operations); the ops still run as compiled C. Graph nodes keep no
    creation traceback (it only serves error messages about the graph). The fitted parameters equal the
    default mode's to 1e-8 relative on Online Retail (tests/test_rhythm.py)."""
    import pytensor
    from pytensor.compile.mode import Mode

    return pytensor.config.change_flags(mode=Mode(linker="vm", optimizer="stabilize"), traceback__limit=0)


def fit_map(fitted: Any, frame: Any, fast: bool = True) -> Any:
    """``fitted`` (a pymc-marketing CLV model) fitted by MAP on ``frame``; ``fast``: compiled with
    :func:`compile_settings` and the garbage collector paused (False: pytensor's defaults, for the tests
    that check both give the same parameters)."""
    paused, settings = (gc_paused(), compile_settings()) if fast else (nullcontext(), nullcontext())
    with warnings.catch_warnings(), paused, settings:
        warnings.simplefilter("ignore")
        fitted.fit(data=frame, method="map", progressbar=False)
    return fitted


def summary_frame(inp: Inputs, rows: np.ndarray) -> Any:
    """The library's input frame (customer_id, frequency = repeat orders, recency = t_x, T) for ``rows``."""
    import pandas as pd

    return pd.DataFrame(
        {"customer_id": np.arange(rows.size), "frequency": inp.x[rows], "recency": inp.t_x[rows], "T": inp.T[rows]}
    )


def fit_library_model(model: str, frame: Any, fast: bool = True) -> Any:
    """The pymc-marketing repeat-order model ``model`` fitted by MAP on ``frame`` (see :func:`summary_frame`;
    ``fast``: see :func:`fit_map`)."""
    clv = clv_library()
    return fit_map(getattr(clv, MODELS[model])(), frame, fast)


def fit_rhythm(
    rfm: pa.Table,
    as_of: date,
    model: str = DEFAULT_MODEL,
    sample_size: int | None = SAMPLE_SIZE,
    random_state: int = 42,
    fast: bool = True,
) -> Rhythm:
    """Fit the repeat-order model ``model`` and Gamma-Gamma by MAP on a seeded sample of at most
    ``sample_size`` customers (None: all) of ``rfm`` (``fast``: see :func:`fit_map`)."""
    if model not in SCORED:
        raise ParameterError(f"rhythm model '{model}' cannot score; use one of {', '.join(SCORED)}")
    t0 = time.perf_counter()
    clv = clv_library()
    t_import = time.perf_counter() - t0
    inp = inputs(rfm, as_of)
    rows = np.flatnonzero(inp.valid)
    if rows.size < 10:
        raise ParameterError(f"too few customers with a dated order history ({rows.size}) to fit a rhythm model")
    if sample_size is not None and rows.size > sample_size:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, sample_size, replace=False))
    frame = summary_frame(inp, rows)
    t1 = time.perf_counter()
    fitted = fit_library_model(model, frame, fast)
    params = map_params(fitted, ("a", "b", "r", "alpha"))
    t2 = time.perf_counter()
    spend = fit_spend(clv, inp, rows, fast)
    t3 = time.perf_counter()
    info = {
        "customers": int(inp.valid.sum()),
        "sample": int(rows.size),
        "sample_size": sample_size,
        "random_state": random_state,
        "method": "map",
        "seconds": {"import": round(t_import, 3), "orders": round(t2 - t1, 3), "spend": round(t3 - t2, 3)},
    }
    return Rhythm(model, params, spend, HORIZON_DAYS, info)


def fit_spend(clv: Any, inp: Inputs, rows: np.ndarray, fast: bool = True) -> dict[str, float] | None:
    """Gamma-Gamma (p, q, v) by MAP on the repeat customers of ``rows`` with a positive mean spend (``fast``:
    see :func:`fit_map`)."""
    import pandas as pd

    keep = rows[(inp.orders[rows] >= 2) & (inp.mean_spend[rows] > 0)]
    if keep.size < 10:
        return None
    frame = pd.DataFrame(
        {"customer_id": np.arange(keep.size), "frequency": inp.orders[keep], "monetary_value": inp.mean_spend[keep]}
    )
    return map_params(fit_map(clv.GammaGammaModel(), frame, fast), ("p", "q", "v"))


def map_params(fitted: Any, names: tuple[str, ...]) -> dict[str, float]:
    """The MAP values of ``names`` at full precision (the library's fit_summary rounds them)."""
    return {k: float(np.asarray(fitted.fit_result[k]).ravel()[0]) for k in names}
