"""Scoring customers with a fitted model: the nearest centroid, after the cold-start rule.

:func:`score` is the one place an assignments table is made, for every kind of run (run, refresh,
retrain) and for ``rfmseg assign``: the same columns (:data:`ASSIGNMENTS_SCHEMA`), in the same order.
A customer with fewer than ``orders`` orders, or whose first order is less than ``days`` days before the
as-of date, gets the cold-start segment with reason ``cold_start`` (:class:`ColdStart`); the rule
:data:`OFF` scores everyone by the nearest centroid (reason ``nearest_centroid``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.errors import ParameterError
from rfmseg.model.rhythm import COLUMNS as RHYTHM_COLUMNS
from rfmseg.model.segment_model import Assignment, SegmentModel

if TYPE_CHECKING:
    from rfmseg.presets import Preset

DEFAULT_COLD_SEGMENT = "Occasional"
REASON_MODEL = "nearest_centroid"
REASON_COLD = "cold_start"
REASON_HELD = "held"
"""kept in the previous run's segment, within the hysteresis band of its centroid (rfmseg.jobs.quiet)"""
REASON_DRIFT = "model_drift"
"""moved by a retrain although the previous model would have kept them: the model moved, not the customer"""
ASSIGNMENTS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("segment_reason", pa.string()),
        ("recency_days", pa.int64()),
        ("frequency", pa.int64()),
        ("monetary", pa.float64()),
        ("distance", pa.float64()),
        ("margin", pa.float64()),
        ("model_segment", pa.string()),
        ("cluster", pa.int32()),
        ("first_order_date", pa.date32()),
        *[(c, pa.float64()) for c in RHYTHM_COLUMNS],
    ]
)
"""every assignments.parquet, as :func:`score` makes it from an RFM of transactions (an RFM table read as
it is may hold other number types)"""
ASSIGNMENT_COLUMNS = tuple(ASSIGNMENTS_SCHEMA.names)
"""the columns of every assignments.parquet, in this order"""


def rfm_matrix(rfm: pa.Table) -> np.ndarray:
    """(n, 3) recency_days, frequency, monetary as floats, column-major: every later step (transform,
    K-Means passes, naming, profiles) reads it a column at a time."""
    x = np.empty((rfm.num_rows, 3), order="F")
    for j, c in enumerate(("recency_days", "frequency", "monetary")):
        start = 0
        for chunk in rfm.column(c).chunks:  # chunk by chunk: no concatenated copy of the column first
            x[start : start + len(chunk), j] = chunk.to_numpy(zero_copy_only=False)
            start += len(chunk)
    return x


@dataclass(frozen=True)
class ColdStart:
    """Customers with too little history to score: fewer than ``orders`` orders, or a first order less than
    ``days`` days before the as-of date. They get ``segment`` with reason ``cold_start``.
    ``orders=0, days=0`` switches the rule off. ``segment=None`` means the preset's cold-start segment
    (:attr:`rfmseg.presets.Preset.cold_start_segment`), else Occasional."""

    orders: int = 2
    days: int = 30
    segment: str | None = "Occasional"

    def __post_init__(self) -> None:
        if self.orders < 0:
            raise ParameterError(
                f"{{cold_start_orders}} {self.orders} should be >= 0 (0 switches the rule off)",
                param="cold_start_orders",
            )
        if self.days < 0:
            raise ParameterError(
                f"{{cold_start_days}} {self.days} should be >= 0 (0 switches the rule off)", param="cold_start_days"
            )
        if self.segment is not None and not self.segment.strip():
            raise ParameterError(
                "{cold_start_segment} is empty; give a segment name, e.g. Occasional", param="cold_start_segment"
            )

    @property
    def name(self) -> str:
        return self.segment or DEFAULT_COLD_SEGMENT

    def resolved(self, preset: Preset | None) -> ColdStart:
        """This rule with its segment settled (the preset's when none was given)."""
        if self.segment is not None:
            return self
        return replace(self, segment=preset.cold_start_segment if preset else DEFAULT_COLD_SEGMENT)

    def to_dict(self) -> dict[str, Any]:
        return {"orders": self.orders, "days": self.days, "segment": self.name}


OFF = ColdStart(orders=0, days=0)


def score(
    model: SegmentModel,
    rfm: pa.Table,
    as_of: date | None = None,
    cold_start: ColdStart = OFF,
    *,
    x: np.ndarray | None = None,
    assigned: Assignment | None = None,
) -> pa.Table:
    """Assign each row of an RFM table to a segment of ``model`` (no refit).

    Columns (:data:`ASSIGNMENT_COLUMNS`): customer_id, segment, segment_reason, recency_days, frequency,
    monetary, distance (to the centroid of the segment given; for a cold-start segment the model lacks, to
    the nearest centroid), margin (second-nearest minus nearest distance), model_segment (the nearest
    centroid's name), cluster (its index), first_order_date, and each customer's rhythm: p_alive,
    expected_orders_90d, expected_value_90d (:mod:`rfmseg.model.rhythm`; null unless the model has a rhythm
    model and the customer a dated order history).
    ``x`` is ``rfm_matrix(rfm)`` and ``assigned`` the model's assignment of it, when at hand (a fit's last
    pass computed it: the customers are not scored again).
    """
    x = rfm_matrix(rfm) if x is None else x
    cold = np.zeros(x.shape[0], dtype=bool)
    if cold_start.orders > 0:
        cold |= x[:, 1] < cold_start.orders
    first = rfm.column("first_order_date") if "first_order_date" in rfm.column_names else None
    if cold_start.days > 0 and as_of is not None and first is not None:
        tenure = pc.days_between(first, pa.scalar(as_of, pa.date32()))
        cold |= pc.fill_null(pc.less(tenure, cold_start.days), False).to_numpy(zero_copy_only=False)
    cold |= np.isnan(x[:, 0])  # no dated order at all (only returns): nothing to score
    # a cold customer's distance is to the cold-start segment, when the model has one of that name
    to = cold_start.name if cold.any() and cold_start.name in model.names_ else None
    predicted = model.predict(x, to=to) if assigned is None or to is not None else assigned
    labels = pa.array(np.asarray(predicted.labels).astype(np.int32, copy=False))
    model_segment = pc.take(pa.array(model.names_, pa.string()), labels)
    distance = np.asarray(predicted.distance, float)
    is_cold = pa.array(cold)
    segment = model_segment
    if cold.any():
        segment = pc.if_else(is_cold, pa.scalar(cold_start.name, pa.string()), model_segment)
        if predicted.distance_to is not None:
            distance = np.where(cold, predicted.distance_to, distance)
    return pa.table(
        {
            "customer_id": rfm.column("customer_id"),
            "segment": segment,
            "segment_reason": pc.if_else(is_cold, REASON_COLD, REASON_MODEL),
            "recency_days": rfm.column("recency_days"),
            "frequency": rfm.column("frequency"),
            "monetary": rfm.column("monetary"),
            "distance": pa.array(distance),
            "margin": pa.array(np.asarray(predicted.margin, float)),
            "model_segment": model_segment,
            "cluster": labels,
            "first_order_date": first if first is not None else pa.nulls(rfm.num_rows, pa.date32()),
            **rhythm_columns(model, rfm, as_of),
        }
    )


def rhythm_columns(model: SegmentModel, rfm: pa.Table, as_of: date | None) -> dict[str, pa.Array]:
    """p_alive, expected_orders_90d and expected_value_90d of each customer by the model's rhythm model
    (closed forms, no library), all null when it has none."""
    if model.rhythm_ is None or as_of is None:
        none = pa.nulls(rfm.num_rows, pa.float64())  # one array for the three columns (arrays are immutable)
        return dict.fromkeys(RHYTHM_COLUMNS, none)
    return model.rhythm_.score(rfm, as_of)


def cold_warnings(model: SegmentModel, cold_start: ColdStart, entity: str) -> list[str]:
    """The warning of a cold-start rule whose segment is not one of the model's."""
    if cold_start.orders == 0 and cold_start.days == 0:
        return []
    if cold_start.name in model.names_:
        return []
    return [
        f"the cold-start segment '{cold_start.name}' is not one of this model's segments "
        f"({', '.join(model.names_)}); {entity} with a thin history get it anyway "
        "(choose one of the model's segments as the cold-start segment to change that)"
    ]
