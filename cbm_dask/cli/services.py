"""``cbm services``: the database, the S3 object store and the STAC API together."""

from __future__ import annotations

import click

from cbm_dask.cli.options import CbmGroup, console, json_opt, print_json, print_table
from cbm_dask.services import registry

_COLUMNS = ["service", "state", "pid", "address"]


def _names(names: tuple[str, ...]) -> list[str] | None:
    return list(names) or None


@click.group(cls=CbmGroup)
def services() -> None:
    """Start, stop and inspect the local services (database, s3, stac).

    Without NAMES every registered service is meant; `up` also starts the
    services the named ones need (the STAC API needs the database).
    """


@services.command()
@click.argument("names", nargs=-1, metavar="[NAMES]...")
@json_opt
def up(names: tuple[str, ...], as_json: bool) -> None:
    """Start the services (first time: create their data under $CBM_HOME)."""
    with console.status("starting services"):
        statuses = registry.up(_names(names))
    rows = [s.as_dict() for s in statuses]
    if as_json:
        print_json(rows)
        return
    print_table("services", rows, _COLUMNS)


@services.command()
@click.argument("names", nargs=-1, metavar="[NAMES]...")
@json_opt
def down(names: tuple[str, ...], as_json: bool) -> None:
    """Stop the services (in reverse start order); external ones are left alone."""
    with console.status("stopping services"):
        stopped = registry.down(_names(names))
    if as_json:
        print_json({name: was_running for name, was_running in stopped})
        return
    for name, was_running in stopped:
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@services.command()
@click.argument("names", nargs=-1, metavar="[NAMES]...")
@json_opt
def status(names: tuple[str, ...], as_json: bool) -> None:
    """Show service, state, pid and address; exit status 3 when one is stopped."""
    statuses = registry.status(_names(names))
    rows = [s.as_dict() for s in statuses]
    if as_json:
        print_json(rows)
    else:
        print_table("services", rows, _COLUMNS)
    if any(s.state == "stopped" for s in statuses):
        raise SystemExit(3)
