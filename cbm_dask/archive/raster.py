"""Facts of single-band COGs read from their headers, and the grid geometry derived from them.

Everything here is pure: the I/O layer opens the file and hands over its rasterio
profile (:meth:`RasterInfo.from_profile`); the functions turn those facts into
footprints, a common item grid and the MGRS tile of a grid
(:func:`cbm_dask.sentinel.mgrs.mgrs_tile_at`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyproj import CRS, Transformer

from cbm_dask.errors import InputError
from cbm_dask.sentinel.mgrs import mgrs_tile_at

__all__ = [
    "Bounds",
    "RasterInfo",
    "common_grid",
    "footprint",
    "grid_tile",
    "json_number",
    "nodata_json",
]

Bounds = tuple[float, float, float, float]
"""``(left, bottom, right, top)`` in the units of a CRS."""


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
    def bounds(self) -> Bounds:
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


def nodata_json(value: float | None) -> float | int | str | None:
    """Nodata as STAC ``raster:bands`` wants it: numbers, or ``"nan"``/``"inf"``/``"-inf"``."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return json_number(value)


def json_number(value: float) -> float | int:
    """Return whole numbers as ``int`` so that JSON shows ``10``, not ``10.0``."""
    return int(value) if float(value).is_integer() else float(value)


def footprint(
    bounds: Bounds, epsg: int, densify: int = 8,
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


def common_grid(item_id: str, infos: Iterable[RasterInfo]) -> tuple[int, Bounds]:
    """Return the one EPSG code of an item's rasters and the union of their bounds.

    Raises
    ------
    InputError
        When a raster's CRS has no EPSG code or the rasters are in different CRSs.
    """
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


def grid_tile(item_id: str, infos: Iterable[RasterInfo]) -> str | None:
    """Return the MGRS tile (``31UFS``) holding the centre of the rasters' common grid."""
    epsg, bounds = common_grid(item_id, infos)
    _, bbox = footprint(bounds, epsg)
    tile = mgrs_tile_at(epsg, (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2,
                        (bbox[1] + bbox[3]) / 2)
    return f"{tile[0]:02d}{tile[1]}{tile[2]}" if tile else None
