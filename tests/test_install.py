"""Install hints say the command that works where rfmseg runs: the checkout's own pip on its own folder for an
editable install (what `make demo` and `make test` make), ``pip install 'rfmseg[extra]'`` for an installed
package; every message that asks for an install takes it from rfmseg.install."""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from rfmseg.cli.common import run_app
from rfmseg.install import editable_checkout, install_command

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "rfmseg"


def dist_info(tmp: Path, direct_url: dict[str, object] | None) -> metadata.Distribution:
    """A real installed-distribution record (a .dist-info folder) as pip writes it."""
    folder = tmp / "rfmseg-0.1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: rfmseg\nVersion: 0.1.0\n")
    if direct_url is not None:
        (folder / "direct_url.json").write_text(json.dumps(direct_url))
    return metadata.PathDistribution(folder)


@pytest.fixture
def this_checkout(monkeypatch: pytest.MonkeyPatch) -> Path:
    if editable_checkout() != REPO:
        pytest.skip(f"rfmseg is not installed in editable mode from {REPO} here (make .venv/.dev does that)")
    monkeypatch.chdir(REPO)
    return REPO


def test_an_editable_checkout_gets_its_own_pip_and_folder(this_checkout: Path, tmp_path: Path) -> None:
    pip = Path(sys.executable).with_name("pip")
    assert install_command("serve") == f"{pip.relative_to(this_checkout)} install -e '.[serve]'"
    assert install_command() == f"{pip.relative_to(this_checkout)} install -e '.'"


def test_from_another_folder_the_paths_are_absolute(this_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    pip = Path(sys.executable).with_name("pip").absolute()
    assert install_command("postgres") == f"{pip} install -e '{this_checkout}[postgres]'"


@pytest.mark.parametrize(
    "record",
    [None, {"url": "https://files.example/rfmseg-0.1.0-py3-none-any.whl", "archive_info": {}}],
    ids=["from an index", "from a wheel URL"],
)
def test_an_installed_package_gets_pip_install_with_the_extra(tmp_path: Path, record: dict | None) -> None:
    dist = dist_info(tmp_path, record)
    assert editable_checkout(dist) is None
    assert install_command("serve", dist) == "pip install 'rfmseg[serve]'"
    assert install_command(None, dist) == "pip install rfmseg"


def test_an_editable_record_elsewhere_points_at_that_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "my checkout"
    checkout.mkdir()
    dist = dist_info(tmp_path, {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    assert editable_checkout(dist) == checkout
    monkeypatch.chdir(checkout)
    assert install_command("mcp", dist).endswith(" install -e '.[mcp]'")


def test_rfmseg_serve_without_its_extra_says_the_command(
    this_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail, as without the extra
    assert run_app(["serve", "--port", "8999"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: rfmseg serve needs uvicorn: {install_command('serve')}\n"
    assert "install -e '.[serve]'" in err


def test_every_install_hint_goes_through_the_helper() -> None:
    literal = re.compile(r"pip install")
    sites = [
        f"{p.relative_to(SRC)}:{n}"
        for p in sorted(SRC.rglob("*.py"))
        if p.name != "install.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
        if literal.search(line)
    ]
    assert sites == []
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "install_command(" in p.read_text())
    assert users == [
        "agent/mcp_server.py",
        "cli/core.py",
        "cli/serve.py",
        "engines/spark_session.py",
        "install.py",
        "io/postgres.py",
        "io/readers.py",
        "jobs/rhythm.py",
        "model/rhythm.py",
        "stores/__init__.py",
    ]


def test_the_demo_without_the_serve_extra_says_how_to_add_it(
    this_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as in an install without the serve extra
    assert run_app(["demo", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"The explorer and the API need the serve extra: {install_command('serve')}\nNext: " in out
