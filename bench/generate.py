"""Seeded synthetic transactions at any scale, written as one Parquet file in time order.

Layout (order lines; what ``rfmseg run`` reads without a column mapping):

    customer_id  int64         ~ one customer per 10 rows
    order_id     string        invoice number; cancellations carry a ``C`` prefix, as in Online Retail
    order_date   timestamp[us] within 2023-01-01 .. 2024-12-31 (two years)
    amount       double        line amount (quantity x unit price, cents); negative on cancellation lines

Shape of the data:

* orders per customer are heavy-tailed: ceil(lognormal(0.155, 1.2)) -> about 45 % one-time buyers, a mean
  near 2.9 orders, and a few customers with hundreds of orders at 10M customers;
* each customer has an active period inside the two-year window (one-time buyers a single day); orders
  fall uniformly in it, so recency and tenure vary;
* 1 + Poisson(2.5) lines per order (mean 3.5); a line is quantity (1 + Poisson(2)) x unit price
  (lognormal, cents) x the customer's spend level (lognormal), so order values are lognormal-like;
* 2 % of orders are cancelled within ten days by a ``C`` invoice that negates some of their lines.

Memory does not grow with the number of rows: customers are generated in blocks of ``BLOCK`` customers,
each block is written to a temporary Parquet part, and DuckDB sorts the parts into date order out of core
(memory limit 2 GB, spilling to a temporary folder next to the output). The output is a function of
(rows, seed) only.

    python bench/generate.py --rows 1e6,1e7,1e8          # -> bench/data/tx_1M.parquet, tx_10M..., tx_100M...
    python bench/generate.py --rows 2e5 --out /tmp/x.parquet
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
START = np.datetime64("2023-01-01T00:00:00", "us")
WINDOW_US = int((np.datetime64("2025-01-01T00:00:00", "us") - START).astype(np.int64)) - 1
DAY_US = 86_400_000_000
BLOCK = 100_000  # customers per generated block (about a million rows)
CANCEL_SHARE = 0.02
ROW_GROUP = 1_000_000


def label(rows: int) -> str:
    """1_000_000 -> '1M', 100_000_000 -> '100M', 250_000 -> '250K'."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if rows >= size and rows % size == 0:
            return f"{rows // size}{unit}"
    return str(rows)


def default_path(rows: int, seed: int = 0) -> Path:
    suffix = "" if seed == 0 else f"_s{seed}"
    return DATA_DIR / f"tx_{label(rows)}{suffix}.parquet"


def parse_rows(text: str) -> list[int]:
    """'1e6,1e7,100M' -> [1_000_000, 10_000_000, 100_000_000]."""
    out = []
    for part in text.split(","):
        p = part.strip().upper()
        if not p:
            continue
        mult = {"K": 10**3, "M": 10**6, "B": 10**9}.get(p[-1], 1)
        num = p[:-1] if mult > 1 else p
        try:
            value = float(num) * mult
        except ValueError:
            raise SystemExit(f"error: --rows '{part}' is not a row count; use e.g. 1e6,1e7 or 10M") from None
        if value < 1000 or value != int(value):
            raise SystemExit(f"error: --rows '{part}' should be a whole number >= 1000")
        out.append(int(value))
    return out


def block(rng: np.random.Generator, first_customer: int, first_invoice: int, m: int) -> tuple[pa.Table, int]:
    """``m`` customers' order lines (unsorted) and the next free invoice number."""
    ids = np.arange(first_customer, first_customer + m, dtype=np.int64)
    n_orders = np.minimum(np.ceil(rng.lognormal(0.155, 1.2, m)), 2000).astype(np.int64)
    n_orders = np.maximum(n_orders, 1)
    spend = rng.lognormal(0.0, 0.6, m)
    start = rng.integers(0, WINDOW_US, m)
    # active period: later customers have less of the window left; a share stops buying early (churn)
    span = ((WINDOW_US - start) * rng.beta(2.0, 1.2, m)).astype(np.int64)
    span[n_orders == 1] = 0

    cust_of_order = np.repeat(np.arange(m), n_orders)
    n_total_orders = cust_of_order.size
    order_ts = start[cust_of_order] + (rng.random(n_total_orders) * span[cust_of_order]).astype(np.int64)
    order_ts -= order_ts % 1_000_000  # whole seconds
    invoice = first_invoice + np.arange(n_total_orders, dtype=np.int64)
    n_lines = 1 + rng.poisson(2.5, n_total_orders)

    order_of_line = np.repeat(np.arange(n_total_orders), n_lines)
    line_no = np.arange(order_of_line.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    qty = 1 + rng.poisson(2.0, order_of_line.size)
    price = np.maximum(np.round(rng.lognormal(1.2, 0.9, order_of_line.size), 2), 0.1)
    amount = np.round(qty * price * spend[cust_of_order[order_of_line]], 2)

    # cancellations: a C invoice within ten days negating the first 1..n lines of the order
    cancelled = np.flatnonzero(rng.random(n_total_orders) < CANCEL_SHARE)
    c_lines = 1 + rng.binomial(n_lines[cancelled] - 1, 0.5)
    c_invoice = invoice[-1] + 1 + np.arange(cancelled.size, dtype=np.int64) if n_total_orders else invoice
    c_ts = np.minimum(order_ts[cancelled] + rng.integers(0, 10 * DAY_US, cancelled.size), WINDOW_US)
    c_ts -= c_ts % 1_000_000
    c_order = np.repeat(np.arange(cancelled.size), c_lines)
    c_line_no = np.arange(c_order.size) - np.repeat(np.cumsum(c_lines) - c_lines, c_lines)
    first_line = (np.cumsum(n_lines) - n_lines)[cancelled]
    c_amount = -amount[first_line[c_order] + c_line_no]

    n_sale, n_cancel = order_of_line.size, c_order.size
    customer = np.concatenate([ids[cust_of_order[order_of_line]], ids[cust_of_order[cancelled[c_order]]]])
    inv = np.concatenate([invoice[order_of_line], c_invoice[c_order]])
    ts = np.concatenate([order_ts[order_of_line], c_ts[c_order]])
    line = np.concatenate([line_no, c_line_no]).astype(np.int32)
    amt = np.concatenate([amount, c_amount])
    text = pa.array(inv).cast(pa.string())
    is_cancel = pa.array(np.concatenate([np.zeros(n_sale, bool), np.ones(n_cancel, bool)]))
    order_id = pc.if_else(is_cancel, pc.binary_join_element_wise("C", text, ""), text)
    table = pa.table(
        {
            "customer_id": pa.array(customer),
            "order_id": order_id,
            "order_date": pa.array((START + ts.astype("timedelta64[us]")).astype("datetime64[us]")),
            "amount": pa.array(amt),
            "_inv": pa.array(inv),
            "_line": pa.array(line),
        }
    )
    next_invoice = int(inv.max()) + 1 if inv.size else first_invoice
    # customer by customer, so that cutting the last block to size keeps whole customers' cancellations
    return table.take(pc.sort_indices(table, [("customer_id", "ascending"), ("_inv", "ascending")])), next_invoice


def generate(rows: int, out: Path | None = None, seed: int = 0, quiet: bool = False) -> Path:
    """Write ``rows`` order lines to ``out`` (default bench/data/tx_<rows>.parquet); returns the path."""
    out = Path(out) if out else default_path(rows, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.stem}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    written, customer, invoice, part = 0, 1_000_001, 5_000_000, 0
    try:
        while written < rows:
            rng = np.random.default_rng([seed, part])
            table, invoice = block(rng, customer, invoice, BLOCK)
            customer += BLOCK
            if written + table.num_rows > rows:
                table = table.slice(0, rows - written)
            pq.write_table(table, tmp / f"part-{part:05d}.parquet", compression="snappy")
            written += table.num_rows
            part += 1
            if not quiet and part % 20 == 0:
                print(f"  {written:,} rows generated", file=sys.stderr)
        con = duckdb.connect(config={"memory_limit": "2GB", "temp_directory": str(tmp / "spill")})
        target = str(out.with_suffix(".parquet.partial")).replace("'", "''")
        parts = str(tmp / "part-*.parquet").replace("'", "''")
        con.execute(
            f"COPY (SELECT customer_id, order_id, order_date, amount FROM read_parquet('{parts}') "
            f"ORDER BY order_date, _inv, _line) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {ROW_GROUP})"
        )
        con.close()
        Path(target).replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        size = out.stat().st_size / 2**20
        print(f"{out}: {rows:,} rows, {size:,.0f} MiB, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def ensure(rows: int, seed: int = 0, quiet: bool = False) -> Path:
    """The default file for ``rows``, generated if it is not there yet."""
    path = default_path(rows, seed)
    if not path.exists():
        generate(rows, path, seed, quiet)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1e6", help="row counts, comma-separated (1e6,1e7,1e8 or 1M,10M,100M)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="output file (one row count only); default bench/data/tx_<rows>.parquet")
    p.add_argument("--force", action="store_true", help="regenerate files that exist")
    args = p.parse_args(argv)
    counts = parse_rows(args.rows)
    if args.out and len(counts) != 1:
        raise SystemExit("error: --out takes one row count; drop --out to write bench/data/tx_<rows>.parquet")
    for rows in counts:
        path = args.out or default_path(rows, args.seed)
        if path.exists() and not args.force:
            print(f"{path}: exists (use --force to regenerate)", file=sys.stderr)
            continue
        free = shutil.disk_usage(path.parent if path.parent.exists() else DATA_DIR.parent).free
        need = rows * 40  # parts + spill + output, bytes per row, generous
        if free < need:
            raise SystemExit(
                f"error: {rows:,} rows need about {need / 2**30:.1f} GiB free next to {path}; "
                f"{free / 2**30:.1f} GiB free"
            )
        generate(rows, path, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
