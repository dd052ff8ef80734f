"""The images to load: records from any input, each band's asset with a complete grid.

:func:`to_records` accepts catalogue records, ``images`` rows and STAC items of
any supported catalogue; :func:`band_sources` completes every band asset's grid
and pixel type (from the item, else the file header); :func:`stac_item` re-encodes
a record as the uniform item odc-stac reads.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pystac
import rasterio
import rasterio.errors
import shapely
import shapely.geometry
from affine import Affine

from cbm_dask.catalogue.normalise import ItemLike, normalise_item
from cbm_dask.errors import InputError
from cbm_dask.sentinel.bands import band_spec
from cbm_dask.sentinel.records import AssetRecord, ImageRecord

__all__ = [
    "BandSource",
    "ImagesLike",
    "band_sources",
    "by_position",
    "dedupe",
    "in_period",
    "stac_item",
    "to_records",
]

ImagesLike: TypeAlias = Iterable[ImageRecord | ItemLike]
"""Catalogue records, ``images`` rows (mappings with ``item_id``), pystac Items or item dicts."""

# Pixel types of assets whose item and header say nothing, by band kind.
_DEFAULT_DTYPE = {
    "reflectance": "uint16",
    "atmosphere": "uint16",
    "classification": "uint8",
    "backscatter": "float32",
    "coherence": "float32",
}
_PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


@dataclass(frozen=True)
class BandSource:
    """One band of one image, with a complete pixel grid.

    Attributes
    ----------
    band
        Canonical band name.
    asset
        The asset as the catalogue describes it (href, scale, offset ...).
    epsg, transform, shape
        Its CRS and pixel grid.
    data_type
        Stored pixel type (``uint16`` ...).
    nodata
        Stored value of missing pixels (NaN for floats without one).
    """

    band: str
    asset: AssetRecord
    epsg: int
    transform: Affine
    shape: tuple[int, int]
    data_type: str
    nodata: float | None

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units, rounded so that equal sizes compare equal."""
        return round(abs(self.transform.a), 9)


def to_records(images: ImagesLike) -> list[ImageRecord]:
    """Normalise the accepted inputs into :class:`ImageRecord` objects.

    ``images`` rows (mappings with ``item_id`` and ``card``) are rebuilt with
    :meth:`ImageRecord.from_row`; STAC items go through
    :func:`~cbm_dask.catalogue.normalise.normalise_item`.
    """
    records: list[ImageRecord] = []
    for image in images:
        if isinstance(image, ImageRecord):
            records.append(image)
        elif isinstance(image, Mapping) and "item_id" in image and "card" in image:
            records.append(ImageRecord.from_row(image))
        else:
            records.append(normalise_item(image))
    return records


def dedupe(records: list[ImageRecord]) -> list[ImageRecord]:
    """Return each image once (by collection and item id), in time order."""
    seen: dict[tuple[str, str], ImageRecord] = {}
    for record in records:
        seen.setdefault((record.collection, record.item_id), record)
    return sorted(seen.values(), key=lambda r: (r.datetime, r.item_id))


def _as_bound(value: str | dt.date | None, end: bool) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime.combine(value, dt.time.max if end else dt.time.min)
    else:
        text = str(value).strip()
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"time: {value!r} is not an ISO date (YYYY-MM-DD)") from None
        if end and len(text) == 10:
            stamp = dt.datetime.combine(stamp.date(), dt.time.max)
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp


def in_period(records: list[ImageRecord], time: tuple[Any, Any] | None) -> list[ImageRecord]:
    """Keep the records acquired within ``time`` (``(start, end)``, inclusive; None: all)."""
    if time is None:
        return records
    start, end = _as_bound(time[0], False), _as_bound(time[1], True)
    return [r for r in records
            if (start is None or r.datetime >= start) and (end is None or r.datetime <= end)]


def band_sources(records: Sequence[ImageRecord], bands: Sequence[str], *, with_scl: bool,
                 ) -> list[dict[str, BandSource]]:
    """Return, per record, the :class:`BandSource` of each wanted band it has.

    Opens the file header of assets whose item does not declare their grid, so call
    it with the GDAL environment of the hrefs applied.
    """
    wanted = [*bands, "SCL"] if with_scl and "SCL" not in bands else list(bands)
    out: list[dict[str, BandSource]] = []
    for record in records:
        assets = record.band_assets()
        out.append({b: _band_source(record, b, assets[b]) for b in wanted if b in assets})
    return out


def _band_source(record: ImageRecord, band: str, asset: AssetRecord) -> BandSource:
    """Complete an asset's grid and pixel type, reading the file header when undeclared."""
    spec = band_spec(band)
    epsg = asset.epsg or record.epsg
    transform = Affine(*asset.transform) if asset.transform else None
    shape = asset.shape
    data_type, nodata = asset.data_type, asset.nodata
    if transform is None or shape is None or epsg is None:
        try:
            with rasterio.open(asset.href) as src:
                transform, shape = src.transform, (src.height, src.width)
                epsg = epsg or (src.crs.to_epsg() if src.crs else None)
                data_type = data_type or src.dtypes[0]
                nodata = nodata if nodata is not None else src.nodata
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(
                f"item {record.item_id!r} asset {asset.key!r}: its grid is not declared "
                f"(proj:transform/proj:shape) and {asset.href} cannot be opened ({exc}); "
                "check the href and, for s3:// hrefs, the gdal_env"
            ) from exc
        if epsg is None:
            raise InputError(
                f"item {record.item_id!r} asset {asset.key!r}: no CRS in the item nor in "
                f"{asset.href}; add proj:code to the item"
            )
    if data_type is None:
        data_type = _DEFAULT_DTYPE[spec.kind]
    if nodata is None and spec.card == "s2":
        nodata = 0.0
    if nodata is None and np.issubdtype(np.dtype(data_type), np.floating):
        nodata = math.nan
    return BandSource(band, asset, int(epsg), transform, shape, str(data_type), nodata)


def stac_item(record: ImageRecord, sources: Mapping[str, BandSource]) -> pystac.Item:
    """Build a uniform item for odc-stac: asset key = canonical band, complete grid."""
    item = pystac.Item(
        id=record.item_id,
        geometry=shapely.geometry.mapping(record.footprint),
        bbox=list(record.footprint.bounds),
        datetime=record.datetime,
        properties={},
        collection=f"cbm-{record.card}",
        stac_extensions=[_PROJECTION_V2],
    )
    for band, src in sources.items():
        nodata: float | str | None = src.nodata
        if src.nodata is not None and math.isnan(src.nodata):
            nodata = "nan"
        item.add_asset(band, pystac.Asset(
            href=src.asset.href,
            media_type=src.asset.type or "image/tiff; application=geotiff",
            roles=["data"],
            extra_fields={
                "proj:code": f"EPSG:{src.epsg}",
                "proj:transform": list(src.transform)[:6],
                "proj:shape": list(src.shape),
                "data_type": src.data_type,
                "nodata": nodata,
            },
        ))
    return item


def by_position(item: pystac.Item, parsed: Any, idx: int) -> int:
    """odc-stac group key keeping one time step per item, in the order given."""
    return idx

