"""MGRS tiles of the Sentinel-2 grid, one function per question asked of them.

* :func:`mgrs_tile_at` — which 100 km square holds a UTM point (for item metadata);
* :func:`mgrs_tile_of_item` — which tile an item's STAC properties or id name;
* :func:`mgrs_tile_geometry` — where a tile id lies (UTM zone, EPSG, upper-left corner);
* :func:`normal_mgrs_tile` and :func:`mgrs_tile_epsg` — the spelling and CRS of an id.

Tile ids are written zero-padded and without the ``T`` prefix: ``31UFS``, ``07HFE``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyproj import Transformer

from cbm_dask.errors import InputError
from cbm_dask.sentinel.records import optional_int

__all__ = [
    "MgrsTile",
    "mgrs_tile_at",
    "mgrs_tile_epsg",
    "mgrs_tile_geometry",
    "mgrs_tile_of_item",
    "normal_mgrs_tile",
]

# Latitude bands of 8 degrees from 80 S; I and O are never used as letters.
_LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"
# 100 km column letters cycle over three consecutive UTM zones.
_COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_MGRS = re.compile(r"^(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")
_TILE_IN_ID = re.compile(r"(?:^|_)T?(\d{1,2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])(?=_|$)")


def _utm_zone(epsg: int | None) -> int | None:
    if epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        return epsg % 100
    return None


@dataclass(frozen=True)
class MgrsTile:
    """A Sentinel-2 MGRS tile.

    Attributes
    ----------
    tile_id
        e.g. ``"31UFS"``.
    zone, latitude_band, grid_square
        The three parts of the id (``31``, ``"U"``, ``"FS"``).
    epsg
        EPSG code of the UTM zone (326zz north, 327zz south).
    ulx, uly
        Upper-left corner of the tile in UTM metres.
    """

    tile_id: str
    zone: int
    latitude_band: str
    grid_square: str
    epsg: int
    ulx: float
    uly: float


def mgrs_tile_at(epsg: int, x: float, y: float, latitude: float) -> tuple[int, str, str] | None:
    """Return ``(utm_zone, latitude_band, grid_square)`` of a UTM point, None for non-UTM CRSs.

    Parameters
    ----------
    epsg
        EPSG code of the point's CRS (``326zz``/``327zz``).
    x, y
        The point's UTM easting and northing in metres.
    latitude
        Its latitude in degrees (decides the latitude band).

    Examples
    --------
    >>> mgrs_tile_at(32631, 643580, 5676150, 51.22)
    (31, 'U', 'FS')
    """
    zone = _utm_zone(epsg)
    if zone is None:
        return None
    band_index = min(max(int((latitude + 80) // 8), 0), len(_LATITUDE_BANDS) - 1)
    column_set = _COLUMN_SETS[(zone - 1) % 3]
    column_index = int(x // 100_000) - 1
    if not 0 <= column_index < len(column_set):
        return None
    row_index = (int(y // 100_000) + (5 if zone % 2 == 0 else 0)) % len(_ROW_LETTERS)
    return zone, _LATITUDE_BANDS[band_index], column_set[column_index] + _ROW_LETTERS[row_index]


def normal_mgrs_tile(text: str) -> str | None:
    """Return a tile id zero-padded and without prefix (``MGRS-31UFS``, ``T7HFE`` → ``07HFE``).

    None when ``text`` is not an MGRS tile id.
    """
    match = _MGRS.match(text.strip().upper().removeprefix("MGRS-").removeprefix("T"))
    if not match:
        return None
    zone, band, column, row = match.groups()
    return f"{int(zone):02d}{band}{column}{row}"


def mgrs_tile_epsg(tile: str) -> int | None:
    """Return the EPSG code of the UTM zone of a normalised tile id, None if it is not one."""
    match = _MGRS.match(tile)
    if not match:
        return None
    zone, band = int(match.group(1)), match.group(2)
    return (32600 if band >= "N" else 32700) + zone


def mgrs_tile_of_item(
    properties: Mapping[str, Any], item_id: str = "", epsg: int | None = None
) -> str | None:
    """Return the MGRS tile (``31UFS``, zone zero-padded, no ``T`` prefix) an item names.

    Read from ``grid:code`` (``MGRS-31UFS``), ``s2:mgrs_tile``, the ``mgrs:*``
    fields, the Earth Search v0 ``sentinel:*`` fields (zone from the UTM EPSG
    code ``epsg`` when missing), else the ``T31UFS``/``31UFS`` token of a product
    id or of the item id.  None when none of them names a tile.
    """
    code = properties.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        tile = normal_mgrs_tile(code)
        if tile:
            return tile
    if isinstance(properties.get("s2:mgrs_tile"), str):
        tile = normal_mgrs_tile(properties["s2:mgrs_tile"])
        if tile:
            return tile
    for prefix in ("mgrs", "sentinel"):
        zone = optional_int(properties.get(f"{prefix}:utm_zone"))
        band = properties.get(f"{prefix}:latitude_band")
        square = properties.get(f"{prefix}:grid_square")
        if zone is None:
            zone = _utm_zone(epsg)
        if zone is not None and isinstance(band, str) and isinstance(square, str):
            tile = normal_mgrs_tile(f"{zone}{band}{square}")
            if tile:
                return tile
    for value in (properties.get("s2:product_uri"), properties.get("sentinel:product_id"),
                  properties.get("s2:granule_id"), properties.get("s2:tile_id"), item_id):
        if isinstance(value, str):
            match = _TILE_IN_ID.search(value)
            if match:
                return normal_mgrs_tile(match.group(1))
    return None


def mgrs_tile_geometry(tile_id: str) -> MgrsTile:
    """Return where an MGRS tile id such as ``"31UFS"`` lies on the UTM grid.

    Raises
    ------
    InputError
        When the id is not a valid MGRS 100 km square.
    """
    text = tile_id.strip().upper()
    if len(text) == 4:
        text = "0" + text
    try:
        zone = int(text[:2])
        band, column, row = text[2], text[3], text[4]
        if not 1 <= zone <= 60 or band not in _LATITUDE_BANDS or len(text) != 5:
            raise ValueError
        col_letters = _COLUMN_SETS[(zone - 1) % 3]
        easting = (col_letters.index(column) + 1) * 100_000
        row_index = (_ROW_LETTERS.index(row) - (0 if zone % 2 else 5)) % 20
    except (ValueError, IndexError):
        raise InputError(
            f"{tile_id!r} is not an MGRS tile id; write zone, latitude band and square, "
            "e.g. 31UFS"
        ) from None
    north = band >= "N"
    epsg = (32600 if north else 32700) + zone
    south_lat = -80.0 + 8.0 * _LATITUDE_BANDS.index(band)
    central_lon = -183.0 + 6.0 * zone
    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    _, band_south_y = to_utm.transform(central_lon, south_lat)
    northing = row_index * 100_000
    # The 100 km row letters repeat every 2000 km; take the first square reaching the band.
    while northing + 100_000 <= band_south_y - 1:
        northing += 2_000_000
    return MgrsTile(
        tile_id=text,
        zone=zone,
        latitude_band=band,
        grid_square=column + row,
        epsg=epsg,
        ulx=float(easting),
        uly=float(northing + 100_000),
    )

