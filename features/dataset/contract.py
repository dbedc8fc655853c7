"""The canonical data contract of design.md §3, campaigns' exposures, and the optional tables the health model reads
(`feedback`, `surveys`): their columns, types, keys and allowed values."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a column is parsed and stored."""

    ID = "id"  # string identifier, whitespace-trimmed; "17850.0" from spreadsheets becomes "17850"
    TEXT = "text"
    CATEGORY = "category"  # lower-cased text, checked against `allowed` when given
    TIMESTAMP = "timestamp"  # ISO date, ISO datetime or unix epoch seconds; stored as naive UTC
    NUMBER = "number"  # float64
    BOOL = "bool"
    # Several values: a list in Parquet or JSON, `|`-separated in text files; each lower-cased and trimmed, empty
    # ones and repeats dropped. Stored as a list of strings.
    TAGS = "tags"


ACTIONS = (
    "view",
    "read",
    "like",
    "share",
    "comment",
    "message",
    "checkin",
    "join_group",
    "leave_group",
    "event_attend",
)
CONTENT_TYPES = ("knowledge", "scene", "activity", "promotion")
ITEM_TABLES = ("products", "contents")  # the catalogue's tables: items a member takes
GROUP_TYPES = ("promotion", "service", "interest", "membership")
FEEDBACK_KINDS = ("review", "complaint", "dispute")
CONSENT_CHANNELS = ("push", "sms", "email", "group_message")  # the channels members consent to one by one


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    doc: str = ""
    allowed: tuple[str, ...] | None = None
    # A required column must be present in the input; `nullable` says whether a row may leave it empty.
    nullable: bool = True
    non_negative: bool = False
    maximum: float | None = None  # a number above it is out of the scale (a 1-5 rating, a 0-10 score)


@dataclass(frozen=True)
class TableSpec:
    name: str
    doc: str
    columns: tuple[Column, ...]
    # Rows with equal key are the same fact. Entity tables key on their id (a re-import updates the entity);
    # event tables key on the whole row, so that re-importing a file changes nothing.
    key: tuple[str, ...]
    is_event: bool

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def _event_table(name: str, doc: str, *columns: Column) -> TableSpec:
    return TableSpec(name, doc, columns, key=tuple(c.name for c in columns), is_event=True)


def _member_event(name: str, doc: str, *columns: Column, when: str = "") -> TableSpec:
    """An event table of a member's: who and when, then its own columns."""
    return _event_table(
        name,
        doc,
        Column("member_id", Kind.ID, required=True, nullable=False),
        Column("ts", Kind.TIMESTAMP, required=True, nullable=False, doc=when),
        *columns,
    )


MEMBERS = TableSpec(
    "members",
    "a member",
    (
        Column("member_id", Kind.ID, required=True, nullable=False, doc="the member's id"),
        Column("joined_at", Kind.TIMESTAMP, doc="when the member joined the community"),
        Column("city", Kind.TEXT),
        Column("age_band", Kind.TEXT),
        Column("acquisition_channel", Kind.CATEGORY),
        Column("persona", Kind.CATEGORY, doc="an operator-assigned persona, where known"),
        Column("consent_marketing", Kind.BOOL, doc="the member agreed to marketing pushes"),
        # Consent per channel (issue 43's outreach): where a channel's is empty, consent_marketing speaks for it.
        *(
            Column(
                f"consent_{channel}", Kind.BOOL, doc=f"the member agreed to marketing by {channel.replace('_', ' ')}"
            )
            for channel in CONSENT_CHANNELS
        ),
    ),
    key=("member_id",),
    is_event=False,
)
PRODUCTS = TableSpec(
    "products",
    "a product",
    (
        Column("product_id", Kind.ID, required=True, nullable=False),
        Column("name", Kind.TEXT),
        Column("category", Kind.CATEGORY),
        Column("price", Kind.NUMBER, non_negative=True),
        Column("active", Kind.BOOL, doc="still sold; inactive products are never recommended"),
        Column("brand", Kind.CATEGORY),
        Column("tags", Kind.TAGS, doc="several values: a list in Parquet, |-separated in CSV"),
        Column("published_at", Kind.TIMESTAMP, doc="when the product was launched"),
    ),
    key=("product_id",),
    is_event=False,
)
CONTENTS = TableSpec(
    "contents",
    "a content item",
    (
        Column("content_id", Kind.ID, required=True, nullable=False),
        Column("content_type", Kind.CATEGORY, allowed=CONTENT_TYPES),
        Column("topic", Kind.CATEGORY),
        Column("published_at", Kind.TIMESTAMP),
        Column("title", Kind.TEXT),
        Column("author_id", Kind.ID),
        Column("tags", Kind.TAGS, doc="several values: a list in Parquet, |-separated in CSV"),
    ),
    key=("content_id",),
    is_event=False,
)
GROUPS = TableSpec(
    "groups",
    "a community group",
    (
        Column("group_id", Kind.ID, required=True, nullable=False),
        Column("group_type", Kind.CATEGORY, allowed=GROUP_TYPES),
    ),
    key=("group_id",),
    is_event=False,
)
ORDERS = _event_table(
    "orders",
    "an order line",
    # An empty member_id is a guest order: it counts for item popularity and nothing else.
    Column("member_id", Kind.ID, required=True, nullable=True, doc="empty for guest orders"),
    Column("ts", Kind.TIMESTAMP, required=True, nullable=False),
    Column("amount", Kind.NUMBER, required=True, nullable=False, doc="line value; negative for returns"),
    Column("order_id", Kind.ID),
    Column("product_id", Kind.ID),
    Column("quantity", Kind.NUMBER, doc="negative for returns"),
    Column("channel", Kind.CATEGORY),
    Column("is_return", Kind.BOOL, doc="the line gives goods back; only returns may be negative"),
    Column(
        "discount",
        Kind.NUMBER,
        non_negative=True,
        doc="money taken off the line's list price (promotions, coupons, loyalty cards); empty where unknown",
    ),
)
ENGAGEMENTS = _event_table(
    "engagements",
    "a member's action on content or in a group",
    Column("member_id", Kind.ID, required=True, nullable=False),
    Column("ts", Kind.TIMESTAMP, required=True, nullable=False),
    Column("action", Kind.CATEGORY, required=True, nullable=False, allowed=ACTIONS),
    Column("content_id", Kind.ID),
    Column("group_id", Kind.ID),
)

EXPOSURES = TableSpec(
    "exposures",
    "a member's assignment to an arm of a campaign (a control holdout is an arm too)",
    (
        Column("member_id", Kind.ID, required=True, nullable=False),
        Column("campaign_id", Kind.ID, required=True, nullable=False, doc="the campaign's name"),
        Column("arm", Kind.ID, required=True, nullable=False, doc="e.g. control, coupon; names kept as written"),
        Column("ts", Kind.TIMESTAMP, required=True, nullable=False, doc="when the member was assigned (or pushed)"),
    ),
    # A member is in one arm of a campaign: a second row for the pair is a conflicting assignment.
    key=("campaign_id", "member_id"),
    is_event=True,
)

# Optional tables that shops usually export and the business plan's health dimension reads (monitoring/health.py):
# without them the indicators that need them say "no data", never a made-up figure.
FEEDBACK = _member_event(
    "feedback",
    "a member's review, complaint or dispute, and how the shop handled it",
    Column("kind", Kind.CATEGORY, required=True, nullable=False, allowed=FEEDBACK_KINDS),
    Column("rating", Kind.NUMBER, non_negative=True, maximum=5, doc="1-5 stars of a review; empty for the others"),
    Column("responded_at", Kind.TIMESTAMP, doc="the shop's first answer; empty when not answered"),
    Column("resolved_at", Kind.TIMESTAMP, doc="when a complaint or dispute was closed as resolved"),
    when="when the member wrote it",
)
SURVEYS = _member_event(
    "surveys",
    "a member's answer to 'how likely are you to recommend us' (0-10), the basis of NPS",
    Column("score", Kind.NUMBER, required=True, nullable=False, non_negative=True, maximum=10, doc="0 to 10"),
)

# What a member was shown (posted by the caller that showed it): with the takes that follow, an item's
# click-through, which moves new items in lists (serving/models/families/new_items.py: Evidence).
IMPRESSIONS = _member_event(
    "impressions",
    "an item shown to a member in a list",
    Column("item_id", Kind.ID, required=True, nullable=False, doc="a product_id or content_id"),
    Column("source", Kind.CATEGORY, required=True, nullable=False, allowed=ITEM_TABLES, doc="products or contents"),
)

# Every marketing contact a member was sent (`outreach record`, or `POST /events` with `contacts`): what caps,
# cool-offs and a member's profile read.
CONTACTS = _member_event(
    "contacts",
    "a marketing contact sent to a member",
    Column("channel", Kind.CATEGORY, required=True, nullable=False, doc="push, sms, email, group_message, ..."),
    Column("action", Kind.CATEGORY, required=True, nullable=False, doc="offer, product-push, content-push, ..."),
    Column("list_id", Kind.ID, doc="the list, plan or campaign it was sent from"),
    Column("item_id", Kind.ID, doc="the product or content pushed, where there is one"),
    when="when it was sent",
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        MEMBERS,
        PRODUCTS,
        CONTENTS,
        GROUPS,
        ORDERS,
        ENGAGEMENTS,
        EXPOSURES,
        FEEDBACK,
        SURVEYS,
        IMPRESSIONS,
        CONTACTS,
    )
}
# What member features are built from: a campaign's exposures are outcomes' context, never a feature (so recording
# a campaign does not invalidate the feature snapshots).
FEATURE_SOURCES = ("members", "products", "contents", "groups", "orders", "engagements")
TABLE_NAMES = tuple(TABLES)
