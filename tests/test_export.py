"""`rfmseg export` on real runs of the simulator (retrains and refreshes of a changing customer base, every
run published in turn to a real SQLite store): every format read back, counts against the run's summary,
--segment, --changed-since against the runs' own assignments and the store's change feed, and bad input."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import stat
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rfmseg.jobs import refresh, retrain
from rfmseg.jobs.export import COLUMNS, export
from rfmseg.jobs.reading import load_model
from rfmseg.questions.common import History
from rfmseg.runs import Run, get_run, list_runs
from rfmseg.runs import history as run_history
from rfmseg.simulate import SimConfig, simulate
from rfmseg.stores import open_store
from runids import unique_prefix

GONE = ("C00003", "C00010", "C00042", "C00077", "C00150")
"""customers whose orders are deleted from the last week's data (they leave the base)"""


@dataclass(frozen=True)
class Life:
    runs_dir: Path
    store_url: str
    runs: list[Run]
    """oldest first, three weeks apart: retrain, refresh, refresh, retrain, refresh (without the GONE customers)"""

    def table(self, i: int) -> pa.Table:
        return self.runs[i].table("assignments")

    def segments(self, i: int) -> dict[str, str]:
        t = self.table(i)
        return dict(zip(t.column("customer_id").to_pylist(), t.column("segment").to_pylist(), strict=True))


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Life:
    root = tmp_path_factory.mktemp("export")
    runs_dir, url = root / "runs", f"sqlite:///{root / 'profiles.db'}"
    sim = simulate(SimConfig(customers=300, weeks=12, seed=11, new_per_week=12))
    days = sim.config.as_of_dates()[::3]  # a run every three weeks: enough moves between two runs
    options: dict[str, Any] = {"runs_dir": runs_dir, "publish": True, "store": url}
    retrain(sim.snapshot(days[0]), as_of=days[0], previous=None, **options)
    refresh(sim.snapshot(days[1]), as_of=days[1], **options)
    refresh(sim.snapshot(days[2]), as_of=days[2], **options)
    retrain(sim.snapshot(days[3]), as_of=days[3], **options)
    last = sim.snapshot(days[4])
    last = last.filter(pc.invert(pc.is_in(last.column("customer_id"), pa.array(GONE))))
    refresh(last, as_of=days[4], **options)
    runs = list_runs(runs_dir)
    assert [r.manifest["kind"] for r in runs] == ["retrain", "refresh", "refresh", "retrain", "refresh"]
    return Life(runs_dir, url, runs)


def read_back(path: Path, fmt: str, schema: pa.Schema) -> list[dict[str, Any]]:
    """The rows of an exported file, typed by ``schema`` (the Parquet export's): CSV and JSON Lines are text."""
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if fmt == "csv":
        options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True)
        return pacsv.read_csv(io.BytesIO(raw), convert_options=options).to_pylist()
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    return pa.Table.from_pylist(rows).cast(schema).to_pylist()


def expected_rows(life: Life, i: int) -> list[dict[str, Any]]:
    """What run ``i``'s export holds, built here from its assignments and summary (previous_segment and
    segment_since come from the store: see test_previous_segment_and_since_are_what_the_store_serves)."""
    run = life.runs[i]
    actions = {s["name"]: (s["action"], s["priority"]) for s in run.summary["segments"]}
    out = []
    for r in sorted(life.table(i).to_pylist(), key=lambda r: r["customer_id"]):
        action, priority = actions[r["segment"]]
        out.append(
            {
                "customer_id": r["customer_id"],
                "segment": r["segment"],
                "segment_reason": r["segment_reason"],
                "recency_days": r["recency_days"],
                "frequency": r["frequency"],
                "monetary": r["monetary"],
                "aov": r["monetary"] / r["frequency"] if r["frequency"] else 0,
                "distance": r["distance"],
                "margin": r["margin"],
                "first_order_date": r["first_order_date"],
                "action": action,
                "priority": priority,
                "run_id": run.run_id,
                "as_of": date.fromisoformat(run.manifest["as_of"]),
                "model_version": run.manifest["model_version"],
            }
        )
    return out


def without(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("name", ["all.parquet", "all.csv", "all.jsonl", "all.csv.gz", "all.ndjson", "all"])
def test_every_format_round_trips(life: Life, tmp_path: Path, cli, name: str) -> None:
    r = cli("export", "--runs-dir", life.runs_dir, "--out", tmp_path / name, "--json")
    assert r.code == 0, r.err
    report = r.json()
    fmt = {"parquet": "parquet", "csv": "csv", "gz": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "all": "csv"}[
        name.rsplit(".", 1)[-1]
    ]  # no suffix: csv
    assert report["format"] == fmt and report["run_id"] == life.runs[-1].run_id
    assert report["files"] == [{"path": str(tmp_path / name), "segment": None, "rows": life.table(-1).num_rows}]
    reference = export(life.runs_dir, out=tmp_path / "reference.parquet")
    schema = pq.read_schema(tmp_path / "reference.parquet")
    assert tuple(schema.names) == COLUMNS == tuple(report["columns"])
    rows = read_back(tmp_path / name, fmt, schema)
    assert rows == pq.read_table(tmp_path / "reference.parquet").to_pylist()  # every value, exactly
    assert without(rows, "previous_segment", "segment_since") == expected_rows(life, -1)
    assert reference.rows == len(rows)
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({name, "reference.parquet"})  # nothing left aside


def test_format_option_wins_over_the_suffix_and_jsonl_is_one_object_a_line(life: Life, tmp_path: Path) -> None:
    r = export(life.runs_dir, life.runs[1].run_id, out=tmp_path / "week1.txt", file_format="jsonl")
    lines = (tmp_path / "week1.txt").read_text().splitlines()
    assert r.format == "jsonl" and len(lines) == r.rows == life.table(1).num_rows
    first = json.loads(lines[0])
    assert list(first) == list(COLUMNS) and first["as_of"] == "2024-01-28"
    assert first["segment_since"] in ("2024-01-07", "2024-01-28") and first["first_order_date"] < "2024-01-28"


def test_counts_match_the_runs_summary_in_one_file_and_per_segment(life: Life, tmp_path: Path, cli) -> None:
    summary = life.runs[-1].summary
    sizes = {s["name"]: s["customers"] for s in summary["segments"]}
    one = cli("export", "--runs-dir", life.runs_dir, "-o", tmp_path / "all.csv", "--json").json()
    assert one["segments"] == sizes and one["rows"] == summary["n_customers"]
    per = cli("export", "latest", "--runs-dir", life.runs_dir, "--out-dir", tmp_path / "lists", "--json").json()
    assert per["segments"] == sizes and per["rows"] == summary["n_customers"]
    assert [(f["segment"], f["rows"]) for f in per["files"]] == list(sizes.items())  # priority order
    everyone = []
    for f in per["files"]:
        path = Path(f["path"])
        assert path.parent == tmp_path / "lists" and path.suffix == ".csv"
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == f["rows"] and {r["segment"] for r in rows} == {f["segment"]}
        everyone += rows
    with (tmp_path / "all.csv").open(newline="") as fh:
        assert sorted(everyone, key=lambda r: r["customer_id"]) == list(csv.DictReader(fh))
    assert sorted(p.name for p in (tmp_path / "lists").iterdir()) == sorted(Path(f["path"]).name for f in per["files"])

    text = cli("export", "--runs-dir", life.runs_dir, "--out-dir", tmp_path / "lists")
    assert text.code == 0 and f"all segments: {summary['n_customers']:,} customers" in text.out
    assert f"{tmp_path / 'lists' / 'champions.csv'} (Champions): {sizes['Champions']:,} rows, csv" in text.out


def test_previous_segment_and_since_are_what_the_store_serves(life: Life, tmp_path: Path) -> None:
    """Every run was published in turn: the export's history columns, computed from the run timeline, are the
    profile store's, customer by customer (moves, stays and returns over five runs)."""
    export(life.runs_dir, out=tmp_path / "all.parquet")
    rows = pq.read_table(tmp_path / "all.parquet").to_pylist()
    with open_store(life.store_url) as store:
        assert store.current_run() == life.runs[-1].run_id
        served = store.get_many([r["customer_id"] for r in rows])
    assert len(served) == len(rows)
    for r in rows:
        p = served[r["customer_id"]]
        assert (r["segment"], r["previous_segment"], r["segment_since"].isoformat()) == (
            p["segment"],
            p["previous_segment"],
            p["segment_since"],
        ), r["customer_id"]
    # the history is not trivial: customers moved, some long ago, some stayed since the first run
    since = {r["segment_since"] for r in rows}
    assert len(since) >= 3 and sum(r["previous_segment"] is not None for r in rows) > 10


def test_an_earlier_run_is_exported_with_its_own_history(life: Life, tmp_path: Path) -> None:
    r = export(life.runs_dir, unique_prefix(life.runs[2].run_id, life.runs_dir), out=tmp_path / "week2.parquet")
    rows = pq.read_table(tmp_path / "week2.parquet").to_pylist()
    assert r.run_id == life.runs[2].run_id and without(rows, "previous_segment", "segment_since") == expected_rows(
        life, 2
    )
    week = [life.segments(i) for i in range(3)]
    days = [date.fromisoformat(life.runs[i].manifest["as_of"]) for i in range(3)]
    for row in rows:
        cid, seg = row["customer_id"], row["segment"]
        k = 2
        while k > 0 and week[k - 1].get(cid) == seg:
            k -= 1
        previous = week[k - 1].get(cid) if k > 0 else None
        assert (row["previous_segment"], row["segment_since"]) == (previous, days[k]), cid


# ------------------------------------------------------------------------------------------------ --segment


def test_segment_option_picks_segments_by_name_case_or_slug(life: Life, tmp_path: Path, cli) -> None:
    sizes = {s["name"]: s["customers"] for s in life.runs[-1].summary["segments"]}
    r = cli(
        "export", "--runs-dir", life.runs_dir, "--segment", "at-risk", "--segment", "LOYAL BUYERS",
        "--segment", "At-Risk", "-o", tmp_path / "two.parquet", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    report = r.json()
    assert report["selected"] == ["At-Risk", "Loyal Buyers"]
    assert report["segments"] == {"At-Risk": sizes["At-Risk"], "Loyal Buyers": sizes["Loyal Buyers"]}
    got = pq.read_table(tmp_path / "two.parquet")
    assert Counter(got.column("segment").to_pylist()) == report["segments"]
    per = export(life.runs_dir, out_dir=tmp_path / "one", segments=["champions"], file_format="parquet")
    assert [(f.path.name, f.segment, f.rows) for f in per.files] == [
        ("champions.parquet", "Champions", sizes["Champions"])
    ]


def test_an_unknown_segment_is_one_line_listing_the_known(life: Life, tmp_path: Path, cli) -> None:
    names = ", ".join(s["name"] for s in life.runs[-1].summary["segments"])
    r = cli("export", "--runs-dir", life.runs_dir, "--segment", "Whales", "-o", tmp_path / "x.csv")
    assert r.code == 2 and r.out == ""
    assert r.err == (  # the questions' and watch's words: one matcher (rfmseg.model.naming.match_segment)
        f"error: unknown segment 'Whales'; segments in run {life.runs[-1].run_id}: {names}; "
        "give --segment one of them\n"
    )
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ pipes, stdout


class Reader(threading.Thread):
    """Reads a named pipe to its end, as `cat pipe > file` would."""

    def __init__(self, pipe: Path) -> None:
        super().__init__(daemon=True)  # an export that never opens the pipe leaves it blocked, not the suite
        self.pipe, self.got = pipe, b""

    def run(self) -> None:
        with open(self.pipe, "rb") as f:
            self.got = f.read()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_named_pipe_is_written_into_not_replaced(life: Life, tmp_path: Path, cli, fmt: str) -> None:
    reference = tmp_path / f"reference.{fmt}"
    assert export(life.runs_dir, out=reference).rows == life.table(-1).num_rows
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = Reader(pipe)
    reader.start()
    args = ("--format", fmt) if fmt != "csv" else ()  # no suffix: csv
    r = cli("export", "--runs-dir", life.runs_dir, "--out", pipe, *args)
    reader.join(timeout=60)
    assert r.code == 0, r.err
    assert f"  {pipe}: {life.table(-1).num_rows:,} rows, {fmt}" in r.out
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)  # still the pipe, not a file in its place
    assert not reader.is_alive() and reader.got == reference.read_bytes()  # the reader got every byte
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pipe", reference.name])  # nothing left aside


def test_dash_writes_to_standard_output_and_says_what_it_did_on_stderr(life: Life, tmp_path: Path, cli) -> None:
    export(life.runs_dir, out=tmp_path / "reference.csv")
    r = cli("export", "--runs-dir", life.runs_dir, "--out", "-", "--segment", "At-Risk")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out)))
    with open(tmp_path / "reference.csv", newline="") as f:
        assert rows == [row for row in csv.DictReader(f) if row["segment"] == "At-Risk"]
    assert r.err.startswith(f"Exported run {life.runs[-1].run_id} (as of ") and "  -: " in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.csv"]  # no file named '-'


def test_the_report_is_written_into_a_named_pipe_and_to_standard_output(life: Life, tmp_path: Path, cli) -> None:
    pipe = tmp_path / "r.html"
    os.mkfifo(pipe)
    reader = Reader(pipe)
    reader.start()
    r = cli("report", "latest", "-o", pipe, "--runs-dir", life.runs_dir)
    reader.join(timeout=120)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and reader.got.startswith(b"<!doctype html>")
    piped = cli("report", "latest", "-o", "-", "--runs-dir", life.runs_dir)
    assert piped.code == 0, piped.err
    assert piped.out.startswith("<!doctype html>") and piped.out.endswith("</html>\n")  # the whole page
    assert abs(len(piped.out.encode()) - len(reader.got)) < 100  # the same page but for when it was made
    assert piped.err == f"Report of run {life.runs[-1].run_id} written to standard output.\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


# ------------------------------------------------------------------------------------------------ latest


def test_latest_is_the_latest_as_of_date_after_a_backfill(life: Life, tmp_path: Path, cli) -> None:
    """A refresh for an earlier day written after the later days' runs does not become 'latest' anywhere that
    reads the current labels; the model a refresh scores with stays the latest trained one."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(life.runs_dir, runs_dir, ignore=shutil.ignore_patterns("profiles.db*"))
    sim = simulate(SimConfig(customers=300, weeks=12, seed=11, new_per_week=12))
    day = sim.config.as_of_dates()[::3][1]
    backfill = refresh(sim.snapshot(day), as_of=day, runs_dir=runs_dir, publish=False)
    assert list_runs(runs_dir)[-1].run_id == backfill.run_id  # created last
    current = life.runs[-1].run_id  # the latest as-of date
    assert get_run("latest", runs_dir).run_id == current
    assert run_history.resolve(runs_dir, "latest").run_id == current == run_history.timeline(runs_dir)[-1].run_id
    assert History(runs_dir).resolve("latest").run_id == current
    assert cli("runs", "latest", "--runs-dir", runs_dir).out.strip() == current
    assert cli("runs", "latest", "--runs-dir", runs_dir, "--kind", "refresh").out.strip() == current
    assert cli("runs", "show", "latest", "--runs-dir", runs_dir, "--json").json()["run_id"] == current
    assert cli("export", "--runs-dir", runs_dir, "-o", tmp_path / "x.csv", "--json").json()["run_id"] == current
    assert cli("transitions", "--runs-dir", runs_dir, "--json").json()["to_run"] == current
    assert load_model("latest", runs_dir).run.run_id == life.runs[3].run_id  # the last retrain: trained last


# ------------------------------------------------------------------------------------------------ --changed-since


def changed_rows(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str | None, str, str | None]]:
    """(customer_id, segment, change, from_segment) of everyone whose segment differs, in id order."""
    out = []
    for cid in sorted(set(before) | set(after)):
        old, new = before.get(cid), after.get(cid)
        if old != new:
            out.append((cid, new, "new" if old is None else "left" if new is None else "moved", old))
    return out


@pytest.mark.parametrize(("base", "run"), [(2, 3), (3, 4), (0, 4)], ids=["refresh-to-retrain", "left", "4-weeks"])
def test_changed_since_writes_who_moved_arrived_or_left(life: Life, tmp_path: Path, cli, base: int, run: int) -> None:
    r = cli(
        "export", life.runs[run].run_id, "--changed-since", life.runs[base].run_id, "--runs-dir", life.runs_dir,
        "-o", tmp_path / "changed.csv", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    report = r.json()
    want = changed_rows(life.segments(base), life.segments(run))
    kinds = Counter(w[2] for w in want)
    assert report["changed_since"] == {
        "run_id": life.runs[base].run_id,
        "as_of": life.runs[base].manifest["as_of"],
        **{k: kinds.get(k, 0) for k in ("new", "moved", "left")},
    }
    assert report["rows"] == len(want) and kinds["moved"] > 0 and kinds["new"] > 0
    assert report["columns"][:4] == ["customer_id", "segment", "change", "from_segment"]
    with (tmp_path / "changed.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["customer_id"], x["segment"] or None, x["change"], x["from_segment"] or None) for x in rows] == want
    now = {x["customer_id"]: x for x in expected_rows(life, run)}
    for x in rows:
        if x["change"] == "left":  # the segment and every profile column empty; from_segment says where they were
            assert x["customer_id"] in GONE
            assert {k for k, v in x.items() if v} == {"customer_id", "change", "from_segment", "run_id", "as_of",
                                                      "model_version"}  # fmt: skip
        else:
            assert float(x["monetary"]) == now[x["customer_id"]]["monetary"]
    if run == 4:
        assert kinds["left"] == len(GONE)


def test_changed_since_is_what_the_store_feed_recorded(life: Life, tmp_path: Path) -> None:
    """The store published run 3 then run 4: its change feed for run 4 is the export of run 4 changed since
    run 3, customer for customer (new, moved and left alike)."""
    export(life.runs_dir, life.runs[4].run_id, out=tmp_path / "c.parquet", changed_since=life.runs[3].run_id)
    exported = [
        (r["customer_id"], r["from_segment"], r["segment"], r["change"])
        for r in pq.read_table(tmp_path / "c.parquet").to_pylist()
    ]
    feed: list[dict[str, Any]] = []
    with open_store(life.store_url) as store:
        after = None
        while True:
            page = store.changes(after, 500)
            feed += page.rows
            after = page.next_cursor
            if not page.more:
                break
    recorded = [
        (c["customer_id"], c["from_segment"], c["to_segment"], c["reason"])
        for c in feed
        if c["run_id"] == life.runs[4].run_id
    ]
    assert exported == recorded and any(x[3] == "left" for x in recorded)


def test_changed_since_per_segment_lists_who_joined_and_who_left(life: Life, tmp_path: Path) -> None:
    r = export(
        life.runs_dir,
        out_dir=tmp_path / "sync",
        changed_since=life.runs[3].run_id,
        file_format="jsonl",
        segments=["Champions", "Occasional"],
    )
    want = changed_rows(life.segments(3), life.segments(4))
    for f in r.files:
        rows = [json.loads(line) for line in f.path.read_text().splitlines()]
        expected = [w for w in want if f.segment in (w[1], w[3])]
        assert [(x["customer_id"], x["segment"], x["change"], x["from_segment"]) for x in rows] == expected
        assert f.rows == len(expected) > 0
    assert [f.path.name for f in r.files] == ["champions.jsonl", "occasional.jsonl"]
    assert r.rows == len([w for w in want if {"Champions", "Occasional"} & {w[1], w[3]}])


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "-o", "x.csv"], "error: no run 'nope' in {runs}; recent runs: "),
        (["--changed-since", "nope", "-o", "x.csv"], "error: no run 'nope' in {runs}; recent runs: "),
        (["-o", "x.csv", "--format", "xml"], "error: --format 'xml' is not a format; use csv, parquet, jsonl"),
        ([], "error: give one destination: --out FILE for one file, or --out-dir FOLDER for one file per segment"),
        (["-o", "x.csv", "--out-dir", "d"], "error: give one destination: --out FILE for one file, or --out-dir"),
        (["-o", "blocker/x.csv"], "error: cannot write the export to blocker/x.csv (blocker is a file, not a folder); "
                                  "choose a location you can write to with --out"),
        (["-o", "blocker/sub/x.csv"], "error: cannot write the export to blocker/sub/x.csv (blocker is a file, not a"),
        (["--out-dir", "blocker/lists"], "error: cannot write the export to blocker/lists (blocker is a file, not a "),
        (["--out-dir", "blocker"], "error: blocker is a file; give --out-dir a folder"),
        (["-o", "."], "error: . is a folder; give --out a file name, or use --out-dir for one file per segment"),
        (["-o", "x.parquet.gz"], "error: x.parquet.gz: Parquet is compressed inside the file; drop the .gz from --out"),
        (["-o", "x.xlsx"], "error: x.xlsx: .xlsx is not a format this writes (csv, parquet, jsonl); end the name of "
                           "--out in .csv, .parquet (or .pq), .jsonl (or .ndjson, .json), or set --format"),
        (["-o", "x.txt.gz"], "error: x.txt.gz: .txt is not a format this writes (csv, parquet, jsonl); end the name"),
        (["-o", "-", "--json"], "error: --out - and --json both write to standard output; write the export to a file, "
                                "or drop --json"),
        (["--out-dir", "-"], "error: - is not a folder; give --out-dir a folder, or write one file to - with --out"),
    ],
    ids=["run", "changed-since", "format", "no-destination", "two-destinations", "parent-is-a-file",
         "ancestor-is-a-file", "out-dir-under-a-file", "out-dir-is-a-file", "out-is-a-folder", "gzipped-parquet",
         "xlsx", "txt", "stdout-and-json", "out-dir-stdout"],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    life: Life, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    r = cli("export", "--runs-dir", life.runs_dir, *args)
    assert r.code == 2 and r.out == ""
    assert r.err.startswith(message.format(runs=life.runs_dir)), r.err
    assert r.err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # nothing written, nothing left aside


def test_no_runs_yet_says_how_to_make_one(tmp_path: Path, cli) -> None:
    r = cli("export", "--runs-dir", tmp_path / "none", "-o", tmp_path / "x.csv")
    assert r.code == 2 and r.err.startswith(f"error: no runs in {tmp_path / 'none'}; run `rfmseg run FILE` first")
