"""The profile's own fields a rule may read (beside the snapshot's features and the models' outputs), each with
the history column it comes from (features/profiles/history.py) and its meaning. The README's table of profile
fields is this one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from features.dataset.contract import CONSENT_CHANNELS
from features.pipelines.schema import FEATURES

Kind = Literal["number", "text"]


@dataclass(frozen=True)
class ProfileField:
    name: str
    kind: Kind
    column: str  # the history column (features/profiles/history.py) or the snapshot's feature it reads
    group: str  # the answer's field it belongs to (what history.unknowable names when the data cannot tell it)
    meaning: str


PROFILE_FIELDS: tuple[ProfileField, ...] = (
    ProfileField(
        "favourite_category",
        "text",
        "favourite_categories_1",
        "favourite_categories",
        "the category of most of their recent spend",
    ),
    ProfileField(
        "favourite_category_share",
        "number",
        "favourite_categories_1_share",
        "favourite_categories",
        "its share of that spend",
    ),
    ProfileField(
        "favourite_topic", "text", "favourite_topics_1", "favourite_topics", "the content topic they engage with most"
    ),
    ProfileField(
        "favourite_content_type",
        "text",
        "favourite_content_types_1",
        "favourite_content_types",
        "the content type they engage with most",
    ),
    ProfileField(
        "preferred_channel",
        "text",
        "channel_main",  # the snapshot's feature: the channel of most of the member's orders
        "preferred_channel",
        "the order channel of most of their orders",
    ),
    ProfileField(
        "preferred_channel_share", "number", "channel_main_share", "preferred_channel", "its share of their orders"
    ),
    ProfileField(
        "active_hour", "number", "active_hour_1", "active_hours", "the hour of day (0-23) of most of their activity"
    ),
    ProfileField(
        "active_weekday",
        "text",
        "active_weekday_1",
        "active_weekdays",
        "the weekday (Mon..Sun) of most of their activity",
    ),
    ProfileField(
        "discounted_share",
        "number",
        "discounted_share",
        "price_sensitivity",
        "share of their spend at list price on discounted lines",
    ),
    ProfileField(
        "discounted_order_share",
        "number",
        "discounted_order_share",
        "price_sensitivity",
        "share of their orders with a discount",
    ),
    ProfileField(
        "price_sensitivity",
        "number",
        "price_sensitivity",
        "price_sensitivity",
        "0-1: both shares, shrunk toward the population",
    ),
    ProfileField(
        "priced_orders", "number", "priced_orders", "price_sensitivity", "the orders the price sensitivity rests on"
    ),
    ProfileField(
        "learned_segment",
        "text",
        "learned_segment",
        "learned_segment",
        "the behavioural type learned from the data (no persona)",
    ),
)
PROFILE_FIELDS += (
    ProfileField("contacts_30d", "number", "contacts_30d", "last_contacts", "marketing contacts in the last 30 days"),
    *(
        ProfileField(
            f"consent_{channel}", "number", f"consent_{channel}", "consent", f"agreed to marketing by {channel} (1/0)"
        )
        for channel in CONSENT_CHANNELS
    ),
)


def rule_fields(outputs: dict[str, str]) -> dict[str, str]:
    """Every field a rule may read, with its type: the features, the profile's fields and `outputs` (the
    models' outputs and the tier, from serving)."""
    declared: dict[str, str] = {f.name: ("text" if f.dtype == "string" else "number") for f in FEATURES}
    return {**declared, **{f.name: f.kind for f in PROFILE_FIELDS}, **outputs}
