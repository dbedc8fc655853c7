"""What the service answers, as plain functions over a loaded state: testable without a server.

The state holds the champion models and the latest feature snapshot, scored once at load: a single-member
call is then a lookup, and the service answers exactly what batch scoring (`community-ml score`) writes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from features.errors import DataError
from features.home import StateHome
from features.model_registry import connect, load_champion, load_recommender
from features.recommending import Recommender, RecsKind
from features.scoring import MemberScorer, ModelKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
from features.store import Dataset
from features.tiers import assign_tiers

DATASET_ENV = "COMMUNITY_ML_DATASET"
PSEUDONYM_KEY_ENV = "COMMUNITY_ML_PSEUDONYM_KEY"


@dataclass
class ServingState:
    dataset: str
    as_of: date
    answers: dict[str, dict[str, Any]]  # member_id -> churn probability, expected value, tier, top reasons
    churn: MemberScorer
    value: MemberScorer
    recommenders: dict[RecsKind, Recommender]
    versions: dict[str, str]
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def load_state(home: StateHome, dataset_name: str) -> ServingState:
    """Champions from the registry and the latest snapshot of the dataset, scored for every member."""
    dataset = Dataset(home, dataset_name).require()
    client = connect(home)
    churn, churn_version = load_champion(client, ModelKind.churn)
    value, value_version = load_champion(client, ModelKind.value)
    versions = {"churn": str(churn_version.version), "value": str(value_version.version)}
    recommenders = {}
    for kind in RecsKind:
        try:
            recommenders[kind], version = load_recommender(client, kind)
            versions[kind.value] = str(version.version)
        except DataError:  # no champion of that kind: a dataset may have no contents, or products
            continue
    as_of = resolve_as_of(dataset, "latest")
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=value.spec.horizon_days))
    features = Snapshot(dataset, as_of).features()
    probability, expected = churn.predict(features), value.predict(features)
    tiers = assign_tiers(
        probability,
        expected,
        features["spend_180d"].to_numpy(dtype=float),
        features["tenure_days"].to_numpy(dtype=float),
        features["frequency"].to_numpy(dtype=float),
    )
    # Every answer is worked out once here, reasons included: a request is then a dictionary lookup.
    answers = {
        str(member): {
            "member_id": str(member),
            "cold_start": False,
            "churn_probability": float(p),
            "expected_value": float(e),
            "tier": str(t),
            "top_reasons": reasons,
        }
        for member, p, e, t, reasons in zip(
            features["member_id"], probability, expected, tiers, churn.top_reasons(features), strict=True
        )
    }
    return ServingState(dataset_name, as_of, answers, churn, value, recommenders, versions)


def member_scores(state: ServingState, member_ids: list[str]) -> list[dict[str, Any]]:
    """Churn probability, expected value, tier and top reasons per member; unknown members are cold start."""
    return [
        state.answers.get(member)
        or {
            "member_id": member,
            "cold_start": True,
            "churn_probability": None,
            "expected_value": None,
            "tier": "new",
            "top_reasons": [],
        }
        for member in member_ids
    ]


def recommendations(
    state: ServingState,
    kind: RecsKind,
    member_ids: list[str],
    k: int,
    exclude: list[str],
    category: str | None,
    include_seen: bool | None,
) -> list[dict[str, Any]]:
    recommender = state.recommenders.get(kind)
    if recommender is None:
        raise LookupError(f"no champion {kind.value} model is loaded; train one with `community-ml train {kind.value}`")
    exclude_seen = None if include_seen is None else not include_seen
    frame = recommender.recommend(member_ids, k, exclude_seen, exclude, category)
    items: dict[str, list[dict[str, Any]]] = {}
    cold: dict[str, bool] = {}
    for row in frame.itertuples(index=False):  # one pass, whatever the batch size
        items.setdefault(row.member_id, []).append(
            {"item_id": str(row.item_id), "rank": int(row.rank), "score": float(row.score)}
        )
        cold[row.member_id] = bool(row.cold_start)
    return [
        {"member_id": m, "cold_start": cold.get(m, m not in recommender._rows), "items": items.get(m, [])}
        for m in member_ids
    ]


class PredictionLog:
    """Appends one JSON line per prediction; each line is flushed, so a crash of the service loses nothing
    already answered. Member ids are keyed hashes, never raw."""

    def __init__(self, home: StateHome) -> None:
        self.folder = home.logs
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = pseudonym_key(home)
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._handle: Any = None

    def pseudonym(self, member_id: str) -> str:
        return hmac.new(self.key, member_id.encode(), hashlib.sha256).hexdigest()[:24]

    def write(
        self,
        endpoint: str,
        records: list[dict[str, Any]],
        versions: dict[str, str],
        started: float,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        now = datetime.now(UTC)
        path = self.folder / f"predictions-{now:%Y-%m-%d}.jsonl"
        lines = [
            json.dumps(
                {
                    "at": now.isoformat(timespec="milliseconds"),
                    "endpoint": endpoint,
                    "member": self.pseudonym(r["member_id"]),
                    "output": {k: v for k, v in r.items() if k != "member_id"},
                    "inputs": inputs or {},
                    "versions": versions,
                    "latency_ms": latency_ms,
                },
                default=str,
            )
            for r in records
        ]
        with self._lock:
            if self._path != path:  # a new day, a new file
                if self._handle is not None:
                    self._handle.close()
                self._path, self._handle = path, path.open("a", encoding="utf-8")
            assert self._handle is not None
            self._handle.write("\n".join(lines) + "\n")
            self._handle.flush()


def pseudonym_key(home: StateHome) -> bytes:
    """The key of member-id hashes: `$COMMUNITY_ML_PSEUDONYM_KEY`, else a random key kept in the state home."""
    configured = os.environ.get(PSEUDONYM_KEY_ENV, "").strip()
    if configured:
        return configured.encode()
    path = home.root / "secrets" / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(32).hex().encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


def log_path(home: StateHome, day: date) -> Path:
    return home.logs / f"predictions-{day:%Y-%m-%d}.jsonl"
