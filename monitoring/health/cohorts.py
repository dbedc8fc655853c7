"""Members over time: monthly retention as cohort curves (members who joined in a month, the share of them active
in each month after), and members' moves between tiers from one month to the next (the plan's tier migration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import pandas as pd

from features.dataset.store import Dataset
from monitoring.health.measures import GROUP_EVENTS


@dataclass(frozen=True)
class CohortCurves:
    """One row per (cohort, month after joining): `active` of the cohort's `members` were active in that calendar
    month. Only whole months before `as_of` count; cohorts start at the community's start (a member who joined
    before the data began has months nobody saw)."""

    as_of: date
    frame: pd.DataFrame  # cohort (YYYY-MM), months_after, month (YYYY-MM), members, active, share

    def table(self) -> pd.DataFrame:
        """Cohorts down, months after joining across: the classic triangle."""
        if self.frame.empty:
            return pd.DataFrame()
        wide = self.frame.pivot(index="cohort", columns="months_after", values="share")
        wide.insert(0, "members", self.frame.groupby("cohort")["members"].first())
        return wide

    def as_json(self) -> list[dict[str, object]]:
        return [
            {
                "cohort": cohort,
                "members": int(group["members"].iloc[0]),
                "share_active": group["share"].round(6).tolist(),
            }
            for cohort, group in self.frame.groupby("cohort", sort=True)
        ]


def cohort_curves(dataset: Dataset, as_of: date, start: date) -> CohortCurves:
    """Members by the month they joined (`members.joined_at`, else their first order or engagement), from the
    community's start month, and the share of each cohort active (an order, or an engagement other than joining
    or leaving a group) in each whole calendar month up to `as_of`."""
    tables = set(dataset.tables())
    first_month = pd.Timestamp(start).to_period("M").to_timestamp()
    last_month = pd.Timestamp(as_of).to_period("M").to_timestamp()  # exclusive: the month as_of falls in is not whole
    con = duckdb.connect()
    activity = [
        f"SELECT member_id, ts FROM read_parquet('{dataset.table_path('orders')}') "
        "WHERE member_id IS NOT NULL AND NOT coalesce(is_return, false) AND amount > 0"
    ]
    if "engagements" in tables:
        activity.append(
            f"SELECT member_id, ts FROM read_parquet('{dataset.table_path('engagements')}') "
            f"WHERE action NOT IN {GROUP_EVENTS}"
        )
    first_seen = "SELECT member_id, min(ts) AS joined FROM activity GROUP BY member_id"
    if "members" in tables:
        first_seen = (
            f"SELECT coalesce(m.member_id, a.member_id) AS member_id, coalesce(m.joined_at, a.joined) AS joined "
            f"FROM read_parquet('{dataset.table_path('members')}') m "
            f"FULL JOIN ({first_seen}) a USING (member_id)"
        )
    frame = con.execute(
        f"""
        WITH activity AS ({" UNION ALL ".join(activity)}),
        joined AS (
            SELECT member_id, date_trunc('month', joined) AS cohort FROM ({first_seen})
            WHERE joined IS NOT NULL AND joined >= $first AND joined < $last
        ),
        sizes AS (SELECT cohort, count(*) AS members FROM joined GROUP BY cohort),
        months AS (
            SELECT DISTINCT member_id, date_trunc('month', ts) AS month FROM activity WHERE ts >= $first AND ts < $last
        ),
        grid AS (
            SELECT s.cohort, s.members, CAST(m.month AS TIMESTAMP) AS month
            FROM sizes s, generate_series($first, $last - INTERVAL 1 MONTH, INTERVAL 1 MONTH) AS m(month)
            WHERE m.month >= s.cohort
        )
        SELECT strftime(g.cohort, '%Y-%m') AS cohort,
               CAST(date_diff('month', g.cohort, g.month) AS INTEGER) AS months_after,
               strftime(g.month, '%Y-%m') AS month, g.members,
               count(a.member_id) AS active
        FROM grid g
        LEFT JOIN (SELECT j.cohort, x.month, x.member_id FROM joined j JOIN months x USING (member_id)
                   WHERE x.month >= j.cohort) a
          ON a.cohort = g.cohort AND a.month = g.month
        GROUP BY ALL ORDER BY 1, 2
        """,
        {"first": first_month.to_pydatetime(), "last": last_month.to_pydatetime()},
    ).df()
    con.close()
    frame["members"] = frame["members"].astype(int)
    frame["active"] = frame["active"].astype(int)
    frame["share"] = frame["active"] / frame["members"]
    return CohortCurves(as_of, frame)


NOT_TIERED, GONE = "(not tiered)", "(gone)"


@dataclass(frozen=True)
class TierMoves:
    """Members' tiers a month apart: counts from each tier (rows) to each (columns), and the moves ops ask about."""

    before: date
    after: date
    counts: pd.DataFrame

    def moved(self, source: str, target: str) -> int:
        if source not in self.counts.index or target not in self.counts.columns:
            return 0
        return int(self.counts.loc[source, target])

    def as_json(self) -> dict[str, object]:
        return {
            "from": str(self.before),
            "to": str(self.after),
            "counts": {str(k): {str(c): int(n) for c, n in row.items()} for k, row in self.counts.iterrows()},
        }


def tier_moves(before: pd.DataFrame, after: pd.DataFrame, before_day: date, after_day: date) -> TierMoves:
    """From two (member_id, segment) tierings: how many of each tier's members are in each tier a month later
    (`(not tiered)` for members scored after but not before, `(gone)` for the reverse: the tier `new` is the
    tiers' own, for members too new to judge)."""
    joined = before.rename(columns={"segment": "from"}).merge(
        after.rename(columns={"segment": "to"}), on="member_id", how="outer"
    )
    joined["from"] = joined["from"].fillna(NOT_TIERED)
    joined["to"] = joined["to"].fillna(GONE)
    counts = pd.crosstab(joined["from"], joined["to"])
    return TierMoves(before_day, after_day, counts)
