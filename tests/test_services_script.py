"""scripts/services.sh (what `make test` runs first): on a machine that lacks a service and cannot install it with
apt-get, one line names what is missing and how to get it, and the script exits 1 before the test suite starts.

Run with a PATH holding only what the script needs to get that far (``id``), so PostgreSQL, Redis, Java and
apt-get are all absent, whatever this machine has."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"
BASH = shutil.which("bash")


@pytest.fixture
def bare_path(tmp_path: Path) -> str:
    """A PATH with ``id`` and nothing else."""
    found = shutil.which("id")
    if BASH is None or found is None:
        pytest.skip("no bash or id on this machine")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "id").symlink_to(found)
    return str(tmp_path / "bin")


def run(path: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert BASH is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith("RFMSEG_TEST_")}
    return subprocess.run(
        [BASH, str(SCRIPT)], env={**base, "PATH": path, **env}, capture_output=True, text=True, timeout=60
    )


def test_postgresql_missing_is_one_line(bare_path: str) -> None:
    r = run(bare_path)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        "services.sh: PostgreSQL is missing: install it (Debian/Ubuntu: sudo apt-get install -y postgresql "
        "postgresql-client), or run make test as root where apt-get can\n"
    )


def test_a_server_of_your_own_is_left_alone_and_the_next_need_is_named(bare_path: str) -> None:
    r = run(bare_path, RFMSEG_TEST_POSTGRES_URL="postgresql://u@db.example:5432/t")
    assert r.returncode == 1 and r.stderr.startswith("services.sh: Redis is missing: install it (Debian/Ubuntu: ")
    r = run(bare_path, RFMSEG_TEST_POSTGRES_URL="postgresql://u@db/t", RFMSEG_TEST_REDIS_URL="redis://r:6379/0")
    assert r.returncode == 1
    assert r.stderr == (
        "services.sh: Java 17 or newer (for the Spark tests) is missing: install it (Debian/Ubuntu: "
        "sudo apt-get install -y default-jre-headless), or run make test as root where apt-get can\n"
    )
