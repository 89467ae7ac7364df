"""The ``education`` preset: learners on an online course platform.

Layout: one row per study day — ``student_id``, ``last_session`` (when they studied), ``session_count``
(sessions that day), ``progress_pct`` (course progress reached, 0-100). Features:

* recency   = days since the last session (the latest ``last_session``);
* frequency = session frequency: the sum of ``session_count``;
* monetary  = completion depth: the highest ``progress_pct``.

The vocabulary's actions are an adaptive curriculum and early intervention for at-risk learners.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from rfmseg.features import Agg, FeatureSet, Units
from rfmseg.io.rules import ExtraField, Policy
from rfmseg.model.naming import Vocabulary
from rfmseg.presets.preset import Preset
from rfmseg.presets.samples import Group, Sample, draw_entities, event_days, split_total, stamp

NAME = "education"
SAMPLE = "education_sessions.csv"
AS_OF = date(2025, 5, 31)
SEED = 20250531

COLUMNS = {"customer_id": "student_id", "order_date": "last_session"}
FEATURES = FeatureSet(frequency=Agg("sum", "session_count"), monetary=Agg("max", "progress_pct"))
FIELDS = (
    ExtraField("session_count", "number", min_value=0, aliases=("sessions", "sessioncount")),
    ExtraField("progress_pct", "number", min_value=0, max_value=100, aliases=("progress", "completion", "pct")),
)
UNITS = Units(
    entity="students",
    recency="days since last session",
    frequency="sessions",
    event="session",
    monetary="progress",
    total="",
    ratio="",
    money=False,
    suffix="%",
)

VOCABULARY = Vocabulary.from_records(
    [
        {
            "name": "High Achievers",
            "recency": 0.9,
            "frequency": 0.9,
            "monetary": 0.9,
            "priority": 3,
            "description": "study every few days and are far into the course",
            "action": "Adaptive curriculum: advanced modules and stretch projects; invite them to mentor peers",
        },
        {
            "name": "Steady Learners",
            "recency": 0.68,
            "frequency": 0.62,
            "monetary": 0.62,
            "priority": 4,
            "description": "regular sessions, steady progress",
            "action": "Adaptive curriculum: personalised next lessons with spaced review to keep the pace",
        },
        {
            "name": "New Learners",
            "recency": 0.9,
            "frequency": 0.1,
            "monetary": 0.1,
            "priority": 2,
            "description": "just started: few sessions, little progress",
            "action": "Onboarding: orientation session and first-week goals, with a study reminder",
        },
        {
            "name": "Struggling",
            "recency": 0.7,
            "frequency": 0.7,
            "monetary": 0.12,
            "priority": 1,
            "description": "keep coming back but make little progress",
            "action": "Adaptive curriculum: a remedial path with simpler exercises and a tutor session",
        },
        {
            "name": "At-Risk Learners",
            "recency": 0.35,
            "frequency": 0.38,
            "monetary": 0.38,
            "priority": 1,
            "description": "sessions thinning out part-way through the course",
            "action": "Early intervention: tutor outreach this week, a study-plan reset and a check for blockers",
        },
        {
            "name": "Finished",
            "recency": 0.35,
            "frequency": 0.75,
            "monetary": 0.97,
            "priority": 5,
            "description": "completed the course and stopped studying",
            "action": "Certificate and the next course recommendation",
        },
        {
            "name": "Dropped Out",
            "recency": 0.08,
            "frequency": 0.1,
            "monetary": 0.1,
            "priority": 2,
            "description": "no session for weeks, little progress before",
            "action": "Early intervention: re-enrolment outreach with a short catch-up path",
        },
    ],
    labels=("last session", "sessions", "progress %"),
)

GROUPS = (
    Group("High Achievers", 70, (1, 4), (40, 70), (75, 98)),
    Group("Steady Learners", 130, (2, 10), (18, 32), (40, 65)),
    Group("At-Risk Learners", 90, (15, 35), (7, 15), (15, 35)),
    Group("Dropped Out", 110, (50, 110), (1, 5), (1, 12)),
)


RHYTHM_NOTE = (
    "sessions and a progress percentage measure learning, not repeated purchases each with an amount, and "
    "leaving a course is not a silent churn from buying"
)
"""why the rhythm models (docs/rhythm.md) do not apply to this domain"""


def preset() -> Preset:
    return Preset(
        NAME,
        "learner activity: student_id, last_session, session_count, progress_pct",
        columns=dict(COLUMNS),
        policy=Policy(fields=FIELDS, needs_amount=False),
        vocabulary=VOCABULARY,
        currency="",
        features=FEATURES,
        units=UNITS,
        sample=SAMPLE,
        cold_start_segment="New Learners",
        rhythm=None,
        rhythm_note=RHYTHM_NOTE,
    )


def generate() -> Sample:
    """400 students in four groups: per student, study days whose summed sessions, highest progress and
    latest date are exactly the student's drawn targets (progress grows over the days)."""
    rng = np.random.default_rng(SEED)
    entities = draw_entities(GROUPS, "S", rng)
    rows: list[tuple[object, ...]] = []
    for e in entities:
        n_rows = int(rng.integers(1, min(e.frequency, 12) + 1))
        sessions = split_total(e.frequency, n_rows, rng)
        days = event_days(e.recency_days, n_rows, 100, rng)
        progress = np.sort(rng.integers(0, int(e.monetary) + 1, size=n_rows))
        progress[-1] = int(e.monetary)
        for j in range(n_rows):
            rows.append((e.entity_id, stamp(AS_OF, days[j], rng), sessions[j], int(progress[j])))
    rows.sort(key=lambda r: (str(r[1]), str(r[0])))
    return Sample(
        ("student_id", "last_session", "session_count", "progress_pct"),
        rows,
        {e.entity_id: e.group for e in entities},
        entities,
    )
