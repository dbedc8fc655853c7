"""Campaign ROI per campaign, as of a date: each campaign's pushed members against its own holdout, over the
`horizon_days` after each exposure (the outcomes `campaign report` measures), priced with the costs declared
for it in configs/health.yaml. Not pooled: campaigns of different costs and audiences have different returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import pandas as pd

from features.dataset.campaigns import CONTROL, campaigns, exposures, saved_plan
from features.dataset.store import Dataset
from features.pipelines.outcomes import member_outcomes
from monitoring.campaign_stats import difference
from monitoring.health.indicators import HealthSettings

HORIZON_DAYS = 30  # as the pooled indicator: spend in the 30 days after the push


@dataclass(frozen=True)
class CampaignRoi:
    campaign: str
    pushed: int  # members pushed (any arm but the control) whose window had passed by as_of
    held_out: int
    pending: int  # exposed members whose window had not passed
    spend_pushed: float | None  # per member, in the window
    spend_held_out: float | None
    incremental_spend: float | None  # per pushed member, against the holdout
    cost: float  # pushed x cost_per_push + fixed_cost
    cost_source: str  # declared for the campaign, or the default cost_per_push
    roi: float | None  # (incremental spend x pushed x margin - cost) / cost
    roi_low: float | None  # 95% interval, from the spend difference's
    roi_high: float | None
    status: str  # measured, or why not


def campaign_rois(dataset: Dataset, as_of: date, settings: HealthSettings) -> list[CampaignRoi]:
    """Every campaign of the dataset with exposures before `as_of`, its ROI where its windows allow."""
    return [roi for campaign in campaigns(dataset) if (roi := campaign_roi(dataset, campaign, as_of, settings))]


def campaign_roi(dataset: Dataset, campaign: str, as_of: date, settings: HealthSettings) -> CampaignRoi | None:
    exposed = exposures(dataset, campaign)
    exposed = exposed[exposed["ts"] < pd.Timestamp(as_of)]
    if exposed.empty:
        return None
    costs = settings.costs(campaign)
    source = "declared" if campaign in settings.campaigns else f"default cost_per_push {settings.cost_per_push:g}"
    control = _control(dataset, campaign, exposed)
    done = exposed[exposed["ts"] + pd.Timedelta(days=HORIZON_DAYS) < pd.Timestamp(as_of)]
    pending = len(exposed) - len(done)
    pushed_all = int((exposed["arm"].astype(str) != control).sum())

    def unmeasured(status: str) -> CampaignRoi:
        cost = pushed_all * costs.cost_per_push + costs.fixed_cost
        held_out = len(exposed) - pushed_all
        return CampaignRoi(
            campaign, pushed_all, held_out, pending, None, None, None, cost, source, None, None, None, status
        )

    if control is None:
        return unmeasured("no holdout: a campaign without a control arm has no measured return")
    if done.empty:
        return unmeasured(f"no window has passed: the {HORIZON_DAYS} days after its exposures end after {as_of}")
    outcomes = member_outcomes(dataset, done, HORIZON_DAYS, pre_days=7)
    treated = outcomes.loc[outcomes["arm"] != control, "spend"].to_numpy(float)
    held = outcomes.loc[outcomes["arm"] == control, "spend"].to_numpy(float)
    if len(treated) < 2 or len(held) < 2:
        return unmeasured("too few members measured in an arm (a variance needs two)")
    diff = difference(treated, held)
    cost = len(treated) * costs.cost_per_push + costs.fixed_cost

    def roi(increment: float) -> float | None:
        return None if cost == 0 else (increment * len(treated) * settings.margin - cost) / cost

    return CampaignRoi(
        campaign=campaign,
        pushed=len(treated),
        held_out=len(held),
        pending=pending,
        spend_pushed=diff.treated_mean,
        spend_held_out=diff.control_mean,
        incremental_spend=diff.difference,
        cost=cost,
        cost_source=source,
        roi=roi(diff.difference),
        roi_low=roi(diff.low),
        roi_high=roi(diff.high),
        status="measured" if cost > 0 else "no cost declared: ROI is undefined (configs/health.yaml campaigns)",
    )


def _control(dataset: Dataset, campaign: str, exposed: pd.DataFrame) -> str | None:
    """The campaign's holdout arm (its plan's, else "control"), None where no member is in it."""
    plan = saved_plan(dataset, campaign)
    control = plan.control_arm if plan else CONTROL
    return control if control in set(exposed["arm"].astype(str)) else None


def as_json(rois: list[CampaignRoi]) -> list[dict[str, object]]:
    return [asdict(r) for r in rois]
