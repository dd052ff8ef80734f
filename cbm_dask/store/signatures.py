"""Signature rows: one row per parcel and image holding every band's statistics.

Layout (decision 0006 ... see docs/decisions/0003-signature-storage.md):

* ``signatures(dataset_id, pid, image_id, acquired, count int4[], stats real[][],
  scl int4[])``: ``count[b]`` and ``stats[b][k]`` for band ``b`` of the image's
  band list (``extractions.bands``) and statistic ``k`` of :data:`STATISTICS`;
  ``scl[c + 1]`` is the parcel's pixel count of scene class ``c`` (Sentinel-2),
  NULL for other sensors. Missing statistics are NaN inside the arrays.
* ``PARTITION BY LIST (dataset_id)``, then ``RANGE (acquired)`` by month: the
  primary key ``(pid, image_id)`` being written belongs to one month's leaf,
  small enough to stay in memory, while one parcel's series is a handful of
  index probes.
* The JRC-compatible one-row-per-band view is ``signature_bands``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from cbm_dask.errors import InputError

__all__ = [
    "SCL_CLASSES",
    "STATISTICS",
    "ImageRows",
    "copy_image_rows",
    "encode_image_rows",
    "ensure_month_partition",
    "image_rows",
    "month_partition_name",
]

log = logging.getLogger(__name__)

#: Statistics stored per band, in the order of the ``stats`` array's second axis.
STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "p25", "p50", "p75")
#: Scene classes counted in ``scl`` (Sentinel-2 L2A SCL codes 0..11).
SCL_CLASSES = 12

_PG_EPOCH = dt.date(2000, 1, 1)
_INT4_OID = 23
_FLOAT4_OID = 700
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], ">i4").tobytes()
_COPY_TRAILER = np.array([-1], ">i2").tobytes()
_COPY_CHUNK = 8 << 20
_SIGNATURE_COLUMNS = ("dataset_id", "pid", "image_id", "acquired", "count", "stats", "scl")


@dataclass(frozen=True)
class ImageRows:
    """One image's rows for one dataset, in the stored layout.

    Attributes
    ----------
    pid
        Parcel keys, ascending (the order the rows are written in).
    bands
        Band codes, the first axis of ``count`` and ``stats``.
    count
        Pixels per parcel and band, shape ``(parcels, bands)``.
    stats
        Statistics, shape ``(parcels, bands, len(STATISTICS))``, NaN where missing.
    scl
        Pixels per parcel and scene class, shape ``(parcels, SCL_CLASSES)``, or None.
    """

    pid: np.ndarray
    bands: tuple[str, ...]
    count: np.ndarray
    stats: np.ndarray
    scl: np.ndarray | None

    @property
    def band_rows(self) -> int:
        """Number of band-statistic rows (parcels x bands) these rows hold."""
        return len(self.pid) * len(self.bands)


def _histogram_counts(histograms: pd.DataFrame, pids: np.ndarray) -> np.ndarray:
    """Scene-class counts aligned with ``pids`` from a long, wide or JSON histogram frame."""
    counts = np.zeros((len(pids), SCL_CLASSES), dtype=np.int32)
    if not len(histograms):
        return counts
    if {"class", "count"} <= set(histograms.columns):
        rows = np.searchsorted(pids, histograms["pid"].to_numpy())
        classes = histograms["class"].to_numpy(dtype=np.int64)
        np.add.at(counts, (rows, classes), histograms["count"].to_numpy(dtype=np.int64))
        return counts
    if "hist" in histograms.columns:
        rows = np.searchsorted(pids, histograms["pid"].to_numpy())
        for row, text in zip(rows, histograms["hist"], strict=True):
            for key, value in json.loads(text).items():
                counts[row, int(key)] = int(value)
        return counts
    rows = np.searchsorted(pids, histograms["pid"].to_numpy())
    for column in histograms.columns:
        if column != "pid" and str(column).isdigit() and int(column) < SCL_CLASSES:
            counts[rows, int(column)] = histograms[column].to_numpy(dtype=np.int32)
    return counts


def image_rows(signatures: pd.DataFrame, histograms: pd.DataFrame | None = None) -> ImageRows:
    """Gather a reduction's long frame into one row per parcel (pure, no I/O).

    Parameters
    ----------
    signatures
        Columns ``pid, band, count, mean, std, min, max, p25, p50, p75``, one row per
        parcel and band (a parcel may lack some bands).
    histograms
        SCL pixel counts: long (``pid, class, count``), wide (``pid`` and one column
        per class code) or JSON text (``pid, hist`` as ``{"4": 120, "8": 3}``); None
        for sensors without a scene classification.
    """
    band_code, bands = pd.factorize(signatures["band"], sort=False)
    pid_values = signatures["pid"].to_numpy(dtype=np.int64)
    if histograms is not None and len(histograms):
        pid_values = np.concatenate([pid_values, histograms["pid"].to_numpy(dtype=np.int64)])
    pids = np.unique(pid_values)
    row = np.searchsorted(pids, signatures["pid"].to_numpy(dtype=np.int64))
    if len(row) and np.bincount(row * len(bands) + band_code).max() > 1:
        raise InputError("signatures: a parcel has two rows for the same band; "
                         "give one row per (pid, band)")
    count = np.zeros((len(pids), len(bands)), dtype=np.int32)
    count[row, band_code] = signatures["count"].to_numpy(dtype=np.int32, na_value=0)
    stats = np.full((len(pids), len(bands), len(STATISTICS)), np.nan, dtype=np.float32)
    for k, name in enumerate(STATISTICS):
        stats[row, band_code, k] = signatures[name].to_numpy(dtype=np.float32, na_value=np.nan)
    scl = _histogram_counts(histograms, pids) if histograms is not None else None
    return ImageRows(pids.astype(np.int32), tuple(str(b) for b in bands), count, stats, scl)


def _array_header(oid: int, dims: Sequence[int]) -> np.ndarray:
    """Binary array header: ndim, has-null flag, element type, then (size, lower bound)."""
    return np.array([len(dims), 0, oid, *[v for d in dims for v in (d, 1)]], dtype=">i4")


def encode_image_rows(rows: ImageRows, dataset_id: int, image_id: int,
                      acquired: dt.date) -> bytes:
    """Encode rows as a ``COPY signatures ... (FORMAT binary)`` stream (pure, vectorised).

    Every row of an image has the same byte layout, so the stream is one numpy
    record array: no per-row Python.
    """
    n, nb = rows.count.shape
    ns = len(STATISTICS)
    element = [("length", ">i4"), ("value", ">i4")]
    float_element = [("length", ">i4"), ("value", ">f4")]
    count_header = _array_header(_INT4_OID, (nb,))
    stats_header = _array_header(_FLOAT4_OID, (nb, ns))
    fields: list[tuple[Any, ...]] = [("fields", ">i2")]
    for name in ("dataset_id", "pid", "image_id", "acquired"):
        fields += [(f"{name}_length", ">i4"), (name, ">i4")]
    fields += [("count_length", ">i4"), ("count_header", ">i4", (len(count_header),)),
               ("count", element, (nb,))]
    fields += [("stats_length", ">i4"), ("stats_header", ">i4", (len(stats_header),)),
               ("stats", float_element, (nb * ns,))]
    if rows.scl is not None:
        scl_header = _array_header(_INT4_OID, (SCL_CLASSES,))
        fields += [("scl_length", ">i4"), ("scl_header", ">i4", (len(scl_header),)),
                   ("scl", element, (SCL_CLASSES,))]
    else:
        fields += [("scl_length", ">i4")]
    records = np.empty(n, dtype=fields)
    records["fields"] = len(_SIGNATURE_COLUMNS)
    for name, value in (("dataset_id", dataset_id), ("pid", rows.pid), ("image_id", image_id),
                        ("acquired", (acquired - _PG_EPOCH).days)):
        records[f"{name}_length"] = 4
        records[name] = value
    records["count_length"] = count_header.nbytes + 8 * nb
    records["count_header"] = count_header
    records["count"]["length"] = 4
    records["count"]["value"] = rows.count
    records["stats_length"] = stats_header.nbytes + 8 * nb * ns
    records["stats_header"] = stats_header
    records["stats"]["length"] = 4
    records["stats"]["value"] = rows.stats.reshape(n, nb * ns)
    if rows.scl is not None:
        records["scl_length"] = scl_header.nbytes + 8 * SCL_CLASSES
        records["scl_header"] = scl_header
        records["scl"]["length"] = 4
        records["scl"]["value"] = rows.scl
    else:
        records["scl_length"] = -1
    return _COPY_HEADER + records.tobytes() + _COPY_TRAILER


def month_partition_name(dataset_id: int, month: dt.date) -> str:
    """Return the name of the leaf holding a dataset's signatures of ``month``."""
    return f"signatures_d{int(dataset_id)}_{month:%Y%m}"


def _execute(cursor: psycopg.Cursor[Any], statement: sql.Composable,
             params: Sequence[Any] = ()) -> None:
    cursor.execute(statement, params or None)


def ensure_month_partition(cursor: psycopg.Cursor[Any], dataset_id: int,
                           acquired: dt.date) -> str:
    """Create the dataset's leaf for ``acquired``'s month if missing; return its name.

    Runs inside the writer's transaction. The leaf is created as a plain table and
    attached (a SHARE UPDATE EXCLUSIVE lock on the dataset's table) rather than
    created as a partition (ACCESS EXCLUSIVE), so writers of other months go on;
    an advisory lock keyed by the leaf serialises two writers creating the same one.
    """
    month = acquired.replace(day=1)
    following = (month + dt.timedelta(days=32)).replace(day=1)
    name = month_partition_name(dataset_id, month)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    row = cursor.fetchone()
    if row and row[0]:
        return name
    cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    row = cursor.fetchone()
    if row and row[0]:
        return name
    leaf = sql.Identifier(name)
    parent = sql.Identifier(f"signatures_d{int(dataset_id)}")
    bounds = (sql.Literal(month.isoformat()), sql.Literal(following.isoformat()))
    _execute(cursor, sql.SQL(
        "CREATE TABLE {} (LIKE signatures INCLUDING DEFAULTS, "
        "CHECK (dataset_id = {} AND acquired >= {} AND acquired < {}))"
    ).format(leaf, sql.Literal(int(dataset_id)), *bounds))
    _execute(cursor, sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (pid, image_id)").format(leaf))
    _execute(cursor, sql.SQL(
        "CREATE INDEX {} ON {} USING brin (image_id int4_minmax_multi_ops)"
    ).format(sql.Identifier(f"{name}_image"), leaf))
    _execute(cursor, sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
             .format(parent, leaf, *bounds))
    return name


def copy_image_rows(
    cursor: psycopg.Cursor[Any],
    dataset_id: int,
    image_id: int,
    signatures: pd.DataFrame,
    histograms: pd.DataFrame | None = None,
    *,
    replace: bool = True,
) -> int:
    """Write one image's signatures and SCL histograms inside the caller's transaction.

    The rows go sorted by parcel key straight into the month's leaf (created when
    missing), and the image's band list is recorded on its ``extractions`` row.

    Parameters
    ----------
    cursor
        A cursor of the transaction that also records the unit's status.
    signatures
        Columns ``pid, band, count, mean, std, min, max, p25, p50, p75``.
    histograms
        SCL pixel counts (see :func:`image_rows`), or None.
    replace
        Delete rows written for this image before (only needed when the unit was
        extracted before).

    Returns
    -------
    int
        Number of band-statistic rows written (parcels x bands).
    """
    cursor.execute("SELECT (datetime AT TIME ZONE 'UTC')::date FROM images WHERE id = %s",
                   (image_id,))
    found = cursor.fetchone()
    if found is None:
        raise InputError(f"image_id {image_id}: no such image in the catalogue; "
                         "catalogue the image before writing its signatures")
    acquired: dt.date = found[0]
    leaf = ensure_month_partition(cursor, dataset_id, acquired)
    if replace:
        _execute(cursor, sql.SQL("DELETE FROM {} WHERE image_id = %s").format(
            sql.Identifier(leaf)), (image_id,))
    rows = image_rows(signatures, histograms)
    stream = memoryview(encode_image_rows(rows, dataset_id, image_id, acquired))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(leaf), sql.SQL(", ").join(map(sql.Identifier, _SIGNATURE_COLUMNS)))
    with cursor.copy(statement) as copy:
        for start in range(0, len(stream), _COPY_CHUNK):
            copy.write(stream[start:start + _COPY_CHUNK])
    cursor.execute(
        "UPDATE extractions SET bands = %s WHERE dataset_id = %s AND image_id = %s",
        (list(rows.bands), dataset_id, image_id),
    )
    return rows.band_rows
