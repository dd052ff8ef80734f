"""``python -m cbm_dask`` runs the ``cbm`` command line."""

from cbm_dask.cli.main import cli

if __name__ == "__main__":
    cli()
