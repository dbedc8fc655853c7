"""Importer for the UCI Online Retail format (InvoiceNo, StockCode, ..., CustomerID, Country)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from features.common.errors import DataError
from features.common.progress import step
from features.dataset.contract import MEMBERS, ORDERS, PRODUCTS
from features.dataset.importers import ImportSummary, store_validated
from features.dataset.readers import read_raw
from features.dataset.store import Dataset
from features.dataset.validation import quarantine_frame, validate

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
# Postage, fees, manual adjustments, samples and bank charges: money moves, but no product does.
NON_PRODUCT_CODES = frozenset({"POST", "DOT", "M", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "B"})
_NON_PRODUCT_REASON = "non-product stock code (postage, fee, adjustment or voucher)"


def _set_aside(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Rows that are not product sales: (mask, field, reason), first reason per row."""
    code = frame["StockCode"].fillna("").str.strip()
    field = pd.Series(None, index=frame.index, dtype=object)
    reason = pd.Series(None, index=frame.index, dtype=object)

    def mark(mask: pd.Series, name: str, why: str) -> None:
        new = mask & field.isna()
        field[new] = name
        reason[new] = why

    quantity = pd.to_numeric(frame["Quantity"], errors="coerce")
    price = pd.to_numeric(frame["UnitPrice"], errors="coerce")
    mark(code == "", "StockCode", "missing")
    mark(
        code.str.upper().isin(NON_PRODUCT_CODES) | code.str.lower().str.startswith("gift_"),
        "StockCode",
        _NON_PRODUCT_REASON,
    )
    mark(quantity.isna(), "Quantity", "not a number")
    mark(price.isna(), "UnitPrice", "not a number")
    mark(price <= 0, "UnitPrice", "not positive (stock adjustment or free item, not a sale)")
    return field.notna(), field, reason


def import_online_retail(dataset: Dataset, path: Path, encoding: str = "utf-8") -> ImportSummary:
    """Orders (cancellations as returns, guests kept unattributed), members and products from one file."""
    started = time.perf_counter()
    with step(f"reading {path}"):
        raw = read_raw(path, encoding)
    frame = raw.frame
    absent = [c for c in ONLINE_RETAIL_COLUMNS if c not in frame.columns]
    if absent:
        raise DataError(
            f"{path}: not in the Online Retail format: missing column {', '.join(absent)} "
            f"(expected {', '.join(ONLINE_RETAIL_COLUMNS)}; found {', '.join(map(str, frame.columns))})"
        )

    with step(f"validating {len(frame):,} order lines"):
        aside, field, reason = _set_aside(frame)
        kept = frame[~aside]
        quantity = pd.to_numeric(kept["Quantity"], errors="coerce")
        orders = pd.DataFrame(
            {
                "member_id": kept["CustomerID"],
                "ts": kept["InvoiceDate"],
                "amount": (quantity * pd.to_numeric(kept["UnitPrice"], errors="coerce")).round(4),
                "order_id": kept["InvoiceNo"],
                "product_id": kept["StockCode"].str.strip(),
                "quantity": quantity,
                "channel": "online",
                "is_return": kept["InvoiceNo"].fillna("").str.upper().str.startswith("C"),
            },
            index=kept.index,
        )
        validated_orders = validate(ORDERS, orders, raw.source, kept)
        set_aside = quarantine_frame(raw.source, frame.index[aside], field[aside], reason[aside], None, frame[aside])
        validated_orders.quarantine = pd.concat([set_aside, validated_orders.quarantine], ignore_index=True)

        # Every customer is a member, even one whose only lines were set aside.
        member_ids = frame["CustomerID"].dropna().drop_duplicates()
        members = validate(MEMBERS, pd.DataFrame({"member_id": member_ids}), raw.source)
        members.good = members.good.drop_duplicates("member_id")

        sales = kept.loc[validated_orders.good.index]
        sales = sales[~validated_orders.good["is_return"].astype(bool)]
        # A product's name is its most frequent description; its price the median unit price it sold at.
        names = (
            sales.groupby(["StockCode", "Description"])
            .size()
            .sort_values(ascending=False)
            .reset_index()
            .drop_duplicates("StockCode")
            .set_index("StockCode")["Description"]
        )
        prices = pd.to_numeric(sales["UnitPrice"]).groupby(sales["StockCode"]).median()
        products = pd.DataFrame({"product_id": prices.index, "price": prices.to_numpy(), "active": True})
        products["name"] = products["product_id"].map(names)
        # The file says nothing of launches: a stock code is published when it first sold (guests' sales count).
        first_sold = validated_orders.good["ts"].groupby(sales["StockCode"].str.strip()).min()
        products["published_at"] = products["product_id"].str.strip().map(first_sold)
        validated_products = validate(PRODUCTS, products.set_index(pd.RangeIndex(1, len(products) + 1)), raw.source)

    with step(f"writing dataset {dataset.name}"):
        tables = [
            store_validated(dataset, "orders", validated_orders, len(frame)),
            store_validated(dataset, "members", members, len(member_ids)),
            store_validated(dataset, "products", validated_products, len(products)),
        ]
        dataset.record(
            {
                "kind": "import-online-retail",
                "source": str(path),
                "rows_added": {t.table: t.rows_added for t in tables},
                "rows_quarantined": {t.table: t.rows_quarantined for t in tables},
            }
        )
    return ImportSummary(
        dataset=dataset.name,
        source=str(path),
        tables=tables,
        ignored_columns=["Country"],
        seconds=round(time.perf_counter() - started, 2),
    )
