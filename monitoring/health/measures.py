"""Per-member measures of one window, the terms health formulas are written in (configs/health.yaml).

Each measure is a count or sum per member over the window [start, end), computed with DuckDB straight from the
dataset's Parquet tables (the event tables never come into pandas whole). A measure names the tables it reads
(and `orders.community_channel` where it needs orders on one of the community's own channels); when one is
missing or empty the measure is not computed and the indicators that use it say "no data".

A breakdown by an event's attribute (`--by channel`, `--by content_type`) computes the measures again on the
events of each value only (`EventSplit`): every member stays in the denominator, and only the measures that
read those events are split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pandas as pd

from features.dataset.store import Dataset


@dataclass(frozen=True)
class Measure:
    name: str
    needs: tuple[str, ...]  # tables that must hold rows
    doc: str


COMMUNITY_CHANNEL = ("orders", "orders.community_channel")


def _m(name: str, needs: tuple[str, ...], doc: str) -> Measure:
    return Measure(name, needs, doc)


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        _m("members", (), "1 for a member who had joined by the window's end (members table, else first order)"),
        _m("active", ("orders",), "1 when the member ordered or engaged (engagements count where imported)"),
        _m("active_days", ("orders",), "days on which the member ordered or engaged"),
        _m("previously_active", ("orders",), "1 when the member was active in the window before"),
        _m("retained", ("orders",), "1 when active in this window and the one before"),
        _m("buyers", ("orders",), "1 when the member ordered"),
        _m("orders", ("orders",), "distinct orders"),
        _m("spend", ("orders",), "spend on order lines (returns not deducted)"),
        _m("repeat_buyers", ("orders",), "1 when the member ordered and had ordered before the window"),
        _m("high_value", ("orders",), "1 when spend in the window is over high_value_monthly_spend"),
        _m("community_channel_orders", COMMUNITY_CHANNEL, "orders on the community's own channels"),
        _m("community_channel_spend", COMMUNITY_CHANNEL, "spend on the community's own channels"),
        _m("other_channel_orders", COMMUNITY_CHANNEL, "orders on every other channel"),
        _m("other_channel_spend", COMMUNITY_CHANNEL, "spend on every other channel"),
        _m("interactions", ("engagements",), "engagements other than joining or leaving a group"),
        _m("readers", ("engagements",), "1 when the member read content"),
        _m("content_viewers", ("engagements",), "1 when the member viewed or read content"),
        _m("content_views", ("engagements",), "views and reads of content"),
        _m("content_reactions", ("engagements",), "likes, shares and comments"),
        _m("attendees", ("engagements",), "1 when the member attended an activity (event_attend)"),
        _m("readers_who_ordered", ("engagements", "orders"), "1 when the member read content and ordered"),
        _m("reviews", ("feedback",), "reviews written"),
        _m("positive_reviews", ("feedback",), "reviews rated 4 or 5"),
        _m("complaints", ("feedback",), "complaints written"),
        _m("disputes", ("feedback",), "disputes opened"),
        _m("responded", ("feedback",), "complaints and disputes answered by the window's end"),
        _m("response_hours", ("feedback",), "hours to the first answer, summed over those answered"),
        _m("resolved", ("feedback",), "complaints and disputes resolved by the window's end"),
        _m("responses", ("surveys",), "survey answers"),
        _m("promoters", ("surveys",), "survey answers of 9 or 10"),
        _m("detractors", ("surveys",), "survey answers of 0 to 6"),
        _m("pushed", ("exposures", "orders"), "1 when pushed in a campaign (any arm but control) 30-120 days back"),
        _m("pushed_spend", ("exposures", "orders"), "a pushed member's spend in the 30 days after the push"),
        _m("held_out", ("exposures", "orders"), "1 when held out of a campaign (control) 30-120 days back"),
        _m("held_out_spend", ("exposures", "orders"), "a held-out member's spend in the 30 days after assignment"),
        _m("push_cost", ("exposures", "orders"), "a pushed member's cost: their campaign's declared cost per push"),
    )
}
GROUP_EVENTS = ("join_group", "leave_group")


@dataclass(frozen=True)
class EventSplit:
    """A breakdown by an attribute of events, not of members: the measures computed on each value's events."""

    name: str
    table: str  # the events split
    needs: tuple[str, ...]  # the tables (and virtual needs) the split reads
    measures: frozenset[str]  # the measures that read only those events (and every member)
    view: str  # the split table's view for one value ($value)
    values_sql: str


EVENT_SPLITS: dict[str, EventSplit] = {
    s.name: s
    for s in (
        EventSplit(
            "channel",
            "orders",
            ("orders.channel",),
            frozenset({"members", "buyers", "orders", "spend", "repeat_buyers", "high_value"}),
            "SELECT * FROM read_parquet('{orders}') WHERE channel = $value",
            "SELECT DISTINCT channel FROM read_parquet('{orders}') WHERE channel IS NOT NULL ORDER BY 1",
        ),
        EventSplit(
            "content_type",
            "engagements",
            ("engagements", "contents"),
            frozenset(
                {"members", "readers", "content_viewers", "content_views", "content_reactions", "readers_who_ordered"}
            ),
            "SELECT e.* FROM read_parquet('{engagements}') e JOIN read_parquet('{contents}') c USING (content_id) "
            "WHERE c.content_type = $value",
            "SELECT DISTINCT content_type FROM read_parquet('{contents}') WHERE content_type IS NOT NULL ORDER BY 1",
        ),
    )
}


@dataclass(frozen=True)
class Scope:
    """What the measures read: the tables (and virtual needs) present, the community's channels, each campaign's
    cost per push, and optionally one value of an event split."""

    tables: frozenset[str]
    community_channels: tuple[str, ...] = ("community_group",)
    split: EventSplit | None = None
    value: str | None = None
    push_costs: tuple[tuple[str, float], ...] = ()  # (campaign_id, cost per member pushed) declared
    default_push_cost: float = 0.05


def available_tables(dataset: Dataset, community_channels: tuple[str, ...] = ()) -> set[str]:
    """The tables holding rows, and the virtual needs the data meets: `orders.channel` (orders say their channel),
    `orders.community_channel` (some order is on one of `community_channels`)."""
    tables = {t for t in dataset.tables() if dataset.row_count(t) > 0}
    seen = order_channels(dataset) if "orders" in tables else []
    if seen:
        tables.add("orders.channel")
    if set(seen) & set(community_channels):
        tables.add("orders.community_channel")
    return tables


def first_event(dataset: Dataset, table: str) -> pd.Timestamp | None:
    """The table's earliest `ts` (DuckDB reads that one column)."""
    con = duckdb.connect()
    row = con.execute(f"SELECT min(ts) FROM read_parquet('{dataset.table_path(table)}')").fetchone()
    con.close()
    return None if row is None or row[0] is None else pd.Timestamp(row[0])


def order_channels(dataset: Dataset) -> list[str]:
    """The channels orders were placed on (for the message that says why a community channel has no data)."""
    if "channel" not in dataset.columns("orders"):
        return []
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT DISTINCT channel FROM read_parquet('{dataset.table_path('orders')}') WHERE channel IS NOT NULL "
        "ORDER BY 1"
    ).fetchall()
    con.close()
    return [str(r[0]) for r in rows]


def split_values(dataset: Dataset, split: EventSplit) -> list[str]:
    con = duckdb.connect()
    rows = con.execute(split.values_sql.format(**_paths(dataset))).fetchall()
    con.close()
    return [str(r[0]) for r in rows]


def _paths(dataset: Dataset) -> dict[str, str]:
    return {t: str(dataset.table_path(t)) for t in dataset.tables()}


def member_measures(
    dataset: Dataset,
    end: date,
    days: int,
    high_value_spend: float,
    tables: set[str] | None = None,
    scope: Scope | None = None,
    only: set[str] | frozenset[str] | None = None,
) -> pd.DataFrame:
    """One row per member who had joined by `end`: every measure whose tables are present (or those of `only`
    and whatever their queries give besides), over [end - days, end). Columns of measures whose tables are
    missing are absent. With a split value in `scope`, the split's table holds only that value's events."""
    tables = available_tables(dataset) if tables is None else tables
    wanted = None if only is None else _tables_for(only)
    scope = scope or Scope(frozenset(tables))
    con = duckdb.connect()
    for table in (t for t in tables if "." not in t):
        source = f"SELECT * FROM read_parquet('{dataset.table_path(table)}')"
        if scope.split is not None and table == scope.split.table:
            source = scope.split.view.format(**_paths(dataset)).replace("$value", _literal(scope.value or ""))
        con.execute(f"CREATE VIEW {table} AS {source}")
    window = {"start": _ts(end - timedelta(days=days)), "end": _ts(end), "before": _ts(end - timedelta(days=2 * days))}
    params = {
        **window,
        "high": high_value_spend,
        "channels": list(scope.community_channels),
        "default_cost": scope.default_push_cost,
    }
    con.execute(f"CREATE VIEW push_costs AS {_costs_sql(scope.push_costs)}")
    queries = [_members_sql(tables)]
    queries += [sql for needs, sql in _QUERIES if set(needs) <= tables and (wanted is None or set(needs) <= wanted)]
    if "orders" in tables and (only is None or "active_days" in only):
        queries.append(_ACTIVE_DAYS_BOTH if "engagements" in tables else _ACTIVE_DAYS_ORDERS)
    parts = [_run(con, sql, params) for sql in queries]
    con.close()
    frame = parts[0]
    out = frame.join(parts[1:], how="left") if len(parts) > 1 else frame
    out = out.fillna(0.0)
    if "buyers" in out:  # the orders' query ran
        engaged = out.get("engaged", 0.0)
        engaged_before = out.get("engaged_before", 0.0)
        out["active"] = ((out["buyers"] > 0) | (engaged > 0)).astype(float)
        out["previously_active"] = ((out["bought_before_window"] > 0) | (engaged_before > 0)).astype(float)
        out["retained"] = out["active"] * out["previously_active"]
    if {"readers", "buyers"} <= set(out.columns):
        out["readers_who_ordered"] = out["readers"] * out["buyers"]
    return out.drop(columns=[c for c in ("engaged", "engaged_before", "bought_before_window") if c in out])


# Measures derived from a member's activity read the engagements too, where they are imported.
_ACTIVITY = {"active", "previously_active", "retained", "active_days"}


def _tables_for(measures: set[str] | frozenset[str]) -> set[str]:
    """The tables (and virtual needs) the queries for these measures read."""
    tables = {t for m in measures for t in MEASURES[m].needs}
    return tables | ({"engagements"} if set(measures) & _ACTIVITY else set())


def all_spend(dataset: Dataset, end: date, days: int) -> float:
    """Spend on every order line in the window, guests' included: the brand's GMV, of which the community's
    channels hold a share."""
    con = duckdb.connect()
    value = con.execute(
        f"SELECT coalesce(sum(amount), 0) FROM read_parquet('{dataset.table_path('orders')}') "
        "WHERE NOT coalesce(is_return, false) AND amount > 0 AND ts >= $start AND ts < $end",
        {"start": _ts(end - timedelta(days=days)), "end": _ts(end)},
    ).fetchone()
    con.close()
    return float(value[0]) if value else 0.0


def _costs_sql(costs: tuple[tuple[str, float], ...]) -> str:
    """(campaign_id, cost) rows of the declared costs per push, as a query (none: an empty one)."""
    if not costs:
        return "SELECT CAST(NULL AS VARCHAR) AS campaign_id, CAST(NULL AS DOUBLE) AS cost WHERE false"
    rows = ", ".join(f"({_literal(campaign)}, {float(cost)!r})" for campaign, cost in costs)
    return f"SELECT * FROM (VALUES {rows}) AS c(campaign_id, cost)"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pd.DataFrame:
    """The query with the parameters it names (DuckDB refuses any it does not), indexed by member."""
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return con.execute(sql, used).df().set_index("member_id")


def _ts(day: date) -> pd.Timestamp:
    return pd.Timestamp(day)


def _members_sql(tables: set[str]) -> str:
    if "members" in tables:
        return "SELECT member_id, 1.0 AS members FROM members WHERE joined_at IS NULL OR joined_at < $end"
    return (
        "SELECT member_id, 1.0 AS members FROM orders WHERE member_id IS NOT NULL GROUP BY member_id "
        "HAVING min(ts) < $end"
    )


_ORDERS_SQL = """
WITH lines AS (
    SELECT member_id, ts, amount, coalesce(order_id, CAST(ts AS VARCHAR)) AS order_key
    FROM orders
    WHERE member_id IS NOT NULL AND NOT coalesce(is_return, false) AND amount > 0 AND ts < $end
)
SELECT member_id,
       CAST(count(DISTINCT order_key) FILTER (WHERE ts >= $start) AS DOUBLE) AS orders,
       coalesce(sum(amount) FILTER (WHERE ts >= $start), 0) AS spend,
       CASE WHEN count(*) FILTER (WHERE ts >= $start) > 0 THEN 1.0 ELSE 0.0 END AS buyers,
       CASE WHEN count(*) FILTER (WHERE ts >= $start) > 0 AND count(*) FILTER (WHERE ts < $start) > 0
            THEN 1.0 ELSE 0.0 END AS repeat_buyers,
       CASE WHEN coalesce(sum(amount) FILTER (WHERE ts >= $start), 0) > $high THEN 1.0 ELSE 0.0 END AS high_value,
       CASE WHEN count(*) FILTER (WHERE ts >= $before AND ts < $start) > 0 THEN 1.0 ELSE 0.0 END
           AS bought_before_window
FROM lines GROUP BY member_id
"""

_ENGAGEMENTS_SQL = f"""
SELECT member_id,
       CAST(count(*) FILTER (WHERE ts >= $start AND action NOT IN {GROUP_EVENTS}) AS DOUBLE) AS interactions,
       CASE WHEN count(*) FILTER (WHERE ts >= $start AND action NOT IN {GROUP_EVENTS}) > 0 THEN 1.0 ELSE 0.0 END
           AS engaged,
       CASE WHEN count(*) FILTER (WHERE ts < $start AND action NOT IN {GROUP_EVENTS}) > 0 THEN 1.0 ELSE 0.0 END
           AS engaged_before,
       CASE WHEN count(*) FILTER (WHERE ts >= $start AND action = 'read') > 0 THEN 1.0 ELSE 0.0 END AS readers,
       CASE WHEN count(*) FILTER (WHERE ts >= $start AND action IN ('view', 'read')) > 0 THEN 1.0 ELSE 0.0 END
           AS content_viewers,
       CAST(count(*) FILTER (WHERE ts >= $start AND action IN ('view', 'read')) AS DOUBLE) AS content_views,
       CAST(count(*) FILTER (WHERE ts >= $start AND action IN ('like', 'share', 'comment')) AS DOUBLE)
           AS content_reactions,
       CASE WHEN count(*) FILTER (WHERE ts >= $start AND action = 'event_attend') > 0 THEN 1.0 ELSE 0.0 END
           AS attendees
FROM engagements WHERE ts >= $before AND ts < $end GROUP BY member_id
"""

# Days a member was active: an order or an engagement (not joining or leaving a group) on the day.
_ACTIVE_DAYS_ORDERS = """
SELECT member_id, CAST(count(DISTINCT CAST(ts AS DATE)) AS DOUBLE) AS active_days
FROM orders WHERE member_id IS NOT NULL AND ts >= $start AND ts < $end GROUP BY member_id
"""
_ACTIVE_DAYS_BOTH = f"""
SELECT member_id, CAST(count(DISTINCT day) AS DOUBLE) AS active_days FROM (
    SELECT member_id, CAST(ts AS DATE) AS day FROM orders
    WHERE member_id IS NOT NULL AND ts >= $start AND ts < $end
    UNION ALL
    SELECT member_id, CAST(ts AS DATE) AS day FROM engagements
    WHERE ts >= $start AND ts < $end AND action NOT IN {GROUP_EVENTS}
) GROUP BY member_id
"""

_CHANNELS_SQL = """
WITH lines AS (
    SELECT member_id, amount, coalesce(order_id, CAST(ts AS VARCHAR)) AS order_key,
           list_contains($channels, channel) AS own
    FROM orders
    WHERE member_id IS NOT NULL AND NOT coalesce(is_return, false) AND amount > 0 AND ts >= $start AND ts < $end
          AND channel IS NOT NULL
)
SELECT member_id,
       CAST(count(DISTINCT order_key) FILTER (WHERE own) AS DOUBLE) AS community_channel_orders,
       coalesce(sum(amount) FILTER (WHERE own), 0) AS community_channel_spend,
       CAST(count(DISTINCT order_key) FILTER (WHERE NOT own) AS DOUBLE) AS other_channel_orders,
       coalesce(sum(amount) FILTER (WHERE NOT own), 0) AS other_channel_spend
FROM lines GROUP BY member_id
"""

_FEEDBACK_SQL = """
SELECT member_id,
       CAST(count(*) FILTER (WHERE kind = 'review') AS DOUBLE) AS reviews,
       CAST(count(*) FILTER (WHERE kind = 'review' AND rating >= 4) AS DOUBLE) AS positive_reviews,
       CAST(count(*) FILTER (WHERE kind = 'complaint') AS DOUBLE) AS complaints,
       CAST(count(*) FILTER (WHERE kind = 'dispute') AS DOUBLE) AS disputes,
       CAST(count(*) FILTER (WHERE kind <> 'review' AND responded_at < $end) AS DOUBLE) AS responded,
       coalesce(sum(epoch(responded_at - ts) / 3600.0) FILTER (WHERE kind <> 'review' AND responded_at < $end), 0)
           AS response_hours,
       CAST(count(*) FILTER (WHERE kind <> 'review' AND resolved_at < $end) AS DOUBLE) AS resolved
FROM feedback WHERE ts >= $start AND ts < $end GROUP BY member_id
"""

_SURVEYS_SQL = """
SELECT member_id,
       CAST(count(*) AS DOUBLE) AS responses,
       CAST(count(*) FILTER (WHERE score >= 9) AS DOUBLE) AS promoters,
       CAST(count(*) FILTER (WHERE score <= 6) AS DOUBLE) AS detractors
FROM surveys WHERE ts >= $start AND ts < $end GROUP BY member_id
"""

# A member's latest exposure 30-120 days before the window's end, and their spend in the 30 days after it: the
# campaign's full effect window has passed, so the figure does not move as its days come in.
_CAMPAIGN_SQL = """
WITH exposed AS (
    SELECT member_id, arg_max(arm, ts) AS arm, arg_max(campaign_id, ts) AS campaign_id, max(ts) AS ts
    FROM exposures
    WHERE ts >= $end - INTERVAL 120 DAY AND ts < $end - INTERVAL 30 DAY GROUP BY member_id
), spent AS (
    SELECT e.member_id, e.arm, e.campaign_id, coalesce(sum(o.amount), 0) AS spend
    FROM exposed e LEFT JOIN orders o
      ON o.member_id = e.member_id AND o.ts >= e.ts AND o.ts < e.ts + INTERVAL 30 DAY
         AND NOT coalesce(o.is_return, false) AND o.amount > 0
    GROUP BY e.member_id, e.arm, e.campaign_id
)
SELECT member_id,
       CASE WHEN lower(arm) <> 'control' THEN 1.0 ELSE 0.0 END AS pushed,
       CASE WHEN lower(arm) <> 'control' THEN spend ELSE 0.0 END AS pushed_spend,
       CASE WHEN lower(arm) = 'control' THEN 1.0 ELSE 0.0 END AS held_out,
       CASE WHEN lower(arm) = 'control' THEN spend ELSE 0.0 END AS held_out_spend,
       CASE WHEN lower(arm) <> 'control' THEN coalesce(c.cost, $default_cost) ELSE 0.0 END AS push_cost
FROM spent LEFT JOIN push_costs c USING (campaign_id)
"""


_QUERIES = (
    (("orders",), _ORDERS_SQL),
    (("orders", "orders.community_channel"), _CHANNELS_SQL),
    (("engagements",), _ENGAGEMENTS_SQL),
    (("feedback",), _FEEDBACK_SQL),
    (("surveys",), _SURVEYS_SQL),
    (("exposures", "orders"), _CAMPAIGN_SQL),
)


def group_memberships(dataset: Dataset, end: date) -> pd.DataFrame:
    """(member_id, segment): the groups a member belongs to at `end`: any action in the group, unless their
    latest event there is leaving it."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW engagements AS SELECT * FROM read_parquet('{dataset.table_path('engagements')}')")
    frame = con.execute(
        """
        SELECT member_id, group_id AS segment FROM engagements
        WHERE group_id IS NOT NULL AND ts < $end
        GROUP BY member_id, group_id
        HAVING arg_max(action, ts) <> 'leave_group'
        """,
        {"end": _ts(end)},
    ).df()
    con.close()
    return frame


def group_type_memberships(dataset: Dataset, end: date) -> pd.DataFrame:
    """(member_id, segment): the types of the groups a member belongs to at `end` (a member in an interest group
    and a service group counts in both; in two interest groups, once)."""
    groups = dataset.read("groups", ["group_id", "group_type"]).dropna()
    joined = group_memberships(dataset, end).merge(groups, left_on="segment", right_on="group_id")
    frame = joined[["member_id", "group_type"]].drop_duplicates().rename(columns={"group_type": "segment"})
    return frame.astype(str).reset_index(drop=True)
