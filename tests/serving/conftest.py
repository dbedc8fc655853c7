"""The serving tests' shared community: champions of every model, trained once for the whole package."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from features.home import StateHome
from features.importers import import_synthetic
from features.model_registry import champion, connect
from features.recommending import RecsKind
from features.scoring import ModelKind
from features.store import Dataset
from features.synthetic import SyntheticConfig
from tests.conftest import state_home_env
from training.registry import set_champion
from training.train import TrainSettings, train
from training.train_recs import RecsTrainSettings, train_recs


@pytest.fixture(scope="package")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateHome]:
    """A state home with champions of churn, value and both recommenders for a small community."""
    with state_home_env(tmp_path_factory.mktemp("serving-home"), COMMUNITY_ML_DATASET="shop") as home:
        dataset = Dataset(home, "shop")
        import_synthetic(dataset, SyntheticConfig(members=1_500))
        client = connect(home)
        quick = TrainSettings(training_cutoffs=2, test_cutoffs=1)
        for kind in ModelKind:
            result = train(dataset, kind, quick)
            if champion(client, kind.value) is None:  # the service needs one, whatever the gate said
                set_champion(client, kind.value, result.version)
        for recs in RecsKind:
            result = train_recs(dataset, recs, RecsTrainSettings())
            if champion(client, recs.value) is None:
                set_champion(client, recs.value, result.version)
        yield home


@pytest.fixture(scope="package")
def http(home: StateHome) -> Iterator[TestClient]:
    from serving.service import CommunityML

    with TestClient(CommunityML.to_asgi()) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(base: str, seconds: float = 60.0) -> None:
    """Polls /readyz until the server answers 200; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server at {base} did not become ready in {seconds:.0f} s")


def nothing_listens(port: int, seconds: float = 15.0) -> bool:
    """True once no server accepts connections on the port (it may take a moment to shut down)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.5)
    return False
