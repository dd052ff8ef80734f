"""``cbm catalogue``: the image catalogue (STAC search → ``images``, per-dataset listing)."""

from __future__ import annotations

import click

from cbm_dask.cli.options import (
    CbmCommand,
    CbmGroup,
    console,
    dataset_opt,
    json_opt,
    print_json,
    print_table,
)


@click.group(cls=CbmGroup)
def catalogue() -> None:
    """Catalogue Sentinel images from a STAC API and list them per dataset."""


@catalogue.command(cls=CbmCommand,
                   spellings={"on_invalid='skip'": "run without --strict"})
@click.option("--stac-url", metavar="URL",
              help="STAC API root (default: cbm.stac.url, else the local STAC API).")
@click.option("--collection", "-c", required=True, metavar="C",
              help="Collection to search, e.g. sentinel-2-l2a.")
@click.option("--dataset", "-d", metavar="NAME",
              help="Search over this parcel dataset's extent and queue its extractions.")
@click.option("--bbox", metavar="W,S,E,N", help="Search box in degrees (instead of --dataset).")
@click.option("--start", required=True, metavar="DATE", help="First acquisition date (UTC).")
@click.option("--end", required=True, metavar="DATE", help="Last acquisition date, inclusive.")
@click.option("--page-size", type=int, metavar="N",
              help="Items per page and per transaction (default cbm.catalogue.page-size).")
@click.option("--strict", is_flag=True,
              help="Stop at the first item that cannot be catalogued instead of skipping it.")
@json_opt
def sync(stac_url: str | None, collection: str, dataset: str | None, bbox: str | None,
         start: str, end: str, page_size: int | None, strict: bool, as_json: bool) -> None:
    """Search a STAC collection and upsert its items into the catalogue."""
    from cbm_dask.catalogue import sync_catalogue

    with console.status(f"searching {collection}"):
        result = sync_catalogue(
            stac_url, collection, dataset=dataset, bbox=bbox, start=start, end=end,
            page_size=page_size, on_invalid="error" if strict else None,
        )
    if as_json:
        print_json(result.as_dict())
        return
    where = f"dataset {dataset}" if dataset else "bbox " + ",".join(f"{v:g}" for v in result.bbox)
    console.print(
        f"{result.collection} at {result.stac_url} over {where}, "
        f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}: {result.found} items, "
        f"{result.inserted} new, {result.updated} updated, {result.unchanged} unchanged, "
        f"{len(result.skipped)} skipped ({result.pages} pages, {result.seconds:.1f} s)"
    )
    if dataset:
        console.print(f"{result.pending} new pending extractions for {dataset}")
    for item_id, reason in result.skipped:
        console.print(f"[yellow]skipped[/] {item_id}: {reason}")


@catalogue.command(name="list")
@dataset_opt
@click.option("--collection", "-c", metavar="C", help="Only images of this collection.")
@json_opt
def list_(dataset: str, collection: str | None, as_json: bool) -> None:
    """List the images over a dataset with their extraction status for it."""
    from cbm_dask.catalogue import list_images

    frame = list_images(dataset, collection=collection)
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["datetime"] = f"{row['datetime']:%Y-%m-%d %H:%M}"
        cover = row.get("cloud_cover")
        if isinstance(cover, float) and cover == cover:  # not NaN
            row["cloud_cover"] = f"{cover:.1f}"
    print_table(
        f"{len(rows)} images over {dataset}", rows,
        ["image_id", "collection", "item_id", "datetime", "card", "tile", "orbit", "epsg",
         "cloud_cover", "processing_baseline", "extraction"],
    )
