"""Earth Search shaped STAC items of Sentinel COGs, built with pystac and its extensions (pure).

One builder serves the archive of real COGs and the synthetic world:

* :func:`s2_item` copies the structure of Earth Search v1 ``sentinel-2-l2a``
  items: common-name asset keys (``blue``, ``nir``, ``swir16``, ``scl`` ...),
  per-asset ``eo:bands``, ``raster:bands`` (data type, nodata, spatial
  resolution, scale/offset), ``gsd``, ``proj:shape``/``proj:transform``, and
  item-level ``proj:epsg``, ``proj:centroid``, ``mgrs:*``, ``grid:code``,
  ``view:*``, ``eo:cloud_cover`` and the Earth Search ``s2:*`` /
  ``earthsearch:*`` fields (:func:`earth_search_fields`, the one place they
  are written);
* :func:`s1_item` copies the Earth Search ``sentinel-1-grd`` properties
  (``sar:*``, ``sat:*``, item-level ``proj:*``) with float32 assets
  (backscatter ``vv``/``vh`` or coherence ``coh_vv``).

The extension fields are set through pystac's extension classes
(:class:`~pystac.extensions.eo.EOExtension`,
:class:`~pystac.extensions.raster.RasterExtension`, ...) on the extension
versions Earth Search v1 declares (:mod:`cbm_dask.sentinel.stac`).  Every grid
fact comes from :class:`~cbm_dask.archive.raster.RasterInfo` values (read from
COG headers by the I/O layer, or made from the world's grid); nothing here
opens a file.  Times are written by :func:`stac_datetime` only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.mgrs import MgrsExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
from pystac.extensions.sar import FrequencyBand, ObservationDirection, Polarization, SarExtension
from pystac.extensions.sat import OrbitState, SatExtension
from pystac.extensions.view import ViewExtension

from cbm_dask._version import __version__
from cbm_dask.archive.raster import Bounds, RasterInfo, common_grid, footprint, json_number
from cbm_dask.archive.raster import nodata_json as _nodata_json
from cbm_dask.errors import InputError
from cbm_dask.sentinel.bands import POLARISATIONS
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S2_L2A
from cbm_dask.sentinel.mgrs import mgrs_tile_at
from cbm_dask.sentinel.stac import (
    COG_MEDIA_TYPE,
    COPERNICUS_LICENSE,
    EO_EXTENSION,
    GRID_EXTENSION,
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
    "S1_EXTENSIONS",
    "S2_BANDS",
    "S2_EXTENSIONS",
    "SCL_PROPERTIES",
    "Acquisition",
    "ItemGrid",
    "S2Band",
    "SafeMetadata",
    "SatOrbit",
    "earth_search_fields",
    "s1_item",
    "s2_item",
    "scl_properties",
    "stac_datetime",
]

S2_EXTENSIONS = (GRID_EXTENSION, MGRS_EXTENSION, PROCESSING_EXTENSION, PROJECTION_EXTENSION,
                 SENTINEL2_EXTENSION, RASTER_EXTENSION, VIEW_EXTENSION, EO_EXTENSION)
"""Extensions of a Sentinel-2 item: those of Earth Search v1 ``sentinel-2-l2a``."""

S1_EXTENSIONS = (PROJECTION_EXTENSION, SAT_EXTENSION, PROCESSING_EXTENSION, SAR_EXTENSION,
                 RASTER_EXTENSION)
"""Extensions of a Sentinel-1 item: those of Earth Search v1 ``sentinel-1-grd``.

sat is left out of items without an orbit to describe.
"""

SCL_PROPERTIES: Mapping[int, str] = {
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
"""Scene classification class → Earth Search v1 property of its share (percent)."""

_CLOUD_CLASSES = (8, 9, 10)
_DEFAULT_SOFTWARE = {"cbm_dask": __version__}


def stac_datetime(when: dt.datetime) -> str:
    """Return ``when`` as the RFC 3339 text every item and collection carries.

    UTC with ``Z`` and six fractional digits (``2023-04-05T10:46:27.308000Z``),
    as Earth Search v1 writes them; a naive time is taken to be UTC.
    """
    utc = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return pystac.utils.datetime_to_str(utc, timespec="microseconds")


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


@dataclass(frozen=True)
class SafeMetadata:
    """Facts of a Sentinel-2 product, as its SAFE metadata (``MTD_MSIL2A.xml``) gives them.

    The archive parses them from the SAFE; the synthetic world makes them up.
    Each one that is set becomes an item field; None leaves the field out.

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
        ``GENERATION_TIME`` as RFC 3339 text.
    datatake_id, datastrip_id, granule_id
        Identifiers as in the SAFE (``granule_id`` becomes ``s2:tile_id``).
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
    sun_elevation
        Sun elevation when known directly; else ``90 - sun_zenith``.
    view_azimuth, view_incidence_angle
        Viewing angles (degrees), None when unknown.
    datatake_type, sequence, degraded_msi_data_percentage, reflectance_conversion_factor
        Further Earth Search ``s2:*`` fields.
    boa_offset_applied
        ``earthsearch:boa_offset_applied``: whether the DN already include the offset.
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
    sun_elevation: float | None = None
    view_azimuth: float | None = None
    view_incidence_angle: float | None = None
    datatake_type: str | None = None
    sequence: str | None = None
    degraded_msi_data_percentage: float | None = None
    reflectance_conversion_factor: float | None = None
    boa_offset_applied: bool | None = None

    def solar_elevation(self) -> float | None:
        """Return the sun elevation (degrees), None when neither it nor the zenith is known."""
        if self.sun_elevation is not None:
            return self.sun_elevation
        return None if self.sun_zenith is None else 90.0 - self.sun_zenith


@dataclass(frozen=True)
class Acquisition:
    """When an image was taken.

    Attributes
    ----------
    datetime
        The item's ``datetime`` (UTC).  When only the date is known it is the
        day's noon and ``start``/``end`` span the day (:meth:`from_date`).
    start, end
        ``start_datetime``/``end_datetime`` when the image covers a span (a
        scene's sensing, a coherence pair, a day); None otherwise.
    """

    datetime: dt.datetime
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    @classmethod
    def from_date(cls, day: dt.date) -> Acquisition:
        """Describe an acquisition known to the day only."""
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return cls(start + dt.timedelta(hours=12), start,
                   start + dt.timedelta(days=1) - dt.timedelta(microseconds=1000))

    def properties(self) -> dict[str, str]:
        """``datetime`` and, for a span, ``start_datetime``/``end_datetime``."""
        fields = {"datetime": stac_datetime(self.datetime)}
        if self.start is not None:
            fields["start_datetime"] = stac_datetime(self.start)
        if self.end is not None:
            fields["end_datetime"] = stac_datetime(self.end)
        return fields


@dataclass(frozen=True)
class ItemGrid:
    """Where an item lies: its CRS, projected bounds and footprint.

    Attributes
    ----------
    epsg
        EPSG code shared by the item's rasters (``proj:epsg``).
    bounds
        ``(left, bottom, right, top)`` in that CRS.
    geometry
        GeoJSON polygon of the footprint in EPSG:4326.
    bbox
        ``[west, south, east, north]`` of the footprint.
    centre
        ``(lon, lat)`` written as ``proj:centroid``.
    """

    epsg: int
    bounds: Bounds
    geometry: Mapping[str, Any]
    bbox: Sequence[float]
    centre: tuple[float, float]

    @classmethod
    def from_rasters(cls, item_id: str, infos: Iterable[RasterInfo]) -> ItemGrid:
        """Return the grid of rasters sharing one EPSG CRS (footprint of their union).

        Raises
        ------
        InputError
            When the rasters do not share one EPSG CRS.
        """
        epsg, bounds = common_grid(item_id, infos)
        geometry, bbox = footprint(bounds, epsg)
        return cls(epsg, bounds, geometry, bbox,
                   ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2))

    def mgrs_tile(self) -> tuple[int, str, str] | None:
        """Return ``(zone, latitude band, grid square)`` of the grid's centre, None off UTM."""
        left, bottom, right, top = self.bounds
        return mgrs_tile_at(self.epsg, (left + right) / 2, (bottom + top) / 2, self.centre[1])

    def centroid(self) -> dict[str, float]:
        """``proj:centroid`` (degrees, five decimals as Earth Search writes it)."""
        return {"lat": round(self.centre[1], 5), "lon": round(self.centre[0], 5)}


@dataclass(frozen=True)
class SatOrbit:
    """The orbit of a Sentinel-1 acquisition (``sat:*`` fields).

    Attributes
    ----------
    platform_international_designator
        COSPAR id of the satellite (``2014-016A``).
    orbit_state
        ``ascending`` or ``descending``.
    absolute_orbit, relative_orbit
        Orbit numbers.
    """

    platform_international_designator: str
    orbit_state: str
    absolute_orbit: int
    relative_orbit: int


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
    for cls_value, name in SCL_PROPERTIES.items():
        properties[name] = round(100 * int(counts.get(cls_value, 0)) / valid, 6)
    cloudy = sum(int(counts.get(c, 0)) for c in _CLOUD_CLASSES)
    properties["eo:cloud_cover"] = round(100 * cloudy / valid, 6)
    return properties


def earth_search_fields(product: SafeMetadata | None,
                        scl_stats: Mapping[str, float]) -> dict[str, Any]:
    """Return the Earth Search v1 ``s2:*`` and ``earthsearch:*`` fields of a Sentinel-2 item.

    Parameters
    ----------
    product
        Product facts; each field that is None is left out.
    scl_stats
        The ``s2:*_percentage`` values (from :func:`scl_properties` or made up);
        other keys (``eo:cloud_cover``) are ignored here.
    """
    fields: dict[str, Any] = {}
    facts = product or SafeMetadata()
    if facts.granule_id:
        fields["s2:tile_id"] = facts.granule_id
    if facts.degraded_msi_data_percentage is not None:
        fields["s2:degraded_msi_data_percentage"] = facts.degraded_msi_data_percentage
    fields.update({k: v for k, v in scl_stats.items() if k.startswith("s2:")})
    fields["s2:product_type"] = "S2MSI2A"
    for name, value in (("s2:processing_baseline", facts.processing_baseline),
                        ("s2:product_uri", facts.product_uri),
                        ("s2:generation_time", facts.generation_time),
                        ("s2:datatake_id", facts.datatake_id),
                        ("s2:datatake_type", facts.datatake_type),
                        ("s2:datastrip_id", facts.datastrip_id),
                        ("s2:reflectance_conversion_factor",
                         facts.reflectance_conversion_factor),
                        ("s2:sequence", facts.sequence),
                        ("earthsearch:boa_offset_applied", facts.boa_offset_applied)):
        if value is not None and value != "":
            fields[name] = value
    return fields


# ---------------------------------------------------------------------------
# assets and items


def _static_links(collection: str) -> list[dict[str, str]]:
    # STAC 1.1 wants a collection link beside the collection field; the relative
    # href follows the layout stac/items/<collection>/<item>.json.
    return [{"rel": "collection", "type": "application/json",
             "href": f"../../collections/{collection}.json"},
            {"rel": "license", "href": COPERNICUS_LICENSE,
             "title": "Copernicus Sentinel data terms"}]


def _new_item(item_id: str, collection: str, extensions: Sequence[str], grid: ItemGrid,
              acquisition: Acquisition,
              links: Sequence[Mapping[str, str]] | None) -> pystac.Item:
    # The extension versions are declared first: pystac's extension classes then
    # write into them instead of adding their own (newer) schema versions.
    item = pystac.Item(id=item_id, geometry=dict(grid.geometry), bbox=list(grid.bbox),
                       datetime=acquisition.datetime, properties={},
                       stac_extensions=list(extensions), collection=collection)
    for link in links if links is not None else _static_links(collection):
        item.add_link(pystac.Link(link["rel"], link["href"], media_type=link.get("type"),
                                  title=link.get("title")))
    return item


def _nodata(value: float | None) -> float | NoDataStrings | None:
    written = _nodata_json(value)
    return NoDataStrings(written) if isinstance(written, str) else written


def _add_raster_asset(
    item: pystac.Item, key: str, info: RasterInfo, href: str, *, title: str,
    roles: list[str], description: str | None = None, eo_band: S2Band | None = None,
    scale: float | None = None, offset: float | None = None, unit: str | None = None,
) -> None:
    asset = pystac.Asset(href=href, media_type=COG_MEDIA_TYPE, title=title,
                         description=description, roles=roles)
    item.add_asset(key, asset)
    if eo_band is not None:
        EOExtension.ext(asset).bands = [Band.create(
            name=eo_band.band_id, common_name=eo_band.common_name,
            center_wavelength=eo_band.center_wavelength,
            full_width_half_max=eo_band.fwhm)]
    asset.common_metadata.gsd = json_number(info.resolution)
    projection = ProjectionExtension.ext(asset)
    projection.shape = list(info.shape)
    projection.transform = [json_number(v) for v in info.transform]
    band = RasterBand.create(nodata=_nodata(info.nodata), data_type=DataType(info.dtype),
                             spatial_resolution=json_number(info.resolution), unit=unit)
    if scale is not None:
        band.scale = scale
        band.offset = offset if offset is not None else 0
    RasterExtension.ext(asset).bands = [band]


def _set_item_projection(item: pystac.Item, grid: ItemGrid) -> None:
    # Projection v1.1 (the version Earth Search v1 declares) names the CRS
    # proj:epsg; pystac's setter would write the v2.0 proj:code instead.
    item.properties["proj:epsg"] = grid.epsg
    ProjectionExtension.ext(item).centroid = grid.centroid()


def _document(item: pystac.Item, extra_properties: Mapping[str, Any] | None) -> dict[str, Any]:
    item.properties.update(extra_properties or {})
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    doc["stac_version"] = STAC_VERSION
    # pystac formats ``datetime`` its own way; all times follow stac_datetime.
    if item.datetime is not None:
        doc["properties"]["datetime"] = stac_datetime(item.datetime)
    # Plain JSON values (pystac keeps enum members such as NoDataStrings.NAN).
    result: dict[str, Any] = json.loads(json.dumps(doc))
    return result


def s2_item(
    *,
    item_id: str,
    acquisition: Acquisition,
    assets: Mapping[str, tuple[RasterInfo, str]],
    scl_stats: Mapping[str, float] | None = None,
    safe: SafeMetadata | None = None,
    reflectance_offset: float = 0.0,
    mgrs: str | None = None,
    grid: ItemGrid | None = None,
    links: Sequence[Mapping[str, str]] | None = None,
    software: Mapping[str, str] | None = None,
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
    scl_stats
        ``eo:cloud_cover`` and the ``s2:*_percentage`` properties
        (:func:`scl_properties` of the SCL raster's pixel counts).
    safe
        Product facts (platform, baseline, sun angles, ``s2:*`` identifiers ...).
    reflectance_offset
        ``raster:bands[].offset`` of the reflectance bands when ``safe`` gives no
        ``BOA_ADD_OFFSET``: -0.1 for baseline ≥ 04.00 DN, 0 for harmonised pixels.
    mgrs
        MGRS tile (``31UFS``) when known from the source; else computed from the
        grid's centre.
    grid
        Footprint and CRS; computed from the rasters when not given.
    links
        Link objects (``rel``, ``href``, optional ``type``/``title``); when not
        given the collection (``../../collections/<id>.json``) and the
        Copernicus licence.
    software
        ``processing:software``; this package and its version when not given.
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
    grid = grid or ItemGrid.from_rasters(item_id, (info for info, _ in assets.values()))
    stats = dict(scl_stats or {})
    item = _new_item(item_id, S2_L2A, S2_EXTENSIONS, grid, acquisition, links)
    common = item.common_metadata
    if safe and safe.platform:
        common.platform = safe.platform
    common.constellation = "sentinel-2"
    common.instruments = ["msi"]
    cloud = stats.get("eo:cloud_cover", safe.cloud_cover if safe else None)
    if cloud is not None:
        EOExtension.ext(item).cloud_cover = cloud
    _set_item_projection(item, grid)
    tile = (int(mgrs[:-3]), mgrs[-3], mgrs[-2:]) if mgrs else grid.mgrs_tile()
    if tile:
        zone, band, square = tile
        MgrsExtension.ext(item).apply(latitude_band=band, grid_square=square, utm_zone=zone)
        GridExtension.ext(item).code = f"MGRS-{zone}{band}{square}"
    if safe:
        view = ViewExtension.ext(item)
        if safe.view_azimuth is not None:
            view.azimuth = safe.view_azimuth
        if safe.view_incidence_angle is not None:
            view.incidence_angle = safe.view_incidence_angle
        elevation = safe.solar_elevation()
        if safe.sun_azimuth is not None and elevation is not None:
            view.sun_azimuth = safe.sun_azimuth
            view.sun_elevation = round(elevation, 6)
    if not any(name.startswith("view:") for name in item.properties):
        # view:* is declared only with an angle to give (its schema wants a field).
        item.stac_extensions.remove(VIEW_EXTENSION)
    item.properties.update(earth_search_fields(safe, stats))
    item.properties.update(acquisition.properties())
    item.properties["processing:software"] = dict(software or _DEFAULT_SOFTWARE)
    scale = 1.0 / (safe.quantification if safe else 10000.0)
    for band_id in sorted(assets, key=lambda b: S2_BANDS[b].key):
        info, href = assets[band_id]
        spec = S2_BANDS[band_id]
        if spec.kind == "reflectance":
            offset = reflectance_offset
            if safe and safe.boa_add_offset and band_id in safe.boa_add_offset:
                offset = safe.boa_add_offset[band_id] * scale
            _add_raster_asset(item, spec.key, info, href,
                              title=f"{spec.title} - {json_number(info.resolution)}m",
                              roles=["data", "reflectance"], eo_band=spec, scale=scale,
                              offset=round(offset, 10))
        elif spec.kind in ("aot", "wvp"):
            _add_raster_asset(item, spec.key, info, href, title=spec.title, roles=["data"],
                              scale=0.001, offset=0, unit="cm" if spec.kind == "wvp" else None)
        else:
            _add_raster_asset(item, spec.key, info, href, title=spec.title, roles=["data"])
    return _document(item, extra_properties)


def s1_item(
    *,
    item_id: str,
    acquisition: Acquisition,
    assets: Mapping[str, tuple[RasterInfo, str]],
    collection: str = S1_BACKSCATTER,
    backscatter: str | None = "gamma0_ellipsoid_linear",
    product_type: str = "GRD",
    asset_prefix: str = "",
    titles: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    platform: str | None = None,
    orbit: SatOrbit | None = None,
    grid: ItemGrid | None = None,
    links: Sequence[Mapping[str, str]] | None = None,
    software: Mapping[str, str] | None = None,
    extra_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a Sentinel-1 item shaped like Earth Search ``sentinel-1-grd``.

    Parameters
    ----------
    item_id
        The item id.
    acquisition
        Acquisition time (or date, or the span of a coherence pair).
    assets
        Polarisation (``VV``, ``VH``) → (raster facts, href).
    collection
        ``sentinel-1-backscatter`` or ``sentinel-1-coherence``.
    backscatter
        ``cbm:backscatter``: the coefficient and scale of the pixels; None for
        coherence.  Pixels not in linear scale get ``raster:bands[].unit`` dB.
    product_type
        ``sar:product_type`` (``GRD``, ``SLC-COH``).
    asset_prefix
        Put before the lower-case polarisation to make the asset key (``coh_``).
    titles, descriptions
        Polarisation → asset title (default ``"VV Data"``) / description.
    platform
        ``sentinel-1a`` etc. when known.
    orbit
        The ``sat:*`` fields when known.
    grid, links, software, extra_properties
        As for :func:`s2_item`.

    Raises
    ------
    InputError
        When a polarisation is unknown, or the rasters do not share one EPSG CRS.
    """
    unknown = sorted(set(assets) - set(POLARISATIONS))
    if unknown:
        raise InputError(
            f"item {item_id!r}: {', '.join(unknown)} are not Sentinel-1 polarisations "
            f"({', '.join(POLARISATIONS)}); rename the files or leave them out"
        )
    grid = grid or ItemGrid.from_rasters(item_id, (info for info, _ in assets.values()))
    polarisations = [p for p in POLARISATIONS if p in assets]
    # sat:* is declared only with an orbit to describe (its schema wants a field).
    extensions = [e for e in S1_EXTENSIONS if orbit is not None or e != SAT_EXTENSION]
    item = _new_item(item_id, collection, extensions, grid, acquisition, links)
    SarExtension.ext(item).apply(
        instrument_mode="IW", frequency_band=FrequencyBand.C,
        polarizations=[Polarization(p) for p in polarisations], product_type=product_type,
        center_frequency=5.405, resolution_range=20, resolution_azimuth=22,
        pixel_spacing_range=10, pixel_spacing_azimuth=10, looks_range=5, looks_azimuth=1,
        looks_equivalent_number=4.4, observation_direction=ObservationDirection.RIGHT)
    if orbit is not None:
        SatExtension.ext(item).apply(
            orbit_state=OrbitState(orbit.orbit_state), relative_orbit=orbit.relative_orbit,
            absolute_orbit=orbit.absolute_orbit,
            platform_international_designator=orbit.platform_international_designator)
    first = assets[polarisations[0]][0]
    _set_item_projection(item, grid)
    projection = ProjectionExtension.ext(item)
    projection.bbox = [json_number(v) for v in grid.bounds]
    projection.shape = list(first.shape)
    projection.transform = [json_number(v) for v in first.transform]
    if platform:
        item.common_metadata.platform = platform
    item.common_metadata.constellation = "sentinel-1"
    if backscatter is not None:
        item.properties["cbm:backscatter"] = backscatter
    item.properties.update(acquisition.properties())
    item.properties["processing:software"] = dict(software or _DEFAULT_SOFTWARE)
    linear = backscatter is None or backscatter.endswith("linear")
    for pol in polarisations:
        info, href = assets[pol]
        _add_raster_asset(
            item, f"{asset_prefix}{pol.lower()}", info, href,
            title=(titles or {}).get(pol, f"{pol} Data"),
            description=(descriptions or {}).get(pol), roles=["data"],
            unit=None if linear else "dB")
    return _document(item, extra_properties)
