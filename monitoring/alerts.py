"""Alerts calibrated on the dataset's own history: a figure alerts only when it moved more than it ever moved
between two calm dates of the same distance apart before the champion was trained.

A *profile* of a date holds what can break or shift: per input column the share of nulls; prices (each product's
list price, compared product by product: a price index, which seasonal promotions and the product mix barely move)
and the median line amount; each category's mix (orders' channels, engagements' actions, new members' persona, city
and acquisition channel, these against those who joined over the half-year before); event volumes; retention (the
share of the previous window's active members active again: a churn wave shows here, where seasonal volumes hide
it); the champions' mean predictions; and the member features. The change between two profiles is one number per
statistic (an absolute difference, the median log price ratio, how improbable the new category mix is under the
old one: -log10 of a chi-square test's p-value, a normalised Wasserstein distance).

Calibration takes `history_pairs` pairs of dates in the training history with the same gap as the check's (the
reference snapshot and the date checked), each pair a month earlier than the last, and sets each statistic's
threshold at `margin` times the largest change seen, at least a floor (FLOORS: a figure that never moved still
has noise). Features alert together: when the share of the champions' split gain on features past their thresholds
exceeds `feature_share` (drift in a feature the models do not use is not an alert). Every alert names the
statistic, its change and its threshold. experiments/bench_alerts.py measures false alarms and detections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.champions import Champions
from serving.models.kinds import Task
from serving.models.tiers import score_snapshot

WINDOW_DAYS = 30
# New members' mixes are compared with the members who joined over this many days before the earlier date: a
# month's joiners are few (63 in a 2,000-member community), so a longer baseline halves the test's noise.
BASELINE_DAYS = 180
# Null shares watched per table (the columns a feed can lose without breaking the contract's required columns).
NULLABLE = {
    "orders": ("order_id", "product_id", "quantity", "channel"),
    "engagements": ("content_id", "group_id"),
    "members": ("city", "age_band", "acquisition_channel", "persona"),
}
# An engagement names content or a group depending on its action: a column's null share is read among the rows
# that should fill it, so that a change in the mix of actions is not mistaken for a feed losing a column.
FILLED_FOR = {
    ("engagements", "content_id"): ("view", "read", "like", "share", "comment"),
    ("engagements", "group_id"): ("message", "checkin", "event_attend", "join_group", "leave_group"),
}
MIXES = {"orders": ("channel",), "engagements": ("action",), "members": ("persona", "city", "acquisition_channel")}
# The smallest threshold per kind of statistic: a figure that never moved in the history still has noise.
FLOORS = {
    "null": 0.02,
    "level": 0.05,
    "mix": 3.0,  # p < 0.001
    "volume": 0.1,
    "rate": 0.02,
    "prediction": 0.02,
    "feature": 0.05,
}
# A product's list price is read only where the window has this many of its lines.
PRICE_MIN_LINES = 3


@dataclass
class Profile:
    as_of: date
    scalars: dict[str, float]
    mixes: dict[str, pd.Series]  # counts per category in the window
    baselines: dict[str, pd.Series]  # new members' mixes over BASELINE_DAYS: what a later window is compared with
    prices: pd.Series  # each product's log list price (its highest unit price in the window)
    features: pd.DataFrame
    predictions: pd.DataFrame


@dataclass(frozen=True)
class Alert:
    kind: str  # null, level, mix, volume, prediction, feature
    statistic: str
    change: float
    threshold: float

    def message(self) -> str:
        what = {
            "null": "more empty values than ever",
            "level": "a level moved more than ever (units or prices?)",
            "mix": "a category mix changed more than ever (an outage, a new source of members?)",
            "rate": "retention moved more than ever (a churn wave?)",
            "volume": "event volume moved more than ever",
            "prediction": "the champions' mean prediction moved more than ever",
            "feature": "features the models rely on drifted more than ever",
        }[self.kind]
        return f"{self.kind}: {self.statistic} changed by {self.change:.3g} (threshold {self.threshold:.3g}): {what}"


@dataclass
class Calibration:
    thresholds: dict[str, float]
    pairs: list[tuple[date, date]] = field(default_factory=list)


def profile(dataset: Dataset, as_of: date, champions: Champions, horizon_days: int) -> Profile:
    """Everything the alerts compare, for the window of WINDOW_DAYS days before `as_of` and the snapshot at it."""
    start = pd.Timestamp(as_of - timedelta(days=WINDOW_DAYS))
    end = pd.Timestamp(as_of)
    scalars: dict[str, float] = {}
    mixes: dict[str, pd.Series] = {}
    prices = pd.Series(dtype=float)
    baselines: dict[str, pd.Series] = {}
    scalars.update(_retention(dataset, as_of))
    if dataset.has("members"):
        since = pd.Timestamp(as_of - timedelta(days=BASELINE_DAYS))
        joined = dataset.read("members", filters=[("joined_at", ">=", since), ("joined_at", "<", end)])
        for column in MIXES["members"]:
            if column in joined and joined[column].notna().any():
                baselines[f"mix:members.{column}"] = joined[column].astype(str).value_counts()
    for table, columns in NULLABLE.items():
        if not dataset.has(table):
            continue
        time_column = "joined_at" if table == "members" else "ts"
        rows = dataset.read(table, filters=[(time_column, ">=", start), (time_column, "<", end)])
        if table != "members":
            scalars[f"volume:{table}"] = float(np.log1p(len(rows)))
            scalars[f"volume:{table}.members"] = float(np.log1p(rows["member_id"].nunique()))
        for column in columns:
            expected = rows[rows["action"].isin(FILLED_FOR[table, column])] if (table, column) in FILLED_FOR else rows
            if column in expected and len(expected):
                scalars[f"null:{table}.{column}"] = float(expected[column].isna().mean())
        for column in MIXES.get(table, ()):
            if column in rows and rows[column].notna().any():
                mixes[f"mix:{table}.{column}"] = rows[column].astype(str).value_counts()
        if table == "orders" and len(rows):
            sold = rows[(rows["amount"] > 0) & ~rows["is_return"].fillna(False).astype(bool)]
            scalars["level:orders.amount"] = float(np.log(sold["amount"].median()))
            # The list price, not the mean: promotion days discount some lines (Double 11 moves a month's median
            # price as much as a 25% price rise), the highest unit price of a product is its undiscounted one.
            unit = np.log((sold["amount"] / sold["quantity"]).where(sold["quantity"] > 0))
            by_product = unit.groupby(sold["product_id"])
            prices = by_product.max()[by_product.count() >= PRICE_MIN_LINES].dropna()
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days))
    features = Snapshot(dataset, as_of).features()
    predictions = score_snapshot(features, champions)
    for champion in champions.of(Task.member):
        column = str(champion.kind.output)
        values = predictions[column].astype(float)
        scalars[f"prediction:{column}"] = float(values.mean() if values.max() <= 1 else np.log1p(values).mean())
    return Profile(as_of, scalars, mixes, baselines, prices, features, predictions)


def _retention(dataset: Dataset, as_of: date) -> dict[str, float]:
    """rate:retention, the share of members active (an order or an engagement) in the window before who are
    active again in this one."""
    start, before = pd.Timestamp(as_of - timedelta(days=WINDOW_DAYS)), pd.Timestamp(as_of - timedelta(2 * WINDOW_DAYS))
    now: set[str] = set()
    then: set[str] = set()
    for table in ("orders", "engagements"):
        if dataset.has(table):
            rows = dataset.read(table, ["member_id", "ts"], [("ts", ">=", before), ("ts", "<", pd.Timestamp(as_of))])
            rows = rows.dropna(subset=["member_id"])
            now |= set(rows.loc[rows["ts"] >= start, "member_id"])
            then |= set(rows.loc[rows["ts"] < start, "member_id"])
    return {"rate:retention": len(now & then) / len(then)} if then else {}


def changes(before: Profile, after: Profile) -> dict[str, float]:
    """One change per statistic present on both sides."""
    out = {k: abs(after.scalars[k] - v) for k, v in before.scalars.items() if k in after.scalars}
    for key, mix in before.mixes.items():
        if key in after.mixes:
            out[key] = _mix_surprise(before.baselines.get(key, mix), after.mixes[key])
    common = before.prices.index.intersection(after.prices.index)
    if len(common) >= 10:  # a price index over the products sold in both windows
        out["level:orders.price_index"] = abs(float((after.prices[common] - before.prices[common]).median()))
    for column in before.features.columns:
        if column == "member_id" or column not in after.features:
            continue
        out[f"feature:{column}"] = _feature_distance(before.features[column], after.features[column])
    return out


def _mix_surprise(before: pd.Series, after: pd.Series) -> float:
    """-log10 of the chi-square test's p-value that both windows draw from one category mix (capped at 300).
    A count-aware figure: a mix of 100 new members moves a lot by chance, one of 20,000 actions hardly at all, and
    the p-value knows the difference; the history still sets the threshold, since real mixes also move."""
    from scipy.stats import chi2_contingency

    counts = pd.concat([before, after], axis=1).fillna(0.0)
    counts = counts[counts.sum(axis=1) > 0]
    if len(counts) < 2 or (counts.sum(axis=0) == 0).any():
        return 0.0
    p_value = float(chi2_contingency(counts.to_numpy().T, correction=False).pvalue)
    return float(min(-np.log10(max(p_value, 1e-300)), 300.0))


def _feature_distance(before: pd.Series, after: pd.Series) -> float:
    """Wasserstein distance over the reference's standard deviation for numbers (Evidently's normed test),
    total variation distance for categories; 0 where a side is empty."""
    from scipy.stats import wasserstein_distance

    a, b = before.dropna(), after.dropna()
    if a.empty or b.empty:
        return 0.0 if a.empty and b.empty else 1.0
    if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
        scale = float(a.std()) or 1.0
        return float(wasserstein_distance(a.astype(float), b.astype(float)) / scale)
    mix = pd.concat([a.astype(str).value_counts(normalize=True), b.astype(str).value_counts(normalize=True)], axis=1)
    return float(0.5 * mix.fillna(0.0).diff(axis=1).iloc[:, 1].abs().sum())


def calibration_pairs(reference_as_of: date, checked: date, pairs: int) -> list[tuple[date, date]]:
    """Pairs of history dates with the check's gap, ending at the reference and each a month before the last."""
    gap = checked - reference_as_of
    return [
        (reference_as_of - gap - timedelta(days=30 * j), reference_as_of - timedelta(days=30 * j)) for j in range(pairs)
    ]


def calibrate(history: list[tuple[Profile, Profile]], margin: float) -> Calibration:
    """Each statistic's threshold: `margin` times its largest change over the history's pairs, at least its floor."""
    seen: dict[str, float] = {}
    for before, after in history:
        for key, value in changes(before, after).items():
            seen[key] = max(seen.get(key, 0.0), value)
    thresholds = {k: max(margin * v, FLOORS[k.split(":")[0]]) for k, v in seen.items()}
    return Calibration(thresholds, [(a.as_of, b.as_of) for a, b in history])


def feature_weights(champions: Champions) -> dict[str, float]:
    """Each feature's share of the member champions' split gain (equal weights where a champion has none)."""
    weights: dict[str, float] = {}
    for champion in champions.of(Task.member):
        gains = champion.model.summary().get("feature_importance") or {}
        total = sum(gains.values())
        for name, gain in gains.items():
            if total > 0:
                weights[name] = weights.get(name, 0.0) + gain / total
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()} if total > 0 else {}


def assess(
    reference: Profile,
    current: Profile,
    calibration: Calibration,
    weights: dict[str, float],
    feature_share: float,
) -> list[Alert]:
    """The alerts of the current profile against the reference, each statistic against its own threshold."""
    found = []
    drifted_weight, drifted = 0.0, []
    for key, change in changes(reference, current).items():
        threshold = calibration.thresholds.get(key)
        if threshold is None or change <= threshold:
            continue
        kind, name = key.split(":", 1)
        if kind == "feature":
            weight = weights.get(name, 0.0) if weights else 1.0 / max(len(reference.features.columns) - 1, 1)
            drifted_weight += weight
            drifted.append((name, change, threshold))
            continue
        found.append(Alert(kind, name, round(change, 4), round(threshold, 4)))
    if drifted and drifted_weight > feature_share:
        names = ", ".join(n for n, _, _ in sorted(drifted, key=lambda d: -weights.get(d[0], 0.0))[:8])
        found.append(
            Alert("feature", f"{drifted_weight:.0%} of the models' gain ({names})", drifted_weight, feature_share)
        )
    return found
