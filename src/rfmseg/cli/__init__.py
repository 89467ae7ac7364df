"""The `rfmseg` command. Each module registers its commands on ``app``; ``main`` turns user errors into
one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import rfmseg.cli.config  # noqa: F401  (init, config show, presets, --config; first: they head `rfmseg --help`)
from rfmseg.cli import (
    agent,  # noqa: F401  (touches, ask, context, mcp)
    campaign,  # noqa: F401  (campaign plan, measure, size, list)
    core,  # noqa: F401  (registers demo, run, choose-k, show)
    datasets,  # noqa: F401  (datasets fetch, list, path)
    export,  # noqa: F401  (export)
    life,  # noqa: F401  (runs, assign, refresh, retrain, publish)
    life_history,  # noqa: F401  (simulate, transitions, watch, history)
    serve,  # noqa: F401  (serve, report)
)
from rfmseg.cli.common import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    sys.exit(run_app())
