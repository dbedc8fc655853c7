"""The registry on a server, as several machines share it: `mlflow server` on PostgreSQL with proxied artefacts.
A training home trains and promotes through it; two replica homes, which share nothing with it but the server,
load those champions and answer alike, with no registry or artefacts of their own; with the server down, a replica
starts on the champions it cached, and one that never reached it says why it cannot start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from features.common.errors import DataError
from features.common.home import StateHome
from tests.conftest import state_home_env, synthetic, with_champions
from tests.servers import MlflowServer, Postgres


@pytest.mark.soak
def test_champions_trained_on_one_home_serve_from_two_others_through_an_mlflow_server_on_postgresql(
    tmp_path: Path,
) -> None:
    from serving.models import registry
    from serving.models.kinds import CHURN
    from serving.state import load_state, member_scores
    from training.job import TrainSettings

    database = Postgres()
    server = None
    try:
        server = MlflowServer(database.uri, tmp_path / "artifacts")
        answered_by = server.url
        with state_home_env(tmp_path / "training", MLFLOW_TRACKING_URI=server.url) as home:
            quick = TrainSettings(training_cutoffs=1, test_cutoffs=1, family="lightgbm", budget_seconds=0)
            community = with_champions(synthetic(home, "pg-shop", members=300, seed=5), [CHURN], quick)
            version = registry.champion(registry.connect(home), community.name, CHURN)
            assert version is not None and version.source.startswith("models:/")
        assert not (home.root / "mlflow.db").exists() and not (home.root / "mlartifacts").exists()
        answers = []
        for name in ("replica-a", "replica-b"):  # a copy of the tables stands for the lake; no registry copied
            replica = StateHome(tmp_path / name)
            shutil.copytree(community.path, replica.datasets / community.name)
            with state_home_env(replica.root, MLFLOW_TRACKING_URI=server.url):
                state = load_state(replica, community.name)
                answers.append((state.models(CHURN), member_scores(state, ["M000001", "M000002"])[0]))
            assert not (replica.root / "mlflow.db").exists() and not (replica.root / "mlartifacts").exists()
        # when: the MLflow server is down and the replicas start again
        server.stop()
        server = None
        with state_home_env(tmp_path / "replica-a", MLFLOW_TRACKING_URI=answered_by):
            restarted = load_state(StateHome(tmp_path / "replica-a"), community.name)
            cached = (restarted.models(CHURN), member_scores(restarted, ["M000001", "M000002"])[0])
            assert restarted.champions.cached_at is not None  # /metadata says so: champions_cached_at
        fresh = StateHome(tmp_path / "replica-c")  # one that never reached the server
        shutil.copytree(community.path, fresh.datasets / community.name)
        refused = pytest.raises(DataError, match=r"is unreachable .* no champions of 'pg-shop' cached")
        with state_home_env(fresh.root, MLFLOW_TRACKING_URI=answered_by), refused:
            load_state(fresh, community.name)
    finally:
        if server is not None:
            server.stop()
        database.stop()
    assert answers[0] == answers[1] == cached  # then: a replica that served them starts on its cached champions
    models, scores = answers[0]
    assert models["churn"]["version"] == version.version and 0 < scores[0]["churn_probability"] < 1
