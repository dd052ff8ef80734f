"""Benchmark (b): end-to-end extraction of the benchmark world against the cost of its parts.

The quarter-tile world (5490 x 5490 px at 10 m, >= 30k parcels, >= 12 S2 dates, plus
Sentinel-1) is built once into a cache directory, published to a private SeaweedFS +
STAC API + PostGIS (under a temporary CBM_HOME on free ports) and catalogued.  Then,
for the same images, one run measures:

1. **the parts**: the GET + decode of exactly the assets the extraction reads (each
   read fully with rasterio from its ``s3://`` href, with the same GDAL environment),
   and the COPY of the same rows through the production write function
   (:func:`cbm_dask.store.signatures.copy_image_rows`, one committed transaction per
   image) into a scratch dataset;
2. **the stages**: every image reduced in this process, one thread, with the time of
   each stage of the worker path (cube graph, read, labels, reduction, SCL counts,
   frame building, parcel packing);
3. **end to end**: ``cbm_dask.extract.extract`` from S3 into PostGIS with one worker
   and with two (object store GET → decode → reduce → SCL counts → COPY + status).

Goals: end to end per image <= 2x the parts; >= 1.8x speed-up from 1 to 2 workers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import sqlalchemy as sa

from benchmarks.common import _free_port, machine

DATASET = "bench_world"
SCRATCH = "bench_scratch"
STAGES = ("pack", "graph", "read", "labels", "reduce", "scl", "frame", "write")


def _ports() -> dict[str, object]:
    ports = {name: _free_port() for name in ("master", "master-grpc", "volume", "volume-grpc",
                                             "filer", "filer-grpc", "s3-grpc")}
    while True:  # SeaweedFS also binds port + 10000 of the admin port
        admin = _free_port()
        if admin + 10000 < 65535:
            break
    ports["admin"] = admin
    return {"cbm.database.port": _free_port(), "cbm.s3.port": _free_port(),
            "cbm.s3.ports": ports, "cbm.stac.port": _free_port()}


@dataclass(frozen=True)
class Bench:
    """The published world: what the measurements need."""

    world: Any
    url: str
    dataset_id: int
    scratch_id: int
    parcels: Any  # GeoDataFrame (pid, geometry) of the dataset
    records: list[Any]  # ImageRecords of every catalogued image, oldest first


@contextmanager
def _published(world: Any, start: str, end: str) -> Iterator[Bench]:
    """Private services with the world published, its parcels loaded twice, catalogued."""
    import geopandas as gpd

    from cbm_dask.archive import publish
    from cbm_dask.catalogue import read_images, sync_catalogue
    from cbm_dask.services import registry
    from cbm_dask.store.engine import database_url, get_engine
    from cbm_dask.store.parcels import load_parcel_file
    from cbm_dask.world import S1_BACKSCATTER, S2_L2A

    with tempfile.TemporaryDirectory(prefix="cbm-bx-") as home:
        os.environ["CBM_HOME"] = home
        with dask.config.set(_ports()):
            registry.up()
            try:
                publish(world.root, collections=[S2_L2A, S1_BACKSCATTER])
                load_parcel_file(world.parcels_path, DATASET)
                load_parcel_file(world.parcels_path, SCRATCH)
                for collection in (S2_L2A, S1_BACKSCATTER):
                    sync_catalogue(None, collection, dataset=DATASET, start=start, end=end)
                url = database_url()
                with get_engine(url).connect() as conn:
                    ids: dict[str, int] = dict(conn.execute(sa.text(
                        "SELECT name, id FROM datasets WHERE name = ANY(:n)"),
                        {"n": [DATASET, SCRATCH]}).all())
                    srid = conn.execute(sa.text("SELECT srid FROM datasets WHERE id = :d"),
                                        {"d": ids[DATASET]}).scalar_one()
                    parcels = gpd.read_postgis(
                        sa.text("SELECT pid, geom FROM parcels WHERE dataset_id = :d "
                                "ORDER BY pid"), conn, params={"d": ids[DATASET]},
                        geom_col="geom", crs=f"EPSG:{srid}",
                    ).rename_geometry("geometry")
                    image_ids = conn.execute(sa.text(
                        "SELECT id FROM images ORDER BY datetime, item_id")).scalars().all()
                records = read_images(list(image_ids), url=url)
                yield Bench(world, url, int(ids[DATASET]), int(ids[SCRATCH]), parcels,
                            sorted(records, key=lambda r: (r.datetime, r.item_id)))
            finally:
                registry.down()


def _read_assets(record: Any, env: Any) -> tuple[float, int]:
    """GET + decode every asset the extraction reads of one image: seconds, bytes."""
    import rasterio

    from cbm_dask.load.cube import load_cube

    cube = load_cube([record], groupby="item", gdal_env=env)  # lazy: which bands it reads
    bands = {str(name) for group in cube.groups.values() for name in group.data_vars}
    if any("scl_invalid" in g.attrs and g.attrs["scl_invalid"] for g in cube.groups.values()):
        bands.add("SCL")
    assets = record.band_assets()
    started = time.perf_counter()
    size = 0
    with env.apply():
        for band in sorted(bands):
            with rasterio.open(assets[band].href) as src:
                size += src.read(1).nbytes
    return time.perf_counter() - started, size


def _copy_rows(bench: Bench, record: Any, signatures: Any, histograms: Any,
               offset: int) -> float:
    """COPY one image's rows into the scratch dataset through the production write."""
    import psycopg

    from cbm_dask.store.engine import libpq_dsn
    from cbm_dask.store.signatures import copy_image_rows

    # the scratch dataset holds the same parcels under its own keys
    signatures = signatures.assign(pid=signatures["pid"] + offset)
    if histograms is not None:
        histograms = histograms.assign(pid=histograms["pid"] + offset)
    started = time.perf_counter()
    with psycopg.connect(libpq_dsn(bench.url)) as conn, conn.cursor() as cursor:
        copy_image_rows(cursor, bench.scratch_id, record.image_id, signatures, histograms,
                        replace=False)
    return time.perf_counter() - started


def _parts_and_stages(bench: Bench) -> tuple[dict[int, float], dict[int, float],
                                              dict[str, float]]:
    """Per image: GET + decode, COPY of its rows; summed stages of the worker path."""
    from cbm_dask import extract as ex
    from cbm_dask.load.gdal_env import capture_gdal_env
    from cbm_dask.store.engine import get_engine

    env = capture_gdal_env()
    with get_engine(bench.url).connect() as conn:
        offset = int(conn.execute(sa.text(
            "SELECT (SELECT min(pid) FROM parcels WHERE dataset_id = :s) - "
            "(SELECT min(pid) FROM parcels WHERE dataset_id = :d)"),
            {"s": bench.scratch_id, "d": bench.dataset_id}).scalar_one())
    for record in bench.records[:1]:  # warm the object store and the kernels' caches
        _read_assets(record, env)
    reads = {r.image_id: _read_assets(r, env)[0] for r in bench.records}
    stages = ex._Stages()
    copies: dict[int, float] = {}
    for record in bench.records:
        with stages("pack"):
            blob = ex._pack_parcels(bench.parcels)
        signatures, histograms = ex._reduce_image(record, blob, bench.dataset_id,
                                                  gdal_env=env, stages=stages)
        copies[record.image_id] = _copy_rows(bench, record, signatures, histograms, offset)
        stages.seconds["write"] = stages.seconds.get("write", 0.0) + copies[record.image_id]
    return reads, copies, stages.seconds


def _end_to_end(bench: Bench, workers: int) -> tuple[float, Any]:
    from cbm_dask.extract import extract
    from cbm_dask.store.engine import get_engine

    with get_engine(bench.url).begin() as conn:
        conn.execute(sa.text("DELETE FROM signatures WHERE dataset_id = :d"),
                     {"d": bench.dataset_id})
        conn.execute(sa.text("UPDATE extractions SET status = 'pending', row_count = NULL "
                             "WHERE dataset_id = :d"), {"d": bench.dataset_id})
    task_seconds: list[float] = []
    started = time.perf_counter()
    report = extract([DATASET], workers=workers, url=bench.url,
                     on_progress=lambda result, done, total: task_seconds.append(result.seconds))
    seconds = time.perf_counter() - started
    assert report.failed == 0, report.failures
    assert report.extracted == len(bench.records), (report.extracted, len(bench.records))
    print(f"{workers} worker(s): {seconds:.1f} s wall, tasks {sum(task_seconds):.1f} s "
          f"({sum(task_seconds) / max(1, len(task_seconds)):.2f} s per image inside the task)")
    return seconds, report


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--parcels", type=int, default=30_000)
    parser.add_argument("--start", default="2024-05-01")
    parser.add_argument("--end", default="2024-06-25")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cbm-bench-world"))
    parser.add_argument("--no-end-to-end", action="store_true",
                        help="measure only the parts and the stages")
    args = parser.parse_args(argv)

    from cbm_dask.world import WorldParams, build_world, read_world

    params = WorldParams(size=args.size, parcels=args.parcels,
                         start=dt.date.fromisoformat(args.start),
                         end=dt.date.fromisoformat(args.end), overviews=False)
    root = args.cache / f"s{args.size}-n{args.parcels}-{args.start}-{args.end}"
    world = read_world(root) if (root / "world.json").exists() else build_world(
        root, params, overwrite=True)
    today = dt.date.today()
    lines: list[str] = []
    with _published(world, args.start, args.end) as bench:
        n_images = len(bench.records)
        n_parcels = len(bench.parcels)
        reads, copies, stages = _parts_and_stages(bench)
        parts = (sum(reads.values()) + sum(copies.values())) / n_images
        s2 = [r.image_id for r in bench.records if r.card == "s2"]
        s1 = [r.image_id for r in bench.records if r.card != "s2"]
        in_process = sum(stages.values()) / n_images
        print(f"parts per image: GET + decode {sum(reads.values()) / n_images:.2f} s "
              f"(S2 {sum(reads[i] for i in s2) / max(1, len(s2)):.2f} s, "
              f"S1 {sum(reads[i] for i in s1) / max(1, len(s1)):.2f} s), COPY "
              f"{sum(copies.values()) / n_images:.2f} s")
        print("stages of the worker path, per image (in process, one thread):")
        for name in STAGES:
            value = stages.get(name, 0.0) / n_images
            print(f"  {name:8s} {value:6.3f} s  {100 * value / in_process:5.1f} %")
        print(f"  {'total':8s} {in_process:6.3f} s")
        what = (f"{world.params.size}² px world, {n_parcels:,} parcels x {n_images} images "
                f"(S2: 6 bands + SCL counts; S1: VV, VH) from local S3 into PostGIS")
        lines.append(
            f"| extraction parts | {today} | {what}: GET + decode of the assets read "
            f"(rasterio, same GDAL env) + COPY of the same rows (copy_image_rows) | "
            f"**{parts:.2f} s per image** (GET + decode {sum(reads.values()) / n_images:.2f} s, "
            f"COPY {sum(copies.values()) / n_images:.2f} s) | | {machine()} |")
        if not args.no_end_to_end:
            timings = {}
            for workers in (1, 2):
                seconds, report = _end_to_end(bench, workers)
                timings[workers] = seconds
                observations = n_parcels * n_images
                lines.append(
                    f"| extraction, {workers} worker{'s' if workers > 1 else ''} | {today} | "
                    f"{what} = {observations:,} parcel-observations, {report.rows:,} "
                    f"band-rows | {seconds:.1f} s = **{observations / seconds:,.0f} "
                    f"parcel-observations/s** ({seconds / n_images:.2f} s per image) | | "
                    f"{machine()} |")
            per_image = timings[1] / n_images
            print(f"end to end per image, 1 worker: {per_image:.2f} s; in process "
                  f"{in_process:.2f} s; driver + scheduling + worker start-up "
                  f"{per_image - in_process:.2f} s")
            lines.append(f"| extraction end to end / parts | {today} | same run, 1 worker | "
                         f"**{per_image / parts:.2f}x** ({per_image:.2f} s / {parts:.2f} s) | "
                         f"<= 2x | {machine()} |")
            lines.append(f"| extraction speed-up 1 → 2 workers | {today} | same run | "
                         f"**{timings[1] / timings[2]:.2f}x** | >= 1.8x | {machine()} |")
    for line in lines:
        print(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
