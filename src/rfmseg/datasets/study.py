"""The reference study: 200 curated customers in four behavioural groups.

The generator is deterministic (a fixed seed and integer arithmetic), so the shipped files can be rebuilt
byte for byte and checked. It writes two tables:

* ``study_rfm.csv`` — one row per customer: customer_id, recency_days, frequency, monetary;
* ``study_orders.csv`` — the order history (customer_id, order_id, order_date, amount) whose RFM, computed
  by the pipeline as of :data:`AS_OF`, is exactly the first table.

Group design (what K-Means should rediscover, never given to it):

=================  ===========  ==========  =========  ===============  ===========
group              customers    recency     orders     spend            revenue
=================  ===========  ==========  =========  ===============  ===========
Champions          C001–C030    3–15 days   28–36      $6,500–$8,500    $218,300
Loyal Buyers       C031–C080    20–38 days  12–18      $1,500–$2,300    $94,900
At-Risk            C081–C120    105–200     6–12       $3,000–$4,800    $154,600
Occasional         C121–C200    45–95 days  1–3        $150–$300        $17,550
=================  ===========  ==========  =========  ===============  ===========
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

import numpy as np

AS_OF = date(2024, 12, 31)
"""The study's as-of date: recency is counted in whole days from a customer's last order to this day."""

SEED = 20241231
GROUPS: tuple[tuple[str, int, int], ...] = (
    ("Champions", 1, 30),
    ("Loyal Buyers", 31, 80),
    ("At-Risk", 81, 120),
    ("Occasional", 121, 200),
)
RFM_FILE = "study_rfm.csv"
ORDERS_FILE = "study_orders.csv"


@dataclass(frozen=True)
class Customer:
    customer_id: str
    recency_days: int
    frequency: int
    monetary: int
    group: str


# Per group: recency values, order counts and spend, listed explicitly as cycles so every sum is exact.
# The six customers the study quotes are pinned afterwards (see _PINNED) and the group totals re-balanced.
_PINNED: dict[str, tuple[int, int, int]] = {
    "C001": (5, 35, 8500),
    "C038": (25, 15, 2000),
    "C087": (130, 8, 3800),
    "C107": (170, 12, 4800),
    "C133": (75, 1, 150),
    "C172": (65, 2, 180),
}


def _spread(total: int, n: int, low: int, high: int, rng: np.random.Generator, step: int = 1) -> list[int]:
    """n integers in [low, high], multiples of ``step``, evenly spread, in seeded order, adding up to ``total``."""
    if not (low * n <= total <= high * n) or total % step or low % step or high % step:
        raise ValueError(f"cannot spread {total} over {n} values in [{low}, {high}] by {step}")
    units = np.rint(np.linspace(low // step, high // step, n)).astype(int)
    values = [int(u) * step for u in rng.permutation(units)]
    diff = (total - sum(values)) // step
    while diff:
        i = int(rng.integers(n))
        if diff > 0 and values[i] + step <= high:
            values[i] += step
            diff -= 1
        elif diff < 0 and values[i] - step >= low:
            values[i] -= step
            diff += 1
    return values


def _group_values(
    ids: list[str],
    rng: np.random.Generator,
    recency: tuple[int, int, int],
    frequency: tuple[int, int, int],
    monetary: tuple[int, int, int, int],
) -> list[tuple[int, int, int]]:
    """(recency, frequency, monetary) for each id with exact group sums, pinned customers kept as given.

    Each tuple is (total, low, high) — monetary has a fourth item, the step in dollars.
    """
    pinned = [i for i, cid in enumerate(ids) if cid in _PINNED]
    free = [i for i in range(len(ids)) if i not in pinned]
    columns = []
    for pos, (total, low, high, *step) in enumerate((recency, frequency, monetary)):
        rest = total - sum(_PINNED[ids[i]][pos] for i in pinned)
        columns.append(_spread(rest, len(free), low, high, rng, step[0] if step else 1))
    out: list[tuple[int, int, int]] = [(0, 0, 0)] * len(ids)
    for i in pinned:
        out[i] = _PINNED[ids[i]]
    for j, i in enumerate(free):
        out[i] = (columns[0][j], columns[1][j], columns[2][j])
    return out


# group -> (recency total, low, high), (frequency total, low, high), (monetary total, low, high, step)
_DESIGN: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int, int]]] = {
    "Champions": ((270, 3, 15), (960, 28, 36), (218_300, 6_500, 8_500, 50)),
    "Loyal Buyers": ((1_450, 20, 38), (750, 12, 18), (94_900, 1_500, 2_300, 50)),
    "At-Risk": ((5_600, 105, 200), (330, 6, 12), (154_600, 3_000, 4_800, 50)),
    "Occasional": ((5_600, 45, 95), (160, 1, 3), (17_550, 150, 300, 10)),
}


def customers() -> list[Customer]:
    """The 200 study customers, with their design group (the truth K-Means is checked against)."""
    rng = np.random.default_rng(SEED)
    out: list[Customer] = []
    for group, first, last in GROUPS:
        ids = [f"C{n:03d}" for n in range(first, last + 1)]
        recency, frequency, monetary = _DESIGN[group]
        values = _group_values(ids, rng, recency, frequency, monetary)
        if group == "At-Risk":
            values = _with_max_recency(ids, values)
        if group in _AOV_WINDOW:
            values = _tune_aov(ids, values, *_AOV_WINDOW[group], *monetary[1:])
        out.extend(Customer(cid, r, f, m, group) for cid, (r, f, m) in zip(ids, values, strict=True))
    return out


def _with_max_recency(ids: list[str], values: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Make the longest-silent At-Risk customer exactly 200 days, moving the difference to others."""
    free = [i for i, cid in enumerate(ids) if cid not in _PINNED]
    top = max(free, key=lambda i: (values[i][0], -i))
    delta = 200 - values[top][0]
    out = list(values)
    _r, f, m = out[top]
    out[top] = (200, f, m)
    # take delta back one day at a time from the others, largest first, staying >= 105
    donors = sorted((i for i in free if i != top), key=lambda i: (-out[i][0], i))
    k = 0
    while delta > 0:
        i = donors[k % len(donors)]
        if out[i][0] > 105:
            out[i] = (out[i][0] - 1, out[i][1], out[i][2])
            delta -= 1
        k += 1
    return out


# Average order value (mean over customers of M / F) the study quotes: At-Risk $471, Loyal Buyers $129, and
# their ratio 3.7 to one decimal; the windows keep all three true after rounding.
_AOV_WINDOW: dict[str, tuple[float, float]] = {"Loyal Buyers": (128.6, 128.9), "At-Risk": (471.0, 471.4)}


def _tune_aov(
    ids: list[str], values: list[tuple[int, int, int]], lo: float, hi: float, low: int, high: int, step: int
) -> list[tuple[int, int, int]]:
    """Move spend between a group's customers (sum unchanged) until its mean M/F lies in [lo, hi]."""
    out = list(values)
    free = [i for i, cid in enumerate(ids) if cid not in _PINNED]

    def aov() -> float:
        return sum(m / f for _, f, m in out) / len(out)

    for _ in range(10_000):
        current = aov()
        if lo <= current <= hi:
            return out
        # raising AOV: move spend from many-order customers to few-order ones; lowering: the reverse
        by_f = sorted(free, key=lambda i: (out[i][1], i))
        takers = by_f if current < lo else by_f[::-1]
        givers = by_f[::-1] if current < lo else by_f
        give = next(i for i in givers if out[i][2] - step >= low)
        take = next(i for i in takers if out[i][2] + step <= high)
        out[give] = (out[give][0], out[give][1], out[give][2] - step)
        out[take] = (out[take][0], out[take][1], out[take][2] + step)
    raise RuntimeError("average order value did not converge")  # pragma: no cover


def _order_rows(customer: Customer, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """The customer's orders: the last one ``recency_days`` before AS_OF, amounts in cents adding to M."""
    n = customer.frequency
    last = AS_OF - timedelta(days=customer.recency_days)
    # earlier orders: distinct days before the last one, within two years
    span = 730 - customer.recency_days
    gaps = sorted(rng.choice(np.arange(1, span), size=n - 1, replace=False).tolist()) if n > 1 else []
    days = [last - timedelta(days=int(g)) for g in reversed(gaps)] + [last]
    cents_total = customer.monetary * 100
    weights = rng.uniform(0.5, 1.5, size=n)
    cents = np.floor(weights / weights.sum() * cents_total).astype(int)
    cents[-1] += cents_total - int(cents.sum())
    rows = []
    for k, (day, amount) in enumerate(zip(days, cents, strict=True), start=1):
        rows.append(
            (
                customer.customer_id,
                f"{customer.customer_id}-{k:03d}",
                day.isoformat(),
                f"{amount // 100}.{amount % 100:02d}",
            )
        )
    return rows


def rfm_csv() -> str:
    """The RFM table as CSV text."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["customer_id", "recency_days", "frequency", "monetary"])
    for c in customers():
        w.writerow([c.customer_id, c.recency_days, c.frequency, c.monetary])
    return buf.getvalue()


def orders_csv() -> str:
    """The order history as CSV text."""
    rng = np.random.default_rng(SEED + 1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["customer_id", "order_id", "order_date", "amount"])
    for c in customers():
        w.writerows(_order_rows(c, rng))
    return buf.getvalue()


def write(directory: Path) -> list[Path]:
    """Write both study files into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / RFM_FILE, directory / ORDERS_FILE]
    paths[0].write_text(rfm_csv(), encoding="utf-8")
    paths[1].write_text(orders_csv(), encoding="utf-8")
    return paths


def path(name: str = ORDERS_FILE) -> Path:
    """Path of a shipped study file inside the installed package."""
    return Path(str(resources.files("rfmseg.datasets") / "data" / name))


def truth() -> dict[str, str]:
    """customer_id -> design group."""
    return {c.customer_id: c.group for c in customers()}


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    for p in write(Path(__file__).parent / "data"):
        print(p)
