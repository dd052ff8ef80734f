"""Benchmark: load N synthetic parcels (default 500k) with all indexes in place.

Goal (issue "platform foundation"): >= 50k parcels/s end to end (read, check,
reproject, COPY, index maintenance).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from benchmarks.common import machine, private_database


def synthetic_parcels(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """N non-overlapping jittered quadrilaterals on a UTM grid, with LPIS-like attributes."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    i, j = np.divmod(np.arange(n), side)
    x0 = 500_000 + i * 120.0
    y0 = 5_600_000 + j * 120.0
    w = rng.uniform(30, 110, n)
    h = rng.uniform(30, 110, n)
    jit = rng.uniform(0, 8, (n, 4))
    coords = np.stack(
        [
            np.stack([x0 + jit[:, 0], y0], axis=1),
            np.stack([x0 + w, y0 + jit[:, 1]], axis=1),
            np.stack([x0 + w - jit[:, 2], y0 + h], axis=1),
            np.stack([x0, y0 + h - jit[:, 3]], axis=1),
            np.stack([x0 + jit[:, 0], y0], axis=1),
        ],
        axis=1,
    )
    crops = np.array(["311", "60", "201", "901", "91", "63"])
    return gpd.GeoDataFrame(
        {
            "parcel_id": np.char.add("P", np.arange(n).astype(str)),
            "crop_code": crops[rng.integers(0, len(crops), n)],
            "farm": rng.integers(1, n // 20 + 2, n),
            "declared_ha": np.round(w * h / 1e4, 2),
        },
        geometry=shapely.polygons(coords),
        crs="EPSG:32631",
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parcels", type=int, default=500_000)
    args = parser.parse_args(argv)
    from cbm_dask.store.parcels import load_parcel_file, store_parcels
    from cbm_dask.zones import detect_columns, prepare_parcels, read_parcels

    with tempfile.TemporaryDirectory() as tmp, private_database():
        path = Path(tmp) / "parcels.parquet"
        synthetic_parcels(args.parcels).to_parquet(path)
        started = time.perf_counter()
        result = load_parcel_file(path, "bench")
        seconds = time.perf_counter() - started
        # The same load in stages: file + checks (Python) and database (COPY, indexes).
        t0 = time.perf_counter()
        source = read_parcels(path)
        mapping = detect_columns(source.frame)
        prepared = prepare_parcels(source, mapping)
        t1 = time.perf_counter()
        store_parcels(prepared, dataset="bench2", source_file=str(path), layer=None,
                      mapping=mapping)
        t2 = time.perf_counter()
    n = result.loaded
    line = (
        f"| parcels load | {dt.date.today()} | {n:,} parcels (GeoParquet, UTM) into PostGIS "
        f"with PK, unique, pid and GiST indexes | end to end {seconds:.1f} s = "
        f"**{n / seconds:,.0f} parcels/s** (read + checks + reprojection {t1 - t0:.1f} s = "
        f"{n / (t1 - t0):,.0f}/s; database COPY + index build {t2 - t1:.1f} s = "
        f"{n / (t2 - t1):,.0f}/s) | >= 50,000 parcels/s | {machine()} |"
    )
    print(line)
    return line


if __name__ == "__main__":
    main()
