"""Reading parcel declaration files (any OGR format, GeoParquet) with pyogrio/Arrow."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
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
    encoded again; None otherwise.
    """

    frame: gpd.GeoDataFrame
    feature_ids: pd.Series
    path: Path
    layer: str | None
    wkb: np.ndarray | None = None


def _read_geoparquet(source: Path) -> tuple[gpd.GeoDataFrame, np.ndarray | None]:
    """Read a GeoParquet file, keeping its WKB when it has one WKB geometry column."""
    table = pq.read_table(source)
    try:
        geo = json.loads((table.schema.metadata or {})[b"geo"])
        primary = geo["primary_column"]
        column = geo["columns"][primary]
    except (KeyError, TypeError, ValueError):
        return gpd.read_parquet(source), None
    if len(geo["columns"]) != 1 or str(column.get("encoding", "")).upper() != "WKB":
        return gpd.read_parquet(source), None
    covering = column.get("covering", {}).get("bbox", {}).get("xmin", [None])[0]
    attributes = table.drop_columns(
        [c for c in (primary, covering) if c is not None and c in table.column_names]
    ).to_pandas()
    wkb = table.column(primary).to_numpy(zero_copy_only=False)
    # GeoParquet: an absent crs means OGC:CRS84, an explicit null an unknown one
    crs = column.get("crs", "OGC:CRS84")
    geometry = gpd.GeoSeries(shapely.from_wkb(wkb), index=attributes.index, crs=crs)
    return gpd.GeoDataFrame(attributes, geometry=geometry.rename(primary), crs=crs), wkb


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_parcels(
    path: str | Path,
    *,
    layer: str | None = None,
    encoding: str | None = None,
    crs: str | None = None,
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
            frame, wkb = _read_geoparquet(source)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise InputError(
                f"{source}: not a readable GeoParquet file ({_one_line(exc)})"
            ) from exc
        feature_ids = pd.Series(range(1, len(frame) + 1), index=frame.index)
        chosen = None
    else:
        try:
            layers = [str(row[0]) for row in pyogrio.list_layers(source)]
        except Exception as exc:
            raise InputError(
                f"{source}: not a readable vector dataset ({_one_line(exc)}); check the file "
                "is complete and in a format GDAL reads"
            ) from exc
        if layer is not None and layer not in layers:
            raise InputError(f"{source}: no layer {layer!r}; layers: {', '.join(layers)}")
        if layer is None and len(layers) > 1:
            raise InputError(
                f"{source} holds {len(layers)} layers ({', '.join(layers)}); choose one with "
                "--layer NAME"
            )
        chosen = layer or (layers[0] if layers else None)
        try:
            frame = pyogrio.read_dataframe(
                source, layer=chosen, encoding=encoding, use_arrow=True, fid_as_index=True
            )
        except Exception as exc:
            raise InputError(f"{source}: cannot be read ({_one_line(exc)})") from exc
        feature_ids = pd.Series(frame.index.to_numpy(), index=pd.RangeIndex(len(frame)))
        frame = frame.reset_index(drop=True)
        wkb = None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame:
        raise InputError(f"{source}: has no geometry column; parcels need polygons")
    if crs is not None:
        frame = frame.set_crs(crs, allow_override=True)
    elif frame.crs is None:
        raise InputError(
            f"{source}: declares no coordinate reference system; pass --crs EPSG:NNNN"
        )
    if frame.crs.is_geographic and len(frame):
        west, south, east, north = frame.total_bounds
        if min(west, south) < -180 or max(east, north) > 180 or abs(south) > 90 or abs(north) > 90:
            raise InputError(
                f"{source}: coordinates ({west:.0f}, {south:.0f}, {east:.0f}, {north:.0f}) are "
                f"not degrees of {frame.crs.to_string()}; the file's CRS is wrong (GeoJSON "
                "implies WGS84): pass the real one with --crs EPSG:NNNN"
            )
    if frame.geometry.name != "geometry":
        frame = frame.rename_geometry("geometry")
    log.info("read %d features from %s", len(frame), source)
    return SourceFile(frame=frame, feature_ids=feature_ids, path=source, layer=chosen, wkb=wkb)
