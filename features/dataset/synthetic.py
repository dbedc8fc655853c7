"""The built-in synthetic community: members with personas, groups, contents, orders and engagements.

The simulation plants effects that the models should later find:
- engagement fades over the ~90 days before a member churns, and orders only over the last ~45;
- each persona prefers some product categories and content types, and within a category its own products;
- spending is seasonal (618 in June, Double 11 in November, December), with promotion days (a fifth off: each
  line says how much in `discount`);
- promotion-driven members buy mostly on promotion days and churn about twice as fast;
- with `campaign_at`, a randomized coupon campaign with an uneven effect (REDEEM_BY_PERSONA, CAMPAIGN_EFFECTS):
  deal-seeking personas and promotion-driven members respond (a coupon brings up to 75% of them to buy, lapsed or
  not), loyal members who buy anyway need none, and push-averse ones buy less; the `exposures` table records it
  and the ground truth holds each member's true lift;
- groups differ in health (a hidden score per group, kept in the groups' truth): members of healthier groups rate
  their orders higher, complain less and score higher in surveys; with `declining_group_at`, one group
  (DECLINING_GROUP) declines from that day: its members' engagement falls to a sixth over 90 days, and they complain
  more and would recommend the shop less. `feedback` (reviews, complaints, disputes, with the shop's answers) and
  `surveys` (0-10 recommendation scores, about 12% of active members a quarter) come from their own generator, so
  the other tables are what they were without them.
Everything is drawn from seeded generators, so a seed gives the same dataset every time. Members are simulated in
chunks of CHUNK_MEMBERS, each chunk from its own generator (the first from the catalogue's), so memory stays bounded
whatever the community's size and a community of one chunk is what it always was.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.dataset.contract import CONTENT_TYPES, GROUP_TYPES

CATEGORIES = (
    "snacks",
    "beverages",
    "personal_care",
    "beauty",
    "baby_care",
    "home",
    "kitchen",
    "fashion",
    "electronics",
    "health",
    "outdoor",
    "stationery",
)
CATEGORY_PRICE = dict(zip(CATEGORIES, (25, 18, 45, 160, 120, 80, 110, 180, 420, 140, 220, 15), strict=True))
CONTENT_ACTIONS = ("view", "read", "like", "share", "comment")
GROUP_ACTIONS = ("message", "checkin", "event_attend")
CHANNELS = ("app", "mini_program", "community_group", "store")
CITIES = ("Shanghai", "Beijing", "Hangzhou", "Shenzhen", "Guangzhou", "Chengdu", "Wuhan", "Nanjing", "Suzhou")
ACQUISITION = ("community_group", "referral", "app_store", "store", "ad")
# Month multipliers of spending: Chinese New Year lull, 618 in June, Double 11, December gifts.
MONTH_SEASON = (0.85, 0.75, 0.95, 1.0, 1.05, 1.25, 0.95, 0.9, 1.0, 1.05, 1.5, 1.3)
# Members simulated at once. The simulation holds ~70 KB per member at its peak (member x day intensity matrices,
# then the events as frames): 25,000 members keep a chunk near 1.7 GB, whatever the community's size.
CHUNK_MEMBERS = 25_000
# The planted campaign's effect over its window, on a coupon arm's member: the chance a coupon brings a member to buy
# (whatever they would have done), by persona, plus more for promotion-driven members; the factor of push-averse
# members' orders (a share of quality seekers who are not promotion-driven); the chance a pushed member opens it (a
# visit). The lift in conversion is largest for lapsed deal-seekers, nil for loyal members who buy anyway.
REDEEM_BY_PERSONA = {
    "price_sensitive": 0.5,
    "quality_seeking": 0.0,
    "social_sharer": 0.1,
    "young_parent": 0.15,
    "office_worker": 0.05,
    "student": 0.45,
}
CAMPAIGN_EFFECTS = {"promo_redeem": 0.25, "averse_share": 0.5, "averse_orders": 0.4, "opened": 0.3}
# Outreach in this world (issue 43), the same for the history's weekly pushes and for `data simulate`: a pushed
# product is taken within PUSH_RESPONSE_DAYS with chance push_take_max x sqrt(its pull: how much the member likes it
# against the product they like most), a pushed content read with content_take_max x sqrt(its pull); a lapsed member
# answers at `lapsed` of that. Every further marketing contact in a week multiplies answers (and an offer's
# redemption) by `fatigue`, and a week's k-th contact brings an unsubscribe with chance unsubscribe x k^2 and a
# complaint with complaint x k^2 (complaint_without_consent where the member never agreed to the channel); a member
# who complains buys at complaint_orders of their rate for the next 30 days. A read content moves no spending.
OUTREACH_EFFECTS = {
    "push_take_max": 0.15,
    "content_take_max": 0.25,
    "lapsed": 0.3,
    "fatigue": 0.6,
    "unsubscribe": 0.004,
    "complaint": 0.0015,
    "complaint_without_consent": 0.3,
    "complaint_orders": 0.6,
}
PUSH_RESPONSE_DAYS = 7
# Of the members who agreed to marketing, the share who agreed to each channel (the others never agreed to any).
CHANNEL_CONSENT = {"push": 0.8, "sms": 0.5, "email": 0.7, "group_message": 0.9}
# The group that declines from `declining_group_at` (an interest group: G0002 in every community).
DECLINING_GROUP = 2
# Feedback and surveys, per order and per active member a quarter: rates as shops report them.
FEEDBACK_RATES = {"review": 0.12, "complaint": 0.015, "dispute": 0.003}
SURVEY_RATE_PER_QUARTER = 0.12
# The catalogue's attributes. Products: a few brands per category, style tags; personas like some brands and tags
# more than others (TASTE_SPREAD), so a new product's attributes tell who will buy it. Contents: authors by topic.
BRANDS_PER_CATEGORY = 4
BRAND_NAMES = tuple(
    f"{a}{b}"
    for a in ("lu", "mo", "ka", "ze", "ri", "ta", "no", "vi", "sa", "do", "fe", "ha")
    for b in ("ra", "mi", "xo", "na")
)
PRODUCT_TAGS = (
    "organic",
    "premium",
    "budget",
    "imported",
    "kids",
    "eco",
    "classic",
    "limited",
    "family-size",
    "travel",
    "gift",
    "vegan",
    "smart",
    "handmade",
    "sport",
    "mini",
)
LAUNCHED_SHARE = 0.3  # products launched during the history
TASTE_SPREAD = {"noise": 0.6, "brand": 0.7, "tag": 0.6}  # log-scale spreads of a persona's taste for a product
AUTHORS_PER_TOPIC = 3
CONTENT_WORDS = {
    "knowledge": ("guide to", "how to choose", "facts about"),
    "scene": ("a day with", "my corner of", "living with"),
    "activity": ("join us for", "weekend of", "meet-up on"),
    "promotion": ("deals on", "sale on", "offers on"),
}
HOUR_WEIGHTS = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 3, 3, 3.5, 4.5, 4, 3, 3, 3, 3, 3.5, 4.5, 5.5, 6, 4, 2])


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    categories: dict[str, float]  # affinity; unlisted categories get 0.3
    content_types: tuple[float, float, float, float]  # knowledge, scene, activity, promotion
    group_types: tuple[float, float, float, float]  # promotion, service, interest, membership
    actions: tuple[float, ...]  # view, read, like, share, comment, message, checkin, event_attend
    orders_per_month: float
    engagements_per_week: float
    lines_per_order: float
    price_level: float
    promo_driven: float  # probability that a member of this persona buys mainly on promotions
    mean_lifetime_days: float
    age_bands: tuple[str, ...]


PERSONAS = (
    Persona(
        "price_sensitive",
        0.22,
        {"snacks": 3, "beverages": 2.5, "personal_care": 2, "home": 1.5, "kitchen": 1},
        (1, 1, 1, 4),
        (4, 1, 1, 1),
        (6, 2, 2, 1, 1, 1, 2, 0.5),
        1.6,
        1.5,
        1.8,
        0.7,
        0.6,
        330,
        ("25-34", "35-44", "45-54"),
    ),
    Persona(
        "quality_seeking",
        0.14,
        {"beauty": 3, "health": 2.5, "electronics": 2, "kitchen": 2, "fashion": 1.5},
        (4, 2, 0.5, 0.5),
        (0.5, 2, 2, 3),
        (4, 5, 2, 0.5, 1, 0.5, 1, 1),
        1.0,
        1.2,
        1.6,
        1.4,
        0.1,
        620,
        ("25-34", "35-44", "45-54"),
    ),
    Persona(
        "social_sharer",
        0.16,
        {"fashion": 3, "beauty": 2.5, "snacks": 2, "outdoor": 1.5},
        (1, 3, 3, 1.5),
        (1, 1, 3, 2),
        (3, 2, 4, 4, 3, 4, 2, 2),
        1.3,
        4.0,
        2.0,
        1.0,
        0.3,
        520,
        ("18-24", "25-34"),
    ),
    Persona(
        "young_parent",
        0.16,
        {"baby_care": 5, "health": 2, "home": 2, "kitchen": 1.5, "snacks": 1.5},
        (3, 2.5, 1, 1.5),
        (1, 3, 2, 2),
        (4, 4, 2, 1, 1, 2, 2, 1),
        2.2,
        2.0,
        2.6,
        1.1,
        0.3,
        480,
        ("25-34", "35-44"),
    ),
    Persona(
        "office_worker",
        0.20,
        {"beverages": 2.5, "snacks": 2, "electronics": 2, "personal_care": 1.5, "fashion": 1.5},
        (2, 3, 0.5, 1),
        (1, 2, 2, 1),
        (5, 3, 1, 0.5, 0.5, 1, 1, 0.5),
        1.4,
        1.3,
        1.8,
        1.1,
        0.25,
        430,
        ("25-34", "35-44"),
    ),
    Persona(
        "student",
        0.12,
        {"stationery": 4, "snacks": 3, "beverages": 2, "electronics": 1.5, "fashion": 1.5},
        (1, 2, 3, 2),
        (2, 1, 3, 1),
        (5, 2, 3, 2, 2, 2, 1, 1),
        0.9,
        2.5,
        1.5,
        0.6,
        0.5,
        300,
        ("18-24",),
    ),
)
PERSONA_NAMES = tuple(p.name for p in PERSONAS)
# The persona mix of members who join after `shift_at`: a deal-hunting wave of price-sensitive members and students.
SHIFTED_PERSONA_SHARES = (0.45, 0.05, 0.1, 0.05, 0.05, 0.3)


class SyntheticConfig(BaseModel):
    """Settings of one synthetic community; the same settings and seed give the same data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: int = Field(20_000, ge=50, le=5_000_000, description="number of members")
    seed: int = Field(7, description="seed of the random generator")
    start: date = Field(date(2025, 1, 1), description="first day of the simulated history")
    months: int = Field(15, ge=3, le=60, description="length of the history in months")
    products: int = Field(1_200, ge=24)
    contents: int = Field(1_500, ge=48)
    groups: int = Field(120, ge=8)
    shift_at: date | None = Field(
        None,
        description="from this day on the population shifts (for drift demos and tests): members who join later "
        "follow SHIFTED_PERSONA_SHARES, more members buy on promotions, and prices change by shift_price_factor",
    )
    shift_price_factor: float = Field(1.6, gt=0, le=10, description="price multiplier from shift_at on")
    shift_promo_share: float = Field(0.5, ge=0, le=1, description="share of other members turning promotion-driven")
    campaign_at: date | None = Field(
        None,
        description="run a randomized coupon campaign on this day: members who joined before it and agreed to "
        "marketing are split at random into a coupon arm and a control holdout (recorded in `exposures`)",
    )
    campaign: str = Field(
        "coupon", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the campaign's name (campaign_id)"
    )
    campaign_days: int = Field(30, ge=7, le=180, description="days the coupon's effect lasts")
    campaign_holdout: float = Field(0.5, gt=0, lt=1, description="share of the campaign's audience held out")
    weekly_push_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of push-consenting members sent a product push every Monday (the shop's picks in "
        "their favourite categories), recorded in `contacts`, with the orders of those who take it (OUTREACH_EFFECTS): "
        "the response history `outreach plan` calibrates pushes on; 0: no pushes",
    )
    declining_group_at: date | None = Field(
        None,
        description="from this day the group DECLINING_GROUP declines: its members' engagement falls to a sixth "
        "over 90 days, they complain more and score lower in surveys (what `community-ml health` should find)",
    )

    @model_validator(mode="after")
    def _campaign_inside_history(self) -> SyntheticConfig:
        if self.campaign_at is not None:
            end = (pd.Timestamp(self.start) + pd.DateOffset(months=self.months)).date()
            if not (self.start < self.campaign_at and self.campaign_at + timedelta(days=self.campaign_days) <= end):
                raise ValueError(
                    f"campaign_at {self.campaign_at}: the campaign and its {self.campaign_days} days must fall "
                    f"inside the history ({self.start} to {end})"
                )
        return self


@dataclass
class SyntheticData:
    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame  # hidden ground truth per member (persona, promotion-driven, churn date)
    group_truth: pd.DataFrame | None = None  # each group's hidden health and whether it declines (first chunk)

    @property
    def event_count(self) -> int:
        return len(self.tables["orders"]) + len(self.tables["engagements"])


class _Sim:
    """One run of the simulation; arrays are indexed by member (axis 0) and day (axis 1)."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.cfg = config
        # The members this simulation draws: `first` up to `first + n` (all of them until `chunk` narrows it), and
        # the number of orders drawn before them (their order ids follow on).
        self.first, self.n, self.first_order = 0, config.members, 0
        self.orders_drawn = 0  # by `orders`: where the next chunk's order ids start
        self.rng = np.random.default_rng(config.seed)
        self.start = pd.Timestamp(config.start)
        self.end = self.start + pd.DateOffset(months=config.months)
        self.days = int((self.end - self.start).days)
        self.day_dates = pd.date_range(self.start, periods=self.days, freq="D")
        # The shift draws from its own generator, so that without a shift the data stay exactly as they were.
        self.shift_day = None if config.shift_at is None else int((pd.Timestamp(config.shift_at) - self.start).days)
        self.shift_rng = np.random.default_rng([config.seed, 1])
        self.declining_day = (
            None
            if config.declining_group_at is None
            else int((pd.Timestamp(config.declining_group_at) - self.start).days)
        )
        # Each group's health (standard normal): from its own generator, like feedback and surveys.
        self.group_health = np.random.default_rng([config.seed, 6]).normal(0.0, 1.0, config.groups)

    # ---- catalogue -------------------------------------------------------------------------------------

    def products(self) -> pd.DataFrame:
        n = self.cfg.products
        cat = np.arange(n) % len(CATEGORIES)
        base = np.array([CATEGORY_PRICE[c] for c in CATEGORIES])[cat]
        price = np.round(base * self.rng.lognormal(0, 0.45, n), 1)
        # Popularity within a category is Zipf-like: a few hits, a long tail.
        rank = np.arange(n) // len(CATEGORIES) + 1
        self.product_category = cat
        self.product_price = price
        self.product_popularity = 1.0 / rank**0.9
        active = self.rng.random(n) > 0.06
        # Brands, tags and launches come from their own generator: the main stream (and every table drawn from it)
        # stays as it was before products had them.
        attrs = np.random.default_rng([self.cfg.seed, 7])
        self.product_brand = cat * BRANDS_PER_CATEGORY + attrs.integers(0, BRANDS_PER_CATEGORY, n)
        self.product_tags = attrs.random((n, len(PRODUCT_TAGS))) < 2.0 / len(PRODUCT_TAGS)
        # A share of the catalogue launches during the history (the rest was on sale before it): new products
        # are part of every day's truth. Favourites and the first days draw on what was on sale before.
        launched = attrs.random(n) < LAUNCHED_SHARE
        launched[: len(CATEGORIES)] = False  # every category has its best seller from the start
        self.product_day = np.where(launched, attrs.integers(1, self.days, n), -attrs.integers(30, 720, n))
        brands = np.array(BRAND_NAMES)[self.product_brand]
        names = [f"{b} {CATEGORIES[c].replace('_', ' ')} item {r}" for b, c, r in zip(brands, cat, rank, strict=True)]
        return pd.DataFrame(
            {
                "product_id": [f"P{i:05d}" for i in range(n)],
                "name": names,
                "category": np.array(CATEGORIES)[cat],
                "price": price,
                "active": active,
                "brand": brands,
                "tags": [list(np.array(PRODUCT_TAGS)[row]) or None for row in self.product_tags],  # as stored
                # At midnight: a product is on sale from the first hour of its launch day.
                "published_at": self.start + pd.to_timedelta(self.product_day, unit="D"),
            }
        )

    def contents(self) -> pd.DataFrame:
        n = self.cfg.contents
        ctype = self.rng.choice(len(CONTENT_TYPES), n, p=[0.3, 0.3, 0.15, 0.25])
        topic = self.rng.integers(0, len(CATEGORIES), n)
        published = self.rng.integers(-90, self.days, n)
        # Every (type, topic) bucket has one item from before the start, so early events have something.
        first = np.arange(len(CONTENT_TYPES) * len(CATEGORIES))
        first = first[first < n]
        ctype[first] = first // len(CATEGORIES)
        topic[first] = first % len(CATEGORIES)
        published[first] = -90
        self.content_type, self.content_topic, self.content_day = ctype, topic, published
        published_at = (
            self.start + pd.to_timedelta(published, unit="D") + pd.to_timedelta(self.rng.integers(8, 20, n), unit="h")
        )
        # Authors write on two topics each; titles and tags say the topic and the kind of post. From their own
        # generator, like the products' attributes.
        attrs = np.random.default_rng([self.cfg.seed, 8])
        author = topic * AUTHORS_PER_TOPIC + attrs.integers(0, AUTHORS_PER_TOPIC, n)
        words = [CONTENT_WORDS[t] for t in np.array(CONTENT_TYPES)[ctype]]
        style = attrs.random((n, len(PRODUCT_TAGS))) < 1.0 / len(PRODUCT_TAGS)
        return pd.DataFrame(
            {
                "content_id": [f"C{i:05d}" for i in range(n)],
                "content_type": np.array(CONTENT_TYPES)[ctype],
                "topic": np.array(CATEGORIES)[topic],
                "published_at": published_at,
                "title": [
                    f"{w[i % len(w)]} {CATEGORIES[t].replace('_', ' ')} #{i}"
                    for i, (w, t) in enumerate(zip(words, topic, strict=True))
                ],
                "author_id": _ids("A", author, 3),
                "tags": [
                    [CATEGORIES[t], str(CONTENT_TYPES[c]), *np.array(PRODUCT_TAGS)[row]]
                    for t, c, row in zip(topic, ctype, style, strict=True)
                ],
            }
        )

    def groups(self) -> pd.DataFrame:
        n = self.cfg.groups
        self.group_type = np.arange(n) % len(GROUP_TYPES)
        return pd.DataFrame(
            {
                "group_id": [f"G{i:04d}" for i in range(n)],
                "group_type": np.array(GROUP_TYPES)[self.group_type],
            }
        )

    def group_truth(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "group_id": [f"G{i:04d}" for i in range(self.cfg.groups)],
                "health": self.group_health,
                "declining_from": pd.Series(
                    [
                        pd.Timestamp(self.cfg.declining_group_at)
                        if i == DECLINING_GROUP and self.cfg.declining_group_at
                        else pd.NaT
                        for i in range(self.cfg.groups)
                    ],
                    dtype="datetime64[ns]",
                ),
            }
        )

    def chunk(self, index: int, first: int, n: int, first_order: int) -> _Sim:
        """This simulation's catalogue, with members `first` to `first + n` drawn from the chunk's own generators
        (the first chunk goes on with the catalogue's, as the whole community did before chunks)."""
        sim = copy.copy(self)
        sim.first, sim.n, sim.first_order = first, n, first_order
        if index:
            sim.rng = np.random.default_rng([self.cfg.seed, 3, index])
            sim.shift_rng = np.random.default_rng([self.cfg.seed, 1, index])
        return sim

    # ---- members ---------------------------------------------------------------------------------------

    def members(self) -> pd.DataFrame:
        n, rng = self.n, self.rng
        persona = rng.choice(len(PERSONAS), n, p=[p.share for p in PERSONAS])
        self.persona = persona
        self.promo_driven = rng.random(n) < np.array([p.promo_driven for p in PERSONAS])[persona]
        # 40% were members before the history starts; the rest join over it (not in the last month).
        before = rng.random(n) < 0.4
        joined = np.where(before, rng.integers(-720, 0, n), rng.integers(0, max(self.days - 30, 1), n))
        self.joined_day = joined
        self.promo_after_shift = self.promo_driven.copy()
        if self.shift_day is not None:
            late = joined >= self.shift_day
            persona[late] = self.shift_rng.choice(len(PERSONAS), int(late.sum()), p=SHIFTED_PERSONA_SHARES)
            self.promo_driven[late] = self.shift_rng.random(int(late.sum())) < 0.7
            turned = self.shift_rng.random(n) < self.cfg.shift_promo_share
            self.promo_after_shift = self.promo_driven | turned
        self.activity = rng.gamma(2.0, 0.5, n)  # heterogeneity: some members simply buy more
        self.social = rng.gamma(2.0, 0.5, n)
        lifetime_mean = np.array([p.mean_lifetime_days for p in PERSONAS])[persona]
        hazard = np.where(self.promo_driven, 2.0, 1.0) / lifetime_mean
        hazard *= 1.6 / (0.6 + self.social)  # well-connected members stay longer
        self.churn_day = np.maximum(joined, 0) + rng.exponential(1.0 / hazard).astype(int) + 20
        self.category_pref = self._preferences(persona, [p.categories for p in PERSONAS])
        age = np.empty(n, dtype=object)
        for i, p in enumerate(PERSONAS):
            age[persona == i] = rng.choice(p.age_bands, int((persona == i).sum()))
        acq_p = np.where(self.promo_driven[:, None], [0.25, 0.1, 0.2, 0.1, 0.35], [0.35, 0.25, 0.2, 0.12, 0.08])
        acquisition = _choose_rows(rng, acq_p)
        frame = pd.DataFrame(
            {
                "member_id": self.member_ids,
                "joined_at": self.start
                + pd.to_timedelta(joined, unit="D")
                + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
                "city": rng.choice(CITIES, n, p=[0.2, 0.16, 0.12, 0.12, 0.1, 0.09, 0.07, 0.07, 0.07]),
                "age_band": age,
                "acquisition_channel": np.array(ACQUISITION)[acquisition],
                "persona": np.array(PERSONA_NAMES)[persona],
                "consent_marketing": rng.random(n) < 0.85,
            }
        )
        self._draw_campaign(frame["consent_marketing"].to_numpy())
        # Consent per channel, among those who agreed to marketing: from its own generator, like the campaign's.
        channels = np.random.default_rng([self.cfg.seed, 10, self.first])
        agreed = frame["consent_marketing"].to_numpy()
        for channel, share in CHANNEL_CONSENT.items():
            frame[f"consent_{channel}"] = agreed & (channels.random(n) < share)
        self.consent_push = frame["consent_push"].to_numpy()
        return frame

    def _draw_campaign(self, consent: np.ndarray) -> None:
        """Who the campaign reaches (joined before it, with marketing consent), their arm, and who is push-averse;
        from the campaign's own generator, so a community without a campaign is exactly what it was."""
        n = self.n
        self.arm = np.full(n, None, dtype=object)
        self.averse = np.zeros(n, dtype=bool)
        if self.cfg.campaign_at is None:
            return
        self.campaign_day = int((pd.Timestamp(self.cfg.campaign_at) - self.start).days)
        crng = np.random.default_rng([self.cfg.seed, 4, self.first])
        reached = consent & (self.joined_day < self.campaign_day)
        held_out = crng.random(n) < self.cfg.campaign_holdout
        self.arm[reached] = np.where(held_out[reached], "control", "coupon")
        quality = np.array([p.name == "quality_seeking" for p in PERSONAS])[self.persona]
        self.averse = quality & ~self.promo_driven & (crng.random(n) < CAMPAIGN_EFFECTS["averse_share"])

    @property
    def member_ids(self) -> np.ndarray:
        return np.array([f"M{i:06d}" for i in range(self.first, self.first + self.n)])

    def _preferences(self, persona: np.ndarray, affinities: list[dict[str, float]]) -> np.ndarray:
        """Each member's category preferences: the persona's affinity plus individual Dirichlet noise."""
        alpha = np.array([[a.get(c, 0.3) for c in CATEGORIES] for a in affinities])
        draws = self.rng.gamma(alpha[persona] * 2.0)
        return draws / draws.sum(axis=1, keepdims=True)

    # ---- intensities -----------------------------------------------------------------------------------

    def _calendar(self, dates: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(season multiplier, promotion day flag) per day of `dates` (the history's days by default)."""
        dates = self.day_dates if dates is None else dates
        months = dates.month.to_numpy()
        dom = dates.day.to_numpy()
        season = np.array(MONTH_SEASON)[months - 1] * np.where(dates.dayofweek.to_numpy() >= 5, 1.15, 0.95)
        promo = (
            ((months == 6) & (dom <= 18))
            | ((months == 11) & (dom <= 11))
            | ((months == 12) & (dom >= 10) & (dom <= 12))
            | (dom == 8)  # the monthly member day
        )
        return season, promo

    def _fade(self, start_fading: int, floor: float, after: float, days: np.ndarray | None = None) -> np.ndarray:
        """Multiplier per member and day: 1, then falling to `floor` over the last days before churn."""
        day = (np.arange(self.days) if days is None else days)[None, :]
        left = self.churn_day[:, None] - day
        fade = np.clip(left / start_fading, floor, 1.0)
        return np.where(left > 0, fade, after).astype(np.float32)

    def _active(self, days: np.ndarray | None = None) -> np.ndarray:
        day = np.arange(self.days) if days is None else days
        return (day[None, :] >= self.joined_day[:, None]).astype(np.float32)

    def order_rates(self, days: np.ndarray) -> np.ndarray:
        """Each member's expected orders on each of `days` (counted from the start: the history's, or days after
        it, where `data simulate` plays a plan), before any campaign or outreach."""
        season, promo = self._calendar(self.start + pd.to_timedelta(days, unit="D"))
        rate = np.array([p.orders_per_month for p in PERSONAS])[self.persona] * self.activity / 30.0
        boost = np.where(self.promo_driven[:, None], np.where(promo, 3.5, 0.55), np.where(promo, 1.25, 1.0))
        if self.shift_day is not None:
            # Members won over by the promotions keep their usual buying and splurge on promotion days.
            turned = (self.promo_after_shift & ~self.promo_driven)[:, None] & (days >= self.shift_day)
            boost = np.where(turned, np.where(promo, 3.5, 1.0), boost)
        active, fade = self._active(days), self._fade(45, 0.35, 0.0, days)
        return rate[:, None].astype(np.float32) * season[None, :] * boost * active * fade

    def order_counts(self) -> np.ndarray:
        lam = self.order_rates(np.arange(self.days))
        if self.cfg.campaign_at is not None:
            lam = self._campaign_orders(lam)
        return self.rng.poisson(lam).astype(np.int32)

    def _campaign_orders(self, lam: np.ndarray) -> np.ndarray:
        """The coupon's effect on order intensities over the campaign's window, and each exposed member's true
        lift in conversion (P(an order in the window | coupon) - P(... | control)), for the ground truth."""
        window = slice(self.campaign_day, self.campaign_day + self.cfg.campaign_days)
        factor = np.where(self.averse, CAMPAIGN_EFFECTS["averse_orders"], 1.0)
        # Extra orders spread over the window, as many as make P(at least one) the redemption chance.
        redeem = np.array([REDEEM_BY_PERSONA[p.name] for p in PERSONAS])[self.persona]
        redeem = np.minimum(redeem + np.where(self.promo_driven, CAMPAIGN_EFFECTS["promo_redeem"], 0.0), 0.9)
        extra = -np.log(1 - redeem)
        base = lam[:, window].sum(axis=1).astype(np.float64)
        self.true_lift = np.where(self.arm != None, np.exp(-base) - np.exp(-(base * factor + extra)), np.nan)  # noqa: E711
        coupon = self.arm == "coupon"
        lam = lam.copy()
        lam[coupon, window] = lam[coupon, window] * factor[coupon, None] + extra[coupon, None] / self.cfg.campaign_days
        return lam

    def engagement_counts(self) -> np.ndarray:
        rate = np.array([p.engagements_per_week for p in PERSONAS])[self.persona] * self.social / 7.0
        weekly = np.where(self.day_dates.dayofweek.to_numpy() >= 5, 1.2, 0.92)
        lam = rate[:, None].astype(np.float32) * weekly[None, :] * self._active() * self._fade(90, 0.1, 0.02)
        if self.declining_day is not None:  # the declining group's members go quiet (same draws, lower rates)
            decline = np.clip(1 - (np.arange(self.days) - self.declining_day) / 90 * (5 / 6), 1 / 6, 1.0)
            lam[self.in_declining] *= decline[None, :].astype(np.float32)
        if self.cfg.campaign_at is not None:  # a pushed coupon is opened now and then: a visit
            window = slice(self.campaign_day, self.campaign_day + self.cfg.campaign_days)
            opened = (self.arm == "coupon") & ~self.averse
            lam[opened, window] += -np.log(1 - CAMPAIGN_EFFECTS["opened"]) / self.cfg.campaign_days
        return self.rng.poisson(lam).astype(np.int32)

    # ---- events ----------------------------------------------------------------------------------------

    def _expand(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(member, day, timestamp) for every event in a member x day count matrix, in time order."""
        member, day = np.nonzero(counts)
        reps = counts[member, day]
        member, day = np.repeat(member, reps), np.repeat(day, reps)
        hour = self.rng.choice(24, len(day), p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
        seconds = day.astype(np.int64) * 86_400 + hour * 3_600 + self.rng.integers(0, 3_600, len(day))
        order = np.argsort(seconds, kind="stable")
        ts = self.start + pd.to_timedelta(seconds[order], unit="s")
        return member[order], day[order], np.asarray(ts)

    def orders(self) -> pd.DataFrame:
        rng = self.rng
        member, day, ts = self._expand(self.order_counts())
        n_orders = len(member)
        _, promo = self._calendar()
        lines_mean = np.array([p.lines_per_order for p in PERSONAS])[self.persona[member]]
        n_lines = 1 + rng.poisson(lines_mean - 1)
        order_of_line = np.repeat(np.arange(n_orders), n_lines)
        m = member[order_of_line]
        product = self._pick_products(m, day[order_of_line])
        qty = 1 + rng.poisson(np.where(_PARENT[self.persona[m]], 0.8, 0.3))
        discount = np.where(promo[day[order_of_line]], 0.8, 1.0)
        unit = (
            self.product_price[product] * discount * np.array([p.price_level for p in PERSONAS])[self.persona[m]] ** 0.2
        )
        if self.shift_day is not None:
            unit = unit * np.where(day[order_of_line] >= self.shift_day, self.cfg.shift_price_factor, 1.0)
        amount = np.round(qty * unit, 2)
        # The money the promotion took off the line's list price (what the member would have paid undiscounted).
        taken_off = np.round(qty * unit * (1.0 / discount - 1.0), 2)
        channel = _choose_rows(rng, _CHANNEL_BY_PERSONA[self.persona[member]])[order_of_line]
        sales = pd.DataFrame(
            {
                "member_id": self.member_ids[m],
                "ts": ts[order_of_line],
                "amount": amount,
                "discount": taken_off,
                "order_id": np.char.add("O", np.char.zfill((self.first_order + order_of_line).astype(str), 8)),
                "product_id": np.char.add("P", np.char.zfill(product.astype(str), 5)),
                "quantity": qty.astype(float),
                "channel": np.array(CHANNELS)[channel],
                "is_return": False,
                "_member": m,
            }
        )
        # A product picked twice for one order is one line with the summed quantity.
        sales = sales.groupby(["order_id", "product_id"], as_index=False, sort=False).agg(
            member_id=("member_id", "first"),
            ts=("ts", "first"),
            amount=("amount", "sum"),
            discount=("discount", "sum"),
            quantity=("quantity", "sum"),
            channel=("channel", "first"),
            is_return=("is_return", "first"),
            _member=("_member", "first"),
        )
        m = sales.pop("_member").to_numpy()
        self.orders_drawn = n_orders
        # Some lines come back a few days later; price-sensitive members return more, quality seekers less.
        return_p = np.where(self.persona[m] == 0, 0.05, np.where(self.persona[m] == 1, 0.02, 0.035))
        back = rng.random(len(m)) < return_p
        returns = sales[back].copy()
        returns["ts"] = returns["ts"] + pd.to_timedelta(rng.integers(2, 21, back.sum()), unit="D")
        returns["amount"] = -returns["amount"]
        returns["quantity"] = -returns["quantity"]
        returns["is_return"] = True
        returns = returns[returns["ts"] < self.end]
        return pd.concat([sales, returns], ignore_index=True)

    def _pick_products(self, member: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Favourites are bought again; otherwise a category by preference, then a product on sale that day by its
        popularity times the persona's taste for it: members of a persona share tastes for brands and tags (the
        co-buying that collaborative filtering learns, and what a new product's attributes reveal). Favourites
        are drawn from what was on sale before the history."""
        rng = self.rng
        n_cat = len(CATEGORIES)
        cum = np.cumsum(self.category_pref, axis=1)
        favourites = np.empty((self.n, 4), dtype=np.int64)
        fav_cat = (rng.random((self.n, 4, 1)) > cum[:, None, :]).sum(axis=2).clip(0, n_cat - 1)
        line_cat = (rng.random((len(member), 1)) > cum[member]).sum(axis=1).clip(0, n_cat - 1)
        # Each pick below takes one uniform draw as rng.choice would: the main stream, and so every other table,
        # stays as it was without tastes and launches.
        taste = self._tastes()
        product = np.empty(len(member), dtype=np.int64)
        for c in range(n_cat):
            # The category's products by launch day: those on sale on a day are a prefix of them.
            ids = np.flatnonzero(self.product_category == c)
            ids = ids[np.argsort(self.product_day[ids], kind="stable")]
            cdf = np.cumsum(self.product_popularity[ids] * taste[:, ids], axis=1)
            pick = np.flatnonzero(line_cat == c)
            on_sale = np.maximum(np.searchsorted(self.product_day[ids], day[pick], side="right"), 1)
            persona = self.persona[member[pick]]
            uniform = rng.random(len(pick)) * cdf[persona, on_sale - 1]
            product[pick] = ids[self._by_persona(cdf, persona, uniform)]
            fav_member, fav_slot = np.nonzero(fav_cat == c)
            before = max(int(np.searchsorted(self.product_day[ids], 0, side="left")), 1)
            persona = self.persona[fav_member]
            chosen = self._by_persona(cdf, persona, rng.random(len(fav_member)) * cdf[persona, before - 1])
            favourites[fav_member, fav_slot] = ids[chosen]
        repeat = rng.random(len(member)) < 0.4
        product[repeat] = favourites[member[repeat], rng.integers(0, 4, repeat.sum())]
        return product

    def _tastes(self) -> np.ndarray:
        """Each persona's taste for each product (personas x products): its liking of the product's brand and tags,
        times noise; from their own generators."""
        noise = np.random.default_rng([self.cfg.seed, 2]).normal(0.0, 1.0, (len(PERSONAS), self.cfg.products))
        return self.revealed_tastes() * np.exp(TASTE_SPREAD["noise"] * noise)

    def revealed_tastes(self) -> np.ndarray:
        """The part of each persona's taste for each product that its attributes reveal: its liking of the
        product's brand and tags (personas x products)."""
        likes = np.random.default_rng([self.cfg.seed, 9])
        brand = likes.normal(0.0, TASTE_SPREAD["brand"], (len(PERSONAS), len(BRAND_NAMES)))
        tag = likes.normal(0.0, TASTE_SPREAD["tag"], (len(PERSONAS), len(PRODUCT_TAGS)))
        return np.exp(brand[:, self.product_brand] + tag @ self.product_tags.T)

    @staticmethod
    def _by_persona(cdf: np.ndarray, persona: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Inverse-CDF draws: row i takes `uniform[i]` through the cumulative weights of its persona."""
        out = np.empty(len(uniform), dtype=np.int64)
        for q in np.unique(persona):
            rows = persona == q
            out[rows] = np.minimum(np.searchsorted(cdf[q], uniform[rows], side="right"), cdf.shape[1] - 1)
        return out

    def memberships(self) -> np.ndarray:
        """Up to three groups per member (-1 = none), by the persona's liking of group types."""
        rng = self.rng
        n = self.n
        type_p = np.array([p.group_types for p in PERSONAS], dtype=float)
        type_p /= type_p.sum(axis=1, keepdims=True)
        slots = np.full((n, 3), -1, dtype=np.int64)
        k = rng.integers(1, 4, n)
        by_type = [np.flatnonzero(self.group_type == t) for t in range(len(GROUP_TYPES))]
        for s in range(3):
            gtype = _choose_rows(rng, type_p[self.persona])
            gtype[self.promo_driven & (s == 0)] = 0  # promotion-driven members sit in a promotion group
            choice = np.array([by_type[t][rng.integers(0, len(by_type[t]))] for t in gtype])
            slots[:, s] = np.where(s < k, choice, -1)
        return slots

    @property
    def in_declining(self) -> np.ndarray:
        return (self.slots == DECLINING_GROUP).any(axis=1)

    def _declining_after(self, member: np.ndarray, day: np.ndarray) -> np.ndarray:
        """True where the member is in the declining group and the day is after its decline began."""
        if self.declining_day is None:
            return np.zeros(len(member), dtype=bool)
        return self.in_declining[member] & (day >= self.declining_day)

    def _member_health(self) -> np.ndarray:
        """The mean health of each member's groups (0 for a member of none)."""
        health = np.where(self.slots >= 0, self.group_health[np.maximum(self.slots, 0)], np.nan)
        return np.nan_to_num(np.nanmean(np.where(self.slots >= 0, health, np.nan), axis=1, keepdims=False), nan=0.0)

    def engagements(self) -> pd.DataFrame:
        rng = self.rng
        slots = self.slots = self.memberships()
        member, day, ts = self._expand(self.engagement_counts())
        action_p = np.array([p.actions for p in PERSONAS], dtype=float)
        action_p /= action_p.sum(axis=1, keepdims=True)
        action = _choose_rows(rng, action_p[self.persona[member]])
        is_content = action < len(CONTENT_ACTIONS)
        content = np.full(len(member), -1, dtype=np.int64)
        content[is_content] = self._pick_contents(member[is_content], day[is_content])
        n_groups = (slots >= 0).sum(axis=1)
        slot = (rng.random(len(member)) * n_groups[member]).astype(int)
        group = np.where(is_content, -1, slots[member, slot])
        actions = np.array(CONTENT_ACTIONS + GROUP_ACTIONS)
        frame = pd.DataFrame(
            {
                "member_id": self.member_ids[member],
                "ts": ts,
                "action": actions[action],
                "content_id": _ids("C", content, 5),
                "group_id": _ids("G", group, 4),
            }
        )
        return pd.concat([frame, self._joins_and_leaves(slots)], ignore_index=True)

    def _pick_contents(self, member: np.ndarray, day: np.ndarray) -> np.ndarray:
        """A content type by persona, a topic by category preference, then a recent item in that bucket."""
        rng = self.rng
        type_p = np.array([p.content_types for p in PERSONAS], dtype=float)
        type_p /= type_p.sum(axis=1, keepdims=True)
        ctype = _choose_rows(rng, type_p[self.persona[member]])
        topic = _choose_rows(rng, self.category_pref[member])
        out = np.empty(len(member), dtype=np.int64)
        bucket = ctype * len(CATEGORIES) + topic
        item_bucket = self.content_type * len(CATEGORIES) + self.content_topic
        for b in np.unique(bucket):
            items = np.flatnonzero(item_bucket == b)
            items = items[np.argsort(self.content_day[items], kind="stable")]
            pick = bucket == b
            published = np.searchsorted(self.content_day[items], day[pick], side="right")
            published = np.maximum(published, 1)
            # Newer items draw more attention: step back a geometric number of items from the newest.
            back = np.minimum(rng.geometric(0.25, pick.sum()) - 1, published - 1)
            out[pick] = items[published - 1 - back]
        return out

    def _joins_and_leaves(self, slots: np.ndarray) -> pd.DataFrame:
        rng = self.rng
        member, slot = np.nonzero(slots >= 0)
        group = slots[member, slot]
        join_day = self.joined_day[member] + rng.integers(0, 4, len(member))
        joins = join_day >= 0  # joins before the history are not observed
        leave_day = self.churn_day[member] + rng.integers(0, 30, len(member))
        leaves = (leave_day < self.days) & (rng.random(len(member)) < 0.6)
        frames = []
        for mask, days, action in ((joins, join_day, "join_group"), (leaves, leave_day, "leave_group")):
            seconds = days[mask].astype(np.int64) * 86_400 + rng.integers(8 * 3600, 22 * 3600, mask.sum())
            frames.append(
                pd.DataFrame(
                    {
                        "member_id": self.member_ids[member[mask]],
                        "ts": self.start + pd.to_timedelta(seconds, unit="s"),
                        "action": action,
                        "content_id": None,
                        "group_id": _ids("G", group[mask], 4),
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        return out[out["ts"] < self.end]

    def feedback(self, orders: pd.DataFrame) -> pd.DataFrame:
        """Reviews, complaints and disputes a few days after orders, by the member's groups' health; the shop's
        answers and resolutions. From the feedback's own generator."""
        rng = np.random.default_rng([self.cfg.seed, 5, self.first])
        bought = orders[~orders["is_return"]].drop_duplicates("order_id")
        member = bought["member_id"].str[1:].astype(int).to_numpy() - self.first
        day = ((bought["ts"] - self.start).dt.days).to_numpy()
        health = self._member_health()[member]
        worse = np.where(self._declining_after(member, day), 3.0, 1.0)
        frames = []
        for kind, rate in FEEDBACK_RATES.items():
            p = rate if kind == "review" else rate * np.exp(-0.5 * health) * worse
            hit = rng.random(len(member)) < p
            n = int(hit.sum())
            ts = (
                bought["ts"].to_numpy()[hit]
                + pd.to_timedelta(rng.integers(86_400, 10 * 86_400, n), unit="s").to_numpy()
            )
            rating = np.full(n, np.nan)
            if kind == "review":
                mean = 4.3 + 0.3 * health[hit] - 1.2 * (worse[hit] > 1)
                rating = np.clip(np.round(rng.normal(mean, 0.8)), 1, 5)
            answered = rng.random(n) < (0.5 if kind == "review" else 0.95)
            slow = np.where(health[hit] < -0.5, 3.0, 1.0)
            responded = ts + pd.to_timedelta(np.round(rng.exponential(8.0 * slow) * 3_600), unit="s").to_numpy()
            resolved = rng.random(n) < {"review": 0.0, "complaint": 0.85, "dispute": 0.7}[kind]
            closed = responded + pd.to_timedelta(np.round(rng.exponential(48.0, n) * 3_600), unit="s").to_numpy()
            frames.append(
                pd.DataFrame(
                    {
                        "member_id": bought["member_id"].to_numpy()[hit],
                        "ts": ts,
                        "kind": kind,
                        "rating": rating,
                        "responded_at": pd.Series(responded).where(answered),
                        "resolved_at": pd.Series(closed).where(answered & resolved),
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        end = np.datetime64(self.end)
        for column in ("responded_at", "resolved_at"):  # nothing after the history's end is known yet
            out[column] = out[column].where(out[column] < end)
        return out[out["ts"] < end].sort_values("ts", kind="stable").reset_index(drop=True)

    def surveys(self) -> pd.DataFrame:
        """Each quarter about SURVEY_RATE_PER_QUARTER of the members active then answer the recommendation question
        once; healthier groups score higher, the declining group's members lower once it declines."""
        rng = np.random.default_rng([self.cfg.seed, 7, self.first])
        health = self._member_health()
        frames = []
        for quarter_start in range(0, self.days, 91):
            day = quarter_start + rng.integers(0, 91, self.n)
            active = (self.joined_day <= day) & (self.churn_day > day) & (day < self.days)
            answers = np.flatnonzero(active & (rng.random(self.n) < SURVEY_RATE_PER_QUARTER))
            mean = 7.3 + 0.8 * health[answers] - 3.0 * self._declining_after(answers, day[answers])
            seconds = day[answers].astype(np.int64) * 86_400 + rng.integers(9 * 3600, 21 * 3600, len(answers))
            frames.append(
                pd.DataFrame(
                    {
                        "member_id": self.member_ids[answers],
                        "ts": self.start + pd.to_timedelta(seconds, unit="s"),
                        "score": np.clip(np.round(rng.normal(mean, 2.0)), 0, 10),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)

    # ---- outreach ------------------------------------------------------------------------------------------

    @functools.cached_property
    def _liking(self) -> np.ndarray:
        """Each persona's weight of each product when it picks one within a category: popularity x taste (the
        catalogue's, the same for every chunk)."""
        return self.product_popularity[None, :] * self._tastes()

    def product_pull(self, member: np.ndarray, product: np.ndarray) -> np.ndarray:
        """How much each member likes a product against the product they like most (0 to 1]: their chance of
        picking it for an order line over their chance of picking their favourite, as `_pick_products` picks."""
        cat = self.product_category
        total = np.stack([self._liking[:, cat == c].sum(axis=1) for c in range(len(CATEGORIES))], axis=1)
        share = self._liking / total[:, cat]
        best = np.stack([share[:, cat == c].max(axis=1) for c in range(len(CATEGORIES))], axis=1)
        persona = self.persona[member]
        favourite = (self.category_pref[member] * best[persona]).max(axis=1)
        return self.category_pref[member, cat[product]] * share[persona, product] / favourite

    def content_pull(self, member: np.ndarray, content: np.ndarray) -> np.ndarray:
        """How much each member likes a content's type and topic against the pair they like most (0 to 1]."""
        type_p = np.array([p.content_types for p in PERSONAS], dtype=float)[self.persona[member]]
        pref = self.category_pref[member]
        liking = (
            type_p[np.arange(len(member)), self.content_type[content]]
            * pref[np.arange(len(member)), self.content_topic[content]]
        )
        return liking / (type_p.max(axis=1) * pref.max(axis=1))

    def answer_chance(self, pull: np.ndarray, member: np.ndarray, day: np.ndarray, most: float) -> np.ndarray:
        """The chance a pushed item is taken: `most` x sqrt(pull), less for a member who has lapsed by `day`."""
        lapsed = np.where(day < self.churn_day[member], 1.0, OUTREACH_EFFECTS["lapsed"])
        return most * np.sqrt(pull) * lapsed

    def take_value(self, member: np.ndarray, product: np.ndarray) -> np.ndarray:
        """What a taken push is worth: one of the product at its list price, as the member pays it."""
        level = np.array([p.price_level for p in PERSONAS])[self.persona[member]] ** 0.2
        return self.product_price[product] * level

    def basket_value(self) -> np.ndarray:
        """Each member's expected order value at list prices: lines x quantity x the price of what they pick."""
        liking, cat = self._liking, self.product_category
        mean_price = np.stack(
            [
                (liking[:, cat == c] * self.product_price[cat == c]).sum(axis=1) / liking[:, cat == c].sum(axis=1)
                for c in range(len(CATEGORIES))
            ],
            axis=1,
        )  # personas x categories
        per_line = (self.category_pref * mean_price[self.persona]).sum(axis=1)
        lines = np.array([p.lines_per_order for p in PERSONAS])[self.persona]
        level = np.array([p.price_level for p in PERSONAS])[self.persona] ** 0.2
        return lines * (1 + np.where(_PARENT[self.persona], 0.8, 0.3)) * per_line * level

    def offer_redemption(self) -> tuple[np.ndarray, np.ndarray]:
        """The coupon's effect on each member, as the planted campaign's: (the chance it brings them to buy, the
        factor of their own orders: push-averse members buy less)."""
        redeem = np.array([REDEEM_BY_PERSONA[p.name] for p in PERSONAS])[self.persona]
        redeem = np.minimum(redeem + np.where(self.promo_driven, CAMPAIGN_EFFECTS["promo_redeem"], 0.0), 0.9)
        return redeem, np.where(self.averse, CAMPAIGN_EFFECTS["averse_orders"], 1.0)

    def pushes(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The shop's weekly product pushes (every Monday to a random `weekly_push_share` of the members who agreed
        to pushes: a product of one of their favourite categories, by popularity) as contacts, and the orders of the
        members who took them (OUTREACH_EFFECTS): from their own generator, so the other tables stay as they were."""
        rng = np.random.default_rng([self.cfg.seed, 11, self.first])
        mondays = np.flatnonzero(self.day_dates.dayofweek.to_numpy() == 0)
        eligible = self.consent_push[:, None] & (self.joined_day[:, None] <= mondays[None, :])
        member, week = np.nonzero(eligible & (rng.random(eligible.shape) < self.cfg.weekly_push_share))
        day = mondays[week]
        category = _choose_rows(rng, self.category_pref[member])
        product = np.empty(len(member), dtype=np.int64)
        for c in range(len(CATEGORIES)):
            ids = np.flatnonzero(self.product_category == c)
            ids = ids[np.argsort(self.product_day[ids], kind="stable")]
            cdf = np.cumsum(self.product_popularity[ids])
            pick = np.flatnonzero(category == c)
            on_sale = np.maximum(np.searchsorted(self.product_day[ids], day[pick], side="right"), 1)
            chosen = np.searchsorted(cdf, rng.random(len(pick)) * cdf[on_sale - 1], side="right")
            product[pick] = ids[np.minimum(chosen, len(ids) - 1)]
        sent = day.astype(np.int64) * 86_400 + rng.integers(10, 20, len(day)) * 3_600 + rng.integers(0, 3_600, len(day))
        chance = self.answer_chance(self.product_pull(member, product), member, day, OUTREACH_EFFECTS["push_take_max"])
        took = rng.random(len(member)) < chance
        delay = np.minimum(rng.exponential(1.5 * 86_400, len(member)), PUSH_RESPONSE_DAYS * 86_400 - 1).astype(np.int64)
        contacts = pd.DataFrame(
            {
                "member_id": self.member_ids[member],
                "ts": self.start + pd.to_timedelta(sent, unit="s"),
                "channel": "push",
                "action": "product-push",
                "list_id": "weekly-picks",
                "item_id": np.char.add("P", np.char.zfill(product.astype(str), 5)),
            }
        )
        m, w, p = member[took], week[took], product[took]
        orders = pd.DataFrame(
            {
                "member_id": self.member_ids[m],
                "ts": self.start + pd.to_timedelta(sent[took] + delay[took], unit="s"),
                "amount": np.round(self.take_value(m, p), 2),
                "discount": 0.0,
                # An order per take, numbered apart from the others: the member's number and the week's.
                "order_id": [f"OP{self.first + i:07d}{j:03d}" for i, j in zip(m, w, strict=True)],
                "product_id": np.char.add("P", np.char.zfill(p.astype(str), 5)),
                "quantity": 1.0,
                "channel": "app",
                "is_return": False,
            }
        )
        return contacts, orders[orders["ts"] < self.end]

    def truth(self) -> pd.DataFrame:
        churn_at = self.start + pd.to_timedelta(self.churn_day, unit="D")
        return pd.DataFrame(
            {
                "member_id": self.member_ids,
                "persona": np.array(PERSONA_NAMES)[self.persona],
                "promo_driven": self.promo_driven,
                "churn_at": pd.Series(churn_at).where(self.churn_day < self.days),
                "activity": self.activity,
                "social": self.social,
            }
        ).assign(**self._campaign_truth())

    def _campaign_truth(self) -> dict[str, np.ndarray]:
        if self.cfg.campaign_at is None:
            return {}
        return {"campaign_arm": self.arm, "push_averse": self.averse, "true_lift_conversion": self.true_lift}

    def exposures(self) -> pd.DataFrame:
        reached = self.arm != None  # noqa: E711 (an array's elementwise comparison)
        return pd.DataFrame(
            {
                "member_id": self.member_ids[reached],
                "campaign_id": self.cfg.campaign,
                "arm": self.arm[reached].astype(str),
                "ts": pd.Timestamp(self.cfg.campaign_at),
            }
        )


_PARENT = np.array([p.name == "young_parent" for p in PERSONAS])
_CHANNEL_BY_PERSONA = np.array(
    [
        [0.3, 0.35, 0.3, 0.05],  # price_sensitive
        [0.5, 0.2, 0.1, 0.2],  # quality_seeking
        [0.2, 0.3, 0.45, 0.05],  # social_sharer
        [0.35, 0.35, 0.25, 0.05],  # young_parent
        [0.45, 0.35, 0.1, 0.1],  # office_worker
        [0.3, 0.5, 0.15, 0.05],  # student
    ]
)


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a probability matrix, vectorised."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random((len(probs), 1)) * cum[:, -1:]
    return (u > cum).sum(axis=1).clip(0, probs.shape[1] - 1)


def _ids(prefix: str, index: np.ndarray, width: int) -> np.ndarray:
    out = np.char.add(prefix, np.char.zfill(np.maximum(index, 0).astype(str), width)).astype(object)
    out[index < 0] = None
    return out


def generate_chunks(config: SyntheticConfig) -> Iterator[SyntheticData]:
    """The community a chunk of members at a time: the catalogue comes with the first chunk, then members, their
    orders and engagements, and their ground truth."""
    sim = _Sim(config)
    catalogue = {"products": sim.products(), "contents": sim.contents(), "groups": sim.groups()}
    first_order = 0
    for index, first in enumerate(range(0, config.members, CHUNK_MEMBERS)):
        part = sim.chunk(index, first, min(CHUNK_MEMBERS, config.members - first), first_order)
        tables = {**catalogue, "members": part.members()} if index == 0 else {"members": part.members()}
        tables["orders"] = part.orders()
        if config.weekly_push_share:
            tables["contacts"], taken = part.pushes()
            tables["orders"] = pd.concat([tables["orders"], taken], ignore_index=True)
        tables["engagements"] = part.engagements()
        if config.campaign_at is not None:
            tables["exposures"] = part.exposures()
        tables["feedback"] = part.feedback(tables["orders"])
        tables["surveys"] = part.surveys()
        first_order += part.orders_drawn
        yield SyntheticData(tables=tables, truth=part.truth(), group_truth=sim.group_truth() if index == 0 else None)


def generate(config: SyntheticConfig) -> SyntheticData:
    """The whole community in memory (tests and small communities; `generate_chunks` streams a large one)."""
    chunks = list(generate_chunks(config))
    tables = {
        name: pd.concat([c.tables[name] for c in chunks if name in c.tables], ignore_index=True)
        for name in chunks[0].tables
    }
    return SyntheticData(
        tables=tables, truth=pd.concat([c.truth for c in chunks], ignore_index=True), group_truth=chunks[0].group_truth
    )
