"""The ``ecommerce`` preset (the default): order-level e-commerce history.

Layout: one row per order — ``customer_id``, ``order_id``, ``order_date``, ``order_total`` (or ``amount``;
common export names are recognised, others are mapped with the column options). Features:

* recency   = days since the last order;
* frequency = distinct orders;
* monetary  = total spend (the sum of order totals).

The vocabulary is the core one (Champions, Loyal Buyers, At-Risk, Occasional, ...), with targeted
campaigns and personalised recommendations as actions.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS
from rfmseg.model.naming import DEFAULT_VOCABULARY
from rfmseg.presets.preset import Preset
from rfmseg.presets.samples import Group, Sample, draw_entities, event_days, split_total, stamp

NAME = "ecommerce"
SAMPLE = "ecommerce_orders.csv"
AS_OF = date(2025, 1, 31)
SEED = 20250131

GROUPS = (
    Group("Champions", 40, (1, 14), (20, 34), (4_000, 9_000)),
    Group("Loyal Buyers", 80, (10, 40), (8, 16), (1_000, 2_500)),
    Group("At-Risk", 60, (110, 220), (5, 12), (2_500, 5_000)),
    Group("Occasional", 120, (40, 110), (1, 3), (60, 350)),
)


def preset() -> Preset:
    return Preset(
        NAME,
        "order-level e-commerce history: customer_id, order_id, order_date, order_total (the default)",
        features=DEFAULT_FEATURES,
        units=DEFAULT_UNITS,
        vocabulary=DEFAULT_VOCABULARY,
        sample=SAMPLE,
    )


def generate() -> Sample:
    """300 customers in four groups: per customer, orders whose count, summed totals and latest date are
    exactly the customer's drawn targets."""
    rng = np.random.default_rng(SEED)
    entities = draw_entities(GROUPS, "C", rng, monetary_step=0.01)
    rows: list[tuple[object, ...]] = []
    for e in entities:
        cents = split_total(round(e.monetary * 100), e.frequency, rng)
        days = event_days(e.recency_days, e.frequency, 365, rng)
        for j in range(e.frequency):
            rows.append((e.entity_id, stamp(AS_OF, days[j], rng)[:10], cents[j] / 100))
    rows.sort(key=lambda r: (str(r[1]), str(r[0])))
    numbered: list[tuple[object, ...]] = [
        (cid, f"O{i:06d}", day, f"{total:.2f}") for i, (cid, day, total) in enumerate(rows, start=1)
    ]
    return Sample(
        ("customer_id", "order_id", "order_date", "order_total"),
        numbered,
        {e.entity_id: e.group for e in entities},
        entities,
    )
