"""Loading parcel datasets into PostGIS (COPY, one transaction) and reading them back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
import shapely
import sqlalchemy as sa
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from cbm_dask import config
from cbm_dask.errors import DatabaseError, DatasetExistsError, DatasetNotFoundError, InputError
from cbm_dask.store.engine import get_engine
from cbm_dask.store.partitions import (
    attach_parcel_partition,
    create_dataset_partitions,
    create_parcel_partition,
    drop_dataset_partitions,
)
from cbm_dask.zones import ColumnMapping, detect_columns, prepare_parcels, read_parcels
from cbm_dask.zones.validate import PreparedParcels

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
_COPY_TYPES = ("int4", "text", "text", "text", "text", "text", "float8", "bytea", "bytea")
_WKB_MULTIPOLYGON = b"\x01\x06\x00\x00\x00"  # little-endian WKB header of a MultiPolygon
_EWKB_SRID_FLAG = 0x20000000


def _ewkb(geoms: Any, srid: int) -> list[bytes]:
    """2D EWKB (with SRID) of MultiPolygons, from plain WKB and a shared 9-byte header.

    Setting the SRID on each geometry to let GEOS write EWKB copies every geometry;
    the header is the same for all of them, so it is spliced in instead.
    """
    header = b"\x01" + (6 | _EWKB_SRID_FLAG).to_bytes(4, "little") + srid.to_bytes(4, "little")
    # prepare_parcels makes every geometry a MultiPolygon, so each WKB starts with
    # _WKB_MULTIPOLYGON; 2D because the column is.
    wkb = shapely.to_wkb(geoms, byte_order=1, output_dimension=2, include_srid=False)
    return [header + w[5:] for w in wkb]


def _jsonb(texts: Sequence[str]) -> list[bytes]:
    """Binary jsonb input (version 1) of JSON texts, encoded as one string."""
    if not texts:
        return []
    joined = "\n".join(texts).encode()
    return (b"\x01" + joined.replace(b"\n", b"\n\x01")).split(b"\n")


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
            f"--dataset {name!r}: use 1-63 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
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


def _copy_parcels(
    raw: psycopg.Connection[Any], statement: sql.Composed, parcels: gpd.GeoDataFrame,
    dataset_id: int, srid: int,
) -> None:
    """COPY the parcels in chunks; the next chunk is encoded while this one is sent.

    The queued writer sends from its own thread (waiting on the socket without the
    GIL), so encoding here, sending and the server's parse and insert overlap.
    """
    rows = max(1, int(config.get("parcels.copy-batch-rows")))
    texts = ("parcel_id", "crop_code", "crop_name", "scheme", "practice")
    with raw.cursor() as cursor, cursor.copy(
        statement, writer=QueuedLibpqWriter(cursor)
    ) as copy:
        copy.set_types(list(_COPY_TYPES))
        for start in range(0, len(parcels), rows):
            chunk = parcels.iloc[start:start + rows]
            # Plain object arrays: iterating Arrow-backed columns costs more than COPY.
            columns = [chunk[c].to_numpy(dtype=object) for c in texts]
            for row in zip(
                *columns,
                chunk["area_m2"].to_numpy().tolist(),
                _ewkb(chunk.geometry.to_numpy(), srid),
                _jsonb(list(chunk["attributes"])),
                strict=True,
            ):
                copy.write_row((dataset_id, *row))


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
    srid = _srid(parcels, Path(source_file))
    engine = get_engine(url)
    with _rolled_back_on_error(dataset, source_file), engine.begin() as conn:
        existing = _dataset_row(conn, dataset)
        if existing is not None:
            if not replace:
                raise DatasetExistsError(
                    f"dataset {dataset!r} exists ({existing.parcel_count} parcels, loaded "
                    f"{existing.created_at:%Y-%m-%d %H:%M}); pass --replace to replace it "
                    "(its signatures, markers and decisions are deleted with it)"
                )
            _delete_dataset(conn, int(existing.id))
        dataset_id = int(
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (name, aoi, year, srid, crs, source_file, layer, "
                    "column_mapping, load_report) VALUES (:name, :aoi, :year, :srid, :crs, "
                    ":source, :layer, CAST(:mapping AS jsonb), CAST(:report AS jsonb)) "
                    "RETURNING id"
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
                    "report": json.dumps(
                        {"repaired": prepared.repaired, "rejected": prepared.rejected}
                    ),
                },
            ).scalar_one()
        )
        staging = create_parcel_partition(conn, dataset_id)
        raw = conn.connection.driver_connection
        assert raw is not None  # a checked-out connection always has one
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(staging), sql.SQL(", ").join(map(sql.Identifier, _COPY_COLUMNS))
        )
        _copy_parcels(raw, statement, parcels, dataset_id, srid)
        attach_parcel_partition(conn, dataset_id)
        create_dataset_partitions(conn, dataset_id)
        conn.execute(
            sa.text("UPDATE datasets SET parcel_count = :n WHERE id = :id"),
            {"n": len(parcels), "id": dataset_id},
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
    transaction: on any error the database is left as it was.

    Raises
    ------
    InputError
        Unreadable file, undecidable columns, or an existing dataset without ``replace``.
    """
    started = time.perf_counter()
    _check_name(dataset)
    source = read_parcels(path, layer=layer, encoding=encoding, crs=crs)
    mapping = detect_columns(
        source.frame,
        id_column=id_column,
        crop_code_column=crop_code_column,
        crop_name_column=crop_name_column,
        scheme_column=scheme_column,
        practice_column=practice_column,
    )
    prepared = prepare_parcels(source, mapping, area_crs=str(config.get("parcels.area-crs")))
    if prepared.parcels.empty:
        raise InputError(
            f"{source.path}: none of its {len(source.frame)} features is a usable parcel "
            f"(first reason: {prepared.report['reason'].iloc[0] if len(prepared.report) else '?'})"
        )
    report_path = None
    if len(prepared.report):
        folder = Path(report_dir) if report_dir else config.home() / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        report_path = folder / f"{dataset}-{stamp}.csv"
        prepared.report.to_csv(report_path, index=False)
    dataset_id = store_parcels(
        prepared,
        dataset=dataset,
        source_file=str(source.path),
        layer=source.layer,
        mapping=mapping,
        aoi=aoi,
        year=year if year is not None else _guess_year(dataset),
        replace=replace,
        url=url,
    )
    result = LoadResult(
        dataset=dataset,
        dataset_id=dataset_id,
        loaded=len(prepared.parcels),
        repaired=prepared.repaired,
        rejected=prepared.rejected,
        mapping=mapping,
        crs=f"EPSG:{_srid(prepared.parcels, source.path)}",
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
            f"--to {target}: unknown format; use a .parquet (GeoParquet 1.1), .gpkg or .fgb file"
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
