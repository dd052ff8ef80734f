"""Entry point of the ``cbm`` command line."""

from __future__ import annotations

import logging

import click
import dask.config

from cbm_dask import config
from cbm_dask._version import __version__
from cbm_dask.cli.archive import archive
from cbm_dask.cli.catalog import catalog
from cbm_dask.cli.db import db
from cbm_dask.cli.demo import demo
from cbm_dask.cli.extract import extract_command, series, update
from cbm_dask.cli.options import CbmGroup
from cbm_dask.cli.parcels import datasets, parcels
from cbm_dask.cli.services import services
from cbm_dask.cli.world import world


@click.group(cls=CbmGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


cli.add_command(db)
cli.add_command(parcels)
cli.add_command(datasets)
cli.add_command(world)
cli.add_command(demo)
cli.add_command(catalog)
cli.add_command(services)
cli.add_command(archive)
cli.add_command(extract_command)
cli.add_command(update)
cli.add_command(series)
