"""The registry a state home reads: its own, unless the caller names a shared one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from features.common.home import StateHome
from serving.models import registry


@pytest.fixture
def mlflow_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's process-wide URIs as they were (the session's shared registry), whatever the test connects to."""
    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry_uri)


@pytest.mark.usefixtures("mlflow_restored")
def test_a_process_that_connects_to_two_homes_reads_each_ones_own_registry(tmp_path: Path) -> None:
    first, second = StateHome(tmp_path / "first"), StateHome(tmp_path / "second")
    assert registry.connect(first).tracking_uri == f"sqlite:///{first.mlflow_db}"
    # MLflow writes the URI into the environment; left there, it would name the registry of every later home
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert registry.connect(second).tracking_uri == f"sqlite:///{second.mlflow_db}"
    assert mlflow.get_tracking_uri() == f"sqlite:///{second.mlflow_db}"


@pytest.mark.usefixtures("mlflow_restored")
def test_a_registry_the_caller_names_is_every_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared)
    for name in ("first", "second"):
        assert registry.connect(StateHome(tmp_path / name)).tracking_uri == shared
    assert os.environ["MLFLOW_TRACKING_URI"] == shared
