"""The `community-ml` command line: one Typer app that gathers each package's commands."""

from __future__ import annotations

import typer

from features.common.settings_cli import settings_app
from features.dataset.cli import data_app
from features.dataset.privacy_cli import privacy_app
from features.pipelines.cli import features_app
from monitoring.campaign_cli import report_command
from monitoring.cli import monitor_app
from monitoring.health.cli import health_app
from serving.campaign_cli import campaign_app
from serving.cli import bento_app, serve_app
from serving.outreach.cli import outreach_app, simulate_command
from training.cli import training_app

app = typer.Typer(
    name="community-ml",
    help="Churn, lifetime value, tiers and recommendations for member-community commerce.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# `data simulate` plays an outreach plan (serving/outreach) through a generated world: with the other data commands.
data_app.command("simulate")(simulate_command)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(training_app)
app.add_typer(serve_app)
app.add_typer(monitor_app, name="monitor")
app.add_typer(health_app)
# `campaign plan` acts (serving), `campaign report` measures (monitoring): one group of commands.
campaign_app.command("report")(report_command)
app.add_typer(campaign_app, name="campaign")
app.add_typer(outreach_app, name="outreach")
app.add_typer(privacy_app, name="privacy")
app.add_typer(bento_app, name="bento")
app.add_typer(settings_app)

if __name__ == "__main__":  # pragma: no cover
    app()
