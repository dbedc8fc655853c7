"""What a member's history says about them as of T, for the member profile: favourite categories, topics and
content types, the hours and weekdays they are active, and how much of their buying is
discounted. One DuckDB pass over the dataset's tables (events before T only), one row per member.

Favourites may weigh each event by its age (half-life `ProfileSettings.half_life_days`: chosen on validation
windows, where it made no difference short of a year). The price sensitivity is shrunk toward the population
(`prior_orders`): three orders, one of them discounted, say less than thirty; the active hours and weekdays toward
the community's rhythm (`prior_events`). Each choice is measured against the plain past shares in
experiments/bench_profile.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.dataset.contract import CONSENT_CHANNELS
from features.dataset.store import Dataset
from features.pipelines.interactions import CONTENT_ITEMS, PRODUCT_ITEMS, ItemSource, catalogue

TOP = 3  # favourites kept per member: the top 3, with their shares
MAX_CONCENTRATION = 1_000.0  # events the community's rhythm counts as at most: members with no rhythm of their own
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ProfileSettings(BaseModel):
    """How the profile reads history (configs/segments.yaml `profile:`; these are the defaults)."""

    model_config = ConfigDict(extra="forbid")

    half_life_days: float = Field(
        365.0, gt=0, description="an event's weight in the favourites halves with every this many days of age"
    )
    prior_orders: float = Field(
        5.0, ge=0, description="price sensitivity: the population's share counts as this many orders of evidence"
    )
    prior_events: float | None = Field(
        None,
        ge=0,
        description="active hours and weekdays: the community's rhythm counts as this many events (default: "
        "fitted to the data, the Dirichlet-multinomial concentration of members' counts)",
    )


@dataclass(frozen=True)
class Rankings:
    """A ranked favourite: its field in the profile and what each entry names."""

    field: str  # the profile's name: favourite_categories, ...
    label: str  # the value's own name in an answer: category, topic, ...


FAVOURITES = (
    Rankings("favourite_categories", "category"),
    Rankings("favourite_topics", "topic"),
    Rankings("favourite_content_types", "content_type"),
)
CONTACT_PARTS = ("ts", "channel", "action")  # what an answer says of each of the last contacts
HISTORY_TEXT = [
    *(f"{r.field}_{i}" for r in FAVOURITES for i in range(1, TOP + 1)),
    *(f"last_contact_{i}_{part}" for i in range(1, TOP + 1) for part in CONTACT_PARTS),
]
HISTORY_NUMBERS = [
    *[f"{r.field}_{i}_share" for r in FAVOURITES for i in range(1, TOP + 1)],
    *[f"active_hour_{i}" for i in range(1, TOP + 1)],
    *[f"active_weekday_{i}" for i in range(1, TOP + 1)],
    "discounted_share",
    "discounted_order_share",
    "price_sensitivity",
    "priced_orders",
    "contacts_30d",
    *(f"consent_{channel}" for channel in CONSENT_CHANNELS),
]


def unknowable(dataset: Dataset) -> dict[str, str]:
    """The profile fields this dataset cannot tell, and why (the answer says so rather than leaving a gap). A
    column counts where it holds a value: canonical tables keep every column of the contract."""

    def told(table: str, column: str) -> bool:
        if column not in dataset.columns(table):
            return False
        with duckdb.connect() as con:
            query = f"SELECT 1 FROM read_parquet('{dataset.table_path(table)}') WHERE {column} IS NOT NULL LIMIT 1"
            return con.execute(query).fetchone() is not None

    why: dict[str, str] = {}
    if not told("orders", "discount"):
        why["price_sensitivity"] = "the orders carry no discount: what a member bought on promotion cannot be seen"
    if not (told("orders", "product_id") and told("products", "category")):
        why["favourite_categories"] = "the orders name no products with categories"
    if not told("orders", "channel"):
        why["preferred_channel"] = "the orders carry no channel"
    if not told("engagements", "content_id"):
        why["favourite_topics"] = why["favourite_content_types"] = "the dataset has no engagements with content"
    else:
        if not told("contents", "topic"):
            why["favourite_topics"] = "the contents carry no topic"
        if not told("contents", "content_type"):
            why["favourite_content_types"] = "the contents carry no content type"
    if not dataset.has("orders") and not dataset.has("engagements"):
        why["active_hours"] = why["active_weekdays"] = "the dataset has no orders or engagements"
    if not dataset.has("contacts") or not dataset.row_count("contacts"):
        why["last_contacts"] = (
            "no contact log: record what is sent with `community-ml outreach record` or post `contacts` to /events"
        )
    return why


def member_history(
    dataset: Dataset, as_of: datetime, member_ids: pd.Series, settings: ProfileSettings | None = None
) -> pd.DataFrame:
    """One row per member of `member_ids` (in its order): HISTORY_TEXT and HISTORY_NUMBERS from events before
    `as_of`; empty (None / NaN) where the member has none or the dataset cannot tell (`unknowable`). Every part
    is a table in DuckDB, joined to the members once (500,000 members in about 20 s on 2 cores)."""
    settings = settings or ProfileSettings()
    missing = unknowable(dataset)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    ids = member_ids.astype(str).to_numpy()
    con.register("asked", pd.DataFrame({"member_id": ids, "position": np.arange(len(ids))}))
    con.execute("CREATE TEMP TABLE members AS SELECT member_id, position FROM asked")
    cutoff = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    weight = f"pow(0.5, date_diff('second', ts, {cutoff}) / 86400.0 / {float(settings.half_life_days)})"
    order_cols, eng_cols = dataset.columns("orders"), dataset.columns("engagements")
    if order_cols:
        sale = "NOT coalesce(is_return, false)" if "is_return" in order_cols else "true"
        kept = [
            c for c in ("member_id", "ts", "amount", "order_id", "product_id", "channel", "discount") if c in order_cols
        ]
        con.execute(
            f"""CREATE TEMP TABLE o AS SELECT {", ".join(kept)}, coalesce(order_id, CAST(ts AS VARCHAR)) AS visit
            FROM read_parquet('{dataset.table_path("orders")}')
            WHERE ts < {cutoff} AND member_id IS NOT NULL AND {sale} AND amount > 0"""
        )
    if eng_cols:
        kept = [c for c in ("member_id", "ts", "content_id") if c in eng_cols]
        con.execute(
            f"""CREATE TEMP TABLE e AS SELECT {", ".join(kept)}
            FROM read_parquet('{dataset.table_path("engagements")}') WHERE ts < {cutoff}"""
        )
    parts: dict[str, list[str]] = {}  # a part's table -> the history columns it holds
    if "favourite_categories" not in missing:
        _register_catalogue(con, dataset, PRODUCT_ITEMS, "category")
        spend = f"""SELECT o.member_id, p.category AS choice, sum(o.amount * {weight}) AS w
            FROM o JOIN products_catalogue p ON p.item_id = o.product_id WHERE p.category IS NOT NULL GROUP BY ALL"""
        parts["categories"] = _top_table(con, "categories", spend, "favourite_categories", TOP)
    by_content = [("favourite_topics", "topic"), ("favourite_content_types", "content_type")]
    if any(f not in missing for f, _ in by_content):
        _register_catalogue(con, dataset, CONTENT_ITEMS, "topic", "content_type")
    for field, column in by_content:
        if field not in missing:
            takes = f"""SELECT e.member_id, c.{column} AS choice, sum({weight}) AS w FROM e
                JOIN contents_catalogue c ON c.item_id = e.content_id WHERE c.{column} IS NOT NULL GROUP BY ALL"""
            parts[column] = _top_table(con, column, takes, field, TOP)
    if "active_hours" not in missing:
        # An order counts once however many lines it has; every engagement counts.
        visits = "SELECT DISTINCT member_id, visit, ts FROM o"
        times = " UNION ALL ".join(
            f"SELECT member_id, ts FROM {view}" for view, cols in ((f"({visits})", order_cols), ("e", eng_cols)) if cols
        )
        for expr, name in (("hour(ts)", "active_hour"), ("isodow(ts) - 1", "active_weekday")):
            rhythm = _with_rhythm(con, f"SELECT member_id, {expr} AS choice FROM ({times})", settings)
            parts[name] = _top_table(con, name, rhythm, name, TOP, shares=False)
    if "price_sensitivity" not in missing:
        parts["discounts"] = _discounts(con, settings)
    if "last_contacts" not in missing:
        parts["contacts"] = _contacts(con, dataset, cutoff)
    consents = [f"consent_{c}" for c in CONSENT_CHANNELS if f"consent_{c}" in dataset.columns("members")]
    if consents:
        cast = ", ".join(f"CAST({c} AS DOUBLE) AS {c}" for c in consents)
        members = dataset.table_path("members")
        con.execute(f"CREATE TEMP TABLE consent AS SELECT member_id, {cast} FROM read_parquet('{members}')")
        parts["consent"] = consents
    provided = {column: table for table, columns in parts.items() for column in columns}
    select = ", ".join(
        [
            *(f"{provided[c]}.{c}" if c in provided else f"CAST(NULL AS VARCHAR) AS {c}" for c in HISTORY_TEXT),
            *(
                f"TRY_CAST({provided[c]}.{c} AS DOUBLE) AS {c}" if c in provided else f"CAST(NULL AS DOUBLE) AS {c}"
                for c in HISTORY_NUMBERS
            ),
        ]
    )
    joins = " ".join(f"LEFT JOIN {table} ON {table}.member_id = m.member_id" for table in parts)
    out = con.execute(f"SELECT m.member_id, {select} FROM members m {joins} ORDER BY m.position").df()
    con.close()
    for column in HISTORY_TEXT:
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    if "contacts" in parts:  # a member the log holds nothing for was sent nothing
        out["contacts_30d"] = out["contacts_30d"].fillna(0.0)
    return out


def _with_rhythm(con: duckdb.DuckDBPyConnection, events: str, settings: ProfileSettings) -> str:
    """(member_id, choice, w) of every member with events and every hour (weekday): the member's own count plus
    the community's share of that choice worth k events. A member's own most active hour says little after a
    handful of events, and on a community whose members keep no rhythm of their own nothing at all (the
    benchmark's synthetic community: the community's most active weekday predicts a member's next quarter better
    than their own). k is `prior_events`, or by default fitted to the data: the Dirichlet-multinomial's
    concentration, from how far members' counts spread beyond what chance gives (`rhythm_concentration`)."""
    counted = f"SELECT member_id, choice, count(*) AS n FROM ({events}) GROUP BY ALL"
    everyone = "SELECT choice, sum(n) / (SELECT sum(n) FROM counted) AS share FROM counted GROUP BY choice"
    con.execute(f"CREATE OR REPLACE TEMP TABLE counted AS {counted}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE everyone AS {everyone}")
    k = settings.prior_events if settings.prior_events is not None else rhythm_concentration(con)
    return f"""WITH grid AS (SELECT m.member_id, e.choice, e.share
            FROM (SELECT DISTINCT member_id FROM counted) m, everyone e)
        SELECT g.member_id, g.choice, coalesce(c.n, 0) + {float(k)} * g.share AS w
        FROM grid g LEFT JOIN counted c ON c.member_id = g.member_id AND c.choice = g.choice"""


def rhythm_concentration(con: duckdb.DuckDBPyConnection) -> float:
    """The Dirichlet-multinomial concentration a0 of members' counts around the community's shares, by moments:
    a member's Pearson chi-square over K choices has expectation (K - 1)(1 + (n - 1) rho) with rho = 1 / (1 + a0),
    so rho is the mean of (X2 / (K - 1) - 1) / (n - 1) over members with two events or more. rho near 0 (members
    spread as chance does: no rhythm of their own) gives a large a0, the community's rhythm; rho near 1, a small
    one, the member's own."""
    rho = con.execute(
        """WITH per AS (SELECT c.member_id, sum(c.n) AS n, sum(c.n * c.n / e.share) AS s
            FROM counted c JOIN everyone e USING (choice) GROUP BY c.member_id),
        k AS (SELECT count(*) AS k FROM everyone)
        SELECT avg(((s / n - n) / (k.k - 1) - 1) / (n - 1)) FROM per, k WHERE n >= 2 AND k.k > 1"""
    ).fetchone()[0]
    if rho is None:  # nobody with two events: nothing to tell a member's rhythm by
        return MAX_CONCENTRATION
    return float(min(1.0 / max(rho, 1e-6) - 1.0, MAX_CONCENTRATION)) if rho < 1 else 0.0


def _register_catalogue(con: duckdb.DuckDBPyConnection, dataset: Dataset, source: ItemSource, *columns: str) -> None:
    """The source's items and those of their attributes the dataset has, as `<matrix>_catalogue` (item_id, ...):
    the catalogue as recommenders read it (the last row of an item's id)."""
    items = catalogue(dataset, source)
    kept = items[[c for c in columns if c in items]].reset_index()
    for column in columns:
        if column not in kept:
            kept[column] = None
    con.register(f"{source.matrix}_catalogue", kept)


def _top_table(
    con: duckdb.DuckDBPyConnection, name: str, weighted: str, field: str, n: int, shares: bool = True
) -> list[str]:
    """Makes table `name`: member_id, the member's top n choices (`field`_1..n, or `field` alone where n is 1) and
    their shares of the member's weight (`..._share`), from (member_id, choice, w) rows; ties go to the first
    choice by name, so the answer is the same on every run. Returns the columns it holds."""
    named = [field] if n == 1 else [f"{field}_{r}" for r in range(1, n + 1)]
    columns = []
    for r, column in enumerate(named, start=1):
        columns.append(f"max(choice) FILTER (WHERE r = {r}) AS {column}")
        if shares:
            columns.append(f"max(share) FILTER (WHERE r = {r}) AS {column}_share")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        WITH ranked AS (
            SELECT member_id, CAST(choice AS VARCHAR) AS choice, w / sum(w) OVER (PARTITION BY member_id) AS share,
            row_number() OVER (PARTITION BY member_id ORDER BY w DESC, CAST(choice AS VARCHAR)) AS r
            FROM ({weighted}) QUALIFY r <= {n})
        SELECT member_id, {", ".join(columns)} FROM ranked GROUP BY member_id"""
    )
    return [*named, *([f"{c}_share" for c in named] if shares else [])]


def _contacts(con: duckdb.DuckDBPyConnection, dataset: Dataset, cutoff: str) -> list[str]:
    """Makes table `contacts`: each member's last three contacts before the cutoff (when, by which channel, what)
    and how many they were sent in the 30 days before it."""
    shown = {"ts": "strftime(ts, '%Y-%m-%dT%H:%M:%S')", "channel": "channel", "action": "action"}
    last = [
        f"max({shown[part]}) FILTER (WHERE r = {i}) AS last_contact_{i}_{part}"
        for i in range(1, TOP + 1)
        for part in CONTACT_PARTS
    ]
    con.execute(
        f"""CREATE TEMP TABLE contacts AS
        WITH sent AS (SELECT member_id, ts, channel, action FROM read_parquet('{dataset.table_path("contacts")}')
            WHERE ts < {cutoff}),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY member_id ORDER BY ts DESC, channel, action) AS r FROM sent)
        SELECT member_id, {", ".join(last)},
            count(*) FILTER (WHERE ts >= {cutoff} - INTERVAL 30 DAY) AS contacts_30d
        FROM ranked GROUP BY member_id"""
    )
    return [*(f"last_contact_{i}_{part}" for i in range(1, TOP + 1) for part in CONTACT_PARTS), "contacts_30d"]


def _discounts(con: duckdb.DuckDBPyConnection, settings: ProfileSettings) -> list[str]:
    """Makes table `discounts`: per member with orders, the share of their spend at list price that was taken off
    by a discount (money), the share of their orders with a discounted line (how their buying follows promotions),
    and the price sensitivity: the mean of both, each shrunk toward the population's pooled share by
    `prior_orders` orders of evidence. A member without orders is given the population's (the join's default)."""
    con.execute(
        """CREATE TEMP TABLE per_member AS SELECT member_id,
        sum(CASE WHEN coalesce(discount, 0) > 0 THEN amount + discount ELSE 0 END) AS discounted,
        sum(amount + coalesce(discount, 0)) AS listed,
        count(DISTINCT CASE WHEN coalesce(discount, 0) > 0 THEN visit END) AS discounted_orders,
        count(DISTINCT visit) AS orders
        FROM o GROUP BY member_id"""
    )
    money, orders = con.execute(
        """SELECT coalesce(sum(discounted) / nullif(sum(listed), 0), 0),
        coalesce(sum(discounted_orders) / nullif(sum(orders), 0), 0) FROM per_member"""
    ).fetchone()
    k = float(settings.prior_orders)
    con.execute(
        f"""CREATE TEMP TABLE discounts AS SELECT m.member_id,
        p.discounted / nullif(p.listed, 0) AS discounted_share,
        p.discounted_orders / nullif(p.orders, 0) AS discounted_order_share,
        coalesce(least(greatest((
            (coalesce(p.orders, 0) * coalesce(p.discounted / nullif(p.listed, 0), {money}) + {k} * {money})
                / nullif(coalesce(p.orders, 0) + {k}, 0)
            + (coalesce(p.discounted_orders, 0) + {k} * {orders}) / nullif(coalesce(p.orders, 0) + {k}, 0)
        ) / 2, 0), 1), {(money + orders) / 2}) AS price_sensitivity,
        coalesce(p.orders, 0) AS priced_orders
        FROM members m LEFT JOIN per_member p USING (member_id)"""
    )
    return ["discounted_share", "discounted_order_share", "price_sensitivity", "priced_orders"]
