"""The project file rfmseg.toml: init, precedence, origins, strict errors, user presets, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from rfmseg import config
from rfmseg.presets import get_preset
from rfmseg.presets.generators import generators


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working folder, with no rfmseg variables set."""
    for var in (config.CONFIG_ENV, *config.ENV_KEYS):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def shown(cli, *args: str) -> dict[str, dict[str, object]]:
    r = cli("config", "show", "--json", *args)
    assert r.code == 0, r.err
    return r.json()["settings"]


# ------------------------------------------------------------------------------------------- init
def test_init_writes_a_commented_file_that_runs(cli, project: Path) -> None:
    sample = get_preset("saas").sample_path()
    r = cli("init", sample, "--preset", "saas")
    assert r.code == 0, r.err
    text = (project / "rfmseg.toml").read_text()
    assert text.count("\n# ") > 20  # commented
    assert 'preset = "saas"' in text and f'path = "{sample}"' in text
    # the column map is detected from the file with the preset's names
    assert 'customer_id = "user_id"' in text and 'session_count = "session_count"' in text
    s = shown(cli)
    assert s["preset"] == {"value": "saas", "origin": "file rfmseg.toml: preset"}
    assert s["cold_start.segment"]["value"] == "New Users"
    r = cli("run", "--json")  # the source comes from the file
    assert r.code == 0, r.err
    assert {x["name"] for x in r.json()["segments"]} == {"Power Users", "Engaged", "Drifting", "Dormant"}
    assert Path(r.json()["run_dir"]).parent.resolve() == project / "rfmseg-runs"
    r = cli("init")
    assert r.code == 2 and "exists" in r.err and "--force" in r.err


def test_init_without_a_source_loads_and_asks_for_one(cli, project: Path) -> None:
    assert cli("init", "--preset", "crm").code == 0
    assert shown(cli)["source"] == {"value": None, "origin": "default"}
    r = cli("run")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "no input" in r.err and "[source]" in r.err


# ------------------------------------------------------------------------------------------- precedence
def test_options_override_env_over_file_over_defaults(cli, project: Path, monkeypatch) -> None:
    write(
        project / "rfmseg.toml", 'k = 3\nruns_dir = "from-file"\nstore = "sqlite:///file.db"\n[cold_start]\ndays = 14\n'
    )
    s = shown(cli)
    assert s["k"] == {"value": 3, "origin": "file rfmseg.toml: k"}
    assert s["n_init"] == {"value": 10, "origin": "default"}
    assert s["cold_start.days"] == {"value": 14, "origin": "file rfmseg.toml: cold_start.days"}
    assert s["cold_start.orders"] == {"value": 2, "origin": "default"}
    monkeypatch.setenv("RFMSEG_STORE", "redis://:secret@127.0.0.1:6379/0")
    s = shown(cli)
    assert s["store"] == {"value": "redis://:***@127.0.0.1:6379/0", "origin": "env RFMSEG_STORE"}

    settings = config.resolve(options={"k": 5, "cold_start.days": 7})
    assert (settings.k, settings.origin("k")) == (5, "option")
    assert settings.cold_start_rule().days == 7 and settings.cold_start_rule().orders == 2
    assert settings.store_url == "redis://:secret@127.0.0.1:6379/0"
    assert settings.runs_path.resolve() == project / "from-file"

    orders = generators()["ecommerce"][1]
    path = project / "orders.csv"
    path.write_text(orders().csv_text())
    r = cli("run", path, "--json")
    assert r.code == 0, r.err and r.json()["k"] == 3
    assert Path(r.json()["run_dir"]).parent.resolve() == project / "from-file"
    r = cli("run", path, "--k", "5", "--runs-dir", project / "cli-runs", "--json")
    assert r.code == 0, r.err
    assert r.json()["k"] == 5 and Path(r.json()["run_dir"]).parent == project / "cli-runs"


def test_store_defaults_to_sqlite_in_the_runs_folder(project: Path) -> None:
    s = config.resolve(env={})
    assert s.path is None and s.runs_path == Path("rfmseg-runs")
    assert s.store_url == "sqlite:///rfmseg-runs/profiles.db" and s.origin("store") == "default"
    assert s.cold_start_rule().segment == "Occasional"


def test_config_option_and_env_choose_the_file(cli, project: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    f = write(other / "team.toml", 'preset = "crm"\nruns_dir = "runs"\n')
    assert shown(cli, "--config", str(f))["preset"]["value"] == "crm"
    r = cli("--config", f, "config", "show", "--json")  # the root option works too
    assert r.json()["settings"]["preset"]["value"] == "crm"
    # paths in a file are relative to the file's folder
    assert r.json()["settings"]["runs_dir"]["value"] == str(other / "runs")
    monkeypatch.setenv("RFMSEG_CONFIG", str(f))
    assert shown(cli)["preset"]["origin"] == f"file {f}: preset"
    r = cli("config", "show", "--config", str(tmp_path / "missing.toml"))
    assert r.code == 2 and "no such project file" in r.err


def test_source_in_the_file_is_relative_to_the_file(cli, project: Path, tmp_path: Path) -> None:
    data = tmp_path / "team"
    data.mkdir()
    (data / "usage.csv").write_text(get_preset("saas").sample_path().read_text())
    f = write(data / "rfmseg.toml", 'preset = "saas"\nruns_dir = "runs"\nsource = "usage.csv"\n')
    r = cli("run", "--config", f, "--json")  # run from another folder
    assert r.code == 0, r.err
    assert Path(r.json()["run_dir"]).parent == data / "runs"
    manifest = json.loads((Path(r.json()["run_dir"]) / "manifest.json").read_text())
    assert manifest["input"]["path"] == str(data / "usage.csv")


def test_glob_source_reads_every_file_as_one_table(cli, project: Path) -> None:
    df = pd.read_csv(get_preset("ecommerce").sample_path(), dtype=str)
    (project / "exports").mkdir()
    half = len(df) // 2
    df.iloc[:half].to_csv(project / "exports" / "2024-a.csv", index=False)
    df.iloc[half:].to_csv(project / "exports" / "2024-b.csv", index=False)
    write(project / "rfmseg.toml", '[source]\nglob = "exports/*.csv"\n')
    r = cli("run", "--json")
    assert r.code == 0, r.err
    whole = cli("run", get_preset("ecommerce").sample_path(), "--json")
    assert r.json()["rows"] == whole.json()["rows"]
    a = pq.read_table(Path(r.json()["run_dir"]) / "rfm.parquet")
    b = pq.read_table(Path(whole.json()["run_dir"]) / "rfm.parquet")
    assert a.equals(b)


# ------------------------------------------------------------------------------------------- strictness
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kk = 3\n", "rfmseg.toml: unknown key 'kk'; allowed: source, columns, preset"),
        ('k = "4"\n', "rfmseg.toml: k = '4' is not allowed (Input should be a valid integer); allowed: a whole number"),
        ("k = 11\n", "rfmseg.toml: k = 11 is not allowed"),
        ('transform = "log"\n', "transform = 'log' is not allowed (unknown transform 'log'); allowed: minmax"),
        ('as_of = "2024-02-30"\n', "rfmseg.toml: as_of = '2024-02-30' is not a date; use YYYY-MM-DD"),
        ("[cold_start]\nweeks = 2\n", "unknown key 'cold_start.weeks'; allowed in cold_start: orders, days, segment"),
        ("[cold_start]\norders = -1\n", "cold_start.orders = -1 is not allowed"),
        ('[source]\npath = "a.csv"\nglob = "*.csv"\n', "give exactly one of path and glob"),
        ('[source]\ntype = "postgres"\nurl = "mysql://h/db"\nquery = "SELECT 1"\n', "source.url = 'mysql://h/db'"),
        ('[source]\ntype = "postgres"\nurl = "postgresql://h/db"\n', "source.query is missing"),
        ('preset = "retail"\n', "preset = 'retail' is not allowed (no such preset); allowed: crm, ecommerce"),
        ("k = = 3\n", "rfmseg.toml: not valid TOML"),
        ('[presets.mine]\nfeatures = {frequency = "avg(x)"}\n', "presets.mine.features.frequency = 'avg(x)'"),
        ('[presets.mine]\ncolour = "red"\n', "unknown key 'presets.mine.colour'; allowed in presets.mine: description"),
        ('[presets.saas]\nextends = "crm"\n', "[presets.saas] has the name of a built-in preset"),
    ],
)
def test_a_bad_file_stops_with_the_file_the_key_and_what_is_allowed(
    cli, project: Path, text: str, expected: str
) -> None:
    write(project / "rfmseg.toml", text)
    r = cli("run", get_preset("ecommerce").sample_path())
    assert r.code == 2
    assert r.err.count("\n") == 1, r.err
    assert expected in r.err, r.err
    assert not (project / "rfmseg-runs").exists()


def test_bad_options_name_the_option(cli, project: Path) -> None:
    sample = get_preset("ecommerce").sample_path()
    r = cli("run", sample, "--k", "1")
    assert r.code == 2 and "error: --k 1 is not allowed" in r.err and "from 2 to 10" in r.err
    r = cli("run", sample, "--as-of", "31/12/2024")
    assert r.code == 2 and "error: --as-of '31/12/2024' is not a date; use YYYY-MM-DD" in r.err
    r = cli("run", sample, "--transform", "zscore")
    assert r.code == 2 and "--transform 'zscore' is not allowed (unknown transform 'zscore')" in r.err
    r = cli("run", sample, "--col", "session_count")
    assert r.code == 2 and "is not FIELD=COLUMN" in r.err


def test_demo_works_without_a_file_and_writes_where_the_file_says(cli, project: Path) -> None:
    r = cli("demo", "--json")
    assert r.code == 0, r.err
    assert Path(r.json()["run_dir"]).parent.resolve() == (project / "rfmseg-runs").resolve()
    write(project / "rfmseg.toml", 'runs_dir = "study-runs"\n')
    r = cli("demo", "--json")
    assert r.code == 0 and Path(r.json()["run_dir"]).parent.resolve() == (project / "study-runs").resolve()
    assert cli("show", "latest").code == 0  # show reads the runs folder from the file too


# ------------------------------------------------------------------------------------------- user presets
USER_PRESET = """
preset = "members"
runs_dir = "runs"
source = "visits.csv"

[presets.members]
description = "gym members: check-ins per class"
extends = "saas"
columns = { customer_id = "member", order_date = "seen_at", visits = "checkins", class_name = "class" }
features = { frequency = "sum(visits)", monetary = "count_distinct(class_name)" }
units.entity = "members"
units.recency = "days since last visit"
units.frequency = "check-ins"
units.event = "check-in"
units.monetary = "classes"
labels = ["last visit", "check-ins", "classes"]
cold_start_segment = "Newcomers"
fields = { visits = { kind = "number", min = 1 } }

[[presets.members.vocabulary]]
name = "Regulars"
recency = 0.92
frequency = 0.92
monetary = 0.92
priority = 1
action = "Member-get-member offer"
[[presets.members.vocabulary]]
name = "Casuals"
recency = 0.7
frequency = 0.62
monetary = 0.62
priority = 3
action = "Class recommendations"
[[presets.members.vocabulary]]
name = "Fading"
recency = 0.35
frequency = 0.38
monetary = 0.4
priority = 2
action = "Coach check-in call"
[[presets.members.vocabulary]]
name = "Lapsed"
recency = 0.1
frequency = 0.12
monetary = 0.12
priority = 4
action = "Come-back pass"
[[presets.members.vocabulary]]
name = "Newcomers"
recency = 0.9
frequency = 0.1
monetary = 0.1
priority = 2
action = "Induction session"
"""


def test_a_user_preset_in_the_file_defines_features_vocabulary_and_columns(cli, project: Path) -> None:
    sample = generators()["saas"][1]()
    df = pd.read_csv(get_preset("saas").sample_path(), dtype=str).rename(
        columns={"user_id": "member", "last_used": "seen_at", "session_count": "checkins", "feature_name": "class"}
    )
    df.to_csv(project / "visits.csv", index=False)
    write(project / "rfmseg.toml", USER_PRESET)
    s = shown(cli)
    assert s["features"]["value"] == "recency = max(ts), frequency = sum(visits), monetary = count_distinct(class_name)"
    assert s["cold_start.segment"] == {"value": "Newcomers", "origin": "preset members"}
    r = cli("run", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["preset"] == "members" and out["units"]["entity"] == "members"
    actions = {
        "Regulars": "Member-get-member offer",
        "Casuals": "Class recommendations",
        "Fading": "Coach check-in call",
    }
    actions["Lapsed"] = "Come-back pass"
    assert {x["name"]: x["action"] for x in out["segments"]} == actions
    assignments = pq.read_table(Path(out["run_dir"]) / "assignments.parquet").to_pandas()
    truth = assignments["customer_id"].map(sample.truth)
    assert adjusted_rand_score(truth, assignments["cluster"]) >= 0.9
    same = {"Power Users": "Regulars", "Engaged": "Casuals", "Drifting": "Fading", "Dormant": "Lapsed"}
    assert (truth.map(same) == assignments["segment"]).mean() >= 0.95
    assert "last visit" in out["segments"][0]["reason"]
    # the declared bound is a rule: a row with 0 check-ins is set aside with its reason
    df.loc[0, "checkins"] = "0"
    df.to_csv(project / "visits.csv", index=False)
    r = cli("run", "--bad-rows", "quarantine", "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"]["quarantined"] == {"out_of_range_visits": 1}


def _members_project(project: Path) -> None:
    df = pd.read_csv(get_preset("saas").sample_path(), dtype=str).rename(
        columns={"user_id": "member", "last_used": "seen_at", "session_count": "checkins", "feature_name": "class"}
    )
    df.to_csv(project / "visits.csv", index=False)
    write(project / "rfmseg.toml", USER_PRESET)


def test_a_project_file_preset_is_a_value_of_the_settings_not_a_global(project: Path) -> None:
    from rfmseg.presets import PRESETS, Preset

    _members_project(project)
    before = dict(PRESETS)
    settings = config.resolve()
    p = settings.preset_obj()
    assert (p.name, p.units.entity, p.cold_start_segment) == ("members", "members", "Newcomers")
    assert before == PRESETS and "members" not in PRESETS
    assert Preset.from_dict(json.loads(json.dumps(p.to_dict()))) == p  # the full definition, JSON and back


def test_cli_refresh_and_retrain_read_with_the_project_file_preset(cli, project: Path) -> None:
    _members_project(project)
    assert cli("run", "--json").code == 0
    r = cli("refresh", "--no-publish", "--json")
    assert r.code == 0, r.err
    assert r.json()["kind"] == "refresh" and r.json()["units"]["entity"] == "members"
    t = cli("retrain", "--no-publish", "--json")
    assert t.code == 0, t.err
    assert t.json()["kind"] == "retrain"


def test_python_refresh_after_a_run_with_a_project_file_preset(cli, project: Path) -> None:
    from rfmseg import jobs

    _members_project(project)
    r = cli("run", "--json")
    assert r.code == 0, r.err
    runs = Path(r.json()["run_dir"]).parent
    columns = {"customer_id": "member", "order_date": "seen_at", "visits": "checkins", "class_name": "class"}
    result = jobs.refresh(project / "visits.csv", columns, runs_dir=runs, publish=False)
    assert result.run.manifest["params"]["preset"] == "members"
    # the full definition the run recorded, not a registered name, is what the refresh read with
    assert result.run.manifest["params"]["preset_definition"]["units"]["entity"] == "members"
    assert result.summary["units"]["entity"] == "members"


def test_the_runs_folder_and_the_store_are_resolved_in_one_place(tmp_path: Path) -> None:
    from rfmseg import settings as s
    from rfmseg.agent.context import default_store_url
    from rfmseg.runs import DEFAULT_RUNS_DIR
    from rfmseg.service.deps import Settings as ApiSettings

    assert s.DEFAULT_RUNS_DIR is DEFAULT_RUNS_DIR and isinstance(DEFAULT_RUNS_DIR, Path)
    assert s.runs_path(None, env={}) == DEFAULT_RUNS_DIR
    assert s.runs_path(None, env={"RFMSEG_RUNS_DIR": "r"}) == Path("r")
    assert s.runs_path("given", env={"RFMSEG_RUNS_DIR": "r"}) == Path("given")
    assert s.store_url("r", None, env={}) == f"sqlite:///{Path('r') / 'profiles.db'}"
    assert s.store_url("r", None, env={"RFMSEG_STORE": "redis://h:6379/0"}) == "redis://h:6379/0"
    assert s.store_url("r", "sqlite:///x.db", env={"RFMSEG_STORE": "redis://h:6379/0"}) == "sqlite:///x.db"
    # readers: the default store only when its file exists (reading must not create one)
    assert s.existing_store_url(tmp_path, None, env={}) is None
    (tmp_path / "profiles.db").touch()
    assert s.existing_store_url(tmp_path, None, env={}) == f"sqlite:///{tmp_path / 'profiles.db'}"
    assert default_store_url(tmp_path) == f"sqlite:///{tmp_path / 'profiles.db'}"
    # the API's settings: a view over the same resolution
    api = ApiSettings.from_env({"RFMSEG_RUNS_DIR": str(tmp_path)})
    assert (api.runs_dir, api.store) == (tmp_path, f"sqlite:///{tmp_path / 'profiles.db'}")
    assert ApiSettings.from_env({"RFMSEG_STORE": "redis://h:6379/0"}).store == "redis://h:6379/0"
    assert config.Settings().store_url == s.store_url(DEFAULT_RUNS_DIR, None, env={})
