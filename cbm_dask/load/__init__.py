"""Loading Sentinel imagery as lazy, Dask-backed xarray cubes on the native pixel grid.

The public names, imported lazily (odc-stac and numba load only when a cube is
built; reading settings alone stay light)::

    from cbm_dask.load import load_cube, capture_gdal_env

    cube = load_cube(records, bands=["B04", "B08"], gdal_env=capture_gdal_env())

* :func:`load_cube`, its result :class:`Cube` (:mod:`cbm_dask.load.cube`);
* :func:`split_by_epsg`, :func:`native_geobox`: the one-CRS rule and the grid of
  a pixel-size group; :func:`to_records`: the inputs as catalogue records;
  :func:`solar_day`: the date by which same-day images are fused;
* :class:`GdalEnv`, :func:`capture_gdal_env`, :func:`configure_odc_stac`,
  :func:`s3_gdal_options`: the GDAL settings to read the archive with, captured
  once and applied in every Dask task (:mod:`cbm_dask.load.gdal_env`).

The modules with a leading underscore are the loader's inside.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbm_dask.load._grid import native_geobox, split_by_epsg
    from cbm_dask.load._items import to_records
    from cbm_dask.load._post import solar_day
    from cbm_dask.load.cube import Cube, GdalEnvLike, GroupBy, ImagesLike, load_cube
    from cbm_dask.load.gdal_env import (
        GdalEnv,
        capture_gdal_env,
        configure_odc_stac,
        s3_gdal_options,
    )

_LAZY = {
    "Cube": "cbm_dask.load.cube",
    "GdalEnvLike": "cbm_dask.load.cube",
    "GroupBy": "cbm_dask.load.cube",
    "ImagesLike": "cbm_dask.load.cube",
    "load_cube": "cbm_dask.load.cube",
    "native_geobox": "cbm_dask.load._grid",
    "split_by_epsg": "cbm_dask.load._grid",
    "to_records": "cbm_dask.load._items",
    "solar_day": "cbm_dask.load._post",
    "GdalEnv": "cbm_dask.load.gdal_env",
    "capture_gdal_env": "cbm_dask.load.gdal_env",
    "configure_odc_stac": "cbm_dask.load.gdal_env",
    "s3_gdal_options": "cbm_dask.load.gdal_env",
}

__all__ = [
    "Cube",
    "GdalEnv",
    "GdalEnvLike",
    "GroupBy",
    "ImagesLike",
    "capture_gdal_env",
    "configure_odc_stac",
    "load_cube",
    "native_geobox",
    "s3_gdal_options",
    "solar_day",
    "split_by_epsg",
    "to_records",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cbm_dask.load' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
