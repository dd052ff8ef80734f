"""STAC documents of the synthetic world (pure: dicts in, dicts out).

Sentinel-2 items copy the structure of Earth Search v1 ``sentinel-2-l2a`` items (STAC
1.0.0, common-name asset keys, ``eo:bands`` and ``raster:bands`` per asset with scale
0.0001 and offset -0.1, per-asset ``proj:shape``/``proj:transform``, ``mgrs:*``,
``grid:code``, ``s2:*`` statistics and ``earthsearch:boa_offset_applied``).  Sentinel-1
items copy the Earth Search ``sentinel-1-grd`` properties (``sar:*``, ``sat:*``, ``s1:*``)
but their assets are analysis-ready float32 gamma0 COGs on the tile's UTM grid.
Coherence items share those properties and describe a pair through ``start_datetime``
(reference) and ``end_datetime`` (= ``datetime``, secondary).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from cbm_dask.archive.metadata import sar_properties
from cbm_dask.world.grid import WorldGrid
from cbm_dask.world.params import S1_BACKSCATTER, S1_COHERENCE, S2_L2A
from cbm_dask.world.sentinel2 import BANDS

__all__ = [
    "COG_TYPE",
    "S1_ASSETS",
    "S2_ASSETS",
    "collection",
    "s1_backscatter_item",
    "s1_coherence_item",
    "s1_coherence_item_id",
    "s1_item_id",
    "s2_item",
    "s2_item_id",
]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.0.0"
S2_ASSETS = (*(b.key for b in BANDS), "scl")
S1_ASSETS = ("vv", "vh")
COHERENCE_ASSETS = ("coh_vv",)
_EXT = "https://stac-extensions.github.io"
_S2_EXTENSIONS = [
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/grid/v1.1.0/schema.json",
    f"{_EXT}/sentinel-2/v1.0.0/schema.json",
    f"{_EXT}/eo/v1.1.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/mgrs/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
]
_S1_EXTENSIONS = [
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/sat/v1.0.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/sar/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
]
_SOFTWARE = {"cbm_dask-world": "1"}
_LICENSE = "CC0-1.0"
_SCL_KEYS = {
    "s2:nodata_pixel_percentage": 0,
    "s2:saturated_defective_pixel_percentage": 1,
    "s2:cloud_shadow_percentage": 3,
    "s2:vegetation_percentage": 4,
    "s2:not_vegetated_percentage": 5,
    "s2:water_percentage": 6,
    "s2:unclassified_percentage": 7,
    "s2:medium_proba_clouds_percentage": 8,
    "s2:high_proba_clouds_percentage": 9,
    "s2:thin_cirrus_percentage": 10,
    "s2:snow_ice_percentage": 11,
}
_S1_PLATFORM = {
    "sentinel-1a": ("S1A", "2014-016A"),
    "sentinel-1b": ("S1B", "2016-025A"),
    "sentinel-1c": ("S1C", "2024-235A"),
}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _transform(grid: WorldGrid, resolution: int) -> list[float]:
    t = grid.transform(resolution)
    return [t.a, t.b, t.c, t.d, t.e, t.f]


def _proj(grid: WorldGrid, resolution: int) -> dict[str, Any]:
    return {
        "proj:shape": list(grid.shape(resolution)),
        "proj:transform": _transform(grid, resolution),
    }


def _geometry(grid: WorldGrid) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [grid.footprint_lonlat()]}


def _bbox(grid: WorldGrid) -> list[float]:
    return [round(v, 7) for v in grid.bbox_lonlat()]


def _centroid(grid: WorldGrid) -> dict[str, float]:
    lon, lat = grid.centre_lonlat()
    return {"lat": round(lat, 5), "lon": round(lon, 5)}


def _links(collection_id: str) -> list[dict[str, str]]:
    href = f"../../collections/{collection_id}.json"
    return [
        {"rel": "collection", "type": "application/json", "href": href},
        {"rel": "parent", "type": "application/json", "href": href},
        {"rel": "license", "href": "https://creativecommons.org/publicdomain/zero/1.0/"},
    ]


def s2_item_id(platform: str, tile: str, when: dt.datetime) -> str:
    """Earth Search style id, e.g. ``S2B_31UFS_20240305_0_L2A``."""
    unit = "A" if platform.endswith("a") else "B" if platform.endswith("b") else "C"
    return f"S2{unit}_{tile}_{when:%Y%m%d}_0_L2A"


def _s2_asset(key: str, href: str, grid: WorldGrid) -> dict[str, Any]:
    if key == "scl":
        return {
            "href": href,
            "type": COG_TYPE,
            "title": "Scene classification map (SCL)",
            "gsd": 20,
            **_proj(grid, 20),
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
            "roles": ["data"],
        }
    band = next(b for b in BANDS if b.key == key)
    common = "rededge" if key.startswith("rededge") else key
    return {
        "href": href,
        "type": COG_TYPE,
        "title": band.title,
        "eo:bands": [{
            "name": band.band_id,
            "common_name": common,
            "center_wavelength": band.center,
            "full_width_half_max": band.fwhm,
        }],
        "gsd": band.resolution,
        **_proj(grid, band.resolution),
        "raster:bands": [{
            "nodata": 0,
            "data_type": "uint16",
            "spatial_resolution": band.resolution,
            "scale": 0.0001,
            "offset": -0.1,
        }],
        "roles": ["data", "reflectance"],
    }


def s2_item(
    *,
    grid: WorldGrid,
    when: dt.datetime,
    platform: str,
    relative_orbit: int,
    hrefs: dict[str, str],
    scl_percent: dict[int, float],
    sun_azimuth: float,
    sun_elevation: float,
    baseline: str = "05.10",
) -> dict[str, Any]:
    """Earth Search v1 ``sentinel-2-l2a`` style item of one synthetic acquisition.

    Parameters
    ----------
    grid
        World window (footprint, transforms).
    when
        Acquisition time (UTC).
    platform
        ``sentinel-2a`` or ``sentinel-2b``.
    relative_orbit
        Relative orbit number (used in product names).
    hrefs
        Asset key -> href (relative to the item file).
    scl_percent
        SCL class -> percent of pixels.
    sun_azimuth, sun_elevation
        Sun angles in degrees.
    baseline
        Processing baseline, >= 04.00 (DNs carry the +1000 offset).
    """
    tile = grid.tile
    item_id = s2_item_id(platform, tile.tile_id, when)
    unit = item_id[:3]
    generated = when + dt.timedelta(hours=1, minutes=12)
    created = when + dt.timedelta(hours=2, minutes=5)
    stamp = f"{when:%Y%m%dT%H%M%S}"
    gen_stamp = f"{generated:%Y%m%dT%H%M%S}"
    absolute = 10_000 + (when.date() - dt.date(2015, 6, 23)).days * 14
    b = baseline.replace(".", "")
    cloud = scl_percent.get(8, 0.0) + scl_percent.get(9, 0.0) + scl_percent.get(10, 0.0)
    properties: dict[str, Any] = {
        "created": _iso(created),
        "platform": platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": round(cloud, 6),
        "proj:epsg": tile.epsg,
        "proj:centroid": _centroid(grid),
        "mgrs:utm_zone": tile.zone,
        "mgrs:latitude_band": tile.latitude_band,
        "mgrs:grid_square": tile.grid_square,
        "grid:code": f"MGRS-{tile.tile_id}",
        "view:azimuth": 105.0 if platform.endswith("a") else 285.0,
        "view:incidence_angle": 5.5,
        "view:sun_azimuth": round(sun_azimuth, 6),
        "view:sun_elevation": round(sun_elevation, 6),
        "s2:tile_id": (f"{unit}_OPER_MSI_L2A_TL_2APS_{gen_stamp}_A{absolute:06d}_"
                       f"T{tile.tile_id}_N{baseline}"),
        "s2:degraded_msi_data_percentage": 0,
    }
    for key, cls in _SCL_KEYS.items():
        properties[key] = round(scl_percent.get(cls, 0.0), 6)
    properties.update({
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": baseline,
        "s2:product_uri": (f"{unit}_MSIL2A_{stamp}_N{b}_R{relative_orbit:03d}_T{tile.tile_id}_"
                           f"{gen_stamp}.SAFE"),
        "s2:generation_time": _iso(generated),
        "s2:datatake_id": f"G{unit}_{stamp}_{absolute:06d}_N{baseline}",
        "s2:datatake_type": "INS-NOBS",
        "s2:datastrip_id": f"{unit}_OPER_MSI_L2A_DS_2APS_{gen_stamp}_S{stamp}_N{baseline}",
        "s2:reflectance_conversion_factor": round(
            1.0 / (1 - 0.01673 * math.cos(0.0172 * (when.timetuple().tm_yday - 4))) ** 2, 9),
        "datetime": _iso(when),
        "s2:sequence": "0",
        "earthsearch:boa_offset_applied": False,
        "processing:software": dict(_SOFTWARE),
        "cbm:synthetic": True,
        "updated": _iso(created),
    })
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(_S2_EXTENSIONS),
        "id": item_id,
        "geometry": _geometry(grid),
        "bbox": _bbox(grid),
        "properties": properties,
        "links": _links(S2_L2A),
        "assets": {key: _s2_asset(key, hrefs[key], grid) for key in S2_ASSETS},
        "collection": S2_L2A,
    }


def s1_item_id(platform: str, start: dt.datetime, absolute_orbit: int) -> str:
    """Return an ESA style GRD id, e.g. ``S1A_IW_GRDH_1SDV_20240303T172512_..._052835_1DD9F2``."""
    unit = _S1_PLATFORM[platform][0]
    stop = start + dt.timedelta(seconds=25)
    datatake = (absolute_orbit * 37 + 0x5A3) % 0xFFFFFF
    return (f"{unit}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
            f"{absolute_orbit:06d}_{datatake:06X}")


def s1_coherence_item_id(platform: str, reference: dt.datetime, secondary: dt.datetime,
                         relative_orbit: int) -> str:
    """Id of a coherence pair, e.g. ``S1A_IW_COH6_VV_20240303T172530_20240309T172541_088``."""
    days = (secondary.date() - reference.date()).days
    unit = _S1_PLATFORM[platform][0]
    return (f"{unit}_IW_COH{days}_VV_{reference:%Y%m%dT%H%M%S}_{secondary:%Y%m%dT%H%M%S}_"
            f"{relative_orbit:03d}")


def _sar_properties(platform: str, start: dt.datetime, absolute_orbit: int,
                    relative_orbit: int, orbit_state: str, polarizations: list[str],
                    product_type: str) -> dict[str, Any]:
    return {
        **sar_properties(polarizations, product_type),
        "sat:platform_international_designator": _S1_PLATFORM[platform][1],
        "sat:orbit_state": orbit_state,
        "sat:absolute_orbit": absolute_orbit,
        "sat:relative_orbit": relative_orbit,
    }


def _s1_proj(grid: WorldGrid, resolution: int) -> dict[str, Any]:
    left, bottom, right, top = grid.bounds
    return {
        "proj:epsg": grid.epsg,
        "proj:bbox": [left, bottom, right, top],
        **_proj(grid, resolution),
        "proj:centroid": _centroid(grid),
    }


def _float_asset(href: str, title: str, grid: WorldGrid, resolution: int,
                 unit: str | None) -> dict[str, Any]:
    band: dict[str, Any] = {"nodata": "nan", "data_type": "float32",
                            "spatial_resolution": resolution}
    if unit:
        band["unit"] = unit
    return {
        "href": href,
        "type": COG_TYPE,
        "title": title,
        "gsd": resolution,
        **_proj(grid, resolution),
        "raster:bands": [band],
        "roles": ["data"],
    }


def _s1_item(item_id: str, collection: str, grid: WorldGrid, properties: dict[str, Any],
             assets: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "id": item_id,
        "properties": properties,
        "geometry": _geometry(grid),
        "links": _links(collection),
        "assets": assets,
        "bbox": _bbox(grid),
        "stac_extensions": list(_S1_EXTENSIONS),
        "collection": collection,
    }


def s1_backscatter_item(
    *,
    grid: WorldGrid,
    start: dt.datetime,
    platform: str,
    absolute_orbit: int,
    relative_orbit: int,
    orbit_state: str,
    resolution: int,
    hrefs: dict[str, str],
) -> dict[str, Any]:
    """Item of one Sentinel-1 IW dual-pol acquisition (assets ``vv``, ``vh``: gamma0 linear)."""
    item_id = s1_item_id(platform, start, absolute_orbit)
    stop = start + dt.timedelta(seconds=25)
    middle = start + dt.timedelta(seconds=12, microseconds=500_000)
    processed = start + dt.timedelta(hours=3, minutes=40)
    properties: dict[str, Any] = {
        **_sar_properties(platform, start, absolute_orbit, relative_orbit, orbit_state,
                          ["VV", "VH"], "GRD"),
        **_s1_proj(grid, resolution),
        "platform": platform,
        "constellation": "sentinel-1",
        "start_datetime": _iso(start),
        "end_datetime": _iso(stop),
        "s1:instrument_configuration_ID": "7",
        "s1:datatake_id": str((absolute_orbit * 37 + 0x5A3) % 0xFFFFFF),
        "s1:product_timeliness": "Fast-24h",
        "s1:processing_level": "1",
        "s1:resolution": "high",
        "s1:orbit_source": "POEORB",
        "s1:slice_number": "4",
        "s1:total_slices": "9",
        "s1:shape": list(grid.shape(resolution)),
        "s1:product_identifier": f"{item_id}_{absolute_orbit % 0xFFFF:04X}",
        "s1:processing_datetime": _iso(processed),
        "datetime": _iso(middle),
        "processing:software": dict(_SOFTWARE),
        "cbm:backscatter": "gamma0_terrain_flattened_linear",
        "cbm:synthetic": True,
        "created": _iso(processed + dt.timedelta(minutes=20)),
        "updated": _iso(processed + dt.timedelta(minutes=20)),
    }
    return _s1_item(item_id, S1_BACKSCATTER, grid, properties, {
        pol: _float_asset(hrefs[pol], f"{pol.upper()} gamma0 (linear power)", grid,
                          resolution, None)
        for pol in S1_ASSETS
    })


def s1_coherence_item(
    *,
    grid: WorldGrid,
    reference: dt.datetime,
    secondary: dt.datetime,
    platform: str,
    absolute_orbit: int,
    relative_orbit: int,
    orbit_state: str,
    resolution: int,
    hrefs: dict[str, str],
) -> dict[str, Any]:
    """Item of one 6-day VV coherence pair (asset ``coh_vv``, float32 0..1).

    ``start_datetime`` is the reference (earlier) acquisition, ``end_datetime`` and
    ``datetime`` the secondary (later) one; ``sat:absolute_orbit`` is the secondary's.
    """
    days = (secondary.date() - reference.date()).days
    item_id = s1_coherence_item_id(platform, reference, secondary, relative_orbit)
    processed = secondary + dt.timedelta(hours=6)
    properties: dict[str, Any] = {
        **_sar_properties(platform, secondary, absolute_orbit, relative_orbit, orbit_state,
                          ["VV"], "SLC-COH"),
        **_s1_proj(grid, resolution),
        "platform": platform,
        "constellation": "sentinel-1",
        "start_datetime": _iso(reference),
        "end_datetime": _iso(secondary),
        "datetime": _iso(secondary),
        "s1:processing_level": "2",
        "s1:orbit_source": "POEORB",
        "s1:processing_datetime": _iso(processed),
        "processing:software": dict(_SOFTWARE),
        "cbm:temporal_baseline_days": days,
        "cbm:reference_datetime": _iso(reference),
        "cbm:secondary_datetime": _iso(secondary),
        "cbm:synthetic": True,
        "created": _iso(processed),
        "updated": _iso(processed),
    }
    return _s1_item(item_id, S1_COHERENCE, grid, properties, {
        "coh_vv": _float_asset(hrefs["coh_vv"], f"VV coherence, {days}-day pair", grid,
                               resolution, None),
    })


def collection(
    collection_id: str,
    grid: WorldGrid,
    start: dt.datetime,
    end: dt.datetime,
    s1_resolution: int,
    platforms: list[str],
) -> dict[str, Any]:
    """Return the collection document with ``item_assets`` (Earth Search v1 layout)."""
    if collection_id == S2_L2A:
        title = "Sentinel-2 Level-2A (synthetic)"
        description = ("Synthetic Sentinel-2 L2A surface reflectance on the MGRS grid, "
                       "processing baseline >= 04.00 (DN = reflectance * 10000 + 1000).")
        item_assets = {k: {kk: vv for kk, vv in _s2_asset(k, "", grid).items()
                           if kk not in ("href",)} for k in S2_ASSETS}
        summaries: dict[str, Any] = {
            "platform": platforms,
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": sorted({b.resolution for b in BANDS}),
            "eo:bands": [{"name": b.key, "common_name": "rededge" if b.key.startswith("rededge")
                          else b.key, "description": f"{b.key} ({b.band_id})",
                          "center_wavelength": b.center, "full_width_half_max": b.fwhm}
                         for b in BANDS],
        }
        extensions = [
            f"{_EXT}/item-assets/v1.0.0/schema.json",
            f"{_EXT}/view/v1.0.0/schema.json",
            f"{_EXT}/raster/v1.1.0/schema.json",
            f"{_EXT}/eo/v1.0.0/schema.json",
        ]
        keywords = ["sentinel", "earth observation", "esa", "synthetic"]
    else:
        coherence = collection_id == S1_COHERENCE
        title = ("Sentinel-1 6-day VV coherence (synthetic)" if coherence
                 else "Sentinel-1 IW gamma0 backscatter (synthetic)")
        description = (
            "Synthetic interferometric coherence magnitude of consecutive 6-day pairs, "
            "float32 0..1, on the MGRS tile's UTM grid." if coherence else
            "Synthetic terrain-flattened gamma0 backscatter, VV and VH, float32 linear "
            "power, on the MGRS tile's UTM grid.")
        keys = COHERENCE_ASSETS if coherence else S1_ASSETS
        item_assets = {k: {kk: vv for kk, vv in _float_asset("", k, grid, s1_resolution,
                                                             None).items() if kk != "href"}
                       for k in keys}
        summaries = {
            "platform": platforms,
            "constellation": ["sentinel-1"],
            "sar:polarizations": [["VV"]] if coherence else [["VV", "VH"]],
            "sar:instrument_mode": ["IW"],
            "sar:frequency_band": ["C"],
            "sar:center_frequency": [5.405],
            "sar:product_type": ["SLC-COH" if coherence else "GRD"],
            "sat:orbit_state": ["ascending"],
            "gsd": [s1_resolution],
        }
        extensions = [
            f"{_EXT}/item-assets/v1.0.0/schema.json",
            f"{_EXT}/sar/v1.0.0/schema.json",
            f"{_EXT}/sat/v1.0.0/schema.json",
            f"{_EXT}/raster/v1.1.0/schema.json",
        ]
        keywords = ["sentinel", "sar", "c-band", "synthetic"]
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": STAC_VERSION,
        "title": title,
        "description": description,
        "links": [{"rel": "license",
                   "href": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "stac_extensions": extensions,
        "extent": {
            "spatial": {"bbox": [_bbox(grid)]},
            "temporal": {"interval": [[_iso(start), _iso(end)]]},
        },
        "license": _LICENSE,
        "keywords": keywords,
        "providers": [{"name": "cbm_dask world generator", "roles": ["producer", "processor"]}],
        "summaries": summaries,
        "item_assets": item_assets,
    }
