"""What ``cbm archive publish DIR`` publishes: the directory layouts it reads (I/O edge).

Two layouts are recognised:

* a **synthetic world** written by ``cbm world build``: ``DIR/world.json``,
  ``DIR/stac/collections/<collection>.json`` and
  ``DIR/stac/items/<collection>/<item>.json`` whose asset hrefs are paths relative
  to the item file (``../../../cogs/<collection>/<item>/<asset>.tif``).  The items
  are kept as written; only local asset hrefs become ``s3://bucket/<collection>/
  <item>/<file>`` and relative links are dropped (the STAC API makes its own);
* **folders of real COGs**: ``DIR/cogs/<YYYY-MM-DD>/<BAND>.tif`` (Sentinel-2 bands
  ``B01``…``B12``, ``B8A``, ``SCL``, ``AOT``, ``WVP``; Sentinel-1 ``VV``/``VH``)
  or ``DIR/cogs_window/<BAND>_<res>.tif`` (one acquisition, several resolutions:
  the finest file of each band is published; JPEG 2000 files are not).  Items are
  generated from the COGs (:mod:`cbm_dask.archive.items`), with the SAFE
  metadata of ``DIR/metadata/MTD_MSIL2A.xml``/``MTD_TL.xml`` when present.  A
  directory holding several such folders publishes all of them.

Real-data item ids start with the folder's site name (``flanders-kempen_S2_31UFS_
20230405_L2A``), so they never collide with Earth Search style synthetic ids.

Every raster is opened here before anything is uploaded, so a missing, corrupt
or unprojected COG stops the publish before it changes the archive.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from cbm_dask.archive.collections import item_extent, s1_collection, s2_collection
from cbm_dask.archive.items import (
    S2_BANDS,
    Acquisition,
    SafeMetadata,
    s1_item,
    s2_item,
    scl_properties,
)
from cbm_dask.archive.raster import RasterInfo, grid_tile
from cbm_dask.errors import InputError
from cbm_dask.sentinel.bands import POLARISATIONS
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S2_L2A
from cbm_dask.sentinel.stac import COG_MEDIA_TYPE

__all__ = [
    "PlannedItem",
    "PublishPlan",
    "Upload",
    "plan_directory",
    "read_raster_info",
    "read_safe_metadata",
    "scl_counts",
    "site_name",
]

log = logging.getLogger(__name__)

# ESA's band index order in BOA_ADD_OFFSET (band_id 0..12).
_ESA_BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                   "B11", "B12")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WINDOW_FILE = re.compile(r"^(?P<band>[A-Z0-9]+)_(?P<res>\d+)m$", re.IGNORECASE)
_DATE_TOKEN = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_TILE_TOKEN = re.compile(r"(?:^|_)T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])(?:_|$)")
# Characters the STAC API refuses in ids (stac-fastapi-pgstac's default list).
_INVALID_ID = re.compile(r"[:/?#\[\]@!$&'()*+,;=\s]")
_RASTER_SUFFIXES = {".tif", ".tiff"}
_MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff",
    ".tiff": "image/tiff; application=geotiff",
    ".json": "application/json",
    ".xml": "application/xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jp2": "image/jp2",
}


@dataclass(frozen=True)
class Upload:
    """One local file to put into the object store.

    Attributes
    ----------
    path
        Local file.
    key
        Object key in the bucket.
    content_type
        ``Content-Type`` of the object.
    item_id, asset_key
        What it belongs to (for messages).
    """

    path: Path
    key: str
    content_type: str
    item_id: str
    asset_key: str


@dataclass(frozen=True)
class PlannedItem:
    """An item ready to publish: its final JSON (s3:// hrefs) and the files to upload first.

    Attributes
    ----------
    collection
        Collection id.
    item
        The STAC item as it will be registered.
    uploads
        Its local assets.
    source
        The item file or folder it comes from (for messages).
    """

    collection: str
    item: dict[str, Any]
    uploads: tuple[Upload, ...]
    source: str

    @property
    def item_id(self) -> str:
        """The item's id."""
        return str(self.item["id"])


@dataclass(frozen=True)
class PublishPlan:
    """Everything a publish will do, decided before touching any service.

    Attributes
    ----------
    source
        The directory given.
    layout
        ``world`` or ``cogs``.
    collections
        Collection id → collection document (created when missing).
    items
        The items in publish order.
    """

    source: Path
    layout: str
    collections: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    items: tuple[PlannedItem, ...] = ()


# ---------------------------------------------------------------------------
# reading rasters and SAFE metadata (the I/O edge)


def read_raster_info(path: Path, *, what: str) -> RasterInfo:
    """Open a raster, check that its pixels can be read, and return its facts.

    Parameters
    ----------
    path
        The file.
    what
        How to name it in messages (``item X asset Y (path)``).

    Raises
    ------
    InputError
        When the file is missing, is not a readable raster (corrupt, truncated,
        not a GeoTIFF) or has no georeferencing.
    """
    import rasterio
    from rasterio.windows import Window

    if not path.is_file():
        raise InputError(f"{what}: {path} does not exist; check the path (or rebuild the source)")
    try:
        with rasterio.open(path) as src:
            profile = dict(src.profile)
            # Reading the last pixel decodes the last block: truncated files fail here.
            src.read(1, window=Window(src.width - 1, src.height - 1, 1, 1))
    except rasterio.errors.RasterioError as exc:
        raise InputError(
            f"{what}: {path} is not a readable GeoTIFF/COG ({str(exc).strip()}); the file is "
            "corrupt or truncated - replace it with a valid COG"
        ) from exc
    if profile.get("driver") != "GTiff":
        raise InputError(
            f"{what}: {path} is a {profile.get('driver')} file, not a GeoTIFF; convert it to a "
            "COG (gdal_translate -of COG) before archiving"
        )
    if not profile.get("tiled") and max(profile["width"], profile["height"]) > 512:
        log.warning("%s: %s is not tiled; readers will fetch whole strips (write a COG)",
                    what, path)
    return RasterInfo.from_profile(f"{what} ({path})", profile)


def scl_counts(path: Path) -> dict[int, int]:
    """Return pixel counts per class of a scene classification raster."""
    import rasterio

    with rasterio.open(path) as src:
        data = src.read(1)
    counts = np.bincount(data.ravel().astype(np.int64), minlength=12)
    return {int(c): int(n) for c, n in enumerate(counts) if n}


def _text(root: ET.Element, tag: str) -> str | None:
    node = root.find(f".//{tag}")
    return node.text.strip() if node is not None and node.text else None


def _attribute(root: ET.Element, tag: str, name: str) -> str | None:
    node = root.find(f".//{tag}")
    return node.get(name) if node is not None else None


def parse_safe_metadata(product_xml: str, tile_xml: str | None = None) -> SafeMetadata:
    """Parse ``MTD_MSIL2A.xml`` (and ``MTD_TL.xml``) text into :class:`SafeMetadata` (pure)."""
    root = ET.fromstring(product_xml)
    start = _text(root, "PRODUCT_START_TIME")
    spacecraft = _text(root, "SPACECRAFT_NAME")
    offsets: dict[str, float] = {}
    for node in root.iter("BOA_ADD_OFFSET"):
        index, value = node.get("band_id"), node.text
        if index is not None and value is not None and int(index) < len(_ESA_BAND_ORDER):
            offsets[_ESA_BAND_ORDER[int(index)]] = float(value)
    orbit = _text(root, "SENSING_ORBIT_NUMBER")
    cloud = _text(root, "Cloud_Coverage_Assessment")
    quantification = _text(root, "BOA_QUANTIFICATION_VALUE")
    sun_azimuth = sun_zenith = None
    granule = _attribute(root, "Granule", "granuleIdentifier")
    if tile_xml:
        tile_root = ET.fromstring(tile_xml)
        mean_sun = tile_root.find(".//Mean_Sun_Angle")
        if mean_sun is not None:
            zenith, azimuth = _text(mean_sun, "ZENITH_ANGLE"), _text(mean_sun, "AZIMUTH_ANGLE")
            sun_zenith = float(zenith) if zenith else None
            sun_azimuth = float(azimuth) if azimuth else None
        granule = _text(tile_root, "TILE_ID") or granule
    return SafeMetadata(
        product_uri=_text(root, "PRODUCT_URI"),
        platform=spacecraft.lower() if spacecraft else None,
        sensing_time=dt.datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None,
        processing_baseline=_text(root, "PROCESSING_BASELINE"),
        generation_time=_text(root, "GENERATION_TIME"),
        datatake_id=_attribute(root, "Datatake", "datatakeIdentifier"),
        datastrip_id=_attribute(root, "Granule", "datastripIdentifier"),
        granule_id=granule,
        relative_orbit=int(orbit) if orbit else None,
        cloud_cover=float(cloud) if cloud else None,
        quantification=float(quantification) if quantification else 10000.0,
        boa_add_offset=offsets or None,
        sun_azimuth=sun_azimuth,
        sun_zenith=sun_zenith,
    )


def read_safe_metadata(folder: Path) -> SafeMetadata | None:
    """Read ``folder/metadata/MTD_MSIL2A.xml`` (+ ``MTD_TL.xml``) when present.

    Raises
    ------
    InputError
        When the file exists but is not valid XML.
    """
    product = folder / "metadata" / "MTD_MSIL2A.xml"
    if not product.is_file():
        return None
    tile = folder / "metadata" / "MTD_TL.xml"
    try:
        return parse_safe_metadata(product.read_text(),
                                   tile.read_text() if tile.is_file() else None)
    except (ET.ParseError, ValueError) as exc:
        raise InputError(f"{product} is not a valid SAFE metadata file ({exc}); fix or remove it") \
            from exc


# ---------------------------------------------------------------------------
# folders of real COGs


def site_name(folder: Path) -> str:
    """Return the id prefix of a data folder.

    ``s2_l2a_antwerp_waasland_2023q4`` → ``antwerp-waasland``: sensor tokens in
    front and dates at the end are dropped.
    """
    tokens = [t for t in re.split(r"[_\-\s]+", folder.name) if t]
    while tokens and tokens[0].lower() in {"s1", "s2", "l2a", "l1c", "grd", "s2s1"}:
        tokens.pop(0)
    while tokens and re.fullmatch(r"\d{4}(q\d)?|\d{6,8}|\d{4}-\d{2}(-\d{2})?", tokens[-1],
                                  re.IGNORECASE):
        tokens.pop()
    name = "-".join(tokens).lower() or folder.name.lower()
    return _INVALID_ID.sub("-", name)


def _band_of(name: str) -> str:
    return name.upper()


def _choose_finest(files: Iterable[Path]) -> dict[str, Path]:
    """Band → the finest-resolution file among ``<BAND>_<res>m.tif`` names."""
    best: dict[str, tuple[int, Path]] = {}
    for path in files:
        match = _WINDOW_FILE.match(path.stem)
        if not match:
            log.debug("skipping %s: not <BAND>_<res>m.tif", path)
            continue
        band, res = _band_of(match["band"]), int(match["res"])
        if band not in best or res < best[band][0]:
            best[band] = (res, path)
    return {band: pair[1] for band, pair in best.items()}


def _key(collection: str, item_id: str, path: Path) -> str:
    return f"{collection}/{item_id}/{path.name}"


def _s2_item_from_files(
    *, folder: Path, files: Mapping[str, Path], acquisition: Acquisition, site: str,
    bucket: str, safe: SafeMetadata | None,
) -> PlannedItem:
    day = acquisition.datetime
    tile_match = _TILE_TOKEN.search(safe.product_uri or "") if safe else None
    mgrs = tile_match.group(1) if tile_match else None
    unit = safe.platform[-1].upper() if safe and safe.platform else ""
    infos: dict[str, RasterInfo] = {}
    for band, path in files.items():
        infos[band] = read_raster_info(path, what=f"{folder.name} {day:%Y-%m-%d} band {band}")
    counts = scl_counts(files["SCL"]) if "SCL" in files else None
    tile = mgrs or grid_tile(f"{site} {day:%Y-%m-%d}", infos.values())
    item_id = f"{site}_S2{unit}_{tile}_{day:%Y%m%d}_L2A" if tile else \
        f"{site}_S2{unit}_{day:%Y%m%d}_L2A"
    uploads = tuple(
        Upload(path, _key(S2_L2A, item_id, path), COG_MEDIA_TYPE, item_id, S2_BANDS[band].key)
        for band, path in sorted(files.items())
    )
    hrefs = {u.asset_key: f"s3://{bucket}/{u.key}" for u in uploads}
    # Without SAFE metadata the DN are taken as harmonised (reflectance * 10000, no
    # BOA_ADD_OFFSET), the convention of openEO/CDSE exports such as these folders.
    item = s2_item(
        item_id=item_id,
        acquisition=acquisition,
        assets={band: (infos[band], hrefs[S2_BANDS[band].key]) for band in files},
        scl_stats=scl_properties(counts) if counts is not None else None,
        safe=safe,
        reflectance_offset=0.0,
        mgrs=mgrs,
    )
    return PlannedItem(S2_L2A, item, uploads, str(folder))


def _s1_item_from_files(
    *, folder: Path, files: Mapping[str, Path], acquisition: Acquisition, site: str, bucket: str,
) -> PlannedItem:
    day = acquisition.datetime
    item_id = f"{site}_S1_IW_{day:%Y%m%d}_GAMMA0"
    infos = {pol: read_raster_info(path, what=f"{folder.name} {day:%Y-%m-%d} band {pol}")
             for pol, path in files.items()}
    uploads = tuple(
        Upload(path, _key(S1_BACKSCATTER, item_id, path), COG_MEDIA_TYPE, item_id, pol.lower())
        for pol, path in sorted(files.items())
    )
    hrefs = {u.asset_key: f"s3://{bucket}/{u.key}" for u in uploads}
    backscatter = "gamma0_ellipsoid_linear"
    item = s1_item(item_id=item_id, acquisition=acquisition, backscatter=backscatter,
                   assets={pol: (infos[pol], hrefs[pol.lower()]) for pol in files},
                   descriptions={pol: f"{pol} backscatter ({backscatter.replace('_', ' ')})"
                                 for pol in files})
    return PlannedItem(S1_BACKSCATTER, item, uploads, str(folder))


def _is_cog_folder(folder: Path) -> bool:
    cogs = folder / "cogs"
    if cogs.is_dir() and any(_DATE_DIR.match(p.name) for p in cogs.iterdir() if p.is_dir()):
        return True
    return (folder / "cogs_window").is_dir()


def _plan_cog_folder(folder: Path, bucket: str) -> list[PlannedItem]:
    site = site_name(folder)
    items: list[PlannedItem] = []
    cogs = folder / "cogs"
    if cogs.is_dir():
        for day_dir in sorted(p for p in cogs.iterdir() if p.is_dir()):
            if not _DATE_DIR.match(day_dir.name):
                log.info("skipping %s: not a YYYY-MM-DD acquisition folder", day_dir)
                continue
            try:
                day = dt.date.fromisoformat(day_dir.name)
            except ValueError as exc:
                raise InputError(f"{day_dir}: {day_dir.name} is not a valid date ({exc})") from exc
            s2_files: dict[str, Path] = {}
            s1_files: dict[str, Path] = {}
            for path in sorted(day_dir.iterdir()):
                if path.suffix.lower() not in _RASTER_SUFFIXES:
                    continue
                band = _band_of(path.stem)
                if band in S2_BANDS:
                    s2_files[band] = path
                elif band in POLARISATIONS:
                    s1_files[band] = path
                else:
                    log.info("skipping %s: %s is neither a Sentinel-2 band nor a polarisation",
                             path, band)
            acquisition = Acquisition.from_date(day)
            if s2_files:
                items.append(_s2_item_from_files(folder=folder, files=s2_files,
                                                 acquisition=acquisition, site=site,
                                                 bucket=bucket, safe=None))
            if s1_files:
                items.append(_s1_item_from_files(folder=folder, files=s1_files,
                                                 acquisition=acquisition, site=site,
                                                 bucket=bucket))
    window = folder / "cogs_window"
    if window.is_dir():
        files = _choose_finest(p for p in window.iterdir()
                               if p.suffix.lower() in _RASTER_SUFFIXES)
        s2_files = {band: path for band, path in files.items() if band in S2_BANDS}
        if s2_files:
            safe = read_safe_metadata(folder)
            if safe is not None and safe.sensing_time is not None:
                acquisition = Acquisition(safe.sensing_time)
            else:
                token = _DATE_TOKEN.search(folder.name)
                if token is None:
                    raise InputError(
                        f"{folder}: no metadata/MTD_MSIL2A.xml and no YYYYMMDD date in the "
                        "folder name; the acquisition date of cogs_window/ is unknown"
                    )
                acquisition = Acquisition.from_date(
                    dt.datetime.strptime(token.group(1), "%Y%m%d").date())
            items.append(_s2_item_from_files(folder=folder, files=s2_files,
                                             acquisition=acquisition, site=site,
                                             bucket=bucket, safe=safe))
    return items


def _collections_for(items: Sequence[PlannedItem]) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for collection in sorted({p.collection for p in items}):
        members = [p.item for p in items if p.collection == collection]
        bbox, interval = item_extent(members)
        if collection == S2_L2A:
            platforms = [str(m["properties"]["platform"]) for m in members
                         if m["properties"].get("platform")]
            docs[collection] = s2_collection(bbox, interval, platforms)
        else:
            docs[collection] = s1_collection(bbox, interval)
    return docs


# ---------------------------------------------------------------------------
# synthetic worlds


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} {path} is not readable JSON ({exc}); rebuild or fix it") \
            from exc
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} is not a JSON object")
    return data


def _has_projection(fields: Mapping[str, Any]) -> bool:
    return any(fields.get(k) is not None
               for k in ("proj:epsg", "proj:code", "proj:wkt2", "proj:projjson"))


def _declared_epsg(fields: Mapping[str, Any]) -> int | None:
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def _is_raster_asset(asset: Mapping[str, Any], path: Path) -> bool:
    media = str(asset.get("type") or "").lower()
    return media.startswith("image/tiff") or path.suffix.lower() in _RASTER_SUFFIXES


def _plan_world_item(path: Path, collection: str, bucket: str) -> PlannedItem:
    item = _load_json(path, "item")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise InputError(f"item file {path} has no 'id'; rebuild the world (`cbm world build`)")
    if _INVALID_ID.search(item_id):
        raise InputError(
            f"item {item_id!r} ({path}): the id contains characters STAC APIs refuse "
            "(: / ? # [ ] @ ! $ & ' ( ) * + , ; = or spaces); rename the item"
        )
    if item.get("collection") not in (None, collection):
        raise InputError(
            f"item {item_id!r} ({path}) says collection {item.get('collection')!r} but lies in "
            f"stac/items/{collection}/; move it or fix its 'collection'"
        )
    item["collection"] = collection
    properties = item.get("properties") or {}
    assets = item.get("assets") or {}
    if not isinstance(assets, dict) or not assets:
        raise InputError(f"item {item_id!r} ({path}) has no assets; rebuild the world")
    if not _has_projection(properties) and not any(
        isinstance(a, Mapping) and _has_projection(a) for a in assets.values()
    ):
        raise InputError(
            f"item {item_id!r} ({path}) has no projection info (proj:epsg or proj:code on the "
            "item or its assets); add it - the cube loader needs the native CRS"
        )
    declared_item_epsg = _declared_epsg(properties)
    uploads: list[Upload] = []
    for key, asset in assets.items():
        href = asset.get("href") if isinstance(asset, Mapping) else None
        if not isinstance(href, str) or not href:
            raise InputError(f"item {item_id!r} asset {key!r} ({path}) has no href")
        parsed = urlparse(href)
        if parsed.scheme and parsed.scheme != "file":
            continue  # already remote: kept as is
        local = Path(parsed.path) if parsed.scheme == "file" else Path(href)
        local = local if local.is_absolute() else (path.parent / local)
        local = local.resolve()
        what = f"item {item_id!r} asset {key!r}"
        if not local.is_file():
            raise InputError(
                f"{what}: its href {href!r} points to {local}, which does not exist; rebuild the "
                "world (`cbm world build`) or fix the href"
            )
        if _is_raster_asset(asset, local):
            info = read_raster_info(local, what=what)
            declared = _declared_epsg(asset) or declared_item_epsg
            if declared is not None and info.epsg is not None and declared != info.epsg:
                raise InputError(
                    f"{what}: the item declares EPSG:{declared} but {local} is in "
                    f"EPSG:{info.epsg}; fix proj:epsg/proj:code of the item"
                )
        content_type = str(asset.get("type") or _MEDIA_TYPES.get(local.suffix.lower(),
                                                                    "application/octet-stream"))
        upload = Upload(local, _key(collection, item_id, local), content_type, item_id, key)
        uploads.append(upload)
        asset["href"] = f"s3://{bucket}/{upload.key}"
    return PlannedItem(collection, _for_the_api(item), tuple(uploads), str(path))


def _for_the_api(item: dict[str, Any]) -> dict[str, Any]:
    """Drop the relative links of a world item: the STAC API makes its own (collection ...)."""
    item["links"] = [
        link for link in item.get("links") or ()
        if isinstance(link, Mapping) and urlparse(str(link.get("href", ""))).scheme
        and link.get("rel") not in {"self", "root", "parent", "collection"}
    ]
    return item


def _is_world(directory: Path) -> bool:
    """``world.json`` or ``stac/items/<collection>/`` beside ``stac/collections/``."""
    if not (directory / "stac" / "collections").is_dir():
        return False
    items = directory / "stac" / "items"
    return (directory / "world.json").is_file() or (
        items.is_dir() and any(p.is_dir() for p in items.iterdir())
    )


def _plan_world(directory: Path, bucket: str, wanted: set[str] | None) -> PublishPlan:
    collections_dir = directory / "stac" / "collections"
    collections: dict[str, dict[str, Any]] = {}
    for path in sorted(collections_dir.glob("*.json")):
        doc = _load_json(path, "collection")
        collection_id = str(doc.get("id") or path.stem)
        if wanted is None or collection_id in wanted:
            doc["links"] = [link for link in doc.get("links") or ()
                            if isinstance(link, Mapping)
                            and urlparse(str(link.get("href", ""))).scheme]
            collections[collection_id] = doc
    items: list[PlannedItem] = []
    items_dir = directory / "stac" / "items"
    for collection_id in collections:
        for path in sorted((items_dir / collection_id).glob("*.json")):
            items.append(_plan_world_item(path, collection_id, bucket))
    orphans = sorted(
        p.name for p in items_dir.iterdir()
        if p.is_dir() and p.name not in collections and (wanted is None or p.name in wanted)
    ) if items_dir.is_dir() else []
    if orphans:
        raise InputError(
            f"{items_dir} has items of collections without a collection document "
            f"({', '.join(orphans)}); add stac/collections/<id>.json or rebuild the world"
        )
    return PublishPlan(directory, "world", collections, tuple(items))


# ---------------------------------------------------------------------------
# entry point


def plan_directory(
    directory: Path, *, bucket: str, collections: Sequence[str] | None = None,
) -> PublishPlan:
    """Decide what publishing ``directory`` means: collections, items, uploads.

    Parameters
    ----------
    directory
        A synthetic world, a folder of real COGs, or a directory of such folders.
    bucket
        Bucket the hrefs will point into.
    collections
        Publish only these collection ids (default: all found).

    Raises
    ------
    InputError
        When the directory has no known layout, a COG is missing/corrupt/has no
        projection, or an item is malformed; the message names the file.
    """
    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory; give a world or a folder of COGs")
    wanted = set(collections) if collections else None
    if _is_world(directory):
        plan = _plan_world(directory, bucket, wanted)
    else:
        folders = [directory] if _is_cog_folder(directory) else sorted(
            p for p in directory.iterdir() if p.is_dir() and _is_cog_folder(p)
        )
        if not folders:
            raise InputError(
                f"{directory} is neither a synthetic world (stac/collections/, from `cbm world "
                "build`) nor a folder of COGs (cogs/<YYYY-MM-DD>/<BAND>.tif or "
                "cogs_window/<BAND>_<res>m.tif), nor a directory of such folders"
            )
        planned: list[PlannedItem] = []
        for folder in folders:
            planned.extend(p for p in _plan_cog_folder(folder, bucket)
                           if wanted is None or p.collection in wanted)
        plan = PublishPlan(directory, "cogs", _collections_for(planned), tuple(planned))
    if wanted is not None:
        missing = sorted(wanted - set(plan.collections))
        if missing:
            raise InputError(
                f"{directory} has no items of collection(s) {', '.join(missing)}; found: "
                f"{', '.join(plan.collections) or 'none'}"
            )
    seen: dict[tuple[str, str], str] = {}
    for planned_item in plan.items:
        ident = (planned_item.collection, planned_item.item_id)
        if ident in seen:
            raise InputError(
                f"item id {planned_item.item_id!r} of {planned_item.collection} comes twice "
                f"({seen[ident]} and {planned_item.source}); item ids must be unique"
            )
        seen[ident] = planned_item.source
    return plan
