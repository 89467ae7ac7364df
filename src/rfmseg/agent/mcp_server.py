"""`rfmseg mcp`: the segments, the history and the marketer's questions as MCP tools, resources and prompts.

Built on the official MCP Python SDK (``mcp`` 2.x, :class:`mcp.server.mcpserver.MCPServer`). Transports:
stdio (default, what desktop clients launch) and streamable HTTP on 127.0.0.1 (``--http --port N``).

Every tool is read-only. A user error (unknown customer, unknown segment, no runs yet, a bad parameter)
comes back as a tool error whose text is the same one-line message the CLI prints; the server keeps
serving. The runs folder and the profile store come from the options, else $RFMSEG_RUNS_DIR and
$RFMSEG_STORE, else ``./rfmseg-runs`` and ``<runs_dir>/profiles.db``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from rfmseg import __version__
from rfmseg import questions as q
from rfmseg.agent import context as ctx
from rfmseg.errors import NotFoundError, ParameterError, RfmsegError
from rfmseg.runs import DEFAULT_RUNS_DIR
from rfmseg.runs import history as run_history

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
    from mcp.shared.exceptions import MCPError
    from mcp.types import INVALID_PARAMS, ToolAnnotations
except ImportError as exc:  # pragma: no cover - the mcp extra is installed with rfmseg[mcp]
    raise ParameterError(
        f"the MCP server needs the MCP Python SDK 2.x ({exc}); install it with: pip install 'rfmseg[mcp]'"
    ) from None

RUNS_ENV = "RFMSEG_RUNS_DIR"
DEFAULT_PORT = 8765
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

INSTRUCTIONS = """rfmseg segments customers by Recency (days since the last order), Frequency (orders) and
Monetary value (total spend) with K-Means and names each segment from its centroid (Champions, Loyal Buyers,
At-Risk, Occasional, ...). Start with list_segments; use get_customer_segment for one customer; the other
tools answer marketing questions from the run history and the campaign touches, each with the numbers
behind the answer. Segment names are matched case-insensitively (slugs such as loyal-buyers work too)."""

Limit = Annotated[int, Field(ge=1, le=1000, description="Most rows to return.")]
Run = Annotated[str, Field(description="Run id, unique prefix, or 'latest'.")]
Segment = Annotated[str, Field(min_length=1, max_length=100, description="Segment name, e.g. At-Risk.")]
CustomerId = Annotated[str, Field(min_length=1, max_length=200, description="Customer id, e.g. C087.")]
Kind = Annotated[str, Field(min_length=1, max_length=60, description="Campaign kind, e.g. discount, win_back.")]
Days = Annotated[int, Field(ge=1, le=3650)]


def resolve_runs_dir(runs_dir: str | Path | None = None) -> Path:
    return Path(runs_dir or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


@contextmanager
def _tool_errors() -> Iterator[None]:
    """User errors become tool errors with their one-line message (the server keeps running)."""
    try:
        yield
    except RfmsegError as exc:
        raise ToolError(exc.message) from None


@contextmanager
def _resource_errors() -> Iterator[None]:
    try:
        yield
    except NotFoundError as exc:
        raise ResourceNotFoundError(exc.message) from None
    except RfmsegError as exc:
        raise ResourceError(exc.message) from None


@contextmanager
def _prompt_errors() -> Iterator[None]:
    try:
        yield
    except RfmsegError as exc:
        raise MCPError(INVALID_PARAMS, exc.message) from None


def _trim(rows: list[Any], limit: int) -> tuple[list[Any], int]:
    return rows[:limit], max(0, len(rows) - limit)


def build_server(runs_dir: str | Path | None = None, store: str | None = None) -> MCPServer:
    """The MCP server over ``runs_dir`` (and the profile store ``store``); nothing is read until a call."""
    runs = resolve_runs_dir(runs_dir)
    store = store or os.environ.get("RFMSEG_STORE") or None
    mcp = MCPServer("rfmseg", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")

    def tool(description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return mcp.tool(description=description, annotations=READ_ONLY)

    # ------------------------------------------------------------------------------------ lookups
    @tool(
        "A customer's segment, RFM values, distance to the centroid and the segment's recommended action "
        "(from the online profile store when it serves the customer, with previous segment and since when)."
    )
    def get_customer_segment(customer_id: CustomerId) -> dict[str, Any]:
        with _tool_errors():
            return ctx.lookup_customer(runs, customer_id, store)

    @tool(
        "All segments of a run with their profile (customers, revenue, shares, mean/median RFM, AOV), "
        "recommended action and priority, plus the run's insights."
    )
    def list_segments(run: Run = "latest") -> dict[str, Any]:
        with _tool_errors():
            return q.list_segments(runs, run)

    @tool("One segment's profile, centroid, why it got its name, and its most typical customers.")
    def segment_profile(
        segment: Segment, run: Run = "latest", examples: Annotated[int, Field(ge=0, le=100)] = 5
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.segment_profile(runs, segment, run, examples)

    @tool("Customers filtered by segment and recency/frequency/monetary ranges (inclusive), sorted and limited.")
    def find_customers(
        segment: str | None = None,
        recency_min: float | None = None,
        recency_max: float | None = None,
        frequency_min: float | None = None,
        frequency_max: float | None = None,
        monetary_min: float | None = None,
        monetary_max: float | None = None,
        sort_by: q.SortField = "monetary",
        descending: bool = True,
        limit: Limit = 20,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.find_customers(
                runs,
                segment=segment,
                recency_min=recency_min,
                recency_max=recency_max,
                frequency_min=frequency_min,
                frequency_max=frequency_max,
                monetary_min=monetary_min,
                monetary_max=monetary_max,
                sort_by=sort_by,
                descending=descending,
                limit=limit,
                run=run,
            )

    @tool(
        "The transition matrix between two runs (default: the last two) in customers and revenue, and the "
        "customers who moved (optionally only from one segment and/or to another)."
    )
    def transitions(
        from_run: str | None = None,
        to_run: str | None = None,
        from_segment: str | None = None,
        to_segment: str | None = None,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        with _tool_errors():
            t = run_history.transitions(runs, from_run, to_run, from_segment, to_segment)
        t["moves"], t["moves_left_out"] = _trim(t["moves"], limit)
        return t

    @tool(
        "Early warnings for a run: Champions who dropped to Loyal Buyers, recency jumps with flat frequency, "
        "Loyal Buyers trending toward At-Risk, segment changes — each with the customers and their values."
    )
    def warnings(
        run: str | None = None,
        recency_jump_days: Annotated[int, Field(ge=0, le=3650)] = 10,
        period_days: Days = 30,
        trend_runs: Annotated[int, Field(ge=2, le=100)] = 3,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        with _tool_errors():
            w = run_history.warnings(runs, run, recency_jump_days, period_days, trend_runs)
        for item in w["warnings"]:
            item["customers"], item["customers_left_out"] = _trim(item["customers"], limit)
        return w

    @tool(
        "The context pack about a segment (name or slug) or a customer id: profile, action, recent movement, "
        "example customers (customer: history, distances, touches). format: json or markdown."
    )
    def get_context(
        target: Annotated[str, Field(min_length=1, max_length=200)], format: Literal["json", "markdown"] = "json"
    ) -> dict[str, Any]:
        with _tool_errors():
            pack = ctx.context_pack(runs, target, store=store)
        if format == "markdown":
            return {"kind": pack["kind"], "format": "markdown", "markdown": ctx.to_markdown(pack)}
        return pack

    # ------------------------------------------------------------------------------------ questions
    @tool(
        "Which segment should receive a campaign of this kind? Segments ranked by how many of the kind's "
        "keywords their recommended action contains, then by revenue at stake; says why."
    )
    def recommend_segments_for_campaign(
        kind: Kind, keywords: list[str] | None = None, run: Run = "latest"
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.campaign_segments(runs, kind, keywords=keywords, run=run)

    @tool(
        "Which customers of a segment (default At-Risk) are most likely to respond to a campaign kind "
        "(default discount)? Score = (AOV part + frequency part) x recency decay x response factor from past "
        "touches; every part is shown."
    )
    def rank_discount_responders(
        segment: Segment = "At-Risk",
        kind: Kind = "discount",
        limit: Limit = 10,
        half_life_days: Annotated[float, Field(gt=0, le=3650)] = 90.0,
        aov_weight: Annotated[float, Field(ge=0)] = 0.5,
        frequency_weight: Annotated[float, Field(ge=0)] = 0.5,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.discount_candidates(
                runs,
                segment=segment,
                kind=kind,
                limit=limit,
                half_life_days=half_life_days,
                aov_weight=aov_weight,
                frequency_weight=frequency_weight,
                run=run,
            )

    @tool(
        "Which customers of a segment (default Champions) were sent no campaign of a kind (default "
        "loyalty_offer) in the last N days (default 90) up to a reference date (default the run's as-of)?"
    )
    def customers_without_touch(
        segment: Segment = "Champions",
        kind: Kind = "loyalty_offer",
        days: Days = 90,
        reference: Annotated[str | None, Field(description="YYYY-MM-DD; default the run's as-of date")] = None,
        limit: Limit = 100,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.not_contacted(
                runs, segment=segment, kind=kind, days=days, reference=reference, limit=limit, run=run
            )

    @tool(
        "Which customers of a segment (default Loyal Buyers) are trending toward another (default At-Risk)? "
        "Their gap (distance to that centroid minus distance to their own) narrowed at each of the last N runs."
    )
    def trending_toward(
        segment: Segment = "Loyal Buyers",
        toward: Segment = "At-Risk",
        runs_back: Annotated[int, Field(ge=2, le=100, description="How many recent runs.")] = 3,
        limit: Limit = 50,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.trending_toward(runs, segment=segment, toward=toward, runs=runs_back, limit=limit, run=run)

    @tool(
        "What changed in the last N days (default 30) for the customers now in a segment (default At-Risk): "
        "where they came from and how their recency, frequency and spend moved."
    )
    def recent_changes(
        segment: Segment = "At-Risk", days: Days = 30, limit: Limit = 50, run: Run = "latest"
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.recent_changes(runs, segment=segment, days=days, limit=limit, run=run)

    @tool(
        "Customers of a segment (default Champions) whose recency rose by more than N days (default 10) over "
        "the period (default 30 days). membership: in the segment now, at the start, or either."
    )
    def recency_increase(
        segment: Segment = "Champions",
        more_than_days: Annotated[int, Field(ge=0, le=3650)] = 10,
        period_days: Days = 30,
        membership: Literal["now", "start", "either"] = "either",
        limit: Limit = 100,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.recency_jump(
                runs,
                segment=segment,
                more_than_days=more_than_days,
                period_days=period_days,
                membership=membership,
                limit=limit,
                run=run,
            )

    @tool(
        "Is a customer's behaviour tracking toward one segment or another (default Champions or Occasional)? "
        "Distance to every centroid of the latest model in each of the last N runs."
    )
    def customer_trajectory(
        customer_id: CustomerId,
        targets: Annotated[list[str], Field(min_length=1, max_length=20)] = ["Champions", "Occasional"],  # noqa: B006
        runs_back: Annotated[int, Field(ge=1, le=100)] = 5,
        run: Run = "latest",
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.customer_tracking(runs, customer_id, targets=targets, runs=runs_back, run=run)

    @tool(
        "What intervention has historically moved a segment's customers (default Occasional) into target "
        "segments (default Loyal Buyers)? Share that moved among contacted vs not contacted, per campaign kind, "
        "with counts; says plainly when the data is too thin."
    )
    def intervention_effect(
        segment: Segment = "Occasional",
        to: Annotated[list[str], Field(min_length=1, max_length=20)] = ["Loyal Buyers"],  # noqa: B006
        kind: str | None = None,
        from_run: str | None = None,
        to_run: Run = "latest",
        min_contacted: Annotated[int, Field(ge=1)] = 30,
        min_control: Annotated[int, Field(ge=1)] = 30,
    ) -> dict[str, Any]:
        with _tool_errors():
            return q.intervention_effect(
                runs,
                segment=segment,
                to=to,
                kind=kind,
                from_run=from_run,
                to_run=to_run,
                min_contacted=min_contacted,
                min_control=min_control,
            )

    # ------------------------------------------------------------------------------------ resources
    @mcp.resource(
        "rfmseg://summary/latest",
        name="latest_summary",
        description="The latest run's summary: segments with profiles, actions and insights.",
        mime_type="application/json",
    )
    def latest_summary() -> str:
        with _resource_errors():
            h = q.History(runs)
            return json.dumps(h.summary(h.resolve("latest")), indent=1, default=str)

    @mcp.resource(
        "rfmseg://runs/{run_id}/summary",
        name="run_summary",
        description="The summary of one run (id, unique prefix or 'latest').",
        mime_type="application/json",
    )
    def run_summary(run_id: str) -> str:
        with _resource_errors():
            h = q.History(runs)
            return json.dumps(h.summary(h.resolve(run_id)), indent=1, default=str)

    @mcp.resource(
        "rfmseg://segments/{segment}",
        name="segment_profile",
        description="One segment's context pack (profile, action, movement, typical customers) in the latest "
        "run; the segment by name or slug, e.g. rfmseg://segments/at-risk.",
        mime_type="application/json",
    )
    def segment_resource(segment: str) -> str:
        with _resource_errors():
            return json.dumps(ctx.segment_pack(runs, segment), indent=1, default=str)

    @mcp.resource(
        "rfmseg://context/{target}",
        name="context_pack",
        description="The Markdown context pack of a segment (name or slug) or a customer id.",
        mime_type="text/markdown",
    )
    def context_resource(target: str) -> str:
        with _resource_errors():
            return ctx.to_markdown(ctx.context_pack(runs, target, store=store))

    # ------------------------------------------------------------------------------------ prompts
    @mcp.prompt(
        name="segment_subject_lines",
        description="Email subject lines for a segment, grounded in its profile, action and example customers.",
    )
    def segment_subject_lines(segment: str, count: int = 5, tone: str = "warm and direct") -> str:
        with _prompt_errors():
            if not 1 <= count <= 50:
                raise ParameterError(f"count={count} should be between 1 and 50")
            pack = ctx.segment_pack(runs, segment, examples=3)
        return (
            f'Write {count} email subject lines for customers in the segment "{pack["segment"]}" '
            f"(tone: {tone}). Each under 60 characters, no misleading urgency, no invented discounts.\n\n"
            f"{_segment_brief(pack)}\n\n"
            "Ground each line in what the data says about these customers and in the recommended action. "
            "Return a numbered list, one subject line per item, with a few words on which fact it uses."
        )

    @mcp.prompt(
        name="win_back_email",
        description="A win-back email for a segment (default At-Risk), optionally for one customer, filled with "
        "the segment's profile, action and example values.",
    )
    def win_back_email(segment: str = "At-Risk", customer_id: str = "", incentive: str = "") -> str:
        with _prompt_errors():
            pack = ctx.segment_pack(runs, segment, examples=3)
            person = ctx.customer_pack(runs, customer_id, store=store) if customer_id else None
        offer = (
            f"The incentive to offer: {incentive}."
            if incentive
            else "Offer only what the recommended action names; do not invent a discount amount."
        )
        who = (
            f"\n\nWrite it for customer {person['customer_id']}: {person['summary']}"
            if person
            else "\n\nWrite it for a typical customer of the segment (use the example values, not names)."
        )
        return (
            f'Write a win-back email for customers in the segment "{pack["segment"]}".\n\n'
            f"{_segment_brief(pack)}{who}\n\n{offer} Subject line, preview text, then a body under 150 words "
            "that acknowledges how long it has been, reminds them of what they bought before in general terms, "
            "gives one clear call to action, and ends with an easy way to say why they left."
        )

    return mcp


def _segment_brief(pack: dict[str, Any]) -> str:
    ex = "; ".join(
        f"{e['customer_id']}: {e['recency_days']} days since last order, {e['frequency']} orders, "
        f"{q._money(e['monetary'])} spent"
        for e in pack["examples"]
    )
    return (
        f"Segment facts (run {pack['run_id']}, as of {pack['as_of']}): {pack['summary']}\n"
        f"Why this name: {pack['why_this_name']}\n"
        f"Recommended action: {pack['action']}\n"
        f"Typical customers: {ex or 'none'}"
    )


def serve(
    runs_dir: str | Path | None = None,
    store: str | None = None,
    *,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Run the server until the client disconnects (stdio) or the process is stopped (HTTP)."""
    server = build_server(runs_dir, store)
    if http:
        server.run("streamable-http", host=host, port=port)
    else:
        server.run("stdio")
