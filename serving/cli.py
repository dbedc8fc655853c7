"""`community-ml serve`: the BentoML prediction service, with the safety checks a deployment needs."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import typer

from features.cli import user_errors
from features.errors import DataError
from features.home import StateHome
from features.store import Dataset
from serving.bento import models_from_bento

serve_app = typer.Typer()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(home: StateHome, dataset: str) -> None:
    """Fails fast, with the reason, where the service could not start: no dataset, an unreachable registry,
    no champion. Without it BentoML would restart a failing worker over and over."""
    from features.model_registry import champion, connect

    Dataset(home, dataset).require()
    # One quick try: MLflow otherwise retries an unreachable server for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    client = connect(home)
    try:
        client.search_registered_models(max_results=1)
    except Exception as exc:  # any failure here means the same thing to the operator
        raise DataError(f"the MLflow registry at {home.mlflow_tracking_uri()} is unreachable: {exc}") from exc
    missing = [name for name in ("churn", "value") if champion(client, name) is None]
    if missing:
        raise DataError(
            f"no champion {' or '.join(missing)} model in the registry at {home.mlflow_tracking_uri()}; train "
            f"with `community-ml train {missing[0]} --dataset {dataset}`"
        )


@serve_app.command("serve")
def serve_command(
    dataset: str = typer.Option("demo", "--dataset", "-d", help="the dataset whose members are served"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(3000, help="port to listen on"),
) -> None:
    """Serve churn, value, tiers and recommendations over HTTP (BentoML); OpenAPI at /docs.json."""
    from serving.service import API_KEY_ENV

    with user_errors():
        if not is_loopback(host) and not os.environ.get(API_KEY_ENV):
            raise DataError(
                f"--host {host} is reachable from other machines: set {API_KEY_ENV} so that every call needs "
                "an x-api-key header, or serve on 127.0.0.1"
            )
        if not models_from_bento():
            preflight(StateHome.from_env(), dataset)
    env = {**os.environ, "COMMUNITY_ML_DATASET": dataset, "BENTOML_DO_NOT_TRACK": "true"}
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:CommunityML",
        "--host",
        host,
        "--port",
        str(port),
    ]
    # The server replaces this process rather than running as its child: a supervisor's SIGTERM (systemd,
    # Kubernetes, a test) then reaches the server itself, and no orphaned server outlives the command.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


bento_app = typer.Typer(no_args_is_help=True, help="Package the service with its champion models.")


@bento_app.command("build")
def bento_build_command(
    lock: bool = typer.Option(True, "--lock/--no-lock", help="pin every dependency in the Bento (needs the index)"),
) -> None:
    """Build a Bento (bentofile.yaml) that carries the code, the locked dependencies and the champion models."""
    from serving.bento import build_bento

    with user_errors():
        tag = build_bento(StateHome.from_env(), Path(__file__).resolve().parents[1], lock_packages=lock)
    typer.echo(f"built {tag}: serve it with `bentoml serve {tag}` (set COMMUNITY_ML_HOME and COMMUNITY_ML_DATASET)")
