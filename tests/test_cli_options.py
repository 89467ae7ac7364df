"""rfmseg.cli.options: the shared option groups a command takes through ``include`` are shown in place,
parsed, and reach ``config.resolve``, while the command itself is called with its own parameters only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from rfmseg.cli import app
from rfmseg.cli.options import COLD_START, READING, Json, K, Seed, include
from rfmseg.config import bindings, resolve
from rfmseg.settings import SettingKey


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
    assert _params("refresh") == [
        "path",
        "since_last",
        "as_of",
        "model",
        *reading,
        *cold,
        "hold",
        "publish",
        "store",
        *tail,
    ]
    assert _params("retrain")[-len(reading) - len(cold) - 7 :] == [
        *reading,
        *cold,
        "hold",
        "rhythm",
        "publish",
        "store",
        *tail,
    ]
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
    # the columns, --date-format and the formats first
    assert _params("run")[:13] == ["path", *reading[:11], "bad_rows"]
    formats = ["date_format", "decimal", "encoding", "sheet", "max_quarantine"]
    columns = ["customer_col", "order_col", "date_col", "amount_col"]
    assert _params("choose-k")[:11] == ["path", *columns, *formats, "as_of"]


# ------------------------------------------------------------------------------------- option -> setting bindings
def _commands() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return found


def _flag(param: Any) -> str:
    long = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return long[0] if long else param.name


NOT_SETTINGS = {
    ("init", "--preset"): "the preset of the file init writes, not a setting in force",
    ("init", "source"): "the data init detects columns from",
    ("touches import", "--bad-rows"): "the campaign file's row policy, not the transactions' bad_rows",
    ("touches import", "--date-format"): "the campaign file's date format, not the transactions' date_format",
}
"""options spelled like a setting's flag that deliberately set no setting"""


def test_an_option_spelled_like_a_settings_flag_is_bound_to_that_setting() -> None:
    commands = _commands()
    key_of_flag: dict[str, str] = {}
    for cmd in commands.values():
        bound = bindings(cmd)
        for p in cmd.params:
            if p.name in bound:
                assert key_of_flag.setdefault(_flag(p), bound[p.name]) == bound[p.name], _flag(p)
    assert {"--k", "--store", "--runs-dir", "--as-of", "--customer-col", "--cold-start-days"} <= set(key_of_flag)
    unbound = [
        (name, _flag(p))
        for name, cmd in commands.items()
        for p in cmd.params
        if _flag(p) in key_of_flag and p.name not in bindings(cmd) and (name, _flag(p)) not in NOT_SETTINGS
    ]
    assert unbound == []
    for name, flag in NOT_SETTINGS:  # each exception names an option that exists and really is unbound
        param = next(p for p in commands[name].params if _flag(p) == flag)
        assert param.name not in bindings(commands[name])


COLUMN_KEYS = [f"columns.{f}" for f in ("customer_id", "order_id", "order_date", "amount", "quantity", "unit_price")]
FORMAT_KEYS = {"date_format", "decimal", "encoding", "sheet", "max_quarantine"}
READING_KEYS = {"source", "as_of", "bad_rows", "preset", "returns", "runs_dir", *FORMAT_KEYS, *COLUMN_KEYS}
COLD_KEYS = {"cold_start.orders", "cold_start.days", "cold_start.segment"}
MODEL_KEYS = {"k", "transform", "n_init", "random_state"}
USED = {
    "run": READING_KEYS | MODEL_KEYS | {"store", "columns.*", "rhythm"},
    "choose-k": {
        "source",
        "as_of",
        "preset",
        "transform",
        "n_init",
        "random_state",
        *FORMAT_KEYS,
        *COLUMN_KEYS[:4],
        "columns.*",
    },
    "assign": READING_KEYS | COLD_KEYS,
    "refresh": READING_KEYS | COLD_KEYS | {"store"},
    "retrain": READING_KEYS | COLD_KEYS | MODEL_KEYS | {"store", "rhythm"},
    "publish": {"runs_dir", "store"},
    "serve": {"runs_dir", "store"},
    "context": {"runs_dir", "store"},
    "mcp": {"runs_dir", "store"},
    "config show": {"preset"},
}
"""the settings each command reads from its own options (besides the project file and the environment)"""


@pytest.mark.parametrize("command", sorted(USED))
def test_each_setting_a_command_uses_has_its_option(command: str) -> None:
    assert set(bindings(_commands()[command]).values()) == USED[command]


def test_every_command_with_a_runs_folder_option_binds_it() -> None:
    for name, cmd in _commands().items():
        if any(_flag(p) == "--runs-dir" for p in cmd.params):
            assert "runs_dir" in bindings(cmd).values(), name


def test_a_binding_names_a_real_setting() -> None:
    assert SettingKey("cold_start.days").key == "cold_start.days"
    for wrong in ("kk", "cold_start.weeks", "presets", "columns", "columns.a.b"):
        with pytest.raises(ValueError, match="no such setting"):
            SettingKey(wrong)


def test_the_binding_does_not_depend_on_the_parameter_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RFMSEG_CONFIG", raising=False)
    seen: dict[str, Any] = {}
    one = typer.Typer(add_completion=False)

    @one.command()
    def cmd(ctx: typer.Context, segments: K = 4, seed_of_kmeans: Seed = 42) -> None:
        s = resolve(ctx)
        seen["k"], seen["random_state"] = s.k, s.random_state

    r = CliRunner().invoke(one, ["--k", "6", "--random-state", "7"])
    assert r.exit_code == 0, r.output
    assert seen == {"k": 6, "random_state": 7}


def test_an_error_names_the_parameter_as_the_running_command_spells_it() -> None:
    """The core names a parameter once (``from_run``); each command renders its own option for it, and a
    parameter a command does not declare falls back to the shared table (``columns`` -> ``--col``)."""
    from rfmseg.cli.common import flags_of_command
    from rfmseg.errors import NotFoundError

    err = NotFoundError("pass {from_run} with an earlier run", param="from_run")
    assert str(err) == "pass from_run with an earlier run"
    assert err.render(flags_of_command(["ask", "intervention", "--json"])) == "pass --from-run with an earlier run"
    assert err.render(flags_of_command(["transitions"])) == "pass --from with an earlier run"
    assert flags_of_command(["run", "orders.csv"])("columns") == "--col"
    assert flags_of_command(["--config", "x.toml", "run"])("as_of") == "--as-of"


# ------------------------------------------------------------------------------------------------ help texts
def _every_command() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and sub-command of rfmseg with its path (``("ask", "campaign")``)."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        found.append((path, cmd))
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


EVERY_COMMAND = _every_command()
EMPTY_PLACEHOLDERS = ("()", "[]", "{}", "''", '""', "``", "( ", " )", "[default: ]", "[default:]")


def _flat(text: str) -> str:
    """``text`` with the help boxes' borders removed and every run of white space made one space."""
    return " ".join(re.sub(r"[│╭╮╰╯─┃]", " ", text).split())


@pytest.mark.parametrize(("path", "command"), EVERY_COMMAND, ids=[" ".join(p) or "rfmseg" for p, _ in EVERY_COMMAND])
def test_no_help_has_a_double_space_or_an_empty_placeholder(
    path: tuple[str, ...], command: Any, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each text a command's help is made of (its docstring, every parameter's help) has no double space, no
    empty placeholder and no template left unfilled, and is printed whole: no word of it is lost to the
    terminal's markup (a help saying "the [source] of" once printed "the  of")."""
    monkeypatch.setenv("COLUMNS", "1000")  # one line per parameter: nothing wrapped
    r = cli(*path, "--help")
    assert r.code == 0, r.err
    shown = _flat(r.out)
    texts = [(command.help or "").split("\f")[0]] + [p.help for p in command.params if getattr(p, "help", None)]
    for text in texts:
        raw = text.replace("\\[", "[")
        where = f"{' '.join(path)}: {text!r}"
        assert not re.search(r"\S  +\S", re.sub(r" *\n\s*", " ", raw)), f"double space in {where}"
        assert not re.search(r"\s[.,;:](\s|$)", raw), f"a word missing before a stop in {where}"
        assert not re.search(r"\{[a-z_]*\}", raw), f"template left in {where}"
        for empty in EMPTY_PLACEHOLDERS:
            assert empty not in raw, f"{empty!r} in {where}"
        assert _flat(raw) in shown, f"printed differently (a word lost to markup?): {where}"
    for empty in ("[default: ]", "[default:]", "()", "[]"):
        assert empty not in shown, f"{empty!r} in the help of {' '.join(path)}"
