"""What every model family offers the rest of the project, whatever its algorithm.

A member model scores members from their feature rows; an item model ranks items for members. Both are saved as
files beside a `spec.json` whose "family" and "kind" say how to load them (`load_model` in
serving/models/families/__init__.py), so the registry holds no pickled Python objects.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.common.errors import DataError
from serving.models.inputs import rows_frame

if TYPE_CHECKING:
    from serving.models.inputs import InputContext


def read_spec(artifacts: Mapping[str, str]) -> dict[str, Any]:
    """The saved model's spec.json, with at least its "family" and "kind"."""
    return json.loads(Path(artifacts["spec"]).read_text())


class MemberModel(ABC):
    """A fitted model of a member kind (churn, value, ...): one number per feature row.

    A member family's class is its registration: defining a subclass with a `family` (or the `serves` it loads,
    for one class serving several families) is what lets `load_model` load that family's saved models."""

    family: ClassVar[str]
    serves: ClassVar[tuple[str, ...]] = ()  # the families whose saved models this class loads (default: `family`)
    kind: str
    columns: list[str]  # the snapshot features it reads

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("family")
        for name in cls.__dict__.get("serves") or ((own,) if isinstance(own, str) else ()):
            MEMBER_CLASSES[name] = cls

    @abstractmethod
    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """The kind's output per row (a probability, an amount)."""

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features with whatever the model computes from the scored population itself (the model inputs of
        serving/models/inputs.py): done once, the models that read the same inputs then share them."""
        return features

    def predict_rows(self, rows: list[dict[str, Any]], context: InputContext | None) -> np.ndarray:
        """`predict` for the few members of a request: rows (feature name -> value) that carry the model inputs
        of `context` (`InputContext.with_rows`)."""
        return self.predict(rows_frame(rows, None if context is None else context.horizon_days))

    def top_reasons_rows(self, rows: list[dict[str, Any]], context: InputContext | None, k: int = 3) -> list[list[str]]:
        return self.top_reasons(rows_frame(rows, None if context is None else context.horizon_days), k)

    def predict_explained_rows(
        self, rows: list[dict[str, Any]], context: InputContext | None, k: int = 3
    ) -> tuple[np.ndarray, list[list[str]]]:
        """`predict_rows` and `top_reasons_rows` at once (a family that can, from one pass over its model)."""
        return self.predict_rows(rows, context), self.top_reasons_rows(rows, context, k)

    def input_context(self, population: pd.DataFrame) -> InputContext | None:
        """What `prepare` computes from the scored population, fitted on `population` once, to compute any
        member's inputs later (None: the model reads none)."""
        return None

    def top_reasons(self, features: pd.DataFrame, k: int = 3) -> list[list[str]]:
        """The features that push each member's score up the most, strongest first (none, for a family that
        cannot say)."""
        return [[] for _ in range(len(features))]

    def summary(self) -> dict[str, Any]:
        """What training logs about the fitted model beside its metrics (feature importance, say)."""
        return {}

    @abstractmethod
    def save(self, folder: Path) -> dict[str, str]:
        """Writes spec.json and the family's files; returns their paths by artefact name."""

    @classmethod
    @abstractmethod
    def load(cls, artifacts: Mapping[str, str]) -> Self:
        """The model saved by `save`."""

    def check_columns(self, features: pd.DataFrame) -> None:
        """A clear error, not silently empty values, when a snapshot lacks a column the model was trained on."""
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise DataError(
                f"the {self.kind} model was trained on features this snapshot lacks ({shown}): the dataset's "
                f"tables changed since it was trained; retrain it with `community-ml train {self.kind}`"
            )


# Member model classes by the families they load (each class adds itself when defined: see MemberModel).
MEMBER_CLASSES: dict[str, type[MemberModel]] = {}


class Ranked(NamedTuple):
    """One member's list: item ids and scores, best first, and whether it is a cold-start list."""

    items: list[str]
    scores: list[float]
    cold_start: bool


class ListRules(BaseModel):
    """What a member's list may hold, as the API, batch export and service ask for it: one typed value (frozen, so
    requests with the same rules can be answered together)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(10, ge=1, le=100, description="items per member")
    include_seen: bool | None = Field(None, description="the member's own items may come back (None: the kind's)")
    exclude: tuple[str, ...] = Field((), description="item ids never to list")
    category: str | None = Field(None, description="only items of this category or content type")
    published_since: date | None = Field(
        None, description="only items published on or after this day (what's new for the member)"
    )

    @property
    def exclude_seen(self) -> bool | None:
        """The models' own terms: None keeps the kind's default."""
        return None if self.include_seen is None else not self.include_seen


class ItemModel(ABC):
    """A fitted model of an item kind (product or content recommendations)."""

    family: str
    kind: str
    member_ids: np.ndarray  # the members it knows, by row
    item_ids: np.ndarray  # the items it can recommend, by column
    popularity: np.ndarray  # members per item: the cold-start order

    @abstractmethod
    def recommend(
        self,
        member_ids: list[str],
        k: int = 10,
        exclude_seen: bool | None = None,
        exclude: list[str] | None = None,
        category: str | None = None,
        *,
        published_since: date | None = None,
        now: datetime | None = None,
    ) -> pd.DataFrame:
        """member_id, rank, item_id, score, cold_start per member, in the order asked; unknown members get the
        popular items of their segment."""

    @abstractmethod
    def ranked(
        self,
        member_ids: list[str],
        k: int = 10,
        exclude_seen: bool | None = None,
        exclude: list[str] | None = None,
        category: str | None = None,
        fresh: Mapping[str, Mapping[str, float]] | None = None,
        *,
        published_since: date | None = None,
        now: datetime | None = None,
        evidence: Any = None,
    ) -> list[Ranked]:
        """What `recommend` answers, as one (items, scores, cold_start) list per member, in the order asked, without
        a DataFrame; `fresh`: members' interactions since training, folded in where the family can. Items published
        after `now` (the clock by default) never appear; with `published_since`, only items published on or after
        it do; `evidence`: what happened to new items since they were published."""

    def takes_new_items(self, rules: ListRules, now: datetime) -> bool:
        """Whether lists under these rules may take in new items now (then they change with the clock and what
        happens to the items, and are not kept)."""
        return False

    def update_items(self, items: pd.DataFrame) -> int:
        """Items as the catalogue now holds them (index item_id): see the family's own. Returns how many were
        new items."""
        return 0

    @abstractmethod
    def similar_items(self, item_id: str, k: int = 10) -> pd.DataFrame:
        """item_id, rank, score of the items most like `item_id`; KeyError for an unknown item."""

    @abstractmethod
    def knows_member(self, member_id: str) -> bool: ...

    @abstractmethod
    def knows_item(self, item_id: str) -> bool: ...

    @abstractmethod
    def forget(self, member_ids: set[str]) -> None:
        """Treats these members as never seen (their data stays out of every answer)."""

    def summary(self) -> dict[str, Any]:
        return {"members": len(self.member_ids), "items": len(self.item_ids)}

    @abstractmethod
    def save(self, folder: Path) -> dict[str, str]: ...

    @classmethod
    @abstractmethod
    def load(cls, artifacts: Mapping[str, str]) -> Self: ...
