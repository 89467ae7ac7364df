"""What rfmseg knows about a public data set it can fetch (:class:`Dataset`), and the fingerprint that says
two tables hold the same data whatever file they came from (:func:`table_sha256`).

A data set is checked twice on its way into the cache: the file downloaded (or given) by its SHA-256, and
the table converted from it by :func:`table_sha256`, which must equal the reference table's. The second
check is what makes a cached Parquet the same table on every machine, whichever way it was filled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Dataset:
    name: str
    """the name commands take (``rfmseg datasets fetch online-retail``)"""
    title: str
    url: str
    """the official download"""
    page: str
    """where the data set is described"""
    citation: str
    license: str
    download_sha256: str
    """SHA-256 of the official download (:attr:`url`)"""
    member: str
    """the file inside the download that holds the table (``Online Retail.xlsx``)"""
    member_sha256: str
    """SHA-256 of :attr:`member` as it comes out of the official download"""
    table_sha256: str
    """:func:`table_sha256` of the reference table: what every conversion must give"""
    rows: int
    file_name: str
    """the Parquet file in the cache"""
    shared_folder: str
    """the folder name under ``shared/data/`` beside a checkout that may already hold the data"""
    shared_parquet_sha256: str
    """SHA-256 of the Parquet file of the shared folder (recorded in its README): copied without re-reading"""
    convert: Callable[[Path], pa.Table]
    """the member file (as extracted) -> the reference table's layout"""


def table_sha256(table: pa.Table) -> str:
    """SHA-256 of a table's content: column names, types, nulls and values in row order, independent of the
    file format, compression, chunking and writer version it came from. Strings by their UTF-8 bytes,
    numbers by their little-endian binary values, timestamps as microseconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col, pa.timestamp("us", tz=col.type.tz))
        h.update(f"{name}\0{col.type}\0{len(col)}\0".encode())
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        h.update(np.packbits(valid).tobytes())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            arr = pc.fill_null(col, "").cast(pa.large_string())
            _, offsets_buf, data_buf = arr.buffers()
            assert offsets_buf is not None and data_buf is not None
            offsets = np.frombuffer(offsets_buf, dtype="<i8")[arr.offset : arr.offset + len(arr) + 1]
            h.update((offsets - offsets[0]).tobytes())
            h.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])
        elif pa.types.is_timestamp(col.type):
            h.update(pc.fill_null(col.cast(pa.int64()), 0).to_numpy().astype("<i8").tobytes())
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            values = pc.fill_null(col, 0).to_numpy()
            h.update(values.astype(values.dtype.newbyteorder("<")).tobytes())
        else:
            raise TypeError(f"table_sha256: column {name} of type {col.type} has no canonical form here")
    return h.hexdigest()
