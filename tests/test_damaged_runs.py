"""A run file damaged or removed after the run was written, on real runs of the simulator: every command that
reads it says which file of which run and the fix in one line (exit code 2), the API answers 503 with that line,
and a run whose assignments.parquet was removed is named in a note where the history leaves it out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from rfmseg.errors import RunFileError
from rfmseg.jobs import refresh, retrain
from rfmseg.runs import list_runs
from rfmseg.runs.damage import damaged_run_file
from rfmseg.service import Settings, create_app
from rfmseg.simulate import SimConfig, simulate

CUSTOMER = "C00001"


@pytest.fixture(scope="module")
def three_weeks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A retrain, then two weekly refreshes (the last published) of 300 simulated customers."""
    runs = tmp_path_factory.mktemp("weeks") / "runs"
    s = simulate(SimConfig(customers=300, weeks=2, seed=7))
    first, *later = s.config.as_of_dates()
    retrain(s.snapshot(first), as_of=first, runs_dir=runs, publish=False)
    for week, day in enumerate(later, start=1):
        refresh(s.snapshot(day), as_of=day, runs_dir=runs, publish=week == len(later))
    return runs


@pytest.fixture
def runs(three_weeks: Path, tmp_path: Path) -> Path:
    """A copy of the three runs this test may damage."""
    return Path(shutil.copytree(three_weeks, tmp_path / "runs"))


def cut_short(data: bytes) -> bytes:
    return data[: len(data) // 2]


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "garbage": (lambda _: b"garbage\n", "is not a Parquet file (damaged or cut short)"),
    "cut short": (cut_short, "is not a Parquet file (damaged or cut short)"),
    "empty": (lambda _: b"", "is empty"),
}


def damage(runs: Path, index: int, how: str) -> tuple[Path, str]:
    """Damage the assignments.parquet of the ``index``-th run; the folder and what the line says is wrong."""
    folder = list_runs(runs)[index].path
    file = folder / "assignments.parquet"
    change, reason = DAMAGES[how]
    file.write_bytes(change(file.read_bytes()))
    return folder, reason


def expected_line(folder: Path, reason: str, file: str = "assignments.parquet") -> str:
    manifest = json.loads((folder / "manifest.json").read_text())
    return (
        f"run {folder.name}'s {file} {reason}; restore it from a backup, or remove the run folder {folder} and "
        f"run the job that wrote it again (`rfmseg {manifest['kind']}` as of {manifest['as_of']})"
    )


@pytest.mark.parametrize("how", list(DAMAGES))
def test_every_command_reading_a_damaged_file_names_it_and_the_fix(cli, runs: Path, tmp_path: Path, how: str) -> None:
    folder, reason = damage(runs, -1, how)
    line = f"error: {expected_line(folder, reason)}\n"
    for command in (
        ["history", CUSTOMER],
        ["watch"],
        ["transitions"],
        ["publish", "latest"],
        ["report", "latest", "-o", tmp_path / "report.html"],
        ["export", "latest", "-o", tmp_path / "segments.csv"],
    ):
        result = cli(*command, "--runs-dir", runs)
        assert (result.code, result.err) == (2, line), command


def test_an_older_damaged_run_is_the_one_named(cli, runs: Path) -> None:
    """history reads every run: the line names the damaged one, not the latest."""
    folder, reason = damage(runs, 1, "garbage")
    assert folder != list_runs(runs)[-1].path
    result = cli("history", CUSTOMER, "--runs-dir", runs, "--json")
    assert (result.code, result.out, result.err) == (2, "", f"error: {expected_line(folder, reason)}\n")


def test_the_executable_says_one_line_and_exits_2(runs: Path) -> None:
    folder, reason = damage(runs, -1, "garbage")
    done = subprocess.run(
        [sys.executable, "-m", "rfmseg", "history", CUSTOMER, "--runs-dir", str(runs)], capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (2, f"error: {expected_line(folder, reason)}\n")


def test_a_removed_file_is_named_where_a_command_needs_it(cli, runs: Path) -> None:
    folder = list_runs(runs)[-1].path
    (folder / "assignments.parquet").unlink()
    result = cli("publish", "latest", "--runs-dir", runs)
    assert (result.code, result.err) == (2, f"error: {expected_line(folder, 'is missing')}\n")
    exported = cli("export", folder.name, "--out", folder.parent / "x.csv", "--runs-dir", runs)
    assert exported.code == 2 and exported.err.count("\n") == 1, exported.err
    assert "has no assignments.parquet" in exported.err and f"remove the run folder {folder}" in exported.err


def test_the_history_says_which_runs_it_leaves_out(cli, runs: Path, three_weeks: Path) -> None:
    """A run without assignments.parquet is left out of the history, the transitions and the warnings (they
    still answer from the other runs), with a note on stderr naming it and the fix; stdout stays JSON."""
    first, middle, last = list_runs(runs)
    (last.path / "assignments.parquet").unlink()

    def note(what: str) -> str:
        return (
            f"note: run {last.run_id} has no assignments.parquet and is left out of {what}; restore the file "
            f"from a backup, or remove the run folder {last.path}\n"
        )

    history = cli("history", CUSTOMER, "--runs-dir", runs, "--json")
    assert (history.code, history.err) == (0, note("the history"))
    assert [r["run_id"] for r in history.json()] == [first.run_id, middle.run_id]  # type: ignore[union-attr]
    transitions = cli("transitions", "--runs-dir", runs, "--json")
    assert (transitions.code, transitions.err) == (0, note("the transitions"))
    assert transitions.json()["to_run"] == middle.run_id  # type: ignore[index]
    watch = cli("watch", "--runs-dir", runs, "--json")
    assert (watch.code, watch.err) == (0, note("the warnings"))
    assert watch.json()["run_id"] == middle.run_id  # type: ignore[index]
    intact = cli("history", CUSTOMER, "--runs-dir", three_weeks, "--json")
    assert (intact.code, intact.err) == (0, "")


API_READS = (
    f"/customers/{CUSTOMER}/history",
    "/warnings",
    "/transitions",
    "/runs/latest/view",
    "/segments/champions/customers",
)


@pytest.mark.parametrize("how", ["garbage", "empty"])
def test_the_api_answers_503_naming_the_damaged_file(runs: Path, how: str) -> None:
    folder, reason = damage(runs, -1, how)
    settings = Settings(runs_dir=runs, store_url=f"sqlite:///{runs / 'profiles.db'}")
    with TestClient(create_app(settings)) as client:  # a server exception would be raised here
        for url in API_READS:
            r = client.get(url)
            assert (r.status_code, r.json()) == (503, {"detail": expected_line(folder, reason)}), url
        assert client.get(f"/customers/{CUSTOMER}").status_code == 200  # the store still serves
        assert client.get("/runs/latest").status_code == 200  # the run's other files still read


def test_the_api_names_a_removed_file_where_it_needs_it(runs: Path) -> None:
    folder = list_runs(runs)[-1].path
    (folder / "assignments.parquet").unlink()
    with TestClient(create_app(Settings(runs_dir=runs, store_url=f"sqlite:///{runs / 'profiles.db'}"))) as client:
        for url in ("/runs/latest/view", "/segments/champions/customers"):
            r = client.get(url)
            assert (r.status_code, r.json()) == (503, {"detail": expected_line(folder, "is missing")}), url


def test_a_read_error_outside_a_run_folder_is_left_as_it_was(tmp_path: Path) -> None:
    """Only a file inside a run folder (one with a manifest.json) is a damaged run file: the same reader's
    error on another file, or an error naming no file, is not translated."""
    stray = tmp_path / "assignments.parquet"
    stray.write_bytes(b"garbage\n")
    with pytest.raises(pa.ArrowInvalid) as by_arrow:
        pq.read_table(stray)
    with pytest.raises(duckdb.InvalidInputException) as by_duckdb:
        duckdb.sql(f"SELECT * FROM read_parquet('{stray}')").fetchall()
    assert damaged_run_file(by_arrow.value) is None
    assert damaged_run_file(by_duckdb.value) is None
    assert damaged_run_file(ValueError(f"'{stray}'")) is None
    (tmp_path / "manifest.json").write_text("{}")  # now it is a run folder (of an unknown kind)
    found = damaged_run_file(by_duckdb.value)
    assert isinstance(found, RunFileError) and (found.exit_code, found.http_status) == (2, 503)
    assert found.message == (
        f"run {tmp_path.name}'s assignments.parquet is not a Parquet file (damaged or cut short); restore it from "
        f"a backup, or remove the run folder {tmp_path} and run the job that wrote it again (`rfmseg run`)"
    )


@pytest.mark.parametrize("file", ["manifest.json", "summary.json"])
def test_a_damaged_json_file_of_a_run_is_one_line_too(cli, runs: Path, file: str) -> None:
    """A run's manifest or summary that is no JSON any more (cut short) stops the commands that read it with
    the same line, and the API answers 503."""
    folder = list_runs(runs)[-1].path
    (folder / file).write_text('{"run_id": ', encoding="utf-8")
    export = ["export", folder.name, "--out", str(runs / "x.csv")]
    for args in [export, ["runs", "list"]] if file == "manifest.json" else [export, ["show", folder.name]]:
        result = cli(*args, "--runs-dir", runs)
        assert result.code == 2 and result.err.count("\n") == 1, (args, result.err)
        assert result.err.startswith(f"error: run {folder.name}'s {file} is not valid JSON"), (args, result.err)
    if file == "summary.json":  # the manifest names the job to run again
        line = expected_line(folder, "is not valid JSON (damaged or cut short)", file)
        assert cli("show", folder.name, "--runs-dir", runs).err == f"error: {line}\n"
    with TestClient(create_app(Settings(runs_dir=runs))) as c:
        r = c.get(f"/runs/{folder.name}")
    assert r.status_code == 503 and r.json()["detail"].startswith(f"run {folder.name}'s {file}"), r.json()
