"""The HTML report of a run: the explorer's content in one self-contained file.

    rfmseg report RUN -o report.html

Every run also gets ``report.html`` in its folder, written by the pipeline before the run is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from rfmseg.features import Units
from rfmseg.report.data import (
    CHOOSE_K_FILE,
    WARNINGS_LIMIT,
    build_view,
    earlier_runs,
    embedded_warnings,
    model_run_id,
    pending_k_choice,
    pending_meta,
    save_k_choice,
    view_for_run,
    warnings_left_out,
)
from rfmseg.report.html import check_output, inline_assets, render_html, shared_plotly, write_html
from rfmseg.runs import DEFAULT_RUNS_DIR, get_run

REPORT_FILE = "report.html"

__all__ = [
    "REPORT_FILE",
    "build_view",
    "inline_assets",
    "render_html",
    "report_html",
    "view_for_run",
    "write_report",
    "write_run_report",
]


def report_html(run_id: str = "latest", runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    """The report page of a stored run (id, unique prefix or 'latest')."""
    run = get_run(run_id, Path(runs_dir))
    return render_html(view_for_run(run, Path(runs_dir), searchable=True))


def write_report(run_id: str, output: Path, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """Write the report of a stored run to ``output``; returns the path written. A K choice computed for it
    is kept in the run folder once the report is written (an output that cannot be written leaves nothing)."""
    output = check_output(Path(output))
    run = get_run(run_id, Path(runs_dir))
    view = view_for_run(run, Path(runs_dir), searchable=True, save_k_choice=False)
    path = write_html(output, render_html(view))
    save_k_choice(run, Path(runs_dir), view.get("choose_k"))
    return path


def write_run_report(
    folder: Path,
    runs_dir: Path | None,
    summary: Mapping[str, Any],
    manifest: Mapping[str, Any],
    assignments: pa.Table,
    assignments_written: Callable[[], object] | None = None,
) -> None:
    """Write ``report.html`` into a run folder that is being written (the pipeline's temporary folder, before
    the run is committed), from the tables the pipeline holds.

    The K choice is not computed here (:func:`~rfmseg.report.data.pending_k_choice`: the panel says how to get
    it); a refresh shows the one its model's run has in ``choose_k.json``, when it has been computed.

    The early warnings are read from the folder's assignments.parquet against the registry's earlier runs:
    ``assignments_written`` waits until that file is written (the pipeline writes it on another thread). A run
    of more than :data:`~rfmseg.report.data.WARNINGS_LIMIT` customers leaves them out (the panel says where
    to see them)."""
    folder = Path(folder)
    params = manifest.get("params") or {}
    run_id = str(summary.get("run_id"))
    ks = _model_k_choice(runs_dir, manifest)
    if ks is None:
        ks = pending_k_choice(run_id, params.get("k"))
    else:
        (folder / CHOOSE_K_FILE).write_text(json.dumps(ks, indent=1) + "\n", encoding="utf-8")
    warnings = None
    if runs_dir is not None and assignments.num_rows > WARNINGS_LIMIT:  # too slow to gather with every run
        entity = Units.from_dict(summary.get("units")).entity
        warnings = warnings_left_out(run_id, assignments.num_rows, entity, WARNINGS_LIMIT)
    elif runs_dir is not None:
        if assignments_written is not None:
            assignments_written()
        warnings = embedded_warnings(Path(runs_dir), pending_meta(folder, summary, manifest))
    view = build_view(
        summary,
        manifest,
        assignments,
        k_choice_result=ks,
        earlier=earlier_runs(Path(runs_dir) if runs_dir else None, run_id, manifest),
        searchable=True,
        warnings=warnings,
        finite=False,  # only written by orjson below (NaN as null): the same text without the round trip
    )
    plotly = shared_plotly(Path(runs_dir)) if runs_dir is not None else None  # inline without a registry
    (folder / REPORT_FILE).write_text(render_html(view, plotly), encoding="utf-8")


def _model_k_choice(runs_dir: Path | None, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """A refresh scores with a model fitted earlier and chooses no K: show the K choice of the run that
    trained the model (its choose_k.json) instead of recomputing it every day."""
    source = model_run_id(manifest, runs_dir)
    if source is None or runs_dir is None:
        return None
    path = Path(runs_dir) / source / CHOOSE_K_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
