"""The `rfmseg` command. Each module registers its commands on ``app``; ``main`` turns user errors into
one line on stderr and exit code 2."""

from __future__ import annotations

import sys

from rfmseg.cli import core  # noqa: F401  (registers demo, run, choose-k, show)
from rfmseg.cli.common import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    sys.exit(run_app())
