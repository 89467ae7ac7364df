"""History, transitions and early warnings over the run registry (DuckDB over runs/*/assignments.parquet).

A small registry written by hand (every expected value below is worked out from the table in ``TOY``), then
the same queries over runs the real pipeline wrote."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from rfmseg import jobs as life
from rfmseg.cli.options import flag_of
from rfmseg.datasets import study
from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.jobs.run import segment
from rfmseg.runs import RunWriter
from rfmseg.runs import history as hist
from rfmseg.runs import warnings as early

D0 = date(2024, 1, 1)
C, L, A, OC = "Champions", "Loyal Buyers", "At-Risk", "Occasional"
# run label -> (as-of offset in days, kind, {customer: (segment, recency, frequency, monetary)})
TOY: dict[str, tuple[int, str, dict[str, tuple[str, int, int, float]]]] = {
    "r1": (0, "run", {"A": (C, 5, 30, 7000), "B": (L, 10, 15, 2000), "C": (L, 8, 12, 1500),
                      "D": (OC, 60, 2, 200), "E": (A, 150, 8, 4000)}),
    "r2": (7, "refresh", {"A": (C, 12, 30, 7000), "B": (L, 17, 15, 2000), "C": (L, 2, 13, 1600),
                          "D": (OC, 67, 2, 200), "E": (A, 157, 8, 4000)}),
    "r3": (14, "refresh", {"A": (C, 19, 30, 7000), "B": (L, 24, 15, 2000), "C": (L, 9, 13, 1600),
                           "D": (OC, 74, 2, 200), "E": (A, 164, 8, 4000)}),
    # two runs on the same day: the refresh, then the retrain written after it (the one the timeline keeps)
    "r4a": (21, "refresh", {"A": (C, 26, 30, 7000), "B": (L, 31, 15, 2000), "C": (L, 3, 14, 1700),
                            "E": (A, 171, 8, 4000), "F": (OC, 2, 1, 90)}),
    "r4b": (21, "retrain", {"A": (L, 26, 30, 7000), "B": (A, 31, 15, 2000), "C": (L, 3, 14, 1700),
                            "E": (A, 171, 8, 4000), "F": (OC, 2, 1, 90)}),
}  # fmt: skip
PRIORITY = [C, A, L, OC]
FIRST_ORDER = {"A": -150, "B": -150, "C": -85, "D": -200, "E": -290, "F": 19}
"""days from D0 to each customer's first order: A's rhythm is 5 days, B's 10, C's 7, E's 20 (orders - 1 gaps
from the first order to the last, the last being the as-of date minus the recency)"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Write TOY as a registry; returns the folder and label -> run id."""
    runs = tmp_path_factory.mktemp("toy") / "runs"
    ids = {}
    for i, (label, (offset, kind, rows)) in enumerate(TOY.items()):
        created = datetime(2024, 6, 1, 12, 0, i)
        run_id = f"{created:%Y%m%d-%H%M%S}-000{label}"
        ids[label] = run_id
        w = RunWriter(runs, run_id)
        ordered = sorted(rows.items())
        w.parquet(
            "assignments.parquet",
            pa.table(
                {
                    "customer_id": [c for c, _ in ordered],
                    "segment": [r[0] for _, r in ordered],
                    "segment_reason": ["cold_start" if r[2] < 2 else "nearest_centroid" for _, r in ordered],
                    "recency_days": pa.array([r[1] for _, r in ordered], pa.int64()),
                    "frequency": pa.array([r[2] for _, r in ordered], pa.int64()),
                    "monetary": pa.array([float(r[3]) for _, r in ordered]),
                    "distance": pa.array([0.1] * len(ordered)),
                    "first_order_date": pa.array([D0 + timedelta(days=FIRST_ORDER[c]) for c, _ in ordered]),
                }
            ),
        )
        present = {r[0] for r in rows.values()}
        w.json("summary.json", {"segments": [{"name": n} for n in PRIORITY if n in present]})
        w.json(
            "manifest.json",
            {
                "run_id": run_id,
                "kind": kind,
                "as_of": (D0 + timedelta(days=offset)).isoformat(),
                "created": created.isoformat(),
                "model_version": ids["r1"] if kind == "refresh" else run_id,
            },
        )
        w.commit()
    return runs, ids


def ids_of(warning: dict) -> list[str]:
    return [c["customer_id"] for c in warning["customers"]]


# --------------------------------------------------------------------------------------------- history
def test_history_of_a_customer_across_runs(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    rows = hist.history(runs, "B")
    assert [r["run_id"] for r in rows] == [ids[k] for k in ("r1", "r2", "r3", "r4a", "r4b")]
    assert [r["segment"] for r in rows] == [L, L, L, L, A]
    assert [r["recency_days"] for r in rows] == [10, 17, 24, 31, 31]
    assert rows[0]["as_of"] == "2024-01-01" and rows[-1]["kind"] == "retrain"
    assert rows[1]["model_version"] == ids["r1"]
    json.dumps(rows)  # plain JSON values
    new = hist.history(runs, "F")
    assert [r["segment_reason"] for r in new] == ["cold_start", "cold_start"]
    with pytest.raises(NotFoundError, match="'ZZZ' is in none of the 5 runs"):
        hist.history(runs, "ZZZ")


def test_timeline_keeps_the_last_run_of_each_day(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    assert [m.run_id for m in hist.timeline(runs)] == [ids[k] for k in ("r1", "r2", "r3", "r4b")]


# --------------------------------------------------------------------------------------------- transitions
def test_transitions_matrix_moves_new_and_gone(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    t = hist.transitions(runs, ids["r1"], ids["r4b"])
    assert t["segments"] == [C, A, L, OC]
    assert t["rows"] == [C, A, L, OC, "(new)"] and t["columns"] == [C, A, L, OC, "(gone)"]
    assert t["customers"] == [
        [0, 0, 1, 0, 0],  # A: Champions -> Loyal Buyers
        [0, 1, 0, 0, 0],  # E stays At-Risk
        [0, 1, 1, 0, 0],  # B: Loyal -> At-Risk; C stays Loyal
        [0, 0, 0, 0, 1],  # D gone
        [0, 0, 0, 1, 0],  # F new, Occasional
    ]
    assert t["revenue"][0][2] == 7000 and t["revenue"][2][2] == 1700 and t["revenue"][3][4] == 0
    assert t["revenue_from"][3][4] == 200 and t["revenue_from"][2][2] == 1500
    assert t["totals"] == {
        "customers_from": 5,
        "customers_to": 5,
        "moved": 2,
        "new": 1,
        "gone": 1,
        "stayed": 2,
        "drift": 0,  # no move here is a retrain's model drift (segment_reason model_drift)
        "behaviour": 2,
    }
    assert t["drift"] == {"customers": {}, "retrain": None} and {m["cause"] for m in t["moves"]} == {"behaviour", None}
    assert [(m["customer_id"], m["from"], m["to"]) for m in t["moves"]] == [
        ("A", C, L),
        ("B", L, A),
        ("D", OC, "(gone)"),
        ("F", "(new)", OC),
    ]
    b = t["moves"][1]
    assert (b["recency_days_from"], b["recency_days_to"], b["monetary_to"]) == (10, 31, 2000)
    json.dumps(t)


def test_transitions_filters_and_defaults(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    assert [m["customer_id"] for m in hist.transitions(runs, ids["r1"], ids["r4b"], from_segment=C)["moves"]] == ["A"]
    assert [m["customer_id"] for m in hist.transitions(runs, ids["r1"], ids["r4b"], to_segment=A)["moves"]] == ["B"]
    stayed = hist.transitions(runs, ids["r1"], ids["r4b"], from_segment=L, to_segment=L)
    assert [m["customer_id"] for m in stayed["moves"]] == ["C"]
    latest = hist.transitions(runs)
    assert (latest["from_run"], latest["to_run"]) == (ids["r3"], ids["r4b"])
    with pytest.raises(ParameterError, match="'Nope' is not a segment of these runs; use one of Champions"):
        hist.transitions(runs, ids["r1"], ids["r4b"], from_segment="Nope")


# --------------------------------------------------------------------------------------------- warnings
def test_warnings_on_the_toy_history(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    w = early.warnings(runs)
    assert w["run_id"] == ids["r4b"] and w["previous_run"] == ids["r3"]
    by = {x["id"]: x for x in w["warnings"]}
    assert list(by) == [
        "champions_to_loyal",
        "champions_slowing",
        "overdue",
        "loyal_lapsing",
        "segment_changed",
        "model_drift",
    ]
    assert by["model_drift"]["customers"] == [] and "not a retrain with a drift report" in by["model_drift"]["text"]
    assert ids_of(by["champions_to_loyal"]) == ["A"]
    a = by["champions_to_loyal"]["customers"][0]
    assert (a["recency_days_from"], a["recency_days_to"]) == (19, 26)
    # base and start: r1 (the earliest run within 56 and 90 days; 21 days before). A's rhythm is 5 days: late by
    # max(26 - 5, 21 - 1 x 5) = 21 > max(1 x 5, 7); B's 10: max(31 - 10, 21 - 10) = 21 > 10; C bought twice in
    # the 21 days (max(3 - 7, 21 - 3 x 7) = 0); E was already late at r1 (150 > 20 + 20); D has 2 orders, F is new
    overdue = by["overdue"]
    assert ids_of(overdue) == ["A", "B"] and overdue["aliases"] == ["recency_jump"]
    got = {c["customer_id"]: c for c in overdue["customers"]}
    assert (got["A"]["expected_gap_days"], got["A"]["days_late"], got["A"]["limit_days"]) == (5.0, 21.0, 7.0)
    assert (got["B"]["expected_gap_days"], got["B"]["days_late"], got["B"]["limit_days"]) == (10.0, 21.0, 10.0)
    assert got["B"]["orders_in_span"] == 0 and got["B"]["expected_in_span"] == 2.1
    assert [m["run_id"] for m in overdue["compared"]] == [ids["r1"], ids["r4b"]]
    assert ids_of(by["champions_slowing"]) == ["A"]  # a Champion at r1
    lapsing = by["loyal_lapsing"]
    assert ids_of(lapsing) == ["A", "B"] and lapsing["aliases"] == ["loyal_trending_at_risk"]  # Loyal now / at r1
    assert early.find(w, "loyal_trending_at_risk") is lapsing and early.find(w, "recency_jump") is overdue
    assert ids_of(by["segment_changed"]) == ["A", "B"]
    json.dumps(w)


def test_warning_thresholds_and_names_are_parameters(toy: tuple[Path, dict[str, str]]) -> None:
    runs, ids = toy
    by = {x["id"]: x for x in early.warnings(runs, overdue_days=25)["warnings"]}
    assert ids_of(by["overdue"]) == []
    by = {x["id"]: x for x in early.warnings(runs, recency_jump_days=25)["warnings"]}  # the former name
    assert ids_of(by["overdue"]) == [] and by["overdue"]["params"]["overdue_days"] == 25
    by = {x["id"]: x for x in early.warnings(runs, late_factor=4.5)["warnings"]}  # limits 17.5 and 35 days
    assert ids_of(by["overdue"]) == ["A"]
    by = {x["id"]: x for x in early.warnings(runs, window_days=10)["warnings"]}
    assert [m["run_id"] for m in by["overdue"]["compared"]] == [ids["r1"], ids["r3"], ids["r4b"]]
    assert ids_of(by["overdue"]) == ["A", "B"]
    by = {x["id"]: x for x in early.warnings(runs, min_orders=16)["warnings"]}
    assert ids_of(by["overdue"]) == ["A"]  # B has 15 orders
    by = {x["id"]: x for x in early.warnings(runs, segments=[A])["warnings"]}
    assert ids_of(by["overdue"]) == ["B"]
    by = {x["id"]: x for x in early.warnings(runs, ids["r3"])["warnings"]}
    assert ids_of(by["segment_changed"]) == [] and ids_of(by["champions_to_loyal"]) == []
    by = {x["id"]: x for x in early.warnings(runs, champions=L, loyal=A)["warnings"]}
    assert ids_of(by["champions_to_loyal"]) == ["B"] and ids_of(by["champions_slowing"]) == ["A", "B"]
    only_first = {x["id"]: x for x in early.warnings(runs, ids["r1"])["warnings"]}
    assert all(x["customers"] == [] for x in only_first.values())
    assert only_first["segment_changed"]["text"] == "needs an earlier run to compare with"
    assert only_first["overdue"]["text"].startswith("needs a run within the 56 days before")
    with pytest.raises(ParameterError, match=r"^min_orders 1 ") as raised:  # Python names the parameter
        early.warnings(runs, min_orders=1)
    assert raised.value.render(flag_of).startswith("--min-orders 1 ")  # the CLI its flag
    with pytest.raises(ParameterError, match=r"^recency_jump_days -1 ") as raised:
        early.warnings(runs, recency_jump_days=-1)
    assert raised.value.render(flag_of).startswith("--recency-jump -1 ")
    with pytest.raises(ParameterError, match=r"^overdue_days -1 "):
        early.warnings(runs, overdue_days=-1)


# --------------------------------------------------------------------------------------------- CLI
def test_cli_transitions_watch_history(toy: tuple[Path, dict[str, str]], cli) -> None:
    runs, ids = toy
    r = cli("transitions", "--from", ids["r1"], "--to", ids["r4b"], "--runs-dir", runs)
    assert r.code == 0, r.err
    assert "2 moved, 1 new, 1 gone" in r.out and "(gone)" in r.out and "$7,000" in r.out
    j = cli("transitions", "--from", ids["r1"], "--to", ids["r4b"], "--from-segment", C, "--runs-dir", runs, "--json")
    assert [m["customer_id"] for m in j.json()["moves"]] == ["A"]
    bad = cli("transitions", "--from", ids["r1"], "--to-segment", "Nope", "--runs-dir", runs)
    assert bad.code == 2 and "use one of" in bad.err and bad.err.count("\n") == 1
    w = cli("watch", "--runs-dir", runs)
    assert w.code == 0, w.err
    assert "Champions who dropped to Loyal Buyers: 1 Champions" in w.out and "Overdue on their own rhythm" in w.out
    assert "Loyal Buyers lapsing toward At-Risk: 2 customers" in w.out
    wj = cli("watch", "--runs-dir", runs, "--json", "--recency-jump", "25").json()  # the former flag
    assert next(x for x in wj["warnings"] if x["id"] == "overdue")["customers"] == []
    wj = cli("watch", "--runs-dir", runs, "--json", "--overdue-days", "25", "--late-factor", "1").json()
    assert next(x for x in wj["warnings"] if x["id"] == "overdue")["params"]["overdue_days"] == 25
    h = cli("history", "B", "--runs-dir", runs)
    assert h.code == 0 and "across 5 runs" in h.out and "At-Risk" in h.out
    assert [x["segment"] for x in cli("history", "B", "--runs-dir", runs, "--json").json()][-1] == A
    unknown = cli("history", "nobody", "--runs-dir", runs)
    assert unknown.code == 2 and "'nobody' is in none" in unknown.err
    empty = cli("watch", "--runs-dir", runs.parent / "none")
    assert empty.code == 2 and "no runs in" in empty.err


def test_watch_refuses_a_segment_these_runs_do_not_have(toy: tuple[Path, dict[str, str]], cli, tmp_path: Path) -> None:
    """A typo in a name watch is given (--segment, --champions, --loyal, --at-risk) is exit 2 in one line naming
    the segments, as `rfmseg export --segment` is, not a notice among the warnings and exit 0 (cron would not
    notice); a name in another case or as a slug is the segment."""
    runs, ids = toy
    known = f"{A}, {L}, {OC}, {C}"  # the latest run's segments first, then the earlier runs' (Champions)
    where = f"runs {ids['r1']} to {ids['r4b']}"
    for flag in ("--segment", "--champions", "--loyal", "--at-risk"):
        r = cli("watch", flag, "VIP", "--runs-dir", runs)
        assert (r.code, r.out) == (2, ""), r.err
        assert r.err == f"error: unknown segment 'VIP'; segments in {where}: {known}; give {flag} one of them\n"
    r = cli("watch", "--segment", C, "--segment", "Whales", "--json", "--runs-dir", runs)  # one bad of several
    assert r.code == 2 and "unknown segment 'Whales'" in r.err and r.err.count("\n") == 1
    r = cli("watch", "--run", ids["r1"], "--champions", "VIP", "--runs-dir", runs)  # one run: named so
    assert r.code == 2 and f"segments in run {ids['r1']}: " in r.err

    w = cli("watch", "--champions", "champions", "--segment", "loyal-buyers", "--json", "--runs-dir", runs).json()
    by = {x["id"]: x for x in w["warnings"]}
    assert by["champions_slowing"]["title"] == f"{C} slowing down"  # the segment, as export matches names
    assert by["overdue"]["params"]["segments"] == [L]
    assert by == {x["id"]: x for x in early.warnings(runs, champions=C, segments=[L])["warnings"]}

    # runs of another vocabulary: the default names are not the user's typo; watch says so and goes on
    other = tmp_path / "runs"
    for i, segments in enumerate((["Gold", "Silver"], ["Silver", "Gold"])):
        run_id = f"20240601-12000{i}-000v{i}"
        w_ = RunWriter(other, run_id)
        w_.parquet(
            "assignments.parquet",
            pa.table({"customer_id": ["A", "B"], "segment": segments, "recency_days": pa.array([5, 9], pa.int64()),
                      "frequency": pa.array([3, 4], pa.int64()), "monetary": [10.0, 20.0], "distance": [0.1, 0.1]}),
        )  # fmt: skip
        w_.json("summary.json", {"segments": [{"name": "Gold"}, {"name": "Silver"}]})
        as_of = (D0 + timedelta(days=7 * i)).isoformat()
        created = datetime(2024, 6, 1, 12, 0, i).isoformat()
        w_.json("manifest.json", {"run_id": run_id, "kind": "run", "as_of": as_of, "created": created})
        w_.commit()
    ok = cli("watch", "--runs-dir", other)
    assert ok.code == 0, ok.err
    assert "these runs have no segment Champions or Loyal Buyers" in ok.out
    r = cli("watch", "--champions", "Glod", "--runs-dir", other)
    assert r.code == 2 and "unknown segment 'Glod'; segments in runs " in r.err and "Gold, Silver" in r.err
    assert cli("watch", "--champions", "gold", "--loyal", "Silver", "--runs-dir", other).code == 0


# --------------------------------------------------------------------------------------------- real runs
def test_history_over_runs_the_pipeline_wrote(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs)
    later = life.refresh(
        study.path(study.ORDERS_FILE), as_of=study.AS_OF + timedelta(days=40), runs_dir=runs, publish=False
    )
    t = hist.transitions(runs)
    assert (t["from_run"], t["to_run"]) == (first.run_id, later.run_id)
    assert sum(map(sum, t["customers"])) == 200 == t["totals"]["customers_to"]
    assert round(sum(map(sum, t["revenue"])), 2) == later.summary["total_revenue"]
    moved = {m["customer_id"] for m in t["moves"]}
    before, after = first.assignments.to_pylist(), later.run.table("assignments").to_pylist()
    assert moved == {a["customer_id"] for a, b in zip(before, after, strict=True) if a["segment"] != b["segment"]}
    # nobody ordered in 40 days: the late ones are those whose own rhythm is shorter than that allows
    w = early.warnings(runs, period_days=60)
    overdue = early.find(w, "recency_jump")
    assert 0 < overdue["count"] < 200
    for c in overdue["customers"]:
        assert c["orders_in_span"] == 0 and c["frequency"] >= 4 and c["days_late"] > c["limit_days"]
        late = max(c["recency_days"] - c["expected_gap_days"], 40 - c["expected_gap_days"])
        assert c["days_late"] == pytest.approx(late, abs=0.11)
    c001 = hist.history(runs, "C001")
    assert [r["recency_days"] for r in c001] == [5, 45] and [r["kind"] for r in c001] == ["run", "refresh"]
