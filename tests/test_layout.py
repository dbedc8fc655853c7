"""The project's shape: imports flow one way between the packages and between the parts inside them, the model
runtime never pulls in BentoML, and every model kind is defined once, in the table of kinds."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

from serving.models.kinds import KINDS
from tests.conftest import PROJECT_ROOT

# Each package may import only itself and the packages listed: features <- serving <- training <- monitoring.
MAY_IMPORT = {
    "features": {"features"},
    "serving": {"features", "serving"},
    "training": {"features", "serving", "training"},
    "monitoring": {"features", "serving", "training", "monitoring"},
}
PROJECT_PACKAGES = {*MAY_IMPORT, "experiments", "tests", "cli"}


def _modules(package: str) -> list:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT_PACKAGES


# Inside a package, each part may import only itself and the parts listed (a module of the package's own folder
# is the part named by the package). features: the common floor <- a dataset's tables <- the feature pipelines
# <- the member profile.
INNER_ORDER = {
    "features": {
        "features.common": {"features.common"},
        "features.dataset": {"features.common", "features.dataset"},
        "features.pipelines": {"features.common", "features.dataset", "features.pipelines"},
        # the member profile reads the tables and the snapshots' feature declarations
        "features.profiles": {"features.common", "features.dataset", "features.pipelines", "features.profiles"},
    },
    # training: the floor every task stands on (the trainer interface, tuning budgets, the gate, every metric) <-
    # each task's subpackage (uplift reads member fits) <- the job's story (tasks, choosing, tracking, promoting,
    # the job) <- its commands.
    "training": {
        "training.floor": {"training.floor"},
        "training.members": {"training.floor", "training.members"},
        "training.items": {"training.floor", "training.items"},
        "training.uplift": {"training.floor", "training.members", "training.uplift"},
        "training.story": {"training.floor", "training.members", "training.items", "training.uplift", "training.story"},
        "training.cli": {"training.floor", "training.members", "training.story", "training.cli"},
    },
}
# Parts made of single modules, by part.
PART_MODULES = {
    "training.floor": {"training.trainer", "training.tuning", "training.gate", "training.metrics"},
    "training.story": {
        "training.tasks",
        "training.choosing",
        "training.tracking",
        "training.promoting",
        "training.job",
    },
}


def _part(module: str, parts: dict[str, set[str]]) -> str | None:
    return next(
        (p for p in parts if module in PART_MODULES.get(p, {p}) or module.startswith(p + ".")),
        None,
    )


def test_inside_a_package_its_parts_import_only_the_parts_below_them() -> None:
    graph = _import_graph()
    broken = []
    for package, parts in INNER_ORDER.items():
        # every module of the package belongs to a declared part: a new folder or file must be placed in the order
        unplaced = [m for m in graph if m.startswith(package + ".") and _part(m, parts) is None and m != package]
        assert unplaced == [], f"{package}: modules outside its declared parts"
        for module, imported in graph.items():
            if (mine := _part(module, parts)) is None:
                continue
            broken += [
                f"{module} -> {other}"
                for other in imported
                if (theirs := _part(other, parts)) is not None and theirs not in parts[mine]
            ]
    assert broken == []


def test_each_package_imports_only_the_packages_below_it() -> None:
    broken = {
        str(path.relative_to(PROJECT_ROOT)): sorted(found - allowed)
        for package, allowed in MAY_IMPORT.items()
        for path in _modules(package)
        if (found := _imported(ast.parse(path.read_text()))) - allowed
    }
    assert broken == {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports, at any depth (a function's import is an import too);
    TYPE_CHECKING-only imports are left out: they never run."""
    modules = {_module_name(p): p for package in MAY_IMPORT for p in _modules(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body
            for n in ast.walk(child)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_importing_the_model_runtime_does_not_import_bentoml() -> None:
    probe = (
        "import sys, serving.models.batch, serving.models.champions, serving.models.pyfunc_model, "
        "serving.state, serving.prediction_log; print('bentoml' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_no_code_names_a_model_kind_but_the_table_of_kinds() -> None:
    """A kind's name as a string outside serving/models/kinds.py means a second definition of it: a table, an
    enum or a tuple that a new kind would have to be added to. (The word "value" as a JSON field, a dict key
    or a subscript, is the word, not the kind.)"""
    table = PROJECT_ROOT / "serving" / "models" / "kinds.py"
    found = []
    for package in MAY_IMPORT:
        for path in _modules(package):
            if path == table:
                continue
            tree = ast.parse(path.read_text())
            keys = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k is not None}
            keys |= {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
            found += [
                f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.value!r}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and node.value in KINDS
                and not (node.value == "value" and id(node) in keys)
            ]
    assert found == []
    assert sum(f'    "{name}",' in table.read_text() for name in KINDS) == len(KINDS)  # each defined there
