"""STAC documents of the synthetic world: its ids and made-up product facts (pure).

The items themselves are built by the archive's one item builder
(:func:`cbm_dask.archive.items.s2_item` / :func:`~cbm_dask.archive.items.s1_item`);
this module only says what is particular to the world: Earth Search style ids,
the synthetic SAFE facts (baseline >= 04.00, DN carrying the +1000 offset,
``earthsearch:boa_offset_applied`` false), the rasters' grid (one
:class:`~cbm_dask.world._grid.WorldGrid` window), relative links, the CC0 licence
and ``cbm:synthetic``.  Coherence items describe a pair through
``start_datetime`` (reference) and ``end_datetime`` (= ``datetime``, secondary).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from cbm_dask.archive.collections import collection_document, item_assets_of
from cbm_dask.archive.items import (
    SCL_PROPERTIES,
    Acquisition,
    ItemGrid,
    SafeMetadata,
    SatOrbit,
    stac_datetime,
)
from cbm_dask.archive.items import s1_item as build_s1_item
from cbm_dask.archive.items import s2_item as build_s2_item
from cbm_dask.archive.raster import RasterInfo
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A
from cbm_dask.sentinel.stac import (
    EO_EXTENSION,
    ITEM_ASSETS_EXTENSION,
    RASTER_EXTENSION,
    SAR_EXTENSION,
    SAT_EXTENSION,
    VIEW_EXTENSION,
)
from cbm_dask.world._grid import WorldGrid
from cbm_dask.world._sentinel2 import BANDS

__all__ = [
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

S2_ASSETS = (*(b.key for b in BANDS), "scl")
S1_ASSETS = ("vv", "vh")
COHERENCE_ASSETS = ("coh_vv",)
_SOFTWARE = {"cbm_dask-world": "1"}
_LICENSE = "CC0-1.0"
_LICENSE_URL = "https://creativecommons.org/publicdomain/zero/1.0/"
_SYNTHETIC = {"cbm:synthetic": True}
# The world reports no dark-feature share (Earth Search items carry none).
_SCL_REPORTED = {0: "s2:nodata_pixel_percentage",
                 **{c: name for c, name in SCL_PROPERTIES.items() if c != 2}}
_S1_PLATFORM = {
    "sentinel-1a": ("S1A", "2014-016A"),
    "sentinel-1b": ("S1B", "2016-025A"),
    "sentinel-1c": ("S1C", "2024-235A"),
}


def _raster(grid: WorldGrid, resolution: int, dtype: str, nodata: float) -> RasterInfo:
    t = grid.transform(resolution)
    rows, cols = grid.shape(resolution)
    return RasterInfo(source=f"world {grid.tile.tile_id} {resolution} m", epsg=grid.epsg,
                      has_crs=True, width=cols, height=rows,
                      transform=(t.a, t.b, t.c, t.d, t.e, t.f), dtype=dtype, nodata=nodata)


def _item_grid(grid: WorldGrid) -> ItemGrid:
    return ItemGrid(epsg=grid.epsg, bounds=grid.bounds,
                    geometry={"type": "Polygon", "coordinates": [grid.footprint_lonlat()]},
                    bbox=[round(v, 7) for v in grid.bbox_lonlat()], centre=grid.centre_lonlat())


def _links(collection_id: str) -> list[dict[str, str]]:
    href = f"../../collections/{collection_id}.json"
    return [
        {"rel": "collection", "type": "application/json", "href": href},
        {"rel": "parent", "type": "application/json", "href": href},
        {"rel": "license", "href": _LICENSE_URL},
    ]


def _made(created: dt.datetime) -> dict[str, Any]:
    return {"created": stac_datetime(created), "updated": stac_datetime(created), **_SYNTHETIC}


def s2_item_id(platform: str, tile: str, when: dt.datetime) -> str:
    """Earth Search style id, e.g. ``S2B_31UFS_20240305_0_L2A``."""
    unit = "A" if platform.endswith("a") else "B" if platform.endswith("b") else "C"
    return f"S2{unit}_{tile}_{when:%Y%m%d}_0_L2A"


def _s2_assets(grid: WorldGrid, hrefs: dict[str, str]) -> dict[str, tuple[RasterInfo, str]]:
    assets = {b.band_id: (_raster(grid, b.resolution, "uint16", 0.0), hrefs[b.key])
              for b in BANDS}
    assets["SCL"] = (_raster(grid, 20, "uint8", 0.0), hrefs["scl"])
    return assets


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
    stamp = f"{when:%Y%m%dT%H%M%S}"
    gen_stamp = f"{generated:%Y%m%dT%H%M%S}"
    absolute = 10_000 + (when.date() - dt.date(2015, 6, 23)).days * 14
    compact = baseline.replace(".", "")
    stats = {name: round(scl_percent.get(cls, 0.0), 6) for cls, name in _SCL_REPORTED.items()}
    stats["eo:cloud_cover"] = round(sum(scl_percent.get(c, 0.0) for c in (8, 9, 10)), 6)
    product = SafeMetadata(
        product_uri=(f"{unit}_MSIL2A_{stamp}_N{compact}_R{relative_orbit:03d}_T{tile.tile_id}_"
                     f"{gen_stamp}.SAFE"),
        platform=platform,
        processing_baseline=baseline,
        generation_time=stac_datetime(generated),
        datatake_id=f"G{unit}_{stamp}_{absolute:06d}_N{baseline}",
        datastrip_id=f"{unit}_OPER_MSI_L2A_DS_2APS_{gen_stamp}_S{stamp}_N{baseline}",
        granule_id=(f"{unit}_OPER_MSI_L2A_TL_2APS_{gen_stamp}_A{absolute:06d}_"
                    f"T{tile.tile_id}_N{baseline}"),
        sun_azimuth=round(sun_azimuth, 6),
        sun_elevation=sun_elevation,
        view_azimuth=105.0 if platform.endswith("a") else 285.0,
        view_incidence_angle=5.5,
        datatake_type="INS-NOBS",
        sequence="0",
        degraded_msi_data_percentage=0,
        reflectance_conversion_factor=round(
            1.0 / (1 - 0.01673 * math.cos(0.0172 * (when.timetuple().tm_yday - 4))) ** 2, 9),
        boa_offset_applied=False,
    )
    return build_s2_item(
        item_id=item_id, acquisition=Acquisition(when), assets=_s2_assets(grid, hrefs),
        scl_stats=stats, safe=product, reflectance_offset=-0.1, mgrs=tile.tile_id,
        grid=_item_grid(grid), links=_links(S2_L2A), software=_SOFTWARE,
        extra_properties=_made(when + dt.timedelta(hours=2, minutes=5)))


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


def _orbit(platform: str, absolute_orbit: int, relative_orbit: int,
           orbit_state: str) -> SatOrbit:
    return SatOrbit(platform_international_designator=_S1_PLATFORM[platform][1],
                    orbit_state=orbit_state, absolute_orbit=absolute_orbit,
                    relative_orbit=relative_orbit)


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
    granule = {
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
        "s1:processing_datetime": stac_datetime(processed),
    }
    return build_s1_item(
        item_id=item_id, acquisition=Acquisition(middle, start, stop),
        assets={pol.upper(): (_raster(grid, resolution, "float32", math.nan), hrefs[pol])
                for pol in S1_ASSETS},
        backscatter="gamma0_terrain_flattened_linear",
        titles={pol.upper(): f"{pol.upper()} gamma0 (linear power)" for pol in S1_ASSETS},
        platform=platform, orbit=_orbit(platform, absolute_orbit, relative_orbit, orbit_state),
        grid=_item_grid(grid), links=_links(S1_BACKSCATTER), software=_SOFTWARE,
        extra_properties={**granule, **_made(processed + dt.timedelta(minutes=20))})


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
    pair = {
        "s1:processing_level": "2",
        "s1:orbit_source": "POEORB",
        "s1:processing_datetime": stac_datetime(processed),
        "cbm:temporal_baseline_days": days,
        "cbm:reference_datetime": stac_datetime(reference),
        "cbm:secondary_datetime": stac_datetime(secondary),
    }
    return build_s1_item(
        item_id=item_id, acquisition=Acquisition(secondary, reference, secondary),
        assets={"VV": (_raster(grid, resolution, "float32", math.nan), hrefs["coh_vv"])},
        collection=S1_COHERENCE, backscatter=None, product_type="SLC-COH", asset_prefix="coh_",
        titles={"VV": f"VV coherence, {days}-day pair"},
        platform=platform, orbit=_orbit(platform, absolute_orbit, relative_orbit, orbit_state),
        grid=_item_grid(grid), links=_links(S1_COHERENCE), software=_SOFTWARE,
        extra_properties={**pair, **_made(processed)})


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
        example = s2_item(grid=grid, when=start, platform="sentinel-2a", relative_orbit=1,
                          hrefs={key: key for key in S2_ASSETS}, scl_percent={},
                          sun_azimuth=0.0, sun_elevation=0.0)
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
        extensions = [ITEM_ASSETS_EXTENSION, VIEW_EXTENSION, RASTER_EXTENSION, EO_EXTENSION]
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
        if coherence:
            example = s1_coherence_item(
                grid=grid, reference=start, secondary=start + dt.timedelta(days=6),
                platform="sentinel-1a", absolute_orbit=1, relative_orbit=1,
                orbit_state="ascending", resolution=s1_resolution,
                hrefs={key: key for key in COHERENCE_ASSETS})
        else:
            example = s1_backscatter_item(
                grid=grid, start=start, platform="sentinel-1a", absolute_orbit=1,
                relative_orbit=1, orbit_state="ascending", resolution=s1_resolution,
                hrefs={key: key for key in S1_ASSETS})
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
        extensions = [ITEM_ASSETS_EXTENSION, SAR_EXTENSION, SAT_EXTENSION, RASTER_EXTENSION]
        keywords = ["sentinel", "sar", "c-band", "synthetic"]
    return collection_document(
        collection_id=collection_id, title=title, description=description, keywords=keywords,
        license=_LICENSE, links=[{"rel": "license", "href": _LICENSE_URL}],
        providers=[{"name": "cbm_dask world generator", "roles": ["producer", "processor"]}],
        extensions=extensions, bbox=[round(v, 7) for v in grid.bbox_lonlat()],
        interval=[stac_datetime(start), stac_datetime(end)], summaries=summaries,
        item_assets=item_assets_of(example))
