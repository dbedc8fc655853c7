"""Which engine runs the feature expressions: DuckDB in this process (the default) or Spark, local or a cluster.

The same Ibis expressions (features/pipelines/point_in_time.py, features/pipelines/interactions.py) run on both; a
test builds every snapshot file on both engines and compares them. Spark is an optional extra (`uv sync --extra spark`).

Spark is set up from the environment, so a cluster needs no code:
- `COMMUNITY_ML_SPARK_MASTER`: the master URL (default `local[*]`; `yarn`, `spark://host:7077`, `k8s://...`);
- `COMMUNITY_ML_SPARK_CONF`: more settings, `key=value` separated by commas or new lines;
- `COMMUNITY_ML_SPARK_TABLES`: where Spark reads the canonical tables, any Hadoop-compatible URI
  (`s3a://bucket/community`, `hdfs:///community`): `<URI>/<dataset>/<table>.parquet`, a file or a folder of
  Parquet files. Unset, Spark reads the dataset's own files in the state home.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import typer

from features.common.errors import DataError
from features.common.settings import Settings, project_settings

DUCKDB_MEMORY_ENV = Settings.variable("duckdb_memory")  # default: DUCKDB_MEMORY_SHARE of the machine's memory
DUCKDB_THREADS_ENV = Settings.variable("duckdb_threads")
# DuckDB's own default limit is 80% of the machine's memory: with the model fitting that follows in the same
# process, a snapshot of 2,000,000 members then pushed the process past 18 GB. Half leaves the rest room.
DUCKDB_MEMORY_SHARE = 0.5
SPARK_CONF_ENV = Settings.variable("spark_conf")
SPARK_TABLES_ENV = Settings.variable("spark_tables")

# What every session gets: UTC, so that naive timestamps mean what they mean in DuckDB; no web UI or console
# progress bars in a command line tool; Arrow for moving results to Python.
SPARK_FIXED = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Defaults a setting in COMMUNITY_ML_SPARK_CONF replaces. Local mode's driver is the whole cluster: give it room.
SPARK_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.extraJavaOptions": "-XX:+UseG1GC",
}
JAVA_VERSIONS = (17, 21)  # what Spark 4 runs on


class Engine(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


# The --engine option of every command that builds or reads snapshots.
EngineOption = typer.Option(
    None,
    "--engine",
    help="what builds feature snapshots: duckdb (this process) or spark (local, or the cluster named by "
    "COMMUNITY_ML_SPARK_MASTER); both give the same files  [default: COMMUNITY_ML_ENGINE, else duckdb]",
    show_default=False,
)


_selected: Engine | None = None


def use(engine: Engine | str | None) -> Engine:
    """Selects the engine of this process's snapshot builds (the CLI's `--engine`; None: the setting's)."""
    global _selected
    _selected = None if engine is None else _parse(str(engine))
    return selected()


def selected() -> Engine:
    """The engine `use` selected, else `$COMMUNITY_ML_ENGINE`, else DuckDB."""
    return _selected or _parse(project_settings().engine)


def _parse(value: str) -> Engine:
    try:
        return Engine(value.lower())
    except ValueError as exc:
        raise DataError(f"engine {value!r} is not known: use one of {', '.join(e.value for e in Engine)}") from exc


def spark_settings() -> dict[str, str]:
    """The session's settings: the defaults, then `$COMMUNITY_ML_SPARK_CONF`, then the fixed ones."""
    settings = dict(SPARK_DEFAULTS)
    raw = project_settings().spark_conf
    for item in filter(None, (part.strip() for part in re.split(r"[,\n]", raw))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"{SPARK_CONF_ENV}: {item!r} is not key=value")
        settings[key.strip()] = value.strip()
    return settings | SPARK_FIXED


@cache
def spark_session() -> Any:
    """The process's one Spark session, started on first use (the JVM start costs seconds: started once)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DataError(
            "the Spark engine needs PySpark: install the extra with `uv sync --extra spark` "
            "(`make test` does), or use --engine duckdb"
        ) from exc
    _find_java()
    # Python workers (batch scoring) run this interpreter, which has the project and its models' libraries (PySpark
    # reads the variable, not a setting); on a cluster, PYSPARK_PYTHON names the executors' environment.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.perf_counter()
    builder = SparkSession.builder.master(project_settings().spark_master)
    builder = builder.appName("community-ml")
    for key, value in spark_settings().items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    print(
        f"  spark {session.version} session on {session.sparkContext.master} "
        f"started in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return session


def _find_java() -> None:
    """Points JAVA_HOME at a Java that Spark 4 runs on, when the one it would use is not (or there is none)."""
    found = java_for_spark()
    if found is None:
        raise DataError(
            f"Spark needs Java {' or '.join(map(str, JAVA_VERSIONS))}: none found in JAVA_HOME, on PATH or under "
            "/usr/lib/jvm (`make java` installs OpenJDK 17 on Debian)"
        )
    if found:
        os.environ["JAVA_HOME"] = found


def java_for_spark() -> str | None:
    """The JAVA_HOME Spark should use: empty when the Java it would start already fits, else one under
    /usr/lib/jvm that does; None when there is none."""
    configured = project_settings().java_home
    if _java_version(configured) in JAVA_VERSIONS or (not configured and _java_version(None) in JAVA_VERSIONS):
        return ""
    for candidate in sorted(Path("/usr/lib/jvm").glob("*")):
        if candidate.is_dir() and _java_version(str(candidate)) in JAVA_VERSIONS:
            return str(candidate)
    return None


def _java_version(java_home: str | None) -> int | None:
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)', out)
    return int(found.group(1)) if found else None


def spark_tables_uri() -> str | None:
    """`$COMMUNITY_ML_SPARK_TABLES`, else the lake (features/dataset/lake.py: tables at <lake>/<dataset>/), else
    None (the state home's own files)."""
    settings = project_settings()
    uri = settings.spark_tables or settings.lake
    if uri and "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    return (uri or "").rstrip("/") or None


def hadoop_stat(session: Any, uri: str) -> tuple[int, int] | None:
    """(bytes, latest modification in ms) of a file, or of every file under a folder; None when absent. Read
    through Hadoop's FileSystem, so it works for any URI Spark reads."""
    from py4j.protocol import Py4JJavaError

    jvm = session.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        fs = path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(path):
            return None
    except Py4JJavaError as exc:  # no file system for the scheme (a missing connector jar), no access, ...
        cause = str(exc.java_exception.toString())
        raise DataError(
            f"{SPARK_TABLES_ENV}: Spark cannot read {uri} ({cause}); check the URI, and that the cluster has the "
            "file system's connector (spark.jars.packages in COMMUNITY_ML_SPARK_CONF) and credentials"
        ) from exc
    files = fs.listFiles(path, True)
    size = modified = 0
    while files.hasNext():
        status = files.next()
        size += status.getLen()
        modified = max(modified, status.getModificationTime())
    return size, modified


def duckdb_settings() -> dict[str, str]:
    """DuckDB's memory limit and threads: from the environment, else from the machine (a share of its memory, its
    cores); DuckDB spills what does not fit to a temporary directory instead of failing."""
    memory = project_settings().duckdb_memory
    if not memory:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = f"{max(int(total * DUCKDB_MEMORY_SHARE / 2**20), 256)}MB"
    threads = str(project_settings().duckdb_threads or os.cpu_count() or 1)
    if not re.fullmatch(r"\d+", threads) or int(threads) < 1:
        raise DataError(f"{DUCKDB_THREADS_ENV}={threads!r}: give a number of threads, 1 or more")
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", memory.strip(), flags=re.IGNORECASE):
        raise DataError(f"{DUCKDB_MEMORY_ENV}={memory!r}: give an amount such as 8GB or 512MB")
    return {"memory_limit": memory.strip(), "threads": threads}


def configure_duckdb(con: Any) -> None:
    """Applies `duckdb_settings` to a DuckDB connection (a duckdb one, or Ibis's `.raw_sql`)."""
    run = con.raw_sql if hasattr(con, "raw_sql") else con.execute
    for name, value in duckdb_settings().items():
        run(f"SET {name} = '{value}'")
