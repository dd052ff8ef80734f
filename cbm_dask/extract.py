"""Batch extraction: catalogued images → lazy cubes → per-parcel signatures in PostGIS.

The driver (``cbm extract`` or :func:`extract` in a notebook) claims units of
work — one image for one dataset — from the database queue, oldest image first,
and submits one Dask task per unit.  Each task loads its image as a cube on the
image's native grids, rasterises the dataset's parcels once per grid (cached in
the worker), reduces every band, counts SCL classes, and writes everything in
one transaction (:func:`cbm_dask.store.signatures.write_image_result`).  Any
number of drivers on any number of machines can work on the same database.

Failure model: a worker that dies mid-task has its task re-run elsewhere by the
Dask scheduler (the write is idempotent); a driver that dies loses its database
session, which releases its claims, and the next run picks them up; an image
that cannot be read is marked ``failed`` with the reason and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa

from cbm_dask import config
from cbm_dask.errors import InputError
from cbm_dask.store.engine import database_url, get_engine
from cbm_dask.store.signatures import (
    STATISTICS,
    ExtractionQueue,
    Unit,
    ensure_pending,
    mark_failed,
    reset_failed,
    write_image_result,
)

__all__ = [
    "ExtractionReport",
    "UnitResult",
    "connect_cluster",
    "extract",
    "extract_unit",
    "queue_images",
    "signature_band",
]

log = logging.getLogger(__name__)

# JRC band codes of Sentinel-1: backscatter "b", coherence "c".
_S1_CODES = {"VV": "VVb", "VH": "VHb", "HH": "HHb", "HV": "HVb",
             "COH_VV": "VVc", "COH_VH": "VHc", "COH_HH": "HHc", "COH_HV": "HVc"}


def signature_band(name: str) -> str:
    """Return the band code stored in ``signatures.band`` for a cube band name."""
    return _S1_CODES.get(name, name)


@dataclass(frozen=True)
class UnitResult:
    """Outcome of one unit of work."""

    unit: Unit
    rows: int
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class ExtractionReport:
    """What an extraction run did."""

    datasets: tuple[str, ...]
    extracted: int
    failed: int
    rows: int
    seconds: float
    failures: tuple[tuple[str, str], ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "datasets": list(self.datasets), "extracted": self.extracted, "failed": self.failed,
            "rows": self.rows, "seconds": round(self.seconds, 2),
            "failures": [{"item_id": i, "error": e} for i, e in self.failures],
        }


# -- the worker side ------------------------------------------------------------


@lru_cache(maxsize=16)
def _labels(key: tuple[Any, ...], parcels_blob: bytes, grid: Any, buffer: float) -> Any:
    """Return the labels of a parcel set on a grid, cached per worker.

    The same tile grid and parcel set (same bytes) are rasterised once for all
    the grid's images and bands.
    """
    from cbm_dask.reduce import build_labels

    return build_labels(_unpack_parcels(parcels_blob), grid, id_column="pid", buffer=buffer)


def _pack_parcels(parcels: gpd.GeoDataFrame) -> bytes:
    """Parcels (pid, geometry) as GeoParquet bytes: compact to ship, hashable to cache."""
    import io

    buffer = io.BytesIO()
    parcels[["pid", "geometry"]].reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _unpack_parcels(blob: bytes) -> gpd.GeoDataFrame:
    import io

    return gpd.read_parquet(io.BytesIO(blob))


def _reduce_group(group: Any, parcels_blob: bytes, key: tuple[Any, ...], buffer: float,
                  ) -> tuple[list[pd.DataFrame], pd.DataFrame | None]:
    from cbm_dask.reduce import grid_of, scl_histogram, zonal_stats

    grid = grid_of(group)
    grid_key = (*key, tuple(grid.transform), grid.shape, str(grid.crs))
    labels = _labels(grid_key, parcels_blob, grid, buffer)
    bands = [name for name in group.data_vars if name != "SCL"]
    frames = []
    if bands:
        stats = zonal_stats(group[bands], labels, stats=("count", *STATISTICS))
        frames.append(stats.drop(columns=[c for c in stats.columns if c == "time"]))
    histograms = None
    if "SCL" in group.data_vars:
        long = scl_histogram(group["SCL"], labels, layout="long")
        if len(long):
            # {"4": 120, "8": 3} per parcel, built as text in bulk (a json.dumps per
            # parcel costs seconds on a tile)
            pairs = '"' + long["class"].astype(str) + '": ' + long["count"].astype(str)
            histograms = (
                pairs.groupby(long["pid"], sort=False).agg(", ".join)
                .map(lambda body: "{" + body + "}").rename("hist").reset_index()
            )
    return frames, histograms


def extract_unit(
    unit: Unit,
    record: Any,
    parcels_blob: bytes,
    *,
    url: str,
    gdal_env: Any = None,
    buffer: float = 0.0,
) -> UnitResult:
    """Extract one image for one dataset and write the result (runs in a Dask task).

    Parameters
    ----------
    unit
        The claimed unit of work.
    record
        The image's :class:`~cbm_dask.catalogue.normalise.ImageRecord`.
    parcels_blob
        The dataset's parcels near the image, packed by :func:`_pack_parcels`.
    url
        Database URL to write to.
    gdal_env
        How to read the image's assets (:func:`cbm_dask.load.gdal_env.capture_gdal_env`).
    buffer
        Inward (negative) or outward buffer of the parcels in metres.
    """
    from cbm_dask.load.cube import load_cube

    started = time.perf_counter()
    try:
        parcels = _unpack_parcels(parcels_blob)
        # The task is the unit of parallelism: no nested Dask or kernel threads.
        with dask.config.set({"scheduler": "synchronous", "cbm.reduce.threads": 1}):
            cube = load_cube([record], parcels=parcels, groupby="item", gdal_env=gdal_env,
                             chunks={"time": 1, "y": 100_000, "x": 100_000})
            frames: list[pd.DataFrame] = []
            histograms = None
            for group in cube.groups.values():
                group_frames, group_hist = _reduce_group(
                    group.compute(), parcels_blob, (unit.dataset_id,), buffer
                )
                frames += group_frames
                histograms = group_hist if group_hist is not None else histograms
        signatures = pd.concat(frames, ignore_index=True)
        signatures["band"] = signatures["band"].astype(str).map(signature_band)
        rows = write_image_result(unit, signatures, histograms, url=url)
        return UnitResult(unit, rows, time.perf_counter() - started)
    except Exception as exc:  # recorded per image; the run goes on
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        log.warning("extraction of %s failed: %s", record.item_id, reason)
        mark_failed(unit, reason, url=url)
        return UnitResult(unit, 0, time.perf_counter() - started, error=reason)


# -- the driver side -------------------------------------------------------------


@contextmanager
def connect_cluster(cluster: str = "local", workers: int | None = None) -> Iterator[Any]:
    """Yield a distributed Client: ``local``, ``tcp://host:port`` or ``gateway``.

    ``local`` starts a LocalCluster of ``workers`` single-threaded processes on
    127.0.0.1; ``gateway`` asks the configured dask-gateway for a cluster with
    ``workers`` workers; an address connects to a running scheduler.
    """
    from distributed import Client, LocalCluster

    if cluster == "local":
        n = workers or int(config.get("extract.workers", 2))
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None,
                          silence_logs=logging.ERROR) as local, \
                Client(local) as client:
            yield client
    elif cluster == "gateway":
        from dask_gateway import Gateway

        gateway_cluster = Gateway().new_cluster()
        try:
            gateway_cluster.scale(workers or 2)
            with gateway_cluster.get_client() as client:
                yield client
        finally:
            gateway_cluster.shutdown()
    elif cluster.startswith(("tcp://", "tls://")):
        with Client(cluster) as client:
            yield client
    else:
        raise InputError(f"--cluster {cluster}: use local, gateway or tcp://HOST:PORT")


def _dataset_ids(names: Sequence[str], url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        rows: dict[str, int] = dict(conn.execute(
            sa.text("SELECT name, id FROM datasets WHERE name = ANY(:n)"), {"n": list(names)}
        ).all())
    missing = [n for n in names if n not in rows]
    if missing:
        raise InputError(
            f"--dataset {', '.join(missing)}: no such dataset; see `cbm datasets list`"
        )
    return {n: int(rows[n]) for n in names}


def queue_images(dataset_id: int, *, collection: str | None = None,
                 url: str | None = None) -> int:
    """Create pending units for catalogued images that cover the dataset's parcels."""
    with get_engine(url).begin() as conn:
        ids = conn.execute(sa.text(
            "SELECT i.id FROM images i WHERE (CAST(:c AS text) IS NULL OR i.collection = :c) "
            "AND ST_Intersects(i.footprint, (SELECT ST_SetSRID(ST_Extent(geom_4326), 4326) "
            "FROM parcels WHERE dataset_id = :d))"), {"c": collection, "d": dataset_id}
        ).scalars().all()
        return ensure_pending(conn, dataset_id, ids)


def _spatial_partitions(dataset_id: int, url: str) -> tuple[gpd.GeoDataFrame, gpd.GeoSeries]:
    """Return the dataset's parcels, spatially shuffled (dask-geopandas), and partition hulls."""
    import dask_geopandas

    with get_engine(url).connect() as conn:
        srid = conn.execute(sa.text("SELECT srid FROM datasets WHERE id = :d"),
                            {"d": dataset_id}).scalar_one()
        parcels = gpd.read_postgis(
            sa.text("SELECT pid, geom FROM parcels WHERE dataset_id = :d ORDER BY pid"),
            conn, params={"d": dataset_id}, geom_col="geom", crs=f"EPSG:{srid}",
        ).rename_geometry("geometry")
    size = int(config.get("extract.partition-parcels", 20_000))
    npartitions = max(1, -(-len(parcels) // size))
    shuffled = dask_geopandas.from_geopandas(parcels, npartitions=npartitions).spatial_shuffle()
    frame = shuffled.compute(scheduler="synchronous")
    part = np.repeat(np.arange(shuffled.npartitions),
                     shuffled.map_partitions(len).compute(scheduler="synchronous").to_numpy())
    frame = frame.assign(partition=part)
    hulls = frame.dissolve("partition").convex_hull.to_crs(4326)
    return frame, hulls


def extract(
    datasets: Sequence[str],
    *,
    collection: str | None = None,
    cluster: str = "local",
    workers: int | None = None,
    client: Any = None,
    retry_failed: bool = False,
    buffer: float | None = None,
    url: str | None = None,
    on_progress: Callable[[UnitResult, int, int], None] | None = None,
) -> ExtractionReport:
    """Extract every catalogued, not yet extracted image of the datasets, oldest first.

    Parameters
    ----------
    datasets
        Dataset names.
    collection
        Only images of this collection.
    cluster, workers
        Where to run (see :func:`connect_cluster`); ignored when ``client`` is given.
    client
        An existing ``distributed.Client`` (e.g. a notebook's gateway cluster).
    retry_failed
        Queue images that failed before again.
    buffer
        Parcel buffer in metres (default ``cbm.extract.buffer``).
    on_progress
        Called as ``on_progress(result, done, total)`` after each unit.

    Returns
    -------
    ExtractionReport
    """
    from distributed import as_completed

    from cbm_dask.catalogue import read_images
    from cbm_dask.load.gdal_env import capture_gdal_env

    started = time.perf_counter()
    target = url or database_url()
    ids = _dataset_ids(datasets, target)
    buffer = float(config.get("extract.buffer", 0.0) if buffer is None else buffer)
    for dataset_id in ids.values():
        if retry_failed:
            reset_failed(dataset_id, url=target)
        queue_images(dataset_id, collection=collection, url=target)
    env = capture_gdal_env()
    results: list[UnitResult] = []
    name_of = {v: k for k, v in ids.items()}

    def parcels_for(unit: Unit, record: Any) -> bytes:
        frame, hulls = partitions[unit.dataset_id]
        near = hulls.index[hulls.intersects(record.footprint)]
        subset = frame[frame["partition"].isin(near)]
        return _pack_parcels(subset)

    with ExtractionQueue(list(ids.values()), collection=collection, url=target) as queue:
        total = queue.remaining()
        if total == 0:
            return ExtractionReport(tuple(datasets), 0, 0, 0, time.perf_counter() - started)
        partitions = {d: _spatial_partitions(d, target) for d in ids.values()}
        with _client(client, cluster, workers) as dask_client:
            in_flight = 2 * max(1, len(dask_client.scheduler_info().get("workers", {})) or 1)
            pending = as_completed()

            def submit(n: int) -> int:
                units = queue.claim(n)
                if not units:
                    return 0
                records = {r.image_id: r for r in read_images([u.image_id for u in units],
                                                              url=target)}
                for unit in units:
                    record = records[unit.image_id]
                    pending.add(dask_client.submit(
                        extract_unit, unit, record, parcels_for(unit, record), url=target,
                        gdal_env=env, buffer=buffer, pure=False,
                        key=f"extract-{unit.dataset_id}-{unit.image_id}-{unit.attempts}",
                    ))
                return len(units)

            submit(in_flight)
            for future in pending:
                result: UnitResult = future.result()
                queue.release(result.unit)
                results.append(result)
                if on_progress is not None:
                    on_progress(result, len(results), total)
                submit(1)
    failures = tuple(
        (f"{name_of[r.unit.dataset_id]}:{r.unit.item_id}", r.error or "")
        for r in results if r.error
    )
    return ExtractionReport(
        datasets=tuple(datasets),
        extracted=sum(1 for r in results if r.error is None),
        failed=len(failures),
        rows=sum(r.rows for r in results),
        seconds=time.perf_counter() - started,
        failures=failures,
    )


@contextmanager
def _client(client: Any, cluster: str, workers: int | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with connect_cluster(cluster, workers) as made:
        yield made

