"""STAC documents of archived COGs, built from raster facts (pure: values in, dicts out).

The Sentinel-2 items copy the structure of Earth Search v1 ``sentinel-2-l2a``
items (STAC 1.0.0): common-name asset keys (``blue``, ``nir``, ``swir16``,
``scl`` ...), per-asset ``eo:bands``, ``raster:bands`` (data type, nodata,
spatial resolution, scale/offset), ``gsd``, ``proj:shape``/``proj:transform``,
and item-level ``proj:epsg``, ``proj:centroid``, ``mgrs:*``, ``grid:code``,
``eo:cloud_cover`` and the ``s2:*`` scene-classification percentages.  The
Sentinel-1 items copy the Earth Search ``sentinel-1-grd`` properties (``sar:*``,
item-level ``proj:*``) with ``vv``/``vh`` float32 gamma0 assets.

Every grid fact comes from the COG itself (:class:`RasterInfo`, built from a
rasterio profile by the I/O layer); nothing here opens a file.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyproj import CRS, Transformer

from cbm_dask._version import __version__
from cbm_dask.errors import InputError

__all__ = [
    "COG_MEDIA_TYPE",
    "S1_BACKSCATTER",
    "S1_POLARISATIONS",
    "S2_BANDS",
    "S2_L2A",
    "Acquisition",
    "RasterInfo",
    "S2Band",
    "SafeMetadata",
    "footprint",
    "grid_tile",
    "item_extent",
    "merge_extent",
    "mgrs_tile",
    "nodata_json",
    "s1_collection",
    "s1_item",
    "s2_collection",
    "s2_item",
    "sar_properties",
    "scl_properties",
]

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.0.0"
S2_L2A = "sentinel-2-l2a"
S1_BACKSCATTER = "sentinel-1-backscatter"
S1_POLARISATIONS = ("VV", "VH", "HH", "HV")

_EXT = "https://stac-extensions.github.io"
_S2_EXTENSIONS = [
    f"{_EXT}/grid/v1.1.0/schema.json",
    f"{_EXT}/mgrs/v1.0.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/sentinel-2/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/eo/v1.1.0/schema.json",
]
_S1_EXTENSIONS = [
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/sat/v1.0.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/sar/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
]
_COPERNICUS_LICENSE = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_COLUMNS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"
# Scene classification classes → Earth Search v1 property names (percent of valid pixels).
_SCL_PROPERTIES = {
    1: "s2:saturated_defective_pixel_percentage",
    2: "s2:dark_features_percentage",
    3: "s2:cloud_shadow_percentage",
    4: "s2:vegetation_percentage",
    5: "s2:not_vegetated_percentage",
    6: "s2:water_percentage",
    7: "s2:unclassified_percentage",
    8: "s2:medium_proba_clouds_percentage",
    9: "s2:high_proba_clouds_percentage",
    10: "s2:thin_cirrus_percentage",
    11: "s2:snow_ice_percentage",
}
_CLOUD_CLASSES = (8, 9, 10)


@dataclass(frozen=True)
class S2Band:
    """A Sentinel-2 L2A band as Earth Search v1 names it.

    Attributes
    ----------
    band_id
        ESA band id (``B04``, ``B8A``, ``SCL``).
    key
        Asset key (``red``, ``nir08``, ``scl``).
    title
        Asset title without the resolution (``Red``).
    common_name, center_wavelength, fwhm
        ``eo:bands`` fields (µm); None for non-spectral layers.
    kind
        ``reflectance``, ``classification``, ``aot`` or ``wvp``.
    """

    band_id: str
    key: str
    title: str
    common_name: str | None = None
    center_wavelength: float | None = None
    fwhm: float | None = None
    kind: str = "reflectance"


S2_BANDS: Mapping[str, S2Band] = {b.band_id: b for b in (
    S2Band("B01", "coastal", "Coastal", "coastal", 0.443, 0.027),
    S2Band("B02", "blue", "Blue", "blue", 0.49, 0.098),
    S2Band("B03", "green", "Green", "green", 0.56, 0.045),
    S2Band("B04", "red", "Red", "red", 0.665, 0.038),
    S2Band("B05", "rededge1", "Red Edge 1", "rededge", 0.704, 0.019),
    S2Band("B06", "rededge2", "Red Edge 2", "rededge", 0.74, 0.018),
    S2Band("B07", "rededge3", "Red Edge 3", "rededge", 0.783, 0.028),
    S2Band("B08", "nir", "NIR 1", "nir", 0.842, 0.145),
    S2Band("B8A", "nir08", "NIR 2", "nir08", 0.865, 0.033),
    S2Band("B09", "nir09", "NIR 3", "nir09", 0.945, 0.026),
    S2Band("B11", "swir16", "SWIR 1.6μm", "swir16", 1.61, 0.143),
    S2Band("B12", "swir22", "SWIR 2.2μm", "swir22", 2.19, 0.242),
    S2Band("SCL", "scl", "Scene classification map (SCL)", kind="classification"),
    S2Band("AOT", "aot", "Aerosol optical thickness (AOT)", kind="aot"),
    S2Band("WVP", "wvp", "Water Vapour (WVP)", kind="wvp"),
)}
"""Band id → :class:`S2Band`, with the wavelengths Earth Search v1 publishes."""

# ESA's band index order in BOA_ADD_OFFSET (band_id 0..12).
ESA_BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                  "B11", "B12")


@dataclass(frozen=True)
class RasterInfo:
    """What an item needs to know about one single-band raster file.

    Attributes
    ----------
    source
        Where it was read from (for messages).
    epsg
        EPSG code of its CRS, None when the CRS has none (or no CRS at all).
    has_crs
        Whether the file declares a CRS at all.
    width, height
        Size in pixels.
    transform
        The six affine coefficients ``(a, b, c, d, e, f)``.
    dtype
        Pixel type (``uint16``).
    nodata
        Nodata value, None when undeclared.
    count
        Number of bands.
    """

    source: str
    epsg: int | None
    has_crs: bool
    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    dtype: str
    nodata: float | None
    count: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``, the order of ``proj:shape``."""
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        """Pixel width in CRS units."""
        return abs(self.transform[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of a north-up raster."""
        a, _, c, _, e, f = self.transform
        xs = (c, c + a * self.width)
        ys = (f, f + e * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    @classmethod
    def from_profile(cls, source: str, profile: Mapping[str, Any]) -> RasterInfo:
        """Build from a rasterio profile (``dataset.profile``).

        Raises
        ------
        InputError
            When the raster has no usable georeferencing (identity transform,
            rotation) or no CRS; the message names ``source``.
        """
        crs = profile.get("crs")
        transform = profile.get("transform")
        coefficients = tuple(float(v) for v in tuple(transform)[:6]) if transform else None
        if coefficients is None or coefficients == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
            raise InputError(
                f"{source} has no geotransform (pixel grid); it is not a georeferenced COG - "
                "check how it was written"
            )
        if coefficients[1] != 0 or coefficients[3] != 0 or coefficients[4] >= 0:
            raise InputError(
                f"{source} is not a north-up grid (transform {coefficients}); warp it to a "
                "north-up grid before archiving"
            )
        if crs is None:
            raise InputError(
                f"{source} has no CRS (projection); write the COG with its CRS, e.g. "
                "`gdal_edit.py -a_srs EPSG:32631`"
            )
        epsg = crs.to_epsg() if hasattr(crs, "to_epsg") else CRS.from_user_input(crs).to_epsg()
        nodata = profile.get("nodata")
        a, b, c, d, e, f = coefficients
        return cls(
            source=source,
            epsg=int(epsg) if epsg is not None else None,
            has_crs=True,
            width=int(profile["width"]),
            height=int(profile["height"]),
            transform=(a, b, c, d, e, f),
            dtype=str(profile.get("dtype")),
            nodata=float(nodata) if nodata is not None else None,
            count=int(profile.get("count", 1)),
        )


@dataclass(frozen=True)
class SafeMetadata:
    """Facts of a Sentinel-2 product from its SAFE metadata (``MTD_MSIL2A.xml``, ``MTD_TL.xml``).

    Attributes
    ----------
    product_uri
        ``S2A_MSIL2A_…SAFE``.
    platform
        Lower-case platform (``sentinel-2a``).
    sensing_time
        ``PRODUCT_START_TIME`` (UTC).
    processing_baseline
        ``NN.NN``.
    generation_time
        ``GENERATION_TIME`` as ISO text.
    datatake_id, datastrip_id, granule_id
        Identifiers as in the SAFE.
    relative_orbit
        ``SENSING_ORBIT_NUMBER``.
    cloud_cover
        ``Cloud_Coverage_Assessment`` of the whole tile (percent).
    quantification
        ``BOA_QUANTIFICATION_VALUE`` (10000).
    boa_add_offset
        Band id → ``BOA_ADD_OFFSET`` in DN (-1000 from baseline 04.00).
    sun_azimuth, sun_zenith
        Mean sun angles of the tile (degrees), None when unknown.
    """

    product_uri: str | None = None
    platform: str | None = None
    sensing_time: dt.datetime | None = None
    processing_baseline: str | None = None
    generation_time: str | None = None
    datatake_id: str | None = None
    datastrip_id: str | None = None
    granule_id: str | None = None
    relative_orbit: int | None = None
    cloud_cover: float | None = None
    quantification: float = 10000.0
    boa_add_offset: Mapping[str, float] | None = None
    sun_azimuth: float | None = None
    sun_zenith: float | None = None


@dataclass(frozen=True)
class Acquisition:
    """When an image was taken.

    Attributes
    ----------
    datetime
        Acquisition time (UTC).  When only the date is known it is the day's
        noon and :attr:`date_only` is set.
    date_only
        The source gives the date but not the time of day: items then carry
        ``start_datetime``/``end_datetime`` spanning the day.
    """

    datetime: dt.datetime
    date_only: bool = False

    @classmethod
    def from_date(cls, day: dt.date) -> Acquisition:
        """Describe an acquisition known to the day only."""
        return cls(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC), True)

    def properties(self) -> dict[str, str]:
        """``datetime`` (and the day's span when only the date is known)."""
        stamp = _iso(self.datetime)
        if not self.date_only:
            return {"datetime": stamp}
        day = self.datetime.date()
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1) - dt.timedelta(microseconds=1000)
        return {"datetime": stamp, "start_datetime": _iso(start), "end_datetime": _iso(end)}


def _iso(when: dt.datetime) -> str:
    when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def nodata_json(value: float | None) -> float | int | str | None:
    """Nodata as STAC ``raster:bands`` wants it: numbers, or ``"nan"``/``"inf"``/``"-inf"``."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() else float(value)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def footprint(
    bounds: tuple[float, float, float, float], epsg: int, densify: int = 8,
) -> tuple[dict[str, Any], list[float]]:
    """Return the GeoJSON polygon (EPSG:4326) and bbox of ``bounds`` given in ``epsg``.

    Each edge is densified with ``densify`` points so that the footprint follows
    the curvature of projected grid lines.
    """
    left, bottom, right, top = bounds
    transformer = Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)
    steps = [i / densify for i in range(densify)]
    ring_xy = (
        [(left + (right - left) * t, top) for t in steps]
        + [(right, top + (bottom - top) * t) for t in steps]
        + [(right + (left - right) * t, bottom) for t in steps]
        + [(left, bottom + (top - bottom) * t) for t in steps]
    )
    xs, ys = transformer.transform([p[0] for p in ring_xy], [p[1] for p in ring_xy])
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(xs, ys, strict=True)]
    ring.append(ring[0])
    bbox = [round(v, 7) for v in transformer.transform_bounds(left, bottom, right, top)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def mgrs_tile(epsg: int, x: float, y: float, latitude: float) -> tuple[int, str, str] | None:
    """Return ``(utm_zone, latitude_band, grid_square)`` of a UTM point, None for non-UTM CRSs.

    ``x``/``y`` are the point's UTM easting/northing, ``latitude`` its latitude.
    """
    if 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760:
        zone = epsg % 100
    else:
        return None
    band_index = min(max(int((latitude + 80) // 8), 0), len(_MGRS_BANDS) - 1)
    column_set = _MGRS_COLUMNS[(zone - 1) % 3]
    column_index = int(x // 100_000) - 1
    if not 0 <= column_index < len(column_set):
        return None
    row_index = (int(y // 100_000) + (5 if zone % 2 == 0 else 0)) % len(_MGRS_ROWS)
    return zone, _MGRS_BANDS[band_index], column_set[column_index] + _MGRS_ROWS[row_index]


def scl_properties(counts: Mapping[int, int]) -> dict[str, float]:
    """Earth Search ``s2:*`` class percentages and ``eo:cloud_cover`` from SCL pixel counts.

    ``s2:nodata_pixel_percentage`` is relative to all pixels, the other classes to
    the valid (non-zero) pixels; ``eo:cloud_cover`` is medium + high probability
    clouds + thin cirrus, as ESA and Earth Search compute it.  Without valid
    pixels only the nodata percentage is returned.
    """
    total = sum(int(v) for v in counts.values())
    if total == 0:
        return {}
    nodata = int(counts.get(0, 0))
    properties: dict[str, float] = {"s2:nodata_pixel_percentage": round(100 * nodata / total, 6)}
    valid = total - nodata
    if valid == 0:
        return properties
    for cls_value, name in _SCL_PROPERTIES.items():
        properties[name] = round(100 * int(counts.get(cls_value, 0)) / valid, 6)
    cloudy = sum(int(counts.get(c, 0)) for c in _CLOUD_CLASSES)
    properties["eo:cloud_cover"] = round(100 * cloudy / valid, 6)
    return properties


def _raster_band(info: RasterInfo, *, scale: float | None = None, offset: float | None = None,
                 unit: str | None = None) -> dict[str, Any]:
    band: dict[str, Any] = {}
    nodata = nodata_json(info.nodata)
    if nodata is not None:
        band["nodata"] = nodata
    band["data_type"] = info.dtype
    band["spatial_resolution"] = _number(info.resolution)
    if unit:
        band["unit"] = unit
    if scale is not None:
        band["scale"] = scale
        band["offset"] = offset if offset is not None else 0
    return band


def _grid_fields(info: RasterInfo) -> dict[str, Any]:
    return {
        "gsd": _number(info.resolution),
        "proj:shape": list(info.shape),
        "proj:transform": [_number(v) for v in info.transform],
    }


def s2_asset(band: S2Band, info: RasterInfo, href: str, *, reflectance_offset: float,
             reflectance_scale: float = 1e-4) -> dict[str, Any]:
    """One Earth Search v1 style asset of a Sentinel-2 L2A band."""
    title = f"{band.title} - {_number(info.resolution)}m" if band.kind == "reflectance" \
        else band.title
    asset: dict[str, Any] = {"href": href, "type": COG_MEDIA_TYPE, "title": title}
    if band.kind == "reflectance":
        asset["eo:bands"] = [{
            "name": band.band_id, "common_name": band.common_name,
            "center_wavelength": band.center_wavelength, "full_width_half_max": band.fwhm,
        }]
    asset.update(_grid_fields(info))
    if band.kind == "reflectance":
        raster = _raster_band(info, scale=reflectance_scale, offset=reflectance_offset)
        roles = ["data", "reflectance"]
    elif band.kind == "aot":
        raster, roles = _raster_band(info, scale=0.001, offset=0), ["data"]
    elif band.kind == "wvp":
        raster, roles = _raster_band(info, scale=0.001, offset=0, unit="cm"), ["data"]
    else:
        raster, roles = _raster_band(info), ["data"]
    asset["raster:bands"] = [raster]
    asset["roles"] = roles
    return asset


Bounds = tuple[float, float, float, float]


def _common_grid(item_id: str, infos: Iterable[RasterInfo]) -> tuple[int, Bounds]:
    """Return the one EPSG code of an item's rasters and the union of their bounds."""
    infos = list(infos)
    if any(info.epsg is None for info in infos):
        bad = next(info for info in infos if info.epsg is None)
        raise InputError(
            f"item {item_id!r}: {bad.source} has a CRS without an EPSG code; write the COG "
            "in an EPSG CRS (e.g. its UTM zone) so the item can carry proj:epsg"
        )
    codes = {int(info.epsg) for info in infos if info.epsg is not None}
    if len(codes) != 1:
        raise InputError(
            f"item {item_id!r}: its rasters are in different CRSs ({sorted(codes)}); "
            "all assets of one item must share one projection"
        )
    lefts, bottoms, rights, tops = zip(*(info.bounds for info in infos), strict=True)
    return int(next(iter(codes))), (min(lefts), min(bottoms), max(rights), max(tops))


def _links() -> list[dict[str, str]]:
    return [{"rel": "license", "href": _COPERNICUS_LICENSE,
             "title": "Copernicus Sentinel data terms"}]


def _item(
    *,
    item_id: str,
    collection: str,
    extensions: Sequence[str],
    geometry: dict[str, Any],
    bbox: list[float],
    properties: Mapping[str, Any],
    acquisition: Acquisition,
    extra_properties: Mapping[str, Any] | None,
    assets: dict[str, Any],
) -> dict[str, Any]:
    """Return the item document.

    Its properties are ``properties``, then the acquisition time, the software and
    last ``extra_properties`` (which win).
    """
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(extensions),
        "id": item_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {**properties, **acquisition.properties(),
                       "processing:software": {"cbm_dask": __version__},
                       **(extra_properties or {})},
        "links": _links(),
        "assets": assets,
        "collection": collection,
    }


def sar_properties(polarizations: Sequence[str], product_type: str = "GRD") -> dict[str, Any]:
    """Return the ``sar:*`` properties of a Sentinel-1 IW product as Earth Search lists them.

    Parameters
    ----------
    polarizations
        ``sar:polarizations`` (``["VV", "VH"]``).
    product_type
        ``sar:product_type`` (``GRD``).
    """
    return {
        "sar:frequency_band": "C",
        "sar:center_frequency": 5.405,
        "sar:observation_direction": "right",
        "sar:instrument_mode": "IW",
        "sar:polarizations": list(polarizations),
        "sar:product_type": product_type,
        "sar:resolution_range": 20,
        "sar:resolution_azimuth": 22,
        "sar:pixel_spacing_range": 10,
        "sar:pixel_spacing_azimuth": 10,
        "sar:looks_range": 5,
        "sar:looks_azimuth": 1,
        "sar:looks_equivalent_number": 4.4,
    }


def grid_tile(item_id: str, infos: Iterable[RasterInfo]) -> str | None:
    """Return the MGRS tile (``31UFS``) holding the centre of the rasters' common grid."""
    epsg, bounds = _common_grid(item_id, infos)
    _, bbox = footprint(bounds, epsg)
    tile = mgrs_tile(epsg, (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2,
                     (bbox[1] + bbox[3]) / 2)
    return f"{tile[0]:02d}{tile[1]}{tile[2]}" if tile else None


def s2_item(
    *,
    item_id: str,
    acquisition: Acquisition,
    assets: Mapping[str, tuple[RasterInfo, str]],
    scl_counts: Mapping[int, int] | None = None,
    safe: SafeMetadata | None = None,
    reflectance_offset: float = 0.0,
    mgrs: str | None = None,
    extra_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an Earth Search v1 shaped ``sentinel-2-l2a`` item.

    Parameters
    ----------
    item_id
        The item id.
    acquisition
        Sensing time (or date).
    assets
        ESA band id (``B04``, ``SCL``) → (raster facts, href).
    scl_counts
        Pixel count per SCL class of this item's SCL raster, for ``eo:cloud_cover``
        and the ``s2:*_percentage`` properties.
    safe
        Product metadata when the SAFE metadata is at hand (platform, baseline ...).
    reflectance_offset
        ``raster:bands[].offset`` of the reflectance bands: -0.1 for
        baseline ≥ 04.00 DN, 0 for harmonised pixels.
    mgrs
        MGRS tile (``31UFS``) when known from the source; else computed from the
        grid's centre.
    extra_properties
        Added to (and winning over) the computed properties.

    Raises
    ------
    InputError
        When a band id is unknown, or the rasters do not share one EPSG CRS.
    """
    unknown = sorted(set(assets) - set(S2_BANDS))
    if unknown:
        raise InputError(
            f"item {item_id!r}: {', '.join(unknown)} are not Sentinel-2 L2A bands "
            f"(known: {', '.join(S2_BANDS)}); rename the files or leave them out"
        )
    epsg, bounds = _common_grid(item_id, (info for info, _ in assets.values()))
    geometry, bbox = footprint(bounds, epsg)
    lon = (bbox[0] + bbox[2]) / 2
    lat = (bbox[1] + bbox[3]) / 2
    scale = 1.0 / (safe.quantification if safe else 10000.0)
    properties: dict[str, Any] = {}
    if safe and safe.platform:
        properties["platform"] = safe.platform
    properties.update({"constellation": "sentinel-2", "instruments": ["msi"]})
    scl_stats = scl_properties(scl_counts) if scl_counts is not None else {}
    if "eo:cloud_cover" in scl_stats:
        properties["eo:cloud_cover"] = scl_stats["eo:cloud_cover"]
    elif safe and safe.cloud_cover is not None:
        properties["eo:cloud_cover"] = safe.cloud_cover
    properties["proj:epsg"] = epsg
    properties["proj:centroid"] = {"lat": round(lat, 5), "lon": round(lon, 5)}
    tile: tuple[int, str, str] | None
    if mgrs:
        tile = (int(mgrs[:-3]), mgrs[-3], mgrs[-2:])
    else:
        tile = mgrs_tile(epsg, (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, lat)
    if tile:
        zone, band, square = tile
        properties.update({"mgrs:utm_zone": zone, "mgrs:latitude_band": band,
                           "mgrs:grid_square": square, "grid:code": f"MGRS-{zone}{band}{square}"})
    if safe and safe.sun_azimuth is not None and safe.sun_zenith is not None:
        properties["view:sun_azimuth"] = safe.sun_azimuth
        properties["view:sun_elevation"] = round(90.0 - safe.sun_zenith, 6)
    if safe and safe.granule_id:
        properties["s2:tile_id"] = safe.granule_id
    properties.update({k: v for k, v in scl_stats.items() if k != "eo:cloud_cover"})
    properties["s2:product_type"] = "S2MSI2A"
    if safe:
        for name, value in (("s2:processing_baseline", safe.processing_baseline),
                            ("s2:product_uri", safe.product_uri),
                            ("s2:generation_time", safe.generation_time),
                            ("s2:datatake_id", safe.datatake_id),
                            ("s2:datastrip_id", safe.datastrip_id)):
            if value:
                properties[name] = value
    item_assets = {}
    for band_id in sorted(assets, key=lambda b: S2_BANDS[b].key):
        info, href = assets[band_id]
        spec = S2_BANDS[band_id]
        offset = reflectance_offset
        if safe and safe.boa_add_offset and band_id in safe.boa_add_offset:
            offset = safe.boa_add_offset[band_id] * scale
        item_assets[spec.key] = s2_asset(spec, info, href, reflectance_offset=round(offset, 10),
                                         reflectance_scale=scale)
    return _item(item_id=item_id, collection=S2_L2A, extensions=_S2_EXTENSIONS,
                 geometry=geometry, bbox=bbox, properties=properties, acquisition=acquisition,
                 extra_properties=extra_properties, assets=item_assets)


def s1_item(
    *,
    item_id: str,
    acquisition: Acquisition,
    assets: Mapping[str, tuple[RasterInfo, str]],
    backscatter: str = "gamma0_ellipsoid_linear",
    platform: str | None = None,
    extra_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a ``sentinel-1-backscatter`` item shaped like Earth Search ``sentinel-1-grd``.

    Parameters
    ----------
    item_id
        The item id.
    acquisition
        Acquisition time (or date).
    assets
        Polarisation (``VV``, ``VH``) → (raster facts, href); keys become ``vv``/``vh``.
    backscatter
        ``cbm:backscatter``: the coefficient and scale of the pixels.
    platform
        ``sentinel-1a`` etc. when known.
    extra_properties
        Added to (and winning over) the computed properties.

    Raises
    ------
    InputError
        When a polarisation is unknown, or the rasters do not share one EPSG CRS.
    """
    unknown = sorted(set(assets) - set(S1_POLARISATIONS))
    if unknown:
        raise InputError(
            f"item {item_id!r}: {', '.join(unknown)} are not Sentinel-1 polarisations "
            f"({', '.join(S1_POLARISATIONS)}); rename the files or leave them out"
        )
    epsg, bounds = _common_grid(item_id, (info for info, _ in assets.values()))
    geometry, bbox = footprint(bounds, epsg)
    first = next(iter(assets.values()))[0]
    polarisations = [p for p in S1_POLARISATIONS if p in assets]
    properties: dict[str, Any] = {
        **sar_properties(polarisations),
        "proj:epsg": epsg,
        "proj:bbox": [_number(v) for v in bounds],
        "proj:shape": list(first.shape),
        "proj:transform": [_number(v) for v in first.transform],
        "proj:centroid": {"lat": round((bbox[1] + bbox[3]) / 2, 5),
                          "lon": round((bbox[0] + bbox[2]) / 2, 5)},
    }
    if platform:
        properties["platform"] = platform
    properties["constellation"] = "sentinel-1"
    properties["cbm:backscatter"] = backscatter
    linear = backscatter.endswith("linear")
    item_assets = {}
    for pol in polarisations:
        info, href = assets[pol]
        item_assets[pol.lower()] = {
            "href": href,
            "type": COG_MEDIA_TYPE,
            "title": f"{pol} Data",
            "description": f"{pol} backscatter ({backscatter.replace('_', ' ')})",
            **_grid_fields(info),
            "raster:bands": [_raster_band(info, unit=None if linear else "dB")],
            "roles": ["data"],
        }
    return _item(item_id=item_id, collection=S1_BACKSCATTER, extensions=_S1_EXTENSIONS,
                 geometry=geometry, bbox=bbox, properties=properties, acquisition=acquisition,
                 extra_properties=extra_properties, assets=item_assets)


# ---------------------------------------------------------------------------
# collections


def item_extent(items: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[str | None]]:
    """Return the union bbox and the ``[first, last]`` time of ``items``."""
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


def _collection(collection_id: str, title: str, description: str, keywords: list[str],
                item_assets: dict[str, Any], summaries: dict[str, Any],
                extensions: list[str], bbox: Sequence[float],
                interval: Sequence[str | None]) -> dict[str, Any]:
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "title": title,
        "description": description,
        "keywords": keywords,
        "license": "proprietary",
        "links": [{"rel": "license", "href": _COPERNICUS_LICENSE,
                   "title": "Copernicus Sentinel data terms"}],
        "providers": [
            {"name": "ESA", "roles": ["producer", "licensor"],
             "url": "https://earth.esa.int/web/guest/home"},
            {"name": "cbm_dask", "roles": ["processor", "host"]},
        ],
        "extent": {"spatial": {"bbox": [list(bbox)]},
                   "temporal": {"interval": [list(interval)]}},
        "summaries": summaries,
        "item_assets": item_assets,
    }


def s2_collection(bbox: Sequence[float], interval: Sequence[str | None],
                  platforms: Sequence[str] = ()) -> dict[str, Any]:
    """Build the ``sentinel-2-l2a`` collection (Earth Search v1 layout, ``item_assets``)."""
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
    return _collection(
        S2_L2A, "Sentinel-2 Level-2A",
        "Sentinel-2 L2A surface reflectance COGs of the cbm_dask archive: one single-band "
        "COG per band, Earth Search v1 asset keys; raster:bands scale/offset convert DN to "
        "reflectance (offset -0.1 for processing baseline >= 04.00 DN, 0 for harmonised DN).",
        ["sentinel", "earth observation", "esa", "msi", "l2a"],
        item_assets, summaries,
        [f"{_EXT}/item-assets/v1.0.0/schema.json", f"{_EXT}/eo/v1.1.0/schema.json",
         f"{_EXT}/raster/v1.1.0/schema.json"],
        bbox, interval,
    )


def s1_collection(bbox: Sequence[float], interval: Sequence[str | None]) -> dict[str, Any]:
    """Build the ``sentinel-1-backscatter`` collection (``item_assets`` vv/vh)."""
    item_assets = {
        pol.lower(): {"type": COG_MEDIA_TYPE, "title": f"{pol} Data", "roles": ["data"],
                      "raster:bands": [{"nodata": "nan", "data_type": "float32"}]}
        for pol in ("VV", "VH")
    }
    summaries = {"constellation": ["sentinel-1"], "sar:instrument_mode": ["IW"],
                 "sar:frequency_band": ["C"], "sar:center_frequency": [5.405],
                 "sar:polarizations": [["VV", "VH"]], "sar:product_type": ["GRD"]}
    return _collection(
        S1_BACKSCATTER, "Sentinel-1 backscatter",
        "Sentinel-1 IW backscatter COGs of the cbm_dask archive (float32, nodata NaN); "
        "cbm:backscatter names the coefficient and scale, e.g. gamma0_ellipsoid_linear.",
        ["sentinel", "sar", "c-band", "backscatter"],
        item_assets, summaries,
        [f"{_EXT}/item-assets/v1.0.0/schema.json", f"{_EXT}/sar/v1.0.0/schema.json",
         f"{_EXT}/raster/v1.1.0/schema.json"],
        bbox, interval,
    )
