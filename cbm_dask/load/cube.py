"""Lazy, Dask-backed cubes of Sentinel images on their native pixel grids (odc-stac).

:func:`load_cube` turns catalogue records or STAC items into a :class:`Cube`:
one :class:`xarray.Dataset` per pixel size (10 m, 20 m, 60 m for Sentinel-2),
each with one ``(time, y, x)`` variable per canonical band (``B04``, ``SCL``,
``VV`` ...).  Pixels are never resampled to another size: the 10 m bands are
read on the 10 m grid of their tile, the 20 m bands on the 20 m grid.  Values
are float32 physical units (reflectance, linear or dB backscatter, coherence)
with NaN where there is no data or the Sentinel-2 scene classification (SCL)
marks the pixel invalid; SCL itself stays uint8 class codes.

Nothing is read until the cube is computed; the GDAL settings needed to read
``s3://`` hrefs (``gdal_env``) travel inside the Dask graph.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import xarray as xr
from odc.geo.geobox import GeoBox

from cbm_dask import config
from cbm_dask.errors import InputError
from cbm_dask.load._grid import (
    AreaLike,
    area_geometry,
    band_resolutions,
    group_geobox,
    nearest_on,
    single_crs,
)
from cbm_dask.load._items import ImagesLike, band_sources, dedupe, in_period, to_records
from cbm_dask.load._post import centre_longitude, finish_group, fuse_days
from cbm_dask.load._read import GroupReader, applied
from cbm_dask.load.gdal_env import GdalEnv
from cbm_dask.sentinel.bands import Card, resolve_requested
from cbm_dask.sentinel.records import ImageRecord

__all__ = ["Cube", "GdalEnvLike", "GroupBy", "ImagesLike", "load_cube"]

GroupBy = Literal["solar_day", "item"]
"""``solar_day``: same-day images of one place fused into one time step; ``item``: one per image."""

GdalEnvLike: TypeAlias = GdalEnv | Mapping[str, Any]
"""How to read the hrefs: a :class:`GdalEnv`, or GDAL options (credentials included)."""

# Read headers and open COGs without listing their directory (one request less per file).
_READ_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


# ---------------------------------------------------------------------------
# the result


@dataclass(frozen=True, eq=False)
class Cube:
    """Lazy image cube: one :class:`xarray.Dataset` per native pixel size.

    Attributes
    ----------
    groups
        Pixel size (CRS units; metres for UTM) → Dataset.  Every Dataset has
        dims ``(time, y, x)`` (``latitude``/``longitude`` for a geographic CRS),
        a ``spatial_ref`` coordinate, ``item_id`` along ``time`` (ids joined by
        ``+`` when several images were fused) and, for catalogue records read
        from the database, ``image_id`` (``images.id``; -1 for fused steps).
    card
        ``s2``, ``bs`` or ``c6``.
    crs
        ``EPSG:n`` of every group.
    """

    groups: Mapping[float, xr.Dataset]
    card: Card
    crs: str

    @property
    def bands(self) -> tuple[str, ...]:
        """Canonical band names in the cube, finest pixel size first."""
        return tuple(
            str(name) for res in sorted(self.groups) for name in self.groups[res].data_vars
        )

    @property
    def resolutions(self) -> tuple[float, ...]:
        """The pixel sizes present, ascending."""
        return tuple(sorted(self.groups))

    def resolution_of(self, band: str) -> float:
        """Return the pixel size of ``band``'s group."""
        for res, ds in self.groups.items():
            if band in ds.data_vars:
                return res
        raise KeyError(f"band {band!r} is not in this cube; it has {', '.join(self.bands)}")

    def __getitem__(self, band: str) -> xr.DataArray:
        """Return the DataArray of a canonical band (``cube["B04"]``)."""
        return self.groups[self.resolution_of(band)][band]

    def __iter__(self) -> Iterator[str]:
        return iter(self.bands)

    def __len__(self) -> int:
        return len(self.bands)


# ---------------------------------------------------------------------------
# the verb


def load_cube(
    images: ImagesLike,
    *,
    bands: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    parcels: AreaLike | None = None,
    time: tuple[str | dt.date | None, str | dt.date | None] | None = None,
    chunks: Mapping[str, int] | None = None,
    mask_scl: bool | Sequence[int] = True,
    s1_db: bool = False,
    groupby: GroupBy | None = None,
    gdal_env: GdalEnvLike | None = None,
    decode: bool = True,
) -> Cube:
    """Build a lazy cube of Sentinel images on their native pixel grids.

    Parameters
    ----------
    images
        Catalogue records (:class:`~cbm_dask.catalogue.normalise.ImageRecord`, e.g.
        from :func:`cbm_dask.catalogue.read_images`), ``images`` rows, or STAC items
        (:class:`pystac.Item` or dicts) of any supported catalogue.  All must be of
        one card (S2 L2A, S1 backscatter or coherence) and one CRS (see
        :func:`~cbm_dask.load.split_by_epsg`).
    bands
        Bands to load, by any name (``red``, ``B04``, ``B04_10m``); the cube uses
        canonical names.  Default: ``load.s2-bands`` / ``load.s1-bands`` /
        ``load.coherence-bands`` from the configuration, those present.
    bbox, parcels
        Cut the cube to a ``(west, south, east, north)`` box in degrees, or to the
        bounds of parcels (GeoDataFrame/GeoSeries with a CRS, a shapely geometry in
        EPSG:4326 or an odc-geo Geometry).  Edges snap outwards to whole pixels of
        the images' own grid.  Default: the union of the images.
    time
        ``(start, end)`` dates or ISO strings, inclusive (a date-only end covers
        the whole day); either may be None.
    chunks
        Dask chunk sizes, e.g. ``{"time": 1, "y": 2048, "x": 2048}`` (default
        ``load.chunks``).
    mask_scl
        Sentinel-2 only: True masks the SCL classes of ``load.scl-invalid``
        (default 0, 1, 3, 8, 9, 10, 11), a sequence masks those classes, False
        keeps every pixel.  Masked pixels become NaN in every band except SCL.
    s1_db
        Sentinel-1 backscatter in decibels (``10 * log10(linear)``, non-positive →
        NaN) instead of linear power.
    groupby
        ``solar_day`` fuses the images of one place and solar day (adjacent tiles
        of one pass) into one time step, the first valid pixel in time order
        winning; ``item`` keeps one time step per image.  Default ``load.groupby``.
    gdal_env
        How to read the hrefs: a :class:`~cbm_dask.load.gdal_env.GdalEnv` (e.g.
        ``capture_gdal_env()`` for the archive's S3), or GDAL options as a mapping,
        e.g. ``{"AWS_S3_ENDPOINT": "127.0.0.1:8333", "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": ...,
        "AWS_SECRET_ACCESS_KEY": ...}`` (read as :meth:`GdalEnv.from_options
        <cbm_dask.load.gdal_env.GdalEnv.from_options>`).  The options and credentials
        (as a rasterio ``AWSSession``) are embedded in the Dask graph, so every worker
        reads with them.  None: the configuration odc-stac captures
        (``odc.stac.configure_rio``).
    decode
        False keeps the pixels as stored (CF-style encoded): every band keeps its
        digital numbers and dtype with attributes ``scale_factor``, ``add_offset`` and
        ``nodata``, nothing is set to NaN, and when SCL classes are masked each group
        gets a boolean ``invalid`` coordinate ``(time, y, x)`` (True = masked class, on
        the group's grid) to pass as ``mask=`` to
        :func:`~cbm_dask.reduce.zonal_stats`, which decodes the statistics.  Cheaper for
        reductions (no float pass, integer percentiles).  Needs ``groupby="item"`` (the
        default then), one scale and offset per band across the images, and
        ``s1_db=False``.

    Returns
    -------
    Cube
        One lazy Dataset per pixel size: variables are ``(time, y, x)`` float32
        with NaN nodata (SCL: uint8, nodata 0), attrs ``nodata``, ``units``,
        ``band``; the Dataset attrs give ``card``, ``crs``, ``resolution``,
        ``groupby`` and ``scl_invalid`` (the classes masked).

    Raises
    ------
    InputError
        No images, mixed cards or CRSs, unknown or absent bands, an area outside
        the images, misaligned grids, unreadable grid metadata, a ``gdal_env`` that
        is neither a GdalEnv nor a mapping.

    Examples
    --------
    >>> cube = load_cube(records, bands=["red", "nir", "B11", "SCL"])  # doctest: +SKIP
    >>> cube.groups[10]          # B04, B08 at 10 m                     # doctest: +SKIP
    >>> cube["B11"]              # 20 m, masked by the 20 m SCL         # doctest: +SKIP
    """
    records = in_period(dedupe(to_records(images)), time)
    if not records:
        raise InputError("no images to load (after the time filter); check the images and time=")
    card = _one_card(records)
    chosen = _pick_bands(records, card, bands)
    classes = _scl_classes(mask_scl) if card == "s2" else ()
    group_mode = _group_mode(groupby, decode=decode, s1_db=s1_db)
    chunking = dict(chunks or config.get("load.chunks"))
    env = _reading_env(gdal_env)
    area = area_geometry(bbox, parcels)

    with applied(env):  # grids the items do not declare come from the file headers
        sources = band_sources(records, chosen, with_scl=bool(classes))
    crs = single_crs(sources)
    resolution_of = band_resolutions(sources)
    area_bounds = cast(Any, tuple(area.to_crs(crs).boundingbox)) if area is not None else None
    reader = GroupReader(records, sources, chunking, env, decode)

    def geobox_of(res: float, wanted: Sequence[str]) -> GeoBox:
        return group_geobox(sources, res, wanted, crs, area_bounds)

    # The SCL is read once on its own grid; the other pixel sizes take its nearest pixel.
    scl_res = (resolution_of["SCL"] if classes and any("SCL" in s for s in sources)
               else None)
    resolutions = sorted({resolution_of[b] for b in chosen}, key=lambda r: (r != scl_res, r))
    scl_native: tuple[xr.DataArray, GeoBox] | None = None
    if scl_res is not None and scl_res not in resolutions:
        scl_box = geobox_of(scl_res, ["SCL"])
        scl_native = (reader.read(["SCL"], scl_box)["SCL"], scl_box)
    groups: dict[float, xr.Dataset] = {}
    for res in resolutions:
        group_bands = [b for b in chosen if resolution_of[b] == res]
        geobox = geobox_of(res, group_bands)
        load_bands = list(group_bands)
        if res == scl_res and "SCL" not in load_bands:
            load_bands.append("SCL")
        raw = reader.read(load_bands, geobox)
        scl: xr.DataArray | None = None
        if res == scl_res:
            scl = raw["SCL"]
            scl_native = (scl, geobox)
        elif scl_native is not None:
            scl = nearest_on(scl_native[0], scl_native[1], geobox, raw[group_bands[0]])
        groups[res] = finish_group(raw, records, sources, group_bands, classes, card, s1_db,
                                   res, crs, scl, decode=decode)
    groups = dict(sorted(groups.items()))

    if group_mode == "solar_day":
        lon = centre_longitude(area, records)
        groups = {res: fuse_days(ds, records, lon) for res, ds in groups.items()}
    return Cube(groups=groups, card=card, crs=crs)


# ---------------------------------------------------------------------------
# the parameters


def _one_card(records: Sequence[ImageRecord]) -> Card:
    cards = Counter(r.card for r in records)
    if len(cards) > 1:
        raise InputError(
            f"images of several cards ({dict(cards)}); load Sentinel-2, backscatter and "
            "coherence in separate cubes"
        )
    return records[0].card


def _group_mode(groupby: GroupBy | None, *, decode: bool, s1_db: bool) -> GroupBy:
    default_group = "item" if not decode else config.get("load.groupby", "solar_day")
    group_mode: GroupBy = cast(GroupBy, groupby or default_group)
    if group_mode not in ("solar_day", "item"):
        raise InputError(f"groupby={group_mode!r}: use 'solar_day' or 'item'")
    if not decode and (group_mode != "item" or s1_db):
        raise InputError(
            "decode=False keeps stored values, which cannot be fused by solar day or turned "
            "into decibels; use groupby='item' and s1_db=False, or decode=True")
    return group_mode


def _reading_env(gdal_env: GdalEnvLike | None) -> GdalEnv | None:
    """Return the call's one GDAL environment, with the loader's defaults (None: odc-stac's)."""
    if gdal_env is None:
        return None
    if isinstance(gdal_env, GdalEnv):
        env = gdal_env
    elif isinstance(gdal_env, Mapping):
        env = GdalEnv.from_options(gdal_env)
    else:
        raise InputError(
            f"gdal_env: expected a GdalEnv (cbm_dask.load.capture_gdal_env()) or a mapping "
            f"of GDAL options, got {type(gdal_env).__name__}"
        )
    return env.with_defaults(_READ_DEFAULTS)


def _scl_classes(mask_scl: bool | Sequence[int]) -> tuple[int, ...]:
    if mask_scl is True:
        return tuple(int(v) for v in config.get("load.scl-invalid"))
    if mask_scl is False:
        return ()
    classes = tuple(int(v) for v in mask_scl)
    bad = [v for v in classes if not 0 <= v <= 11]
    if bad:
        raise InputError(f"mask_scl: {bad} are not SCL classes (0-11)")
    return classes


def _pick_bands(records: Sequence[ImageRecord], card: Card, bands: Sequence[str] | None,
                ) -> list[str]:
    available = {band for record in records for band in record.band_assets()}
    if bands is None:
        key = {"s2": "load.s2-bands", "bs": "load.s1-bands", "c6": "load.coherence-bands"}[card]
        wanted = resolve_requested(list(config.get(key)), card)
        chosen = [band for band in wanted if band in available]
        if not chosen:
            raise InputError(
                f"none of the default bands {', '.join(wanted)} is in the images "
                f"({', '.join(r.item_id for r in records[:3])}...); pass bands= explicitly"
            )
        return chosen
    try:
        wanted = resolve_requested(list(bands), card)
    except ValueError as exc:
        raise InputError(f"bands: {exc}") from None
    missing = [band for band in wanted if band not in available]
    if missing:
        raise InputError(
            f"band(s) {', '.join(missing)} are in none of the {len(records)} images "
            f"(e.g. {records[0].item_id}); they offer {', '.join(sorted(available)) or 'none'}"
        )
    return wanted
