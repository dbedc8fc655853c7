"""A randomized campaign as uplift learns from it: its two arms' measured members, their features as of its
first day, who was treated, their outcome, and the held-out share every family is judged on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from features.common.errors import DataError
from features.common.progress import say
from features.dataset.campaigns import campaign_start, control_arm, exposures, saved_plan, split_position
from features.dataset.pseudonyms import pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.outcomes import measured_members, member_outcomes
from features.pipelines.schema import ATTRIBUTES
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span
from training.trainer import TrainSettings

HELD_OUT_SHARE = 0.3


@dataclass
class CampaignData:
    """One row per measured member of the campaign's two arms: features as of its start, treated, outcome."""

    frame: pd.DataFrame
    columns: list[str]
    treated: np.ndarray
    outcome: np.ndarray
    spend: np.ndarray  # net spend in the window, whatever the outcome: what an effect is worth
    held_out: np.ndarray  # the members every family is judged on
    start: date
    treatment_arm: str
    control_arm: str


def campaign_data(dataset: Dataset, settings: TrainSettings) -> CampaignData:
    if not settings.campaign:
        raise DataError("train uplift needs --campaign: the randomized campaign whose exposures it learns from")
    exposed = exposures(dataset, settings.campaign)
    control = control_arm(saved_plan(dataset, settings.campaign), settings.campaign, exposed, settings.control_arm)
    pushed = sorted(a for a in exposed["arm"].astype(str).unique() if a != control)
    treatment = settings.treatment_arm or (pushed[0] if len(pushed) == 1 else None)
    if treatment not in pushed:
        raise DataError(
            f"campaign {settings.campaign!r}: choose the arm to model with --treatment-arm (one of {', '.join(pushed)})"
        )
    exposed = exposed[exposed["arm"].isin([treatment, control])]
    outcomes = member_outcomes(dataset, exposed, settings.horizon_days, pre_days=365)
    outcomes, complete = measured_members(dataset, outcomes, str(settings.campaign), settings.horizon_days)
    if not complete:
        say(f"no member's {settings.horizon_days}-day window is complete in the data: learning from what there is")
    if outcomes["arm"].nunique() < 2 or outcomes["arm"].value_counts().min() < 50:
        raise DataError(
            f"campaign {settings.campaign!r}: fewer than 50 measured members in {treatment} or {control} with a "
            f"complete {settings.horizon_days}-day window; an uplift model needs both arms"
        )
    start = campaign_start(exposed)
    features = _features_before(dataset, start, settings.horizon_days)
    # Members with no history before the campaign have no feature row: their features are missing, as LightGBM
    # reads a missing value, not zero.
    frame = outcomes[["member_id"]].merge(features, on="member_id", how="left")
    columns = [c for c in features.columns if c != "member_id"]
    position = split_position(pseudonym_key(dataset.home), frame["member_id"].tolist(), f"{settings.campaign}#held-out")
    return CampaignData(
        frame=frame,
        columns=columns,
        treated=(outcomes["arm"] == treatment).to_numpy(),
        outcome=outcomes[settings.outcome].to_numpy(float),
        spend=outcomes["spend"].to_numpy(float),
        held_out=position < HELD_OUT_SHARE,
        start=start,
        treatment_arm=treatment,
        control_arm=control,
    )


def _features_before(dataset: Dataset, start: date, horizon_days: int) -> pd.DataFrame:
    """The members' features as of the campaign's first day; where the data holds no event before it (a campaign
    imported with its outcomes only), the members' attributes alone, which the snapshots carry under the same
    names (so the model scores the latest snapshot as well)."""
    if dataset_span(dataset)[0].date() < start:
        build_snapshot(dataset, SnapshotSettings(as_of=start, horizon_days=horizon_days))
        return Snapshot(dataset, start).features()
    members = dataset.read("members")
    present = [a for a in ATTRIBUTES if a in members and members[a].notna().any()]
    if not present:
        raise DataError(
            f"{dataset.name}: no event before the campaign began ({start}) and no member attributes "
            f"({', '.join(ATTRIBUTES)}): nothing to learn who responds from; import the members' earlier orders "
            "and engagements, or their attributes"
        )
    say(f"no event before the campaign: its members are described by their attributes ({', '.join(present)})")
    return members[["member_id", *present]].astype({a: "string" for a in present if a != "consent_marketing"})
