"""Media types, licence links and STAC extension schema URLs written into Sentinel items."""

from __future__ import annotations

__all__ = [
    "COG_MEDIA_TYPE",
    "COPERNICUS_LICENSE",
    "EO_EXTENSION",
    "GRID_EXTENSION",
    "ITEM_ASSETS_EXTENSION",
    "MGRS_EXTENSION",
    "PROCESSING_EXTENSION",
    "PROJECTION_EXTENSION",
    "RASTER_EXTENSION",
    "SAR_EXTENSION",
    "SAT_EXTENSION",
    "SENTINEL2_EXTENSION",
    "STAC_VERSION",
    "VIEW_EXTENSION",
]

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
"""Media type of a Cloud Optimized GeoTIFF asset."""

STAC_VERSION = "1.1.0"
"""STAC version of the items and collections written: pystac's, whose schemas it ships."""

COPERNICUS_LICENSE = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
"""The licence terms of Copernicus Sentinel data (the ``license`` link of archived items)."""

_EXTENSIONS = "https://stac-extensions.github.io"

EO_EXTENSION = f"{_EXTENSIONS}/eo/v1.1.0/schema.json"
GRID_EXTENSION = f"{_EXTENSIONS}/grid/v1.1.0/schema.json"
ITEM_ASSETS_EXTENSION = f"{_EXTENSIONS}/item-assets/v1.0.0/schema.json"
MGRS_EXTENSION = f"{_EXTENSIONS}/mgrs/v1.0.0/schema.json"
PROCESSING_EXTENSION = f"{_EXTENSIONS}/processing/v1.1.0/schema.json"
PROJECTION_EXTENSION = f"{_EXTENSIONS}/projection/v1.1.0/schema.json"
RASTER_EXTENSION = f"{_EXTENSIONS}/raster/v1.1.0/schema.json"
SAR_EXTENSION = f"{_EXTENSIONS}/sar/v1.0.0/schema.json"
SAT_EXTENSION = f"{_EXTENSIONS}/sat/v1.0.0/schema.json"
SENTINEL2_EXTENSION = f"{_EXTENSIONS}/sentinel-2/v1.0.0/schema.json"
VIEW_EXTENSION = f"{_EXTENSIONS}/view/v1.0.0/schema.json"
