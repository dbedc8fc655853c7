"""The operators' member tiers (design.md §2) from predicted value and churn risk, with configurable shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.models.kinds import CHURN, VALUE, Task

if TYPE_CHECKING:
    from serving.models.champions import Champions

TIERS = ("high_value", "potential", "ordinary", "churn_risk", "new")
# A tier is cut from predicted churn and value: without both champions there is none.
TIERED_BY = (CHURN, VALUE)


def tiers_unavailable(champions: Champions) -> str | None:
    """Why members get no tier (which champions are missing, how to train them), or None when they do."""
    from serving.models.champions import untrained

    missing = champions.missing(list(TIERED_BY))
    if not missing:
        return None
    return f"tiers need the churn and value champions; missing: {untrained(champions.dataset, missing)}"


class TierSettings(BaseModel):
    """Shares of established members per tier (they must add up to 1), and who is too new to judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    high_value_share: float = Field(0.15, ge=0, le=1)
    potential_share: float = Field(0.30, ge=0, le=1)
    ordinary_share: float = Field(0.45, ge=0, le=1)
    churn_risk_share: float = Field(0.10, ge=0, le=1)
    new_member_days: int = Field(30, ge=0, description="members seen for fewer days, or who never bought, are new")

    @model_validator(mode="after")
    def _shares_add_up(self) -> TierSettings:
        total = self.high_value_share + self.potential_share + self.ordinary_share + self.churn_risk_share
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"tier shares add up to {total:.3f}, not 1")
        return self


@dataclass(frozen=True)
class TierInputs:
    """What a population's tiers are cut from: the churn and value champions' outputs and three of the members'
    features, one array each (NaN where a member has no value)."""

    churn_probability: np.ndarray
    expected_value: np.ndarray
    recent_spend: np.ndarray  # spend over the last 180 days: what a fading member puts at stake
    tenure_days: np.ndarray
    frequency: np.ndarray

    @classmethod
    def of(cls, outputs: Mapping[str, Any], features: pd.DataFrame) -> TierInputs:
        """From the champions' outputs by name and the members' features, rows in the same order."""
        return cls(
            np.asarray(outputs[CHURN.output], dtype=float),
            np.asarray(outputs[VALUE.output], dtype=float),
            *(features[f].to_numpy(dtype=float) for f in TIER_FEATURES),
        )

    @property
    def at_stake(self) -> np.ndarray:
        return _at_stake(self.churn_probability, np.clip(np.nan_to_num(self.recent_spend), 0, None))


# The features a tier reads beside the champions' outputs, in TierInputs' order.
TIER_FEATURES = ("spend_180d", "tenure_days", "frequency")


def assign_tiers(inputs: TierInputs, settings: TierSettings | None = None) -> np.ndarray:
    """A tier per member, by rank within the scored population.

    Churn risk goes first: the members with the most recent spend at stake (churn probability x spend over
    the last 180 days) - fading members worth winning back now, not those long gone, who risk nothing more.
    Of the rest, the highest expected value are high-value, the next potential, the others ordinary. Members
    with too little history are "new".
    """
    s = settings or TierSettings()
    tiers = np.full(len(inputs.churn_probability), "new", dtype=object)
    established = np.flatnonzero(_established(inputs, s))
    n = len(established)
    if n == 0:
        return tiers
    # Ties broken by position, so the same scores always give the same tiers.
    at_stake = inputs.at_stake
    by_risk = established[np.lexsort((established, -at_stake[established]))]
    at_risk = by_risk[: round(s.churn_risk_share * n)]
    tiers[at_risk] = "churn_risk"
    rest = np.setdiff1d(established, at_risk)
    by_value = rest[np.lexsort((rest, -inputs.expected_value[rest]))]
    high = round(s.high_value_share * n)
    potential = round(s.potential_share * n)
    tiers[by_value[:high]] = "high_value"
    tiers[by_value[high : high + potential]] = "potential"
    tiers[by_value[high + potential :]] = "ordinary"
    return tiers


def _established(inputs: TierInputs, s: TierSettings) -> np.ndarray:
    return _is_established(np.nan_to_num(inputs.tenure_days), np.nan_to_num(inputs.frequency), s)


# The two rules a tier is cut by, for a population's arrays and for one member's floats alike (missing values
# already 0, recent spend already clipped at 0): the same arithmetic, so one member gets the tier the population
# would give them.
def _is_established(tenure_days: Any, frequency: Any, s: TierSettings) -> Any:
    """Members known long enough, who have bought: the others are "new"."""
    return (tenure_days >= s.new_member_days) & (frequency > 0)


def _at_stake(churn_probability: Any, recent_spend: Any) -> Any:
    """Churn probability x recent spend: what a member's leaving would cost now."""
    return churn_probability * recent_spend


def _known(value: Any) -> float:
    """A feature value as a float, 0 where it is missing (None or NaN), as np.nan_to_num gives the population."""
    return 0.0 if value is None or value != value else float(value)


@dataclass(frozen=True)
class TierCuts:
    """Where a population's tiers split, so one member is tiered per request as `assign_tiers` tiers them all:
    each cut is the score and population position of the last member in (ties go to the earlier position)."""

    settings: TierSettings
    risk: tuple[float, float] | None  # at-stake value and position of the last churn-risk member
    high: tuple[float, float] | None  # expected value and position of the last high-value member
    potential: tuple[float, float] | None

    @classmethod
    def of(cls, population: TierInputs, settings: TierSettings | None = None) -> TierCuts:
        s = settings or TierSettings()
        tiers = assign_tiers(population, s)

        def last(tier: str, score: np.ndarray) -> tuple[float, float] | None:
            members = np.flatnonzero(tiers == tier)
            if not len(members):
                return None
            worst = members[np.lexsort((-members, score[members]))[0]]  # lowest score, then latest position
            return float(score[worst]), float(worst)

        value = population.expected_value
        return cls(s, last("churn_risk", population.at_stake), last("high_value", value), last("potential", value))

    def tier(self, outputs: Mapping[str, float], row: Mapping[str, Any], position: float) -> str:
        """One member's tier from the champions' outputs and their feature row, in plain floats (a request's path:
        no arrays); `position`: their place in the population (past its end for a member new to it)."""
        recent_spend, tenure_days, frequency = (_known(row.get(f)) for f in TIER_FEATURES)
        if not _is_established(tenure_days, frequency, self.settings):
            return "new"

        def within(cut: tuple[float, float] | None, score: float) -> bool:
            return cut is not None and (score > cut[0] or (score == cut[0] and position <= cut[1]))

        if within(self.risk, _at_stake(outputs[CHURN.output], max(recent_spend, 0.0))):
            return "churn_risk"
        value = outputs[VALUE.output]
        if within(self.high, value):
            return "high_value"
        if within(self.potential, value):
            return "potential"
        return "ordinary"


def tier_shares(tiers: pd.Series) -> dict[str, float]:
    counts = tiers.value_counts(normalize=True)
    return {t: round(float(counts.get(t, 0.0)), 4) for t in TIERS}


def score_snapshot(features: pd.DataFrame, champions: Champions, tiers: TierSettings | None = None) -> pd.DataFrame:
    """member_id, every member champion's output (churn_probability, expected_value, ...) and the tier (where
    there are churn and value champions), for every row of a feature snapshot: what batch scoring writes, what
    the service answers and what monitoring compares, all from this one function."""
    out = pd.DataFrame({"member_id": features["member_id"].astype(str).to_numpy()})
    features = champions.prepare(features)
    for champion in champions.of(Task.member):
        out[champion.kind.output] = champion.model.predict(features)
    if tiers_unavailable(champions) is None:
        out["tier"] = member_tiers(out, features, tiers)
    return out


def member_tiers(outputs: pd.DataFrame, features: pd.DataFrame, tiers: TierSettings | None = None) -> np.ndarray:
    """Each member's tier from the member champions' outputs and their features, rows in the same order."""
    return assign_tiers(TierInputs.of(outputs, features), tiers)
