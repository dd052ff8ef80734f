"""The Sentinel image archive: COGs in an S3 object store, their STAC items in a STAC API.

* :func:`publish` uploads a synthetic world or folders of real COGs and
  registers their items (``cbm archive publish``);
* :func:`plan_directory` decides what would be published, without any service;
* :mod:`cbm_dask.archive.metadata` builds Earth Search shaped items from raster
  facts (pure).
"""

from cbm_dask.archive.metadata import (
    S1_BACKSCATTER,
    S2_BANDS,
    S2_L2A,
    RasterInfo,
    s1_item,
    s2_item,
)
from cbm_dask.archive.publish import PublishReport, publish
from cbm_dask.archive.sources import PlannedItem, PublishPlan, Upload, plan_directory

__all__ = [
    "S1_BACKSCATTER",
    "S2_BANDS",
    "S2_L2A",
    "PlannedItem",
    "PublishPlan",
    "PublishReport",
    "RasterInfo",
    "Upload",
    "plan_directory",
    "publish",
    "s1_item",
    "s2_item",
]
