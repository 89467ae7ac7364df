"""Transactions straight from PostgreSQL into Arrow: no file in between, no Python object per value.

``PostgresSource(url, query)`` runs the query in a read-only transaction: it is declared as a server-side
cursor first, which checks it and gives the result's column types without running it, then streamed out with
``COPY (query) TO STDOUT (FORMAT csv)`` (psycopg 3) straight into Arrow's CSV reader, which parses it block
by block in C++ with the column types taken from the result (numeric as float64, timestamps as timestamps,
booleans, text as text), so an all-NULL column keeps its type and NULL stays distinct from an empty string.
The table is then registered in DuckDB like any other source: validation, quarantine and RFM do not know
where the rows came from.

An earlier version fetched the rows through the cursor into Python tuples and built Arrow columns from
them; the COPY stream is several times faster (docs/configuration.md gives the figures). DuckDB's own
``postgres`` extension would read the same, but it is downloaded on first use, which cannot work offline;
psycopg is a Python package (the ``[postgres]`` extra).

Every failure is one line that names the URL with its password hidden and says what to fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv

from rfmseg.errors import InputError
from rfmseg.install import install_command
from rfmseg.io.readers import Source, register_arrow
from rfmseg.io.sources import SourceSpec
from rfmseg.io.views import VIEWS
from rfmseg.stores.base import redact_url, url_secrets

BLOCK_BYTES = 4 << 20
"""Bytes of the COPY stream Arrow parses per batch."""
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


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise InputError(f"reading from PostgreSQL needs psycopg: {install_command('postgres')}") from None
    return psycopg


@dataclass(frozen=True)
class PostgresSource(SourceSpec):
    """The rows of ``query`` on the PostgreSQL database at ``url`` (``postgresql://user:pw@host:port/db``)."""

    url: str
    query: str
    block_bytes: int = BLOCK_BYTES
    stats: dict[str, Any] = field(default_factory=dict, compare=False)
    """filled by :meth:`read_arrow`: rows, batches, bytes"""

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
        safe = redact_url(self.url)
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise InputError(f"source.url {safe!r} is not a PostgreSQL URL; write postgresql://user@host:5432/database")
        query = self.query.strip().rstrip(";").strip()
        try:
            conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, ValueError) as exc:
            raise InputError(
                f"cannot connect to PostgreSQL at {safe} ({self._clean(exc)}); check source.url (host, port, "
                "database, user, password) and that the server is running"
            ) from None
        try:
            conn.read_only = True
            with conn.transaction():
                # the text COPY writes: ISO dates, UTC offsets, floats that read back exactly
                conn.execute("SET LOCAL DateStyle TO ISO, YMD")
                conn.execute("SET LOCAL TimeZone TO 'UTC'")
                schema = self._describe(conn, query, safe)
                self.stats.clear()
                with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                    batches = list(self._parse(iter(copy), schema, safe))
        except psycopg.Error as exc:
            raise InputError(
                f"reading from PostgreSQL at {safe} failed ({self._clean(exc)}); check the server and source.query"
            ) from None
        finally:
            conn.close()
        self.stats.update(rows=sum(b.num_rows for b in batches), batches=len(batches))
        return pa.Table.from_batches(batches, schema)

    def _describe(self, conn: Any, query: str, safe: str) -> pa.Schema:
        """The Arrow schema of the query's result, from a server-side cursor declared on it (not run)."""
        psycopg = _psycopg()
        try:
            with conn.cursor(name="rfmseg_source") as cur:
                cur.execute(query)
                description = cur.description
        except psycopg.Error as exc:
            raise InputError(
                f"PostgreSQL at {safe} rejected source.query ({self._clean(exc)}); fix the query (try it in psql first)"
            ) from None
        if description is None:
            raise InputError(f"source.query on {safe} returns no rows (not a SELECT); give a SELECT query")
        names = [d.name for d in description]
        if len(set(names)) != len(names):
            raise InputError(
                f"source.query on {safe} returns duplicate column names ({', '.join(names)}); "
                "give each column its own name with AS"
            )
        return pa.schema([(d.name, _OID_TYPES.get(d.type_code, pa.string())) for d in description])

    def _parse(self, chunks: Iterator[Any], schema: pa.Schema, safe: str) -> Iterator[pa.RecordBatch]:
        """Arrow batches of the CSV that COPY writes, typed by ``schema``.

        COPY sends one message per row, so joining messages gives blocks that end on a row; each block is
        parsed by Arrow on its own (in C++, on every core) while this thread only collects messages.
        """
        options = {
            "read_options": pcsv.ReadOptions(column_names=schema.names),
            "parse_options": pcsv.ParseOptions(newlines_in_values=True),
            "convert_options": pcsv.ConvertOptions(
                column_types=schema,
                null_values=[""],  # COPY writes NULL unquoted and empty, an empty string quoted
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        }
        # one growing bytearray: keeping the messages (memoryviews, tracked by the garbage collector) in a
        # list made the collector run over millions of them, 3.5x slower on 2M rows
        block = bytearray()
        for chunk in chunks:
            block += chunk
            if len(block) >= self.block_bytes:
                yield from self._block(block, options, safe)
                block = bytearray()  # a new one: Arrow may still hold the old one's memory
        if block:
            yield from self._block(block, options, safe)

    def _block(self, data: bytearray, options: dict[str, Any], safe: str) -> Iterator[pa.RecordBatch]:
        self.stats["bytes"] = self.stats.get("bytes", 0) + len(data)
        try:
            table = pcsv.read_csv(pa.py_buffer(data), **options)
        except pa.ArrowInvalid as exc:  # a value the type cannot hold (a date beyond Arrow's range, ...)
            raise InputError(
                f"cannot read the rows of source.query on {safe} ({str(exc).splitlines()[0]}); cast that column "
                "to text or to a plain type in the query"
            ) from None
        yield from table.combine_chunks().to_batches()

    def register(self, con: duckdb.DuckDBPyConnection, name: str = VIEWS.source) -> Source:
        table = self.read_arrow()
        if table.num_rows == 0:
            raise InputError(f"source.query on {redact_url(self.url)} returned no rows; check its WHERE clause")
        return register_arrow(con, table, name, self.label, _table_sha256(table), "postgres")


def _table_sha256(table: pa.Table) -> str:
    """A fingerprint of the rows read (in the order the query returned them)."""
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue())
    return digest.hexdigest()
