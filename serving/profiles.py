"""The member profile: who a member is, in one answer a CRM can show (`POST /profile`, `community-ml profile`).

A profile joins the models' outputs (churn probability with its reasons, value, uplift, tier: as /score answers
them), what history says (favourites, preferred channel, active hours, price sensitivity: the snapshot's profile
book, features/profiles/book.py), the segments and tags the YAML files declare (worked out on the member's current
row, so events since the snapshot count), the learned behavioural type where members carry no persona, and
consent. The service and the batch command build it with the same function (`answers`), so a member with no event
since the snapshot gets the same profile from both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from features.common.columns import floats
from features.dataset.contract import CONSENT_CHANNELS
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot
from features.profiles.book import ProfileBook
from features.profiles.config import ProfileRules, load_profile_rules
from features.profiles.fields import PROFILE_FIELDS
from features.profiles.history import CONTACT_PARTS, FAVOURITES, TOP
from features.profiles.rules import Env
from serving.models.kinds import Task, kinds_of

# The models' outputs a rule may read, with their types.
OUTPUT_FIELDS: dict[str, str] = {k.output: "number" for k in kinds_of(Task.member)} | {"tier": "text"}
# What an answer's list and object fields are called in a batch file (JSON text, the same in CSV and Parquet).
LISTED = (
    "favourite_categories",
    "favourite_topics",
    "favourite_content_types",
    "preferred_channel",
    "active_hours",
    "active_weekdays",
    "top_reasons",
    "consent",
    "last_contacts",
)


def profile_rules(segments: Path | None = None, tags: Path | None = None) -> ProfileRules:
    return load_profile_rules(OUTPUT_FIELDS, segments, tags)


@dataclass(frozen=True)
class Profiler:
    """A snapshot's profile book and the declared rules, with the fields the dataset can tell."""

    rules: ProfileRules
    book: ProfileBook
    feature_columns: list[str]  # the snapshot's
    outputs: list[str]  # the models' outputs answers carry (and `tier` where there are tiers)

    @classmethod
    def open(
        cls, dataset: Dataset, snapshot: Snapshot, rules: ProfileRules, feature_columns: list[str], outputs: list[str]
    ) -> Profiler:
        """`outputs`: the member champions' outputs (and `tier` where there are tiers)."""
        book = ProfileBook.open(
            dataset, snapshot.path, snapshot.as_of, snapshot.features, rules.settings, rules.clusters
        )
        return cls(rules, book, feature_columns, outputs)

    def batch(self, features: pd.DataFrame, scores: pd.DataFrame | None) -> list[dict[str, Any]]:
        """Every member of a snapshot's `features` profiled, with `scores` (batch scoring's frame: outputs, tier,
        top_reasons) where there are member champions."""
        ids, columns, records = self._batch_inputs(features, scores)
        flags = [False] * len(ids)
        return self.answers(ids, columns, records, flags, flags)

    def memberships(
        self, features: pd.DataFrame, scores: pd.DataFrame | None
    ) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
        """(member ids, segments, tags, rules left out with why): the rules alone, for every member of `features`
        (an audience, a health breakdown, the columns of a score file need no favourites)."""
        ids, columns, records = self._batch_inputs(features, scores)
        _, _, segments, tags, left_out = self._judged(ids, columns, records)
        return ids, segments, tags, left_out

    def _batch_inputs(
        self, features: pd.DataFrame, scores: pd.DataFrame | None
    ) -> tuple[list[str], dict[str, np.ndarray], list[dict[str, Any]]]:
        """A snapshot's features and batch scores as answers read them: ids, feature columns, /score records."""
        ids = features["member_id"].astype(str).tolist()
        columns = {c: _column(features[c]) for c in self.feature_columns if c in features}
        if scores is None:
            return ids, columns, [{} for _ in ids]
        by_member = scores.assign(member_id=scores["member_id"].astype(str)).set_index("member_id").reindex(ids)
        wanted = [c for c in dict.fromkeys([*self.outputs, "recency_days", "tier", "top_reasons"]) if c in by_member]
        records = by_member[wanted].astype(object).where(by_member[wanted].notna(), None).to_dict("records")
        recency = columns.get("recency_days")
        for i, record in enumerate(records):  # in the order /score answers them
            reasons = record.pop("top_reasons", None)
            tier = record.pop("tier", None)
            if recency is not None:
                record["recency_days"] = None if recency[i] != recency[i] else float(recency[i])
            record |= {"tier": tier, "top_reasons": reasons.split(", ") if reasons else []}
        return ids, columns, records

    def _judged(
        self, member_ids: list[str], features: dict[str, np.ndarray], scores: list[dict[str, Any]]
    ) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]
    ]:
        """(history columns, every field's column, segments, tags, rules left out): what the rules read and say."""
        positions, found = self.book.rows(member_ids)
        history = _aligned(found, positions)
        outputs = {
            o: np.array([np.nan if s.get(o) is None else s[o] for s in scores], dtype=float)
            for o in self.outputs
            if o != "tier"
        }
        if "tier" in self.outputs:
            outputs["tier"] = np.array([s.get("tier") for s in scores], dtype=object)
        columns: dict[str, np.ndarray] = {**features, **outputs}
        for f in PROFILE_FIELDS:
            if f.column in history or f.column in features:
                columns[f.name] = history[f.column] if f.column in history else features[f.column]
        if self.book.learned is not None:
            columns["learned_segment"] = self.book.learned.assign(columns)
        segments, tags, left_out = self.rules.evaluate(
            Env(len(member_ids), columns, self.book.quantiles), self.available
        )
        return history, columns, segments, tags, left_out

    @cached_property
    def available(self) -> set[str]:
        unknown = self.book.unknowable
        fields = {f.name for f in PROFILE_FIELDS if f.group not in unknown}
        if self.book.learned is None:
            fields.discard("learned_segment")
        return {*self.feature_columns, *fields, *self.outputs}

    def answers(
        self,
        member_ids: list[str],
        features: dict[str, np.ndarray],
        scores: list[dict[str, Any]],
        cold: list[bool],
        fresh: list[bool],
    ) -> list[dict[str, Any]]:
        """Each member's profile: `features`, their current feature columns; `scores`, what /score answers for
        them (outputs, tier, top_reasons); `cold`, whether the snapshot does not know them."""
        n = len(member_ids)
        history, columns, segments, tags, left_out = self._judged(member_ids, features, scores)
        learned = self.book.learned
        unknown = {**self.book.unknowable, **left_out}
        if learned is None:
            unknown["learned_segment"] = "the members carry an operator persona: the segments are the declared ones"
        consent = {"marketing": _texts(features.get("consent_marketing"), n, bool)}
        consent |= {c: _texts(history.get(f"consent_{c}"), n, bool) for c in CONSENT_CHANNELS}
        contacts = _contacts(history, n) if "last_contacts" not in unknown else [None] * n
        recent = _texts(history.get("contacts_30d"), n, int)
        # Column by column into Python values first: a loop over members then only gathers them (500,000
        # profiles in seconds, not a minute).
        favourites = {r.field: _ranked(history, r.field, r.label, n) for r in FAVOURITES}
        channel = [
            None if c is None else {"channel": c, "share": share}
            for c, share in zip(
                _texts(features.get("channel_main"), n),
                _numbers(features.get("channel_main_share"), n),
                strict=True,
            )
        ]
        hours = _listed(history, "active_hour", n, int)
        weekdays = _listed(history, "active_weekday", n, str)
        numbers = {
            k: _numbers(history.get(k), n) for k in ("price_sensitivity", "discounted_share", "discounted_order_share")
        }
        priced = _texts(history.get("priced_orders"), n, int)
        held_segments, held_tags = held_names(segments, n), held_names(tags, n)
        types = _texts(columns.get("learned_segment"), n, str)
        cold_unknown = {**unknown, "history": "the snapshot does not know them"}
        out = []
        for i, member in enumerate(member_ids):
            score = {k: v for k, v in scores[i].items() if k not in ("member_id", "cold_start", "fresh")}
            out.append(
                {
                    "member_id": member,
                    "cold_start": cold[i],
                    "fresh": fresh[i],
                    **score,
                    **{field: listed[i] for field, listed in favourites.items()},
                    "preferred_channel": channel[i],
                    "active_hours": hours[i],
                    "active_weekdays": weekdays[i],
                    **{k: values[i] for k, values in numbers.items()},
                    "priced_orders": priced[i],
                    "segments": held_segments[i],
                    "learned_segment": types[i],
                    "tags": held_tags[i],
                    "consent": {channel: values[i] for channel, values in consent.items()},
                    "last_contacts": contacts[i],
                    "contacts_30d": recent[i] if contacts[i] is not None else None,
                    "unknown": cold_unknown if cold[i] else unknown,
                }
            )
        return out


def _column(series: pd.Series) -> np.ndarray:
    """A feature column as rules read it: numbers as floats (NaN empty), text as objects (None empty)."""
    if pd.api.types.is_string_dtype(series) or series.dtype == object:
        return series.astype(object).where(series.notna(), None).to_numpy(dtype=object)
    return floats(series)


def flattened(profiles: list[dict[str, Any]]) -> pd.DataFrame:
    """Profiles as a table, a row per member: lists and objects as JSON text (the same in CSV and Parquet),
    segments and tags |-separated, what is the same for every member (unknown) left to the summary."""
    frame = pd.DataFrame(profiles).drop(columns=["unknown"])
    for column in LISTED:
        if column in frame:
            frame[column] = [orjson.dumps(v).decode() for v in frame[column]]
    for column in ("segments", "tags"):
        frame[column] = ["|".join(v) for v in frame[column]]
    return frame


def _aligned(found: dict[str, np.ndarray], positions: list[int | None]) -> dict[str, np.ndarray]:
    """History columns with a row per asked member (empty for members the book lacks)."""
    hit = np.array([p is not None for p in positions], dtype=bool)
    out = {}
    for name, values in found.items():
        full = np.full(len(positions), None if values.dtype == object else np.nan, dtype=values.dtype)
        full[hit] = values
        out[name] = full
    return out


def _numbers(values: np.ndarray | None, n: int) -> list[float | None]:
    """A number column as Python values, to 4 decimals (None: empty)."""
    if values is None:
        return [None] * n
    return [None if v != v else v for v in np.round(np.asarray(values, dtype=float), 4).tolist()]


def _texts(values: np.ndarray | None, n: int, kind: type = str) -> list[Any]:
    """A column as Python values of `kind` (None: empty)."""
    if values is None:
        return [None] * n
    return [None if v is None or v != v else kind(v) for v in np.asarray(values).tolist()]


def _ranked(history: dict[str, np.ndarray], field: str, label: str, n: int) -> list[list[dict[str, Any]]]:
    """Each member's top 3 of a favourite, with shares: [{"category": "snacks", "share": 0.42}, ...]."""
    names = [_texts(history.get(f"{field}_{r}"), n) for r in range(1, TOP + 1)]
    shares = [_numbers(history.get(f"{field}_{r}_share"), n) for r in range(1, TOP + 1)]
    return [
        [{label: c, "share": share} for c, share in zip(cs, ss, strict=True) if c is not None]
        for cs, ss in zip(zip(*names, strict=True), zip(*shares, strict=True), strict=True)
    ]


def _listed(history: dict[str, np.ndarray], name: str, n: int, kind: type) -> list[list[Any]]:
    columns = [_texts(history.get(f"{name}_{r}"), n, kind) for r in range(1, TOP + 1)]
    return [[v for v in values if v is not None] for values in zip(*columns, strict=True)]


def _contacts(history: dict[str, np.ndarray], n: int) -> list[list[dict[str, Any]]]:
    """Each member's last contacts, latest first: [{"ts": ..., "channel": "sms", "action": "offer"}, ...]."""
    parts = {
        (i, part): _texts(history.get(f"last_contact_{i}_{part}"), n)
        for i in range(1, TOP + 1)
        for part in CONTACT_PARTS
    }
    return [
        [
            {part: parts[(i, part)][m] for part in CONTACT_PARTS}
            for i in range(1, TOP + 1)
            if parts[(i, "ts")][m] is not None
        ]
        for m in range(n)
    ]


def held_names(held: dict[str, np.ndarray], n: int) -> list[list[str]]:
    """Each member's names of the rules that hold for them, in the rules' order."""
    out: list[list[str]] = [[] for _ in range(n)]
    for name, truth in held.items():
        for i in np.flatnonzero(truth).tolist():
            out[i].append(name)
    return out
