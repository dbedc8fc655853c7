"""The online table: how new events change a member's row (the folding rules against the snapshot's own
aggregates), and the memory-mapped layout read back."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import ibis
import ibis.expr.operations as ops
import pandas as pd
import pytest

from features.dataset.events import check_events
from features.pipelines.point_in_time import Sources, engagement_events, order_lines
from features.pipelines.schema import FEATURES, Needs, Online, View, resolve
from serving.online.table import EventFolder, OnlineTable, empty_row, typed

AS_OF = datetime(2026, 4, 1)
SCHEMA = resolve({Needs.orders, Needs.categories, Needs.engagements, Needs.content_types})
CATEGORIES = pd.DataFrame({"product_id": ["P1", "P2"], "category": ["tea", "cups"]}, dtype="string")
TYPES = pd.DataFrame({"content_id": ["C1"], "content_type": ["knowledge"]}, dtype="string")


def test_each_online_rule_matches_how_its_feature_aggregates() -> None:
    # given: every aggregate feature's expression over the views the snapshot builds
    orders = ibis.table(
        {
            "member_id": "string",
            "ts": "timestamp",
            "amount": "float64",
            "order_id": "string",
            "product_id": "string",
            "is_return": "boolean",
            "channel": "string",
        },
        name="o",
    )
    engagements = ibis.table(
        {"member_id": "string", "ts": "timestamp", "action": "string", "content_id": "string"}, name="e"
    )
    products = ibis.table({"product_id": "string", "category": "string"}, name="p")
    contents = ibis.table({"content_id": "string", "content_type": "string"}, name="c")
    src = Sources(orders=orders, engagements=engagements, products=products, contents=contents)
    views = {View.orders: order_lines(src, AS_OF, True), View.engagements: engagement_events(src, AS_OF, True)}
    adds = (ops.Sum, ops.Count, ops.CountStar, ops.CountDistinct, ops.CountDistinctStar)
    for feature in (f for f in FEATURES if not f.derived and f.view in views):
        op = feature.expr(views[feature.view]).op()
        while isinstance(op, (ops.Negate, ops.Cast)):  # minus a sum still adds up
            op = op.arg
        # then: sums and counts add, minimums take the least, maximums the greatest; distinct counts whose new
        # events may repeat a key (a product bought again) wait for the build
        expected = {
            Online.add: adds,
            Online.least: (ops.Min,),
            Online.greatest: (ops.Max,),
            Online.build: (ops.CountDistinct,),
        }[feature.online_rule]
        assert isinstance(op, expected), (feature.name, feature.online_rule, type(op).__name__)


def folder() -> EventFolder:
    return EventFolder(SCHEMA, AS_OF, {"products": CATEGORIES, "contents": TYPES})


def events(table: str, *rows: dict) -> pd.DataFrame:
    return check_events({table: list(rows)}).good.get(table, pd.DataFrame())


def test_an_order_after_the_snapshot_counts_as_today_and_derived_features_follow() -> None:
    # given: a member who bought twice, the last time 40 days before the snapshot
    row = empty_row(SCHEMA) | {
        "recency_days": 40.0,
        "first_order_days_ago": 100.0,
        "frequency": 2,
        "monetary": 50.0,
        "sales_value": 50.0,
        "order_lines": 2,
        "distinct_products": 1,
        "distinct_categories": 1,
        "orders_90d": 1,
        "spend_90d": 20.0,
        "orders_180d": 2,
        "spend_180d": 50.0,
        "orders_prev_30d": 1,
        "spend_prev_30d": 20.0,
        "avg_basket": 25.0,
    }
    # when: they order a new product a week after the snapshot, and read an article
    order = events(
        "orders", {"member_id": "m", "ts": "2026-04-08T10:00", "amount": 30, "order_id": "O3", "product_id": "P2"}
    )
    read = events("engagements", {"member_id": "m", "ts": "2026-04-08T10:05", "action": "read", "content_id": "C1"})
    folded = folder().fold({"m": typed(SCHEMA, row)}, order, read)
    new = folded.rows["m"]
    # then: recency is 0, counts and spends add in every window that holds "today", not in earlier ones
    assert new["recency_days"] == 0 and new["first_order_days_ago"] == 100.0
    assert (new["frequency"], new["order_lines"], new["monetary"]) == (3, 3, 80.0)
    assert (new["orders_7d"], new["spend_7d"], new["orders_90d"], new["spend_180d"]) == (1, 30.0, 2, 80.0)
    assert (new["orders_prev_30d"], new["spend_prev_30d"]) == (1, 20.0)
    # derived features are worked out again from the new row; distinct counts wait for the next build
    assert new["avg_basket"] == pytest.approx(80 / 3) and new["orders_trend_30d"] == pytest.approx(2 / 2)
    assert new["recency_share"] == 0 and new["orders_per_month"] == pytest.approx(30 * 3 / 100)
    assert new["distinct_products"] == 1
    assert (new["eng_reads"], new["eng_reads_knowledge"], new["days_since_last_engagement"]) == (1, 1, 0)
    # and the new interactions are what the recommenders fold in
    assert folded.items == {"products": {"m": {"P2": 1.0}}, "contents": {"m": {"C1": 2.0}}}


def test_a_late_event_before_the_snapshot_counts_on_its_own_day_and_a_new_member_starts_empty() -> None:
    late = events("orders", {"member_id": "new", "ts": "2026-03-11T00:00", "amount": 12.5, "order_id": "L1"})
    new = folder().fold({"new": None}, late, events("engagements"))
    row = new.rows["new"]
    assert row["recency_days"] == 21.0 and row["first_order_days_ago"] == 21.0
    assert (row["orders_7d"], row["orders_30d"], row["spend_30d"], row["eng_total"]) == (0, 1, 12.5, 0)


def test_the_online_table_reads_back_every_snapshot_value(tmp_path: Path) -> None:
    features = pd.DataFrame(
        {
            "member_id": ["b", "a", "ü"],
            "recency_days": [3.0, None, 1.5],
            "frequency": pd.array([2, 0, 1], dtype="Int64"),
            "channel_main": pd.array(["web", None, "store"], dtype="string"),
            "consent_marketing": pd.array([True, None, False], dtype="boolean"),
        }
    )
    table = OnlineTable.open(tmp_path, features)
    assert len(table) == 3 and table.position("zz") is None and table.row("nobody") is None
    assert table.row("a") == {"recency_days": None, "frequency": 0, "channel_main": None, "consent_marketing": None}
    assert table.row("b") == {"recency_days": 3.0, "frequency": 2, "channel_main": "web", "consent_marketing": True}
    assert table.row("ü")["consent_marketing"] is False
    assert OnlineTable.open(tmp_path).row("b") == table.row("b")  # laid out once, then read from disk
