"""What a dataset's outreach can do: each action of the policy, whether the dataset can take it (the model it needs
has a champion) and, where not, why and how to make it so."""

from __future__ import annotations

from pydantic import BaseModel

from features.dataset.store import Dataset
from serving.models import registry
from serving.models.kinds import CONTENT_RECS, PRODUCT_RECS, UPLIFT, ModelKind
from serving.outreach.policy import OutreachPolicy

# The model each action's expected gain comes from.
NEEDS: dict[str, ModelKind] = {"offer": UPLIFT, "product-push": PRODUCT_RECS, "content-push": CONTENT_RECS}
WHY_NOT = {
    "offer": "no randomized campaign taught an uplift model: run one (campaign plan), then `{command}`",
    "product-push": "no product recommender: `{command}`",
    "content-push": "no content recommender: `{command}`",
}


class ActionStatus(BaseModel):
    action: str
    available: bool
    model: str | None  # "demo.uplift v1", where available
    why: str | None  # where not available: why, and how to make it so
    cost: float
    channels: list[str]


def outreach_actions(dataset: Dataset, policy: OutreachPolicy) -> list[ActionStatus]:
    """Every action the policy declares (and doing nothing), with whether this dataset can take it."""
    client = registry.connect(dataset.home)
    out = []
    for name, setting in policy.actions.items():
        kind = NEEDS[name]
        version = registry.champion(client, dataset.name, kind)
        command = kind.train_command(dataset.name)
        out.append(
            ActionStatus(
                action=name,
                available=version is not None,
                model=None if version is None else f"{kind.registered_name(dataset.name)} v{version.version}",
                why=None if version is not None else WHY_NOT[name].format(command=command),
                cost=setting.cost,
                channels=setting.channels,
            )
        )
    out.append(ActionStatus(action="nothing", available=True, model=None, why=None, cost=0.0, channels=[]))
    return out
