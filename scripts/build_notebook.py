"""Build notebooks/customer-segmentation.ipynb from the cells below (nbformat), so the notebook is reproducible.

    .venv/bin/python scripts/build_notebook.py            # write the notebook, without outputs
    .venv/bin/python scripts/build_notebook.py --execute  # ... and run it, keeping the outputs (nbclient)

The notebook is committed without outputs: what it shows is computed when it runs, so it cannot go stale,
and its diff stays readable. tests/test_notebook.py executes it top to bottom and checks the outputs.
It takes the Online Retail file from rfmseg's data set cache, as `rfmseg datasets fetch online-retail` fills it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "customer-segmentation.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Customer segmentation with RFM and K-Means

Which of our customers are similar, and what should we do about each group? This notebook walks the analysis
with **rfmseg**'s Python API, twice:

* **Part A** — the 200-customer reference study: the data, scaling, choosing K (elbow and silhouette), K=4,
  the segment table, the insights and the actions.
* **Part B** — the same analysis on real, messy transactions: the UCI Online Retail data set (541,909 invoice
  lines), with its data quality, the choice of a transform that survives heavy-tailed spend, and the segments.

Every number below is computed when the notebook runs; nothing is typed in.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import rfmseg
from rfmseg.datasets import fetch, study
from rfmseg.model.choose_k import bootstrap_stability, choose_k
from rfmseg.model.transform import TRANSFORMS, Transform
from rfmseg.model.scoring import rfm_matrix

%matplotlib inline
pd.set_option("display.width", 140)
# Part B's data: the UCI Online Retail file as `rfmseg datasets fetch online-retail` caches it (downloaded from
# UCI and checked the first time; beside a checkout with shared/data/online_retail/ it is copied from there)
ONLINE_RETAIL = fetch("online-retail").path
print("rfmseg", rfmseg.__version__, "| Online Retail:", ONLINE_RETAIL)""",
    ),
    ("md", "## Part A — the 200-customer study\n\n### The data: one row per order"),
    (
        "code",
        """orders = pd.read_csv(study.path(study.ORDERS_FILE), parse_dates=["order_date"])
print(f"{len(orders):,} orders from {orders['customer_id'].nunique()} customers, "
      f"{orders['order_date'].min():%Y-%m-%d} to {orders['order_date'].max():%Y-%m-%d}; as of {study.AS_OF}")
orders.head()""",
    ),
    (
        "md",
        """### RFM per customer

`rfmseg.segment` reads the orders, computes recency (days since the last order, as of the study's date),
frequency (distinct orders) and monetary (total spend) with DuckDB, scales them, fits K-Means with K=4 and
names the segments. `runs_dir=None` keeps everything in memory.""",
    ),
    (
        "code",
        """result = rfmseg.segment(study.path(study.ORDERS_FILE), as_of=study.AS_OF, runs_dir=None)
rfm = result.rfm.to_pandas()
print(f"recency {rfm.recency_days.min()}-{rfm.recency_days.max()} days, "
      f"frequency {rfm.frequency.min()}-{rfm.frequency.max()} orders, "
      f"monetary ${rfm.monetary.min():,.0f}-${rfm.monetary.max():,.0f}")
rfm.describe().loc[["mean", "min", "50%", "max"], ["recency_days", "frequency", "monetary"]].round(1)""",
    ),
    (
        "md",
        """### Scaling

Days, order counts and dollars live on different scales; K-Means measures plain distances, so each feature
is min-max scaled to [0, 1] (the study's choice). The fitted minimum and maximum are stored with the model, so
a new customer is scaled exactly like these ones.""",
    ),
    (
        "code",
        """x = rfm_matrix(result.rfm)
t = result.model.transform_
print(pd.DataFrame({"min": t.min_, "max": t.max_}, index=["recency_days", "frequency", "monetary"]))
z = t.apply(x)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, j, name in zip(axes, range(3), ["recency (scaled)", "frequency (scaled)", "monetary (scaled)"]):
    ax.hist(z[:, j], bins=30, color="#4472c4")
    ax.set_title(name)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """### How many segments? Elbow and silhouette

For K = 2..10: inertia (the elbow; its knee found by `kneed`), silhouette (higher = better separated),
Calinski-Harabasz and Davies-Bouldin, and the stability of each K across bootstrap resamples.""",
    ),
    (
        "code",
        """ks = choose_k(x)
metrics = pd.DataFrame(ks["metrics"]).set_index("k")
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
a1.plot(metrics.index, metrics["inertia"], "o-")
a1.set(title="Elbow: inertia by K", xlabel="K", ylabel="inertia")
a2.plot(metrics.index, metrics["silhouette"], "o-", color="#c55a11")
a2.set(title="Silhouette by K", xlabel="K", ylabel="silhouette")
for ax in (a1, a2):
    ax.axvline(ks["recommended_k"], color="grey", ls="--")
plt.tight_layout()
plt.show()
print(f"Recommended K = {ks['recommended_k']}: {ks['reason']}")
metrics[["inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "stability"]].round(3)""",
    ),
    (
        "md",
        """### K=4: the segments

Each cluster is named from where its centroid sits among all customers (recent? frequent? big spender?),
with a vocabulary of segment types and a one-to-one assignment (see docs/segments.md).""",
    ),
    (
        "code",
        """summary = result.summary
table = pd.DataFrame(summary["segments"]).set_index("name")
for name, s in table.iterrows():
    print(f"{name}: {s.customers} customers ({s.share_customers:.0%}), revenue ${s.revenue:,.0f} "
          f"({s.share_revenue:.0%}), mean {s.mean_recency_days:.0f} days, {s.mean_frequency:.0f} orders, "
          f"${s.mean_monetary:,.0f}; AOV ${s.aov:,.0f}")
print(f"Total: {summary['n_customers']} customers, revenue ${summary['total_revenue']:,.0f}")
table[["customers", "share_customers", "revenue", "share_revenue", "mean_recency_days", "mean_frequency",
       "mean_monetary", "aov"]].round(2)""",
    ),
    (
        "code",
        """seg = result.assignments.to_pandas()
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, g in seg.groupby("segment"):
    ax.scatter(g["recency_days"], g["monetary"], s=12 + 2 * g["frequency"], label=name, alpha=0.7)
ax.set(xlabel="recency (days)", ylabel="monetary ($)", title="The four segments (size = orders)")
ax.legend()
plt.show()""",
    ),
    ("md", "### Insights and actions\n\nComputed by rules from the segment table; each carries the values behind it."),
    (
        "code",
        """for i in summary["insights"]:
    print("•", i["text"])
print()
print("Actions, in priority order:")
for s in summary["segments"]:
    print(f" {s['priority']}. {s['name']}: {s['action']}")""",
    ),
    (
        "md",
        """## Part B — UCI Online Retail

541,909 invoice lines of a UK online shop (December 2010 – December 2011; UCI Machine Learning Repository,
Daqing Chen 2015, CC BY 4.0), fetched once into rfmseg's cache by the first cell (the same as running
`rfmseg datasets fetch online-retail`). The `online-retail` preset maps its columns (an order is an invoice, a line's
amount is Quantity × UnitPrice), nets returns out of spend, and sets aside every row it cannot use with a
reason code (docs/data-quality.md).

### Data quality: what was used and what was not""",
    ),
    (
        "code",
        """retail = rfmseg.segment(ONLINE_RETAIL, preset="online-retail", runs_dir=None)
rows = retail.summary["rows"]
print(f"rows read {rows['read']:,} = used {rows['used']:,} + quarantined {sum(rows['quarantined'].values()):,}")
quarantined = pd.Series(rows["quarantined"]).sort_values()
print(quarantined.to_string())
net = retail.summary["net_nonpositive"]
print(f"customers with net spend <= 0: {net['customers']} ({net['policy']})")
ax = quarantined.plot.barh(figsize=(7, 2.5), logx=True, title="Quarantined rows by reason (log scale)")
plt.show()""",
    ),
    (
        "md",
        """### Which transform? Heavy-tailed spend

A few wholesale-like customers spend a hundred times the median. Min-max scaling then squashes almost everyone
against zero on spend and frequency, and K-Means splits on recency alone (and, at larger K, gives the whales
segments of their own). `log-minmax` and `rank` spread the customers out. For each transform at K=4: the
smallest segment, whether the segment named Champions is the most recent and the most frequent, and the
stability of the segments across bootstrap resamples.""",
    ),
    (
        "code",
        """xr = rfm_matrix(retail.rfm)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
rows_ = []
for ax, kind in zip(axes, TRANSFORMS):
    zr = Transform.fit(kind, xr).apply(xr)
    ax.hist(zr[:, 2], bins=40, color="#4472c4")
    ax.set_title(f"monetary scaled by {kind}")
    run = rfmseg.segment(ONLINE_RETAIL, preset="online-retail", transform=kind, k=4, runs_dir=None)
    segs = pd.DataFrame(run.summary["segments"])
    champ = segs[segs.name == "Champions"].iloc[0]
    rows_.append({
        "transform": kind,
        "smallest segment": f"{segs.share_customers.min():.1%}",
        "Champions fit": bool(champ.mean_recency_days == segs.mean_recency_days.min()
                              and champ.mean_frequency == segs.mean_frequency.max()),
        "stability at K=4": round(bootstrap_stability(zr, 4)["stability"], 2),
        "squashed spend": f"{(zr[:, 2] < 0.05).mean():.0%}",
    })
plt.tight_layout()
plt.show()
pd.DataFrame(rows_).set_index("transform")""",
    ),
    (
        "md",
        """`rank` keeps every segment above 2 % of customers at every K from 2 to 10, names Champions the segment
that is both the most recent and the most frequent, and is stable at K=4, which is why it is the preset's
default (the full measurement, at K=4 and at the recommended K, is in docs/online-retail.md).

### The segments""",
    ),
    (
        "code",
        """s = retail.summary
print(f"{s['n_customers']:,} customers, revenue £{s['total_revenue']:,.0f}, as of {s['as_of']}, "
      f"transform {s['transform']}")
for seg_ in s["segments"]:
    print(f"{seg_['name']}: {seg_['customers']:,} customers ({seg_['share_customers']:.0%}), "
          f"{seg_['share_revenue']:.0%} of revenue, {seg_['mean_recency_days']:.0f} days, "
          f"{seg_['mean_frequency']:.1f} orders, £{seg_['mean_monetary']:,.0f}")
for i in s["insights"]:
    print("•", i["text"])
a = retail.assignments.to_pandas()
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, g in a.groupby("segment"):
    ax.scatter(g["recency_days"], g["monetary"].clip(lower=1), s=6, label=name, alpha=0.5)
ax.set(yscale="log", xlabel="recency (days)", ylabel="net spend (£, log)", title="Online Retail segments")
ax.legend()
plt.show()""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in CELLS:
        nb.cells.append(new_markdown_cell(source) if kind == "md" else new_code_cell(source))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding gives the same file
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run it and keep the outputs")
    parser.add_argument("--out", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    nb = build()
    NOTEBOOK.parent.mkdir(parents=True, exist_ok=True)
    if args.execute:
        execute(nb)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
