"""What an engine does for a job: read and judge the input into an RFM table, fit a model, write the
quarantined rows, publish the labels, and (Spark) write the customer tables to a Hadoop path.

The job code (:mod:`rfmseg.jobs`) calls these methods and never asks which engine it has; the model's
names, the scoring, the profile and the run folder come from the same code for every engine.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from rfmseg.features import FeatureSet
    from rfmseg.io import Policy
    from rfmseg.io.intake import Intake
    from rfmseg.model import SegmentModel
    from rfmseg.model.segment_model import Assignment
    from rfmseg.presets import Preset
    from rfmseg.timing import Percent, Timer


class Engine(Protocol):
    quarantine_alongside: bool
    """whether :meth:`write_quarantine` may run on a thread of its own once the data is loaded, while the model
    is fitted and the profile made: nothing else uses what it reads with until the run is written"""

    def describe(self) -> str | dict[str, Any]:
        """What the manifest records as the run's ``engine``."""
        ...

    def check_publish(self, writes_folder: bool) -> None:
        """Refuse, before any work, to publish a run that writes no run folder if this engine cannot."""
        ...

    def load_rfm(
        self,
        source: Any,
        columns: dict[str, str] | None,
        as_of: str | date | None,
        policy: Policy,
        timer: Timer,
        preset: Preset | None,
        feature_set: FeatureSet | None,
    ) -> Intake:
        """Read and judge ``source`` and compute its RFM table (one row per customer, on this machine; the
        result's ``rfm``), with the facts of the reading (mapping, as-of date, row counts by reason)."""
        ...

    def fit(self, model: SegmentModel, x: np.ndarray) -> Assignment:
        """Fit ``model`` on the RFM matrix ``x`` and return the customers' assignment to its clusters."""
        ...

    def write_quarantine(self, prepared: Intake, path: Path) -> None:
        """Every quarantined row of ``prepared``, with its reason and original values, to a Parquet file."""
        ...

    def write_output(self, run_id: str, model: SegmentModel, timer: Timer) -> dict[str, str] | None:
        """The customer tables written where the engine was told to (None: nowhere), timed as ``output``."""
        ...

    def publish(
        self, url: str, run_id: str, as_of: date, model_version: str, model: SegmentModel, assignments: pa.Table
    ) -> dict[str, Any]:
        """Publish the run just computed to the profile store at ``url``; the publish report."""
        ...

    def discard_output(self) -> None:
        """Remove what :meth:`write_output` wrote, after a failed run (best effort)."""
        ...

    def track_progress(self) -> Percent:
        """Start measuring how far each query is, and how to read it (:class:`rfmseg.timing.ProgressSource`)."""
        ...

    def close(self) -> None: ...


def publish_table(url: str, table: pa.Table, run_id: str, as_of: date, model_version: str) -> dict[str, Any]:
    """One-shot publish of ``table`` from this process; the report as a dict, with the store's URL."""
    from rfmseg.stores import open_store  # the store drivers load only when publishing

    with open_store(url) as s:
        return {**asdict(s.publish(table, run_id, as_of, model_version)), "store": s.url_display}
