"""Turning raw declarations into loadable parcels: ids, repairs, rejections.

Pure computation: no I/O.  Invalid geometries are repaired with ``make_valid``;
rows that cannot be parcels (no geometry, not polygonal, no id, duplicated id)
are rejected and reported, never silently dropped.  Tiny parcels are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely

from cbm_dask.zones.columns import ColumnMapping, as_text, parcel_ids
from cbm_dask.zones.read import SourceFile

__all__ = [
    "ParcelPlan", "PreparedBatch", "PreparedParcels", "Rejection", "REPORT_COLUMNS",
    "multipolygon_areas", "parcel_report", "plan_parcels", "prepare_batch", "prepare_parcels",
]

REPORT_COLUMNS = ["feature_id", "parcel_id", "action", "reason", "geometry_wkt"]
_POLYGONAL = {"Polygon", "MultiPolygon"}
_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}


class Rejection:
    """Reasons a row is rejected (the ``reason`` column of the report)."""

    EMPTY = "empty or missing geometry"
    NOT_POLYGONAL = "not a polygon"
    NO_ID = "missing parcel id"
    DUPLICATE_ID = "duplicate parcel id"
    REPAIRED = "invalid geometry repaired with make_valid"


@dataclass(frozen=True)
class PreparedParcels:
    """Parcels ready to be stored, and the report of what was changed or refused.

    Attributes
    ----------
    parcels
        GeoDataFrame in the native CRS with ``parcel_id, crop_code, crop_name,
        scheme, practice, area_m2, attributes`` (JSON text) and MultiPolygon
        ``geometry``.
    report
        One row per repaired or rejected feature (see ``REPORT_COLUMNS``).
    wkb
        Per parcel, the file's own WKB where it can be stored as is (see
        :class:`PreparedBatch`), or None.
    """

    parcels: gpd.GeoDataFrame
    report: pd.DataFrame
    wkb: np.ndarray | None = None

    @property
    def rejected(self) -> int:
        """Number of rejected rows."""
        return int((self.report["action"] == "rejected").sum())

    @property
    def repaired(self) -> int:
        """Number of repaired geometries."""
        return int((self.report["action"] == "repaired").sum())


def _collection_polygons(geom: shapely.Geometry) -> shapely.Geometry | None:
    """MultiPolygon of the polygonal parts of a GeometryCollection, None when none."""
    polygons = [
        p for part in geom.geoms if part.geom_type in _POLYGONAL
        for p in (part.geoms if part.geom_type == "MultiPolygon" else [part])
    ]
    return shapely.MultiPolygon(polygons) if polygons else None


def _as_multipolygons(geoms: np.ndarray) -> np.ndarray:
    """Promote to MultiPolygon (vectorised); None where nothing polygonal is left."""
    kinds = shapely.get_type_id(geoms)
    result = np.full(len(geoms), None, dtype=object)
    polygons = np.flatnonzero(kinds == 3)
    result[polygons] = shapely.multipolygons(geoms[polygons], indices=np.arange(len(polygons)))
    multi = kinds == 6
    result[multi] = geoms[multi]
    for index in np.flatnonzero(kinds == 7):
        result[index] = _collection_polygons(geoms[index])
    empty = shapely.is_empty(result.astype(object)) if len(result) else np.zeros(0, bool)
    result[np.asarray(empty, dtype=bool) & ~shapely.is_missing(result)] = None
    return result


def multipolygon_areas(
    geoms: np.ndarray, crs: pyproj.CRS, area_crs: str | pyproj.Transformer
) -> np.ndarray:
    """Areas of polygonal geometries in ``area_crs`` (m²) without reprojecting them.

    The native area times the area scale of the native-to-area-CRS transformation
    at the geometry's centroid (the Jacobian determinant, by central differences
    over half the geometry's extent): 4 points transformed per parcel instead of
    all its vertices.  The scale varies linearly across a parcel to first order and
    the centroid is where that part averages out, so this is the area of the parcel
    as drawn (edges straight in its own CRS) to within 1e-7 (measured on every real
    sample against densified reprojection); reprojecting only the vertices differs
    from both by up to 3e-4 in geographic CRSs, as its edges are straight in
    ``area_crs`` instead.  A ready native-to-area transformer can be passed as
    ``area_crs`` (building one costs tens of milliseconds).
    """
    if len(geoms) == 0:
        return np.zeros(0)
    native = shapely.area(geoms)
    centre = shapely.get_coordinates(shapely.centroid(geoms))
    bounds = shapely.bounds(geoms)
    half = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]) / 2
    half = np.where(half > 0, half, 1e-6)
    cx, cy = centre[:, 0], centre[:, 1]
    transformer = (
        area_crs if isinstance(area_crs, pyproj.Transformer)
        else pyproj.Transformer.from_crs(crs, area_crs, always_xy=True)
    )
    x, y = transformer.transform(
        np.concatenate([cx - half, cx + half, cx, cx]),
        np.concatenate([cy, cy, cy - half, cy + half]),
    )
    x, y = x.reshape(4, -1), y.reshape(4, -1)
    step = 2 * half
    jacobian = ((x[1] - x[0]) * (y[3] - y[2]) - (x[3] - x[2]) * (y[1] - y[0])) / step**2
    return np.asarray(native * np.abs(jacobian))


# Characters a JSON string cannot hold as they are (quote, backslash, controls).
_JSON_ESCAPED = r'["\\\x00-\x1f]'


def _json_values(values: pd.Series) -> pa.Array:
    """One column's values as JSON texts ("null" where missing)."""
    kind = values.dtype.kind
    if kind in "biufmM" or isinstance(values.dtype, pd.DatetimeTZDtype | pd.BooleanDtype):
        # ujson renders numbers, booleans and ISO dates without commas of their own
        text = str(values.to_json(orient="values", date_format="iso"))  # type: ignore[call-overload]
        return pa.array(text[1:-1].split(",") if len(values) else [], pa.string())
    try:
        texts = pa.array(values, pa.string(), from_pandas=True)
        plain = not pc.any(pc.match_substring_regex(texts, _JSON_ESCAPED)).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all texts
        plain = False
    if plain:  # the usual case: only quotes to add
        return pc.fill_null(pc.binary_join_element_wise('"', texts, '"', ""), "null")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    encoded = [json.dumps(u, ensure_ascii=False, default=str) for u in uniques]
    # code -1 (missing) takes the trailing "null"
    return pa.array(np.array([*encoded, "null"], dtype=object)[codes], pa.string())


def _json_attribute_array(frame: pd.DataFrame) -> pa.Array:
    """Every original attribute of each row as a JSON object, as an Arrow text array.

    Column by column in Arrow (texts quoted, numbers and dates by pandas' C
    encoder), then joined row-wise: no Python work per row and value.  Kept in
    Arrow, as the COPY encoder reads it from there.
    """
    if frame.empty:
        return pa.array([], pa.string())
    if len(frame.columns) == 0:
        return pa.array(["{}"] * len(frame), pa.string())
    try:
        columns = [_json_values(frame[c]) for c in frame.columns]
    except TypeError:  # unhashable cell values (lists, dicts): encode row by row
        lines = frame.to_json(orient="records", lines=True, date_format="iso",
                              force_ascii=False)
        return pa.array(lines.rstrip("\n").split("\n"), pa.string())
    parts: list[Any] = []
    for i, (name, column) in enumerate(zip(frame.columns, columns, strict=True)):
        parts += [("{" if i == 0 else ",") + json.dumps(str(name), ensure_ascii=False) + ":",
                  column]
    joined = pc.binary_join_element_wise(*parts, "}", "")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _json_attributes(frame: pd.DataFrame) -> list[str]:
    """Every original attribute of each row as a JSON object (text), one per row."""
    return list(_json_attribute_array(frame).to_pylist())


@dataclass(frozen=True)
class ParcelPlan:
    """The whole-file checks of a parcel file, before any geometry is repaired.

    Ids (missing, duplicated) and geometry kinds are decided over the whole file
    so that batches (:func:`prepare_batch`) can then be prepared independently,
    e.g. while the previous batch is being stored.

    Attributes
    ----------
    source, mapping, area_crs
        What :func:`plan_parcels` was given.
    ids
        The parcel id of every row (text, None where missing).
    candidates
        Positions of the rows not rejected by the whole-file checks.
    transformer
        Native CRS to ``area_crs``, built once for all batches.
    flagged
        ``position, action, reason`` of the rows rejected by these checks.
    """

    source: SourceFile
    mapping: ColumnMapping
    area_crs: str
    ids: pd.Series
    candidates: np.ndarray
    flagged: pd.DataFrame
    transformer: pyproj.Transformer

    def batches(self, rows: int) -> list[np.ndarray]:
        """Candidate positions split into batches of at most ``rows`` rows."""
        step = max(1, int(rows))
        return [self.candidates[i:i + step] for i in range(0, len(self.candidates), step)]


@dataclass(frozen=True)
class PreparedBatch:
    """One batch of parcels ready to be stored and its repaired/rejected rows.

    ``wkb`` is, per parcel, its geometry as the file stored it when that is
    little-endian 2D WKB of the geometry kept (not repaired), else None; None
    altogether when the file gave no WKB.
    """

    parcels: gpd.GeoDataFrame
    flagged: pd.DataFrame
    wkb: np.ndarray | None = None


def _plain(source: SourceFile, positions: np.ndarray) -> np.ndarray:
    """Whether the rows at ``positions`` have little-endian 2D (Multi)Polygon WKB."""
    if source.wkb is None or source.plain_wkb is None:
        return np.zeros(len(positions), dtype=bool)
    return np.asarray(source.plain_wkb[positions], dtype=bool)


def _stored_wkb(source: SourceFile, positions: np.ndarray, unchanged: np.ndarray) -> np.ndarray:
    """Pick the source WKB at ``positions`` where usable as is (see :class:`PreparedBatch`)."""
    assert source.wkb is not None
    stored = np.asarray(source.wkb[positions], dtype=object)
    stored[~(_plain(source, positions) & unchanged)] = None
    return stored


def _flags(positions: np.ndarray, action: str, reasons: object) -> pd.DataFrame:
    return pd.DataFrame({"position": positions, "action": action, "reason": reasons})


def plan_parcels(
    source: SourceFile, mapping: ColumnMapping, *, area_crs: str = "EPSG:3035"
) -> ParcelPlan:
    """Reject rows without a polygonal geometry or without a unique id (whole file).

    Reasons are given in this order of precedence: empty geometry, not polygonal,
    missing id, duplicate id.
    """
    frame = source.frame
    geoms = np.asarray(frame.geometry.array, dtype=object)
    ids = parcel_ids(frame, mapping, source.feature_ids)
    reasons = np.full(len(frame), None, dtype=object)
    # deferred rows (not decoded yet) are non-empty (Multi)Polygons by their WKB
    deferred = (np.zeros(len(frame), dtype=bool) if source.deferred is None
                else np.asarray(source.deferred, dtype=bool))
    missing = (shapely.is_missing(geoms) | shapely.is_empty(geoms)) & ~deferred
    reasons[missing] = Rejection.EMPTY
    kinds = np.where(deferred, 3, shapely.get_type_id(geoms))
    # 3 Polygon, 6 MultiPolygon, 7 GeometryCollection (may hold polygons)
    not_polygonal = ~np.isin(kinds, [3, 6, 7]) & ~missing
    reasons[not_polygonal] = [
        f"{Rejection.NOT_POLYGONAL} ({_TYPE_NAMES.get(int(k), '')})" for k in kinds[not_polygonal]
    ]
    todo = pd.isna(reasons)
    no_id = ids.isna().to_numpy() & todo
    reasons[no_id] = Rejection.NO_ID
    counts = ids.map(ids.value_counts())
    dupes = (ids.notna() & (counts > 1)).to_numpy() & pd.isna(reasons)
    reasons[dupes] = [
        f"{Rejection.DUPLICATE_ID} ({int(c)} rows)" for c in counts.to_numpy()[dupes]
    ]
    rejected = np.flatnonzero(~pd.isna(reasons))
    return ParcelPlan(
        source=source,
        mapping=mapping,
        area_crs=area_crs,
        ids=ids,
        candidates=np.flatnonzero(pd.isna(reasons)),
        flagged=_flags(rejected, "rejected", reasons[rejected]),
        transformer=pyproj.Transformer.from_crs(frame.crs, area_crs, always_xy=True),
    )


def prepare_batch(
    plan: ParcelPlan, positions: np.ndarray, *, promote_stored: bool = True
) -> PreparedBatch:
    """Repair, promote to MultiPolygon and measure the candidate rows at ``positions``.

    Pure GEOS/PROJ work (validity, repair, areas) runs without the GIL, so a batch
    can be prepared in a thread while another one is encoded or sent.  With
    ``promote_stored`` false, the geometries whose file WKB is stored as is
    (``wkb`` not None) are left as read (a Polygon stays a Polygon in
    ``parcels``): the stored WKB is what the database gets, so promoting them
    would be work thrown away.
    """
    frame = plan.source.frame
    geoms = plan.source.geometries(positions)
    valid = shapely.is_valid(geoms)
    flags = []
    unchanged = valid.copy()
    if not valid.all():
        invalid = np.flatnonzero(~valid)
        why = [shapely.is_valid_reason(g) for g in geoms[invalid]]
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
        flags.append(_flags(positions[invalid], "repaired",
                            [f"{Rejection.REPAIRED}: {w}" for w in why]))
    if promote_stored:
        multi = _as_multipolygons(geoms)
    else:
        # valid, non-empty (plan_parcels) plain (Multi)Polygons are kept as they are
        direct = _plain(plan.source, positions) & unchanged
        multi = geoms.copy()
        multi[~direct] = _as_multipolygons(geoms[~direct])
    lost = pd.isna(multi)
    if lost.any():
        if flags:  # rejected after all: the rejection replaces the repair
            flags[0] = flags[0][~np.isin(flags[0]["position"], positions[lost])]
        flags.append(_flags(positions[lost], "rejected",
                            Rejection.NOT_POLYGONAL + " (after repair)"))
    kept_at = positions[~lost]
    kept = multi[~lost]
    wkb = None
    if plan.source.wkb is not None:
        wkb = _stored_wkb(plan.source, kept_at, unchanged[~lost])
    rows = frame.iloc[kept_at]
    index = pd.RangeIndex(len(kept_at))

    def role(column: str | None) -> pd.Series:
        if column is None:
            return pd.Series([None] * len(kept_at), index=index, dtype=object)
        return as_text(rows[column]).set_axis(index)

    parcels = gpd.GeoDataFrame(
        {
            "parcel_id": plan.ids.iloc[kept_at].to_numpy(),
            "crop_code": role(plan.mapping.crop_code),
            "crop_name": role(plan.mapping.crop_name),
            "scheme": role(plan.mapping.scheme),
            "practice": role(plan.mapping.practice),
            "area_m2": multipolygon_areas(kept, frame.crs, plan.transformer),
            "attributes": pd.arrays.ArrowExtensionArray(
                _json_attribute_array(rows.drop(columns=frame.geometry.name))
            ),
        },
        geometry=gpd.GeoSeries(kept, crs=frame.crs, index=index),
        crs=frame.crs,
        index=index,
    )
    flagged = pd.concat(flags, ignore_index=True) if flags else _flags(
        np.zeros(0, dtype=np.int64), "repaired", []
    )
    return PreparedBatch(parcels=parcels, flagged=flagged, wkb=wkb)


def parcel_report(plan: ParcelPlan, batches: list[pd.DataFrame]) -> pd.DataFrame:
    """Build the report (``REPORT_COLUMNS``) of the plan's and the batches' flagged rows."""
    flagged = pd.concat([plan.flagged, *batches], ignore_index=True).sort_values(
        "position", kind="stable"
    )
    at = flagged["position"].to_numpy(dtype=np.int64)
    geoms = plan.source.geometries(at)
    return pd.DataFrame(
        {
            "feature_id": plan.source.feature_ids.to_numpy()[at],
            "parcel_id": plan.ids.to_numpy()[at],
            "action": flagged["action"].to_numpy(),
            "reason": flagged["reason"].to_numpy(),
            "geometry_wkt": [
                None if g is None else shapely.to_wkt(g, rounding_precision=3) for g in geoms
            ],
        },
        columns=REPORT_COLUMNS,
    )


def prepare_parcels(
    source: SourceFile, mapping: ColumnMapping, *, area_crs: str = "EPSG:3035"
) -> PreparedParcels:
    """Assign ids and roles, repair or reject geometries and compute areas.

    Parameters
    ----------
    source
        What :func:`~cbm_dask.zones.read.read_parcels` returned.
    mapping
        The column roles (:func:`~cbm_dask.zones.columns.detect_columns`).
    area_crs
        Equal-area CRS in which ``area_m2`` is computed.
    """
    plan = plan_parcels(source, mapping, area_crs=area_crs)
    batch = prepare_batch(plan, plan.candidates)
    return PreparedParcels(
        parcels=batch.parcels, report=parcel_report(plan, [batch.flagged]), wkb=batch.wkb
    )
