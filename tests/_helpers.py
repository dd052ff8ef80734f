"""Helpers shared by the test modules: where the real data lives, ports, STAC items.

The real data (Sentinel COGs, STAC items, LPIS samples) is read in place, never
copied.  It is found next to the repository (``../shared/data/real``) unless
``CBM_TEST_DATA`` names another directory (a relative path is taken from the
repository root); tests that need it carry the ``realdata`` marker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import rasterio
import shapely
import shapely.geometry
from pyproj import Transformer

from cbm_dask._process import free_port, setting_env_name, stop_daemon

__all__ = [
    "COG",
    "ES_KEYS",
    "FLANDERS_PARCELS",
    "IRELAND_WINDOW",
    "KEMPEN_COGS",
    "KEMPEN_S1_COGS",
    "LPIS",
    "REAL_DATA",
    "ROOT",
    "cdse_item",
    "dask_env",
    "earth_search_item",
    "empty_database",
    "free_admin_port",
    "free_port",
    "ireland_item",
    "occupy",
    "planetary_item",
    "release",
    "s1_item",
    "s3_port_settings",
]

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (ROOT / os.environ.get("CBM_TEST_DATA", "../shared/data/real")).resolve()
"""The real test data (``CBM_TEST_DATA``, default ``../shared/data/real`` beside the repo)."""
LPIS = REAL_DATA / "lpis"
FLANDERS_PARCELS = LPIS / "be_vlg_landbouwgebruikspercelen_2023" / "parcels.gpkg"
"""The smallest real declaration file: quick to load into a fresh database."""

KEMPEN_COGS = REAL_DATA / "s2_l2a_flanders_kempen_2022_2023" / "cogs"
KEMPEN_S1_COGS = REAL_DATA / "s1_flanders_kempen_2023" / "cogs"
IRELAND_WINDOW = REAL_DATA / "s2_l2a_ireland_T29UNU_20221005" / "cogs_window"

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
ES_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B08": "nir",
           "B11": "swir16", "SCL": "scl", "AOT": "aot"}
"""Earth Search asset keys (common names) of the Sentinel-2 band ids."""


# ---------------------------------------------------------------------------
# ports and the settings that carry them to subprocesses


def free_admin_port() -> int:
    """Return a free port p whose p + 10000 is free too (SeaweedFS's admin gRPC port)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair p, p + 10000 on 127.0.0.1")


def s3_port_settings() -> dict[str, object]:
    """Return fresh free ports for every listener of an embedded SeaweedFS (dask.config keys)."""
    ports = {name: free_port() for name in ("master", "master-grpc", "volume", "volume-grpc",
                                            "filer", "filer-grpc", "s3-grpc")}
    ports["admin"] = free_admin_port()
    return {"cbm.s3.port": free_port(), "cbm.s3.ports": ports}


def occupy(port: int) -> subprocess.Popen[str]:
    """Start a real program (another process) listening on 127.0.0.1:``port``.

    Stop it with :func:`release`.
    """
    code = ("import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
            "print('listening', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "listening"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    """Stop a program of :func:`occupy` by its PID and reap it."""
    stop_daemon(holder.pid, timeout=5)
    holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


def dask_env(settings: dict[str, object]) -> dict[str, str]:
    """Return the DASK_CBM__… variables that carry ``settings`` to subprocesses."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                env[setting_env_name(f"{key}.{sub}")] = str(sub_value)
        else:
            env[setting_env_name(key)] = str(value)
    return env


def empty_database(url: str) -> None:
    """Drop every dataset (with its partitions) from the database at ``url``."""
    import sqlalchemy as sa

    from cbm_dask.store._partitions import drop_dataset_partitions
    from cbm_dask.store.engine import get_engine

    with get_engine(url).begin() as conn:
        for dataset_id in conn.execute(sa.text("SELECT id FROM datasets")).scalars():
            drop_dataset_partitions(conn, dataset_id)
        conn.execute(sa.text("DELETE FROM datasets"))


# ---------------------------------------------------------------------------
# items of the real catalogues' shapes pointing at the real local COGs


def _grid(path: Path) -> tuple[int, list[float], list[int], Any]:
    with rasterio.open(path) as src:
        return src.crs.to_epsg(), list(src.transform)[:6], [src.height, src.width], src.bounds


def _footprint(bounds: Any, epsg: int) -> dict[str, Any]:
    to_4326 = Transformer.from_crs(epsg, 4326, always_xy=True)
    x0, y0, x1, y1 = bounds
    ring = [to_4326.transform(x, y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]
    return shapely.geometry.mapping(shapely.Polygon(ring))


def _bbox(bounds: Any, epsg: int) -> list[float]:
    return list(shapely.geometry.shape(_footprint(bounds, epsg)).bounds)


def earth_search_item(date: str, *, offset: float = -0.1, harmonised: bool | None = None,
                      hour: str = "10:47:00", suffix: str = "") -> dict[str, Any]:
    """Earth Search v1 / c1 shape: common-name keys, raster:bands scale/offset, proj:epsg."""
    assets: dict[str, Any] = {}
    epsg = 0
    bounds = None
    for tif in sorted((KEMPEN_COGS / date).glob("*.tif")):
        band = tif.stem
        epsg, transform, shape, bounds = _grid(tif)
        raster: dict[str, Any] = {"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16",
                                  "spatial_resolution": transform[0]}
        if band not in ("SCL", "AOT"):
            raster.update(scale=0.0001, offset=offset)
        assets[ES_KEYS[band]] = {"href": str(tif), "type": COG, "roles": ["data"],
                                 "proj:shape": shape, "proj:transform": transform,
                                 "raster:bands": [raster]}
    props: dict[str, Any] = {
        "datetime": f"{date}T{hour}Z", "platform": "sentinel-2a", "constellation": "sentinel-2",
        "proj:epsg": epsg, "grid:code": "MGRS-31UFS", "eo:cloud_cover": 12.5,
        "s2:processing_baseline": "05.09", "sat:relative_orbit": 51,
    }
    if harmonised is not None:
        props["earthsearch:boa_offset_applied"] = harmonised
    return {"type": "Feature", "stac_version": "1.0.0",
            "id": f"S2A_31UFS_{date.replace('-', '')}_0_L2A{suffix}",
            "collection": "sentinel-2-c1-l2a", "geometry": _footprint(bounds, epsg),
            "bbox": _bbox(bounds, epsg), "properties": props, "assets": assets, "links": []}


def cdse_item(date: str) -> dict[str, Any]:
    """CDSE STAC 1.1 shape: ``B04_10m`` keys, ``bands``, asset-level proj:code and raster:*."""
    assets: dict[str, Any] = {}
    epsg = 0
    bounds = None
    for tif in sorted((KEMPEN_COGS / date).glob("*.tif")):
        band = tif.stem
        epsg, transform, shape, bounds = _grid(tif)
        asset: dict[str, Any] = {
            "href": str(tif), "type": COG, "roles": ["data", "sampling:original"],
            "proj:code": f"EPSG:{epsg}", "proj:shape": shape, "proj:transform": transform,
            "nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16",
            "bands": [{"name": band}],
        }
        if band not in ("SCL", "AOT"):
            asset.update({"raster:scale": 0.0001, "raster:offset": -0.1})
        assets[f"{band}_20m" if band == "SCL" else f"{band}_10m"] = asset
    stamp = date.replace("-", "")
    return {"type": "Feature", "stac_version": "1.1.0",
            "id": f"S2A_MSIL2A_{stamp}T104701_N0509_R051_T31UFS_{stamp}T150000",
            "collection": "sentinel-2-l2a", "geometry": _footprint(bounds, epsg),
            "bbox": _bbox(bounds, epsg),
            "properties": {"datetime": f"{date}T10:47:00Z", "platform": "sentinel-2a",
                           "grid:code": "MGRS-31UFS", "processing:version": "05.09",
                           "eo:cloud_cover": 12.5, "product:type": "S2MSI2A"},
            "assets": assets, "links": []}


def planetary_item(date: str) -> dict[str, Any]:
    """Planetary Computer shape: band-id keys, no raster extension (offset from baseline)."""
    assets: dict[str, Any] = {}
    epsg = 0
    bounds = None
    for tif in sorted((KEMPEN_COGS / date).glob("*.tif")):
        epsg, transform, shape, bounds = _grid(tif)
        assets[tif.stem] = {"href": str(tif), "type": COG, "roles": ["data"], "gsd": 10.0,
                            "proj:shape": shape, "proj:transform": transform}
    stamp = date.replace("-", "")
    return {"type": "Feature", "stac_version": "1.0.0",
            "id": f"S2A_MSIL2A_{stamp}T104701_R051_T31UFS_{stamp}T150000",
            "collection": "sentinel-2-l2a", "geometry": _footprint(bounds, epsg),
            "bbox": _bbox(bounds, epsg),
            "properties": {"datetime": f"{date}T10:47:00Z", "platform": "Sentinel-2A",
                           "proj:epsg": epsg, "s2:mgrs_tile": "31UFS",
                           "s2:processing_baseline": "05.09", "eo:cloud_cover": 12.5},
            "assets": assets, "links": []}


def ireland_item() -> dict[str, Any]:
    """Planetary Computer shape over the real T29UNU window: 60 m bands, 20 m SCL/AOT, N0400."""
    assets: dict[str, Any] = {}
    epsg = 0
    bounds = None
    for tif in sorted(IRELAND_WINDOW.glob("*.tif")):
        name, res = tif.stem.split("_")
        epsg, transform, shape, bounds = _grid(tif)
        key = tif.stem if name in ("SCL", "AOT", "WVP") and res == "60m" else name
        assets[key] = {"href": str(tif), "type": COG, "roles": ["data"], "gsd": transform[0],
                       "proj:shape": shape, "proj:transform": transform}
    return {"type": "Feature", "stac_version": "1.0.0",
            "id": "S2A_MSIL2A_20221005T115411_R023_T29UNU_20221005T164454",
            "collection": "sentinel-2-l2a", "geometry": _footprint(bounds, epsg),
            "bbox": _bbox(bounds, epsg),
            "properties": {"datetime": "2022-10-05T11:54:11.024Z", "platform": "Sentinel-2A",
                           "proj:epsg": epsg, "s2:mgrs_tile": "29UNU",
                           "s2:product_uri": "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_"
                                             "20221005T164454.SAFE",
                           "sat:relative_orbit": 23, "eo:cloud_cover": 48.1},
            "assets": assets, "links": []}


def s1_item(date: str) -> dict[str, Any]:
    """Local-archive ``sentinel-1-backscatter`` shape: vv/vh float32 linear gamma0."""
    assets: dict[str, Any] = {}
    epsg = 0
    bounds = None
    for pol in ("VV", "VH"):
        tif = KEMPEN_S1_COGS / date / f"{pol}.tif"
        epsg, transform, shape, bounds = _grid(tif)
        assets[pol.lower()] = {"href": str(tif), "type": COG, "roles": ["data", "backscatter"],
                               "proj:code": f"EPSG:{epsg}", "proj:shape": shape,
                               "proj:transform": transform,
                               "raster:bands": [{"nodata": "nan", "data_type": "float32"}]}
    return {"type": "Feature", "stac_version": "1.0.0",
            "id": f"S1A_IW_GRDH_1SDV_{date.replace('-', '')}T173200",
            "collection": "sentinel-1-backscatter", "geometry": _footprint(bounds, epsg),
            "bbox": _bbox(bounds, epsg),
            "properties": {"datetime": f"{date}T17:32:00Z", "platform": "sentinel-1a",
                           "constellation": "sentinel-1", "sar:instrument_mode": "IW",
                           "sar:product_type": "GRD", "sat:relative_orbit": 88},
            "assets": assets, "links": []}
