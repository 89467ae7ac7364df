"""The run registry: every run is a folder ``<runs_dir>/<run_id>/`` written atomically.

Files: manifest.json, model.json, rfm.parquet, assignments.parquet, summary.json, quarantine.parquet,
report.html (and choose_k.json, the K choice the report shows).
A run is written under a hidden temporary name and renamed into place when complete, so a reader never
sees half a run and a failed run leaves nothing behind: not its temporary folder, nor the runs folder when
the run created it. The temporary folder of a run that was killed (``.tmp-<run_id>``, older than
:data:`TMP_GRACE_SECONDS`) is removed when the next run starts; no listing shows one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from rfmseg.errors import ModelFormatError, NotFoundError, ParameterError, RunFileError, one_line, os_failure
from rfmseg.model import SegmentModel
from rfmseg.runs.artifacts import Manifest, ModelFile, Summary

DEFAULT_RUNS_DIR = Path("rfmseg-runs")
TMP_PREFIX = ".tmp-"
TMP_GRACE_SECONDS = 6 * 3600
"""a temporary run folder untouched for this long belongs to a run that was killed (a run writes its files
within minutes of creating it, and the longest runs take minutes): the next run removes it"""
FILES = (
    "manifest.json",
    "model.json",
    "rfm.parquet",
    "assignments.parquet",
    "summary.json",
    "quarantine.parquet",
    "report.html",
)


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-mmmxxx``: creation time to the millisecond, then 3 random hex digits, so ids sort by
    creation time (:func:`list_runs` and :func:`latest_model_run` rely on it) even for runs written within the
    same second."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}{uuid.uuid4().hex[:3]}"


@dataclass(frozen=True)
class Run:
    run_id: str
    path: Path

    def read_json(self, name: str) -> dict[str, Any]:
        """The JSON file ``name`` of the run; one that is not JSON any more (damaged, cut short) is a
        :class:`~rfmseg.errors.RunFileError` naming it and the fix."""
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise run_file_error(self.path / name, "is not valid JSON (damaged or cut short)") from None

    @property
    def manifest(self) -> Manifest:
        return cast(Manifest, self.read_json("manifest.json"))

    @property
    def summary(self) -> Summary:
        return cast(Summary, self.read_json("summary.json"))

    @property
    def model(self) -> ModelFile:
        return cast(ModelFile, self.read_json("model.json"))

    def table(self, name: str) -> pa.Table:
        return pq.read_table(self.path / f"{name}.parquet")


def run_file_error(path: Path, reason: str) -> RunFileError:
    """The one line for the file ``path`` of a run folder that cannot be read (``reason``: what is wrong with
    it), with the fix: restore it, or remove the run folder and run the job that wrote it again (named from
    the manifest when it can be read)."""
    folder = path.parent
    job = ""
    with contextlib.suppress(Exception):  # the manifest says which job wrote the run, when it can be read
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        kind = str(manifest.get("kind") or "run")
        as_of = manifest.get("as_of")
        job = f" (`rfmseg {kind}`{f' as of {as_of}' if as_of else ''})"
    return RunFileError(
        one_line(
            f"run {folder.name}'s {path.name} {reason}; restore it from a backup, or remove the run folder "
            f"{folder} and run the job that wrote it again{job}"
        )
    )


ASSETS_DIR = ".assets"
"""the folder of a run registry holding what its runs' reports share (plotly.js); the run listing skips it"""


class RunWriter:
    """Collects a run's files in a temporary folder; ``commit`` renames it into place."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.runs_dir = Path(runs_dir)
        self.run_id = run_id
        self.created = _first_missing(self.runs_dir)
        """the outermost folder this writer creates (None: the runs folder existed), removed by :meth:`abort`"""
        try:
            if self.runs_dir.exists() and not self.runs_dir.is_dir():
                raise ParameterError(
                    f"runs folder {self.runs_dir}: is a file, not a folder; give a folder with {{runs_dir}}",
                    param="runs_dir",
                )
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self.tmp = self.runs_dir / f"{TMP_PREFIX}{run_id}"
            self.tmp.mkdir()
        except OSError as exc:
            self._remove_created()
            raise os_failure(exc, f"cannot write runs in {self.runs_dir}", "runs_dir") from None
        remove_stale_tmp(self.runs_dir)

    def json(self, name: str, data: Summary | Manifest | ModelFile | Any) -> None:
        (self.tmp / name).write_text(json.dumps(data, indent=1, default=_json_default) + "\n", encoding="utf-8")

    def parquet(self, name: str, table: pa.Table) -> None:
        pq.write_table(table, self.tmp / name, compression="zstd")

    def path(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> Run:
        final = self.runs_dir / self.run_id
        os.replace(self.tmp, final)
        return Run(self.run_id, final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._remove_created()

    def _remove_created(self) -> None:
        """The folders this writer created, if they are still empty (another run may have written since); the
        shared assets this run put there count as empty, as no run uses them."""
        if self.created is None:
            return
        assets = self.runs_dir / ASSETS_DIR
        if assets.is_dir() and not any(p for p in self.runs_dir.iterdir() if p != assets):
            shutil.rmtree(assets, ignore_errors=True)
        here = self.runs_dir
        while True:
            try:
                here.rmdir()
            except OSError:
                return
            if here == self.created:
                return
            here = here.parent


def _first_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist (None: ``path`` exists)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


def remove_stale_tmp(runs_dir: Path, grace: float = TMP_GRACE_SECONDS) -> list[str]:
    """Remove the temporary folders of killed runs (``.tmp-*`` not modified for ``grace`` seconds); their
    names. A run in progress keeps its folder fresh by writing to it."""
    removed: list[str] = []
    now = time.time()
    try:
        candidates = [p for p in runs_dir.iterdir() if p.name.startswith(TMP_PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for p in candidates:
        try:
            if now - p.stat().st_mtime > grace:
                shutil.rmtree(p)
                removed.append(p.name)
        except OSError:
            continue
    return removed


def _json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def list_runs(runs_dir: Path = DEFAULT_RUNS_DIR) -> list[Run]:
    """Complete runs, oldest first (run ids sort by creation time)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [
        Run(p.name, p)
        for p in sorted(runs_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").exists()
    ]


def run_day(as_of: date | None, created: datetime) -> date:
    """The day a run's labels are of: its as-of date, or the day it was created for a run of a ready RFM table
    (which has no as-of date)."""
    return as_of or created.date()


def timeline_key(as_of: date | None, created: datetime, run_id: str) -> tuple[date, datetime, str]:
    """Where a run stands in time, the one order of "current": by :func:`run_day`, then creation (of two
    runs of one day, the one written last, a retrain after the refresh it replaces). The last run in this
    order is the latest run (:func:`latest_run`), and the timeline of :mod:`rfmseg.runs.history` keeps the
    last run of each day in it."""
    return (run_day(as_of, created), created, run_id)


def _timeline_key(run: Run) -> tuple[date, datetime, str]:
    """:func:`timeline_key` of ``run`` from its manifest; one that cannot be read goes first (never latest)."""
    try:
        m = run.manifest
        created = datetime.fromisoformat(m["created"])
        day = m.get("as_of")
        as_of = date.fromisoformat(day) if day else None
    except (OSError, ValueError, KeyError, TypeError, RunFileError):
        return (date.min, datetime.min.replace(tzinfo=UTC), run.run_id)
    if created.tzinfo is None:  # every manifest says UTC; one without a zone compares as UTC
        created = created.replace(tzinfo=UTC)
    return timeline_key(as_of, created, run.run_id)


def latest_run(runs_dir: Path = DEFAULT_RUNS_DIR, kind: str | None = None) -> Run | None:
    """'latest': the run whose labels are current, the one with the latest as-of date (ties: created last),
    of ``kind`` when given; None if there is none. A refresh for an earlier day written after a later one (a
    backfill) is not the latest: the later day's labels stay current. Every command that reads "the current
    labels" (export, show, runs show/latest, the API's /segments and /runs/latest, watch, transitions) goes
    through it. The model a refresh scores with is another question: :func:`latest_model_run`."""
    runs = [r for r in list_runs(runs_dir) if kind is None or r.manifest.get("kind", "run") == kind]
    return max(runs, key=_timeline_key, default=None)


def get_run(run_id: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Run:
    """A run by id, by unique id prefix, or 'latest' (:func:`latest_run`)."""
    if run_id == "latest":
        latest = latest_run(runs_dir)
        if latest is None:
            raise NotFoundError(
                f"no runs in {runs_dir}; run `rfmseg run FILE` first (or pass {{runs_dir}})", param="runs_dir"
            )
        return latest
    runs = list_runs(runs_dir)
    exact = [r for r in runs if r.run_id == run_id]
    if exact:
        return exact[0]
    prefixed = [r for r in runs if r.run_id.startswith(run_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    known = ", ".join(r.run_id for r in runs[-5:]) or "none"
    what = "several runs start with" if prefixed else "no run"
    raise NotFoundError(f"{what} '{run_id}' in {runs_dir}; recent runs: {known} (see `rfmseg runs list`)")


def find_run(runs_dir: Path, key: str) -> Run | None:
    """The run written with idempotency key ``key`` (or, for a refresh, the retrain whose labels are the ones
    this refresh would write: same as-of, data, model and cold-start rule), if any."""
    for run in reversed(list_runs(runs_dir)):
        try:
            m = run.manifest
            if key in (m.get("idempotency_key"), m.get("scoring_key")):
                return run
        except (OSError, RunFileError):
            continue
    return None


def latest_model_run(runs_dir: Path) -> Run | None:
    """The most recent run that trained a model (kind run or retrain), None if there is none: "the latest
    trained model", the one a refresh scores with and ``--model latest`` means. It goes by creation, not by
    as-of date as :func:`latest_run` does: a model trained today is the newest model even when it was trained
    on an earlier day's data, which is a different question from which labels are current."""
    for run in reversed(list_runs(runs_dir)):
        if run.manifest.get("kind", "run") in ("run", "retrain"):
            return run
    return None


def run_info(run: Run) -> dict[str, Any]:
    """One line of `rfmseg runs list`: id, created, kind, as-of, K, customers, input, model version."""
    m = run.manifest
    params = m.get("params") or {}
    return {
        "run_id": run.run_id,
        "created": m.get("created"),
        "kind": m.get("kind", "run"),
        "as_of": m.get("as_of"),
        "k": params.get("k"),
        "customers": m.get("customers"),
        "input": (m.get("input") or {}).get("path"),
        "model_version": m.get("model_version") or run.run_id,
        "path": str(run.path),
    }


def runs_table(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[dict[str, Any]]:
    return [run_info(r) for r in list_runs(Path(runs_dir))]


def describe_run(run_id: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> dict[str, Any]:
    """Everything about one run: its registry line, manifest, summary and model (without the big arrays)."""
    run = get_run(run_id, Path(runs_dir))
    try:
        model = SegmentModel.load(run.path / "model.json")
        model_info: dict[str, Any] = {
            "k": model.k,
            "transform": model.transform,
            "names": model.names_,
            "centroids_raw": model.centroids_raw_.tolist(),
            "provenance": getattr(model, "provenance_", {}),
        }
    except ModelFormatError as exc:
        model_info = {"error": exc.message}
    return {
        **run_info(run),
        "files": sorted(p.name for p in run.path.iterdir()),
        "manifest": run.manifest,
        "summary": run.summary,
        "model": model_info,
    }
