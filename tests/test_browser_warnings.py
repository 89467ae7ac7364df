"""The early-warnings panel and the customer card's forecast, in a real headless Chromium against a real
`rfmseg serve` (the helpers and fixtures of test_browser.py): the simulator's weekly runs (2,000 customers, 6 weeks
after the first), the panel from GET /warnings, its CSV, and the same panel in the run folders' report.html
opened from disk. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import test_browser
from rfmseg.jobs.publish import publish_run
from rfmseg.report import REPORT_FILE, write_report
from rfmseg.report.data import embedded_warnings
from rfmseg.runs import warnings as early
from test_browser import Page, serve

browser = test_browser.browser  # the fixtures of test_browser.py: one Chromium per module, a page per test
page = test_browser.page
preset_runs = test_browser.preset_runs  # a SaaS and a CRM preset's sample as two runs
preset_server = test_browser.preset_server

pytestmark = pytest.mark.browser
pytest.importorskip("playwright.sync_api")

PAGE_ROWS = 50


@dataclass
class SimRuns:
    root: Path
    runs_dir: Path
    store_url: str
    run_ids: list[str]


@pytest.fixture(scope="module")
def weekly(tmp_path_factory: pytest.TempPathFactory) -> SimRuns:
    """2,000 simulated customers (enough for a warning to page): a retrain at week 0, then a refresh each week
    for 6 weeks; the last published."""
    from rfmseg.jobs import refresh, retrain
    from rfmseg.runs import list_runs
    from rfmseg.simulate import SimConfig, simulate

    root = tmp_path_factory.mktemp("warnings")
    runs_dir, store_url = root / "runs", f"sqlite:///{root / 'profiles.db'}"
    s = simulate(SimConfig(customers=2000, weeks=6, seed=7))
    for week, d in enumerate(s.config.as_of_dates()):
        if week == 0:
            retrain(s.snapshot(d), as_of=d, runs_dir=runs_dir, previous=None, publish=False)
        else:
            refresh(s.snapshot(d), as_of=d, runs_dir=runs_dir, publish=False)
    ids = [r.run_id for r in list_runs(runs_dir)]
    publish_run(ids[-1], runs_dir, store_url)
    return SimRuns(root, runs_dir, store_url, ids)


@pytest.fixture(scope="module")
def weekly_server(weekly: SimRuns) -> Iterator[str]:
    yield from serve(weekly)  # type: ignore[arg-type]  # serve reads runs_dir and store_url only


def _columns(rows: list[dict]) -> list[str]:
    seen = dict.fromkeys(["customer_id"])
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _wait_panel(pg: object) -> object:
    pg.locator("#warnings-panel[data-run]").wait_for()  # type: ignore[attr-defined]  # not the placeholder
    return pg.locator("#warnings-panel")  # type: ignore[attr-defined]


def check_panel(page: Page, panel: object, found: dict, *, capped_at: int | None = None) -> int:
    """Every warning of ``found`` is a block with its count, rule, parameters and customer table; each CSV
    holds every customer (or the first ``capped_at``) with the customers' keys as header. Returns the
    number of CSVs checked."""
    blocks = panel.locator("div.warning")  # type: ignore[attr-defined]
    assert blocks.count() == len(found["warnings"])
    checked = 0
    for w in found["warnings"]:
        block = panel.locator(f'div.warning[data-warning="{w["id"]}"]')  # type: ignore[attr-defined]
        assert block.locator(".warning-count").get_attribute("data-count") == str(w["count"])
        assert block.locator(".warning-title").inner_text() == w["title"]
        assert block.locator(".rule").inner_text() == w["text"]
        for name in w["params"]:
            shown = block.locator(f'.params [data-param="{name}"]').inner_text().lstrip(" ·")
            assert shown.startswith(f"{name.replace('_', ' ')} = ")  # named in the run's words (e-commerce here)
        held = w["count"] if capped_at is None else min(w["count"], capped_at)
        if not w["count"]:
            assert block.locator("table").count() == 0
            continue
        columns = _columns(w["customers"])
        assert block.locator("thead th").evaluate_all("ths => ths.map(t => t.dataset.key)") == columns
        assert block.locator("tbody tr").count() == min(PAGE_ROWS, held)
        assert block.locator("tbody tr").first.get_attribute("data-customer") == w["customers"][0]["customer_id"]
        with page.page.expect_download() as info:
            block.locator("button.warning-csv").click()
        text = Path(info.value.path()).read_text(encoding="utf-8")
        assert info.value.suggested_filename == f"{found['run_id']}-{w['id']}.csv"
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == columns
        assert len(rows) - 1 == held
        assert [r[0] for r in rows[1:]] == [c["customer_id"] for c in w["customers"][:held]]
        checked += 1
    return checked


def test_the_explorer_lists_every_warning_with_its_customers_and_csv(
    page: Page, weekly_server: str, weekly: SimRuns
) -> None:
    found = httpx.get(f"{weekly_server}/warnings", params={"run": weekly.run_ids[-1]}).json()
    assert any(w["count"] > PAGE_ROWS for w in found["warnings"])  # a warning that pages
    pg = page.open(weekly_server + "/")
    panel = _wait_panel(pg)
    assert panel.get_attribute("data-run") == weekly.run_ids[-1]
    assert check_panel(page, panel, found) >= 1
    page.shot("explorer-warnings.png")
    # paging: the second page starts at row 51
    w = next(w for w in found["warnings"] if w["count"] > PAGE_ROWS)
    block = panel.locator(f'div.warning[data-warning="{w["id"]}"]')
    block.locator(".pager button.next").click()
    assert block.locator("tbody tr").first.get_attribute("data-customer") == w["customers"][PAGE_ROWS]["customer_id"]
    assert block.locator(".page-info").inner_text().strip().startswith(f"51–{min(100, w['count'])} of {w['count']:,}")
    # an id finds the customer
    cid = w["customers"][PAGE_ROWS]["customer_id"]
    block.locator(f'tbody tr[data-customer="{cid}"] button.linkish').click()
    pg.locator(f'#search-result [data-customer="{cid}"]').wait_for()
    # main's assignments have no forecast: the card shows none, and no "null" or "undefined" anywhere
    assert pg.locator("#search-result .forecast").count() == 0
    body = pg.locator("body").inner_text()
    assert "null" not in body and "undefined" not in body and "NaN" not in body
    assert page.errors == []
    assert page.outside == []


def test_the_run_picker_fetches_the_warnings_of_the_run_shown(page: Page, weekly_server: str, weekly: SimRuns) -> None:
    pg = page.open(weekly_server + "/")
    first = weekly.run_ids[0]
    pg.select_option("#run-select", first)
    pg.wait_for_function(f"document.querySelector('#warnings-panel')?.dataset.run === {json.dumps(first)}")
    assert pg.locator("#warnings-note").inner_text().startswith(f"Nothing to compare yet: run {first} is the first")
    assert page.errors == []


def test_the_report_shows_the_warnings_from_disk(page: Page, weekly: SimRuns) -> None:
    """The report.html each run wrote into its folder (before it was committed) embeds its warnings."""
    latest = weekly.run_ids[-1]
    found = early.warnings(weekly.runs_dir, latest)
    pg = page.open((weekly.runs_dir / latest / REPORT_FILE).as_uri())
    panel = _wait_panel(pg)
    assert check_panel(page, panel, found) >= 1
    assert panel.locator(".capped").count() == 0  # 2,000 customers: no warning reaches the 500 cap
    page.shot("report-warnings.png")
    assert page.errors == []
    assert page.outside == []
    pg = page.open((weekly.runs_dir / weekly.run_ids[0] / REPORT_FILE).as_uri())
    note = _wait_panel(pg).locator("#warnings-note").inner_text()
    assert note.startswith(f"Nothing to compare yet: run {weekly.run_ids[0]} is the first")
    assert page.errors == []


def test_a_report_caps_the_customers_it_embeds_and_says_so(page: Page, weekly: SimRuns, tmp_path: Path) -> None:
    latest = weekly.run_ids[-1]
    found = embedded_warnings(weekly.runs_dir, latest, cap=20)
    assert found is not None
    full = early.warnings(weekly.runs_dir, latest)
    assert [w["count"] for w in found["warnings"]] == [w["count"] for w in full["warnings"]]
    assert all(len(w["customers"]) == min(20, w["count"]) for w in found["warnings"])
    # the page: write a report whose view carries the capped warnings
    from rfmseg.report import render_html
    from rfmseg.report.data import view_for_run
    from rfmseg.runs import get_run

    view = view_for_run(get_run(latest, weekly.runs_dir), weekly.runs_dir, searchable=True)
    view["warnings"] = found
    out = tmp_path / "capped.html"
    out.write_text(render_html(view), encoding="utf-8")
    pg = page.open(out.as_uri())
    panel = _wait_panel(pg)
    assert check_panel(page, panel, found, capped_at=20) >= 1
    w = next(w for w in found["warnings"] if w["count"] > 20)
    note = panel.locator(f'div.warning[data-warning="{w["id"]}"] .capped').inner_text()
    assert f"the first 20 of the {w['count']:,} customers" in note
    assert page.errors == []


def test_the_csv_escapes_quotes_commas_and_line_breaks(page: Page, weekly: SimRuns) -> None:
    pg = page.open((weekly.runs_dir / weekly.run_ids[-1] / REPORT_FILE).as_uri())
    rows = [
        {"customer_id": 'A"1', "note": "x, y", "multi": "line\nbreak", "n": 1.5, "none": None, "runs": ["a", "b"]},
        {"customer_id": "B2", "extra": "only here"},
    ]
    columns = ["customer_id", "note", "multi", "n", "none", "runs", "extra"]
    text = pg.evaluate("([c, r]) => window.rfmsegWarnings.toCsv(c, r)", [columns, rows])
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [
        columns,
        ['A"1', "x, y", "line\nbreak", "1.5", "", "a;b", ""],
        ["B2", "", "", "", "", "", "only here"],
    ]


def test_the_customer_card_shows_the_forecast_when_the_run_has_it(page: Page, weekly: SimRuns, tmp_path: Path) -> None:
    """A copy of the registry whose latest run's assignments carry p_alive and the 90-day expectations (as the
    forecast work adds them): the report's search card shows them; a customer with nulls shows none."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(weekly.runs_dir, runs_dir)
    latest = weekly.run_ids[-1]
    file = runs_dir / latest / "assignments.parquet"
    table = pq.read_table(file)
    ids = table.column("customer_id").to_pylist()
    with_it, without = ids[0], ids[1]
    n = table.num_rows
    p_alive = [0.82 if i == 0 else None for i in range(n)]
    orders = [1.4 if i == 0 else None for i in range(n)]
    value = [230.0 if i == 0 else None for i in range(n)]
    for name, values in (("p_alive", p_alive), ("expected_orders_90d", orders), ("expected_value_90d", value)):
        column = pa.array(values, pa.float64())  # the run's own columns (all null without --rhythm) replaced
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, column) if i >= 0 else table.append_column(name, column)
    pq.write_table(table, file)
    assert pc.sum(pc.is_valid(table.column("p_alive"))).as_py() == 1
    out = write_report(latest, tmp_path / "forecast.html", runs_dir)
    pg = page.open(out.as_uri())
    pg.fill("#search-id", with_it)
    pg.press("#search-id", "Enter")
    card = pg.locator(f'#search-result [data-customer="{with_it}"]')
    card.wait_for()
    assert card.locator(".forecast").inner_text() == "P(alive) 0.82 · expected 1.4 orders and $230 in the next 90 days"
    page.shot("report-forecast.png")
    pg.fill("#search-id", without)
    pg.press("#search-id", "Enter")
    pg.locator(f'#search-result [data-customer="{without}"]').wait_for()
    assert pg.locator("#search-result .forecast").count() == 0
    assert page.errors == []


def test_with_an_api_key_the_panel_is_fetched_with_it(page: Page, weekly: SimRuns) -> None:
    keyed = serve(weekly, api_key="k-warnings-1")  # type: ignore[arg-type]
    base = next(keyed)
    try:
        pg = page.page
        pg.goto(base + "/")
        pg.locator("#api-key").wait_for()
        pg.fill("#api-key", "k-warnings-1")
        pg.press("#api-key", "Enter")
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        panel = _wait_panel(pg)
        assert panel.get_attribute("data-run") == weekly.run_ids[-1]
        assert panel.locator("div.warning").count() >= 1
    finally:
        keyed.close()


def test_a_large_runs_own_report_leaves_the_warnings_out_and_says_where_they_are(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over WARNINGS_LIMIT customers (lowered here to 100) the report a run writes into its folder does not gather
    the warnings (seconds on a large run, with every refresh); its panel names the explorer and the commands."""
    import rfmseg.report
    from rfmseg.jobs import refresh, retrain
    from rfmseg.runs import list_runs
    from rfmseg.simulate import SimConfig, simulate

    monkeypatch.setattr(rfmseg.report, "WARNINGS_LIMIT", 100)
    runs_dir = tmp_path / "runs"
    s = simulate(SimConfig(customers=400, weeks=1, seed=7))
    first, second = s.config.as_of_dates()
    retrain(s.snapshot(first), as_of=first, runs_dir=runs_dir, previous=None, publish=False)
    refresh(s.snapshot(second), as_of=second, runs_dir=runs_dir, publish=False)
    run = list_runs(runs_dir)[-1]
    latest, n = run.run_id, run.summary["n_customers"]
    assert n > 100
    pg = page.open((runs_dir / latest / REPORT_FILE).as_uri())
    panel = _wait_panel(pg)
    assert panel.locator("div.warning").count() == 0
    note = panel.locator("#warnings-note").inner_text()
    assert f"whose {n:,} customers are more than the 100 " in note
    assert f"`rfmseg watch --run {latest}` and `rfmseg report {latest} -o FILE`" in note
    # the report written on demand has them
    out = write_report(latest, tmp_path / "on-demand.html", runs_dir)
    pg = page.open(out.as_uri())
    assert _wait_panel(pg).locator("div.warning").count() == len(early.warnings(runs_dir, latest)["warnings"])
    assert page.errors == []


def test_the_panel_speaks_the_presets_units(
    page: Page, preset_server: str, preset_runs: test_browser.StudyRuns
) -> None:
    """In a SaaS or CRM run the panel's counts, headings and values are in the run's units (users, sessions, deal
    size), in the explorer and in the run's report; no "null" or "[object Object]"."""
    units = preset_runs.latest.summary["units"]
    run_id = preset_runs.latest.run_id
    found = early.warnings(preset_runs.runs_dir, run_id)
    assert any(w["count"] for w in found["warnings"])
    for url in (preset_server + "/", (preset_runs.latest.path / REPORT_FILE).as_uri()):
        pg = page.open(url)
        panel = _wait_panel(pg)
        assert panel.get_attribute("data-run") == run_id
        counts = panel.locator(".warning-count").all_inner_texts()
        assert counts and all(c.endswith(f" {units['entity']}") for c in counts)
        headings = set(panel.locator("thead th").all_inner_texts())
        assert headings and not {h for h in headings if re.search(r"\b(orders|spend|monetary|frequency)\b", h)}
        text = panel.inner_text()
        assert "null" not in text and "[object" not in text and "undefined" not in text
        if not units["money"]:
            assert "$" not in text
        where = "report" if url.startswith("file") else "explorer"
        test_browser.ARTIFACTS.mkdir(exist_ok=True)
        name = f"warnings-{preset_runs.latest.summary['preset']}-{where}.png"
        panel.screenshot(path=str(test_browser.ARTIFACTS / name))
    assert page.errors == []
