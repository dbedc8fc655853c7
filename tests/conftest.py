"""Shared fixtures: a private state home per test, one state home (and one MLflow registry) shared by the whole
session for the expensive trained communities, and the real Online Retail file when it is there.

Every dataset owns its registered models (DATASET.KIND), so test modules share the session's registry without
touching each other's champions: each trains its own dataset.
"""

from __future__ import annotations

import hashlib
import os

# Set before LightGBM (or anything using OpenMP) loads: two test workers share two cores, and OpenMP threads that
# spin while they wait for work starve the other worker. Training the serving package's champions took 107 s
# beside the other worker with spinning threads, 21 s without.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Services in tests reload on POST /reload alone: a watcher asking the registry every 30 s would do so at moments no
# test chose (the test of promotions reaching a service asks it when it means to).
os.environ.setdefault("COMMUNITY_ML_CHAMPION_POLL_SECONDS", "0")
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from features.common.home import StateHome
from features.dataset.importers import import_synthetic
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig

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
    """$COMMUNITY_ML_HOME (and `extra` variables) pointing at `root`, restored afterwards; MLflow goes to the
    home's sqlite file, whatever the caller's environment says, unless `extra` names a server."""
    changes = {"COMMUNITY_ML_HOME": str(root), **extra}
    saved = {k: os.environ.get(k) for k in [*changes, "MLFLOW_TRACKING_URI"]}
    os.environ.update(changes)
    if "MLFLOW_TRACKING_URI" not in extra:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield StateHome(root)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateHome]:
    """One state home for the session: an MLflow sqlite registry takes ~10 s to create its schema, so it is
    created once; each test package keeps its own datasets (and so its own models) in it."""
    from serving.models.registry import connect

    with state_home_env(tmp_path_factory.mktemp("shared-home")) as home:
        connect(home).search_registered_models(max_results=1)  # creates the schema now, once
        pin_pseudonym_key(home)
        yield home


# The shared home's pseudonym key, fixed: every keyed split (a campaign's arms, the held-out members an uplift model
# is judged on, a challenger's share) is then the same in every run, on every machine. A random key per run drew
# a new held-out set each time: the uplift tests' margins were measured over such draws (README, Testing).
PINNED_PSEUDONYM_KEY = hashlib.sha256(b"community-ml test session").hexdigest()


def pin_pseudonym_key(home: StateHome) -> None:
    path = home.root / "secrets" / "pseudonym.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(PINNED_PSEUDONYM_KEY)
    path.chmod(0o600)


@pytest.fixture(scope="session")
def online_retail(shared_home: StateHome) -> tuple[Dataset, object]:
    """The real Online Retail file imported once for the session, and its import summary."""
    from features.dataset.online_retail import import_online_retail

    if not ONLINE_RETAIL_CSV.exists():
        pytest.skip(f"the Online Retail dataset is not at {ONLINE_RETAIL_CSV} (../shared is absent)")
    dataset = Dataset(shared_home, "retail")
    return dataset, import_online_retail(dataset, ONLINE_RETAIL_CSV)


def synthetic(home: StateHome, name: str, **config: object) -> Dataset:
    """The synthetic community `name` in `home`, generated on first use."""
    dataset = Dataset(home, name)
    if not dataset.exists():
        import_synthetic(dataset, SyntheticConfig(**config))
    return dataset


def with_champions(dataset: Dataset, kinds: list | None = None, settings: object | None = None) -> Dataset:
    """Trains each kind (default: every kind of the table that needs no campaign) on the dataset once, quickly, and
    makes it champion even where the gate refused it: the tests that need champions test serving and monitoring,
    not the gate."""
    from serving.models import registry
    from serving.models.kinds import KINDS
    from training.job import TrainSettings, train

    client = registry.connect(dataset.home)
    for kind in kinds or [k for k in KINDS.values() if not k.learns_from_campaign]:
        if registry.champion(client, dataset.name, kind) is None:
            # the kind's learned family (LightGBM, ALS), whatever the choice: these tests serve what it offers
            quick = settings or TrainSettings(training_cutoffs=2, test_cutoffs=1, family=kind.family, budget_seconds=0)
            result = train(dataset, kind, quick)
            if not result.promoted:
                registry.set_champion(client, dataset.name, kind, result.version)
    return dataset


# The serving package's fixtures that train its champions (tests/serving/conftest.py): the tests that use them share
# one worker; serving's other tests are grouped by module like the rest.
SERVING_FIXTURES = {"shop", "home", "http"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spark-cluster",
        action="store_true",
        help="run the Spark tests on a standalone cluster (a master and two workers) instead of local mode",
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    """`make test` runs the tests on two workers (pytest-xdist, --dist loadgroup). Tests that share an expensive
    fixture stay on one worker, so it is built once: a package's (serving's trained champions, monitoring's
    communities), or else the test module's. (Marked as each test is collected: pytest-xdist reads the groups
    when the collection is modified.)"""
    relative = item.path.relative_to(PROJECT_ROOT / "tests")
    fixtures = set(getattr(item, "fixturenames", ()))
    if relative.parts[0] == "monitoring" or (relative.parts[0] == "serving" and fixtures & SERVING_FIXTURES):
        group = relative.parts[0]
    elif "online_retail" in getattr(item, "fixturenames", ()) or relative.name == "test_spark.py":
        # The real file is imported once, by the one worker that reads it; the Spark tests read it too, and start
        # one JVM for all of them.
        group = "online_retail"
    else:
        group = str(relative)
    item.add_marker(pytest.mark.xdist_group(group))


# Groups by how long they take (measured), longest first: each worker takes the next group as it frees up, so
# the long ones must not come last (`make test` keeps this order with --no-loadscope-reorder).
LONGEST_FIRST = (
    "serving",  # ~135 s: trained champions of every kind, fuzzing, a real server and a Bento
    "online_retail",  # ~120 s: the real file imported, and Spark's snapshots and scores beside DuckDB's
    "monitoring",  # ~90 s: two trained communities and their Evidently reports
    "training/test_job.py",  # ~45 s: the training job end to end
    "training/test_campaigns.py",  # ~35 s: a campaign community, its report, uplift, push lists and an import
    "features/test_snapshots.py",
    "training/test_backtest.py",
    "features/test_privacy.py",
)


def _group(item: pytest.Item) -> str:
    return next(m.args[0] for m in item.iter_markers("xdist_group"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))
