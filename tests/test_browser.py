"""The explorer and the report in a real headless Chromium (Debian's /usr/bin/chromium via Playwright), against
a real `rfmseg serve` on a free loopback port: the study, and the UCI Online Retail file (from the data set
cache) as two runs. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from rfmseg.cli.common import segment_rich_table
from rfmseg.jobs.publish import publish_run
from rfmseg.jobs.run import segment
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
def retail_runs(tmp_path_factory: pytest.TempPathFactory, online_retail: Path) -> StudyRuns:
    """Online Retail as two runs (the invoices before 20 November 2011, then the whole file: few new customers,
    so "(new)" would be a hairline at its true size), both published."""
    root = tmp_path_factory.mktemp("retail")
    lines = pd.read_parquet(online_retail)
    early = root / "before-20-november.parquet"
    lines[pd.to_datetime(lines["InvoiceDate"]) < "2011-11-20"].to_parquet(early)
    runs_dir, store_url = root / "runs", f"sqlite:///{root / 'profiles.db'}"
    before = segment(early, preset="online-retail", runs_dir=runs_dir)
    latest = segment(online_retail, preset="online-retail", runs_dir=runs_dir)
    for r in (before, latest):
        publish_run(r.run_id, runs_dir, store_url)
    return StudyRuns(root, runs_dir, store_url, before, latest)


@pytest.fixture(scope="module")
def retail_server(retail_runs: StudyRuns) -> Iterator[str]:
    yield from serve(retail_runs)


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


# ----------------------------------------------------------------------------------------------- charts
def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and (b["y"] < a["y"] + a["height"])
    )


def check_titles_clear_of_the_mode_bar(pg: object, expected: set[str]) -> None:
    """Every chart on the page has a title and a visible mode bar, and their boxes do not meet."""
    figures = pg.locator("figure.chart:visible")  # type: ignore[attr-defined]
    seen = set()
    for i in range(figures.count()):
        fig = figures.nth(i)
        plot = fig.locator(".js-plotly-plot")
        seen.add(plot.get_attribute("id"))
        bar = fig.locator(".modebar").bounding_box()
        title = fig.locator(".chart-title").bounding_box()
        assert bar and bar["width"] > 20 and title and title["width"] > 20, plot.get_attribute("id")
        assert not overlap(bar, title), (plot.get_attribute("id"), bar, title)
        assert fig.locator(".chart-title").inner_text().strip()
    assert seen == expected


def test_the_mode_bar_never_covers_a_chart_title(page: Page, server: str) -> None:
    pg = page.open(server + "/")
    check_titles_clear_of_the_mode_bar(pg, {"scatter", "elbow", "silhouette", "pareto", "sankey"})
    assert pg.locator("#elbow-title").inner_text().startswith("Elbow: inertia by K")
    pg.click("#view3d")
    pg.wait_for_function("document.getElementById('scatter3d').data !== undefined")
    check_titles_clear_of_the_mode_bar(pg, {"scatter3d", "elbow", "silhouette", "pareto", "sankey"})
    pg.locator("#elbow-title").scroll_into_view_if_needed()
    pg.locator("#k-panel").screenshot(path=str(ARTIFACTS / "explorer-k-titles.png"))
    assert page.errors == []


def y_spread(pg: object) -> float:
    """The interquartile range of the drawn points' y pixel positions, as a share of the plot area's height."""
    ys = pg.evaluate(  # type: ignore[attr-defined]
        "Array.from(document.querySelectorAll('#scatter .scatterlayer .point'), p => {"
        " const r = p.getBoundingClientRect(); return r.height ? r.top + r.height / 2 : null; })"
        ".filter(y => y !== null)"
    )
    height = pg.locator("#scatter .nsewdrag").bounding_box()["height"]  # type: ignore[attr-defined]
    q1, q3 = np.percentile(ys, [25, 75])
    return float(q3 - q1) / height


def test_online_retail_spend_starts_on_a_log_scale_and_the_points_spread(page: Page, retail_server: str) -> None:
    pg = page.open(retail_server + "/")
    toggle = pg.locator("#log-toggle")
    assert toggle.get_attribute("aria-pressed") == "true" and toggle.get_attribute("data-auto") == "true"
    assert pg.evaluate("document.getElementById('scatter').layout.yaxis.type") == "log"
    note = pg.locator("#log-note").inner_text()
    assert note.startswith("Spend is heavy-tailed (the 99th percentile is ") and "over 10×" in note
    page.shot("explorer-online-retail.png")
    spread = y_spread(pg)
    assert spread > 0.1, spread
    check_titles_clear_of_the_mode_bar(pg, {"scatter", "elbow", "silhouette", "pareto", "sankey"})
    toggle.click()  # the user can still have it linear: then 4,338 customers squash onto a line
    pg.wait_for_function("document.getElementById('scatter').layout.yaxis.type === 'linear'")
    page.shot("explorer-online-retail-linear.png")
    assert y_spread(pg) < spread / 10
    assert page.errors == []
    assert page.outside == []


def test_the_study_spend_is_not_heavy_tailed_so_it_starts_linear(page: Page, server: str) -> None:
    pg = page.open(server + "/")
    assert pg.locator("#log-toggle").get_attribute("aria-pressed") == "false"
    assert pg.evaluate("document.getElementById('scatter').layout.yaxis.type") == "linear"
    assert pg.locator("#log-note").inner_text().startswith("Spend is not heavy-tailed")


def test_the_new_and_gone_flows_are_readable(page: Page, retail_server: str, retail_runs: StudyRuns) -> None:
    pg = page.open(retail_server + "/")
    nodes = pg.locator("#sankey .sankey-node")
    labels = [nodes.nth(i).text_content() for i in range(nodes.count())]
    new = next(i for i, text in enumerate(labels) if text.startswith("(new)"))
    transitions = httpx.get(f"{retail_server}/runs/latest/view").json()["transitions"]
    assert transitions["new"] > 0 and labels[new] == f"(new): {transitions['new']:,} customers"
    height = nodes.nth(new).locator("rect.node-rect").bounding_box()["height"]
    sankey = pg.locator("#sankey .nsewdrag, #sankey .main-svg").first.bounding_box()["height"]
    flow = sum(transitions[k] for k in ("customers", "new", "gone"))
    assert transitions["new"] / flow < 0.04  # at its true size "(new)" would be a hairline; the floor applies
    assert height >= 12 and height >= 0.025 * sankey, (height, sankey)
    pg.locator("#transitions-panel").screenshot(path=str(ARTIFACTS / "explorer-online-retail-sankey.png"))
    assert page.errors == []


# ----------------------------------------------------------------------------------------------- rounding
def test_the_cards_round_as_the_cli_does(page: Page, server: str, runs: StudyRuns) -> None:
    pg = page.open(server + "/")
    summary = runs.latest.summary
    table = segment_rich_table(summary)
    cells = {c.header: list(c._cells) for c in table.columns}
    for i, s in enumerate(summary["segments"]):
        card = pg.locator(f'.card[data-segment="{s["name"]}"]')
        recency = cells["recency"][i].removesuffix("d")
        want = f"{recency} days · {cells['orders'][i]} orders · {cells['spend'][i]}"
        assert card.locator(".profile").inner_text() == want
        assert card.locator(".v-customers").inner_text() == cells["customers"][i]
        assert card.locator(".v-revenue").inner_text() == cells["revenue"][i]
    at_risk = pg.locator('.card[data-segment="At-Risk"] .profile').inner_text()
    assert " 8.2 orders " in f" {at_risk} "  # mean 8.25: Python rounds the binary value half to even
    values = [8.25, 0.125, 2.675, 1.005, 2.5, 3.5, -0.04, 1234567.5, 0.5, 9.995, 1e-20, 279489.02, 99.95]
    for d in (0, 1, 2):
        got = pg.evaluate(f"{values}.map(x => window.rfmsegFormat.pyFixed(x, {d}))")
        assert got == [format(x, f",.{d}f") for x in values]


# ----------------------------------------------------------------------------------------------- customer table
def table_ids(pg: object) -> list[str]:
    rows = pg.locator("#segment-table tbody tr")  # type: ignore[attr-defined]
    return [rows.nth(i).get_attribute("data-customer") for i in range(rows.count())]


def test_the_customer_table_shows_sorts_and_pages(page: Page, server: str, runs: StudyRuns) -> None:
    pg = page.open(server + "/")
    name = max(runs.latest.summary["segments"], key=lambda s: s["customers"])["name"]
    size = next(s["customers"] for s in runs.latest.summary["segments"] if s["name"] == name)
    pg.locator(f'.card[data-segment="{name}"] button.show-customers').click()
    pg.wait_for_selector(f'#segment-table[data-segment="{name}"]')

    def api(**params: object) -> list[str]:
        body = httpx.get(f"{server}/segments/{name}/customers", params={"page_size": 25, **params}).json()
        return [c["customer_id"] for c in body["customers"]]

    assert table_ids(pg) == api(sort="monetary", order="desc")
    assert pg.locator("#table-count").inner_text() == f"{size} customers"
    assert pg.locator("#page-info").inner_text() == f"page 1 of {-(-size // 25)}"
    pg.locator('#segment-table th[data-key="recency_days"] button').click()
    pg.wait_for_selector('#segment-table[data-sort="recency_days"][data-order="asc"]')
    assert table_ids(pg) == api(sort="recency_days", order="asc")
    days = [int(x) for x in pg.locator('#segment-table td[data-key="recency_days"]').all_inner_texts()]
    assert days == sorted(days)
    assert pg.locator('#segment-table th[data-key="recency_days"]').get_attribute("aria-sort") == "ascending"
    pg.click("#page-next")
    pg.wait_for_selector('#segment-table[data-page="2"]')
    assert table_ids(pg) == api(sort="recency_days", order="asc", page=2)
    page.shot("explorer-customer-table.png")
    pg.click("#page-prev")
    pg.wait_for_selector('#segment-table[data-page="1"]')
    pg.locator('#segment-table th[data-key="recency_days"] button').click()
    pg.wait_for_selector('#segment-table[data-sort="recency_days"][data-order="desc"]')
    assert table_ids(pg) == api(sort="recency_days", order="desc")
    assert page.errors == []


def test_the_csv_link_downloads_the_whole_segment(page: Page, retail_server: str, retail_runs: StudyRuns) -> None:
    pg = page.open(retail_server + "/")
    a = retail_runs.latest.assignments.to_pandas()
    name = a.segment.value_counts().index[0]
    pg.select_option("#table-segment", name)
    pg.wait_for_selector(f'#segment-table[data-segment="{name}"]')
    with pg.expect_download() as info:
        pg.click("#csv-link")
    path = info.value.path()
    got = pd.read_csv(path, dtype={"customer_id": str})
    want = a[a.segment == name]
    assert len(got) == len(want) > 1_000
    assert set(got.customer_id) == set(want.customer_id.astype(str))
    assert got.monetary.is_monotonic_decreasing  # the table's order: spend, highest first
    assert info.value.suggested_filename == f"{retail_runs.latest.run_id}-{name.lower().replace(' ', '-')}.csv"
    assert page.errors == []


def test_the_explorer_lists_the_campaigns_with_their_measured_uplift(page: Page, tmp_path: Path) -> None:
    """A registry with a holdout campaign measured on the simulator (a known +25 points on At-Risk): the
    explorer's campaigns panel shows it with its uplift, its interval and the verdict."""
    from datetime import date, timedelta
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq

    from rfmseg.jobs import campaign
    from rfmseg.simulate import SimConfig, play_campaign, simulate

    send = date(2024, 1, 7)
    history = simulate(SimConfig(customers=1_600, weeks=1, seed=11)).snapshot(send)
    runs_dir, store_url = tmp_path / "runs", f"sqlite:///{tmp_path / 'profiles.db'}"
    result = segment(history, runs_dir=runs_dir, as_of=send.isoformat())
    publish_run(result.run, runs_dir, store_url)
    plan = campaign.plan("browser-winback", ["At-Risk"], "win_back", "30%", runs_dir=runs_dir)
    members = pq.read_table(Path(plan["folder"]) / "members.parquet")
    window = play_campaign(members, send, 30, {"At-Risk": 0.05}, {"At-Risk": 0.25}, seed=2)
    end = pa.table({"customer_id": ["ZZZ"], "order_id": ["Z1"], "order_date": [send + timedelta(days=30)]})
    end = end.append_column("amount", pa.array([1.0]))
    data = tmp_path / "after.parquet"
    pq.write_table(pa.concat_tables([history, window.cast(history.schema), end.cast(history.schema)]), data)
    measured = campaign.measure("browser-winback", data, runs_dir=runs_dir)["all"]
    served = serve(SimpleNamespace(runs_dir=runs_dir, store_url=store_url))
    base = next(served)
    try:
        pg = page.open(base + "/")
        row = pg.locator('#campaigns-panel tr[data-campaign="browser-winback"]')
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[:3] == ["browser-winback", "win_back", "At-Risk"]
        assert cells[3:5] == [f"{plan['treated']:,}", f"{plan['control']:,}"]
        assert cells[6].startswith(f"+{100 * measured['uplift']:.1f} pts [")
        assert cells[7] == measured["verdict"] and "raised conversion" in cells[7]
        page.shot("explorer-campaigns.png")
        assert page.errors == []
    finally:
        served.close()


# ----------------------------------------------------------------------------------------------- units
# A SaaS and a CRM run speak their preset's units (rfmseg.features.Units) everywhere the page words a figure:
# users, sessions and features used (no currency, no revenue, no AOV), leads, touchpoints and pipeline value.
PRESET_DATES = {"saas": "last_used", "crm": "last_activity"}
PAGE_TEXT = """() => {
  const parts = [document.body.innerText];
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    for (const t of gd.data || []) {
      parts.push(t.name || "", t.hovertemplate || "");
      if (t.node) parts.push(t.node.hovertemplate || "", ...(t.node.label || []));
      if (t.link) parts.push(t.link.hovertemplate || "");
    }
    const l = gd.layout || {};
    const s = l.scene || {};
    for (const a of [l.xaxis, l.yaxis, s.xaxis, s.yaxis, s.zaxis]) if (a && a.title) parts.push(a.title.text || "");
  }
  for (const t of document.querySelectorAll("svg text")) parts.push(t.textContent);
  return parts.join("\\n");
}"""


@pytest.fixture(scope="module", params=sorted(PRESET_DATES))
def preset_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    """The preset's sample as two runs (its events up to 30 days before the last, then all of them), published:
    so the page has a Sankey of the preset's entity too."""
    from rfmseg.presets import get_preset

    preset = request.param
    root = tmp_path_factory.mktemp(preset)
    sample = get_preset(preset).sample_path()
    rows = pd.read_csv(sample, dtype=str)
    when = pd.to_datetime(rows[PRESET_DATES[preset]])
    early = root / f"early-{sample.name}"
    rows[when < when.max() - pd.Timedelta(days=30)].to_csv(early, index=False)
    runs_dir, store_url = root / "runs", f"sqlite:///{root / 'profiles.db'}"
    before = segment(early, preset=preset, runs_dir=runs_dir)
    latest = segment(sample, preset=preset, runs_dir=runs_dir)
    for r in (before, latest):
        publish_run(r.run_id, runs_dir, store_url)
    return StudyRuns(root, runs_dir, store_url, before, latest)


@pytest.fixture(scope="module")
def preset_server(preset_runs: StudyRuns) -> Iterator[str]:
    yield from serve(preset_runs)


def everything_worded(pg: object, runs: StudyRuns, shot: Page, name: str) -> str:
    """The page's words after the 3-D view is drawn, a customer found and a point hovered: its visible text,
    chart titles, axis titles, trace names, hover templates and the hover label shown."""
    customer = runs.latest.assignments.column("customer_id")[0].as_py()
    pg.fill("#search-id", customer)  # type: ignore[attr-defined]
    pg.press("#search-id", "Enter")  # type: ignore[attr-defined]
    pg.locator(f'#search-result [data-customer="{customer}"]').wait_for()  # type: ignore[attr-defined]
    point = pg.locator("#scatter .scatterlayer .point").first.bounding_box()  # type: ignore[attr-defined]
    pg.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)  # type: ignore[attr-defined]
    pg.locator("#scatter .hoverlayer .hovertext").first.wait_for()  # type: ignore[attr-defined]
    hover = pg.locator("#scatter .hoverlayer").text_content()  # type: ignore[attr-defined]
    shot.shot(name)
    pg.click("#view3d")  # type: ignore[attr-defined]
    pg.wait_for_function("document.getElementById('scatter3d').data !== undefined")  # type: ignore[attr-defined]
    text = f"{pg.evaluate(PAGE_TEXT)}\n{hover}"  # type: ignore[attr-defined]
    (ARTIFACTS / name).with_suffix(".txt").write_text(text, encoding="utf-8")  # what was checked, beside the shot
    return text


def check_words(preset: str, text: str) -> None:
    words = set(re.findall(r"[A-Za-z]+", text.lower()))
    banned = {"order", "orders", "aov", "spent", "spend", "revenue", "spenders"}
    found = [line for line in text.splitlines() if banned & set(re.findall(r"[A-Za-z]+", line.lower()))]
    assert not found, (preset, found)
    assert "null" not in words and "[object" not in text  # no panel left out as "null", no list as "[object Object]"
    if preset == "saas":
        assert "$" not in text and {"users", "sessions", "features", "used"} <= words
        assert "pipeline" not in words and "concentration" not in words  # features used have no meaningful sum
    else:
        assert "$" in text and {"leads", "touchpoints", "deal", "size", "pipeline", "value"} <= words
        assert "Pipeline value concentration" in text


def test_the_explorer_speaks_the_presets_units(page: Page, preset_server: str, preset_runs: StudyRuns) -> None:
    preset = preset_runs.latest.summary["preset"]
    pg = page.open(preset_server + "/")
    pg.wait_for_selector("#segment-table")
    units = preset_runs.latest.summary["units"]
    assert pg.locator("#table-count").inner_text().endswith(f" {units['entity']}")
    headers = pg.locator("#segment-table th").all_inner_texts()
    assert [h.rstrip(" ▲▼") for h in headers] == [
        units["entity"].removesuffix("s"),
        "recency (days)",
        units["frequency"],
        units["monetary"],
        "distance to centroid",
    ]
    text = everything_worded(pg, preset_runs, page, f"explorer-{preset}.png")
    check_words(preset, text)
    assert f"recency %{{x}} days<br>%{{customdata[1]}} {units['frequency']}" in text
    expected = {"scatter3d", "elbow", "silhouette", "sankey"} | ({"pareto"} if units["total"] else set())
    check_titles_clear_of_the_mode_bar(pg, expected)
    assert page.errors == []
    assert page.outside == []


def test_the_report_speaks_the_presets_units(page: Page, preset_runs: StudyRuns) -> None:
    preset = preset_runs.latest.summary["preset"]
    units = preset_runs.latest.summary["units"]
    pg = page.open((preset_runs.latest.path / REPORT_FILE).as_uri())
    first = preset_runs.latest.summary["segments"][0]
    card = pg.locator(f'.card[data-segment="{first["name"]}"]')
    assert card.locator("dt").all_text_contents()[0] == units["entity"].capitalize()  # shown in capitals (CSS)
    assert (card.locator(".v-revenue").count() == 1) == bool(units["total"])
    assert card.locator(".v-aov").count() == 0
    text = everything_worded(pg, preset_runs, page, f"report-{preset}.png")
    check_words(preset, text)
    assert f"showing all {preset_runs.latest.summary['n_customers']:,} {units['entity']}" in text
    line = pg.locator("#search-result .values-line").inner_text()
    assert re.fullmatch(
        rf"\d+ days since the last {units['event']} · \d+ {units['frequency']} · {units['monetary']} \S+", line
    )
    assert page.errors == []
    assert page.outside == []


def test_the_report_shows_each_segments_rhythm(page: Page, tmp_path: Path) -> None:
    """A run with --rhythm: the report's rhythm panel has a row per segment and one for all customers, with
    the median P(alive) and value as the summary has them; a crm run's panel says why there is none."""
    from rfmseg.datasets import study
    from rfmseg.presets import get_preset

    run = segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=tmp_path / "runs", rhythm=True)
    pg = page.open((run.path / REPORT_FILE).as_uri())
    panel = pg.locator("#rhythm-panel")
    rhythm = run.summary["rhythm"]
    assert panel.locator("tbody tr").count() == len(rhythm["segments"]) + 1
    champions = next(s for s in rhythm["segments"] if s["segment"] == "Champions")
    cells = panel.locator('tr[data-row="Champions"] td')
    assert cells.nth(1).inner_text() == f"{champions['customers']:,}"
    assert cells.nth(3).inner_text().startswith(f"{champions['expected_orders_90d']['median']:,.2f} (")
    assert cells.nth(5).inner_text() == f"${champions['expected_value_90d']['mean']:,.0f}"
    page.shot("report-rhythm.png")
    assert page.errors == []
    # no panel left empty writes "null" between the others (the page's children are all elements)
    assert all(n == 1 for n in pg.locator("#app").evaluate("n => [...n.childNodes].map(c => c.nodeType)"))
    crm = get_preset("crm")
    other = segment(crm.sample_path(), preset="crm", runs_dir=tmp_path / "crm")
    note = page.open((other.path / REPORT_FILE).as_uri()).locator("#rhythm-panel .note").inner_text()
    assert note == f"Not fitted: preset 'crm': {crm.rhythm_note}."
    assert page.errors == []
