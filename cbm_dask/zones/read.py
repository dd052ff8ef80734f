"""Reading parcel declaration files (any OGR format, GeoParquet) with pyogrio/Arrow."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import pyproj
import shapely

from cbm_dask.errors import InputError

__all__ = ["SourceFile", "read_parcels"]

log = logging.getLogger(__name__)

_PARQUET_SUFFIXES = {".parquet", ".geoparquet", ".pq"}


@dataclass(frozen=True)
class SourceFile:
    """What was read: the frame, its feature ids and where it came from.

    ``wkb`` holds each row's geometry as it was stored (WKB bytes, aligned with
    ``frame``) when the file stored WKB, so unchanged geometries need not be
    encoded again; None otherwise.  ``plain_wkb`` tells, per row, whether that
    WKB is little-endian 2D Polygon or MultiPolygon (what can be stored as is).
    ``deferred`` marks the rows whose geometry was not decoded when read (None
    in ``frame``; see :func:`read_parcels`): plain WKB of a non-empty geometry,
    decoded by :meth:`geometries` when needed.
    """

    frame: gpd.GeoDataFrame
    feature_ids: pd.Series
    path: Path
    layer: str | None
    wkb: np.ndarray | None = None
    plain_wkb: np.ndarray | None = None
    deferred: np.ndarray | None = None

    def geometries(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Return the geometries at ``positions`` (all when None), deferred ones decoded."""
        geoms = np.asarray(self.frame.geometry.array, dtype=object)
        if positions is not None:
            geoms = geoms[positions]
        if self.deferred is None or self.wkb is None:
            return geoms
        at = positions if positions is not None else slice(None)
        lazy = np.asarray(self.deferred[at], dtype=bool)
        if lazy.any():
            geoms = geoms.copy()
            geoms[lazy] = shapely.from_wkb(np.asarray(self.wkb[at], dtype=object)[lazy])
        return geoms


_PLAIN_WKB = pa.array([b"\x01\x03\x00\x00\x00", b"\x01\x06\x00\x00\x00"], pa.binary())
_POLYGON, _MULTIPOLYGON = 3, 6
_HEAD = 22  # bytes read per WKB to tell a plain, non-empty (Multi)Polygon


def _wkb_kinds(wkb: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: plain WKB (little-endian 2D Polygon or MultiPolygon) and surely non-empty.

    Non-empty is read from the counts of the first ring (of the first part): a
    geometry whose first ring has points is not empty.  Rows that cannot be told
    from these bytes are not "surely non-empty" and get decoded.
    """
    binary = wkb.cast(pa.binary()).combine_chunks()
    heads = pc.binary_slice(binary, 0, _HEAD)
    filled = pc.fill_null(pc.equal(pc.binary_length(heads), _HEAD), False)
    fixed = pc.if_else(filled, heads, pa.scalar(bytes(_HEAD))).cast(pa.binary(_HEAD))
    full = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
    data = fixed.buffers()[1]
    raw = np.frombuffer(data, dtype=np.uint8, count=len(fixed) * _HEAD,
                        offset=fixed.offset * _HEAD).reshape(-1, _HEAD)

    def u32(at: int) -> np.ndarray:
        return raw[:, at:at + 4].copy().view("<u4")[:, 0]

    kind, little = u32(1), raw[:, 0] == 1
    plain = pc.fill_null(pc.is_in(pc.binary_slice(binary, 0, 5), value_set=_PLAIN_WKB), False)
    polygon = full & little & (kind == _POLYGON) & (u32(5) > 0) & (u32(9) > 0)
    multi = (full & little & (kind == _MULTIPOLYGON) & (u32(5) > 0) & (raw[:, 9] == 1)
             & (u32(10) == _POLYGON) & (u32(14) > 0) & (u32(18) > 0))
    return (np.asarray(plain.to_numpy(zero_copy_only=False), dtype=bool),
            np.asarray(polygon | multi, dtype=bool))


def _read_geoparquet(
    source: Path, *, defer: bool = False, crs: str | None = None
) -> tuple[gpd.GeoDataFrame, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Read a GeoParquet file, keeping its WKB when it has one WKB geometry column.

    Returns the frame, the WKB, which WKB is plain and which rows were left
    undecoded (see :class:`SourceFile`); ``defer`` is ignored in a geographic CRS
    (``crs`` when given, else the file's), whose coordinates are checked when read.
    """
    table = pq.read_table(source)
    try:
        geo = json.loads((table.schema.metadata or {})[b"geo"])
        primary = geo["primary_column"]
        column = geo["columns"][primary]
    except (KeyError, TypeError, ValueError):
        return gpd.read_parquet(source), None, None, None
    if len(geo["columns"]) != 1 or str(column.get("encoding", "")).upper() != "WKB":
        return gpd.read_parquet(source), None, None, None
    covering = column.get("covering", {}).get("bbox", {}).get("xmin", [None])[0]
    attributes = table.drop_columns(
        [c for c in (primary, covering) if c is not None and c in table.column_names]
    ).to_pandas()
    wkb = table.column(primary).to_numpy(zero_copy_only=False)
    # GeoParquet: an absent crs means OGC:CRS84, an explicit null an unknown one
    file_crs = column.get("crs", "OGC:CRS84")
    plain, non_empty = _wkb_kinds(table.column(primary))
    target = crs if crs is not None else file_crs
    deferred = None
    if defer and target is not None and not pyproj.CRS.from_user_input(target).is_geographic:
        deferred = plain & non_empty
        geoms = np.full(len(wkb), None, dtype=object)
        geoms[~deferred] = shapely.from_wkb(wkb[~deferred])
    else:
        geoms = shapely.from_wkb(wkb)
    geometry = gpd.GeoSeries(geoms, index=attributes.index, crs=file_crs)
    frame = gpd.GeoDataFrame(attributes, geometry=geometry.rename(primary), crs=file_crs)
    return frame, wkb, plain, deferred


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_parcels(
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    crs: str | None = None,
    defer: bool = False,
) -> SourceFile:
    """Read a parcel file into a GeoDataFrame in its native CRS.

    Parameters
    ----------
    path
        GeoPackage, Shapefile, GeoJSON, FlatGeobuf, GeoParquet or any other
        vector format GDAL reads (zipped files work through ``/vsizip/``).
    layer
        Layer to read; required when the file holds more than one.
    encoding
        Attribute encoding for formats that do not declare theirs (old shapefiles).
    crs
        CRS of the coordinates, for files that declare none or declare a wrong one
        (it replaces the declared CRS; nothing is reprojected).
    defer
        Leave GeoParquet geometries stored as plain, non-empty little-endian 2D
        (Multi)Polygon WKB undecoded (None in ``frame``, see
        :meth:`SourceFile.geometries`), so that decoding can be done batch by
        batch alongside other work.  Not in a geographic CRS, whose coordinates
        are checked here.

    Raises
    ------
    InputError
        One line naming the file and the reason: missing, unreadable, ambiguous
        layer, or no CRS.
    """
    source = Path(path)
    if not str(path).startswith("/vsi") and not source.exists():
        raise InputError(f"{source}: no such file; check the path")
    if source.suffix.lower() in _PARQUET_SUFFIXES:
        try:
            frame, wkb, plain, deferred = _read_geoparquet(source, defer=defer, crs=crs)
        except Exception as exc:  # corrupt files fail in pyarrow, geopandas or shapely
            raise InputError(
                f"{source}: not a readable GeoParquet file ({_one_line(exc)})"
            ) from exc
        feature_ids = pd.Series(range(1, len(frame) + 1), index=frame.index)
        chosen = None
    else:
        try:
            layers = [str(row[0]) for row in pyogrio.list_layers(source)]
        except Exception as exc:  # GDAL drivers fail in many ways on damaged files
            raise InputError(
                f"{source}: not a readable vector dataset ({_one_line(exc)}); check the file "
                "is complete and in a format GDAL reads"
            ) from exc
        if layer is not None and layer not in layers:
            raise InputError(f"layer={layer!r}: no such layer in {source}; layers: "
                             f"{', '.join(layers)}", parameter="layer")
        if layer is None and len(layers) > 1:
            raise InputError(
                f"{source} holds {len(layers)} layers ({', '.join(layers)}); choose one with "
                "layer='NAME'", parameter="layer",
            )
        chosen = layer or (layers[0] if layers else None)
        try:
            frame = pyogrio.read_dataframe(
                source, layer=chosen, encoding=encoding, use_arrow=True, fid_as_index=True
            )
        except Exception as exc:  # as above, and arrow or decoding errors of the attributes
            raise InputError(f"{source}: cannot be read ({_one_line(exc)})") from exc
        feature_ids = pd.Series(frame.index.to_numpy(), index=pd.RangeIndex(len(frame)))
        frame = frame.reset_index(drop=True)
        wkb = plain = deferred = None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame:
        raise InputError(f"{source}: has no geometry column; parcels need polygons")
    if crs is not None:
        frame = frame.set_crs(crs, allow_override=True)
    elif frame.crs is None:
        raise InputError(
            f"{source}: declares no coordinate reference system; pass it as "
            "crs='EPSG:NNNN'", parameter="crs",
        )
    if frame.crs.is_geographic and len(frame):
        west, south, east, north = frame.total_bounds
        if min(west, south) < -180 or max(east, north) > 180 or abs(south) > 90 or abs(north) > 90:
            raise InputError(
                f"{source}: coordinates ({west:.0f}, {south:.0f}, {east:.0f}, {north:.0f}) are "
                f"not degrees of {frame.crs.to_string()}; the file's CRS is wrong (GeoJSON "
                "implies WGS84): pass the real one as crs='EPSG:NNNN'", parameter="crs",
            )
    if frame.geometry.name != "geometry":
        frame = frame.rename_geometry("geometry")
    log.info("read %d features from %s", len(frame), source)
    return SourceFile(frame=frame, feature_ids=feature_ids, path=source, layer=chosen, wkb=wkb,
                      plain_wkb=plain, deferred=deferred)
