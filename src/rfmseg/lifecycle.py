"""Production life of a segmentation: stored models, scoring new customers, the daily refresh, the weekly
retrain with stable names, and publishing labels to the online profile store.

* A model is the ``model.json`` of a run. Its *version* is the id of the run that trained it; a refresh
  copies the model of its source run, so every run says which trained model produced its labels.
* :func:`score` assigns customers to the nearest centroid of a stored model (same transform, no refit),
  after the cold-start rule: a customer with fewer than ``orders`` orders, or whose first order is less
  than ``days`` days before the as-of date, gets the cold-start segment with reason ``cold_start``.
* :func:`refresh` (daily) recomputes RFM as of a date and scores it with the current model; :func:`retrain`
  (weekly) refits K-Means and carries the previous model's names over by matching centroids
  (:func:`carry_names`). Both write a run and publish it, and both are idempotent: the same kind, as-of
  date, data and parameters (and, for a refresh, model) find the run already written instead of adding a
  second one.
* :func:`publish_run` sends a run's assignments to the profile store; when the store is down the run stays
  on disk and the error says how to publish it later.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rfmseg.errors import ModelFormatError, NotFoundError, ParameterError, RfmsegError, StoreError
from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS, FeatureSet, Units
from rfmseg.io import Policy
from rfmseg.io.intake import read_rfm
from rfmseg.manifest import run_manifest
from rfmseg.model import SegmentModel
from rfmseg.model.naming import DEFAULT_VOCABULARY, _reason, name_clusters
from rfmseg.pipeline import Timer, _write_run, build_summary, provenance, rfm_matrix, rfm_sha256
from rfmseg.presets import Preset, build_policy, get_preset
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, get_run, list_runs, new_run_id

STORE_ENV = "RFMSEG_STORE"
DEFAULT_MAX_NAME_SHIFT = 0.5
"""A matched centroid keeps its previous name while it moved less than this fraction of the distance from
its previous position to the nearest other previous centroid (measured in the new model's scaled space)."""

DEFAULT_COLD_SEGMENT = "Occasional"
REASON_MODEL = "nearest_centroid"
REASON_COLD = "cold_start"
Kind = Literal["run", "refresh", "retrain"]


# --------------------------------------------------------------------------------------------- store URL
def store_url(runs_dir: str | Path = DEFAULT_RUNS_DIR, url: str | None = None) -> str:
    """The profile store to use: ``url``, else $RFMSEG_STORE, else ``sqlite:///<runs_dir>/profiles.db``."""
    if url:
        return url
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return f"sqlite:///{Path(runs_dir) / 'profiles.db'}"


# --------------------------------------------------------------------------------------------- models
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
            raise ParameterError(f"--cold-start-orders {self.orders} should be >= 0 (0 switches the rule off)")
        if self.days < 0:
            raise ParameterError(f"--cold-start-days {self.days} should be >= 0 (0 switches the rule off)")
        if self.segment is not None and not self.segment.strip():
            raise ParameterError("--cold-start-segment is empty; give a segment name, e.g. Occasional")

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


@dataclass(frozen=True)
class ModelRef:
    """A stored model, the run it was read from and its version (the id of the run that trained it)."""

    run: Run
    model: SegmentModel

    @property
    def model_version(self) -> str:
        return str(
            self.model.provenance_.get("model_version") or self.run.manifest.get("model_version") or self.run.run_id
        )


def load_model(ref: str = "latest", runs_dir: str | Path = DEFAULT_RUNS_DIR) -> ModelRef:
    """The model of run ``ref`` (an id, a unique prefix or 'latest'); checks the model format version."""
    run = get_run(ref, Path(runs_dir))
    model = SegmentModel.load(run.path / "model.json")
    if not hasattr(model, "provenance_"):
        model.provenance_ = {}
    return ModelRef(run, model)


@dataclass(frozen=True)
class Reading:
    """How to read an input so it means what the model was trained on: preset, row policy, features, units."""

    preset: Preset | None
    policy: Policy
    features: FeatureSet
    currency: str
    units: Units

    def load(
        self, con: duckdb.DuckDBPyConnection, source: Any, columns: dict[str, str] | None, as_of: Any, timer: Timer
    ) -> tuple[Any, pa.Table]:
        intake = read_rfm(con, source, columns, as_of, self.policy, self.preset, self.features, timer)
        return intake, intake.rfm

    def describe(self) -> dict[str, Any]:
        return {"preset": self.preset.name if self.preset else None, "features": self.features.to_dict()}


def reading(
    trained: Run | None = None,
    preset: str | None = None,
    policy: Policy | None = None,
    bad_rows: str | None = None,
    returns: str | None = None,
    date_format: str | None = None,
) -> Reading:
    """The reading of the run that trained the model (its preset and features), with the options given."""
    params = (trained.manifest.get("params") or {}) if trained else {}
    name = preset or params.get("preset")
    p = get_preset(name) if name else None
    features = (
        FeatureSet.from_dict(params["features"]) if params.get("features") else (p.features if p else DEFAULT_FEATURES)
    )
    return Reading(
        p,
        build_policy(p, policy, bad_rows, returns, date_format),
        features,
        p.currency if p else "$",
        p.units if p else DEFAULT_UNITS,
    )


def score(model: SegmentModel, rfm: pa.Table, as_of: date | None = None, cold_start: ColdStart = OFF) -> pa.Table:
    """Assign each row of an RFM table to a segment of ``model`` (no refit).

    Columns: customer_id, segment, segment_reason, recency_days, frequency, monetary, distance (to the
    centroid of the segment given; for a cold-start segment the model lacks, to the nearest centroid),
    margin (second-nearest minus nearest distance), model_segment (the nearest centroid's name),
    cluster (its index), first_order_date.
    """
    x = rfm_matrix(rfm)
    predicted = model.predict(x)
    dist = model.distances(x) if x.shape[0] else np.zeros((0, model.k))
    freq = x[:, 1]
    cold = np.zeros(x.shape[0], dtype=bool)
    if cold_start.orders > 0:
        cold |= freq < cold_start.orders
    first = rfm.column("first_order_date") if "first_order_date" in rfm.column_names else None
    if cold_start.days > 0 and as_of is not None and first is not None:
        tenure = pc.days_between(first, pa.scalar(as_of, pa.date32()))
        young = pc.fill_null(pc.less(tenure, cold_start.days), False).to_numpy(zero_copy_only=False)
        cold |= young
    cold |= np.isnan(x[:, 0])  # no dated order at all (only returns): nothing to score
    segments = np.array(predicted.segments, dtype=object)
    distance = np.asarray(predicted.distance, float).copy()
    if cold.any():
        segments[cold] = cold_start.name
        if cold_start.name in model.names_:
            distance[cold] = dist[cold, model.names_.index(cold_start.name)]
    reason = np.where(cold, REASON_COLD, REASON_MODEL)
    return pa.table(
        {
            "customer_id": rfm.column("customer_id"),
            "segment": pa.array(segments.tolist(), pa.string()),
            "segment_reason": pa.array(reason.tolist(), pa.string()),
            "recency_days": rfm.column("recency_days"),
            "frequency": rfm.column("frequency"),
            "monetary": rfm.column("monetary"),
            "distance": pa.array(distance),
            "margin": pa.array(np.asarray(predicted.margin, float)),
            "model_segment": pa.array(predicted.segments, pa.string()),
            "cluster": pa.array(np.asarray(predicted.labels).astype("int32")),
            "first_order_date": first if first is not None else pa.nulls(rfm.num_rows, pa.date32()),
        }
    )


@dataclass
class AssignResult:
    model: ModelRef
    as_of: date | None
    assignments: pa.Table
    rows: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    cold_start: ColdStart = OFF

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.assignments.column("segment").to_pylist()).most_common())

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        reasons = Counter(self.assignments.column("segment_reason").to_pylist())
        out: dict[str, Any] = {
            "model_run": self.model.run.run_id,
            "model_version": self.model.model_version,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "n_customers": self.assignments.num_rows,
            "segments": self.counts(),
            "cold_start": reasons.get(REASON_COLD, 0),
            "cold_start_rule": self.cold_start.to_dict(),
            "rows": self.rows,
            "warnings": self.warnings,
        }
        if rows:
            out["assignments"] = jsonable_rows(self.assignments)
        return out


def assign(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    model: str = "latest",
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    as_of: str | date | None = None,
    policy: Policy | None = None,
    cold_start: ColdStart | None = None,
    read: Reading | None = None,
    preset: str | None = None,
    bad_rows: str | None = None,
    returns: str | None = None,
    date_format: str | None = None,
) -> AssignResult:
    """Score the customers of ``source`` (transactions or an RFM table) with a stored model; writes nothing.
    ``read`` (default: as the model's run read its input) sets preset, row policy and features."""
    ref = load_model(model, runs_dir)
    read = read or reading(ref.run, preset, policy, bad_rows, returns, date_format)
    cold_start = (cold_start or ColdStart(segment=None)).resolved(read.preset)
    con = duckdb.connect()
    try:
        prepared, rfm = read.load(con, source, columns, as_of, Timer())
    finally:
        con.close()
    table = score(ref.model, rfm, prepared.as_of, cold_start)
    warnings = _cold_warnings(ref.model, cold_start, read.units.entity)
    return AssignResult(ref, prepared.as_of, table, prepared.rows_summary(), warnings, cold_start)


def _cold_warnings(model: SegmentModel, cold_start: ColdStart, entity: str) -> list[str]:
    if cold_start.orders == 0 and cold_start.days == 0:
        return []
    if cold_start.name in model.names_:
        return []
    return [
        f"the cold-start segment '{cold_start.name}' is not one of this model's segments "
        f"({', '.join(model.names_)}); {entity} with a thin history get it anyway "
        "(--cold-start-segment)"
    ]


def write_table(table: pa.Table, path: Path) -> Path:
    """Write assignments to ``.parquet`` or ``.csv`` (by the file's suffix)."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ParameterError(f"-o {path}: write .parquet or .csv (got '{path.suffix or 'no suffix'}')")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".parquet":
        pq.write_table(table, tmp, compression="zstd")
    else:
        pacsv.write_csv(table, tmp)
    os.replace(tmp, path)
    return path


def jsonable_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, date):
                r[k] = v.isoformat()
            elif isinstance(v, float) and not np.isfinite(v):
                r[k] = None
    return rows


# --------------------------------------------------------------------------------------------- names
@dataclass
class NameDecision:
    cluster: int
    name: str
    data_driven_name: str
    previous_name: str | None
    distance: float | None
    limit: float | None
    decision: Literal["kept", "renamed", "new"]
    why: str


def carry_names(
    previous: SegmentModel,
    new: SegmentModel,
    population: np.ndarray,
    max_shift: float = DEFAULT_MAX_NAME_SHIFT,
    previous_version: str | None = None,
) -> dict[str, Any]:
    """Give ``new`` (freshly fitted, named by the rules) the names of ``previous`` where the profile held.

    Centroids are compared in the *new* model's scaled space: both models' centroids in original units
    (the mean RFM of their members: days, orders, money — comparable across models) go through the new
    transform, the one fitted on today's customers and used by K-Means to tell clusters apart. The
    Hungarian algorithm pairs new and previous centroids with the smallest total distance. A pair keeps the
    previous name when the new centroid lies within ``max_shift`` × (distance from the previous centroid
    to its nearest other previous centroid): at 0.5 the centroid has not crossed half way towards another
    segment, so it is still that segment. Otherwise — or when K grew and a centroid has no partner — the
    cluster keeps the name the rules give it from its data, chosen among the names not carried over.
    Sets ``new.names_`` and ``new.reasons_``; returns the report stored in the summary and the manifest.
    """
    if max_shift < 0:
        raise ParameterError(f"--max-name-shift {max_shift} should be >= 0 (0 never carries a name over)")
    data_driven = list(new.names_)
    zn = new.transform_.apply(new.centroids_raw_)
    zp = new.transform_.apply(previous.centroids_raw_)
    from scipy.optimize import linear_sum_assignment  # imported where used: see kmeans.FIT_MODULES
    from scipy.spatial.distance import cdist

    cost = cdist(zn, zp)
    spacing = cdist(zp, zp)
    np.fill_diagonal(spacing, np.inf)
    nearest_other = spacing.min(axis=1) if zp.shape[0] > 1 else np.full(zp.shape[0], np.inf)
    rows, cols = linear_sum_assignment(cost)
    pair = {int(i): int(j) for i, j in zip(rows, cols, strict=True)}
    carried = {i: j for i, j in pair.items() if cost[i, j] <= max_shift * nearest_other[j]}
    names: list[str | None] = [None] * new.k
    for i, j in carried.items():
        names[i] = previous.names_[j]
    rest = [i for i in range(new.k) if i not in carried]
    if rest:
        taken = {previous.names_[j] for j in carried.values()}
        voc = replace(new.vocabulary, types=tuple(t for t in new.vocabulary.types if t.name not in taken))
        if len(voc.types) < len(rest):  # vocabulary changed since the previous model: name from scratch
            voc = new.vocabulary
        for i, n in zip(rest, name_clusters(new.centroids_raw_[rest], population, voc), strict=True):
            names[i] = n.name
    final = [str(n) for n in names]
    reasons = []
    for i, name in enumerate(final):
        t = new.vocabulary.get(name)
        reasons.append(
            _reason(t, new.centroids_raw_[i], np.asarray(new.levels_[i]), new.vocabulary) if t else new.reasons_[i]
        )
    new.names_, new.reasons_ = final, reasons

    decisions: list[NameDecision] = []
    for i in range(new.k):
        cr = new.centroids_raw_[i]
        if i not in pair:
            decisions.append(
                NameDecision(
                    i,
                    final[i],
                    data_driven[i],
                    None,
                    None,
                    None,
                    "new",
                    f"new segment '{final[i]}': no previous centroid to match (K went from {previous.k} to {new.k})",
                )
            )
            continue
        j = pair[i]
        d, limit = float(cost[i, j]), float(max_shift * nearest_other[j])
        old = previous.names_[j]
        pr = previous.centroids_raw_[j]
        moved = (
            f"recency {pr[0]:,.0f}→{cr[0]:,.0f} days, frequency {pr[1]:,.1f}→{cr[1]:,.1f}, "
            f"monetary {pr[2]:,.0f}→{cr[2]:,.0f}"
        )
        lim = "no limit" if not np.isfinite(limit) else f"limit {limit:.3f}"
        if i in carried:
            note = "" if data_driven[i] == old else f"; the naming rules alone would say '{data_driven[i]}'"
            why = f"'{old}' kept: centroid moved {d:.3f} ({lim}): {moved}{note}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "kept", why))
        elif final[i] == old:
            why = f"'{old}' kept by the naming rules although the centroid moved {d:.3f} ({lim}): {moved}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "kept", why))
        else:
            why = f"'{old}' → '{final[i]}': the profile changed, centroid moved {d:.3f} > {lim}: {moved}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "renamed", why))
    retired = [n for n in previous.names_ if n not in final]
    changes = [x.why for x in decisions if x.decision != "kept"]
    changes += [f"segment '{n}' retired: no centroid of the new model carries it" for n in retired]
    return {
        "previous_model": previous_version,
        "rule": (
            f"Hungarian matching of centroids in the new model's scaled space; a match keeps its name within "
            f"{max_shift} × the distance to the nearest other previous centroid"
        ),
        "max_name_shift": max_shift,
        "segments": [asdict(x) for x in decisions],
        "retired": retired,
        "changes": changes,
    }


# --------------------------------------------------------------------------------------------- runs
@dataclass
class LifeResult:
    """The outcome of a refresh or retrain: the run (new or found), and what the store said."""

    kind: Kind
    run: Run
    status: Literal["created", "existing"]
    summary: dict[str, Any]
    manifest: dict[str, Any]
    publish: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.summary)
        out.update(
            kind=self.kind,
            status=self.status,
            run_dir=str(self.run.path),
            model_version=self.manifest.get("model_version"),
            publish=self.publish,
        )
        return out


def idempotency_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _refresh_key(as_of: date | None, model_version: str, data_sha: str, cold_start: ColdStart, read: Reading) -> str:
    return idempotency_key(
        kind="refresh",
        as_of=as_of,
        model_version=model_version,
        data=data_sha,
        cold_start=cold_start.to_dict(),
        reading=read.describe(),
    )


def find_run(runs_dir: Path, key: str) -> Run | None:
    """The run written with idempotency key ``key`` (or, for a refresh, the retrain whose labels are the ones
    this refresh would write: same as-of, data, model and cold-start rule), if any."""
    for run in reversed(list_runs(runs_dir)):
        try:
            m = run.manifest
            if key in (m.get("idempotency_key"), m.get("scoring_key")):
                return run
        except (OSError, json.JSONDecodeError):
            continue
    return None


def latest_model_run(runs_dir: Path) -> Run | None:
    """The most recent run that trained a model (kind run or retrain), None if there is none."""
    for run in reversed(list_runs(runs_dir)):
        if run.manifest.get("kind", "run") in ("run", "retrain"):
            return run
    return None


def _run_date(run: Run) -> date:
    return _manifest_date(run.manifest)


def _manifest_date(m: dict[str, Any]) -> date:
    """The date a run is published as: its as-of date, else the day it was made."""
    if m.get("as_of"):
        return date.fromisoformat(m["as_of"])
    return datetime.fromisoformat(m["created"]).date()


def _saved_for_later(exc: RfmsegError, run_id: str, run: Run | None) -> RfmsegError:
    """``exc`` (of the same class) saying where the unpublished run is kept and how to publish it later."""
    if run is None:
        return exc
    later = f"run {run_id} is saved in {run.path}, publish it later with `rfmseg publish {run_id}`"
    return type(exc)(f"{exc.message}; {later}")


def _publish_table(url: str, table: pa.Table, run_id: str, as_of: date, model_version: str) -> dict[str, Any]:
    """One-shot publish of ``table`` from this process; the report as a dict, with the store's URL."""
    from rfmseg.stores import open_store  # the store drivers load only when publishing

    with open_store(url) as s:
        return {**asdict(s.publish(table, run_id, as_of, model_version)), "store": s.url_display}


def publish_run(run: Run | str, runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None) -> dict[str, Any]:
    """Publish a run's assignments to the profile store (atomic there). Returns the publish report as a dict.

    A store that cannot be reached raises StoreError naming the URL; the run stays on disk.
    """
    if isinstance(run, str):
        run = get_run(run, Path(runs_dir))
    model_version = str(run.manifest.get("model_version") or run.run_id)
    try:
        return _publish_table(
            store_url(runs_dir, store), run.table("assignments"), run.run_id, _run_date(run), model_version
        )
    except StoreError as exc:
        raise _saved_for_later(exc, run.run_id, run) from None


def publish_target(
    runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None, publish: bool | None = None
) -> str | None:
    """The publishing rule of `rfmseg run`: the store URL a run is published to, or None. ``publish=True``
    publishes (to ``store``, $RFMSEG_STORE or the default SQLite store), ``False`` never does, ``None``
    publishes only when a store is configured (``store`` given or $RFMSEG_STORE set)."""
    if publish is False or (publish is None and not store and not os.environ.get(STORE_ENV)):
        return None
    return store_url(runs_dir, store)


def publish_if_configured(
    run: Run, runs_dir: str | Path = DEFAULT_RUNS_DIR, store: str | None = None, publish: bool | None = None
) -> dict[str, Any] | None:
    """Publish ``run`` by the rule of :func:`publish_target`. Returns the publish report, or None when
    nothing was published."""
    url = publish_target(runs_dir, store, publish)
    return None if url is None else publish_run(run, runs_dir, url)


def publish_from_executors(
    engine: Any, manifest: dict[str, Any], model: SegmentModel, assignments: pa.Table, url: str, run: Run | None
) -> dict[str, Any]:
    """Publish a run the Spark ``engine`` has just computed to the store at ``url``, from its executors
    (:meth:`rfmseg.engines.spark.SparkEngine.publish`); a SQLite file the executors cannot reach (a
    cluster) is published from this process instead, from ``assignments``. The report says which
    (``by``). On failure StoreError or SparkError says where the run is saved and how to publish it later.
    """
    run_id = manifest["run_id"]
    as_of, model_version = _manifest_date(manifest), str(manifest.get("model_version") or run_id)
    try:
        if engine.executors_reach(url):
            return engine.publish(run_id, as_of, model_version, model, url)
        return {**_publish_table(url, assignments, run_id, as_of, model_version), "by": "driver"}
    except RfmsegError as exc:
        raise _saved_for_later(exc, run_id, run) from None


def _publish_existing(run: Run, runs_dir: Path, store: str | None) -> dict[str, Any]:
    """Publish a run found again (a re-run of the same job) unless the store already serves it."""
    from rfmseg.stores import open_store

    url = store_url(runs_dir, store)
    try:
        with open_store(url) as s:
            if s.current_run() == run.run_id:
                return {"run_id": run.run_id, "store": s.url_display, "skipped": "the store already serves this run"}
    except StoreError as exc:
        raise _saved_for_later(exc, run.run_id, run) from None
    return publish_run(run, runs_dir, store)


class JobOptions(TypedDict, total=False):
    """The keyword arguments :func:`refresh` and :func:`retrain` share, all optional.

    * ``runs_dir``: the run registry (default ``rfmseg-runs``);
    * ``read``: how to read the input (default: as the model's run read it, with ``preset``, ``policy``,
      ``bad_rows``, ``returns`` and ``date_format`` given here winning; see :func:`reading`);
    * ``cold_start``: the cold-start rule (default: 2 orders, 30 days, the preset's segment);
    * ``publish`` (default True) the run to ``store`` (default: $RFMSEG_STORE, else
      ``sqlite:///<runs_dir>/profiles.db``);
    * ``input_label``: the input's name in the manifest (default: its path).
    """

    runs_dir: str | Path
    cold_start: ColdStart | None
    policy: Policy | None
    read: Reading | None
    preset: str | None
    bad_rows: str | None
    returns: str | None
    date_format: str | None
    publish: bool
    store: str | None
    input_label: str | None


def _job_runs_dir(kind: Kind, options: JobOptions) -> Path:
    """The run registry of a job; a keyword argument that is no job option is refused as Python would."""
    unknown = sorted(set(options) - set(JobOptions.__annotations__))
    if unknown:
        raise TypeError(f"{kind}() got an unexpected keyword argument '{unknown[0]}'")
    return Path(options.get("runs_dir", DEFAULT_RUNS_DIR))


@dataclass
class _Job:
    """A refresh or retrain underway: where it writes, how it reads, its cold-start rule, clock and timer."""

    kind: Kind
    runs_dir: Path
    started: datetime
    run_id: str
    """the id of the run it writes, unless it finds its run already written"""
    read: Reading
    cold_start: ColdStart
    options: JobOptions
    timer: Timer = field(default_factory=Timer)

    @classmethod
    def start(cls, kind: Kind, started: datetime, runs_dir: Path, trained: Run | None, options: JobOptions) -> _Job:
        """The job, reading its input as ``trained`` (the run of the model it starts from) read its own."""
        o = options
        read = o.get("read") or reading(
            trained, o.get("preset"), o.get("policy"), o.get("bad_rows"), o.get("returns"), o.get("date_format")
        )
        cold_start = (o.get("cold_start") or ColdStart(segment=None)).resolved(read.preset)
        return cls(kind, runs_dir, started, new_run_id(started), read, cold_start, options)

    def load(
        self, con: duckdb.DuckDBPyConnection, source: Any, columns: dict[str, str] | None, as_of: Any
    ) -> tuple[Any, pa.Table, str]:
        """The prepared input, its RFM table and the table's fingerprint."""
        prepared, rfm = self.read.load(con, source, columns, as_of, self.timer)
        return prepared, rfm, rfm_sha256(rfm)

    def find(self, key: str) -> LifeResult | None:
        """The run written before with idempotency key ``key``, if any (for a refresh, possibly the retrain of
        the same day whose labels are the ones it would write)."""
        run = find_run(self.runs_dir, key)
        if run is None:
            return None
        return LifeResult(run.manifest.get("kind", self.kind), run, "existing", run.summary, run.manifest)

    def write(
        self,
        con: duckdb.DuckDBPyConnection,
        prepared: Any,
        rfm: pa.Table,
        data_sha: str,
        key: str,
        model: SegmentModel,
        model_version: str,
        *,
        summary: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> LifeResult:
        """Score ``rfm`` with ``model`` (the cold-start rule first), profile the segments and write the run;
        ``summary``, ``params`` and ``manifest`` are what the job's kind adds to the files."""
        t, read, cold = self.timer, self.read, self.cold_start
        with t.stage("assign"):
            assignments = score(model, rfm, prepared.as_of, cold)
        segments = assignments.column("segment").to_pylist()
        with t.stage("profile"):
            summ = build_summary(self.run_id, prepared.as_of, model, rfm, segments, read.currency, read.units)
        summ.update(_life_summary(self.kind, model_version, assignments, cold, prepared, read), **(summary or {}))
        summ["warnings"] = summ.get("warnings", []) + _cold_warnings(model, cold, read.units.entity)
        man = run_manifest(
            run_id=self.run_id,
            kind=self.kind,
            model_version=model_version,
            started=self.started,
            prepared=prepared,
            rfm=rfm,
            data_sha256=data_sha,
            params={
                "k": model.k,
                "transform": model.transform,
                "n_init": model.n_init,
                "random_state": model.random_state,
                "bad_rows": read.policy.bad_rows,
                "returns": read.policy.returns,
                **read.describe(),
                **(params or {}),
            },
            input_label=self.options.get("input_label"),
            idempotency_key=key,
        )
        man.update(manifest or {})
        man["cold_start"] = {**cold.to_dict(), "customers": summ["cold_start"]["customers"]}
        with t.stage("write"):
            run = _write_run(self.runs_dir, self.run_id, con, prepared, model, rfm, assignments, summ, man, t)
        return LifeResult(self.kind, run, "created", summ, man)

    def finish(self, result: LifeResult) -> LifeResult:
        """Publish the job's run (unless ``publish=False``)."""
        if self.options.get("publish", True):
            result.publish = _publish_result(result, self.runs_dir, self.options.get("store"))
        return result


def refresh(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    model: str = "latest",
    **options: Unpack[JobOptions],
) -> LifeResult:
    """The daily job: RFM as of ``as_of`` for every customer, scored with the current model, written as a run
    of kind 'refresh' and published. ``model='latest'`` is the most recent run that trained a model.
    ``options``: see :class:`JobOptions`."""
    started = datetime.now(UTC)
    runs_dir = _job_runs_dir("refresh", options)
    if model == "latest":
        trained = latest_model_run(runs_dir)
        if trained is None:
            raise NotFoundError(
                f"no trained model in {runs_dir}; train one first with `rfmseg run FILE` or `rfmseg retrain FILE`"
            )
        model = trained.run_id
    ref = load_model(model, runs_dir)
    job = _Job.start("refresh", started, runs_dir, ref.run, options)
    with duckdb.connect() as con:
        prepared, rfm, data_sha = job.load(con, source, columns, as_of)
        key = _refresh_key(prepared.as_of, ref.model_version, data_sha, job.cold_start, job.read)
        result = job.find(key) or job.write(
            con, prepared, rfm, data_sha, key, ref.model, ref.model_version, manifest={"source_run": ref.run.run_id}
        )
    return job.finish(result)


def retrain(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    previous: str | None = "latest",
    k: int | None = None,
    transform: str | None = None,
    n_init: int | None = None,
    random_state: int | None = None,
    max_name_shift: float = DEFAULT_MAX_NAME_SHIFT,
    **options: Unpack[JobOptions],
) -> LifeResult:
    """The weekly job: refit K-Means as of ``as_of``, carry names over from ``previous`` (the latest trained
    model by default; None = name from the data alone), score with cold start, write a 'retrain' run, publish.

    K, transform, n_init and random_state default to the previous model's, else 4, minmax, 10, 42.
    ``options``: see :class:`JobOptions`.
    """
    started = datetime.now(UTC)
    runs_dir = _job_runs_dir("retrain", options)
    prev: ModelRef | None = None
    if previous == "latest":
        trained = latest_model_run(runs_dir)
        prev = load_model(trained.run_id, runs_dir) if trained else None
    elif previous:
        prev = load_model(previous, runs_dir)
    base = prev.model if prev else None
    job = _Job.start("retrain", started, runs_dir, prev.run if prev else None, options)
    read, cold_start = job.read, job.cold_start
    params = {
        "k": k if k is not None else (base.k if base else 4),
        "transform": transform or (base.transform if base else (read.preset.transform if read.preset else "minmax")),
        "n_init": n_init if n_init is not None else (base.n_init if base else 10),
        "random_state": random_state if random_state is not None else (base.random_state if base else 42),
    }
    vocabulary = base.vocabulary if base else (read.preset.vocabulary if read.preset else DEFAULT_VOCABULARY)
    # the reasons speak of the reading's entity (users, leads, ...): model.json does not keep it
    model = SegmentModel(**params, vocabulary=replace(vocabulary, entity=read.units.entity))
    with duckdb.connect() as con:
        prepared, rfm, data_sha = job.load(con, source, columns, as_of)
        key = idempotency_key(
            kind="retrain",
            as_of=prepared.as_of,
            data=data_sha,
            params=params,
            max_name_shift=max_name_shift,
            cold_start=cold_start.to_dict(),
            carry_over=bool(prev),
            reading=read.describe(),
        )
        result = job.find(key)
        if result is None:
            x = rfm_matrix(rfm)
            with job.timer.stage("fit"):
                model.fit(x)
            names = (
                carry_names(prev.model, model, x, max_name_shift, prev.model_version)
                if prev
                else {"previous_model": None, "segments": [], "retired": [], "changes": []}
            )
            model.provenance_ = provenance(job.run_id, started, prepared.as_of, prepared.source.sha256, rfm)
            model.provenance_["previous_model"] = prev.model_version if prev else None
            manifest = {
                "model": {"inertia": model.inertia_, "n_iter": model.n_iter_},
                "previous_model": prev.model_version if prev else None,
                "names": names,
                # a refresh of the same day, data and rule with this model would write these very labels
                "scoring_key": _refresh_key(prepared.as_of, job.run_id, data_sha, cold_start, read),
            }
            result = job.write(
                con,
                prepared,
                rfm,
                data_sha,
                key,
                model,
                job.run_id,
                summary={"names": names},
                params={"max_name_shift": max_name_shift},
                manifest=manifest,
            )
    return job.finish(result)


def _publish_result(result: LifeResult, runs_dir: Path, store: str | None) -> dict[str, Any]:
    """Publish a job's run: a run found again (same job, same day) only when the store does not serve it yet."""
    if result.status == "existing":
        return _publish_existing(result.run, runs_dir, store)
    return publish_run(result.run, runs_dir, store)


def _life_summary(
    kind: str, model_version: str, assignments: pa.Table, cold_start: ColdStart, prepared: Any, read: Reading
) -> dict[str, Any]:
    reasons = Counter(assignments.column("segment_reason").to_pylist())
    return {
        "kind": kind,
        "preset": read.preset.name if read.preset else None,
        "model_version": model_version,
        "rows": prepared.rows_summary(),
        "cold_start": {**cold_start.to_dict(), "customers": reasons.get(REASON_COLD, 0)},
    }


# --------------------------------------------------------------------------------------------- registry
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
