"""Member families made of other member models: the two-part value model and the value blend.

- "two-part": the probability that a member buys in the horizon times what a buyer is expected to spend. Most
  members spend nothing in H and a few spend a lot (the view of Wang, Liu and Miao 2019, "A Deep Probabilistic
  Model for Customer Lifetime Value Prediction"), so each part learns what it can: the first is LightGBM as churn
  learns it (calibrated; buying is not churning), the second LightGBM on buyers only, on a log scale.
- "blend": non-negative weights over other value families' predictions (LightGBM, two-part, the shrunk run rate,
  BG/NBD + Gamma-Gamma), fitted on the newest training cutoff from parts trained on the cutoffs before it.

Each part is saved by its own family beside the combination's spec.json, its artefacts named `PART.NAME`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from serving.models.base import MEMBER_CLASSES, MemberModel, read_spec
from serving.models.inputs import InputContext


class CombinedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str  # "two-part" or "blend"
    kind: str
    parts: list[str]  # the parts' names, in order (two-part: buy, spend; blend: the families blended)
    weights: list[float] = []  # blend: each part's weight
    note: str = ""  # how the weights were fitted


class CombinedModel(MemberModel):
    """A member model whose prediction combines its parts' predictions (the combination is the subclass's)."""

    def __init__(self, spec: CombinedSpec, parts: list[MemberModel]) -> None:
        self.spec, self.parts, self.kind = spec, parts, spec.kind
        self.columns = list(dict.fromkeys(c for part in parts for c in part.columns))

    def combine(self, predictions: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        for part in self.parts:  # each adds what it computes from the population; the next finds it there
            features = part.prepare(features)
        return features

    def input_context(self, population: pd.DataFrame) -> InputContext | None:
        return next((c for part in self.parts if (c := part.input_context(population)) is not None), None)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        self.check_columns(features)
        return self.combine([part.predict(features) for part in self.parts])

    def predict_rows(self, rows: list[dict[str, Any]], context: InputContext | None) -> np.ndarray:
        return self.combine([part.predict_rows(rows, context) for part in self.parts])

    def predict_explained_rows(
        self, rows: list[dict[str, Any]], context: InputContext | None, k: int = 3
    ) -> tuple[np.ndarray, list[list[str]]]:
        """The reasons of the part that weighs most (two-part: whether the member buys at all)."""
        predictions, reasons = [], [[] for _ in rows]
        for i, part in enumerate(self.parts):
            if i == self._explaining:
                predicted, reasons = part.predict_explained_rows(rows, context, k)
            else:
                predicted = part.predict_rows(rows, context)
            predictions.append(predicted)
        return self.combine(predictions), reasons

    def top_reasons(self, features: pd.DataFrame, k: int = 3) -> list[list[str]]:
        return self.parts[self._explaining].top_reasons(features, k)

    @property
    def _explaining(self) -> int:
        return int(np.argmax(self.spec.weights)) if self.spec.weights else 0

    def summary(self) -> dict[str, Any]:
        return {
            "parts": {name: part.summary() for name, part in zip(self.spec.parts, self.parts, strict=True)},
            **self.spec.model_dump(exclude={"family", "kind", "parts"}),
        }

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "spec.json"
        spec.write_text(self.spec.model_dump_json(indent=2))
        artifacts = {"spec": str(spec)}
        for name, part in zip(self.spec.parts, self.parts, strict=True):
            artifacts |= {f"{name}.{k}": v for k, v in part.save(folder / name).items()}
        return artifacts

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> CombinedModel:
        spec = CombinedSpec.model_validate(json.loads(Path(artifacts["spec"]).read_text()))
        parts = []
        for name in spec.parts:  # each part is loaded by its own family's class
            own = {k.removeprefix(f"{name}."): v for k, v in artifacts.items() if k.startswith(f"{name}.")}
            parts.append(MEMBER_CLASSES[str(read_spec(own)["family"])].load(own))
        return cls(spec, parts)


class TwoPartModel(CombinedModel):
    """P(buys in the horizon) x E[spend | buys]; its first part predicts the chance of not buying (churn's
    output), its reasons are the second's (what raises a buyer's spend)."""

    family = "two-part"

    def combine(self, predictions: list[np.ndarray]) -> np.ndarray:
        churns, spend = predictions
        return (1.0 - churns) * spend

    @property
    def _explaining(self) -> int:
        return 1


class BlendModel(CombinedModel):
    """Σ weight x part's prediction, weights non-negative."""

    family = "blend"

    def combine(self, predictions: list[np.ndarray]) -> np.ndarray:
        return np.sum([w * p for w, p in zip(self.spec.weights, predictions, strict=True)], axis=0)
