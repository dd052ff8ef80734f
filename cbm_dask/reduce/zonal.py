"""Per-parcel statistics of raster bands: :func:`zonal_stats`."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from cbm_dask.errors import InputError
from cbm_dask.reduce import _kernel as kernel
from cbm_dask.reduce._blocks import BlockPart, LazyInput, all_runs, lazy_slices
from cbm_dask.reduce._inputs import (
    BAND,
    SliceKey,
    Variable,
    kernel_array,
    mask_array,
    resolve_labels,
    variables,
)
from cbm_dask.reduce._threads import run_ranges
from cbm_dask.reduce.labels import ParcelLabels, concat_ranges

__all__ = ["DEFAULT_STATS", "StatsSpec", "assemble", "decode_statistics", "parse_stats",
           "zonal_stats"]

log = logging.getLogger(__name__)

#: The statistics of a Checks-by-Monitoring signature.
DEFAULT_STATS: tuple[str, ...] = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")

_FIXED = {"count": kernel.COUNT, "sum": kernel.SUM, "mean": kernel.MEAN, "std": kernel.STD,
          "min": kernel.MIN, "max": kernel.MAX}
_PERCENTILE = re.compile(r"^p(\d{1,3}(?:\.\d+)?)$")


@dataclass(frozen=True)
class StatsSpec:
    """Which statistics to compute, and where the kernel puts them.

    Attributes
    ----------
    names
        Output column names, in the order asked for.
    quantiles
        Fractions in [0, 1] of the percentiles, ascending (kernel order).
    columns
        Kernel output column of each name.
    """

    names: tuple[str, ...]
    quantiles: tuple[float, ...]
    columns: tuple[int, ...]

    @property
    def width(self) -> int:
        """Number of kernel output columns."""
        return kernel.FIXED + len(self.quantiles)


def parse_stats(stats: Sequence[str]) -> StatsSpec:
    """Validate statistic names: ``count sum mean std min max median pNN`` (0 <= NN <= 100).

    Raises
    ------
    InputError
        For an unknown name, a percentile outside [0, 100], or no statistic at all.
    """
    if isinstance(stats, str):
        stats = (stats,)
    names: list[str] = []
    wanted: list[float | int] = []  # a fixed column, or the fraction of a percentile
    for raw in stats:
        name = str(raw).strip().lower()
        if name in names:
            continue
        if name in _FIXED:
            wanted.append(_FIXED[name])
        else:
            match = _PERCENTILE.match("p50" if name == "median" else name)
            if match is None or float(match.group(1)) > 100:
                raise InputError(
                    f"unknown statistic {raw!r}; use {', '.join(_FIXED)}, median or pNN for the "
                    "NN-th percentile (0 <= NN <= 100, e.g. p25, p50, p75, p2.5)"
                )
            # numpy computes q / 100 the same way before taking (n - 1) * q
            wanted.append(float(match.group(1)) / 100)
        names.append(name)
    if not names:
        raise InputError("no statistic asked for; e.g. stats=('count', 'mean')")
    quantiles = sorted({w for w in wanted if isinstance(w, float)})  # ascending, for the kernel
    columns = [w if isinstance(w, int) else kernel.FIXED + quantiles.index(w) for w in wanted]
    return StatsSpec(tuple(names), tuple(quantiles), tuple(columns))


# --------------------------------------------------------------------------- tasks


def _nodata_args(nodata: float | None) -> tuple[float, bool]:
    return (0.0, False) if nodata is None else (float(nodata), True)


def _stats_whole(values: Any, mask: Any, labels: ParcelLabels, quantiles: tuple[float, ...],
                 nodata: float | None) -> np.ndarray:
    """Statistics of every parcel on one in-memory 2-D slice."""
    array = kernel_array(values)
    mask_values, use_mask = mask_array(mask)
    value, use_nodata = _nodata_args(nodata)
    runs = all_runs(labels)
    q = np.asarray(quantiles, dtype=np.float64)
    out = np.empty((len(labels), kernel.FIXED + q.size), dtype=np.float64)
    run_ranges(kernel.stats_range, (array, mask_values, use_mask, value, use_nodata,
                                    runs.offsets, runs.rows, runs.starts, runs.stops, q, out),
               labels.pixel_counts)
    return out


def _stats_block(values: Any, mask: Any, part: BlockPart, nodata: float | None,
                 quantiles: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """One chunk: statistics of its inner parcels, valid pixels of its crossing parcels."""
    array = kernel_array(values)
    mask_values, use_mask = mask_array(mask)
    value, use_nodata = _nodata_args(nodata)
    q = np.asarray(quantiles, dtype=np.float64)
    inner = part.inner
    out = np.empty((len(inner), kernel.FIXED + q.size), dtype=np.float64)
    kernel.stats_range(array, mask_values, use_mask, value, use_nodata, inner.offsets,
                       inner.rows, inner.starts, inner.stops, q, out, 0, len(inner))
    cross = part.crossing
    counts, pixels = kernel.gather_serial(array, mask_values, use_mask, value, use_nodata,
                                          cross.offsets, cross.rows, cross.starts, cross.stops)
    return inner.positions, out, cross.positions, counts, pixels


def _stats_finish(results: list[tuple[np.ndarray, ...]], n_parcels: int,
                  quantiles: tuple[float, ...]) -> np.ndarray:
    """One slice: place the chunks' statistics, reduce the crossing parcels' pixels."""
    q = np.asarray(quantiles, dtype=np.float64)
    out = np.full((n_parcels, kernel.FIXED + q.size), np.nan)
    out[:, kernel.COUNT] = 0
    positions, counts, pixels = [], [], []
    for inner, stats, cross, cross_counts, cross_pixels in results:
        out[inner] = stats
        if cross.size:
            positions.append(cross)
            counts.append(cross_counts)
            pixels.append(cross_pixels)
    if positions:
        position = np.concatenate(positions)
        count = np.concatenate(counts)
        pixel = np.concatenate(pixels)
        order = np.argsort(position, kind="stable")
        first_pixel = np.cumsum(count) - count
        take = concat_ranges(first_pixel[order], count[order])
        sorted_pixels = np.ascontiguousarray(pixel[take])
        parcels, first = np.unique(position[order], return_index=True)
        per_parcel = np.add.reduceat(count[order], first) if first.size else first
        offsets = np.concatenate([[0], np.cumsum(per_parcel)]).astype(np.int64)
        combined = np.empty((parcels.size, out.shape[1]), dtype=np.float64)
        kernel.stats_from_values(sorted_pixels, offsets, q, combined)
        out[parcels] = combined
    return out


def decode_statistics(out: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Statistics of stored values → statistics of ``value * scale + offset`` (in place).

    Every statistic commutes with a positive affine map: the mean, minimum, maximum and
    each percentile map like a pixel, the standard deviation scales, the sum gains
    ``count * offset``.  Reducing the stored integers and decoding the few results is
    exact in float64 and spares a float pass over every pixel.
    """
    if scale == 1.0 and offset == 0.0:
        return out
    out[:, kernel.SUM] = out[:, kernel.SUM] * scale + out[:, kernel.COUNT] * offset
    for column in (kernel.MEAN, kernel.MIN, kernel.MAX, *range(kernel.FIXED, out.shape[1])):
        out[:, column] = out[:, column] * scale + offset
    out[:, kernel.STD] *= scale
    return out


# --------------------------------------------------------------------------- assembly


def assemble(labels: ParcelLabels, keys: Sequence[SliceKey], arrays: Sequence[np.ndarray],
             names: Sequence[str], columns: Sequence[int],
             integers: Sequence[str] = ("count",)) -> pd.DataFrame:
    """One row per parcel x slice: id, slice coordinates (time ...), band, then ``names``.

    ``arrays[k]`` holds one row per parcel for ``keys[k]``; ``columns`` says which of its
    columns each name is.  Slices are ordered by their key's sort order (date, band).
    """
    n = len(labels)
    order = sorted(range(len(keys)), key=lambda k: keys[k].order)
    positions = np.tile(np.arange(n), len(order))
    frame: dict[str, Any] = {labels.id_column: labels.ids.take(positions).array}
    dims: list[str] = []
    for key in keys:
        dims.extend(dim for dim, _ in key.coords if dim not in dims and dim != BAND)
    for dim in [*dims, BAND]:
        frame[dim] = pd.Index([dict(keys[k].coords).get(dim) for k in order]).repeat(n)
    width = max(columns, default=0) + 1
    table = (np.concatenate([arrays[k] for k in order]) if order
             else np.zeros((0, width), dtype=np.float64))
    for name, column in zip(names, columns, strict=True):
        values = table[:, column]
        frame[name] = values.astype(np.int64) if name in integers else values
    return pd.DataFrame(frame)


def _lazy_input(var: Variable, quantiles: tuple[float, ...]) -> LazyInput:
    """Prepare a variable for Dask: leading axes chunked by 1, the mask chunked alike."""
    array = cast(da.Array, var.array.data)
    array = array.rechunk({i: 1 for i in range(array.ndim - 2)})
    mask = None
    if var.mask is not None:
        mask = var.mask.data
        mask = (mask.rechunk(array.chunks) if isinstance(mask, da.Array)
                else da.from_array(np.asarray(mask), chunks=array.chunks))
    return LazyInput(array, mask, (var.nodata, quantiles))


def zonal_stats(
    data: xr.DataArray | xr.Dataset,
    parcels: gpd.GeoDataFrame | ParcelLabels,
    *,
    id_column: str = "pid",
    stats: Sequence[str] = DEFAULT_STATS,
    buffer: float = 0.0,
    nodata: float | None = None,
    mask: xr.DataArray | np.ndarray | None = None,
) -> pd.DataFrame:
    """Statistics of every parcel's pixels, for every band and date.

    Parameters
    ----------
    data
        Raster values with a CRS (rioxarray ``spatial_ref``/``grid_mapping`` or odc-geo
        metadata) on a regular grid, in memory or Dask-backed:

        * a :class:`~xarray.DataArray` with dims ``(y, x)``, ``(band, y, x)``,
          ``(time, y, x)`` or ``(time, band, y, x)`` (any order; other leading dims are
          reduced slice by slice like ``time`` and become columns);
        * a :class:`~xarray.Dataset` whose data variables are bands with dims
          ``(time, y, x)`` or ``(y, x)`` on one grid (one pixel size: reduce the 10 m and
          20 m groups of a cube separately).
    parcels
        A GeoDataFrame of Polygon/MultiPolygon parcels in any CRS (reprojected to the
        raster's), or :class:`~cbm_dask.reduce.labels.ParcelLabels` built for this grid
        with :func:`~cbm_dask.reduce.labels.build_labels` — the way to rasterise once and
        reduce many bands and dates.  Parcels may overlap: each gets all of its pixels.
    id_column
        Column of ``parcels`` holding unique parcel ids; its dtype is kept in the result.
        Ignored when ``parcels`` are labels (they carry their ids).
    stats
        Statistics to compute, in output order:

        * ``count`` — number of valid pixels (int64);
        * ``sum``, ``mean``, ``min``, ``max``;
        * ``std`` — population standard deviation (``ddof=0``, like ``numpy.std``);
        * ``pNN`` — the NN-th percentile, 0 <= NN <= 100 (``p25``, ``p50``, ``p75``,
          ``p2.5`` ...), by numpy's default ``"linear"`` method
          (``numpy.percentile(values, NN)``); ``median`` is ``p50``.

        Percentiles sort each parcel's pixels; without them the reduction is one pass.
    buffer
        Metres applied to the polygons before their pixels are chosen: negative values
        shrink parcels (an inward buffer that keeps mixed border pixels out), positive
        values grow them.  Parcels that vanish get ``count`` 0.  Needs a projected raster
        CRS in metres.  With labels, the buffer is the one they were built with.
    nodata
        Pixel value to exclude.  Default: the data's ``nodata`` or ``_FillValue``
        attribute (per Dataset variable).  NaN pixels are always excluded.
    mask
        Boolean pixels to exclude, **True = excluded** (the ``numpy.ma`` convention), e.g.
        ``cube["SCL"].isin([3, 8, 9, 10])`` for the 20 m bands.  A DataArray whose dims are
        a subset of the data's (``(time, y, x)`` masks every band of a date; sizes must
        match, coordinates are matched by position), or a numpy/Dask array of the data's
        trailing shape.

    Returns
    -------
    pandas.DataFrame
        One row per parcel x date x band with columns ``[id_column, time (and any other
        leading dims), band, *stats]``.  ``count`` is int64, the other statistics float64.
        Rows are ordered by date, then band, then parcel in input order.  Every parcel
        appears, also one with no valid pixel (outside the raster, too small to contain a
        pixel centre, vanished by the buffer, or all pixels nodata/masked): its ``count``
        is 0 and the other statistics are NaN.  ``band`` holds the band coordinate value,
        the Dataset variable name, or the DataArray's name (else its scalar ``band``
        coordinate, else ``"value"``).

    Raises
    ------
    InputError
        Unknown statistics, no CRS, labels of another grid, bad ids, a mask that does not
        fit the data, or non-numeric pixels.

    See Also
    --------
    cbm_dask.reduce.labels.build_labels : rasterise once per grid.
    cbm_dask.reduce.scl.scl_histogram : per-parcel scene-classification counts.

    Notes
    -----
    **Pixel rule.**  A pixel belongs to a parcel when its *centre* lies inside the polygon
    (holes excluded); there is no fractional coverage.  A centre exactly on the boundary
    belongs to the polygon west of it (north-south edge) or north of it (east-west edge),
    so adjacent parcels never share a pixel.  Elsewhere this is GDAL's rule
    (``rasterio.features.rasterize(all_touched=False)``), so the pixels are those that
    rasterstats uses with ``all_touched=False``; unlike exactextract, whose statistics
    weight every touched pixel by the fraction covered.  See
    ``docs/decisions/0005-pixel-rule-and-percentiles.md``.

    **Numbers.**  Statistics are those of numpy on the valid pixels converted to float64:
    ``numpy.percentile(pixels.astype("float64"), 25)`` for ``p25``, ``numpy.std`` for
    ``std`` and so on.  Percentiles, ``count``, ``min`` and ``max`` are bit-identical to
    numpy's; ``mean`` too for integer pixels; ``std`` and float sums agree to rounding
    (numpy adds pairwise).  For float32 pixels NumPy 2 computes
    ``numpy.percentile(pixels, 25)`` in float32, which can differ in the last float32 digit.

    **Encoded data.**  A variable with ``scale_factor`` / ``add_offset`` attributes (CF
    encoding, e.g. ``load_cube(decode=False)`` or ``xarray.open_dataset(...,
    decode_cf=False)``) is reduced as stored and its statistics are decoded to
    ``value * scale_factor + add_offset`` (in float64, exact for every statistic; the
    scale must be positive); ``nodata`` is compared with the stored values.  For integer
    digital numbers this is faster than reducing decoded floats.

    **Lazy data.**  Dask-backed data is reduced chunk by chunk: a parcel inside one spatial
    chunk is reduced there, a parcel crossing chunk boundaries has its valid pixels
    gathered from each chunk and reduced once per band and date, so results do not depend
    on the chunking.  Chunks without parcel pixels are not read.  The computation runs on
    the current Dask scheduler and the table is returned computed.  On in-memory data the
    compiled kernel, which releases the GIL, runs on ``reduce.threads`` threads.

    Examples
    --------
    >>> labels = build_labels(parcels, cube.groups[10.0], id_column="pid")  # doctest: +SKIP
    >>> table = zonal_stats(cube.groups[10.0], labels)                       # doctest: +SKIP
    >>> table.columns.tolist()                                               # doctest: +SKIP
    ['pid', 'time', 'band', 'count', 'mean', 'std', 'min', 'max', 'p25', 'p50', 'p75']
    """
    spec = parse_stats(stats)
    labels = resolve_labels(data, parcels, id_column=id_column, buffer=float(buffer))
    items = variables(data, mask=mask, nodata=nodata)
    keys: list[SliceKey] = []
    arrays: list[np.ndarray] = []
    lazy = [var for var in items if var.lazy]
    if lazy:
        inputs = [_lazy_input(var, spec.quantiles) for var in lazy]
        tasks = lazy_slices(inputs, labels, _stats_block, _stats_finish,
                            (len(labels), spec.quantiles), name="zonal-stats")
        flat = [task for var_tasks in tasks for task in var_tasks]
        log.debug("zonal_stats: %d lazy slices, %d parcels", len(flat), len(labels))
        computed = iter(dask.compute(*flat))
        for var in lazy:
            for _, key in var.slices():
                keys.append(key)
                arrays.append(decode_statistics(next(computed), var.scale, var.offset))
    for var in items:
        if var.lazy:
            continue
        values = np.asarray(var.array.values)
        masks = None if var.mask is None else np.asarray(var.mask.values)
        for index, key in var.slices():
            keys.append(key)
            table = _stats_whole(values[index], None if masks is None else masks[index],
                                 labels, spec.quantiles, var.nodata)
            arrays.append(decode_statistics(table, var.scale, var.offset))
    return assemble(labels, keys, arrays, spec.names, spec.columns)
