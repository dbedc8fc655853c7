"""What a member's history says about them as of T, for the member profile: favourite categories, topics and
content types, the preferred channel, the hours and weekdays they are active, and how much of their buying is
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
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features.dataset.store import Dataset

TOP = 3  # favourites kept per member: the top 3, with their shares
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ProfileSettings(BaseModel):
    """How the profile reads history (configs/segments.yaml `profile:`; these are the defaults)."""

    model_config = ConfigDict(extra="forbid")

    half_life_days: float = Field(
        180.0, gt=0, description="an event's weight in the favourites halves with every this many days of age"
    )
    prior_orders: float = Field(
        5.0, ge=0, description="price sensitivity: the population's share counts as this many orders of evidence"
    )
    prior_events: float = Field(
        10.0, ge=0, description="active hours and weekdays: the community's rhythm counts as this many events"
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
HISTORY_TEXT = [f"{r.field}_{i}" for r in FAVOURITES for i in range(1, TOP + 1)] + ["preferred_channel"]
HISTORY_NUMBERS = [
    *[f"{r.field}_{i}_share" for r in FAVOURITES for i in range(1, TOP + 1)],
    "preferred_channel_share",
    *[f"active_hour_{i}" for i in range(1, TOP + 1)],
    *[f"active_weekday_{i}" for i in range(1, TOP + 1)],
    "discounted_share",
    "discounted_order_share",
    "price_sensitivity",
    "priced_orders",
]


def columns_of(dataset: Dataset, table: str) -> set[str]:
    return set(pq.read_schema(dataset.table_path(table)).names) if dataset.has(table) else set()


def unknowable(dataset: Dataset) -> dict[str, str]:
    """The profile fields this dataset cannot tell, and why (the answer says so rather than leaving a gap). A
    column counts where it holds a value: canonical tables keep every column of the contract."""

    def told(table: str, column: str) -> bool:
        return column in columns_of(dataset, table) and bool(dataset.read(table, [column])[column].notna().any())

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
    return why


def member_history(
    dataset: Dataset, as_of: datetime, member_ids: pd.Series, settings: ProfileSettings | None = None
) -> pd.DataFrame:
    """One row per member of `member_ids` (in its order): HISTORY_TEXT and HISTORY_NUMBERS from events before
    `as_of`; empty (None / NaN) where the member has none or the dataset cannot tell (`unknowable`)."""
    settings = settings or ProfileSettings()
    missing = unknowable(dataset)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    members = pd.DataFrame({"member_id": member_ids.astype(str).to_numpy()})
    con.register("members", members)
    cutoff = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    age = f"date_diff('second', ts, {cutoff}) / 86400.0"
    weight = f"pow(0.5, {age} / {float(settings.half_life_days)})"
    out = members.copy()
    order_cols = columns_of(dataset, "orders")
    if order_cols:
        sale = "NOT coalesce(is_return, false)" if "is_return" in order_cols else "true"
        con.execute(
            f"""CREATE TEMP VIEW o AS SELECT * FROM read_parquet('{dataset.table_path("orders")}')
            WHERE ts < {cutoff} AND member_id IS NOT NULL AND {sale} AND amount > 0"""
        )
    eng_cols = columns_of(dataset, "engagements")
    if eng_cols:
        con.execute(
            f"""CREATE TEMP VIEW e AS SELECT * FROM read_parquet('{dataset.table_path("engagements")}')
            WHERE ts < {cutoff}"""
        )
    if "favourite_categories" not in missing:
        con.execute(_latest("products", "product_id", "category", dataset))
        spend = f"""SELECT o.member_id, p.category AS choice, sum(o.amount * {weight}) AS w
            FROM o JOIN products_latest p USING (product_id) WHERE p.category IS NOT NULL GROUP BY ALL"""
        out = _with_top(con, out, spend, "favourite_categories")
    for field, column in (("favourite_topics", "topic"), ("favourite_content_types", "content_type")):
        if field not in missing:
            con.execute(_latest("contents", "content_id", column, dataset))
            takes = f"""SELECT e.member_id, c.{column} AS choice, sum({weight}) AS w
                FROM e JOIN contents_latest_{column} c USING (content_id) WHERE c.{column} IS NOT NULL GROUP BY ALL"""
            out = _with_top(con, out, takes, field)
    if "preferred_channel" not in missing:
        per_channel = """SELECT member_id, channel AS choice, count(DISTINCT coalesce(order_id, CAST(ts AS VARCHAR)))
            AS w FROM o WHERE channel IS NOT NULL GROUP BY ALL"""
        top = _top(con, per_channel, 1).rename(
            columns={"choice_1": "preferred_channel", "share_1": "preferred_channel_share"}
        )
        out = out.merge(top, on="member_id", how="left")
    if "active_hours" not in missing:
        # An order counts once however many lines it has; every engagement counts.
        visits = "SELECT DISTINCT member_id, coalesce(order_id, CAST(ts AS VARCHAR)) AS visit, ts FROM o"
        times = " UNION ALL ".join(
            f"SELECT member_id, ts FROM {view}" for view, cols in ((f"({visits})", order_cols), ("e", eng_cols)) if cols
        )
        for expr, name in (("hour(ts)", "active_hour"), ("isodow(ts) - 1", "active_weekday")):
            top = _top(con, _with_rhythm(f"SELECT member_id, {expr} AS choice FROM ({times})", settings), TOP)
            top = top.rename(columns={f"choice_{i}": f"{name}_{i}" for i in range(1, TOP + 1)})
            top = top.drop(columns=[f"share_{i}" for i in range(1, TOP + 1)])
            out = out.merge(top, on="member_id", how="left")
    if "price_sensitivity" not in missing:
        out = out.merge(_discounts(con, settings), on="member_id", how="left")
    for column in HISTORY_TEXT:
        if column not in out:
            out[column] = None
    for column in HISTORY_NUMBERS:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float) if column in out else np.nan
    if "price_sensitivity" not in missing:  # members without priced orders carry the population's value
        prior = _prior(out)
        out["price_sensitivity"] = out["price_sensitivity"].fillna(prior)
        out["priced_orders"] = out["priced_orders"].fillna(0.0)
    con.close()
    return out[["member_id", *HISTORY_TEXT, *HISTORY_NUMBERS]]


def _with_rhythm(events: str, settings: ProfileSettings) -> str:
    """(member_id, choice, w) of every member with events and every hour (weekday): the member's own count plus
    the community's share of that choice worth `prior_events` events. A member's own most active hour says
    little after a handful of events (the benchmark: on the synthetic community, whose members keep no rhythm of
    their own, it predicts their next quarter worse than the community's); many events outweigh the prior."""
    return f"""WITH counted AS (SELECT member_id, choice, count(*) AS n FROM ({events}) GROUP BY ALL),
        everyone AS (SELECT choice, sum(n) / (SELECT sum(n) FROM counted) AS share FROM counted GROUP BY choice),
        grid AS (SELECT m.member_id, e.choice, e.share FROM (SELECT DISTINCT member_id FROM counted) m, everyone e)
        SELECT g.member_id, g.choice, coalesce(c.n, 0) + {float(settings.prior_events)} * g.share AS w
        FROM grid g LEFT JOIN counted c ON c.member_id = g.member_id AND c.choice = g.choice"""


def _latest(table: str, id_column: str, column: str, dataset: Dataset) -> str:
    """The attribute's value by item: the last row of an id, as the catalogue reads it."""
    name = f"{table}_latest" if table == "products" else f"{table}_latest_{column}"
    return f"""CREATE OR REPLACE TEMP VIEW {name} AS SELECT {id_column}, {column}
        FROM read_parquet('{dataset.table_path(table)}', file_row_number = true)
        QUALIFY row_number() OVER (PARTITION BY {id_column} ORDER BY file_row_number DESC) = 1"""


def _top(con: duckdb.DuckDBPyConnection, weighted: str, n: int) -> pd.DataFrame:
    """member_id, choice_1..n and share_1..n (of the member's total weight) from (member_id, choice, w) rows; ties
    go to the first choice by name, so the answer is the same on every run."""
    ranked = con.execute(
        f"""SELECT member_id, CAST(choice AS VARCHAR) AS choice, w / sum(w) OVER (PARTITION BY member_id) AS share,
        row_number() OVER (PARTITION BY member_id ORDER BY w DESC, CAST(choice AS VARCHAR)) AS r
        FROM ({weighted}) QUALIFY r <= {n}"""
    ).df()
    wide = ranked.pivot(index="member_id", columns="r", values=["choice", "share"])
    wide.columns = [f"{what}_{r}" for what, r in wide.columns]
    for i in range(1, n + 1):
        for what in ("choice", "share"):
            if f"{what}_{i}" not in wide:
                wide[f"{what}_{i}"] = None
    return wide.reset_index()


def _with_top(con: duckdb.DuckDBPyConnection, out: pd.DataFrame, weighted: str, field: str) -> pd.DataFrame:
    top = _top(con, weighted, TOP)
    top = top.rename(
        columns={
            **{f"choice_{i}": f"{field}_{i}" for i in range(1, TOP + 1)},
            **{f"share_{i}": f"{field}_{i}_share" for i in range(1, TOP + 1)},
        }
    )
    return out.merge(top, on="member_id", how="left")


def _discounts(con: duckdb.DuckDBPyConnection, settings: ProfileSettings) -> pd.DataFrame:
    """Per member: the share of their spend at list price that was taken off by a discount (money), the share of
    their orders with a discounted line (how their buying follows promotions), and the price sensitivity: the
    mean of both, each shrunk toward the population's pooled share by `prior_orders` orders of evidence."""
    per_member = con.execute(
        """SELECT member_id, sum(CASE WHEN coalesce(discount, 0) > 0 THEN amount + discount ELSE 0 END) AS discounted,
        sum(amount + coalesce(discount, 0)) AS listed,
        count(DISTINCT CASE WHEN coalesce(discount, 0) > 0 THEN coalesce(order_id, CAST(ts AS VARCHAR)) END)
            AS discounted_orders,
        count(DISTINCT coalesce(order_id, CAST(ts AS VARCHAR))) AS orders
        FROM o GROUP BY member_id"""
    ).df()
    pooled_money = per_member["discounted"].sum() / max(per_member["listed"].sum(), 1e-12)
    pooled_orders = per_member["discounted_orders"].sum() / max(per_member["orders"].sum(), 1)
    n, k = per_member["orders"].astype(float), settings.prior_orders
    money = per_member["discounted"] / per_member["listed"].where(per_member["listed"] > 0)
    orders = per_member["discounted_orders"] / n
    shrunk_money = (n * money.fillna(pooled_money) + k * pooled_money) / (n + k)
    shrunk_orders = (n * orders + k * pooled_orders) / (n + k)
    return pd.DataFrame(
        {
            "member_id": per_member["member_id"],
            "discounted_share": money,
            "discounted_order_share": orders,
            "price_sensitivity": ((shrunk_money + shrunk_orders) / 2).clip(0, 1),
            "priced_orders": n,
            "_prior": (pooled_money + pooled_orders) / 2,
        }
    )


def _prior(out: pd.DataFrame) -> float:
    prior = out.pop("_prior").dropna()
    return float(prior.iloc[0]) if len(prior) else float("nan")
