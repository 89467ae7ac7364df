"""A file with the columns of a public data set, run without the preset made for it, gets the preset suggested:
in the one line of the error that stops it, and as a note when it runs. Small generated files in the UCI Online
Retail layouts, so this runs anywhere."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import rfmseg
from rfmseg.errors import InputError
from rfmseg.presets import get_preset, known_layout
from rfmseg.presets.online_retail import LAYOUTS

RETAIL = LAYOUTS["UCI Online Retail"]
RETAIL_II = LAYOUTS["UCI Online Retail II"]
HINT = "these are the columns of the UCI Online Retail data set: run it with --preset online-retail"


def invoice_lines(path: Path, header: tuple[str, ...] = RETAIL, missing_customer: bool = True) -> Path:
    """12 customers, 2-5 invoices each over 2011, and (by default) one line without a customer id."""
    rows: list[list[object]] = []
    invoice = 536000
    for c in range(12):
        for i in range(2 + c % 4):
            invoice += 1
            rows.append(
                [invoice, "85123A", "WHITE HANGING HEART", 1 + c, f"2011-{1 + i + c % 6:02d}-{3 + c:02d} 10:00",
                 2.55 * (1 + c % 3), 17000 + c, "United Kingdom"]
            )  # fmt: skip
    if missing_customer:
        rows.append([invoice + 1, "22138", "BAKING SET", 3, "2011-06-01 09:00", 4.95, "", "France"])
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_the_error_that_stops_it_suggests_the_preset(cli, tmp_path: Path, runs_dir: Path) -> None:
    path = invoice_lines(tmp_path / "export.csv")
    r = cli("run", path, "--runs-dir", runs_dir)
    assert r.code == 2
    assert r.err.count("\n") == 1  # one line
    assert r.err.startswith(f"error: {path}: 1 row(s) with no customer id (reason missing_customer_id")
    assert r.err.rstrip().endswith(f"--bad-rows quarantine to set such rows aside; {HINT}")
    assert not runs_dir.exists()


def test_choose_k_suggests_it_too(cli, tmp_path: Path) -> None:
    r = cli("choose-k", invoice_lines(tmp_path / "export.csv"), "--no-stability")
    assert r.code == 2 and r.err.rstrip().endswith(HINT)


def test_a_run_without_the_preset_notes_it(cli, tmp_path: Path, runs_dir: Path) -> None:
    path = invoice_lines(tmp_path / "export.csv")
    r = cli("run", path, "--bad-rows", "quarantine", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    note = (
        "note: these are the columns of the UCI Online Retail data set; its preset, online-retail, reads them as "
        "invoice lines (returns netted out of spend, adjustments and duplicate lines set aside); "
        "run it with --preset online-retail"
    )
    assert note in r.out.splitlines()
    summary = cli("run", path, "--bad-rows", "quarantine", "--runs-dir", runs_dir, "--json").json()
    assert summary["notes"] == [  # type: ignore[index]
        {"id": "known_layout", "text": note[len("note: ") : note.index("; run it")], "values": {
            "dataset": "UCI Online Retail", "preset": "online-retail"}}
    ]  # fmt: skip


def test_with_the_preset_there_is_nothing_to_suggest(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", invoice_lines(tmp_path / "export.csv"), "--preset", "online-retail", "--runs-dir", runs_dir)
    assert r.code == 0, r.err
    assert "note:" not in r.out and "--preset online-retail" not in r.out + r.err


def test_online_retail_ii_is_recognised(cli, tmp_path: Path, runs_dir: Path) -> None:
    r = cli("run", invoice_lines(tmp_path / "ii.csv", RETAIL_II), "--runs-dir", runs_dir)
    assert r.code == 2 and r.err.rstrip().endswith(HINT.replace("Online Retail", "Online Retail II"))


def test_a_file_with_only_some_of_the_columns_gets_no_suggestion(cli, tmp_path: Path, runs_dir: Path) -> None:
    header = tuple("Product" if c == "StockCode" else c for c in RETAIL)
    r = cli("run", invoice_lines(tmp_path / "mine.csv", header), "--runs-dir", runs_dir)
    assert r.code == 2 and "missing_customer_id" in r.err and "--preset" not in r.err


def test_python_callers_read_the_parameter_name(tmp_path: Path) -> None:
    path = invoice_lines(tmp_path / "export.csv")
    with pytest.raises(InputError) as caught:
        rfmseg.segment(path, runs_dir=None)
    assert str(caught.value).endswith("data set: run it with preset online-retail")
    assert rfmseg.segment(path, bad_rows="quarantine", runs_dir=None).summary["notes"][0]["values"] == {
        "dataset": "UCI Online Retail",
        "preset": "online-retail",
    }


def test_a_preset_built_on_online_retail_is_not_told_to_use_it() -> None:
    from dataclasses import replace

    mine = replace(get_preset("online-retail"), name="my-shop")
    assert known_layout(RETAIL, mine) is None
    assert known_layout(RETAIL, get_preset("ecommerce")) is not None
    assert known_layout([c.lower() for c in RETAIL_II], None) is not None  # names compared without case
