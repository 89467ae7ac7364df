"""Insights on engagement data (saas, education: no money, so no revenue rules) and in the preset's words.

Every figure an insight states is recomputed here with pandas from the shipped sample's rows and the run's
labels: the insight rules must not invent a number, nor call users or students customers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import rfmseg
from rfmseg.datasets import study
from rfmseg.features import DEFAULT_UNITS
from rfmseg.model.naming import DEFAULT_VOCABULARY
from rfmseg.presets import get_preset
from rfmseg.profile import activation_project, insights, segment_table

ENGAGEMENT = {"segment_mix", "most_active", "longest_inactive"}
MONEY = {"aov_ratio", "pareto", "recoverable_revenue", "top_20_percent"}
# preset: (entity column, date column, the column frequency sums)
LAYOUTS = {
    "saas": ("user_id", "last_used", "session_count"),
    "education": ("student_id", "last_session", "session_count"),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def engagement_run(request: pytest.FixtureRequest) -> tuple[str, rfmseg.RunResult, pd.DataFrame]:
    """A run of the preset on its sample, and the per-entity frame recomputed by pandas from the raw rows."""
    name = request.param
    preset = get_preset(name)
    result = rfmseg.segment(preset.sample_path(), preset=name, runs_dir=None)
    who, when, count = LAYOUTS[name]
    rows = pd.read_csv(preset.sample_path(), parse_dates=[when])
    as_of = pd.Timestamp(date.fromisoformat(result.summary["as_of"]))
    per = rows.groupby(who).agg(last=(when, "max"), frequency=(count, "sum"))
    per["recency_days"] = (as_of - per["last"].dt.normalize()).dt.days
    labels = result.assignments.select(["customer_id", "segment"]).to_pandas().set_index("customer_id")["segment"]
    per["segment"] = labels.reindex(per.index)
    assert per["segment"].notna().all()
    return name, result, per


def by_id(result: rfmseg.RunResult) -> dict[str, dict]:
    return {i["id"]: i for i in result.summary["insights"]}


def test_engagement_data_get_engagement_insights_in_their_words(engagement_run) -> None:
    name, result, _ = engagement_run
    entity = get_preset(name).units.entity
    found = by_id(result)
    assert set(found) >= ENGAGEMENT
    assert not MONEY & set(found)  # no revenue on sessions and progress
    for i in found.values():
        assert "customers" not in i["text"] and "revenue" not in i["text"] and "$" not in i["text"]
    assert entity in found["segment_mix"]["text"] and entity in found["most_active"]["text"]


def test_segment_mix_is_the_share_of_each_segment(engagement_run) -> None:
    name, result, per = engagement_run
    mix = by_id(result)["segment_mix"]
    counts = per["segment"].value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    got = mix["values"]["segments"]
    assert [(s["segment"], s["customers"]) for s in got] == expected
    assert mix["values"]["customers"] == len(per)
    for s in got:
        assert s["share_customers"] == pytest.approx(counts[s["segment"]] / len(per))
        assert f"{s['segment']} {counts[s['segment']] / len(per):.0%} ({counts[s['segment']]:,})" in mix["text"]
    assert mix["text"].startswith(f"Of {len(per):,} {get_preset(name).units.entity}: ")


def test_most_active_is_the_segment_with_most_activity_per_member(engagement_run) -> None:
    name, result, per = engagement_run
    act = by_id(result)["most_active"]["values"]
    means = per.groupby("segment")["frequency"].mean()
    top = means.idxmax()
    overall = per["frequency"].mean()
    share = per.loc[per["segment"] == top, "frequency"].sum() / per["frequency"].sum()
    assert act["segment"] == top
    assert act["mean_frequency"] == pytest.approx(means[top])
    assert act["mean_frequency_all"] == pytest.approx(overall)
    assert act["share_frequency"] == pytest.approx(share)
    assert act["ratio"] == pytest.approx(means[top] / overall)
    assert act["share_customers"] == pytest.approx((per["segment"] == top).mean())
    text = by_id(result)["most_active"]["text"]
    assert f"{share:.0%} of all {get_preset(name).units.frequency}" in text
    assert f"{means[top]:,.1f} each on average against {overall:,.1f} overall ({means[top] / overall:.1f}×)" in text


def test_longest_inactive_is_the_segment_silent_longest(engagement_run) -> None:
    name, result, per = engagement_run
    ins = by_id(result)["longest_inactive"]
    means = per.groupby("segment")["recency_days"].mean()
    seg = means.idxmax()
    median = per["recency_days"].median()
    v = ins["values"]
    assert v["segment"] == seg
    assert v["mean_recency_days"] == pytest.approx(means[seg])
    assert v["median_recency_days_all"] == pytest.approx(median)
    assert v["customers"] == int((per["segment"] == seg).sum())
    assert v["share_customers"] == pytest.approx((per["segment"] == seg).mean())
    units = get_preset(name).units
    assert f"{means[seg]:.0f} {units.recency} on average (overall median {median:.0f})" in ins["text"]
    assert f"they are {v['customers']:,} {units.entity} ({v['share_customers']:.0%})" in ins["text"]


def test_the_study_keeps_its_money_insights_only() -> None:
    result = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None)
    ids = set(by_id(result))
    assert {"aov_ratio", "pareto", "recoverable_revenue"} <= ids
    assert not ENGAGEMENT & ids
    assert all("users" not in i["text"] for i in result.summary["insights"])


def _table(recency: list[float], frequency: list[float], labels: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    rfm = pd.DataFrame({"recency_days": recency, "frequency": frequency, "monetary": np.ones(len(labels))})
    return rfm, segment_table(rfm, labels, DEFAULT_VOCABULARY, {})


def test_engagement_rules_stay_silent_when_the_data_does_not_show_it() -> None:
    saas = get_preset("saas").units
    # two segments alike in activity and in silence: a mix, but no most active and no longest inactive
    rfm, table = _table([10, 10, 10, 10], [5, 5, 5, 5], ["Dormant", "Dormant", "Engaged", "Engaged"])
    assert [i["id"] for i in insights(rfm, table, units=saas)] == ["segment_mix"]
    # one segment: nothing to compare
    rfm, table = _table([3, 40, 90], [9, 2, 1], ["Engaged"] * 3)
    assert not ENGAGEMENT & {i["id"] for i in insights(rfm, table, units=saas)}
    # the same data in money units (the default): no engagement rule at all
    rfm, table = _table([1, 2, 80, 90], [30, 40, 1, 1], ["A", "A", "B", "B"])
    assert not ENGAGEMENT & {i["id"] for i in insights(rfm, table, units=DEFAULT_UNITS)}
    assert {i["id"] for i in insights(rfm, table, units=saas)} >= ENGAGEMENT


# ------------------------------------------------------------------------------------------------ sequencing
def _segments(rows: dict[str, tuple[int, float]]) -> list[dict]:
    """Segment rows as segment_table gives them, from name -> (customers, revenue)."""
    n, total = sum(c for c, _ in rows.values()), sum(r for _, r in rows.values())
    return [
        {"name": k, "customers": c, "share_customers": c / n, "revenue": r, "share_revenue": r / total}
        for k, (c, r) in rows.items()
    ]


def test_the_activation_project_is_named_only_when_the_data_says_so() -> None:
    study = {"Champions": (30, 218_300.0), "At-Risk": (40, 154_600.0), "Loyal": (50, 94_900.0), "Occ": (80, 17_550.0)}
    assert activation_project(_segments(study)) == (
        "Occ",
        "the long-term activation project: the largest segment (80 customers, 40%) and the smallest by revenue "
        "($17,550, 4%)",
    )
    # the largest by count is not the smallest by revenue: no project named
    assert activation_project(_segments({**study, "Occ": (80, 100_000.0)})) is None
    # the largest by count ties with another, or the smallest by revenue does: no project named
    assert activation_project(_segments({**study, "Loyal": (80, 94_900.0)})) is None
    assert activation_project(_segments({**study, "Loyal": (50, 17_550.0)})) is None
    # one segment, or units in which the sum of monetary means nothing (SaaS: features used)
    assert activation_project(_segments({"Occ": (80, 17_550.0)})) is None
    assert activation_project(_segments(study), units=get_preset("saas").units) is None
    # in the units of a preset with a total: its entity and total, in its currency
    crm = activation_project(_segments(study), "€", get_preset("crm").units)
    assert crm is not None and crm[1] == (
        f"the long-term activation project: the largest segment (80 {get_preset('crm').units.entity}, 40%) and the "
        f"smallest by {get_preset('crm').units.total} ({get_preset('crm').units.value(17_550.0, '€')}, 4%)"
    )


def test_engagement_runs_name_no_activation_project(engagement_run) -> None:
    _, result, _ = engagement_run
    assert not any("sequencing" in s for s in result.summary["segments"])  # no revenue to be smallest by
