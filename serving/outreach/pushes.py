"""What pushing a recommender's item does: the recommender's ranks calibrated to a change in the chance the member
takes the item, on the dataset's own past pushes (the contact log's product pushes with their items) and the orders
that followed.

A recommender's score says what a member would take anyway, not what a push changes. So for every past push the
member's list is ranked again as their interactions stood when it was sent (their orders since are folded back out
of the row the recommender reads: a take it trained on must not lift the very item it answered), and two things are
counted over the RESPONSE_DAYS after it: how often the pushed item was taken, by its rank in the list, and how often
the member's other listed items (at the same ranks, the same days, not pushed) were. Within a member and a week, the
only difference between a pushed and an unpushed item of the same rank is the push: the difference of the two rates
is its effect at that rank (`lift`). Taking a member's later orders back out is exact only for the families whose
member vector is their own interaction row (item-kNN, EASE, the popularity baselines). ALS solves its member factors
from BM25-weighted rows (a count taken back out of a weighted row leaves most of it) and BPR learns them in training
alone: ranked so, the pushes that were taken rise to the top of their own lists and the lift reads about four times
what the generated world gives (measured with `data simulate`). With such a champion the plan does without product
pushes and says why, rather than spend contacts on a gain it cannot measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.dataset.contacts import as_logged
from features.dataset.store import Dataset
from serving.models.families.recommenders import FOLD_IN, item_family

RESPONSE_DAYS = 7  # a push is answered when its item is ordered within a week of it
HISTORY_DAYS = 90  # the pushes calibrated on: the last 90 days that have had their week to answer
LIST_DEPTH = 50  # ranks read per member; an item below is ranked LIST_DEPTH + 1
RANK_BINS = (1, 3, 10, LIST_DEPTH, LIST_DEPTH + 1)  # upper rank of each bin
PRIOR_PUSHES = 20.0
PRIOR_PUSHES_MEMBER = 3.0
MIN_PUSHES = 200  # fewer past pushes say too little to calibrate on
# At most this many past pushes (a fixed random sample) are ranked again: each service worker calibrates at start,
# and ranking a list costs about a millisecond, so the start stays bounded whatever the community's size; the rank
# bins' rates are then known to about +-1% (rank 1's, the scarcest, from a few hundred pushes).
MAX_PUSHES = 10_000
PUSH_LIST = 10  # a product push is the best of the member's top 10 by expected gain
TOO_FEW_PUSHES = (
    f"too little response history to calibrate the recommender's scores on (fewer than {MIN_PUSHES} pushes with "
    f"their items in the {HISTORY_DAYS} days before the snapshot): record pushes (outreach record) and the plan "
    "will weigh them once they have answers"
)
CANNOT_FOLD_OUT = (
    "the product recommender's champion ({family}) cannot rank a member's list exactly as it stood when a past push "
    "was sent (its member vectors are solved or learned, not their own rows), so its scores cannot be calibrated on "
    "past pushes without the very takes it trained on"
)


@dataclass(frozen=True)
class PushResponse:
    """Take rates by rank bin (RANK_BINS) when pushed and when not, from `pushes` past pushes; and per member the
    factor of their own answers."""

    pushed: np.ndarray
    unpushed: np.ndarray
    pushes: int
    member_factor: dict[str, float]  # member_id -> (takes + prior) / (promised + prior)

    def lift(self, rank: np.ndarray) -> np.ndarray:
        """The push's effect on the chance of a take, for an item at `rank` (never below 0)."""
        return np.maximum(self.pushed - self.unpushed, 0.0)[_bin(rank)]

    def summary(self) -> str:
        cells = ", ".join(
            f"rank <= {upper}: {p:.3f} vs {u:.3f}"
            for upper, p, u in zip(RANK_BINS[:-1], self.pushed, self.unpushed, strict=False)
        )
        return f"{self.pushes:,} past pushes; take rate pushed vs not, {cells}"


def _bin(rank: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(RANK_BINS), np.asarray(rank), side="left").clip(0, len(RANK_BINS) - 1)


def past_pushes(dataset: Dataset, as_of: date, action: str = "product-push") -> pd.DataFrame:
    """The pushes of the HISTORY_DAYS before `as_of` that have had their RESPONSE_DAYS (member_id, ts, item_id); a
    sample of MAX_PUSHES of them where there are more."""
    if not dataset.has("contacts"):
        return pd.DataFrame({"member_id": [], "ts": [], "item_id": []})
    until = pd.Timestamp(as_of) - pd.Timedelta(days=RESPONSE_DAYS)
    log = dataset.read(
        "contacts",
        ["member_id", "ts", "action", "item_id"],
        filters=[("ts", ">=", until - pd.Timedelta(days=HISTORY_DAYS)), ("ts", "<", until)],
    )
    log = log[(log["action"] == as_logged(action)) & log["item_id"].notna()]
    if len(log) > MAX_PUSHES:
        log = log.sample(MAX_PUSHES, random_state=0).sort_values("ts", kind="stable")
    return log.assign(member_id=log["member_id"].astype(str), item_id=log["item_id"].astype(str))[
        ["member_id", "ts", "item_id"]
    ].reset_index(drop=True)


def lists_when_sent(model: Any, pushes: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Each push's list (push, rank, item_id) to LIST_DEPTH, ranked from the member's interactions as they stood
    when it was sent: their `orders` since (to the snapshot, what the recommender trained on) are folded in as
    negative counts, the weights of the product matrix (orders containing the product); new items as they stood."""
    frames = []
    for day, group in pushes.groupby(pushes["ts"].dt.floor("D")):
        group = group.drop_duplicates("member_id")  # one push per member and day is ranked
        later = group[["member_id", "ts"]].merge(orders.rename(columns={"ts": "ordered"}), on="member_id")
        later = later[later["ordered"] > later["ts"]]
        counts = later.groupby(["member_id", "item_id"])["order_id"].nunique()
        fresh: dict[str, dict[str, float]] = {}
        for (member, product), n in counts.items():
            fresh.setdefault(str(member), {})[str(product)] = -float(n)
        ranked = model.ranked(group["member_id"].tolist(), k=LIST_DEPTH, fresh=fresh, now=day.to_pydatetime())
        frames += [
            pd.DataFrame({"push": push, "rank": np.arange(1, len(listed.items) + 1), "item_id": listed.items})
            for push, listed in zip(group["push"], ranked, strict=True)
        ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"push": [], "rank": [], "item_id": []})


def calibrate(dataset: Dataset, model: Any, pushes: pd.DataFrame, as_of: date) -> PushResponse | None:
    """The push response from `pushes` (member_id, ts, item_id) and the lists the recommender gives as they were
    sent; None where there are fewer than MIN_PUSHES pushes."""
    if len(pushes) < MIN_PUSHES:
        return None
    # The members' orders from the first push to the snapshot (returns are no takes): what was taken after each
    # push, and what is folded back out of the rows the lists are ranked from.
    orders = dataset.read(
        "orders",
        ["member_id", "ts", "order_id", "product_id", "is_return"],
        filters=[("ts", ">=", pushes["ts"].min()), ("ts", "<", pd.Timestamp(as_of))],
    )
    orders = orders[~orders["is_return"].fillna(False).astype(bool)].dropna(subset=["member_id", "product_id"])
    orders = pd.DataFrame(
        {
            "member_id": orders["member_id"].astype(str),
            "ts": orders["ts"],
            "order_id": orders["order_id"],
            "item_id": orders["product_id"].astype(str),
        }
    )
    pushes = pushes.assign(push=np.arange(len(pushes)))
    lists = lists_when_sent(model, pushes, orders)
    # Every listed item of every push, the pushed one flagged; the pushed item where it is not listed.
    rows = pushes.merge(lists.rename(columns={"item_id": "listed"}), on="push")
    rows["pushed"] = rows["listed"] == rows["item_id"]
    unlisted = pushes[~pushes["push"].isin(rows.loc[rows["pushed"], "push"])].assign(
        rank=LIST_DEPTH + 1, pushed=True, listed=lambda f: f["item_id"]
    )
    rows = pd.concat([rows, unlisted], ignore_index=True)[["push", "member_id", "ts", "listed", "rank", "pushed"]]
    took = rows.merge(
        orders[["member_id", "ts", "item_id"]].rename(columns={"item_id": "listed", "ts": "ordered"}),
        on=["member_id", "listed"],
    )
    took = took[(took["ordered"] > took["ts"]) & (took["ordered"] <= took["ts"] + pd.Timedelta(days=RESPONSE_DAYS))]
    rows["taken"] = pd.MultiIndex.from_frame(rows[["push", "listed"]]).isin(
        pd.MultiIndex.from_frame(took[["push", "listed"]])
    )
    rows["bin"] = _bin(rows["rank"].to_numpy())
    rates = {}
    for flag, group in rows.groupby("pushed"):
        overall = group["taken"].mean()
        by_bin = group.groupby("bin")["taken"].agg(["sum", "count"]).reindex(range(len(RANK_BINS)), fill_value=0)
        rates[bool(flag)] = ((by_bin["sum"] + PRIOR_PUSHES * overall) / (by_bin["count"] + PRIOR_PUSHES)).to_numpy()
    pushed_rows = rows[rows["pushed"]]
    promised = rates[True][pushed_rows["bin"].to_numpy()]
    per_member = pushed_rows[["member_id", "taken"]].assign(promised=promised)
    totals = per_member.groupby("member_id")[["taken", "promised"]].sum()
    factor = (totals["taken"] + PRIOR_PUSHES_MEMBER) / (totals["promised"] + PRIOR_PUSHES_MEMBER)
    unpushed = rates.get(False, np.zeros(len(RANK_BINS)))
    return PushResponse(pushed=rates[True], unpushed=unpushed, pushes=len(pushes), member_factor=factor.to_dict())


@dataclass(frozen=True)
class ProductPushes:
    """The product recommender with its calibrated push response and the catalogue's prices: each member's best
    product push (the plan's for every member, `/next_action`'s for one)."""

    model: Any  # the product recommender's champion model (an ItemModel)
    response: PushResponse
    prices: dict[str, float]  # product_id -> price

    @classmethod
    def open(cls, dataset: Dataset, model: Any, as_of: date) -> ProductPushes | str:
        """The calibrated pushes, or why there are none: a recommender that cannot rank a list as it stood, or
        fewer than MIN_PUSHES past pushes."""
        family = item_family(model.family)
        if FOLD_IN not in family.offers or family.solver is not None:
            return CANNOT_FOLD_OUT.format(family=model.family)
        response = calibrate(dataset, model, past_pushes(dataset, as_of), as_of)
        if response is None:
            return TOO_FEW_PUSHES
        prices = dataset.read("products", ["product_id", "price"]).drop_duplicates("product_id", keep="last")
        return cls(model, response, prices.set_index(prices["product_id"].astype(str))["price"].astype(float).to_dict())

    def best(self, members: list[str], at: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Each member's best push among their top PUSH_LIST as the recommender ranks them at `at` (`best_of`)."""
        return self.best_of(members, [r.items for r in self.model.ranked(members, k=PUSH_LIST, now=at)])

    def best_of(self, members: list[str], lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Each member's best push among their list (its top PUSH_LIST, in the recommender's order): its expected
        gain before costs (lift x the member's factor x the item's price) and its item (None where the list is
        empty). Plain lists, no DataFrame: `/next_action` asks it for one member with the service's list."""
        lift = self.response.lift(np.arange(1, PUSH_LIST + 1))
        gain, items = np.zeros(len(members)), np.full(len(members), None, dtype=object)
        for i, (member, listed) in enumerate(zip(members, lists, strict=True)):
            listed = listed[:PUSH_LIST]
            if not listed:
                continue
            worth = lift[: len(listed)] * np.array([self.prices.get(item, 0.0) for item in listed])
            best = int(np.argmax(worth))
            gain[i], items[i] = worth[best] * self.response.member_factor.get(member, 1.0), listed[best]
        return gain, items
