"""STAC collections of the Sentinel items, and the extents that cover them (pure).

:func:`collection_document` writes every collection (the archive's and the
synthetic world's); :func:`s2_collection` and :func:`s1_collection` are the
archive's ``sentinel-2-l2a`` and ``sentinel-1-backscatter`` documents in the
Earth Search v1 layout (``item_assets``).  :func:`item_extent` and
:func:`merge_extent` grow a registered collection to cover new items.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cbm_dask.archive.items import S2_BANDS
from cbm_dask.errors import InputError
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S2_L2A
from cbm_dask.sentinel.stac import (
    COG_MEDIA_TYPE,
    COPERNICUS_LICENSE,
    EO_EXTENSION,
    ITEM_ASSETS_EXTENSION,
    RASTER_EXTENSION,
    SAR_EXTENSION,
    STAC_VERSION,
)

__all__ = [
    "collection_document",
    "item_assets_of",
    "item_extent",
    "merge_extent",
    "s1_collection",
    "s2_collection",
]

_ARCHIVE_PROVIDERS = (
    {"name": "ESA", "roles": ["producer", "licensor"],
     "url": "https://earth.esa.int/web/guest/home"},
    {"name": "cbm_dask", "roles": ["processor", "host"]},
)
_COPERNICUS_LINKS = ({"rel": "license", "href": COPERNICUS_LICENSE,
                      "title": "Copernicus Sentinel data terms"},)


def item_extent(items: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[str | None]]:
    """Return the union bbox and the ``[first, last]`` time of ``items``.

    Raises
    ------
    InputError
        When no item has a bbox.
    """
    boxes = [item["bbox"] for item in items if item.get("bbox")]
    if not boxes:
        raise InputError("no item has a bbox; every STAC item needs one")
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]
    stamps: list[str] = []
    for item in items:
        props = item.get("properties", {})
        for key in ("start_datetime", "datetime", "end_datetime"):
            if props.get(key):
                stamps.append(str(props[key]))
    stamps.sort(key=_sortable_time)
    return bbox, [stamps[0] if stamps else None, stamps[-1] if stamps else None]


def _sortable_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def merge_extent(
    collection: Mapping[str, Any], bbox: Sequence[float], interval: Sequence[str | None],
) -> dict[str, Any] | None:
    """Return ``collection`` with its extent grown to cover ``bbox``/``interval``, None if it does.

    Only the first (overall) bbox and interval are grown, as STAC prescribes.
    """
    doc = dict(collection)
    extent = dict(doc.get("extent") or {})
    spatial = dict(extent.get("spatial") or {})
    temporal = dict(extent.get("temporal") or {})
    boxes = [list(b) for b in spatial.get("bbox") or []]
    intervals = [list(i) for i in temporal.get("interval") or []]
    changed = False
    if not boxes:
        boxes, changed = [list(bbox)], True
    else:
        old = boxes[0]
        new = [min(old[0], bbox[0]), min(old[1], bbox[1]),
               max(old[2], bbox[2]), max(old[3], bbox[3])]
        if new != old:
            boxes[0], changed = new, True
    if not intervals:
        intervals, changed = [list(interval)], True
    else:
        start, end = intervals[0][0], intervals[0][1]
        new_start, new_end = start, end
        first, last = interval[0], interval[1]
        if first and start is not None and _sortable_time(first) < _sortable_time(start):
            new_start = first
        if last and end is not None and _sortable_time(last) > _sortable_time(end):
            new_end = last
        if [new_start, new_end] != [start, end]:
            intervals[0], changed = [new_start, new_end], True
    if not changed:
        return None
    spatial["bbox"] = boxes
    temporal["interval"] = intervals
    extent.update(spatial=spatial, temporal=temporal)
    doc["extent"] = extent
    return doc


def item_assets_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``item_assets`` that describe ``item``'s assets (each asset less its href)."""
    return {key: {k: v for k, v in asset.items() if k != "href"}
            for key, asset in item["assets"].items()}


def collection_document(
    *,
    collection_id: str,
    title: str,
    description: str,
    keywords: Sequence[str],
    license: str,
    links: Sequence[Mapping[str, str]],
    providers: Sequence[Mapping[str, Any]],
    extensions: Sequence[str],
    bbox: Sequence[float],
    interval: Sequence[str | None],
    summaries: Mapping[str, Any],
    item_assets: Mapping[str, Any],
) -> dict[str, Any]:
    """Return a STAC collection document with one overall extent and ``item_assets``.

    ``interval`` holds RFC 3339 texts (:func:`~cbm_dask.archive.items.stac_datetime`)
    or None for an open end.
    """
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": STAC_VERSION,
        "stac_extensions": list(extensions),
        "title": title,
        "description": description,
        "keywords": list(keywords),
        "license": license,
        "links": [dict(link) for link in links],
        "providers": [dict(provider) for provider in providers],
        "extent": {"spatial": {"bbox": [list(bbox)]},
                   "temporal": {"interval": [list(interval)]}},
        "summaries": dict(summaries),
        "item_assets": dict(item_assets),
    }


def s2_collection(bbox: Sequence[float], interval: Sequence[str | None],
                  platforms: Sequence[str] = ()) -> dict[str, Any]:
    """Build the archive's ``sentinel-2-l2a`` collection (Earth Search v1 layout)."""
    item_assets: dict[str, Any] = {}
    for band in S2_BANDS.values():
        entry: dict[str, Any] = {"type": COG_MEDIA_TYPE, "title": band.title}
        if band.kind == "reflectance":
            entry["eo:bands"] = [{"name": band.band_id, "common_name": band.common_name,
                                  "center_wavelength": band.center_wavelength,
                                  "full_width_half_max": band.fwhm}]
            entry["roles"] = ["data", "reflectance"]
            entry["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001}]
        else:
            entry["roles"] = ["data"]
            entry["raster:bands"] = [{"nodata": 0, "data_type": "uint8"
                                      if band.kind == "classification" else "uint16"}]
        item_assets[band.key] = entry
    summaries: dict[str, Any] = {"constellation": ["sentinel-2"], "instruments": ["msi"]}
    if platforms:
        summaries["platform"] = sorted(set(platforms))
    return collection_document(
        collection_id=S2_L2A, title="Sentinel-2 Level-2A",
        description=(
            "Sentinel-2 L2A surface reflectance COGs of the cbm_dask archive: one single-band "
            "COG per band, Earth Search v1 asset keys; raster:bands scale/offset convert DN "
            "to reflectance (offset -0.1 for processing baseline >= 04.00 DN, 0 for "
            "harmonised DN)."),
        keywords=["sentinel", "earth observation", "esa", "msi", "l2a"],
        license="proprietary", links=_COPERNICUS_LINKS, providers=_ARCHIVE_PROVIDERS,
        extensions=[ITEM_ASSETS_EXTENSION, EO_EXTENSION, RASTER_EXTENSION],
        bbox=bbox, interval=interval, summaries=summaries, item_assets=item_assets,
    )


def s1_collection(bbox: Sequence[float], interval: Sequence[str | None]) -> dict[str, Any]:
    """Build the archive's ``sentinel-1-backscatter`` collection (``item_assets`` vv/vh)."""
    item_assets = {
        pol.lower(): {"type": COG_MEDIA_TYPE, "title": f"{pol} Data", "roles": ["data"],
                      "raster:bands": [{"nodata": "nan", "data_type": "float32"}]}
        for pol in ("VV", "VH")
    }
    summaries = {"constellation": ["sentinel-1"], "sar:instrument_mode": ["IW"],
                 "sar:frequency_band": ["C"], "sar:center_frequency": [5.405],
                 "sar:polarizations": [["VV", "VH"]], "sar:product_type": ["GRD"]}
    return collection_document(
        collection_id=S1_BACKSCATTER, title="Sentinel-1 backscatter",
        description=(
            "Sentinel-1 IW backscatter COGs of the cbm_dask archive (float32, nodata NaN); "
            "cbm:backscatter names the coefficient and scale, e.g. gamma0_ellipsoid_linear."),
        keywords=["sentinel", "sar", "c-band", "backscatter"],
        license="proprietary", links=_COPERNICUS_LINKS, providers=_ARCHIVE_PROVIDERS,
        extensions=[ITEM_ASSETS_EXTENSION, SAR_EXTENSION, RASTER_EXTENSION],
        bbox=bbox, interval=interval, summaries=summaries, item_assets=item_assets,
    )
