"""The Sentinel image archive: COGs in an S3 object store, their STAC items in a STAC API.

* :func:`publish` uploads a synthetic world or folders of real COGs and
  registers their items (``cbm archive publish``);
* :func:`plan_directory` decides what would be published, without any service;
* :mod:`cbm_dask.archive.items` builds Earth Search shaped items with pystac
  (:func:`s2_item`, :func:`s1_item`, the ``s2:*`` fields in
  :func:`earth_search_fields`), for the archive and the synthetic world alike;
* :mod:`cbm_dask.archive.collections` builds their collections and extents;
* :mod:`cbm_dask.archive.raster` holds the facts of single-band COGs
  (:class:`RasterInfo`) and the footprints derived from them.
"""

from cbm_dask.archive.collections import (
    collection_document,
    item_assets_of,
    item_extent,
    merge_extent,
    s1_collection,
    s2_collection,
)
from cbm_dask.archive.items import (
    S1_EXTENSIONS,
    S2_BANDS,
    S2_EXTENSIONS,
    SCL_PROPERTIES,
    Acquisition,
    ItemGrid,
    S2Band,
    SafeMetadata,
    SatOrbit,
    earth_search_fields,
    s1_item,
    s2_item,
    scl_properties,
    stac_datetime,
)
from cbm_dask.archive.publish import PublishReport, publish
from cbm_dask.archive.raster import RasterInfo, footprint, grid_tile, nodata_json
from cbm_dask.archive.sources import PlannedItem, PublishPlan, Upload, plan_directory

__all__ = [
    "S1_EXTENSIONS",
    "S2_BANDS",
    "S2_EXTENSIONS",
    "SCL_PROPERTIES",
    "Acquisition",
    "ItemGrid",
    "PlannedItem",
    "PublishPlan",
    "PublishReport",
    "RasterInfo",
    "S2Band",
    "SafeMetadata",
    "SatOrbit",
    "Upload",
    "collection_document",
    "earth_search_fields",
    "footprint",
    "grid_tile",
    "item_assets_of",
    "item_extent",
    "merge_extent",
    "nodata_json",
    "plan_directory",
    "publish",
    "s1_collection",
    "s1_item",
    "s2_collection",
    "s2_item",
    "scl_properties",
    "stac_datetime",
]
