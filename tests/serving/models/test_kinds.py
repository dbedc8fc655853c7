"""The table of model kinds: a new kind is one entry in the table plus its family's code, and it trains,
registers, promotes and serves with nothing else changed; a new source of items is one entry too."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from features.dataset.store import Dataset
from features.dataset.synthetic import GROUP_ACTIONS
from features.pipelines.interactions import ITEM_SOURCES, ItemSource
from features.pipelines.point_in_time import Sources
from features.pipelines.snapshots import Snapshot
from serving.models.base import MemberModel
from serving.models.families.baselines import baselines_of
from serving.models.kinds import KINDS, GateMetric, ModelKind, Target
from serving.models.registry import champion, connect
from serving.service import _SERVED
from training.choosing import choose
from training.items.fit import item_families
from training.job import TrainSettings, train
from training.members.fit import MEMBER_FAMILIES, MemberFamily
from training.members.frames import LabelledFrame
from training.members.trainer import MemberTrainer
from training.tracking import logged_predictions


class ConstantModel(MemberModel):
    """The toy family: every member gets the mean of the label over the training data."""

    family = "constant"

    def __init__(self, kind: str, value: float) -> None:
        self.kind, self.value, self.columns = kind, value, []

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), self.value)

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"family": self.family, "kind": self.kind, "value": self.value}))
        return {"spec": str(spec)}

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> ConstantModel:
        spec = json.loads(Path(artifacts["spec"]).read_text())
        return cls(spec["kind"], spec["value"])


def fit_constant(data: LabelledFrame, kind: ModelKind, params: dict, seed: int, horizon_days: int) -> ConstantModel:
    return ConstantModel(kind.name, float(data.frame[str(kind.label)].mean()))


class ShrunkConstantModel(ConstantModel):
    """A second toy family of the same kind, with a parameter to tune: the training mean times `shrink`."""

    family = "shrunk-constant"


def fit_shrunk(data: LabelledFrame, kind: ModelKind, params: dict, seed: int, horizon_days: int) -> ConstantModel:
    return ShrunkConstantModel(kind.name, float(data.frame[str(kind.label)].mean()) * params.get("shrink", 1.0))


def suggest_shrink(trial: optuna.Trial) -> dict:
    return {"shrink": trial.suggest_float("shrink", 0.5, 1.0)}


# Expected orders over the horizon, judged by RMSE against the amount baselines (which predict spend, so a
# member's mean order count beats them easily: the toy is meant to pass the gate, not to be useful).
ORDERS = ModelKind(
    "orders",
    "orders each member will place over the horizon (a toy: the training mean, or a tuned share of it)",
    Target.amount,
    families=("constant", "shrunk-constant"),
    gate=(GateMetric("rmse", higher_is_better=False),),
    label="future_orders",
    output="expected_orders",
)


@contextmanager
def toy_kind() -> Iterator[ModelKind]:
    """The toy kind and its two families, added the way a new kind is: a table entry, and for each family its
    algorithm (its class: how a saved model loads and scores) and its record (how it is fitted; what Optuna
    searches)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(KINDS, ORDERS.name, ORDERS)
        # (each family's class, defined above, registered itself: it is the family's algorithm)
        for record in (
            MemberFamily(ConstantModel.family, fit_constant),
            MemberFamily(ShrunkConstantModel.family, fit_shrunk, suggest_shrink),
        ):
            patch.setitem(MEMBER_FAMILIES, record.name, record)
        yield ORDERS


@pytest.mark.slow
def test_a_kind_added_to_the_table_trains_registers_promotes_and_serves(
    home: StateHome, shop: Dataset, http: TestClient, tmp_path: Path
) -> None:
    try:
        with toy_kind() as orders:
            # when: the one training job trains it, tuning what can be tuned
            result = train(shop, orders, TrainSettings(training_cutoffs=2, test_cutoffs=1, trials=2))
            # then: every learned family it declares is tuned (the one with parameters) and judged beside its
            # target's baselines; the candidate is the gate's own choice; registered and promoted
            trials = pd.read_csv(connect(home).download_artifacts(result.run_id, "optuna_trials.csv", str(tmp_path)))
            assert set(trials["family"]) == {"shrunk-constant"} and len(trials) == 2
            amounts = set(baselines_of(Target.amount))
            assert {*result.rivals, result.family} == {"constant", "shrunk-constant", *amounts}
            judged = {**result.rivals, result.family: result.metrics}
            job = MemberTrainer()
            evidence = logged_predictions(connect(home), result.run_id)  # the per-member predictions it was judged on
            assert evidence is not None and evidence.has(*judged)
            chosen = choose(orders, judged, job.servable(orders), job.learned(orders), evidence=evidence)
            assert (result.family, result.choice) == chosen
            assert result.promoted, result.reasons
            assert str(champion(connect(home), "shop", orders).version) == result.version == "1"
            constant = mlflow.pyfunc.load_model("models:/shop.orders@champion").unwrap_python_model().model
            assert isinstance(constant, ConstantModel) and constant.family == result.family and 0 < constant.value < 5
            # and the service, once reloaded, answers with it beside the other member kinds, naming it
            assert http.post("/reload", json={}).status_code == 200
            body = http.post("/score", json={"member_ids": ["M000001", "NOBODY"]}).json()
    finally:
        http.post("/reload", json={})  # the service of the other tests knows the table's own kinds only
    known, cold = body["members"]
    assert known["expected_orders"] == pytest.approx(constant.value) and known["churn_probability"] is not None
    assert cold["cold_start"] and cold["expected_orders"] is None
    assert body["models"]["orders"] == {"name": "shop.orders", "version": "1", "family": result.family}
    assert set(body["models"]) == {"churn", "value", "orders"}


def group_interactions_expr(src: Sources, as_of: datetime) -> ir.Table:
    """How often each member took part in each community group (messages, check-ins, events) before T."""
    assert src.engagements is not None
    e = src.engagements
    e = e.filter(e.ts < ibis.timestamp(as_of), e.group_id.notnull(), e.action.isin(GROUP_ACTIONS))
    return e.group_by(["member_id", e.group_id.name("item_id")]).aggregate(weight=e.count().cast("float32"))


# A third source of items, community groups, and a kind that recommends them: one entry each.
GROUP_ITEMS = ItemSource("groups", "group_id", "engagements", "group_type", group_interactions_expr, GROUP_ACTIONS)
GROUP_RECS = ModelKind(
    "group-recs",
    "community groups each member should take part in next (none they already do)",
    Target.items,
    families=("als",),
    gate=(GateMetric("precision", True), GateMetric("ndcg", True)),
    items=GROUP_ITEMS,
    exclude_seen=True,
)


@pytest.mark.slow
def test_an_item_source_added_as_one_entry_is_built_trained_and_served_with_fresh_events(
    home: StateHome, shop: Dataset, http: TestClient
) -> None:
    try:
        with pytest.MonkeyPatch.context() as patch:
            # given: the source declared (features/pipelines/interactions.py) and a kind of the table naming it
            patch.setitem(ITEM_SOURCES, GROUP_ITEMS.matrix, GROUP_ITEMS)
            patch.setitem(KINDS, GROUP_RECS.name, GROUP_RECS)
            # when: the one training job trains it
            result = train(shop, GROUP_RECS, TrainSettings(trials=0))
            # then: the snapshot holds the source's matrix, every recommender family is judged on it, and the
            # gate's choice is registered and promoted
            snapshot = Snapshot(shop, result.as_of)
            groups = snapshot.interactions("groups")
            assert groups.item_ids.size > 0 and all(str(g).startswith("G") for g in groups.item_ids)
            assert {*result.rivals, result.family} == set(item_families(GROUP_RECS))
            assert result.promoted, result.reasons
            # and the service, once reloaded, serves it; a member's fresh group activity counts in the next list
            assert http.post("/reload", json={}).status_code == 200
            # (a member new to the community: the shared community's members are compared with batch scoring)
            member = "M-NEW-TO-GROUPS"
            asked = {"kind": "group-recs", "member_ids": [member], "k": 5}
            first = http.post("/recommend", json=asked).json()
            listed = [i["item_id"] for i in first["members"][0]["items"]]
            assert listed and all(i.startswith("G") for i in listed)
            assert first["models"]["group-recs"]["family"] == result.family
            took = listed[0]
            event = {"member_id": member, "ts": "2026-03-31T12:00:00", "action": "message", "group_id": took}
            assert http.post("/events", json={"engagements": [event]}).status_code == 200
            # (whichever family the gate chose: only the store's record is the same for every family; how a family
            # folds fresh interactions in is tested with the table's own sources)
            assert _SERVED[0].state.online.items([member], "groups") == {member: {took: 1.0}}
    finally:
        http.post("/reload", json={})  # the service of the other tests knows the table's own sources and kinds
