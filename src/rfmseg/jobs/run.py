"""``rfmseg run``: read -> validate -> RFM -> fit -> assign -> profile -> write the run (-> publish).

``segment`` is the Python API behind ``rfmseg run`` and ``rfmseg demo`` (``rfmseg.segment``). The engine
(:mod:`rfmseg.engines`) reads, judges and fits; the scoring, the profile and the run folder are the same
code for every engine and every kind of run (:mod:`rfmseg.jobs.writer`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from threadpoolctl import threadpool_limits

from rfmseg.engines import open_engine
from rfmseg.errors import ParameterError
from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS, FeatureSet
from rfmseg.io import Policy
from rfmseg.jobs.publish import publish_computed
from rfmseg.jobs.rhythm import fit_model_rhythm, rhythm_model
from rfmseg.jobs.writer import build_summary, rhythm_summary, write_run
from rfmseg.model import SegmentModel
from rfmseg.model.choose_k import SINGLE_THREAD_BELOW
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary
from rfmseg.model.rhythm import clv_library
from rfmseg.model.scoring import OFF, rfm_matrix, score
from rfmseg.presets import Preset, build_policy, get_preset, known_layout
from rfmseg.profile import net_nonpositive, sufficiency_warnings
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, RunWriter, new_run_id
from rfmseg.runs.artifacts import Manifest, Summary
from rfmseg.runs.manifest import provenance, rfm_sha256, run_manifest
from rfmseg.timing import Timer


def preload_run_modules() -> None:
    """Import what a run uses after reading its data, on a thread while DuckDB reads and judges it: pandas,
    for the profile (and for pyarrow's conversions to numpy, which import it). The fit and the naming import
    nothing more (:mod:`rfmseg.model.kmeans`, :func:`rfmseg.model.naming.cheapest_pairs`)."""
    import pandas  # noqa: F401


@dataclass
class RunResult:
    run_id: str
    run: Run | None
    summary: Summary
    manifest: Manifest
    model: SegmentModel
    rfm: pa.Table
    assignments: pa.Table

    @property
    def path(self) -> Path | None:
        return self.run.path if self.run else None

    def segment_of(self, customer_id: str) -> str:
        ids = self.assignments.column("customer_id").to_pylist()
        return self.assignments.column("segment")[ids.index(customer_id)].as_py()


def segment(
    source: Any,
    columns: dict[str, str] | None = None,
    *,
    as_of: str | date | None = None,
    k: int = 4,
    transform: str | None = None,
    n_init: int = 10,
    random_state: int = 42,
    bad_rows: str | None = None,
    policy: Policy | None = None,
    vocabulary: Vocabulary | None = None,
    currency: str | None = None,
    runs_dir: str | Path | None = DEFAULT_RUNS_DIR,
    input_label: str | None = None,
    preset: str | Preset | None = None,
    returns: str | None = None,
    date_format: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    max_quarantine: float | None = None,
    feature_set: FeatureSet | None = None,
    sample_size: int | None = None,
    engine: str = "local",
    spark_master: str | None = None,
    output: str | None = None,
    store: str | None = None,
    rhythm: bool | None = None,
) -> RunResult:
    """Segment the customers of ``source`` (path, pandas DataFrame or Arrow table).

    ``columns`` maps canonical fields (customer_id, order_id, order_date, amount, or quantity + unit_price;
    or recency_days, frequency, monetary for a ready RFM table) to the source's column names.
    With ``runs_dir=None`` nothing is written.
    ``preset`` (a name such as ``"online-retail"``, or a Preset) supplies the column map, the row policy, the
    transform, vocabulary and currency; arguments given explicitly win. ``returns`` is ``net`` or ``exclude``.
    ``feature_set`` (default: the preset's) defines R, F and M; ``source`` may also be a
    :class:`rfmseg.io.sources.SourceSpec` (a file glob, a PostgreSQL query). ``date_format``, ``decimal``
    (``.`` or ``,``), ``encoding`` and ``sheet`` say how the source is written (default: detected, or refused
    when it reads two ways); ``max_quarantine`` is the share of rows one quarantine reason may take.
    ``store``: the profile store URL to publish the run to once it is written (``manifest["publish"]`` is
    the report): from the Spark executors on engine "spark", from this process on the local engine, which
    needs ``runs_dir`` for the run it publishes (:func:`rfmseg.jobs.publish.publish_computed`).
    ``rhythm=True`` also fits each customer's rhythm model where the preset says it applies (p_alive, expected
    orders and value in the assignments; needs the clv extra; :mod:`rfmseg.jobs.rhythm`).
    """
    engine_ = open_engine(engine, spark_master=spark_master, output=output)
    if store is not None:
        from rfmseg.stores import check_store_url

        check_store_url(store)  # a URL no store opens from is refused before the run is computed
        engine_.check_publish(writes_folder=runs_dir is not None)
    started = datetime.now(UTC)
    timer = Timer()
    timer.watch(engine_)  # for a progress display, when one observes the stages
    preset = get_preset(preset) if isinstance(preset, str) else preset
    policy = build_policy(
        preset,
        policy,
        bad_rows,
        returns,
        date_format,
        decimal=decimal,
        encoding=encoding,
        sheet=sheet,
        max_quarantine=max_quarantine,
    )
    transform = transform or (preset.transform if preset else "minmax")
    currency = currency or (preset.currency if preset else "$")
    vocabulary = vocabulary or (preset.vocabulary if preset else DEFAULT_VOCABULARY)
    feature_set = feature_set or (preset.features if preset else DEFAULT_FEATURES)
    units = preset.units if preset else DEFAULT_UNITS
    rhythm_choice = rhythm_model(preset, rhythm)  # refused here, before reading, when it cannot be fitted
    if rhythm_choice[0] is not None and engine != "local":
        raise ParameterError("{rhythm} runs on the local engine only; run without it on Spark", param="rhythm")
    model = SegmentModel(
        k=k,
        transform=transform,
        n_init=n_init,
        random_state=random_state,
        vocabulary=vocabulary,
        sample_size=sample_size,
    )
    run_id = new_run_id(started)
    writer: RunWriter | None = None
    background = ThreadPoolExecutor(4 if rhythm_choice[0] else 3)
    # DuckDB reads and judges the data without the GIL: what the profile imports (pandas) is imported meanwhile
    # (and pymc-marketing, seconds of imports, for the rhythm model)
    background.submit(preload_run_modules)
    if rhythm_choice[0]:
        background.submit(clv_library)
    try:
        prepared = engine_.load_rfm(source, columns, as_of, policy, timer, preset, feature_set)
        rfm = prepared.rfm
        # the run's fingerprint and its rfm.parquet need only the RFM table: they are computed on threads of
        # their own (hashing and Parquet encoding release the GIL) while the model is fitted
        writer = RunWriter(Path(runs_dir), run_id) if runs_dir is not None else None
        digest = background.submit(rfm_sha256, rfm)
        files: dict[str, Future[None]] = {}
        if writer is not None:
            files["rfm.parquet"] = background.submit(writer.parquet, "rfm.parquet", rfm)
            if engine_.quarantine_alongside:
                # written meanwhile (from the read's table of rows set aside, or a scan of the judged rows):
                # the engine's connection is idle until the run is written
                files["quarantine.parquet"] = background.submit(
                    engine_.write_quarantine, prepared, writer.path("quarantine.parquet")
                )
        x = rfm_matrix(rfm)
        # one thread below 100,000 customers: OpenMP threads spin-waiting for a busy core made this stage
        # 0.6-3 s instead of 0.05 s on the Online Retail run (bench/bench_online_retail.py)
        with (
            timer.stage("fit", f"{x.shape[0]:,} customers"),
            threadpool_limits(1 if x.shape[0] < SINGLE_THREAD_BELOW else None),
        ):
            assigned = engine_.fit(model, x)
        with timer.stage("rhythm", "p_alive, expected orders and value") if rhythm_choice[0] else nullcontext():
            rhythm_info = fit_model_rhythm(model, rhythm_choice, rfm, prepared.as_of, random_state)
        with timer.stage("assign"):
            # a first segmentation labels the customers it was fitted on by their clusters: no cold start
            assignments = score(model, rfm, prepared.as_of, OFF, x=x, assigned=assigned)
        # encoding 9.6M assignments takes seconds on one core: it runs while the profile and report are made
        if writer is not None:
            files["assignments.parquet"] = background.submit(writer.parquet, "assignments.parquet", assignments)
        with timer.stage("profile"):
            import pandas as pd  # imported on a thread meanwhile (preload_run_modules)

            segments = pd.Categorical.from_codes(assigned.labels, categories=model.names_)
            summary = build_summary(
                run_id,
                prepared.as_of,
                model,
                rfm,
                segments,
                currency,
                units,
                x,
                preset=preset.name if preset else None,
                rows=prepared.rows_summary(),
                warnings=sufficiency_warnings(rfm, k, currency),
            )
            summary["net_nonpositive"] = net_nonpositive(rfm)
            summary["rhythm"] = rhythm_summary(assignments, rhythm_info)
            layout = known_layout(prepared.source.columns, preset)
            if layout is not None:  # a public data set run without the preset made for it
                summary["notes"] = [layout.note()]
        model.provenance_ = provenance(
            run_id, started, prepared.as_of, prepared.source.sha256, rfm, data_sha256=digest.result()
        )
        manifest = run_manifest(
            run_id=run_id,
            kind="run",
            model_version=run_id,
            started=started,
            prepared=prepared,
            rfm=rfm,
            data_sha256=model.provenance_["data_sha256"],
            input_label=input_label,
            params={
                "k": k,
                "transform": transform,
                "n_init": n_init,
                "random_state": random_state,
                "sample_size": sample_size,
                "bad_rows": policy.bad_rows,
                "preset": preset.name if preset else None,
                "preset_definition": preset.to_dict() if preset else None,
                "features": feature_set.to_dict(),
                "returns": policy.returns,
            },
            warnings=summary["warnings"],
            net_nonpositive=summary["net_nonpositive"],
            model={"inertia": model.inertia_, "n_iter": model.n_iter_, "fit": model.fit_info_},
            engine=engine_.describe(),
            rhythm=rhythm_info,
        )
        tables = engine_.write_output(run_id, model, timer)
        if tables is not None:
            manifest["output"] = tables
        run = None
        if writer is not None:
            with timer.stage("write"):
                run = write_run(
                    writer, engine_, prepared, model, rfm, assignments, summary, manifest, timer, files=files
                )
        if store is not None:
            with timer.stage("publish"):
                manifest["publish"] = publish_computed(engine_, manifest, model, assignments, store, run)
        manifest["timings"] = timer.stages
        return RunResult(run_id, run, summary, manifest, model, rfm, assignments)
    except BaseException:
        background.shutdown(wait=True)  # nothing may still be writing into the folder removed next
        if writer is not None:
            writer.abort()
        engine_.discard_output()
        raise
    finally:
        background.shutdown(wait=True)
        engine_.close()
