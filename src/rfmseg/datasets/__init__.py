"""Data sets: the built-in study (:mod:`rfmseg.datasets.study`) and the public data sets rfmseg fetches into
its cache (:mod:`rfmseg.datasets.cache`; ``rfmseg datasets fetch online-retail``)."""

from __future__ import annotations

from pathlib import Path

from rfmseg.datasets.cache import DATA_ENV, DATASETS, Cached, cached, data_dir, ensure, fetch, listing

__all__ = ["DATASETS", "DATA_ENV", "Cached", "cached", "data_dir", "ensure", "fetch", "listing", "online_retail_path"]


def online_retail_path(root: Path | None = None) -> Path:
    """The UCI Online Retail table as a checked Parquet file in the cache, filled first when it is not there:
    from ``shared/data/online_retail/`` beside the checkout when that folder exists, else downloaded from UCI.
    Raises :class:`rfmseg.errors.DatasetError` saying why when neither is possible."""
    return ensure("online-retail", root).path
