"""The next action for one member, in real time (`POST /next_action`): the day's plan (plan.py) asked for one
member, against the live contact log.

The serving state holds a desk: the contact policy, what the rules read about members as of the service's start
(consents, complaints, last orders, the contact log: policy.Standing) and what was posted since (contacts and
orders that reach the online store, from this worker, the journal or Redis). A contact posted to `/events` counts
in the member's next answer, so a second ask the same day finds the member capped.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features.dataset.campaigns import split_position
from features.dataset.event_log import pending_entries
from features.dataset.store import Dataset
from serving.outreach.plan import HOLDOUT_SALT, READ_UNPRICED, OfferWorth, choose
from serving.outreach.policy import CONSENTS, ContactLog, Facts, OutreachPolicy, Standing, Verdicts, rules
from serving.outreach.pushes import ProductPushes

NAT = np.datetime64("NaT", "ns")


class OutreachDesk:
    def __init__(
        self,
        dataset: Dataset,
        policy: OutreachPolicy,
        key: bytes,
        offers: OfferWorth | str | None,
        since: datetime,
        pushes: ProductPushes | str | None = None,
    ) -> None:
        """`offers`: what an uplift champion's lift is worth, or why it has none (None: no uplift champion).
        `since`: the earliest time it will be asked about (the served snapshot's as-of date): what the rules
        read from then on is read from the tables once, the rest is heard as it is posted. `pushes`: the product
        recommender calibrated on past pushes, or why the plan has none (None: no product recommender)."""
        self.policy, self.key = policy, key
        self.offers = offers if isinstance(offers, OfferWorth) else None
        self.unpriced = offers if isinstance(offers, str) else None
        self.pushes = pushes if isinstance(pushes, ProductPushes) else None
        self.no_pushes = pushes if isinstance(pushes, str) else None
        standing = Standing.of(dataset, policy, since, None)
        # Per member, what one answer reads: dictionaries and arrays, no pandas on the request's path.
        consents = standing.consents.reindex(columns=list(CONSENTS)).to_numpy(dtype=object, na_value=None)
        self.consents = dict(zip(standing.consents.index, consents, strict=True))
        self.unrecorded = np.full(len(CONSENTS), None, dtype=object)
        self.complaints = dict(
            zip(standing.complaints.index, standing.complaints.to_numpy("datetime64[ns]"), strict=True)
        )
        self.last_orders = dict(
            zip(standing.last_orders.index, standing.last_orders.to_numpy("datetime64[ns]"), strict=True)
        )
        # The log sorted by member: one member's contacts are a slice found by binary search.
        order = np.argsort(standing.log.member_id.astype(str), kind="stable")
        self.log = ContactLog(standing.log.member_id[order], standing.log.ts[order], standing.log.action[order])
        self._members = self.log.member_id.astype(str)
        self.live: dict[str, list[tuple[Any, ...]]] = {}  # member -> (ts, action) of contacts posted since the start
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.add(pending_entries(dataset.home, dataset.name))  # taken, not yet in the tables

    def add(self, entries: list[dict[str, Any]]) -> None:
        """Contacts and orders posted since the start (each entry once, however often it is heard)."""
        with self._lock:
            for entry in entries:
                if entry["table"] not in ("contacts", "orders") or entry["key"] in self._seen:
                    continue
                self._seen.add(entry["key"])
                row = entry["row"]
                member = row.get("member_id")
                if member is None:
                    continue
                ts = pd.Timestamp(row["ts"]).to_datetime64()
                if entry["table"] == "contacts":
                    self.live.setdefault(str(member), []).append((ts, str(row["action"])))
                elif str(member) not in self.last_orders or ts > self.last_orders[str(member)]:
                    self.last_orders[str(member)] = ts

    def facts(self, member: str) -> Facts:
        """What the rules read about one member now."""
        first, last = np.searchsorted(self._members, member, "left"), np.searchsorted(self._members, member, "right")
        with self._lock:
            live = list(self.live.get(member, []))
            last_order = self.last_orders.get(member, NAT)
        return Facts(
            self.consents.get(member, self.unrecorded)[np.newaxis, :],
            np.array([self.complaints.get(member, NAT)], dtype="datetime64[ns]"),
            np.array([last_order], dtype="datetime64[ns]"),
            np.zeros(last - first + len(live), dtype=np.int64),
            np.concatenate([self.log.ts[first:last], np.array([t for t, _ in live], dtype="datetime64[ns]")]),
            np.concatenate([self.log.action[first:last], np.array([a for _, a in live], dtype=object)]),
        )

    def next_action(
        self,
        member: str,
        at: datetime,
        uplift: float | None,
        basket: float | None,
        products: list[str] | None,
        unavailable: dict[str, str],
    ) -> dict[str, Any]:
        """The member's action now: what the day's plan would choose for them, or nothing and why. `uplift`: the
        uplift champion's lift for the member (None: no such champion); `basket`: their average basket;
        `products`: their product list as the service serves it (None where pushes are not weighed)."""
        judged = Verdicts(pd.Index([member]), list(self.policy.channels), rules(self.policy, at, self.facts(member)))
        gains: dict[str, np.ndarray] = {}
        if uplift is not None and self.offers is not None and "offer" in self.policy.actions:
            held = np.array([np.nan if basket is None else basket], dtype=float)
            gains["offer"] = self.offers.gain(np.array([uplift], dtype=float), held) - self.policy.actions["offer"].cost
        items: dict[str, np.ndarray] = {}
        if self.pushes is not None and products is not None and "product-push" in self.policy.actions:
            gain, items["product-push"] = self.pushes.best_of([member], [products])
            gains["product-push"] = gain - self.policy.actions["product-push"].cost
        chosen, reasons = choose([member], gains, judged, self.policy, items)
        holdout = bool(split_position(self.key, [member], HOLDOUT_SALT)[0] < self.policy.holdout)
        answer: dict[str, Any] = {"member_id": member, "at": at.isoformat(timespec="seconds"), "holdout": holdout}
        if chosen and not holdout:
            _, action, channel, item, gain = chosen[0]
            return {**answer, "action": action, "channel": channel, "item_id": item, "expected_gain": gain}
        why = "held out: kept uncontacted to measure what outreach does" if chosen else next(iter(reasons))
        return {
            **answer,
            "action": "nothing",
            "channel": None,
            "item_id": None,
            "expected_gain": 0.0,
            "why": why,
            "unavailable": unavailable,
            "channels": {c: r for c, r in zip(judged.channels, judged.reasons[:, 0], strict=True) if r is not None},
        }

    def push_reasons(self) -> dict[str, str]:
        """Why the pushes the policy declares are not weighed (as the day's plan says)."""
        reasons = {"content-push": READ_UNPRICED}
        if self.unpriced is not None:
            reasons["offer"] = self.unpriced
        if self.no_pushes is not None:
            reasons["product-push"] = self.no_pushes
        return {push: why for push, why in reasons.items() if push in self.policy.actions}
