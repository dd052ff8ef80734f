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

import contextlib
import datetime as dt
import functools
import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, cast, runtime_checkable

import dask.array
import numpy as np
import odc.stac
import pystac
import rasterio
import rasterio.session
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.xr import xr_coords
from odc.loader import RioDriver
from shapely.geometry.base import BaseGeometry

from cbm_dask import config
from cbm_dask.catalogue.normalise import AssetRecord, ImageRecord, ItemLike, normalise_item
from cbm_dask.errors import InputError
from cbm_dask.load.native import NativeSource, native_array, native_offset
from cbm_dask.load.physical import physical_values
from cbm_dask.sentinel.bands import Card, band_spec, resolve_requested

__all__ = [
    "Cube",
    "GroupBy",
    "GdalEnvLike",
    "ImagesLike",
    "load_cube",
    "native_geobox",
    "solar_day",
    "split_by_epsg",
    "to_records",
]

log = logging.getLogger(__name__)

GroupBy = Literal["solar_day", "item"]
"""``solar_day``: same-day images of one place fused into one time step; ``item``: one per image."""

ImagesLike: TypeAlias = Iterable[ImageRecord | ItemLike]
"""Catalogue records, ``images`` rows (mappings with ``item_id``), pystac Items or item dicts."""

AreaLike: TypeAlias = Any
"""A shapely geometry (EPSG:4326), an odc-geo Geometry, a GeoDataFrame or GeoSeries."""


@runtime_checkable
class SupportsGdalOptions(Protocol):
    """A GDAL environment object that can hand over its options as a mapping."""

    def options(self) -> Mapping[str, Any]:
        """Return GDAL configuration options (``AWS_S3_ENDPOINT`` ...)."""
        ...


@runtime_checkable
class SupportsApply(Protocol):
    """A GDAL environment object that can be applied as a context manager."""

    def apply(self) -> contextlib.AbstractContextManager[Any]:
        """Return a context manager that makes the environment current."""
        ...


GdalEnvLike: TypeAlias = Mapping[str, Any] | SupportsGdalOptions | SupportsApply
"""GDAL/rasterio configuration options for reading the hrefs (e.g. of a local S3)."""

_SESSION_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_REGION": "region_name",
    "AWS_DEFAULT_REGION": "region_name",
    "AWS_PROFILE": "profile_name",
    "AWS_S3_ENDPOINT": "endpoint_url",
    "AWS_REQUEST_PAYER": "requester_pays",
    "AWS_NO_SIGN_REQUEST": "aws_unsigned",
}
_DEFAULT_DTYPE = {
    "reflectance": "uint16",
    "atmosphere": "uint16",
    "classification": "uint8",
    "backscatter": "float32",
    "coherence": "float32",
}
_UNITS = {
    "reflectance": "1",
    "atmosphere": "1",
    "classification": "1",
    "backscatter": "1",
    "coherence": "1",
}


# ---------------------------------------------------------------------------
# result


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


@dataclass(frozen=True)
class _Source:
    """One band of one image, with a complete pixel grid."""

    band: str
    asset: AssetRecord
    epsg: int
    transform: Affine
    shape: tuple[int, int]
    data_type: str
    nodata: float | None


# ---------------------------------------------------------------------------
# pure helpers


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


def split_by_epsg(images: ImagesLike) -> dict[int, list[ImageRecord]]:
    """Group images by EPSG code: :func:`load_cube` needs one CRS per call."""
    groups: dict[int, list[ImageRecord]] = {}
    for record in to_records(images):
        groups.setdefault(record.epsg or 0, []).append(record)
    return groups


def solar_day(when: dt.datetime, longitude: float) -> dt.date:
    """Return the local solar date of an acquisition at ``longitude`` (degrees east).

    Same-day passes over one place (adjacent tiles of one datatake) share it even
    when the UTC date differs.
    """
    utc = when.astimezone(dt.UTC) if when.tzinfo else when
    return (utc + dt.timedelta(hours=longitude / 15.0)).date()


def _grid_bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    rows, cols = shape
    xs = (transform.c, transform.c + transform.a * cols)
    ys = (transform.f, transform.f + transform.e * rows)
    return min(xs), min(ys), max(xs), max(ys)


def native_geobox(
    grids: Sequence[tuple[Affine, tuple[int, int]]],
    crs: str,
    area: tuple[float, float, float, float] | None = None,
    *,
    strict: bool = True,
) -> GeoBox:
    """Return the output grid of one pixel size: the images' own grid, cut to ``area``.

    Parameters
    ----------
    grids
        ``(transform, (rows, cols))`` of the assets to load at this pixel size, all
        in ``crs``.
    crs
        Their CRS (``EPSG:n``).
    area
        ``(xmin, ymin, xmax, ymax)`` in ``crs`` to cut to; None for the union of
        the grids.  Edges are widened to whole pixels of the images' grid and the
        result is clipped to the union of the grids.
    strict
        Raise when the grids are not aligned (origins not a whole number of pixels
        apart), instead of loading the misaligned ones with nearest-neighbour
        resampling.

    Raises
    ------
    InputError
        When pixel sizes differ, grids are misaligned (``strict``) or ``area`` does
        not overlap the images.
    """
    first, _ = grids[0]
    res_x, res_y = first.a, first.e
    x0, y0 = first.c, first.f
    for transform, _shape in grids[1:]:
        if not (math.isclose(transform.a, res_x) and math.isclose(transform.e, res_y)):
            raise InputError(
                f"assets of one group have different pixel sizes ({res_x}, {transform.a}); "
                "load them in separate calls"
            )
        off_x = (transform.c - x0) / res_x
        off_y = (transform.f - y0) / res_y
        if abs(off_x - round(off_x)) > 1e-6 or abs(off_y - round(off_y)) > 1e-6:
            message = (
                f"pixel grids of {crs} at {abs(res_x)} are not aligned (origins "
                f"({x0}, {y0}) and ({transform.c}, {transform.f})); loading them together "
                "would resample pixels"
            )
            if strict:
                raise InputError(message + "; load the images of each grid separately")
            log.warning("%s; misaligned images are read with nearest-neighbour resampling",
                        message)
    extents = [_grid_bounds(t, s) for t, s in grids]
    data = (min(e[0] for e in extents), min(e[1] for e in extents),
            max(e[2] for e in extents), max(e[3] for e in extents))
    if area is not None:
        cut = (max(area[0], data[0]), max(area[1], data[1]),
               min(area[2], data[2]), min(area[3], data[3]))
        if cut[0] >= cut[2] or cut[1] >= cut[3]:
            raise InputError(
                f"the requested area {tuple(round(v, 2) for v in area)} ({crs}) does not "
                f"overlap the images (extent {tuple(round(v, 2) for v in data)}); check "
                "--bbox/parcels and the images' footprints"
            )
        data = cut
    step_x, step_y = abs(res_x), abs(res_y)
    eps = 1e-9
    left = x0 + math.floor((data[0] - x0) / step_x + eps) * step_x
    right = x0 + math.ceil((data[2] - x0) / step_x - eps) * step_x
    top = y0 - math.floor((y0 - data[3]) / step_y + eps) * step_y
    bottom = y0 - math.ceil((y0 - data[1]) / step_y - eps) * step_y
    width = max(1, round((right - left) / step_x))
    height = max(1, round((top - bottom) / step_y))
    return GeoBox((height, width), Affine(step_x, 0.0, left, 0.0, -step_y, top), crs)


def _area_geometry(bbox: Sequence[float] | None, parcels: AreaLike | None) -> Geometry | None:
    if bbox is not None and parcels is not None:
        raise InputError("give either bbox or parcels to load_cube, not both")
    if bbox is not None:
        values = [float(v) for v in bbox]
        if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
            raise InputError(
                f"bbox {tuple(bbox)}: expected (west, south, east, north) in degrees with "
                "west < east and south < north"
            )
        return Geometry(shapely.box(*values), "EPSG:4326")
    if parcels is None:
        return None
    if isinstance(parcels, Geometry):
        return parcels
    if isinstance(parcels, BaseGeometry):
        return Geometry(parcels, "EPSG:4326")
    crs = getattr(parcels, "crs", None)
    if crs is None or not hasattr(parcels, "total_bounds"):
        raise InputError(
            "parcels: expected a GeoDataFrame/GeoSeries with a CRS, a shapely geometry in "
            "EPSG:4326 or an odc-geo Geometry"
        )
    if len(parcels) == 0:
        raise InputError("parcels: the frame is empty; nothing to load")
    return Geometry(shapely.box(*parcels.total_bounds), crs)


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


# ---------------------------------------------------------------------------
# GDAL environment


def _options(gdal_env: GdalEnvLike | None) -> dict[str, Any] | None:
    if gdal_env is None:
        return None
    if isinstance(gdal_env, Mapping):
        return dict(gdal_env)
    for name in ("options", "as_dict", "to_dict"):
        getter = getattr(gdal_env, name, None)
        value = getter() if callable(getter) else getter
        if isinstance(value, Mapping):
            return dict(value)
    return None


def _task_env(options: Mapping[str, Any]) -> dict[str, Any]:
    """Split GDAL options into odc-loader's task environment (session keys → ``_aws``).

    Credentials and the S3 endpoint go into the keyword arguments of a rasterio
    ``AWSSession`` (``endpoint_url`` in GDAL's ``host:port`` form), which rasterio
    turns back into GDAL options inside every task; the rest are GDAL options.
    """
    gdal: dict[str, Any] = {}
    aws: dict[str, Any] = {}
    for key, value in options.items():
        name = _SESSION_OPTIONS.get(key.upper())
        if name is None:
            gdal[key] = value
        elif name in {"requester_pays", "aws_unsigned"}:
            aws[name] = str(value).strip().upper() in {"YES", "TRUE", "ON", "1", "REQUESTER"}
        else:
            aws[name] = value
    env: dict[str, Any] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", **gdal}
    if aws:
        env["_aws"] = aws
    return env


def _gdal_task_env(gdal_env: GdalEnvLike | None) -> dict[str, Any] | None:
    """Return the task environment of ``gdal_env``, None to keep odc-stac's own capture."""
    if gdal_env is None:
        return None
    session = getattr(gdal_env, "aws_session_kwargs", None)
    plain = getattr(gdal_env, "gdal_options", None)
    if callable(session) and callable(plain):  # cbm_dask.load.gdal_env.GdalEnv
        env: dict[str, Any] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", **plain()}
        kwargs = session()
        if kwargs:
            env["_aws"] = {k: v for k, v in kwargs.items() if v is not None}
        return env
    options = _options(gdal_env)
    return _task_env(options) if options is not None else None


class _EnvRioDriver(RioDriver):
    """odc-loader's rasterio driver with a fixed GDAL environment for every task."""

    def __init__(self, env: Mapping[str, Any]) -> None:
        super().__init__()
        self._env = dict(env)

    def capture_env(self) -> dict[str, Any]:
        return dict(self._env)


@functools.lru_cache(maxsize=8)
def _aws_session(items: tuple[tuple[str, Any], ...]) -> rasterio.session.AWSSession:
    """One rasterio AWSSession per set of session options (a new boto3 session costs ~50 ms)."""
    return rasterio.session.AWSSession(**dict(items))


@contextlib.contextmanager
def _applied(gdal_env: GdalEnvLike | None, env: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the environment current in this thread (header probes, graph building)."""
    if env is not None:
        aws = env.get("_aws")
        session = _aws_session(tuple(sorted(aws.items()))) if aws else None
        opts = {k: v for k, v in env.items() if k != "_aws"}
        with rasterio.Env(session=session, **opts):
            yield
    elif isinstance(gdal_env, SupportsApply):
        with gdal_env.apply():
            yield
    else:
        yield


# ---------------------------------------------------------------------------
# sources and STAC items for odc-stac


def _source(record: ImageRecord, band: str, asset: AssetRecord) -> _Source:
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
    return _Source(band, asset, int(epsg), transform, shape, str(data_type), nodata)


def _stac_item(record: ImageRecord, sources: Mapping[str, _Source]) -> pystac.Item:
    """Build a uniform item for odc-stac: asset key = canonical band, complete grid."""
    item = pystac.Item(
        id=record.item_id,
        geometry=shapely.geometry.mapping(record.footprint),
        bbox=list(record.footprint.bounds),
        datetime=record.datetime,
        properties={},
        collection=f"cbm-{record.card}",
        stac_extensions=["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
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


def _by_position(item: pystac.Item, parsed: Any, idx: int) -> int:
    """odc-stac group key keeping one time step per item, in the order given."""
    return idx


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
        :func:`split_by_epsg`).
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
        How to read the hrefs: a :class:`cbm_dask.load.gdal_env.GdalEnv` (e.g.
        ``capture_gdal_env()`` for the archive's S3), or GDAL options as a mapping,
        e.g. ``{"AWS_S3_ENDPOINT": "127.0.0.1:8333", "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": ...,
        "AWS_SECRET_ACCESS_KEY": ...}``.  The options and credentials (as a rasterio
        ``AWSSession``) are embedded in the Dask graph, so every worker reads with
        them.  An object with only ``apply()`` is applied while the graph is built;
        then the workers need the credentials in their own environment.  None: the
        configuration odc-stac captures (``odc.stac.configure_rio``).
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
        the images, misaligned grids, unreadable grid metadata.

    Examples
    --------
    >>> cube = load_cube(records, bands=["red", "nir", "B11", "SCL"])  # doctest: +SKIP
    >>> cube.groups[10]          # B04, B08 at 10 m                     # doctest: +SKIP
    >>> cube["B11"]              # 20 m, masked by the 20 m SCL         # doctest: +SKIP
    """
    records = _dedupe(to_records(images))
    records = _filter_time(records, time)
    if not records:
        raise InputError("no images to load (after the time filter); check the images and time=")
    cards = Counter(r.card for r in records)
    if len(cards) > 1:
        raise InputError(
            f"images of several cards ({dict(cards)}); load Sentinel-2, backscatter and "
            "coherence in separate cubes"
        )
    card: Card = records[0].card
    chosen = _pick_bands(records, card, bands)
    classes = _scl_classes(mask_scl) if card == "s2" else ()
    default_group = "item" if not decode else config.get("load.groupby", "solar_day")
    group_mode: GroupBy = cast(GroupBy, groupby or default_group)
    if group_mode not in ("solar_day", "item"):
        raise InputError(f"groupby={group_mode!r}: use 'solar_day' or 'item'")
    if not decode and (group_mode != "item" or s1_db):
        raise InputError(
            "decode=False keeps stored values, which cannot be fused by solar day or turned "
            "into decibels; use groupby='item' and s1_db=False, or decode=True")
    chunking = dict(chunks or config.get("load.chunks"))
    env = _gdal_task_env(gdal_env)
    area = _area_geometry(bbox, parcels)

    with _applied(gdal_env, env):
        sources = _sources(records, chosen, with_scl=bool(classes))
    epsgs = Counter(src.epsg for per_record in sources for src in per_record.values())
    if len(epsgs) > 1:
        listing = ", ".join(f"EPSG:{code} ({n} assets)" for code, n in epsgs.most_common())
        raise InputError(
            f"the images are in several CRSs ({listing}); a cube keeps the native grid, so "
            "load each CRS separately (cbm_dask.load.cube.split_by_epsg)"
        )
    crs = f"EPSG:{next(iter(epsgs))}"
    resolution_of = _band_resolutions(sources)
    area_bounds = tuple(area.to_crs(crs).boundingbox) if area is not None else None

    items = [_stac_item(record, per_record) for record, per_record in zip(records, sources,
                                                                            strict=True)]
    driver = _EnvRioDriver(env) if env is not None else None

    def geobox_of(res: float, wanted: Sequence[str]) -> GeoBox:
        grids = [(src.transform, src.shape) for per_record in sources
                 for b, src in per_record.items()
                 if b in wanted and round(abs(src.transform.a), 9) == res]
        return native_geobox(grids, crs, cast(Any, area_bounds), strict=res <= 10 + 1e-6)

    def odc_load(load_bands: list[str], geobox: GeoBox) -> xr.Dataset:
        with _applied(gdal_env, env):
            return odc.stac.load(
                items, bands=load_bands, geobox=geobox, groupby=_by_position,
                resampling="nearest", chunks=chunking, driver=driver,
                use_overviews=False,  # SCL on a coarser grid: nearest of full-resolution pixels
            )

    def stored_load(load_bands: list[str], geobox: GeoBox) -> xr.Dataset:
        """Read stored values: window reads when every asset is on the grid, else odc-stac."""
        arrays = {}
        for band in load_bands:
            placed = _placed(sources, band, geobox)
            if placed is None:
                return odc_load(load_bands, geobox)
            per_time, dtype, fill = placed
            arrays[band] = (("time", *geobox.dimensions), native_array(
                per_time, geobox, dtype=dtype, fill=fill,
                chunks=(_chunk(chunking, "y", geobox), _chunk(chunking, "x", geobox)),
                env=functools.partial(_applied, gdal_env, env)))
        times = np.array([r.datetime.astimezone(dt.UTC).replace(tzinfo=None) for r in records],
                         dtype="datetime64[us]")
        coords = {"time": times, **xr_coords(geobox)}
        return xr.Dataset(arrays, coords=coords)

    read = odc_load if decode else stored_load

    # The SCL is read once on its own grid; the other pixel sizes take its nearest pixel.
    scl_res = (resolution_of["SCL"] if classes and any("SCL" in s for s in sources)
               else None)
    resolutions = sorted({resolution_of[b] for b in chosen}, key=lambda r: (r != scl_res, r))
    scl_native: tuple[xr.DataArray, GeoBox] | None = None
    if scl_res is not None and scl_res not in resolutions:
        scl_box = geobox_of(scl_res, ["SCL"])
        scl_native = (read(["SCL"], scl_box)["SCL"], scl_box)
    groups: dict[float, xr.Dataset] = {}
    for res in resolutions:
        group_bands = [b for b in chosen if resolution_of[b] == res]
        geobox = geobox_of(res, group_bands)
        load_bands = list(group_bands)
        if res == scl_res and "SCL" not in load_bands:
            load_bands.append("SCL")
        raw = read(load_bands, geobox)
        scl: xr.DataArray | None = None
        if res == scl_res:
            scl = raw["SCL"]
            scl_native = (scl, geobox)
        elif scl_native is not None:
            scl = _nearest(scl_native[0], scl_native[1], geobox, raw[group_bands[0]])
        groups[res] = _finish(raw, records, sources, group_bands, classes, card, s1_db, res,
                              crs, scl, decode=decode)
    groups = dict(sorted(groups.items()))

    if group_mode == "solar_day":
        lon = _centre_longitude(area, records)
        groups = {res: _fuse_days(ds, records, lon) for res, ds in groups.items()}
    return Cube(groups=groups, card=card, crs=crs)


def _placed(sources: Sequence[Mapping[str, _Source]], band: str, geobox: GeoBox,
            ) -> tuple[list[NativeSource | None], str, float] | None:
    """Place the band's assets on ``geobox``: sources, pixel type, fill; None if one is off it."""
    per_time: list[NativeSource | None] = []
    dtypes: set[str] = set()
    fill: float | None = None
    for per_record in sources:
        src = per_record.get(band)
        if src is None:
            per_time.append(None)
            continue
        offset = native_offset(src.transform, geobox)
        if offset is None:
            return None
        per_time.append(NativeSource(src.asset.href, *offset, src.shape))
        dtypes.add(src.data_type)
        fill = src.nodata if fill is None else fill
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    if fill is None:
        fill = math.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0.0
    return per_time, dtype, float(fill)


def _chunk(chunking: Mapping[str, Any], dim: str, geobox: GeoBox) -> int:
    """Return a spatial chunk size from ``chunks`` (-1 or None: the whole axis)."""
    size = geobox.shape.y if dim == "y" else geobox.shape.x
    value = chunking.get(dim, chunking.get("latitude" if dim == "y" else "longitude", -1))
    return size if value in (None, -1) else int(value)


def _dedupe(records: list[ImageRecord]) -> list[ImageRecord]:
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


def _filter_time(records: list[ImageRecord], time: tuple[Any, Any] | None) -> list[ImageRecord]:
    if time is None:
        return records
    start, end = _as_bound(time[0], False), _as_bound(time[1], True)
    return [r for r in records
            if (start is None or r.datetime >= start) and (end is None or r.datetime <= end)]


def _sources(records: Sequence[ImageRecord], bands: Sequence[str], *, with_scl: bool,
             ) -> list[dict[str, _Source]]:
    wanted = [*bands, "SCL"] if with_scl and "SCL" not in bands else list(bands)
    out: list[dict[str, _Source]] = []
    for record in records:
        assets = record.band_assets()
        out.append({b: _source(record, b, assets[b]) for b in wanted if b in assets})
    return out


def _band_resolutions(sources: Sequence[Mapping[str, _Source]]) -> dict[str, float]:
    counts: dict[str, Counter[float]] = {}
    for per_record in sources:
        for band, src in per_record.items():
            counts.setdefault(band, Counter())[round(abs(src.transform.a), 9)] += 1
    out: dict[str, float] = {}
    for band, counter in counts.items():
        (res, _), *others = counter.most_common()
        if others:
            log.warning("band %s comes at several pixel sizes %s; %s is used and the others "
                        "are read with nearest-neighbour resampling", band, sorted(counter), res)
        out[band] = res
    return out


def _centre_longitude(area: Geometry | None, records: Sequence[ImageRecord]) -> float:
    if area is not None:
        return float(area.to_crs("EPSG:4326").centroid.points[0][0])
    union = shapely.union_all([r.footprint for r in records])
    return float(union.centroid.x)


def _nearest_index(src: GeoBox, dst: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``src`` holding the centre of each ``dst`` pixel (-1: outside).

    Nearest-neighbour resampling between north-up grids of one CRS, as GDAL's warper
    does it: the source pixel that contains the destination pixel's centre.
    """
    s, d = src.affine, dst.affine
    cols = np.floor((d.c + (np.arange(dst.shape.x) + 0.5) * d.a - s.c) / s.a).astype(np.int64)
    rows = np.floor((d.f + (np.arange(dst.shape.y) + 0.5) * d.e - s.f) / s.e).astype(np.int64)
    cols[(cols < 0) | (cols >= src.shape.x)] = -1
    rows[(rows < 0) | (rows >= src.shape.y)] = -1
    return rows, cols


def _take_nearest(block: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``block[:, rows][:, :, cols]`` of a whole ``(time, y, x)`` plane, 0 where outside."""
    out = np.take(np.take(block, np.maximum(rows, 0), axis=1), np.maximum(cols, 0), axis=2)
    out[:, rows < 0] = 0
    out[:, :, cols < 0] = 0
    return out


def _nearest(scl: xr.DataArray, src: GeoBox, dst: GeoBox, like: xr.DataArray) -> xr.DataArray:
    """Return the SCL on another pixel grid by nearest pixel, chunked like ``like``.

    Cheaper than reading the SCL again through GDAL's warper for every pixel size.
    """
    rows, cols = _nearest_index(src, dst)
    data: Any = scl.data
    if isinstance(data, dask.array.Array):
        whole = data.rechunk({1: -1, 2: -1})
        data = whole.map_blocks(
            functools.partial(_take_nearest, rows=rows, cols=cols), dtype=whole.dtype,
            chunks=(whole.chunks[0], (rows.size,), (cols.size,)),
        ).rechunk(like.data.chunks)
    else:
        data = _take_nearest(np.asarray(data), rows, cols)
    return xr.DataArray(data, dims=like.dims, coords=like.coords)


def _finish(
    raw: xr.Dataset, records: Sequence[ImageRecord], sources: Sequence[Mapping[str, _Source]],
    bands: Sequence[str], classes: tuple[int, ...], card: Card, s1_db: bool, res: float,
    crs: str, scl: xr.DataArray | None = None, *, decode: bool = True,
) -> xr.Dataset:
    """Convert one pixel-size group to physical values, mask it and label it (lazy).

    ``scl`` is the scene classification on this group's grid (None: no mask).  With
    ``decode`` False the stored values stay, with their scale and offset as attributes,
    and the mask becomes the ``invalid`` coordinate.
    """
    masked = bool(classes) and scl is not None
    has_scl = np.array([("SCL" in s) for s in sources], dtype=bool)
    out = xr.Dataset(coords=raw.coords)
    if masked and not decode:
        out = out.assign_coords(invalid=_invalid(cast(xr.DataArray, scl), classes, has_scl))
    for band in bands:
        spec = band_spec(band)
        data = raw[band]
        if spec.kind == "classification":
            out[band] = data.astype("uint8")
            out[band].attrs = {"nodata": 0, "units": "1", "band": band,
                               "long_name": "scene classification (SCL) class code"}
            continue
        scale = np.array([s[band].asset.scale if band in s and s[band].asset.scale is not None
                          else 1.0 for s in sources], dtype="float64")
        offset = np.array([s[band].asset.offset if band in s and s[band].asset.offset is not None
                           else 0.0 for s in sources], dtype="float64")
        nodata = next((s[band].nodata for s in sources if band in s), None)
        if not decode:
            out[band] = _encoded(data, band, scale, offset, nodata, _UNITS[spec.kind])
            continue
        scale, offset = scale.astype("float32"), offset.astype("float32")
        # one compiled pass: float32(dn) * scale + offset, NaN at nodata and masked classes
        value = physical_values(data, scale, offset, nodata, scl if masked else None,
                                classes, has_scl)
        units = _UNITS[spec.kind]
        if spec.kind == "backscatter" and s1_db:
            value = cast(xr.DataArray, 10.0 * np.log10(value.where(value > 0))).astype("float32")
            units = "dB"
        value.attrs = {"nodata": np.float32(np.nan), "units": units, "band": band,
                       "grid_mapping": "spatial_ref"}
        out[band] = value
    out = out.assign_coords(
        item_id=("time", [r.item_id for r in records]),
    )
    if all(r.image_id is not None for r in records):
        out = out.assign_coords(image_id=("time", [int(cast(int, r.image_id)) for r in records]))
    out.attrs = {
        "card": card, "crs": crs, "resolution": res, "groupby": "item",
        "scl_invalid": list(classes) if masked else [],
    }
    return out


def _encoded(data: xr.DataArray, band: str, scale: np.ndarray, offset: np.ndarray,
             nodata: float | None, units: str) -> xr.DataArray:
    """Keep a band as stored, with the one scale and offset of its images as CF attributes."""
    scales, offsets = set(scale.tolist()), set(offset.tolist())
    if len(scales) > 1 or len(offsets) > 1:
        raise InputError(
            f"band {band}: the images store it with different scales {sorted(scales)} or "
            f"offsets {sorted(offsets)}; load them with decode=True, or one image at a time")
    value = data.copy()
    # the assets' own numbers, not float32 roundings: statistics are decoded in float64
    value.attrs = {"scale_factor": float(scale[0]), "add_offset": float(offset[0]),
                   "nodata": nodata, "units": units, "band": band, "grid_mapping": "spatial_ref"}
    return value


def _invalid(scl: xr.DataArray, classes: Sequence[int], has_scl: np.ndarray) -> xr.DataArray:
    """Return True where the SCL class is masked (never on steps without an SCL asset)."""
    lut = np.zeros(256, dtype=bool)
    lut[list(classes)] = True

    def lookup(block: np.ndarray, use: np.ndarray) -> np.ndarray:
        return lut[block] & use

    use = xr.Variable("time", np.asarray(has_scl, dtype=bool))
    mask = xr.apply_ufunc(lookup, scl.variable, use, dask="parallelized", output_dtypes=[bool])
    return xr.DataArray(mask, dims=scl.dims)


def _fuse_days(ds: xr.Dataset, records: Sequence[ImageRecord], longitude: float) -> xr.Dataset:
    """Fuse time steps of one solar day: the first valid pixel in time order wins."""
    days: dict[dt.date, list[int]] = {}
    for index, record in enumerate(records):
        days.setdefault(solar_day(record.datetime, longitude), []).append(index)
    attrs = {**ds.attrs, "groupby": "solar_day"}
    if all(len(members) == 1 for members in days.values()):
        return ds.assign_attrs(attrs)
    steps = []
    for members in days.values():
        step = ds.isel(time=members[0])
        for other in members[1:]:
            later = ds.isel(time=other)
            fused: dict[Hashable, xr.DataArray] = {}
            for name, var in step.data_vars.items():
                if name == "SCL":
                    fused[name] = var.where(var != 0, later[name]).astype("uint8")
                else:
                    fused[name] = var.fillna(later[name])
                fused[name].attrs = var.attrs
            step = step.assign(fused)
        steps.append(step.drop_vars(["item_id", "image_id"], errors="ignore"))
    out = xr.concat(steps, dim="time", combine_attrs="override")
    out = out.assign_coords(
        item_id=("time", ["+".join(records[i].item_id for i in members)
                          for members in days.values()])
    )
    if "image_id" in ds.coords:
        out = out.assign_coords(image_id=(
            "time", [int(ds["image_id"].values[m[0]]) if len(m) == 1 else -1
                     for m in days.values()]
        ))
    return out.assign_attrs(attrs)

