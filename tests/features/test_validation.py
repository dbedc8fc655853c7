"""The data contract's row checks: each broken row is set aside with its reason, good rows are kept."""

from __future__ import annotations

import json

import pandas as pd

from features.dataset.contract import ENGAGEMENTS, MEMBERS, ORDERS, PRODUCTS
from features.dataset.validation import reason_counts, validate


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1), dtype=object)


def test_timestamps_accept_iso_dates_datetimes_offsets_and_epoch_seconds() -> None:
    # given
    rows = frame(
        [
            {"member_id": "a", "ts": "2024-03-01", "amount": "1"},
            {"member_id": "a", "ts": "2024-03-01 10:30:00", "amount": "2"},
            {"member_id": "a", "ts": "2024-03-01T10:30:00+02:00", "amount": "3"},
            {"member_id": "a", "ts": "1709289000", "amount": "4"},
        ]
    )
    # when
    result = validate(ORDERS, rows, "test")
    # then
    assert result.quarantine.empty
    assert list(result.good["ts"]) == [
        pd.Timestamp("2024-03-01 00:00:00"),
        pd.Timestamp("2024-03-01 10:30:00"),
        pd.Timestamp("2024-03-01 08:30:00"),  # converted to UTC
        pd.Timestamp("2024-03-01 10:30:00"),
    ]


def test_unparseable_and_implausible_timestamps_are_set_aside_with_their_value() -> None:
    rows = frame(
        [
            {"member_id": "a", "ts": "yesterday", "amount": "1"},
            {"member_id": "a", "ts": "1709289000000", "amount": "1"},  # milliseconds, not seconds
            {"member_id": "a", "ts": "2024-03-01", "amount": "1"},
        ]
    )
    result = validate(ORDERS, rows, "test")
    q = result.quarantine.set_index("row")
    assert q.loc[1, "field"] == "ts" and q.loc[1, "reason"] == "unparseable timestamp"
    assert q.loc[1, "detail"] == "yesterday"
    assert q.loc[2, "field"] == "ts" and "out of range" in q.loc[2, "reason"]
    assert list(result.good.index) == [3]


def test_missing_member_id_is_a_guest_order_but_a_broken_engagement() -> None:
    orders = validate(ORDERS, frame([{"member_id": "", "ts": "2024-01-01", "amount": "5"}]), "o.csv")
    engagements = validate(ENGAGEMENTS, frame([{"member_id": " ", "ts": "2024-01-01", "action": "view"}]), "e.csv")
    assert len(orders.good) == 1 and pd.isna(orders.good["member_id"].iloc[0])
    assert engagements.good.empty
    assert reason_counts(engagements.quarantine) == {"member_id: missing": 1}
    assert engagements.quarantine["source"].iloc[0] == "e.csv"


def test_negative_quantity_only_on_returns() -> None:
    rows = frame(
        [
            {"member_id": "a", "ts": "2024-01-01", "amount": "-5", "quantity": "-1", "is_return": "false"},
            {"member_id": "a", "ts": "2024-01-02", "amount": "-5", "quantity": "-1", "is_return": "true"},
            {"member_id": "a", "ts": "2024-01-03", "amount": "5", "quantity": "1", "is_return": "yes"},
            {"member_id": "a", "ts": "2024-01-04", "amount": "5", "quantity": "1"},
        ]
    )
    result = validate(ORDERS, rows, "test")
    assert list(result.good.index) == [2, 4]
    assert bool(result.good.loc[2, "is_return"]) and not bool(result.good.loc[4, "is_return"])
    assert reason_counts(result.quarantine) == {
        "quantity: negative where not a return": 1,
        "quantity: positive on a return line": 1,
    }


def test_unknown_action_is_named_with_the_allowed_values() -> None:
    rows = frame(
        [
            {"member_id": "a", "ts": "2024-01-01", "action": "dance"},
            {"member_id": "a", "ts": "2024-01-01", "action": "Join Group"},
        ]
    )
    result = validate(ENGAGEMENTS, rows, "test")
    assert list(result.good["action"]) == ["join_group"]  # case and spacing normalised
    reason = result.quarantine["reason"].iloc[0]
    assert reason.startswith("unknown value") and "view" in reason and "event_attend" in reason
    assert result.quarantine["detail"].iloc[0] == "dance"


def test_duplicate_keys_name_the_first_row_and_keep_it() -> None:
    rows = frame(
        [
            {"member_id": "m1", "city": "Hangzhou"},
            {"member_id": "m2", "city": "Wuhan"},
            {"member_id": "m1", "city": "Suzhou"},
        ]
    )
    result = validate(MEMBERS, rows, "members.csv")
    assert list(result.good["member_id"]) == ["m1", "m2"]
    q = result.quarantine.iloc[0]
    assert (q["row"], q["field"], q["reason"], q["detail"]) == (
        3,
        "member_id",
        "duplicate key",
        "same member_id as row 1",
    )
    assert json.loads(q["raw"]) == {"member_id": "m1", "city": "Suzhou"}


def test_identical_event_rows_are_duplicates_but_near_identical_ones_are_not() -> None:
    line = {"member_id": "a", "ts": "2024-01-01", "amount": "5", "product_id": "p1"}
    result = validate(ORDERS, frame([line, dict(line), {**line, "amount": "6"}]), "test")
    assert list(result.good.index) == [1, 3]
    assert result.quarantine["detail"].iloc[0] == "same values as row 1"


def test_spreadsheet_float_ids_become_integers_and_numbers_are_checked() -> None:
    rows = frame(
        [
            {"product_id": "17850.0", "price": "2.5", "active": "1"},
            {"product_id": "A-1", "price": "cheap", "active": "no"},
            {"product_id": "X", "price": "-1", "active": "maybe"},
        ]
    )
    result = validate(PRODUCTS, rows, "test")
    assert list(result.good["product_id"]) == ["17850"]
    assert result.good["price"].iloc[0] == 2.5 and bool(result.good["active"].iloc[0])
    assert reason_counts(result.quarantine) == {"price: not a number": 1, "price: negative": 1}


def test_every_row_is_either_kept_or_quarantined() -> None:
    rows = frame(
        [
            {
                "member_id": str(i % 7) if i % 5 else "",
                "ts": "2024-01-01" if i % 3 else "bad",
                "action": "view",
            }
            for i in range(100)
        ]
    )
    result = validate(ENGAGEMENTS, rows, "test")
    assert len(result.good) + len(result.quarantine) == 100
    assert set(result.good.index).isdisjoint(set(result.quarantine["row"]))
