"""Every text-producing command speaks in the run's units: a SaaS run of users, sessions and features used,
a CRM run of leads, touchpoints and pipeline value, an education run of students, sessions and progress;
never of orders, dollars, AOV or revenue where the preset has none (issue 14 item 4).

Each preset's sample is run, then refreshed 30 days later (so the commands that compare runs have two), and
every command that writes prose or a table is walked: show, context (segment, customer; Markdown and JSON),
every ask question, watch, transitions, history, and the MCP prompts."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from rfmseg.cli.common import run_app
from rfmseg.features import DEFAULT_UNITS, Units
from rfmseg.presets import get_preset
from rfmseg.presets.samples import data_path

PRESETS = ("saas", "crm", "education")


def forbidden(u: Units) -> dict[str, re.Pattern[str]]:
    """The e-commerce words a run in units ``u`` must not use, each with the pattern that finds it."""
    out: dict[str, re.Pattern[str]] = {}
    if not u.money:
        out["a currency"] = re.compile(r"[$£€]\s?\d")
    if u.frequency != DEFAULT_UNITS.frequency:
        out["orders"] = re.compile(r"\b(orders|ordered|an order|last order|order value)\b", re.I)
    if not u.ratio:
        out["AOV"] = re.compile(r"\bAOV\b|average order value", re.I)
    if u.monetary != DEFAULT_UNITS.monetary:
        out["spent"] = re.compile(r"\bspent\b", re.I)
    if u.total != DEFAULT_UNITS.total:
        out["revenue"] = re.compile(r"\brevenue\b(?! at stake\b.*\bpipeline)", re.I)
    if u.entity != DEFAULT_UNITS.entity:
        out["customers"] = re.compile(r"\bcustomers\b", re.I)  # "customer success" is a team
    return out


def prose(text: str) -> str:
    """What a reader reads: JSON output reduced to its string values that are sentences (keys are a stable
    interface: ``revenue``, ``customers`` and ``aov`` stay as keys in every preset)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    found: list[str] = []

    def walk(x: object, key: str = "") -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, k)
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif isinstance(x, str) and key in ("answer", "question", "summary", "text", "title", "why", "method"):
            found.append(x)

    walk(data)
    return "\n".join(found)


@pytest.fixture(scope="module", params=PRESETS)
def preset_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    name = request.param
    preset = get_preset(name)
    assert preset.sample is not None
    sample = data_path(preset.sample)
    runs = tmp_path_factory.mktemp(f"words-{name}") / "runs"
    assert run_app(["run", str(sample), "--preset", name, "--runs-dir", str(runs)]) == 0
    summary = json.loads(next(runs.glob("2*/summary.json")).read_text())
    later = date.fromisoformat(summary["as_of"]) + timedelta(days=30)
    args = ["refresh", str(sample), "--preset", name, "--as-of", later.isoformat(), "--runs-dir", str(runs)]
    assert run_app([*args, "--no-publish"]) == 0
    return name, sample, runs


def commands(sample: Path, runs: Path) -> list[list[str]]:
    summary = json.loads(sorted(runs.glob("2*/summary.json"))[-1].read_text())
    segments = [s["name"] for s in summary["segments"]]
    seg = segments[-1]
    customer = sample.read_text().splitlines()[1].split(",")[0]
    r = ["--runs-dir", str(runs)]
    return [
        ["show", "latest", *r],
        ["context", seg, *r],
        ["context", customer, *r],
        ["context", seg, "--format", "json", *r],
        ["context", customer, "--format", "json", *r],
        ["ask", "campaign", "win_back", *r],
        ["ask", "campaign", "win_back", "--json", *r],
        ["ask", "discount", "--segment", seg, *r],
        ["ask", "discount", "--segment", seg, "--json", *r],
        ["ask", "not-contacted", "--segment", seg, *r],
        ["ask", "changed", "--segment", seg, *r],
        ["ask", "trending", "--segment", segments[0], "--toward", seg, *r],
        ["ask", "tracking", customer, *r],  # default targets: the run's first and last segment
        ["transitions", *r],
        ["watch", *r],
        ["watch", "--json", *r],
        ["history", customer, *r],
    ]


def test_every_command_speaks_the_presets_units(preset_runs: tuple[str, Path, Path], cli) -> None:
    name, sample, runs = preset_runs
    u = get_preset(name).units
    bad = forbidden(u)
    assert bad  # these presets differ from e-commerce: the walk checks something
    said: list[str] = []
    for args in commands(sample, runs):
        r = cli(*args)
        assert r.code == 0, f"rfmseg {' '.join(args)}: {r.err}"
        text = prose(r.out)
        said.append(text)
        for word, pattern in bad.items():
            hit = pattern.search(text)
            assert hit is None, (
                f"rfmseg {' '.join(args[:3])} on a {name} run says {word!r}: "
                f"...{text[max(0, hit.start() - 80) : hit.end() + 40]}..."
            )
    everything = "\n".join(said)
    assert u.entity in everything and u.frequency in everything  # and it does speak of them


def test_the_mcp_prompts_speak_the_presets_units(preset_runs: tuple[str, Path, Path]) -> None:
    from rfmseg.agent.mcp_server import build_server

    name, _, runs = preset_runs
    u = get_preset(name).units
    summary = json.loads(sorted(runs.glob("2*/summary.json"))[-1].read_text())
    seg = summary["segments"][-1]["name"]
    server = build_server(runs)

    async def prompts() -> list[str]:
        out = []
        for prompt, args in (("segment_subject_lines", {"segment": seg}), ("win_back_email", {"segment": seg})):
            got = await server.get_prompt(prompt, args)
            out += [m.content.text for m in got.messages]  # type: ignore[union-attr]
        return out

    for text in asyncio.run(prompts()):
        for word, pattern in forbidden(u).items():
            hit = pattern.search(text)
            assert hit is None, f"an MCP prompt on a {name} run says {word!r}: ...{text[max(0, hit.start() - 80) :]}"
        assert u.entity in text
