"""The onboarding path of a SaaS user (rfmseg ask onboarding, the MCP tool onboarding_path) on the saas preset's
sample: every segment gets its path, each usage signal is checked on the user's own figures, recomputed here
with pandas from the sample's rows, and a run of another preset is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rfmseg import questions as q
from rfmseg.datasets import study
from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.jobs.run import segment
from rfmseg.presets import PRESETS, get_preset
from rfmseg.presets.saas import ONBOARDING, VOCABULARY
from test_mcp import call, connect, error, jsonable, run

SAAS = get_preset("saas")
LABELS = {"recency_days": "days since last login", "frequency": "sessions", "monetary": "features used"}


@pytest.fixture(scope="module")
def saas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A run of the saas sample; the users' figures and features recomputed with pandas from its rows."""
    runs = tmp_path_factory.mktemp("saas") / "runs"
    result = segment(SAAS.sample_path(), preset="saas", runs_dir=runs)
    rows = pd.read_csv(SAAS.sample_path(), parse_dates=["last_used"])
    as_of = pd.Timestamp(result.summary["as_of"])
    users = rows.groupby("user_id").agg(
        last=("last_used", "max"), frequency=("session_count", "sum"), monetary=("feature_name", "nunique")
    )
    users["recency_days"] = (as_of - users["last"].dt.normalize()).dt.days
    users["depth"] = users["frequency"] / users["monetary"]
    labels = result.assignments.select(["customer_id", "segment"]).to_pandas().set_index("customer_id")["segment"]
    users["segment"] = labels.reindex(users.index)
    assert users["segment"].notna().all() and len(users) == 400
    return runs, users, rows


def fig(x: float) -> float:
    return round(float(x), 1)


def shown(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def counted(v: float, measure: str) -> str:
    """How the answer quotes a figure: '72 days since last login', '1 feature used', '4.3 sessions per feature'."""
    label = {**LABELS, "depth": "sessions per feature"}[measure]
    if v == 1:
        first, _, rest = label.partition(" ")
        label = f"{first.removesuffix('s')} {rest}".strip()
    return f"{shown(v)} {label}"


def picks(users: pd.DataFrame) -> list[str]:
    """Per segment: its first and last user by id, and the one with the fewest features."""
    out: list[str] = []
    for _, g in users.groupby("segment"):
        out += [g.index.min(), g.index.max(), g.sort_values(["monetary", "frequency"]).index[0]]
    return sorted(set(out))


# ------------------------------------------------------------------------------------------------ the answer
def test_the_saas_preset_has_a_path_for_every_segment_it_can_name() -> None:
    assert sorted(p.segment for p in ONBOARDING.paths) == sorted(t.name for t in VOCABULARY.types)
    assert all(p.name and p.what and p.signals for p in ONBOARDING.paths)
    assert [n for n in PRESETS if get_preset(n).onboarding is not None] == ["saas"]


def test_the_docs_list_the_paths_of_the_preset() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "presets.md").read_text(encoding="utf-8")
    start = docs.index("| segment | path | what it is | usage signals |")
    table = []
    for line in docs[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    assert [row[:3] for row in table] == [[p.segment, p.name, p.what] for p in ONBOARDING.paths]
    for row, path in zip(table, ONBOARDING.paths, strict=True):
        assert [s.split(" (")[0] for s in row[3].split("; ")] == [s.says for s in path.signals]
        assert [s.rsplit(" ", 1)[1].rstrip(")") for s in row[3].split("; ")] == [s.side for s in path.signals]


def test_every_segment_gets_its_path_with_the_users_own_figures(saas) -> None:
    runs, users, rows = saas
    segments = sorted(users["segment"].unique())
    assert len(segments) == 4
    medians_all = users[["recency_days", "frequency", "monetary", "depth"]].median()
    seen, verdicts = set(), set()
    for cid in picks(users):
        me = users.loc[cid]
        name = me["segment"]
        path = ONBOARDING.path_of(name)
        assert path is not None
        r = q.onboarding_path(runs, cid)
        seen.add(name)
        assert (r["segment"], r["path"]["name"], r["path"]["what"]) == (name, path.name, path.what)
        assert r["answer"].startswith(f"{cid} ({name}) fits the {path.name} path: {path.what}.")
        peers = users[users["segment"] == name]
        for m in ("recency_days", "frequency", "monetary", "depth"):
            assert r["usage_profile"][m] == pytest.approx(fig(me[m]))
            assert r["segment_median"][m] == pytest.approx(fig(peers[m].median()))
            assert r["median_user"][m] == pytest.approx(fig(medians_all[m]))
        assert r["segment_customers"] == len(peers)
        assert [s["signal"] for s in r["signals"]] == [s.says for s in path.signals]
        for s, want in zip(r["signals"], path.signals, strict=True):
            v, all_ = fig(me[s["measure"]]), fig(medians_all[s["measure"]])
            assert s["holds"] == (v < all_ if want.side == "low" else v > all_)
            quoted = f"{'shows' if s['holds'] else 'does not show'} {want.says}: {counted(v, s['measure'])}, "
            assert quoted in r["answer"] and s["text"] in r["answer"]
            assert f"the median user's {shown(all_)}" in s["text"]
            assert f"the typical {name} member's {shown(fig(peers[s['measure']].median()))}" in s["text"]
        verdicts |= {s["holds"] for s in r["signals"]}
        assert r["signals_shown"] == sum(s["holds"] for s in r["signals"])
        assert f"({r['signals_shown']} of {len(path.signals)} shown)" in r["answer"]
        # the features: the user's own, and the three most used in the segment that the user has not tried
        mine = sorted(rows.loc[rows["user_id"] == cid, "feature_name"].unique())
        share = rows[rows["user_id"].isin(peers.index)].groupby("feature_name")["user_id"].nunique() / len(peers)
        untried = sorted(((f, s) for f, s in share.items() if f not in mine), key=lambda x: (-x[1], x[0]))[:3]
        assert r["features"]["used"] == mine and r["features_note"] is None
        assert [(x["feature"], x["share_of_segment"]) for x in r["features"]["next"]] == [
            (f, pytest.approx(s, abs=1e-4)) for f, s in untried
        ]
        assert f"Features used: {', '.join(mine)}." in r["answer"]
        assert f"{untried[0][0]} ({untried[0][1]:.0%} of {name} use it)" in r["answer"]
    assert seen == set(segments)
    assert verdicts == {True, False}  # users who show a signal and users who do not


def test_the_cli_prints_the_answer_and_the_signals(saas, cli) -> None:
    runs, users, _ = saas
    cid = picks(users)[0]
    r = cli("ask", "onboarding", cid, "--runs-dir", runs)
    assert r.code == 0, r.err
    want = q.onboarding_path(runs, cid)
    assert want["answer"] in " ".join(r.out.split())  # wrapped at the terminal's width
    for s in want["signals"]:
        assert s["signal"] in r.out
    assert r.err == ""


def test_a_run_of_another_preset_is_refused_in_one_line(tmp_path: Path, cli) -> None:
    runs = tmp_path / "runs"
    segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs)
    with pytest.raises(ParameterError, match="onboarding paths apply to product-usage runs of the saas preset"):
        q.onboarding_path(runs, "C087")
    r = cli("ask", "onboarding", "C087", "--runs-dir", runs)
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1
    assert "used no preset" in r.err and "rfmseg run --preset saas FILE" in r.err
    eco = tmp_path / "eco"
    segment(get_preset("ecommerce").sample_path(), preset="ecommerce", runs_dir=eco)
    r = cli("ask", "onboarding", "C001", "--runs-dir", eco)
    assert r.code == 2 and r.err.count("\n") == 1 and "used the ecommerce preset" in r.err


def test_unknown_user_and_missing_usage_file_are_one_line(saas, cli, tmp_path: Path) -> None:
    runs, _, _ = saas
    with pytest.raises(NotFoundError, match="unknown customer 'NOPE'"):
        q.onboarding_path(runs, "NOPE")
    r = cli("ask", "onboarding", "U0001", "--runs-dir", runs, "--usage", tmp_path / "gone.csv")
    assert r.code == 2 and r.err.count("\n") == 1 and "give the file the run read with --usage" in r.err


def test_features_are_left_out_when_the_file_changed_and_read_from_the_file_given(tmp_path: Path, saas) -> None:
    _, users, _ = saas
    usage = tmp_path / "usage.csv"
    shutil.copy(SAAS.sample_path(), usage)
    runs = tmp_path / "runs"
    segment(usage, preset="saas", runs_dir=runs)
    cid = users.index[0]
    assert q.onboarding_path(runs, cid)["features"] is not None
    with usage.open("a") as f:  # one more usage record for another feature: no longer the file the run read
        f.write(f"{cid},a_new_feature,2025-06-29 10:00:00,1\n")
    r = q.onboarding_path(runs, cid)
    assert r["features"] is None and r["features_note"].endswith(
        "changed since the run: pass the usage file the run read to list the features"
    )
    assert "Features used" not in r["answer"]
    # the changed file given explicitly: its count for the user is not the run's, so no list either
    r = q.onboarding_path(runs, cid, usage=str(usage))
    assert r["features"] is None and "where the run counted" in r["features_note"]
    # the original file given explicitly: the features again
    r = q.onboarding_path(runs, cid, usage=str(SAAS.sample_path()))
    assert r["features"] is not None and "a_new_feature" not in r["features"]["used"]


def test_the_mcp_tool_answers_as_the_cli_does(saas, cli) -> None:
    runs, users, _ = saas
    cids = picks(users)[:2]
    printed = {cid: cli("ask", "onboarding", cid, "--runs-dir", runs, "--json").json() for cid in cids}

    async def go() -> None:
        async with connect(runs) as s:
            tool = next(t for t in (await s.list_tools()).tools if t.name == "onboarding_path")
            assert set(tool.input_schema["properties"]) == {"customer_id", "run", "usage"}
            for cid in cids:
                assert await call(s, "onboarding_path", customer_id=cid) == printed[cid]
            assert "unknown customer 'NOPE'" in await error(s, "onboarding_path", customer_id="NOPE")

    run(go)
    assert printed[cids[0]] == jsonable(q.onboarding_path(runs, cids[0]))
    assert json.dumps(printed[cids[0]])  # JSON all through
