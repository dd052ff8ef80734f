"""Which pixel grids a cube has: one CRS, one group per pixel size, the images' own grid.

Pixels are never resampled to another size: :func:`band_resolutions` puts each
band in the group of its native pixel size, :func:`native_geobox` gives a group
the images' own grid cut to the area, and :func:`nearest_on` carries the SCL to
the groups of other pixel sizes by nearest pixel.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from shapely.geometry.base import BaseGeometry

from cbm_dask.errors import InputError
from cbm_dask.load._items import BandSource, ImagesLike, to_records
from cbm_dask.sentinel.records import ImageRecord

__all__ = [
    "AreaLike",
    "area_geometry",
    "band_resolutions",
    "group_geobox",
    "native_geobox",
    "nearest_on",
    "single_crs",
    "split_by_epsg",
]

log = logging.getLogger(__name__)

AreaLike = Any
"""A shapely geometry (EPSG:4326), an odc-geo Geometry, a GeoDataFrame or GeoSeries."""

# Pixel sizes up to this one refuse misaligned grids rather than resample them.
_STRICT_UP_TO = 10 + 1e-6


def split_by_epsg(images: ImagesLike) -> dict[int, list[ImageRecord]]:
    """Group images by EPSG code: :func:`~cbm_dask.load.load_cube` needs one CRS per call."""
    groups: dict[int, list[ImageRecord]] = {}
    for record in to_records(images):
        groups.setdefault(record.epsg or 0, []).append(record)
    return groups


def single_crs(sources: Sequence[Mapping[str, BandSource]]) -> str:
    """Return the one CRS (``EPSG:n``) of the assets.

    Raises
    ------
    InputError
        When they are in several CRSs.
    """
    epsgs = Counter(src.epsg for per_record in sources for src in per_record.values())
    if len(epsgs) > 1:
        listing = ", ".join(f"EPSG:{code} ({n} assets)" for code, n in epsgs.most_common())
        raise InputError(
            f"the images are in several CRSs ({listing}); a cube keeps the native grid, so "
            "load each CRS separately (cbm_dask.load.split_by_epsg)"
        )
    return f"EPSG:{next(iter(epsgs))}"


def area_geometry(bbox: Sequence[float] | None, parcels: AreaLike | None) -> Geometry | None:
    """Return the area to cut the cube to, from ``bbox`` or ``parcels`` (None: everything).

    Raises
    ------
    InputError
        When both are given, the box is malformed, or ``parcels`` is not a frame with a
        CRS nor a geometry.
    """
    if bbox is not None and parcels is not None:
        raise InputError("give either bbox or parcels to load_cube, not both")
    if bbox is not None:
        values = [float(v) for v in bbox]
        if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
            raise InputError(
                f"bbox {tuple(bbox)}: expected (west, south, east, north) in degrees with "
                "west < east and south < north"
            )
        return Geometry(shapely.box(*values), "EPSG:4326")
    if parcels is None:
        return None
    if isinstance(parcels, Geometry):
        return parcels
    if isinstance(parcels, BaseGeometry):
        return Geometry(parcels, "EPSG:4326")
    crs = getattr(parcels, "crs", None)
    if crs is None or not hasattr(parcels, "total_bounds"):
        raise InputError(
            "parcels: expected a GeoDataFrame/GeoSeries with a CRS, a shapely geometry in "
            "EPSG:4326 or an odc-geo Geometry"
        )
    if len(parcels) == 0:
        raise InputError("parcels: the frame is empty; nothing to load")
    return Geometry(shapely.box(*parcels.total_bounds), crs)


def band_resolutions(sources: Sequence[Mapping[str, BandSource]]) -> dict[str, float]:
    """Return each band's pixel size: the most common one among its assets."""
    counts: dict[str, Counter[float]] = {}
    for per_record in sources:
        for band, src in per_record.items():
            counts.setdefault(band, Counter())[src.resolution] += 1
    out: dict[str, float] = {}
    for band, counter in counts.items():
        (res, _), *others = counter.most_common()
        if others:
            log.warning("band %s comes at several pixel sizes %s; %s is used and the others "
                        "are read with nearest-neighbour resampling", band, sorted(counter), res)
        out[band] = res
    return out


def group_geobox(sources: Sequence[Mapping[str, BandSource]], res: float,
                 bands: Sequence[str], crs: str,
                 area: tuple[float, float, float, float] | None) -> GeoBox:
    """Return the grid of the ``res`` group: that of its bands' assets at ``res``, cut to ``area``.

    Grids of 10 m and finer must align; coarser misaligned ones are resampled.
    """
    grids = [(src.transform, src.shape) for per_record in sources
             for b, src in per_record.items() if b in bands and src.resolution == res]
    return native_geobox(grids, crs, area, strict=res <= _STRICT_UP_TO)


def _grid_bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    rows, cols = shape
    xs = (transform.c, transform.c + transform.a * cols)
    ys = (transform.f, transform.f + transform.e * rows)
    return min(xs), min(ys), max(xs), max(ys)


def native_geobox(
    grids: Sequence[tuple[Affine, tuple[int, int]]],
    crs: str,
    area: tuple[float, float, float, float] | None = None,
    *,
    strict: bool = True,
) -> GeoBox:
    """Return the output grid of one pixel size: the images' own grid, cut to ``area``.

    Parameters
    ----------
    grids
        ``(transform, (rows, cols))`` of the assets to load at this pixel size, all
        in ``crs``.
    crs
        Their CRS (``EPSG:n``).
    area
        ``(xmin, ymin, xmax, ymax)`` in ``crs`` to cut to; None for the union of
        the grids.  Edges are widened to whole pixels of the images' grid and the
        result is clipped to the union of the grids.
    strict
        Raise when the grids are not aligned (origins not a whole number of pixels
        apart), instead of loading the misaligned ones with nearest-neighbour
        resampling.

    Raises
    ------
    InputError
        When pixel sizes differ, grids are misaligned (``strict``) or ``area`` does
        not overlap the images.
    """
    first, _ = grids[0]
    res_x, res_y = first.a, first.e
    x0, y0 = first.c, first.f
    for transform, _shape in grids[1:]:
        if not (math.isclose(transform.a, res_x) and math.isclose(transform.e, res_y)):
            raise InputError(
                f"assets of one group have different pixel sizes ({res_x}, {transform.a}); "
                "load them in separate calls"
            )
        off_x = (transform.c - x0) / res_x
        off_y = (transform.f - y0) / res_y
        if abs(off_x - round(off_x)) > 1e-6 or abs(off_y - round(off_y)) > 1e-6:
            message = (
                f"pixel grids of {crs} at {abs(res_x)} are not aligned (origins "
                f"({x0}, {y0}) and ({transform.c}, {transform.f})); loading them together "
                "would resample pixels"
            )
            if strict:
                raise InputError(message + "; load the images of each grid separately")
            log.warning("%s; misaligned images are read with nearest-neighbour resampling",
                        message)
    extents = [_grid_bounds(t, s) for t, s in grids]
    data = (min(e[0] for e in extents), min(e[1] for e in extents),
            max(e[2] for e in extents), max(e[3] for e in extents))
    if area is not None:
        cut = (max(area[0], data[0]), max(area[1], data[1]),
               min(area[2], data[2]), min(area[3], data[3]))
        if cut[0] >= cut[2] or cut[1] >= cut[3]:
            raise InputError(
                f"the requested area {tuple(round(v, 2) for v in area)} ({crs}) does not "
                f"overlap the images (extent {tuple(round(v, 2) for v in data)}); check "
                "bbox= or parcels= against the images' footprints",
                parameter=("bbox", "parcels"),
            )
        data = cut
    step_x, step_y = abs(res_x), abs(res_y)
    eps = 1e-9
    left = x0 + math.floor((data[0] - x0) / step_x + eps) * step_x
    right = x0 + math.ceil((data[2] - x0) / step_x - eps) * step_x
    top = y0 - math.floor((y0 - data[3]) / step_y + eps) * step_y
    bottom = y0 - math.ceil((y0 - data[1]) / step_y - eps) * step_y
    width = max(1, round((right - left) / step_x))
    height = max(1, round((top - bottom) / step_y))
    return GeoBox((height, width), Affine(step_x, 0.0, left, 0.0, -step_y, top), crs)


def _nearest_index(src: GeoBox, dst: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``src`` holding the centre of each ``dst`` pixel (-1: outside).

    Nearest-neighbour resampling between north-up grids of one CRS, as GDAL's warper
    does it: the source pixel that contains the destination pixel's centre.
    """
    s, d = src.affine, dst.affine
    cols = np.floor((d.c + (np.arange(dst.shape.x) + 0.5) * d.a - s.c) / s.a).astype(np.int64)
    rows = np.floor((d.f + (np.arange(dst.shape.y) + 0.5) * d.e - s.f) / s.e).astype(np.int64)
    cols[(cols < 0) | (cols >= src.shape.x)] = -1
    rows[(rows < 0) | (rows >= src.shape.y)] = -1
    return rows, cols


def _take_nearest(block: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``block[:, rows][:, :, cols]`` of a whole ``(time, y, x)`` plane, 0 where outside."""
    out = np.take(np.take(block, np.maximum(rows, 0), axis=1), np.maximum(cols, 0), axis=2)
    out[:, rows < 0] = 0
    out[:, :, cols < 0] = 0
    return out


def nearest_on(scl: xr.DataArray, src: GeoBox, dst: GeoBox, like: xr.DataArray,
               ) -> xr.DataArray:
    """Return the SCL on another pixel grid by nearest pixel, chunked like ``like``.

    Cheaper than reading the SCL again through GDAL's warper for every pixel size.
    """
    rows, cols = _nearest_index(src, dst)
    data: Any = scl.data
    if isinstance(data, dask.array.Array):
        whole = data.rechunk({1: -1, 2: -1})
        data = whole.map_blocks(
            functools.partial(_take_nearest, rows=rows, cols=cols), dtype=whole.dtype,
            chunks=(whole.chunks[0], (rows.size,), (cols.size,)),
        ).rechunk(like.data.chunks)
    else:
        data = _take_nearest(np.asarray(data), rows, cols)
    return xr.DataArray(data, dims=like.dims, coords=like.coords)
