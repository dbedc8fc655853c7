"""The lake: where the training host publishes a dataset's tables and its latest snapshot, and replicas on other
machines copy what they serve from (`$COMMUNITY_ML_LAKE`: a folder, or a URI fsspec understands: s3://, gs://,
abfs://, with that filesystem's package installed).

Layout, per dataset: `<lake>/<dataset>/<table>.parquet` (the layout `$COMMUNITY_ML_SPARK_TABLES` reads, so Spark
reads the lake where no other URI is named), the dataset's own files beside them (dataset.json, campaigns/), the
snapshot under `<lake>/<dataset>/snapshots/as_of=<date>/`, and `latest.json`, written last: what a replica reads
first, so it never copies a half-published set. A replica copies the tables and the snapshot into its own home
once per publication (its home is a cache it can lose) and serves the snapshot memory-mapped from there; the tables'
modification times are set to the training host's, so the snapshot's fingerprint (sizes and times) still matches
and nothing is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.progress import say
from features.common.settings import project_settings
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot

LATEST = "latest.json"
COPIED = ".lake.json"  # in the replica's dataset folder: the publication it holds


def _lake() -> tuple[Any, str] | None:
    uri = project_settings().lake
    if not uri:
        return None
    import fsspec  # only where a lake is configured

    fs, root = fsspec.core.url_to_fs(uri)
    return fs, root.rstrip("/")


def publish(dataset: Dataset, as_of: date) -> dict[str, Any]:
    """Copies the dataset's tables and its snapshot as of `as_of` to the lake, then its `latest.json`."""
    lake = _lake()
    if lake is None:
        raise DataError("no lake to publish to: set COMMUNITY_ML_LAKE to a folder or a URI (s3://..., gs://...)")
    fs, root = lake
    snapshot = Snapshot(dataset, as_of)
    if not snapshot.features_path.exists():
        raise DataError(
            f"no snapshot of {dataset.name!r} as of {as_of}: build it first (`community-ml features build`)"
        )
    target = f"{root}/{dataset.name}"
    files = [p for p in dataset.path.rglob("*") if p.is_file() and p.name != COPIED and "quarantine" not in p.parts]
    for path in files:
        _put(fs, path, f"{target}/{path.relative_to(dataset.path).as_posix()}")
    for path in (p for p in snapshot.path.rglob("*") if p.is_file()):
        _put(fs, path, f"{target}/snapshots/as_of={as_of}/{path.relative_to(snapshot.path).as_posix()}")
    times = {p.relative_to(dataset.path).as_posix(): p.stat().st_mtime_ns for p in files}
    said = {
        "as_of": str(as_of),
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "snapshot_files": sorted(
            p.relative_to(snapshot.path).as_posix() for p in snapshot.path.rglob("*") if p.is_file()
        ),
        "table_times_ns": times,
    }
    fs.makedirs(target, exist_ok=True)
    with fs.open(f"{target}/{LATEST}", "w") as handle:
        handle.write(json.dumps(said))
    return said


def _put(fs: Any, local: Path, remote: str) -> None:
    fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)  # a folder needs it; an object store ignores it
    fs.put_file(str(local), remote)


def fetch(home: StateHome, name: str) -> bool:
    """Copies the dataset's latest publication into `home` where it holds another (or none); False where no lake
    is configured. The snapshot lands where the home keeps snapshots, so it is served from local disk."""
    lake = _lake()
    if lake is None:
        return False
    fs, root = lake
    target = f"{root}/{name}"
    if not fs.exists(f"{target}/{LATEST}"):
        raise DataError(
            f"the lake holds no publication of {name!r}: run `community-ml features publish --dataset {name}`"
        )
    with fs.open(f"{target}/{LATEST}") as handle:
        said = json.loads(handle.read())
    dataset = Dataset(home, name)
    copied = dataset.path / COPIED
    if copied.exists() and json.loads(copied.read_text()).get("published_at") == said["published_at"]:
        return True
    say(f"copying {name} as published at {said['published_at']} from the lake")
    staging = dataset.path.with_name(f".{name}.lake-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for relative, mtime in said["table_times_ns"].items():
        local = staging / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{target}/{relative}", str(local))
        os.utime(local, ns=(mtime, mtime))  # the snapshot's fingerprint reads sizes and times
    (staging / COPIED).write_text(json.dumps(said))
    shutil.rmtree(dataset.path, ignore_errors=True)
    dataset.path.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(dataset.path)
    snapshot = Snapshot(dataset, date.fromisoformat(said["as_of"]))
    for relative in said["snapshot_files"]:
        local = snapshot.path / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{target}/snapshots/as_of={said['as_of']}/{relative}", str(local))
    return True
