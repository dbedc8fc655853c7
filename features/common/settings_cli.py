"""`community-ml settings`: every setting's effective value and where it came from (secrets masked), or the
README's table of settings (`--markdown`)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from features.common.cli_kit import JsonOption, console, user_errors
from features.common.settings import Settings, project_settings, sources, unknown

settings_app = typer.Typer()


def markdown_table() -> str:
    """The README's table: every setting's variable, default and meaning, from its declaration."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        default = "" if info.default is None else str(info.default)
        rows.append(f"| `{Settings.variable(field)}` | {f'`{default}`' if default else '-'} | {info.description} |")
    return "\n".join(rows)


@settings_app.command("settings")
def settings_command(
    as_json: bool = JsonOption,
    markdown: bool = typer.Option(False, "--markdown", help="print the README's table of settings instead"),
) -> None:
    """Every setting read from the environment: its effective value, where it came from, and what it does."""
    if markdown:
        typer.echo(markdown_table())
        return
    with user_errors():
        current, origin = project_settings(), sources()
    for name, like in unknown().items():  # on stderr: stdout stays the table (or the JSON)
        typer.echo(
            f"warning: {name} is no setting and is ignored" + (f" (did you mean {like}?)" if like else ""), err=True
        )
    rows = [
        {
            "variable": Settings.variable(field),
            "value": current.shown(field),
            "source": origin[field],
            "meaning": info.description,
        }
        for field, info in Settings.model_fields.items()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(*rows[0])
    for row in rows:
        table.add_row(*row.values())
    console().print(table)
