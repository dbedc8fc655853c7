"""Shared fixtures: a private state home per test, the real Online Retail file when it is there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from features.home import StateHome
from features.store import Dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL_CSV = PROJECT_ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"

requires_online_retail = pytest.mark.skipif(
    not ONLINE_RETAIL_CSV.exists(),
    reason=f"the Online Retail dataset is not at {ONLINE_RETAIL_CSV} (../shared is absent)",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    """A fresh $COMMUNITY_ML_HOME for one test."""
    root = tmp_path / "home"
    monkeypatch.setenv("COMMUNITY_ML_HOME", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return StateHome(root)


@pytest.fixture
def dataset(home: StateHome) -> Dataset:
    return Dataset(home, "test")


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@contextmanager
def state_home_env(root: Path, **extra: str) -> Iterator[StateHome]:
    """$COMMUNITY_ML_HOME (and `extra` variables) pointing at `root` for a module's shared fixture, restored
    afterwards; MLflow goes to the home's sqlite file, whatever the caller's environment says."""
    changes = {"COMMUNITY_ML_HOME": str(root), **extra}
    saved = {k: os.environ.get(k) for k in [*changes, "MLFLOW_TRACKING_URI"]}
    os.environ.update(changes)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield StateHome(root)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
