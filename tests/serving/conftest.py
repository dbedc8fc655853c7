"""The serving tests' community: champions of every kind of the table, trained once for the whole package."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from features.dataset.store import Dataset
from tests.conftest import synthetic, with_champions


@pytest.fixture(scope="package")
def shop(shared_home: StateHome) -> Dataset:
    """The serving dataset: 1,500 synthetic members over 15 months (to 2026-03-31), in the session's home."""
    return synthetic(shared_home, "shop", members=1_500)


@pytest.fixture(scope="package")
def home(shop: Dataset, monkeypatch_package: pytest.MonkeyPatch) -> StateHome:
    """The session's home, serving "shop" with a champion of every kind of the table."""
    monkeypatch_package.setenv("COMMUNITY_ML_DATASET", "shop")
    with_champions(shop)
    return shop.home


@pytest.fixture(scope="package")
def monkeypatch_package() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


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
