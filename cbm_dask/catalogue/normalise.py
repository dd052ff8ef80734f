"""STAC items of any catalogue's shape → one normalised image record (pure, no I/O).

The records are the rows of the ``images`` table (the JRC ``dias_catalogue``)
and the input of :func:`cbm_dask.load.cube.load_cube`.  The shapes read are
those of Earth Search v0/v1 (``sentinel-2-l2a``, ``sentinel-2-c1-l2a``,
``sentinel-1-grd``), the Planetary Computer, the Copernicus Data Space STAC 1.1
(``bands``, ``proj:code``, ``raster:scale``), stactools-sentinel2 and the
collections of the local archive (``sentinel-1-backscatter``,
``sentinel-1-coherence``).  See ``docs/catalogue-and-cubes.md`` for the fields
read and the rules applied.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, cast
from urllib.parse import urljoin, urlparse

import pystac
import shapely
import shapely.geometry

from cbm_dask.errors import ItemError
from cbm_dask.sentinel.bands import (
    BOA_ADD_OFFSET_DN,
    BOA_OFFSET_BASELINE,
    DEFAULT_SCALE,
    BandSpec,
    Card,
    asset_band_name,
    band_spec,
    parse_asset_key,
)
from cbm_dask.sentinel.mgrs import mgrs_tile_epsg, mgrs_tile_of_item
from cbm_dask.sentinel.records import (
    AssetRecord,
    ImageRecord,
    footprint_multipolygon,
    optional_float,
    optional_int,
    utc_datetime,
)

__all__ = [
    "ItemLike",
    "normalise_item",
    "image_card",
    "processing_baseline",
    "scale_offset",
]

ItemLike: TypeAlias = pystac.Item | Mapping[str, Any]
"""A STAC item as a :class:`pystac.Item` or as its GeoJSON dictionary."""

_BASELINE_IN_ID = re.compile(r"_N(\d{2})\.?(\d{2})(?=_|\.|$)")
_ORBIT_IN_ID = re.compile(r"_R(\d{3})(?=_)")
_PLATFORM_IN_ID = re.compile(r"^S([12])([A-D])_", re.IGNORECASE)
_NON_RASTER_ROLES = {"thumbnail", "overview", "metadata", "visual", "tiles"}


def _epsg_of(fields: Mapping[str, Any]) -> int | None:
    epsg = optional_int(fields.get("proj:epsg"))
    if epsg is not None:
        return epsg
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return optional_int(code.split(":", 1)[1])
    return None


def _first_band(asset: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("bands", "raster:bands"):
        entries = asset.get(key)
        if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
            return cast(Mapping[str, Any], entries[0])
    return {}


def _declared(asset: Mapping[str, Any], name: str) -> Any:
    """Value of a raster field at asset level (STAC 1.1) or in its first band (1.0 / 1.1)."""
    band = _first_band(asset)
    raster_v1 = asset.get("raster:bands")
    first_v1 = raster_v1[0] if isinstance(raster_v1, list) and raster_v1 else {}
    for source, key in (
        (asset, f"raster:{name}"), (asset, name), (band, f"raster:{name}"), (band, name),
        (first_v1, name),
    ):
        if isinstance(source, Mapping) and source.get(key) is not None:
            return source[key]
    return None


# ---------------------------------------------------------------------------
# field rules (public: the tests and the docs refer to them)


def _parse_baseline(text: str) -> str | None:
    match = re.fullmatch(r"0?(\d{1,2})\.(\d{1,2})", text.strip())
    if match:
        return f"{int(match.group(1)):02d}.{int(match.group(2)):02d}"
    match = _BASELINE_IN_ID.search(f"_{text.strip()}_")
    if match:
        return f"{match.group(1)}.{match.group(2)}"
    return None


def processing_baseline(properties: Mapping[str, Any], item_id: str = "") -> str | None:
    """Return the Sentinel-2 processing baseline as ``NN.NN``.

    Read from ``s2:processing_baseline``, ``processing:version`` (CDSE),
    ``sentinel:processing_baseline`` (Earth Search v0), else derived from a product
    or granule id in the properties or the item id: ``…_N0511_…`` → ``05.11``.
    """
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        value = properties.get(key)
        if value is not None:
            parsed = _parse_baseline(str(value))
            if parsed:
                return parsed
    for key in ("s2:product_uri", "sentinel:product_id", "s2:granule_id", "s2:tile_id",
                "s2:datastrip_id", "s2:datatake_id", "eopf:datatake_id"):
        value = properties.get(key)
        if isinstance(value, str):
            match = _BASELINE_IN_ID.search(value)
            if match:
                return f"{match.group(1)}.{match.group(2)}"
    match = _BASELINE_IN_ID.search(item_id)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def image_card(
    collection: str, properties: Mapping[str, Any], asset_keys: Sequence[str], item_id: str = ""
) -> Card:
    """Decide the kind of image: ``s2``, ``bs`` or ``c6``.

    Raises
    ------
    ItemError
        For Sentinel-2 L1C, Sentinel-1 SLC, or anything that is not Sentinel.
    """
    text = " ".join(
        str(v) for v in (collection, properties.get("constellation"), properties.get("platform"))
        if v
    ).lower()
    product = str(
        properties.get("s2:product_type") or properties.get("product:type")
        or properties.get("sar:product_type") or ""
    ).upper()
    keys = [k.lower() for k in asset_keys]
    is_s1 = ("sentinel-1" in text or "sentinel 1" in text or "sar:instrument_mode" in properties
             or item_id.upper().startswith("S1"))
    if "coherence" in text or product in {"COH", "COHERENCE"} or any(
        k.startswith("coh") for k in keys
    ):
        return "c6"
    if is_s1:
        if product in {"SLC", "RAW", "OCN"}:
            raise ItemError(
                f"item {item_id!r} ({collection}): Sentinel-1 {product} products are not "
                "catalogued; use GRD/RTC backscatter or coherence collections"
            )
        return "bs"
    if "sentinel-2" in text or "sentinel 2" in text or item_id.upper().startswith("S2"):
        level = " ".join((product, str(properties.get("processing:level", "")), collection,
                          item_id)).upper()
        if "L1C" in level or "MSI1C" in level:
            raise ItemError(
                f"item {item_id!r} ({collection}): Sentinel-2 L1C is not supported; "
                "catalogue an L2A collection (surface reflectance with SCL)"
            )
        return "s2"
    raise ItemError(
        f"item {item_id!r} of collection {collection!r} is neither Sentinel-2 L2A nor "
        "Sentinel-1 backscatter/coherence (checked collection, constellation, platform, "
        "s2:product_type/sar:product_type); sync a Sentinel collection"
    )


def scale_offset(
    spec: BandSpec, asset: Mapping[str, Any], properties: Mapping[str, Any],
    baseline: str | None,
) -> tuple[float, float]:
    """Return the effective ``(scale, offset)`` so that ``value = DN * scale + offset``.

    For Sentinel-2 reflectance bands:

    1. the scale is the declared one (``raster:bands[].scale``, ``raster:scale``),
       else 1/10000;
    2. if the item says its pixels are already harmonised
       (``earthsearch:boa_offset_applied: true``, or the older
       ``sentinel:boa_offset_applied``), the offset is 0 whatever ``raster:bands``
       declares: Earth Search subtracted the BOA_ADD_OFFSET when writing those COGs
       and its ``offset: -0.1`` on such items is stale;
    3. else a declared offset (``raster:bands[].offset``, ``raster:offset``) is used;
    4. else, for processing baseline ≥ 04.00, the ESA BOA_ADD_OFFSET of -1000 DN
       (offset ``-1000 * scale``) is applied; before 04.00 the offset is 0.

    Other bands use the declared scale and offset (AOT/WVP default to 1/1000,
    everything else to 1 and 0).
    """
    declared_scale = optional_float(_declared(asset, "scale"))
    declared_offset = optional_float(_declared(asset, "offset"))
    scale = declared_scale if declared_scale else DEFAULT_SCALE.get(spec.kind, 1.0)
    if spec.kind != "reflectance":
        return scale, declared_offset or 0.0
    harmonised = (properties.get("earthsearch:boa_offset_applied") is True
                  or properties.get("sentinel:boa_offset_applied") is True)
    if harmonised:
        return scale, 0.0
    if declared_offset is not None:
        return scale, declared_offset
    if baseline is not None:
        major, minor = (int(p) for p in baseline.split("."))
        if (major, minor) >= BOA_OFFSET_BASELINE:
            return scale, BOA_ADD_OFFSET_DN * scale
    return scale, 0.0


def _resolve_href(href: str, base: str | None) -> str:
    if urlparse(href).scheme or href.startswith("/") or base is None:
        return href
    return urljoin(base, href)


def _is_raster(asset: Mapping[str, Any]) -> bool:
    roles = {str(r).lower() for r in asset.get("roles") or ()}
    media = str(asset.get("type") or "").lower()
    if roles & _NON_RASTER_ROLES and "data" not in roles:
        return False
    return not media or media.startswith(("image/tiff", "application/x-geotiff")) or (
        "jp2" in media
    )


def _asset_record(
    key: str, asset: Mapping[str, Any], *, card: Card, item_epsg: int | None,
    item_props: Mapping[str, Any], baseline: str | None, base: str | None,
) -> AssetRecord:
    href = asset.get("href")
    if not isinstance(href, str) or not href:
        raise ItemError(f"asset {key!r} has no href")
    band: str | None = None
    key_res: int | None = None
    if _is_raster(asset):
        band, key_res = parse_asset_key(key, card)
        if band is None:
            band = asset_band_name(asset, card)
    raw_transform = asset.get("proj:transform")
    raw_shape = asset.get("proj:shape")
    if raw_transform is None and raw_shape is None:
        raw_transform, raw_shape = item_props.get("proj:transform"), item_props.get("proj:shape")
    transform = (
        tuple(float(v) for v in raw_transform[:6])
        if isinstance(raw_transform, list) and len(raw_transform) >= 6 else None
    )
    shape = (
        (int(raw_shape[0]), int(raw_shape[1]))
        if isinstance(raw_shape, list) and len(raw_shape) == 2 else None
    )
    resolution = (
        abs(transform[0]) if transform else
        optional_float(_first_band(asset).get("spatial_resolution"))
        or optional_float(asset.get("gsd"))
        or (float(key_res) if key_res else None)
    )
    scale = offset = None
    if band is not None:
        scale, offset = scale_offset(band_spec(band), asset, item_props, baseline)
    return AssetRecord(
        key=key,
        href=_resolve_href(href, base),
        type=asset.get("type"),
        roles=tuple(str(r) for r in asset.get("roles") or ()),
        band=band,
        resolution=resolution,
        epsg=_epsg_of(asset) or item_epsg,
        transform=transform,
        shape=shape,
        data_type=_declared(asset, "data_type"),
        nodata=optional_float(_declared(asset, "nodata")),
        scale=scale,
        offset=offset,
    )


def _item_dict(item: ItemLike) -> tuple[dict[str, Any], str | None]:
    if isinstance(item, pystac.Item):
        base = item.get_self_href()
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        for key, asset in item.assets.items():
            absolute = asset.get_absolute_href()
            if absolute:
                data["assets"][key]["href"] = absolute
        return data, base
    if not isinstance(item, Mapping):
        raise ItemError(f"expected a STAC item (pystac.Item or dict), got {type(item).__name__}")
    base = next(
        (link.get("href") for link in item.get("links") or ()
         if isinstance(link, Mapping) and link.get("rel") == "self"),
        None,
    )
    return dict(item), base


def normalise_item(item: ItemLike) -> ImageRecord:
    """Normalise one STAC item into an :class:`ImageRecord` (an ``images`` row).

    Parameters
    ----------
    item
        A :class:`pystac.Item` or its GeoJSON dictionary, of any of the shapes
        listed in the module docstring.

    Returns
    -------
    ImageRecord
        With the tile, orbit, EPSG, baseline, card and per-asset band names,
        grids and effective scale/offset filled in.

    Raises
    ------
    ItemError
        Naming the item when it has no id, no time, no footprint, no projection
        (neither ``proj:epsg``/``proj:code`` at item or asset level nor an MGRS
        tile), or is not a supported kind of image.
    """
    data, base = _item_dict(item)
    item_id = data.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ItemError("a STAC item without an 'id' cannot be catalogued; check the source")
    collection = str(data.get("collection") or "")
    props: dict[str, Any] = dict(data.get("properties") or {})
    where = f"item {item_id!r} of collection {collection or '(none)'!r}"
    raw_assets = data.get("assets") or {}
    if not isinstance(raw_assets, Mapping):
        raise ItemError(f"{where}: 'assets' must be an object of asset key -> asset")

    stamp = props.get("datetime") or props.get("start_datetime")
    if not stamp:
        raise ItemError(f"{where}: neither 'datetime' nor 'start_datetime' is set")
    try:
        when = utc_datetime(pystac.utils.str_to_datetime(str(stamp)))
    except ValueError as exc:
        raise ItemError(f"{where}: datetime {stamp!r} is not ISO 8601 ({exc})") from exc

    card = image_card(collection, props, list(raw_assets), item_id)

    geometry = data.get("geometry")
    if geometry:
        footprint = footprint_multipolygon(shapely.geometry.shape(geometry), item_id)
    elif data.get("bbox"):
        west, south, east, north = data["bbox"][:4]
        footprint = footprint_multipolygon(shapely.box(west, south, east, north), item_id)
    else:
        raise ItemError(f"{where}: it has neither a geometry nor a bbox")

    epsg = _epsg_of(props)
    if epsg is None:
        asset_codes = Counter(
            code for asset in raw_assets.values()
            if isinstance(asset, Mapping) and (code := _epsg_of(asset)) is not None
        )
        epsg = asset_codes.most_common(1)[0][0] if asset_codes else None
    tile = mgrs_tile_of_item(props, item_id, epsg) if card == "s2" or "grid:code" in props else None
    if epsg is None and tile is not None:
        epsg = mgrs_tile_epsg(tile)
    if epsg is None:
        raise ItemError(
            f"{where} has no projection: neither proj:epsg nor proj:code (item or asset "
            "level) nor an MGRS tile; publish it with the STAC projection extension"
        )

    baseline = processing_baseline(props, item_id) if card == "s2" else None
    orbit = optional_int(props.get("sat:relative_orbit"))
    if orbit is None:
        for value in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item_id):
            match = _ORBIT_IN_ID.search(value) if isinstance(value, str) else None
            if match:
                orbit = int(match.group(1))
                break

    platform = props.get("platform")
    if isinstance(platform, str) and platform:
        platform = platform.strip().lower().replace(" ", "-")
    else:
        match = _PLATFORM_IN_ID.match(item_id)
        platform = f"sentinel-{match.group(1)}{match.group(2).lower()}" if match else None

    assets: dict[str, AssetRecord] = {}
    for key, asset in raw_assets.items():
        if not isinstance(asset, Mapping):
            raise ItemError(f"{where}: asset {key!r} is not an object")
        try:
            assets[key] = _asset_record(
                key, asset, card=card, item_epsg=epsg, item_props=props, baseline=baseline,
                base=base,
            )
        except ItemError as exc:
            raise ItemError(f"{where}: {exc}") from None

    return ImageRecord(
        collection=collection,
        item_id=item_id,
        datetime=when,
        platform=platform,
        card=card,
        tile=tile,
        orbit=orbit,
        epsg=epsg,
        cloud_cover=optional_float(props.get("eo:cloud_cover")),
        processing_baseline=baseline,
        footprint=footprint,
        assets=assets,
        properties=props,
    )
