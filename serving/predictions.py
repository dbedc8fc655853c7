"""What the service answers, as plain functions over a loaded state: testable without a server.

The state holds the dataset's champions and its latest feature snapshot, scored once at load: a single-member
call is then a lookup, and the service answers exactly what batch scoring (`community-ml score`) writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from features.home import StateHome
from features.privacy import forgotten
from features.pseudonyms import pseudonym, pseudonym_key
from features.snapshots import resolve_as_of
from features.store import Dataset
from serving.models.base import ItemModel
from serving.models.batch import item_lists, snapshot_features
from serving.models.champions import Champions, load_champions
from serving.models.kinds import CHURN, ModelKind, Task
from serving.models.tiers import score_snapshot

DATASET_ENV = "COMMUNITY_ML_DATASET"


@dataclass
class ServingState:
    dataset: str
    as_of: date
    answers: dict[str, dict[str, Any]]  # member_id -> every member output, tier, top reasons
    champions: Champions
    # member_id -> the feature values behind the answer (its top reasons), for the prediction log
    inputs: dict[str, dict[str, float | None]] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def member_outputs(self) -> list[str]:
        return [str(c.kind.output) for c in self.champions.of(Task.member)]

    def models(self, *kinds: ModelKind) -> dict[str, dict[str, str]]:
        return self.champions.described(*kinds)


def load_state(home: StateHome, dataset_name: str) -> ServingState:
    """The dataset's champions and its latest snapshot, scored for every member."""
    dataset = Dataset(home, dataset_name).require()
    champions = load_champions(home, dataset_name)
    gone = forgotten(dataset)
    if gone:  # members who asked to be forgotten since these recommenders were trained
        key = pseudonym_key(home)
        known = {str(m) for c in champions.of(Task.items) for m in _item_model(c.model).member_ids}
        champions.without({m for m in known if pseudonym(key, m) in gone})
    as_of = resolve_as_of(dataset, "latest")
    features = champions.prepare(snapshot_features(dataset, as_of))
    scores = score_snapshot(features, champions)
    reasons = champions[CHURN].model.top_reasons(features)
    outputs = [c for c in scores.columns if c not in ("member_id", "tier")]
    columns = {c: scores[c].to_numpy() for c in ("member_id", *outputs, "tier")}
    # Every answer is worked out once here, reasons included: a request is then a dictionary lookup.
    answers = {
        str(member): {
            "member_id": str(member),
            "cold_start": False,
            **{c: float(columns[c][row]) for c in outputs},
            "tier": str(columns["tier"][row]),
            "top_reasons": reasons[row],
        }
        for row, member in enumerate(columns["member_id"])
    }
    return ServingState(dataset_name, as_of, answers, champions, reason_values(features, reasons))


def reason_values(features: pd.DataFrame, reasons: list[list[str]]) -> dict[str, dict[str, float | None]]:
    """Each member's values of the features behind their answer: what the prediction log records as inputs
    (the whole row stays in the versioned snapshot named by the log's as-of date)."""
    columns = {name: features[name].to_numpy() for name in {n for r in reasons for n in r}}
    return {
        str(member): {name: _number(columns[name][row]) for name in names}
        for row, (member, names) in enumerate(zip(features["member_id"], reasons, strict=True))
    }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN (no history) is logged as null


def _item_model(model: Any) -> ItemModel:
    assert isinstance(model, ItemModel)
    return model


def member_scores(state: ServingState, member_ids: list[str]) -> list[dict[str, Any]]:
    """Every member champion's output, tier and top reasons per member; unknown members are cold start."""
    return [
        state.answers.get(member)
        or {
            "member_id": member,
            "cold_start": True,
            **dict.fromkeys(state.member_outputs),
            "tier": "new",
            "top_reasons": [],
        }
        for member in member_ids
    ]


def recommendations(
    state: ServingState,
    kind: ModelKind,
    member_ids: list[str],
    k: int,
    exclude: list[str],
    category: str | None,
    include_seen: bool | None,
) -> list[dict[str, Any]]:
    if kind not in state.champions:
        raise LookupError(
            f"no champion {kind.name} model for dataset {state.dataset!r}; train one with "
            f"`community-ml train {kind.name} --dataset {state.dataset}`"
        )
    model = _item_model(state.champions[kind].model)
    exclude_seen = None if include_seen is None else not include_seen
    items, cold = item_lists(model.recommend(member_ids, k, exclude_seen, exclude, category))
    return [
        {"member_id": m, "cold_start": cold.get(m, not model.knows_member(m)), "items": items.get(m, [])}
        for m in member_ids
    ]


def similar_items(state: ServingState, kind: ModelKind, item_id: str, k: int) -> list[dict[str, Any]]:
    """The items most like `item_id`; LookupError when there is no such champion or item."""
    model = _item_model(state.champions[kind].model) if kind in state.champions else None
    if model is None or not model.knows_item(item_id):
        raise LookupError(f"{item_id!r} is not known to the {kind.name} model of {state.dataset!r}")
    return model.similar_items(item_id, k).to_dict(orient="records")
