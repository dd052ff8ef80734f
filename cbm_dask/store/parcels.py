"""Loading parcel datasets into PostGIS (COPY, one transaction) and reading them back."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import shapely
import sqlalchemy as sa
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from cbm_dask import config
from cbm_dask.errors import DatabaseError, DatasetExistsError, DatasetNotFoundError, InputError
from cbm_dask.store._partitions import (
    attach_parcel_partition,
    create_dataset_partitions,
    create_parcel_partition,
    drop_dataset_partitions,
)
from cbm_dask.store.engine import get_engine
from cbm_dask.zones import ColumnMapping, detect_columns, read_parcels
from cbm_dask.zones.validate import (
    PreparedBatch,
    PreparedParcels,
    parcel_report,
    plan_parcels,
    prepare_batch,
)

__all__ = [
    "LoadResult",
    "load_parcel_file",
    "store_parcels",
    "list_datasets",
    "dataset_info",
    "read_dataset_parcels",
    "export_parcels",
    "drop_dataset",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_COPY_COLUMNS = (
    "dataset_id", "parcel_id", "crop_code", "crop_name", "scheme", "practice",
    "area_m2", "geom", "attributes",
)
# Binary COPY: a field is its type's binary receive input, so geometry takes EWKB
# and jsonb takes version byte 1 + JSON text, both passed as raw bytes.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no extension
_COPY_TRAILER = b"\xff\xff"
_WKB_MULTIPOLYGON = b"\x01\x06\x00\x00\x00"  # little-endian WKB header of a MultiPolygon
_EWKB_SRID_FLAG = 0x20000000


def _ewkb(geoms: Any, srid: int, stored: Any = None) -> pa.Array:
    """2D EWKB (with SRID) of MultiPolygons, from plain WKB and a shared 9-byte header.

    Setting the SRID on each geometry to let GEOS write EWKB copies every geometry;
    the header is the same for all of them, so it is spliced in instead, in Arrow.
    Where ``stored`` holds the file's own little-endian 2D WKB of a geometry (see
    :class:`~cbm_dask.zones.validate.PreparedBatch`) it is used as is, a Polygon
    becoming a MultiPolygon of one part by its 4-byte part count.
    """
    header = b"\x01" + (6 | _EWKB_SRID_FLAG).to_bytes(4, "little") + srid.to_bytes(4, "little")
    if stored is None:
        stored = np.full(len(geoms), None, dtype=object)
    missing = pd.isna(stored)
    if missing.any():
        # prepare_batch makes every geometry without stored WKB a MultiPolygon, so
        # each WKB written here starts with _WKB_MULTIPOLYGON; 2D because the column is.
        stored = stored.copy()
        stored[missing] = shapely.to_wkb(
            geoms[missing], byte_order=1, output_dimension=2, include_srid=False
        )
    wkb = pa.array(stored, pa.binary())
    longest = int(pc.max(pc.binary_length(wkb)).as_py() or 0)  # an open end fails in Arrow
    polygon = pc.equal(pc.binary_slice(wkb, 1, 2), pa.scalar(b"\x03", pa.binary()))
    return pc.binary_join_element_wise(
        pc.if_else(polygon, pa.scalar(header + b"\x01\x00\x00\x00"), pa.scalar(header)),
        pc.if_else(polygon, wkb, pc.binary_slice(wkb, len(_WKB_MULTIPOLYGON), longest)),
        pa.scalar(b""),
    )


@dataclass(frozen=True)
class LoadResult:
    """Outcome of a parcel load."""

    dataset: str
    dataset_id: int
    loaded: int
    repaired: int
    rejected: int
    mapping: ColumnMapping
    crs: str
    report_path: Path | None
    seconds: float


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InputError(
            f"dataset={name!r}: use 1-63 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit", parameter="dataset",
        )


def _guess_year(name: str) -> int | None:
    years = re.findall(r"(?<!\d)(19[89]\d|20\d\d)(?!\d)", name)
    return int(years[-1]) if years else None


def _srid(frame: gpd.GeoDataFrame, path: Path) -> int:
    epsg = frame.crs.to_epsg() if frame.crs is not None else None
    if epsg is None:
        raise InputError(
            f"{path}: its CRS ({frame.crs.name if frame.crs else 'none'}) has no EPSG code; "
            "reproject the file to an EPSG CRS (e.g. with ogr2ogr -t_srs) and load it again"
        )
    return int(epsg)


def _dataset_row(conn: sa.Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(
        sa.text("SELECT id, parcel_count, created_at FROM datasets WHERE name = :name"),
        {"name": name},
    ).first()


def _delete_dataset(conn: sa.Connection, dataset_id: int) -> None:
    drop_dataset_partitions(conn, dataset_id)
    conn.execute(sa.text("DELETE FROM datasets WHERE id = :id"), {"id": dataset_id})


@contextmanager
def _rolled_back_on_error(dataset: str, source_file: str) -> Iterator[None]:
    """Report a failed load transaction as one line that says nothing was changed."""
    try:
        yield
    except (sa.exc.DBAPIError, psycopg.Error) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseError(
            f"loading dataset {dataset!r} from {source_file} failed ({reason}); nothing was "
            "changed in the database: fix the input and load again"
        ) from exc


def _length_prefixed(values: pa.Array) -> list[pa.Array]:
    """Split a text or bytes column into binary COPY fields: big-endian length, bytes.

    NULL is the length -1 with no bytes.
    """
    lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy(zero_copy_only=False)
    prefix = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4), len(values), [None, pa.py_buffer(lengths.astype(">i4").tobytes())]
    )
    return [prefix.cast(pa.binary()), pc.fill_null(values.cast(pa.binary()), b"")]


def _encode(
    parcels: gpd.GeoDataFrame, dataset_id: int, srid: int, stored: Any = None
) -> bytes:
    """Encode a batch as binary COPY rows (no header or trailer), in Arrow.

    Every field is a length-prefixed column and the rows are one element-wise join,
    so no Python runs per row or field.
    """
    if parcels.empty:
        return b""
    fixed = np.empty(len(parcels), dtype=[("length", ">i4"), ("area", ">f8")])
    fixed["length"], fixed["area"] = 8, parcels["area_m2"].to_numpy(dtype=np.float64)
    area = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(12), len(parcels), [None, pa.py_buffer(fixed.tobytes())]
    ).cast(pa.binary())
    parts: list[Any] = [
        pa.scalar(len(_COPY_COLUMNS).to_bytes(2, "big") + (4).to_bytes(4, "big")
                  + dataset_id.to_bytes(4, "big", signed=True)),
    ]
    for column in ("parcel_id", "crop_code", "crop_name", "scheme", "practice"):
        parts += _length_prefixed(pa.array(parcels[column], pa.string(), from_pandas=True))
    parts.append(area)
    parts += _length_prefixed(
        _ewkb(np.asarray(parcels.geometry.array, dtype=object), srid, stored)
    )
    # jsonb's binary input: version byte 1, then the JSON text
    attributes = pa.array(parcels["attributes"], pa.string(), from_pandas=True)
    parts += _length_prefixed(
        pc.binary_join_element_wise(pa.scalar(b"\x01"), attributes.cast(pa.binary()),
                                    pa.scalar(b""))
    )
    rows = pc.binary_join_element_wise(*parts, pa.scalar(b""))
    if isinstance(rows, pa.ChunkedArray):  # from Arrow-backed pandas columns
        rows = rows.combine_chunks()
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1,
                            offset=rows.offset * 4)
    data = rows.buffers()[2]
    if data is None:
        return b""
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def _copy_parcels(
    raw: psycopg.Connection[Any], statement: sql.Composed,
    batches: Sequence[Callable[[], PreparedBatch]], dataset_id: int, srid: int,
) -> int:
    """COPY the batches' parcels; return how many were sent.

    Four things overlap: a thread prepares batch k+1 (decoding, repairs, areas;
    GEOS and PROJ release the GIL), or ``cbm.parcels.prepare-threads`` threads the
    next batches, this thread encodes batch k (in Arrow, which releases it too),
    the queued writer sends batch k-1 from its own thread, and the server inserts.
    """
    sent = 0
    threads = max(1, int(config.get("parcels.prepare-threads")))
    with ThreadPoolExecutor(threads, thread_name_prefix="cbm-parcels") as pool, \
            raw.cursor() as cursor, \
            cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        copy.write(_COPY_HEADER)
        # one batch in preparation per thread, taken in order
        upcoming = deque(pool.submit(b) for b in batches[:threads])
        for index in range(len(batches)):
            batch = upcoming.popleft().result()
            if index + threads < len(batches):
                upcoming.append(pool.submit(batches[index + threads]))
            copy.write(_encode(batch.parcels, dataset_id, srid, batch.wkb))
            sent += len(batch.parcels)
        copy.write(_COPY_TRAILER)
    return sent


def _store(
    batches: Sequence[Callable[[], PreparedBatch]],
    *,
    srid: int,
    dataset: str,
    source_file: str,
    layer: str | None,
    mapping: ColumnMapping,
    aoi: str | None,
    year: int | None,
    replace: bool,
    url: str | None,
    report: Callable[[], tuple[int, int]],
) -> tuple[int, int]:
    """Store the batches' parcels as a new dataset in one transaction; return (id, count).

    ``report`` is called once every batch is prepared and returns (repaired,
    rejected); a load in which no parcel is left is rolled back.
    """
    engine = get_engine(url)
    with _rolled_back_on_error(dataset, source_file), engine.begin() as conn:
        existing = _dataset_row(conn, dataset)
        if existing is not None:
            if not replace:
                raise DatasetExistsError(
                    f"dataset {dataset!r} exists ({existing.parcel_count} parcels, loaded "
                    f"{existing.created_at:%Y-%m-%d %H:%M}); pass replace=True to replace it "
                    "(its signatures, markers and decisions are deleted with it)",
                    parameter="replace",
                )
            _delete_dataset(conn, int(existing.id))
        dataset_id = int(
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (name, aoi, year, srid, crs, source_file, layer, "
                    "column_mapping) VALUES (:name, :aoi, :year, :srid, :crs, "
                    ":source, :layer, CAST(:mapping AS jsonb)) RETURNING id"
                ),
                {
                    "name": dataset,
                    "aoi": aoi,
                    "year": year,
                    "srid": srid,
                    "crs": f"EPSG:{srid}",
                    "source": source_file,
                    "layer": layer,
                    "mapping": json.dumps(mapping.as_dict()),
                },
            ).scalar_one()
        )
        staging = create_parcel_partition(conn, dataset_id)
        raw = conn.connection.driver_connection
        assert raw is not None  # a checked-out connection always has one
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(staging), sql.SQL(", ").join(map(sql.Identifier, _COPY_COLUMNS))
        )
        count = _copy_parcels(raw, statement, batches, dataset_id, srid)
        repaired, rejected = report()
        if count == 0:
            raise InputError(
                f"{source_file}: none of its features is a usable parcel ({rejected} "
                "rejected, see the load report)"
            )
        attach_parcel_partition(conn, dataset_id)
        create_dataset_partitions(conn, dataset_id)
        conn.execute(
            sa.text(
                "UPDATE datasets SET parcel_count = :n, load_report = CAST(:report AS jsonb) "
                "WHERE id = :id"
            ),
            {"n": count, "id": dataset_id,
             "report": json.dumps({"repaired": repaired, "rejected": rejected})},
        )
    return dataset_id, count


def _slice(prepared: PreparedParcels, start: int, stop: int) -> PreparedBatch:
    return PreparedBatch(
        parcels=prepared.parcels.iloc[start:stop], flagged=pd.DataFrame(),
        wkb=None if prepared.wkb is None else prepared.wkb[start:stop],
    )


def store_parcels(
    prepared: PreparedParcels,
    *,
    dataset: str,
    source_file: str,
    layer: str | None,
    mapping: ColumnMapping,
    aoi: str | None = None,
    year: int | None = None,
    replace: bool = False,
    url: str | None = None,
) -> int:
    """Store prepared parcels as a new dataset in one transaction; return its id.

    Raises
    ------
    DatasetExistsError
        When the dataset exists and ``replace`` is false.
    """
    _check_name(dataset)
    parcels = prepared.parcels
    rows = max(1, int(config.get("parcels.copy-batch-rows")))
    batches = [
        functools.partial(_slice, prepared, start, start + rows)
        for start in range(0, len(parcels), rows)
    ]
    dataset_id, _ = _store(
        batches, srid=_srid(parcels, Path(source_file)), dataset=dataset,
        source_file=source_file, layer=layer, mapping=mapping, aoi=aoi, year=year,
        replace=replace, url=url, report=lambda: (prepared.repaired, prepared.rejected),
    )
    return dataset_id


def load_parcel_file(
    path: str | Path,
    dataset: str,
    *,
    id_column: str | Sequence[str] | None = None,
    crop_code_column: str | None = None,
    crop_name_column: str | None = None,
    scheme_column: str | None = None,
    practice_column: str | None = None,
    layer: str | None = None,
    encoding: str | None = None,
    crs: str | None = None,
    aoi: str | None = None,
    year: int | None = None,
    replace: bool = False,
    report_dir: str | Path | None = None,
    url: str | None = None,
) -> LoadResult:
    """Read, check and store a parcel file as dataset ``dataset``.

    Repaired and rejected features are listed in a CSV report written to
    ``report_dir`` (default ``$CBM_HOME/reports``).  The load is one
    transaction: on any error the database is left as it was.  Ids are checked
    over the whole file first; geometries are then repaired and measured batch
    by batch while the previous batch is sent.

    Raises
    ------
    InputError
        Unreadable file, undecidable columns, no usable parcel, or an existing
        dataset without ``replace``.
    """
    started = time.perf_counter()
    _check_name(dataset)
    # geometries are decoded batch by batch, in the thread that prepares them
    source = read_parcels(path, layer=layer, encoding=encoding, crs=crs, defer=True)
    mapping = detect_columns(
        source.frame,
        id_column=id_column,
        crop_code_column=crop_code_column,
        crop_name_column=crop_name_column,
        scheme_column=scheme_column,
        practice_column=practice_column,
    )
    plan = plan_parcels(source, mapping, area_crs=str(config.get("parcels.area-crs")))
    if len(plan.candidates) == 0:
        raise InputError(
            f"{source.path}: none of its {len(source.frame)} features is a usable parcel "
            f"(first reason: {plan.flagged['reason'].iloc[0] if len(plan.flagged) else '?'})"
        )
    srid = _srid(source.frame, source.path)
    flagged: list[pd.DataFrame] = []

    def batch(positions: Any) -> PreparedBatch:
        prepared = prepare_batch(plan, positions, promote_stored=False)
        flagged.append(prepared.flagged)
        return prepared

    rows = max(1, int(config.get("parcels.copy-batch-rows")))
    report_path: Path | None = None
    counts = {"repaired": 0, "rejected": 0}

    def write_report() -> tuple[int, int]:
        nonlocal report_path
        report = parcel_report(plan, flagged)
        counts["repaired"] = int((report["action"] == "repaired").sum())
        counts["rejected"] = int((report["action"] == "rejected").sum())
        if len(report):
            folder = Path(report_dir) if report_dir else config.home() / "reports"
            folder.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
            report_path = folder / f"{dataset}-{stamp}.csv"
            report.to_csv(report_path, index=False)
        return counts["repaired"], counts["rejected"]

    dataset_id, loaded = _store(
        [functools.partial(batch, positions) for positions in plan.batches(rows)],
        srid=srid,
        dataset=dataset,
        source_file=str(source.path),
        layer=source.layer,
        mapping=mapping,
        aoi=aoi,
        year=year if year is not None else _guess_year(dataset),
        replace=replace,
        url=url,
        report=write_report,
    )
    result = LoadResult(
        dataset=dataset,
        dataset_id=dataset_id,
        loaded=loaded,
        repaired=counts["repaired"],
        rejected=counts["rejected"],
        mapping=mapping,
        crs=f"EPSG:{srid}",
        report_path=report_path,
        seconds=time.perf_counter() - started,
    )
    log.info("loaded %d parcels into dataset %s", result.loaded, dataset)
    return result


def list_datasets(url: str | None = None) -> pd.DataFrame:
    """Return one row per dataset: name, aoi, year, crs, parcels, source, loaded."""
    with get_engine(url).connect() as conn:
        return pd.read_sql(
            sa.text(
                "SELECT name, aoi, year, crs, parcel_count AS parcels, "
                "(load_report->>'repaired')::int AS repaired, "
                "(load_report->>'rejected')::int AS rejected, source_file, "
                "to_char(created_at, 'YYYY-MM-DD HH24:MI') AS created_at "
                "FROM datasets ORDER BY name"
            ),
            conn,
            dtype={"year": "Int64"},
        )


def _dataset_id(conn: sa.Connection, name: str) -> int:
    row = _dataset_row(conn, name)
    if row is None:
        known = conn.execute(sa.text("SELECT name FROM datasets ORDER BY name")).scalars().all()
        raise DatasetNotFoundError(
            f"no dataset {name!r}; loaded datasets: {', '.join(known) or 'none'} "
            "(load one with `cbm parcels load`)"
        )
    return int(row.id)


def dataset_info(name: str, *, top: int = 20, url: str | None = None) -> dict[str, Any]:
    """Return a dataset's summary: count, CRS, area quantiles and crop histogram."""
    with get_engine(url).connect() as conn:
        dataset_id = _dataset_id(conn, name)
        meta = conn.execute(
            sa.text(
                "SELECT name, aoi, year, crs, source_file, layer, column_mapping, load_report, "
                "created_at FROM datasets WHERE id = :id"
            ),
            {"id": dataset_id},
        ).mappings().one()
        stats = conn.execute(
            sa.text(
                "SELECT count(*) AS n, min(area_m2) AS min, "
                "percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY area_m2) AS q, "
                "max(area_m2) AS max, sum(area_m2) AS total FROM parcels WHERE dataset_id = :id"
            ),
            {"id": dataset_id},
        ).mappings().one()
        crops = conn.execute(
            sa.text(
                "SELECT crop_code, min(crop_name) AS crop_name, count(*) AS parcels, "
                "sum(area_m2) / 1e4 AS area_ha FROM parcels WHERE dataset_id = :id "
                "GROUP BY crop_code ORDER BY count(*) DESC, crop_code LIMIT :top"
            ),
            {"id": dataset_id, "top": top},
        ).mappings().all()
    q = stats["q"] or [None, None, None]
    return {
        "name": meta["name"],
        "aoi": meta["aoi"],
        "year": meta["year"],
        "crs": meta["crs"],
        "source_file": meta["source_file"],
        "layer": meta["layer"],
        "columns": meta["column_mapping"],
        "load_report": meta["load_report"],
        "loaded_at": meta["created_at"].isoformat(),
        "parcels": int(stats["n"]),
        "area_m2": {
            "min": stats["min"], "p25": q[0], "p50": q[1], "p75": q[2],
            "max": stats["max"], "total": stats["total"],
        },
        "crops": [dict(row) for row in crops],
    }


def read_dataset_parcels(name: str, *, url: str | None = None) -> gpd.GeoDataFrame:
    """Return a dataset's parcels in their native CRS (attributes as JSON text)."""
    engine = get_engine(url)
    with engine.connect() as conn:
        dataset_id = _dataset_id(conn, name)
        srid = conn.execute(
            sa.text("SELECT srid FROM datasets WHERE id = :id"), {"id": dataset_id}
        ).scalar_one()
        frame = gpd.read_postgis(
            sa.text(
                "SELECT pid, parcel_id, crop_code, crop_name, scheme, practice, area_m2, "
                "attributes::text AS attributes, geom FROM parcels WHERE dataset_id = :id "
                "ORDER BY pid"
            ),
            conn,
            params={"id": dataset_id},
            geom_col="geom",
            crs=f"EPSG:{srid}",
        )
    return frame.rename_geometry("geometry")


def export_parcels(name: str, to: str | Path, *, url: str | None = None) -> Path:
    """Write a dataset's parcels to GeoParquet 1.1, GeoPackage or FlatGeobuf (by suffix)."""
    target = Path(to)
    suffix = target.suffix.lower()
    if suffix not in {".parquet", ".gpkg", ".fgb"}:
        raise InputError(
            f"to={str(target)!r}: unknown format; use a .parquet (GeoParquet 1.1), .gpkg or "
            ".fgb file", parameter="to",
        )
    frame = read_dataset_parcels(name, url=url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(target, schema_version="1.1.0", write_covering_bbox=True, index=False)
    else:
        driver = "GPKG" if suffix == ".gpkg" else "FlatGeobuf"
        frame.to_file(target, driver=driver, layer=name if driver == "GPKG" else None,
                      engine="pyogrio")
    return target


def drop_dataset(name: str, *, url: str | None = None) -> None:
    """Delete a dataset with its parcels, signatures, markers and decisions."""
    with get_engine(url).begin() as conn:
        _delete_dataset(conn, _dataset_id(conn, name))
