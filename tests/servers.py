"""Servers the several-machine tests start for themselves from Debian's packages and the project's environment: a
PostgreSQL cluster, an MLflow tracking server on it (proxied artefacts) and Redis, each on free ports in a folder
of its own.
`make test` installs the packages; a test without them skips and says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port


def postgres_bin() -> Path | None:
    """The newest PostgreSQL's programs (Debian keeps them under /usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class Postgres:
    """A PostgreSQL cluster of its own (trust auth on 127.0.0.1, no fsync: a test's database), with a database
    `mlflow`. PostgreSQL refuses to run as root: as root, it runs as Debian's `postgres` user."""

    def __init__(self) -> None:
        programs = postgres_bin()
        if programs is None:
            pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="community-ml-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        data, self.port = self.folder / "data", free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(
            [*as_user, str(programs / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust"], check=True, **quiet
        )  # type: ignore[arg-type]
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k", str(self.folder)]
        self.process = subprocess.Popen(
            [*as_user, str(programs / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
            **quiet,  # type: ignore[arg-type]
        )
        ready = [str(programs / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        for _ in range(200):
            if subprocess.run(ready, **quiet).returncode == 0:  # type: ignore[arg-type]
                break
            time.sleep(0.05)
        create = [str(programs / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", "mlflow"]
        subprocess.run(create, check=True, **quiet)  # type: ignore[arg-type]
        self.uri = f"postgresql+psycopg2://mlflow@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on a database, serving the artefacts itself (`--serve-artifacts`): clients need no
    artefact store of their own."""

    def __init__(self, backend: str, artifacts: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [str(mlflow), "server", "--backend-store-uri", backend, "--serve-artifacts"]
        command += ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = artifacts.parent / "mlflow-server.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*command, "--workers", "1"], stdout=log, stderr=log)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"mlflow server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class RedisServer:
    """A redis-server of its own on a free port (Debian's package, which `make test` installs), keeping an
    append-only file fsynced at every write, as the event stream needs."""

    def __init__(self, binary: str, folder: str) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        import redis

        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.folder]
        process = subprocess.Popen(
            [*command, "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return process
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill_and_restart(self) -> None:
        """SIGKILL, then a new server on the same files: what it acknowledged must be back."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = self.start()
