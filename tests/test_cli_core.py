"""The core commands as a user runs them: demo, run, choose-k, show, and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.csv as pv
import pytest

import rfmseg
from rfmseg.datasets import study

SEGMENT_KEYS = {
    "name",
    "customers",
    "share_customers",
    "revenue",
    "share_revenue",
    "mean_recency_days",
    "mean_frequency",
    "mean_monetary",
    "median_recency_days",
    "median_frequency",
    "median_monetary",
    "aov",
    "action",
    "priority",
    "reason",
}


def renamed_orders(tmp_path: Path, suffix: str = ".csv") -> Path:
    """The study orders with the column names a user's export might have."""
    out = tmp_path / f"orders{suffix}"
    src = str(study.path(study.ORDERS_FILE))
    fmt = "(FORMAT parquet)" if suffix == ".parquet" else "(HEADER, DELIMITER ',')"
    duckdb.sql(
        f"COPY (SELECT customer_id AS cust, order_id AS invoice, order_date AS ts, amount AS total "
        f"FROM read_csv('{src}', all_varchar=true)) TO '{out}' {fmt}"
    )
    return out


def test_demo_prints_the_study_table_and_where_the_run_is(cli, runs_dir: Path) -> None:
    r = cli("demo", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    for text in (
        "Champions",
        "Loyal Buyers",
        "At-Risk",
        "Occasional",
        "$218,300",
        "$94,900",
        "$154,600",
        "$17,550",
        "$485,350",
    ):
        assert text in r.out
    run_dirs = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(run_dirs) == 1  # beside it the embedded store the demo publishes to, profiles.db
    assert str(run_dirs[0]) in r.out
    for name in (
        "manifest.json",
        "model.json",
        "rfm.parquet",
        "assignments.parquet",
        "summary.json",
        "quarantine.parquet",
    ):
        assert (run_dirs[0] / name).exists(), name


def test_demo_publishes_the_study_and_prints_what_to_run_next(cli, runs_dir: Path) -> None:
    from rfmseg.stores import open_store

    r = cli("demo", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    store = f"sqlite:///{runs_dir / 'profiles.db'}"
    assert f"Published to {store}: 200 customers (0 changed segment, 200 new)" in r.out
    assert r.out.endswith(
        "Next: the explorer at http://127.0.0.1:8000/ and the API (Ctrl-C stops the server), then a customer from "
        f"another terminal:\n  rfmseg serve --runs-dir {runs_dir}\n  curl 127.0.0.1:8000/customers/C087\n"
    )
    with open_store(store) as s:
        assert s.get("C087")["segment"] == "At-Risk" and s.count() == 200
    again = cli("demo", "--runs-dir", runs_dir, "--json").json()  # a later demo replaces an earlier one
    assert again["published"]["customers"] == 200 and "skipped" not in again["published"]  # type: ignore[index]


def test_demo_never_replaces_a_published_run_of_other_data(cli, study_orders: Path, runs_dir: Path) -> None:
    """In a runs folder that holds runs of other data, the demo writes to its demo folder: the study's model
    does not become the one the next refresh scores with, its run is not the latest, its store is its own."""
    from rfmseg.runs import list_runs
    from rfmseg.stores import open_store

    mine = cli("run", study_orders, "--as-of", "2024-12-30", "--runs-dir", runs_dir, "--publish", "--json").json()
    r = cli("demo", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    demo_dir = runs_dir / "demo"
    demo_run = next(line.split()[1] for line in r.out.splitlines() if line.startswith("Run "))
    assert f"Published to sqlite:///{demo_dir / 'profiles.db'}: 200 customers" in r.out, r.out
    assert r.out.endswith(f"  rfmseg serve --runs-dir {demo_dir}\n  curl 127.0.0.1:8000/customers/C087\n"), r.out
    assert [x.run_id for x in list_runs(runs_dir)] == [mine["run_id"]]  # type: ignore[index]
    assert [x.run_id for x in list_runs(demo_dir)] == [demo_run]
    with open_store(f"sqlite:///{runs_dir / 'profiles.db'}") as s:
        assert s.current_run() == mine["run_id"]  # type: ignore[index]
    refreshed = cli("refresh", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--json").json()
    assert refreshed["model_version"] == mine["run_id"]  # type: ignore[index]
    # a second demo goes to the demo folder again; in the demo folder itself the demo replaces the demo
    again = cli("demo", "--runs-dir", runs_dir, "--json").json()
    assert again["run_dir"].startswith(str(demo_dir)) and "skipped" not in again["published"]  # type: ignore[index, operator]


def test_demo_names_its_store_when_another_is_configured(
    cli, runs_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RFMSEG_STORE", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    r = cli("demo", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    assert f"  rfmseg serve --runs-dir {runs_dir} --store sqlite:///{runs_dir / 'profiles.db'}\n" in r.out
    assert not (tmp_path / "elsewhere.db").exists()  # the demo publishes to the embedded store only


def test_demo_json_schema_and_customers(cli, runs_dir: Path) -> None:
    r = cli("demo", "--json", "--customers", "C001,C087", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    data = r.json()  # stdout is JSON and nothing else
    assert {"run_id", "as_of", "k", "n_customers", "total_revenue", "segments", "insights"} <= set(data)
    assert data["as_of"] == "2024-12-31" and data["k"] == 4 and data["n_customers"] == 200
    for s in data["segments"]:
        assert set(s) >= SEGMENT_KEYS
    assert all({"id", "text", "values"} <= set(i) for i in data["insights"])
    assert data["customers"] == [
        {"customer_id": "C001", "recency_days": 5, "frequency": 35, "monetary": 8500.0, "segment": "Champions"},
        {"customer_id": "C087", "recency_days": 130, "frequency": 8, "monetary": 3800.0, "segment": "At-Risk"},
    ]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_demo_unknown_customer_is_a_clear_error_that_says_the_run_is_kept(cli, runs_dir: Path, as_json: bool) -> None:
    """As `run --customers` does: the ids are looked up once the run is written and published, so the one line
    says the run is kept, where, that it is published, and how to see it."""
    from rfmseg.stores import open_store

    r = cli("demo", *(["--json"] if as_json else []), "--customers", "C001,ZZZ9", "--runs-dir", runs_dir)
    assert r.code == 2
    assert r.out == ""
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("error: unknown customer id(s): ZZZ9; ids look like C001; ")
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    store = f"sqlite:///{runs_dir / 'profiles.db'}"
    assert f"run {run.name} is written all the same, in {run}/ and published to {store} " in line
    assert f"(`rfmseg runs show {run.name} --runs-dir {runs_dir}`)" in line
    with open_store(store) as s:
        assert s.current_run() == run.name  # published, as the line says
    assert cli("runs", "show", run.name, "--runs-dir", runs_dir).code == 0  # the command it names works


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_run_with_column_options(cli, tmp_path: Path, runs_dir: Path, suffix: str) -> None:
    path = renamed_orders(tmp_path, suffix)
    r = cli(
        "run",
        path,
        "--customer-col",
        "cust",
        "--order-col",
        "invoice",
        "--date-col",
        "ts",
        "--amount-col",
        "total",
        "--as-of",
        "2024-12-31",
        "--runs-dir",
        runs_dir,
        "--json",
    )
    assert r.code == 0, r.err
    data = r.json()
    sizes = {s["name"]: s["customers"] for s in data["segments"]}
    assert sizes == {"Champions": 30, "Loyal Buyers": 50, "At-Risk": 40, "Occasional": 80}
    manifest = json.loads((Path(data["run_dir"]) / "manifest.json").read_text())
    assert manifest["input"]["columns"] == {
        "customer_id": "cust",
        "order_id": "invoice",
        "order_date": "ts",
        "amount": "total",
    }
    assert manifest["rows"] == {"read": 2200, "used": 2200, "quarantined": {}}
    assert manifest["as_of"] == "2024-12-31"
    assert {"read", "validate", "rfm", "fit", "assign", "profile", "write"} <= set(manifest["timings"])


def test_run_on_xlsx(cli, tmp_path: Path, runs_dir: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    table = pv.read_csv(study.path(study.ORDERS_FILE)).to_pylist()
    sheet.append(["Customer", "Invoice", "Order Date", "Amount"])
    for row in table:
        sheet.append([row["customer_id"], row["order_id"], row["order_date"], row["amount"]])
    path = tmp_path / "orders.xlsx"
    book.save(path)
    r = cli("run", path, "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    assert {s["name"]: s["revenue"] for s in r.json()["segments"]}["Champions"] == 218_300


def test_default_as_of_is_the_day_after_the_last_order(runs_dir: Path) -> None:
    res = rfmseg.segment(study.path(study.ORDERS_FILE), runs_dir=None)
    last = max(pv.read_csv(study.path(study.ORDERS_FILE)).column("order_date").to_pylist())
    assert res.summary["as_of"] == (last + pd.Timedelta(days=1)).isoformat()
    # the study's last order is 3 days before its as-of date, so every recency is 2 days shorter
    assert min(res.rfm.column("recency_days").to_pylist()) == 1


def test_python_api_on_dataframe_and_arrow(runs_dir: Path) -> None:
    df = pd.read_csv(study.path(study.ORDERS_FILE))
    from_df = rfmseg.segment(df, as_of="2024-12-31", runs_dir=runs_dir)
    from_arrow = rfmseg.segment(pv.read_csv(study.path(study.ORDERS_FILE)), as_of="2024-12-31", runs_dir=None)
    assert from_df.segment_of("C087") == "At-Risk" == from_arrow.segment_of("C087")
    assert from_df.summary["segments"] == from_arrow.summary["segments"]
    assert from_df.manifest["input"]["path"] == "DataFrame"


def test_ready_rfm_table_is_accepted(cli, study_rfm_file: Path, runs_dir: Path) -> None:
    r = cli("run", study_rfm_file, "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert {s["name"]: s["customers"] for s in data["segments"]}["At-Risk"] == 40
    assert data["as_of"] is None


def test_a_ready_rfm_tables_run_is_shown_without_an_as_of_date(
    cli, study_rfm_file: Path, runs_dir: Path, tmp_path: Path
) -> None:
    """Its recency came computed: the table title and export say there is no as-of date, not 'None' or '-'."""
    r = cli("run", study_rfm_file, "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    shown = cli("show", "latest", "--runs-dir", runs_dir)
    assert shown.code == 0, shown.err
    for out in (r.out, shown.out):
        assert "200 customers, revenue $485,350, no as-of date: a ready RFM table" in out
        assert "as of None" not in out
    exported = cli("export", "latest", "-o", tmp_path / "all.csv", "--runs-dir", runs_dir)
    assert exported.code == 0, exported.err
    assert "(no as-of date: a ready RFM table), all segments: 200 customers" in exported.out
    assert "as of -" not in exported.out
    described = cli("runs", "show", "latest", "--runs-dir", runs_dir)
    assert described.code == 0, described.err
    assert ", no as-of date: a ready RFM table, 200 customers, input " in described.out
    scored = cli("assign", study_rfm_file, "--runs-dir", runs_dir, "--show", "0")
    assert scored.code == 0, scored.err
    assert scored.out.splitlines()[0].endswith("), no as-of date: a ready RFM table")
    for out in (described.out, scored.out):
        assert "as of None" not in out


def test_choose_k_command(cli, study_orders: Path) -> None:
    r = cli("choose-k", study_orders, "--as-of", "2024-12-31", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["recommended_k"] == 4
    assert {"k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"} <= set(data["metrics"][0])
    text = cli("choose-k", study_orders, "--as-of", "2024-12-31")
    assert "Recommended: K=4" in text.out


def test_show_an_earlier_run(cli, runs_dir: Path) -> None:
    first = cli("demo", "--json", "--runs-dir", runs_dir).json()
    r = cli("show", first["run_id"], "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    shown = r.json()
    assert shown["segments"] == first["segments"] and shown["run_id"] == first["run_id"]
    assert "Champions" in cli("show", "latest", "--runs-dir", runs_dir).out
    missing = cli("show", "nope", "--runs-dir", runs_dir)
    assert missing.code == 2 and "no run 'nope'" in missing.err


def test_installed_command_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rfmseg", "demo", "--json", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_customers"] == 200


def test_usage_errors_are_one_line_with_exit_2(cli, study_orders: Path) -> None:
    r = cli("run")  # no file and no rfmseg.toml in the current folder
    assert r.code == 2 and r.err.strip().startswith("error: no input: give a file (rfmseg run FILE)")
    r = cli("show")
    assert r.code == 2 and r.err.strip() == "error: Missing argument 'run_id'. (see `rfmseg --help`)"
    r = cli("run", study_orders, "--bogus")
    assert r.code == 2 and r.err.strip() == "error: No such option: --bogus (see `rfmseg --help`)"


def test_version_prints_the_installed_version(cli) -> None:
    from importlib.metadata import version

    r = cli("--version")
    assert (r.code, r.out, r.err) == (0, f"rfmseg {version('rfmseg')}\n", "")
    assert version("rfmseg") == rfmseg.__version__


def _command_paths() -> list[list[str]]:
    """Every group and command of the CLI, as the words that reach it (the root is [])."""
    import typer.main

    from rfmseg.cli import app

    found: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_dash_h_is_help_on_every_command(cli) -> None:
    paths = _command_paths()
    assert ["campaign", "plan"] in paths and ["runs", "list"] in paths and len(paths) > 40
    for path in paths:
        short, long = cli(*path, "-h"), cli(*path, "--help")
        assert short.code == long.code == 0, path
        assert short.out == long.out and "Usage: rfmseg" in short.out, path


def test_run_publishes_when_a_store_is_given(cli, study_orders: Path, runs_dir: Path, tmp_path: Path) -> None:
    from rfmseg.stores import open_store

    url = f"sqlite:///{tmp_path / 'profiles.db'}"
    r = cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--store", url)
    assert r.code == 0, r.err
    assert "Published to sqlite:///" in r.out and "200 customers" in r.out
    with open_store(url) as store:
        assert store.get("C087")["segment"] == "At-Risk"
        assert store.count() == 200
    # without a store configured nothing is published, and --no-publish wins over a store
    r = cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--json")
    assert "published" not in r.json()


def test_run_with_a_store_that_is_down_keeps_the_run(cli, study_orders: Path, runs_dir: Path) -> None:
    url = "postgresql://app:secret@127.0.0.1:1/test"
    r = cli("run", study_orders, "--as-of", "2024-12-31", "--runs-dir", runs_dir, "--store", url)
    assert r.code == 2
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "secret" not in line
    assert "postgresql://app:***@127.0.0.1:1/test" in line and "rfmseg publish" in line
    kept = [p for p in runs_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]
    assert len(kept) == 1 and (kept[0] / "assignments.parquet").exists()
