"""The Sentinel vocabulary every layer of cbm_dask speaks.

Band names and kinds (:mod:`~cbm_dask.sentinel.bands`), scene classification
classes (:mod:`~cbm_dask.sentinel.scl`), collection ids
(:mod:`~cbm_dask.sentinel.collections`), MGRS tiles (:mod:`~cbm_dask.sentinel.mgrs`),
media types and STAC extension URLs (:mod:`~cbm_dask.sentinel.stac`) and the
normalised image and asset records (:mod:`~cbm_dask.sentinel.records`).

The package is pure and sits at the bottom of the package: it imports nothing of
cbm_dask but :mod:`cbm_dask.errors` and :mod:`cbm_dask.config`.
"""

from cbm_dask.sentinel.bands import (
    BANDS,
    BOA_ADD_OFFSET_DN,
    BOA_OFFSET_BASELINE,
    CARDS,
    DEFAULT_SCALE,
    POLARISATIONS,
    BandKind,
    BandSpec,
    Card,
    asset_band_name,
    band_spec,
    bands_of_card,
    canonical_band,
    parse_asset_key,
    resolve_requested,
)
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A
from cbm_dask.sentinel.mgrs import (
    MgrsTile,
    mgrs_tile_at,
    mgrs_tile_epsg,
    mgrs_tile_geometry,
    mgrs_tile_of_item,
    normal_mgrs_tile,
)
from cbm_dask.sentinel.records import AssetRecord, ImageRecord
from cbm_dask.sentinel.scl import SCL_CLASS_COUNT, SCL_CLASSES, scl_invalid
from cbm_dask.sentinel.stac import (
    COG_MEDIA_TYPE,
    COPERNICUS_LICENSE,
    EO_EXTENSION,
    GRID_EXTENSION,
    ITEM_ASSETS_EXTENSION,
    MGRS_EXTENSION,
    PROCESSING_EXTENSION,
    PROJECTION_EXTENSION,
    RASTER_EXTENSION,
    SAR_EXTENSION,
    SAT_EXTENSION,
    SENTINEL2_EXTENSION,
    STAC_VERSION,
    VIEW_EXTENSION,
)

__all__ = [
    "BANDS",
    "BOA_ADD_OFFSET_DN",
    "BOA_OFFSET_BASELINE",
    "CARDS",
    "COG_MEDIA_TYPE",
    "COPERNICUS_LICENSE",
    "DEFAULT_SCALE",
    "EO_EXTENSION",
    "GRID_EXTENSION",
    "ITEM_ASSETS_EXTENSION",
    "MGRS_EXTENSION",
    "POLARISATIONS",
    "PROCESSING_EXTENSION",
    "PROJECTION_EXTENSION",
    "RASTER_EXTENSION",
    "S1_BACKSCATTER",
    "S1_COHERENCE",
    "S2_L2A",
    "SAR_EXTENSION",
    "SAT_EXTENSION",
    "SCL_CLASSES",
    "SCL_CLASS_COUNT",
    "SENTINEL2_EXTENSION",
    "STAC_VERSION",
    "VIEW_EXTENSION",
    "AssetRecord",
    "BandKind",
    "BandSpec",
    "Card",
    "ImageRecord",
    "MgrsTile",
    "asset_band_name",
    "band_spec",
    "bands_of_card",
    "canonical_band",
    "mgrs_tile_at",
    "mgrs_tile_epsg",
    "mgrs_tile_geometry",
    "mgrs_tile_of_item",
    "normal_mgrs_tile",
    "parse_asset_key",
    "resolve_requested",
    "scl_invalid",
]
