"""Build a synthetic world on disk (the I/O side; the models live in the sibling modules).

Layout of a world directory (a contract other commands rely on)::

    DIR/world.json                                   parameters, grid, counts, dates
    DIR/parcels.gpkg                                 layer "parcels" (declared parcels)
    DIR/truth/parcels.parquet                        actual crop, violation flag and kind
    DIR/truth/events.parquet                         parcel_id, event, date
    DIR/truth/acquisitions.parquet                   every item with its date and sky
    DIR/stac/collections/<collection_id>.json
    DIR/stac/items/<collection_id>/<item_id>.json    asset hrefs relative to the item file
    DIR/cogs/<collection_id>/<item_id>/<asset_key>.tif
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from numpy.typing import NDArray
from rasterio.crs import CRS

from cbm_dask.errors import InputError
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A
from cbm_dask.world import _clouds as clouds_mod
from cbm_dask.world import _sentinel1 as sentinel1
from cbm_dask.world import _sentinel2 as sentinel2
from cbm_dask.world import _stac as stac
from cbm_dask.world._grid import WorldGrid, sun_position
from cbm_dask.world._layout import BUILT, FIELD0, Layout, generate_layout, rasterize_labels
from cbm_dask.world._noise import derive_rng, fractal_noise
from cbm_dask.world._phenology import (
    CROPS,
    CanopyState,
    Plan,
    Weather,
    doy_to_date,
    forest_green,
    grass_potential,
    plan_fields,
    simulate,
    weather,
)
from cbm_dask.world.params import WorldParams, WorldSummary

__all__ = ["ProgressCallback", "build_world", "read_world"]

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: layout, sentinel-2, sentinel-1, coherence, done.
ProgressCallback = Callable[[str, int, int], None]

FORMAT = "cbm-world/1"
_OUTPUTS = ("world.json", "parcels.gpkg", "truth", "stac", "cogs")
_S1_FIRST_DAY = 2


@dataclass(frozen=True)
class _Acquisition:
    index: int
    when: dt.datetime
    doy: int
    platform: str
    item_id: str


def _season_day(year: int, day: dt.date) -> int:
    return (day - dt.date(year, 1, 1)).days + 1


def _s2_schedule(params: WorldParams, grid: WorldGrid) -> list[_Acquisition]:
    lon, _ = grid.centre_lonlat()
    utc = dt.timedelta(hours=11, minutes=10) - dt.timedelta(hours=lon / 15.0)
    out: list[_Acquisition] = []
    day = params.start
    i = 0
    while day <= params.end:
        when = dt.datetime.combine(day, dt.time(), dt.UTC) + utc + dt.timedelta(
            seconds=(i * 7) % 13)
        when = when.replace(microsecond=(i * 137_000) % 1_000_000)
        platform = "sentinel-2a" if i % 2 == 0 else "sentinel-2b"
        item_id = stac.s2_item_id(platform, grid.tile.tile_id, when)
        out.append(_Acquisition(i, when, _season_day(params.start.year, day), platform, item_id))
        day += dt.timedelta(days=params.s2_revisit_days)
        i += 1
    return out


def _s1_platforms(year: int) -> tuple[str, str]:
    return ("sentinel-1a", "sentinel-1b" if year < 2022 else "sentinel-1c")


def _absolute_orbit(platform: str, when: dt.datetime, relative: int) -> int:
    """Absolute orbit with the given relative orbit nearest to the expected count."""
    # Reference: S1A absolute orbit 60328 is relative orbit 56 (2025-07-31T13:56Z).
    reference = dt.datetime(2025, 7, 31, 13, 56, tzinfo=dt.UTC)
    approx = 60328 + (when - reference).total_seconds() / 86400.0 * 175.0 / 12.0
    shift = 72 if platform == "sentinel-1a" else 27
    k = round((approx - relative - shift) / 175.0)
    return max(1, relative + shift + 175 * k)


def _s1_schedule(params: WorldParams, grid: WorldGrid, relative: int) -> list[_Acquisition]:
    lon, _ = grid.centre_lonlat()
    utc = dt.timedelta(hours=17, minutes=45) - dt.timedelta(hours=lon / 15.0)
    platforms = _s1_platforms(params.start.year)
    out: list[_Acquisition] = []
    day = params.start + dt.timedelta(days=_S1_FIRST_DAY)
    i = 0
    while day <= params.end:
        when = dt.datetime.combine(day, dt.time(), dt.UTC) + utc
        when = when.replace(second=(i * 11) % 60, microsecond=0)
        platform = platforms[i % 2]
        orbit = _absolute_orbit(platform, when, relative)
        item_id = stac.s1_item_id(platform, when, orbit)
        out.append(_Acquisition(i, when, _season_day(params.start.year, day), platform, item_id))
        day += dt.timedelta(days=params.s1_revisit_days)
        i += 1
    return out


def _write_cog(path: Path, array: NDArray[Any], grid: WorldGrid, resolution: int,
               nodata: float, params: WorldParams, resampling: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = array.shape
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=cols,
        height=rows,
        count=1,
        dtype=array.dtype.name,
        crs=CRS.from_epsg(grid.epsg),
        transform=grid.transform(resolution),
        nodata=nodata,
        compress="DEFLATE",
        level=1,
        predictor="YES",
        blocksize=params.blocksize,
        overviews="AUTO" if params.overviews else "NONE",
        overview_resampling=resampling,
        num_threads=1,
    ) as dst:
        dst.write(array, 1)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _relative(target: Path, start_dir: Path) -> str:
    return Path(os.path.relpath(target, start_dir)).as_posix()


class _World:
    """State shared by the acquisition tasks of one build."""

    def __init__(self, root: Path, params: WorldParams) -> None:
        self.root = root
        self.params = params
        self.grid = WorldGrid.for_params(params.tile, params.size, params.offset_px)
        self.year = params.start.year
        self.relative_orbit_s2 = 51 if self.grid.tile.tile_id == "31UFS" else (
            self.grid.tile.zone * 23) % 143 + 1
        self.relative_orbit_s1 = 88 if self.grid.tile.tile_id == "31UFS" else (
            self.grid.tile.zone * 29) % 175 + 1

    # -- layout and truth ------------------------------------------------------------
    def prepare(self) -> None:
        p = self.params
        self.layout: Layout = generate_layout(self.grid, p.parcels, p.seed)
        self.plan: Plan = plan_fields(self.layout.declared, p.seed, p.start, p.end,
                                      p.violation_share)
        self.s2 = _s2_schedule(p, self.grid)
        self.s1 = _s1_schedule(p, self.grid, self.relative_orbit_s1)
        days = sorted({a.doy for a in self.s2} | {a.doy for a in self.s1})
        self.state: CanopyState = simulate(self.plan, days)
        self.day_index = {d: i for i, d in enumerate(days)}
        last = _season_day(self.year, p.end) + 1
        self.weather: Weather = weather(p.seed, last + 1)
        self.sky = clouds_mod.plan_sky(p.seed, len(self.s2), p.cloud_share)
        self.labels10 = rasterize_labels(self.layout, self.grid, 10)
        self.labels20 = rasterize_labels(self.layout, self.grid, 20)
        self.labels_s1 = self.labels20 if p.s1_resolution == 20 else self.labels10
        shape10 = self.grid.shape(10)
        shape20 = self.grid.shape(20)
        rng = derive_rng(p.seed, "textures")
        vigour = fractal_noise(shape10, 8.0, rng, octaves=3)
        vigour *= np.float32(0.06)
        vigour += np.float32(1.0)
        vigour += rng.standard_normal(shape10, dtype=np.float32) * np.float32(0.025)
        self.vigour = vigour
        soil = fractal_noise(shape10, 25.0, rng, octaves=3)
        soil *= np.float32(0.08)
        soil += np.float32(1.0)
        self.soil_texture = soil
        cloud_tex = fractal_noise(shape20, 20.0, rng, octaves=3)
        cloud_tex *= np.float32(0.08)
        cloud_tex += np.float32(1.0)
        self.cloud_texture = cloud_tex
        self.noise_bank = sentinel2.noise_bank(p.seed, shape10)
        shape_s1 = self.labels_s1.shape
        s1_tex = np.exp(rng.standard_normal(shape_s1, dtype=np.float32) * np.float32(0.15)
                        + np.where(self.labels_s1 == BUILT, 0.9, 0.0).astype(np.float32)
                        * rng.standard_normal(shape_s1, dtype=np.float32))
        self.s1_texture = s1_tex.astype(np.float32)
        coh_tex = fractal_noise(shape_s1, 10.0, rng, octaves=2)
        coh_tex *= np.float32(0.06)
        coh_tex += np.float32(1.0)
        self.coh_texture = coh_tex
        self.lonlat = self.grid.centre_lonlat()

    def declared_index(self) -> NDArray[np.intp]:
        return np.flatnonzero(self.layout.declared)

    def parcel_ids(self) -> list[str]:
        tile = self.grid.tile.tile_id
        return [f"{tile}-{i + 1:06d}" for i in range(int(self.layout.declared.sum()))]

    def _date(self, doy: int) -> str:
        return doy_to_date(self.year, doy).isoformat() if doy > 0 else ""

    def write_parcels(self) -> None:
        idx = self.declared_index()
        plan = self.plan
        codes = plan.declared_code[idx]
        frame = gpd.GeoDataFrame(
            {
                "parcel_id": self.parcel_ids(),
                "crop_code": codes.astype(str),
                "crop_name": [CROPS[c].name for c in codes],
                "scheme": plan.scheme[idx].astype(str),
                "practice": plan.practice[idx].astype(str),
                "practice_start": [self._date(int(d)) for d in plan.window_start[idx]],
                "practice_end": [self._date(int(d)) for d in plan.window_end[idx]],
                "area_ha": np.round(shapely.area(self.layout.fields[idx]) / 1e4, 4),
            },
            geometry=gpd.GeoSeries(self.layout.fields[idx], crs=f"EPSG:{self.grid.epsg}"),
        )
        frame.to_file(self.root / "parcels.gpkg", layer="parcels", driver="GPKG",
                      engine="pyogrio")

    def write_truth(self) -> tuple[int, int]:
        idx = self.declared_index()
        plan = self.plan
        ids = self.parcel_ids()
        pixels = np.bincount(self.labels10.ravel(), minlength=FIELD0 + self.layout.n_fields)
        kinds = plan.violation_kind[idx]
        window = [(doy_to_date(self.year, int(s)) if s > 0 else None,
                   doy_to_date(self.year, int(e)) if e > 0 else None)
                  for s, e in zip(plan.window_start[idx], plan.window_end[idx], strict=True)]
        parcels = pa.table({
            "parcel_id": pa.array(ids, pa.string()),
            "declared_crop_code": pa.array(plan.declared_code[idx].tolist(), pa.string()),
            "declared_crop_name": pa.array([CROPS[c].name for c in plan.declared_code[idx]],
                                           pa.string()),
            "scheme": pa.array(plan.scheme[idx].tolist(), pa.string()),
            "practice": pa.array(plan.practice[idx].tolist(), pa.string()),
            "practice_start": pa.array([w[0] for w in window], pa.date32()),
            "practice_end": pa.array([w[1] for w in window], pa.date32()),
            "actual_crop_code": pa.array(plan.actual_code[idx].tolist(), pa.string()),
            "actual_crop_name": pa.array([CROPS[c].name for c in plan.actual_code[idx]],
                                         pa.string()),
            "violation": pa.array(plan.violation[idx].tolist(), pa.bool_()),
            "violation_kind": pa.array([k or None for k in kinds.tolist()], pa.string()),
            "area_ha": pa.array(np.round(shapely.area(self.layout.fields[idx]) / 1e4, 4),
                                pa.float64()),
            "pixels_10m": pa.array(pixels[FIELD0 + idx], pa.int32()),
        })
        first = _season_day(self.year, self.params.start)
        last = _season_day(self.year, self.params.end)
        rows = plan.event_table(idx, first, last)
        position = {int(f): i for i, f in enumerate(idx)}
        events = pa.table({
            "parcel_id": pa.array([ids[position[r[0]]] for r in rows], pa.string()),
            "event": pa.array([r[1] for r in rows], pa.string()),
            "date": pa.array([doy_to_date(self.year, r[2]) for r in rows], pa.date32()),
        })
        truth = self.root / "truth"
        truth.mkdir(parents=True, exist_ok=True)
        pq.write_table(parcels, truth / "parcels.parquet")
        pq.write_table(events, truth / "events.parquet")
        return int(plan.violation[idx].sum()), len(rows)

    # -- Sentinel-2 ------------------------------------------------------------------
    def _cog_path(self, collection_id: str, item_id: str, key: str) -> Path:
        return self.root / "cogs" / collection_id / item_id / f"{key}.tif"

    def _item_path(self, collection_id: str, item_id: str) -> Path:
        return self.root / "stac" / "items" / collection_id / f"{item_id}.json"

    def _hrefs(self, collection_id: str, item_id: str, keys: Iterable[str]) -> dict[str, str]:
        item_dir = self._item_path(collection_id, item_id).parent
        return {k: _relative(self._cog_path(collection_id, item_id, k), item_dir) for k in keys}

    def s2_task(self, acq: _Acquisition) -> dict[str, Any]:
        p = self.params
        i = self.day_index[acq.doy]
        st = self.state
        mixture = sentinel2.label_mixture(
            st.green[i], st.dry[i], st.rough[i], self.weather.at(acq.doy),
            forest_green(acq.doy), grass_potential(acq.doy))
        azimuth, elevation = sun_position(acq.when, *self.lonlat)
        sky = self.sky
        field = clouds_mod.cloud_field(p.seed, acq.index, self.grid.shape(20),
                                       sky.cover[acq.index], sky.cirrus[acq.index],
                                       azimuth, elevation)
        scene = sentinel2.synthesize_s2(p.seed, acq.index, self.labels10, self.labels20,
                                        self.vigour, self.soil_texture, mixture, field,
                                        self.cloud_texture, self.noise_bank)
        for band in sentinel2.BANDS:
            _write_cog(self._cog_path(S2_L2A, acq.item_id, band.key), scene.dn[band.key],
                       self.grid, band.resolution, 0, p, "AVERAGE")
        _write_cog(self._cog_path(S2_L2A, acq.item_id, "scl"), scene.scl, self.grid, 20, 0, p,
                   "NEAREST")
        percent = scene.scl_percentages()
        item = stac.s2_item(
            grid=self.grid, when=acq.when, platform=acq.platform,
            relative_orbit=self.relative_orbit_s2,
            hrefs=self._hrefs(S2_L2A, acq.item_id, stac.S2_ASSETS),
            scl_percent=percent, sun_azimuth=azimuth, sun_elevation=elevation)
        _write_json(self._item_path(S2_L2A, acq.item_id), item)
        invalid = sum(percent[c] for c in (3, 8, 9, 10))
        return {
            "collection": S2_L2A, "item_id": acq.item_id, "datetime": acq.when,
            "sky": sky.kind[acq.index], "cloud_cover": item["properties"]["eo:cloud_cover"],
            "invalid_percent": round(invalid, 6),
        }

    # -- Sentinel-1 ------------------------------------------------------------------
    def _s1_state(self, doy: int) -> tuple[NDArray[np.float32], ...]:
        i = self.day_index[doy]
        st = self.state
        return st.green[i], st.standing[i], st.rough[i]

    def s1_task(self, acq: _Acquisition) -> dict[str, Any]:
        p = self.params
        green, standing, rough = self._s1_state(acq.doy)
        wind = float(derive_rng(p.seed, "wind", acq.index).uniform(-3.0, 5.0))
        lut = sentinel1.backscatter_lut(green, standing, rough, self.weather.at(acq.doy),
                                        forest_green(acq.doy), grass_potential(acq.doy), wind)
        looks = 4.4 * (p.s1_resolution / 10.0) ** 2
        values = sentinel1.synthesize_backscatter(p.seed, acq.index, self.labels_s1, lut,
                                                  self.s1_texture, looks)
        for pol, array in values.items():
            _write_cog(self._cog_path(S1_BACKSCATTER, acq.item_id, pol), array, self.grid,
                       p.s1_resolution, math.nan, p, "AVERAGE")
        orbit = _absolute_orbit(acq.platform, acq.when, self.relative_orbit_s1)
        item = stac.s1_backscatter_item(
            grid=self.grid, start=acq.when, platform=acq.platform, absolute_orbit=orbit,
            relative_orbit=self.relative_orbit_s1, orbit_state="ascending",
            resolution=p.s1_resolution,
            hrefs=self._hrefs(S1_BACKSCATTER, acq.item_id, stac.S1_ASSETS))
        _write_json(self._item_path(S1_BACKSCATTER, acq.item_id), item)
        return {"collection": S1_BACKSCATTER, "item_id": acq.item_id, "datetime": acq.when,
                "sky": None, "cloud_cover": None, "invalid_percent": None}

    def coherence_task(self, pair: tuple[_Acquisition, _Acquisition]) -> dict[str, Any]:
        p = self.params
        ref, sec = pair
        _, s1_, r1 = self._s1_state(ref.doy)
        _, s2_, r2 = self._s1_state(sec.doy)
        events = self.plan.events

        def between(*names: str) -> NDArray[np.bool_]:
            hit = np.zeros(self.plan.n_fields, dtype=bool)
            for name in names:
                days = events[name]
                hit |= ((days > ref.doy) & (days <= sec.doy)).any(axis=1)
            return hit

        pair_events = sentinel1.PairEvents(
            tillage=between("ploughing", "sowing"), harvest=between("harvest"),
            mowing=between("mowing"))
        lut = sentinel1.coherence_lut(
            s1_, s2_, r1, r2, pair_events, self.weather.rain_between(ref.doy + 1, sec.doy),
            forest_green(sec.doy), grass_potential(sec.doy))
        looks = 25.0 * (p.s1_resolution / 20.0) ** 2
        coherence = sentinel1.synthesize_coherence(p.seed, sec.index, self.labels_s1, lut,
                                                   self.coh_texture, looks)
        item_id = stac.s1_coherence_item_id(sec.platform, ref.when, sec.when,
                                            self.relative_orbit_s1)
        _write_cog(self._cog_path(S1_COHERENCE, item_id, "coh_vv"), coherence, self.grid,
                   p.s1_resolution, math.nan, p, "AVERAGE")
        item = stac.s1_coherence_item(
            grid=self.grid, reference=ref.when, secondary=sec.when, platform=sec.platform,
            absolute_orbit=_absolute_orbit(sec.platform, sec.when, self.relative_orbit_s1),
            relative_orbit=self.relative_orbit_s1, orbit_state="ascending",
            resolution=p.s1_resolution,
            hrefs=self._hrefs(S1_COHERENCE, item_id, ["coh_vv"]))
        _write_json(self._item_path(S1_COHERENCE, item_id), item)
        return {"collection": S1_COHERENCE, "item_id": item_id, "datetime": sec.when,
                "sky": None, "cloud_cover": None, "invalid_percent": None}


def _clear_outputs(root: Path, overwrite: bool) -> None:
    present = [name for name in _OUTPUTS if (root / name).exists()]
    if not present:
        return
    if not overwrite:
        raise InputError(
            f"out={str(root)!r} already holds a world ({', '.join(present)}); choose "
            "another out= or pass overwrite=True",
            parameter=("out", "overwrite"),
        )
    for name in present:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()


def _run(tasks: list[Any], fn: Callable[[Any], dict[str, Any]], workers: int, stage: str,
         progress: ProgressCallback | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    done = 0

    def wrapped(task: Any) -> dict[str, Any]:
        nonlocal done
        result = fn(task)
        with lock:
            done += 1
            if progress is not None:
                progress(stage, done, len(tasks))
        return result

    if progress is not None:
        progress(stage, 0, len(tasks))
    if workers <= 1 or len(tasks) <= 1:
        results = [wrapped(t) for t in tasks]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cbm-world") as pool:
            results = list(pool.map(wrapped, tasks))
    return results


def _total_bytes(root: Path) -> int:
    return sum(f.stat().st_size for name in _OUTPUTS for f in
               ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
               if f.is_file())


def build_world(
    out: str | Path,
    params: WorldParams | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> WorldSummary:
    """Build a synthetic world into directory ``out``.

    Parameters
    ----------
    out
        Target directory (created; must not hold a world unless ``overwrite``).
    params
        World parameters; default :meth:`WorldParams.from_config`.
    overwrite
        Replace an existing world in ``out`` (only the world's own files are removed).
    progress
        Called as ``progress(stage, done, total)`` while building.

    Returns
    -------
    WorldSummary
        Paths, grid, counts, size on disk and wall time.

    Raises
    ------
    InputError
        When ``out`` already holds a world or a parameter cannot be used.
    """
    t0 = time.perf_counter()
    params = params if params is not None else WorldParams.from_config()
    root = Path(out).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    _clear_outputs(root, overwrite)
    world = _World(root, params)
    if progress is not None:
        progress("layout", 0, 1)
    world.prepare()
    world.write_parcels()
    violations, n_events = world.write_truth()
    log.info("layout: %d fields, %d parcels, %d violations, %d events",
             world.layout.n_fields, params.parcels, violations, n_events)
    if progress is not None:
        progress("layout", 1, 1)

    workers = max(1, params.workers)
    s2_rows = _run(world.s2, world.s2_task, workers, "sentinel-2", progress)
    s1_rows = _run(world.s1, world.s1_task, workers, "sentinel-1", progress)
    pairs = list(zip(world.s1[:-1], world.s1[1:], strict=True))
    coh_rows = _run(pairs, world.coherence_task, workers, "coherence", progress)

    rows = s2_rows + s1_rows + coh_rows
    acquisitions = pa.table({
        "collection": pa.array([r["collection"] for r in rows], pa.string()),
        "item_id": pa.array([r["item_id"] for r in rows], pa.string()),
        "datetime": pa.array([r["datetime"] for r in rows], pa.timestamp("us", tz="UTC")),
        "sky": pa.array([r["sky"] for r in rows], pa.string()),
        "cloud_cover": pa.array([r["cloud_cover"] for r in rows], pa.float64()),
        "invalid_percent": pa.array([r["invalid_percent"] for r in rows], pa.float64()),
    })
    pq.write_table(acquisitions, root / "truth" / "acquisitions.parquet")

    grid = world.grid
    span = (dt.datetime.combine(params.start, dt.time(), dt.UTC),
            dt.datetime.combine(params.end, dt.time(23, 59, 59), dt.UTC))
    platforms = {
        S2_L2A: ["sentinel-2a", "sentinel-2b"],
        S1_BACKSCATTER: list(_s1_platforms(params.start.year)),
        S1_COHERENCE: list(_s1_platforms(params.start.year)),
    }
    for cid in (S2_L2A, S1_BACKSCATTER, S1_COHERENCE):
        doc = stac.collection(cid, grid, span[0], span[1], params.s1_resolution, platforms[cid])
        _write_json(root / "stac" / "collections" / f"{cid}.json", doc)

    cloudy = sum(1 for r in s2_rows if r["sky"] != "clear")
    counts = {
        "parcels": params.parcels,
        "fields": world.layout.n_fields,
        "violations": violations,
        "events": n_events,
        "s2_items": len(s2_rows),
        "s1_items": len(s1_rows),
        "coherence_items": len(coh_rows),
        "cloudy_dates": cloudy,
        "overcast_dates": sum(1 for r in s2_rows if r["sky"] == "overcast"),
    }
    cloudy_share = cloudy / max(len(s2_rows), 1)
    doc = {
        "format": FORMAT,
        "params": params.as_dict(),
        "tile": grid.tile.tile_id,
        "epsg": grid.epsg,
        "bounds": list(grid.bounds),
        "bbox": list(grid.bbox_lonlat()),
        "offset_px": [grid.col_off, grid.row_off],
        "shape_10m": list(grid.shape(10)),
        "transform_10m": list(grid.transform(10))[:6],
        "collections": {
            S2_L2A: {"items": len(s2_rows), "assets": list(stac.S2_ASSETS),
                     "dates": [r["datetime"].date().isoformat() for r in s2_rows]},
            S1_BACKSCATTER: {"items": len(s1_rows), "assets": list(stac.S1_ASSETS),
                             "resolution": params.s1_resolution,
                             "dates": [r["datetime"].date().isoformat() for r in s1_rows]},
            S1_COHERENCE: {"items": len(coh_rows), "assets": ["coh_vv"],
                           "resolution": params.s1_resolution,
                           "dates": [r["datetime"].date().isoformat() for r in coh_rows]},
        },
        "counts": counts,
        "cloudy_share": round(cloudy_share, 6),
    }
    _write_json(root / "world.json", doc)
    if progress is not None:
        progress("done", 1, 1)
    summary = WorldSummary(
        root=root,
        params=params,
        tile=grid.tile.tile_id,
        epsg=grid.epsg,
        bounds=grid.bounds,
        bbox=grid.bbox_lonlat(),
        counts=counts,
        cloudy_share=cloudy_share,
        bytes=_total_bytes(root),
        seconds=time.perf_counter() - t0,
    )
    log.info("world built in %s: %.1f s, %.1f MB", root, summary.seconds, summary.bytes / 1e6)
    return summary


def read_world(directory: str | Path) -> WorldSummary:
    """Read ``world.json`` of a built world and return its summary (``seconds`` is 0).

    Raises
    ------
    InputError
        When the directory holds no world.
    """
    root = Path(directory).expanduser().absolute()
    meta = root / "world.json"
    if not meta.is_file():
        raise InputError(
            f"directory={str(root)!r} holds no world.json; build one there with build_world() "
            "or `cbm world build --out DIR`",
            parameter="directory",
        )
    doc = json.loads(meta.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise InputError(f"{meta} is not a {FORMAT} document; rebuild the world")
    values = dict(doc["params"])
    if values.get("offset_px") is not None:
        values["offset_px"] = tuple(values["offset_px"])
    params = WorldParams(**values)
    return WorldSummary(
        root=root,
        params=params,
        tile=doc["tile"],
        epsg=int(doc["epsg"]),
        bounds=(doc["bounds"][0], doc["bounds"][1], doc["bounds"][2], doc["bounds"][3]),
        bbox=(doc["bbox"][0], doc["bbox"][1], doc["bbox"][2], doc["bbox"][3]),
        counts={k: int(v) for k, v in doc["counts"].items()},
        cloudy_share=float(doc["cloudy_share"]),
        bytes=_total_bytes(root),
        seconds=0.0,
    )
