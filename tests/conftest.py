"""Shared fixtures: a private state home per test, the real Online Retail file when it is there."""

from __future__ import annotations

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
