"""What the explorer and the report show, as one JSON-ready dict per run (the "view").

The explorer fetches it from the API (``GET /runs/{id}/view``); the report embeds it in the HTML file. Both
are drawn by the same script (``service/static/explorer.js``), so they show the same thing.

Everything here is computed from the run's own files (or, while a run is being written, from the tables the
pipeline holds): the summary, a per-segment sample of the customers for the scatter, the K choice, the Pareto
curve, the transitions from the previous run and the data-quality counts; a report also embeds the run's
early warnings (:func:`embedded_warnings`), which the explorer fetches from ``GET /warnings``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import compress
from operator import ne
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from rfmseg.errors import RfmsegError
from rfmseg.features import Units
from rfmseg.model.choose_k import choose_k
from rfmseg.model.kmeans import sample_rows
from rfmseg.model.segment_model import K_MAX, K_MIN
from rfmseg.profile import pareto_curve
from rfmseg.report.html import JSON_OPTIONS
from rfmseg.runs import Run, get_run
from rfmseg.runs import warnings as early
from rfmseg.runs.history import GONE, NEW, RunMeta, run_metas, timeline

CHOOSE_K_FILE = "choose_k.json"
MAX_POINTS = 5_000
"""Customers drawn in the scatter at most; larger runs are sampled per segment."""
MIN_POINTS_PER_SEGMENT = 100
"""A small segment still gets this many points (or all its customers) in a sampled scatter."""
CHOOSE_K_SAMPLE = 1_000
CHOOSE_K_N_INIT = 4
"""The K chart of the explorer and of `rfmseg report` is computed once per run and cached, so it is kept
cheap: a seeded sample of at most 1,000 customers and at most 4 restarts per K (about 0.2 s once
scikit-learn is imported); `rfmseg choose-k` gives the full analysis."""
SEARCH_LIMIT = 20_000
"""Runs up to this size embed every customer in the report for the search box; larger ones the sample."""
HISTORY_RUNS = 12
"""Runs (this one and the ones before it) a report's customer search shows the history over."""
FEATURES = ("recency_days", "frequency", "monetary")
FORECAST = ("p_alive", "expected_orders_90d", "expected_value_90d")
"""Per-customer forecasts a run's assignments may carry; a report's search shows those present."""
WARNINGS_LIMIT = 50_000
"""A run written with more customers than this leaves the early warnings out of its folder's report.html: they
are gathered as Python rows (every customer of every warning, about 5 s on 200,000 simulated customers over four
weekly runs) and would slow every daily refresh; the explorer and `rfmseg report RUN -o FILE` still show them."""
WARNING_CUSTOMERS = 500
"""Customers a report embeds per early warning at most (its count stays the whole number; the page says so and
the explorer lists them all)."""


# ------------------------------------------------------------------------------------------------ scatter
def sample_indices(
    segments: Sequence[str] | np.ndarray | pa.Array | pa.ChunkedArray, max_points: int = MAX_POINTS, seed: int = 0
) -> np.ndarray:
    """Row indices of a per-segment sample: every row when there are at most ``max_points``, otherwise
    each segment gets a share proportional to its size, but at least ``MIN_POINTS_PER_SEGMENT`` (or all of
    it), so small segments stay visible. Seeded, sorted, exactly ``max_points`` rows.

    ``segments`` are names, or integer codes (the run's ``cluster`` column: no names to encode)."""
    if isinstance(segments, np.ndarray) and segments.dtype.kind in "iu":
        codes = segments
    elif isinstance(segments, pa.Array | pa.ChunkedArray) and pa.types.is_integer(segments.type):
        codes = segments.to_numpy(zero_copy_only=False) if len(segments) else np.zeros(0, dtype=np.int64)
    else:
        seg = segments if isinstance(segments, pa.Array | pa.ChunkedArray) else pa.array(list(segments), pa.string())
        if len(seg) <= max_points:
            return np.arange(len(seg))
        if isinstance(seg, pa.ChunkedArray):
            seg = seg.combine_chunks()
        codes = pc.dictionary_encode(seg).indices.to_numpy(zero_copy_only=False)  # far cheaper than sorting
    n = len(codes)
    if n <= max_points:
        return np.arange(n)
    counts = np.bincount(codes)
    present = np.flatnonzero(counts)  # the segments present, in code order
    sizes = counts[present]
    floor = np.minimum(sizes, min(MIN_POINTS_PER_SEGMENT, max_points // len(present)))
    rest = sizes - floor  # n > max_points, so the rest is never empty
    share = (max_points - floor.sum()) * rest / rest.sum()
    extra = np.floor(share).astype(int)
    # largest remainders first, so the sample has exactly max_points rows
    for i in np.argsort(extra - share)[: max_points - floor.sum() - extra.sum()]:
        extra[i] += 1
    quota = floor + np.minimum(extra, rest)
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(codes == c), size=int(q), replace=False)
        for c, q in zip(present, quota, strict=True)
        if q
    ]
    return np.sort(np.concatenate(picked))


def scatter(
    assignments: pa.Table, max_points: int = MAX_POINTS, seed: int = 0, entity: str = "customers"
) -> dict[str, Any]:
    """The customers the scatter draws (columnar), with how they were chosen (the note names them ``entity``:
    the run's units, users for a SaaS run)."""
    by = "cluster" if "cluster" in assignments.column_names else "segment"
    idx = sample_indices(assignments.column(by), max_points, seed)
    total = assignments.num_rows
    sampled = len(idx) < total
    picked = assignments.take(pa.array(idx)) if sampled else assignments
    note = (
        f"showing {len(idx):,} of {total:,} {entity}, sampled per segment"
        if sampled
        else f"showing all {total:,} {entity}"
    )
    return {
        "total": total,
        "shown": len(idx),
        "sampled": sampled,
        "note": note,
        "points": _columns(picked, ("customer_id", "segment", *FEATURES)),
    }


def _columns(table: pa.Table, names: Sequence[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in names:
        if name not in table.column_names:
            continue
        values = table.column(name).to_pylist()
        if name in ("monetary", "distance"):
            values = [None if v is None else round(float(v), 4) for v in values]
        out[name] = values
    return out


# ------------------------------------------------------------------------------------------------ K choice
def k_choice(
    table: pa.Table, params: dict[str, Any], sample: int = CHOOSE_K_SAMPLE, entity: str = "customers"
) -> dict[str, Any] | None:
    """``rfmseg.model.choose_k.choose_k`` for the run's parameters, on at most ``sample`` customers and
    without the bootstrap stability check (it triples the cost; ``rfmseg choose-k`` runs it). Its note and
    error name the customers ``entity`` (the run's units).

    Returns None when there are too few customers to compare two K (choose_k needs K < customers)."""
    n = table.num_rows
    if n < 4:
        return None
    seed = int(params.get("random_state", 42))
    data = matrix(table.take(pa.array(sample_rows(n, sample, seed))))  # only the sampled customers' values
    # K-Means cannot find more clusters than there are distinct customers
    k_max = min(K_MAX, data.shape[0] - 1, np.unique(data, axis=0).shape[0])
    if k_max < K_MIN:
        return {
            "error": f"the {entity} have too few distinct RFM values to compare values of K",
            "chosen_k": params.get("k"),
        }
    try:
        # at most CHOOSE_K_SAMPLE customers: one thread is faster than OpenMP threads waiting for a busy core
        with threadpool_limits(1):
            result = choose_k(
                data,
                transform=str(params.get("transform") or "minmax"),
                k_min=K_MIN,
                k_max=k_max,
                n_init=min(int(params.get("n_init", 10)), CHOOSE_K_N_INIT),
                random_state=seed,
                sample_size=sample,
                stability=False,
            )
    except (ValueError, RfmsegError) as exc:
        # e.g. fewer distinct customers than some K: the run stands, the report says why the chart is missing
        return {"error": f"the K choice could not be computed on this data ({exc})", "chosen_k": params.get("k")}
    result["sampled_from"] = n
    scope = f"a seeded sample of {data.shape[0]:,} of {n:,}" if data.shape[0] < n else f"all {n:,}"
    result["note"] = (
        f"computed on {scope} {entity} with at most {CHOOSE_K_N_INIT} restarts per K, without the bootstrap "
        "stability check of `rfmseg choose-k`"
    )
    result["chosen_k"] = params.get("k")
    return _finite(result)


def pending_k_choice(run_id: str, k: Any) -> dict[str, Any]:
    """The K panel of the report a run writes into its folder: the K choice is not computed with the run.
    Its silhouette and Davies-Bouldin scores need scikit-learn, whose import alone (about 1.5-1.9 s here)
    took longer than the rest of a run below a million order lines; the explorer and `rfmseg report`
    compute it on first use and cache it in the run's choose_k.json."""
    return {
        "chosen_k": k,
        "pending": (
            f"Not computed with the run, to keep runs fast: `rfmseg report {run_id}` writes this report with the "
            "K charts, and the explorer (`rfmseg serve`) shows them; `rfmseg choose-k` gives the full analysis."
        ),
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN: ``value`` as its JSON reads back, non-finite floats as None (orjson writes them as null),
    tuples and numpy arrays as lists. One pass of orjson each way: a walk of the view in Python took 0.04 s on
    a report of 1M generated lines and 0.13 s on one embedding 19,000 customers."""
    return orjson.loads(orjson.dumps(value, option=JSON_OPTIONS))


def model_run_id(manifest: Mapping[str, Any], runs_dir: Path | None) -> str | None:
    """For a refresh (it fits nothing), the run that trained its model, when it is still in ``runs_dir``: the
    run whose K choice the refresh shows. None for any other run."""
    source = manifest.get("model_version") if manifest.get("kind") == "refresh" else None
    if source and runs_dir is not None and (Path(runs_dir) / str(source) / "manifest.json").exists():
        return str(source)
    return None


def k_choice_run(run: Run, runs_dir: Path | None) -> Run:
    """The run whose K choice ``run`` shows (:func:`model_run_id`, else its own)."""
    source = model_run_id(run.manifest, runs_dir)
    return get_run(source, Path(runs_dir)) if source and runs_dir is not None else run


def cached_k_choice(run: Run, runs_dir: Path | None, save: bool = True) -> dict[str, Any] | None:
    """The K choice ``run`` shows (:func:`k_choice_run`), from its ``choose_k.json``; computed the first time
    and, with ``save``, kept there (:func:`save_k_choice`)."""
    home = k_choice_run(run, runs_dir)
    path = home.path / CHOOSE_K_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    entity = Units.from_dict(home.summary.get("units")).entity
    result = k_choice(home.table("assignments"), home.manifest.get("params") or {}, entity=entity)
    if save:
        save_k_choice(run, runs_dir, result)
    return result


def save_k_choice(run: Run, runs_dir: Path | None, result: dict[str, Any] | None) -> None:
    """Keep a computed K choice in the ``choose_k.json`` of the run it belongs to, unless one is there."""
    path = k_choice_run(run, runs_dir).path / CHOOSE_K_FILE
    if result is not None and "pending" not in result and not path.exists():
        write_json_atomic(path, result)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` next to ``path`` and rename it into place, so readers never see half a file.
    A folder that cannot be written (read-only, full) is not an error: the result is simply not cached, and
    no partial file is left."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in FEATURES])


# ------------------------------------------------------------------------------------------------ runs
def run_meta(summary: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    manifest = manifest or {}
    return {
        "run_id": summary.get("run_id") or manifest.get("run_id"),
        "as_of": summary.get("as_of"),
        "created": manifest.get("created"),
        "kind": manifest.get("kind", "run"),
        "input": (manifest.get("input") or {}).get("path"),
        "n_customers": summary.get("n_customers"),
        "k": summary.get("k"),
        "transform": summary.get("transform"),
        "params": manifest.get("params") or {},
        "model_version": manifest.get("model_version"),
    }


def quality(summary: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Rows read, used and quarantined per reason, when the run read transactions (None otherwise)."""
    rows = summary.get("rows") or (manifest or {}).get("rows")
    if not isinstance(rows, dict) or "read" not in rows:
        return None
    quarantined = {str(k): int(v) for k, v in sorted((rows.get("quarantined") or {}).items())}
    return {
        "read": int(rows["read"]),
        "used": int(rows.get("used", 0)),
        "quarantined": quarantined,
        "quarantined_total": sum(quarantined.values()),
    }


@dataclass(frozen=True)
class Earlier:
    """The runs before a run: ``runs`` in timeline order (for the search history) and ``previous``, the run the
    transitions start from (the last run of the timeline with an earlier date, as ``rfmseg transitions``)."""

    runs: list[RunMeta]
    previous: RunMeta | None


def earlier_runs(runs_dir: Path | None, run_id: str, manifest: Mapping[str, Any]) -> Earlier:
    """The runs of ``runs_dir`` before the run ``run_id`` (which need not be committed yet)."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return Earlier([], None)
    created = datetime.fromisoformat(manifest["created"]) if manifest.get("created") else datetime.now(UTC)
    day = date.fromisoformat(manifest["as_of"]) if manifest.get("as_of") else created.date()
    key = (day, created, run_id)
    runs = [m for m in run_metas(runs_dir) if m.run_id != run_id and m.key < key]
    before = [m for m in timeline(runs_dir) if m.run_id != run_id and m.date < day]
    return Earlier(runs, before[-1] if before else None)


def transitions(
    con: duckdb.DuckDBPyConnection, previous: RunMeta, current: pa.Table, current_id: str, current_as_of: str | None
) -> dict[str, Any]:
    """Customers and revenue moving from each segment of ``previous`` to each segment of ``current``, as Sankey
    links; customers in one run only come from ``(new)`` or go to ``(gone)``, as in ``rfmseg transitions``.
    Revenue is the current run's monetary (the previous run's for those gone)."""
    con.register("_current_assignments", current.select(["customer_id", "segment", "monetary"]))
    try:
        rows = con.execute(
            f"SELECT coalesce(p.segment, '{NEW}'), coalesce(c.segment, '{GONE}'), count(*), "
            "coalesce(sum(coalesce(c.monetary, p.monetary)), 0) "
            "FROM (SELECT customer_id, segment, monetary FROM read_parquet(?)) p "
            "FULL OUTER JOIN _current_assignments c ON p.customer_id = c.customer_id "
            "GROUP BY ALL ORDER BY 1, 2",
            [previous.file],
        ).fetchall()
    finally:
        con.unregister("_current_assignments")
    both = [(a, b, n) for a, b, n, _ in rows if a != NEW and b != GONE]
    return {
        "from_run": previous.run_id,
        "to_run": current_id,
        "from_as_of": previous.date.isoformat(),
        "to_as_of": current_as_of,
        "links": [
            {"source": a, "target": b, "customers": int(n), "revenue": round(float(m), 2)} for a, b, n, m in rows
        ],
        "customers": sum(n for _, _, n in both),
        "moved": sum(n for a, b, n in both if a != b),
        "new": sum(int(n) for a, _, n, _ in rows if a == NEW),
        "gone": sum(int(n) for _, b, n, _ in rows if b == GONE),
    }


def history(
    con: duckdb.DuckDBPyConnection,
    earlier: list[RunMeta],
    current: pa.Table,
    current_id: str,
    current_as_of: str | None,
    ids: pa.Array,
) -> dict[str, Any]:
    """Segment and RFM values of the customers ``ids`` in the last runs up to ``current``, for the report's
    customer search: ``{"runs": [{run_id, as_of}], "customers": {id: [[run index, segment, r, f, m], ...]}}``."""
    runs = earlier[-(HISTORY_RUNS - 1) :]
    meta: list[dict[str, str | None]] = [{"run_id": r.run_id, "as_of": r.date.isoformat()} for r in runs]
    meta.append({"run_id": current_id, "as_of": current_as_of})
    con.register("_ids", pa.table({"customer_id": ids}))
    con.register("_current_assignments", current.select(["customer_id", "segment", *FEATURES]))
    try:
        parts = [
            f"SELECT {i} AS run, customer_id, segment, recency_days, frequency, monetary FROM read_parquet(?) "
            "WHERE customer_id IN (SELECT customer_id FROM _ids)"
            for i in range(len(runs))
        ]
        parts.append(
            f"SELECT {len(runs)} AS run, customer_id, segment, recency_days, frequency, monetary "
            "FROM _current_assignments WHERE customer_id IN (SELECT customer_id FROM _ids)"
        )
        query = " UNION ALL ".join(parts) + " ORDER BY customer_id, run"
        found = con.sql(query, params=[r.file for r in runs]).to_arrow_table()
    finally:
        con.unregister("_ids")
        con.unregister("_current_assignments")
    return {"runs": meta, "customers": _by_customer(found)}


def _by_customer(found: pa.Table) -> dict[Any, list[list[Any]]]:
    """``{id: [[run, segment, r, f, m], ...]}`` from the history query's rows (run, customer_id, segment, r, f, m;
    ordered by customer, so each customer's rows are consecutive). Columns to Python lists and one slice per
    customer: at 19,324 customers 0.02-0.03 s where a loop over DuckDB's row tuples with a dict look-up per row
    took 0.03-0.07 s (the spread is the garbage collector, which has a tuple per row less to track here)."""
    if not found.num_rows:
        return {}
    run, cid, seg, r, f, m = (found.column(i).to_pylist() for i in range(6))
    rows = list(map(list, zip(run, seg, r, f, [round(float(v), 2) for v in m], strict=True)))
    starts = [0, *compress(range(1, len(cid)), map(ne, cid[1:], cid))]  # where the customer changes
    ends = [*starts[1:], len(rows)]
    return {cid[s]: rows[s:e] for s, e in zip(starts, ends, strict=True)}


def pending_meta(folder: Path, summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> RunMeta:
    """The timeline entry of a run being written in ``folder`` (not committed yet: no manifest.json there)."""
    created = datetime.fromisoformat(manifest["created"]) if manifest.get("created") else datetime.now(UTC)
    return RunMeta(
        run_id=str(summary.get("run_id") or manifest.get("run_id")),
        kind=str(manifest.get("kind", "run")),
        as_of=date.fromisoformat(str(manifest["as_of"])) if manifest.get("as_of") else None,
        created=created,
        model_version=str(manifest.get("model_version") or summary.get("run_id")),
        file=str(Path(folder) / "assignments.parquet"),
        segments=tuple(str(s["name"]) for s in summary.get("segments") or []),
    )


def embedded_warnings(runs_dir: Path | None, run: str | RunMeta, cap: int = WARNING_CUSTOMERS) -> dict[str, Any] | None:
    """The early warnings of ``run`` (:func:`rfmseg.runs.warnings.warnings`, default parameters) for a report,
    each warning's customers cut to the first ``cap`` (``count`` stays the whole number). None without a
    registry, or when they cannot be computed: the report then leaves the panel out."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return None
    try:
        found = early.warnings(runs_dir, run)
    except (RfmsegError, duckdb.Error):
        return None
    for w in found.get("warnings") or []:
        w["customers"] = (w.get("customers") or [])[:cap]
    found["customers_cap"] = cap
    return found


def warnings_left_out(
    run_id: str, customers: int, entity: str = "customers", limit: int = WARNINGS_LIMIT
) -> dict[str, Any]:
    """What a run folder's report embeds instead of the warnings of a run over :data:`WARNINGS_LIMIT`."""
    return {
        "run_id": run_id,
        "warnings": [],
        "note": (
            f"This report was written with run {run_id}, whose {customers:,} {entity} are more than the "
            f"{limit:,} a run's own report gathers the early warnings for; the explorer (rfmseg serve), "
            f"`rfmseg watch --run {run_id}` and `rfmseg report {run_id} -o FILE` show them."
        ),
    }


# ------------------------------------------------------------------------------------------------ the view
def build_view(
    summary: Mapping[str, Any],
    manifest: Mapping[str, Any] | None,
    assignments: pa.Table,
    *,
    k_choice_result: dict[str, Any] | None,
    earlier: Earlier | None = None,
    searchable: bool = False,
    max_points: int = MAX_POINTS,
    warnings: dict[str, Any] | None = None,
    finite: bool = True,
) -> dict[str, Any]:
    """Everything the explorer and the report draw for one run.

    ``earlier`` are the runs before this one (for the Sankey from the previous run and the search history);
    ``searchable`` embeds the customers (all of them up to ``SEARCH_LIMIT``, else the scatter's sample) and
    their history, so a report can search without a server; ``warnings`` are the early warnings a report
    embeds (:func:`embedded_warnings`).

    The view is returned as its JSON reads back (:func:`_finite`: non-finite floats as None, tuples and numpy
    values as lists and numbers). A caller that only writes it with orjson (:func:`~rfmseg.report.html.embed_json`,
    which writes the same text either way) passes ``finite=False`` to skip that round trip: the view is then
    the dict as built, its parts shared with ``summary`` and ``manifest`` and NaN left as NaN.
    """
    run_id = str(summary.get("run_id"))
    earlier = earlier or Earlier([], None)
    points = scatter(assignments, max_points, entity=Units.from_dict(summary.get("units")).entity)
    view: dict[str, Any] = {
        "format": 1,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": run_meta(summary, manifest),
        "summary": summary,
        "scatter": points,
        "choose_k": k_choice_result,
        # the summary carries the curve; runs written before it did get it computed here
        "pareto": summary.get("pareto") or pareto_curve(assignments.column("monetary").to_numpy(zero_copy_only=False)),
        "quality": quality(summary, manifest),
        "transitions": None,
        "search": None,
        "warnings": warnings,
    }
    con = duckdb.connect()
    try:
        if earlier.previous is not None:
            view["transitions"] = transitions(con, earlier.previous, assignments, run_id, summary.get("as_of"))
        if searchable:
            if assignments.num_rows <= SEARCH_LIMIT:
                table, complete = assignments, True
            else:
                ids = set(points["points"]["customer_id"])
                table = assignments.filter(pc.is_in(assignments.column("customer_id"), pa.array(list(ids))))
                complete = False
            view["search"] = {
                "complete": complete,
                "customers": table.num_rows,
                "history": history(
                    con, earlier.runs, table, run_id, summary.get("as_of"), table.column("customer_id").combine_chunks()
                ),
            }
            _add_forecast(view["search"], table)
    finally:
        con.close()
    return _finite(view) if finite else view


def _add_forecast(search: dict[str, Any], table: pa.Table) -> None:
    """Append the :data:`FORECAST` columns the run carries to each customer's row of this run (the last of its
    history rows) and name them in ``search["forecast"]``; nothing when the run has none (or only nulls)."""
    names = [c for c in FORECAST if c in table.column_names and table.column(c).null_count < table.num_rows]
    if not names:  # a run without the rhythm model has the columns, all null
        return
    rows = search["history"]["customers"]
    columns = [table.column(c).to_pylist() for c in names]
    for cid, *values in zip(table.column("customer_id").to_pylist(), *columns, strict=True):
        rows[cid][-1].extend(None if v is None else round(float(v), 4) for v in values)
    search["forecast"] = names


def view_for_run(
    run: Run, runs_dir: Path | None, *, searchable: bool = False, save_k_choice: bool = True
) -> dict[str, Any]:
    """The view of a stored run (computing its K choice on first use, and keeping it with ``save_k_choice``);
    a ``searchable`` one (a report's) embeds the early warnings too."""
    summary = run.summary
    manifest = run.manifest
    assignments = run.table("assignments")
    return build_view(
        summary,
        manifest,
        assignments,
        k_choice_result=cached_k_choice(run, runs_dir, save=save_k_choice),
        earlier=earlier_runs(runs_dir, run.run_id, manifest),
        searchable=searchable,
        warnings=embedded_warnings(runs_dir, run.run_id) if searchable else None,
    )
