"""Pixel grids: the affine transform, shape and CRS that parcel labels are built for.

Pure metadata handling.  A :class:`PixelGrid` is read from an xarray object
(rioxarray's ``.rio`` accessor or odc-geo's ``.odc.geobox``), from an odc-geo
``GeoBox``, or given as ``(transform, shape, crs)``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyproj.exceptions
import rasterio.errors
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import CRS
from rioxarray.exceptions import DimensionError, RioXarrayError

from cbm_dask.errors import InputError

__all__ = ["GridLike", "PixelGrid", "grid_of", "spatial_dims"]

GridLike: TypeAlias = Any
"""A :class:`PixelGrid`, an xarray DataArray/Dataset with a CRS, an odc-geo ``GeoBox``,
or a ``(transform, (height, width), crs)`` tuple."""


@dataclass(frozen=True)
class PixelGrid:
    """A raster grid: which pixel covers which ground.

    Attributes
    ----------
    transform
        Affine transform from (column, row) pixel-corner coordinates to CRS coordinates
        (GDAL/rasterio convention: pixel (0, 0) maps to the outer corner of the
        first pixel).
    shape
        ``(height, width)`` in pixels, i.e. ``(rows, columns)``.
    crs
        Coordinate reference system of ``transform``.
    """

    transform: Affine
    shape: tuple[int, int]
    crs: CRS

    def __post_init__(self) -> None:
        height, width = self.shape
        if height < 0 or width < 0:
            raise InputError(f"a pixel grid needs a non-negative shape, got {self.shape}")
        if math.isclose(self.transform.determinant, 0.0, abs_tol=0.0):
            raise InputError(f"the grid transform {tuple(self.transform)[:6]} is degenerate")

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (positive), for north-up grids."""
        return (math.hypot(self.transform.a, self.transform.d),
                math.hypot(self.transform.b, self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid's outer pixel edges."""
        height, width = self.shape
        t = self.transform
        xs = [t.a * c + t.b * r + t.c for c in (0, width) for r in (0, height)]
        ys = [t.d * c + t.e * r + t.f for c in (0, width) for r in (0, height)]
        return (min(xs), min(ys), max(xs), max(ys))

    def matches(self, other: PixelGrid, *, tolerance: float = 1e-6) -> bool:
        """Return True when both grids put the same pixels at the same place.

        ``tolerance`` is a fraction of a pixel for the transform coefficients.
        """
        if self.shape != other.shape or not self.crs.equals(other.crs, ignore_axis_order=True):
            return False
        size = max(self.resolution)
        mine = np.asarray(tuple(self.transform)[:6], dtype=float)
        theirs = np.asarray(tuple(other.transform)[:6], dtype=float)
        return bool(np.allclose(mine, theirs, rtol=0.0, atol=tolerance * size))

    def describe(self) -> str:
        """One line for messages: shape, pixel size, origin and CRS."""
        height, width = self.shape
        t = self.transform
        epsg = self.crs.to_epsg()
        name = f"EPSG:{epsg}" if epsg else self.crs.name
        return (f"{height}x{width} pixels of {self.resolution[0]:g} at "
                f"({t.c:.3f}, {t.f:.3f}) in {name}")


def spatial_dims(data: xr.DataArray | xr.Dataset) -> tuple[str, str]:
    """Return the names of the ``(y, x)`` dimensions of ``data``.

    Tries rioxarray's detection first (``y``/``x``, ``latitude``/``longitude`` ...),
    then the last two dimensions of a DataArray.
    """
    template = _template(data)
    try:
        return str(template.rio.y_dim), str(template.rio.x_dim)
    except DimensionError:  # MissingSpatialDimensionError: none it recognises
        pass
    for y, x in (("y", "x"), ("latitude", "longitude"), ("lat", "lon")):
        if y in data.dims and x in data.dims:
            return y, x
    raise InputError(
        f"cannot tell the spatial dimensions of the data (dims {tuple(data.dims)}); "
        "name them y and x, e.g. data.rename({'row': 'y', 'col': 'x'})"
    )


def _template(data: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """Copy the coordinates and grid-mapping metadata of ``data``, not its pixels.

    The rioxarray and odc-geo accessors are used on this stand-in rather than on the
    user's object: an accessor is cached on the object it is used on and makes a
    reference cycle, which would keep a large band alive until the garbage collector
    runs.
    """
    template = xr.Dataset(coords=data.coords, attrs=dict(data.attrs))
    mapping = data.encoding.get("grid_mapping") or data.attrs.get("grid_mapping")
    if isinstance(data, xr.Dataset) and mapping is None:
        for name in data.data_vars:
            found = data[name].encoding.get("grid_mapping") or data[name].attrs.get(
                "grid_mapping")
            if found:
                mapping = found
                break
    if mapping:
        template.attrs["grid_mapping"] = mapping
    template.attrs.pop("nodata", None)
    template.attrs.pop("_FillValue", None)
    return template


#: What reading a CRS that rioxarray finds but cannot parse raises (pyproj for a
#: malformed WKT or an unknown code, rasterio for WKT GDAL refuses), and rioxarray's
#: own errors (several grid mappings in one Dataset): the next source is tried.
_UNREADABLE_CRS = (pyproj.exceptions.CRSError, rasterio.errors.CRSError, RioXarrayError)


def _odc_accessor_ready() -> bool:
    """Register odc-geo's ``.odc`` accessor; False when odc-geo (an extra) is missing."""
    try:
        import odc.geo.xr  # noqa: F401
    except ImportError:
        return False
    return True


def _crs_of(data: xr.DataArray | xr.Dataset) -> CRS | None:
    template = _template(data)
    try:
        crs = template.rio.crs
    except _UNREADABLE_CRS:
        crs = None
    if crs is not None:
        return CRS.from_user_input(crs.to_wkt())
    # odc-geo returns None for what it cannot parse
    odc_crs = template.odc.crs if _odc_accessor_ready() else None
    if odc_crs is not None:
        return CRS.from_user_input(odc_crs.to_wkt())
    for holder in (data.attrs, *(data[v].attrs for v in data.coords)):
        for key in ("crs_wkt", "spatial_ref", "crs"):
            value = holder.get(key)
            if isinstance(value, str | int) and value:
                try:
                    return CRS.from_user_input(value)
                except pyproj.exceptions.CRSError:  # not a CRS: try the next attribute
                    continue
    return None


def _transform_from_coords(data: xr.DataArray | xr.Dataset, y: str, x: str) -> Affine | None:
    """Transform of a regular grid from its pixel-centre coordinates (None when unsure)."""
    if x not in data.coords or y not in data.coords:
        return None
    xs = np.asarray(data[x].values, dtype=float)
    ys = np.asarray(data[y].values, dtype=float)
    if xs.size < 2 or ys.size < 2:
        return None
    dx = (xs[-1] - xs[0]) / (xs.size - 1)
    dy = (ys[-1] - ys[0]) / (ys.size - 1)
    if dx == 0 or dy == 0:
        return None
    if not (np.allclose(np.diff(xs), dx, rtol=1e-6) and np.allclose(np.diff(ys), dy, rtol=1e-6)):
        raise InputError(
            f"the {x}/{y} coordinates are not a regular grid; zonal statistics need a raster "
            "with a constant pixel size (reproject the data first, e.g. with .rio.reproject)"
        )
    return Affine(dx, 0.0, xs[0] - dx / 2, 0.0, dy, ys[0] - dy / 2)


def _consistent(transform: Affine, data: xr.DataArray | xr.Dataset, y: str, x: str) -> bool:
    """Tell whether ``transform`` puts the first pixel centre on the first coordinates."""
    if x not in data.coords or y not in data.coords or not data.sizes[x] or not data.sizes[y]:
        return True
    cx = transform.a * 0.5 + transform.b * 0.5 + transform.c
    cy = transform.d * 0.5 + transform.e * 0.5 + transform.f
    size = max(abs(transform.a) + abs(transform.b), abs(transform.d) + abs(transform.e))
    first_x = float(data[x].values[0])
    first_y = float(data[y].values[0])
    return abs(cx - first_x) <= 1e-6 * size and abs(cy - first_y) <= 1e-6 * size


def _grid_of_xarray(data: xr.DataArray | xr.Dataset) -> PixelGrid:
    y, x = spatial_dims(data)
    crs = _crs_of(data)
    if crs is None:
        raise InputError(
            "the data has no CRS; give it one, e.g. data.rio.write_crs('EPSG:32631') "
            "(rioxarray), or load it with odc-stac / rioxarray, which keep the spatial_ref"
        )
    transform = _transform_from_coords(data, y, x)
    if transform is None:  # a single row or column: the pixel size must be recorded
        candidates: list[Any] = []
        template = _template(data)
        # several grid mappings; a GeoTransform that is not numbers
        with contextlib.suppress(RioXarrayError, ValueError):
            candidates.append(template.rio.transform(recalc=False))
        geobox = template.odc.geobox if _odc_accessor_ready() else None
        if geobox is not None:
            candidates.append(geobox.transform)
        transform = next((Affine(*tuple(t)[:6]) for t in candidates
                          if t is not None and _consistent(Affine(*tuple(t)[:6]), data, y, x)),
                         None)
    if transform is None:
        raise InputError(
            f"cannot work out the pixel size of data with a single {y} or {x} coordinate; "
            "record the grid, e.g. data.rio.write_transform(transform)"
        )
    shape = (int(data.sizes[y]), int(data.sizes[x]))
    return PixelGrid(transform=Affine(*tuple(transform)[:6]), shape=shape, crs=crs)


def grid_of(grid: GridLike) -> PixelGrid:
    """Normalise anything grid-like into a :class:`PixelGrid`.

    Parameters
    ----------
    grid
        A :class:`PixelGrid`; an :class:`xarray.DataArray` or :class:`xarray.Dataset`
        with a CRS (rioxarray ``spatial_ref`` / ``grid_mapping`` or odc-geo metadata)
        and regular ``y``/``x`` pixel-centre coordinates; an odc-geo ``GeoBox``; or a
        ``(transform, (height, width), crs)`` tuple.

    Raises
    ------
    InputError
        When no CRS or transform can be found.
    """
    if isinstance(grid, PixelGrid):
        return grid
    if isinstance(grid, xr.DataArray | xr.Dataset):
        return _grid_of_xarray(grid)
    if isinstance(grid, tuple) and len(grid) == 3:
        transform, shape, crs = grid
        return PixelGrid(
            transform=Affine(*tuple(transform)[:6]),
            shape=(int(shape[0]), int(shape[1])),
            crs=CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs),
        )
    if all(hasattr(grid, name) for name in ("transform", "shape", "crs")):  # odc-geo GeoBox
        crs = grid.crs
        if crs is None:
            raise InputError("the GeoBox has no CRS; build it with one")
        shape = tuple(grid.shape)
        return PixelGrid(
            transform=Affine(*tuple(grid.transform)[:6]),
            shape=(int(shape[0]), int(shape[1])),
            crs=CRS.from_user_input(crs.to_wkt()),
        )
    raise InputError(
        f"cannot use a {type(grid).__name__} as a pixel grid; pass an xarray object with a CRS, "
        "an odc-geo GeoBox, a PixelGrid or a (transform, (height, width), crs) tuple"
    )
