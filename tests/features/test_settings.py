"""The settings: every variable the project reads is declared once (features/common/settings.py), read nowhere
else, listed in the README's table, and shown by `community-ml settings` with where it came from, secrets masked."""

from __future__ import annotations

import ast
import json
import re

import pytest
from typer.testing import CliRunner

from cli import app
from features.common.errors import DataError
from features.common.settings import MASK, PREFIX, VARIABLES, Settings, project_settings, sources
from features.common.settings_cli import markdown_table
from tests.conftest import PROJECT_ROOT

PACKAGES = ("features", "serving", "training", "monitoring")
SETTINGS_MODULE = PROJECT_ROOT / "features" / "common" / "settings.py"


def _project_modules() -> list:
    return [p for package in PACKAGES for p in sorted((PROJECT_ROOT / package).rglob("*.py"))] + [
        PROJECT_ROOT / "cli.py"
    ]


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _reads(tree: ast.AST) -> list[int]:
    """Lines that read a variable of the environment: environ.get / getenv / environ[...] / `in environ` /
    an option's `envvar=`. Passing the whole environment on to a child process (`{**os.environ}`) reads none, and
    neither does setting another library's variable (`os.environ.setdefault("MLFLOW_...", ...)`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and _is_environ(node.func.value):
                found.append(node.lineno)
            if node.func.attr == "setdefault" and _is_environ(node.func.value):
                name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                if name is None or name in VARIABLES:
                    found.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getenv":
            found.append(node.lineno)
        if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            found.append(node.lineno)
        if isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            found.append(node.lineno)
        if isinstance(node, ast.keyword) and node.arg == "envvar":
            found.append(node.value.lineno)
    return found


def test_no_module_but_the_settings_reads_the_environment() -> None:
    readers = {
        f"{path.relative_to(PROJECT_ROOT)}:{line}"
        for path in _project_modules()
        if path != SETTINGS_MODULE
        for line in _reads(ast.parse(path.read_text()))
    }
    assert readers == set()
    assert _reads(ast.parse(SETTINGS_MODULE.read_text()))  # the check finds a read where there is one


def test_no_benchmark_reads_a_setting_but_through_the_settings() -> None:
    """Benchmarks may read the machine's own variables (OMP_NUM_THREADS, to report them) and set a child's, but a
    setting of the project only through the settings."""
    found = []
    for path in sorted((PROJECT_ROOT / "experiments").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
                "get",
                "getenv",
            }:
                key = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
                key = node.slice
            if isinstance(key, ast.Constant) and (key.value in VARIABLES or str(key.value).startswith(PREFIX)):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
        # and code a benchmark runs in a child (a string): a read of a project variable there too
        in_strings = re.findall(r"environ\[['\"](COMMUNITY_ML_\w+)['\"]\](?!\s*=)", path.read_text())
        found += [f"{path.relative_to(PROJECT_ROOT)}: {name}" for name in in_strings]
    assert found == []


def test_every_variable_named_in_the_code_is_a_declared_setting() -> None:
    named = {
        name
        for path in _project_modules()
        for name in re.findall(r"\bCOMMUNITY_ML_[A-Z_]+\b", path.read_text())
        if not name.endswith("_")  # the prefix itself
    }
    assert named - set(VARIABLES) == set()


def test_the_readme_table_is_the_settings_command_output() -> None:
    table = CliRunner().invoke(app, ["settings", "--markdown"]).stdout.strip()
    assert table == markdown_table()
    assert table in (PROJECT_ROOT / "README.md").read_text()
    assert all(f"`{variable}`" in table for variable in VARIABLES)
    assert all(info.description for info in Settings.model_fields.values())  # every setting says what it does


def test_settings_come_from_the_environment_else_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMUNITY_ML_WORKERS", raising=False)
    monkeypatch.setenv("COMMUNITY_ML_GATE_MEMBERS", " 1234 ")
    assert project_settings().gate_members == 1234 and project_settings().workers is None
    assert sources()["gate_members"] == "environment" and sources()["workers"] == "default"
    monkeypatch.setenv("COMMUNITY_ML_GATE_MEMBERS", "")  # empty is unset
    assert project_settings().gate_members == Settings.model_fields["gate_members"].default
    monkeypatch.setenv("COMMUNITY_ML_WORKERS", "many")
    with pytest.raises(DataError, match="COMMUNITY_ML_WORKERS='many'"):
        project_settings()


def test_the_settings_command_says_where_each_value_came_from_and_masks_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMMUNITY_ML_API_KEY", "s3cret")
    monkeypatch.setenv("COMMUNITY_ML_REDIS_URL", "redis://ops:hunter2@cache:6379/0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ops:hunter2@mlflow:5000")
    monkeypatch.setenv("COMMUNITY_ML_TRAINING_MEMBERS", "5000")
    monkeypatch.delenv("COMMUNITY_ML_CHALLENGER", raising=False)
    done = CliRunner().invoke(app, ["settings", "--json"])
    assert done.exit_code == 0, done.output
    rows = {r["variable"]: r for r in json.loads(done.stdout)}
    assert set(rows) == set(VARIABLES)
    assert rows["COMMUNITY_ML_API_KEY"]["value"] == MASK and "s3cret" not in done.stdout
    assert rows["COMMUNITY_ML_REDIS_URL"]["value"] == f"redis://ops:{MASK}@cache:6379/0"
    assert (rows["COMMUNITY_ML_TRAINING_MEMBERS"]["value"], rows["COMMUNITY_ML_TRAINING_MEMBERS"]["source"]) == (
        "5000",
        "environment",
    )
    assert rows["COMMUNITY_ML_CHALLENGER"]["source"] == "default"
    assert rows["MLFLOW_TRACKING_URI"]["value"] == f"http://ops:{MASK}@mlflow:5000" and "hunter2" not in done.stdout
    # a misspelt variable is said on stderr, with the setting it most looks like
    monkeypatch.setenv("COMMUNITY_ML_API_KY", "oops")
    warned = CliRunner().invoke(app, ["settings", "--json"])
    assert (
        "warning: COMMUNITY_ML_API_KY is no setting and is ignored (did you mean COMMUNITY_ML_API_KEY?)"
        in warned.stderr
    )
    assert json.loads(warned.stdout)  # stdout stays the JSON
    monkeypatch.setenv("COMMUNITY_ML_TRAINING_MEMBERS", "ten")
    refused = CliRunner().invoke(app, ["settings"])
    assert refused.exit_code == 2 and "COMMUNITY_ML_TRAINING_MEMBERS" in refused.output
