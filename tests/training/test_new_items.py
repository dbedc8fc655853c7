"""New items from training to answers: the gate judges new-item lists beside the attribute peers, and an item posted
to the service (or imported) is in the right member's next list without a retrain, never before its published_at,
never while inactive. (The service's /items over HTTP, across workers and replicas: tests/serving/test_events.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.common.home import StateHome
from features.dataset.event_log import ingest
from features.dataset.importers import import_file
from features.dataset.store import Dataset
from serving.models import registry
from serving.models.base import ListRules
from serving.models.batch import RecommendRequest, recommend
from serving.models.kinds import CONTENT_RECS, PRODUCT_RECS
from serving.state import load_state, post_items, recommendations
from tests.conftest import synthetic
from training.job import TrainResult, TrainSettings, train

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@pytest.fixture(scope="module")
def trained(shared_home: StateHome) -> tuple[Dataset, dict[str, TrainResult]]:
    """A small community (500 members, 6 months) with both recommenders trained, every family judged."""
    dataset = synthetic(shared_home, "new-items", members=500, months=6)
    client = registry.connect(dataset.home)
    results = {}
    for kind in (PRODUCT_RECS, CONTENT_RECS):
        results[kind.name] = result = train(dataset, kind, TrainSettings(budget_seconds=0))
        if not result.promoted:
            registry.set_champion(client, dataset.name, kind, result.version)
    return dataset, results


def test_the_gate_judges_new_item_lists_beside_the_attribute_peers(trained: tuple[Dataset, dict]) -> None:
    dataset, results = trained
    client = registry.connect(dataset.home)
    for kind in (PRODUCT_RECS, CONTENT_RECS):
        result = results[kind.name]
        rows = client.download_artifacts(result.run_id, "backtest.json")
        judged = [r for r in pd.read_json(rows)["rows"] if r["mode"] == "new items"]
        methods = {r["method"] for r in judged}
        # every family's transfer beside the four peers, on the same members
        assert {"random", "newest", "reach", "affinity", *result.rivals, result.family} <= methods, kind.name
        assert len({r["members"] for r in judged}) == 1 and judged[0]["members"] >= 30
        assert 0.0 <= result.metrics["new_item_ndcg"] <= 1.0
        # the peers are real rankings: the member's own affinity beats drawing at random
        ndcg = {r["method"]: r["ndcg"] for r in judged}
        assert ndcg["affinity"] > ndcg["random"], kind.name


def _fitting_post(dataset: Dataset, member: str) -> dict[str, object]:
    """A post with the type, topic, author and tags of the member's most engaged content: one that fits them."""
    engaged = dataset.read("engagements", ["member_id", "content_id"])
    favourite = engaged[engaged["member_id"] == member]["content_id"].dropna().value_counts().index[0]
    contents = dataset.read("contents").set_index("content_id")
    like = contents.loc[favourite]
    return {
        "content_type": like["content_type"],
        "topic": like["topic"],
        "author_id": like["author_id"],
        "tags": list(like["tags"]),
        "title": f"{like['title']} (new)",
    }


def test_a_posted_item_is_in_the_right_members_next_list_from_its_published_at_and_never_while_inactive(
    trained: tuple[Dataset, dict],
) -> None:
    dataset, _ = trained
    state = load_state(dataset.home, dataset.name)
    member = "M000001"
    post = _fitting_post(dataset, member)
    published = (NOW - timedelta(hours=1)).isoformat()
    tomorrow = (NOW + timedelta(days=1)).isoformat()
    batch = {
        "contents": [
            {"content_id": "C-NEW-NOW", "published_at": published, **post},
            {"content_id": "C-NEW-TOMORROW", "published_at": tomorrow, **post},
            {"content_id": "C-BAD-FIELD", "published_at": published, "colour": "red"},
            {"content_id": "C-BAD-DATE", "published_at": "next tuesday"},
        ],
        "products": [
            {"product_id": "P-NEW-ON", "published_at": published, "category": "snacks", "active": True},
            {"product_id": "P-NEW-OFF", "published_at": published, "category": "snacks", "active": False},
        ],
    }
    answer = post_items(state, batch)
    # bad rows named (position and field), the good ones kept
    assert answer["accepted"] == 4 and answer["items"] == {"contents": 2, "products": 2}
    assert [(r["table"], r["index"], r["field"]) for r in answer["rejected"]] == [
        ("contents", 2, "colour"),
        ("contents", 3, "published_at"),
    ]
    # what's new for the member: the post published an hour ago, first; not tomorrow's
    since = date.fromisoformat(str(NOW.date() - timedelta(days=1)))
    listed = _items(recommendations(state, CONTENT_RECS, [member], ListRules(k=5, published_since=since)))
    assert listed[0] == "C-NEW-NOW" and "C-NEW-TOMORROW" not in listed
    # and in the member's everyday list, where it fits them
    assert "C-NEW-NOW" in _items(recommendations(state, CONTENT_RECS, [member], ListRules(k=10)))
    # an inactive product never; the active one is new for anyone asking for new snacks
    snacks = ListRules(k=10, category="snacks", published_since=since)
    for listed_member in recommendations(state, PRODUCT_RECS, [member, "NOBODY"], snacks):
        items = [i["item_id"] for i in listed_member["items"]]
        assert "P-NEW-ON" in items and "P-NEW-OFF" not in items
    # a service started afresh finds the posted items in the journal; ingest adds them to the catalogue
    again = load_state(dataset.home, dataset.name)
    assert _items(recommendations(again, CONTENT_RECS, [member], ListRules(k=5, published_since=since)))[0] == (
        "C-NEW-NOW"
    )
    summary = ingest(dataset)
    assert summary.added["contents"] == 2 and summary.added["products"] == 2
    stored = dataset.read("contents").set_index("content_id")
    assert stored.loc["C-NEW-NOW", "tags"].tolist() == post["tags"]


def _items(records: list[dict[str, Any]]) -> list[str]:
    return [i["item_id"] for i in records[0]["items"]]


def test_an_imported_item_is_listed_without_a_retrain(trained: tuple[Dataset, dict], tmp_path: Path) -> None:
    dataset, _ = trained
    members = dataset.read("members", ["member_id", "consent_marketing"])
    member = str(members[members["consent_marketing"].fillna(False).astype(bool)]["member_id"].iloc[2])  # a push list
    post = _fitting_post(dataset, member)
    csv = tmp_path / "contents.csv"
    pd.DataFrame([{"content_id": "C-IMPORTED", "published_at": (NOW - timedelta(hours=2)).isoformat(), **post}]).assign(
        tags="|".join(post["tags"])
    ).to_csv(csv, index=False)  # type: ignore[arg-type]
    import_file(dataset, "contents", csv)
    request = RecommendRequest(k=3, published_since=date.fromisoformat(str(NOW.date() - timedelta(days=1))))
    table, _, _ = recommend(dataset, CONTENT_RECS, tmp_path / "new.csv", request, [member])
    assert "C-IMPORTED" in table["item_id"].tolist()
    # only new items: nothing published before the day asked
    published = dataset.read("contents").set_index("content_id")["published_at"]
    assert (published.reindex(table["item_id"]) >= pd.Timestamp(request.published_since)).all()
