"""Benchmark (b): end-to-end extraction of the benchmark world, 1 worker vs 2 workers.

The quarter-tile world (5490 x 5490 px at 10 m, >= 30k parcels, >= 12 S2 dates, plus
Sentinel-1) is built once into a cache directory, published to a private SeaweedFS +
STAC API + PostGIS (under a temporary CBM_HOME on free ports), catalogued, and
extracted from S3 into PostGIS twice: with one worker and with two. Reports parcel
observations per second (parcels x images) and the speed-up. Goal: >= 1.7x.

Also prints the measured per-unit costs used for the projection (e) in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import dask.config
import sqlalchemy as sa

from benchmarks.common import _free_port, machine

DATASET = "bench_world"


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


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--parcels", type=int, default=30_000)
    parser.add_argument("--start", default="2024-05-01")
    parser.add_argument("--end", default="2024-06-25")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cbm-bench-world"))
    args = parser.parse_args(argv)

    from cbm_dask.archive import publish
    from cbm_dask.catalogue import sync_catalogue
    from cbm_dask.extract import extract
    from cbm_dask.services import registry
    from cbm_dask.store.engine import get_engine
    from cbm_dask.store.parcels import load_parcel_file
    from cbm_dask.world import S1_BACKSCATTER, S2_L2A, WorldParams, build_world, read_world

    params = WorldParams(size=args.size, parcels=args.parcels,
                         start=dt.date.fromisoformat(args.start),
                         end=dt.date.fromisoformat(args.end), overviews=False)
    root = args.cache / f"s{args.size}-n{args.parcels}-{args.start}-{args.end}"
    if (root / "world.json").exists():
        world = read_world(root)
    else:
        world = build_world(root, params, overwrite=True)
    lines = []
    with tempfile.TemporaryDirectory(prefix="cbm-bx-") as home:
        os.environ["CBM_HOME"] = home
        settings = _ports()
        with dask.config.set(settings):
            registry.up()
            try:
                publish(world.root, collections=[S2_L2A, S1_BACKSCATTER])
                load_parcel_file(world.parcels_path, DATASET)
                for collection in (S2_L2A, S1_BACKSCATTER):
                    sync_catalogue(None, collection, dataset=DATASET, start=args.start,
                                   end=args.end)
                engine = get_engine()
                with engine.connect() as conn:
                    parcels = conn.execute(sa.text("SELECT parcel_count FROM datasets "
                                                   "WHERE name = :n"), {"n": DATASET}).scalar_one()
                timings = {}
                for workers in (1, 2):
                    with engine.begin() as conn:
                        conn.execute(sa.text("DELETE FROM signatures"))
                        conn.execute(sa.text("UPDATE extractions SET status = 'pending', "
                                             "row_count = NULL, attempts = 0"))
                    started = time.perf_counter()
                    report = extract([DATASET], workers=workers)
                    timings[workers] = time.perf_counter() - started
                    assert report.failed == 0, report.failures
                    images = report.extracted
                    rows = report.rows
                    observations = parcels * images
                    lines.append(
                        f"| extraction, {workers} worker{'s' if workers > 1 else ''} | "
                        f"{dt.date.today()} | {world.params.size}² px world, {parcels:,} parcels x "
                        f"{images} images (S2: 6 bands + SCL histograms; S1: VV, VH) from local "
                        f"S3 into PostGIS = {observations:,} parcel-observations, {rows:,} rows | "
                        f"{timings[workers]:.1f} s = **{observations / timings[workers]:,.0f} "
                        f"parcel-observations/s** ({timings[workers] / images:.2f} s per image) | "
                        f"| {machine()} |"
                    )
                speedup = timings[1] / timings[2]
                lines.append(f"| extraction speed-up 1 → 2 workers | {dt.date.today()} | same run "
                             f"| **{speedup:.2f}x** | >= 1.7x | {machine()} |")
            finally:
                registry.down()
    for line in lines:
        print(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
