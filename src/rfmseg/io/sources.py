"""Sources that are not one file: a glob of files, and (in :mod:`rfmseg.io.postgres`) a database query.

A :class:`SourceSpec` registers itself as a DuckDB view with a 1-based ``_row`` column, exactly like
:func:`rfmseg.io.readers.open_source` does for a path or a DataFrame, so validation, quarantine and the RFM
SQL do not know where the rows came from.
"""

from __future__ import annotations

import glob as globlib
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rfmseg.errors import InputError
from rfmseg.io.readers import (
    FORMATS,
    SAMPLE_ROWS,
    Source,
    check_file,
    file_sha256,
    sql_identifier,
    sql_string,
    view_columns,
)
from rfmseg.io.views import VIEWS


class SourceSpec(ABC):
    """Something the pipeline can read that is not a single path or an in-memory table."""

    @property
    @abstractmethod
    def label(self) -> str:
        """How to name the source to a user (no secrets)."""

    @abstractmethod
    def register(self, con: duckdb.DuckDBPyConnection, name: str = VIEWS.source) -> Source:
        """Register the rows as the view ``name`` (originals plus ``_row``) and describe them."""


@dataclass(frozen=True)
class FileGlob(SourceSpec):
    """Every file matching ``pattern`` (e.g. ``exports/2024-*.parquet``), read as one table.

    The files must share one format (CSV or Parquet); their columns are matched by name. Rows are numbered
    across the files in path order, so a quarantined row can be found again.
    """

    pattern: str
    given_in: str = field(default="", kw_only=True)
    """where the pattern was set, for a message to name ("source.glob in rfmseg.toml"); empty: typed as it is
    (the FILE argument of a command)"""

    @property
    def label(self) -> str:
        return self.pattern

    def files(self) -> list[Path]:
        found = sorted(Path(p) for p in globlib.glob(self.pattern, recursive=True) if Path(p).is_file())
        if not found:
            fix = (
                f"check the pattern in {self.given_in}"
                if self.given_in
                else "check the folder and the file names in the pattern (relative to the current folder)"
            )
            raise InputError(f"{self.pattern}: no file matches this glob; {fix}")
        return found

    def register(self, con: duckdb.DuckDBPyConnection, name: str = VIEWS.source) -> Source:
        files = self.files()
        formats = {FORMATS.get(p.suffix.lower()) for p in files}
        if len(formats) != 1 or None in formats or "xlsx" in formats:
            kinds = ", ".join(sorted({p.suffix or "(none)" for p in files}))
            raise InputError(
                f"{self.pattern}: matches files of types {kinds}; a glob reads CSV or Parquet files of one type, "
                "narrow the pattern (e.g. *.parquet)"
            )
        fmt = formats.pop()
        assert fmt is not None
        digest = hashlib.sha256()
        for p in files:
            check_file(p, fmt)
            digest.update(f"{p.name}\0{file_sha256(p)}\n".encode())
        paths = "[" + ", ".join(sql_string(str(p)) for p in files) + "]"
        if fmt == "parquet":
            reader = f"read_parquet({paths}, union_by_name = true)"
        else:
            reader = f"read_csv({paths}, all_varchar = true, header = true, union_by_name = true)"
        try:
            # files are read in the listed order and DuckDB keeps insertion order: row numbers run across files
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT *, row_number() OVER () AS _row FROM {reader}")
            columns = view_columns(con, name)
            # the sample comes from the reader: a LIMIT over the numbered view would read every file
            text = [c for c, t in columns.items() if t.upper() == "VARCHAR"]
            picked = ", ".join(sql_identifier(c) for c in text) or "NULL AS _none"
            sample = con.sql(f"SELECT {picked} FROM {reader} LIMIT {SAMPLE_ROWS}").to_arrow_table().select(text)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{self.pattern}: cannot be read as {fmt} ({first}); check the files") from None
        return Source(name, columns, self.pattern, digest.hexdigest(), fmt, sample)


@dataclass(frozen=True)
class FileList(FileGlob):
    """Files named one by one, read as one table in the order given (``pattern`` is the label): a history
    kept as a first export and the daily files after it (:mod:`rfmseg.jobs.incremental`)."""

    paths: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        for p in self.paths:
            if not Path(p).is_file():
                raise InputError(f"{p}: no such file (part of {self.pattern}); put the file back or read another")
        return [Path(p) for p in self.paths]
