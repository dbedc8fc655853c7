"""The "lightgbm" family of member models: a LightGBM booster over the snapshot's features and the model inputs
(the classic models' view of each member, serving/models/inputs.py), with its output turned into what the kind
predicts: a calibrated probability, or an amount as a correction of the best baseline's prediction.

Training fits the booster (training/members/fit.py); this module scores with it, for the service, batch scoring
and monitoring alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from serving.models.base import MemberModel
from serving.models.calibration import logit, platt
from serving.models.families.baselines import BASELINES, Columns
from serving.models.families.paths import PathTable
from serving.models.families.single_row import Output, SingleRow
from serving.models.inputs import INPUT_SOURCES, INPUTS, InputContext, ModelRows, RowColumns, with_inputs
from serving.models.kinds import Target


class GBMSpec(BaseModel):
    """Everything besides the booster that scoring needs, stored as JSON beside it."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["lightgbm"] = "lightgbm"
    kind: str
    target: Target
    columns: list[str]
    categories: dict[str, list[str]]
    horizon_days: int
    # Binary targets: Platt scaling of the booster's log-odds, p = sigmoid(slope * logit + intercept).
    calibration_slope: float = 1.0
    calibration_intercept: float = 0.0
    # Amount targets: the baseline family whose prediction the booster corrects (its log is the starting score);
    # or, without one, a booster of log(1 + amount) whose prediction is turned back into an amount by Duan's
    # smearing: E[amount] = exp(prediction) x mean(exp(residual)) - 1 (the mean over the validation rows).
    offset: str | None = None
    smearing: float | None = None
    # The BG/NBD and Gamma-Gamma fit of the newest training population: for populations too small to fit on.
    btyd: dict[str, float] | None = None

    @property
    def reads_inputs(self) -> bool:
        return any(c in INPUTS for c in self.columns) or self.offset is not None


def offset_of(spec: GBMSpec, frame: Columns) -> np.ndarray:
    """The log of the offset baseline's prediction: an amount model's starting score. A floor of 10 keeps members
    predicted to spend nothing off log(0)."""
    assert spec.offset is not None
    return np.log(BASELINES[spec.offset].score(frame, spec.horizon_days, {}).clip(min=0) + 10.0)


def encode(spec: GBMSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The model matrix: numbers as float, text as the categories fixed at training time."""
    out = pd.DataFrame(index=frame.index)
    for c in spec.columns:
        values = frame[c]
        if c in spec.categories:
            out[c] = pd.Categorical(values.astype("string").astype(object), categories=spec.categories[c])
        else:
            numeric = values.astype("Float64") if values.dtype == "boolean" else values
            out[c] = pd.to_numeric(numeric, errors="coerce").astype("float64")
    return out


def model_matrix(spec: GBMSpec, frame: pd.DataFrame) -> np.ndarray:
    """What the booster scores: `encode`'s matrix as the numbers LightGBM turns it into (a text value is the code
    of its category, an unseen or empty one is missing), built without a DataFrame per call: a single member's row
    costs microseconds instead of milliseconds."""
    x = np.empty((len(frame), len(spec.columns)), dtype=np.float64)
    codes = _category_codes(spec)
    for j, c in enumerate(spec.columns):
        values = frame[c]
        if c in codes:
            lookup = codes[c]
            x[:, j] = [lookup.get(v, np.nan) if isinstance(v, str) else np.nan for v in values.astype(object)]
        else:
            x[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return x


def rows_matrix(spec: GBMSpec, rows: list[dict[str, Any]]) -> np.ndarray:
    """`model_matrix` of rows given as dicts (feature name -> value): a request's few members, without pandas.
    Rows that keep their matrices (`ModelRows`) build one per set of columns, shared by the models that read it."""
    plan = _plan(spec)
    kept = rows.matrices if isinstance(rows, ModelRows) else None
    if kept is not None and plan.signature in kept:
        return kept[plan.signature]
    x = np.empty((len(rows), len(spec.columns)), dtype=np.float64)
    nan = float("nan")
    for i, row in enumerate(rows):
        get = row.get
        x[i, plan.number_at] = [nan if (v := get(c)) is None else v for c in plan.numbers]
        if plan.codes:
            x[i, plan.code_at] = [
                lookup.get(v, nan) if isinstance(v := get(c), str) else nan for c, lookup in plan.codes
            ]
    if kept is not None:
        kept[plan.signature] = x
    return x


@dataclass(frozen=True)
class _Plan:
    """How a model spec's matrix is laid out: its number columns and text columns (with each category's code)
    and where each sits."""

    numbers: list[str]
    number_at: list[int]
    codes: list[tuple[str, dict[str, float]]]
    code_at: list[int]
    signature: tuple[Any, ...]  # the same for specs whose matrices are the same


_PLANS: dict[int, _Plan] = {}


def _plan(spec: GBMSpec) -> _Plan:
    """Worked out once per model spec."""
    key = id(spec)
    if key not in _PLANS:
        codes = _category_codes(spec)
        _PLANS[key] = _Plan(
            [c for c in spec.columns if c not in codes],
            [j for j, c in enumerate(spec.columns) if c not in codes],
            list(codes.items()),
            [spec.columns.index(c) for c in codes],
            (tuple(spec.columns), tuple((c, tuple(v)) for c, v in sorted(spec.categories.items()))),
        )
    return _PLANS[key]


_CODES: dict[int, dict[str, dict[str, float]]] = {}


def _category_codes(spec: GBMSpec) -> dict[str, dict[str, float]]:
    """Each text column's category -> code, worked out once per model spec."""
    key = id(spec)
    if key not in _CODES:
        _CODES[key] = {c: {v: float(i) for i, v in enumerate(cats)} for c, cats in spec.categories.items()}
    return _CODES[key]


def categories_of(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """The categories of every text column, as seen in the training data."""
    return {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in columns
        if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }


class GBMModel(MemberModel):
    """A fitted LightGBM churn or value model (any binary or amount kind), ready to score feature rows."""

    family = "lightgbm"

    def __init__(self, spec: GBMSpec, booster: lgb.Booster) -> None:
        self.spec, self.booster = spec, booster
        self._singles: dict[Output, SingleRow] = {}  # the single-row predictors, made at first use
        self.kind = spec.kind
        snapshot_columns = [c for c in spec.columns if c not in INPUTS]
        self.columns = snapshot_columns + [c for c in INPUT_SOURCES if spec.reads_inputs and c not in snapshot_columns]

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        if not self.spec.reads_inputs:
            return features
        return with_inputs(features, self.spec.horizon_days, self.spec.btyd)

    def input_context(self, population: pd.DataFrame) -> InputContext | None:
        return InputContext.fit(population, self.spec.horizon_days, self.spec.btyd) if self.spec.reads_inputs else None

    def _frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features, with the model inputs where the model reads them."""
        self.check_columns(features)
        return self.prepare(features)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability (binary kinds), or expected amount over the horizon (amount kinds), per row."""
        frame = self._frame(features)
        return self._output(model_matrix(self.spec, frame), frame)

    def predict_rows(self, rows: list[dict[str, Any]], context: InputContext | None) -> np.ndarray:
        """Each row through LightGBM's single-row path (single_row.py): the same numbers as `predict`."""
        output = Output.normal if self.spec.target is Target.binary else Output.raw
        booster_output = self._single(output)(rows_matrix(self.spec, rows))[:, 0]
        return self._finish(booster_output, rows)

    def predict_explained_rows(
        self, rows: list[dict[str, Any]], context: InputContext | None, k: int = 3
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Predictions and top reasons from one pass through the trees: each row's leaves give both its raw score
        (as LightGBM adds it up) and its contributions (paths.py)."""
        leaves = self._single(Output.leaves)(rows_matrix(self.spec, rows))
        explained = [self.paths.explain(row) for row in leaves]
        raw = np.array([r for r, _ in explained], dtype=np.float64)
        if self.spec.target is Target.binary:  # LightGBM's binary transform, on the same raw score
            raw = np.array([1.0 / (1.0 + math.exp(-self._sigmoid * r)) for r in raw], dtype=np.float64)
        contributions = np.array([c for _, c in explained]).reshape(len(rows), len(self.spec.columns))
        return self._finish(raw, rows), self._reasons(contributions, k)

    @cached_property
    def _sigmoid(self) -> float:
        """The binary objective's sigmoid parameter (LightGBM's default 1), as its model file states it."""
        objective = self.booster.dump_model(num_iteration=1).get("objective", "")
        found = re.search(r"sigmoid:([0-9.eE+-]+)", objective)
        return float(found.group(1)) if found else 1.0

    def _single(self, output: Output) -> SingleRow:
        single = self._singles.get(output)
        if single is None:
            single = self._singles[output] = SingleRow(self.booster, output)
        return single

    def _finish(self, booster_output: np.ndarray, rows: list[dict[str, Any]]) -> np.ndarray:
        """The kind's output from the booster's (a probability, or the raw score of an amount), as `_output`."""
        if self.spec.target is Target.binary:
            return platt(logit(booster_output), self.spec.calibration_slope, self.spec.calibration_intercept)
        return self._amount(booster_output, RowColumns(rows))

    def _amount(self, raw: np.ndarray, frame: Columns) -> np.ndarray:
        """An amount from the booster's raw score: the offset baseline corrected, or log(1 + amount) smeared back."""
        if self.spec.offset is None:
            return np.clip(np.exp(raw) * (self.spec.smearing or 1.0) - 1.0, 0.0, None)
        return np.exp(raw + offset_of(self.spec, frame))

    def _output(self, x: np.ndarray, frame: pd.DataFrame | None, threads: int = 0) -> np.ndarray:
        if self.spec.target is Target.binary:
            raw = self.booster.predict(x, num_threads=threads)
            return platt(logit(raw), self.spec.calibration_slope, self.spec.calibration_intercept)
        assert frame is not None
        return self._amount(self.booster.predict(x, raw_score=True, num_threads=threads), frame)

    @cached_property
    def paths(self) -> PathTable:
        """The booster's per-leaf contributions (serving/models/families/paths.py), worked out at first use."""
        return PathTable.of(self.booster)

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions to the booster's raw score (path attribution: they add up to the raw
        score minus `paths.bias`)."""
        values = self.paths.contributions(self.booster, model_matrix(self.spec, self._frame(features)))
        return pd.DataFrame(values, columns=self.spec.columns, index=features.index)

    def top_reasons(self, features: pd.DataFrame, k: int = 3) -> list[list[str]]:
        """The k features that push each member's score up the most, strongest first."""
        return self._reasons(self.contributions(features).to_numpy(), k)

    def top_reasons_rows(self, rows: list[dict[str, Any]], context: InputContext | None, k: int = 3) -> list[list[str]]:
        return self.predict_explained_rows(rows, context, k)[1]

    def _reasons(self, contributions: np.ndarray, k: int) -> list[list[str]]:
        order = np.argsort(-contributions, axis=1)[:, :k]
        names = self.spec.columns
        return [[names[j] for j in row if contributions[i, j] > 0] for i, row in enumerate(order)]

    def summary(self) -> dict[str, Any]:
        """Total split gain per feature, largest first."""
        gains = self.booster.feature_importance(importance_type="gain")
        ranked = sorted(zip(self.spec.columns, map(float, gains), strict=True), key=lambda kv: -kv[1])
        return {"feature_importance": dict(ranked)}

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec_path, booster_path = folder / "spec.json", folder / "booster.txt"
        spec_path.write_text(self.spec.model_dump_json(indent=2))
        self.booster.save_model(str(booster_path))
        return {"spec": str(spec_path), "booster": str(booster_path)}

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> GBMModel:
        spec = GBMSpec.model_validate_json(Path(artifacts["spec"]).read_text())
        return cls(spec, lgb.Booster(model_file=str(artifacts["booster"])))
