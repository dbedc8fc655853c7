"""Member answers per request: every member champion's output, the tier and the top reasons, computed from the
members' online rows when they are asked for, never for the whole community in advance.

What a member's answer depends on beyond their own row is fitted once on the snapshot's population when the
service loads (the BG/NBD fit and RFM distributions the model inputs are computed against, and where the tiers
split), so a member who has had no event since the snapshot gets exactly the answer batch scoring writes for them,
and a member with new events is scored against the same population.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.online import Row
from features.progress import step
from serving.models.base import MemberModel
from serving.models.champions import Champions
from serving.models.inputs import InputContext
from serving.models.kinds import CHURN, VALUE, Task
from serving.models.tiers import TierCuts, TierSettings


@dataclass(frozen=True)
class MemberScorer:
    champions: Champions
    columns: list[str]  # the snapshot's feature columns
    contexts: dict[str, InputContext | None]  # by kind
    cuts: TierCuts

    @classmethod
    def fit(cls, champions: Champions, population: pd.DataFrame, tiers: TierSettings | None = None) -> MemberScorer:
        """Fitted on the snapshot's members, in the online table's order (ties in tiers go by that position)."""
        with step(f"fitting the member models' population context on {len(population):,} members"):
            contexts = {c.kind.name: _model(c.model).input_context(population) for c in champions.of(Task.member)}
            # Models that read the same inputs share one context: a request computes them once.
            shared: dict[tuple[Any, ...], InputContext] = {}
            for name, context in contexts.items():
                if context is not None:
                    key = (context.horizon_days, tuple(sorted(context.btyd.params().items())))
                    contexts[name] = shared.setdefault(key, context)
            outputs = {
                c.kind.output: _model(c.model).predict(_with(population, contexts[c.kind.name]))
                for c in champions.of(Task.member)
            }
            cuts = TierCuts.of(
                outputs[CHURN.output],
                outputs[VALUE.output],
                population["spend_180d"].to_numpy(dtype=float),
                population["tenure_days"].to_numpy(dtype=float),
                population["frequency"].to_numpy(dtype=float),
                tiers,
            )
        columns = [c for c in population.columns if c != "member_id"]
        return cls(champions, columns, contexts, cuts)

    @property
    def outputs(self) -> list[str]:
        return [str(c.kind.output) for c in self.champions.of(Task.member)]

    def score(self, rows: list[Row], positions: list[float]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if not rows:
            return [], []
        """Each row's outputs, tier and top reasons (answers), and the values of the features behind its reasons
        (for the prediction log). `positions`: each member's place in the population."""
        outputs: dict[str, np.ndarray] = {}
        prepared: dict[int, list[Row]] = {}
        churn_rows = rows
        for champion in self.champions.of(Task.member):
            context = self.contexts[champion.kind.name]
            if id(context) not in prepared:
                prepared[id(context)] = rows if context is None else context.with_rows(rows)
            model_rows = prepared[id(context)]
            outputs[champion.kind.output] = _model(champion.model).predict_rows(model_rows, context)
            if champion.kind is CHURN:
                churn_rows = model_rows
        churn = self.champions[CHURN]
        reasons = _model(churn.model).top_reasons_rows(churn_rows, self.contexts[CHURN.name])
        answers, inputs = [], []
        for i, row in enumerate(rows):
            values = {name: float(outputs[name][i]) for name in outputs}
            tier = self.cuts.tier(
                values[CHURN.output],
                values[VALUE.output],
                _float(row.get("spend_180d")),
                _float(row.get("tenure_days")),
                _float(row.get("frequency")),
                positions[i],
            )
            recency = row.get("recency_days")  # days since the last order, counting orders since the snapshot
            answers.append({**values, "recency_days": recency, "tier": tier, "top_reasons": reasons[i]})
            inputs.append({name: _logged(churn_rows[i].get(name)) for name in reasons[i]})
        return answers, inputs


def _with(frame: pd.DataFrame, context: InputContext | None) -> pd.DataFrame:
    return frame if context is None else context.apply(frame)


def _model(model: Any) -> MemberModel:
    assert isinstance(model, MemberModel)
    return model


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _logged(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN (no history) is logged as null
