"""The table of model kinds: a new kind is one entry in the table plus its family's code, and it trains,
registers, promotes and serves with nothing else changed."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.models.base import MemberModel
from serving.models.families.baselines import baselines_of
from serving.models.kinds import KINDS, GateMetric, ModelKind, Target
from serving.models.registry import champion, connect
from training.choosing import choose
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
