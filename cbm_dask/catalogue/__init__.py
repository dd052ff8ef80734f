"""The image catalogue (the JRC ``dias_catalogue``): STAC items normalised into ``images`` rows.

* :func:`normalise_item` turns a STAC item of any supported catalogue's shape into
  an :class:`ImageRecord` (pure);
* :func:`sync_catalogue` searches a STAC API and upserts the records, with a
  ``pending`` extraction per image for a parcel dataset;
* :func:`update_catalogue` is the daily sync of every dataset and collection, from the
  newest catalogued acquisition (:func:`update_window`);
* :func:`list_images` and :func:`read_images` read the catalogue back.
"""

from cbm_dask.catalogue.normalise import (
    ItemLike,
    image_card,
    normalise_item,
    processing_baseline,
    scale_offset,
)
from cbm_dask.catalogue.sync import (
    SyncResult,
    SyncWindow,
    UpdateSync,
    dataset_bbox,
    default_stac_url,
    list_images,
    newest_acquisition,
    parse_bbox,
    parse_date,
    read_images,
    sync_catalogue,
    update_catalogue,
    update_window,
    upsert_images,
)
from cbm_dask.errors import ItemError
from cbm_dask.sentinel.mgrs import mgrs_tile_of_item
from cbm_dask.sentinel.records import AssetRecord, ImageRecord

__all__ = [
    "AssetRecord",
    "ImageRecord",
    "ItemError",
    "ItemLike",
    "SyncResult",
    "SyncWindow",
    "UpdateSync",
    "dataset_bbox",
    "default_stac_url",
    "image_card",
    "list_images",
    "mgrs_tile_of_item",
    "newest_acquisition",
    "normalise_item",
    "parse_bbox",
    "parse_date",
    "processing_baseline",
    "read_images",
    "scale_offset",
    "sync_catalogue",
    "update_catalogue",
    "update_window",
    "upsert_images",
]
