"""Parcel labels: which pixels of a grid belong to which parcel, computed once per grid.

:func:`build_labels` scan-converts every parcel straight into *runs* of pixels
(row, first column, end column), grouped per parcel.  This is the counting-sorted
pixel index of a label raster without the raster: no label image is allocated,
and overlapping parcels need no special treatment because each parcel keeps its
own runs (a pixel inside two declarations appears in both).

The pixel rule is the pixel-centre rule (see ``docs/decisions/0005-pixel-rule-and-percentiles.md``):
a pixel belongs to a parcel when its centre lies inside the polygon.  A centre
exactly on the boundary goes to the polygon that lies west of it (on a
north-south edge) or north of it (on an east-west edge), so parcels that share
an edge never share or lose a pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field

import dask.base
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cbm_dask.errors import InputError
from cbm_dask.reduce import _kernel as kernel
from cbm_dask.reduce._threads import run_ranges
from cbm_dask.reduce.grid import GridLike, PixelGrid, grid_of

__all__ = ["ParcelLabels", "build_labels", "concat_ranges"]

log = logging.getLogger(__name__)

_POLYGONAL = (3, 6)  # shapely type ids of Polygon, MultiPolygon


@dataclass(frozen=True, eq=False)
class ParcelLabels:
    """The pixels of every parcel on one grid, as runs of pixels per parcel.

    Built by :func:`build_labels`; reuse it for every band and date on the same grid
    (tile x resolution x parcel set).  It holds only integer arrays, 12 bytes per run
    (a parcel of 1.5 ha at 10 m has about 17 runs): about 6.5 MB for 30,000 parcels,
    26 MB for a full S2 tile with 120,000, so it pickles quickly to Dask workers — or
    build it on the worker from the parcels, which are smaller.

    Attributes
    ----------
    grid
        The pixel grid the labels were built for.
    ids
        Parcel ids, in the order of the parcels given to :func:`build_labels`, with
        their original dtype; named after the id column.
    buffer
        Buffer (metres, negative = inward) applied before scan conversion.
    offsets
        ``int64[n_parcels + 1]``: runs of parcel ``p`` are ``offsets[p]:offsets[p + 1]``.
    rows, starts, stops
        ``int32[n_runs]``: run ``j`` covers row ``rows[j]``, columns
        ``starts[j] <= column < stops[j]`` (0-based, within the grid).
    token
        Content hash, used as the Dask key of the labels.
    """

    grid: PixelGrid
    ids: pd.Series
    buffer: float
    offsets: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    token: str = field(default="")

    def __post_init__(self) -> None:
        if not self.token:
            token = dask.base.tokenize(
                tuple(self.grid.transform), self.grid.shape, self.grid.crs.to_wkt(),
                self.ids.to_numpy(), self.buffer, self.offsets, self.rows, self.starts, self.stops,
            )
            object.__setattr__(self, "token", token)

    def __dask_tokenize__(self) -> Hashable:
        return ("ParcelLabels", self.token)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def id_column(self) -> str:
        """Name of the parcel id column in results."""
        return str(self.ids.name)

    @property
    def pixel_counts(self) -> np.ndarray:
        """Number of pixel centres inside each parcel (before nodata and masks)."""
        lengths = (self.stops - self.starts).astype(np.int64)
        sums = np.concatenate([[0], np.cumsum(lengths)])
        return np.asarray(sums[self.offsets[1:]] - sums[self.offsets[:-1]], dtype=np.int64)

    @property
    def n_runs(self) -> int:
        """Total number of runs."""
        return int(self.rows.size)

    def pixel_mask(self, position: int) -> np.ndarray:
        """Boolean image (grid shape) of the pixels of the parcel at ``position``.

        Meant for inspection and tests; the engine never builds images.
        """
        out = np.zeros(self.grid.shape, dtype=bool)
        for j in range(int(self.offsets[position]), int(self.offsets[position + 1])):
            out[self.rows[j], self.starts[j]:self.stops[j]] = True
        return out

    def select(self, positions: np.ndarray) -> ParcelLabels:
        """Labels of a subset of the parcels (positions into :attr:`ids`), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        lo = self.offsets[positions]
        hi = self.offsets[positions + 1]
        lengths = hi - lo
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = concat_ranges(lo, lengths)
        return ParcelLabels(
            grid=self.grid,
            ids=self.ids.take(positions).reset_index(drop=True),
            buffer=self.buffer,
            offsets=offsets,
            rows=self.rows[take],
            starts=self.starts[take],
            stops=self.stops[take],
        )


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each pair ``(s, n)`` (vectorised)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - first, lengths) + np.arange(total)


def _check_ids(parcels: gpd.GeoDataFrame, id_column: str) -> pd.Series:
    if id_column not in parcels.columns:
        candidates = [c for c in parcels.columns if c != parcels.geometry.name]
        raise InputError(
            f"the parcels have no column {id_column!r}; pass id_column= one of "
            f"{', '.join(map(repr, candidates)) or '(no attribute columns)'}"
        )
    ids = parcels[id_column].reset_index(drop=True)
    if ids.isna().any():
        raise InputError(
            f"{int(ids.isna().sum())} parcel(s) have no {id_column!r}; drop them or fill the ids"
        )
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        examples = ", ".join(map(str, ids[duplicated].unique()[:5]))
        raise InputError(
            f"parcel ids in {id_column!r} are not unique ({examples} ...); pass a unique "
            "id_column, or prepare the parcels with cbm_dask.zones.prepare_parcels"
        )
    return ids.rename(id_column)


def _geometries(parcels: gpd.GeoDataFrame, grid: PixelGrid, buffer: float) -> np.ndarray:
    """Parcel geometries in the grid's CRS, buffered, as a shapely array (None -> empty)."""
    if parcels.crs is None:
        raise InputError(
            "the parcels have no CRS; set it, e.g. parcels.set_crs('EPSG:31370'), "
            "so they can be placed on the raster"
        )
    series = parcels.geometry
    if not grid.crs.equals(parcels.crs, ignore_axis_order=True):
        series = series.to_crs(grid.crs)
    geoms = np.asarray(series.array, dtype=object)
    geoms = np.where(shapely.is_missing(geoms), shapely.Polygon(), geoms)
    kinds = shapely.get_type_id(geoms)
    bad = ~np.isin(kinds, _POLYGONAL) & ~shapely.is_empty(geoms)
    if bad.any():
        names = sorted({shapely.get_type_id(g) for g in geoms[bad]})
        raise InputError(
            f"{int(bad.sum())} parcel geometries are not polygons (shapely type ids {names}); "
            "parcels must be Polygon or MultiPolygon, e.g. prepared with "
            "cbm_dask.zones.prepare_parcels"
        )
    if buffer:
        if not grid.crs.is_projected or grid.crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise InputError(
                f"buffer={buffer} is in metres but the raster CRS {grid.crs.name!r} is not in "
                "metres; reproject the raster to a projected CRS (e.g. UTM) or use buffer=0"
            )
        geoms = shapely.buffer(geoms, buffer)
    return np.asarray(geoms, dtype=object)


def _pixel_space(coords: np.ndarray, grid: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Vertex coordinates (CRS) to (column, row) pixel coordinates, as exactly as possible."""
    t = grid.transform
    x = coords[:, 0]
    y = coords[:, 1]
    if t.b == 0.0 and t.d == 0.0:
        # subtract then divide: a vertex on a pixel edge or centre lands exactly on .0 / .5
        return (x - t.c) / t.a, (y - t.f) / t.e
    inverse = ~t
    px = inverse.a * x + inverse.b * y + inverse.c
    py = inverse.d * x + inverse.e * y + inverse.f
    return px, py


def build_labels(
    parcels: gpd.GeoDataFrame,
    grid: GridLike,
    *,
    id_column: str = "pid",
    buffer: float = 0.0,
) -> ParcelLabels:
    """Assign pixels to parcels on one grid, once, for all bands and dates on that grid.

    Parameters
    ----------
    parcels
        Polygons or multipolygons in any CRS (reprojected to the grid's CRS).  Parcels
        may overlap; each gets all of its pixels.  Missing and empty geometries are
        kept and get no pixels.
    grid
        The raster grid: an xarray object with a CRS, an odc-geo ``GeoBox``, a
        :class:`~cbm_dask.reduce.grid.PixelGrid` or ``(transform, (height, width), crs)``.
        Bands of different pixel sizes (S2 10 m and 20 m) need labels each.
    id_column
        Column with the unique parcel ids (dtype kept in results).
    buffer
        Distance in metres applied to the polygons before scan conversion: negative
        shrinks them (an inward buffer, to keep mixed edge pixels out), positive grows
        them.  Parcels that vanish get no pixels.  Needs a raster CRS in metres.

    Returns
    -------
    ParcelLabels
        The pixel runs of every parcel, in the order of ``parcels``.

    Raises
    ------
    InputError
        Missing id column, missing or duplicated ids, no CRS, non-polygonal geometries,
        or a buffer on a raster whose CRS is not in metres.

    Notes
    -----
    A pixel belongs to a parcel when its centre is inside the polygon (even-odd rule
    over all rings, so holes are excluded).  Centres exactly on the boundary are
    decided half-open: on a north-south edge the pixel goes to the polygon on its
    west side, on an east-west edge to the polygon on its north side.  Off boundaries
    this is the rule of ``rasterio.features.rasterize(..., all_touched=False)``.
    """
    grid = grid_of(grid)
    ids = _check_ids(parcels, id_column)
    geoms = _geometries(parcels, grid, float(buffer))
    height, width = grid.shape
    n = len(geoms)
    empty = shapely.is_empty(geoms)
    if n == 0 or empty.all():
        offsets = np.zeros(n + 1, dtype=np.int64)
        no_runs = np.zeros(0, dtype=np.int32)
        return ParcelLabels(grid=grid, ids=ids, buffer=float(buffer), offsets=offsets,
                            rows=no_runs, starts=no_runs, stops=no_runs)
    kind, coords, parts = shapely.to_ragged_array(geoms)
    if kind == shapely.GeometryType.POLYGON:
        ring_offsets, geom_rings = parts
    else:  # MultiPolygon (mixed arrays are promoted)
        ring_offsets, polygon_rings, geom_polygons = parts
        geom_rings = polygon_rings[geom_polygons]
    px, py = _pixel_space(np.asarray(coords, dtype=np.float64), grid)
    shape_args = (np.ascontiguousarray(px), np.ascontiguousarray(py),
                  np.asarray(ring_offsets, dtype=np.int64),
                  np.asarray(geom_rings, dtype=np.int64), height, width)
    work = np.diff(np.asarray(ring_offsets)[np.asarray(geom_rings)])  # vertices per parcel
    counts = np.zeros(n, dtype=np.int64)
    run_ranges(kernel.scan_count, (*shape_args, counts), work)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    rows = np.empty(total, dtype=np.int32)
    starts = np.empty(total, dtype=np.int32)
    stops = np.empty(total, dtype=np.int32)
    run_ranges(kernel.scan_fill, (*shape_args, offsets, rows, starts, stops), work)
    labels = ParcelLabels(grid=grid, ids=ids, buffer=float(buffer), offsets=offsets,
                          rows=rows, starts=starts, stops=stops)
    log.debug("labels: %d parcels, %d runs on %s", n, labels.n_runs, grid.describe())
    return labels
