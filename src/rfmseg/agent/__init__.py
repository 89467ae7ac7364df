"""Segments for AI assistants: the MCP server (:mod:`rfmseg.agent.mcp_server`) and the context packs
(:mod:`rfmseg.agent.context`). The questions themselves live in :mod:`rfmseg.questions`, shared with the CLI.

The ``mcp`` package is imported only by the server module, so the context packs work without it.
"""

from rfmseg.agent.context import context_pack, lookup_customer, to_markdown

__all__ = ["context_pack", "lookup_customer", "to_markdown"]
