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
    config: Path | None = typer.Option(
        None, "--config", "-c", help="the contact policy whose holdout the plan kept (default: configs/outreach.yaml)"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Records every sent row of a plan in the contact log (held-out rows and rows planning nothing are not
    contacts). A plan that held members out is also recorded as a campaign named after the list (arm `planned`
    against control): `campaign report --campaign LIST` measures it. Recording the same file at the same --at
    again changes nothing."""
    from features.dataset.contacts import record_plan_file
    from serving.outreach.policy import load_policy

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        sent_at = at or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        summary = record_plan_file(target, plan, sent_at, list_id, load_policy(config).holdout)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    console().print(
        f"{summary.contacts:,} contacts of {summary.list_id} recorded in {dataset} ({summary.added:,} new; "
        f"{summary.held_out:,} held out and {summary.nothing:,} planning nothing, not contacted)"
    )
    if summary.campaign is not None:
        console().print(
            f"measure it: community-ml campaign report --dataset {dataset} --campaign {summary.campaign} "
            "--horizon-days 30"
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


@outreach_app.command("plan")
def plan_command(
    dataset: str = DatasetOption,
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv: a row per member contacted or held out"),
    day: datetime | None = typer.Option(None, "--date", formats=["%Y-%m-%d"], help="the day planned [default: today]"),
    hour: int = typer.Option(10, "--hour", min=0, max=23, help="the hour the contacts go out (quiet hours apply)"),
    budget: int | None = typer.Option(None, "--budget", min=0, help="contacts at most, the highest gains first"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="the contact policy (default: configs/outreach.yaml)"
    ),
    as_json: bool = JsonOption,
) -> None:
    """The day's plan: at most one contact per member, within consent, caps, quiet hours and cool-offs (given the
    contact log), by expected gain, within the budget, a random stable holdout kept uncontacted. Record what you
    send with `outreach record`: it counts toward tomorrow's caps."""
    from serving.outreach.plan import plan_day
    from serving.outreach.policy import load_policy

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        date = day or datetime.now(UTC).replace(tzinfo=None)
        at = date.replace(hour=hour, minute=0, second=0, microsecond=0)
        summary = plan_day(target, load_policy(config), at, out, budget)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    actions = ", ".join(f"{a} {n:,}" for a, n in summary.by_action.items()) or "none"
    console().print(
        f"{summary.planned:,} contacts planned for {summary.at:%Y-%m-%d %H:%M} ({actions}), expected gain "
        f"{summary.expected_gain:,.2f}; {summary.held_out:,} held out"
    )
    if summary.left_out:
        console().print("left out: " + ", ".join(f"{why} {n:,}" for why, n in summary.left_out.items()))
    for action, why in summary.unavailable.items():
        console().print(f"no {action}: {why}")
    console().print(f"written to {summary.out}")


def simulate_command(
    dataset: str = DatasetOption,
    plan: Path = typer.Option(
        ..., "--plan", help="a plan from any policy: member_id, action, holdout (channel, item_id where present)"
    ),
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv: each planned member's gain"),
    day: datetime = typer.Option(..., "--date", formats=["%Y-%m-%d"], help="the day the plan is sent"),
    hour: int = typer.Option(10, "--hour", min=0, max=23, help="the hour its contacts go out (quiet hours apply)"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="the contact policy its costs and rules come from (default: configs/outreach.yaml)"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Plays a plan through a generated community's hidden answers (generated datasets only): for every planned
    member the gain, the revenue of the next 30 days with the contact minus without it, less its costs; and the
    contacts the policy forbids (no consent, past a cap, quiet hours, cool-off). Plans from any policy compare on
    the same world."""
    from serving.outreach.policy import load_policy
    from serving.outreach.simulate import simulate_plan

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        at = day.replace(hour=hour, minute=0, second=0, microsecond=0)
        summary = simulate_plan(target, plan, load_policy(config), at, out)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    actions = ", ".join(f"{a} {g:,.2f}" for a, g in summary.gain_by_action.items()) or "none"
    console().print(
        f"{summary.contacts:,} contacts on {summary.at:%Y-%m-%d %H:%M}: gain {summary.gain:,.2f} over "
        f"{summary.horizon_days} days ({actions}; expected {summary.expected_gain:,.2f}); {summary.answered:,} "
        f"answered, {summary.unsubscribed:,} unsubscribed, {summary.complained:,} complained"
    )
    breaches = ", ".join(f"{why} {n:,}" for why, n in summary.breaches.items()) or "none"
    console().print(f"contacts the policy forbids: {breaches}")
    console().print(f"written to {summary.out}")
