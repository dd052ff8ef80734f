"""Normalised image and asset records: the rows of the ``images`` table.

:class:`ImageRecord` is what the catalogue stores and what the loaders read;
:class:`AssetRecord` is one of its assets with its band, grid and effective
scale/offset.  Both are plain values: built by
:func:`cbm_dask.catalogue.normalise_item` from STAC items, or read back from
``images`` rows with :meth:`ImageRecord.from_row`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pystac
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from cbm_dask.errors import ItemError
from cbm_dask.sentinel.bands import CARDS, Card, band_spec

__all__ = [
    "AssetRecord",
    "ImageRecord",
    "footprint_multipolygon",
    "optional_float",
    "optional_int",
    "utc_datetime",
]


@dataclass(frozen=True)
class AssetRecord:
    """One asset of an image, with the fields the loaders need normalised.

    Attributes
    ----------
    key
        Asset key in the source item (``red``, ``B04_10m``).
    href
        Absolute href: ``https://``, ``s3://`` or a local path.
    type, roles
        Media type and roles as declared.
    band
        Canonical band name (:mod:`cbm_dask.sentinel.bands`), None for non-band assets.
    resolution
        Pixel size in CRS units (metres for UTM), None when unknown.
    epsg, transform, shape
        Pixel grid: EPSG code, the 6 affine coefficients ``(a, b, c, d, e, f)``
        of ``proj:transform`` and ``(rows, columns)``; None when not declared.
    data_type, nodata
        Pixel type and nodata value as declared (None when not declared).
    scale, offset
        The *effective* conversion ``value = DN * scale + offset`` (BOA offset
        rules applied, see :func:`scale_offset`); None for non-band assets.
    """

    key: str
    href: str
    type: str | None = None
    roles: tuple[str, ...] = ()
    band: str | None = None
    resolution: float | None = None
    epsg: int | None = None
    transform: tuple[float, ...] | None = None
    shape: tuple[int, int] | None = None
    data_type: str | None = None
    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None

    @property
    def is_jp2(self) -> bool:
        """Whether the asset is JPEG 2000 (a COG twin is preferred when both exist)."""
        return "jp2" in (self.type or "") or self.href.lower().endswith(".jp2")

    def as_json(self) -> dict[str, Any]:
        """Return the JSON object stored in ``images.assets`` (NaN nodata as ``"nan"``)."""
        nodata: float | str | None = self.nodata
        if self.nodata is not None and not math.isfinite(self.nodata):
            nodata = str(self.nodata)
        return {
            "href": self.href,
            "type": self.type,
            "roles": list(self.roles),
            "band": self.band,
            "resolution": self.resolution,
            "epsg": self.epsg,
            "transform": list(self.transform) if self.transform else None,
            "shape": list(self.shape) if self.shape else None,
            "data_type": self.data_type,
            "nodata": nodata,
            "scale": self.scale,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, key: str, value: Mapping[str, Any]) -> AssetRecord:
        """Rebuild a record from its ``images.assets`` JSON object."""
        transform = value.get("transform")
        shape = value.get("shape")
        return cls(
            key=key,
            href=str(value["href"]),
            type=value.get("type"),
            roles=tuple(value.get("roles") or ()),
            band=value.get("band"),
            resolution=optional_float(value.get("resolution")),
            epsg=optional_int(value.get("epsg")),
            transform=tuple(float(v) for v in transform[:6]) if transform else None,
            shape=(int(shape[0]), int(shape[1])) if shape else None,
            data_type=value.get("data_type"),
            nodata=optional_float(value.get("nodata")),
            scale=optional_float(value.get("scale")),
            offset=optional_float(value.get("offset")),
        )


@dataclass(frozen=True)
class ImageRecord:
    """A catalogued image: one row of the ``images`` table.

    Attributes
    ----------
    collection, item_id
        Source collection and item id (unique together).
    datetime
        Acquisition time, timezone-aware UTC.
    platform
        Lower-case platform, e.g. ``sentinel-2b``.
    card
        ``s2`` (Sentinel-2 L2A), ``bs`` (Sentinel-1 backscatter) or ``c6`` (coherence).
    tile
        MGRS tile without the ``T`` prefix (``31UFS``), None for Sentinel-1.
    orbit
        Relative orbit (Sentinel-2 sensing orbit ``R###``), None when unknown.
    epsg
        EPSG code of the item's (main) pixel grid.
    cloud_cover
        ``eo:cloud_cover`` in percent, None when not given.
    processing_baseline
        ``NN.NN`` Sentinel-2 processing baseline, None when unknown.
    footprint
        Footprint as a MultiPolygon in EPSG:4326.
    assets
        Asset key → :class:`AssetRecord`.
    properties
        The item's full ``properties`` as served.
    image_id
        ``images.id`` once stored, else None.
    """

    collection: str
    item_id: str
    datetime: dt.datetime
    platform: str | None
    card: Card
    tile: str | None
    orbit: int | None
    epsg: int | None
    cloud_cover: float | None
    processing_baseline: str | None
    footprint: shapely.MultiPolygon
    assets: Mapping[str, AssetRecord] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    image_id: int | None = None

    def band_assets(self) -> dict[str, AssetRecord]:
        """Return canonical band → the asset to load it from.

        When a band is offered several times (``blue``/``blue_20m``/``blue_60m``,
        ``red``/``red-jp2``) the asset at the band's native resolution wins, then a
        GeoTIFF over a JPEG 2000 twin, then the finest resolution.
        """
        best: dict[str, tuple[tuple[Any, ...], AssetRecord]] = {}
        for asset in self.assets.values():
            if asset.band is None:
                continue
            native = band_spec(asset.band).resolution
            res = asset.resolution if asset.resolution is not None else math.inf
            rank = (not math.isclose(res, native), asset.is_jp2, res, asset.key)
            if asset.band not in best or rank < best[asset.band][0]:
                best[asset.band] = (rank, asset)
        return {band: pair[1] for band, pair in best.items()}

    def as_row(self) -> dict[str, Any]:
        """Return bind parameters for the ``images`` upsert (footprint as hex EWKB)."""
        return {
            "collection": self.collection,
            "item_id": self.item_id,
            "datetime": self.datetime,
            "platform": self.platform,
            "card": self.card,
            "tile": self.tile,
            "orbit": self.orbit,
            "epsg": self.epsg,
            "cloud_cover": self.cloud_cover,
            "processing_baseline": self.processing_baseline,
            "footprint": shapely.to_wkb(
                shapely.set_srid(self.footprint, 4326), hex=True, include_srid=True
            ),
            "assets": json.dumps({k: a.as_json() for k, a in self.assets.items()}),
            "properties": json.dumps(_json_safe(dict(self.properties)), default=str),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ImageRecord:
        """Rebuild a record from an ``images`` row (a mapping, e.g. ``Row._mapping``).

        The footprint may be a shapely geometry, WKB (bytes, hex or a
        GeoAlchemy2 element), WKT or GeoJSON.
        """
        card = row["card"]
        if card not in CARDS:

            raise ItemError(f"image {row.get('item_id')!r}: unknown card {card!r}")
        assets = row.get("assets") or {}
        if isinstance(assets, str):
            assets = json.loads(assets)
        properties = row.get("properties") or {}
        if isinstance(properties, str):
            properties = json.loads(properties)
        stamp = row["datetime"]
        if isinstance(stamp, str):
            stamp = pystac.utils.str_to_datetime(stamp)
        image_id = row.get("id", row.get("image_id"))
        return cls(
            collection=str(row["collection"]),
            item_id=str(row["item_id"]),
            datetime=utc_datetime(stamp),
            platform=row.get("platform"),
            card=card,
            tile=row.get("tile"),
            orbit=optional_int(row.get("orbit")),
            epsg=optional_int(row.get("epsg")),
            cloud_cover=optional_float(row.get("cloud_cover")),
            processing_baseline=row.get("processing_baseline"),
            footprint=footprint_multipolygon(_to_shape(row["footprint"]), str(row["item_id"])),
            assets={k: AssetRecord.from_json(k, v) for k, v in assets.items()},
            properties=properties,
            image_id=optional_int(image_id),
        )


def optional_float(value: Any) -> float | None:
    """Return ``value`` as a float, None when it is missing, a bool or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def optional_int(value: Any) -> int | None:
    """Return ``value`` as an int, None when it is missing, a bool or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def utc_datetime(value: dt.datetime) -> dt.datetime:
    """Return ``value`` in UTC; a naive time is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _to_shape(value: Any) -> BaseGeometry:
    if isinstance(value, BaseGeometry):
        return value
    if isinstance(value, Mapping):
        return shapely.geometry.shape(value)
    data = getattr(value, "data", value)  # GeoAlchemy2 WKBElement
    if isinstance(data, memoryview):
        data = data.tobytes()
    if isinstance(data, bytes):
        return shapely.from_wkb(data)
    text = str(data)
    if re.fullmatch(r"[0-9A-Fa-f]+", text):
        return shapely.from_wkb(text)
    return shapely.from_wkt(text)


def footprint_multipolygon(geom: BaseGeometry, item_id: str) -> shapely.MultiPolygon:
    """Return an image footprint as a valid MultiPolygon (repaired, areas only).

    Raises
    ------
    ItemError
        Naming ``item_id`` when the geometry holds no polygon.
    """
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, shapely.Polygon):
        return shapely.MultiPolygon([geom])
    if isinstance(geom, shapely.MultiPolygon):
        return geom
    polygons = [
        part for part in getattr(geom, "geoms", [])
        if isinstance(part, shapely.Polygon) and not part.is_empty
    ]
    for part in getattr(geom, "geoms", []):
        if isinstance(part, shapely.MultiPolygon):
            polygons.extend(part.geoms)
    if not polygons:

        raise ItemError(
            f"item {item_id!r}: its geometry is a {geom.geom_type}, not an area; "
            "the footprint must be a Polygon or MultiPolygon in EPSG:4326"
        )
    return shapely.MultiPolygon(polygons)


