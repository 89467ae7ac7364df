"""The progress display: drawn on a terminal (stderr a TTY), never on a pipe or with --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from rfmseg.engines.local import LocalEngine
from rfmseg.timing import Timer, observed

RFMSEG = [sys.executable, "-m", "rfmseg"]


def _run(args: list[str], *, tty: bool, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (tty) or a pipe; stdout is always a pipe."""
    if not tty:
        p = subprocess.run([*RFMSEG, *args], capture_output=True, text=True, env=env, timeout=300)
        return p.returncode, p.stdout, p.stderr
    leader, follower = pty.openpty()
    p = subprocess.Popen([*RFMSEG, *args], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read().decode() if p.stdout else ""
    code = p.wait(timeout=300)
    os.close(leader)
    return code, out, b"".join(chunks).decode(errors="replace")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RFMSEG_PROGRESS_AFTER": "0", "TERM": "xterm", "COLUMNS": "100"}


def test_a_terminal_sees_the_stages_and_a_pipe_sees_nothing(study_orders: Path, tmp_path: Path, env) -> None:
    args = ["run", str(study_orders), "--runs-dir", str(tmp_path / "runs")]
    code, out, err = _run(args, tty=True, env=env)
    assert code == 0 and "written to" in out
    # each stage is drawn while it runs (the display is cleared at the end, but the terminal saw it)
    assert "validate" in err and "fit" in err, err
    code, out_piped, err_piped = _run(args, tty=False, env=env)
    assert code == 0 and "written to" in out_piped
    assert err_piped == "", err_piped  # a pipe gets no display and no escape codes
    code, out_json, err_json = _run([*args, "--json"], tty=True, env=env)
    assert code == 0 and json.loads(out_json)["n_customers"] == 200
    assert "validate" not in err_json and "\x1b[" not in err_json  # --json draws nothing either


def test_the_display_waits_before_it_shows(study_orders: Path, tmp_path: Path, env) -> None:
    """A run quicker than the delay prints exactly what it printed without a display."""
    env = {**env, "RFMSEG_PROGRESS_AFTER": "600"}
    code, out, err = _run(["run", str(study_orders), "--runs-dir", str(tmp_path / "runs")], tty=True, env=env)
    assert code == 0 and "written to" in out and "validate" not in err


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.readings: list[float | None] = []

    def watch(self, percent) -> None:
        self.percent = percent

    def started(self, name: str, detail: str = "") -> None:
        self.events.append(f"+{name}{detail}")
        self.readings.append(self.percent())

    def finished(self, name: str) -> None:
        self.events.append(f"-{name}")


def test_a_timer_reports_its_stages_and_the_engine_measure_to_the_observer_in_force() -> None:
    engine = LocalEngine()
    rec = Recorder()
    with observed(rec):
        timer = Timer()
    timer.watch(engine)
    with timer.stage("rfm", " 3 customers"):
        engine.con.execute("SELECT count(*) FROM range(1000)").fetchall()
    assert rec.events == ["+rfm 3 customers", "-rfm"] and rec.readings == [None]  # no query running at the start
    assert Timer().observer is None  # outside the block: nobody observes
    engine.close()
