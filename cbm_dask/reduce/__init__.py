"""Parcel reduction engine: per-parcel statistics of raster bands, in memory or on Dask.

Rasterise the parcels once per pixel grid with :func:`build_labels`, then reduce
every band and date on that grid with :func:`zonal_stats` (count, mean, std, min,
max, percentiles) and :func:`scl_histogram` (scene-classification counts).  The
pixel rule and the statistics' definitions are recorded in
``docs/decisions/0005-pixel-rule-and-percentiles.md``.
"""

from cbm_dask.reduce.grid import PixelGrid, grid_of
from cbm_dask.reduce.labels import ParcelLabels, build_labels
from cbm_dask.reduce.scl import SCL_CLASSES, scl_histogram
from cbm_dask.reduce.zonal import DEFAULT_STATS, zonal_stats

__all__ = [
    "DEFAULT_STATS",
    "SCL_CLASSES",
    "ParcelLabels",
    "PixelGrid",
    "build_labels",
    "grid_of",
    "scl_histogram",
    "zonal_stats",
]
