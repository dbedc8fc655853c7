"""Campaigns in the data: who was assigned to which arm (the `exposures` table) and the stable random split that
assigns them. What each exposed member did afterwards is built from the tables like a label
(features/pipelines/outcomes.py).

A campaign is its rows in `exposures` (member_id, campaign_id, arm, ts), whether `community-ml campaign plan`
recorded them or they were imported from a campaign run elsewhere. A plan also keeps its settings (arms, holdout,
audience) in `<dataset>/campaigns/<campaign>.json`, which is where a report finds the split it should see.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.common.errors import DataError
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset, write_json_atomic

CONTROL = "control"


class CampaignPlan(BaseModel):
    """How a campaign splits its audience: the arms that are pushed and the share held out as control."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The name becomes a file name (the plan, the report): the characters of a dataset's name.
    campaign: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    arms: list[str] = Field(default_factory=lambda: ["treatment"], min_length=1)
    holdout: float = Field(0.2, gt=0, lt=1, description="share of the audience held out as control, not pushed")
    control_arm: str = CONTROL
    audience: str = ""

    @model_validator(mode="after")
    def _distinct_arms(self) -> CampaignPlan:
        names = [a.strip() for a in self.arms]
        if any(not a for a in names) or len(set(names)) != len(names) or self.control_arm in names:
            raise ValueError(f"arms must be distinct, non-empty and not {self.control_arm!r}: {self.arms}")
        return self

    def shares(self) -> dict[str, float]:
        """The planned share of each arm, control included."""
        each = (1.0 - self.holdout) / len(self.arms)
        return {self.control_arm: self.holdout, **dict.fromkeys(self.arms, each)}


def split_position(key: bytes, member_ids: list[str], campaign: str) -> np.ndarray:
    """A uniform number in [0, 1) per member from a keyed hash of their pseudonym and the campaign: random (no
    member attribute decides it) and stable (re-running a plan gives every member the same arm), and different
    for each campaign, so the same members are not always the held-out ones."""
    out = np.empty(len(member_ids), dtype=np.float64)
    for i, member in enumerate(member_ids):
        digest = hashlib.sha256(f"{campaign}\x1f{pseudonym(key, member)}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def assign_arms(key: bytes, member_ids: list[str], plan: CampaignPlan) -> np.ndarray:
    """Each member's arm: control below the holdout share, then the arms in equal parts of the rest."""
    position = split_position(key, member_ids, plan.campaign)
    rest = (position - plan.holdout) / (1.0 - plan.holdout)
    index = np.clip((rest * len(plan.arms)).astype(int), 0, len(plan.arms) - 1)
    return np.where(position < plan.holdout, plan.control_arm, np.array(plan.arms, dtype=object)[index])


def plan_path(dataset: Dataset, campaign: str) -> Path:
    return dataset.path / "campaigns" / f"{file_stem(campaign)}.json"


def file_stem(campaign: str) -> str:
    """A campaign's name as a file name: an imported campaign's id may hold any character."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", campaign).lstrip(".") or "_"


def saved_plan(dataset: Dataset, campaign: str) -> CampaignPlan | None:
    path = plan_path(dataset, campaign)
    return CampaignPlan.model_validate_json(path.read_text()) if path.exists() else None


def record_plan(dataset: Dataset, plan: CampaignPlan, member_ids: list[str], at: datetime) -> pd.DataFrame:
    """Assigns `member_ids` to the plan's arms and records them in `exposures`; members already in the campaign
    keep their arm and time (a re-run plan adds only new members). Returns every member's exposure row."""
    if not member_ids:
        raise DataError(f"campaign {plan.campaign!r}: the audience is empty, nobody to assign")
    previous = saved_plan(dataset, plan.campaign)
    if previous is not None and previous.model_copy(update={"audience": plan.audience}) != plan:
        raise DataError(
            f"campaign {plan.campaign!r} was planned with other arms or holdout ({_describe(previous)}); re-run it "
            "with the same settings or choose another --campaign name"
        )
    arms = assign_arms(pseudonym_key(dataset.home), member_ids, plan)
    return record_exposures(dataset, plan, pd.DataFrame({"member_id": member_ids, "arm": arms}), at, previous)


def record_exposures(
    dataset: Dataset, plan: CampaignPlan, arms: pd.DataFrame, at: datetime, previous: CampaignPlan | None
) -> pd.DataFrame:
    """Records members' arms (member_id, arm) in `exposures` at `at`, and the plan beside them; members already in
    the campaign keep their arm and time. `previous`: the campaign's saved plan (None: a new campaign, which must
    have no exposures yet). Returns every member's exposure row."""
    existing = exposures(dataset, plan.campaign, required=False)
    if previous is None and len(existing):
        raise DataError(f"campaign {plan.campaign!r} already has exposures (imported); choose another name")
    fresh = arms.assign(campaign_id=plan.campaign, ts=at)[["member_id", "campaign_id", "arm", "ts"]]
    fresh = fresh[~fresh["member_id"].isin(set(existing["member_id"]))]
    if len(fresh):
        dataset.merge("exposures", fresh)
        dataset.record({"kind": "campaign plan", "campaign": plan.campaign, "rows_added": len(fresh)})
    write_json_atomic(plan.model_dump(mode="json"), plan_path(dataset, plan.campaign))
    return exposures(dataset, plan.campaign)


def _describe(plan: CampaignPlan) -> str:
    return f"arms {', '.join(plan.arms)}, holdout {plan.holdout:g}"


def campaigns(dataset: Dataset) -> list[str]:
    if not dataset.has("exposures"):
        return []
    return sorted(dataset.read("exposures", ["campaign_id"])["campaign_id"].astype(str).unique())


def exposures(dataset: Dataset, campaign: str, required: bool = True) -> pd.DataFrame:
    """The campaign's exposure rows; a clear error naming the known campaigns when there are none."""
    frame = dataset.read("exposures", filters=[("campaign_id", "=", campaign)]) if dataset.has("exposures") else None
    if frame is None or frame.empty:
        if not required:
            return pd.DataFrame(columns=["member_id", "campaign_id", "arm", "ts"])
        known = campaigns(dataset)
        hint = f"its campaigns: {', '.join(known)}" if known else "it has no campaigns yet"
        raise DataError(
            f"dataset {dataset.name!r} has no exposures of campaign {campaign!r} ({hint}); record one with "
            "`community-ml campaign plan` or import it with `community-ml data import --table exposures`"
        )
    return frame.reset_index(drop=True)


def control_arm(plan: CampaignPlan | None, campaign: str, exposed: pd.DataFrame, asked: str | None = None) -> str:
    """The campaign's holdout arm: the one asked for, else its plan's, else "control"; a clear error naming the
    campaign's arms when it has no such arm."""
    control = asked or (plan.control_arm if plan else CONTROL)
    arms = sorted(exposed["arm"].astype(str).unique())
    if control not in arms:
        raise DataError(
            f"campaign {campaign!r} has no arm {control!r} (its arms: {', '.join(arms)}); name the holdout with "
            "--control-arm"
        )
    return control


def campaign_start(frame: pd.DataFrame) -> date:
    """The first day of a campaign: features of its members are taken as of that day (before any exposure)."""
    return pd.Timestamp(frame["ts"].min()).date()
