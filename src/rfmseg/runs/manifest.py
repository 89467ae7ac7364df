"""The ``manifest.json`` of a run: what was read, how, and by which package versions.

One builder for every kind of run (run, refresh, retrain), so the files keep one layout: the keys a reader
looks for first (id, kind, model version) on top, then the input, the as-of date, the row counts, the
parameters, whatever the kind adds, and the package versions last. Also the data fingerprint
(:func:`rfm_sha256`) and the model's provenance (:func:`provenance`), which name the same data.
"""

from __future__ import annotations

import hashlib
import platform
from datetime import date, datetime
from importlib import metadata
from typing import Any, cast

import pyarrow as pa

from rfmseg.runs.artifacts import Manifest, Provenance


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
) -> Manifest:
    """The manifest of run ``run_id``, read from ``prepared`` (a :class:`rfmseg.io.intake.Intake`) into ``rfm``.

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
    return cast(Manifest, manifest)


class Digest:
    """A write-only file that feeds what is written to it into a SHA-256."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


HASH_BATCH = 1 << 20
"""rows per record batch of the fingerprint's stream (a table up to this size is one batch)"""


def rfm_sha256(rfm: pa.Table) -> str:
    """A fingerprint of an RFM table's content (ids and values, in its order): same data, same hash.

    The SHA-256 of the table's Arrow IPC stream in record batches of :data:`HASH_BATCH` rows (however
    the table happens to be chunked), hashed as it is written: memory for one batch, not a copy of the table."""
    wanted = ("customer_id", "recency_days", "frequency", "monetary", "first_order_date")
    table = rfm.select([c for c in wanted if c in rfm.column_names])
    digest = Digest()
    with pa.ipc.new_stream(pa.PythonFile(digest, mode="w"), table.schema) as writer:
        for start in range(0, max(table.num_rows, 1), HASH_BATCH):  # an empty table is one empty batch
            writer.write_table(table.slice(start, HASH_BATCH).combine_chunks())
    return digest.hash.hexdigest()


def provenance(
    run_id: str,
    created: datetime,
    as_of: date | None,
    input_sha256: str | None,
    rfm: pa.Table,
    data_sha256: str | None = None,
) -> Provenance:
    """What model.json records about how it was trained (the model version is the id of the training run)."""
    return {
        "model_version": run_id,
        "trained_by_run": run_id,
        "created": created.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "input_sha256": input_sha256,
        "data_sha256": data_sha256 or rfm_sha256(rfm),
        "n_customers": rfm.num_rows,
        "versions": package_versions(),
    }
