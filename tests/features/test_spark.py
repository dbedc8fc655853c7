"""The Spark engine builds the same snapshot files as DuckDB: every feature, label and interaction matrix, on the
synthetic community and on Online Retail (money to the cent, counts exactly, other floats to 1e-9 relative).

One Spark session serves the whole module: local mode in `make test`; in `make soak` (--spark-cluster), on a
standalone cluster, a master and two workers started from the PySpark install, as a brand runs it (executors in
JVMs of their own). It needs the `spark` extra and Java 17 or 21, which `make test` installs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.common.home import StateHome
from features.common.settings import Settings
from features.dataset.store import Dataset
from features.pipelines import engines
from features.pipelines.engines import Engine
from features.pipelines.interactions import Interactions
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, upgrade_timestamps
from tests.conftest import state_home_env, synthetic, with_champions
from tests.serving.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None,
        reason="PySpark is not installed: `uv sync --extra spark` (make test installs it)",
    ),
    pytest.mark.skipif(
        engines.java_for_spark() is None,
        reason="Spark needs Java 17 or 21: none on PATH or under /usr/lib/jvm (`make java` installs it)",
    ),
]

# Money: sums of amounts, compared to the cent. The spend trends are ratios of them: floats, to 1e-9 like the rest.
MONEY = re.compile(r"^(monetary|sales_value|returned_value|future_value|spend(_prev)?_\d+d)$")
# Small data: one shuffle partition and no adaptive re-planning save seconds per query (style.md).
# A JVM that compiles with C1 alone warms up faster: 40 s against 60 s for a first snapshot of 2,000 members.
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
TEST_SPARK_CONF = (
    "spark.sql.shuffle.partitions=1,spark.sql.adaptive.enabled=false,spark.driver.memory=1g,"
    f"spark.executor.memory=768m,spark.driver.extraJavaOptions={FAST_JVM},spark.executor.extraJavaOptions={FAST_JVM}"
)


class StandaloneCluster:
    """A Spark standalone cluster from the PySpark install: a master and two workers of one core each (what a
    brand's cluster is, on one machine), `spark://127.0.0.1:PORT`. The executors are other JVMs than the driver:
    the tables, the code and the Python they run must reach them as on real machines."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        import httpx

        spark_home = Path(importlib.util.find_spec("pyspark").origin).parent  # type: ignore[union-attr, arg-type]
        java = engines.java_for_spark()
        env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable}
        env |= {"JAVA_HOME": java} if java else {}
        env["SPARK_LOG_DIR"] = str(root / "logs")
        port, ui = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{port}"
        spark_class = [str(spark_home / "bin" / "spark-class")]
        master = [*spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
        logs = (root / "cluster.log").open("ab")
        self.processes = [subprocess.Popen([*master, "--webui-port", str(ui)], env=env, stdout=logs, stderr=logs)]
        worker = [*spark_class, "org.apache.spark.deploy.worker.Worker", self.url, "--cores", "1", "--memory", "1g"]
        for i in range(workers):
            folder = root / f"worker-{i}"
            folder.mkdir(parents=True)
            command = [*worker, "--host", "127.0.0.1", "--webui-port", "0", "--work-dir", str(folder)]
            self.processes.append(subprocess.Popen(command, env=env, stdout=logs, stderr=logs))
        for _ in range(240):  # the master's JSON lists the workers once they registered
            try:
                state = httpx.get(f"http://127.0.0.1:{ui}/json/", timeout=1).json()
                if sum(w["state"] == "ALIVE" for w in state.get("workers", [])) == workers:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        self.stop()
        raise AssertionError(f"the Spark cluster did not start: {root / 'cluster.log'}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


class SparkStart(threading.Thread):
    """The background start; `join` also starts the session where the background did not (on a cluster: PySpark
    forks its gateway with a preexec_fn, which crashed now and then when forked from a thread that had just
    waited on the cluster)."""

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        engines.spark_session()


@pytest.fixture(scope="module")
def spark(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[threading.Thread]:
    """The module's Spark session, starting in the background (~10 s of JVM starts, while a test trains): join the
    thread before the first Spark build. Local mode in `make test`; on a standalone cluster (a master and two
    workers) with --spark-cluster, as `make soak` runs them (the cluster's JVMs cost ~20 s more)."""
    saved = {k: engines.os.environ.get(k) for k in (engines.SPARK_CONF_ENV, Settings.variable("spark_master"))}
    engines.os.environ[engines.SPARK_CONF_ENV] = TEST_SPARK_CONF
    engines.os.environ[Settings.variable("spark_master")] = "local[2]"
    cluster: list[StandaloneCluster] = []
    on_cluster = request.config.getoption("--spark-cluster")

    def start() -> None:
        if on_cluster:  # the session then starts in the test's thread, at join (see SparkStart)
            cluster.append(StandaloneCluster(tmp_path_factory.mktemp("spark-cluster")))
            engines.os.environ[Settings.variable("spark_master")] = cluster[0].url
        else:
            engines.spark_session()

    starting = SparkStart(target=start, name="spark-start")
    starting.start()
    try:
        yield starting
    finally:
        threading.Thread.join(starting)  # the cluster up, without starting a session now
        engines.use(Engine.duckdb)
        if cluster:  # the session goes before its cluster; a later one would start afresh
            engines.spark_session().stop()
            engines.spark_session.cache_clear()
        for running in cluster:
            running.stop()
        for key, value in saved.items():
            if value is None:
                engines.os.environ.pop(key, None)
            else:
                engines.os.environ[key] = value


def snapshot_files(dataset: Dataset, as_of: date) -> dict[str, object]:
    """Every file of the snapshot as of `as_of`, read back."""
    snapshot = Snapshot(dataset, as_of)
    files: dict[str, object] = {
        "features": pd.read_parquet(snapshot.features_path),
        "labels": pd.read_parquet(snapshot.labels_path(90)),
    }
    for kind in ("products", "contents"):
        if snapshot.interactions_path(kind).exists():
            files[kind] = snapshot.interactions(kind)
    return files


def files_built_by(engine: Engine, dataset: Dataset, as_of: date) -> dict[str, object]:
    """Every file of the snapshot as of `as_of`, built from scratch by `engine`."""
    engines.use(engine)
    try:
        result = build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=90), force=True)
    finally:
        engines.use(Engine.duckdb)
    assert result.labels_written
    return snapshot_files(dataset, as_of)


def assert_same_frames(spark: pd.DataFrame, duck: pd.DataFrame, what: str) -> None:
    assert list(spark.columns) == list(duck.columns), what
    assert list(spark.dtypes) == list(duck.dtypes), what
    assert len(spark) == len(duck) > 0, what
    differing = []
    for column in duck.columns:
        a, b = spark[column], duck[column]
        if MONEY.match(column):
            same = ((a - b).abs() < 0.005) | (a.isna() & b.isna())  # to the cent
        elif pd.api.types.is_float_dtype(b):
            same = pd.Series(np.isclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True), index=b.index)
        else:
            same = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())  # counts, ids, flags: exactly
        if not same.all():
            differing.append(
                f"{column} ({(~same).sum()} rows, e.g. spark {a[~same].iloc[0]} duckdb {b[~same].iloc[0]})"
            )
    assert not differing, f"{what}: {'; '.join(differing)}"


def assert_same_snapshot(spark: dict[str, object], duck: dict[str, object]) -> None:
    assert spark.keys() == duck.keys()
    assert_same_frames(spark["features"], duck["features"], "features")
    assert_same_frames(spark["labels"], duck["labels"], "labels")
    for kind in spark.keys() - {"features", "labels"}:
        a, b = spark[kind], duck[kind]
        assert isinstance(a, Interactions) and isinstance(b, Interactions)
        assert a.matrix.nnz == b.matrix.nnz > 0
        np.testing.assert_array_equal(a.member_ids, b.member_ids)
        np.testing.assert_array_equal(a.item_ids, b.item_ids)
        assert (a.matrix != b.matrix).nnz == 0, f"{kind} interactions differ"


def test_spark_builds_the_synthetic_communitys_snapshot_from_a_hadoop_uri_and_scores_it_as_duckdb_and_pandas_do(
    spark: threading.Thread,
    shared_home: StateHome,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One Spark build and one scoring (each costs seconds of Spark jobs): `score --engine spark` on tables at a
    URI builds the snapshot on Spark (the tables' fingerprint is read there) and scores it on the executors. In
    the session's home, whose MLflow registry exists already."""
    from cli import app
    from serving.models.kinds import CHURN, VALUE
    from training.job import TrainSettings

    as_of = date(2025, 9, 1)  # the data reach 90 days past it: labels too
    with state_home_env(shared_home.root) as home:
        quick = TrainSettings(training_cutoffs=1, test_cutoffs=1, family="lightgbm", budget_seconds=0)
        community = with_champions(synthetic(home, "spark-community", members=400, seed=3), [CHURN, VALUE], quick)
        out, runner = tmp_path_factory.mktemp("scores"), CliRunner()
        score = ["score", "-d", community.name, "--as-of", str(as_of), "--out"]
        try:
            in_process = runner.invoke(app, [*score, str(out / "duckdb.parquet"), "--engine", "duckdb"])
            assert in_process.exit_code == 0, in_process.output
            duck = snapshot_files(community, as_of)
            # The tables where a cluster would find them: any Hadoop-compatible URI, here a file:// one.
            spark.join()
            lake = tmp_path_factory.mktemp("lake")
            shutil.copytree(community.path, lake / community.name)
            monkeypatch.setenv(engines.SPARK_TABLES_ENV, lake.as_uri())
            on_spark = runner.invoke(app, [*score, str(out / "spark.parquet"), "--engine", "spark"])
            assert on_spark.exit_code == 0, on_spark.output
        finally:
            engines.use(Engine.duckdb)
        assert f"building features of {community.name}" in on_spark.output  # built again, on Spark
        assert_same_snapshot(snapshot_files(community, as_of), duck)
        assert {"products", "contents"} <= duck.keys() and 0 < duck["labels"]["churned"].mean() < 1
        spark_scores, duck_scores = (pd.read_parquet(out / f"{e}.parquet") for e in ("spark", "duckdb"))
    assert len(duck_scores) == len(duck["features"]) > 250
    assert_same_frames(spark_scores, duck_scores, "scores")
    assert (spark_scores["top_reasons"] == duck_scores["top_reasons"]).all()
    assert set(spark_scores["tier"]) >= {"churn_risk", "high_value"}


def test_spark_builds_online_retails_snapshot_equal_to_duckdbs(spark: threading.Thread, online_retail: tuple) -> None:
    spark.join()
    retail, _ = online_retail
    duck = files_built_by(Engine.duckdb, retail, date(2011, 9, 1))
    spark_files = files_built_by(Engine.spark, retail, date(2011, 9, 1))
    assert_same_snapshot(spark_files, duck)
    features = spark_files["features"]
    assert len(features) > 3000 and features["monetary"].sum() > 1e6


def test_tables_written_with_nanosecond_times_are_rewritten_once_for_spark_without_losing_a_value(
    dataset: Dataset,
) -> None:
    dataset.path.mkdir(parents=True)
    times = pa.array([1_700_000_000_123_456_000, None], type=pa.timestamp("ns"))
    table = pa.table({"member_id": ["a", "b"], "ts": times})
    pq.write_table(table, dataset.table_path("engagements"))
    upgrade_timestamps(dataset, "engagements")
    stored = pq.read_table(dataset.table_path("engagements"))
    assert stored.schema.field("ts").type == pa.timestamp("us")
    assert stored.column("ts").cast(pa.timestamp("ns")).equals(table.column("ts"))


def test_a_finer_time_than_a_microsecond_is_refused_not_truncated(tmp_path: Path) -> None:
    from features.dataset.store import write_parquet_atomic

    frame = pd.DataFrame({"ts": pd.to_datetime([1_700_000_000_123_456_789], unit="ns")})
    with pytest.raises(pa.ArrowInvalid, match="would lose data"):
        write_parquet_atomic(frame, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()
