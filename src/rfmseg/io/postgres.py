"""Transactions straight from PostgreSQL into Arrow: no CSV file in between.

``PostgresSource(url, query)`` runs the query in a read-only transaction through a server-side cursor
(psycopg 3), fetches the rows in batches and builds Arrow columns typed from the result's column types
(numeric as float64, timestamps as timestamps, text as text), so an all-NULL column keeps its type. The
table is then registered in DuckDB like any other source: validation, quarantine and RFM do not know where
the rows came from.

DuckDB's own ``postgres`` extension would read the same, but it is downloaded on first use, which cannot
work offline; psycopg is a Python package (the ``[postgres]`` extra).

Every failure is one line that names the URL with its password hidden and says what to fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from rfmseg.errors import InputError
from rfmseg.io.readers import Source, _register_arrow
from rfmseg.io.sources import SourceSpec
from rfmseg.stores.base import redact_url, url_secrets

BATCH_ROWS = 50_000
CONNECT_TIMEOUT_S = 10

# PostgreSQL type OID -> Arrow type (anything else is read as text)
_OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),  # bool
    20: pa.int64(),  # int8
    21: pa.int64(),  # int2
    23: pa.int64(),  # int4
    700: pa.float64(),  # float4
    701: pa.float64(),  # float8
    1700: pa.float64(),  # numeric
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz
}
# types kept as the server's text instead of parsed into Python objects (json, jsonb, uuid, interval, time,
# timetz, inet, cidr, money, xml): they are never features, and parsing them costs more than the rest
_AS_TEXT = (114, 3802, 2950, 1186, 1083, 1266, 869, 650, 790, 142)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise InputError("reading from PostgreSQL needs psycopg: pip install 'rfmseg[postgres]'") from None
    return psycopg


@dataclass(frozen=True)
class PostgresSource(SourceSpec):
    """The rows of ``query`` on the PostgreSQL database at ``url`` (``postgresql://user:pw@host:port/db``)."""

    url: str
    query: str
    batch_rows: int = BATCH_ROWS
    stats: dict[str, Any] = field(default_factory=dict, compare=False)
    """filled by :meth:`register`: rows, batches, seconds"""

    @property
    def label(self) -> str:
        return f"{redact_url(self.url)} (query)"

    def _clean(self, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        for secret in url_secrets(self.url):
            text = text.replace(secret, "***")
        return text

    def read_arrow(self) -> pa.Table:
        """Run the query and return its rows as an Arrow table."""
        psycopg = _psycopg()
        from psycopg.types.numeric import FloatLoader
        from psycopg.types.string import TextLoader

        safe = redact_url(self.url)
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise InputError(f"source.url {safe!r} is not a PostgreSQL URL; write postgresql://user@host:5432/database")
        try:
            conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, ValueError) as exc:
            raise InputError(
                f"cannot connect to PostgreSQL at {safe} ({self._clean(exc)}); check source.url (host, port, "
                "database, user, password) and that the server is running"
            ) from None
        try:
            conn.read_only = True
            conn.adapters.register_loader("numeric", FloatLoader)
            for oid in _AS_TEXT:
                conn.adapters.register_loader(oid, TextLoader)
            with conn.transaction(), conn.cursor(name="rfmseg_source") as cur:
                try:
                    cur.execute(self.query)
                    first = cur.fetchmany(self.batch_rows)
                except psycopg.Error as exc:
                    raise InputError(
                        f"PostgreSQL at {safe} rejected source.query ({self._clean(exc)}); fix the query "
                        "(try it in psql first)"
                    ) from None
                if cur.description is None:
                    raise InputError(f"source.query on {safe} returns no rows (not a SELECT); give a SELECT query")
                names = [d.name for d in cur.description]
                if len(set(names)) != len(names):
                    raise InputError(
                        f"source.query on {safe} returns duplicate column names ({', '.join(names)}); "
                        "give each column its own name with AS"
                    )
                types = [_OID_TYPES.get(d.type_code, pa.string()) for d in cur.description]
                schema = pa.schema(list(zip(names, types, strict=True)))
                batches = []
                rows = first
                while rows:
                    batches.append(_batch(rows, schema))
                    rows = cur.fetchmany(self.batch_rows)
        except psycopg.Error as exc:
            raise InputError(
                f"reading from PostgreSQL at {safe} failed ({self._clean(exc)}); check the server and source.query"
            ) from None
        finally:
            conn.close()
        self.stats.update(rows=sum(b.num_rows for b in batches), batches=len(batches))
        return pa.Table.from_batches(batches, schema)

    def register(self, con: duckdb.DuckDBPyConnection, name: str = "src") -> Source:
        table = self.read_arrow()
        if table.num_rows == 0:
            raise InputError(f"source.query on {redact_url(self.url)} returned no rows; check its WHERE clause")
        return _register_arrow(con, table, name, self.label, _table_sha256(table), "postgres")


def _batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for values, f in zip(columns, schema, strict=True):
        try:
            arrays.append(pa.array(values, f.type))
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            # a type read as text (uuid, json, interval, ...): its Python value as text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _table_sha256(table: pa.Table) -> str:
    """A fingerprint of the rows read (in the order the query returned them)."""
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue())
    return digest.hexdigest()
