"""The `community-ml` command line: one Typer app that gathers each package's commands."""

from __future__ import annotations

import typer

from features.cli import data_app

app = typer.Typer(
    name="community-ml",
    help="Churn, lifetime value, tiers and recommendations for member-community commerce.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")

if __name__ == "__main__":  # pragma: no cover
    app()
