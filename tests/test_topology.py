"""Three hosts that share no disk: a training home and two replica homes, with only the lake (a folder standing for
a bucket), Redis and an MLflow server on PostgreSQL between them (`make soak`: the servers cost half a minute)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from features.common.home import StateHome
from features.dataset.store import Dataset
from tests.conftest import state_home_env, synthetic, with_champions
from tests.servers import MlflowServer, Postgres, RedisServer
from tests.serving.conftest import free_port, wait_until_ready

NOW = "2026-11-26T09:30:00"


def serve(root: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cli", "serve", "--dataset", "pg-shop", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env, "COMMUNITY_ML_HOME": str(root)},
    )


@pytest.mark.soak
def test_two_replicas_and_a_training_host_share_only_the_lake_redis_and_the_mlflow_server(tmp_path: Path) -> None:
    from cli import app
    from serving.models.kinds import CHURN
    from training.job import TrainSettings

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    database, redis_folder = Postgres(), tempfile.mkdtemp(prefix="community-ml-redis-")
    redis = RedisServer(binary, redis_folder)
    mlflow = MlflowServer(database.uri, tmp_path / "artifacts")
    shared = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "COMMUNITY_ML_REDIS_URL": redis.url,
        "COMMUNITY_ML_LAKE": str(tmp_path / "lake"),
        "COMMUNITY_ML_CHAMPION_POLL_SECONDS": "0",
    }
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        # the training host: trains through the server and publishes to the lake
        with state_home_env(tmp_path / "training", **shared) as home:
            quick = TrainSettings(training_cutoffs=1, test_cutoffs=1, family="lightgbm", budget_seconds=0)
            community = with_champions(synthetic(home, "pg-shop", members=300, seed=5), [CHURN], quick)
            published = CliRunner().invoke(app, ["features", "publish", "--dataset", community.name])
            assert published.exit_code == 0, published.output
        # two replicas with empty homes of their own
        ports = [free_port(), free_port()]
        for name, port in zip(("a", "b"), ports, strict=True):
            replicas.append(serve(tmp_path / f"replica-{name}", port, shared))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for base in bases:
            wait_until_ready(base, 120)
        member = "M000007"
        order = {"member_id": member, "ts": NOW, "amount": 30.0, "order_id": "T-1", "product_id": "P00002"}
        # when: an order is posted to replica A
        assert httpx.post(f"{bases[0]}/events", json={"orders": [order]}, timeout=30).status_code == 200
        # then: it counts in replica B's next answer
        answer = httpx.post(f"{bases[1]}/churn", json={"member_ids": [member]}, timeout=30).json()["members"][0]
        assert answer["fresh"] and answer["recency_days"] == 0
        # when: A acknowledges more orders and is SIGKILLed right after
        more = [{**order, "order_id": f"T-{i}", "amount": 10.0 + i} for i in range(2, 6)]
        assert httpx.post(f"{bases[0]}/events", json={"orders": more}, timeout=30).json()["accepted"] == 4
        replicas[0].kill()
        replicas[0].wait(timeout=30)
        # then: B keeps answering
        for _ in range(3):
            assert httpx.post(f"{bases[1]}/churn", json={"member_ids": [member]}, timeout=30).status_code == 200
        # and: data ingest, twice on the training host, holds each acknowledged order exactly once
        with state_home_env(tmp_path / "training", **shared):
            for expected in (5, 0):
                ingested = CliRunner().invoke(app, ["data", "ingest", "--dataset", community.name, "--json"])
                assert ingested.exit_code == 0, ingested.output
                assert json.loads(ingested.output)["added"]["orders"] == expected
        stored = Dataset(StateHome(tmp_path / "training"), community.name).read("orders")
        assert sorted(stored.loc[stored["order_id"].astype(str).str.startswith("T-"), "order_id"]) == [
            f"T-{i}" for i in range(1, 6)
        ]
        for name in ("replica-a", "replica-b"):  # no registry, no artefacts: the server and the lake had them
            assert not (tmp_path / name / "mlflow.db").exists() and not (tmp_path / name / "mlartifacts").exists()
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait(timeout=30)
        mlflow.stop()
        redis.process.terminate()
        redis.process.wait(timeout=10)
        shutil.rmtree(redis_folder, ignore_errors=True)
        database.stop()
