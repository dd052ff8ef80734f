"""Options shared by cbm commands (rio-style registry) and output helpers."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cbm_dask.errors import CbmError

# Wide enough for tables when the output is a pipe or a CI log.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
# Progress bars go to stderr, so that --json output on stdout stays parseable.
progress_console = Console(stderr=True)

json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
dataset_opt = click.option(
    "--dataset", "-d", required=True, metavar="NAME", help="Name of the parcel dataset."
)


class CbmGroup(click.Group):
    """A click group that turns cbm errors into one readable line and exit status 1.

    ``lazy`` maps command names to ``"module:attribute"``: those commands are
    imported when used, so that a command does not pay for the others' imports.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of the group's commands, loaded or not."""
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a command, importing it on first use."""
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, attribute = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke the command, reporting cbm errors as a one-line message."""
        try:
            return super().invoke(ctx)
        except CbmError as exc:
            logging.getLogger("cbm_dask").debug("error details", exc_info=True)
            raise click.ClickException(str(exc)) from exc


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (dates as ISO text)."""
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _cell(value: Any) -> str:
    # NaN and pandas' NA/NaT are the values that differ from themselves (or say so)
    if value is None or (not isinstance(value, list | dict | str) and _missing(value)):
        return ""
    return str(value)


def _missing(value: Any) -> bool:
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA refuses to be a bool: it is missing
        return True


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as a rich table."""
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
