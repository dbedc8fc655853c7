"""The day's outreach plan (`community-ml outreach plan`): at most one contact per member, within consent, caps,
quiet hours and cool-offs (policy.py), by expected gain, within a budget, with a random stable holdout.

Expected gain per member and action, and how each is kept honest:
- `offer`: the uplift champion's lift (learned from a randomized campaign: causal, and judged on held-out members
  by the gate) priced by OfferWorth: a lift in spend is currency already; a lift in the chance to buy x the
  member's average basket (the population's median for a member with none) x what one more buyer spent, in
  baskets, in the campaign's window (measured on its randomized arms at training: the effect on spend over the
  effect on conversion); a lift in visits or retention has no price, and the plan leaves offers out saying so.
  Less the offer's cost and the channel's cost.
- `product-push`: a recommender's score says what a member would take, not what a push changes. pushes.py
  calibrates the recommender's ranks on the dataset's past pushes (the contact log's, with their items) and the
  orders that followed: the take rate of pushed items against the same members' unpushed items of the same rank,
  scaled by how each member answered their own pushes. Gain = that lift x the item's price - the channel's cost,
  for the best of the member's top 10. Until a dataset has MIN_PUSHES past pushes the plan leaves pushes out and
  says why, rather than spend contacts on a gain nobody measured.
- `content-push`: a read is what a content push brings, and nothing measures what a read is worth in spending (no
  randomized content push with its spending after): the plan leaves it out and says so.
The holdout is drawn once per member (a keyed hash of their pseudonym, as campaign arms are): the same members are
kept uncontacted day after day, so `campaign report` can compare planned and held-out members.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.dataset.campaigns import split_position
from features.dataset.event_log import ingest
from features.dataset.pseudonyms import pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.snapshots import resolve_as_of
from serving.models.batch import check_out_path, snapshot_features, write_table
from serving.models.champions import load_champions
from serving.models.kinds import PRODUCT_RECS, UPLIFT
from serving.outreach.actions import outreach_actions
from serving.outreach.policy import CONSENT, OutreachPolicy, Verdicts, judged
from serving.outreach.pushes import ProductPushes

HOLDOUT_SALT = "outreach-holdout"
NO_GAIN = "no positive gain"
BUDGET = "budget"
READ_UNPRICED = (
    "what a read content is worth in spending is not measured (no randomized content push with the spending that "
    "followed): the plan does not spend contacts on it"
)


class PlanSummary(BaseModel):
    dataset: str
    at: datetime
    members: int
    planned: int  # contacts to send
    held_out: int  # members the plan would contact, kept uncontacted
    by_action: dict[str, int]
    left_out: dict[
        str, int
    ]  # why members get no contact: consent, cool-off, cap, quiet hours, no positive gain, budget
    unavailable: dict[str, str]  # actions the plan could not use, and why
    expected_gain: float  # the planned contacts' expected gain, in the orders' currency
    push_calibration: str | None  # what the product pushes' gains were calibrated on
    out: str


def plan_day(
    dataset: Dataset, policy: OutreachPolicy, at: datetime, out: Path, budget: int | None = None
) -> PlanSummary:
    """The plan for contacts sent at `at`, written to `out`: a row per member the plan contacts or holds out
    (member_id, action, channel, item_id, expected_gain, holdout)."""
    check_out_path(out)
    ingest(dataset)  # contacts the service took (POST /events) join the log first: they count toward the caps
    as_of = resolve_as_of(dataset, "latest")
    features = snapshot_features(dataset, as_of)
    members = features["member_id"].astype(str).tolist()
    unavailable = {s.action: str(s.why) for s in outreach_actions(dataset, policy) if not s.available}
    gains: dict[str, np.ndarray] = {}
    items: dict[str, np.ndarray] = {}
    if "offer" in policy.actions and "offer" not in unavailable:
        offer = _offer_gain(dataset, features)
        if isinstance(offer, str):
            unavailable["offer"] = offer
        else:
            gains["offer"] = offer - policy.actions["offer"].cost
    calibration = None
    if "product-push" in policy.actions and "product-push" not in unavailable:
        model = load_champions(dataset.home, dataset.name, [PRODUCT_RECS])[PRODUCT_RECS].model
        pushes = ProductPushes.open(dataset, model, as_of)
        if isinstance(pushes, str):
            unavailable["product-push"] = pushes
        else:
            gain, items["product-push"] = pushes.best(members, at)
            gains["product-push"] = gain - policy.actions["product-push"].cost
            calibration = pushes.response.summary()
    if "content-push" in policy.actions and "content-push" not in unavailable:
        unavailable["content-push"] = READ_UNPRICED
    chosen, reasons = choose(members, gains, judged(dataset, policy, at, members), policy, items)
    frame = pd.DataFrame(chosen, columns=["member_id", "action", "channel", "item_id", "expected_gain"])
    frame = frame.sort_values("expected_gain", ascending=False, kind="stable").reset_index(drop=True)
    frame["holdout"] = split_position(pseudonym_key(dataset.home), frame["member_id"].tolist(), HOLDOUT_SALT) < (
        policy.holdout
    )
    contacted = frame.index[~frame["holdout"]]
    if budget is not None and len(contacted) > budget:  # the best gains first; the rest wait for another day
        over = contacted[budget:]
        reasons[BUDGET] = len(over)
        frame = frame.drop(index=over)
    write_table(frame, out)
    sent = frame[~frame["holdout"]]
    return PlanSummary(
        dataset=dataset.name,
        at=at,
        members=len(members),
        planned=len(sent),
        held_out=int(frame["holdout"].sum()),
        by_action={str(k): int(v) for k, v in sent["action"].value_counts().items()},
        left_out={k: v for k, v in reasons.items() if v},
        unavailable=unavailable,
        expected_gain=round(float(sent["expected_gain"].sum()), 2),
        push_calibration=calibration,
        out=str(out),
    )


def _offer_gain(dataset: Dataset, features: pd.DataFrame) -> np.ndarray | str:
    """What the uplift champion's lift is worth for each member (OfferWorth), or why it has no price."""
    model = load_champions(dataset.home, dataset.name, [UPLIFT])[UPLIFT].model
    worth = OfferWorth.of(model, features.get("avg_basket"))
    if isinstance(worth, str):
        return worth
    lift = np.asarray(model.predict(features), dtype=float)  # type: ignore[union-attr]
    return worth.gain(lift, features.get("avg_basket"))


@dataclass(frozen=True)
class OfferWorth:
    """What an uplift champion's lift is worth in spending (the plan's for every member, `/next_action`'s for
    one)."""

    outcome: str  # "spend": the lift is currency; "conversion": it is a change in the chance to buy
    typical_basket: float  # a purchase's worth for a member with no basket of their own
    baskets_per_conversion: float  # what one more buyer spent in the campaign's window, in baskets

    @classmethod
    def of(cls, model: object, baskets: pd.Series | None) -> OfferWorth | str:
        """From the champion's spec and the members' average baskets; a string says why a lift has no price."""
        spec = getattr(model, "spec", None)
        outcome = getattr(spec, "outcome", "conversion")
        if outcome not in ("spend", "conversion"):
            return (
                f"the uplift champion predicts the lift in {outcome}, which has no price in spending: train "
                "`uplift --outcome conversion` or `--outcome spend` for offers to be weighed"
            )
        typical = 0.0 if baskets is None else typical_basket(baskets)
        measured = getattr(spec, "baskets_per_conversion", None)
        return cls(outcome, typical, 1.0 if measured is None else float(measured))

    def gain(self, lift: np.ndarray, baskets: pd.Series | np.ndarray | None) -> np.ndarray:
        """Each member's expected extra spend from the offer."""
        if self.outcome == "spend":
            return lift
        return lift * offer_worth(baskets, self.typical_basket) * self.baskets_per_conversion


def typical_basket(baskets: pd.Series) -> float:
    """The population's median basket: what a purchase is worth for a member with none of their own."""
    values = pd.to_numeric(baskets, errors="coerce")
    return float(values[values > 0].median()) if (values > 0).any() else 0.0


def offer_worth(basket: pd.Series | np.ndarray | None, typical: float) -> np.ndarray:
    """Each member's average basket, `typical` where they have none (numpy: `/next_action` asks it for one)."""
    if basket is None:
        return np.array([typical])
    values = basket if isinstance(basket, np.ndarray) else pd.to_numeric(basket, errors="coerce").to_numpy(float)
    return np.where(values > 0, values, typical)


def choose(
    members: list[str],
    gains: dict[str, np.ndarray],
    verdicts: Verdicts,
    policy: OutreachPolicy,
    items: dict[str, np.ndarray] | None = None,
) -> tuple[list[tuple], dict[str, int]]:
    """Each member's one contact (member_id, action, channel, item_id, expected_gain): the action of highest
    positive gain net of its channel's cost (the first action on a tie), by the first of its channels the member may
    be contacted by (with its item, from `items`, where the action has one); else the reason they get none. In
    numpy, action by action: the plan asks it for every member, `/next_action` for one."""
    items = items or {}
    same = len(members) == 1 and len(verdicts.members) == 1 and verdicts.members[0] == members[0]
    reasons = verdicts.reasons if same else verdicts.reasons[:, verdicts.members.get_indexer(pd.Index(members))]
    is_open = reasons == None  # noqa: E711 (elementwise)
    row = {c: i for i, c in enumerate(verdicts.channels)}
    actions = list(gains)
    nets = np.full((len(actions), len(members)), -np.inf)
    channels = np.full((len(actions), len(members)), None, dtype=object)
    for a, action in enumerate(actions):
        for channel in reversed(policy.actions[action].channels):  # the first open channel is written last
            here = is_open[row[channel]]
            channels[a, here] = channel
            nets[a, here] = gains[action][here] - policy.channels[channel].cost
    best = nets.argmax(axis=0) if actions else np.zeros(len(members), dtype=np.int64)
    net = nets[best, np.arange(len(members))] if actions else np.full(len(members), -np.inf)
    chosen = [
        (
            members[i],
            actions[best[i]],
            channels[best[i], i],
            items[actions[best[i]]][i] if actions[best[i]] in items else None,
            round(float(net[i]), 4),
        )
        for i in np.flatnonzero(net > 0)
    ]
    # A member shut out of every channel is counted under the first rule that shuts them out of a channel they
    # agreed to (a cap, a cool-off), under consent only where they agreed to none; one with a channel open, under
    # no positive gain.
    why = np.full(len(members), NO_GAIN, dtype=object)
    for reason in reversed(reasons):
        why = np.where((reason != None) & (reason != CONSENT), reason, why)  # noqa: E711 (elementwise)
    agreed_to_none = (reasons == CONSENT).all(axis=0)
    why[agreed_to_none] = CONSENT
    why[is_open.any(axis=0)] = NO_GAIN
    left = Counter(why[net <= 0].tolist())
    return chosen, {str(k): int(v) for k, v in left.most_common()}
