"""The ``cbm`` command line: a thin click layer over the library."""

from cbm_dask.cli.main import cli

__all__ = ["cli"]
