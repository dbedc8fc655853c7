"""`community-ml bento build`: a Bento that carries the champion models and serves them without the registry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from features.common.home import StateHome
from serving.models.kinds import KINDS, Task
from serving.state import load_state, member_scores
from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import free_port, wait_until_ready


@pytest.mark.slow
def test_the_bento_carries_the_champions_and_serves_them_without_the_registry(home: StateHome, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    # --no-lock: pinning every package needs the package index and a minute; what is packed is the point here.
    built = subprocess.run(
        [sys.executable, "-m", "cli", "bento", "build", "--dataset", "shop", "--no-lock"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    tag = re.search(r"built (\S+):", built.stdout).group(1)
    name, version = tag.split(":")
    bento = tmp_path / "bentoml" / "bentos" / name / version  # the Bento store's layout
    manifest = (bento / "bento.yaml").read_text()
    for kind in KINDS.values():
        assert (f"community-ml-{kind.name}:" in manifest) != kind.learns_from_campaign  # no campaign, no uplift
    assert (bento / "src" / "serving" / "service.py").exists()
    assert not (bento / "src" / "training").exists()  # the service needs the model runtime, not the training code
    assert "COMMUNITY_ML_MODEL_SOURCE" in manifest

    # Served as a Bento, with the registry out of reach: the models come from the Bento.
    port = free_port()
    unreachable = {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # the Bento names its dataset itself
    server = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)],
        env=unreachable,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base)
        served = httpx.post(f"{base}/churn", json={"member_ids": ["M000002"]}, timeout=10).json()
        metadata = httpx.post(f"{base}/metadata", json={}, timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=30)

    # then: the Bento's champions are the registry's, and answer the same, bit for bit
    from_registry = load_state(home, "shop")
    assert metadata["dataset"] == "shop" and metadata["models"] == from_registry.models()
    assert served["members"][0] == json.loads(json.dumps(member_scores(from_registry, ["M000002"])[0][0]))
    assert served["models"] == from_registry.models(*[c.kind for c in from_registry.champions.of(Task.member)])
