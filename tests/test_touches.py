"""Campaign touches: import with row-level validation and quarantine, storage per import, listing."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError
from rfmseg.touches import (
    ALIASES,
    RULES,
    import_folders,
    import_touches,
    list_imports,
    load_touches,
    simulate_touches,
)

HEADER = "Customer,Campaign,Type,Channel,Sent At,Responded At,Converted At\n"
# each bad row breaks exactly one rule, named in the last column of BAD (the reason expected)
GOOD = [
    "C001,LOY-1,loyalty_offer,email,2024-12-01,,",
    "C002,LOY-1,Loyalty Offer,Email,2024-12-01 10:30:00,2024-12-02,2024-12-05",
    "C087,WB-1,win-back,sms,2024-11-20,,",
    "C133,DISC-1,discount,email,12/03/2024,,",
]
BAD = [
    (",LOY-1,loyalty_offer,email,2024-12-01,,", "missing_customer_id"),
    ("C003,,loyalty_offer,email,2024-12-01,,", "missing_campaign"),
    ("C004,LOY-1,,email,2024-12-01,,", "missing_kind"),
    ("C005,LOY-1,birthday_card,email,2024-12-01,,", "unknown_kind"),
    ("C006,LOY-1,loyalty_offer,,2024-12-01,,", "missing_channel"),
    ("C007,LOY-1,loyalty_offer,email,next tuesday,,", "bad_sent_at"),
    ("C008,LOY-1,loyalty_offer,email,2024-12-01,soon,", "bad_responded_at"),
    ("C009,LOY-1,loyalty_offer,email,2024-12-01,2024-11-30,", "responded_before_sent"),
    ("C010,LOY-1,loyalty_offer,email,2024-12-01,,maybe", "bad_converted_at"),
    ("C011,LOY-1,loyalty_offer,email,2024-12-01,,2024-11-01", "converted_before_sent"),
    ("C001,LOY-1,loyalty_offer,email,2024-12-01,,", "duplicate_in_file"),
]


@pytest.fixture
def touches_csv(tmp_path: Path) -> Path:
    path = tmp_path / "touches.csv"
    path.write_text(HEADER + "\n".join(GOOD + [b for b, _ in BAD]) + "\n", encoding="utf-8")
    return path


def test_import_quarantines_each_bad_row_with_its_reason(touches_csv: Path, runs_dir: Path) -> None:
    report = import_touches(touches_csv, runs_dir)
    assert report.rows_read == len(GOOD) + len(BAD)
    assert report.rows_used == len(GOOD)
    assert report.rows_read == report.rows_used + sum(report.quarantined.values())
    expected = {reason: 1 for _, reason in BAD}
    assert report.quarantined == expected
    # every reason code the rules know was exercised except already_imported (second import below)
    assert {r.reason for r in RULES} - set(expected) == {"already_imported"}

    folder = Path(report.folder)
    quarantine = pq.read_table(folder / "quarantine.parquet").to_pylist()
    by_row = {q["row_number"]: q["reason"] for q in quarantine}
    # data rows start at 1 after the header; bad rows follow the good ones
    assert by_row == {len(GOOD) + i + 1: reason for i, (_, reason) in enumerate(BAD)}
    assert next(q for q in quarantine if q["reason"] == "unknown_kind")["Type"] == "birthday_card"

    stored = load_touches(runs_dir)
    assert stored.num_rows == len(GOOD)
    rows = {r["customer_id"]: r for r in stored.to_pylist()}
    assert rows["C002"]["kind"] == "loyalty_offer" and rows["C002"]["channel"] == "email"
    assert str(rows["C002"]["sent_at"]) == "2024-12-01 10:30:00"
    assert str(rows["C002"]["converted_at"]) == "2024-12-05 00:00:00"
    assert rows["C087"]["kind"] == "win_back"
    assert str(rows["C133"]["sent_at"]) == "2024-12-03 00:00:00"  # US date format recognised
    assert rows["C001"]["responded_at"] is None

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == {"read": 15, "used": 4, "quarantined": expected}
    assert manifest["input"]["columns"]["sent_at"] == "Sent At"
    assert manifest["kinds"] == {"discount": 1, "loyalty_offer": 2, "win_back": 1}


def test_reimport_adds_nothing_and_says_why(touches_csv: Path, runs_dir: Path, cli) -> None:
    import_touches(touches_csv, runs_dir)
    before = import_folders(runs_dir)
    r = cli("touches", "import", touches_csv, "--runs-dir", runs_dir)
    assert r.code == 2
    assert r.err.count("\n") == 1
    assert "no usable touch rows, nothing imported" in r.err and "already_imported" in r.err
    assert import_folders(runs_dir) == before
    assert not [p for p in (runs_dir / "touches").iterdir() if p.name.startswith(".")]


def test_new_rows_next_to_known_ones_are_imported_and_known_ones_quarantined(tmp_path: Path, runs_dir: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text(HEADER + "\n".join(GOOD[:2]) + "\n")
    second = tmp_path / "b.csv"
    second.write_text(HEADER + "\n".join(GOOD) + "\n")
    import_touches(first, runs_dir)
    report = import_touches(second, runs_dir)
    assert (report.rows_used, report.quarantined) == (2, {"already_imported": 2})
    assert load_touches(runs_dir).num_rows == 4
    assert [m["rows"]["used"] for m in list_imports(runs_dir)] == [2, 2]


def test_error_mode_stops_at_the_first_bad_row_and_writes_nothing(touches_csv: Path, runs_dir: Path) -> None:
    with pytest.raises(InputError) as e:
        import_touches(touches_csv, runs_dir, bad_rows="error")
    assert "reason missing_customer_id, first at row 5" in str(e.value)
    assert import_folders(runs_dir) == []


def test_missing_column_lists_the_columns_and_the_mapping_option(tmp_path: Path, runs_dir: Path, cli) -> None:
    path = tmp_path / "t.csv"
    path.write_text("who,campaign,kind,channel,when\nC001,L,discount,email,2024-12-01\n")
    with pytest.raises(ColumnError) as e:
        import_touches(path, runs_dir)
    assert "no customer_id, sent_at column" in str(e.value)
    assert "columns found: who, campaign, kind, channel, when" in str(e.value)
    assert "map yours with columns customer_id=COLUMN" in str(e.value)  # Python names the parameter
    missing = cli("touches", "import", path, "--runs-dir", runs_dir)
    assert missing.code == 2 and "map yours with --map customer_id=COLUMN" in missing.err  # the CLI its flag
    r = cli(
        "touches", "import", path, "--runs-dir", runs_dir, "--map", "customer_id=who", "--map", "sent_at=when", "--json"
    )
    assert r.code == 0, r.err
    assert r.json()["rows"] == {"read": 1, "used": 1, "quarantined": {}}
    bad = cli("touches", "import", path, "--runs-dir", runs_dir, "--map", "customer_id")
    assert bad.code == 2 and "FIELD=COLUMN" in bad.err


def test_extra_kind_is_accepted_when_declared(tmp_path: Path, runs_dir: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "C005,BDAY,Birthday Card,email,2024-12-01,,\n")
    with pytest.raises(InputError, match="unknown_kind"):
        import_touches(path, runs_dir)
    report = import_touches(path, runs_dir, extra_kinds=["birthday-card"])
    assert report.kinds == {"birthday_card": 1}


def test_simulated_touches_import_from_parquet_and_list(tmp_path: Path, runs_dir: Path, cli) -> None:
    from rfmseg import simulate as sim

    s = sim.simulate(sim.SimConfig(customers=200, weeks=4, seed=3))
    table = simulate_touches(s.truth, s.config.start, seed=3)
    assert table.num_rows > 0
    again = simulate_touches(s.truth, s.config.start, seed=3)
    assert again.equals(table)  # seeded
    path = tmp_path / "touches.parquet"
    pq.write_table(table, path)
    r = cli("touches", "import", path, "--runs-dir", runs_dir, "--json")
    assert r.code == 0, r.err
    got = r.json()
    assert got["rows"]["read"] == got["rows"]["used"] == table.num_rows
    counts = duckdb.sql(f"SELECT kind, count(*) FROM read_parquet('{path}') GROUP BY kind ORDER BY kind").fetchall()
    assert got["kinds"] == dict(counts)

    listing = cli("touches", "list", "--runs-dir", runs_dir, "--json").json()
    assert [m["import_id"] for m in listing["imports"]] == [got["import_id"]]
    cid = table.column("customer_id")[0].as_py()
    mine = cli("touches", "list", "--runs-dir", runs_dir, "--customer", cid, "--json").json()
    expected = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}') WHERE customer_id = '{cid}'").fetchall()[0][0]
    assert len(mine["touches"]) == expected
    human = cli("touches", "list", "--runs-dir", runs_dir)
    assert human.code == 0 and got["import_id"][:12] in human.out


def test_csv_written_by_arrow_round_trips(tmp_path: Path, runs_dir: Path) -> None:
    table = pa.table(
        {
            "customer_id": ["C1", "C2"],
            "campaign": ["X", "X"],
            "kind": ["discount", "discount"],
            "channel": ["email", "email"],
            "sent_at": pa.array([1_700_000_000_000_000, 1_700_000_000_000_000], pa.timestamp("us")),
            "responded_at": pa.array([None, 1_700_100_000_000_000], pa.timestamp("us")),
        }
    )
    path = tmp_path / "t.csv"
    pacsv.write_csv(table, path)
    report = import_touches(path, runs_dir)
    assert report.rows_used == 2
    stored = load_touches(runs_dir)
    assert stored.column("responded_at").null_count == 1
    assert stored.column("converted_at").null_count == 2


# ------------------------------------------------------------------------------------------------ column names
DOCS = Path(__file__).resolve().parents[1] / "docs" / "agents.md"
ROW = {
    "customer_id": "C001",
    "campaign": "WB-1",
    "kind": "win_back",
    "channel": "sms",
    "sent_at": "2024-11-20 18:00:00",
    "responded_at": "2024-11-21",
    "converted_at": "2024-11-23",
}


def docs_alias_table() -> dict[str, tuple[str, ...]]:
    """The table of column names in docs/agents.md, as written there."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("| field | column names recognised, first match wins |")
    table: dict[str, tuple[str, ...]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        field, names = (cell.strip() for cell in line.strip("|").split("|"))
        table[field.strip("`")] = tuple(re.findall(r"`([^`]+)`", names))
    return table


def test_the_docs_list_the_column_names_the_import_recognises() -> None:
    assert docs_alias_table() == ALIASES


@pytest.mark.parametrize(
    ("field", "alias"), [(f, a) for f, names in ALIASES.items() for a in names], ids=lambda x: str(x)
)
def test_every_column_name_of_the_table_is_recognised(field: str, alias: str, tmp_path: Path, runs_dir: Path) -> None:
    header = {f: (alias.upper() if f == field else f) for f in ROW}  # upper case: names compare without case
    path = tmp_path / "touches.csv"
    path.write_text(",".join(header.values()) + "\n" + ",".join(ROW.values()) + "\n", encoding="utf-8")
    report = import_touches(path, runs_dir)
    assert report.rows_used == 1, report.quarantined
    manifest = json.loads((Path(report.folder) / "manifest.json").read_text())
    assert manifest["input"]["columns"] == header
    stored = load_touches(runs_dir).to_pylist()[0]
    assert stored["customer_id"] == "C001" and stored["kind"] == "win_back"
    assert str(stored["sent_at"]) == "2024-11-20 18:00:00" and str(stored["converted_at"]) == "2024-11-23 00:00:00"


def test_the_column_names_the_docs_give_as_examples_import_without_a_map(tmp_path: Path, runs_dir: Path, cli) -> None:
    """'Common column names are recognised (`Customer`, `Type`, `Sent At`, `SendDate`, …)': each of them,
    spelled as the docs spell it, in a file imported with no --map."""
    line = next(x for x in DOCS.read_text(encoding="utf-8").splitlines() if x.startswith("Common column names"))
    examples = re.findall(r"`([^`]+)`", line.split(";")[0])
    assert {"Customer", "Type", "Sent At", "SendDate"} <= set(examples)
    for i, example in enumerate(examples):
        field = next(f for f, names in ALIASES.items() if schema.normalise(example) in names)
        header = {f: (example if f == field else f) for f in ROW}
        path = tmp_path / f"touches-{i}.csv"
        path.write_text(",".join(header.values()) + "\n" + ",".join(ROW.values()) + "\n", encoding="utf-8")
        r = cli("touches", "import", path, "--runs-dir", tmp_path / f"runs-{i}", "--json")
        assert r.code == 0, (example, r.err)
        assert r.json()["rows"] == {"read": 1, "used": 1, "quarantined": {}}


def test_simulate_writes_touches_the_import_reads_whole(tmp_path: Path, runs_dir: Path, cli) -> None:
    out = tmp_path / "sim"
    r = cli("simulate", out, "--weeks", "4", "--customers", "200", "--seed", "3", "--no-snapshots", "--json")
    assert r.code == 0, r.err
    info = r.json()
    path = out / "touches.csv"
    assert info["touches"]["path"] == str(path)
    table = pacsv.read_csv(path)
    assert table.num_rows == info["touches"]["rows"] > 0
    # nothing happens after the simulation's last day: no contact, no response, no conversion
    last = duckdb.sql(
        f"SELECT max(greatest(sent_at, coalesce(responded_at, sent_at), coalesce(converted_at, sent_at))) "
        f"FROM read_csv('{path}')"
    ).fetchall()[0]
    assert last is not None and last[0].date() <= date(2024, 2, 4)  # 4 weeks from 2024-01-07
    assert duckdb.sql(
        f"SELECT count(*) FROM read_csv('{path}') WHERE converted_at IS NOT NULL AND responded_at IS NULL"
    ).fetchall() == [(0,)]
    imported = cli("touches", "import", path, "--runs-dir", runs_dir, "--json")
    assert imported.code == 0, imported.err
    got = imported.json()
    assert got["rows"]["read"] == got["rows"]["used"] == table.num_rows and not got["rows"]["quarantined"]


def test_simulated_touches_up_to_the_end_are_those_of_a_longer_simulation(tmp_path: Path) -> None:
    from rfmseg import simulate as sim

    s = sim.simulate(sim.SimConfig(customers=200, weeks=4, seed=3))
    short = simulate_touches(s.truth, s.config.start, seed=3, end=date(2024, 1, 21))
    whole = simulate_touches(s.truth, s.config.start, seed=3)
    assert 0 < short.num_rows < whole.num_rows
    sent = set(zip(short.column("customer_id").to_pylist(), short.column("campaign").to_pylist(), strict=True))
    assert sent <= set(zip(whole.column("customer_id").to_pylist(), whole.column("campaign").to_pylist(), strict=True))


def test_simulate_no_touches_writes_none(tmp_path: Path, cli) -> None:
    r = cli("simulate", tmp_path / "sim", "--weeks", "1", "--customers", "50", "--no-snapshots", "--no-touches")
    assert r.code == 0, r.err
    assert not (tmp_path / "sim" / "touches.csv").exists() and "Campaign touches" not in r.out
