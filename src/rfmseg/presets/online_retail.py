"""The ``online-retail`` preset: invoice lines of the UCI Online Retail data set (and Online Retail II).

Layout: one row per invoice line — ``InvoiceNo``, ``StockCode``, ``Description``, ``Quantity``,
``InvoiceDate``, ``UnitPrice``, ``CustomerID``, ``Country``. Online Retail II names three of them
differently (``Invoice``, ``Price``, ``Customer ID``); both are recognised without options.

An order is an invoice; a line's amount is Quantity × UnitPrice. Every row is used or quarantined with the
first reason code below that it meets (the generic ones are documented in :mod:`rfmseg.io.validate`):

==========================  ============================================================================
``bad_debt_adjustment``     invoice number starts with ``A``: an accounting entry ("Adjust bad debt"), no sale
``missing_customer_id``     no CustomerID: the line cannot be attributed to anyone
``missing_order_id``        no invoice number
``bad_date``                InvoiceDate missing or not a date
``bad_amount``              Quantity or UnitPrice missing or not a number
``duplicate_line``          an exact copy (every original column equal) of an earlier line; the first is kept
``negative_price``          UnitPrice < 0 (no sale has a negative price)
``zero_price``              UnitPrice = 0: a free line (samples, manual fixes) earns nothing and is no order
``excluded_return``         with ``--returns exclude`` only: a return (see below)
``after_as_of``             dated after the as-of date
``returns_only_customer``   with ``--returns net``: the customer's remaining rows are all returns
==========================  ============================================================================

Returns: a line on an invoice whose number starts with ``C`` (a cancellation) or with a negative quantity.
By default (``--returns net``) its value is subtracted from the customer's monetary, and it is not an order
and does not set recency. A customer left with returns only (the purchases predate the file) has no order
to measure, so those rows are quarantined as ``returns_only_customer``. A customer whose net monetary ends
at or below zero (everything bought was returned) is kept — the orders happened, so recency and frequency
are real — and is counted in the run's ``net_nonpositive`` block and warnings.
"""

from __future__ import annotations

from rfmseg import schema
from rfmseg.io.rules import GENERIC_RULES, Policy, Returns, Rule
from rfmseg.presets.preset import Preset

NAME = "online-retail"
CURRENCY = "£"
DEFAULT_TRANSFORM = "rank"
"""chosen by measurement on the UCI file: see docs/online-retail.md"""

COLUMNS = {
    schema.CUSTOMER_ID: "CustomerID",
    schema.ORDER_ID: "InvoiceNo",
    schema.ORDER_DATE: "InvoiceDate",
    schema.QUANTITY: "Quantity",
    schema.UNIT_PRICE: "UnitPrice",
}
ALTERNATIVES = {
    schema.CUSTOMER_ID: ("Customer ID",),
    schema.ORDER_ID: ("Invoice",),
    schema.UNIT_PRICE: ("Price",),
}

LAYOUTS = {
    "UCI Online Retail": (
        "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"
    ),
    "UCI Online Retail II": (
        "Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"
    ),
}  # fmt: skip
"""the public data sets this preset reads, by their own columns: a file with all of them, run without the
preset, gets it suggested (:func:`rfmseg.presets.known_layout`)"""

RETURNS_CONDITION = "upper(order_id) LIKE 'C%' OR quantity < 0"

BAD_DEBT = Rule(
    "bad_debt_adjustment",
    "upper(order_id) LIKE 'A%'",
    "bad-debt adjustment (invoice number starting with A), an accounting entry and no sale",
    "nothing to fix: adjustments are not purchases",
)
DUPLICATE = Rule(
    "duplicate_line",
    "_duplicate",
    "exact copy of an earlier line (every column equal)",
    "nothing to fix if the export repeated lines; the first copy is used",
)
NEGATIVE_PRICE = Rule(
    "negative_price",
    "unit_price < 0",
    "negative unit price",
    "fix the price; a refund is a negative quantity at a positive price",
)
ZERO_PRICE = Rule(
    "zero_price",
    "unit_price = 0",
    "zero unit price (a free line earns nothing and is no order)",
    "nothing to fix if the line was free",
)

RULES: tuple[Rule, ...] = (
    BAD_DEBT,
    *GENERIC_RULES[:4],  # missing_customer_id, missing_order_id, bad_date, bad_amount: checked before the rest
    DUPLICATE,
    NEGATIVE_PRICE,
    ZERO_PRICE,
)

# a line identical (all original columns equal) to an earlier line: the rows of each group of copies but
# the first (grouping is faster than a window over every column)
DUPLICATE_FLAG = (
    "_duplicate",
    "_row IN (SELECT unnest(list(_row ORDER BY _row)[2:]) FROM {source} GROUP BY {source_columns} HAVING count(*) > 1)",
)


MAX_QUARANTINE = 0.40
"""The quarantine guard of this layout: a quarter of the UCI lines have no CustomerID (135,077 of 541,909,
24.9 %, and up to 37.7 % in one month, January 2011: guest checkouts, not a misread file), above the default
20 %; a misread date or number format sets aside far more of the lines it judges (every line, or every date
with a day above 12: about 60 %)."""


def policy(returns: Returns = "net", bad_rows: str = "quarantine") -> Policy:
    return Policy(
        bad_rows=bad_rows,  # type: ignore[arg-type]
        returns_condition=RETURNS_CONDITION,
        returns=returns,
        rules_before=RULES,
        extra_columns=(DUPLICATE_FLAG,),
        max_quarantine=MAX_QUARANTINE,
    )


def preset() -> Preset:
    return Preset(
        NAME,
        "UCI Online Retail invoice lines (also Online Retail II): returns netted, messy rows quarantined",
        columns=dict(COLUMNS),
        policy=policy(),
        currency=CURRENCY,
        transform=DEFAULT_TRANSFORM,
        alternatives=dict(ALTERNATIVES),
    )
