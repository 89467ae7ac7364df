"""The bad-input catalogue, services: API requests (FastAPI's TestClient on the real app) answered with
their 4xx status and a one-line ``detail``, and MCP tool calls (the SDK's client, in-process, on the real
server) answered with an error result of one line, never a crash (a crash reads ``Error executing tool
NAME`` and nothing more); neither writes anything in the runs folder. The registry: tests/catalogue.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from catalogue import build_registry, snapshot


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_registry(tmp_path_factory.mktemp("catalogue-services") / "runs")


def one_line(text: str, says: str) -> None:
    assert isinstance(text, str) and text.strip(), text
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    assert says in text, f"{says!r} not in {text!r}"


# ------------------------------------------------------------------------------------------------ API
@dataclass(frozen=True)
class Request:
    id: str
    method: str
    path: str
    status: int
    says: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None


ROW = {"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}
API = [
    Request("customer-unknown", "GET", "/customers/C999", 404, "customer 'C999' not found in run"),
    Request("customer-control-char", "GET", "/customers/%01C001", 422, "customer id '?C001' is not valid"),
    Request("customer-blank", "GET", "/customers/%20%20", 422, "is not valid"),
    Request("customer-129-chars", "GET", "/customers/" + "X" * 129, 422, "ids are 1 to 128 characters"),
    Request("customer-query-unknown", "GET", "/customers", 404, "not found", params={"id": "A/B"}),
    Request("customer-query-missing", "GET", "/customers", 422, "query parameter 'id'"),
    Request("history-unknown", "GET", "/customers/C999/history", 404, "is in none of the 2 runs"),
    Request("lookup-empty", "POST", "/customers/lookup", 422, "the lookup has no ids", json={"ids": []}),
    Request("lookup-wrong-field", "POST", "/customers/lookup", 422, "body field 'ids'", json={"customers": ["C1"]}),
    Request(
        "lookup-bad-id", "POST", "/customers/lookup", 422, "customer id 'a?b' is not valid", json={"ids": ["a\nb"]}
    ),
    Request(
        "lookup-too-many",
        "POST",
        "/customers/lookup",
        413,
        "a lookup takes at most 1,000 ids",
        json={"ids": [f"C{i}" for i in range(1001)]},
    ),
    Request("lookup-not-json", "POST", "/customers/lookup", 422, "", content=b"{not json"),
    Request("lookup-ids-not-list", "POST", "/customers/lookup", 422, "body field 'ids'", json={"ids": "C001"}),
    Request("segment-unknown", "GET", "/segments/VIPs/customers", 404, "no segment 'VIPs' in run"),
    Request(
        "segment-page-size",
        "GET",
        "/segments/At-Risk/customers",
        422,
        "page_size 1,001 is over the limit",
        params={"page_size": 1001},
    ),
    Request(
        "segment-min-above-max",
        "GET",
        "/segments/At-Risk/customers",
        422,
        "min_monetary 5000 is greater than max_monetary 100",
        params={"min_monetary": 5000, "max_monetary": 100},
    ),
    Request(
        "segment-sort", "GET", "/segments/At-Risk/customers", 422, "query parameter 'sort'", params={"sort": "name"}
    ),
    Request(
        "segment-page-zero", "GET", "/segments/At-Risk/customers", 422, "query parameter 'page'", params={"page": 0}
    ),
    Request("score-nothing", "POST", "/score", 422, "give either 'rfm'", json={}),
    Request(
        "score-negative-recency",
        "POST",
        "/score",
        422,
        "body field 'rfm.0.recency_days'",
        json={"rfm": [{**ROW, "recency_days": -1}]},
    ),
    Request(
        "score-as-of-with-rfm",
        "POST",
        "/score",
        422,
        "as_of applies to transactions only",
        json={"rfm": [ROW], "as_of": "2024-12-31"},
    ),
    Request("score-empty", "POST", "/score", 422, "nothing to score", json={"rfm": []}),
    Request("score-unknown-model", "POST", "/score", 404, "no run 'nope'", json={"rfm": [ROW], "model": "nope"}),
    Request(
        "score-negative-amount",
        "POST",
        "/score",
        400,
        "amount",
        json={"transactions": [{"customer_id": "N1", "order_id": "1", "order_date": "2024-12-01", "amount": -3}]},
    ),
    Request("run-unknown", "GET", "/runs/nope", 404, "no run 'nope'"),
    Request("run-view-unknown", "GET", "/runs/nope/view", 404, "no run 'nope'"),
    Request("run-report-unknown", "GET", "/runs/nope/report", 404, "no run 'nope'"),
    Request(
        "transitions-segment",
        "GET",
        "/transitions",
        400,
        "from_segment 'VIPs' is not a segment",
        params={"from_segment": "VIPs"},
    ),
    Request("transitions-unknown-run", "GET", "/transitions", 404, "no run 'nope'", params={"from": "nope"}),
    Request(
        "warnings-recency-jump",
        "GET",
        "/warnings",
        400,
        "recency_jump -1 should be >= 0 days",
        params={"recency_jump": -1},
    ),
    Request("warnings-period", "GET", "/warnings", 400, "period 0 should be >= 1 day", params={"period": 0}),
    Request("warnings-unknown-run", "GET", "/warnings", 404, "no run 'nope'", params={"run": "nope"}),
    Request(
        "changes-bad-cursor", "GET", "/changes", 400, "is not a cursor of the change feed", params={"after": "nope"}
    ),
    Request("campaign-unknown", "GET", "/campaigns/nope", 404, "no campaign 'nope'"),
    Request(
        "campaign-size-baseline",
        "GET",
        "/campaigns/size",
        422,
        "query parameter 'baseline'",
        params={"baseline": 0, "uplift": 0.03},
    ),
    Request("no-endpoint", "GET", "/nope", 404, "no endpoint /nope"),
    Request("static-unknown", "GET", "/static/nope.js", 404, "no static file 'nope.js'"),
]


@pytest.fixture(scope="module")
def client(registry: Path):
    from fastapi.testclient import TestClient

    from rfmseg.service import Settings, create_app

    with TestClient(create_app(Settings(runs_dir=registry, store_url=f"sqlite:///{registry / 'profiles.db'}"))) as c:
        assert c.get("/customers/C001").status_code == 200  # the store open: SQLite's -wal and -shm files there
        yield c


@pytest.mark.parametrize("req", [pytest.param(r, id=r.id) for r in API])
def test_a_bad_request_is_a_4xx_with_one_line(req: Request, client, registry: Path) -> None:
    before = snapshot(registry)
    r = client.request(req.method, req.path, params=req.params, json=req.json, content=req.content)
    assert r.status_code == req.status, (r.status_code, r.text[:500])
    one_line(r.json()["detail"], req.says)
    assert snapshot(registry) == before


# ------------------------------------------------------------------------------------------------ MCP
@dataclass(frozen=True)
class Call:
    id: str
    tool: str
    args: dict[str, Any]
    says: str
    empty: bool = False
    """against a runs folder with no runs"""


MCP = [
    Call("customer-unknown", "get_customer_segment", {"customer_id": "NOPE"}, "unknown customer 'NOPE'"),
    Call("customer-missing", "get_customer_segment", {}, "argument 'customer_id': Field required"),
    Call("customer-control-char", "get_customer_segment", {"customer_id": "a\nb"}, "customer id 'a?b' is not valid"),
    Call("customer-too-long", "get_customer_segment", {"customer_id": "X" * 129}, "ids are 1 to 128 characters"),
    Call("customer-blank", "get_customer_segment", {"customer_id": "  "}, "is not valid"),
    Call("trajectory-control-char", "customer_trajectory", {"customer_id": "a\rb"}, "customer id 'a?b' is not valid"),
    Call("context-control-char", "get_context", {"target": "a\nb"}, "customer id 'a?b' is not valid"),
    Call("customer-not-text", "get_customer_segment", {"customer_id": ["C001"]}, "argument 'customer_id'"),
    Call("segment-unknown", "segment_profile", {"segment": "Whales"}, "unknown segment 'Whales'"),
    Call("segment-missing", "segment_profile", {}, "argument 'segment': Field required"),
    Call("segment-examples-negative", "segment_profile", {"segment": "At-Risk", "examples": -1}, "argument 'examples'"),
    Call("segment-unknown-run", "segment_profile", {"segment": "At-Risk", "run": "nope"}, "no run 'nope'"),
    Call("list-unknown-run", "list_segments", {"run": "nope"}, "no run 'nope'"),
    Call(
        "find-limit-zero",
        "find_customers",
        {"limit": 0},
        "argument 'limit': Input should be greater than or equal to 1",
    ),
    Call("find-limit-text", "find_customers", {"limit": "ten"}, "argument 'limit'"),
    Call("find-sort-unknown", "find_customers", {"sort_by": "name"}, "argument 'sort_by'"),
    Call("find-unknown-argument", "find_customers", {"colour": "red"}, "no argument 'colour'; its arguments:"),
    Call("transitions-unknown-segment", "transitions", {"from_segment": "Whales"}, "Whales"),
    Call("warnings-unknown-run", "warnings", {"run": "nope"}, "no run 'nope'"),
    Call("campaign-kind-unknown", "recommend_segments_for_campaign", {"kind": "telepathy"}, "known kinds"),
    Call("discount-half-life-zero", "rank_discount_responders", {"half_life_days": 0}, "argument 'half_life_days'"),
    Call("not-contacted-bad-reference", "customers_without_touch", {"reference": "soon"}, "'soon' is not a date"),
    Call("trending-one-run", "trending_toward", {"runs_back": 1}, "argument 'runs_back'"),
    Call("recent-days-zero", "recent_changes", {"days": 0}, "argument 'days'"),
    Call("recency-negative", "recency_increase", {"more_than_days": -1}, "argument 'more_than_days'"),
    Call("recency-membership", "recency_increase", {"membership": "sometimes"}, "argument 'membership'"),
    Call("trajectory-unknown", "customer_trajectory", {"customer_id": "NOPE"}, "unknown customer 'NOPE'"),
    Call("intervention-unknown-run", "intervention_effect", {"from_run": "nope"}, "no run 'nope'"),
    Call("onboarding-not-saas", "onboarding_path", {"customer_id": "C087"}, "saas"),
    Call("campaigns-unknown", "campaigns", {"name": "nope"}, "no campaign 'nope'"),
    Call("plan-bad-name", "campaign_plan", {"name": "a/b", "segments": ["At-Risk"]}, "campaign name 'a/b'"),
    Call("plan-no-segments", "campaign_plan", {"name": "p1", "segments": []}, "argument 'segments'"),
    Call("plan-unknown-segment", "campaign_plan", {"name": "p1", "segments": ["Whales"]}, "Whales"),
    Call("plan-holdout", "campaign_plan", {"name": "p1", "segments": ["At-Risk"], "holdout": "150%"}, "150%"),
    Call("measure-unknown", "campaign_measure", {"name": "nope", "transactions": "x.csv"}, "no campaign 'nope'"),
    Call("measure-missing-file", "campaign_measure", {"name": "spring", "transactions": "/nope/x.csv"}, "no such file"),
    Call("size-baseline-zero", "campaign_size", {"baseline": 0, "uplift": 0.03}, "argument 'baseline'"),
    Call("size-uplift-too-big", "campaign_size", {"baseline": 0.9, "uplift": 0.5}, "uplift"),
    Call("changes-bad-cursor", "changes_since", {"after": "nope"}, "is not a cursor of the change feed"),
    Call("changes-limit-huge", "changes_since", {"limit": 10_001}, "argument 'limit'"),
    Call("context-empty", "get_context", {"target": ""}, "argument 'target'"),
    Call("context-unknown", "get_context", {"target": "Whales"}, "'Whales' is neither a segment nor a customer"),
    Call("context-format", "get_context", {"target": "At-Risk", "format": "pdf"}, "argument 'format'"),
    Call("no-runs-list", "list_segments", {}, "no runs in", empty=True),
    Call("no-runs-customer", "get_customer_segment", {"customer_id": "C1"}, "no runs in", empty=True),
    Call("no-runs-changes", "changes_since", {}, "no profile store to read", empty=True),
]


async def _call(runs: Path, calls: list[Call]) -> list[tuple[Call, Any]]:
    from mcp import Client

    from rfmseg.agent.mcp_server import build_server

    async with Client(build_server(runs)) as client:
        return [(c, await client.call_tool(c.tool, c.args)) for c in calls]


@pytest.fixture(scope="module")
def mcp_results(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, bool]]:
    """Every call of :data:`MCP`, made once over one connection per registry; the registry unchanged after."""
    before = snapshot(registry)
    done = asyncio.run(_call(registry, [c for c in MCP if not c.empty]))
    unchanged = snapshot(registry) == before
    empty = tmp_path_factory.mktemp("no-runs")
    done += asyncio.run(_call(empty / "runs", [c for c in MCP if c.empty]))
    unchanged = unchanged and not any(empty.iterdir())
    return {c.id: (r, unchanged) for c, r in done}


@pytest.mark.parametrize("call", [pytest.param(c, id=c.id) for c in MCP])
def test_a_bad_tool_call_is_an_error_result_of_one_line(call: Call, mcp_results: dict[str, tuple[Any, bool]]) -> None:
    result, unchanged = mcp_results[call.id]
    assert result.is_error, (call.tool, result.structured_content)
    text = result.content[0].text
    assert text != f"Error executing tool {call.tool}", "a crash: the server log has its traceback"
    one_line(text, call.says)
    assert unchanged, "a tool call wrote in the runs folder"


def test_the_service_catalogues_have_no_duplicate_ids() -> None:
    for ids in ([r.id for r in API], [c.id for c in MCP]):
        assert len(ids) == len(set(ids))
