"""The ``saas`` preset: product usage of a SaaS application.

Layout: one row per usage record — ``user_id``, ``feature_name``, ``last_used`` (when the feature was used),
``session_count`` (sessions in that record). Features:

* recency   = days since the user's last login (the latest ``last_used``);
* frequency = usage depth: the sum of ``session_count``;
* monetary  = feature breadth: the number of distinct ``feature_name`` used.

The vocabulary names groups Power Users, Engaged, Drifting, Dormant, ... and its actions are product-led:
personalised onboarding, feature discovery, upgrade triggers. Each segment has an onboarding path
(:data:`ONBOARDING`): what it is and the usage signals that lead to it, which ``rfmseg ask onboarding``
checks against a user's own figures.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from rfmseg.features import Agg, FeatureSet, Units
from rfmseg.io.rules import ExtraField, Policy
from rfmseg.model.naming import Vocabulary
from rfmseg.presets.preset import Onboarding, OnboardingPath, Preset, UsageSignal
from rfmseg.presets.samples import Group, Sample, draw_entities, event_days, split_total, stamp

NAME = "saas"
SAMPLE = "saas_usage.csv"
AS_OF = date(2025, 6, 30)
SEED = 20250630

COLUMNS = {"customer_id": "user_id", "order_date": "last_used"}
FEATURES = FeatureSet(frequency=Agg("sum", "session_count"), monetary=Agg("count_distinct", "feature_name"))
FIELDS = (
    ExtraField("session_count", "number", min_value=0, aliases=("sessions", "sessioncount")),
    ExtraField("feature_name", "text", aliases=("feature", "featurename")),
)
UNITS = Units(
    entity="users",
    recency="days since last login",
    frequency="sessions",
    event="session",
    monetary="features used",
    total="",
    ratio="",
    money=False,
)

VOCABULARY = Vocabulary.from_records(
    [
        {
            "name": "Power Users",
            "recency": 0.92,
            "frequency": 0.92,
            "monetary": 0.92,
            "priority": 1,
            "description": "log in daily, use the product deeply and across many features",
            "action": "Upgrade triggers: offer the next plan at usage limits, beta access, invite to advocacy",
        },
        {
            "name": "Engaged",
            "recency": 0.7,
            "frequency": 0.65,
            "monetary": 0.62,
            "priority": 3,
            "description": "regular users of a core set of features",
            "action": "Feature discovery: in-app tips for the features they have not tried yet",
        },
        {
            "name": "New Users",
            "recency": 0.9,
            "frequency": 0.1,
            "monetary": 0.12,
            "priority": 2,
            "description": "signed up recently, a few sessions on few features",
            "action": "Personalised onboarding: guided setup and a first-week checklist by role",
        },
        {
            "name": "Single-Feature Users",
            "recency": 0.65,
            "frequency": 0.6,
            "monetary": 0.1,
            "priority": 4,
            "description": "come back often but for one feature",
            "action": "Feature discovery: show the features next to the one they use, with templates",
        },
        {
            "name": "Drifting",
            "recency": 0.35,
            "frequency": 0.38,
            "monetary": 0.4,
            "priority": 2,
            "description": "used to log in regularly, fewer and fewer sessions",
            "action": "Re-engagement: what's-new digest and a check-in from customer success",
        },
        {
            "name": "At-Risk Accounts",
            "recency": 0.12,
            "frequency": 0.8,
            "monetary": 0.85,
            "priority": 1,
            "description": "heavy users who stopped logging in",
            "action": "Account review by customer success before the renewal, with a usage report",
        },
        {
            "name": "Dormant",
            "recency": 0.1,
            "frequency": 0.12,
            "monetary": 0.12,
            "priority": 5,
            "description": "no login for months, little use before",
            "action": "Win-back email showing what changed, then personalised onboarding again if they return",
        },
    ],
    labels=("last login", "sessions", "features used"),
)

ONBOARDING = Onboarding(
    (
        OnboardingPath(
            "Power Users",
            "Admin and automation",
            "set up single sign-on, the API and automations, invite the rest of the team, then the beta programme",
            (
                UsageSignal("recency_days", "low", "a recent login"),
                UsageSignal("frequency", "high", "heavy use"),
                UsageSignal("monetary", "high", "many features"),
            ),
        ),
        OnboardingPath(
            "Engaged",
            "Feature discovery",
            "one in-app tour a week of a feature their peers use and they have not tried, with a template to start",
            (
                UsageSignal("recency_days", "low", "a recent login"),
                UsageSignal("frequency", "high", "regular sessions"),
                UsageSignal("monetary", "high", "a core set of features"),
            ),
        ),
        OnboardingPath(
            "New Users",
            "Guided setup",
            "a guided setup by role, a first-week checklist and a check-in after the first sessions",
            (
                UsageSignal("recency_days", "low", "a recent login"),
                UsageSignal("frequency", "low", "few sessions so far"),
                UsageSignal("monetary", "low", "few features tried"),
            ),
        ),
        OnboardingPath(
            "Single-Feature Users",
            "Adjacent features",
            "templates that join the feature they use to the next one, shown where they already work",
            (
                UsageSignal("monetary", "low", "few features"),
                UsageSignal("depth", "high", "many sessions on each feature"),
            ),
        ),
        OnboardingPath(
            "Drifting",
            "Core workflow refresher",
            "a what's-new digest, a short walkthrough of the workflow they used most, and a customer success check-in",
            (
                UsageSignal("recency_days", "high", "a login weeks ago"),
                UsageSignal("frequency", "low", "fewer sessions"),
            ),
        ),
        OnboardingPath(
            "At-Risk Accounts",
            "Account review",
            "a usage report and a review with customer success before the renewal, then the features that save "
            "them time",
            (
                UsageSignal("recency_days", "high", "a login weeks ago"),
                UsageSignal("frequency", "high", "heavy use before"),
                UsageSignal("monetary", "high", "many features"),
            ),
        ),
        OnboardingPath(
            "Dormant",
            "Restart",
            "a win-back email showing what changed, then the guided setup again once they sign in",
            (
                UsageSignal("recency_days", "high", "no login for months"),
                UsageSignal("frequency", "low", "little use before"),
                UsageSignal("monetary", "low", "few features tried"),
            ),
        ),
    ),
    depth="sessions per feature",
)
"""The onboarding path of each segment of the vocabulary; a signal's side is against the run's median user."""

GROUPS = (
    Group("Power Users", 60, (1, 3), (70, 120), (12, 18)),
    Group("Engaged", 120, (2, 10), (25, 45), (6, 10)),
    Group("Drifting", 100, (18, 40), (8, 20), (3, 6)),
    Group("Dormant", 120, (60, 120), (2, 6), (1, 2)),
)
FEATURE_NAMES = (
    "dashboard",
    "reports",
    "export",
    "alerts",
    "integrations",
    "api",
    "sharing",
    "comments",
    "templates",
    "automation",
    "search",
    "mobile",
    "calendar",
    "billing",
    "audit_log",
    "sso",
    "webhooks",
    "custom_fields",
    "forecasting",
    "imports",
)


RHYTHM_NOTE = (
    "sessions and distinct features used measure usage, not repeated purchases each with an amount; a "
    "subscription ends with a cancellation, not silently"
)
"""why the rhythm models (docs/rhythm.md) do not apply to this domain"""


def preset() -> Preset:
    return Preset(
        NAME,
        "SaaS product usage: user_id, feature_name, last_used, session_count",
        columns=dict(COLUMNS),
        policy=Policy(fields=FIELDS, needs_amount=False),
        vocabulary=VOCABULARY,
        currency="",
        features=FEATURES,
        units=UNITS,
        sample=SAMPLE,
        cold_start_segment="New Users",
        onboarding=ONBOARDING,
        rhythm=None,
        rhythm_note=RHYTHM_NOTE,
    )


def generate() -> Sample:
    """400 users in four groups: per user, rows whose distinct features, summed sessions and latest
    ``last_used`` are exactly the user's drawn targets."""
    rng = np.random.default_rng(SEED)
    entities = draw_entities(GROUPS, "U", rng)
    rows: list[tuple[object, ...]] = []
    for e in entities:
        breadth = int(e.monetary)
        features = [FEATURE_NAMES[i] for i in rng.choice(len(FEATURE_NAMES), size=breadth, replace=False)]
        n_rows = breadth + int(rng.integers(0, min(breadth, e.frequency - breadth) + 1))
        per_row = features + [features[int(i)] for i in rng.integers(0, breadth, size=n_rows - breadth)]
        sessions = split_total(e.frequency, n_rows, rng)
        days = event_days(e.recency_days, n_rows, 90, rng)
        order = rng.permutation(n_rows)
        for j in order:
            rows.append((e.entity_id, per_row[j], stamp(AS_OF, days[j], rng), sessions[j]))
    rows.sort(key=lambda r: (str(r[2]), str(r[0])))
    return Sample(
        ("user_id", "feature_name", "last_used", "session_count"),
        rows,
        {e.entity_id: e.group for e in entities},
        entities,
    )
