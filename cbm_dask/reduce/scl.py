"""Per-parcel counts of Sentinel-2 scene classification (SCL) classes: :func:`scl_histogram`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, cast

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
    plane,
    resolve_labels,
    variables,
)
from cbm_dask.reduce._threads import run_ranges
from cbm_dask.reduce.labels import ParcelLabels
from cbm_dask.sentinel.scl import SCL_CLASSES

__all__ = ["SCL_CLASSES", "scl_histogram"]

log = logging.getLogger(__name__)


def _class_array(values: Any, n_classes: int) -> np.ndarray:
    """Class codes as a contiguous integer array; NaN and out-of-range codes -> ignored."""
    array = plane(values)
    if array.dtype.kind == "f":
        array = np.where(np.isfinite(array), array, -1).astype(np.int64)
    elif array.dtype.kind == "b":
        array = array.astype(np.uint8)
    elif array.dtype.kind not in "ui":
        raise InputError(f"SCL pixels must be class codes (integers), not {array.dtype}")
    elif not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind == "u" and array.dtype.itemsize > 2:
        array = array.astype(np.int64)
    return np.ascontiguousarray(array)


def _histogram_whole(values: Any, labels: ParcelLabels, n_classes: int) -> np.ndarray:
    array = _class_array(values, n_classes)
    runs = all_runs(labels)
    out = np.zeros((len(labels), n_classes), dtype=np.int64)
    run_ranges(kernel.histogram_range, (array, runs.offsets, runs.rows, runs.starts, runs.stops,
                                        out), labels.pixel_counts)
    return out


def _histogram_block(values: Any, mask: Any, part: BlockPart,
                     n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk: class counts of the pixels of every parcel it holds (counts add up)."""
    array = _class_array(values, n_classes)
    results = []
    for runs in (part.inner, part.crossing):
        out = np.zeros((len(runs), n_classes), dtype=np.int64)
        kernel.histogram_range(array, runs.offsets, runs.rows, runs.starts, runs.stops, out, 0,
                               len(runs))
        results.extend([runs.positions, out])
    return results[0], results[1], results[2], results[3]


def _histogram_finish(results: list[tuple[np.ndarray, ...]], n_parcels: int,
                      n_classes: int) -> np.ndarray:
    out = np.zeros((n_parcels, n_classes), dtype=np.int64)
    for inner, inner_counts, cross, cross_counts in results:
        out[inner] += inner_counts
        np.add.at(out, cross, cross_counts)
    return out


def _lazy_histograms(var: Variable, labels: ParcelLabels, n_classes: int) -> list[Any]:
    array = cast(da.Array, var.array.data)
    array = array.rechunk({i: 1 for i in range(array.ndim - 2)})
    (tasks,) = lazy_slices([LazyInput(array, None, (n_classes,))], labels, _histogram_block,
                           _histogram_finish, (len(labels), n_classes), name="scl-histogram")
    return tasks


def scl_histogram(
    scl: xr.DataArray,
    parcels: gpd.GeoDataFrame | ParcelLabels,
    *,
    id_column: str = "pid",
    buffer: float = 0.0,
    classes: int | Sequence[int] = 12,
    layout: Literal["long", "wide"] = "long",
) -> pd.DataFrame:
    """Count each parcel's pixels per scene classification (SCL) class, per date.

    Parameters
    ----------
    scl
        Sentinel-2 L2A SCL class codes with a CRS, dims ``(time, y, x)`` or ``(y, x)``
        (usually ``cube["SCL"]`` on the 20 m grid), in memory or Dask-backed.  Pixels are
        counted whatever their class, including class 0 (no data); codes outside the
        class range (and NaN) are not counted.
    parcels
        GeoDataFrame of parcels, or :class:`~cbm_dask.reduce.labels.ParcelLabels` of the
        SCL grid (20 m labels differ from 10 m labels).
    id_column
        Unique parcel id column (ignored with labels).
    buffer
        Metres, negative shrinks the parcels (as in :func:`zonal_stats`).
    classes
        Number of classes (codes ``0 .. classes - 1``; 12 for SCL), or the codes to
        report (e.g. ``(3, 8, 9, 10)``); counting is always over ``0 .. max(codes)``.
    layout : {"long", "wide"}
        * ``"long"`` — columns ``[id_column, time, class, count]``, one row per parcel,
          date and class **with a non-zero count** (parcels without pixels have no row);
          the compact form to store as JSON per parcel and image.
        * ``"wide"`` — columns ``[id_column, time, scl_0, ..., scl_11]``, one row per
          parcel and date, zeros included (every parcel appears).

    Returns
    -------
    pandas.DataFrame
        Counts as int64; ``time`` is present when ``scl`` has a time dimension.  Rows are
        ordered by date, then parcel in input order (then class, for ``"long"``).

    Raises
    ------
    InputError
        Non-integer codes, no CRS, labels of another grid, or a bad ``layout``.

    Notes
    -----
    The pixels are those of :func:`zonal_stats` (pixel-centre rule, overlaps allowed).
    Histograms add up over chunks, so Dask-backed input is reduced chunk by chunk with
    no gathering.
    """
    if layout not in ("long", "wide"):
        raise InputError(f"layout must be 'long' or 'wide', not {layout!r}")
    if isinstance(scl, xr.Dataset):
        raise InputError("pass the SCL DataArray (e.g. cube['SCL']), not a Dataset")
    codes = list(range(classes)) if isinstance(classes, int) else sorted({int(c) for c in classes})
    if not codes or codes[0] < 0:
        raise InputError(f"classes must be a positive count or non-negative codes, not {classes!r}")
    n_classes = codes[-1] + 1
    labels = resolve_labels(scl, parcels, id_column=id_column, buffer=float(buffer))
    (var,) = variables(scl, nodata=None)
    if BAND in var.lead_dims:
        raise InputError("SCL has a band dimension; select the SCL band first")
    keys: list[SliceKey] = []
    arrays: list[Any] = []
    if var.lazy:
        tasks = _lazy_histograms(var, labels, n_classes)
        keys = [key for _, key in var.slices()]
        arrays = list(dask.compute(*tasks))
    else:
        values = np.asarray(var.array.values)
        for index, key in var.slices():
            keys.append(key)
            arrays.append(_histogram_whole(values[index], labels, n_classes))
    order = sorted(range(len(keys)), key=lambda k: keys[k].order)
    n = len(labels)
    dims = [dim for dim, _ in keys[0].coords if dim != BAND] if keys else []
    frame: dict[str, Any] = {
        labels.id_column: labels.ids.take(np.tile(np.arange(n), len(order))).array,
    }
    for dim in dims:
        frame[dim] = pd.Index([dict(keys[k].coords)[dim] for k in order]).repeat(n)
    counts = (np.concatenate([arrays[k] for k in order]) if order
              else np.zeros((0, n_classes), dtype=np.int64))[:, codes]
    if layout == "wide":
        for j, code in enumerate(codes):
            frame[f"scl_{code}"] = counts[:, j]
        return pd.DataFrame(frame)
    row, col = np.nonzero(counts)
    long = {name: values[row] for name, values in frame.items()}
    long["class"] = np.asarray(codes, dtype=np.int64)[col]
    long["count"] = counts[row, col]
    return pd.DataFrame(long)
