"""`community-ml outreach`: record what was sent (the contact log, features/dataset/contacts.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset

outreach_app = typer.Typer(no_args_is_help=True, help="The contact log: record what was sent to members.")


@outreach_app.command("record")
def record_command(
    dataset: str = DatasetOption,
    plan: Path = typer.Option(
        ..., "--plan", help="the plan or list file sent: member_id, action, channel (item_id, holdout where present)"
    ),
    at: datetime | None = typer.Option(
        None, "--at", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="when it was sent [default: now]"
    ),
    list_id: str | None = typer.Option(None, "--list", help="the list's name in the log [default: the file's name]"),
    as_json: bool = JsonOption,
) -> None:
    """Records every sent row of a plan in the contact log (held-out rows and rows planning nothing are not
    contacts). Recording the same file at the same --at again changes nothing."""
    from features.dataset.contacts import record_plan_file

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        sent_at = at or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        summary = record_plan_file(target, plan, sent_at, list_id)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    console().print(
        f"{summary.contacts:,} contacts of {summary.list_id} recorded in {dataset} ({summary.added:,} new; "
        f"{summary.held_out:,} held out and {summary.nothing:,} planning nothing, not contacted)"
    )


@outreach_app.command("actions")
def actions_command(
    dataset: str = DatasetOption,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="the contact policy (default: configs/outreach.yaml)"
    ),
    as_json: bool = JsonOption,
) -> None:
    """What the dataset's outreach can do: each action, whether the model it needs has a champion, its cost and
    channels; where an action is not available, why and how to make it so."""
    import json

    from serving.outreach.actions import outreach_actions
    from serving.outreach.policy import load_policy

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        statuses = outreach_actions(target, load_policy(config))
    if as_json:
        typer.echo(json.dumps([s.model_dump() for s in statuses], indent=2))
        return
    for s in statuses:
        where = f"by {', '.join(s.channels)}, cost {s.cost:g}" if s.channels else ""
        state = f"yes ({s.model})" if s.available and s.model else ("yes" if s.available else f"no: {s.why}")
        console().print(f"{s.action:<13} {state}{'; ' + where if where else ''}")
