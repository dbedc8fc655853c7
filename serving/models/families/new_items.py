"""Items no one has touched yet: scoring an item from its attributes, for every recommender family.

A family knows an item only through the interactions it was trained on. An item published since (or never taken)
has none, so it is placed in the family's own space from its attributes:
- its attributes (tags, category, brand or author, content type and topic, the words of its name or title, its
  price band) are tokens, weighted by how rare they are (tf-idf) in an `AttributeSpace` learned on the catalogue;
- its neighbours: the warm items (those with interactions) whose attributes are most alike (cosine);
- its factors are its neighbours' rows, averaged by likeness (`transfer`): an attribute-to-factor map that needs
  no fitting and serves every family the same way, since each family ranks by member vectors x item rows (ALS's and
  BPR's factors, item-kNN's and EASE's item-item weights, the popularity families' one column). A member's score of
  the new item is then the likeness-weighted mean of their scores of its warm neighbours: "it is like what you
  like", in the family's own terms. (A ridge regression from tokens to factors was measured too, and placed new items
  worse on both benchmarks: experiments/results/new_items.md.)
The same weights transfer popularity: an item's expected reach from its neighbours' (attribute popularity).

Training judges each family's new-item lists beside attribute-only peers (training/items/new_items.py); where a
peer ranks new items better (the member's attribute affinity, or attribute popularity), that peer orders them
(`NewItems.method`). `Evidence` moves a new item with what happened to it since it was published, and the
`NewItemPolicy` (configs/recommenders.yaml) says how many new items a list takes and how new they must be.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.common.config import load_config
from features.pipelines.interactions import csr_arrays, csr_from

# Attribute columns whose values are tokens as they are, by the prefix that keeps columns apart.
VALUE_COLUMNS = {
    "category": "category",
    "brand": "brand",
    "content_type": "type",
    "topic": "topic",
    "author_id": "author",
}
TEXT_COLUMNS = ("name", "title")  # their words are tokens
WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)  # words of three letters or more, digits and codes left out
# Words too common in item names to say anything (the catalogue's idf weighs the rest).
STOP_WORDS = frozenset({"the", "and", "for", "with", "set", "item", "our", "your", "you", "new"})
# A new item's factors are averaged from its 50 most alike warm items, weighted by the square of their likeness:
# chosen on Online Retail's validation window (May to August 2011, never the test window), where 50 and squared
# beat 5, 10, 20 and 100, plain or squared, for ALS, item-kNN and EASE (experiments/results/new_items.md).
NEIGHBOURS = 50
MIN_ITEMS = 2  # a token must describe this many catalogue items to be kept (one item's token says nothing)


def item_tokens(frame: pd.DataFrame) -> list[list[str]]:
    """Each row's attribute tokens (`tag:organic`, `brand:lura`, `word:candle`, `price:7`...), from whichever
    attribute columns the frame has."""
    n = len(frame)
    tokens: list[list[str]] = [[] for _ in range(n)]
    for column, prefix in VALUE_COLUMNS.items():
        if column in frame:
            for row, value in enumerate(frame[column].astype(object).tolist()):
                if not _missing(value):
                    tokens[row].append(f"{prefix}:{str(value).lower()}")
    if "tags" in frame:
        for row, tags in enumerate(frame["tags"].tolist()):
            if isinstance(tags, list | tuple | np.ndarray):
                tokens[row] += [f"tag:{str(t).lower()}" for t in tags]
    for column in TEXT_COLUMNS:
        if column in frame:
            for row, text in enumerate(frame[column].astype(object).tolist()):
                if isinstance(text, str):
                    tokens[row] += [f"word:{w}" for w in WORD.findall(text.lower()) if w not in STOP_WORDS]
    if "price" in frame:
        for row, price in enumerate(pd.to_numeric(frame["price"], errors="coerce").tolist()):
            if not _missing(price) and price >= 0:
                # Half-octave bands: 10 and 14 apart, 9 and 10 together, whatever the currency.
                tokens[row].append(f"price:{math.floor(2 * math.log2(price + 1))}")
    return tokens


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


@dataclass
class AttributeSpace:
    """Tokens and their weights (idf), learned on a catalogue: items become unit-length sparse rows."""

    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, tokens: Sequence[Iterable[str]], min_items: int = MIN_ITEMS) -> AttributeSpace:
        counts: dict[str, int] = {}
        for item in tokens:
            for token in set(item):
                counts[token] = counts.get(token, 0) + 1
        kept = sorted(t for t, c in counts.items() if c >= min_items)
        n = max(len(tokens), 1)
        idf = np.array([math.log((1 + n) / (1 + counts[t])) + 1.0 for t in kept], dtype=np.float32)
        return cls({t: i for i, t in enumerate(kept)}, idf)

    def encode(self, tokens: Sequence[Iterable[str]]) -> sp.csr_matrix:
        """Items x tokens, tf-idf, each row of unit length (an item with no known token is a row of zeros)."""
        rows, cols = [], []
        for row, item in enumerate(tokens):
            for token in set(item):
                if (col := self.vocabulary.get(token)) is not None:
                    rows.append(row)
                    cols.append(col)
        matrix = sp.csr_matrix(
            (self.idf[np.array(cols, dtype=np.int64)] if cols else np.zeros(0, np.float32), (rows, cols)),
            shape=(len(tokens), len(self.vocabulary)),
            dtype=np.float32,
        )
        return _unit_rows(matrix)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"attribute_tokens": np.array(list(self.vocabulary), dtype=str), "attribute_idf": self.idf}

    @classmethod
    def from_arrays(cls, arrays: Any) -> AttributeSpace:
        return cls({str(t): i for i, t in enumerate(arrays["attribute_tokens"])}, np.asarray(arrays["attribute_idf"]))


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix, dtype=np.float32)


def neighbour_weights(new: sp.csr_matrix, warm: sp.csr_matrix, neighbours: int = NEIGHBOURS) -> sp.csr_matrix:
    """New items x warm items: each new item's `neighbours` most alike warm items (cosine of attributes), weighted by
    likeness and summing to 1 (a row of zeros where no warm item shares a token)."""
    likeness = (new @ warm.T).tocsr()
    rows, cols, vals = [], [], []
    for row in range(likeness.shape[0]):
        start, end = likeness.indptr[row], likeness.indptr[row + 1]
        values, columns = likeness.data[start:end], likeness.indices[start:end]
        if len(values) > neighbours:
            top = np.argpartition(-values, neighbours - 1)[:neighbours]
            values, columns = values[top], columns[top]
        values = values * values  # the closest count for more (chosen with NEIGHBOURS)
        total = float(values.sum())
        if total > 0:
            rows += [row] * len(values)
            cols += columns.tolist()
            vals += (values / total).tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=likeness.shape, dtype=np.float32)


def transfer(weights: sp.csr_matrix, values: np.ndarray | sp.spmatrix) -> np.ndarray:
    """The new items' rows of `values` (warm items' factors, item-item weights or popularity): their neighbours'
    rows averaged by `weights`. Dense, as served."""
    out = weights @ values
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


def member_profiles(own: sp.csr_matrix, warm_attributes: sp.csr_matrix) -> sp.csr_matrix:
    """Each member's attribute profile (members x tokens, unit rows): the attributes of the items they took, each
    item counted once however often (what they take, not how much)."""
    took = (own > 0).astype(np.float32)
    return _unit_rows(sp.csr_matrix(took @ warm_attributes))


@dataclass
class Evidence:
    """What happened to new items since they were published, and what it says of their reach.

    Two estimates, whichever the caller's events allow:
    - with `impressions` (a member was shown the item), the item's click-through: a Beta posterior (prior: the
      click-through of new items so far, worth PRIOR_IMPRESSIONS impressions) read at its upper 90% bound, so an
      item shown little is still tried and one shown often and never taken sinks (upper confidence bound, as in
      bandits: deterministic, so a member's list does not flicker between calls);
    - otherwise, its takes per day since published: a Gamma-Poisson posterior around what its attributes predicted
      (worth PRIOR_DAYS days), so a few early takes move it and many move it far.
    Either gives a factor on the item's expected reach; the Blend's reach signal is its logarithm."""

    takes: dict[str, float] = field(default_factory=dict)  # item -> members who took it since published
    shown: dict[str, float] = field(default_factory=dict)  # item -> impressions
    clicked: dict[str, float] = field(default_factory=dict)  # item -> impressions followed by a take

    def prior_ctr(self) -> float:
        """New items' click-through so far, DEFAULT_CTR worth PRIOR_IMPRESSIONS impressions before any."""
        shown, clicked = sum(self.shown.values()), sum(self.clicked.values())
        return (clicked + DEFAULT_CTR * PRIOR_IMPRESSIONS) / (shown + PRIOR_IMPRESSIONS)

    def factor(self, item: str, expected_per_day: float, days_out: float, prior_ctr: float) -> float:
        shown = self.shown.get(item, 0.0)
        if shown > 0:
            a = prior_ctr * PRIOR_IMPRESSIONS + self.clicked.get(item, 0.0)
            b = (1 - prior_ctr) * PRIOR_IMPRESSIONS + shown - self.clicked.get(item, 0.0)
            return beta_upper(a, b) / max(prior_ctr, 1e-6)
        takes = self.takes.get(item, 0.0)
        if not takes or expected_per_day <= 0:
            return 1.0
        posterior = (expected_per_day * PRIOR_DAYS + takes) / (PRIOR_DAYS + max(days_out, 0.0))
        return posterior / expected_per_day


PRIOR_IMPRESSIONS = 20.0
PRIOR_DAYS = 7.0
DEFAULT_CTR = 0.05  # new items' click-through before any impression is posted


def beta_upper(a: float, b: float, z: float = 1.2816) -> float:
    """The upper 90% bound of a Beta(a, b) (normal approximation: exact enough to rank, and cheap per request)."""
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return min(mean + z * sd, 1.0)


DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "recommenders.yaml"


class NewItemPolicy(BaseModel):
    """How lists take in items no one had touched when the recommender was trained (configs/recommenders.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slots: int = Field(2, ge=0, le=100, description="at most this many new items in a list of 10 (scaled with k)")
    max_age_days: float = Field(30.0, gt=0, description="an item is new for this many days after its published_at")
    fit_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="a new item fits a member when it scores among this share of their best warm items",
    )
    sink_below: float = Field(
        0.5, gt=0, le=1, description="a new item whose evidence says less than this share of its expected reach leaves"
    )

    def fit_depth(self, k: int, items: int) -> int:
        """How far down a member's warm list a new item must score to fit (at least the list's own length)."""
        return max(k, math.ceil(self.fit_share * items))

    def slots_for(self, k: int) -> int:
        if self.slots == 0:
            return 0
        return max(1, round(self.slots * k / 10))


class RecommenderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    new_items: NewItemPolicy = NewItemPolicy()
    # A kind's own values over `new_items` (kind name -> the fields it changes).
    kinds: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kinds_are_policies(self) -> RecommenderConfig:
        for name, changes in self.kinds.items():
            try:
                NewItemPolicy.model_validate({**self.new_items.model_dump(), **changes})
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"kinds.{name}: {problem}") from exc
        return self

    def policy(self, kind: str) -> NewItemPolicy:
        """The kind's policy: `new_items`, with the kind's own values over it."""
        return NewItemPolicy.model_validate({**self.new_items.model_dump(), **self.kinds.get(kind, {})})


def recommender_config(path: Path | None = None) -> RecommenderConfig:
    """configs/recommenders.yaml (or `path`); a wrong key or value stops with the file and field named."""
    if path is None and not DEFAULT_CONFIG.exists():  # an installed copy without the repository's configs/
        return RecommenderConfig()
    return load_config(RecommenderConfig, path or DEFAULT_CONFIG, {})


COLD_METHODS = (
    "transfer",
    "affinity",
    "reach",
)  # how new items are ranked: the family's own, or a peer the gate preferred


@dataclass
class NewItems:
    """A served recommender's catalogue beyond its warm items: the attribute space it was trained with, its warm
    items' attributes, and the items with no interactions (known at training, imported or posted since), each with
    its transferred factors, expected reach, publication date, status and category.

    `add` places items in the family's space as they arrive (a new version each time, swapped in whole, so a
    request reading the old one is never half-updated)."""

    space: AttributeSpace
    warm: sp.csr_matrix  # warm items x tokens, in the model's item order
    item_factors: np.ndarray | sp.spmatrix  # the family's warm item rows (what new items are placed among)
    warm_reach: np.ndarray  # members per warm item
    method: str = "transfer"  # COLD_METHODS: what the gate chose for this family's new-item lists
    category_column: str = "category"
    ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    attributes: sp.csr_matrix | None = None  # new items x tokens
    factors: np.ndarray | None = None  # new items x the family's factor columns
    reach: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # expected members
    published: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[s]"))  # NaT: always
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    categories: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._index = {str(item): i for i, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def knows(self, item_id: str) -> bool:
        return item_id in self._index

    def add(self, items: pd.DataFrame) -> int:
        """Places these items (index item_id, the catalogue's attribute columns) among the new ones: an item already
        there is replaced (an update of its attributes, status or date). Returns how many were added or changed."""
        if not len(items):
            return 0
        with self._lock:
            attributes = self.space.encode(item_tokens(items))
            weights = neighbour_weights(attributes, self.warm, NEIGHBOURS)
            factors = transfer(weights, self.item_factors)
            reach = transfer(weights, self.warm_reach[:, None]).ravel()
            published = (
                pd.to_datetime(items["published_at"]).to_numpy().astype("datetime64[s]")
                if "published_at" in items
                else np.full(len(items), np.datetime64("NaT"), dtype="datetime64[s]")
            )
            active = (
                items["active"].fillna(True).astype(bool).to_numpy() if "active" in items else np.ones(len(items), bool)
            )
            column = self.category_column
            categories = (
                items[column].astype(object).to_numpy() if column in items else np.full(len(items), None, object)
            )
            keep = np.array([str(i) not in self._index for i in items.index])
            replaced = [(self._index[str(i)], row) for row, i in enumerate(items.index) if not keep[row]]
            old_factors = self.factors if self.factors is not None else np.zeros((0, factors.shape[1]), np.float32)
            old_attributes = self.attributes if self.attributes is not None else sp.csr_matrix((0, attributes.shape[1]))
            new_factors = np.vstack([old_factors, factors[keep]]).astype(np.float32)
            new_attributes = sp.vstack([old_attributes, attributes[keep]]).tocsr()
            new_reach = np.concatenate([self.reach, reach[keep]]).astype(np.float32)
            new_published = np.concatenate([self.published, published[keep]])
            new_active = np.concatenate([self.active, active[keep]])
            new_categories = np.concatenate([self.categories, categories[keep]])
            for at, row in replaced:
                new_factors[at], new_reach[at] = factors[row], reach[row]
                new_published[at], new_active[at], new_categories[at] = published[row], active[row], categories[row]
            if replaced:
                lil = new_attributes.tolil()
                for at, row in replaced:
                    lil[at] = attributes[row]
                new_attributes = lil.tocsr()
            ids = np.concatenate([self.ids, np.asarray([str(i) for i in items.index], dtype=object)[keep]])
            # Swapped in as one step: a request reads either every old array or every new one.
            (
                self.factors,
                self.attributes,
                self.reach,
                self.published,
                self.active,
                self.categories,
                self.ids,
            ) = new_factors, new_attributes, new_reach, new_published, new_active, new_categories, ids
            self._index = {str(item): i for i, item in enumerate(ids)}
            self.version += 1
            return len(items)

    def candidates(
        self,
        now: np.datetime64,
        policy: NewItemPolicy,
        published_since: np.datetime64 | None,
        category: str | None,
        exclude: set[str],
    ) -> np.ndarray:
        """The new items a list may hold now: active, published (never before published_at), of the category asked,
        not excluded, and new enough (published within the policy's age, or on or after `published_since`)."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.int64)
        published = self.published
        known = ~np.isnat(published)
        allowed = self.active & (~known | (published <= now))
        oldest = published_since if published_since is not None else now - _days(policy.max_age_days)
        allowed &= known & (published >= oldest)
        if category is not None:
            allowed &= self.categories == category
        for item in exclude:
            if (at := self._index.get(item)) is not None:
                allowed[at] = False
        return np.flatnonzero(allowed)

    def scores(
        self, vectors: np.ndarray | sp.spmatrix, own: sp.csr_matrix, columns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(the family's scores of these new items, and the ranking key of them by the chosen method), members x
        items: the first places them among each member's warm items, the second orders them."""
        assert self.factors is not None
        factors = self.factors[columns]
        product = vectors @ factors.T
        family = np.atleast_2d(np.asarray(product.toarray() if sp.issparse(product) else product, dtype=np.float64))
        if self.method == "transfer":
            return family, family
        if self.method == "affinity":
            assert self.attributes is not None
            profile = member_profiles(own, self.warm)
            return family, np.asarray((profile @ self.attributes[columns].T).toarray(), dtype=np.float64)
        reach = np.log1p(self.reach[columns]).astype(np.float64)
        return family, np.broadcast_to(reach[None, :], family.shape)

    def evidence_factors(self, columns: np.ndarray, evidence: Evidence | None, now: np.datetime64) -> np.ndarray:
        """Each new item's evidence factor (1 where nothing happened to it yet): see `Evidence`."""
        if evidence is None or not (evidence.takes or evidence.shown):
            return np.ones(len(columns))
        days_out = (now - self.published[columns]).astype("timedelta64[s]").astype(np.float64) / 86_400
        expected = self.reach[columns] / max(REACH_DAYS, 1.0)
        ctr = evidence.prior_ctr()
        return np.array(
            [
                evidence.factor(str(self.ids[c]), float(e), float(d), ctr)
                for c, e, d in zip(columns, expected, np.nan_to_num(days_out), strict=True)
            ]
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """What `from_arrays` reads back (beside the model's own arrays, in its .npz)."""
        width = self.factors.shape[1] if self.factors is not None else _width(self.item_factors)
        return {
            **self.space.to_arrays(),
            **csr_arrays(self.warm, "warm_attributes_"),
            **csr_arrays(self.attributes if self.attributes is not None else sp.csr_matrix((0, 0)), "new_attributes_"),
            "new_ids": self.ids.astype(str),
            "new_factors": self.factors if self.factors is not None else np.zeros((0, width), np.float32),
            "new_reach": self.reach,
            "new_published": self.published.astype("datetime64[s]").astype(np.int64),
            "new_active": self.active,
            "new_categories": np.array(["" if c is None else str(c) for c in self.categories], dtype=str),
            "new_known_category": np.array([c is not None for c in self.categories], dtype=bool),
        }

    @classmethod
    def from_arrays(
        cls,
        z: Any,
        item_factors: np.ndarray | sp.spmatrix,
        warm_reach: np.ndarray,
        method: str,
        category_column: str,
    ) -> NewItems | None:
        """The new items saved with a model (None for a model saved before it had them)."""
        if "attribute_tokens" not in z:
            return None
        categories = z["new_categories"].astype(object)
        categories[~z["new_known_category"]] = None
        attributes = csr_from(z, "new_attributes_")
        return cls(
            AttributeSpace.from_arrays(z),
            csr_from(z, "warm_attributes_"),
            item_factors,
            warm_reach,
            method,
            category_column,
            z["new_ids"].astype(object),
            attributes if attributes.shape[0] else None,
            z["new_factors"] if len(z["new_ids"]) else None,
            z["new_reach"],
            z["new_published"].astype("datetime64[s]"),
            z["new_active"],
            categories,
        )

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "items": len(self), "tokens": len(self.space.vocabulary)}


# The days over which the warm items' members per item were gathered, to turn reach into takes per day: a year of
# history is the typical training window; only the ratio of posterior to prior matters, so the scale cancels where
# evidence is weighed against it.
REACH_DAYS = 365.0


def _width(factors: np.ndarray | sp.spmatrix) -> int:
    return int(factors.shape[1])


def _days(days: float) -> np.timedelta64:
    return np.timedelta64(int(days * 86_400), "s")


def rank_with_new(
    warm_items: list[str],
    warm_scores: list[float],
    new_items: list[str],
    new_family: np.ndarray,
    new_keys: np.ndarray,
    k: int,
) -> tuple[list[str], list[float]]:
    """The top k of the member's warm items and the chosen new items: places are decided by the family's scores
    (the new items' transferred ones), and the places new items take are filled in the order of their keys (the
    gate's method and the evidence): a new item comes in where it fits, and the better new item comes first."""
    order = np.argsort(-np.asarray(new_keys), kind="stable")
    places = sorted(
        [(float(s), 0, i) for i, s in enumerate(warm_scores)] + [(float(s), 1, i) for i, s in enumerate(new_family)],
        key=lambda t: -t[0],
    )[:k]
    items, scores, taken = [], [], 0
    for score, is_new, index in places:
        if is_new:
            chosen = order[taken]
            items.append(new_items[chosen])
            scores.append(float(new_family[chosen]))
            taken += 1
        else:
            items.append(warm_items[index])
            scores.append(score)
    return items, scores
