"""RFM per customer, as of a date, in DuckDB SQL.

The definitions (shared with the Spark engine, which runs the same SQL text):

* an order is the set of a customer's rows with the same order id; its date is its latest row's date and
  its amount the sum of its rows' amounts;
* recency_days = whole days from the customer's last (non-return) order date to the as-of date;
* frequency = number of distinct (non-return) orders;
* monetary = sum of the customer's order amounts, returns included (they are negative), rounded to cents;
* first_order_date / last_order_date = dates of the first and last (non-return) orders.

The aggregation is two-level (customer x order, then customer): it streams, unlike count(DISTINCT).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

RFM_SQL = """
WITH orders AS (
    SELECT customer_id, order_id, bool_and(is_return) AS is_return, max(ts) AS ts, sum(amount) AS amount
    FROM {source}
    WHERE _reason IS NULL
    GROUP BY customer_id, order_id
)
SELECT
    customer_id,
    CAST(date_diff('day', CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE), DATE '{as_of}') AS BIGINT)
        AS recency_days,
    CAST(count(*) FILTER (WHERE NOT is_return) AS BIGINT) AS frequency,
    CAST(round(sum(amount), 2) AS DOUBLE) AS monetary,
    CAST(min(ts) FILTER (WHERE NOT is_return) AS DATE) AS first_order_date,
    CAST(max(ts) FILTER (WHERE NOT is_return) AS DATE) AS last_order_date
FROM orders
GROUP BY customer_id
"""


def rfm_sql(source: str, as_of: date) -> str:
    return RFM_SQL.format(source=source, as_of=as_of.isoformat())


def compute_rfm(con: duckdb.DuckDBPyConnection, source: str, as_of: date) -> pa.Table:
    """RFM table (sorted by customer_id) from the judged transactions view ``source``."""
    return con.sql(f"SELECT * FROM ({rfm_sql(source, as_of)}) ORDER BY customer_id").to_arrow_table()


def rfm_from_table(con: duckdb.DuckDBPyConnection, source: str) -> pa.Table:
    """A ready RFM table (already judged): the used rows in canonical form."""
    return con.sql(
        f"SELECT customer_id, CAST(round(recency_days) AS BIGINT) AS recency_days, "
        f"CAST(round(frequency) AS BIGINT) AS frequency, CAST(monetary AS DOUBLE) AS monetary, "
        f"CAST(NULL AS DATE) AS first_order_date, CAST(NULL AS DATE) AS last_order_date "
        f"FROM {source} WHERE _reason IS NULL ORDER BY customer_id"
    ).to_arrow_table()
