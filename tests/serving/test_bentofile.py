"""bentofile.yaml: the Bento names the service that exists and the same dependencies as pyproject.toml."""

from __future__ import annotations

import tomllib

import yaml

from tests.conftest import PROJECT_ROOT


def test_the_bento_packs_the_service_and_the_projects_runtime_dependencies() -> None:
    bento = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert bento["service"] == "serving.service:CommunityML"
    assert sorted(bento["python"]["packages"]) == sorted(project["dependencies"])
    assert {"features/**/*.py", "serving/**/*.py"} <= set(bento["include"])
