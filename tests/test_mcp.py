"""The MCP server as a client sees it: started over stdio (and streamable HTTP) with the official SDK's
client, every tool, resource and prompt called against the study runs and the simulated 12-week history."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any, get_args

import duckdb
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from rfmseg import questions as q
from rfmseg.agent.mcp_server import QUESTION_TOOLS, SERVER_BOUND, build_server
from rfmseg.datasets import study
from rfmseg.jobs.run import segment
from rfmseg.stores import open_store
from runids import unique_prefix
from servers import free_port, wait_until_listening

TOOLS = {
    "get_customer_segment",
    "list_segments",
    "segment_profile",
    "find_customers",
    "transitions",
    "warnings",
    "get_context",
    "recommend_segments_for_campaign",
    "rank_discount_responders",
    "customers_without_touch",
    "trending_toward",
    "recent_changes",
    "recency_increase",
    "customer_trajectory",
    "intervention_effect",
    "onboarding_path",
    "campaigns",
    "campaign_plan",
    "campaign_measure",
    "campaign_size",
    "changes_since",
}
TEMPLATES = {"rfmseg://runs/{run_id}/summary", "rfmseg://segments/{segment}", "rfmseg://context/{target}"}
PROMPTS = {"segment_subject_lines", "win_back_email"}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("mcp-study") / "runs"
    for d in ("2024-12-16", "2024-12-31"):
        segment(study.path(study.ORDERS_FILE), as_of=d, runs_dir=runs, bad_rows="quarantine")
    return runs


@asynccontextmanager
async def connect(runs_dir: Path, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """`python -m rfmseg mcp --runs-dir DIR` as a subprocess, over stdio, with an initialised session."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "rfmseg", "mcp", "--runs-dir", str(runs_dir)], env=env
    )
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(fn())


async def call(s: ClientSession, name: str, **args: Any) -> dict[str, Any]:
    """A tool result that must succeed: its structured content."""
    r = await s.call_tool(name, args)
    assert not r.is_error, (name, r.content[0].text if r.content else r)
    assert json.loads(r.content[0].text) == r.structured_content  # the text form says the same
    return r.structured_content


async def error(s: ClientSession, name: str, **args: Any) -> str:
    """A tool result that must be a tool error: its text."""
    r = await s.call_tool(name, args)
    assert r.is_error, (name, r.structured_content)
    return r.content[0].text


def jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d, default=str))


def latest_parquet(runs: Path) -> str:
    metas = []
    for p in runs.iterdir():
        if (p / "manifest.json").exists():
            m = json.loads((p / "manifest.json").read_text())
            metas.append((date.fromisoformat(m["as_of"]), m["created"], p))
    return f"'{max(metas)[2] / 'assignments.parquet'}'"


# ------------------------------------------------------------------------------------------------ study


def test_every_tool_resource_and_prompt_on_the_study(study_runs: Path) -> None:
    latest = latest_parquet(study_runs)
    sizes = dict(duckdb.sql(f"SELECT segment, count(*) FROM {latest} GROUP BY 1").fetchall())
    revenue = dict(duckdb.sql(f"SELECT segment, sum(monetary) FROM {latest} GROUP BY 1").fetchall())

    async def go() -> None:
        async with connect(study_runs) as s:
            assert {t.name for t in (await s.list_tools()).tools} == TOOLS
            for t in (await s.list_tools()).tools:
                assert t.annotations.read_only_hint is True and t.description
            finder = next(t for t in (await s.list_tools()).tools if t.name == "find_customers")
            assert finder.input_schema["properties"]["sort_by"]["enum"] == list(get_args(q.SortField))

            c = await call(s, "get_customer_segment", customer_id="C087")
            assert (c["segment"], c["recency_days"], c["frequency"], c["monetary"]) == ("At-Risk", 130, 8, 3800.0)
            assert c["source"] == "run" and "Win-back" in c["action"]
            text = await error(s, "get_customer_segment", customer_id="NOPE")
            assert "unknown customer 'NOPE'" in text and "ids look like C001" in text
            # the server is still alive after the error
            segs = await call(s, "list_segments")
            assert {x["name"]: x["customers"] for x in segs["segments"]} == sizes
            assert {"name": "Champions", "customers": 30}.items() <= segs["segments"][0].items()

            prof = await call(s, "segment_profile", segment="champions", examples=3)
            assert prof["profile"]["revenue"] == pytest.approx(revenue["Champions"]) == 218_300
            assert len(prof["examples"]) == 3
            text = await error(s, "segment_profile", segment="Whales")
            assert "unknown segment 'Whales'" in text and "Champions, At-Risk, Loyal Buyers, Occasional" in text
            assert "greater than or equal to 1" in await error(s, "find_customers", limit=0)

            found = await call(s, "find_customers", segment="At-Risk", recency_min=150, sort_by="recency_days")
            expected = duckdb.sql(
                f"SELECT customer_id FROM {latest} WHERE segment = 'At-Risk' AND recency_days >= 150 "
                "ORDER BY recency_days DESC, customer_id"
            ).fetchall()
            assert [x["customer_id"] for x in found["customers"]] == [e[0] for e in expected][:20]
            assert found["matched"] == len(expected)

            t = await call(s, "transitions")
            assert t["to_as_of"] == "2024-12-31" and t["from_as_of"] == "2024-12-16"
            assert sum(map(sum, t["customers"])) == 200
            w = await call(s, "warnings")
            assert {x["id"] for x in w["warnings"]} >= {"champions_to_loyal", "overdue", "segment_changed"}
            assert next(x for x in w["warnings"] if x["id"] == "overdue")["aliases"] == ["recency_jump"]

            ctx = await call(s, "get_context", target="C087")
            assert ctx["kind"] == "customer" and ctx["segment"] == "At-Risk"
            md = await call(s, "get_context", target="at-risk", format="markdown")
            assert md["markdown"].startswith("# Segment: At-Risk")

            rec = await call(s, "recommend_segments_for_campaign", kind="loyalty_offer")
            assert rec["recommended"] == "Champions"
            assert (await call(s, "recommend_segments_for_campaign", kind="win_back"))["recommended"] == "At-Risk"
            assert "known kinds" in await error(s, "recommend_segments_for_campaign", kind="telepathy")
            disc = await call(s, "rank_discount_responders", limit=5)
            assert disc == jsonable(q.discount_candidates(study_runs, limit=5))
            nc = await call(s, "customers_without_touch")
            assert nc["not_contacted"] == 30 and nc["never_contacted"] == 30  # no touches imported here
            tr = await call(s, "trending_toward", runs_back=2)
            assert tr == jsonable(q.trending_toward(study_runs, runs=2))
            ch = await call(s, "recent_changes", days=15)
            assert ch["segment_customers"] == sizes["At-Risk"] and ch["gap_days"] == 15
            ri = await call(s, "recency_increase")
            assert ri == jsonable(q.recency_jump(study_runs))
            traj = await call(s, "customer_trajectory", customer_id="C087")
            assert [p["recency_days"] for p in traj["points"]] == [115, 130]
            assert set(traj["trend"]) == {"Champions", "Occasional"}
            iv = await call(s, "intervention_effect")
            assert iv["answer"].startswith("No touches were sent") and iv["best"] is None
            text = await error(s, "changes_since")  # nothing was published from these runs
            assert f"no profile store to read: none is configured and {study_runs / 'profiles.db'} does not" in text
            assert [(x["kind"], x["contacted"], x["too_thin"]) for x in iv["interventions"]] == [("any", 0, True)]

            uris = {str(r.uri) for r in (await s.list_resources()).resources}
            assert uris == {"rfmseg://summary/latest"}
            assert {t.uri_template for t in (await s.list_resource_templates()).resource_templates} == TEMPLATES
            summary = json.loads((await s.read_resource("rfmseg://summary/latest")).contents[0].text)
            assert summary["n_customers"] == 200 and summary["as_of"] == "2024-12-31"
            same = json.loads((await s.read_resource("rfmseg://runs/latest/summary")).contents[0].text)
            assert same == summary
            at_risk = json.loads((await s.read_resource("rfmseg://segments/at-risk")).contents[0].text)
            assert at_risk["segment"] == "At-Risk" and at_risk["profile"]["customers"] == sizes["At-Risk"]
            loyal = json.loads((await s.read_resource("rfmseg://segments/Loyal%20Buyers")).contents[0].text)
            assert loyal["profile"]["customers"] == sizes["Loyal Buyers"]
            card = (await s.read_resource("rfmseg://context/C087")).contents[0].text
            assert card.startswith("# Customer: C087") and "At-Risk" in card
            with pytest.raises(MCPError, match="unknown segment 'whales'"):
                await s.read_resource("rfmseg://segments/whales")

            assert {p.name for p in (await s.list_prompts()).prompts} == PROMPTS
            lines = (await s.get_prompt("segment_subject_lines", {"segment": "Champions", "count": "3"})).messages
            body = lines[0].content.text
            assert "Write 3 email subject lines" in body and '"Champions"' in body
            assert "Early access to new products" in body and "30 customers" in body
            typical = prof["examples"][0]["customer_id"]
            assert typical in body
            email = (await s.get_prompt("win_back_email", {"customer_id": "C087"})).messages[0].content.text
            assert '"At-Risk"' in email and "C087" in email and "130 days" in email
            with pytest.raises(MCPError, match="unknown segment 'Whales'"):
                await s.get_prompt("win_back_email", {"segment": "Whales"})
            with pytest.raises(MCPError, match="count 0 should be between 1 and 50"):
                await s.get_prompt("segment_subject_lines", {"segment": "Champions", "count": "0"})
            assert (await call(s, "get_customer_segment", customer_id="C001"))["segment"] == "Champions"

    run(go)


def test_question_tools_are_the_questions_own_signatures_and_docstrings(tmp_path: Path) -> None:
    """Each question tool publishes its question's parameters (without runs_dir and the store, which the server
    binds; renamed where the server says), defaults and docstring: nothing is declared twice."""
    tools = {t.name: t for t in asyncio.run(build_server(tmp_path).list_tools())}
    assert set(QUESTION_TOOLS) | {"get_customer_segment", "get_context"} == set(tools) == TOOLS
    for name, (question, rename) in QUESTION_TOOLS.items():
        params = {p.name: p for p in inspect.signature(question).parameters.values() if p.name not in SERVER_BOUND}
        schema = tools[name].input_schema
        assert list(schema["properties"]) == [rename.get(p, p) for p in params], name
        for p in params.values():
            prop = schema["properties"][rename.get(p.name, p.name)]
            if p.default is inspect.Parameter.empty:
                assert rename.get(p.name, p.name) in schema["required"], (name, p.name)
            else:
                assert prop.get("default") == jsonable(p.default), (name, p.name)
        assert tools[name].description == " ".join(inspect.getdoc(question).split()), name
    assert tools["find_customers"].input_schema["properties"]["limit"]["maximum"] == 1000
    assert list(tools["changes_since"].input_schema["properties"]) == ["after", "limit"]  # never the store


# ------------------------------------------------------------------------------------------------ 12 weeks


def test_every_tool_on_the_simulated_twelve_weeks(sim_runs: Path) -> None:
    latest = latest_parquet(sim_runs)
    first_id = duckdb.sql(f"SELECT customer_id, segment FROM {latest} ORDER BY customer_id LIMIT 1").fetchall()[0]

    async def go() -> None:
        async with connect(sim_runs) as s:
            c = await call(s, "get_customer_segment", customer_id=first_id[0])
            assert c["source"] == "store" and c["segment"] == first_id[1]
            assert "previous_segment" in c and "segment_since" in c
            segs = await call(s, "list_segments")
            assert segs["as_of"] == "2024-03-31"

            feed, after = [], None  # the store's change feed, page by page, from the saved `next`
            while True:
                page = await call(s, "changes_since", limit=300, **({"after": after} if after else {}))
                assert page["after"] == after and page["count"] == len(page["items"]) <= 300
                feed += page["items"]
                after = page["next"]
                if not page["more"]:
                    break
            with open_store(f"sqlite:///{sim_runs / 'profiles.db'}") as store:
                assert feed == store.changes(None, 100_000).rows  # the week-12 publish: everyone new
                assert len(feed) == store.count() > 600 and {c["reason"] for c in feed} == {"new"}
            assert page["answer"].startswith(f"{len(feed) % 300 or 300} changes after cursor ")
            assert (await call(s, "changes_since", after=after))["items"] == []
            assert "is not a cursor of the change feed" in await error(s, "changes_since", after="nope")
            assert "less than or equal to 10000" in await error(s, "changes_since", limit=10_001)
            assert (await call(s, "segment_profile", segment="Loyal Buyers"))["segment"] == "Loyal Buyers"
            big = await call(s, "find_customers", monetary_min=5000, sort_by="aov", limit=5)
            assert all(x["monetary"] >= 5000 for x in big["customers"])
            assert [x["aov"] for x in big["customers"]] == sorted((x["aov"] for x in big["customers"]), reverse=True)

            t = await call(s, "transitions", from_segment="Occasional", to_segment="Loyal Buyers", limit=5)
            assert len(t["moves"]) <= 5 and all(m["from"] == "Occasional" for m in t["moves"])
            w = await call(s, "warnings", limit=3)
            assert all(len(x["customers"]) <= 3 for x in w["warnings"])
            ctx = await call(s, "get_context", target=first_id[0])
            assert ctx["segment"] == first_id[1] and len(ctx["history"]) == 6

            for tool, direct in (
                ("recommend_segments_for_campaign", lambda: q.campaign_segments(sim_runs, "discount")),
                ("rank_discount_responders", lambda: q.discount_candidates(sim_runs, segment="Occasional")),
                ("trending_toward", lambda: q.trending_toward(sim_runs)),
                ("recent_changes", lambda: q.recent_changes(sim_runs, segment="Loyal Buyers")),
                ("recency_increase", lambda: q.recency_jump(sim_runs)),
                ("intervention_effect", lambda: q.intervention_effect(sim_runs)),
            ):
                args = {
                    "recommend_segments_for_campaign": {"kind": "discount"},
                    "rank_discount_responders": {"segment": "Occasional"},
                    "recent_changes": {"segment": "Loyal Buyers"},
                }.get(tool, {})
                assert await call(s, tool, **args) == jsonable(direct()), tool
            nc = await call(s, "customers_without_touch", limit=1000)
            assert (
                nc == jsonable(q.not_contacted(sim_runs, limit=1000)) and 0 < nc["contacted"] < nc["segment_customers"]
            )
            traj = await call(s, "customer_trajectory", customer_id=first_id[0], targets=["Loyal Buyers", "At-Risk"])
            assert len(traj["points"]) == 5 and set(traj["trend"]) == {"Loyal Buyers", "At-Risk"}
            iv = await call(s, "intervention_effect")
            assert iv["best"] == "discount"
            thin = await call(s, "intervention_effect", kind="discount", min_contacted=10_000)
            assert thin["answer"].startswith("The data is too thin to say")
            assert "greater than or equal to 2" in await error(s, "trending_toward", runs_back=1)

            segment_json = json.loads((await s.read_resource("rfmseg://segments/occasional")).contents[0].text)
            assert segment_json["movement"]["from_as_of"] == "2024-03-24"
            run_id = segs["run_id"]
            summary = f"rfmseg://runs/{unique_prefix(run_id, sim_runs)}/summary"
            by_id = json.loads((await s.read_resource(summary)).contents[0].text)
            assert by_id["run_id"] == run_id
            prompt = (await s.get_prompt("segment_subject_lines", {"segment": "Occasional"})).messages[0]
            assert "Write 5 email subject lines" in prompt.content.text

    run(go)


# ------------------------------------------------------------------------------------------------ no runs, env, http


def test_no_runs_yet_is_a_tool_error_not_a_crash(tmp_path: Path) -> None:
    async def go() -> None:
        async with connect(tmp_path / "none") as s:
            assert "no runs in" in await error(s, "list_segments")
            assert "no runs in" in await error(s, "get_customer_segment", customer_id="C1")
            with pytest.raises(MCPError, match="no runs in"):
                await s.read_resource("rfmseg://summary/latest")
            assert "no runs in" in await error(s, "recent_changes")

    run(go)


def test_runs_dir_from_the_environment(study_runs: Path) -> None:
    async def go() -> None:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "rfmseg", "mcp"], env={"RFMSEG_RUNS_DIR": str(study_runs)}
        )
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                c = await call(s, "get_customer_segment", customer_id="C133")
                assert c["segment"] == "Occasional"

    run(go)


def test_streamable_http_on_a_port_in_use_is_one_line_and_exit_2(study_runs: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # listening, as another server would be
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "rfmseg", "mcp", "--http", "--port", str(port), "--runs-dir", str(study_runs)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (another server listens there); pick another --port, or stop "
        "that server"
    ]


def test_streamable_http_on_localhost(study_runs: Path) -> None:
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfmseg", "mcp", "--http", "--port", str(port), "--runs-dir", str(study_runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_listening(port, proc, 60, lambda: proc.stderr.read().decode() if proc.stderr else "")

        async def go() -> None:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                c = await call(s, "get_customer_segment", customer_id="C087")
                assert c["segment"] == "At-Risk"
                assert "unknown customer" in await error(s, "get_customer_segment", customer_id="X")

        run(go)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
