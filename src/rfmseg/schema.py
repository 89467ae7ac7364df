"""Canonical column names shared by every stage."""

from __future__ import annotations

CUSTOMER_ID = "customer_id"
ORDER_ID = "order_id"
ORDER_DATE = "order_date"
AMOUNT = "amount"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"

TRANSACTION_FIELDS = (CUSTOMER_ID, ORDER_ID, ORDER_DATE, AMOUNT)
"""Order-level transactions: one row per order (or per order line, summed per order)."""

RFM_FIELDS = ("recency_days", "frequency", "monetary")
RFM_TABLE_FIELDS = (CUSTOMER_ID, *RFM_FIELDS)

# names other tools commonly use, recognised without a mapping (lower-cased, spaces and _ removed)
ALIASES = {
    CUSTOMER_ID: ("customerid", "customer", "cust", "custid", "clientid", "userid", "entityid"),
    ORDER_ID: ("orderid", "order", "invoiceno", "invoice", "invoiceid", "transactionid"),
    ORDER_DATE: ("orderdate", "date", "invoicedate", "timestamp", "ts", "orderts", "datetime"),
    AMOUNT: ("amount", "ordertotal", "total", "revenue", "value", "sales"),
    QUANTITY: ("quantity", "qty"),
    UNIT_PRICE: ("unitprice", "price"),
}


def normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())
