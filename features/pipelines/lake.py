"""The lake: where the training host publishes a dataset's tables and its latest snapshot, and replicas on other
machines copy what they serve from (`$COMMUNITY_ML_LAKE`: a folder, or a URI fsspec understands: s3://, gs://,
abfs://, with that filesystem's package installed).

Layout, per dataset: `<lake>/<dataset>/<table>.parquet` (the layout `$COMMUNITY_ML_SPARK_TABLES` reads, so Spark
reads the lake where no other URI is named), the dataset's own files beside them (dataset.json, campaigns/), the
snapshot under `<lake>/<dataset>/snapshots/as_of=<date>/`, and `latest.json`, written last, naming every file
with its SHA-256. A replica copies the tables and the snapshot into its own home once per publication (its home is
a cache it can lose), aside first, and checks each file against `latest.json`: a publication under way overwrites
files in place before its `latest.json`, so a copy taken meanwhile mixes two; the replica sees it and copies again.
It serves the snapshot memory-mapped from local disk; the tables' modification times are set to the training
host's, so the snapshot's fingerprint (sizes and times) still matches and nothing is rebuilt. A running replica
looks for a newer publication as it looks for newly promoted champions (serving/service.py).
"""

from __future__ import annotations

import hashlib
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
    snapshot_files = [p for p in snapshot.path.rglob("*") if p.is_file()]
    said = {
        "as_of": str(as_of),
        "published_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "table_times_ns": {p.relative_to(dataset.path).as_posix(): p.stat().st_mtime_ns for p in files},
        "table_sha256": {p.relative_to(dataset.path).as_posix(): _sha256(p) for p in files},
        "snapshot_sha256": {p.relative_to(snapshot.path).as_posix(): _sha256(p) for p in snapshot_files},
    }
    fs.makedirs(target, exist_ok=True)
    with fs.open(f"{target}/{LATEST}", "w") as handle:
        handle.write(json.dumps(said))
    return said


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _put(fs: Any, local: Path, remote: str) -> None:
    fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)  # a folder needs it; an object store ignores it
    fs.put_file(str(local), remote)


def fetch(home: StateHome, name: str, attempts: int = 3) -> bool:
    """Copies the dataset's latest publication into `home` where it holds another (or none); False where no lake
    is configured. The snapshot lands where the home keeps snapshots, so it is served from local disk. A copy that
    does not match its `latest.json` (a publication under way) is taken again, `attempts` times at most."""
    lake = _lake()
    if lake is None:
        return False
    fs, root = lake
    for _ in range(attempts):
        said = _latest(fs, f"{root}/{name}", name)
        if published(home, name) == said["published_at"]:
            return True
        say(f"copying {name} as published at {said['published_at']} from the lake")
        if _copy(fs, f"{root}/{name}", Dataset(home, name), said):
            return True
        say(f"the lake's {name} changed while it was copied (a publication under way): copying again")
    raise DataError(f"the lake's {name!r} kept changing while it was copied ({attempts} tries): try again later")


def published(home: StateHome, name: str) -> str | None:
    """When the publication this home holds was published (None: none copied)."""
    copied = Dataset(home, name).path / COPIED
    return json.loads(copied.read_text()).get("published_at") if copied.exists() else None


def newer_publication(home: StateHome, name: str) -> bool:
    """Whether the lake holds a later publication than this home's copy (False without a lake, or without one of
    `name`): what a running replica asks before it reloads."""
    lake = _lake()
    if lake is None:
        return False
    fs, root = lake
    if not fs.exists(f"{root}/{name}/{LATEST}"):
        return False
    return _latest(fs, f"{root}/{name}", name)["published_at"] != published(home, name)


def _latest(fs: Any, target: str, name: str) -> dict[str, Any]:
    if not fs.exists(f"{target}/{LATEST}"):
        raise DataError(
            f"the lake holds no publication of {name!r}: run `community-ml features publish --dataset {name}`"
        )
    with fs.open(f"{target}/{LATEST}") as handle:
        return dict(json.loads(handle.read()))


def _copy(fs: Any, target: str, dataset: Dataset, said: dict[str, Any]) -> bool:
    """The publication's tables and snapshot copied aside, each file checked against its SHA-256, then moved into
    place; False (nothing moved) where a file does not match."""
    staging = dataset.path.with_name(f".{dataset.name}.lake-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    snapshot = Snapshot(dataset, date.fromisoformat(said["as_of"]))
    staged_snapshot = staging / ".snapshot"
    try:
        for relative, sha in said["table_sha256"].items():
            if not _get(fs, f"{target}/{relative}", staging / relative, sha):
                return False
            mtime = said["table_times_ns"][relative]
            os.utime(staging / relative, ns=(mtime, mtime))  # the snapshot's fingerprint reads sizes and times
        for relative, sha in said["snapshot_sha256"].items():
            if not _get(fs, f"{target}/snapshots/as_of={said['as_of']}/{relative}", staged_snapshot / relative, sha):
                return False
        (staging / COPIED).write_text(json.dumps(said))
        shutil.rmtree(snapshot.path, ignore_errors=True)
        snapshot.path.parent.mkdir(parents=True, exist_ok=True)
        staged_snapshot.rename(snapshot.path)
        shutil.rmtree(dataset.path, ignore_errors=True)
        dataset.path.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(dataset.path)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _get(fs: Any, remote: str, local: Path, sha: str) -> bool:
    local.parent.mkdir(parents=True, exist_ok=True)
    fs.get_file(remote, str(local))
    return _sha256(local) == sha
