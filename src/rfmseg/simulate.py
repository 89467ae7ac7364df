"""A seeded customer base that evolves over a number of weeks, with the truth of who did what.

The base starts like the reference study's four groups, scaled up (15 % Champions, 25 % Loyal Buyers,
20 % At-Risk, 40 % Occasional), each with an order history before the start date drawn from its own
buying rhythm. Then, over the simulated weeks:

* ``champion_slowing`` — some Champions slow down: from a change date drawn in the first six weeks they keep
  only a random share (0 to 30 %) of their buying rate, down to stopping altogether;
* ``loyal_lapsing`` — some Loyal Buyers lapse the same way (their own change date and share);
* ``occasional_returning`` — some Occasional buyers come back and buy every week or two, larger baskets;
* ``new`` — new customers arrive every week; most come back for more orders, some buy once;
* ``stable`` — everyone else keeps their rhythm (At-Risk stay silent; Occasional buy now and then).

Every customer has a rhythm of their own: their group's mean gap between orders times a log-normal factor
(sigma ``RHYTHM_SIGMA``), so that a customer's own history, not their group's, says when they are late.

``simulate`` returns the transactions (customer_id, order_id, order_date, amount) and the truth table
(customer_id, group, behaviour, change_date, first_order_date, mean_gap_days: the customer's own rhythm
before any change, rate_kept: the share of the buying rate a slowing or lapsing customer keeps after
``change_date``); ``snapshot`` cuts the transactions known
on an as-of date (orders dated before it), which is what a daily export on that date holds.
Everything is drawn from one ``numpy`` generator seeded with ``seed``: the same seed gives the same tables.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfmseg.errors import ParameterError, os_failure
from rfmseg.io.rules import FIRST_YEAR, LAST_YEAR

Row = tuple[str, str, str, int | None, int, float, float | None]
"""a truth row: customer_id, group, behaviour, change day, first order day, own mean gap, rate kept"""

BEHAVIOURS = ("stable", "champion_slowing", "loyal_lapsing", "occasional_returning", "new")


@dataclass(frozen=True)
class Group:
    name: str
    share: float
    mean_gap_days: float
    """mean days between orders (gamma distributed, shape ``GAP_SHAPE``)"""
    order_value: float
    """mean order amount (log-normal)"""
    last_order: tuple[int, int]
    """days before the start date of the last order of the pre-history (uniform range)"""
    orders: tuple[int, int]
    """orders in the pre-history (uniform range)"""


GAP_SHAPE = 6.0
RHYTHM_SIGMA = 0.25
"""each customer's mean gap is the group's times exp(N(0, RHYTHM_SIGMA))"""
CHANGE_WEEKS = 6
"""slowing and lapsing customers change on a day drawn uniformly in the first CHANGE_WEEKS weeks"""
RATE_KEPT = (0.0, 0.3)
"""the share of their buying rate they keep after the change, drawn uniformly in this range"""
GROUPS = (
    Group("Champions", 0.15, 10.0, 230.0, (1, 12), (28, 36)),
    Group("Loyal Buyers", 0.25, 24.0, 127.0, (5, 30), (12, 18)),
    Group("At-Risk", 0.20, 30.0, 470.0, (105, 200), (6, 12)),
    Group("Occasional", 0.40, 60.0, 95.0, (45, 95), (1, 3)),
)


@dataclass(frozen=True)
class SimConfig:
    customers: int = 1_600
    weeks: int = 12
    seed: int = 7
    start: date = date(2024, 1, 7)
    """the as-of date of week 0 (the simulated weeks follow it)"""
    new_per_week: int = 15
    champion_slowing: float = 0.2
    loyal_lapsing: float = 0.25
    occasional_returning: float = 0.2
    new_repeat: float = 0.75
    """share of new customers who come back (every ~12 days)"""
    occasional_rate_days: float = 150.0
    """stable Occasional buyers: mean days between orders during the simulated weeks"""

    def __post_init__(self) -> None:
        if self.customers < 20:
            raise ParameterError(f"{{customers}} {self.customers} should be at least 20", param="customers")
        if not 1 <= self.weeks <= 104:
            raise ParameterError(f"{{weeks}} {self.weeks} should be between 1 and 104", param="weeks")
        for name in ("champion_slowing", "loyal_lapsing", "occasional_returning", "new_repeat"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParameterError(f"{name}={getattr(self, name)} should be a share between 0 and 1")
        if self.new_per_week < 0:
            raise ParameterError(f"{{new_per_week}} {self.new_per_week} should be >= 0", param="new_per_week")
        last = date(LAST_YEAR, 12, 31) - timedelta(weeks=self.weeks)
        if not date(FIRST_YEAR + 10, 1, 1) <= self.start <= last:
            raise ParameterError(
                f"{{start}} {self.start} is outside {FIRST_YEAR + 10}-01-01 to {last} (order dates outside the years "
                f"{FIRST_YEAR}-{LAST_YEAR} are not read, and the history reaches years back); give a date in "
                "that range",
                param="start",
            )

    @property
    def end(self) -> date:
        return self.start + timedelta(weeks=self.weeks)

    def as_of_dates(self) -> list[date]:
        """Week 0 (the start) and the as-of date of each simulated week."""
        return [self.start + timedelta(weeks=w) for w in range(self.weeks + 1)]


@dataclass
class Simulation:
    config: SimConfig
    transactions: pa.Table
    truth: pa.Table

    def snapshot(self, as_of: date) -> pa.Table:
        return snapshot(self.transactions, as_of)

    def ids(self, behaviour: str) -> list[str]:
        t = self.truth.filter(pc.equal(self.truth.column("behaviour"), behaviour))
        return t.column("customer_id").to_pylist()


def snapshot(transactions: pa.Table, as_of: date) -> pa.Table:
    """The orders dated before ``as_of``: what an export taken on that date holds."""
    return transactions.filter(pc.less(transactions.column("order_date"), pa.scalar(as_of, pa.date32())))


class _Orders:
    def __init__(self) -> None:
        self.customer: list[str] = []
        self.day: list[int] = []
        self.amount: list[float] = []

    def add(self, cid: str, days: np.ndarray, amounts: np.ndarray) -> None:
        self.customer.extend([cid] * len(days))
        self.day.extend(int(d) for d in days)
        self.amount.extend(float(a) for a in amounts)


def _amounts(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    sigma = 0.35
    return np.round(rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n), 2).clip(min=5.0)


def _rhythm(rng: np.random.Generator, first: float, stop: float, mean_gap: float) -> np.ndarray:
    """Order days from ``first`` (included) every gamma-distributed gap, before ``stop``."""
    days = []
    t = first
    while t < stop:
        days.append(t)
        t += rng.gamma(GAP_SHAPE, mean_gap / GAP_SHAPE)
    return np.floor(np.asarray(days, float))


def simulate(config: SimConfig | None = None) -> Simulation:
    """Transactions and truth for ``config`` (days are counted from the start date; day 0 is the start)."""
    cfg = config or SimConfig()
    rng = np.random.default_rng(cfg.seed)
    horizon = cfg.weeks * 7
    orders = _Orders()
    truth: list[Row] = []
    sizes = [round(cfg.customers * g.share) for g in GROUPS]
    sizes[-1] = cfg.customers - sum(sizes[:-1])
    shares = {"Champions": cfg.champion_slowing, "Loyal Buyers": cfg.loyal_lapsing}
    behaviour_of = {"Champions": "champion_slowing", "Loyal Buyers": "loyal_lapsing"}
    n = 0
    for group, size in zip(GROUPS, sizes, strict=True):
        share = shares.get(group.name, cfg.occasional_returning if group.name == "Occasional" else 0.0)
        changing = set(rng.choice(size, size=round(size * share), replace=False).tolist()) if share else set()
        for i in range(size):
            n += 1
            cid = f"C{n:05d}"
            gap = group.mean_gap_days * float(np.exp(rng.normal(0.0, RHYTHM_SIGMA)))
            last = -int(rng.integers(group.last_order[0], group.last_order[1] + 1))
            count = int(rng.integers(group.orders[0], group.orders[1] + 1))
            gaps = rng.gamma(GAP_SHAPE, gap / GAP_SHAPE, count - 1)
            past = np.floor(last - np.concatenate([[0.0], np.cumsum(gaps)]))[::-1]
            orders.add(cid, past, _amounts(rng, count, group.order_value))
            behaviour, change, kept = "stable", None, None
            if i in changing:
                behaviour = behaviour_of.get(group.name, "occasional_returning")
                weeks = CHANGE_WEEKS if behaviour != "occasional_returning" else 3
                change = int(rng.integers(0, min(weeks * 7, horizon)))
            future = np.zeros(0)
            next_order = last + rng.gamma(GAP_SHAPE, gap / GAP_SHAPE)
            # a behaviour other than "stable" comes with its change day
            if change is not None and behaviour in ("champion_slowing", "loyal_lapsing"):
                kept = float(rng.uniform(*RATE_KEPT))
                before = _rhythm(rng, max(next_order, 1 + rng.uniform(0, 3)), min(change, horizon), gap)
                # the slower rhythm starts at the change: its first order one (slower) gap after it
                slow = gap / max(kept, 1e-3)
                after = _rhythm(rng, change + rng.gamma(GAP_SHAPE, slow / GAP_SHAPE), horizon, slow)
                future = np.concatenate([before, after])
            elif change is not None and behaviour == "occasional_returning":
                future = _rhythm(rng, change + rng.uniform(0, 4), horizon, 9.0)
            elif group.name in ("Champions", "Loyal Buyers"):
                future = _rhythm(rng, max(next_order, 1 + rng.uniform(0, 3)), horizon, gap)
            elif group.name == "Occasional":
                k = rng.poisson(horizon / cfg.occasional_rate_days)
                future = np.sort(np.floor(rng.uniform(1, horizon, k)))
            value = 140.0 if behaviour == "occasional_returning" else group.order_value
            future = future[future >= 1]
            orders.add(cid, future, _amounts(rng, len(future), value))
            truth.append((cid, group.name, behaviour, change, int(past[0]), round(gap, 2), kept))
    for week in range(cfg.weeks):
        for _ in range(cfg.new_per_week):
            n += 1
            cid = f"C{n:05d}"
            first = week * 7 + int(rng.integers(1, 7))  # a day of the week, before its as-of date
            days = _rhythm(rng, first, horizon, 12.0) if rng.random() < cfg.new_repeat else np.array([first], float)
            days = days[days < horizon]
            orders.add(cid, days, _amounts(rng, len(days), 110.0))
            truth.append((cid, "new", "new", first, first, 12.0, None))
    return Simulation(cfg, _transactions(cfg, orders), _truth(cfg, truth))


def _transactions(cfg: SimConfig, o: _Orders) -> pa.Table:
    day = np.asarray(o.day, dtype=np.int64)
    start = np.datetime64(cfg.start.isoformat(), "D")
    dates = (start + day.astype("timedelta64[D]")).astype("datetime64[D]")
    customers = np.asarray(o.customer, dtype=object)
    order = np.lexsort((customers, dates))
    table = pa.table(
        {
            "customer_id": pa.array(customers[order].tolist(), pa.string()),
            "order_id": pa.array([f"O{i:07d}" for i in range(1, len(order) + 1)], pa.string()),
            "order_date": pa.array(dates[order], pa.date32()),
            "amount": pa.array(np.asarray(o.amount, float)[order], pa.float64()),
        }
    )
    return table.filter(pc.less(table.column("order_date"), pa.scalar(cfg.end, pa.date32())))


def _truth(cfg: SimConfig, rows: list[Row]) -> pa.Table:
    def day(d: int | None) -> date | None:
        return None if d is None else cfg.start + timedelta(days=d)

    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "group": pa.array([r[1] for r in rows], pa.string()),
            "behaviour": pa.array([r[2] for r in rows], pa.string()),
            "change_date": pa.array([day(r[3]) for r in rows], pa.date32()),
            "first_order_date": pa.array([day(r[4]) for r in rows], pa.date32()),
            "mean_gap_days": pa.array([r[5] for r in rows], pa.float64()),
            "rate_kept": pa.array([r[6] for r in rows], pa.float64()),
        }
    )


def write(sim: Simulation, out_dir: Path, snapshots: bool = True) -> dict[str, object]:
    """transactions.parquet, truth.parquet and (with ``snapshots``) weekly/<as-of>.parquet: each week's export."""
    out_dir = Path(out_dir)
    created = next((p for p in (*reversed(out_dir.parents), out_dir) if not p.exists()), None)
    written: list[Path] = []
    files = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, table in (("transactions.parquet", sim.transactions), ("truth.parquet", sim.truth)):
            written.append(out_dir / name)
            pq.write_table(table, written[-1], compression="zstd")
        if snapshots:
            (out_dir / "weekly").mkdir(exist_ok=True)
            for d in sim.config.as_of_dates():
                written.append(out_dir / "weekly" / f"{d.isoformat()}.parquet")
                pq.write_table(sim.snapshot(d), written[-1], compression="zstd")
                files.append(str(written[-1]))
    except OSError as exc:  # a full disk, a file where the folder goes: nothing half-written stays
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        for path in written:
            path.unlink(missing_ok=True)
        raise os_failure(exc, f"writing the simulation to {out_dir}") from None
    behaviours = pc.value_counts(sim.truth.column("behaviour")).to_pylist()
    return {
        "out_dir": str(out_dir),
        "customers": sim.truth.num_rows,
        "orders": sim.transactions.num_rows,
        "start": sim.config.start.isoformat(),
        "end": sim.config.end.isoformat(),
        "weeks": sim.config.weeks,
        "seed": sim.config.seed,
        "behaviours": {b["values"]: b["counts"] for b in behaviours},
        "as_of_dates": [d.isoformat() for d in sim.config.as_of_dates()],
        "weekly": files,
    }


# ------------------------------------------------------------------------------------------------ campaigns
def play_campaign(
    members: pa.Table,
    send_date: date,
    window_days: int,
    base_rate: dict[str, float],
    effect: dict[str, float],
    order_value: float = 100.0,
    seed: int = 7,
) -> pa.Table:
    """The orders of a campaign's members in the ``window_days`` after ``send_date``, with a known effect.

    ``members`` is a campaign's members table (customer_id, segment, group: treatment or control). Each
    member orders once in the window with probability ``base_rate[segment]``, plus ``effect[segment]`` for the
    treated: the true uplift in conversion of a segment is exactly its ``effect`` (zero included), what
    ``rfmseg campaign measure`` must recover. Order dates are uniform over the window, amounts log-normal
    around ``order_value``. Seeded: the same arguments give the same orders."""
    rng = np.random.default_rng(seed)
    segment = members.column("segment").to_numpy(zero_copy_only=False)
    treated = members.column("group").to_numpy(zero_copy_only=False) == "treatment"
    missing = sorted(set(segment) - set(base_rate))
    if missing:
        raise ParameterError(f"no base rate for segment '{missing[0]}'; give base_rate for every member's segment")
    p = np.array([base_rate[s] for s in segment]) + treated * np.array([effect.get(s, 0.0) for s in segment])
    if (p < 0).any() or (p > 1).any():
        raise ParameterError("base rate plus effect should stay between 0 and 1 for every segment")
    buys = rng.random(len(p)) < p
    n = int(buys.sum())
    days = rng.integers(1, window_days + 1, size=n)
    dates = np.datetime64(send_date.isoformat(), "D") + days.astype("timedelta64[D]")
    return pa.table(
        {
            "customer_id": members.column("customer_id").filter(pa.array(buys)),
            "order_id": pa.array([f"K{i:07d}" for i in range(1, n + 1)], pa.string()),
            "order_date": pa.array(dates, pa.date32()),
            "amount": pa.array(_amounts(rng, n, order_value), pa.float64()),
        }
    )
