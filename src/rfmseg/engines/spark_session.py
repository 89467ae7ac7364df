"""The Spark engine's session: starting or joining a SparkSession, Hadoop URIs, and the one-line
reading of a Spark/Py4J error (see :mod:`rfmseg.engines.spark`)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rfmseg.errors import RfmsegError, StoreError
from rfmseg.install import install_command

if TYPE_CHECKING:
    from rfmseg.io.readers import Source
    from rfmseg.io.rules import Policy


def install_hint() -> str:
    return f"{install_command('spark')} (pyspark) and Java 17+"


URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


class SparkError(RfmsegError):
    """Spark is missing, cannot start, or failed on the data."""


def get_session(master: str | None = None, app_name: str = "rfmseg") -> tuple[Any, bool]:
    """(SparkSession, whether this call started it). Spark Connect when ``SPARK_REMOTE`` is set."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkError(f"the Spark engine needs pyspark: {install_hint()}") from None
    remote = os.environ.get("SPARK_REMOTE")
    if master is None and not remote:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active, False
    try:
        if remote and master is None:
            return SparkSession.builder.remote(remote).appName(app_name).getOrCreate(), True
        builder = (
            SparkSession.builder.appName(app_name)
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
        )
        if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
            # started by spark-submit: its --master and --conf are in force
            spark = builder.getOrCreate()
            return spark, True
        master = master or "local[*]"
        builder = builder.master(master)
        if master.startswith("local"):
            cores = os.cpu_count() or 2
            # the Python workers run this interpreter (and so find rfmseg), unless the user chose one
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = (
                builder.config("spark.sql.shuffle.partitions", str(max(4, 4 * cores)))
                .config("spark.driver.memory", os.environ.get("RFMSEG_SPARK_DRIVER_MEMORY", "4g"))
                .config("spark.ui.enabled", "false")
            )
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        return spark, True
    except Exception as exc:  # Java missing, bad master URL, cluster unreachable
        first = spark_why(exc)
        raise SparkError(
            f"cannot start Spark with master {master or remote!r} ({first}); check {{spark_master}} / SPARK_REMOTE "
            f"and that {install_hint()} are installed",
            param="spark_master",
        ) from None


HADOOP_SCHEMES = ("s3a", "s3", "s3n", "hdfs", "gs", "abfs", "abfss", "wasb", "wasbs", "viewfs", "oss", "file")


def hadoop_uri(path: str) -> str:
    """A Hadoop URI back from what a Path made of it: 's3a:/bucket/x' (or '/cwd/s3a:/bucket/x', once joined
    to a folder) -> 's3a://bucket/x'; whole URIs and other paths are left as they are."""
    schemes = "|".join(HADOOP_SCHEMES)
    if re.match(rf"^({schemes})://", path, re.I):
        return path
    m = re.search(rf"(?:^|/)({schemes}):/+(.*)$", path, re.I)
    if not m:
        return path
    scheme, rest = m.group(1).lower(), m.group(2)
    return f"file:/{rest}" if scheme == "file" else f"{scheme}://{rest}"


def spark_why(exc: BaseException) -> str:
    """The informative line of a Spark/Py4J error (the Java exception, not 'An error occurred while calling')."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(": "):
            return ln[2:].split("\n")[0][:200]
    useful = [ln for ln in lines if not ln.startswith("An error occurred while calling")]
    return (useful or [type(exc).__name__])[0][:200]


_EXECUTOR_ERROR = re.compile(r"rfmseg\.errors\.(\w+): (.+)")


def executor_error(exc: BaseException, run_id: str, url_display: str) -> RfmsegError:
    """One line for a publish that failed on the executors: the rfmseg error an executor raised (StoreError
    for a store problem), else the Spark error (SparkError)."""
    raised = _EXECUTOR_ERROR.findall(str(exc))
    if raised:
        name, message = raised[-1]
        message = message.strip()
        if "nothing was changed" not in message:
            message += "; nothing was changed"
        kind = StoreError if name == "StoreError" else SparkError
        return kind(f"the Spark executors could not publish run {run_id} to {url_display}: {message}")
    return SparkError(
        f"the Spark executors could not publish run {run_id} to {url_display} ({spark_why(exc)}); nothing was changed"
    )


def temp_output_dir(prefix: str = "rfmseg-spark-") -> str:
    """A fresh local folder for Spark output (tests, examples)."""
    return str(Path(tempfile.gettempdir()) / f"{prefix}{uuid.uuid4().hex[:8]}")


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 4)


def task_progress(spark: Any) -> float | None:
    """The share of the tasks of the running stages that are done, in percent, from the driver's status
    tracker (None when no stage runs; Spark Connect sessions have no SparkContext)."""
    try:
        tracker = spark.sparkContext.statusTracker()
        stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
    except Exception:  # Spark Connect, or a session stopping
        return None
    tasks = sum(s.numTasks for s in stages if s is not None)
    done = sum(s.numCompletedTasks for s in stages if s is not None)
    return 100.0 * done / tasks if tasks else None


def from_arrow(spark: Any, table: pa.Table) -> Any:
    """An Arrow table as a Spark DataFrame with a 1-based ``_row``."""
    if "_row" in table.column_names:
        table = table.drop_columns(["_row"])
    table = table.append_column("_row", pa.array(range(1, table.num_rows + 1), pa.int64()))
    try:
        return spark.createDataFrame(table)
    except (TypeError, ValueError):  # pragma: no cover - pyspark without Arrow-table input
        return spark.createDataFrame(table.to_pandas())


def with_row_numbers(df: Any) -> Any:
    """``_row``: 1-based position in the file (partitions follow the file's order for one file)."""
    from pyspark.sql import functions as F

    if "_row" in df.columns:
        return df
    df = df.withColumn("_mid", F.monotonically_increasing_id())
    counts = dict(df.groupBy(F.spark_partition_id().alias("p")).count().collect())
    offsets, total = [], 0
    for p in range(max(counts, default=-1) + 1):
        offsets.append(total)
        total += counts.get(p, 0)
    part = F.shiftright(F.col("_mid"), 33)
    within = F.col("_mid") - F.shiftleft(part, 33)
    offset = F.element_at(F.array(*[F.lit(o) for o in offsets or [0]]), (part + 1).cast("int"))
    return df.withColumn("_row", offset + within + 1).drop("_mid")


def detect_formats(df: Any, src: Source, mapping: dict[str, str], policy: Policy) -> tuple[Source, Policy]:
    """``src`` with the sample of ``df``'s text columns, and ``policy`` with the date formats and decimal mark
    decided from it (rfmseg.io.validate.detected), as the local engine decides them for a file."""
    from dataclasses import replace

    from rfmseg.io.validate import detected

    src = replace(src, sample=text_sample(df))
    return src, detected(src, mapping, policy)


def text_sample(df: Any, rows: int | None = None) -> pa.Table:
    """The first ``rows`` rows of ``df``'s text columns, as Arrow: what decides how its dates and numbers are
    written (rfmseg.io.validate.detected), as the local engine's sample of a file does."""
    from rfmseg.engines.spark_dialect import spark_to_arrow
    from rfmseg.io.readers import SAMPLE_ROWS

    text = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string" and f.name != "_row"]
    if not text:
        return pa.table({})
    return spark_to_arrow(df.select(*[f"`{c}`" for c in text]).limit(rows or SAMPLE_ROWS))


def csv_layout(local: Path | None, suffix: str) -> tuple[str, str]:
    """The delimiter and charset Spark reads a CSV with: those the local engine finds in a local file's first
    line and bytes (',', ';', tab or '|'; UTF-8 or Latin-1), else ',' (tab for .tsv) and UTF-8 for a remote one.
    A UTF-16 file is refused: Spark reads it only as one multi-line record set."""
    from rfmseg.errors import InputError
    from rfmseg.io.readers import csv_encoding, csv_header

    if local is None:
        return ("\t" if suffix == ".tsv" else ","), "UTF-8"
    encoding = csv_encoding(local)
    if encoding == "utf-16":
        raise InputError(f"{local}: is UTF-16 text, which the Spark engine does not read; save it as UTF-8")
    delimiter, _ = csv_header(local, encoding)
    return delimiter, "UTF-8" if encoding == "utf-8" else "ISO-8859-1"
