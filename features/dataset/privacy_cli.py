"""`community-ml privacy ...`: a member's export and deletion requests."""

from __future__ import annotations

from pathlib import Path

import typer

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset

privacy_app = typer.Typer(no_args_is_help=True, help="Export or delete everything held about a member.")

MemberOption = typer.Option(..., "--member", help="the member's id, as in the members table")


@privacy_app.command("export")
def export_command(
    dataset: str = DatasetOption,
    member: str = MemberOption,
    out: Path = typer.Option(..., "--out", help="FILE.json to write"),
) -> None:
    """Everything held about a member: their rows in every table, set-aside rows, features, predictions."""
    from features.dataset.privacy import export_member

    with user_errors():
        counts = export_member(Dataset(StateHome.from_env(), dataset), member, out)
    console().print(
        f"exported to {out}: "
        + ", ".join(
            f"{n:,} {part} rows" if part != "predictions" else f"{n:,} logged predictions" for part, n in counts.items()
        )
    )


@privacy_app.command("forget")
def forget_command(
    dataset: str = DatasetOption,
    member: str = MemberOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    as_json: bool = JsonOption,
) -> None:
    """Delete a member from the tables, snapshots, matrices and prediction logs; keep them out of re-imports and
    of the next models. The service stops answering with their data after its next reload."""
    from features.dataset.privacy import forget_member

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        if not yes:
            typer.confirm(f"delete every record of member {member} from {dataset}? This cannot be undone", abort=True)
        summary = forget_member(target, member)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    if not any(n for part, n in summary.removed.items() if part != "feature_snapshots"):
        console().print(f"member {member} held no rows in {dataset}; recorded as forgotten all the same")
    console().print(
        f"forgotten (pseudonym {summary.member}): "
        + ", ".join(f"{part} {n:,}" for part, n in summary.removed.items() if n)
        + ". Reload the service (POST /reload) and retrain to drop the member from the running models."
    )
