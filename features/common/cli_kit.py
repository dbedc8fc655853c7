"""What every `community-ml` command group shares: the common options (--dataset, --json), turning a
user's mistake into one `error:` line and exit code 2 instead of a traceback, and the console tables print to.
Each package's own commands (features/dataset/cli.py, serving/cli.py, training/cli.py, monitoring/cli.py) import it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from features.common.errors import DataError

DatasetOption = typer.Option(..., "--dataset", "-d", help="dataset name (a folder under $COMMUNITY_ML_HOME/datasets)")
JsonOption = typer.Option(False, "--json", help="print machine-readable JSON instead of tables")


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can fix become one line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from exc


def console() -> Console:
    # Piped output (CI logs, `| tee`) has no terminal width; rich would squeeze tables into 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=120)
