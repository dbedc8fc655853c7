"""The feature schema: every feature declared once, with its meaning, window, type, when it exists and how it is
computed. The snapshot builder (features/pipelines/point_in_time.py), the catalog (`community-ml features catalog`)
and the
column checks of trained models all derive from these declarations (the way a Feast feature view is declared once).

Whether a feature exists depends on the dataset's tables, never on a cutoff: engagement features exist when the
dataset has engagements, the category count when its products have categories, a member attribute when the
members table holds values for it. So every snapshot of a dataset, at every cutoff, has the same columns in the
same order, and a model trained on one cutoff can score any other.

Windows count back from the as-of date T; "all" is all history before T. Each feature is computed on one view:
an aggregate over the member's events of that view before T, or a derivation from the view's aggregates;
"member" features derive from several views once they are joined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import ibis
import ibis.expr.types as ir

from features.dataset.contract import CONTENT_TYPES

SECONDS_PER_DAY = 86_400
WINDOWS = (7, 30, 90, 180)
TREND_WINDOWS = (30, 90)
CONTENT_ACTIONS = ("read", "like", "share", "comment")
ATTRIBUTES = ("age_band", "city", "acquisition_channel", "persona", "consent_marketing")

Dtype = Literal["float64", "int64", "string", "boolean"]


class View(StrEnum):
    """The per-member tables features are computed on (built in features/pipelines/point_in_time.py)."""

    orders = "orders"  # the member's order lines before T
    gaps = "gaps"  # the days between the member's consecutive orders
    channels = "channels"  # the member's orders per channel
    engagements = "engagements"  # the member's engagements before T
    members = "members"  # the members table's attributes
    member = "member"  # derived from the views above, once joined


class Online(StrEnum):
    """How a served member's feature stays current as their events arrive (serving/online/table.py): every event after
    the snapshot's as-of date counts as if on the day before it (days ago 0), so windows need no history."""

    add = "add"  # a count or sum: the new events' own count or sum is added (a posted order is a new order)
    least = "least"  # a days-ago minimum (recency): 0 once there is a new event
    greatest = "greatest"  # a days-ago maximum (an age): kept, or 0 where there was none
    derive = "derive"  # derived from the row's other features: worked out again from the updated row
    build = "build"  # needs history the row does not hold (distinct items, gaps, channels): the next build


class Needs(StrEnum):
    """What a dataset must hold for a feature to exist. Member attributes need `members.<their column>`."""

    orders = "orders"  # every dataset: a dataset without orders has zero orders
    categories = "products.category"
    channels = "orders.channel"
    engagements = "engagements"
    content_types = "contents.content_type"


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    window: str
    dtype: Dtype
    view: View
    # An aggregate over the view's events (grouped by member), or, when `derived`, an expression over the view's
    # per-member row: its aggregates (never another derived feature), or for the "member" view every view's.
    expr: Callable[[ir.Table], ir.Value]
    needs: str = Needs.orders
    derived: bool = False
    # Counts and sums are 0 for a member with no events in the view; recencies, ratios and trends stay empty.
    zero_when_absent: bool = False
    # Grows with the calendar for every member (an age): across stacked cutoffs its values at a new cutoff lie
    # beyond every training cutoff's range (CDNOW's single cohort: 184-273 days at the test cutoff, 10-183 in
    # training), where trees cannot extrapolate. Models read the relative features below instead.
    anchored: bool = False
    # How the online store keeps it current between builds; by default, counts and sums add, derived features
    # are derived again (those of the gap, channel and members views, from columns a row lacks: the next build).
    online: Online | None = None

    @property
    def online_rule(self) -> Online:
        if self.online is not None:
            return self.online
        if self.derived:
            return Online.build if self.view in (View.gaps, View.channels, View.members) else Online.derive
        return Online.add if self.zero_when_absent else Online.build

    @property
    def source(self) -> str:
        return {View.gaps: "orders", View.channels: "orders", View.member: "all"}.get(self.view, self.view.value)


def _agg(name: str, meaning: str, window: str, dtype: Dtype, expr, **kw) -> Feature:
    return Feature(name, meaning, window, dtype, View.orders, expr, zero_when_absent=True, **kw)


def _eng(name: str, meaning: str, window: str, expr, **kw) -> Feature:
    kw.setdefault("zero_when_absent", True)
    kw.setdefault("needs", Needs.engagements)
    return Feature(name, meaning, window, "int64", View.engagements, expr, **kw)


def _order_features() -> list[Feature]:
    # Aggregates over order lines `o` with: days_ago, sale (not a return), visit (the order), money, category.
    features = [
        Feature(
            "recency_days",
            "days since the last purchase (empty: never bought)",
            "all",
            "float64",
            View.orders,
            lambda o: o.days_ago.min(where=o.sale),
            online=Online.least,
        ),
        Feature(
            "first_order_days_ago",
            "days since the first purchase: the customer's age",
            "all",
            "float64",
            View.orders,
            lambda o: o.days_ago.max(where=o.sale),
            anchored=True,
            online=Online.greatest,
        ),
        _agg(
            "frequency",
            "number of orders (distinct order ids; distinct times where no id)",
            "all",
            "int64",
            lambda o: o.visit.nunique(where=o.sale),
        ),
        _agg("monetary", "net spend: sales minus returns", "all", "float64", lambda o: o.money.sum()),
        _agg("sales_value", "gross spend on purchases", "all", "float64", lambda o: o.money.sum(where=o.sale)),
        _agg("returned_value", "value of returned lines", "all", "float64", lambda o: -o.money.sum(where=~o.sale)),
        _agg("order_lines", "purchased order lines", "all", "int64", lambda o: o.count(where=o.sale)),
        _agg(
            "distinct_products",
            "different products bought",
            "all",
            "int64",
            lambda o: o.product_id.nunique(where=o.sale),
            online=Online.build,  # a product bought again is not a new one: only history tells
        ),
        _agg(
            "distinct_categories",
            "different product categories bought",
            "all",
            "int64",
            lambda o: o.category.nunique(where=o.sale),
            needs=Needs.categories,
            online=Online.build,
        ),
    ]
    for w in WINDOWS:
        features += [
            _agg(
                f"orders_{w}d",
                f"orders in the last {w} days",
                f"{w} days",
                "int64",
                lambda o, w=w: o.visit.nunique(where=o.sale & (o.days_ago <= w)),
            ),
            _agg(
                f"spend_{w}d",
                f"net spend in the last {w} days",
                f"{w} days",
                "float64",
                lambda o, w=w: o.money.sum(where=o.days_ago <= w),
            ),
        ]
    for w in TREND_WINDOWS:
        earlier = f"{w}..{2 * w} days"
        features += [
            _agg(
                f"orders_prev_{w}d",
                f"orders in the {w} days before the last {w}",
                earlier,
                "int64",
                lambda o, w=w: o.visit.nunique(where=o.sale & (o.days_ago > w) & (o.days_ago <= 2 * w)),
            ),
            _agg(
                f"spend_prev_{w}d",
                f"net spend in the {w} days before the last {w}",
                earlier,
                "float64",
                lambda o, w=w: o.money.sum(where=(o.days_ago > w) & (o.days_ago <= 2 * w)),
            ),
        ]
    for w in TREND_WINDOWS:
        features += [
            Feature(
                f"orders_trend_{w}d",
                f"(orders last {w} days + 1) / (orders the {w} days before + 1)",
                f"{2 * w} days",
                "float64",
                View.orders,
                derived=True,
                expr=lambda t, w=w: (t[f"orders_{w}d"] + 1) / (t[f"orders_prev_{w}d"] + 1),
            ),
            Feature(
                f"spend_trend_{w}d",
                f"(spend last {w} days + 1) / (spend the {w} days before + 1)",
                f"{2 * w} days",
                "float64",
                View.orders,
                derived=True,
                # Sums of money are exact decimals: add exactly, then divide as doubles (Spark's decimal division
                # rounds to a decimal scale, DuckDB's to a double; a double division is the same on both).
                expr=lambda t, w=w: (
                    (t[f"spend_{w}d"].clip(lower=0) + 1).cast("float64")
                    / (t[f"spend_prev_{w}d"].clip(lower=0) + 1).cast("float64")
                ),
            ),
        ]
    features += [
        Feature(
            "avg_basket",
            "average order value: gross spend / orders",
            "all",
            "float64",
            View.orders,
            lambda t: t.sales_value.cast("float64") / t.frequency.nullif(0),
            derived=True,
        ),
        Feature(
            "returns_share",
            "returned value / gross spend",
            "all",
            "float64",
            View.orders,
            lambda t: t.returned_value.cast("float64") / t.sales_value.cast("float64").nullif(0),
            derived=True,
        ),
    ]
    return features


def _timing_features() -> list[Feature]:
    """How a member buys: the channels they use and the gaps between their orders."""
    features = [
        # Channels: data-independent columns (not one per channel), so a new channel never adds a column.
        Feature(
            "channel_count",
            "different order channels used",
            "all",
            "int64",
            View.channels,
            lambda c: c.channels,
            needs=Needs.channels,
            derived=True,
            zero_when_absent=True,
        ),
        Feature(
            "channel_main",
            "the channel of most of the member's orders (ties: first by name)",
            "all",
            "string",
            View.channels,
            lambda c: c.main_channel,
            needs=Needs.channels,
            derived=True,
        ),
        Feature(
            "channel_main_share",
            "share of the member's orders placed through their main channel",
            "all",
            "float64",
            View.channels,
            lambda c: c.main_orders / c.channel_orders.nullif(0),
            needs=Needs.channels,
            derived=True,
        ),
        # Gaps between consecutive orders, from exact sums (n, s, ss of the gaps in seconds): see point_in_time.
        Feature(
            "gap_mean_days",
            "mean days between consecutive orders",
            "all",
            "float64",
            View.gaps,
            lambda g: g.s.cast("float64") / g.n.cast("float64") / SECONDS_PER_DAY,
            derived=True,
        ),
        Feature(
            "gap_std_days",
            "standard deviation of the days between consecutive orders",
            "all",
            "float64",
            View.gaps,
            derived=True,
            # Sample variance from exact sums: n*ss - s^2 in DECIMAL cannot lose order-dependent bits.
            expr=lambda g: (
                ((g.n * g.ss - g.s * g.s).cast("float64") / (g.n.cast("float64") * (g.n.cast("float64") - 1)).nullif(0))
                .clip(lower=0)
                .sqrt()
                / SECONDS_PER_DAY
            ),
        ),
        Feature(
            "days_since_last_vs_usual_gap",
            "recency_days / max(gap_mean_days, 1): over 1 means overdue",
            "all",
            "float64",
            View.member,
            derived=True,
            # Same-day repeat orders make tiny gaps; a day is the smallest usual gap worth comparing against.
            # (Not `greatest`: it skips NULLs, and a member with one order has no usual gap at all.)
            expr=lambda t: t.recency_days / ibis.ifelse(t.gap_mean_days < 1.0, 1.0, t.gap_mean_days),
        ),
        Feature(
            "tenure_days",
            "days since joining or first being seen, whichever is earlier",
            "all",
            "float64",
            View.member,
            derived=True,
            expr=lambda t: ibis.greatest(
                *[
                    t[c].fill_null(0)
                    for c in ("first_order_days_ago", "first_engagement_days_ago", "joined_days_ago")
                    if c in t.columns
                ]
            ),
            anchored=True,
            online=Online.build,  # reads when the member joined and first engaged: not in the row
        ),
    ]
    return features


def _lifecycle_features() -> list[Feature]:
    """Relative to the member's own life as a customer: the same meaning at every cutoff, whatever the age."""
    features = [
        Feature(
            "recency_share",
            "recency_days / first_order_days_ago: the share of the member's customer life since the last purchase",
            "all",
            "float64",
            View.member,
            derived=True,
            expr=lambda t: t.recency_days / ibis.ifelse(t.first_order_days_ago < 1.0, 1.0, t.first_order_days_ago),
        ),
        Feature(
            "orders_per_month",
            "orders per 30 days since the first purchase (at least one day)",
            "all",
            "float64",
            View.member,
            derived=True,
            expr=lambda t: 30.0 * t.frequency / ibis.ifelse(t.first_order_days_ago < 1.0, 1.0, t.first_order_days_ago),
        ),
        Feature(
            "spend_per_month",
            "gross spend per 30 days since the first purchase (at least one day)",
            "all",
            "float64",
            View.member,
            derived=True,
            expr=lambda t: (
                30.0 * t.sales_value / ibis.ifelse(t.first_order_days_ago < 1.0, 1.0, t.first_order_days_ago)
            ),
        ),
    ]
    return features


def _engagement_features() -> list[Feature]:
    """Engagements with content and groups: counts, windows, trends."""
    features = [
        # Engagements `e` with: action, days_ago, content_type (where contents have types).
        _eng("eng_total", "engagement actions of any kind", "all", lambda e: e.count()),
        _eng("eng_views", "content views", "all", lambda e: e.count(where=e.action == "view")),
        _eng("eng_messages", "messages in community groups", "all", lambda e: e.count(where=e.action == "message")),
        _eng("eng_checkins", "check-ins", "all", lambda e: e.count(where=e.action == "checkin")),
        _eng(
            "eng_events_attended",
            "community events attended",
            "all",
            lambda e: e.count(where=e.action == "event_attend"),
        ),
        _eng("groups_joined", "groups joined", "all", lambda e: e.count(where=e.action == "join_group")),
        _eng("groups_left", "groups left", "all", lambda e: e.count(where=e.action == "leave_group")),
        Feature(
            "days_since_last_engagement",
            "days since the last engagement (empty: never)",
            "all",
            "float64",
            View.engagements,
            lambda e: e.days_ago.min(),
            needs=Needs.engagements,
            online=Online.least,
        ),
        _eng(
            "eng_active_days_30d",
            "distinct days with any engagement",
            "30 days",
            lambda e: e.ts.date().nunique(where=e.days_ago <= 30),
            online=Online.build,  # a day already counted is not a new one
        ),
    ]
    for action in CONTENT_ACTIONS:
        features.append(
            _eng(f"eng_{action}s", f"{action}s of content", "all", lambda e, a=action: e.count(where=e.action == a))
        )
        for ctype in CONTENT_TYPES:
            features.append(
                _eng(
                    f"eng_{action}s_{ctype}",
                    f"{action}s of {ctype} content",
                    "all",
                    lambda e, a=action, c=ctype: e.count(where=(e.action == a) & (e.content_type == c)),
                    needs=Needs.content_types,
                )
            )
    for w in TREND_WINDOWS:
        features += [
            _eng(
                f"eng_{w}d",
                f"engagement actions in the last {w} days",
                f"{w} days",
                lambda e, w=w: e.count(where=e.days_ago <= w),
            ),
            _eng(
                f"eng_prev_{w}d",
                f"engagement actions in the {w} days before the last {w}",
                f"{w}..{2 * w} days",
                lambda e, w=w: e.count(where=(e.days_ago > w) & (e.days_ago <= 2 * w)),
            ),
        ]
    for w in TREND_WINDOWS:
        features.append(
            Feature(
                f"eng_trend_{w}d",
                f"(engagements last {w} days + 1) / (the {w} days before + 1)",
                f"{2 * w} days",
                "float64",
                View.engagements,
                needs=Needs.engagements,
                derived=True,
                expr=lambda t, w=w: (t[f"eng_{w}d"] + 1) / (t[f"eng_prev_{w}d"] + 1),
            )
        )
    return features


def _attribute_features() -> list[Feature]:
    """The member's own attributes (persona, city, ...), as the members table has them."""
    features = []
    meanings = {"persona": "operator-assigned persona", "consent_marketing": "agreed to marketing pushes"}
    for attribute in ATTRIBUTES:
        features.append(
            Feature(
                attribute,
                f"member attribute: {meanings.get(attribute, attribute.replace('_', ' '))}",
                "-",
                "boolean" if attribute == "consent_marketing" else "string",
                View.members,
                lambda m, a=attribute: m[a],
                needs=f"members.{attribute}",
                derived=True,
            )
        )
    return features


FEATURES: tuple[Feature, ...] = (
    *_order_features(),
    *_timing_features(),
    *_lifecycle_features(),
    *_engagement_features(),
    *_attribute_features(),
)


@dataclass(frozen=True)
class ModelInput:
    """Not a snapshot column: computed for each scored population when a model reads it (its code is in
    serving/models/inputs.py), from the population's own history before the cutoff, never from labels."""

    name: str
    meaning: str
    window: str = "all"
    dtype: Dtype = "float64"


MODEL_INPUTS: tuple[ModelInput, ...] = (
    ModelInput("btyd_p_alive", "BG/NBD probability that the member is still a customer"),
    ModelInput("btyd_purchases", "BG/NBD expected purchases over the horizon"),
    ModelInput("btyd_p_no_purchase", "BG/NBD probability of no purchase over the horizon: the model's churn"),
    ModelInput("btyd_order_value", "Gamma-Gamma expected order value"),
    ModelInput("btyd_value", "BG/NBD x Gamma-Gamma expected spend over the horizon"),
    ModelInput("rfm_score", "15 minus the RFM score (quintiles of recency, frequency and monetary value)"),
)


@dataclass(frozen=True)
class Label:
    name: str
    meaning: str
    dtype: Dtype
    window: str = "T..T+H"


LABELS: tuple[Label, ...] = (
    Label("churned", "no purchase in the H days from T (optionally: and no engagement)", "boolean"),
    Label("future_value", "net spend in the H days from T (returns netted)", "float64"),
    Label("future_orders", "orders in the H days from T", "int64"),
    Label("future_engagements", "engagements in the H days from T (labels built with no-engagement churn)", "int64"),
)
LABEL_NAMES = tuple(label.name for label in LABELS)


@dataclass(frozen=True)
class FeatureSchema:
    """The features a dataset has: the declared features whose needs its tables meet, in declaration order."""

    features: tuple[Feature, ...]

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features]

    def of(self, view: View) -> list[Feature]:
        return [f for f in self.features if f.view is view]

    def has(self, view: View) -> bool:
        return any(f.view is view for f in self.features)

    def requires(self, need: str) -> bool:
        return any(f.needs == need for f in self.features)


def resolve(available: set[str]) -> FeatureSchema:
    """The schema of a dataset whose tables meet `available` needs (Needs values and members.<column>)."""
    return FeatureSchema(tuple(f for f in FEATURES if f.needs in available | {Needs.orders}))


def feature(name: str) -> Feature:
    for f in FEATURES:
        if f.name == name:
            return f
    raise KeyError(name)
