"""Item families that rank by a product of member vectors and item factors, one class serving them all with the
same business rules, cold start by segment and exclusions, so whichever family wins the gate serves the same way:
- "als": implicit ALS's member and item factors;
- "bpr": implicit's Bayesian personalised ranking factors (with its item bias column);
- "item-knn": item-item neighbours (BM25 or cosine); a member's vector is their own interaction row, and the item
  "factors" are the sparse top-k similarity matrix (scores = what they have x how alike items are);
- "ease": EASE's closed-form item weights (dense items x items), a member's vector being which items they have;
- "popular" and "buy-again": popularity as a rank-one factor model (every member's vector is 1, each item's
  factor its popularity), buy-again boosting the member's own items first, by times bought.

Similar items need item factors that say which items are alike (every family but the popularity ones). Fold-in
(a member's newest interactions, without retraining) needs either ALS's solver or a member vector that is the
member's own row (item-knn, EASE, the popularity families); BPR learns member factors only by training.

Training fits the factors (training/items/fit.py); the registry stores them as one .npz plus a JSON spec, and the
service, batch export and monitoring load them back from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from features.common.errors import DataError
from features.pipelines.interactions import csr_arrays, csr_from
from serving.models.base import ItemModel, ListRules, Ranked
from serving.models.families.new_items import (
    Evidence,
    NewItemPolicy,
    NewItems,
    rank_with_new,
    recommender_config,
)
from serving.models.families.recommenders import (
    FOLD_IN,
    ITEM_FAMILIES,
    SIMILAR_ITEMS,
    MemberSolver,
    item_family,
    member_vectors,
)
from serving.models.ranking import rank_items, single_threaded_blas


def _standardised(x: np.ndarray) -> np.ndarray:
    """x in standard deviations from its mean (0 where all are equal): keys of any scale, on one scale."""
    spread = float(x.std()) if len(x) > 1 else 0.0
    return (x - x.mean()) / spread if spread > 1e-12 else np.zeros_like(x)


class NotOffered(DataError, LookupError):
    """The champion's family cannot give this kind of answer (similar items from a popularity list): a user error
    to the CLI, a 404 to the service, like an unknown item."""


class RecsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str = "als"  # a record of recommenders.py's ITEM_FAMILIES
    kind: str
    params: dict[str, Any]  # the family's parameters (ALS: factors, regularisation, BM25, the repeat boost)
    exclude_seen_default: bool
    category_column: str  # the item attribute a request's category filter matches


@dataclass
class FactorRecommender(ItemModel):
    spec: RecsSpec
    user_factors: np.ndarray  # empty for the neighbour families: a member's vector is their interaction row
    item_factors: np.ndarray | sp.csr_matrix  # items x factors; item-knn: the transposed similarity matrix
    interactions: sp.csr_matrix  # what each member has: times bought, or summed content action weights
    member_ids: np.ndarray
    item_ids: np.ndarray
    popularity: np.ndarray  # members per item: the cold-start order
    item_attributes: pd.DataFrame = field(default_factory=pd.DataFrame)  # index item_id: active, category
    # Cold start by segment: a member's persona (or first group) -> the popularity among that segment's members.
    segment_popularity: dict[str, np.ndarray] = field(default_factory=dict)
    member_segment: dict[str, str] = field(default_factory=dict)
    # Items with no interactions (at training, imported or posted since), placed from their attributes.
    new_items: NewItems | None = None
    policy: NewItemPolicy | None = None  # None: the kind's, from configs/recommenders.yaml

    def __post_init__(self) -> None:
        self.kind, self.family = self.spec.kind, self.spec.family
        if self.policy is None:
            self.policy = recommender_config().policy(self.kind)
        self.record = item_family(self.family)  # what the family offers and how its members' vectors are made
        self._rows = {str(m): i for i, m in enumerate(self.member_ids)}
        self._cols = {str(m): i for i, m in enumerate(self.item_ids)}
        # Item-item similarities (sparse) transposed once, row-major: what every list multiplies a member's row by.
        self._item_factors_t = self.item_factors.T.tocsr() if sp.issparse(self.item_factors) else None

    @property
    def _policy(self) -> NewItemPolicy:
        assert self.policy is not None  # set from the kind's config at construction
        return self.policy

    def knows_member(self, member_id: str) -> bool:
        return member_id in self._rows

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._cols

    def item_index(self, item_id: str) -> int:
        """The item's column (its row of `item_factors`); KeyError for an unknown item."""
        return self._cols[item_id]

    def items_of(self, member_id: str) -> set[str]:
        """The items a known member already has (bought, or engaged with)."""
        return set(self.item_ids[self.interactions[self._rows[member_id]].indices].tolist())

    @cached_property
    def _solver(self) -> MemberSolver | None:
        """What solves a member's factors again at fold-in, built once (its family's hook): requests only read it."""
        make = self.record.solver
        return None if make is None else make(self.interactions, self.user_factors, self.item_factors, self.spec.params)

    @cached_property
    def _inactive(self) -> np.ndarray:
        attrs = self.item_attributes.reindex(self.item_ids)
        if "active" not in attrs:
            return np.zeros(len(self.item_ids), dtype=bool)
        return ~attrs["active"].fillna(True).astype(bool).to_numpy()

    @cached_property
    def _published(self) -> np.ndarray:
        """Each column's publication time (NaT where unknown: always published)."""
        attrs = self.item_attributes.reindex(self.item_ids)
        if "published_at" not in attrs:
            return np.full(len(self.item_ids), np.datetime64("NaT"), dtype="datetime64[s]")
        return pd.to_datetime(attrs["published_at"]).to_numpy().astype("datetime64[s]")

    @cached_property
    def _categories(self) -> np.ndarray:
        """Each column's value of the category the requests filter on (None where unknown)."""
        attrs = self.item_attributes.reindex(self.item_ids)
        column = self.spec.category_column
        values = attrs[column] if column in attrs else pd.Series(None, index=attrs.index, dtype=object)
        return values.astype(object).to_numpy()

    @cached_property
    def _popular_order(self) -> dict[str | None, np.ndarray]:
        """Columns by popularity, overall (None) and in each segment: the cold-start lists."""
        orders = {segment: np.argsort(-p, kind="stable") for segment, p in self.segment_popularity.items()}
        return {None: np.argsort(-self.popularity, kind="stable"), **orders}

    def _blocked(
        self, exclude: list[str], category: str | None, now: np.datetime64, since: np.datetime64 | None
    ) -> np.ndarray:
        """Columns no list may hold: inactive items, items not yet published (or published before `since`), the
        request's exclusions, other categories."""
        blocked = self._inactive.copy()
        published = self._published
        known = ~np.isnat(published)
        if known.any():
            blocked |= known & (published > now)
        if since is not None:
            blocked |= ~known | (published < since)
        if category is not None:
            blocked |= self._categories != category
        for item in exclude:
            if item in self._cols:
                blocked[self._cols[item]] = True
        return blocked

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
        lists = self.ranked(member_ids, k, exclude_seen, exclude, category, published_since=published_since, now=now)
        rows = [
            (member, rank, item, score, ranked.cold_start)
            for member, ranked in zip(member_ids, lists, strict=True)
            for rank, (item, score) in enumerate(zip(ranked.items, ranked.scores, strict=True), start=1)
        ]
        frame = pd.DataFrame(rows, columns=["member_id", "rank", "item_id", "score", "cold_start"])
        return frame.astype({"rank": "int64", "score": "float64", "cold_start": "bool"})

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
        evidence: Evidence | None = None,
    ) -> list[Ranked]:
        """Each member's top-k items and scores, in the order asked: known members from their vectors, members
        in `fresh` (their interactions since the model was trained) folded in where the family can, the others
        cold start by segment. New items (no interactions at training) come in by the policy, or make the list with
        `published_since`. Plain lists, no DataFrame: a single member's answer costs well under a millisecond."""
        exclude_seen = self.spec.exclude_seen_default if exclude_seen is None else exclude_seen
        moment = np.datetime64(now or datetime.now(UTC).replace(tzinfo=None), "s")
        since = None if published_since is None else np.datetime64(published_since, "s")
        blocked = self._blocked(exclude or [], category, moment, since)
        news = self._news(moment, since, category, set(exclude or []), evidence)
        fresh = fresh or {}
        fold = fresh if FOLD_IN in self.record.offers else {}
        n_new = (k if since is not None else self._policy.slots_for(k)) if news is not None else 0
        # Where new items may come in, the member's warm list runs to the rank a new item must reach to fit.
        depth = k if not n_new or since is not None else self._policy.fit_depth(k, len(self.item_ids))
        out: dict[str, Ranked] = {}
        known = [m for m in member_ids if m in self._rows and m not in fold]
        if known:
            rows = np.array([self._rows[m] for m in known])
            vectors, own = self._member_vectors(rows), self.interactions[rows]
            ids, scores = self._rank(vectors, own, depth, exclude_seen, blocked)
            for i, m in enumerate(known):
                out[m] = self._with_news(news, n_new, vectors[i : i + 1], own[i], ids[i], scores[i], k, fresh.get(m))
        folded = [m for m in member_ids if m in fold]
        if folded and self._solver is None:  # a member's vector is their row: every folded member ranked at once
            own_rows = self._folded_rows(folded, fold)
            vectors = member_vectors(self.family, own_rows, np.ones((len(folded), 1), dtype=np.float32))
            ids, scores = self._rank(vectors, own_rows, depth, exclude_seen, blocked)
            for i, member in enumerate(folded):
                out[member] = self._with_news(
                    news, n_new, vectors[i : i + 1], own_rows[i], ids[i], scores[i], k, fresh.get(member)
                )
        for member in folded if self._solver is not None else []:  # ALS solves each member's factors again
            vector, own_row = self._folded_in(member, fold[member])
            ids, scores = self._rank(vector, own_row, depth, exclude_seen, blocked)
            out[member] = self._with_news(news, n_new, vector, own_row, ids[0], scores[0], k, fresh.get(member))
        for member in (m for m in member_ids if m not in out):
            segment = self.member_segment.get(member)
            segment = segment if segment in self.segment_popularity else None
            popularity = self.popularity if segment is None else self.segment_popularity[segment]
            order = self._popular_order[segment]
            top = order[~blocked[order]][:k]
            ranked = self._lists(top, popularity[top].astype(float), cold=True)
            if since is not None and news is not None:  # what's new, by expected reach: members per item either way
                ranked = self._newest_for_anyone(ranked, news, k)
            out[member] = ranked
        return [out[m] for m in member_ids]

    def _news(
        self,
        now: np.datetime64,
        since: np.datetime64 | None,
        category: str | None,
        exclude: set[str],
        evidence: Evidence | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The new items a list may take now (their positions in `new_items`) and their evidence factors; None
        where there are none."""
        new_items = self.new_items
        if new_items is None or not len(new_items):
            return None
        columns = new_items.candidates(now, self._policy, since, category, exclude)
        if not len(columns):
            return None
        return columns, new_items.evidence_factors(columns, evidence, now)

    def _with_news(
        self,
        news: tuple[np.ndarray, np.ndarray] | None,
        n_new: int,
        vector: np.ndarray | sp.csr_matrix,
        own: sp.csr_matrix,
        ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        took: Mapping[str, float] | None,
    ) -> Ranked:
        """The member's list with the new items that fit them: by default those scoring among the policy's share of
        the member's best warm items (and not sunk by their evidence), at most the policy's slots; with
        `published_since` (n_new == k), any."""
        warm = self._lists(ids, scores, cold=False)
        if news is None or not n_new:
            return Ranked(warm.items[:k], warm.scores[:k], False)
        assert self.new_items is not None
        columns, factors = news
        family, key = self.new_items.scores(vector, own, columns)
        family, key = family[0], _standardised(key[0]) + np.log(np.maximum(factors, 1e-6))
        allowed = np.ones(len(columns), dtype=bool)
        if took:  # what the member took since training is theirs already
            allowed &= np.array([str(self.new_items.ids[c]) not in took for c in columns])
        default = n_new < k
        if default:
            depth = self._policy.fit_depth(k, len(self.item_ids))
            bar = warm.scores[-1] if len(warm.scores) >= depth else -np.inf
            allowed &= (family >= bar) & (factors >= self._policy.sink_below)
        chosen = np.flatnonzero(allowed)
        chosen = chosen[np.argsort(-key[chosen], kind="stable")][:n_new]
        if not len(chosen):
            return Ranked(warm.items[:k], warm.scores[:k], False)
        keep = k - len(chosen) if default else k
        items, merged = rank_with_new(
            warm.items[:keep],
            warm.scores[:keep],
            [str(self.new_items.ids[c]) for c in columns[chosen]],
            family[chosen],
            key[chosen],
            k,
        )
        return Ranked(items, merged, False)

    def _newest_for_anyone(self, ranked: Ranked, news: tuple[np.ndarray, np.ndarray], k: int) -> Ranked:
        """A cold-start member's list of what is new: warm and new items by members per item (expected, for new
        ones, with their evidence)."""
        assert self.new_items is not None
        columns, factors = news
        reach = self.new_items.reach[columns] * factors
        pairs = [*zip(ranked.items, ranked.scores, strict=True)]
        pairs += [(str(self.new_items.ids[c]), float(r)) for c, r in zip(columns, reach, strict=True)]
        pairs.sort(key=lambda p: -p[1])
        return Ranked([p[0] for p in pairs[:k]], [p[1] for p in pairs[:k]], True)

    def _lists(self, ids: np.ndarray, scores: np.ndarray, cold: bool) -> Ranked:
        valid = ids >= 0  # rank_items pads with -1 when fewer than k items are allowed
        return Ranked(self.item_ids[ids[valid]].tolist(), scores[valid].astype(float).tolist(), cold)

    def _member_vectors(self, rows: np.ndarray) -> np.ndarray | sp.csr_matrix:
        factors = None if self.record.neighbours else self.user_factors[rows]
        return member_vectors(self.family, self.interactions[rows], factors)

    def _rank(
        self, user_vectors: np.ndarray, own: sp.csr_matrix, k: int, exclude_seen: bool, blocked: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        with single_threaded_blas():
            return rank_items(
                user_vectors,
                self.item_factors,
                own,
                k,
                exclude_seen=exclude_seen,
                repeat_weight=float(self.spec.params.get("repeat_weight", 0.0)),
                blocked=blocked,
                item_factors_t=self._item_factors_t,
            )

    def takes_new_items(self, rules: ListRules, now: datetime) -> bool:
        moment = np.datetime64(now, "s")
        since = None if rules.published_since is None else np.datetime64(rules.published_since, "s")
        news = self.new_items
        if news is None or not len(news) or (since is None and self._policy.slots == 0):
            return False
        return bool(len(news.candidates(moment, self._policy, since, rules.category, set(rules.exclude))))

    def update_items(self, items: pd.DataFrame) -> int:
        """Items as the catalogue now holds them (index item_id; a posted or imported row): a warm item's status,
        date and category are replaced; any other is placed among the new items from its attributes. Returns how
        many were new items."""
        if not len(items):
            return 0
        items = items[~items.index.duplicated(keep="last")]
        warm = items.index.isin(self._cols.keys())
        if warm.any():
            columns = [c for c in ("active", "published_at", self.spec.category_column) if c in items]
            merged = pd.concat([self.item_attributes, items.loc[warm, columns]])
            self.item_attributes = merged[~merged.index.duplicated(keep="last")]
            for cached in ("_inactive", "_published", "_categories"):  # read again from the new attributes
                self.__dict__.pop(cached, None)
        if self.new_items is None or warm.all():
            return 0
        return self.new_items.add(items[~warm])

    def forget(self, member_ids: set[str]) -> None:
        """Their factors, interactions and segment are no longer used, and they get the overall cold-start list.
        Their row's numbers stay in the arrays until the next training, which no longer sees them."""
        for member in member_ids:
            if (row := self._rows.pop(member, None)) is not None and not self.record.neighbours:
                self.user_factors[row] = 0.0
            self.member_segment.pop(member, None)

    def _offers(self, what: str) -> None:
        if what not in self.record.offers:
            offering = sorted(name for name, family in ITEM_FAMILIES.items() if what in family.offers)
            raise NotOffered(
                f"the {self.kind} champion is the {self.family!r} family, which offers no {what}: "
                f"{', '.join(offering)} do"
            )

    def similar_items(self, item_id: str, k: int = 10) -> pd.DataFrame:
        """The items whose factors point the same way (cosine), most similar first; the item itself excluded.
        NotOffered for a family without learned item factors."""
        column = self._cols[item_id]
        self._offers(SIMILAR_ITEMS)
        # Neighbour families: the item-item weights themselves (column j: how much j goes with each).
        if self.record.neighbours:
            weights = self.item_factors[:, column]
            similarity = (weights.toarray() if sp.issparse(weights) else np.asarray(weights)).ravel().astype(float)
        else:
            norms = np.maximum(np.linalg.norm(self.item_factors, axis=1, keepdims=True), 1e-9)
            factors = self.item_factors / norms
            similarity = factors @ factors[column]
        similarity[column] = -np.inf
        top = np.argsort(-similarity, kind="stable")[:k]
        return pd.DataFrame(
            {"item_id": self.item_ids[top], "rank": np.arange(1, len(top) + 1), "score": similarity[top]}
        )

    def fold_in(self, member_id: str, item_weights: dict[str, float], k: int = 10) -> pd.DataFrame:
        """Recommendations from a member's newest interactions, without retraining.

        `item_weights` are the new interactions' counts (times bought, or content action weights), as in the
        matrices training reads; they are added to the member's own row, from which ALS solves their factors
        again (implicit's recalculate) and the other families read them directly. NotOffered for BPR, whose member
        factors only training learns.
        """
        self._offers(FOLD_IN)
        ranked = self.ranked([member_id], k, fresh={member_id: item_weights})[0]
        return pd.DataFrame(
            {
                "member_id": member_id,
                "rank": np.arange(1, len(ranked.items) + 1),
                "item_id": ranked.items,
                "score": ranked.scores,
                "cold_start": ranked.cold_start,
            }
        )

    def _folded_in(self, member_id: str, item_weights: Mapping[str, float]) -> tuple[np.ndarray, sp.csr_matrix]:
        """The member's vector and own row with their new interactions added to what training saw."""
        row, added = self._rows.get(member_id), self._added(item_weights)
        own_row = sp.csr_matrix((self._row(self.interactions, row) + added).reshape(1, -1))
        if self._solver is not None:  # the member's factors solved again with the new interactions (ALS)
            vector = self._solver(row, added)
        else:  # a member's vector is their row (neighbours) or 1 (popularity): the new row is all it takes
            vector = member_vectors(self.family, own_row, np.ones((1, 1), dtype=np.float32))
        return vector, own_row

    def _folded_rows(self, member_ids: list[str], fold: Mapping[str, Mapping[str, float]]) -> sp.csr_matrix:
        """The members' own rows with their new interactions (`fold`, by member) added to what training saw."""
        rows = [self._row(self.interactions, self._rows.get(m)) + self._added(fold[m]) for m in member_ids]
        return sp.csr_matrix(np.vstack(rows))

    def _added(self, item_weights: Mapping[str, float]) -> np.ndarray:
        """New interactions as a dense row over the model's items (items it does not know are left out)."""
        added = np.zeros(len(self.item_ids), dtype=np.float32)
        for item, weight in item_weights.items():
            if item in self._cols:
                added[self._cols[item]] += weight
        return added

    def _row(self, matrix: sp.csr_matrix, row: int | None) -> np.ndarray:
        """A member's dense row of `matrix` (zeros for a member it does not know), to add new interactions to."""
        if row is None:
            return np.zeros(len(self.item_ids), dtype=np.float32)
        return matrix[row].toarray().ravel().astype(np.float32)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "factors": 0 if self.record.neighbours else int(self.item_factors.shape[1]),
            "segments": len(self.segment_popularity),
        }

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        arrays, spec = folder / "recommender.npz", folder / "spec.json"
        np.savez_compressed(
            arrays,
            user_factors=self.user_factors,
            **_item_factor_arrays(self.item_factors),
            **csr_arrays(self.interactions),
            member_ids=self.member_ids.astype(str),
            item_ids=self.item_ids.astype(str),
            popularity=self.popularity,
            segment_names=np.array(list(self.segment_popularity), dtype=str),
            segment_popularity=np.array(list(self.segment_popularity.values()), dtype=np.float32).reshape(
                len(self.segment_popularity), len(self.item_ids)
            ),
            **(self.new_items.to_arrays() if self.new_items is not None else {}),
        )
        spec.write_text(
            json.dumps(
                {
                    **self.spec.model_dump(mode="json"),
                    "item_attributes": self.item_attributes.reset_index().to_dict(orient="list"),
                    "member_segment": self.member_segment,
                    "new_items_method": None if self.new_items is None else self.new_items.method,
                },
                default=str,
            )
        )
        return {"recommender": str(arrays), "spec": str(spec)}

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> FactorRecommender:
        meta = json.loads(Path(artifacts["spec"]).read_text())
        attrs = pd.DataFrame(meta.pop("item_attributes"))
        attrs = attrs.set_index("item_id") if "item_id" in attrs else pd.DataFrame()
        segments = meta.pop("member_segment")
        method = meta.pop("new_items_method", None)
        with np.load(artifacts["recommender"], allow_pickle=False) as z:
            interactions = csr_from(z)
            item_factors = _item_factors_from(z)
            spec = RecsSpec.model_validate(meta)
            new_items = NewItems.from_arrays(
                z, item_factors, z["popularity"], method or "transfer", spec.category_column
            )
            return cls(
                spec,
                z["user_factors"],
                item_factors,
                interactions,
                z["member_ids"],
                z["item_ids"],
                z["popularity"],
                attrs,
                dict(zip(z["segment_names"].tolist(), z["segment_popularity"], strict=True)),
                segments,
                new_items,
            )


def _item_factor_arrays(factors: np.ndarray | sp.csr_matrix) -> dict[str, np.ndarray]:
    """Dense factors as they are; a sparse similarity matrix as its CSR arrays."""
    return csr_arrays(sp.csr_matrix(factors), "item_factors_") if sp.issparse(factors) else {"item_factors": factors}


def _item_factors_from(z: Mapping[str, np.ndarray]) -> np.ndarray | sp.csr_matrix:
    return z["item_factors"] if "item_factors" in z else csr_from(z, "item_factors_")
