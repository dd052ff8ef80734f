"""The world window on an MGRS tile's pixel grid, and sun position.

Sentinel-2 L2A tiles are 109 800 m squares on the UTM grid whose upper-left corner is the
north-west corner of the MGRS 100 km square named by the tile id; 10, 20 and 60 m pixels
all start there.  The world is a window of that grid whose origin is a multiple of 20 m
from the tile origin, so every resolution stays aligned with the real tile grid.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from cbm_dask.errors import InputError
from cbm_dask.sentinel.mgrs import MgrsTile, mgrs_tile_geometry

__all__ = [
    "TILE_METRES",
    "WorldGrid",
    "sun_position",
]

TILE_METRES = 109_800
#: Default window origin in 10 m pixels from the tile corner (farmland north-east of
#: Antwerp when the tile is 31UFS, the area of the real Kempen test chips).
DEFAULT_OFFSET_PX = (4326, 2352)


@dataclass(frozen=True)
class WorldGrid:
    """The world window: a square of ``size`` 10 m pixels inside one MGRS tile.

    Attributes
    ----------
    tile
        The MGRS tile.
    size
        Side in 10 m pixels (even).
    col_off, row_off
        Window origin in 10 m pixels from the tile corner (even).
    """

    tile: MgrsTile
    size: int
    col_off: int
    row_off: int

    @classmethod
    def for_params(
        cls, tile_id: str, size: int, offset_px: tuple[int, int] | None = None
    ) -> WorldGrid:
        """Place a window of ``size`` pixels in tile ``tile_id`` (inside the tile)."""
        tile = mgrs_tile_geometry(tile_id)
        limit = TILE_METRES // 10 - size
        col, row = offset_px if offset_px is not None else DEFAULT_OFFSET_PX
        if offset_px is not None and not (0 <= col <= limit and 0 <= row <= limit):
            raise InputError(
                f"offset {offset_px} puts the {size}-pixel window outside tile {tile.tile_id}; "
                f"use offsets between 0 and {limit}"
            )
        col = min(max(col, 0), limit) // 2 * 2
        row = min(max(row, 0), limit) // 2 * 2
        return cls(tile=tile, size=size, col_off=col, row_off=row)

    @property
    def epsg(self) -> int:
        """EPSG code of the UTM CRS."""
        return self.tile.epsg

    @property
    def crs(self) -> CRS:
        """The UTM CRS."""
        return CRS.from_epsg(self.tile.epsg)

    @property
    def left(self) -> float:
        """West edge in metres."""
        return self.tile.ulx + 10.0 * self.col_off

    @property
    def top(self) -> float:
        """North edge in metres."""
        return self.tile.uly - 10.0 * self.row_off

    @property
    def extent_m(self) -> float:
        """Side length in metres."""
        return 10.0 * self.size

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the UTM CRS."""
        return (self.left, self.top - self.extent_m, self.left + self.extent_m, self.top)

    def shape(self, resolution: int) -> tuple[int, int]:
        """Raster shape (rows, cols) at ``resolution`` metres (10, 20 or 60)."""
        n = int(self.extent_m // resolution)
        return (n, n)

    def transform(self, resolution: int) -> Affine:
        """Affine transform of the raster at ``resolution`` metres."""
        return Affine(float(resolution), 0.0, self.left, 0.0, -float(resolution), self.top)

    @cached_property
    def _to_lonlat(self) -> Transformer:
        return Transformer.from_crs(self.tile.epsg, 4326, always_xy=True)

    def footprint_lonlat(self, points_per_side: int = 8) -> list[list[float]]:
        """Return the closed window boundary in lon/lat (densified, counter-clockwise)."""
        left, bottom, right, top = self.bounds
        t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
        xs = np.concatenate([left + (right - left) * t, np.full_like(t, right),
                             right - (right - left) * t, np.full_like(t, left)])
        ys = np.concatenate([np.full_like(t, bottom), bottom + (top - bottom) * t,
                             np.full_like(t, top), top - (top - bottom) * t])
        lon, lat = self._to_lonlat.transform(xs, ys)
        ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
        ring.append(ring[0])
        return ring

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the densified footprint."""
        ring = np.asarray(self.footprint_lonlat(32))
        return (
            float(ring[:, 0].min()),
            float(ring[:, 1].min()),
            float(ring[:, 0].max()),
            float(ring[:, 1].max()),
        )

    def centre_lonlat(self) -> tuple[float, float]:
        """(lon, lat) of the window centre."""
        left, bottom, right, top = self.bounds
        lon, lat = self._to_lonlat.transform((left + right) / 2, (bottom + top) / 2)
        return float(lon), float(lat)


def sun_position(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Return (azimuth, elevation) of the sun in degrees, azimuth clockwise from north.

    A low-precision solar ephemeris (errors well below a degree), enough for shadow
    geometry and item metadata.
    """
    when = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    day = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60 + when.second / 3600
    gamma = 2 * math.pi / 365 * (day - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
                       - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma))
    decl = (0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
            - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
            - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma))
    true_solar_minutes = hour * 60 + eqtime + 4 * lon
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = (math.sin(phi) * math.sin(decl)
                  + math.cos(phi) * math.cos(decl) * math.cos(hour_angle))
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    azimuth = math.degrees(math.atan2(
        math.sin(hour_angle),
        math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi),
    )) + 180.0
    return azimuth % 360.0, 90.0 - math.degrees(zenith)
