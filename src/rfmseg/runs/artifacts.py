"""The three JSON files of a run folder, one schema each: ``summary.json`` (:class:`Summary`),
``manifest.json`` (:class:`Manifest`) and ``model.json`` (:class:`ModelFile`).

Written from what the writers put in them (:func:`rfmseg.jobs.run.segment`, the lifecycle jobs and
:meth:`rfmseg.model.SegmentModel.to_dict`); every reader (:class:`rfmseg.runs.Run`) returns these types.
Keys only some kinds of run write (a refresh's ``source_run``, a retrain's ``names``, the Spark engine's
``output``) are ``NotRequired``; folders written by earlier versions may lack more, which is why readers
use ``.get`` for anything not in every version.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Rows(TypedDict):
    """How many input rows were read, used and set aside (by reason)."""

    read: int
    used: int
    quarantined: dict[str, int]


class InputRecord(TypedDict):
    path: str | None
    sha256: str | None
    format: str | None
    kind: str
    columns: dict[str, str]


class ColdStartRecord(TypedDict):
    orders: int
    days: int
    segment: str
    customers: NotRequired[int]


class Summary(TypedDict):
    """``summary.json``: the segment table, insights and what the report shows."""

    run_id: str
    as_of: str | None
    k: int
    transform: str
    n_customers: int
    total_revenue: float
    currency: str
    segments: list[dict[str, Any]]
    insights: list[dict[str, Any]]
    units: dict[str, Any]
    pareto: dict[str, Any]
    preset: str | None
    rows: Rows
    warnings: list[str]
    net_nonpositive: NotRequired[dict[str, Any]]
    """kind 'run'"""
    notes: NotRequired[list[dict[str, Any]]]
    """kind 'run': advice about the input, each ``{"id", "text", "values"}`` (a known data set run without its
    preset: :meth:`rfmseg.presets.KnownLayout.note`)"""
    kind: NotRequired[str]
    """kinds 'refresh' and 'retrain' (a 'run' says it in its manifest only)"""
    model_version: NotRequired[str]
    cold_start: NotRequired[ColdStartRecord]
    names: NotRequired[dict[str, Any]]
    """kind 'retrain': the name carry-over report (:func:`rfmseg.model.naming.carry_names`)"""
    rhythm: NotRequired[dict[str, Any]]
    """the rhythm model's status and, when fitted, the mean, median and quartiles of p_alive, expected orders
    and expected value per segment (:func:`rfmseg.jobs.writer.rhythm_summary`)"""


class Manifest(TypedDict):
    """``manifest.json``: what was read, how, by which versions (:func:`rfmseg.runs.manifest.run_manifest`)."""

    run_id: str
    kind: str
    model_version: str
    idempotency_key: NotRequired[str]
    """kinds 'refresh' and 'retrain'"""
    data_sha256: str
    created: str
    input: InputRecord
    as_of: str | None
    rows: Rows
    customers: int
    params: dict[str, Any]
    warnings: NotRequired[list[str]]
    net_nonpositive: NotRequired[dict[str, Any]]
    model: NotRequired[dict[str, Any]]
    """inertia, n_iter (and the fit's description for kind 'run')"""
    engine: NotRequired[str | dict[str, Any]]
    output: NotRequired[dict[str, str]]
    """engine 'spark' with an output path"""
    source_run: NotRequired[str]
    """kind 'refresh': the run whose model scored it"""
    state: NotRequired[dict[str, Any]]
    """kind 'refresh' with ``--since-last``: the RFM state it wrote (:mod:`rfmseg.jobs.incremental`)"""
    previous_model: NotRequired[str | None]
    names: NotRequired[dict[str, Any]]
    scoring_key: NotRequired[str]
    """kind 'retrain': the idempotency key of a refresh that would write these very labels"""
    cold_start: NotRequired[ColdStartRecord]
    versions: dict[str, str]
    timings: dict[str, float]
    publish: NotRequired[dict[str, Any] | None]
    rhythm: NotRequired[dict[str, Any]]
    """the rhythm model: ``status`` fitted (model, fit), off or not_applicable (reason); rfmseg.jobs.rhythm"""


class Provenance(TypedDict, total=False):
    model_version: str
    trained_by_run: str
    created: str
    as_of: str | None
    input_sha256: str | None
    data_sha256: str
    n_customers: int
    versions: dict[str, str]
    previous_model: str | None


class ModelFile(TypedDict):
    """``model.json``: a fitted :class:`rfmseg.model.SegmentModel` (format version 1)."""

    format_version: int
    params: dict[str, Any]
    fit: dict[str, Any]
    transform: dict[str, Any]
    features: list[str]
    centroids_scaled: list[list[float]]
    centroids_raw: list[list[float]]
    names: list[str]
    reasons: list[str]
    levels: list[list[float]]
    inertia: float
    n_iter: int
    n_customers: int
    vocabulary: dict[str, Any]
    provenance: Provenance
