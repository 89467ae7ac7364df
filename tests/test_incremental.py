"""``rfmseg refresh --since-last NEW_FILE`` (rfmseg.jobs.incremental): a history replayed file by file gives,
at every step, the same R, F, M and labels for every customer as a full refresh over the concatenation;
what cannot be merged falls back to a full recompute (or stops in one line); nothing is half-written."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rfmseg import jobs as life
from rfmseg.errors import EnvironmentFailure, InputError
from rfmseg.io import Policy
from rfmseg.jobs.incremental import ORDERS_FILE, STATE_FILE
from rfmseg.runs import list_runs

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["customer_id", "recency_days", "frequency", "monetary", "segment", "segment_reason", "first_order_date"]


def _split(source: Path, out: Path, date_col: str, cuts: list[str]) -> list[Path]:
    """``source`` cut at the dates ``cuts``: the history before the first, then one file per interval (the
    rows in their order in ``source``)."""
    out.mkdir(parents=True, exist_ok=True)
    bounds = ["0001-01-01", *cuts, "9999-12-31"]
    files = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        path = out / f"part_{i:03d}.parquet"
        duckdb.sql(
            f"COPY (SELECT * FROM read_parquet('{source}') WHERE \"{date_col}\" >= TIMESTAMP '{lo}' "
            f"AND \"{date_col}\" < TIMESTAMP '{hi}') TO '{path}' (FORMAT parquet)"
        )
        files.append(path)
    return files


def _concat(files: list[Path], path: Path) -> Path:
    pq.write_table(pa.concat_tables([pq.read_table(f) for f in files]), path)
    return path


def _by_customer(run_path: Path) -> dict[str, tuple[Any, ...]]:
    t = pq.read_table(run_path / "assignments.parquet").select(COLUMNS).to_pylist()
    return {r["customer_id"]: tuple(r[c] for c in COLUMNS[1:]) for r in t}


def _same(incremental: life.LifeResult, full: life.LifeResult) -> None:
    a, b = _by_customer(incremental.run.path), _by_customer(full.run.path)
    assert a.keys() == b.keys()
    diff = [(k, a[k], b[k]) for k in a if a[k] != b[k]]
    assert not diff, diff[:5]
    assert incremental.summary["as_of"] == full.summary["as_of"]


def _replay(files: list[Path], tmp: Path, **options: Any) -> list[str]:
    """Train on ``files[0]``, then refresh ``--since-last`` each later file; after each, a full refresh over
    the concatenation (in a registry of its own, the same model) must give the same customers, R, F, M and
    labels. Returns the modes the steps took."""
    inc, full = tmp / "inc", tmp / "full"
    first = life.segment(files[0], runs_dir=inc, **options)
    assert first.run is not None
    shutil.copytree(first.run.path, full / first.run_id)
    modes = []
    before = first.manifest["rows"]
    for i in range(1, len(files)):
        got = life.refresh_since_last(files[i], runs_dir=inc, publish=False, **_job(options))
        whole = _concat(files[: i + 1], tmp / f"whole_{i}.parquet")
        want = life.refresh(whole, runs_dir=full, publish=False, **_job(options))
        _same(got, want)
        state = got.manifest["state"]
        modes.append(state["mode"] + ": " + str(state["note"]))
        rows, whole_rows = got.manifest["rows"], want.manifest["rows"]
        assert rows["read"] == rows["used"] + sum(rows["quarantined"].values())
        if state["mode"] == "incremental":
            # the new file's rows, judged by the same rules: what the full read added, reason by reason (a
            # customer with returns only may leave that reason as a later order arrives)
            assert rows["read"] == pq.read_metadata(files[i]).num_rows
            for reason in set(rows["quarantined"]) | set(whole_rows["quarantined"]):
                if reason != "returns_only_customer":
                    added = whole_rows["quarantined"].get(reason, 0) - before["quarantined"].get(reason, 0)
                    assert rows["quarantined"].get(reason, 0) == added, reason
        else:
            assert rows == whole_rows
        before = whole_rows
        assert (got.run.path / STATE_FILE).is_file() and (got.run.path / ORDERS_FILE).is_file()
    return modes


def _job(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in ("preset", "policy")}


def test_online_retail_replayed_in_chunks_matches_a_full_refresh(online_retail: Path, tmp_path: Path) -> None:
    # the history to the end of September 2011, then 14 chunks of about five days to 2011-12-09
    cuts = ["2011-10-01", *(f"2011-10-{d:02d}" for d in (6, 11, 16, 21, 26, 31))]
    cuts += [*(f"2011-11-{d:02d}" for d in (5, 10, 15, 20, 25, 30)), "2011-12-05"]
    files = _split(online_retail, tmp_path / "parts", "InvoiceDate", cuts)
    modes = _replay(files, tmp_path, preset="online-retail")
    # the first refresh builds the state (the trained run keeps none); every later one merges
    assert modes[0].startswith("full") and set(modes[1:]) == {"incremental: None"}, modes


def test_bench_data_split_into_days_matches_a_full_refresh(tmp_path: Path) -> None:
    data = tmp_path / "tx.parquet"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), "--rows", "2e5", "--out", str(data)],
        check=True,
        capture_output=True,
    )
    days = [f"2024-12-{d:02d}" for d in range(20, 32)]
    files = _split(data, tmp_path / "parts", "order_date", days)
    policy = Policy(bad_rows="quarantine", returns_condition="upper(order_id) LIKE 'C%'")
    modes = _replay(files, tmp_path, policy=policy)
    assert set(modes[1:]) == {"incremental: None"}, modes


# ------------------------------------------------------------------------------------------ what cannot merge
@pytest.fixture
def december(online_retail: Path, tmp_path: Path) -> list[Path]:
    """December 2010 of Online Retail: the history to 12-08, then three files."""
    src = tmp_path / "december.parquet"
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{online_retail}') WHERE InvoiceDate < TIMESTAMP '2011-01-01') "
        f"TO '{src}' (FORMAT parquet)"
    )
    return _split(src, tmp_path / "parts", "InvoiceDate", ["2010-12-08", "2010-12-13", "2010-12-17"])


def _with_state(files: list[Path], runs: Path) -> life.LifeResult:
    """A trained run on the history and the refresh of the next file, which writes the first state."""
    life.segment(files[0], runs_dir=runs, preset="online-retail")
    return life.refresh_since_last(files[1], runs_dir=runs, publish=False)


def _full_refresh(files: list[Path], runs: Path, tmp: Path) -> life.LifeResult:
    """A full refresh over the concatenation of ``files``, with the model of ``runs``' first run."""
    return _full_of(_concat(files, tmp / "whole.parquet"), runs, tmp)


def _full_of(source: Path, runs: Path, tmp: Path) -> life.LifeResult:
    """A full refresh over ``source``, with the model of ``runs``' first run (in a registry of its own)."""
    other = tmp / "full"
    first = list_runs(runs)[0]
    shutil.copytree(first.path, other / first.run_id, dirs_exist_ok=True)
    return life.refresh(source, runs_dir=other, publish=False)


def test_a_line_repeated_from_an_earlier_file_recomputes_in_full(december: list[Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _with_state(december, runs)
    repeated = tmp_path / "repeated.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(december[1]).slice(100, 20), pq.read_table(december[2])]), repeated)
    got = life.refresh_since_last(repeated, runs_dir=runs, publish=False)
    state = got.manifest["state"]
    assert state["mode"] == "full" and "is in an earlier file too" in state["note"], state
    want = _full_refresh([december[0], december[1], repeated], runs, tmp_path)
    _same(got, want)
    assert (
        got.manifest["rows"]["quarantined"]["duplicate_line"] == want.manifest["rows"]["quarantined"]["duplicate_line"]
    )
    # the state was built again: the next file merges, although 62 % of its lines have no customer id (more
    # than the preset's share on its own): the quarantine guard is a full read's, on the whole history
    after = life.refresh_since_last(december[3], runs_dir=runs, publish=False)
    assert after.manifest["state"]["mode"] == "incremental", after.manifest["state"]["note"]
    assert after.manifest["state"]["files"][-2]["path"] == str(repeated)
    _same(after, _full_refresh([december[0], december[1], repeated, december[3]], runs, tmp_path))


def test_an_order_seen_before_without_the_history_at_hand_stops_in_one_line(
    december: list[Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    _with_state(december, runs)
    before = sorted(p.name for p in runs.iterdir())
    repeated = tmp_path / "repeated.parquet"
    pq.write_table(pq.read_table(december[1]).slice(0, 50), repeated)
    december[0].unlink()  # the history is gone
    with pytest.raises(InputError) as exc:
        life.refresh_since_last(repeated, runs_dir=runs, publish=False)
    message = str(exc.value)
    assert "\n" not in message and str(december[0]) in message and "put the files back" in message, message
    assert sorted(p.name for p in runs.iterdir()) == before


def test_the_same_file_again_finds_its_run_and_the_cli_says_what_it_did(
    december: list[Path], tmp_path: Path, cli: Any
) -> None:
    runs = tmp_path / "runs"
    built = _with_state(december, runs)
    again = life.refresh_since_last(december[1], runs_dir=runs, publish=False)
    assert again.status == "existing" and again.run_id == built.run_id
    r = cli("refresh", "--since-last", december[2], "--runs-dir", runs, "--no-publish")
    assert r.code == 0, r.err
    assert "Incremental: " in r.out and f"state of run {built.run_id}" in r.out
    r = cli("refresh", december[3], "--since-last", december[3], "--runs-dir", runs, "--no-publish")
    assert r.code == 2 and "--since-last" in r.err and r.err.count("\n") == 1, r.err


def test_features_without_a_mergeable_state_recompute_in_full(december: list[Path], tmp_path: Path) -> None:
    from rfmseg.features import Agg, FeatureSet

    runs = tmp_path / "runs"
    life.segment(december[0], runs_dir=runs, preset="online-retail", feature_set=FeatureSet(frequency=Agg("count")))
    life.refresh_since_last(december[1], runs_dir=runs, publish=False)
    got = life.refresh_since_last(december[2], runs_dir=runs, publish=False)
    assert got.manifest["state"]["mode"] == "full" and "no mergeable state" in got.manifest["state"]["note"]
    want = _full_refresh(december[:3], runs, tmp_path)
    _same(got, want)


def test_a_full_disk_leaves_the_registry_as_it_was(december: list[Path], tmp_path: Path) -> None:
    """A real full disk (a tmpfs; needs the right to mount, skipped elsewhere) while the run and its state are
    written: nothing new in the registry, the last state intact, and the same refresh works once there is room."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        runs = disk / "runs"
        built = _with_state(december, runs)
        before = sorted(p.name for p in runs.iterdir())
        free = shutil.disk_usage(disk).free
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (free - 64 * 1024))
        with pytest.raises(EnvironmentFailure) as exc:
            life.refresh_since_last(december[2], runs_dir=runs, publish=False)
        assert "No space left" in str(exc.value) and "\n" not in str(exc.value)
        assert sorted(p.name for p in runs.iterdir()) == before
        assert list_runs(runs)[-1].run_id == built.run_id
        filler.unlink()
        got = life.refresh_since_last(december[2], runs_dir=runs, publish=False)
        assert got.manifest["state"]["mode"] == "incremental" and got.manifest["state"]["built_on"] == built.run_id
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)  # lazily: a closed file may still be let go


def test_a_day_whose_dates_read_both_ways_takes_the_historys_format(online_retail: Path, tmp_path: Path) -> None:
    """CSV exports with month-first dates: the days 1-12 of a month read both ways on their own (a read
    alone refuses them); the day file is read with the formats the history's read found."""
    files = []
    bounds = ["2011-11-01", "2011-11-15", "2011-12-01", "2011-12-10"]
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        path = tmp_path / f"part_{i}.csv"
        duckdb.sql(
            f"COPY (SELECT * FROM read_parquet('{online_retail}') WHERE InvoiceDate >= TIMESTAMP '{lo}' AND "
            f"InvoiceDate < TIMESTAMP '{hi}') TO '{path}' (HEADER, TIMESTAMPFORMAT '%m/%d/%Y %H:%M')"
        )
        files.append(path)
    with pytest.raises(InputError, match="read both day-first and month-first"):
        life.segment(files[2], runs_dir=None, preset="online-retail")
    runs = tmp_path / "runs"
    life.segment(files[0], runs_dir=runs, preset="online-retail")
    life.refresh_since_last(files[1], runs_dir=runs, publish=False)
    got = life.refresh_since_last(files[2], runs_dir=runs, publish=False)
    assert got.manifest["state"]["mode"] == "incremental", got.manifest["state"]["note"]
    whole = tmp_path / "whole.csv"
    whole.write_text("".join(f.read_text() if i == 0 else f.read_text().split("\n", 1)[1] for i, f in enumerate(files)))
    want = life.refresh(whole, runs_dir=runs, publish=False)
    _same(got, want)


@pytest.fixture(scope="module")
def sim_days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The simulator's orders before 2024-03-01 (the history) and the next two days, one file each; the same
    without the order id column; and a file holding the history and both days (a whole export)."""
    from datetime import date

    import pyarrow.compute as pc

    from rfmseg.simulate import SimConfig, simulate

    out = tmp_path_factory.mktemp("sim_days")
    t = simulate(SimConfig(customers=400, weeks=12, seed=7)).transactions
    d = t.column("order_date")
    parts = {
        "history": pc.less(d, pa.scalar(date(2024, 3, 1), pa.date32())),
        "day1": pc.equal(d, pa.scalar(date(2024, 3, 1), pa.date32())),
        "day2": pc.equal(d, pa.scalar(date(2024, 3, 2), pa.date32())),
        "whole": pc.less(d, pa.scalar(date(2024, 3, 3), pa.date32())),
    }
    files = {}
    for name, keep in parts.items():
        files[name] = out / f"{name}.parquet"
        pq.write_table(t.filter(keep), files[name])
        files[f"{name}_no_id"] = out / f"{name}_no_id.parquet"
        pq.write_table(t.filter(keep).drop_columns(["order_id"]), files[f"{name}_no_id"])
    return files


def test_a_file_merged_before_or_overlapping_the_history_is_refused(
    sim_days: dict[str, Path], tmp_path: Path, cli: Any
) -> None:
    """A day fed twice, or an export of the whole history given as the new file: its copies would count twice
    (the generic reading keeps repeated lines), so the refresh stops in one line and writes nothing."""
    runs = tmp_path / "runs"
    life.segment(sim_days["history"], runs_dir=runs)
    life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False)
    life.refresh_since_last(sim_days["day2"], runs_dir=runs, publish=False)
    before = sorted(p.name for p in runs.iterdir())
    r = cli("refresh", "--since-last", sim_days["day1"], "--runs-dir", runs, "--no-publish")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert "day1.parquet is in the history of run" in r.err and "give the file of the new ones" in r.err, r.err
    r = cli("refresh", "--since-last", sim_days["whole"], "--runs-dir", runs, "--no-publish")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert (
        "whole.parquet repeats" in r.err and "dated on or before 2024-03-02, the last day the history holds" in r.err
    ), r.err
    assert "`rfmseg refresh FILE`" in r.err, r.err
    assert sorted(p.name for p in runs.iterdir()) == before
    # the first --since-last after a run recomputes in full (the run keeps no state): the same check there
    fresh = tmp_path / "fresh"
    life.segment(sim_days["history"], runs_dir=fresh)
    with pytest.raises(InputError) as exc:
        life.refresh_since_last(sim_days["whole"], runs_dir=fresh, publish=False)
    assert "whole.parquet repeats" in str(exc.value) and "dated on or before 2024-02-29" in str(exc.value)
    assert len(list_runs(fresh)) == 1


def test_without_an_order_id_a_line_dated_in_the_historys_days_is_refused(
    sim_days: dict[str, Path], tmp_path: Path
) -> None:
    """Without an order id each line is its own order: a line dated in the days the history holds cannot be
    told from one already read, so it is refused; the next days merge and give what a full refresh gives."""
    runs = tmp_path / "runs"
    life.segment(sim_days["history_no_id"], runs_dir=runs)
    got = life.refresh_since_last(sim_days["day1_no_id"], runs_dir=runs, publish=False)
    assert got.manifest["state"]["mode"] == "full"  # the trained run keeps no state
    got = life.refresh_since_last(sim_days["day2_no_id"], runs_dir=runs, publish=False)
    assert got.manifest["state"]["mode"] == "incremental", got.manifest["state"]["note"]
    _same(got, _full_of(sim_days["whole_no_id"], runs, tmp_path))
    with pytest.raises(InputError) as exc:
        life.refresh_since_last(sim_days["whole_no_id"], runs_dir=runs, publish=False)
    message = str(exc.value)
    assert "\n" not in message and "dated on or before 2024-03-02" in message and "without an order id" in message
    fresh = tmp_path / "fresh"  # and after a run, which keeps no state (a full recompute)
    life.segment(sim_days["history_no_id"], runs_dir=fresh)
    with pytest.raises(InputError, match="dated on or before 2024-02-29, the last day the history holds"):
        life.refresh_since_last(sim_days["whole_no_id"], runs_dir=fresh, publish=False)


def test_after_a_backfill_the_next_day_builds_on_the_latest_day_not_the_backfill(
    sim_days: dict[str, Path], tmp_path: Path
) -> None:
    """A refresh for an earlier day written after the others is not the history the next day merges into."""
    runs = tmp_path / "runs"
    life.segment(sim_days["history"], runs_dir=runs)
    life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False)
    life.refresh(sim_days["history"], runs_dir=runs, as_of="2024-02-25", bad_rows="quarantine", publish=False)
    got = life.refresh_since_last(sim_days["day2"], runs_dir=runs, publish=False)
    assert got.manifest["state"]["mode"] == "incremental", got.manifest["state"]["note"]
    _same(got, _full_of(sim_days["whole"], runs, tmp_path))


def test_an_as_of_date_on_the_last_day_still_catches_the_day_given_again(
    sim_days: dict[str, Path], tmp_path: Path
) -> None:
    """With --as-of the day's own date, the history holds that day's lines: a file holding them again is
    refused, as it is with the as-of date the read settles (the day after the last order)."""
    runs = tmp_path / "runs"
    life.segment(sim_days["history"], runs_dir=runs)
    life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False, as_of="2024-03-01")
    with pytest.raises(InputError, match="dated on or before 2024-03-01, the last day the history holds"):
        life.refresh_since_last(sim_days["whole"], runs_dir=runs, publish=False)
    # the same file again at another date is no re-run: it says how to move the date without new lines
    with pytest.raises(InputError, match=r"is the last file merged into run .* refresh the whole history"):
        life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False, as_of="2024-03-10")
    again = life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False, as_of="2024-03-01")
    assert again.status == "existing"


def test_a_bad_line_of_the_day_is_named_in_the_day_file(sim_days: dict[str, Path], tmp_path: Path, cli: Any) -> None:
    """A day refused alone (a negative amount, --bad-rows error) is refused with its own line: the day file
    and its row, not the history read with it."""
    runs = tmp_path / "runs"
    life.segment(sim_days["history"], runs_dir=runs)
    life.refresh_since_last(sim_days["day1"], runs_dir=runs, publish=False)
    day = pq.read_table(sim_days["day2"])
    bad = pa.table(
        {
            "customer_id": ["C00002"],
            "order_id": ["O9999998"],
            "order_date": day.column("order_date")[:1],
            "amount": [-50.0],
        }
    ).cast(day.schema)
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.concat_tables([day, bad]), broken)
    r = cli("refresh", "--since-last", broken, "--runs-dir", runs, "--no-publish")
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert "broken.parquet: 1 row(s) with negative amount" in r.err and f"row {day.num_rows + 1}" in r.err, r.err
