"""Point-in-time member features and labels as Ibis expressions (DuckDB here, Spark at scale), built from the
declared schema (features/pipelines/schema.py).

Every feature "as of" T uses events with ts < T only; labels for horizon H use T <= ts < T + H days (the H days
that start at T). Money is summed as DECIMAL and gaps as whole seconds, so results do not depend on the order in
which parallel threads add things up: the same data always gives the same snapshot, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir

from features.pipelines.schema import SECONDS_PER_DAY, Feature, FeatureSchema, Needs, View

MONEY = "decimal(18, 4)"


@dataclass(frozen=True)
class Sources:
    """The canonical tables as Ibis tables; a table the dataset lacks is None."""

    orders: ir.Table
    engagements: ir.Table | None = None
    members: ir.Table | None = None
    products: ir.Table | None = None
    contents: ir.Table | None = None
    rows: Mapping[str, int] = field(default_factory=dict)  # rows of each table the dataset has


def _days_ago(ts: ir.TimestampValue, as_of: datetime) -> ir.FloatingValue:
    # Day differences from epoch seconds: engines disagree on timestamp deltas in days at boundaries.
    # Stored times are naive UTC, and so is `as_of`: read it as UTC, not in the machine's time zone.
    as_of_epoch = as_of.replace(tzinfo=UTC).timestamp()
    return (ibis.literal(as_of_epoch) - ts.epoch_seconds().cast("float64")) / SECONDS_PER_DAY


def _attach(left: ir.Table, right: ir.Table) -> ir.Table:
    """Left join on member_id, keeping one member_id column."""
    return left.left_join(right, "member_id").drop("member_id_right")


def _before(table: ir.Table, as_of: datetime) -> ir.Table:
    return table.filter(table.ts < ibis.timestamp(as_of))


def order_lines(src: Sources, as_of: datetime, with_categories: bool) -> ir.Table:
    """Members' order lines before T, with the derived columns the order features read."""
    o = _before(src.orders, as_of)
    o = o.filter(o.member_id.notnull())
    if with_categories and src.products is not None:
        o = o.left_join(src.products.select("product_id", "category"), "product_id")
    return o.mutate(
        days_ago=_days_ago(o.ts, as_of),
        sale=~o.is_return.fill_null(False),
        # An order is its order_id; files without one count each distinct timestamp as one order.
        visit=o.order_id.fill_null(o.ts.cast("string")),
        money=o.amount.cast(MONEY),
    )


def engagement_events(src: Sources, as_of: datetime, with_types: bool) -> ir.Table:
    """Members' engagements before T, with the derived columns the engagement features read."""
    assert src.engagements is not None
    e = _before(src.engagements, as_of)
    if with_types and src.contents is not None:
        e = e.left_join(src.contents.select("content_id", "content_type"), "content_id")
    return e.mutate(days_ago=_days_ago(e.ts, as_of))


def aggregated(events: ir.Table, schema: FeatureSchema, view: View) -> ir.Table:
    """The view's aggregates and derived features per member (the online store folds new events in with it)."""
    return _aggregated(events, schema, view, {})


def derived_again(rows: ir.Table, features: list[Feature]) -> ir.Table:
    """`rows` (a snapshot's columns) with these derived features worked out again from its own columns."""
    return rows.mutate(**{f.name: f.expr(rows).cast(f.dtype) for f in features})


def _aggregated(events: ir.Table, schema: FeatureSchema, view: View, helpers: dict[str, ir.Value]) -> ir.Table:
    """The view's aggregates per member (with `helpers` other views derive from), then its derived features."""
    features = schema.of(view)
    aggs = {f.name: f.expr(events) for f in features if not f.derived}
    table = events.group_by("member_id").aggregate(**aggs, **helpers)
    # A sum over no matching rows is NULL; a member with events but none in a window has zero there.
    table = table.mutate(**{f.name: table[f.name].fill_null(0) for f in features if f.zero_when_absent})
    # Derived features read the view's aggregates, never each other: one projection for all of them (a projection
    # each made Ibis compile nested selects, seconds per snapshot).
    return table.mutate(**{f.name: f.expr(table) for f in features if f.derived})


def _gaps(o: ir.Table) -> ir.Table:
    """Per member: the count n, sum s and sum of squares ss (exact, in seconds) of the gaps between consecutive
    orders: what the gap features derive from."""
    sales = o.filter(o.sale)
    visits = sales.group_by(["member_id", "visit"]).aggregate(at=sales.ts.min().epoch_seconds())
    window = ibis.window(group_by="member_id", order_by=["at", "visit"])  # ties broken by the order id
    gaps = visits.mutate(gap=(visits.at - visits.at.lag().over(window)).cast("int64"))
    gaps = gaps.filter(gaps.gap.notnull())
    exact = gaps.gap.cast("decimal(38, 0)")
    return gaps.group_by("member_id").aggregate(n=gaps.count(), s=exact.sum(), ss=(exact * exact).sum())


def _channels(o: ir.Table) -> ir.Table:
    """Per member: channels used, their main channel (most orders; ties by name) and orders through it."""
    sales = o.filter(o.sale & o.channel.notnull())
    per_channel = sales.group_by(["member_id", "channel"]).aggregate(orders=sales.visit.nunique())
    ranked = per_channel.mutate(
        position=ibis.row_number().over(ibis.window(group_by="member_id", order_by=[ibis.desc("orders"), "channel"]))
    )
    main = ranked.filter(ranked.position == 0).select("member_id", main_channel="channel", main_orders="orders")
    totals = sales.group_by("member_id").aggregate(
        channels=sales.channel.nunique(), channel_orders=sales.visit.nunique()
    )
    return _attach(totals, main)


def _derive(table: ir.Table, schema: FeatureSchema, view: View) -> ir.Table:
    """A table of member_id and the view's features, derived from the view's own per-member rows."""
    return table.select("member_id", *[f.expr(table).name(f.name) for f in schema.of(view)])


def known_members(src: Sources, as_of: datetime) -> ir.Table:
    """Members with an order or engagement before T, or who joined before T."""
    parts = [_before(src.orders, as_of).filter(lambda t: t.member_id.notnull()).select("member_id")]
    if src.engagements is not None:
        parts.append(_before(src.engagements, as_of).select("member_id"))
    if src.members is not None:
        m = src.members
        parts.append(m.filter(m.joined_at < ibis.timestamp(as_of)).select("member_id"))
    return ibis.union(*parts).distinct()  # a union of one table is that table: de-duplicate explicitly


def snapshot_expr(src: Sources, as_of: datetime, schema: FeatureSchema) -> ir.Table:
    """One row per member known before T, and exactly the schema's features as columns, in its order."""
    o = order_lines(src, as_of, with_categories=schema.requires(Needs.categories))
    views = [_aggregated(o, schema, View.orders, {})]
    views.append(_derive(_gaps(o), schema, View.gaps))
    if schema.has(View.channels):
        views.append(_derive(_channels(o), schema, View.channels))
    if schema.has(View.engagements) and src.engagements is not None:
        e = engagement_events(src, as_of, with_types=schema.requires(Needs.content_types))
        views.append(_aggregated(e, schema, View.engagements, {"first_engagement_days_ago": e.days_ago.max()}))
    if src.members is not None:
        m = src.members
        views.append(
            m.select(
                "member_id",
                *[f.expr(m).name(f.name) for f in schema.of(View.members)],
                joined_days_ago=_days_ago(m.joined_at, as_of),
            )
        )
    out = known_members(src, as_of)
    for view in views:
        out = _attach(out, view)
    out = out.mutate(**{f.name: out[f.name].fill_null(0) for f in schema.features if f.zero_when_absent})
    out = out.mutate(**{f.name: f.expr(out) for f in schema.of(View.member)})
    return out.select("member_id", *[out[f.name].cast(f.dtype).name(f.name) for f in schema.features]).order_by(
        "member_id"
    )


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
