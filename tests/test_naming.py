"""The naming reasons speak of the preset's entity: users (saas), leads (crm), students (education), else
customers. Real runs on the shipped samples."""

from __future__ import annotations

from dataclasses import replace

import pytest

import rfmseg
from rfmseg.datasets import study
from rfmseg.presets import get_preset


@pytest.mark.parametrize(("name", "entity"), [("saas", "users"), ("crm", "leads"), ("education", "students")])
def test_reasons_speak_of_the_presets_entity(name: str, entity: str) -> None:
    result = rfmseg.segment(get_preset(name).sample_path(), preset=name, runs_dir=None)
    reasons = [s["reason"] for s in result.summary["segments"]]
    assert len(reasons) == 4
    for reason in reasons:
        assert f"% of {entity})" in reason and "customers" not in reason
    assert all(f"% of {entity})" in r for r in result.model.reasons_)  # as model.json stores them


def test_a_saas_run_says_users_not_customers(cli, runs_dir) -> None:
    r = cli("run", "--preset", "saas", get_preset("saas").sample_path(), "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    reasons = [s["reason"] for s in r.json()["segments"]]
    assert all("users" in x and "customers" not in x for x in reasons)


def test_the_study_still_says_customers() -> None:
    result = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None)
    champions = next(s for s in result.summary["segments"] if s["name"] == "Champions")
    assert "(more recent than" in champions["reason"] and "% of customers)" in champions["reason"]


def test_a_preset_with_other_units_names_its_entity_in_reasons() -> None:
    saas = get_preset("saas")
    members = replace(saas, name="members", units=replace(saas.units, entity="members"))
    assert members.vocabulary.entity == "members"
    assert members.vocabulary.types == saas.vocabulary.types and members.vocabulary.labels == saas.vocabulary.labels
    result = rfmseg.segment(saas.sample_path(), preset=members, runs_dir=None)
    assert all("% of members)" in s["reason"] for s in result.summary["segments"])


def test_a_cold_start_error_read_from_python_names_the_python_parameter() -> None:
    from rfmseg.cli.options import flag_of
    from rfmseg.errors import ParameterError
    from rfmseg.model.scoring import ColdStart

    with pytest.raises(ParameterError) as err:
        ColdStart(orders=2, days=-1)
    assert str(err.value) == "cold_start_days -1 should be >= 0 (0 switches the rule off)"
    assert err.value.params == ("cold_start_days",)
    assert err.value.render(flag_of) == "--cold-start-days -1 should be >= 0 (0 switches the rule off)"
    with pytest.raises(ParameterError, match=r"^cold_start_segment is empty"):
        ColdStart(segment=" ")


@pytest.mark.parametrize(
    ("rows", "cols"), [(1, 1), (1, 11), (4, 11), (4, 4), (6, 11), (8, 11), (11, 11), (5, 3), (12, 12), (13, 14)]
)
def test_cheapest_pairs_give_the_same_total_as_scipy(rows: int, cols: int) -> None:
    """The naming's own assignment solver against SciPy's Hungarian method, on random costs (and costs with
    ties): the same total, every row or every column used once, no pair twice (13 x 14 is past
    PAIRS_BY_SUBSETS_MAX: SciPy's own answer)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from rfmseg.model.naming import cheapest_pairs

    rng = np.random.default_rng(rows * 100 + cols)
    for trial in range(30):
        cost = rng.random((rows, cols)) * 10
        if trial % 3 == 0:
            cost = np.round(cost)  # many equal costs
        pairs = cheapest_pairs(cost)
        r, c = linear_sum_assignment(cost)
        assert len(pairs) == min(rows, cols)
        assert len({p[0] for p in pairs}) == len(pairs) and len({p[1] for p in pairs}) == len(pairs)
        assert pairs == sorted(pairs)
        assert sum(cost[i, j] for i, j in pairs) == pytest.approx(cost[r, c].sum(), abs=1e-9)
