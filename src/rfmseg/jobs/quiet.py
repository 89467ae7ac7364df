"""Quiet retrains: a customer whose own R, F and M did not move keeps their label across a model change.

**Hysteresis on the margin, in a refresh.** Wherever the production loop scores with a model it did not just
fit (``refresh``), a customer scored by the model (not cold start) who placed no order since the previous run
(same frequency and monetary: only the calendar moved them) and whose label in the previous run of the
timeline is ``P`` — a segment of the model — and whose nearest centroid is another one keeps ``P`` while their
distance to ``P``'s centroid is within the band of their distance to the nearest: ``segment = P``,
``segment_reason = held``; ``model_segment`` still names the nearest centroid. They move when their own
values carry them past the band. A customer who ordered is placed by the model: their values moved.

The band between segments P and N is ``max(hold, shift[P] + shift[N])``: ``hold`` (scaled units, default
:data:`DEFAULT_HOLD`) for the borderline, and how far the two centroids moved at the model's retrain (in the
retrain's manifest; every refresh with that model reads them). A customer at the previous model's boundary of
P whose own values did not move is within that band of P under the new one (triangle inequality), so the
model moving does not move them: their values have to.

**In a retrain, the band is around the reference label.** The *reference* is the label the previous model
gives today's data with the same band: what a refresh of the same day publishes. A retrain keeps each customer
scored by the model in their reference segment R when the new model's nearest centroid is within the band of
R's (``max(hold, shift[R] + shift[N])``, the new model's shifts), whether or not they ordered: a behavioural
move since the previous run, if any, is in R already (the previous model placed today's values), so what the
retrain alone would change within the band is the model's, not the customer's. Why: a retrain refits the
centroids on today's customers and the boundaries move with them (on the simulator by 0.01-0.12 scaled units
in four weeks). With the band only on customers without a new order, a retrain relabelled 2.7-5.0 % of the
customers at the first retrain (week 4): customers who ordered that week (returning Occasional buyers, steady
Occasional buyers' second or third order, new customers leaving cold start) whom the week-0 model still called
Occasional and the refit Loyal Buyers. The week-0 model is the outlier: the simulator's base starts with no
Occasional order in the last 45 days and no new customers, so the first model splits Loyal from Occasional on
frequency; by week 4 recent low-frequency buyers exist and the refit's Loyal cluster takes them in (its mean
frequency from 14.7-15.3 to 10.8-11.7 orders, its centroid moved 0.09-0.12), while later models keep that
shape (Loyal moved 0.01-0.03 at weeks 8 and 12; Occasional and At-Risk move about 0.1 at every retrain, they
age). Holding to the reference, a retrain relabels 0.0-0.3 % of the customers at week 4, 0.8-1.9 % at week 8
and 0.0 % at week 12; among those without an order since the week before 0.0 %, 1.1-2.5 % and 0.0 % (5 seeds
x 1,600 and 5,000 customers: ``PYTHONPATH=src .venv/bin/python scripts/warning_precision.py``, the table in
docs/production.md "How good the warnings are"). The week-8 figure is model drift, reported: customers the week-4
retrain kept in Occasional on the week-0 -> week-4 shift band, who did not order again, and whom the week-8
model (whose band is narrower, the centroids having moved less) still puts among the Loyal Buyers. Warm-
starting K-Means from the previous centroids was measured too and does not help: the optimum itself moved
(2.2-2.6 % relabelled with a warm start, 2.2-2.7 % without; docs/production.md).

**Model drift.** A retrain compares its labels with the reference. A customer whose reference label is their
previous label (by the previous model's yardstick they stayed, whether or not they ordered) but who lands in
another segment with the new model changed segment because the model moved: their ``segment_reason`` is
``model_drift``, they are counted in the retrain's ``drift`` report (count, from -> to matrix, the centroid
shifts) apart from the behavioural moves, and the profile store keeps their ``previous_segment`` and
``segment_since``. A customer whose reference label is not their previous label moved on their own values: a
behavioural move, wherever the new model puts them.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmseg.errors import ParameterError
from rfmseg.model import SegmentModel
from rfmseg.model.scoring import REASON_COLD, REASON_DRIFT, REASON_HELD, REASON_MODEL
from rfmseg.runs.history import RunMeta, run_metas

DEFAULT_HOLD = 0.05
"""the band, in the model's scaled units (min-max: a 20th of a feature's range)"""


def check_hold(hold: float) -> float:
    if not hold >= 0:
        raise ParameterError(f"{{hold}} {hold} should be >= 0 (0 switches the band off)", param="hold")
    return float(hold)


def previous_run(runs_dir: Path, as_of: date | None) -> RunMeta | None:
    """The run of the timeline before ``as_of`` (the last written on the latest earlier date)."""
    if as_of is None:
        return None
    earlier = [m for m in run_metas(runs_dir) if m.as_of is not None and m.as_of < as_of]
    return earlier[-1] if earlier else None


def previous_labels(meta: RunMeta | None) -> pa.Table | None:
    """customer_id, segment, segment_reason, frequency, monetary of ``meta``'s assignments."""
    if meta is None:
        return None
    import pyarrow.parquet as pq

    # the five columns only: the file holds fourteen (0.25 s for all of them at 961,561 customers)
    wanted = ("customer_id", "segment", "segment_reason", "frequency", "monetary")
    t = pq.read_table(meta.file, columns=[c for c in wanted if c in pq.read_schema(meta.file).names])
    reason = t.column("segment_reason") if "segment_reason" in t.column_names else pa.nulls(t.num_rows, pa.string())
    return pa.table(
        {
            "customer_id": t.column("customer_id"),
            "segment": t.column("segment"),
            "segment_reason": reason,
            "frequency": pc.cast(t.column("frequency"), pa.float64()),
            "monetary": pc.cast(t.column("monetary"), pa.float64()),
        }
    )


def hold(
    assignments: pa.Table,
    model: SegmentModel,
    x: np.ndarray,
    previous: pa.Table | None,
    band: float,
    shifts: dict[str, float] | None = None,
) -> pa.Table:
    """``assignments`` (as :func:`rfmseg.model.scoring.score` writes them, rows of ``x``) with the customers
    within the band of their previous segment's centroid kept there (reason ``held``); a customer who ordered
    since the previous run is placed by the model (their own values moved).

    The band between a customer's previous segment P and their nearest N is ``max(band, shift[P] + shift[N])``
    with ``shifts`` the distances the model's centroids moved at its retrain (:func:`centroid_shift`): a
    customer at the old boundary of P whose own values did not move is within that of P under this one
    (triangle inequality), so the model moving does not move them; their own values have to."""
    if previous is None or band <= 0 or assignments.num_rows == 0:
        return assignments
    prev, ordered = _previous_segment(assignments, previous)
    return _keep(assignments, model, x, prev, ~ordered, band, shifts)


def hold_reference(
    assignments: pa.Table,
    model: SegmentModel,
    x: np.ndarray,
    reference: pa.Table,
    band: float,
    shifts: dict[str, float] | None = None,
) -> pa.Table:
    """A retrain's ``assignments`` (the new model's, rows of ``x``) with every customer whose new nearest
    centroid is within the band of their *reference* segment's centroid kept there (reason ``held``), whether
    or not they ordered. ``reference``: the previous model's labels of the same rows, held against the run
    before (:func:`hold`), i.e. what a refresh of the same day publishes: a behavioural move since the run
    before is in it already, so what the new model changes within the band is the model's, not the
    customer's. The band is ``max(band, shift[R] + shift[N])`` (R the reference segment, N the nearest, the
    shifts the new model's :func:`centroid_shift`): a customer the previous model placed in R is within it of
    R under the new one (triangle inequality), so a retrain alone does not move them; customers held by the
    previous model and carried past it by the new one are the model drift :func:`mark_drift` reports."""
    if band <= 0 or assignments.num_rows == 0:
        return assignments
    scored = _is(reference.column("segment_reason"), REASON_COLD, False)
    return _keep(assignments, model, x, _array(reference.column("segment")), ~scored, band, shifts)


def _keep(
    assignments: pa.Table,
    model: SegmentModel,
    x: np.ndarray,
    target: pa.Array,
    eligible: np.ndarray,
    band: float,
    shifts: dict[str, float] | None,
) -> pa.Table:
    """``assignments`` with each ``eligible`` customer scored by the model whose ``target`` segment (null: no
    target) is within the band of the nearest centroid kept in ``target``, reason ``held``.

    Segments are compared as their positions among the model's names (Arrow's ``index_in``; -1 for a name the
    model does not have), never as Python strings one customer at a time: at 961,561 customers the Python
    version took most of a refresh's 0.9 s ``assign`` stage."""
    names = pa.array(list(model.names_), pa.string())
    index = _codes(target, names)
    nearest = _codes(_array(assignments.column("model_segment")), names)
    by_model = _is(assignments.column("segment_reason"), REASON_MODEL, False)
    candidate = (index >= 0) & by_model & (index != nearest) & eligible
    if not candidate.any():
        return assignments
    d = model.distances(x[candidate])
    rows = np.flatnonzero(candidate)
    to_target = d[np.arange(len(rows)), index[candidate]]
    limit = np.full(len(rows), band)
    if shifts:
        shift = np.array([shifts.get(n, 0.0) for n in model.names_], dtype=float)
        limit = np.maximum(limit, shift[index[candidate]] + shift[nearest[candidate]])
    within = to_target - d.min(axis=1) <= limit
    keep = np.zeros(assignments.num_rows, dtype=bool)
    keep[rows[within]] = True
    kept = pa.array(keep)
    distance = assignments.column("distance").to_numpy().copy()
    distance[rows[within]] = to_target[within]
    return _replace(
        assignments,
        segment=pc.if_else(kept, target, _array(assignments.column("segment"))),
        segment_reason=pc.if_else(kept, _text(REASON_HELD), _array(assignments.column("segment_reason"))),
        distance=pa.array(distance, pa.float64()),
    )


def mark_drift(
    assignments: pa.Table, reference: pa.Table, previous: pa.Table | None
) -> tuple[pa.Table, dict[str, Any]]:
    """The retrain's ``assignments`` with the drift moves marked (reason ``model_drift``), and the counts:
    customers in the previous run whose reference label (the previous model's, held the same way) is their
    previous segment, and whose new label is another, whether or not they ordered since: by the previous
    model's yardstick they stayed, so the move is the new model's. A customer whose reference label is not
    their previous segment moved on their own values (a behavioural move), wherever the new model puts them."""
    if previous is None:
        return assignments, {"previous_run": None, "moves": 0, "matrix": {}, "behaviour_moves": 0}
    prev, _ = _previous_segment(assignments, previous)
    ref = _array(reference.column("segment"))
    new = _array(assignments.column("segment"))
    moved = _filled(pc.not_equal(new, prev), False)  # null where the customer has no previous segment
    drift = moved & _filled(pc.equal(ref, prev), False)
    mask = pa.array(drift)
    reason = pc.if_else(mask, _text(REASON_DRIFT), _array(assignments.column("segment_reason")))
    matrix: dict[str, dict[str, int]] = {}
    pairs = zip(pc.filter(prev, mask).to_pylist(), pc.filter(new, mask).to_pylist(), strict=True)
    for a, b in Counter(pairs).items():
        matrix.setdefault(a[0], {})[a[1]] = b
    report = {
        "moves": int(drift.sum()),
        "matrix": matrix,
        "behaviour_moves": int((moved & ~drift).sum()),
        "relabelled_vs_refresh": int(_filled(pc.not_equal(ref, new), True).sum()),
        "held": int(_is(reason, REASON_HELD, False).sum()),
        "customers": assignments.num_rows,
    }
    return _replace(assignments, segment_reason=reason), report


def shifts_of(manifest: dict[str, Any] | Any) -> dict[str, float] | None:
    """The centroid shifts a retrain's manifest recorded, by segment (None for a model without them)."""
    drift = manifest.get("drift") if hasattr(manifest, "get") else None
    if not isinstance(drift, dict) or not drift.get("centroids"):
        return None
    return {str(c["segment"]): float(c["shift"]) for c in drift["centroids"]}


def centroid_shift(previous: SegmentModel, new: SegmentModel) -> list[dict[str, Any]]:
    """For each segment name of both models: how far its centroid moved, in the new model's scaled space, and
    its mean recency, frequency and monetary before and after."""
    out = []
    zp = new.transform_.apply(previous.centroids_raw_)
    zn = new.transform_.apply(new.centroids_raw_)
    for i, name in enumerate(new.names_):
        if name not in previous.names_:
            continue
        j = list(previous.names_).index(name)
        pr, cr = previous.centroids_raw_[j], new.centroids_raw_[i]
        out.append(
            {
                "segment": name,
                "shift": round(float(np.linalg.norm(zn[i] - zp[j])), 4),
                "recency_days": [round(float(pr[0]), 1), round(float(cr[0]), 1)],
                "frequency": [round(float(pr[1]), 2), round(float(cr[1]), 2)],
                "monetary": [round(float(pr[2]), 2), round(float(cr[2]), 2)],
            }
        )
    return out


def _previous_segment(assignments: pa.Table, previous: pa.Table) -> tuple[pa.Array, np.ndarray]:
    """Each customer's segment in ``previous`` (null: not there, or cold start there), and whether they placed
    an order since (frequency or monetary differ: their own values moved)."""
    positions = pc.index_in(assignments.column("customer_id"), value_set=previous.column("customer_id"))
    seg = pc.take(previous.column("segment"), positions)
    cold = pc.fill_null(pc.equal(pc.take(previous.column("segment_reason"), positions), "cold_start"), False)
    f_now, m_now = pc.cast(assignments["frequency"], pa.float64()), pc.cast(assignments["monetary"], pa.float64())
    ordered = pc.fill_null(
        pc.or_(
            pc.not_equal(pc.take(previous.column("frequency"), positions), f_now),
            pc.not_equal(pc.take(previous.column("monetary"), positions), m_now),
        ),
        False,
    )
    seg = pc.if_else(cold, pa.scalar(None, pa.string()), seg)
    return _array(seg), _filled(ordered, False)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Arrow array of ``values`` (a table's column comes in chunks)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _filled(mask: pa.Array | pa.ChunkedArray, null: bool) -> np.ndarray:
    """A boolean Arrow result as numpy, ``null`` where it is null."""
    return np.asarray(pc.fill_null(mask, null).to_numpy(zero_copy_only=False), dtype=bool)


def _is(values: pa.Array | pa.ChunkedArray, text: str, null: bool) -> np.ndarray:
    """Where ``values`` equals ``text`` (``null`` where a value is null), as numpy."""
    return _filled(pc.equal(values, _text(text)), null)


def _text(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.string())


def _codes(values: pa.Array, names: pa.Array) -> np.ndarray:
    """The position of each of ``values`` among ``names``, -1 for a null or a name not among them."""
    return np.asarray(
        pc.fill_null(pc.index_in(values, value_set=names), -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )


def _replace(t: pa.Table, **columns: pa.Array) -> pa.Table:
    for name, values in columns.items():
        i = t.column_names.index(name)
        field = t.schema.field(name)
        t = t.set_column(i, field, values.cast(field.type) if values.type != field.type else values)
    return t
