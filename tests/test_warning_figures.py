"""The Online Retail figures of docs/production.md ("How good the warnings are") come back from the data: the
weekly replay of ``scripts/warning_precision.py`` up to its first week checked gives the published rows."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "warning_precision.json"


@pytest.mark.slow
def test_first_week_of_the_online_retail_replay_is_reproduced(online_retail: Path, tmp_path: Path) -> None:
    script = load_script("warning_precision")
    published = json.loads(RESULTS.read_text(encoding="utf-8"))["online_retail"]
    first = date(2011, 5, 1)  # the 8th week after the run of 2011-03-06: the first the rhythm can be read on
    got = script.retail(online_retail, tmp_path / "runs", end=first)
    assert got["rows"], "no warning flagged anybody on the first week"
    assert got["rows"] == [r for r in published["rows"] if r["as_of"] == first.isoformat()]
    assert got["ceiling"] == []  # one week: nothing to train the ceiling's classifier on apart from it
    # the pooled ratios are the weeks' counts summed
    for p in script._pooled(published["rows"]):
        rows = [r for r in published["rows"] if (r["warning"], r["segment"]) == (p["warning"], p["segment"])]
        assert p["flagged"] == sum(r["flagged"] for r in rows)
        rf = sum(r["bought_flagged"] for r in rows) / p["flagged"]
        ru = sum(r["bought_unflagged"] for r in rows) / p["unflagged"]
        assert p["ratio"] == round(rf / ru, 2)
