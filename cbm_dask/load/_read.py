"""Reading bands onto a group's grid: odc-stac, or window reads of the stored values.

Decoded cubes are read by ``odc.stac.load``.  Stored values (``decode=False``) are
read by window reads straight into each block (:mod:`cbm_dask.load._native`) when
every asset of a band lies on the group's grid, else by odc-stac as well.  Both
read with the one :class:`~cbm_dask.load.gdal_env.GdalEnv` of the call, which
travels inside the Dask graph.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from odc.loader import RioDriver

from cbm_dask.load._items import BandSource, by_position, stac_item
from cbm_dask.load._native import NativeSource, native_array, native_offset
from cbm_dask.load.gdal_env import GdalEnv
from cbm_dask.sentinel.records import ImageRecord

__all__ = ["GroupReader", "applied"]


def applied(env: GdalEnv | None) -> contextlib.AbstractContextManager[object]:
    """Make ``env`` current in this thread (None: leave the thread's configuration)."""
    return env.apply() if env is not None else contextlib.nullcontext()


def _env_factory(env: GdalEnv | None) -> Callable[[], contextlib.AbstractContextManager[object]]:
    """Return a picklable callable making ``env`` current, for the tasks of window reads."""
    return env.apply if env is not None else contextlib.nullcontext


class _EnvRioDriver(RioDriver):
    """odc-loader's rasterio driver with a fixed GDAL environment for every task."""

    def __init__(self, env: Mapping[str, Any]) -> None:
        super().__init__()
        self._env = dict(env)

    def capture_env(self) -> dict[str, Any]:
        return dict(self._env)


@dataclass(frozen=True, eq=False)
class GroupReader:
    """Reads the bands of ``records`` onto a group's grid, lazily.

    Attributes
    ----------
    records
        The images, one time step each, in order.
    sources
        Per record, its bands' assets.
    chunks
        Dask chunk sizes by dimension (-1 or None: whole axis).
    env
        How to read the hrefs; None: odc-stac's own configuration.
    decode
        Whether the values will be decoded (read by odc-stac) or stay stored (window
        reads where possible).
    """

    records: Sequence[ImageRecord]
    sources: Sequence[Mapping[str, BandSource]]
    chunks: Mapping[str, Any]
    env: GdalEnv | None
    decode: bool
    _items: list[pystac.Item] = field(init=False, repr=False)
    _driver: RioDriver | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        items = [stac_item(record, per_record)
                 for record, per_record in zip(self.records, self.sources, strict=True)]
        object.__setattr__(self, "_items", items)
        driver = _EnvRioDriver(self.env.task_env()) if self.env is not None else None
        object.__setattr__(self, "_driver", driver)

    def read(self, bands: list[str], geobox: GeoBox) -> xr.Dataset:
        """Return the ``(time, y, x)`` pixels of ``bands`` on ``geobox`` as the files hold them."""
        return self._odc(bands, geobox) if self.decode else self._stored(bands, geobox)

    def _odc(self, bands: list[str], geobox: GeoBox) -> xr.Dataset:
        with applied(self.env):
            return odc.stac.load(
                self._items, bands=bands, geobox=geobox, groupby=by_position,
                resampling="nearest", chunks=dict(self.chunks), driver=self._driver,
                use_overviews=False,  # SCL on a coarser grid: nearest of full-resolution pixels
            )

    def _stored(self, bands: list[str], geobox: GeoBox) -> xr.Dataset:
        """Read stored values: window reads when every asset is on the grid, else odc-stac."""
        arrays = {}
        for band in bands:
            placed = _placed(self.sources, band, geobox)
            if placed is None:
                return self._odc(bands, geobox)
            per_time, dtype, fill = placed
            arrays[band] = (("time", *geobox.dimensions), native_array(
                per_time, geobox, dtype=dtype, fill=fill,
                chunks=(_chunk(self.chunks, "y", geobox), _chunk(self.chunks, "x", geobox)),
                env=_env_factory(self.env)))
        times = np.array([r.datetime.astimezone(dt.UTC).replace(tzinfo=None)
                          for r in self.records], dtype="datetime64[us]")
        coords = {"time": times, **xr_coords(geobox)}
        return xr.Dataset(arrays, coords=coords)


def _placed(sources: Sequence[Mapping[str, BandSource]], band: str, geobox: GeoBox,
            ) -> tuple[list[NativeSource | None], str, float] | None:
    """Place the band's assets on ``geobox``: sources, pixel type, fill; None if one is off it."""
    per_time: list[NativeSource | None] = []
    dtypes: set[str] = set()
    fill: float | None = None
    for per_record in sources:
        src = per_record.get(band)
        if src is None:
            per_time.append(None)
            continue
        offset = native_offset(src.transform, geobox)
        if offset is None:
            return None
        per_time.append(NativeSource(src.asset.href, *offset, src.shape))
        dtypes.add(src.data_type)
        fill = src.nodata if fill is None else fill
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    if fill is None:
        fill = math.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0.0
    return per_time, dtype, float(fill)


def _chunk(chunking: Mapping[str, Any], dim: str, geobox: GeoBox) -> int:
    """Return a spatial chunk size from ``chunks`` (-1 or None: the whole axis)."""
    size = geobox.shape.y if dim == "y" else geobox.shape.x
    value = chunking.get(dim, chunking.get("latitude" if dim == "y" else "longitude", -1))
    return size if value in (None, -1) else int(value)
