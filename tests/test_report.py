"""The HTML report: written into every run folder (plotly.js shared by the registry's runs) and by
`rfmseg report` (everything inline: plotly.js, the explorer's script, the run's data), computed from the run
itself."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from plotly.offline import get_plotlyjs_version

from rfmseg.report import REPORT_FILE, report_html, view_for_run
from rfmseg.report.data import CHOOSE_K_FILE, MIN_POINTS_PER_SEGMENT, scatter
from rfmseg.runs import FILES, get_run, list_runs
from runids import unique_prefix
from test_api import StudyRuns, build_study_runs

DATA = re.compile(r'<script type="application/json" id="rfmseg-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> StudyRuns:
    return build_study_runs(tmp_path_factory.mktemp("report"))


def embedded_view(page: str) -> dict:
    (data,) = DATA.findall(page)
    return json.loads(data)


def test_every_run_folder_has_its_report(runs: StudyRuns) -> None:
    assert "report.html" in FILES
    for result in (runs.before, runs.latest):
        page = (result.path / REPORT_FILE).read_text(encoding="utf-8")
        view = embedded_view(page)
        assert view["run"]["run_id"] == result.run_id
        assert view["summary"] == json.loads(json.dumps(result.summary))
        # the K choice is left to the explorer and `rfmseg report` (it needs scikit-learn): the panel says so
        assert not (result.path / CHOOSE_K_FILE).exists()
        assert view["choose_k"]["chosen_k"] == 4
        assert f"`rfmseg report {result.run_id}` writes this report with the K charts" in view["choose_k"]["pending"]


def _assert_standalone(page: str) -> None:
    assert "<script src=" not in page and '<link rel="stylesheet"' not in page
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # the page without the inlined code
    assert "http://" not in markup and "https://" not in markup
    assert f"v{get_plotlyjs_version()}" in page  # plotly.js is inlined, the package's own copy
    assert "function drawScatter" in page  # the explorer's script is inlined
    assert page.count("</script>") == 3  # data, plotly.js, explorer: nothing inlined ended its element early


def test_a_run_folder_report_shares_plotly_with_its_registry(runs: StudyRuns, cli, tmp_path: Path) -> None:
    """plotly.js (4.8 MB) is written once per registry and loaded by relative address; the run folder's
    report is a fraction of a standalone one, and `rfmseg report -o` and the API give the standalone page."""
    from plotly.offline import get_plotlyjs

    from rfmseg.report import inline_assets
    from rfmseg.report.html import ASSETS

    page = (runs.latest.path / REPORT_FILE).read_text(encoding="utf-8")
    src = f"../{ASSETS}/plotly-{get_plotlyjs_version()}.min.js"
    assert page.count("<script src=") == 1 and f'<script src="{src}"></script>' in page
    shared = (runs.latest.path / src).resolve()
    assert shared.read_text(encoding="utf-8") == get_plotlyjs()
    assert [p.name for p in (runs.runs_dir / ASSETS).iterdir()] == [shared.name]  # one copy for every run
    assert ASSETS not in [r.run_id for r in list_runs(runs.runs_dir)]
    standalone = inline_assets(page)
    _assert_standalone(standalone)
    assert len(page.encode()) < 0.2 * len(standalone.encode())
    out = tmp_path / "shared.html"
    assert cli("report", "latest", "-o", out, "--runs-dir", runs.runs_dir).code == 0
    _assert_standalone(out.read_text(encoding="utf-8"))


def test_report_shows_the_study(runs: StudyRuns) -> None:
    view = embedded_view(report_html("latest", runs.runs_dir))
    champions = view["summary"]["segments"][0]
    assert (champions["name"], champions["customers"], champions["revenue"]) == ("Champions", 30, 218300.0)
    points = view["scatter"]["points"]
    assert view["scatter"]["note"] == "showing all 200 customers"
    assert Counter(points["segment"]) == Counter(runs.latest.assignments.column("segment").to_pylist())
    assert view["choose_k"]["recommended_k"] == 4
    assert view["choose_k"]["votes"]["elbow (inertia knee)"] == 4
    pareto = view["pareto"]
    monetary = np.sort(runs.latest.assignments.column("monetary").to_numpy())[::-1]
    assert pareto["share_revenue"][20] == pytest.approx(monetary[:40].sum() / monetary.sum())
    assert view["search"]["complete"] is True and view["search"]["customers"] == 200


def test_report_search_history_covers_the_runs_before(runs: StudyRuns) -> None:
    view = embedded_view((runs.latest.path / REPORT_FILE).read_text(encoding="utf-8"))
    history = view["search"]["history"]
    assert [r["run_id"] for r in history["runs"]] == [runs.before.run_id, runs.latest.run_id]
    c087 = history["customers"]["C087"]
    before, now = runs.row("C087", "before"), runs.row("C087")
    assert c087 == [
        [0, before["segment"], before["recency_days"], before["frequency"], before["monetary"]],
        [1, "At-Risk", 130, 8, 3800.0],
    ]
    assert now["segment"] == "At-Risk"


def test_report_transitions_match_the_registry(runs: StudyRuns) -> None:
    from rfmseg.runs.history import transitions

    view = embedded_view((runs.latest.path / REPORT_FILE).read_text(encoding="utf-8"))
    t = transitions(runs.runs_dir, runs.before.run_id, runs.latest.run_id)
    sankey = view["transitions"]
    assert (sankey["from_run"], sankey["to_run"]) == (runs.before.run_id, runs.latest.run_id)
    assert sankey["moved"] == t["totals"]["moved"]
    for link in sankey["links"]:
        i, j = t["rows"].index(link["source"]), t["columns"].index(link["target"])
        assert link["customers"] == t["customers"][i][j]
        assert link["revenue"] == pytest.approx(t["revenue"][i][j])
    assert embedded_view((runs.before.path / REPORT_FILE).read_text(encoding="utf-8"))["transitions"] is None


def test_data_quality_section(runs: StudyRuns) -> None:
    view = embedded_view((runs.before.path / REPORT_FILE).read_text(encoding="utf-8"))
    rows = runs.before.summary["rows"]
    assert view["quality"] == {
        "read": rows["read"],
        "used": rows["used"],
        "quarantined": {"bad_date": 1, "negative_amount": 1},
        "quarantined_total": 2,
    }
    assert rows["read"] - rows["used"] == 2


def test_rfmseg_report_writes_the_same_view(cli, runs: StudyRuns, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = cli("report", unique_prefix(runs.latest.run_id, runs.runs_dir), "-o", out, "--runs-dir", runs.runs_dir)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Report of run {runs.latest.run_id} written to {out} (")
    mine = embedded_view(out.read_text(encoding="utf-8"))
    stored = embedded_view((runs.latest.path / REPORT_FILE).read_text(encoding="utf-8"))
    for key in ("run", "summary", "scatter", "pareto", "quality", "transitions", "search"):
        assert mine[key] == stored[key], key
    # the run's own report leaves the K choice pending; `rfmseg report` computes it and caches it in the run
    assert "pending" in stored["choose_k"] and mine["choose_k"]["chosen_k"] == stored["choose_k"]["chosen_k"]
    assert mine["choose_k"] == json.loads((runs.latest.path / CHOOSE_K_FILE).read_text(encoding="utf-8"))


def test_rfmseg_report_errors(cli, runs: StudyRuns, tmp_path: Path) -> None:
    unknown = cli("report", "nope", "--runs-dir", runs.runs_dir)
    assert unknown.code == 2
    assert unknown.err.startswith(f"error: no run 'nope' in {runs.runs_dir}; recent runs: ")
    folder = cli("report", "latest", "-o", tmp_path, "--runs-dir", runs.runs_dir)
    assert folder.code == 2
    assert folder.err.strip() == (
        f"error: {tmp_path} is a folder; give a file name for the report, e.g. -o {tmp_path / 'report.html'}"
    )
    nowhere = cli("report", "latest", "-o", tmp_path / "no" / "r.html", "--runs-dir", runs.runs_dir)
    assert nowhere.code == 2
    assert nowhere.err.strip() == (
        f"error: cannot write the report to {tmp_path / 'no' / 'r.html'}: the folder {tmp_path / 'no'} does not exist"
    )


def test_k_choice_is_computed_once_and_cached_in_the_run(runs: StudyRuns, tmp_path: Path) -> None:
    copy = tmp_path / "runs"
    shutil.copytree(runs.latest.path, copy / runs.latest.run_id)
    (copy / runs.latest.run_id / CHOOSE_K_FILE).unlink()
    run = get_run("latest", copy)
    view = view_for_run(run, copy)
    cached = json.loads((run.path / CHOOSE_K_FILE).read_text(encoding="utf-8"))
    assert view["choose_k"] == cached
    assert cached["recommended_k"] == 4 and cached["chosen_k"] == 4
    assert report_html("latest", copy).count(runs.latest.run_id) >= 1


def test_big_runs_are_sampled_per_segment() -> None:
    rng = np.random.default_rng(7)
    sizes = {"Occasional": 15_000, "Loyal Buyers": 4_000, "Champions": 950, "At-Risk": 50}
    segments = np.repeat(list(sizes), list(sizes.values()))
    rng.shuffle(segments)
    n = len(segments)
    table = pa.table(
        {
            "customer_id": [f"X{i:05d}" for i in range(n)],
            "segment": segments.tolist(),
            "recency_days": rng.integers(1, 300, n),
            "frequency": rng.integers(1, 40, n),
            "monetary": rng.uniform(10, 9000, n),
        }
    )
    first = scatter(table, max_points=5_000)
    assert first == scatter(table, max_points=5_000)  # seeded
    assert first["sampled"] is True and first["shown"] == 5_000
    assert first["note"] == "showing 5,000 of 20,000 customers, sampled per segment"
    drawn = Counter(first["points"]["segment"])
    assert drawn["At-Risk"] == 50  # a small segment is drawn whole
    assert drawn["Champions"] >= MIN_POINTS_PER_SEGMENT
    assert drawn["Occasional"] > drawn["Loyal Buyers"] > drawn["Champions"]  # otherwise proportional
    ids = set(first["points"]["customer_id"])
    picked = table.to_pandas().set_index("customer_id").loc[sorted(ids)]
    assert (picked["segment"].value_counts().to_dict()) == dict(drawn)


def test_k_choice_stops_at_the_number_of_distinct_customers(tmp_path: Path) -> None:
    import warnings

    from rfmseg.jobs.run import segment

    rfm = pa.table(
        {
            "customer_id": [f"D{i:02d}" for i in range(30)],
            "recency_days": [5, 60, 200] * 10,
            "frequency": [20, 5, 1] * 10,
            "monetary": [5000.0, 800.0, 90.0] * 10,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fewer distinct clusters than n_clusters" from the K choice
        result = segment(rfm, k=2, runs_dir=tmp_path / "runs")
        view = embedded_view(report_html(result.run_id, tmp_path / "runs"))
    assert [m["k"] for m in view["choose_k"]["metrics"]] == [2, 3]
    assert view["search"]["customers"] == 30


def test_a_refresh_reuses_the_k_choice_of_the_model_it_scores_with(tmp_path: Path) -> None:
    import rfmseg
    from rfmseg import jobs as lifecycle
    from rfmseg.datasets import study

    runs_dir = tmp_path / "runs"
    trained = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs_dir)
    pending = lifecycle.refresh(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=runs_dir, publish=False)
    assert not (pending.run.path / CHOOSE_K_FILE).exists()  # not computed yet for the model: left pending
    assert "pending" in embedded_view((pending.run.path / REPORT_FILE).read_text(encoding="utf-8"))["choose_k"]
    # shown (explorer, report), the refresh's K choice is its model's: computed once, kept in the trained run
    assert view_for_run(pending.run, runs_dir)["choose_k"]["recommended_k"] == 4
    assert (trained.path / CHOOSE_K_FILE).exists() and not (pending.run.path / CHOOSE_K_FILE).exists()
    # mark the trained run's K choice so a copy can be told from a recomputation
    path = trained.path / CHOOSE_K_FILE
    ks = json.loads(path.read_text())
    ks["note"] = "computed when the model was trained"
    path.write_text(json.dumps(ks))
    next_day = date.fromisoformat(str(study.AS_OF)) + timedelta(days=1)  # the same day's refresh exists already
    refreshed = lifecycle.refresh(study.path(study.ORDERS_FILE), as_of=next_day, runs_dir=runs_dir, publish=False)
    assert refreshed.run.manifest["kind"] == "refresh"
    assert json.loads((refreshed.run.path / CHOOSE_K_FILE).read_text())["note"] == "computed when the model was trained"


def test_a_saas_report_names_its_users(tmp_path: Path) -> None:
    """The sentences the view carries (the scatter's note, the K choice's note) name the run's entity."""
    from rfmseg.jobs.run import segment
    from rfmseg.presets import get_preset

    result = segment(get_preset("saas").sample_path(), preset="saas", runs_dir=tmp_path / "runs")
    view = embedded_view(report_html(result.run_id, tmp_path / "runs"))
    n = result.summary["n_customers"]
    assert view["scatter"]["note"] == f"showing all {n:,} users"
    assert view["choose_k"]["note"].startswith(f"computed on all {n:,} users ")
    assert json.loads((result.path / CHOOSE_K_FILE).read_text(encoding="utf-8"))["note"] == view["choose_k"]["note"]
    sampled = scatter(result.assignments, 100, entity="users")
    assert sampled["note"] == f"showing {sampled['shown']:,} of {n:,} users, sampled per segment"


def test_the_embedded_data_has_no_nan_and_cannot_close_its_script_element() -> None:
    """A view's non-finite floats read back as null (JSON has no NaN, and JSON.parse refuses it), numpy values
    as numbers, tuples as lists; text that would end the <script> element or break a JavaScript string is
    escaped; other text is written as it is (the page is UTF-8)."""
    from rfmseg.report.data import _finite
    from rfmseg.report.html import embed_json

    view = {
        "summary": {"mean": float("nan"), "top": float("inf"), "low": -float("inf"), "n": np.int64(3)},
        "points": [1.5, float("nan"), (2, float("nan"))],
        "reason": "recency 72 days \u2014 </script><b>&amp;\u2028\u2029 caf\u00e9",
        "array": np.array([1.0, np.nan]),
    }
    expected = {
        "summary": {"mean": None, "top": None, "low": None, "n": 3},
        "points": [1.5, None, [2, None]],
        "reason": "recency 72 days \u2014 </script><b>&amp;\u2028\u2029 caf\u00e9",
        "array": [1.0, None],
    }
    assert _finite(view) == expected
    text = embed_json(view)
    assert json.loads(text) == expected
    assert not any(c in text for c in "<>&\u2028\u2029") and "NaN" not in text and "Infinity" not in text
    assert "\u2014" in text and "caf\u00e9" in text


def test_a_run_folder_report_writes_non_finite_figures_as_null(runs: StudyRuns, tmp_path: Path) -> None:
    """The report a run writes into its folder skips the view's JSON round trip (``build_view(finite=False)``):
    a NaN or infinite figure of the summary or of a customer still reaches the page as null (JSON.parse refuses
    NaN), and the page embeds what the view of the stored run reads back as."""
    from rfmseg.report import write_run_report
    from rfmseg.report.data import build_view

    run = get_run(runs.latest.run_id, runs.runs_dir)
    summary = json.loads(json.dumps(run.summary))
    summary["segments"][0]["mean_monetary"] = float("nan")
    summary["total_revenue"] = float("inf")
    summary["pareto"]["share_revenue"][1] = -float("inf")
    assignments = run.table("assignments")
    first = assignments.column("customer_id")[0].as_py()
    monetary = assignments.column("monetary").to_pylist()
    monetary[0] = float("nan")
    assignments = assignments.set_column(
        assignments.column_names.index("monetary"), "monetary", pa.array(monetary, pa.float64())
    )
    write_run_report(tmp_path, None, summary, run.manifest, assignments)

    (data,) = DATA.findall((tmp_path / REPORT_FILE).read_text(encoding="utf-8"))
    assert "NaN" not in data and "Infinity" not in data

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the embedded JSON")

    view = json.loads(data, parse_constant=refuse)
    assert view["summary"]["segments"][0]["mean_monetary"] is None
    assert view["summary"]["total_revenue"] is None
    assert view["summary"]["pareto"]["share_revenue"][1] is None
    assert view["scatter"]["points"]["monetary"][view["scatter"]["points"]["customer_id"].index(first)] is None
    assert view["search"]["history"]["customers"][first][-1][4] is None
    expected = build_view(
        summary, run.manifest, assignments, k_choice_result=view["choose_k"], searchable=True, warnings=None
    )
    assert {**view, "generated": None} == {**expected, "generated": None}
