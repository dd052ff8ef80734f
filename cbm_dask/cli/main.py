"""Entry point of the ``cbm`` command line."""

from __future__ import annotations

import logging

import click
import dask.config

from cbm_dask import config
from cbm_dask._version import __version__
from cbm_dask.cli.options import CbmGroup

# Imported on first use: a command pays only for its own imports.
COMMANDS = {
    "db": "cbm_dask.cli.db:db",
    "parcels": "cbm_dask.cli.parcels:parcels",
    "datasets": "cbm_dask.cli.parcels:datasets",
    "world": "cbm_dask.cli.world:world",
    "demo": "cbm_dask.cli.demo:demo",
    "catalogue": "cbm_dask.cli.catalogue:catalogue",
    "services": "cbm_dask.cli.services:services",
    "archive": "cbm_dask.cli.archive:archive",
    "extract": "cbm_dask.cli.extract:extract_command",
    "update": "cbm_dask.cli.extract:update",
    "series": "cbm_dask.cli.extract:series",
}


# Earlier names that keep working (scripts) but are not listed.
ALIASES = {"catalog": "catalogue"}


@click.group(cls=CbmGroup, lazy=COMMANDS, aliases=ALIASES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(__version__, "--version", prog_name="cbm")
def cli(verbose: int, quiet: bool) -> None:
    """cbm_dask: Checks by Monitoring on Dask and PostGIS."""
    level = str(config.get("log-level", "WARNING")).upper()
    if verbose:
        level = "DEBUG" if verbose > 1 else "INFO"
    if quiet:
        level = "ERROR"
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # Dask's INFO chatter is noise on the command line; distributed applies the
        # `logging` config when it is first imported, later in the command.
        quiet_level = "error" if quiet else "warning"
        dask.config.set({"logging": {"distributed": quiet_level, "distributed.nanny": quiet_level,
                                     "distributed.scheduler": quiet_level}})
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(quiet_level.upper())

