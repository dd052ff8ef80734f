"""Benchmark: load N real-shaped parcels (default 500k) with all indexes in place.

Goal (issue "country scale", deliverable 6): >= 50k parcels/s end to end (read,
check, area, COPY, index build, commit) on parcels shaped like real declarations.

The parcels are the real LPIS/GSA sample geometries (all 15 samples of
``../shared/data/real/lpis``, 1,900 parcels), resampled with replacement and
moved onto a grid of a UTM zone, so their vertices-per-parcel distribution is the
samples' one (median 23, mean ~47, p99 ~390 vertices; a 5-vertex quad is ~10x
lighter to read, check, encode and store).  Run from the repository root::

    .venv/bin/python -m benchmarks.parcels_load --parcels 500000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import psutil
import pyogrio
import shapely

from benchmarks.common import machine, private_database

REAL_LPIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "lpis"


def real_shapes() -> np.ndarray:
    """Every real sample parcel in metres (EPSG:3035), moved so its bounds start at 0, 0."""
    from cbm_dask.demo import LPIS_SAMPLES

    shapes = []
    for sample in LPIS_SAMPLES:
        geoms = pyogrio.read_dataframe(REAL_LPIS / sample.path).to_crs(3035).geometry.to_numpy()
        corner = np.repeat(shapely.bounds(geoms)[:, :2], shapely.get_num_coordinates(geoms), 0)
        shapes.append(shapely.transform(geoms, lambda xy, c=corner: xy - c))
    return np.concatenate(shapes)


def vertex_quantiles(geoms: np.ndarray) -> str:
    """Vertices per parcel: median, mean, p90, p99, max."""
    n = shapely.get_num_coordinates(geoms)
    p50, p90, p99 = np.percentile(n, [50, 90, 99])
    return f"median {p50:.0f}, mean {n.mean():.1f}, p90 {p90:.0f}, p99 {p99:.0f}, max {n.max()}"


def synthetic_parcels(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """N real sample geometries resampled onto a 700 m grid in EPSG:32631, LPIS-like columns.

    700 m is the 95th percentile of the samples' extents: the largest 5 % overlap
    a neighbour, which no part of the load checks.
    """
    rng = np.random.default_rng(seed)
    shapes = real_shapes()
    chosen = shapes[rng.integers(0, len(shapes), n)]
    side = int(np.ceil(np.sqrt(n)))
    i, j = np.divmod(np.arange(n), side)
    offsets = np.stack([250_000 + i * 700.0, 5_300_000 + j * 700.0], axis=1)
    moved = shapely.transform(
        chosen, lambda xy: xy + np.repeat(offsets, shapely.get_num_coordinates(chosen), 0)
    )
    crops = np.array(["311", "60", "201", "901", "91", "63", "9532", "1"])
    names = np.array(["Wintertarwe", "Grasland", "Silomaïs", "Aardappelen", "Braak",
                      "Tijdelijk grasland", "Bloemenmengsel", "Wintergerst"])
    crop = rng.integers(0, len(crops), n)
    return gpd.GeoDataFrame(
        {
            "parcel_id": np.char.add("P", np.arange(n).astype(str)),
            "crop_code": crops[crop],
            "crop_name": names[crop],
            "farm": rng.integers(1, n // 20 + 2, n),
            "declared_ha": np.round(shapely.area(moved) / 1e4, 2),
            "year": np.full(n, 2025),
            "declared_on": np.datetime64("2025-05-15") - rng.integers(0, 60, n),
            "organic": rng.random(n) < 0.1,
        },
        geometry=moved,
        crs="EPSG:32631",
    )


def server_cpu(home: str) -> float:
    """CPU seconds (user + system) used so far by the private cluster's processes."""
    total = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            # the postmaster names the cluster's directory; its children are its backends
            if process.info["name"] == "postgres" and (
                home in " ".join(process.info["cmdline"] or [])
                or ((parent := process.parent()) is not None
                    and home in " ".join(parent.cmdline()))
            ):
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def loadavg() -> str:
    """The 1-minute load average now (others share the machine)."""
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parcels", type=int, default=500_000)
    args = parser.parse_args(argv)
    from cbm_dask.store.parcels import load_parcel_file, store_parcels
    from cbm_dask.zones import detect_columns, prepare_parcels, read_parcels

    with tempfile.TemporaryDirectory() as tmp, private_database():
        path = Path(tmp) / "parcels.parquet"
        frame = synthetic_parcels(args.parcels)
        shape = vertex_quantiles(frame.geometry.to_numpy())
        frame.to_parquet(path)
        del frame
        home = os.environ["CBM_HOME"]
        load_before = loadavg()
        cpu0, server0 = sum(os.times()[:2]), server_cpu(home)
        started = time.perf_counter()
        result = load_parcel_file(path, "bench")
        seconds = time.perf_counter() - started
        client = sum(os.times()[:2]) - cpu0
        server = server_cpu(home) - server0
        load_after = loadavg()
        # The same load in stages, one after the other (the end-to-end load overlaps
        # the preparation of each batch with the COPY of the previous one):
        # read, checks + area + JSON (Python), database (encode, COPY, indexes).
        t0 = time.perf_counter()
        source = read_parcels(path)
        t1 = time.perf_counter()
        mapping = detect_columns(source.frame)
        prepared = prepare_parcels(source, mapping)
        t2 = time.perf_counter()
        store_parcels(prepared, dataset="bench2", source_file=str(path), layer=None,
                      mapping=mapping)
        t3 = time.perf_counter()
    n = result.loaded
    line = (
        f"| parcels load | {dt.date.today()} | {n:,} real-shaped parcels (real LPIS sample "
        f"geometries resampled: vertices {shape}; GeoParquet, UTM, 8 attributes) into "
        f"PostGIS with PK, unique, pid and GiST indexes | end to end {seconds:.1f} s = "
        f"**{n / seconds:,.0f} parcels/s** (read {t1 - t0:.1f} s; checks + area + JSON "
        f"{t2 - t1:.1f} s; database: encode + COPY + index build + commit {t3 - t2:.1f} s = "
        f"{n / (t3 - t2):,.0f}/s); CPU of the end-to-end load: client {client:.1f} s, "
        f"server {server:.1f} s | >= 50,000 parcels/s | {machine()}, load average "
        f"{load_before} before / {load_after} after |"
    )
    print(line)
    return line


if __name__ == "__main__":
    main()
