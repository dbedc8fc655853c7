"""Member answers per request: every member champion's output, the tier and the top reasons, computed from the
members' online rows when they are asked for, never for the whole community in advance.

What a member's answer depends on beyond their own row is fitted once on the snapshot's population when the
service loads (the BG/NBD fit and RFM distributions the model inputs are computed against, and where the tiers
split), so a member who has had no event since the snapshot gets exactly the answer batch scoring writes for them,
and a member with new events is scored against the same population.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.common.progress import step
from features.dataset.store import made_once
from serving.models.base import MemberModel
from serving.models.btyd import BTYD
from serving.models.champions import Champions
from serving.models.inputs import INPUTS, InputContext
from serving.models.kinds import Task
from serving.models.tiers import TierCuts, TierInputs, TierSettings, tiers_unavailable
from serving.online.table import OnlineTable, Row

SCORER_LAYOUT = 2  # what a cached scorer's files hold (2: the population's model inputs too)


@dataclass(frozen=True)
class MemberScorer:
    champions: Champions
    columns: list[str]  # the snapshot's feature columns
    contexts: dict[str, InputContext | None]  # by kind
    cuts: TierCuts | None  # None: no tiers (they need the churn and value champions)

    @classmethod
    def fit(cls, champions: Champions, population: pd.DataFrame, tiers: TierSettings | None = None) -> MemberScorer:
        """Fitted on the snapshot's members, in the online table's order (ties in tiers go by that position)."""
        with step(f"fitting the member models' population context on {len(population):,} members"):
            contexts = {c.kind.name: _model(c.model).input_context(population) for c in champions.of(Task.member)}
            # Models that read the same inputs share one context: a request computes them once. Each keeps the
            # population's own inputs, which a member whose row has not changed reads instead of computing them.
            shared: dict[tuple[Any, ...], InputContext] = {}
            prepared: dict[int, pd.DataFrame] = {}
            for name, context in contexts.items():
                if context is not None:
                    key = (context.horizon_days, tuple(sorted(context.btyd.params().items())))
                    if key not in shared:
                        frame = context.apply(population)
                        shared[key] = replace(context, known=frame[list(INPUTS)].to_numpy(dtype=np.float64))
                        prepared[id(shared[key])] = frame
                    contexts[name] = shared[key]
            outputs = {
                c.kind.output: _model(c.model).predict(prepared.get(id(contexts[c.kind.name]), population))
                for c in champions.of(Task.member)
            }
            cuts = None
            if tiers_unavailable(champions) is None:
                cuts = TierCuts.of(TierInputs.of(outputs, population), tiers)
        columns = [c for c in population.columns if c != "member_id"]
        return cls(champions, columns, contexts, cuts)

    @classmethod
    def cached(cls, champions: Champions, table: OnlineTable, features: Callable[[], pd.DataFrame]) -> MemberScorer:
        """Fitted once per snapshot and set of member champions, then read back (a restart, another worker, a
        reload with the same models): beside the online table, which a rebuilt snapshot replaces whole.
        `features`: the snapshot's features, read only when there is nothing to read back."""
        members = champions.of(Task.member)
        named = [SCORER_LAYOUT, sorted((c.name, c.version) for c in members)]
        key = hashlib.sha256(json.dumps(named).encode()).hexdigest()[:12]
        path = table.folder / f"scorer-{key}.npz"

        def fit_and_write() -> None:
            population = features().sort_values("member_id", key=lambda s: s.str.encode("utf-8"), kind="stable")
            cls.fit(champions, population.reset_index(drop=True))._write(path)

        # One worker fits while the others wait, and every one reads back what it wrote (the inputs memory-mapped):
        # fitting holds the whole population (at 2,000,000 members 160 s and several GB), which every worker
        # fitting at once would multiply.
        made_once(path, fit_and_write, lock=path.with_name(f".{path.stem}.lock"))
        return cls._read(champions, table.columns, path)

    def _write(self, path: Path) -> None:
        contexts = list({id(c): c for c in self.contexts.values() if c is not None}.values())
        for i, c in enumerate(contexts):  # memory-mapped when read back: a worker pages in the members it serves
            assert c.known is not None
            _save_array(path.with_name(f"{path.stem}-inputs-{i}.npy"), c.known)
        arrays = {
            f"{name}_{i}": getattr(c, name)
            for i, c in enumerate(contexts)
            for name in ("recency", "frequency", "monetary")
        }
        meta = {
            "contexts": [{"horizon_days": c.horizon_days, "btyd": c.btyd.params(), "never": c.never} for c in contexts],
            "by_kind": {
                k: None if c is None else next(i for i, x in enumerate(contexts) if x is c)
                for k, c in self.contexts.items()
            },
            "cuts": None
            if self.cuts is None
            else {
                "settings": self.cuts.settings.model_dump(),
                "risk": self.cuts.risk,
                "high": self.cuts.high,
                "potential": self.cuts.potential,
            },
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)

    @classmethod
    def _read(cls, champions: Champions, columns: list[str], path: Path) -> MemberScorer:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            contexts = [
                InputContext(
                    c["horizon_days"],
                    BTYD.from_params(c["btyd"]),
                    c["never"],
                    z[f"recency_{i}"],
                    z[f"frequency_{i}"],
                    z[f"monetary_{i}"],
                    np.load(path.with_name(f"{path.stem}-inputs-{i}.npy"), mmap_mode="r"),
                )
                for i, c in enumerate(meta["contexts"])
            ]
        cuts = meta["cuts"]
        tier_cuts = None
        if cuts is not None:
            tier_cuts = TierCuts(
                TierSettings(**cuts["settings"]),
                *(None if cuts[k] is None else tuple(cuts[k]) for k in ("risk", "high", "potential")),
            )
        by_kind = {k: None if i is None else contexts[i] for k, i in meta["by_kind"].items()}
        return cls(champions, columns, by_kind, tier_cuts)

    def warm(self, table: OnlineTable) -> None:
        """Scores the table's first member once: what models build at first use (the trees' path table, the
        single-row predictors) is built at load, not while the first callers wait."""
        if len(table):
            self.score([table.row_at(0)], [0.0], [False])

    @property
    def outputs(self) -> list[str]:
        return [str(c.kind.output) for c in self.champions.of(Task.member)]

    def score(
        self, rows: list[Row], positions: list[float], changed: list[bool] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each row's outputs, tier and top reasons (answers), and the values of the features behind its reasons
        (for the prediction log). `positions`: each member's place in the population; `changed`: whether events
        changed their row since the snapshot (default: all did)."""
        if not rows:
            return [], []
        outputs: dict[str, np.ndarray] = {}
        prepared: dict[int, list[Row]] = {}
        explaining = self.champions.explaining()
        assert explaining is not None  # a scorer is made for member champions only
        known_at = self._known_at(positions, changed)
        reasons_rows, reasons = rows, [[] for _ in rows]
        for champion in self.champions.of(Task.member):
            context = self.contexts[champion.kind.name]
            if id(context) not in prepared:
                prepared[id(context)] = rows if context is None else context.with_rows(rows, known_at)
            model_rows = prepared[id(context)]
            model = _model(champion.model)
            if champion is explaining:  # its predictions and reasons from one pass
                outputs[champion.kind.output], reasons = model.predict_explained_rows(model_rows, context)
                reasons_rows = model_rows
            else:
                outputs[champion.kind.output] = model.predict_rows(model_rows, context)
        answers, inputs = [], []
        for i, row in enumerate(rows):
            values = {name: float(outputs[name][i]) for name in outputs}
            tier = None if self.cuts is None else self.cuts.tier(values, row, positions[i])
            recency = row.get("recency_days")  # days since the last order, counting orders since the snapshot
            answers.append({**values, "recency_days": recency, "tier": tier, "top_reasons": reasons[i]})
            inputs.append({name: _logged(reasons_rows[i].get(name)) for name in reasons[i]})
        return answers, inputs

    def output(self, kind: str, rows: list[Row], positions: list[float], changed: list[bool]) -> np.ndarray:
        """One champion's output per row, without reasons or tiers (`/next_action` asks the uplift alone)."""
        champion = next(c for c in self.champions.of(Task.member) if c.kind.name == kind)
        context = self.contexts[kind]
        model_rows = rows if context is None else context.with_rows(rows, self._known_at(positions, changed))
        return _model(champion.model).predict_rows(model_rows, context)

    def _known_at(self, positions: list[float], changed: list[bool] | None) -> list[int | None]:
        """Each row's place in the snapshot's population where events left it unchanged (its inputs are read
        from there), else None."""
        members = next((len(c.known) for c in self.contexts.values() if c is not None and c.known is not None), 0)
        return [
            int(p) if changed is not None and not changed[i] and p < members else None for i, p in enumerate(positions)
        ]


def _save_array(path: Path, values: np.ndarray) -> None:
    """Written under a temporary name and renamed: a reader sees the whole array or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
    np.save(tmp, values)
    tmp.replace(path)


def _model(model: Any) -> MemberModel:
    assert isinstance(model, MemberModel)
    return model


def _logged(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN (no history) is logged as null
