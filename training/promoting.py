"""Promotion: moving a dataset's champion alias to a registered version, after `train` (`conclude`) or by hand
(`promote`, the same choosing code as `train`: training/choosing.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.progress import say
from features.dataset.store import Dataset
from serving.models import registry
from serving.models.kinds import ModelKind
from training.choosing import judge
from training.tasks import trainer
from training.tracking import LoggedRun


def conclude(
    client: Any, dataset: str, kind: ModelKind, version: str, reasons: list[str], promote: bool
) -> tuple[bool, list[str]]:
    """Moves the champion alias to `version` when the gate gave no reasons, promotion is on and the registered
    model loads; says which. Returns whether it moved, and every reason it did not."""
    name = kind.registered_name(dataset)
    if not reasons and promote and (problem := registry.unloadable(name, version)):
        reasons = [problem]
    if not reasons and promote:
        registry.set_champion(client, dataset, kind, version)
        say(f"{name} version {version} is the new champion")
        return True, []
    say(f"{name} version {version} registered, champion unchanged: " + ("; ".join(reasons) or "--no-promote"))
    return False, reasons


class PromotionResult(BaseModel):
    kind: str
    dataset: str
    version: str
    promoted: bool
    reasons: list[str]


def promote(home: StateHome, dataset: str, kind: ModelKind, version: str | None = None) -> PromotionResult:
    """Runs the gate again for a registered version of the dataset's model (default: the newest) against the
    dataset's champion today.

    The candidate keeps the held-out metrics and rivals logged with it; the champion's configuration is
    re-trained and judged on the candidate's own held-out data, so both are judged on the same members.
    """
    client = registry.connect(home)
    name = kind.registered_name(dataset)
    registered = registry.versions(client, dataset, kind)
    if not registered:
        raise DataError(f"no {name} model is registered yet; train one with `{kind.train_command(dataset)}`")
    chosen = str(version or registered[-1].version)
    if chosen not in {str(v.version) for v in registered}:
        known = ", ".join(str(v.version) for v in registered)
        raise DataError(f"{name} has no version {chosen} (registered versions: {known})")
    current = registry.champion(client, dataset, kind)
    if current is not None and str(current.version) == chosen:
        return PromotionResult(kind=kind.name, dataset=dataset, version=chosen, promoted=True, reasons=[])
    run = LoggedRun(client, dataset, kind, chosen)
    judgement = judge(
        trainer(kind),
        Dataset(home, dataset),
        kind,
        client,
        run.held_out,
        run.settings,
        run.family,
        run.scores,
        run.judged,
        run.evidence,
    )
    reasons = judgement.verdict.reasons or [problem for problem in [registry.unloadable(name, chosen)] if problem]
    if not reasons:
        registry.set_champion(client, dataset, kind, chosen)
        client.set_tag(run.run_id, "promoted", "True")
    return PromotionResult(kind=kind.name, dataset=dataset, version=chosen, promoted=not reasons, reasons=reasons)
