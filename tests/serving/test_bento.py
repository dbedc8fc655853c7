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

from features.home import StateHome
from serving.predictions import load_state
from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import free_port, wait_until_ready


@pytest.mark.slow
def test_the_bento_carries_the_champions_and_serves_them_without_the_registry(home: StateHome, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    # --no-lock: pinning every package needs the package index and a minute; what is packed is the point here.
    built = subprocess.run(
        [sys.executable, "-m", "cli", "bento", "build", "--no-lock"],
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
    for name in ("churn", "value", "product-recs", "content-recs"):
        assert f"community-ml-{name}:" in manifest
    assert (bento / "src" / "serving" / "service.py").exists()
    assert "COMMUNITY_ML_MODEL_SOURCE" in manifest

    # Served as a Bento, with the registry out of reach: the models come from the Bento.
    port = free_port()
    unreachable = {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "COMMUNITY_ML_DATASET": "shop"}
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
    finally:
        server.terminate()
        server.wait(timeout=30)

    # And the same, loaded in-process as the Bento would (the registry out of reach).
    probe = (
        "import json; from features.home import StateHome; from serving.predictions import load_state; "
        "s = load_state(StateHome.from_env(), 'shop'); "
        "print(json.dumps({'versions': s.versions, 'answer': s.answers['M000002']}))"
    )
    packed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**env, "COMMUNITY_ML_MODEL_SOURCE": "bento", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert packed.returncode == 0, packed.stderr[-2000:]
    from_bento = json.loads(packed.stdout.strip().splitlines()[-1])
    from_registry = load_state(home, "shop")
    assert from_bento["versions"] == from_registry.versions
    assert from_bento["answer"] == json.loads(json.dumps(from_registry.answers["M000002"]))  # bit for bit
    assert served["members"][0] == from_bento["answer"]
    assert served["model_versions"] == {k: from_registry.versions[k] for k in ("churn", "value")}
