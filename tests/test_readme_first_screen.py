"""README's first screen, run as written: ``make demo``, then the explorer and the API with the commands the demo
prints, then the export. The commands are read from README.md, section "Two commands on a fresh machine": its
first console block is ``make demo`` and ``make test``, its second the next steps in order. The runs folder is a
temporary one (``RFMSEG_RUNS_DIR``, which the demo and serve both read); the server gets a free port
(``--port``, and the same port in the curl line)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servers import free_port, wait_until_listening

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTION = "## Two commands on a fresh machine"


@dataclass(frozen=True)
class FirstScreen:
    setup: list[str]
    """the first console block: make demo, make test"""
    next: list[str]
    """the second: serve, curl, export"""


def commands(block: str) -> list[str]:
    """The commands of a console block, each without its trailing comment (two spaces, then #)."""
    return [re.split(r"\s{2,}#", line)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def screen() -> FirstScreen:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "the section lost its console blocks"
    return FirstScreen(commands(blocks[0]), commands(blocks[1]))


def test_readme_starts_with_the_two_commands_then_the_next_steps(screen: FirstScreen) -> None:
    text = README.read_text(encoding="utf-8")
    assert text.index(SECTION) < text.index("```")  # the first code on the page
    assert screen.setup == ["make demo", "make test"]
    serve, curl, export = screen.next
    assert serve == ".venv/bin/rfmseg serve"
    assert curl == "curl 127.0.0.1:8000/customers/C087"
    assert export == ".venv/bin/rfmseg export --segment At-Risk --out at-risk.csv"


@dataclass(frozen=True)
class Demo:
    env: dict[str, str]
    out: str


@pytest.fixture(scope="module")
def demo(screen: FirstScreen, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """``make demo`` as README says, in the checkout (what it installs is already there after ``make test``)."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    env = {**os.environ, "RFMSEG_RUNS_DIR": str(tmp_path_factory.mktemp("first-screen") / "runs")}
    env.pop("RFMSEG_STORE", None)
    proc = subprocess.run(shlex.split(screen.setup[0]), cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return Demo(env, proc.stdout)


def test_make_demo_prints_the_next_steps_readme_shows(screen: FirstScreen, demo: Demo) -> None:
    assert "Segments — 200 customers, revenue $485,350, as of 2024-12-31" in demo.out
    assert "Published to sqlite:///" in demo.out and ": 200 customers" in demo.out
    serve, curl, _ = screen.next
    assert f"\n  {serve}\n  {curl}\n" in demo.out  # the commands the demo prints are README's


@pytest.fixture(scope="module")
def port(screen: FirstScreen, demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """README's serve command, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*shlex.split(screen.next[0]), "--port", str(port)], cwd=REPO, env=demo.env, stdout=sink, stderr=sink
        )
    try:
        wait_until_listening(port, proc, 60, log.read_text)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_explorer_and_the_api_answer_for_the_study(screen: FirstScreen, port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert r.status == 200 and "<title>rfmseg explorer</title>" in r.read().decode()
    curl = screen.next[1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    if shutil.which("curl"):
        body = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30, check=True).stdout
    else:  # the same request without curl
        with urllib.request.urlopen(f"http://{shlex.split(curl)[-1]}", timeout=10) as r:
            body = r.read().decode()
    customer = json.loads(body)
    assert (customer["customer_id"], customer["segment"]) == ("C087", "At-Risk")
    assert (customer["recency_days"], customer["frequency"], customer["monetary"]) == (130, 8, 3800)  # docs/study.md
    assert customer["action"] == "Win-back sequence, personalised incentive, exit survey"


def test_the_export_line_writes_the_at_risk_customers(screen: FirstScreen, demo: Demo, tmp_path: Path) -> None:
    import typer.main

    from rfmseg.cli import app

    if "export" not in getattr(typer.main.get_command(app), "commands", {}):
        pytest.skip("rfmseg export, README's third next step, is not in this build yet")
    words = shlex.split(screen.next[2])
    out = tmp_path / "at-risk.csv"
    words[words.index("--out") + 1] = str(out)  # README's file name, in a temporary folder
    proc = subprocess.run(words, cwd=REPO, env=demo.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    customers = [line for line in out.read_text().splitlines() if re.search(r"\bC\d{3}\b", line)]
    assert len(customers) == 40 and any("C087" in line for line in customers)  # the study's 40 At-Risk
