"""rfmseg.cli.options: the shared option groups a command takes through ``include`` are shown in place,
parsed, and reach ``config.resolve``, while the command itself is called with its own parameters only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from rfmseg.cli import app
from rfmseg.cli.options import COLD_START, READING, Json, include
from rfmseg.config import resolve


def _params(*path: str) -> list[str]:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return [p.name for p in cmd.params]


def test_included_options_are_parsed_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no rfmseg.toml here
    monkeypatch.delenv("RFMSEG_CONFIG", raising=False)
    seen: dict[str, Any] = {}
    one = typer.Typer(add_completion=False)

    @one.command()
    @include(COLD_START, after="name")
    def cmd(ctx: typer.Context, name: str = "x", as_json: Json = False) -> None:
        seen["own"] = {"name": name, "as_json": as_json}
        c = resolve(ctx).cold_start
        seen["cold_start"] = (c.orders, c.days, c.segment)

    assert [p.name for p in typer.main.get_command(one).params] == [
        "name",
        "cold_start_orders",
        "cold_start_days",
        "cold_start_segment",
        "as_json",
    ]
    r = CliRunner().invoke(one, ["--name", "y", "--cold-start-days", "7", "--cold-start-segment", "New", "--json"])
    assert r.exit_code == 0, r.output
    assert seen == {"own": {"name": "y", "as_json": True}, "cold_start": (2, 7, "New")}


@pytest.mark.parametrize("command", ["assign", "refresh", "retrain"])
def test_included_options_keep_their_bounds(cli, command: str) -> None:
    r = cli(command, "--cold-start-orders", "-1")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "Invalid value for '--cold-start-orders'" in r.err  # its min=0, before any work


def test_a_command_cannot_include_what_it_declares() -> None:
    with pytest.raises(TypeError, match="declares cold_start_days itself"):

        @include(COLD_START, after="ctx")
        def cmd(ctx: typer.Context, cold_start_days: int = 30) -> None: ...


def test_the_life_commands_keep_their_option_order() -> None:
    reading = [p.name for p in READING]
    cold = [p.name for p in COLD_START]
    tail = ["runs_dir", "as_json", "config"]
    assert _params("assign") == ["path", "model", *reading, "as_of", *cold, "output", "show", *tail]
    assert _params("refresh") == ["path", "as_of", "model", *reading, *cold, "publish", "store", *tail]
    assert _params("retrain")[-len(reading) - len(cold) - 5 :] == [*reading, *cold, "publish", "store", *tail]
    assert _params("retrain")[:10] == [
        "path",
        "as_of",
        "previous",
        "carry_over",
        "k",
        "transform",
        "n_init",
        "random_state",
        "max_name_shift",
        reading[0],
    ]
    assert _params("run")[:9] == ["path", *reading[:7], "bad_rows"]  # the columns and --date-format first
    assert _params("choose-k")[:6] == ["path", "customer_col", "order_col", "date_col", "amount_col", "as_of"]
