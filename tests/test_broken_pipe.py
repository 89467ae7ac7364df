"""Output whose reader left early (``rfmseg show latest | head -1``), with real processes and real pipes: every
command ends quietly with exit code 0 (rfmseg.cli.common.CLOSED_OUTPUT_EXIT), whether rich, click or a plain
write met the closed pipe, so a script under ``set -o pipefail`` goes on; an error still exits 2; and
``rfmseg serve`` keeps serving when no one reads its output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers import free_port

RFMSEG = [sys.executable, "-m", "rfmseg"]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study's demo run, by the command itself."""
    runs = tmp_path_factory.mktemp("pipe") / "runs"
    subprocess.run([*RFMSEG, "demo", "--runs-dir", str(runs)], check=True, capture_output=True)
    return runs


def closed_pipe() -> int:
    """The writing end of a pipe whose reader has already gone: the first write fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    return write


def run_into(args: list[str], *, stdout: int | None = None, stderr: int | None = None) -> tuple[int, str]:
    """Run ``rfmseg ARGS`` with the given descriptors (the other stream captured); exit code, captured text."""
    captured = subprocess.PIPE
    done = subprocess.run(
        [*RFMSEG, *args],
        stdout=stdout if stdout is not None else captured,
        stderr=stderr if stderr is not None else captured,
        text=True,
    )
    for fd in (stdout, stderr):
        if fd is not None:
            os.close(fd)
    return done.returncode, (done.stderr if stderr is None else done.stdout) or ""


COMMANDS = {
    "show (rich table)": ["show", "latest"],
    "show --json (plain write)": ["show", "latest", "--json"],
    "runs list": ["runs", "list"],
    "runs show": ["runs", "show", "latest"],
    "watch": ["watch"],
    "history": ["history", "C001"],
    "datasets list": ["datasets", "list"],
    "presets": ["presets"],
    "--help (click and rich)": ["--help"],
    "a command's --help": ["transitions", "--help"],
    "export to stdout": ["export", "latest", "-o", "-"],
}


@pytest.mark.parametrize("args", list(COMMANDS.values()), ids=list(COMMANDS))
def test_a_reader_gone_ends_every_command_quietly_with_0(demo_runs: Path, args: list[str]) -> None:
    takes_runs = args[0] in ("show", "runs", "watch", "history", "export")
    code, stderr = run_into([*args, *(["--runs-dir", str(demo_runs)] if takes_runs else [])], stdout=closed_pipe())
    assert (code, stderr) == (0, "")


def test_the_demo_writes_its_run_then_ends_quietly(tmp_path: Path) -> None:
    """The command's work is done before it prints: a reader gone costs only the text."""
    code, stderr = run_into(["demo", "--runs-dir", str(tmp_path / "runs")], stdout=closed_pipe())
    assert (code, stderr) == (0, "")
    assert [p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").is_file()]


def test_an_error_keeps_its_exit_code_when_no_one_reads_stderr(demo_runs: Path) -> None:
    assert run_into(["history", "NOPE", "--runs-dir", str(demo_runs)], stderr=closed_pipe())[0] == 2
    assert run_into(["no-such-command"], stderr=closed_pipe())[0] == 2
    both = closed_pipe()
    done = subprocess.run([*RFMSEG, "show", "NOPE", "--runs-dir", str(demo_runs)], stdout=both, stderr=both)
    os.close(both)
    assert done.returncode == 2


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None, reason="needs bash and head")
def test_a_pipefail_script_reading_the_first_line_goes_on(demo_runs: Path) -> None:
    rfmseg = " ".join(RFMSEG)
    script = (
        "set -o pipefail\n"
        f"{rfmseg} runs show latest --runs-dir '{demo_runs}' | head -1\n"
        f"{rfmseg} --help | head -1\n"
        "echo done"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1] == "done" and len(done.stdout.splitlines()) == 3


def test_serve_keeps_serving_when_no_one_reads_its_output(demo_runs: Path) -> None:
    """SIGPIPE keeps Python's disposition: the server's log lines into a closed pipe never kill it."""
    port = free_port()
    out, err = closed_pipe(), closed_pipe()
    env = {k: v for k, v in os.environ.items() if k not in ("RFMSEG_STORE", "RFMSEG_API_KEY")}
    server = subprocess.Popen(
        [*RFMSEG, "serve", "--port", str(port), "--runs-dir", str(demo_runs)], stdout=out, stderr=err, env=env
    )
    os.close(out)
    os.close(err)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, f"rfmseg serve ended with {server.returncode}"
                assert time.monotonic() < deadline, "rfmseg serve did not start"
                time.sleep(0.2)
        assert first.status_code == 200
        for _ in range(3):  # each request writes an access-log line into the closed pipe
            assert httpx.get(f"http://127.0.0.1:{port}/customers/C001", timeout=5).status_code == 200
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=20)
