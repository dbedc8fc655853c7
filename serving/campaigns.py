"""`community-ml campaign plan`: a campaign's audience, split at random into pushed arms and a control holdout.

The audience comes from the champions (the churn-risk tier, any tier, the members an uplift model expects to
respond) or from a file; members without marketing consent leave it first. Each member's arm comes from a keyed
hash of their pseudonym and the campaign (features/dataset/campaigns.py), so re-running the plan gives everyone the same
arm. The assignments are recorded in the dataset's `exposures` table, which the campaign's report and uplift
models read; the push list written holds the pushed arms only: a control member is never pushed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from features.common.errors import DataError
from features.dataset.campaigns import CampaignPlan, record_plan
from features.dataset.privacy import with_marketing_consent
from features.dataset.readers import read_raw
from features.dataset.store import Dataset
from features.pipelines.snapshots import resolve_as_of
from serving.models.batch import (
    AUDIENCE_KINDS,
    audience_of,
    check_out_path,
    score_members,
    snapshot_features,
    write_table,
)
from serving.models.champions import load_champions
from serving.models.kinds import UPLIFT
from serving.models.tiers import TIERS


class PlanSummary(BaseModel):
    dataset: str
    campaign: str
    audience: str
    members: int  # in the audience, with consent
    without_consent: int
    arms: dict[str, int]  # control included
    pushed: int
    out: str


def audience_members(dataset: Dataset, audience: str) -> tuple[list[str], pd.DataFrame | None]:
    """The members an audience names, and their scores where the champions chose them (for the push list)."""
    kind, _, argument = audience.partition(":")
    if kind == "file":
        if not argument:
            raise DataError("--audience file:FILE needs a file name, e.g. file:members.csv")
        raw = read_raw(Path(argument))
        if "member_id" not in raw.frame:
            raise DataError(f"{argument}: needs a member_id column; it has {', '.join(map(str, raw.frame.columns))}")
        ids = raw.frame["member_id"].dropna().astype(str).str.strip()
        return list(dict.fromkeys(ids[ids != ""])), None
    if kind in AUDIENCE_KINDS:
        return audience_of(dataset, resolve_as_of(dataset, "latest"), audience), None
    if kind not in ("churn-risk", "tier", UPLIFT.name):
        raise DataError(
            f"--audience {audience!r}: use churn-risk, tier:NAME ({', '.join(TIERS)}), uplift, segment:NAME, "
            "tag:NAME or file:FILE"
        )
    if kind == "tier" and argument not in TIERS:
        raise DataError(f"--audience {audience!r}: the tiers are {', '.join(TIERS)}")
    if kind == UPLIFT.name:
        return _persuadable(dataset)
    scores, _ = score_members(dataset, resolve_as_of(dataset, "latest"))
    chosen = scores[scores["tier"] == ("churn_risk" if kind == "churn-risk" else argument)]
    return chosen["member_id"].astype(str).tolist(), chosen


def _persuadable(dataset: Dataset) -> tuple[list[str], pd.DataFrame]:
    """The members the uplift champion expects a push to move, the largest expected lift first (it alone scores
    them: no churn or value model is needed)."""
    champion = load_champions(dataset.home, dataset.name, [UPLIFT])[UPLIFT]  # none: the error says how to train one
    features = snapshot_features(dataset, resolve_as_of(dataset, "latest"))
    scores = pd.DataFrame(
        {"member_id": features["member_id"].astype(str), UPLIFT.output: champion.model.predict(features)}  # type: ignore[union-attr]
    ).assign(uplift_model=f"{champion.family} v{champion.version}")
    chosen = scores[scores[UPLIFT.output] > 0].sort_values(UPLIFT.output, ascending=False, kind="stable")
    return chosen["member_id"].tolist(), chosen


def plan_campaign(
    dataset: Dataset,
    plan: CampaignPlan,
    out: Path,
    at: datetime | None = None,
    consent_recorded_elsewhere: bool = False,
) -> PlanSummary:
    check_out_path(out)
    members, scores = audience_members(dataset.require(), plan.audience)
    kept, left_out = with_marketing_consent(dataset, members, consent_recorded_elsewhere)
    when = at or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    recorded = record_plan(dataset, plan, kept, when)
    audience = recorded[recorded["member_id"].isin(set(kept))]
    pushed = audience[audience["arm"] != plan.control_arm][["member_id", "campaign_id", "arm", "ts"]]
    if scores is not None:  # what chose them, beside the arm
        pushed = pushed.merge(scores.drop(columns=["top_reasons"], errors="ignore"), on="member_id", how="left")
    write_table(pushed.reset_index(drop=True), out)
    return PlanSummary(
        dataset=dataset.name,
        campaign=plan.campaign,
        audience=plan.audience,
        members=len(audience),
        without_consent=left_out,
        arms={str(a): int(n) for a, n in audience["arm"].value_counts().sort_index().items()},
        pushed=len(pushed),
        out=str(out),
    )
