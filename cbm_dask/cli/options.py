"""Options shared by cbm commands (rio-style registry) and output helpers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
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


class CbmCommand(click.Command):
    """A command whose library parameters are not all spelled like its options.

    ``spellings`` adds to (or overrides) the spellings :func:`flag_spellings` derives
    from the options, e.g. ``{"on_invalid='skip'": "run without --strict"}`` for a
    command whose ``--strict`` flag sets ``on_invalid='error'``.
    """

    def __init__(self, *args: Any, spellings: Mapping[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spellings = dict(spellings or {})


def flag_spellings(command: click.Command) -> dict[str, str]:
    """Map the library spelling of each parameter (``name=``) to the command's flag.

    An option matches the library parameter of its own name (``stac_url``) and of its
    long flag's name (``--to`` matches ``to``); a boolean flag also turns
    ``name=True`` into the bare flag.  A :class:`CbmCommand`'s ``spellings`` come last.
    """
    spellings: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or not param.opts:
            continue
        flag = max(param.opts, key=lambda opt: (opt.startswith("--"), len(opt)))
        for name in {param.name, flag.lstrip("-").replace("-", "_")} - {None}:
            spellings[f"{name}="] = f"{flag} "
            if param.is_flag:
                spellings[f"{name}=True"] = flag
    spellings.update(getattr(command, "spellings", {}))
    return spellings


class CbmGroup(click.Group):
    """A click group that turns cbm errors into one readable line and exit status 1.

    The parameters an error's message names are shown as the failing command's
    flags (:func:`flag_spellings`): ``start='x'`` becomes ``--start 'x'``.

    ``lazy`` maps command names to ``"module:attribute"``: those commands are
    imported when used, so that a command does not pay for the others' imports.
    ``aliases`` maps other names to command names; they work but are not listed.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None,
                 aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.aliases = dict(aliases or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of the group's commands, loaded or not (aliases left out)."""
        return sorted({*super().list_commands(ctx), *self.lazy} - set(self.aliases))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a command, importing it on first use."""
        cmd_name = self.aliases.get(cmd_name, cmd_name)
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
            command = (self.get_command(ctx, ctx.invoked_subcommand)
                       if ctx.invoked_subcommand else None)
            message = exc.respelled(flag_spellings(command)) if command else str(exc)
            raise click.ClickException(message) from exc


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
