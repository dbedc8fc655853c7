"""Each target's trainer: labels at monthly cutoffs (churn, value), held-out interactions (items), or a randomized
campaign's arms (uplift, a member kind learned from exposures instead of labels)."""

from __future__ import annotations

from serving.models.kinds import ModelKind, Target
from training.items.trainer import ItemTrainer
from training.members.trainer import MemberTrainer
from training.trainer import Trainer
from training.uplift.trainer import UpliftTrainer

TRAINERS: dict[Target, type[Trainer]] = {
    Target.binary: MemberTrainer,
    Target.amount: MemberTrainer,
    Target.items: ItemTrainer,
    Target.uplift: UpliftTrainer,
}


def trainer(kind: ModelKind) -> Trainer:
    """A new trainer for one run: what a trainer prepares during a run (uplift: the campaign's members) is that
    run's, never a later one's, whose data may have changed."""
    return TRAINERS[kind.target]()
