"""Every feature in one place: its name, what it means, and the window it looks at.

Windows count back from the as-of date T; "all" means all history before T. `{w}` is one of 7, 30, 90, 180;
`{channel}` an order channel of the dataset; `{action}` read, like, share or comment; `{type}` a content type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureDoc:
    name: str  # may hold a {placeholder}
    meaning: str
    window: str
    source: str  # orders, engagements or members

    def matches(self, column: str) -> bool:
        pattern = re.sub(r"\\\{\w+\\\}", r"[a-z0-9_]+", re.escape(self.name))
        return re.fullmatch(pattern, column) is not None


CATALOG: tuple[FeatureDoc, ...] = (
    FeatureDoc("recency_days", "days since the last purchase (empty: never bought)", "all", "orders"),
    FeatureDoc("first_order_days_ago", "days since the first purchase: the customer's age", "all", "orders"),
    FeatureDoc("frequency", "number of orders (distinct order ids; distinct times where no id)", "all", "orders"),
    FeatureDoc("monetary", "net spend: sales minus returns", "all", "orders"),
    FeatureDoc("sales_value", "gross spend on purchases", "all", "orders"),
    FeatureDoc("returned_value", "value of returned lines", "all", "orders"),
    FeatureDoc("order_lines", "purchased order lines", "all", "orders"),
    FeatureDoc("distinct_products", "different products bought", "all", "orders"),
    FeatureDoc(
        "distinct_categories",
        "different product categories bought (needs products.category)",
        "all",
        "orders",
    ),
    FeatureDoc("orders_{w}d", "orders in the last w days", "{w} days", "orders"),
    FeatureDoc("spend_{w}d", "net spend in the last w days", "{w} days", "orders"),
    FeatureDoc("orders_prev_{w}d", "orders in the w days before the last w (w = 30, 90)", "{w}..2{w} days", "orders"),
    FeatureDoc(
        "spend_prev_{w}d",
        "net spend in the w days before the last w (w = 30, 90)",
        "{w}..2{w} days",
        "orders",
    ),
    FeatureDoc("orders_trend_{w}d", "(orders last w days + 1) / (orders previous w days + 1)", "2x{w} days", "orders"),
    FeatureDoc("spend_trend_{w}d", "(spend last w days + 1) / (spend previous w days + 1)", "2x{w} days", "orders"),
    FeatureDoc("avg_basket", "average order value: gross spend / orders", "all", "orders"),
    FeatureDoc("returns_share", "returned value / gross spend", "all", "orders"),
    FeatureDoc("channel_{channel}_share", "share of orders placed through the channel", "all", "orders"),
    FeatureDoc("gap_mean_days", "mean days between consecutive orders", "all", "orders"),
    FeatureDoc("gap_std_days", "standard deviation of days between consecutive orders", "all", "orders"),
    FeatureDoc(
        "days_since_last_vs_usual_gap",
        "recency_days / max(gap_mean_days, 1): >1 means overdue",
        "all",
        "orders",
    ),
    FeatureDoc("tenure_days", "days since joining or first being seen, whichever is earlier", "all", "all"),
    FeatureDoc("eng_total", "engagement actions of any kind", "all", "engagements"),
    FeatureDoc("eng_views", "content views", "all", "engagements"),
    FeatureDoc("eng_{action}s", "content actions of that kind", "all", "engagements"),
    FeatureDoc(
        "eng_{action}s_{type}",
        "content actions of that kind on content of that type (needs contents)",
        "all",
        "engagements",
    ),
    FeatureDoc("eng_messages", "messages in community groups", "all", "engagements"),
    FeatureDoc("eng_checkins", "check-ins", "all", "engagements"),
    FeatureDoc("eng_events_attended", "community events attended", "all", "engagements"),
    FeatureDoc("groups_joined", "groups joined", "all", "engagements"),
    FeatureDoc("groups_left", "groups left", "all", "engagements"),
    FeatureDoc("days_since_last_engagement", "days since the last engagement (empty: never)", "all", "engagements"),
    FeatureDoc("eng_active_days_30d", "distinct days with any engagement", "30 days", "engagements"),
    FeatureDoc("eng_{w}d", "engagement actions in the last w days (w = 30, 90)", "{w} days", "engagements"),
    FeatureDoc("eng_prev_{w}d", "engagement actions in the w days before the last w", "{w}..2{w} days", "engagements"),
    FeatureDoc("eng_trend_{w}d", "(engagement last w days + 1) / (previous w days + 1)", "2x{w} days", "engagements"),
    FeatureDoc("age_band", "member attribute, where present", "-", "members"),
    FeatureDoc("city", "member attribute, where present", "-", "members"),
    FeatureDoc("acquisition_channel", "member attribute, where present", "-", "members"),
    FeatureDoc("persona", "operator-assigned persona, where present", "-", "members"),
    FeatureDoc("consent_marketing", "the member agreed to marketing pushes, where present", "-", "members"),
)

LABELS: tuple[FeatureDoc, ...] = (
    FeatureDoc("churned", "no purchase in the H days from T (optionally: and no engagement)", "T..T+H", "orders"),
    FeatureDoc("future_value", "net spend in the H days from T (returns netted)", "T..T+H", "orders"),
    FeatureDoc("future_orders", "orders in the H days from T", "T..T+H", "orders"),
)


def doc_for(column: str) -> FeatureDoc | None:
    """The catalog entry describing a snapshot column."""
    for doc in CATALOG + LABELS:
        if doc.matches(column):
            return doc
    return None
