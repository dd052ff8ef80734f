"""cbm_dask: Checks by Monitoring for CAP paying agencies on Dask and PostGIS.

The main verbs are re-exported here and imported lazily (numba, odc-stac and
distributed load only when first used)::

    cbm_dask.zonal_stats(cube, parcels)      # per-parcel statistics of any xarray cube
    cbm_dask.build_labels(parcels, grid)     # rasterise once per grid
    cbm_dask.scl_histogram(scl, parcels)     # per-parcel SCL class counts
    cbm_dask.load_cube(images)               # lazy odc-stac cube on native grids

and the batch extraction into PostGIS is ``cbm_dask.extract.extract(["dataset"])``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from cbm_dask._version import __version__
from cbm_dask.errors import CbmError

_LAZY = {
    "zonal_stats": "cbm_dask.reduce",
    "build_labels": "cbm_dask.reduce",
    "scl_histogram": "cbm_dask.reduce",
    "load_cube": "cbm_dask.load.cube",
}

__all__ = ["CbmError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cbm_dask' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
