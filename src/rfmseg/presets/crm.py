"""The ``crm`` preset: sales activity on leads in a CRM.

Layout: one row per logged activity — ``lead_id``, ``last_activity`` (when it happened),
``touchpoint_count`` (calls, emails and meetings it holds), ``deal_value`` (the lead's deal value at that
time). Features:

* recency   = days since the last touch (the latest ``last_activity``);
* frequency = engagement: the sum of ``touchpoint_count``;
* monetary  = deal size: the largest ``deal_value``.

Summed over leads, deal size is the pipeline value. The vocabulary's actions are about prioritised
outreach and the follow-up cadence.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from rfmseg.features import Agg, FeatureSet, Units
from rfmseg.io.rules import ExtraField, Policy
from rfmseg.model.naming import Vocabulary
from rfmseg.presets.preset import Preset
from rfmseg.presets.samples import Group, Sample, draw_entities, event_days, split_total, stamp

NAME = "crm"
SAMPLE = "crm_activity.csv"
AS_OF = date(2025, 3, 31)
SEED = 20250331

COLUMNS = {"customer_id": "lead_id", "order_date": "last_activity"}
FEATURES = FeatureSet(frequency=Agg("sum", "touchpoint_count"), monetary=Agg("max", "deal_value"))
FIELDS = (
    ExtraField("touchpoint_count", "number", min_value=0, aliases=("touchpoints", "touches")),
    ExtraField("deal_value", "number", min_value=0, aliases=("dealvalue", "deal", "dealsize", "opportunityvalue")),
)
UNITS = Units(
    entity="leads",
    recency="days since last touch",
    frequency="touchpoints",
    event="touchpoint",
    monetary="deal size",
    total="pipeline value",
    ratio="",
    money=True,
)

VOCABULARY = Vocabulary.from_records(
    [
        {
            "name": "Hot Leads",
            "recency": 0.9,
            "frequency": 0.9,
            "monetary": 0.8,
            "priority": 1,
            "description": "touched this week, highly engaged, sizeable deals",
            "action": "Prioritised outreach: the senior rep calls within 24 hours with a tailored proposal",
        },
        {
            "name": "Stalled Big Deals",
            "recency": 0.15,
            "frequency": 0.55,
            "monetary": 0.9,
            "priority": 2,
            "description": "the largest deals, silent for weeks after real engagement",
            "action": "Prioritised outreach: an executive sponsor re-opens the conversation and revisits the proposal",
        },
        {
            "name": "Warm Leads",
            "recency": 0.7,
            "frequency": 0.55,
            "monetary": 0.45,
            "priority": 3,
            "description": "in regular contact, mid-sized deals",
            "action": "Follow-up cadence: a touch every week with case studies, aim for a demo",
        },
        {
            "name": "New Leads",
            "recency": 0.9,
            "frequency": 0.1,
            "monetary": 0.35,
            "priority": 3,
            "description": "first touches very recently",
            "action": "Qualify fast: a discovery call, then set the follow-up cadence by fit",
        },
        {
            "name": "Nurture",
            "recency": 0.45,
            "frequency": 0.3,
            "monetary": 0.3,
            "priority": 4,
            "description": "occasional contact, small deals",
            "action": "Follow-up cadence: a fortnightly nurture email with relevant content",
        },
        {
            "name": "Cold Leads",
            "recency": 0.1,
            "frequency": 0.12,
            "monetary": 0.12,
            "priority": 5,
            "description": "few touches long ago, small deals",
            "action": "Low-touch follow-up cadence: a monthly newsletter, re-qualify next quarter",
        },
    ],
    labels=("last touch", "touchpoints", "deal size"),
)

GROUPS = (
    Group("Hot Leads", 45, (1, 7), (18, 32), (40_000, 90_000)),
    Group("Warm Leads", 100, (3, 21), (7, 14), (8_000, 25_000)),
    Group("Stalled Big Deals", 55, (45, 110), (8, 16), (60_000, 150_000)),
    Group("Cold Leads", 100, (60, 180), (1, 4), (1_000, 8_000)),
)


RHYTHM_NOTE = (
    "touchpoints count interactions with a lead or account and deal size is one deal's value: not repeated "
    "purchases, each with an amount of its own"
)
"""why the rhythm models (docs/rhythm.md) do not apply to this domain"""


def preset() -> Preset:
    return Preset(
        NAME,
        "CRM activity on leads: lead_id, last_activity, touchpoint_count, deal_value",
        columns=dict(COLUMNS),
        policy=Policy(fields=FIELDS, needs_amount=False),
        vocabulary=VOCABULARY,
        features=FEATURES,
        units=UNITS,
        sample=SAMPLE,
        cold_start_segment="New Leads",
        rhythm=None,
        rhythm_note=RHYTHM_NOTE,
    )


def generate() -> Sample:
    """300 leads in four groups: per lead, activities whose summed touchpoints, largest deal value and latest
    date are exactly the lead's drawn targets (the deal value grows to its final size over the activities)."""
    rng = np.random.default_rng(SEED)
    entities = draw_entities(GROUPS, "L", rng, monetary_step=500)
    rows: list[tuple[object, ...]] = []
    for e in entities:
        n_rows = int(rng.integers(1, min(e.frequency, 8) + 1))
        touches = split_total(e.frequency, n_rows, rng)
        days = event_days(e.recency_days, n_rows, 120, rng)
        steps = np.sort(rng.integers(40, 101, size=n_rows))
        steps[-1] = 100
        for j in range(n_rows):
            value = round(e.monetary * int(steps[j]) / 100 / 100) * 100 if j < n_rows - 1 else e.monetary
            rows.append((e.entity_id, stamp(AS_OF, days[j], rng), touches[j], f"{value:.2f}"))
    rows.sort(key=lambda r: (str(r[1]), str(r[0])))
    return Sample(
        ("lead_id", "last_activity", "touchpoint_count", "deal_value"),
        rows,
        {e.entity_id: e.group for e in entities},
        entities,
    )
