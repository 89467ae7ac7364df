"""Where the heavy work runs: ``local`` (DuckDB + scikit-learn, in this process) or ``spark`` (Spark SQL +
MLlib on any Spark cluster, local mode included).

Both implement :class:`rfmseg.engines.base.Engine`: ``load_rfm`` (read, judge the rows, RFM per customer,
collected to the driver), ``fit`` (the K-Means of a :class:`~rfmseg.model.SegmentModel`), the quarantine
file, ``publish`` and ``write_output`` (the customer tables to a Hadoop path); the model's names, the
scoring, the profile, insights and the run folder come from the same code for both engines. See
docs/scaling.md for when to switch.
"""

from __future__ import annotations

from typing import Any

from rfmseg.engines.base import Engine
from rfmseg.errors import ParameterError

ENGINES = ("local", "spark")


def open_engine(name: str, **options: Any) -> Engine:
    """The engine called ``name``, with its options (``spark_master`` and ``output`` for Spark)."""
    if name == "local":
        given = [k for k, v in options.items() if v is not None]
        if given:
            fields = ", ".join(f"{{{k}}}" for k in given)
            raise ParameterError(
                f"{fields} go(es) with {{engine}} spark; add {{engine}} spark or drop them", param=(*given, "engine")
            )
        from rfmseg.engines.local import LocalEngine

        return LocalEngine()
    if name == "spark":
        from rfmseg.engines.spark import SparkEngine

        return SparkEngine(**options)
    raise ParameterError(f"{{engine}} '{name}' is not known; use {' or '.join(ENGINES)}", param="engine")
