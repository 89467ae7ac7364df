"""The ``manifest.json`` of a run: what was read, how, and by which package versions.

One builder for every kind of run (run, refresh, retrain), so the files keep one layout: the keys a reader
looks for first (id, kind, model version) on top, then the input, the as-of date, the row counts, the
parameters, whatever the kind adds, and the package versions last.
"""

from __future__ import annotations

import platform
from datetime import datetime
from importlib import metadata
from typing import Any

import pyarrow as pa


def package_versions() -> dict[str, str]:
    """Python's version and those of the packages a run's results depend on."""
    out = {"python": platform.python_version()}
    for name in ("rfmseg", "duckdb", "pyarrow", "numpy", "scikit-learn", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "unknown"
    return out


def input_record(prepared: Any, label: str | None = None) -> dict[str, Any]:
    """The ``input`` entry: the source's label (or ``label``), checksum, format, kind and column map."""
    return {
        "path": label or prepared.source.label,
        "sha256": prepared.source.sha256,
        "format": prepared.source.format,
        "kind": prepared.kind,
        "columns": prepared.mapping,
    }


def run_manifest(
    *,
    run_id: str,
    kind: str,
    model_version: str,
    started: datetime,
    prepared: Any,
    rfm: pa.Table,
    data_sha256: str,
    params: dict[str, Any],
    input_label: str | None = None,
    idempotency_key: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest of run ``run_id``, read from ``prepared`` (a :class:`rfmseg.io.Prepared`) into ``rfm``.

    Keys in this order: run_id, kind, model_version, idempotency_key (when given), data_sha256, created,
    input, as_of, rows, customers, params, the ``extra`` keys as given (warnings, model, engine, ...),
    versions."""
    manifest: dict[str, Any] = {"run_id": run_id, "kind": kind, "model_version": model_version}
    if idempotency_key is not None:
        manifest["idempotency_key"] = idempotency_key
    manifest.update(
        data_sha256=data_sha256,
        created=started.isoformat(),
        input=input_record(prepared, input_label),
        as_of=prepared.as_of.isoformat() if prepared.as_of else None,
        rows=prepared.rows_summary(),
        customers=rfm.num_rows,
        params=params,
    )
    manifest.update(extra)
    manifest["versions"] = package_versions()
    return manifest
