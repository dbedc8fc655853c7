"""Fresh answers: events posted to the service count in the members' next answers, survive a killed service, are
ingested into the tables exactly once, and reach every worker (through the journal) and every replica (Redis)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from features.dataset.store import Dataset
from tests.conftest import state_home_env
from tests.servers import RedisServer
from tests.serving.conftest import free_port, wait_until_ready

NOW = "2026-11-26T09:30:00"  # after the data (which ends 2026-03-31): recency counts it as today


def copy_of(home: StateHome, root: Path) -> StateHome:
    """The serving home's dataset, snapshots and registry copied to `root` (the registry's model files are shared,
    read-only): a test that posts events changes nobody else's answers."""
    for part in ("datasets", "features", "secrets"):
        if (home.root / part).exists():
            shutil.copytree(home.root / part, root / part)
    shutil.copy(home.mlflow_db, root / "mlflow.db")
    return StateHome(root)


@pytest.fixture
def own_home(home: StateHome, tmp_path: Path) -> Iterator[StateHome]:
    with state_home_env(tmp_path / "home", COMMUNITY_ML_DATASET="shop") as env_home:
        yield copy_of(home, env_home.root)


@pytest.mark.slow
def test_an_order_and_reads_count_in_the_members_next_answers_and_bad_events_are_named(own_home: StateHome) -> None:
    from serving.models.base import ListRules
    from serving.models.kinds import CONTENT_RECS
    from serving.state import load_state, member_scores, post_events, recommendations

    state = load_state(own_home, "shop")
    # given: a churn-risk member, and the content recommended to them
    answers, _ = member_scores(state, [f"M{i:06d}" for i in range(300, 700)])
    before = next(a for a in answers if a["tier"] == "churn_risk")
    member = before["member_id"]
    assert before["recency_days"] > 7 and not before["fresh"]
    read = [item["item_id"] for item in recommendations(state, CONTENT_RECS, [member], ListRules(k=5))[0]["items"]]
    read = read[:3]

    # when: they order now and read three of those items, and one engagement is broken
    posted = post_events(
        state,
        {
            "orders": [{"member_id": member, "ts": NOW, "amount": 80.0, "order_id": "EV-1", "product_id": "P00001"}],
            "engagements": [
                *({"member_id": member, "ts": NOW, "action": "read", "content_id": c} for c in read),
                {"member_id": member, "ts": "yesterday-ish", "action": "read", "content_id": read[0]},
            ],
        },
    )

    # then: the good events are kept and the bad one is named
    assert posted["accepted"] == 4 and posted["members_updated"] == 1
    assert posted["rejected"] == [
        {
            "table": "engagements",
            "index": 3,
            "field": "ts",
            "reason": "unparseable timestamp",
            "detail": "yesterday-ish",
        }
    ]
    assert len((own_home.events / "shop" / "journal.jsonl").read_text().splitlines()) == 4
    assert str(own_home.root) not in json.dumps(posted)  # the answer says what was kept, not where
    # and the member's next answers count them: bought today, less likely to churn, their new reading left out
    after = member_scores(state, [member])[0][0]
    assert after["fresh"] and after["recency_days"] == 0
    assert after["churn_probability"] < before["churn_probability"]
    relisted = recommendations(state, CONTENT_RECS, [member], ListRules(k=5))[0]
    assert relisted["fresh"] and not set(read) & {item["item_id"] for item in relisted["items"]}
    # the same order posted again (a client's retry) counts once
    order = {"member_id": member, "ts": NOW, "amount": 80.0, "order_id": "EV-1", "product_id": "P00001"}
    assert post_events(state, {"orders": [order]})["accepted"] == 1
    assert member_scores(state, [member])[0][0] == after
    # and nobody else changed
    assert not member_scores(state, ["M000001"])[0][0]["fresh"]


def test_a_worker_sees_the_events_another_worker_accepted(own_home: StateHome) -> None:
    from serving.state import load_state, member_scores, post_events

    first, second = load_state(own_home, "shop"), load_state(own_home, "shop")
    member = "M000321"
    post_events(first, {"orders": [{"member_id": member, "ts": NOW, "amount": 20.0, "order_id": "EV-9"}]})
    seen = member_scores(second, [member])[0][0]
    assert seen["fresh"] and seen["recency_days"] == 0
    assert seen == member_scores(first, [member])[0][0]


def test_the_worker_that_accepted_events_counts_them_while_it_is_still_folding_them(
    own_home: StateHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.state import load_state, member_scores, post_events

    state = load_state(own_home, "shop")
    member = "M000321"
    slow_fold = state.online.folder.fold

    def fold(*args: object, **kwargs: object) -> object:
        time.sleep(0.5)  # still folding when the next answer is asked for
        return slow_fold(*args, **kwargs)

    monkeypatch.setattr(state.online.folder, "fold", fold)
    post_events(state, {"orders": [{"member_id": member, "ts": NOW, "amount": 20.0, "order_id": "EV-10"}]})
    time.sleep(0.1)  # the background fold has read the journal and is folding
    seen = member_scores(state, [member])[0][0]
    assert seen["fresh"] and seen["recency_days"] == 0


def serve(home: StateHome, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--dataset", "shop", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COMMUNITY_ML_HOME": str(home.root), **env},
    )


def kill_all(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the server and every process it started (BentoML's workers are not in its process group)."""
    import psutil

    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)
    server.wait(timeout=30)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(binary, folder)
        try:
            yield server
        finally:
            server.process.terminate()
            server.process.wait(timeout=10)


@pytest.mark.slow
def test_a_real_server_shares_events_over_redis_and_loses_none_when_killed(
    own_home: StateHome,
    http: TestClient,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_url = redis_server.url
    import psutil
    import redis

    from features.dataset.event_log import Unavailable
    from serving.models.base import ListRules
    from serving.models.kinds import CONTENT_RECS
    from serving.state import load_state, member_scores, post_events, recommendations

    # given: a real server, and a replica with a state home of its own (another host, say): they share only Redis
    monkeypatch.setenv("COMMUNITY_ML_REDIS_URL", redis_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve(own_home, port)
    replica = load_state(copy_of(own_home, tmp_path / "other"), "shop")
    member = "M000455"
    orders = [
        {"member_id": member, "ts": NOW, "amount": 30.0, "order_id": "EV-K1", "product_id": "P00002"},
        {"member_id": member, "ts": NOW, "amount": 45.5, "order_id": "EV-K2", "product_id": "P00003"},
    ]
    engagements = [
        {"member_id": member, "ts": NOW, "action": "like", "content_id": "C00001"},
        {"member_id": member, "ts": NOW, "action": "dance"},
    ]
    try:
        wait_until_ready(base)
        # `community-ml serve` became the server (exec): a supervisor's signals reach it, no child outlives it
        assert "bentoml" in " ".join(psutil.Process(server.pid).cmdline())
        # every endpoint answers as the in-process service does (the same models and snapshot)
        calls = {
            "/churn": {"member_ids": ["M000001"]},
            "/value": {"member_ids": ["M000001"]},
            "/score": {"member_ids": ["M000001"]},
            "/profile": {"member_ids": ["M000001"]},
            "/recommend_products": {"member_ids": ["M000001"], "k": 3},
            "/recommend_content": {"member_ids": ["M000001"], "k": 3},
        }
        for path, payload in calls.items():
            served = httpx.post(base + path, json=payload, timeout=10)
            assert served.status_code == 200 and served.json() == http.post(path, json=payload).json(), path
        assert httpx.get(f"{base}/docs.json", timeout=5).json()["info"]["title"] == "community-ml"
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200

        # when: a member's orders and a like are posted to the server, with one broken event
        posted = httpx.post(f"{base}/events", json={"orders": orders, "engagements": engagements}, timeout=30)
        assert posted.status_code == 422 and posted.json()["accepted"] == 3
        assert [(r["table"], r["index"], r["field"]) for r in posted.json()["rejected"]] == [
            ("engagements", 1, "action")
        ]
        # then: the replica answers with them, though its own journal never saw them
        served = httpx.post(f"{base}/churn", json={"member_ids": [member]}, timeout=10).json()["members"][0]
        metadata = httpx.post(f"{base}/metadata", json={}, timeout=10).json()

        # when: a post is published to the server (beside a row with a field no content has)
        post = {"content_id": "C-POSTED", "content_type": "scene", "topic": "snacks", "tags": ["snacks"]}
        items = {"contents": [{**post, "published_at": NOW}, {"content_id": "C-ODD", "colour": "red"}]}
        posted = httpx.post(f"{base}/items", json=items, timeout=30)
        assert posted.status_code == 422 and posted.json()["accepted"] == 1
        assert [e["field"] for e in posted.json()["errors"]] == ["contents[1].colour"]
        # then: within a second every worker of the server lists it (the one that took it at once; the others read
        # what Redis shares at most every half second), and so does the replica
        time.sleep(0.6)
        new = {"member_ids": [member], "k": 3, "published_since": NOW[:10]}
        for _ in range(6):  # the requests spread over the workers
            answer = httpx.post(f"{base}/recommend_content", json=new, timeout=10).json()
            assert [i["item_id"] for i in answer["members"][0]["items"]] == ["C-POSTED"]
        rules = ListRules(k=3, published_since=date.fromisoformat(NOW[:10]))
        assert recommendations(replica, CONTENT_RECS, [member], rules)[0]["items"][0]["item_id"] == "C-POSTED"
    finally:
        # and: the server is killed (every process of it, at once) before anything ingested the events
        kill_all(server)
    seen = member_scores(replica, [member])[0][0]
    assert seen["fresh"] and seen["recency_days"] == 0 and seen == served
    assert metadata["online_store"].startswith("redis") and metadata["fresh_members"] == 1
    assert not (replica.online.journal.current.exists())

    # when: Redis is killed and started again on its append-only file, and the service starts again
    redis_server.kill_and_restart()
    restarted = load_state(own_home, "shop")
    # then: the stream gave back every event the server had accepted, once, to itself and the replica
    assert member_scores(restarted, [member])[0][0] == seen == member_scores(replica, [member])[0][0]
    stream = redis.Redis.from_url(redis_url)
    assert stream.xlen("community-ml:events:shop") == 4  # 2 orders, a like, a post

    # and ingesting from another host (the replica's home: it shares only Redis) adds each event to the tables
    # once, even when an ingest was killed after writing the tables and before acknowledging; none is left
    from typer.testing import CliRunner

    from cli import app
    from features.dataset.event_log import GROUP

    replica_home = tmp_path / "other"
    monkeypatch.setenv("COMMUNITY_ML_HOME", str(replica_home))
    stream.xgroup_create("community-ml:events:shop", GROUP, id="0")
    stream.xreadgroup(GROUP, "killed-ingest", {"community-ml:events:shop": ">"})  # read, never acknowledged
    ingested = CliRunner().invoke(app, ["data", "ingest", "--dataset", "shop", "--json"])
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.output)["added"] == {"orders": 2, "engagements": 1, "contents": 1}
    again = CliRunner().invoke(app, ["data", "ingest", "--dataset", "shop", "--json"])
    assert again.exit_code == 0
    assert json.loads(again.output)["added"] == {"orders": 0, "engagements": 0}
    assert stream.xlen("community-ml:events:shop") == 0
    stored = Dataset(StateHome(replica_home), "shop").read("orders")
    assert sorted(stored.loc[stored["order_id"].isin(["EV-K1", "EV-K2"]), "order_id"]) == ["EV-K1", "EV-K2"]
    likes = Dataset(StateHome(replica_home), "shop").read("engagements")
    assert len(likes[(likes["member_id"] == member) & (likes["ts"] == pd.Timestamp(NOW))]) == 1
    assert not list((own_home.events / "shop").glob("*.jsonl"))  # the server's disk held none of it

    # and: with Redis down, /events says so (503) and nothing is acknowledged
    redis_server.process.kill()
    redis_server.process.wait(timeout=10)
    with pytest.raises(Unavailable, match="Redis does not answer"):
        post_events(restarted, {"orders": [{**orders[0], "order_id": "EV-K3"}]})
    # and predictions keep coming, from the snapshot, saying why they are not fresh
    answer = member_scores(restarted, [member])[0][0]
    assert not answer["fresh"] and "Redis does not answer" in answer["stale"]
    monkeypatch.delenv("COMMUNITY_ML_REDIS_URL")
    snapshot_only = member_scores(load_state(own_home, "shop"), [member])[0][0]  # its tables never had the events
    assert answer["churn_probability"] == snapshot_only["churn_probability"] and not snapshot_only["fresh"]


@pytest.mark.slow
def test_a_champion_promoted_elsewhere_reaches_the_running_service_without_a_restart(own_home: StateHome) -> None:
    from mlflow import MlflowClient

    from serving.models import registry
    from serving.models.kinds import CHURN
    from serving.service import _SERVED, CommunityML
    from serving.state import member_scores

    serving = list(_SERVED)  # the http fixture's service answers the hot path: it is put back afterwards
    try:
        service = CommunityML.inner()  # the service object itself (one ASGI app per process is the http fixture's)
    finally:
        _SERVED[:] = serving
    before = member_scores(service.state, ["M000001"])[0][0]
    assert not service.champions_changed()
    # when: the training host promotes a new version (here: the same model registered again)
    uri = own_home.mlflow_tracking_uri()
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    current = registry.champion(mlflow, "shop", CHURN)
    assert current is not None
    promoted = mlflow.create_model_version(current.name, current.source, run_id=current.run_id)
    registry.set_champion(mlflow, "shop", CHURN, str(promoted.version))
    # then: the service's watch finds it and reloads; answers name the new version, with the same probability
    assert service.champions_changed() and service._reload() is None and not service.champions_changed()
    assert service.state.models(CHURN)["churn"]["version"] == str(promoted.version) != str(current.version)
    assert member_scores(service.state, ["M000001"])[0][0]["churn_probability"] == before["churn_probability"]


@pytest.mark.soak  # in make soak: the serving group is make test's longest path
def test_a_replica_serves_what_the_training_host_published_to_the_lake(
    own_home: StateHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli import app
    from features.pipelines.snapshots import Snapshot, resolve_as_of
    from serving.state import load_state, member_scores

    # given: the training host publishes the dataset's tables and snapshot to the lake (a folder here)
    monkeypatch.setenv("COMMUNITY_ML_LAKE", str(tmp_path / "lake"))
    published = CliRunner().invoke(app, ["features", "publish", "--dataset", "shop", "--json"])
    assert published.exit_code == 0, published.output
    trained = member_scores(load_state(own_home, "shop"), ["M000001", "M000455"])[0]
    # when: a replica with no dataset and no snapshot of its own (only the registry) starts, twice, losing its cache
    replica = StateHome(tmp_path / "replica")
    replica.root.mkdir()
    shutil.copy(own_home.mlflow_db, replica.mlflow_db)
    for _ in range(2):
        with state_home_env(replica.root, COMMUNITY_ML_LAKE=str(tmp_path / "lake")):
            state = load_state(replica, "shop")
            answers = member_scores(state, ["M000001", "M000455"])[0]
        # then: it answers as the training host does, from the published snapshot (copied, not rebuilt)
        assert answers == trained
        data = Dataset(replica, "shop")
        built = Snapshot(data, resolve_as_of(data, "latest")).meta()["built_at"]
        assert built == Snapshot(Dataset(own_home, "shop"), state.as_of).meta()["built_at"]
        shutil.rmtree(replica.datasets)
        shutil.rmtree(replica.features)
