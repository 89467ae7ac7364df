"""Every command reads the project file: runs folder, store, cold-start rule, source, K; options win over it;
a bad value in it stops every command with one line naming the file and the key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from rfmseg import config
from rfmseg.datasets import study
from rfmseg.runs import list_runs
from servers import free_port

COLD = {"orders": 3, "days": 45, "segment": "At-Risk"}  # not the defaults (2, 30, Occasional)


@dataclass
class Project:
    folder: Path
    runs: Path  # the file's runs_dir, resolved
    store: Path  # the SQLite file of the file's store

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.store}"


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (config.CONFIG_ENV, *config.ENV_KEYS):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project folder (the working folder) whose rfmseg.toml sets source, as-of, K, runs, store, cold start."""
    _clean_env(monkeypatch)
    folder = tmp_path / "project"
    folder.mkdir()
    store = tmp_path / "stores" / "profiles.db"
    (folder / "rfmseg.toml").write_text(
        f"as_of = {study.AS_OF.isoformat()}\n"
        "k = 3\n"
        'runs_dir = "team-runs"\n'
        f'store = "sqlite:///{store}"\n'
        f"source = {json.dumps(str(study.path(study.ORDERS_FILE)))}\n"
        "[cold_start]\n"
        f"orders = {COLD['orders']}\n"
        f"days = {COLD['days']}\n"
        f'segment = "{COLD["segment"]}"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(folder)
    return Project(folder, folder / "team-runs", store)


def ok(result: Any) -> Any:
    """A CliResult that must have succeeded."""
    assert result.code == 0, result.err
    return result


def run_ids(runs: Path) -> list[str]:
    return [r.run_id for r in list_runs(runs)]


# ------------------------------------------------------------------------------------------- the life cycle
def test_the_life_cycle_and_agent_commands_use_the_files_runs_store_and_rules(cli, project: Project) -> None:
    # run: the file's source and runs folder; --k typed on the command line wins over the file's k = 3
    first = ok(cli("run", "--k", "4", "--json")).json()
    assert first["k"] == 4 and first["published"]["store"] == project.store_url
    assert Path(first["run_dir"]).resolve().parent == project.runs.resolve()

    # refresh with no FILE: the file's source, as-of, cold-start rule, runs folder and store
    r = ok(cli("refresh", "--json")).json()
    assert (r["kind"], r["status"], r["as_of"]) == ("refresh", "created", study.AS_OF.isoformat())
    assert r["model_version"] == first["run_id"]
    assert {k: r["cold_start"][k] for k in COLD} == COLD
    assert Path(r["run_dir"]).resolve().parent == project.runs.resolve()
    assert r["publish"]["store"] == project.store_url and r["publish"]["run_id"] == r["run_id"]
    refresh_id = r["run_id"]
    # the rule really was applied: every customer with fewer than 3 orders got the file's segment
    a = pq.read_table(project.runs / refresh_id / "assignments.parquet")
    thin = a.filter(pc.less(a.column("frequency"), COLD["orders"]))
    assert thin.num_rows > 0
    assert set(thin.column("segment").to_pylist()) == {COLD["segment"]}
    assert set(thin.column("segment_reason").to_pylist()) == {"cold_start"}

    # the registry commands read the file's runs folder
    listed = ok(cli("runs", "list", "--json")).json()
    assert [x["run_id"] for x in listed] == [first["run_id"], refresh_id]
    assert ok(cli("runs", "latest")).out.strip() == refresh_id
    assert ok(cli("runs", "show", "latest", "--json")).json()["run_id"] == refresh_id
    assert [x["run_id"] for x in ok(cli("history", "C087", "--json")).json()] == [first["run_id"], refresh_id]
    moved = ok(cli("transitions", "--from", first["run_id"], "--json")).json()
    assert (moved["from_run"], moved["to_run"]) == (first["run_id"], refresh_id)
    before = pq.read_table(project.runs / first["run_id"] / "assignments.parquet").to_pylist()
    was = {x["customer_id"]: x["segment"] for x in before}
    changed = sum(1 for x in a.to_pylist() if was[x["customer_id"]] != x["segment"])
    assert changed > 0 and moved["totals"]["moved"] == changed  # the cold starts of the file's rule moved
    assert ok(cli("watch", "--json")).json()["run_id"] == refresh_id

    # publish: the file's store
    p = ok(cli("publish", "latest", "--json")).json()
    assert (p["run_id"], p["store"]) == (refresh_id, project.store_url)
    assert project.store.is_file() and not (project.runs / "profiles.db").exists()

    # export reads the file's runs folder; the change feed is the file's store (the first run: everyone new;
    # the refresh: who moved; publishing it again: nothing)
    e = ok(cli("export", "--out", project.folder / "lists" / "all.csv", "--json")).json()
    assert (e["run_id"], e["rows"]) == (refresh_id, a.num_rows)
    feed = ok(cli("ask", "changes-since", "--limit", "10000", "--json")).json()
    assert feed["store"] == project.store_url and feed["more"] is False
    assert [c["run_id"] for c in feed["items"]] == [first["run_id"]] * len(before) + [refresh_id] * changed

    # touches, questions, context packs, report: the same runs folder and store
    touches = project.folder / "touches.csv"
    touched = ["C001", "C002", "C003"]
    touches.write_text(
        "customer_id,campaign,kind,channel,sent_at\n"
        + "".join(f"{c},vip-dec,loyalty_offer,email,2024-12-01\n" for c in touched),
        encoding="utf-8",
    )
    imp = ok(cli("touches", "import", touches, "--json")).json()
    assert imp["rows"]["used"] == 3
    assert (project.runs / "touches" / imp["import_id"] / "touches.parquet").is_file()
    assert [m["import_id"] for m in ok(cli("touches", "list", "--json")).json()["imports"]] == [imp["import_id"]]
    champions = sorted(a.filter(pc.equal(a.column("segment"), "Champions")).column("customer_id").to_pylist())
    assert set(touched) <= set(champions)
    nc = ok(cli("ask", "not-contacted", "--segment", "Champions", "--kind", "loyalty_offer", "--json")).json()
    assert nc["run_id"] == refresh_id
    assert sorted(c["customer_id"] for c in nc["customers"]) == [c for c in champions if c not in touched]
    assert ok(cli("ask", "campaign", "win_back", "--json")).json()["run_id"] == refresh_id

    pack = ok(cli("context", "C087", "--format", "json")).json()
    assert (pack["run_id"], pack["source"]) == (refresh_id, "store")  # read from the file's store

    rep = ok(cli("report", "latest", "-o", "x.html"))
    assert refresh_id in rep.out and (project.folder / "x.html").stat().st_size > 100_000

    # retrain with no FILE: K from the file (3), not the previous model's (4); the file's rule and store
    t = ok(cli("retrain", "--json")).json()
    assert (t["kind"], t["k"], t["status"]) == ("retrain", 3, "created")
    assert {k: t["cold_start"][k] for k in COLD} == COLD
    assert t["publish"]["store"] == project.store_url

    # assign with no FILE: the file's source and rule, the latest model of the file's runs folder
    s = ok(cli("assign", "--json", "--show", "0")).json()
    assert s["model_run"] == t["run_id"] and s["n_customers"] == 200
    assert s["cold_start_rule"] == COLD

    assert [x["kind"] for x in ok(cli("runs", "list", "--json")).json()] == ["run", "refresh", "retrain"]
    assert not (project.folder / "rfmseg-runs").exists()  # the default folder was never used


# ------------------------------------------------------------------------------------------- precedence
def test_options_and_environment_override_the_file(
    cli, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = ok(cli("run", "--json")).json()["run_id"]
    assert run_ids(project.runs) == [run_id]
    other = tmp_path / "other-runs"

    # --runs-dir typed on the command line wins over the file
    assert ok(cli("runs", "list", "--json", "--runs-dir", other)).json() == []
    r = cli("runs", "latest", "--runs-dir", other)
    assert r.code == 2 and f"no runs in {other}" in r.err
    r = cli("context", "C087", "--runs-dir", other)
    assert r.code == 2 and r.err.count("\n") == 1
    r = cli("refresh", "--runs-dir", other)
    assert r.code == 2 and f"no trained model in {other}" in r.err
    # --store typed wins over the file's store
    p = ok(cli("publish", run_id, "--json", "--store", f"sqlite:///{tmp_path / 'typed.db'}")).json()
    assert p["store"] == f"sqlite:///{tmp_path / 'typed.db'}" and (tmp_path / "typed.db").is_file()
    # a FILE typed wins over the file's source; --cold-start-days over its cold_start.days
    rfm = study.path(study.RFM_FILE)
    s = ok(cli("assign", rfm, "--json", "--show", "0", "--cold-start-days", "0")).json()
    assert s["cold_start_rule"] == {**COLD, "days": 0}

    # the environment wins over the file, an option over the environment
    monkeypatch.setenv("RFMSEG_RUNS_DIR", str(other))
    assert ok(cli("runs", "list", "--json")).json() == []
    assert ok(cli("watch", "--json", "--runs-dir", project.runs)).json()["run_id"] == run_id
    monkeypatch.delenv("RFMSEG_RUNS_DIR")

    # --config from another folder: the file's relative runs_dir is relative to the file's folder
    monkeypatch.chdir(tmp_path)
    cfg = project.folder / "rfmseg.toml"
    assert [x["run_id"] for x in ok(cli("--config", cfg, "runs", "list", "--json")).json()] == [run_id]
    assert [x["run_id"] for x in ok(cli("history", "C087", "--json", "--config", cfg)).json()] == [run_id]
    assert ok(cli("runs", "list", "--json")).json() == []  # no rfmseg.toml here: the default folder


def test_serve_takes_runs_and_store_from_the_file(cli, project: Project) -> None:
    run_id = ok(cli("run", "--json")).json()["run_id"]  # published to the file's store
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFMSEG_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfmseg", "serve", "--port", str(port), "--no-access-log"],
        cwd=project.folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "rfmseg serve did not start"
                time.sleep(0.2)
        assert health["served_run"] == run_id  # the file's store
        assert health["latest_run"]["run_id"] == run_id  # the file's runs folder
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_mcp_takes_runs_and_store_from_the_file(cli, project: Project) -> None:
    run_id = ok(cli("run", "--json")).json()["run_id"]  # published to the file's store
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFMSEG_")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "rfmseg", "mcp"], env=env, cwd=project.folder)

    async def check() -> None:
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                segments = await session.call_tool("list_segments", {})
                assert not segments.is_error, segments.content
                assert segments.structured_content["run_id"] == run_id  # the file's runs folder
                c = await session.call_tool("get_customer_segment", {"customer_id": "C087"})
                assert not c.is_error, c.content
                assert (c.structured_content["run_id"], c.structured_content["source"]) == (run_id, "store")

    asyncio.run(check())


# ------------------------------------------------------------------------------------------- strict
COMMANDS = [
    ("runs", "list"),
    ("runs", "show", "latest"),
    ("runs", "latest"),
    ("assign",),
    ("refresh",),
    ("retrain",),
    ("publish", "latest"),
    ("transitions",),
    ("watch",),
    ("history", "C087"),
    ("serve",),
    ("report", "latest"),
    ("touches", "import", "touches.csv"),
    ("touches", "list"),
    ("ask", "campaign", "win_back"),
    ("ask", "discount"),
    ("ask", "not-contacted"),
    ("ask", "trending"),
    ("ask", "changed"),
    ("ask", "recency-jump"),
    ("ask", "tracking", "C087"),
    ("ask", "intervention"),
    ("ask", "changes-since"),
    ("export", "--out", "all.csv"),
    ("context", "C087"),
    ("mcp",),
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_a_bad_value_in_the_file_stops_every_command(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rfmseg.toml").write_text('runs_dir = "runs"\n[cold_start]\ndays = -1\n', encoding="utf-8")
    r = cli(*args)
    assert r.code == 2
    assert r.err.count("\n") == 1
    assert r.err.startswith("error: rfmseg.toml: cold_start.days = -1 is not allowed"), r.err
    assert "allowed: a whole number >= 0" in r.err
    assert r.out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["rfmseg.toml"]  # nothing written
