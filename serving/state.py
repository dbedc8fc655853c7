"""What the service answers, as plain functions over a loaded state: testable without a server.

The state holds the dataset's champions, its online store (serving/online: the latest snapshot's rows, memory-
mapped, and the fresh records of members with events since it), and what scoring one member needs from the
population. A request scores only the members it asks for, from their current rows: start-up time and memory
depend on the models and the catalogue, not on the number of members. A member with no event since the snapshot
gets exactly what batch scoring (`community-ml score`) writes for them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.campaigns import split_position
from features.dataset.privacy import forgotten
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.lake import fetch
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
from serving.members import MemberScorer
from serving.models.base import ItemModel, ListRules, Ranked
from serving.models.champions import (
    ChallengerSetting,
    Champion,
    Champions,
    load_challenger,
    load_champions,
    untrained,
    with_catalogue,
)
from serving.models.kinds import PRODUCT_RECS, UPLIFT, ModelKind, Task, kinds_of
from serving.models.tiers import tiers_unavailable
from serving.online.store import OnlineStore
from serving.online.table import Row, empty_row
from serving.outreach.actions import WHY_NOT
from serving.outreach.desk import OutreachDesk
from serving.outreach.plan import OfferWorth
from serving.outreach.policy import load_policy
from serving.outreach.pushes import PUSH_LIST, ProductPushes
from serving.profiles import Profiler, profile_rules

CHAMPION, CHALLENGER = "champion", "challenger"
_LOG = logging.getLogger(__name__)


@dataclass
class Challenger:
    """A registered version answering a stable share of members in its kind's place: a member's variant comes
    from a keyed hash of their pseudonym, so the same member always gets the same model."""

    champion: Champion
    share: float
    key: bytes
    scorer: MemberScorer | None  # member kinds: the champions' scorer with the challenger in its place

    def takes(self, member_ids: list[str]) -> list[bool]:
        position = split_position(self.key, member_ids, f"challenger/{self.champion.kind.name}")
        return (position < self.share).tolist()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.champion.kind.name, **self.champion.describe(), "share": self.share}

    def serves(self, task: Task, kind: ModelKind | None = None) -> bool:
        """Whether it answers (some members) in calls of this task, or of this kind."""
        return self.champion.kind.task is task and kind in (None, self.champion.kind)


LISTS_KEPT = 20_000  # members' lists a worker keeps (about 0.5 KB each with 10 items): a bound, whatever the size


@dataclass
class ListCache:
    """Members' recent top lists, by model, rules and member. A member's list changes only with their own
    interactions (a member with events since training is folded in again each time, never kept here) or with
    new models (a reload makes a new state, with a new cache): recommending to a member again is a lookup.
    Least recently used lists go first."""

    size: int = LISTS_KEPT
    _lists: OrderedDict[tuple[Any, ...], Ranked] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[Any, ...]) -> Ranked | None:
        with self._lock:
            found = self._lists.get(key)
            if found is not None:
                self._lists.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], ranked: Ranked) -> None:
        # Kept as tuples of strings and floats, which the garbage collector stops tracking after its first look:
        # 20,000 kept lists of lists would be 40,000 more containers for every full collection to walk while
        # requests wait (the latency's tail).
        kept = Ranked(tuple(ranked.items), tuple(ranked.scores), ranked.cold_start)  # type: ignore[arg-type]
        with self._lock:
            self._lists[key] = kept
            if len(self._lists) > self.size:
                self._lists.popitem(last=False)


@dataclass
class ServingState:
    dataset: str
    as_of: date
    champions: Champions
    online: OnlineStore  # the snapshot's rows and members' fresh records since it
    scorer: MemberScorer | None  # None: the dataset has no member champion (recommenders only)
    challenger: Challenger | None = None
    profiler: Profiler | None = None  # None: see profile_error
    profile_error: str | None = None  # why there are no profiles (a bad rule in the profile's YAML files)
    outreach: OutreachDesk | None = None  # None: see outreach_error
    outreach_error: str | None = None  # why there is no next action (a bad contact policy)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    lists: ListCache = field(default_factory=ListCache)
    items_version: int = 0  # the posted items (online.activity.version) the served recommenders have placed
    _placing: threading.Lock = field(default_factory=threading.Lock)

    def place_posted_items(self) -> None:
        """Places the items posted since the recommenders last did (by any worker or replica) among their new
        items: a posted item is in the next answer."""
        activity = self.online.activity
        if activity.version == self.items_version:
            return
        with self._placing:
            version = activity.version
            if version == self.items_version:
                return
            for model, source in self._item_models():
                if source in activity.items:  # a catalogue items are posted to (not, say, groups)
                    model.update_items(activity.posted(source))
            self.items_version = version

    def _item_models(self) -> list[tuple[ItemModel, str]]:
        """Every served recommender (the challenger's too) with the catalogue table it recommends from."""
        served = [(c.kind, c.model) for c in self.champions.of(Task.items)]
        if self.challenger is not None and self.challenger.champion.kind.task is Task.items:
            served.append((self.challenger.champion.kind, self.challenger.champion.model))
        return [(_item_model(model), kind.items.matrix) for kind, model in served if kind.items is not None]

    @property
    def member_outputs(self) -> list[str]:
        return [] if self.scorer is None else self.scorer.outputs

    def models(self, *kinds: ModelKind) -> dict[str, dict[str, str]]:
        return self.champions.described(*kinds)

    @cached_property
    def unavailable(self) -> dict[str, str]:
        """What member answers lack and why (the tiers, without a churn or value champion): said in every answer,
        found once per state."""
        why = tiers_unavailable(self.champions) if self.scorer is not None else None
        return {} if why is None else {"tier": why}


def load_state(home: StateHome, dataset_name: str) -> ServingState:
    """The dataset's champions (whichever kinds it has), its latest snapshot as the online table, and the events
    since it folded in."""
    fetch(home, dataset_name)  # with a lake, this home is a cache: the latest publication copied in once
    dataset = Dataset(home, dataset_name).require()
    champions = load_champions(home, dataset_name)
    setting = ChallengerSetting.from_env()
    challenger = None if setting is None else load_challenger(home, dataset_name, setting)
    gone = forgotten(dataset)
    if gone:  # members who asked to be forgotten since these recommenders (a challenger too) were trained
        key = pseudonym_key(home)
        served = [champions] if challenger is None else [champions, champions.replacing(challenger)]
        for models in served:
            known = {str(m) for c in models.of(Task.items) for m in _item_model(c.model).member_ids}
            models.without({m for m in known if pseudonym(key, m) in gone})
    for models in [champions] if challenger is None else [champions, champions.replacing(challenger)]:
        with_catalogue(dataset, models)
    as_of = resolve_as_of(dataset, "latest")
    build_snapshot(dataset, SnapshotSettings(as_of=as_of))  # reused when up to date
    snapshot = Snapshot(dataset, as_of)
    online = OnlineStore.open(dataset, snapshot, as_of)
    table = online.table
    scorer = MemberScorer.cached(champions, table, snapshot.features) if champions.of(Task.member) else None
    state = ServingState(dataset_name, as_of, champions, online, scorer)
    if setting is not None and challenger is not None:
        scorer = None
        if setting.kind.task is Task.member:
            scorer = MemberScorer.cached(champions.replacing(challenger), table, snapshot.features)
        state.challenger = Challenger(challenger, setting.share, pseudonym_key(home), scorer)
    for served in (state.scorer, state.challenger and state.challenger.scorer):
        if served is not None:
            served.warm(table)
    outputs = [*state.member_outputs, *(["tier"] if state.scorer is not None and state.scorer.cuts else [])]
    try:  # a bad rule leaves the service without profiles, not without predictions
        state.profiler = Profiler.open(dataset, snapshot, profile_rules(), table.columns, outputs)
    except DataError as exc:
        state.profile_error = str(exc)
        _LOG.warning("no member profiles until this is fixed: %s", exc)
    try:  # a bad contact policy leaves the service without next actions, not without predictions
        # One column of the snapshot, not its rows: start-up time does not grow with the community.
        held = "avg_basket" in table.columns
        baskets = pd.read_parquet(snapshot.features_path, columns=["avg_basket"])["avg_basket"] if held else None
        since = datetime.combine(as_of, datetime.min.time())
        products = state.champions[PRODUCT_RECS].model if PRODUCT_RECS in state.champions else None
        pushes = (
            ProductPushes.open(dataset, products, as_of)
            if products is not None
            else WHY_NOT["product-push"].format(command=PRODUCT_RECS.train_command(dataset.name))
        )
        uplift = next((c.model for c in champions.of(Task.member) if c.kind is UPLIFT), None)
        offers = None if uplift is None else OfferWorth.of(uplift, baskets)
        desk = OutreachDesk(dataset, load_policy(), pseudonym_key(home), offers, since, pushes)
        online.listeners.append(desk.add)
        state.outreach = desk
    except DataError as exc:
        state.outreach_error = str(exc)
        _LOG.warning("no next actions until this is fixed: %s", exc)
    return state


def member_profiles(state: ServingState, member_ids: list[str]) -> list[dict[str, Any]]:
    """Each member's profile (serving/profiles.py) from their current row: the snapshot's plus their events since.
    An unknown member gets a cold-start profile: what is known, and the segments by what is known."""
    if state.profiler is None:
        raise DataError(f"no profiles for dataset {state.dataset!r}: {state.profile_error}")
    rows = state.online.rows(member_ids)
    schema = state.online.table.schema
    current = [rows[m][0] if m in rows else empty_row(schema) for m in member_ids]
    if state.scorer is not None:
        scores, _ = member_scores(state, member_ids, rows)
    else:
        scores = [{} for _ in member_ids]
    columns = {
        f.name: np.array([r.get(f.name) for r in current], dtype=object if f.dtype == "string" else float)
        for f in schema.features
    }
    cold = [m not in rows for m in member_ids]
    fresh = [bool(rows[m][2]) if m in rows else False for m in member_ids]
    return state.profiler.answers(member_ids, columns, scores, cold, fresh)


def member_next_action(state: ServingState, member_id: str, at: datetime) -> dict[str, Any]:
    """The member's next action at `at` (serving/outreach/desk.py): what the day's plan would choose for them
    against the live contact log, or nothing and why."""
    if state.outreach is None:
        raise DataError(f"no next actions for dataset {state.dataset!r}: {state.outreach_error}")
    rows = state.online.rows([member_id])
    row = rows[member_id][0] if member_id in rows else {}
    uplift = None
    unavailable = state.outreach.push_reasons()
    if UPLIFT in [c.kind for c in state.champions.of(Task.member)] and member_id in rows:
        # The uplift alone, by the scorer that answers the member (a challenger's where it takes them).
        served, place, changed = rows[member_id]
        challenger = state.challenger.scorer if state.challenger is not None else None
        taken = _variants(state, Task.member, [member_id]).get(member_id) == CHALLENGER
        scorer = challenger if taken and challenger is not None else state.scorer
        assert scorer is not None  # an uplift champion is a member champion
        uplift = float(scorer.output(UPLIFT.name, [served], [place], [changed])[0])
    elif UPLIFT not in [c.kind for c in state.champions.of(Task.member)]:
        unavailable["offer"] = "no uplift champion: no randomized campaign taught what an offer changes"
    basket = row.get("avg_basket")
    products = None
    if state.outreach.pushes is not None and "product-push" in state.outreach.policy.actions:
        # The member's list as /recommend_products serves it: cached, with their events since the snapshot.
        (listed,) = recommendations(state, PRODUCT_RECS, [member_id], ListRules(k=PUSH_LIST))
        products = [item["item_id"] for item in listed["items"]]
    return state.outreach.next_action(member_id, at, uplift, basket, products, unavailable)


def post_items(state: ServingState, batch: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Checks the items, makes the good ones durable in the journal and places them in the recommenders: they
    count in the next answer of every worker (within a second where Redis shares them across replicas)."""
    checked, entries, _ = state.online.post(batch)
    state.place_posted_items()
    return {
        "dataset": state.dataset,
        "accepted": len(entries),
        "rejected": checked.rejected,
        "items": {t: sum(1 for e in entries if e["table"] == t) for t in batch},
        "kept": "journal: durable, in answers now, added to the catalogue tables by `community-ml data ingest`",
    }


def post_events(state: ServingState, batch: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Checks the events, makes the good ones durable in the journal, then folds them into members' rows: the
    members' next answers count them."""
    checked, entries, members = state.online.post(batch)
    # What was kept, in the dataset's terms: never where (the server's files are not the caller's business).
    return {
        "dataset": state.dataset,
        "accepted": len(entries),
        "rejected": checked.rejected,
        "members_updated": len(members),
        "kept": f"{state.online.log_name}: durable, counted in answers now, added to the tables by "
        "`community-ml data ingest`",
    }


def member_scores(
    state: ServingState, member_ids: list[str], rows: dict[str, tuple[Row, float, bool]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every member champion's output, tier and top reasons per member, scored now from their current rows
    (`rows`: the online store's, when the caller has read them); unknown members are cold start. Also the values
    of the features behind each answer, for the prediction log."""
    if state.scorer is None:
        raise LookupError(
            f"no member model for dataset {state.dataset!r}: {untrained(state.dataset, kinds_of(Task.member))}"
        )
    rows = state.online.rows(member_ids) if rows is None else rows
    known = [m for m in dict.fromkeys(member_ids) if m in rows]
    variants = _variants(state, Task.member, list(dict.fromkeys(member_ids)))
    scored: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for variant, scorer in ((CHAMPION, state.scorer), (CHALLENGER, state.challenger and state.challenger.scorer)):
        group = [m for m in known if variants.get(m, CHAMPION) == variant]
        if group and scorer is not None:
            answers, inputs = scorer.score(
                [rows[m][0] for m in group], [rows[m][1] for m in group], [rows[m][2] for m in group]
            )
            scored |= {m: (a, i) for m, a, i in zip(group, answers, inputs, strict=True)}
    records, logged = [], []
    down = state.online.fresh.down
    stale = {} if down is None else {"stale": down}  # fresh is false for everyone, and this says why
    for member in member_ids:
        variant = {"variant": variants[member]} if variants else {}  # with a challenger, every answer names it
        if member in scored:
            answer, values = scored[member]
            records.append(
                {"member_id": member, "cold_start": False, "fresh": rows[member][2], **answer, **variant, **stale}
            )
            logged.append(values)
        else:
            records.append(
                {
                    "member_id": member,
                    "cold_start": True,
                    "fresh": False,
                    **dict.fromkeys(state.member_outputs),
                    "recency_days": None,
                    "tier": "new" if state.scorer.cuts is not None else None,
                    "top_reasons": [],
                    **variant,
                }
            )
            logged.append({})
    return records, logged


def _variants(state: ServingState, task: Task, member_ids: list[str], kind: ModelKind | None = None) -> dict[str, str]:
    """Each member's variant where a challenger of this task (and kind) is served; empty where none is."""
    challenger = state.challenger
    if challenger is None or not challenger.serves(task, kind):
        return {}
    takes = challenger.takes(member_ids)
    return {m: CHALLENGER if t else CHAMPION for m, t in zip(member_ids, takes, strict=True)}


def recommendations(
    state: ServingState, kind: ModelKind, member_ids: list[str], rules: ListRules
) -> list[dict[str, Any]]:
    if kind not in state.champions:
        raise LookupError(
            f"no champion {kind.name} model for dataset {state.dataset!r}; train one with "
            f"`{kind.train_command(state.dataset)}`"
        )
    model = _item_model(state.champions[kind].model)
    assert kind.items is not None
    fresh = state.online.items(member_ids, kind.items.matrix)  # follows other workers' events and posted items
    state.place_posted_items()
    evidence = state.online.activity.evidence.get(kind.items.matrix)  # a source items are posted to
    now = datetime.now(UTC).replace(tzinfo=None)
    variants = _variants(state, Task.items, member_ids, kind)
    lists: dict[str, Ranked] = {}
    asked = (kind.name, rules.k, rules.exclude_seen, rules.exclude, rules.category, rules.published_since)
    for variant in (CHAMPION, CHALLENGER):
        group = [m for m in dict.fromkeys(member_ids) if variants.get(m, CHAMPION) == variant]
        if not group:
            continue
        served = model if variant == CHAMPION else _item_model(state.challenger.champion.model)  # type: ignore[union-attr]
        # Lists that new items may enter change with the clock and the evidence: worked out every time.
        steady = not served.takes_new_items(rules, now)
        kept = {
            m: found for m in group if steady and m not in fresh and (found := state.lists.get((variant, *asked, m)))
        }
        lists |= kept
        todo = [m for m in group if m not in kept]
        if todo:
            ranked = served.ranked(
                todo,
                rules.k,
                rules.exclude_seen,
                list(rules.exclude),
                rules.category,
                fresh,
                published_since=rules.published_since,
                now=now,
                evidence=evidence,
            )
            for member, found in zip(todo, ranked, strict=True):
                lists[member] = found
                if steady and member not in fresh:
                    state.lists.put((variant, *asked, member), found)
    return [
        {
            "member_id": m,
            "cold_start": lists[m].cold_start,
            "fresh": m in fresh,
            "items": [
                {"item_id": item, "rank": rank, "score": score}
                for rank, (item, score) in enumerate(zip(lists[m].items, lists[m].scores, strict=True), start=1)
            ],
            **({"variant": variants[m]} if variants else {}),
        }
        for m in member_ids
    ]


def similar_items(state: ServingState, kind: ModelKind, item_id: str, k: int) -> list[dict[str, Any]]:
    """The items most like `item_id`; LookupError when there is no such champion or item."""
    model = _item_model(state.champions[kind].model) if kind in state.champions else None
    if model is None or not model.knows_item(item_id):
        raise LookupError(f"{item_id!r} is not known to the {kind.name} model of {state.dataset!r}")
    return model.similar_items(item_id, k).to_dict(orient="records")


def _item_model(model: Any) -> ItemModel:
    assert isinstance(model, ItemModel)
    return model
