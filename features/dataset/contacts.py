"""The contact log: every marketing contact a member was sent, in the dataset's `contacts` table. A plan or list
file is recorded once its caller confirms it was sent (`community-ml outreach record`); a service posts contacts as
they happen (`POST /events` with `contacts`, journaled like every event). Caps, cool-offs and a member's profile read
it; `privacy forget` removes a member's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from features.common.errors import DataError
from features.dataset.campaigns import CONTROL, CampaignPlan, record_exposures, saved_plan
from features.dataset.contract import CONTACTS
from features.dataset.readers import read_raw
from features.dataset.store import Dataset
from features.dataset.validation import validate

NOTHING = "nothing"  # a plan's row that contacts no one (the member is planned no action)
PLANNED_ARM = "planned"  # a recorded plan's contacted members, as a campaign's arm (its held-out ones: control)
OUTREACH_ACTIONS = ("offer", "product-push", "content-push")  # what outreach can do besides nothing


class RecordSummary(BaseModel):
    dataset: str
    plan: str
    list_id: str
    contacts: int  # rows recorded (sent)
    held_out: int  # rows of the holdout: never contacted, never recorded
    nothing: int  # rows planning no action
    added: int  # new rows in the contact log (a plan recorded twice at the same time adds none)
    campaign: str | None  # the campaign `campaign report` measures the plan as (None: it held nobody out)


def record_plan_file(
    dataset: Dataset, plan: Path, at: datetime, list_id: str | None = None, holdout: float | None = None
) -> RecordSummary:
    """Every row of the plan file (member_id, action, channel; item_id and holdout where it has them) that was
    sent, as a contact at `at` from list `list_id` (default: the file's name). A row the contract refuses stops the
    whole record, naming the file, row and field: a contact log that silently lost a row would let a member be
    contacted past their cap. Where the plan holds members out and `holdout` (the policy's share) is given, the
    plan is also recorded as a campaign named after the list: its sent members in arm `planned`, its held-out ones
    in control, so `campaign report` measures it like any campaign."""
    raw = read_plan(plan, ("member_id", "action", "channel"))
    held, nothing = raw["holdout"], raw["action"].eq(NOTHING)
    sent = raw[~held & ~nothing]
    campaign = _as_campaign(list_id or plan.stem, holdout) if holdout is not None and held.any() else None
    frame = pd.DataFrame(
        {
            "member_id": sent["member_id"],
            "ts": at,
            "channel": sent["channel"],
            "action": sent["action"],
            "list_id": list_id or plan.stem,
            "item_id": sent.get("item_id"),
        },
        index=sent.index,
    )
    checked = validate(CONTACTS, frame.astype(object).where(frame.notna(), None), source=str(plan))
    if len(checked.quarantine):
        first = checked.quarantine.iloc[0]
        raise DataError(
            f"{plan}: row {int(first['row'])}, field {first['field']}: {first['reason']} "
            f"({len(checked.quarantine)} rows refused); nothing was recorded"
        )
    merged = dataset.merge("contacts", checked.good) if len(checked.good) else None
    if campaign is not None:
        measured = raw[~nothing]
        arms = pd.DataFrame(
            {"member_id": measured["member_id"], "arm": np.where(measured["holdout"], CONTROL, PLANNED_ARM)}
        )
        record_exposures(dataset, campaign, arms, at, saved_plan(dataset, campaign.campaign))
    summary = RecordSummary(
        dataset=dataset.name,
        plan=str(plan),
        list_id=list_id or plan.stem,
        contacts=len(checked.good),
        held_out=int(held.sum()),
        nothing=int((nothing & ~held).sum()),
        added=0 if merged is None else merged.added,
        campaign=None if campaign is None else campaign.campaign,
    )
    dataset.record({"kind": "outreach record", "plan": summary.plan, "contacts_added": summary.added})
    return summary


def _as_campaign(name: str, holdout: float) -> CampaignPlan:
    """The plan as a campaign: arm `planned` against the held-out members; a DataError where the list's name cannot
    name a campaign."""
    try:
        return CampaignPlan(campaign=name, arms=[PLANNED_ARM], holdout=holdout, audience="outreach plan")
    except ValidationError as exc:
        raise DataError(
            f"--list {name!r}: a recorded plan is also a campaign, whose name is letters, digits, '.', '_' or '-' "
            "(64 at most)"
        ) from exc


def as_logged(action: str) -> str:
    """An action as the contact log stores it: the contract keeps categories in lower case with underscores
    (product-push -> product_push)."""
    return action.strip().lower().replace("-", "_").replace(" ", "_")


def read_plan(plan: Path, needs: tuple[str, ...] = ("member_id", "action")) -> pd.DataFrame:
    """A plan or list file's rows as sent: its columns, `action` in lower case (`nothing` where empty) and
    `holdout` as booleans (False where the file has none); a DataError naming the file where a needed column is
    missing, or the row of a holdout that is neither true nor false."""
    raw = read_raw(plan).frame
    missing = [c for c in needs if c not in raw]
    if missing:
        raise DataError(f"{plan}: a plan needs {', '.join(missing)} (it has {', '.join(map(str, raw.columns))})")
    action = raw["action"].astype("string").str.strip().str.lower().fillna(NOTHING)
    held = _flags(raw["holdout"], plan) if "holdout" in raw else pd.Series(False, index=raw.index)
    return raw.assign(action=action.replace("", NOTHING), holdout=held)


def _flags(values: pd.Series, plan: Path) -> pd.Series:
    """A holdout column as booleans (true/false, 1/0, yes/no); anything else is named."""
    text = values.astype("string").str.strip().str.lower()
    truth = text.map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False})
    bad = truth.isna() & text.notna()
    if bad.any():
        row = int(bad.idxmax())
        raise DataError(f"{plan}: row {row}, field holdout: {values[row]!r} is not true or false")
    return truth.fillna(False).astype(bool)
