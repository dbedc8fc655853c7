"""What the service answers, as plain functions over a loaded state: testable without a server.

The state holds the champion models and the latest feature snapshot, scored once at load: a single-member
call is then a lookup, and the service answers exactly what batch scoring (`community-ml score`) writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from features.errors import DataError
from features.home import StateHome
from features.model_registry import connect, load_champion, load_recommender
from features.privacy import forgotten
from features.pseudonyms import pseudonym, pseudonym_key
from features.recommending import Recommender, RecsKind
from features.scoring import MemberScorer, ModelKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
from features.store import Dataset
from features.tiers import score_snapshot
from serving.bento import load_packed, models_from_bento

DATASET_ENV = "COMMUNITY_ML_DATASET"


@dataclass
class ServingState:
    dataset: str
    as_of: date
    answers: dict[str, dict[str, Any]]  # member_id -> churn probability, expected value, tier, top reasons
    churn: MemberScorer
    value: MemberScorer
    recommenders: dict[RecsKind, Recommender]
    versions: dict[str, str]
    # member_id -> the feature values behind the answer (its top reasons), for the prediction log
    inputs: dict[str, dict[str, float]] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def load_state(home: StateHome, dataset_name: str) -> ServingState:
    """Champions from the registry and the latest snapshot of the dataset, scored for every member."""
    dataset = Dataset(home, dataset_name).require()
    churn, value, recommenders, versions = _packed_models() if models_from_bento() else _registry_models(home)
    gone = forgotten(dataset)
    if gone:  # members who asked to be forgotten since these recommenders were trained
        key = pseudonym_key(home)
        for recommender in recommenders.values():
            recommender.forget({str(m) for m in recommender.member_ids if pseudonym(key, str(m)) in gone})
    as_of = resolve_as_of(dataset, "latest")
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=value.spec.horizon_days))
    features = Snapshot(dataset, as_of).features()
    scores = score_snapshot(features, churn, value)
    reasons = churn.top_reasons(features)
    # Every answer is worked out once here, reasons included: a request is then a dictionary lookup.
    answers = {
        str(member): {
            "member_id": str(member),
            "cold_start": False,
            "churn_probability": float(p),
            "expected_value": float(e),
            "tier": str(t),
            "top_reasons": reasons,
        }
        for member, p, e, t, reasons in zip(
            scores["member_id"],
            scores["churn_probability"],
            scores["expected_value"],
            scores["tier"],
            reasons,
            strict=True,
        )
    }
    return ServingState(
        dataset_name, as_of, answers, churn, value, recommenders, versions, reason_values(features, reasons)
    )


def reason_values(features: pd.DataFrame, reasons: list[list[str]]) -> dict[str, dict[str, float]]:
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


Models = tuple[MemberScorer, MemberScorer, dict[RecsKind, Recommender], dict[str, str]]


def _registry_models(home: StateHome) -> Models:
    """The champions of the MLflow registry: churn, value, the recommenders there are, and their versions."""
    client = connect(home)
    churn, churn_version = load_champion(client, ModelKind.churn)
    value, value_version = load_champion(client, ModelKind.value)
    versions = {"churn": str(churn_version.version), "value": str(value_version.version)}
    recommenders = {}
    for kind in RecsKind:
        try:
            recommenders[kind], version = load_recommender(client, kind)
            versions[kind.value] = str(version.version)
        except DataError:  # no champion of that kind: a dataset may have no contents, or products
            continue
    return churn, value, recommenders, versions


def _packed_models() -> Models:
    """Inside a Bento built by `community-ml bento build`: the champions it carries, no registry needed."""
    (churn, churn_version), (value, value_version) = load_packed("churn"), load_packed("value")
    versions = {"churn": churn_version, "value": value_version}
    recommenders = {}
    for kind in RecsKind:
        try:
            model, versions[kind.value] = load_packed(kind.value)
        except DataError:
            continue
        recommenders[kind] = model.recommender
    return churn.scorer, value.scorer, recommenders, versions


def member_scores(state: ServingState, member_ids: list[str]) -> list[dict[str, Any]]:
    """Churn probability, expected value, tier and top reasons per member; unknown members are cold start."""
    return [
        state.answers.get(member)
        or {
            "member_id": member,
            "cold_start": True,
            "churn_probability": None,
            "expected_value": None,
            "tier": "new",
            "top_reasons": [],
        }
        for member in member_ids
    ]


def recommendations(
    state: ServingState,
    kind: RecsKind,
    member_ids: list[str],
    k: int,
    exclude: list[str],
    category: str | None,
    include_seen: bool | None,
) -> list[dict[str, Any]]:
    recommender = state.recommenders.get(kind)
    if recommender is None:
        raise LookupError(f"no champion {kind.value} model is loaded; train one with `community-ml train {kind.value}`")
    exclude_seen = None if include_seen is None else not include_seen
    frame = recommender.recommend(member_ids, k, exclude_seen, exclude, category)
    items: dict[str, list[dict[str, Any]]] = {}
    cold: dict[str, bool] = {}
    for row in frame.itertuples(index=False):  # one pass, whatever the batch size
        items.setdefault(row.member_id, []).append(
            {"item_id": str(row.item_id), "rank": int(row.rank), "score": float(row.score)}
        )
        cold[row.member_id] = bool(row.cold_start)
    return [
        {"member_id": m, "cold_start": cold.get(m, m not in recommender._rows), "items": items.get(m, [])}
        for m in member_ids
    ]
