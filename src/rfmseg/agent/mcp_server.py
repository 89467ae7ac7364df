"""`rfmseg mcp`: the segments, the history and the marketer's questions as MCP tools, resources and prompts.

Built on the official MCP Python SDK (``mcp`` 2.x, :class:`mcp.server.mcpserver.MCPServer`). Transports:
stdio (default, what desktop clients launch) and streamable HTTP on 127.0.0.1 (``--http --port N``).

Every tool is read-only. A user error (unknown customer, unknown segment, no runs yet, a bad parameter)
comes back as a tool error whose text is the same one-line message the CLI prints; the server keeps
serving. The runs folder and the profile store come from the options, else $RFMSEG_RUNS_DIR and
$RFMSEG_STORE, else ``./rfmseg-runs`` and ``<runs_dir>/profiles.db``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from rfmseg import __version__
from rfmseg import questions as q
from rfmseg.agent import context as ctx
from rfmseg.errors import NotFoundError, ParameterError, RfmsegError, one_line
from rfmseg.features import Units, Words
from rfmseg.install import install_command
from rfmseg.settings import STORE_ENV, runs_path

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
    from mcp.shared.exceptions import MCPError
    from mcp.types import INVALID_PARAMS, ToolAnnotations
except ImportError as exc:  # pragma: no cover - the mcp extra is installed with rfmseg[mcp]
    raise ParameterError(
        f"the MCP server needs the MCP Python SDK 2.x ({exc}); install it with: {install_command('mcp')}"
    ) from None

DEFAULT_PORT = 8765
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

INSTRUCTIONS = """rfmseg segments customers by Recency (days since the last order), Frequency (orders) and
Monetary value (total spend) with K-Means and names each segment from its centroid (Champions, Loyal Buyers,
At-Risk, Occasional, ...). Start with list_segments; use get_customer_segment for one customer; the other
tools answer marketing questions from the run history and the campaign touches, each with the numbers
behind the answer. Segment names are matched case-insensitively (slugs such as loyal-buyers work too)."""


def resolve_runs_dir(runs_dir: str | Path | None = None) -> Path:
    return runs_path(runs_dir)


@contextmanager
def _tool_errors() -> Iterator[None]:
    """User errors become tool errors with their one-line message (the server keeps running)."""
    try:
        yield
    except RfmsegError as exc:
        raise ToolError(one_line(exc.message)) from None


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


QUESTION_TOOLS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, str]]] = {
    "list_segments": (q.list_segments, {}),
    "segment_profile": (q.segment_profile, {}),
    "find_customers": (q.find_customers, {}),
    "transitions": (q.transitions, {}),
    "warnings": (q.warnings, {}),
    "recommend_segments_for_campaign": (q.campaign_segments, {}),
    "rank_discount_responders": (q.discount_candidates, {}),
    "customers_without_touch": (q.not_contacted, {}),
    "trending_toward": (q.trending_toward, {"runs": "runs_back"}),
    "recent_changes": (q.recent_changes, {}),
    "recency_increase": (q.recency_jump, {}),
    "customer_trajectory": (q.customer_tracking, {"runs": "runs_back"}),
    "intervention_effect": (q.intervention_effect, {}),
    "onboarding_path": (q.onboarding_path, {}),
    "campaigns": (q.campaigns, {}),
    "campaign_plan": (q.campaign_plan, {}),
    "campaign_measure": (q.campaign_measure, {}),
    "campaign_size": (q.campaign_size, {}),
    "changes_since": (q.changes_since, {}),
}
"""Tool name -> (the question, its parameters the tool names differently). The question's signature (minus
what the server binds: :data:`SERVER_BOUND`) is the tool's input schema and its docstring the tool's
description."""

SERVER_BOUND = ("runs_dir", "store")
"""Parameters the server sets, never the client: the runs folder, and the profile store of a question that
reads it (the server's --store, else $RFMSEG_STORE, else <runs_dir>/profiles.db)."""


class _Server(MCPServer):
    """The SDK's server, with a tool's arguments that fail its schema told in one line (the SDK gives
    pydantic's several lines and a link), as the API tells a bad query parameter."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        known = set((tool.parameters.get("properties") or {}) if tool is not None else ())
        unknown = sorted(set(arguments or {}) - known) if tool is not None else []
        if unknown:  # the SDK would drop a misspelt argument and answer another question
            raise ToolError(
                f"Error executing tool {name}: no argument {', '.join(repr(u) for u in unknown)}; "
                f"its arguments: {', '.join(sorted(known)) or 'none'}"
            )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            raise ToolError(f"Error executing tool {name}: {describe_invalid(exc.__cause__)}") from exc.__cause__


def describe_invalid(exc: ValidationError) -> str:
    """A tool's arguments that fail its schema, on one line: ``argument 'limit': Input should be greater than
    or equal to 1 (got 0)``, each error so, joined by ``;``."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(x) for x in err.get("loc", ()))
        text = str(err.get("msg", "not valid")).removeprefix("Value error, ")
        given = "" if err.get("type") == "missing" else f" (got {err.get('input')!r})"
        parts.append(f"argument '{name}': {text}{given}" if name else f"{text}{given}")
    return one_line("; ".join(parts)) or "the arguments are not valid"


def question_tool(
    name: str,
    question: Callable[..., dict[str, Any]],
    runs: Path,
    rename: Mapping[str, str],
    store: str | None = None,
) -> Callable[..., Any]:
    """``question`` as the tool ``name``: ``runs_dir`` bound to ``runs`` (and ``store``, if it has that
    parameter, to ``store``), parameters renamed by ``rename``, user errors as tool errors. The SDK reads the
    returned function's ``__signature__`` and ``__doc__``."""
    sig = inspect.signature(question, eval_str=True)
    back = {new: old for old, new in rename.items()}
    bound = {"store": store} if "store" in sig.parameters else {}

    def tool(**kwargs: Any) -> dict[str, Any]:
        with _tool_errors():
            return question(runs, **bound, **{back.get(k, k): v for k, v in kwargs.items()})

    params = [
        p.replace(name=rename.get(p.name, p.name), kind=inspect.Parameter.KEYWORD_ONLY)
        for p in sig.parameters.values()
        if p.name not in SERVER_BOUND
    ]
    tool.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    tool.__name__, tool.__doc__ = name, question.__doc__
    return tool


def describe(fn: Callable[..., Any]) -> str:
    """A tool's description: its function's docstring on one line."""
    return " ".join((inspect.getdoc(fn) or "").split())


def build_server(runs_dir: str | Path | None = None, store: str | None = None) -> MCPServer:
    """The MCP server over ``runs_dir`` (and the profile store ``store``); nothing is read until a call."""
    runs = resolve_runs_dir(runs_dir)
    store = store or os.environ.get(STORE_ENV) or None
    mcp = _Server("rfmseg", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")

    def get_customer_segment(customer_id: q.CustomerId) -> dict[str, Any]:
        """A customer's segment, RFM values, distance to the centroid and the segment's recommended action (from
        the online profile store when it serves the customer, with previous segment and since when)."""
        with _tool_errors():
            return ctx.lookup_customer(runs, customer_id, store)

    def get_context(
        target: Annotated[str, Field(min_length=1, max_length=200)], format: Literal["json", "markdown"] = "json"
    ) -> dict[str, Any]:
        """The context pack about a segment (name or slug) or a customer id: profile, action, recent movement,
        example customers (customer: history, distances, touches). format: json or markdown."""
        with _tool_errors():
            pack = ctx.context_pack(runs, target, store=store)
        if format == "markdown":
            return {"kind": pack["kind"], "format": "markdown", "markdown": ctx.to_markdown(pack)}
        return pack

    tools = {
        name: question_tool(name, question, runs, rename, store) for name, (question, rename) in QUESTION_TOOLS.items()
    }
    named: dict[str, Callable[..., Any]] = {"get_customer_segment": get_customer_segment, **tools}
    named["get_context"] = get_context
    for name, fn in named.items():
        mcp.add_tool(fn, name=name, description=describe(fn), annotations=READ_ONLY)
    add_resources(mcp, runs, store)
    add_prompts(mcp, runs, store)
    return mcp


def add_resources(mcp: MCPServer, runs: Path, store: str | None) -> None:
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


def add_prompts(mcp: MCPServer, runs: Path, store: str | None) -> None:
    @mcp.prompt(
        name="segment_subject_lines",
        description="Email subject lines for a segment, grounded in its profile, action and example customers.",
    )
    def segment_subject_lines(segment: str, count: int = 5, tone: str = "warm and direct") -> str:
        with _prompt_errors():
            if not 1 <= count <= 50:
                raise ParameterError(f"{{count}} {count} should be between 1 and 50", param="count")
            pack = ctx.segment_pack(runs, segment, examples=3)
        return (
            f"Write {count} email subject lines for {pack.get('units', {}).get('entity', 'customers')} in the "
            f'segment "{pack["segment"]}" '
            f"(tone: {tone}). Each under 60 characters, no misleading urgency, no invented discounts.\n\n"
            f"{_segment_brief(pack)}\n\n"
            f"Ground each line in what the data says about these {pack.get('units', {}).get('entity', 'customers')} "
            "and in the recommended action. "
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
        units = Units.from_dict(pack.get("units"))
        entity = units.entity
        events = "what they bought" if units.monetary == "spend" else f"their {units.event}s"
        return (
            f'Write a win-back email for {entity} in the segment "{pack["segment"]}".\n\n'
            f"{_segment_brief(pack)}{who}\n\n{offer} Subject line, preview text, then a body under 150 words "
            f"that acknowledges how long it has been, reminds them of {events} before in general terms, "
            "gives one clear call to action, and ends with an easy way to say why they left."
        )


def _segment_brief(pack: dict[str, Any]) -> str:
    w = Words(Units.from_dict(pack.get("units")), pack.get("currency", "$"))
    ex = "; ".join(
        f"{e['customer_id']}: {e['recency_days']} {w.units.recency}, {w.count(e['frequency'])}, "
        f"{w.amount(e['monetary'])}"
        for e in pack["examples"]
    )
    return (
        f"Segment facts (run {pack['run_id']}, as of {pack['as_of']}): {pack['summary']}\n"
        f"Why this name: {pack['why_this_name']}\n"
        f"Recommended action: {pack['action']}\n"
        f"Typical {w.entity}: {ex or 'none'}"
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
