"""Jobs in one runs folder, in order. One at a time (rfmseg.runs.lock): two refreshes started together take
turns, so an incremental refresh never builds on a run another one is replacing, and the same refresh twice
writes one run. And a job for an earlier day does not roll the store back (rfmseg.jobs.publish)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rfmseg import jobs as life
from rfmseg.runs import list_runs
from rfmseg.runs.lock import lock_file, runs_lock
from rfmseg.simulate import SimConfig, simulate
from rfmseg.stores import open_store

CUT = date(2024, 3, 1)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The simulator's orders before 2024-03-01 (the history), then one file per day for three days, and the
    whole of it up to the third day."""
    out = tmp_path_factory.mktemp("days")
    t = simulate(SimConfig(customers=400, weeks=12, seed=7)).transactions
    d = t.column("order_date")
    files = {"history": out / "history.parquet"}
    pq.write_table(t.filter(pc.less(d, pa.scalar(CUT, pa.date32()))), files["history"])
    for i in range(3):
        day = CUT + timedelta(days=i)
        files[str(i)] = out / f"{day}.parquet"
        pq.write_table(t.filter(pc.equal(d, pa.scalar(day, pa.date32()))), files[str(i)])
    whole = pc.less_equal(d, pa.scalar(CUT + timedelta(days=2), pa.date32()))
    files["whole"] = out / "whole.parquet"
    pq.write_table(t.filter(whole), files["whole"])
    return files


def _rfmseg(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rfmseg", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _rfm(run_path: Path) -> dict[str, tuple[object, ...]]:
    rows = pq.read_table(run_path / "assignments.parquet").to_pylist()
    return {r["customer_id"]: (r["recency_days"], r["frequency"], r["monetary"], r["segment"]) for r in rows}


def test_a_job_waits_while_another_holds_the_folder_and_says_so(days: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    life.segment(days["history"], runs_dir=runs)
    with runs_lock(runs, "test"):
        p = _rfmseg("refresh", "--since-last", days["0"], "--runs-dir", runs, "--no-publish")
        assert p.stderr is not None
        note = p.stderr.readline()  # the job's first line on stderr: it is waiting
        assert "another job is writing to" in note and "waiting" in note, note
        time.sleep(1)
        assert p.poll() is None and len(list_runs(runs)) == 1  # nothing written while the folder is held
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert len(list_runs(runs)) == 2 and lock_file(runs).is_file()
    assert not [p.name for p in runs.iterdir() if "lock" in p.name]  # nothing of the lock's in the folder
    assert [r.run_id for r in list_runs(runs)] == sorted(r.run_id for r in list_runs(runs))


def test_two_incremental_refreshes_started_together_lose_no_day(days: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    life.segment(days["history"], runs_dir=runs)
    first = life.refresh_since_last(days["0"], runs_dir=runs, publish=False)
    jobs = [_rfmseg("refresh", "--since-last", days[i], "--runs-dir", runs, "--no-publish") for i in ("1", "2")]
    for p in jobs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    last = list_runs(runs)[-1]
    state = last.manifest["state"]
    assert {Path(f["path"]).name for f in state["files"]} == {days[i].name for i in ("history", "0", "1", "2")}, state
    # whichever went first, the last run holds every day: the same R, F, M and labels as a full refresh over
    # the whole of it with the same model
    full = tmp_path / "full"
    trained = list_runs(runs)[0]
    shutil.copytree(trained.path, full / trained.run_id)
    want = life.refresh(days["whole"], runs_dir=full, publish=False, as_of=last.manifest["as_of"])
    assert _rfm(last.path) == _rfm(want.run.path)
    assert first.run_id in {r.run_id for r in list_runs(runs)}


def test_the_same_refresh_started_twice_writes_one_run(days: dict[str, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    life.segment(days["history"], runs_dir=runs)
    whole, as_of = days["whole"], str(CUT + timedelta(days=3))
    jobs = [_rfmseg("refresh", whole, "--as-of", as_of, "--runs-dir", runs, "--no-publish") for _ in range(2)]
    outs = []
    for p in jobs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out)
    assert len(list_runs(runs)) == 2  # the trained run and one refresh
    assert sum("Already done" in o for o in outs) == 1, outs


def test_a_refresh_for_an_earlier_day_does_not_roll_the_store_back(
    days: dict[str, Path], tmp_path: Path, cli: Any
) -> None:
    runs = tmp_path / "runs"
    life.segment(days["history"], runs_dir=runs)
    newer = life.refresh(days["whole"], runs_dir=runs, as_of="2024-03-04")
    assert newer.publish is not None and "skipped" not in newer.publish
    r = cli("refresh", days["whole"], "--as-of", "2024-03-03", "--runs-dir", runs)  # a backfill
    assert r.code == 0, r.err
    older = list_runs(runs)[-1]
    assert older.manifest["as_of"] == "2024-03-03"
    assert f"the store serves run {newer.run_id} as of 2024-03-04, a later day than this run's 2024-03-03" in r.out
    assert f"`rfmseg publish {older.run_id}` publishes it all the same" in r.out, r.out
    with open_store(f"sqlite:///{runs / 'profiles.db'}") as store:
        assert store.current_run() == newer.run_id
    # the same again finds its run, and still does not publish it
    r = cli("refresh", days["whole"], "--as-of", "2024-03-03", "--runs-dir", runs)
    assert r.code == 0 and "Already done" in r.out and "a later day than this run's" in r.out, r.out
    # on purpose, it does
    r = cli("publish", older.run_id, "--runs-dir", runs)
    assert r.code == 0, r.err
    with open_store(f"sqlite:///{runs / 'profiles.db'}") as store:
        assert store.current_run() == older.run_id
