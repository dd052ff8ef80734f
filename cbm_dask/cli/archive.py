"""``cbm archive``: the Sentinel image archive (object store + STAC API)."""

from __future__ import annotations

from pathlib import Path

import click

from cbm_dask.cli.options import CbmGroup, console, json_opt, print_json


@click.group(cls=CbmGroup)
def archive() -> None:
    """Publish imagery into the archive (COGs in S3, items in the STAC API)."""


@archive.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--collection", "-c", "collections", multiple=True, metavar="C",
              help="Publish only collection C (repeatable; default: every one found).")
@click.option("--bucket", metavar="B", help="Bucket to write to (default: cbm.s3.bucket).")
@click.option("--stac-url", metavar="URL",
              help="STAC API to register in (default: cbm.stac.url, else the local one).")
@json_opt
def publish(
    directory: Path, collections: tuple[str, ...], bucket: str | None, stac_url: str | None,
    as_json: bool,
) -> None:
    """Upload the COGs of DIRECTORY and register their STAC items.

    DIRECTORY is a world written by `cbm world build` (stac/collections,
    stac/items/<collection>/*.json with relative hrefs) or a folder of real COGs
    (cogs/<YYYY-MM-DD>/<BAND>.tif, cogs_window/<BAND>_<res>m.tif), or a folder of
    such folders.  Asset hrefs become s3://BUCKET/<collection>/<item>/<file>.
    Publishing again replaces the items and skips unchanged objects.
    """
    from cbm_dask.archive import publish as run

    with console.status(f"publishing {directory}"):
        report = run(directory, collections=list(collections) or None, bucket=bucket,
                     stac_url=stac_url)
    if as_json:
        print_json(report.as_dict())
        return
    for collection_id, outcome in report.collections:
        console.print(f"collection {collection_id}: {outcome}")
    console.print(
        f"{len(report.items_created)} items created, {len(report.items_updated)} updated in "
        f"{report.stac_url}; {report.objects_uploaded} objects uploaded, "
        f"{report.objects_unchanged} unchanged in s3://{report.bucket} ({report.endpoint}) "
        f"({report.seconds:.1f} s)"
    )
