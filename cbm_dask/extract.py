"""Batch extraction: catalogued images → lazy cubes → per-parcel signatures in PostGIS.

The driver (``cbm extract`` or :func:`extract` in a notebook) claims units of
work — one image for one dataset — from the database queue, oldest image first,
and submits one Dask task per unit.  Each task loads its image as a cube on the
image's native grids, rasterises the dataset's parcels once per grid (cached in
the worker), reduces every band, counts SCL classes, and writes everything in
one transaction (:func:`cbm_dask.store.queue.write_image_result`).  Any
number of drivers on any number of machines can work on the same database.

Failure model (docs/decisions/0006-extraction-queue.md): every write and failure
mark is fenced by the attempt number the unit was claimed with, so a late task
of a dead driver changes nothing; a unit whose task kills workers is tried again
as a new attempt, and marked ``failed`` after ``cbm.extract.max-attempts``; a
driver that dies loses its database session, which releases its claims, and the
next run picks them up; a lost queue connection is reopened and the claims
re-taken; an image that cannot be read is marked ``failed`` with the reason and
the run goes on.  All SQL lives in :mod:`cbm_dask.store.queue`.
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
import shapely

from cbm_dask import config
from cbm_dask.errors import InputError
from cbm_dask.store.engine import database_url
from cbm_dask.store.queue import (
    ExtractionQueue,
    Unit,
    dataset_ids,
    dataset_parcels,
    mark_failed,
    max_attempts,
    queue_images,
    reset_failed,
    write_image_result,
)
from cbm_dask.store.signatures import STATISTICS

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
    """Outcome of one unit of work.

    ``superseded`` is true when the result or failure was not recorded because
    the unit had been claimed again (or finished) by another attempt.
    """

    unit: Unit
    rows: int
    seconds: float
    error: str | None = None
    superseded: bool = False


@dataclass(frozen=True)
class ExtractionReport:
    """What an extraction run did."""

    datasets: tuple[str, ...]
    extracted: int
    failed: int
    rows: int
    seconds: float
    failures: tuple[tuple[str, str], ...] = field(default=())
    superseded: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "datasets": list(self.datasets), "extracted": self.extracted, "failed": self.failed,
            "rows": self.rows, "seconds": round(self.seconds, 2),
            "failures": [{"item_id": i, "error": e} for i, e in self.failures],
            "superseded": self.superseded,
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


def _parcels_area(blob: bytes) -> Any:
    """Return the packed parcels' bounding box (odc-geo Geometry) from the GeoParquet footer.

    Cutting the cube needs only the extent: decoding every geometry for it costs
    more than reading the footer.  Falls back to the parcels when the footer has no
    bounding box (or no parcel).
    """
    import io
    import json

    import pyarrow.parquet as pq
    from odc.geo.geom import box
    from pyproj import CRS

    meta = pq.read_metadata(io.BytesIO(blob))
    geo = json.loads((meta.metadata or {}).get(b"geo", b"{}"))
    column = geo.get("columns", {}).get(geo.get("primary_column"), {})
    bbox, crs = column.get("bbox"), column.get("crs")
    if meta.num_rows == 0 or not bbox or len(bbox) != 4 or not crs or np.isnan(bbox).any():
        return _unpack_parcels(blob)
    west, south, east, north = (float(v) for v in bbox)
    return box(west, south, east, north,
               CRS.from_json_dict(crs) if isinstance(crs, dict) else CRS(crs))


class _Stages:
    """Seconds spent per stage of one unit: logged, and read by the extraction benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def __str__(self) -> str:
        return ", ".join(f"{name} {value:.2f} s" for name, value in self.seconds.items())


def _materialise(group: Any) -> Any:
    """Compute a lazy cube group (its variables and lazy coordinates) into memory, one graph.

    Unlike ``Dataset.compute``, a single-chunk band is not copied once more after
    it is computed (Dask's safety copy costs a pass over every band); shared inputs
    (the SCL read for the bands and for the ``invalid`` mask) are read once.
    """
    import dask.array as da

    lazy = {name: group[name].data for name in (*group.data_vars, *group.coords)
            if isinstance(group[name].data, da.Array)}
    if not lazy:
        return group
    names = list(lazy)
    arrays = dask.optimize(*lazy.values())
    blocks = dask.compute(*[array.to_delayed(optimize_graph=False).tolist()
                            for array in arrays])
    computed = {}
    for name, nested in zip(names, blocks, strict=True):
        single = nested
        while isinstance(single, list) and len(single) == 1:
            single = single[0]
        computed[name] = single if isinstance(single, np.ndarray) else np.block(nested)
    coords = {name: (group[name].dims, computed[name]) for name in names
              if name in group.coords}
    data = {name: (group[name].values if name not in computed else computed[name])
            for name in group.data_vars}
    return group.copy(data=data).assign_coords(coords)


def _reduce_group(group: Any, parcels_blob: bytes, key: tuple[Any, ...], buffer: float,
                  stages: _Stages | None = None,
                  ) -> tuple[list[pd.DataFrame], pd.DataFrame | None]:
    from cbm_dask.reduce import grid_of, scl_histogram, zonal_stats

    stage = stages if stages is not None else _Stages()
    grid = grid_of(group)
    grid_key = (*key, tuple(grid.transform), grid.shape, str(grid.crs))
    with stage("labels"):
        labels = _labels(grid_key, parcels_blob, grid, buffer)
    bands = [name for name in group.data_vars if name != "SCL"]
    frames = []
    if bands:
        # stored values with the SCL mask beside them: the statistics come out decoded
        mask = group.coords.get("invalid")
        with stage("reduce"):
            stats = zonal_stats(group[bands], labels, stats=("count", *STATISTICS), mask=mask)
            frames.append(stats.drop(columns=[c for c in stats.columns if c == "time"]))
    histograms = None
    if "SCL" in group.data_vars:
        with stage("scl"):
            long = scl_histogram(group["SCL"], labels, layout="long")
        if len(long):
            # the long counts as they are: the store gathers them per parcel in bulk
            histograms = long[["pid", "class", "count"]]
    return frames, histograms


def _reduce_image(record: Any, parcels_blob: bytes, dataset_id: int, *, gdal_env: Any = None,
                  buffer: float = 0.0, stages: _Stages | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One image's signature rows (long frame) and SCL counts, as :func:`extract_unit` writes."""
    from cbm_dask.load.cube import load_cube

    stage = stages if stages is not None else _Stages()
    # The task is the unit of parallelism: no nested Dask or kernel threads.
    with dask.config.set({"scheduler": "synchronous", "cbm.reduce.threads": 1}):
        with stage("graph"):
            cube = load_cube([record], parcels=_parcels_area(parcels_blob), groupby="item",
                             gdal_env=gdal_env, chunks={"time": 1, "y": 100_000, "x": 100_000},
                             decode=False)
        frames: list[pd.DataFrame] = []
        histograms = None
        for group in cube.groups.values():
            with stage("read"):
                values = _materialise(group)
            group_frames, group_hist = _reduce_group(values, parcels_blob, (dataset_id,),
                                                     buffer, stage)
            frames += group_frames
            histograms = group_hist if group_hist is not None else histograms
    with stage("frame"):
        signatures = pd.concat(frames, ignore_index=True)
        # map each distinct band once, not each row
        codes, names = pd.factorize(signatures["band"], sort=False)
        stored = np.array([signature_band(str(name)) for name in names], dtype=object)
        signatures["band"] = stored[codes]
    return signatures, histograms


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
    started = time.perf_counter()
    stages = _Stages()
    try:
        signatures, histograms = _reduce_image(record, parcels_blob, unit.dataset_id,
                                               gdal_env=gdal_env, buffer=buffer, stages=stages)
        with stages("write"):
            rows = write_image_result(unit, signatures, histograms, url=url)
        log.debug("extracted %s: %s", record.item_id, stages)
        return UnitResult(unit, rows or 0, time.perf_counter() - started,
                          superseded=rows is None)
    except Exception as exc:  # recorded per image; the run goes on
        reason = _reason(exc)
        log.warning("extraction of %s failed: %s", record.item_id, reason)
        recorded = mark_failed(unit, reason, url=url)
        return UnitResult(unit, 0, time.perf_counter() - started, error=reason,
                          superseded=not recorded)


def _reason(exc: BaseException) -> str:
    """``ExceptionType: first line of the message``: the reason recorded for a failure."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# -- the driver side -------------------------------------------------------------


#: glibc's own malloc thresholds in local workers.  distributed pins the trim threshold
#: to 64 KiB, which also freezes the mmap threshold at 128 KiB: every mid-sized buffer
#: of a task is then a fresh mapping, and an image costs ~200k page faults (+0.7 s for a
#: Sentinel-2 quarter tile) instead of ~20k.  Large arrays are mapped and returned either
#: way, so the resident memory between tasks stays small.
_WORKER_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextmanager
def connect_cluster(cluster: str = "local", workers: int | None = None) -> Iterator[Any]:
    """Yield a distributed Client: ``local``, ``tcp://host:port`` or ``gateway``.

    ``local`` starts a LocalCluster of ``workers`` single-threaded processes on
    127.0.0.1; ``gateway`` asks the configured dask-gateway for a cluster with
    ``workers`` workers; an address connects to a running scheduler.

    The local cluster's scheduler does not re-run a task whose worker died
    (``distributed.scheduler.allowed-failures: 0``): the driver starts a new
    attempt of the unit instead, so worker deaths are counted per unit in the
    database, across drivers, against ``cbm.extract.max-attempts``.  Workers get
    one task at a time (``worker-saturation: 1.0``), so a death is charged to
    the unit that was running only, not to one queued behind it.  Other
    schedulers keep their own settings (each ``KilledWorker`` is one attempt).
    """
    from distributed import Client, LocalCluster

    if cluster == "local":
        n = workers or int(config.get("extract.workers", 2))
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.scheduler.worker-saturation": 1.0,
                              **_WORKER_MALLOC}), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
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
        raise InputError(
            f"cluster={cluster!r}: use 'local', 'gateway' or a scheduler address "
            "'tcp://HOST:PORT'", parameter="cluster",
        )


def _spatial_partitions(dataset_id: int, url: str) -> tuple[gpd.GeoDataFrame, gpd.GeoSeries]:
    """Return the dataset's parcels, spatially shuffled (dask-geopandas), and partition hulls."""
    import dask_geopandas

    parcels = dataset_parcels(dataset_id, url=url)
    size = int(config.get("extract.partition-parcels", 20_000))
    npartitions = max(1, -(-len(parcels) // size))
    # In this process, whatever client is active: with a distributed client dask
    # would pick its peer-to-peer shuffle, which needs the scheduler's workers.
    with dask.config.set({"dataframe.shuffle.method": "tasks", "scheduler": "synchronous"}):
        shuffled = dask_geopandas.from_geopandas(parcels,
                                                 npartitions=npartitions).spatial_shuffle()
        frame = shuffled.compute()
        part = np.repeat(np.arange(shuffled.npartitions),
                         shuffled.map_partitions(len).compute().to_numpy())
    frame = frame.assign(partition=part)
    # the hull of each partition's vertices: no union of the polygons needed
    hulls = gpd.GeoSeries(
        [shapely.convex_hull(shapely.multipoints(shapely.get_coordinates(group.to_numpy())))
         for _, group in frame.geometry.groupby(frame["partition"], sort=True)],
        index=np.unique(part), crs=frame.crs,
    ).to_crs(4326)
    hulls.index.name = "partition"
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
        Queue images that failed before again (at zero attempts).
    buffer
        Parcel buffer in metres (default ``cbm.extract.buffer``).
    on_progress
        Called as ``on_progress(result, done, total)`` after each unit.

    Returns
    -------
    ExtractionReport
    """
    from cbm_dask.catalogue import read_images

    started = time.perf_counter()
    target = url or database_url()
    ids = dataset_ids(datasets, url=target)
    buffer = float(config.get("extract.buffer", 0.0) if buffer is None else buffer)
    for dataset_id in ids.values():
        if retry_failed:
            reset_failed(dataset_id, url=target)
        queue_images(dataset_id, collection=collection, url=target)
    results: list[UnitResult] = []
    name_of = {v: k for k, v in ids.items()}

    with ExtractionQueue(list(ids.values()), collection=collection, url=target) as queue:
        queue.fail_exhausted()
        total = queue.remaining()
        if total:
            with _client(client, cluster, workers) as dask_client:
                _drive(queue, dask_client, target, buffer, read_images, results,
                       on_progress, total)
        exhausted = list(queue.exhausted)
    failures = tuple(
        (f"{name_of[r.unit.dataset_id]}:{r.unit.item_id}", r.error or "")
        for r in results if r.error and not r.superseded
    ) + tuple((f"{name_of[e.dataset_id]}:{e.item_id}", e.error) for e in exhausted)
    return ExtractionReport(
        datasets=tuple(datasets),
        extracted=sum(1 for r in results if r.error is None and not r.superseded),
        failed=len(failures),
        rows=sum(r.rows for r in results),
        seconds=time.perf_counter() - started,
        failures=failures,
        superseded=sum(1 for r in results if r.superseded),
    )


def _drive(queue: ExtractionQueue, dask_client: Any, target: str, buffer: float,
           read_images: Callable[..., Any], results: list[UnitResult],
           on_progress: Callable[[UnitResult, int, int], None] | None, total: int) -> None:
    """Keep the cluster busy with claimed units until none are left; collect results."""
    from distributed import KilledWorker, as_completed

    from cbm_dask.load.gdal_env import capture_gdal_env

    env = capture_gdal_env()
    partitions = {d: _spatial_partitions(d, target) for d in queue.dataset_ids}
    in_flight = 2 * max(1, len(dask_client.scheduler_info().get("workers", {})) or 1)
    pending = as_completed()
    #: future key -> (unit as submitted, its catalogue record)
    submitted: dict[str, tuple[Unit, Any]] = {}
    kills: dict[tuple[int, int], int] = {}

    def submit_unit(unit: Unit, record: Any) -> None:
        frame, hulls = partitions[unit.dataset_id]
        near = hulls.index[hulls.intersects(record.footprint)]
        key = f"extract-{unit.dataset_id}-{unit.image_id}-{unit.attempts}"
        submitted[key] = (unit, record)
        pending.add(dask_client.submit(
            extract_unit, unit, record, _pack_parcels(frame[frame["partition"].isin(near)]),
            url=target, gdal_env=env, buffer=buffer, pure=False, key=key,
        ))

    def submit(n: int) -> None:
        units = queue.claim(n)
        if units:
            records = {r.image_id: r for r in read_images([u.image_id for u in units],
                                                          url=target)}
            for unit in units:
                submit_unit(unit, records[unit.image_id])

    cap = max_attempts()
    submit(in_flight)
    for future in pending:
        unit, record = submitted.pop(future.key)
        # A cheap round trip per result notices a lost connection while claims can
        # still be re-taken (the alternative is noticing at the next claim).
        for lost in queue.check():
            log.warning("%s: claim lost while the queue connection was down; its result "
                        "is fenced off", lost.item_id)
        try:
            result: UnitResult = future.result()
        except KilledWorker as exc:
            key = (unit.dataset_id, unit.image_id)
            kills[key] = kills.get(key, 0) + 1
            note = f"killed workers {kills[key]} times"
            if unit.attempts < cap:
                again = queue.retry(unit, f"{note} (attempt {unit.attempts})")
                if again is not None:
                    log.warning("%s %s; starting attempt %d of %d", unit.item_id, note,
                                again.attempts, cap)
                    submit_unit(again, record)
                    continue
                result = UnitResult(unit, 0, 0.0, error=note, superseded=True)
            else:
                reason = (note + ("" if kills[key] == unit.attempts
                                  else f" ({unit.attempts} attempts)") + f": {_reason(exc)}")
                recorded = mark_failed(unit, reason, url=target)
                result = UnitResult(unit, 0, 0.0, error=reason, superseded=not recorded)
        except Exception as exc:  # a task that could not run at all: that unit only
            reason = _reason(exc)
            recorded = mark_failed(unit, reason, url=target)
            result = UnitResult(unit, 0, 0.0, error=reason, superseded=not recorded)
        # The result's unit may be an earlier attempt's (a re-run); release by key.
        queue.release(unit)
        results.append(result)
        if on_progress is not None:
            on_progress(result, len(results), total)
        submit(1)


@contextmanager
def _client(client: Any, cluster: str, workers: int | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with connect_cluster(cluster, workers) as made:
        yield made

