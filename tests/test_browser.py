"""The explorer and the report in a real headless Chromium (Debian's /usr/bin/chromium via Playwright), against
a real `rfmseg serve` on a free loopback port. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rfmseg.report import REPORT_FILE
from test_api import StudyRuns, build_study_runs

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
POINTS = "document.querySelectorAll('#scatter .scatterlayer .point').length"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    return build_study_runs(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(runs: StudyRuns) -> Iterator[str]:
    yield from serve(runs)


def serve(runs: StudyRuns, api_key: str | None = None) -> Iterator[str]:
    """`rfmseg serve` on a free loopback port until the generator is closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RFMSEG_API_KEY", "RFMSEG_STORE")}
    if api_key:
        env["RFMSEG_API_KEY"] = api_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    cmd = [
        sys.executable,
        "-m",
        "rfmseg",
        "serve",
        "--port",
        str(port),
        "--runs-dir",
        str(runs.runs_dir),
        "--store",
        runs.store_url,
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{base}/health", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "rfmseg serve did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it via scripts/services.sh)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A browser page that records console errors, uncaught exceptions and every request that leaves the
    machine (none should)."""

    def __init__(self, browser: object) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.route("**/*", self._route)

    def _route(self, route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        local = url.startswith(("file:", "data:", "blob:", "http://127.0.0.1:", "http://localhost:"))
        if local:
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    def open(self, url: str) -> object:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        self.page.wait_for_function(f"{POINTS} > 0", timeout=30_000)
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def page(browser: object) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.page.close()


def card_values(pg: object, name: str) -> tuple[str, str]:
    card = pg.locator(f'.card[data-segment="{name}"]')  # type: ignore[attr-defined]
    return card.locator(".v-customers").inner_text(), card.locator(".v-revenue").inner_text()


def expected_cards(runs: StudyRuns) -> dict[str, tuple[str, str]]:
    return {s["name"]: (f"{s['customers']:,}", f"${s['revenue']:,.0f}") for s in runs.latest.summary["segments"]}


def test_explorer_loads_cleanly_and_shows_the_study(page: Page, server: str, runs: StudyRuns) -> None:
    pg = page.open(server + "/")
    assert card_values(pg, "Champions") == ("30", "$218,300")
    for name, values in expected_cards(runs).items():
        assert card_values(pg, name) == values
    assert pg.locator("#scatter-note").inner_text().startswith("showing all 200 customers")
    assert pg.locator("#sankey .sankey-node").count() == 8  # four segments on each side
    assert pg.locator("#elbow .point").count() >= 9 and pg.locator("#pareto .scatterlayer .trace").count() == 2
    page.shot("explorer.png")
    assert page.errors == []
    assert page.outside == []


def test_toggling_a_segment_changes_the_points_drawn(page: Page, server: str) -> None:
    pg = page.open(server + "/")
    assert pg.evaluate(POINTS) == 200
    pg.locator('#segment-toggles input[data-segment="Champions"]').uncheck()
    pg.wait_for_function(f"{POINTS} === 170")
    assert pg.locator("#points-drawn").get_attribute("data-count") == "170"
    hidden = pg.evaluate("document.getElementById('scatter').data.map(t => [t.name, t.visible])")
    assert ["Champions", "legendonly"] in hidden
    page.shot("explorer-toggled.png")
    pg.locator('#segment-toggles input[data-segment="Champions"]').check()
    pg.wait_for_function(f"{POINTS} === 200")
    assert page.errors == []


def test_the_3d_view_draws_every_segment(page: Page, server: str) -> None:
    pg = page.open(server + "/")
    pg.click("#view3d")
    pg.wait_for_function("document.getElementById('scatter3d').data !== undefined")
    traces = pg.evaluate("document.getElementById('scatter3d').data.map(t => [t.type, t.x.length])")
    assert sorted(n for _, n in traces) == [30, 40, 50, 80] and {t for t, _ in traces} == {"scatter3d"}
    assert page.errors == []


def test_searching_c087_shows_at_risk_with_its_history(page: Page, server: str, runs: StudyRuns) -> None:
    pg = page.open(server + "/")
    pg.fill("#search-id", "C087")
    pg.press("#search-id", "Enter")
    result = pg.locator('#search-result [data-customer="C087"]')
    result.wait_for()
    assert result.get_attribute("data-segment") == "At-Risk"
    assert result.locator(".badge").inner_text() == "At-Risk"
    assert "130 days since the last order · 8 orders · $3,800 spent" in result.inner_text()
    rows = result.locator("table.history tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").nth(0).inner_text() == runs.before.run_id
    assert f"Served by the profile store (run {runs.latest.run_id}): At-Risk" in result.inner_text()
    page.shot("explorer-search.png")
    pg.fill("#search-id", "C999")
    pg.press("#search-id", "Enter")
    pg.locator("#search-error").wait_for()
    assert pg.locator("#search-error").inner_text().startswith("customer 'C999' is in none of the 2 runs")


def test_the_report_opens_from_disk_with_the_same_cards(page: Page, runs: StudyRuns) -> None:
    report = runs.latest.path / REPORT_FILE
    pg = page.open(report.as_uri())
    for name, values in expected_cards(runs).items():
        assert card_values(pg, name) == values
    assert card_values(pg, "Champions") == ("30", "$218,300")
    pg.fill("#search-id", "C087")
    pg.press("#search-id", "Enter")
    result = pg.locator('#search-result [data-customer="C087"]')
    result.wait_for()
    assert result.get_attribute("data-segment") == "At-Risk"
    assert result.locator("table.history tbody tr").count() == 2
    page.shot("report.png")
    assert page.errors == []
    assert page.outside == []


def test_the_report_of_a_run_with_quarantined_rows_shows_data_quality(page: Page, runs: StudyRuns) -> None:
    pg = page.open((runs.before.path / REPORT_FILE).as_uri())
    quality = pg.locator("#quality-panel")
    assert quality.locator('tr[data-row="quarantined: negative_amount"] td').nth(1).inner_text() == "1"
    assert quality.locator('tr[data-row="quarantined: bad_date"] td').nth(1).inner_text() == "1"
    assert (
        quality.locator('tr[data-row="rows read"] td').nth(1).inner_text() == f"{runs.before.summary['rows']['read']:,}"
    )
    page.shot("report-quality.png")
    assert page.errors == []


def test_with_an_api_key_the_explorer_asks_for_it(page: Page, runs: StudyRuns) -> None:
    keyed = serve(runs, api_key="k-browser-1")
    base = next(keyed)
    try:
        pg = page.page
        pg.goto(base + "/")
        pg.locator("#api-key").wait_for()
        assert "This server needs an API key" in pg.locator("form.keyform").inner_text()
        pg.fill("#api-key", "k-browser-1")
        pg.press("#api-key", "Enter")
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert card_values(pg, "Champions") == ("30", "$218,300")
        page.shot("explorer-api-key.png")
    finally:
        keyed.close()


def test_the_run_picker_switches_runs(page: Page, server: str, runs: StudyRuns) -> None:
    pg = page.open(server + "/")
    pg.select_option("#run-select", runs.before.run_id)
    pg.wait_for_function(f"document.getElementById('run-line').textContent.includes('{runs.before.run_id}')")
    for s in runs.before.summary["segments"]:
        assert card_values(pg, s["name"]) == (f"{s['customers']:,}", f"${s['revenue']:,.0f}")
    assert pg.locator("#transitions-panel .note").inner_text().startswith("A Sankey of how customers moved")
    assert page.errors == []
