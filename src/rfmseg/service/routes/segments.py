"""Segments: a run's summary, and the customers of one segment (filtered, sorted; JSON paged, CSV the whole
segment streamed, or one page when a page is asked for), queried with DuckDB over the run's assignments.parquet."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse

from rfmseg.errors import NotFoundError
from rfmseg.runs import Run
from rfmseg.service.deps import InvalidError, StateDep, json_response
from rfmseg.service.models import SegmentCustomersPublic, SegmentsPublic

router = APIRouter(tags=["segments"])

COLUMNS = ("customer_id", "recency_days", "frequency", "monetary", "aov", "distance", "margin")
_RANGE_COLUMN = {"recency": "recency_days", "frequency": "frequency", "monetary": "monetary"}
CSV_BATCH_ROWS = 10_000
"""Rows per chunk of a streamed CSV: DuckDB hands over one record batch at a time, so memory stays flat."""
DEFAULT_PAGE_SIZE = 100
MAX_PAGE = 1_000_000_000
"""the largest page number asked for (past the last page a page is empty; beyond this the offset would overflow)"""
MAX_PAGE_SIZE_QUERY = 1_000_000
"""the schema's bound on page_size; the setting (``max_page_size``, 1,000) is the real limit, a 422 that says so"""
RunQuery = Annotated[str, Query(description="Run id, unique prefix or 'latest'")]


def _bound(what: str) -> Any:
    return Query(description=what, allow_inf_nan=False)


@router.get(
    "/segments", response_model=SegmentsPublic, summary="The latest run's segments (the --json of `rfmseg run`)"
)
def segments(state: StateDep, run: RunQuery = "latest") -> Response:
    """The run's summary: run_id, as_of, k, n_customers, total_revenue, segments (customers, shares, revenue,
    means, medians, AOV, action, priority, reason) and insights."""
    return json_response(state.summary(state.run(run)))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def resolve_segment(summary: dict[str, Any], run: Run, name: str) -> str:
    """The run's segment called ``name`` (exactly, ignoring case, or as a slug such as ``at-risk``)."""
    names = [s["name"] for s in summary["segments"]]
    for candidate in (name, name.lower(), _slug(name)):
        for n in names:
            if candidate in (n, n.lower(), _slug(n)):
                return n
    raise NotFoundError(f"no segment '{name}' in run {run.run_id}; valid names: {', '.join(names)}")


@router.get(
    "/segments/{name}/customers",
    response_model=SegmentCustomersPublic,
    summary="The customers of one segment: filtered, sorted; JSON paged, CSV the whole segment",
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "JSON (one page), or CSV with format=csv / Accept: text/csv: every customer of the "
            "segment (after the filters), streamed, unless page or page_size is given (then that page only, "
            "and the X-CSV-Scope header says 'page')",
        }
    },
)
def segment_customers(
    name: str,
    state: StateDep,
    run: RunQuery = "latest",
    page: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE, description="Page number, from 1 (default 1); given with CSV: that page only"),
    ] = None,
    page_size: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE_SIZE_QUERY,
            description="Customers per page (default 100, at most 1,000); given with CSV: that page only",
        ),
    ] = None,
    min_recency: Annotated[float | None, _bound("recency_days >= this")] = None,
    max_recency: Annotated[float | None, _bound("recency_days <= this")] = None,
    min_frequency: Annotated[float | None, _bound("frequency >= this")] = None,
    max_frequency: Annotated[float | None, _bound("frequency <= this")] = None,
    min_monetary: Annotated[float | None, _bound("monetary >= this")] = None,
    max_monetary: Annotated[float | None, _bound("monetary <= this")] = None,
    sort: Annotated[Literal["recency_days", "frequency", "monetary", "aov", "distance"], Query()] = "monetary",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    format: Annotated[Literal["json", "csv"] | None, Query(description="json or csv (else the Accept header)")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """E.g. the At-Risk customers who spent at least $3,000, highest average order value first:
    ``/segments/At-Risk/customers?min_monetary=3000&sort=aov&order=desc``. With ``format=csv`` (or
    ``Accept: text/csv``) and no ``page``/``page_size``: every such customer, streamed."""
    as_csv = format == "csv" or (format is None and accept is not None and "text/csv" in accept)
    whole = as_csv and page is None and page_size is None
    page = page or 1
    page_size = page_size or DEFAULT_PAGE_SIZE
    limit = state.settings.max_page_size
    if page_size > limit:
        raise InvalidError(f"page_size {page_size:,} is over the limit of {limit:,}; ask for the next page instead")
    bounds = {
        "recency": (min_recency, max_recency),
        "frequency": (min_frequency, max_frequency),
        "monetary": (min_monetary, max_monetary),
    }
    where: list[str] = ["segment = ?"]
    params: list[str | float] = []
    filters: dict[str, float] = {}
    for what, (lo, hi) in bounds.items():
        if lo is not None and hi is not None and lo > hi:
            raise InvalidError(f"min_{what} {lo:g} is greater than max_{what} {hi:g}; swap them")
        for prefix, value, op in (("min", lo, ">="), ("max", hi, "<=")):
            if value is not None:
                where.append(f"{_RANGE_COLUMN[what]} {op} ?")
                params.append(value)
                filters[f"{prefix}_{what}"] = value
    run_ = state.run(run)
    segment = resolve_segment(state.summary(run_), run_, name)
    params.insert(0, segment)
    source = (
        "(SELECT customer_id, segment, recency_days, frequency, monetary, "
        "CASE WHEN frequency > 0 THEN monetary / frequency ELSE 0 END AS aov, distance, margin "
        "FROM read_parquet(?))"
    )
    file = str(run_.path / "assignments.parquet")
    cond = " AND ".join(where)
    order_by = f"ORDER BY {sort} {order.upper()}, customer_id"
    select = f"SELECT {', '.join(COLUMNS)} FROM {source} WHERE {cond} {order_by}"
    cur = state.cursor()
    try:
        total = cur.execute(f"SELECT count(*) FROM {source} WHERE {cond}", [file, *params]).fetchall()[0][0]
        if whole:
            reader = cur.sql(select, params=[file, *params]).to_arrow_reader(CSV_BATCH_ROWS)
        else:
            page_rows = cur.sql(f"{select} LIMIT ? OFFSET ?", params=[file, *params, page_size, (page - 1) * page_size])
            table = page_rows.to_arrow_table()
    except BaseException:
        cur.close()
        raise
    meta = {"X-Total-Count": str(total), "X-Run-Id": run_.run_id}
    if whole:
        filename = f"{run_.run_id}-{_slug(segment)}.csv"
        meta |= {"X-CSV-Scope": "segment", "Content-Disposition": f'attachment; filename="{filename}"'}
        return StreamingResponse(_csv_chunks(cur, reader), media_type="text/csv; charset=utf-8", headers=meta)
    cur.close()
    pages = -(-total // page_size)
    if as_csv:
        meta |= {"X-CSV-Scope": "page", "X-Page": str(page), "X-Page-Size": str(page_size), "X-Pages": str(pages)}
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=meta)
    rows = table.to_pylist()
    for r in rows:
        r["aov"] = round(r["aov"], 2)
    return json_response(
        {
            "run_id": run_.run_id,
            "segment": segment,
            "total": total,
            "page": page,
            "page_size": page_size,
            "pages": pages,
            "sort": sort,
            "order": order,
            "filters": filters,
            "customers": rows,
        },
        headers=meta,
    )


def _csv_chunks(cur: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader) -> Iterator[bytes]:
    """The CSV of a query, one chunk per record batch (the header row first, even for no rows); the cursor is
    closed when the stream ends or the client goes away."""
    try:
        buf = io.BytesIO()
        pacsv.write_csv(reader.schema.empty_table(), buf)
        yield buf.getvalue()
        options = pacsv.WriteOptions(include_header=False)
        for batch in reader:
            if batch.num_rows:
                buf = io.BytesIO()
                pacsv.write_csv(batch, buf, options)
                yield buf.getvalue()
    finally:
        reader.close()
        cur.close()
