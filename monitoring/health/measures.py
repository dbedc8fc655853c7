"""Per-member measures of one window, the terms health formulas are written in (configs/health.yaml).

Each measure is a count or sum per member over the window [start, end), computed with DuckDB straight from the
dataset's Parquet tables (the event tables never come into pandas whole). A measure names the tables it reads;
when one is missing or empty the measure is not computed and the indicators that use it say "no data".
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


def _m(name: str, needs: tuple[str, ...], doc: str) -> Measure:
    return Measure(name, needs, doc)


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        _m("members", (), "1 for a member who had joined by the window's end (members table, else first order)"),
        _m("active", ("orders",), "1 when the member ordered or engaged (engagements count where imported)"),
        _m("previously_active", ("orders",), "1 when the member was active in the window before"),
        _m("retained", ("orders",), "1 when active in this window and the one before"),
        _m("buyers", ("orders",), "1 when the member ordered"),
        _m("orders", ("orders",), "distinct orders"),
        _m("spend", ("orders",), "spend on order lines (returns not deducted)"),
        _m("repeat_buyers", ("orders",), "1 when the member ordered and had ordered before the window"),
        _m("high_value", ("orders",), "1 when spend in the window is over high_value_monthly_spend"),
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
    )
}
GROUP_EVENTS = ("join_group", "leave_group")


def available_tables(dataset: Dataset) -> set[str]:
    return {t for t in dataset.tables() if dataset.row_count(t) > 0}


def member_measures(
    dataset: Dataset, end: date, days: int, high_value_spend: float, tables: set[str] | None = None
) -> pd.DataFrame:
    """One row per member who had joined by `end`: every measure whose tables are present, over [end - days,
    end). Columns of measures whose tables are missing are absent."""
    tables = available_tables(dataset) if tables is None else tables
    con = duckdb.connect()
    for table in tables:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{dataset.table_path(table)}')")
    window = {"start": _ts(end - timedelta(days=days)), "end": _ts(end), "before": _ts(end - timedelta(days=2 * days))}
    params = {**window, "high": high_value_spend}
    queries = [_members_sql(tables)]
    queries += [sql for needs, sql in _QUERIES if set(needs) <= tables]
    parts = [_run(con, sql, params) for sql in queries]
    con.close()
    frame = parts[0]
    out = frame.join(parts[1:], how="left") if len(parts) > 1 else frame
    out = out.fillna(0.0)
    if "orders" in tables:
        engaged = out.get("engaged", 0.0)
        engaged_before = out.get("engaged_before", 0.0)
        out["active"] = ((out["buyers"] > 0) | (engaged > 0)).astype(float)
        out["previously_active"] = ((out["bought_before_window"] > 0) | (engaged_before > 0)).astype(float)
        out["retained"] = out["active"] * out["previously_active"]
    if {"engagements", "orders"} <= tables:
        out["readers_who_ordered"] = out["readers"] * out["buyers"]
    return out.drop(columns=[c for c in ("engaged", "engaged_before", "bought_before_window") if c in out])


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
    SELECT member_id, arg_max(arm, ts) AS arm, max(ts) AS ts FROM exposures
    WHERE ts >= $end - INTERVAL 120 DAY AND ts < $end - INTERVAL 30 DAY GROUP BY member_id
), spent AS (
    SELECT e.member_id, e.arm, coalesce(sum(o.amount), 0) AS spend
    FROM exposed e LEFT JOIN orders o
      ON o.member_id = e.member_id AND o.ts >= e.ts AND o.ts < e.ts + INTERVAL 30 DAY
         AND NOT coalesce(o.is_return, false) AND o.amount > 0
    GROUP BY e.member_id, e.arm
)
SELECT member_id,
       CASE WHEN lower(arm) <> 'control' THEN 1.0 ELSE 0.0 END AS pushed,
       CASE WHEN lower(arm) <> 'control' THEN spend ELSE 0.0 END AS pushed_spend,
       CASE WHEN lower(arm) = 'control' THEN 1.0 ELSE 0.0 END AS held_out,
       CASE WHEN lower(arm) = 'control' THEN spend ELSE 0.0 END AS held_out_spend
FROM spent
"""


_QUERIES = (
    (("orders",), _ORDERS_SQL),
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
