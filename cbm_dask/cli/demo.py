"""``cbm demo``: everything that exists, end to end, on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import Progress

from cbm_dask import config
from cbm_dask.cli.options import console, print_table
from cbm_dask.demo import (
    LPIS_SAMPLES,
    WORLD_DATASET,
    catalogue_targets,
    demo_parcels,
    demo_world,
    load_lpis_samples,
    ndvi_series,
    real_imagery,
)
from cbm_dask.store.parcels import list_datasets, load_parcel_file


def _step(number: int, text: str) -> None:
    console.rule(f"[bold]{number}. {text}", align="left")


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("../shared/data/real"), show_default=True,
              help="The real data directory (LPIS samples, Sentinel COGs).")
def demo(data_dir: Path) -> None:
    """Run the demo: services, parcels, archive, catalogue, cube, extraction, time series."""
    from cbm_dask.services import registry

    console.rule("[bold]cbm_dask demo")
    _step(1, "services: PostGIS, S3 object store, STAC API (127.0.0.1 only)")
    statuses = registry.up()
    print_table("services", [s.as_dict() for s in statuses])

    _step(2, f"{len(LPIS_SAMPLES)} real LPIS/GSA samples from {data_dir}/lpis")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading parcels", total=len(LPIS_SAMPLES))
        results = load_lpis_samples(data_dir, on_loaded=lambda r: progress.advance(task))
    by_name = {r.dataset: r for r in results}
    rows = [
        {
            "dataset": row["name"], "aoi": row["aoi"], "year": row["year"],
            "crs": row["crs"], "parcels": row["parcels"], "repaired": row["repaired"],
            "rejected": row["rejected"],
            "id column": ",".join(by_name[row["name"]].mapping.id) if row["name"] in by_name
            else "",
            "crop code": by_name[row["name"]].mapping.crop_code if row["name"] in by_name
            else "",
        }
        for row in list_datasets().to_dict(orient="records")
        if row["name"] in by_name
    ]
    print_table(f"{len(rows)} datasets loaded", rows)

    _step(3, "a synthetic world with known ground truth")
    with console.status("building the demo world (first run only)"):
        world = demo_world(config.home())
    counts = ", ".join(f"{v} {k}" for k, v in world.counts.items())
    console.print(f"{world.root}: tile {world.tile} (EPSG:{world.epsg}), "
                  f"{world.params.start} .. {world.params.end}; {counts}; "
                  f"cloudy share {world.cloudy_share:.0%}")
    existing = list_datasets()
    if WORLD_DATASET in set(existing["name"]):  # keep its signatures: re-runs are incremental
        count = existing.set_index("name")["parcels"].astype(int)[WORLD_DATASET]
        console.print(f"dataset {WORLD_DATASET}: {count} declared parcels (loaded before)")
    else:
        loaded = load_parcel_file(world.parcels_path, WORLD_DATASET, aoi="synthetic")
        console.print(f"dataset {WORLD_DATASET}: {loaded.loaded} declared parcels loaded")

    _step(4, "publish COGs to S3 and items to the STAC API")
    from cbm_dask.archive import publish

    sources = [world.root, *real_imagery(data_dir)]
    reports = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("publishing", total=len(sources))
        for source in sources:
            reports.append(publish(source))
            progress.advance(task)
    print_table("published", [
        {"source": r.source.name, "items": len(r.items), "uploaded": r.objects_uploaded,
         "unchanged": r.objects_unchanged, "collections": ", ".join(c for c, _ in r.collections),
         "seconds": f"{r.seconds:.1f}"}
        for r in reports
    ])

    _step(5, "catalogue sync from the STAC API")
    from cbm_dask.catalogue import sync_catalogue

    synced = []
    for target in catalogue_targets(world):
        result = sync_catalogue(
            None, target.collection, dataset=target.dataset, bbox=target.bbox,
            start=target.start, end=target.end,
        )
        synced.append({
            "collection": target.collection, "over": target.dataset or str(target.bbox),
            "found": result.found, "new": result.inserted, "pending extractions": result.pending,
        })
    print_table("catalogue", synced)

    _step(6, "a lazy cube of the demo world (odc-stac, native grids)")
    from cbm_dask.catalogue import read_images
    from cbm_dask.load.cube import load_cube
    from cbm_dask.load.gdal_env import capture_gdal_env
    from cbm_dask.sentinel.collections import S2_L2A
    from cbm_dask.store.parcels import read_dataset_parcels

    images = read_images(dataset=WORLD_DATASET, collection=S2_L2A)
    parcels = read_dataset_parcels(WORLD_DATASET)
    period = (world.params.start, world.params.end)  # the world's own images, not real ones
    cube = load_cube(images, parcels=parcels, time=period, groupby="item",
                     gdal_env=capture_gdal_env())
    for resolution, group in cube.groups.items():
        sizes = ", ".join(f"{d}={n}" for d, n in group.sizes.items())
        chunks = ", ".join(f"{d}={max(c)}" for d, c in group.chunks.items())
        console.print(f"{resolution:g} m: {', '.join(map(str, group.data_vars))} "
                      f"({sizes}; dask chunks {chunks})")
    red, nir = cube["B04"], cube["B08"]
    scene_ndvi = ((nir - red) / (nir + red)).mean(dim=("y", "x"))
    with console.status("computing the scene's mean NDVI per date"):
        values = scene_ndvi.compute()
    valid = values.dropna("time")
    console.print(f"mean NDVI over {valid.sizes['time']} dates with clear pixels: "
                  f"min {float(valid.min()):.2f}, max {float(valid.max()):.2f} "
                  f"(peak {str(valid.idxmax().values)[:10]})")
    _step(7, "extraction on Dask: every image reduced to per-parcel signatures in PostGIS")
    from cbm_dask.cli.extract import _print_report, _run_extraction

    summary = _run_extraction([WORLD_DATASET, "ie_gsaa_2022"], None, "local", None, False)
    _print_report(summary)

    _step(8, "a few parcels' time series (mean NDVI from the signatures)")
    for dataset, parcel_id, label in demo_parcels(world):
        ndvi = ndvi_series(dataset, parcel_id)
        if ndvi.empty:
            continue
        points = "  ".join(f"{d:%m-%d} {v:.2f}" for d, v in ndvi.items())
        console.print(f"[bold]{dataset} / {parcel_id}[/] ({label}):\n  {points}")

    _step(9, "marker detections over every world parcel's series, beside the world's truth "
             "(detectors only: no scheme rules or tuning yet)")
    from cbm_dask.demo import marker_summary

    print_table(f"markers on {WORLD_DATASET} ({world.params.start} to {world.params.end})",
                marker_summary(world))
    console.rule("[bold]demo complete")
