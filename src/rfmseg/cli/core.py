"""demo, run, choose-k, show: the core analysis commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import duckdb
import pyarrow.compute as pc
import typer

from rfmseg.cli.common import app, out, parse_ids, print_json, print_summary
from rfmseg.datasets import study
from rfmseg.errors import NotFoundError
from rfmseg.io import Policy
from rfmseg.model.choose_k import choose_k
from rfmseg.pipeline import RunResult, load_rfm, rfm_matrix, segment
from rfmseg.runs import DEFAULT_RUNS_DIR, get_run

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder of the run registry.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout, nothing else.")]
K = Annotated[int, typer.Option("--k", "-k", help="Number of segments.")]
Transform = Annotated[str, typer.Option("--transform", help="minmax, log-minmax or rank.")]
AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Date recency is counted to (YYYY-MM-DD); default: the day after the last order."),
]
Seed = Annotated[int, typer.Option("--random-state", help="K-Means seed.")]
NInit = Annotated[int, typer.Option("--n-init", help="K-Means restarts.")]


def column_options(
    customer: str | None,
    order: str | None,
    date: str | None,
    amount: str | None,
    quantity: str | None,
    price: str | None,
) -> dict[str, str]:
    given = {
        "customer_id": customer,
        "order_id": order,
        "order_date": date,
        "amount": amount,
        "quantity": quantity,
        "unit_price": price,
    }
    return {k: v for k, v in given.items() if v}


def customers_of(result: RunResult, ids: list[str]) -> list[dict[str, object]]:
    a = result.assignments
    mask = pc.is_in(a.column("customer_id"), value_set=__import__("pyarrow").array(ids))
    found = {r["customer_id"]: r for r in a.filter(mask).to_pylist()}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(
            f"unknown customer id(s): {', '.join(missing)}; ids look like {a.column('customer_id')[0].as_py()}"
        )
    return [{k: found[i][k] for k in ("customer_id", "recency_days", "frequency", "monetary", "segment")} for i in ids]


def _report(result: RunResult, as_json: bool, ids: list[str]) -> None:
    summary = dict(result.summary)
    if ids:
        summary["customers"] = customers_of(result, ids)
    if as_json:
        summary["run_dir"] = str(result.path) if result.path else None
        print_json(summary)
        return
    print_summary(summary)
    for c in summary.get("customers", []):
        out.print(
            f"{c['customer_id']}: {c['segment']} — {c['recency_days']} days, {c['frequency']} orders, "
            f"{c['monetary']:,.2f}"
        )
    if result.path:
        out.print(
            f"Run {result.run_id} written to {result.path}/ (summary.json, assignments.parquet, "
            "model.json, rfm.parquet, manifest.json, quarantine.parquet)"
        )


@app.command()
def demo(
    as_json: Json = False,
    customers: Annotated[str | None, typer.Option("--customers", help="Comma-separated ids to show.")] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
) -> None:
    """Segment the built-in 200-customer study and print its segment table."""
    result = segment(
        study.path(study.ORDERS_FILE),
        as_of=study.AS_OF,
        runs_dir=runs_dir,
        input_label=f"rfmseg:datasets/{study.ORDERS_FILE}",
    )
    _report(result, as_json, parse_ids(customers))


@app.command()
def run(
    path: Annotated[Path, typer.Argument(help="Transactions (or an RFM table): CSV, Parquet or .xlsx.")],
    customer_col: Annotated[str | None, typer.Option("--customer-col", help="Customer id column.")] = None,
    order_col: Annotated[str | None, typer.Option("--order-col", help="Order id column.")] = None,
    date_col: Annotated[str | None, typer.Option("--date-col", help="Order date column.")] = None,
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="Order amount column.")] = None,
    quantity_col: Annotated[str | None, typer.Option("--quantity-col", help="Quantity (with --price-col).")] = None,
    price_col: Annotated[str | None, typer.Option("--price-col", help="Unit price (with --quantity-col).")] = None,
    date_format: Annotated[str | None, typer.Option("--date-format", help="strptime format, e.g. %d/%m/%Y.")] = None,
    bad_rows: Annotated[
        str,
        typer.Option(
            "--bad-rows", help="error: stop on the first bad row; quarantine: set bad rows aside with their reason."
        ),
    ] = "error",
    as_of: AsOf = None,
    k: K = 4,
    transform: Transform = "minmax",
    n_init: NInit = 10,
    random_state: Seed = 42,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
    customers: Annotated[str | None, typer.Option("--customers", help="Comma-separated ids to show.")] = None,
) -> None:
    """Segment the customers of your own transactions file."""
    cols = column_options(customer_col, order_col, date_col, amount_col, quantity_col, price_col)
    policy = Policy(bad_rows=bad_rows, date_format=date_format)  # type: ignore[arg-type]
    if bad_rows not in ("error", "quarantine"):
        from rfmseg.errors import ParameterError

        raise ParameterError(f"--bad-rows '{bad_rows}' is not allowed; use error or quarantine")
    result = segment(
        path,
        cols,
        as_of=as_of,
        k=k,
        transform=transform,
        n_init=n_init,
        random_state=random_state,
        policy=policy,
        runs_dir=runs_dir,
    )
    _report(result, as_json, parse_ids(customers))


@app.command("choose-k")
def choose_k_cmd(
    path: Annotated[Path, typer.Argument(help="Transactions (or an RFM table): CSV, Parquet or .xlsx.")],
    customer_col: Annotated[str | None, typer.Option("--customer-col")] = None,
    order_col: Annotated[str | None, typer.Option("--order-col")] = None,
    date_col: Annotated[str | None, typer.Option("--date-col")] = None,
    amount_col: Annotated[str | None, typer.Option("--amount-col")] = None,
    as_of: AsOf = None,
    transform: Transform = "minmax",
    k_min: Annotated[int, typer.Option("--k-min")] = 2,
    k_max: Annotated[int, typer.Option("--k-max")] = 10,
    n_init: NInit = 10,
    random_state: Seed = 42,
    sample_size: Annotated[int, typer.Option("--sample-size", help="Customers in the silhouette sample.")] = 10_000,
    as_json: Json = False,
) -> None:
    """Which K, and why: elbow, silhouette, Calinski-Harabasz, Davies-Bouldin for each K."""
    cols = column_options(customer_col, order_col, date_col, amount_col, None, None)
    con = duckdb.connect()
    try:
        _, rfm = load_rfm(con, path, cols, as_of)
    finally:
        con.close()
    result = choose_k(rfm_matrix(rfm), transform, k_min, k_max, n_init, random_state, sample_size)
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    t = Table(title=f"Choosing K — {result['n_customers']:,} customers, transform {transform}")
    for c in ("K", "inertia", "silhouette", "Calinski-Harabasz", "Davies-Bouldin", "segment sizes"):
        t.add_column(c, justify="right")
    for r in result["metrics"]:
        mark = " ◀" if r["k"] == result["recommended_k"] else ""
        t.add_row(
            f"{r['k']}{mark}",
            f"{r['inertia']:.3f}",
            f"{r['silhouette']:.3f}",
            f"{r['calinski_harabasz']:.1f}",
            f"{r['davies_bouldin']:.3f}",
            " ".join(map(str, r["sizes"])),
        )
    out.print(t)
    out.print(f"Recommended: {result['reason']} (silhouette on {result['silhouette_sample']:,} customers)")


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, unique prefix, or 'latest'.")],
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Json = False,
) -> None:
    """The segment table of an earlier run."""
    run_ = get_run(run_id, runs_dir)
    summary = run_.summary
    if as_json:
        print_json(summary)
        return
    print_summary(summary)
    out.print(f"Run {run_.run_id} in {run_.path}/")
