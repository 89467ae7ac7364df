"""notebooks/customer-segmentation.ipynb: built by scripts/build_notebook.py, and executed top to bottom with
nbclient (the venv's python3 kernel) to check its outputs hold the study's figures and the Online Retail run."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import rfmseg
from repo_scripts import load_script
from rfmseg.datasets import study

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "customer-segmentation.ipynb"

# the study's published figures (issue 2): what the notebook must show
STUDY = {
    "Champions": (30, "15%", "$218,300", "45%"),
    "Loyal Buyers": (50, "25%", "$94,900", "20%"),
    "At-Risk": (40, "20%", "$154,600", "32%"),
    "Occasional": (80, "40%", "$17,550", "4%"),
}


def test_committed_notebook_is_what_the_script_builds() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = load_script("build_notebook").build()
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")  # committed without outputs


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory, online_retail: Path) -> nbformat.NotebookNode:
    """The notebook run top to bottom; its first cell finds the data set cache ``online_retail`` has filled."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",  # the venv's kernel spec; jupyter_client starts it with this interpreter
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_notebook_runs_and_shows_the_study(executed: nbformat.NotebookNode, online_retail: Path) -> None:
    text = _text(executed)
    assert f"rfmseg {rfmseg.__version__} | Online Retail: {online_retail}\n" in text  # the cache's file
    for name, (customers, share, revenue, share_rev) in STUDY.items():
        assert f"{name}: {customers} customers ({share}), revenue {revenue} ({share_rev})" in text, name
    assert "Total: 200 customers, revenue $485,350" in text
    assert "mean 9 days, 32 orders, $7,277" in text  # Champions' means
    assert "3.7× the $129 of Loyal Buyers" in text and "At-Risk have the highest average order value, $471" in text
    assert "recency 3-200 days" in text and "monetary $150-$8,500" in text
    assert "Recommended K = 4" in text
    assert re.search(r"1\. Champions: Early access", text) and re.search(r"2\. At-Risk: Win-back", text)
    # the same run outside the notebook says the same
    result = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None)
    for i in result.summary["insights"]:
        assert i["text"] in text


@pytest.mark.slow
def test_notebook_runs_online_retail(executed: nbformat.NotebookNode) -> None:
    text = _text(executed)
    m = re.search(r"rows read ([\d,]+) = used ([\d,]+) \+ quarantined ([\d,]+)", text)
    assert m, text[-3000:]
    read, used, quarantined = (int(g.replace(",", "")) for g in m.groups())
    assert read == 541_909 and read == used + quarantined  # the data set's README row count
    assert "missing_customer_id" in text and "duplicate_line" in text
    assert "transform rank" in text
    table = next(
        out.data["text/plain"]
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.output_type == "execute_result" and "squashed spend" in out.data.get("text/plain", "")
    )
    assert all(kind in table for kind in ("minmax", "log-minmax", "rank"))


@pytest.mark.slow
def test_plots_are_inline(executed: nbformat.NotebookNode) -> None:
    images = [
        out
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("display_data", "execute_result") and "image/png" in out.get("data", {})
    ]
    assert len(images) >= 6
    assert not [out for cell in executed.cells for out in cell.get("outputs", []) if out.output_type == "error"]
