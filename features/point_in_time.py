"""Point-in-time member features and labels, written once as Ibis expressions (DuckDB here, Spark at scale).

Every feature "as of" T uses events with ts < T only; labels for horizon H use T <= ts < T + H days (the H days
that start at T). Money is summed as DECIMAL and gaps as whole seconds, so results do not depend on the order in
which parallel threads add things up: the same data always gives the same snapshot, bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir

from features.contract import CONTENT_TYPES

SECONDS_PER_DAY = 86_400
WINDOWS = (7, 30, 90, 180)
CONTENT_ACTIONS = ("read", "like", "share", "comment")
ATTRIBUTES = ("age_band", "city", "acquisition_channel", "persona", "consent_marketing")
MONEY = "decimal(18, 4)"
MAX_CHANNELS = 8


@dataclass(frozen=True)
class FeatureBlock:
    """Per-member features from one source, and which of them are counts or sums (zero for absent members)."""

    table: ir.Table
    zero_when_absent: tuple[str, ...]


@dataclass(frozen=True)
class Sources:
    """The canonical tables as Ibis tables; a table the dataset lacks is None."""

    orders: ir.Table
    engagements: ir.Table | None = None
    members: ir.Table | None = None
    products: ir.Table | None = None
    contents: ir.Table | None = None


def _days_ago(ts: ir.TimestampValue, as_of: datetime) -> ir.FloatingValue:
    # Day differences from epoch seconds: engines disagree on timestamp deltas in days at boundaries.
    # Stored times are naive UTC, and so is `as_of`: read it as UTC, not in the machine's time zone.
    as_of_epoch = as_of.replace(tzinfo=UTC).timestamp()
    return (ibis.literal(as_of_epoch) - ts.epoch_seconds().cast("float64")) / SECONDS_PER_DAY


def _safe_name(value: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_") or "unknown"


def _attach(left: ir.Table, right: ir.Table) -> ir.Table:
    """Left join on member_id, keeping one member_id column."""
    return left.left_join(right, "member_id").drop("member_id_right")


def _before(table: ir.Table, as_of: datetime) -> ir.Table:
    return table.filter(table.ts < ibis.timestamp(as_of))


def _order_lines(src: Sources, as_of: datetime) -> ir.Table:
    """Members' order lines before T, with derived columns every order feature uses."""
    o = _before(src.orders, as_of)
    o = o.filter(o.member_id.notnull())
    if src.products is not None:
        o = o.left_join(src.products.select("product_id", "category"), "product_id")
    return o.mutate(
        days_ago=_days_ago(o.ts, as_of),
        sale=~o.is_return.fill_null(False),
        # An order is its order_id; files without one count each distinct timestamp as one order.
        visit=o.order_id.fill_null(o.ts.cast("string")),
        money=o.amount.cast(MONEY),
    )


def top_channels(src: Sources, as_of: datetime) -> list[str]:
    """The most used order channels before T (the columns of the channel mix)."""
    o = _before(src.orders, as_of)
    o = o.filter(o.channel.notnull())
    counts = o.group_by("channel").aggregate(n=o.count())
    counts = counts.order_by([ibis.desc("n"), "channel"]).limit(MAX_CHANNELS)
    return [str(c) for c in counts.to_pyarrow()["channel"].to_pylist()]


def order_features(src: Sources, as_of: datetime, channels: list[str], has_categories: bool) -> FeatureBlock:
    o = _order_lines(src, as_of)
    sale, days = o.sale, o.days_ago
    aggs: dict[str, ir.Value] = {
        "recency_days": days.min(where=sale),
        "first_order_days_ago": days.max(where=sale),
        "frequency": o.visit.nunique(where=sale),
        "monetary": o.money.sum(),
        "sales_value": o.money.sum(where=sale),
        "returned_value": -o.money.sum(where=~sale),
        "order_lines": o.count(where=sale),
        "distinct_products": o.product_id.nunique(where=sale),
    }
    if has_categories:
        aggs["distinct_categories"] = o.category.nunique(where=sale)
    for w in WINDOWS:
        aggs[f"orders_{w}d"] = o.visit.nunique(where=sale & (days <= w))
        aggs[f"spend_{w}d"] = o.money.sum(where=days <= w)
    for w in (30, 90):
        earlier = (days > w) & (days <= 2 * w)
        aggs[f"orders_prev_{w}d"] = o.visit.nunique(where=sale & earlier)
        aggs[f"spend_prev_{w}d"] = o.money.sum(where=earlier)
    for channel in channels:
        aggs[f"channel_{_safe_name(channel)}_orders"] = o.visit.nunique(where=sale & (o.channel == channel))
    agg = o.group_by("member_id").aggregate(**aggs)

    # A sum over no matching rows is NULL; a member with orders but none in a window spent zero there.
    money_cols = [c for c in aggs if c.startswith(("monetary", "sales_value", "returned_value", "spend_"))]
    count_cols = [c for c in aggs if c not in money_cols and c not in ("recency_days", "first_order_days_ago")]
    channel_counts = [f"channel_{_safe_name(c)}_orders" for c in channels]
    agg = agg.mutate(
        **{c: agg[c].fill_null(0).cast("float64") for c in money_cols},
        **{c: agg[c].fill_null(0) for c in count_cols},
    )
    derived: dict[str, ir.Value] = {
        "orders_trend_30d": (agg.orders_30d + 1) / (agg.orders_prev_30d + 1),
        "orders_trend_90d": (agg.orders_90d + 1) / (agg.orders_prev_90d + 1),
        "spend_trend_30d": (agg.spend_30d.clip(lower=0) + 1.0) / (agg.spend_prev_30d.clip(lower=0) + 1.0),
        "spend_trend_90d": (agg.spend_90d.clip(lower=0) + 1.0) / (agg.spend_prev_90d.clip(lower=0) + 1.0),
        "avg_basket": agg.sales_value / agg.frequency.nullif(0),
        "returns_share": agg.returned_value / agg.sales_value.nullif(0),
    }
    for channel in channels:
        name = f"channel_{_safe_name(channel)}_orders"
        derived[f"channel_{_safe_name(channel)}_share"] = agg[name] / agg.frequency.nullif(0)
    agg = agg.mutate(**derived).drop(*channel_counts)

    gaps = _purchase_gaps(o)
    agg = _attach(agg, gaps).mutate(
        # Same-day repeat orders make tiny gaps; a day is the smallest usual gap worth comparing against.
        # (Not `greatest`: it skips NULLs, and a member with one order has no usual gap at all.)
        days_since_last_vs_usual_gap=lambda t: t.recency_days / ibis.ifelse(t.gap_mean_days < 1.0, 1.0, t.gap_mean_days)
    )
    zero = tuple(c for c in money_cols + count_cols if c not in channel_counts)
    return FeatureBlock(agg, zero)


def _purchase_gaps(o: ir.Table) -> ir.Table:
    """Mean and standard deviation of the days between a member's consecutive orders."""
    sales = o.filter(o.sale)
    visits = sales.group_by(["member_id", "visit"]).aggregate(at=sales.ts.min().epoch_seconds())
    window = ibis.window(group_by="member_id", order_by=["at", "visit"])  # ties broken by the order id
    gaps = visits.mutate(gap=(visits.at - visits.at.lag().over(window)).cast("int64"))
    gaps = gaps.filter(gaps.gap.notnull())
    exact = gaps.gap.cast("decimal(38, 0)")
    stats = gaps.group_by("member_id").aggregate(n=gaps.count(), s=exact.sum(), ss=(exact * exact).sum())
    n = stats.n.cast("float64")
    mean_seconds = stats.s.cast("float64") / n
    # Sample variance from exact sums: n*ss - s^2 is computed in DECIMAL, so it cannot lose order-dependent bits.
    var_seconds = (stats.n * stats.ss - stats.s * stats.s).cast("float64") / (n * (n - 1)).nullif(0)
    return stats.select(
        "member_id",
        gap_mean_days=mean_seconds / SECONDS_PER_DAY,
        gap_std_days=var_seconds.clip(lower=0).sqrt() / SECONDS_PER_DAY,
    )


def engagement_features(src: Sources, as_of: datetime, has_content_types: bool) -> FeatureBlock:
    assert src.engagements is not None
    e = _before(src.engagements, as_of)
    if has_content_types:
        assert src.contents is not None
        e = e.left_join(src.contents.select("content_id", "content_type"), "content_id")
    e = e.mutate(days_ago=_days_ago(e.ts, as_of))
    action, days = e.action, e.days_ago
    aggs: dict[str, ir.Value] = {
        "eng_total": e.count(),
        "eng_views": e.count(where=action == "view"),
        "eng_messages": e.count(where=action == "message"),
        "eng_checkins": e.count(where=action == "checkin"),
        "eng_events_attended": e.count(where=action == "event_attend"),
        "groups_joined": e.count(where=action == "join_group"),
        "groups_left": e.count(where=action == "leave_group"),
        "days_since_last_engagement": days.min(),
        "first_engagement_days_ago": days.max(),
        "eng_active_days_30d": e.ts.date().nunique(where=days <= 30),
    }
    for name in CONTENT_ACTIONS:
        aggs[f"eng_{name}s"] = e.count(where=action == name)
        if has_content_types:
            for ctype in CONTENT_TYPES:
                aggs[f"eng_{name}s_{ctype}"] = e.count(where=(action == name) & (e.content_type == ctype))
    for w in (30, 90):
        aggs[f"eng_{w}d"] = e.count(where=days <= w)
        aggs[f"eng_prev_{w}d"] = e.count(where=(days > w) & (days <= 2 * w))
    agg = e.group_by("member_id").aggregate(**aggs)
    agg = agg.mutate(
        eng_trend_30d=(agg.eng_30d + 1) / (agg.eng_prev_30d + 1),
        eng_trend_90d=(agg.eng_90d + 1) / (agg.eng_prev_90d + 1),
    )
    # Members who never engaged have zero counts; their recency and trends stay empty.
    recencies = ("days_since_last_engagement", "first_engagement_days_ago")
    return FeatureBlock(agg, tuple(c for c in aggs if c not in recencies))


def known_members(src: Sources, as_of: datetime) -> ir.Table:
    """Members with an order or engagement before T, or who joined before T."""
    parts = [_before(src.orders, as_of).filter(lambda t: t.member_id.notnull()).select("member_id")]
    if src.engagements is not None:
        parts.append(_before(src.engagements, as_of).select("member_id"))
    if src.members is not None:
        m = src.members
        parts.append(m.filter(m.joined_at < ibis.timestamp(as_of)).select("member_id"))
    return ibis.union(*parts).distinct()  # a union of one table is that table: de-duplicate explicitly


def member_attributes(src: Sources, present: list[str], as_of: datetime) -> ir.Table:
    assert src.members is not None
    m = src.members
    return m.select("member_id", *present, joined_days_ago=_days_ago(m.joined_at, as_of))


def snapshot_expr(
    src: Sources,
    as_of: datetime,
    *,
    channels: list[str],
    attributes: list[str],
    has_categories: bool,
    has_content_types: bool,
) -> ir.Table:
    """One row per member known before T, every feature as a column."""
    blocks = [order_features(src, as_of, channels, has_categories)]
    if src.engagements is not None:
        blocks.append(engagement_features(src, as_of, has_content_types))
    out = known_members(src, as_of)
    for block in blocks:
        out = _attach(out, block.table)
        out = out.mutate(**{c: out[c].fill_null(0) for c in block.zero_when_absent})
    first_seen = [out.first_order_days_ago]
    if src.engagements is not None:
        first_seen.append(out.first_engagement_days_ago)
    if src.members is not None:
        out = _attach(out, member_attributes(src, attributes, as_of))
        first_seen.append(out.joined_days_ago)
    # Tenure: since the member joined or was first seen, whichever is earlier.
    out = out.mutate(tenure_days=ibis.greatest(*[c.fill_null(0) for c in first_seen]))
    drop = [c for c in ("first_engagement_days_ago", "joined_days_ago") if c in out.columns]
    return out.drop(*drop).order_by("member_id")


def labels_expr(
    src: Sources, members: ir.Table, as_of: datetime, horizon_days: int, churn_needs_no_engagement: bool
) -> ir.Table:
    """`churned` and `future_value` for the H days starting at T, for the given members."""
    start = ibis.timestamp(as_of)
    end = ibis.timestamp(as_of) + ibis.interval(days=horizon_days)
    o = src.orders
    o = o.filter(o.ts >= start, o.ts < end, o.member_id.notnull())
    sale = ~o.is_return.fill_null(False)
    future = o.group_by("member_id").aggregate(
        future_orders=o.order_id.fill_null(o.ts.cast("string")).nunique(where=sale),
        future_value=o.amount.cast(MONEY).sum(),
    )
    out = _attach(members.select("member_id"), future)
    out = out.mutate(
        future_orders=out.future_orders.fill_null(0),
        future_value=out.future_value.fill_null(0).cast("float64"),
    )
    churned = out.future_orders == 0
    if churn_needs_no_engagement and src.engagements is not None:
        e = src.engagements
        e = e.filter(e.ts >= start, e.ts < end)
        engaged = e.group_by("member_id").aggregate(future_engagements=e.count())
        out = _attach(out, engaged)
        out = out.mutate(future_engagements=out.future_engagements.fill_null(0))
        churned = (out.future_orders == 0) & (out.future_engagements == 0)
    return out.mutate(churned=churned).order_by("member_id")
