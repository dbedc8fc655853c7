"""The UCI Online Retail importer on the real file: members, returns, guests and the quarantine summary."""

from __future__ import annotations

import pandas as pd
import pytest

from features.dataset.store import Dataset
from tests.conftest import ONLINE_RETAIL_CSV, requires_online_retail

pytestmark = [requires_online_retail]


@pytest.fixture(scope="module")
def retail(online_retail: tuple) -> tuple[Dataset, dict]:
    dataset, summary = online_retail
    return dataset, {t.table: t for t in summary.tables}


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(ONLINE_RETAIL_CSV, dtype=str, keep_default_na=False)


@pytest.mark.slow
def test_every_customer_becomes_a_member(retail: tuple[Dataset, dict]) -> None:
    dataset, tables = retail
    assert tables["members"].rows_added == 4_372
    assert dataset.read("members")["member_id"].nunique() == 4_372
    assert dataset.read("members")["member_id"].str.fullmatch(r"\d{5}").all()  # "17850.0" -> "17850"


@pytest.mark.slow
def test_no_line_is_lost_and_the_quarantine_says_why(retail: tuple[Dataset, dict]) -> None:
    dataset, tables = retail
    orders = tables["orders"]
    assert orders.rows_read == 541_909
    assert orders.rows_added + orders.rows_quarantined == 541_909
    assert orders.reasons == {
        "row: duplicate key": 5_259,
        "StockCode: non-product stock code (postage, fee, adjustment or voucher)": 2_950,
        "UnitPrice: not positive (stock adjustment or free item, not a sale)": 2_497,
    }
    quarantine = dataset.read_quarantine("orders")
    assert len(quarantine) == 10_706
    assert set(quarantine.loc[quarantine["reason"].str.startswith("non-product"), "detail"].isna()) == {True}


@pytest.mark.slow
def test_cancellations_become_returns_and_guests_stay_unattributed(
    retail: tuple[Dataset, dict], raw: pd.DataFrame
) -> None:
    dataset, _ = retail
    orders = dataset.read("orders")
    returns = orders[orders["is_return"]]
    assert returns["order_id"].str.startswith("C").all()
    assert (returns["quantity"] < 0).all() and (returns["amount"] < 0).all()
    assert not orders.loc[~orders["is_return"], "order_id"].str.startswith("C").any()
    assert len(returns) == 8_668
    # Guest lines (no CustomerID) are kept for item popularity, with no member.
    assert orders["member_id"].isna().sum() == 131_549
    raw_guests = raw["CustomerID"] == ""
    assert raw_guests.sum() == 135_080  # the rest of the guests' lines were set aside above


@pytest.mark.slow
def test_amount_is_quantity_times_unit_price(retail: tuple[Dataset, dict]) -> None:
    dataset, _ = retail
    first = dataset.read("orders").iloc[0]
    # 536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0
    assert (first["order_id"], first["product_id"], first["member_id"]) == ("536365", "85123A", "17850")
    assert first["amount"] == pytest.approx(6 * 2.55)
    assert first["ts"] == pd.Timestamp("2010-12-01 08:26:00")
    products = dataset.read("products").set_index("product_id")
    assert products.loc["85123A", "name"] == "WHITE HANGING HEART T-LIGHT HOLDER"
