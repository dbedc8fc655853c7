"""Uplift families: each member's predicted change in a campaign's outcome if pushed (treated minus not treated).

- "t-learner": two LightGBM models of the outcome, one fitted on the treated arm and one on the control; the
  uplift is their difference.
- "x-learner" (Künzel et al. 2019): the two outcome models impute each member's own effect (a treated member's
  outcome less what the control model expected of them, and the reverse), two LightGBM models learn those
  effects, and their predictions are blended by the treated share.
- "random": no targeting; every member gets the campaign's average effect, so any order of them is as good as
  another. The baseline the learners must beat, and what serves when none does.

Training fits them (training/uplift/fit.py); this module scores with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from serving.models.base import MemberModel
from serving.models.families.gbm import GBMSpec, model_matrix, rows_matrix
from serving.models.families.single_row import Output, SingleRow
from serving.models.inputs import InputContext

UPLIFT_FAMILIES = ("x-learner", "t-learner", "random")
# Each learner's LightGBM models, by file name: outcome models of control (mu0) and treated (mu1), and the
# X-learner's effect models fitted on the control (tau0) and treated (tau1) members.
BOOSTERS = {"t-learner": ("mu0", "mu1"), "x-learner": ("mu0", "mu1", "tau0", "tau1"), "random": ()}


class UpliftSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["x-learner", "t-learner", "random"]
    kind: str
    features: GBMSpec  # the columns and categories every booster reads
    campaign: str
    outcome: str
    treatment_arm: str
    control_arm: str
    binary: bool  # the outcome is yes/no: outcome models predict probabilities
    treated_share: float  # the X-learner's blend weight (the propensity of a randomized campaign)
    average_effect: float  # the campaign's average effect on the training members: what "random" predicts
    # A conversion lift's worth: what one more buyer spent in the window, in buyers' average baskets (the arms'
    # effect on spend / their effect on conversion: a randomized, Wald ratio); None where not measured.
    baskets_per_conversion: float | None = None


class UpliftModel(MemberModel):
    serves = UPLIFT_FAMILIES  # one class, three families: its spec says which

    def __init__(self, spec: UpliftSpec, boosters: dict[str, lgb.Booster]) -> None:
        self.spec, self.boosters = spec, boosters
        self.kind, self.family = spec.kind, spec.family  # one class, three families: its spec says which
        self.columns = spec.features.columns

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        self.check_columns(features)
        return self._uplift(model_matrix(self.spec.features, features))

    def predict_rows(self, rows: list[dict[str, Any]], context: InputContext | None) -> np.ndarray:
        """Each row through LightGBM's single-row path (single_row.py): the same numbers as `predict`."""
        x = rows_matrix(self.spec.features, rows)
        return self._blend(len(x), {name: single(x)[:, 0] for name, single in self._singles.items()})

    @cached_property
    def _singles(self) -> dict[str, SingleRow]:
        return {name: SingleRow(b, Output.normal) for name, b in self.boosters.items()}

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return self._blend(len(x), {name: b.predict(x) for name, b in self.boosters.items()})

    def _blend(self, n: int, out: dict[str, np.ndarray]) -> np.ndarray:
        """The uplift from the boosters' predictions (by booster name)."""
        if self.spec.family == "random":
            return np.full(n, self.spec.average_effect)
        if self.spec.family == "t-learner":
            return out["mu1"] - out["mu0"]
        share = self.spec.treated_share
        # Where treated members are few, the effect learned on the control members (tau0) weighs more.
        return share * out["tau0"] + (1 - share) * out["tau1"]

    def summary(self) -> dict[str, Any]:
        gains: dict[str, float] = {}
        for booster in self.boosters.values():
            for column, gain in zip(self.columns, booster.feature_importance(importance_type="gain"), strict=True):
                gains[column] = gains.get(column, 0.0) + float(gain)
        return {
            "campaign": self.spec.campaign,
            "outcome": self.spec.outcome,
            "average_effect": self.spec.average_effect,
            "feature_importance": dict(sorted(gains.items(), key=lambda kv: -kv[1])),
        }

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / "spec.json"
        spec_path.write_text(self.spec.model_dump_json(indent=2))
        paths = {"spec": str(spec_path)}
        for name, booster in self.boosters.items():
            booster.save_model(str(folder / f"{name}.txt"))
            paths[name] = str(folder / f"{name}.txt")
        return paths

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> UpliftModel:
        spec = UpliftSpec.model_validate_json(Path(artifacts["spec"]).read_text())
        boosters = {name: lgb.Booster(model_file=str(artifacts[name])) for name in BOOSTERS[spec.family]}
        return cls(spec, boosters)
