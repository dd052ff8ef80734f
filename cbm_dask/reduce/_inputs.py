"""Turning the xarray inputs of the reductions into 2-D slices the kernels understand.

A *variable* is one array with dims ``(*lead, y, x)``: a DataArray, or one data
variable of a Dataset.  Each index of its leading dims (``time``, ``band`` ...) is
a *slice*: one band of one date, reduced on its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from cbm_dask.errors import InputError
from cbm_dask.reduce.grid import PixelGrid, grid_of, spatial_dims
from cbm_dask.reduce.labels import ParcelLabels

__all__ = [
    "BAND",
    "SliceKey",
    "Variable",
    "kernel_array",
    "mask_array",
    "plane",
    "resolve_labels",
    "variables",
]

#: Name of the band dimension of a DataArray, and of the band column of results.
BAND = "band"


@dataclass(frozen=True)
class SliceKey:
    """Where a 2-D slice comes from: its labels for the result table, and its sort order."""

    coords: tuple[tuple[str, Any], ...]
    order: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Variable:
    """One array ``(*lead, y, x)`` to reduce, with what is needed to read its pixels.

    Attributes
    ----------
    band
        Band label of every slice when the array has no ``band`` dimension (a Dataset
        variable's name), else None.
    position
        Position of the variable in its Dataset (0 for a DataArray), to order results.
    array
        The data, spatial dims last.
    mask
        Boolean array of the same dims and shape (True = excluded), or None.
    nodata
        Value excluded besides NaN, or None.
    scale, offset
        How stored values decode to physical ones (``value * scale + offset``, the
        ``scale_factor`` / ``add_offset`` attributes of CF-encoded data); 1 and 0 for
        data that is not encoded.
    """

    band: Hashable | None
    position: int
    array: xr.DataArray
    mask: xr.DataArray | None
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0

    @property
    def encoded(self) -> bool:
        """True when statistics must be decoded with :attr:`scale` and :attr:`offset`."""
        return self.scale != 1.0 or self.offset != 0.0

    @property
    def lead_dims(self) -> tuple[str, ...]:
        """The dims before ``(y, x)``."""
        return tuple(str(d) for d in self.array.dims[:-2])

    @property
    def lazy(self) -> bool:
        """True when the data is a Dask array (a Dask mask of in-memory data is computed)."""
        return isinstance(self.array.data, da.Array)

    def slices(self) -> Iterator[tuple[tuple[int, ...], SliceKey]]:
        """Every leading index in C order with its :class:`SliceKey`."""
        dims = self.lead_dims
        shape = self.array.shape[:-2]
        for index in itertools.product(*(range(n) for n in shape)):
            coords: list[tuple[str, Any]] = []
            order: list[int] = []
            band: Any = self.band
            band_order = self.position
            for dim, i in zip(dims, index, strict=True):
                value = self.array[dim].values[i] if dim in self.array.coords else i
                if dim == BAND:
                    band = value
                    band_order = i
                else:
                    coords.append((dim, value))
                    order.append(i)
            coords.append((BAND, band))
            order.append(band_order)
            yield index, SliceKey(tuple(coords), tuple(order))


def _nodata_of(array: xr.DataArray, nodata: float | None) -> float | None:
    """Explicit value, else the ``nodata`` / ``_FillValue`` attribute; None for NaN or none."""
    if nodata is None:
        if "_FillValue" in array.encoding and np.issubdtype(array.dtype, np.floating):
            return None  # decoded by xarray: missing pixels are already NaN
        for key in ("nodata", "_FillValue", "missing_value"):
            value = array.attrs.get(key)
            if value is not None:
                nodata = value
                break
    if nodata is None:
        return None
    try:
        value = float(np.asarray(nodata).item())
    except (TypeError, ValueError):
        raise InputError(f"nodata={nodata!r} is not a number; pass nodata= explicitly") from None
    return None if math.isnan(value) else value


def _encoding_of(array: xr.DataArray, name: Hashable | None) -> tuple[float, float]:
    """``(scale, offset)`` from the CF attributes ``scale_factor`` / ``add_offset``.

    xarray moves them into ``encoding`` when it decodes, so attributes mean the pixels
    are stored values.
    """
    values = []
    for key, default in (("scale_factor", 1.0), ("add_offset", 0.0)):
        raw = array.attrs.get(key, default)
        try:
            values.append(float(np.asarray(raw).item()))
        except (TypeError, ValueError):
            raise InputError(
                f"variable {name!r}: {key}={raw!r} is not a number; fix the attribute or "
                "decode the data first (xarray.decode_cf)") from None
    scale, offset = values
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
        raise InputError(
            f"variable {name!r}: scale_factor={scale}, add_offset={offset}; statistics of "
            "encoded data need a positive, finite scale and a finite offset; decode the data "
            "first (xarray.decode_cf, or load_cube(decode=True))")
    return scale, offset


def _band_label(array: xr.DataArray) -> Hashable:
    if array.name is not None:
        return array.name
    if BAND in array.coords and array[BAND].ndim == 0:
        value: Hashable = array[BAND].values.item()
        return value
    return "value"


def _as_mask(mask: Any, like: xr.DataArray) -> xr.DataArray:
    """Broadcast a DataArray or numpy mask to a boolean DataArray of ``like``'s dims."""
    if isinstance(mask, xr.DataArray):
        missing = [d for d in mask.dims if d not in like.dims]
        if missing:
            raise InputError(
                f"the mask has dims {tuple(mask.dims)} but the data only {tuple(like.dims)}; "
                "the mask must be on the data's pixel grid (and dates)"
            )
        for dim in mask.dims:
            if mask.sizes[dim] != like.sizes[dim]:
                raise InputError(
                    f"the mask has {mask.sizes[dim]} {dim} but the data {like.sizes[dim]}; "
                    "resample or select the mask to the data's grid first "
                    "(a 20 m SCL mask does not fit 10 m bands)"
                )
        mask = mask.drop_vars(list(mask.coords)).variable
        mask = xr.DataArray(mask)
    else:
        array = mask if isinstance(mask, da.Array) else np.asarray(mask)
        trailing = tuple(like.shape[like.ndim - array.ndim:])
        if array.ndim > like.ndim or tuple(array.shape) != trailing:
            raise InputError(
                f"a mask of shape {tuple(array.shape)} does not fit data of shape "
                f"{tuple(like.shape)} (dims {tuple(like.dims)}); give a mask of the trailing "
                "shape, e.g. (y, x), or a DataArray with named dims"
            )
        mask = xr.DataArray(array, dims=like.dims[like.ndim - array.ndim:])
    if mask.dtype != bool:
        raise InputError(
            f"the mask must be boolean (True = pixel excluded), not {mask.dtype}; "
            "e.g. mask = scl.isin([3, 8, 9, 10])"
        )
    plain = like.drop_vars(list(like.coords)).variable
    expanded = mask.variable.set_dims(dict(zip(like.dims, like.shape, strict=True)))
    expanded = expanded.transpose(*plain.dims)
    return xr.DataArray(expanded)


def variables(data: xr.DataArray | xr.Dataset, *, mask: Any = None,
              nodata: float | None = None) -> list[Variable]:
    """Split the input into variables with spatial dims last, masks and nodata resolved."""
    if isinstance(data, xr.Dataset):
        names = list(data.data_vars)
        if not names:
            raise InputError("the Dataset has no data variables to reduce")
        arrays = [(name, data[name]) for name in names]
    elif isinstance(data, xr.DataArray):
        arrays = [(None, data)]
    else:
        raise InputError(
            f"data must be an xarray DataArray or Dataset, not {type(data).__name__}; wrap numpy "
            "arrays with xarray and give them a CRS (rioxarray .rio.write_crs)"
        )
    y, x = spatial_dims(data)
    result = []
    for position, (name, array) in enumerate(arrays):
        if y not in array.dims or x not in array.dims:
            raise InputError(
                f"variable {name!r} lacks the spatial dims {y}/{x}; keep only band variables "
                "in the Dataset"
            )
        lead = [d for d in array.dims if d not in (y, x)]
        array = array.transpose(*lead, y, x)
        if isinstance(data, xr.Dataset) and BAND in array.dims:
            raise InputError(
                f"variable {name!r} has a {BAND!r} dimension; a Dataset's variables are its "
                "bands; use a DataArray for (band, y, x) data, or split it: .to_dataset('band')"
            )
        plain_mask = mask is not None and not isinstance(mask, xr.DataArray)
        if plain_mask and isinstance(data, xr.Dataset) and np.ndim(mask) != 2:
            raise InputError("a numpy mask for a Dataset must be 2-D (y, x); use a DataArray")
        var_mask = None if mask is None else _as_mask(mask, array)
        band = None if BAND in array.dims else (name if name is not None else _band_label(array))
        scale, offset = _encoding_of(array, name if name is not None else band)
        result.append(Variable(band=band, position=position, array=array, mask=var_mask,
                               nodata=_nodata_of(array, nodata), scale=scale, offset=offset))
    return result


def resolve_labels(data: xr.DataArray | xr.Dataset, parcels: Any, *, id_column: str,
                   buffer: float) -> ParcelLabels:
    """Labels for the data's grid: build them, or check that the given ones fit."""
    from cbm_dask.reduce.labels import build_labels

    grid: PixelGrid = grid_of(data)
    if isinstance(parcels, ParcelLabels):
        if not parcels.grid.matches(grid):
            raise InputError(
                f"the labels were built for {parcels.grid.describe()} but the data is on "
                f"{grid.describe()}; build labels for this grid with build_labels(parcels, data)"
            )
        if buffer and buffer != parcels.buffer:
            raise InputError(
                f"buffer={buffer} differs from the labels' buffer {parcels.buffer}; the buffer "
                "is applied when labels are built: build_labels(parcels, grid, buffer=...)"
            )
        return parcels
    return build_labels(parcels, grid, id_column=id_column, buffer=buffer)


def kernel_array(values: Any) -> np.ndarray:
    """Convert pixels to what the kernels accept: native byte order, no bool/float16, C order."""
    array = plane(values)
    if array.dtype == bool:
        array = array.view(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind not in "uif":
        raise InputError(f"cannot compute statistics of {array.dtype} pixels; use numbers")
    return np.ascontiguousarray(array)


def plane(values: Any) -> np.ndarray:
    """Return the 2-D plane of a slice or Dask block (leading axes of length 1 dropped)."""
    array = np.asarray(values)
    if array.ndim > 2:
        if any(n != 1 for n in array.shape[:-2]):
            raise ValueError(f"expected one 2-D plane, got shape {array.shape}")
        array = array.reshape(array.shape[-2:])
    return array


_NO_MASK = np.zeros((1, 1), dtype=bool)


def mask_array(mask: Any) -> tuple[np.ndarray, bool]:
    """``(mask, use_mask)`` arguments of the kernels."""
    if mask is None:
        return _NO_MASK, False
    return np.ascontiguousarray(plane(mask).astype(bool, copy=False)), True
