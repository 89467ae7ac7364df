"""Campaigns with a randomised holdout: the draw, the lists and planned touches, the measurement against the
simulator's known effects, the coverage of the intervals over many simulated campaigns, and the sizing."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rfmseg import questions as q
from rfmseg.errors import InputError
from rfmseg.jobs import campaign
from rfmseg.jobs.run import segment
from rfmseg.model.uplift import holdout_size, measure, min_detectable_uplift, newcombe
from rfmseg.simulate import SimConfig, play_campaign, simulate
from rfmseg.touches import list_imports, load_touches

SEND = date(2024, 1, 7)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """A run of the simulator's base at its start date (5,000 customers), and its history."""
    sim = simulate(SimConfig(customers=5_000, weeks=1, seed=11))
    history = sim.snapshot(SEND)
    runs = tmp_path_factory.mktemp("campaigns") / "runs"
    segment(history, runs_dir=runs, as_of=SEND.isoformat())
    return runs, history


def _plan(runs: Path, name: str, segments: tuple[str, ...] = ("At-Risk", "Occasional"), holdout: str = "20%") -> dict:
    return campaign.plan(name, list(segments), "win_back", holdout, runs_dir=runs, seed=7)


# ------------------------------------------------------------------------------------------------ the draw
def test_the_holdout_is_drawn_in_every_stratum_and_reproducible(base) -> None:
    runs, _ = base
    plan = _plan(runs, "strata")
    members = pq.read_table(Path(plan["folder"]) / "members.parquet")
    run = next(p for p in sorted(runs.iterdir()) if (p / "manifest.json").exists())
    assignments = pq.read_table(run / "assignments.parquet")
    wanted = pc.is_in(assignments.column("segment"), pa.array(["At-Risk", "Occasional"]))
    assert members.num_rows == pc.sum(wanted).as_py()  # every customer of the chosen segments, nobody else
    for s in plan["strata"]:
        n = s["treated"] + s["control"]
        assert s["control"] == round(0.2 * n)  # the share held out in each segment x value band
    assert {s["band"] for s in plan["strata"]} == {1, 2, 3, 4}
    # value bands: band 1 holds the highest spenders of the segment
    rows = members.filter(pc.equal(members.column("segment"), "At-Risk")).to_pylist()
    top = min(r["monetary"] for r in rows if r["band"] == 1)
    assert all(r["monetary"] <= top for r in rows if r["band"] == 4)
    # the same seed draws the same control group; another seed another one
    again = campaign.draw(assignments, ["At-Risk", "Occasional"], 0.2, 7, "monetary", 4)
    other = campaign.draw(assignments, ["At-Risk", "Occasional"], 0.2, 8, "monetary", 4)
    assert again.column("group").equals(members.column("group"))
    assert not other.column("group").equals(members.column("group"))


def test_the_plan_writes_the_lists_and_the_planned_touches(base, tmp_path: Path, cli) -> None:
    runs, _ = base
    out = tmp_path / "lists"
    out.mkdir()
    r = cli(
        "campaign",
        "plan",
        "lists",
        "--segment",
        "At-Risk",
        "--action",
        "win_back",
        "--holdout",
        "10%",
        "--out",
        out,
        "--runs-dir",
        runs,
        "--json",
    )
    assert r.code == 0, r.err
    plan = r.json()
    import pyarrow.csv as pacsv

    target, control = pacsv.read_csv(out / "target.csv"), pacsv.read_csv(out / "control.csv")
    assert (target.num_rows, control.num_rows) == (plan["treated"], plan["control"])
    assert not set(target.column("customer_id").to_pylist()) & set(control.column("customer_id").to_pylist())
    assert abs(plan["control"] / (plan["treated"] + plan["control"]) - 0.10) < 0.01
    # the treated are in the touches history as planned; the held-out customers are not contacted
    imports = [m for m in list_imports(runs) if m.get("planned_campaign") == "lists"]
    assert len(imports) == 1 and imports[0]["held_out"] == plan["control"]
    stored = load_touches(runs)
    touches = stored.filter(pc.equal(stored.column("campaign"), "lists"))
    assert sorted(touches.column("customer_id").to_pylist()) == sorted(target.column("customer_id").to_pylist())
    assert set(touches.column("kind").to_pylist()) == {"win_back"}
    listed = cli("campaign", "list", "--runs-dir", runs, "--json")
    assert "lists" in [c["name"] for c in listed.json()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--segment", "Nobody", "--action", "win_back"], "no segment 'Nobody'"),
        (["--segment", "At-Risk", "--action", "carrier_pigeon"], "unknown action 'carrier_pigeon'"),
        (["--segment", "At-Risk", "--action", "win_back", "--holdout", "150%"], "--holdout '150%' should be between"),
        (["--segment", "At-Risk", "--action", "win_back", "--holdout", "some"], "--holdout 'some' is not a share"),
        (["--segment", "At-Risk", "--action", "win_back", "--rank-by", "name"], "--rank-by 'name' is not rankable"),
        (["--segment", "At-Risk", "--action", "win_back", "--out", "/nonexistent/x"], "no such folder"),
    ],
)
def test_a_bad_plan_is_refused_in_one_line_and_leaves_nothing(base, cli, args: list[str], message: str) -> None:
    runs, _ = base
    before = sorted(p.name for p in campaign.campaigns_dir(runs).glob("*"))
    r = cli("campaign", "plan", "refused", *args, "--runs-dir", runs)
    assert r.code == 2 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1 and message in r.err, r.err
    after = sorted(p.name for p in campaign.campaigns_dir(runs).glob("*"))
    assert after == before
    assert not [m for m in list_imports(runs) if m.get("planned_campaign") == "refused"]


def test_a_campaign_name_is_planned_once(base, cli) -> None:
    runs, _ = base
    assert cli("campaign", "plan", "once", "--segment", "At-Risk", "--action", "win_back", "--runs-dir", runs).code == 0
    again = cli("campaign", "plan", "once", "--segment", "At-Risk", "--action", "win_back", "--runs-dir", runs)
    assert again.code == 2 and "campaign 'once' is already planned" in again.err


# ------------------------------------------------------------------------------------------------ measuring
def test_the_measured_uplift_recovers_the_simulated_effect(base, tmp_path: Path, cli) -> None:
    """At-Risk customers get a win-back that lifts their conversion by 20 points; Occasional buyers one that
    does nothing. The measure finds the first (its interval holds 0.20) and claims no effect for the second."""
    runs, history = base
    plan = _plan(runs, "known-effect", holdout="30%")
    members = pq.read_table(Path(plan["folder"]) / "members.parquet")
    window = play_campaign(
        members, SEND, 30, {"At-Risk": 0.05, "Occasional": 0.10}, {"At-Risk": 0.20, "Occasional": 0.0}, seed=3
    )
    # the data through the window's end: the history, the window's orders and one order on the last day
    last = pa.table(
        {"customer_id": ["ZZZ"], "order_id": ["Z1"], "order_date": [SEND + timedelta(days=30)], "amount": [1.0]}
    )
    data = tmp_path / "after.parquet"
    pq.write_table(pa.concat_tables([history, window.cast(history.schema), last.cast(history.schema)]), data)
    r = cli("campaign", "measure", "known-effect", data, "--window", "30d", "--runs-dir", runs, "--json")
    assert r.code == 0, r.err
    m = r.json()
    at_risk, occasional = m["by_segment"]["At-Risk"], m["by_segment"]["Occasional"]
    assert at_risk["effect"] and at_risk["ci"][0] <= 0.20 <= at_risk["ci"][1]
    assert not occasional["effect"] and occasional["ci"][0] <= 0 <= occasional["ci"][1]
    assert "no effect shown" in occasional["verdict"] and "detect only effects of about" in occasional["verdict"]
    assert m["design"].startswith("randomised holdout")
    text = cli("campaign", "measure", "known-effect", data, "--runs-dir", runs)
    assert text.code == 0 and "At-Risk: converted" in text.out and "no effect shown" in text.out
    stored = json.loads((Path(plan["folder"]) / "measure.json").read_text())
    assert stored["by_segment"]["At-Risk"]["uplift"] == at_risk["uplift"]


def test_measuring_before_the_window_ends_is_refused(base, tmp_path: Path, cli) -> None:
    runs, history = base
    _plan(runs, "too-soon")
    data = tmp_path / "history.parquet"
    pq.write_table(history, data)
    r = cli("campaign", "measure", "too-soon", data, "--runs-dir", runs)
    assert r.code == 2 and "before the window of campaign 'too-soon' ends" in r.err and "--window" in r.err
    missing = cli("campaign", "measure", "nope", data, "--runs-dir", runs)
    assert missing.code == 2 and "no campaign 'nope'" in missing.err


# ------------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize(
    ("p_c", "delta", "n_t", "n_c"), [(0.10, 0.0, 900, 100), (0.10, 0.05, 500, 500), (0.30, 0.15, 400, 120)]
)
def test_the_conversion_interval_covers_the_true_uplift_at_its_level(
    p_c: float, delta: float, n_t: int, n_c: int
) -> None:
    """2,000 simulated campaigns per setting: the 95 % interval holds the true uplift 93-97 % of the time,
    and with no effect an effect is claimed in at most 6 % of them."""
    rng = np.random.default_rng(2024)
    reps = 2_000
    x_t = rng.binomial(n_t, p_c + delta, reps)
    x_c = rng.binomial(n_c, p_c, reps)
    intervals = np.array([newcombe(int(a), n_t, int(b), n_c) for a, b in zip(x_t, x_c, strict=True)])
    covered = ((intervals[:, 0] <= delta) & (delta <= intervals[:, 1])).mean()
    assert 0.93 <= covered <= 0.97, covered
    if delta == 0:
        claimed = ((intervals[:, 0] > 0) | (intervals[:, 1] < 0)).mean()
        assert claimed <= 0.06, claimed


def test_the_revenue_interval_covers_the_true_difference() -> None:
    """Revenue per customer: mostly zeros, log-normal spend for those who buy; 200 campaigns, the seeded
    bootstrap interval of the difference holds the true one at about its level."""
    rng = np.random.default_rng(5)
    true = 0.25 * 100 - 0.15 * 100  # conversion x mean spend: 10.0
    hits = 0
    for i in range(200):
        t = (rng.random(600) < 0.25) * rng.lognormal(np.log(100) - 0.18, 0.6, 600)
        c = (rng.random(200) < 0.15) * rng.lognormal(np.log(100) - 0.18, 0.6, 200)
        u = measure(t > 0, c > 0, t, c, seed=i)
        hits += u.revenue_ci[0] <= true <= u.revenue_ci[1]
    assert 0.90 <= hits / 200 <= 0.99, hits


def test_sizing_matches_the_two_proportion_formula() -> None:
    r = holdout_size(0.10, 0.03, holdout=0.5)
    p = 0.115
    z = 1.959964 + 0.841621
    assert r["customers_needed"] == math.ceil(z * z * p * (1 - p) * 4 / 0.03**2)
    ten = holdout_size(0.10, 0.03, customers=5_000, holdout=0.10)
    assert ten["customers_needed"] > r["customers_needed"]  # a small holdout needs more customers
    h = ten["smallest_holdout"]
    assert h is not None and holdout_size(0.10, 0.03, holdout=h)["customers_needed"] == pytest.approx(5_000, rel=0.01)
    assert holdout_size(0.10, 0.03, customers=500)["smallest_holdout"] is None  # no split of 500 is enough
    # the detectable effect at the plan's sizes is what measure reports
    assert min_detectable_uplift(900, 100, 0.10) == pytest.approx(
        z * math.sqrt(0.1 * 0.9 * (1 / 900 + 1 / 100)), rel=1e-3
    )


def test_campaign_size_command(cli) -> None:
    r = cli("campaign", "size", "--baseline", "0.1", "--uplift", "0.03", "--customers", "5000", "--holdout", "10%")
    assert r.code == 0 and "9,862 customers" in r.out and "hold out at least" in r.out
    bad = cli("campaign", "size", "--baseline", "1.5", "--uplift", "0.03")
    assert bad.code == 2 and "--baseline 1.5 should be a rate between 0 and 1" in bad.err


# ------------------------------------------------------------------------------------------------ API, MCP, ask
def test_the_api_mcp_and_intervention_answer_from_the_measured_campaign(
    base, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Plan and measure through the HTTP API; the MCP tools and `intervention_effect` then give the measured,
    experimental answer first."""
    import asyncio
    import shutil

    from fastapi.testclient import TestClient

    from rfmseg import questions as q
    from rfmseg.jobs.refresh import refresh
    from rfmseg.service import Settings, create_app
    from test_mcp import call, connect

    shared, history = base
    runs = tmp_path / "runs"
    shutil.copytree(shared, runs)  # this test adds a run: the module's registry stays as it was
    with TestClient(create_app(Settings(runs_dir=runs, store_url=f"sqlite:///{tmp_path / 'p.db'}"))) as c:
        r = c.post("/campaigns", json={"name": "api", "segments": ["At-Risk"], "holdout": "30%", "seed": 3})
        assert r.status_code == 201, r.text
        members = pq.read_table(campaign.campaigns_dir(runs) / "api" / "members.parquet")
        window = play_campaign(members, SEND, 30, {"At-Risk": 0.05}, {"At-Risk": 0.20}, seed=4)
        data = tmp_path / "after.parquet"
        end = pa.table({"customer_id": ["ZZZ"], "order_id": ["Z1"], "order_date": [SEND + timedelta(days=30)]})
        end = end.append_column("amount", pa.array([1.0]))
        pq.write_table(pa.concat_tables([history, window.cast(history.schema), end.cast(history.schema)]), data)
        # a run after the window: the segments the members are in then (the moves)
        refresh(data, None, as_of=(SEND + timedelta(days=31)).isoformat(), runs_dir=runs, publish=False)
        m = c.post("/campaigns/api/measure", json={"transactions": str(data), "window": "30d"})
        assert m.status_code == 200, m.text
        # a file outside the folders the server reads from (its runs folder's parent, its working folder) is
        # refused before it is opened, links and .. resolved first
        outside = tmp_path_factory.mktemp("elsewhere") / "after.parquet"
        shutil.copy(data, outside)
        link = tmp_path / "link.parquet"
        link.symlink_to(outside)
        for name in (str(outside), str(link), str(runs / ".." / ".." / outside.parent.name / "after.parquet")):
            refused = c.post("/campaigns/api/measure", json={"transactions": name})
            assert refused.status_code == 400, refused.text
            assert refused.json()["detail"].startswith(f"{name} is outside the folders this server reads files from (")
            assert refused.json()["detail"].endswith("add its folder to RFMSEG_DATA_DIRS (separated by ':')")
        # ... and read once its folder is one of RFMSEG_DATA_DIRS
        opened = Settings.from_env({"RFMSEG_DATA_DIRS": f"{tmp_path}:{outside.parent}"}, runs_dir=runs)
        assert opened.data_dirs == (tmp_path, outside.parent)
        assert opened.readable(str(link)) == outside.resolve()
        assert m.json()["by_segment"]["At-Risk"]["effect"] is True
        listed = c.get("/campaigns").json()
        assert "api" in [x["name"] for x in listed["campaigns"]] and listed["count"] >= 1
        one = c.get("/campaigns/api").json()
        assert one["measured"]["by_segment"]["At-Risk"]["uplift"] == m.json()["by_segment"]["At-Risk"]["uplift"]
        assert c.get("/campaigns/nope").status_code == 404
        size = c.get("/campaigns/size", params={"baseline": 0.1, "uplift": 0.03, "holdout": "10%"}).json()
        assert size["customers_needed"] == 9_862
        assert c.get("/campaigns/size", params={"baseline": 2, "uplift": 0.03}).status_code == 422
        # every campaign route's answer validates against its published schema
        import jsonschema

        spec = c.get("/openapi.json").json()
        answers = {
            ("get", "/campaigns"): listed,
            ("get", "/campaigns/{name}"): one,
            ("get", "/campaigns/size"): size,
            ("post", "/campaigns/{name}/measure"): m.json(),
        }
        for (method, path), body in answers.items():
            ok = "201" if method == "post" and path == "/campaigns" else "200"
            schema = spec["paths"][path][method]["responses"][ok]["content"]["application/json"]["schema"]
            jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
        bad = c.post("/campaigns", json={"name": "bad", "segments": ["Nobody"]})
        assert bad.status_code == 404 and "no segment 'Nobody'" in bad.json()["detail"]
    answer = q.intervention_effect(runs, segment="At-Risk", to=["Loyal Buyers"], kind="win_back")
    measured = {e["campaign"]: e for e in answer["experimental"]}
    assert measured["api"]["conversion_effect"] is True
    assert measured["api"]["moved_ci"] is not None  # from the run after the window
    assert answer["answer"].startswith("Measured with a randomised holdout (experimental")
    assert "Observational" in answer["answer"]

    async def go() -> None:
        async with connect(runs) as s:
            listed = await s.call_tool("campaigns", {"name": "api"})  # (call() takes `name` itself)
            assert not listed.is_error
            assert listed.structured_content["campaigns"][0]["measured"]["all"]["effect"] is True
            sized = await call(s, "campaign_size", baseline=0.1, uplift=0.03, holdout="10%")
            assert sized["customers_needed"] == 9_862

    asyncio.run(go())


def test_over_many_simulated_campaigns_the_intervals_cover_the_known_effect(base) -> None:
    """300 seeds of the simulator's campaign on one plan (At-Risk: +10 points, Occasional: no effect): each
    segment's 95 % interval holds its true uplift 92-98 % of the time, and no effect is claimed for
    Occasional buyers in more than 8 % of the seeds."""
    runs, _ = base
    plan = _plan(runs, "many-seeds", holdout="20%")
    members = pq.read_table(Path(plan["folder"]) / "members.parquet")
    truth = {"At-Risk": 0.10, "Occasional": 0.0}
    ids = members.column("customer_id")
    covered = {s: 0 for s in truth}
    claimed = 0
    for seed in range(300):
        orders = play_campaign(members, SEND, 30, {"At-Risk": 0.05, "Occasional": 0.10}, truth, seed=seed)
        converted = pc.is_in(ids, orders.column("customer_id")).to_numpy(zero_copy_only=False)
        for s, effect in truth.items():
            seg = members.column("segment").to_numpy(zero_copy_only=False) == s
            treated = members.column("group").to_numpy(zero_copy_only=False) == "treatment"
            u = measure(converted[seg & treated], converted[seg & ~treated], np.zeros(1), np.zeros(1), seed=seed)
            covered[s] += u.ci[0] <= effect <= u.ci[1]
            claimed += s == "Occasional" and u.effect
    assert all(0.92 <= n / 300 <= 0.98 for n in covered.values()), covered
    assert claimed / 300 <= 0.08, claimed


# ------------------------------------------------------------------------------------------------ bad rows
def _bad_rows_data(runs: Path, history: pa.Table, name: str, folder: Path) -> tuple[Path, Path, int]:
    """Campaign ``name`` planned, and its data through the window's end written twice into ``folder``: clean,
    and with two bad rows in the window at rows 11 and 12 (an order with no customer id; a treated member's
    line with a negative amount). The two paths, and the rows of the clean file."""
    plan = _plan(runs, name, holdout="30%")
    members = pq.read_table(Path(plan["folder"]) / "members.parquet")
    window = play_campaign(members, SEND, 30, {"At-Risk": 0.05, "Occasional": 0.10}, {"At-Risk": 0.20}, seed=5)
    last = pa.table(
        {"customer_id": ["ZZZ"], "order_id": ["Z1"], "order_date": [SEND + timedelta(days=30)], "amount": [1.0]}
    )
    clean = pa.concat_tables([history, window.cast(history.schema), last.cast(history.schema)])
    treated = members.filter(pc.equal(members.column("group"), "treatment")).column("customer_id")[0].as_py()
    bad = pa.table(
        {
            "customer_id": [None, treated],
            "order_id": ["BAD1", "BAD2"],
            "order_date": [SEND + timedelta(days=3), SEND + timedelta(days=4)],
            "amount": [50.0, -25.0],
        }
    ).cast(history.schema)
    good, broken = folder / f"{name}-clean.parquet", folder / f"{name}-bad.parquet"
    pq.write_table(clean, good)
    pq.write_table(pa.concat_tables([clean.slice(0, 10), bad, clean.slice(10)]), broken)
    return good, broken, clean.num_rows


def _figures(m: dict) -> dict:
    """The measured numbers of a measure (what the rows used decide), without when it was measured."""
    return {k: m[k] for k in ("by_segment", "all", "window_end")}


def test_a_bad_row_stops_the_measure_naming_the_option_that_quarantines_it(base, tmp_path: Path, cli) -> None:
    runs, history = base
    _, broken, _ = _bad_rows_data(runs, history, "refused-rows", tmp_path)
    folder = campaign.campaigns_dir(runs) / "refused-rows"
    r = cli("campaign", "measure", "refused-rows", broken, "--window", "30d", "--runs-dir", runs)
    assert r.code == 2 and r.out == "", r.out
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "missing_customer_id" in r.err and "pass --bad-rows quarantine to set such rows aside" in r.err
    assert not (folder / "measure.json").exists() and not (folder / campaign.QUARANTINE_FILE).exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    # the option it names exists, and only its two values are taken
    other = cli("campaign", "measure", "refused-rows", broken, "--bad-rows", "skip", "--runs-dir", runs)
    assert other.code == 2 and "--bad-rows 'skip' is not allowed" in other.err and "error or quarantine" in other.err


def test_with_quarantine_the_bad_rows_are_set_aside_and_the_rest_is_measured(base, tmp_path: Path, cli) -> None:
    runs, history = base
    good, broken, n = _bad_rows_data(runs, history, "quarantined-rows", tmp_path)
    folder = campaign.campaigns_dir(runs) / "quarantined-rows"
    clean = cli("campaign", "measure", "quarantined-rows", good, "--window", "30d", "--runs-dir", runs, "--json")
    assert clean.code == 0, clean.err
    assert clean.json()["rows"] == {"read": n, "used": n, "quarantined": {}}
    assert pq.read_table(folder / campaign.QUARANTINE_FILE).num_rows == 0
    args = ("campaign", "measure", "quarantined-rows", broken, "--window", "30d", "--runs-dir", runs)
    r = cli(*args, "--bad-rows", "quarantine", "--json")
    assert r.code == 0, r.err
    m = r.json()
    # every row read is used or quarantined with its reason, and the measure is the clean file's
    assert m["rows"] == {"read": n + 2, "used": n, "quarantined": {"missing_customer_id": 1, "negative_amount": 1}}
    assert m["bad_rows"] == "quarantine" and m["quarantine"] == str(folder / campaign.QUARANTINE_FILE)
    assert _figures(m) == _figures(clean.json())
    held = pq.read_table(folder / campaign.QUARANTINE_FILE).to_pylist()
    assert [(x["row_number"], x["reason"], x["order_id"]) for x in held] == [
        (11, "missing_customer_id", "BAD1"),
        (12, "negative_amount", "BAD2"),
    ]
    stored = json.loads((folder / "measure.json").read_text())
    assert stored["rows"] == m["rows"] and _figures(stored) == _figures(m)
    text = cli(*args, "--bad-rows", "quarantine")
    assert text.code == 0, text.err
    assert (
        f"Rows: {n + 2:,} read, {n:,} used, 2 quarantined (missing_customer_id 1, negative_amount 1); "
        f"set aside in {folder / campaign.QUARANTINE_FILE}" in text.out
    )
    # the Python function and the MCP tool's question take the same choice
    assert campaign.measure("quarantined-rows", broken, runs_dir=runs, bad_rows="quarantine")["rows"] == m["rows"]
    tool = q.campaign_measure(runs, name="quarantined-rows", transactions=str(broken), bad_rows="quarantine")
    assert tool["rows"] == m["rows"] and _figures(tool) == _figures(m)
    with pytest.raises(InputError, match="pass bad_rows quarantine to set such rows aside"):
        campaign.measure("quarantined-rows", broken, runs_dir=runs)


def test_an_unknown_campaign_names_the_fix(base, tmp_path: Path, cli) -> None:
    runs, history = base
    data = tmp_path / "history.parquet"
    pq.write_table(history, data)
    _plan(runs, "known")
    r = cli("campaign", "measure", "nocamp", data, "--window", "30d", "--runs-dir", runs)
    assert r.code == 2 and r.out == "" and len(r.err.strip().splitlines()) == 1, r.err
    assert "no campaign 'nocamp'" in r.err and "measure one of the planned campaigns (" in r.err
    assert "`rfmseg campaign list` shows them" in r.err
    assert "plan it first with `rfmseg campaign plan nocamp --segment SEGMENT --action ACTION`" in r.err
    # a registry with no campaign at all says so, and how to plan one; the file is not looked for first
    empty = cli("campaign", "measure", "nocamp", tmp_path / "missing.parquet", "--runs-dir", tmp_path / "none")
    assert empty.code == 2 and len(empty.err.strip().splitlines()) == 1, empty.err
    assert "no campaign 'nocamp'" in empty.err and "none is planned yet" in empty.err
    assert "plan it first with `rfmseg campaign plan nocamp --segment SEGMENT --action ACTION`" in empty.err
    # a name no campaign can have is not looked up outside the campaigns folder
    outside = cli("campaign", "measure", "../known", data, "--runs-dir", runs)
    assert outside.code == 2 and "no campaign '../known'" in outside.err
    assert "`rfmseg campaign plan NAME --segment SEGMENT --action ACTION`" in outside.err


def test_the_api_measure_quarantines_bad_rows_and_answers_404_for_an_unknown_campaign(
    base, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from fastapi.testclient import TestClient

    from rfmseg.service import Settings, create_app

    runs, history = base
    good, broken, n = _bad_rows_data(runs, history, "api-rows", tmp_path)
    folder = campaign.campaigns_dir(runs) / "api-rows"
    settings = Settings(runs_dir=runs, store_url=f"sqlite:///{tmp_path / 'p.db'}", data_dirs=(tmp_path,))
    with TestClient(create_app(settings)) as c:
        url = "/campaigns/api-rows/measure"
        refused = c.post(url, json={"transactions": str(broken), "window": "30d"})
        assert refused.status_code == 400, refused.text
        detail = refused.json()["detail"]
        assert "missing_customer_id" in detail and "pass bad_rows quarantine to set such rows aside" in detail
        assert not (folder / "measure.json").exists()
        clean = c.post(url, json={"transactions": str(good), "window": "30d"})
        assert clean.status_code == 200, clean.text
        m = c.post(url, json={"transactions": str(broken), "window": "30d", "bad_rows": "quarantine"})
        assert m.status_code == 200, m.text
        body = m.json()
        assert body["rows"] == {
            "read": n + 2,
            "used": n,
            "quarantined": {"missing_customer_id": 1, "negative_amount": 1},
        }
        assert body["quarantine"] == str(folder / campaign.QUARANTINE_FILE)
        assert pq.read_table(folder / campaign.QUARANTINE_FILE).column("reason").to_pylist() == [
            "missing_customer_id",
            "negative_amount",
        ]
        assert _figures(body) == _figures(clean.json())
        # the answer validates against the published schema, which documents bad_rows
        import jsonschema

        spec = c.get("/openapi.json").json()
        op = spec["paths"]["/campaigns/{name}/measure"]["post"]
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
        assert "bad_rows" in spec["components"]["schemas"]["CampaignMeasureBody"]["properties"]
        wrong = c.post(url, json={"transactions": str(broken), "bad_rows": "skip"})
        assert wrong.status_code == 422 and "bad_rows" in wrong.json()["detail"], wrong.text
        # an unknown campaign is a 404 naming the fix, before the file (even one outside the folders) is judged
        outside = tmp_path_factory.mktemp("elsewhere") / "after.parquet"
        for path in (outside, good):
            unknown = c.post("/campaigns/nocamp/measure", json={"transactions": str(path)})
            assert unknown.status_code == 404, unknown.text
            assert "no campaign 'nocamp'" in unknown.json()["detail"]
            assert "`rfmseg campaign plan nocamp --segment SEGMENT --action ACTION`" in unknown.json()["detail"]
        # a known campaign with a file outside the folders is still refused about the path
        assert c.post(url, json={"transactions": str(outside)}).status_code == 400
