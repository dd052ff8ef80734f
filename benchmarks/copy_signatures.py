"""Benchmark (c): COPY throughput into the signature tables with indexes in place.

Goal (issue "parcel reduction engine"): >= 300k rows/s. Each "image" is one
transaction of parcels x 8 bands rows, as the extraction writes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks.common import machine, private_database

BANDS = ("B02", "B03", "B04", "B05", "B08", "B11", "VVb", "VHb")


def image_rows(pids: np.ndarray, seed: int) -> pd.DataFrame:
    """One image's reduction result: every parcel x band, 5 % of parcels without pixels."""
    rng = np.random.default_rng(seed)
    n = len(pids) * len(BANDS)
    frame = pd.DataFrame(
        {"pid": np.repeat(pids, len(BANDS)), "band": np.tile(BANDS, len(pids)),
         "count": rng.integers(0, 400, n).astype("int32")}
    )
    for stat in ("mean", "std", "min", "max", "p25", "p50", "p75"):
        frame[stat] = (rng.random(n) * 5000).astype("float32")
    empty = np.repeat(rng.random(len(pids)) < 0.05, len(BANDS))
    frame.loc[empty, "count"] = 0
    frame.loc[empty, ["mean", "std", "min", "max", "p25", "p50", "p75"]] = np.nan
    return frame


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parcels", type=int, default=250_000)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args(argv)
    from cbm_dask.store.engine import get_engine
    from cbm_dask.store.partitions import create_dataset_partitions
    from cbm_dask.store.signatures import copy_signatures

    with private_database() as url:
        engine = get_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO datasets (id, name, srid, crs, source_file, column_mapping) "
                "VALUES (1, 'bench', 32631, 'EPSG:32631', 'synthetic', '{}')"
            ))
            create_dataset_partitions(conn, 1)
        pids = np.arange(1, args.parcels + 1, dtype="int32")
        seconds = []
        rows = 0
        for image in range(1, args.images + 1):
            frame = image_rows(pids, image)
            started = time.perf_counter()
            with engine.begin() as conn:
                raw = conn.connection.driver_connection
                with raw.cursor() as cursor:  # type: ignore[union-attr]
                    rows += copy_signatures(cursor, 1, image, frame)
            seconds.append(time.perf_counter() - started)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM signatures")).scalar_one()
    assert stored == rows
    total = sum(seconds)
    line = (
        f"| signature COPY | {dt.date.today()} | {args.images} images x {args.parcels:,} parcels "
        f"x {len(BANDS)} bands = {rows:,} rows, binary COPY, PK + BRIN in place, one transaction "
        f"per image | {total:.1f} s = **{rows / total:,.0f} rows/s** (first image "
        f"{len(frame) / seconds[0]:,.0f}/s, last {len(frame) / seconds[-1]:,.0f}/s) | "
        f">= 300,000 rows/s | {machine()} |"
    )
    print(line)
    return line


if __name__ == "__main__":
    main()
