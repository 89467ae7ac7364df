"""The Spark engine: the same analysis with Spark SQL and MLlib, for data that outgrows one machine.

What runs where:

* on Spark (the executors): reading the transactions (Parquet, CSV or any Hadoop path: ``s3a://``,
  ``hdfs://``...), typing and judging every row with the same rules as the local engine (each row used or
  quarantined with one reason code), the RFM aggregation (the SQL text of :func:`rfmseg.features.rfm_sql`,
  in its Spark dialect), the transform applied to every customer (the same :class:`Transform` code, in
  ``mapInPandas``), MLlib's K-Means (k-means||, seeded), and with ``output`` the customer tables written to
  a Hadoop path;
* on the driver: the RFM table per customer, collected as Arrow (about 100 bytes per customer), on which
  the transform is fitted, the clusters are named (the same naming code, on the MLlib centroids) and the
  profile, insights and run folder are made, exactly as with the local engine;
* publishing to the online profile store (:meth:`SparkEngine.publish_from_executors`): begun and committed
  on the driver, the customers assigned and staged in batches by the executors (a staged publish).

Beside it: ``spark_dialect`` (the DuckDB text of the rules and features in Spark SQL: :func:`spark_sql`) and
``spark_session`` (the session, URIs, errors, progress, a CSV's layout and the formats of its text).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rfmseg import digest, features, schema
from rfmseg.engines.base import publish_table
from rfmseg.engines.spark_dialect import (
    SPARK,
    SparkIntake,
    first_problem,
    is_numeric,
    normalise_rfm,
    sorted_by_customer,
    spark_case,
    spark_ident,
    spark_sql,
    spark_to_arrow,
)
from rfmseg.engines.spark_session import (
    URI,
    SparkError,
    csv_layout,
    detect_formats,
    executor_error,
    from_arrow,
    get_session,
    hadoop_uri,
    spark_why,
    task_progress,
    with_row_numbers,
)
from rfmseg.errors import InputError, ParameterError, RfmsegError
from rfmseg.io.intake import Intake, parse_as_of
from rfmseg.io.passes import check_field_columns, check_shares, check_whole_columns, problem_error
from rfmseg.io.readers import FORMATS, Source, check_file, read_xlsx, sql_string, to_arrow
from rfmseg.io.rules import AFTER_AS_OF, RETURNS_ONLY, SOURCE_COLUMNS, SOURCE_VIEW, Policy, Rule
from rfmseg.io.validate import resolve_columns, row_rules, typed_columns
from rfmseg.io.views import VIEWS
from rfmseg.model.kmeans import nearest
from rfmseg.model.scoring import REASON_MODEL, RHYTHM_COLUMNS
from rfmseg.model.segment_model import Assignment, distinct_rows, too_few_distinct
from rfmseg.model.transform import Transform
from rfmseg.timing import Percent, Timer

KMEANS_MAX_ITER = 50
KMEANS_TOL = 1e-6
KMEANS_INIT_STEPS = 2
CUSTOMERS_PER_PARTITION = 250_000
"""Customers per partition of the RFM table once it is computed (at most the partitions it had)."""
PUBLISH_BATCH_ROWS = 50_000
"""Customers per batch an executor stages when it publishes (one transaction or HSET stream each)."""


class SparkEngine:
    """``rfmseg.segment(..., engine="spark")``: read, judge, RFM and K-Means on Spark (an
    :class:`rfmseg.engines.base.Engine`)."""

    quarantine_alongside = False
    """the quarantine file is a Spark job, written after the K-Means jobs rather than beside them"""

    def __init__(self, spark_master: str | None = None, output: str | None = None, spark: Any = None) -> None:
        self.master = spark_master
        self.output = hadoop_uri(output.rstrip("/")) if output else None
        self._spark = spark
        self._owned = False
        self._written: str | None = None
        self._rfm_df: Any = None
        self._rfm_all: Any = None
        self._customers = 0

    # --------------------------------------------------------------------------------------- session
    @property
    def spark(self) -> Any:
        if self._spark is None:
            self._spark, self._owned = get_session(self.master)
        return self._spark

    def describe(self) -> dict[str, Any]:
        sc = None
        try:
            sc = self.spark.sparkContext
        except Exception:  # Spark Connect sessions have no SparkContext
            sc = None
        return {
            "name": "spark",
            "master": sc.master if sc is not None else os.environ.get("SPARK_REMOTE", self.master),
            "spark_version": self.spark.version,
        }

    def check_publish(self, writes_folder: bool) -> None:
        """Nothing to refuse: the executors publish what they compute, with or without a run folder."""

    def track_progress(self) -> Percent:
        """The share of the tasks of the running Spark stages that are done (:func:`task_progress`; nothing
        before the session starts with the first read)."""
        return lambda: task_progress(self._spark) if self._spark is not None else None

    def close(self) -> None:
        if self._rfm_all is not None:
            with contextlib.suppress(Exception):  # the session may already be gone
                self._rfm_all.unpersist()
        if self._owned and self._spark is not None:
            self._spark.stop()
        self._spark, self._owned = None, False

    # --------------------------------------------------------------------------------------- reading
    def _read(self, source: Any) -> tuple[Any, str, str | None, str]:
        """(DataFrame, label, sha256, format) for a path, URI, pandas DataFrame or Arrow table."""
        spark = self.spark
        if isinstance(source, (str, Path)):
            text = hadoop_uri(str(source))
            remote = bool(URI.match(text)) and not text.startswith("file:")
            local = None if remote else Path(text.removeprefix("file:"))
            suffix = Path(text).suffix.lower()
            fmt = FORMATS.get(suffix) or ("parquet" if local is not None and local.is_dir() else None)
            if fmt is None:
                raise InputError(f"{text}: unknown file type '{suffix}'; use .csv or .parquet (or a Parquet folder)")
            sha = None
            if local is not None:
                if local.is_dir():
                    if not any(local.glob("*.parquet")):
                        raise InputError(f"{local}: a folder without .parquet files; give a file or a Parquet folder")
                else:
                    check_file(local, fmt)
                    sha = digest.file_sha256(local)
            if fmt == "xlsx":
                if local is None:
                    raise InputError(f"{text}: workbooks are read from local files only; export it as Parquet")
                return from_arrow(self.spark, read_xlsx(local)), str(local), sha, fmt
            target = text if remote else str(local.resolve())  # type: ignore[union-attr]
            try:
                if fmt == "parquet":
                    df = spark.read.parquet(target)
                else:
                    sep, charset = csv_layout(local, suffix)
                    df = spark.read.csv(target, header=True, inferSchema=False, sep=sep, encoding=charset)
                df.schema  # noqa: B018  (reads the footer / header now, so a bad file fails here)
            except Exception as exc:
                first = spark_why(exc)
                hint = "; for s3a:// and gs:// Spark needs the file system's jars (e.g. hadoop-aws)" if remote else ""
                raise InputError(f"{text}: cannot be read as {fmt} by Spark ({first}); check the path{hint}") from None
            return df, text if remote else str(local), sha, fmt
        table = to_arrow(source)
        if table.num_rows == 0:
            raise InputError("DataFrame: has no rows; give transactions to segment")
        return from_arrow(self.spark, table), "DataFrame", None, "dataframe"

    # --------------------------------------------------------------------------------------- judging
    def load_rfm(
        self,
        source: Any,
        columns: dict[str, str] | None,
        as_of: str | date | None,
        policy: Policy,
        timer: Any,
        preset: Any,
        feature_set: Any,
    ) -> SparkIntake:
        """Read and judge ``source`` on Spark and compute its RFM table there; the table comes back as Arrow.
        An input error about a public data set's file run without its preset suggests the preset."""
        from rfmseg.presets import known_layout

        self._source_columns: tuple[str, ...] = ()
        try:
            return self._load_rfm(source, columns, as_of, policy, timer, preset, feature_set)
        except InputError as exc:
            layout = known_layout(self._source_columns, preset)
            if layout is None:
                raise
            raise exc.with_hint(layout.hint(), param="preset") from None

    def _load_rfm(
        self,
        source: Any,
        columns: dict[str, str] | None,
        as_of: str | date | None,
        policy: Policy,
        timer: Any,
        preset: Any,
        feature_set: Any,
    ) -> SparkIntake:
        from rfmseg.io.sources import SourceSpec
        from rfmseg.presets import with_features

        if isinstance(source, SourceSpec):
            raise ParameterError("the Spark engine reads files and Hadoop paths; give the path, not a source spec")
        fs = feature_set or features.DEFAULT_FEATURES
        policy = with_features(policy, fs)
        with timer.stage("spark_session"):
            spark = self.spark
        with timer.stage("read"):
            df, label, sha, fmt = self._read(source)
            types = {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name != "_row"}
            src = Source("rfmseg_src", types, label, sha, fmt)
            self._source_columns = tuple(src.columns)
            if preset is not None:
                columns = preset.columns_for(src.columns, columns)
            kind, mapping = resolve_columns(src, columns, policy.fields, policy.needs_amount)
            src, policy = detect_formats(df, src, mapping, policy)  # day-first dates, decimal commas
            if kind == "rfm":
                raise ParameterError(
                    f"{label}: is an RFM table; the Spark engine computes RFM from transactions, use {{engine}} local",
                    param="engine",
                )
            df = with_row_numbers(df)
            df.createOrReplaceTempView("rfmseg_src")
        with timer.stage("validate"):
            at, rows_read, quarantined = self._judge(spark, src, mapping, policy, parse_as_of(as_of))
        with timer.stage("rfm"):
            sql = features.rfm_sql("rfmseg_canon", at, fs, dialect="spark")
            self._rfm_all = spark.sql(spark_sql(sql)).persist()
            self._rfm_df = self._rfm_all.filter("last_order_date IS NOT NULL")
            quarantined = self._settle_returns_only(spark, src, rows_read, quarantined, policy)
            rfm = sorted_by_customer(normalise_rfm(spark_to_arrow(self._rfm_df)))
        self._customers = rfm.num_rows  # what a publish from the executors must deliver
        # the customer stages (transform, K-Means, assignment, publish) need a few partitions, not the shuffle's 200
        # (a 200-customer fit over Spark Connect took 40 s: 200 Python tasks per pass); coalesce never adds any
        self._rfm_df = self._rfm_df.coalesce(max(1, -(-rfm.num_rows // CUSTOMERS_PER_PARTITION)))
        return SparkIntake(
            "transactions", src, mapping, at, rows_read, quarantined, "rfmseg_canon", rfm, spark, tuple(src.columns)
        )

    def _judge(
        self, spark: Any, src: Source, mapping: dict[str, str], policy: Policy, as_of: date | None
    ) -> tuple[date, int, dict[str, int]]:
        """Judge every row on Spark: the as-of date, the rows read and the rows set aside per reason."""
        t = src.columns
        originals = ", ".join(spark_ident(c) for c in src.columns)
        extra = "".join(
            f", {spark_sql(sql).replace(SOURCE_COLUMNS, originals).replace(SOURCE_VIEW, src.name)} AS {name}"
            for name, sql in policy.extra_columns
        )
        spark.sql(
            f"CREATE OR REPLACE TEMP VIEW rfmseg_typed AS SELECT _row, {typed_columns(mapping, t, policy, SPARK)}"
            f"{extra} FROM rfmseg_src"
        )
        spark.sql(
            "CREATE OR REPLACE TEMP VIEW rfmseg_typed_r AS SELECT *, "
            f"coalesce({spark_sql(policy.returns_condition)}, FALSE) AS is_return FROM rfmseg_typed"
        )
        rules, has_returns = row_rules(policy, mapping, text_id=not is_numeric(t[mapping[schema.CUSTOMER_ID]]))
        spark.sql(
            f"CREATE OR REPLACE TEMP VIEW rfmseg_judged AS SELECT *, {spark_case(rules)} AS _reason FROM rfmseg_typed_r"
        )
        numbers = [f.name for f in policy.fields if f.kind == "number"]
        extra_counts = "".join(f", count({n})" for n in numbers)
        groups = spark.sql(
            "SELECT _reason, is_return, CASE WHEN _reason IS NULL THEN CAST(ts AS DATE) END AS d, count(*), "
            f"count(ts), count(amount){extra_counts} FROM rfmseg_judged GROUP BY ALL"
        ).collect()
        rows = [tuple(g) for g in groups]
        sums = [sum(int(g[i]) for g in rows) for i in (3, 4, 5)]
        check_whole_columns(src, mapping, (sums[0], sums[1], sums[2]), policy.date_format)
        known = tuple(sum(int(g[6 + i]) for g in rows) for i in range(len(numbers)))
        check_field_columns(src, mapping, policy.fields, known)
        if as_of is None:
            used = [(g[1], g[2]) for g in rows if g[0] is None and g[2] is not None]
            last = max((d for ret, d in used if not ret), default=None) or max((d for _, d in used), default=None)
            if last is None:
                raise problem_error(
                    f"{src.label}: no usable order rows; {first_problem(spark, rules, 'rfmseg_judged')}"
                )
            as_of = last + timedelta(days=1)
        after = Rule(
            AFTER_AS_OF.reason,
            AFTER_AS_OF.condition.format(as_of=as_of.isoformat()),
            AFTER_AS_OF.meaning,
            AFTER_AS_OF.fix,
        )
        counts: dict[str, int] = {}
        for reason, _, d, n, *_ in rows:
            key = reason if reason is not None else (after.reason if d is not None and d > as_of else "")
            counts[key] = counts.get(key, 0) + int(n)
        self._late: tuple[Rule, ...] = (after,)
        self._rules = (*rules, after)
        self._has_returns = has_returns
        self._create_canon(spark, self._late)
        used_rows = counts.pop("", 0)
        if counts and policy.bad_rows == "error":
            raise problem_error(f"{src.label}: {first_problem(spark, self._rules)}")
        if used_rows == 0:
            raise problem_error(f"{src.label}: no usable order rows; {first_problem(spark, self._rules)}")
        check_shares(src.label, used_rows + sum(counts.values()), counts, policy, self._rules)
        return as_of, used_rows + sum(counts.values()), counts

    def _create_canon(self, spark: Any, late: tuple[Rule, ...]) -> None:
        cols = ", ".join(spark_ident(c) for c in spark.table("rfmseg_judged").columns if c != "_reason")
        spark.sql(
            f"CREATE OR REPLACE TEMP VIEW rfmseg_canon AS SELECT {cols}, "
            f"coalesce(_reason, {spark_case(late)}) AS _reason FROM rfmseg_judged"
        )

    def _settle_returns_only(
        self, spark: Any, src: Source, rows_read: int, quarantined: dict[str, int], policy: Policy
    ) -> dict[str, int]:
        """The returns-only rule (see rfmseg.io.intake): the customers the RFM pass found without an order
        are left out of the table (the query above) and their rows quarantined here; the counts with them."""
        if not (self._has_returns and policy.returns == "net"):
            return quarantined
        orphans = self._rfm_all.filter("last_order_date IS NULL").select("customer_id")
        if orphans.isEmpty():
            return quarantined
        # cut the lineage (it goes through the canon view, which is redefined on these ids just below)
        orphans.localCheckpoint().createOrReplaceTempView(VIEWS.returns_only)  # the name RETURNS_ONLY reads
        self._late = (*self._late, RETURNS_ONLY)
        self._create_canon(spark, self._late)
        n = spark.sql(f"SELECT count(*) FROM rfmseg_canon WHERE _reason = {sql_string(RETURNS_ONLY.reason)}")
        quarantined = {**quarantined, RETURNS_ONLY.reason: int(n.collect()[0][0])}
        rules = (*self._rules, RETURNS_ONLY)
        if policy.bad_rows == "error":
            raise problem_error(f"{src.label}: {first_problem(spark, rules)}")
        if rows_read - sum(quarantined.values()) == 0:
            raise problem_error(f"{src.label}: no usable order rows; {first_problem(spark, rules)}")
        return quarantined

    # --------------------------------------------------------------------------------------- K-Means
    def fit(self, model: Any, x: np.ndarray) -> Assignment:
        """Fit ``model`` (a SegmentModel): transform fitted on the collected RFM (the same code as the local
        engine), applied to every customer on the executors, MLlib K-Means (k-means||, seeded) on Spark, the
        names from the same naming code on the MLlib centroids. Returns the customers' assignment to it."""
        from pyspark.ml.clustering import KMeans
        from pyspark.ml.feature import VectorAssembler

        model.check_params(x.shape[0])
        distinct = distinct_rows(x, model.k)
        if distinct < model.k:
            raise too_few_distinct(model.k, distinct)
        transform = Transform.fit(model.transform, x)
        scaled = self._scaled(transform)
        vectors = VectorAssembler(inputCols=["z0", "z1", "z2"], outputCol="features").transform(scaled)
        km = KMeans(
            k=model.k,
            seed=model.random_state,
            initMode="k-means||",
            initSteps=KMEANS_INIT_STEPS,
            maxIter=KMEANS_MAX_ITER,
            tol=KMEANS_TOL,
        ).fit(vectors)
        centers = np.asarray([np.asarray(c, float) for c in km.clusterCenters()])
        summary = km.summary
        model.transform_ = transform
        model.fit_info_ = {
            "method": "mllib k-means||",
            "n_iter": int(summary.numIter),
            "init_steps": KMEANS_INIT_STEPS,
            "max_iter": KMEANS_MAX_ITER,
            "tol": KMEANS_TOL,
            "seed": model.random_state,
        }
        model.set_clusters(centers, x, float(summary.trainingCost), int(summary.numIter))
        return model.predict(x)

    def write_quarantine(self, prepared: Intake, path: Path) -> None:
        """The quarantined rows, judged on Spark (:meth:`SparkIntake.write_quarantine`)."""
        assert isinstance(prepared, SparkIntake), "the Spark engine writes the quarantine of what it judged"
        prepared.write_quarantine(path)

    def _scaled(self, transform: Transform) -> Any:
        """(customer_id, recency_days, frequency, monetary, z0, z1, z2) on Spark: ``transform`` applied by
        the executors with the same numpy code as the local engine."""
        from pyspark.sql.types import DoubleType, StructField, StructType

        base = self._rfm_df.select("customer_id", "recency_days", "frequency", "monetary")
        out_schema = StructType([*base.schema.fields, *(StructField(f"z{j}", DoubleType()) for j in range(3))])

        def apply(batches: Iterator[Any]) -> Iterator[Any]:
            for b in batches:
                x = b[["recency_days", "frequency", "monetary"]].to_numpy(dtype=float)
                z = transform.apply(x)
                b = b.copy()
                for j in range(3):
                    b[f"z{j}"] = z[:, j]
                yield b

        return base.mapInPandas(apply, out_schema)

    # --------------------------------------------------------------------------------------- output
    def _assigner(self, model: Any) -> tuple[Callable[[Iterator[Any]], Iterator[Any]], Any]:
        """(``assign``, its output schema): the executors' assignment of each customer of the RFM table to the
        nearest centroid of ``model``, with the local engine's code (``nearest``), as a mapInPandas function.
        The columns are those of every run's assignments (:data:`rfmseg.model.scoring.ASSIGNMENTS_SCHEMA`),
        scored as ``rfmseg run`` scores: by the nearest centroid, without the cold-start rule."""
        from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

        transform, centers, names = model.transform_, model.centroids_scaled_, list(model.names_)
        rfm_fields = {f.name: f for f in self._rfm_df.schema.fields}
        out_schema = StructType(
            [
                StructField("customer_id", StringType()),
                StructField("segment", StringType()),
                StructField("segment_reason", StringType()),
                *[rfm_fields[c] for c in ("recency_days", "frequency", "monetary")],
                StructField("distance", DoubleType()),
                StructField("margin", DoubleType()),
                StructField("model_segment", StringType()),
                StructField("cluster", IntegerType()),
                rfm_fields["first_order_date"],
                *[StructField(c, DoubleType()) for c in RHYTHM_COLUMNS],  # null: no rhythm model on Spark
            ]
        )

        def assign(batches: Iterator[Any]) -> Iterator[Any]:
            import pandas as pd

            for b in batches:
                x = b[["recency_days", "frequency", "monetary"]].to_numpy(dtype=float)
                labels, dist, margin = nearest(transform.apply(x), centers)
                segment = np.asarray(names, dtype=object)[labels]
                yield pd.DataFrame(
                    {
                        "customer_id": b["customer_id"],
                        "segment": segment,
                        "segment_reason": REASON_MODEL,
                        "recency_days": b["recency_days"],
                        "frequency": b["frequency"],
                        "monetary": b["monetary"],
                        "distance": dist,
                        "margin": margin,
                        "model_segment": segment,
                        "cluster": labels.astype("int32"),
                        "first_order_date": b["first_order_date"],
                        **dict.fromkeys(RHYTHM_COLUMNS, np.nan),
                    }
                )

        return assign, out_schema

    def _customer_rows(self) -> Any:
        """What ``assign`` reads: the RFM columns and first order of every customer, on Spark."""
        return self._rfm_df.select("customer_id", "recency_days", "frequency", "monetary", "first_order_date")

    def write_output(self, run_id: str, model: Any, timer: Timer) -> dict[str, str] | None:
        """The run's rfm and assignments tables, written by the executors under ``output``/<run_id>/ (stage
        ``output`` of ``timer``); None without an ``output``."""
        if self.output is None:
            return None
        assert self._rfm_df is not None
        base = f"{self.output}/{run_id}"
        assign, out_schema = self._assigner(model)
        self._written = base
        try:
            with timer.stage("output"):
                self._rfm_df.write.mode("errorifexists").parquet(f"{base}/rfm")
                self._customer_rows().mapInPandas(assign, out_schema).write.mode("errorifexists").parquet(
                    f"{base}/assignments"
                )
        except Exception as exc:
            first = spark_why(exc)
            raise SparkError(
                f"cannot write the run's tables under {base} ({first}); check {{output}}", param="output"
            ) from None
        return {"rfm": f"{base}/rfm", "assignments": f"{base}/assignments"}

    # --------------------------------------------------------------------------------------- publish
    def executors_reach(self, store_url: str) -> bool:
        """Whether the executors can publish to ``store_url``: a server always; a SQLite file only when they
        run on this machine (a local master), since it lives on the driver's disk."""
        if not store_url.lower().startswith("sqlite:"):
            return True
        return str(self.describe().get("master") or "").startswith("local")

    def publish(
        self, url: str, run_id: str, as_of: date, model_version: str, model: Any, assignments: pa.Table
    ) -> dict[str, Any]:
        """Publish the run just computed to the store at ``url``: from the executors
        (:meth:`publish_from_executors`) when they can reach it, else (a SQLite file on the driver's disk
        under a cluster) from this process, from ``assignments``. The report says which (``by``)."""
        if self.executors_reach(url):
            return self.publish_from_executors(run_id, as_of, model_version, model, url)
        return {**publish_table(url, assignments, run_id, as_of, model_version), "by": "driver"}

    def publish_from_executors(
        self,
        run_id: str,
        as_of: date,
        model_version: str,
        model: Any,
        store_url: str,
        batch_rows: int | None = None,
    ) -> dict[str, Any]:
        """Publish the run to the profile store at ``store_url`` from the executors, atomically.

        The driver begins a staged publish (:meth:`rfmseg.stores.ProfileStore.begin_publish`); every
        executor task assigns its customers with ``model`` (the code of :meth:`write_output`) and stages
        them in batches of ``batch_rows`` (default :data:`PUBLISH_BATCH_ROWS`), each batch's history read
        from the store for its own ids; the driver then commits, which serves the run only if the store
        holds exactly the customers of this run's RFM table. On any failure the staged rows are removed
        and StoreError (a store problem) or SparkError is raised in one line; nothing was changed.

        The run folder is written when this runs, so the tables under ``output`` belong to it whatever
        happens here. Returns the publish report (that of ``rfmseg publish``, plus ``by: "executors"``,
        ``batches`` and ``batches_resent``: batches a retried task attempt sent again, skipped by the store).
        """
        from rfmseg.stores import open_store

        assert self._rfm_df is not None, "publish needs load_rfm and fit first"
        self._written = None  # the run is committed: its output is kept even if the publish fails
        size = batch_rows or PUBLISH_BATCH_ROWS
        with open_store(store_url) as store:
            staged = store.begin_publish(run_id, as_of, model_version)
            try:
                batches, resent = self._stage_on_executors(staged.token, model, size)
                report = staged.commit(self._customers)
            except BaseException as exc:
                # a store that is down keeps what was staged: the next publish removes it
                with contextlib.suppress(RfmsegError):
                    staged.abort()
                if isinstance(exc, RfmsegError) or not isinstance(exc, Exception):
                    raise
                raise executor_error(exc, run_id, store.url_display) from None
            out: dict[str, Any] = {
                **asdict(report),
                "store": store.url_display,
                "by": "executors",
                "batches": batches,
                "batches_resent": resent,
            }
        return out

    def _stage_on_executors(self, token: Any, model: Any, size: int) -> tuple[int, int]:
        """Assign and stage every customer on the executors; the number of batches staged, and how many of
        them a task attempt sent again after an earlier attempt of its task had staged them."""
        assign, _ = self._assigner(model)

        def stage_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            from pyspark import TaskContext

            from rfmseg.stores import open_stager

            # a retried task sends the same batches under the same keys (sorted ids): the store skips those staged
            context = TaskContext.get()
            part = context.partitionId() if context is not None else 0
            with open_stager(token) as stager:
                held: pa.Table | None = None
                sent = 0
                for frame in assign(b.to_pandas() for b in batches):
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    held = table if held is None else pa.concat_tables([held, table])
                    while held.num_rows >= size:
                        stager.stage(held.slice(0, size), key=f"{part}:{sent}")
                        held, sent = held.slice(size), sent + 1
                if held is not None and held.num_rows:
                    stager.stage(held, key=f"{part}:{sent}")
            yield pa.RecordBatch.from_pydict({"batches": [stager.batches], "repeated": [stager.repeated]})

        rows = self._customer_rows()
        try:  # one task per core at least: a small RFM table may sit in one partition
            parallel = self.spark.sparkContext.defaultParallelism
            if rows.rdd.getNumPartitions() < parallel:
                rows = rows.repartition(parallel)
        except Exception:  # Spark Connect: no SparkContext; the partitions stay as they are
            pass
        done = rows.sortWithinPartitions("customer_id").mapInArrow(stage_partition, "batches long, repeated long")
        rows_done = done.collect()
        resent = sum(int(r["repeated"]) for r in rows_done)
        return sum(int(r["batches"]) for r in rows_done) + resent, resent

    def discard_output(self) -> None:
        """Remove what :meth:`write_output` wrote when the run failed after it (best effort)."""
        base, self._written = self._written, None
        if not base:
            return
        if not URI.match(base) or base.startswith("file:"):
            shutil.rmtree(Path(base.removeprefix("file:")), ignore_errors=True)
            return
        try:  # a Hadoop path: through the JVM's FileSystem (classic sessions only)
            jvm = self.spark.sparkContext._jvm
            hpath = jvm.org.apache.hadoop.fs.Path(base)
            hpath.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).delete(hpath, True)
        except Exception:  # Spark Connect: no JVM access; the folder stays, named by the failed run id
            pass
