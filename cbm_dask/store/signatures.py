"""Signature rows: one row per parcel and image holding every band's statistics.

Layout (see docs/decisions/0003-signature-storage.md):

* ``signatures(dataset_id, pid, image_id, acquired, count int4[], stats real[][],
  scl int4[])``: ``count[b]`` and ``stats[b][k]`` for band ``b`` of the image's
  band list (``extractions.bands``) and statistic ``k`` of :data:`STATISTICS`;
  ``scl[c + 1]`` is the parcel's pixel count of scene class ``c`` (Sentinel-2),
  NULL for other sensors. Missing statistics are NaN inside the arrays.
* ``PARTITION BY LIST (dataset_id)``, then ``RANGE (acquired)`` by month: the
  primary key ``(pid, image_id)`` being written belongs to one month's leaf,
  small enough to stay in memory, while one parcel's series is a handful of
  index probes.
* The JRC-compatible one-row-per-band view is ``signature_bands``; ``scl_histograms``
  shows the histograms as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from cbm_dask.errors import InputError
from cbm_dask.sentinel.scl import SCL_CLASS_COUNT

__all__ = [
    "STATISTICS",
    "ImageRows",
    "copy_image_rows",
    "encode_image_rows",
    "ensure_month_partition",
    "image_rows",
    "month_partition_name",
]

#: Statistics stored per band, in the order of the ``stats`` array's second axis.
STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "p25", "p50", "p75")
#: Scene classes counted in ``scl`` (Sentinel-2 L2A SCL codes 0..11).

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
        Pixels per parcel and scene class, shape ``(parcels, SCL_CLASS_COUNT)``, or None.
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
    counts = np.zeros((len(pids), SCL_CLASS_COUNT), dtype=np.int32)
    if not len(histograms):
        return counts
    rows = np.searchsorted(pids, histograms["pid"].to_numpy(dtype=np.int64))
    if {"class", "count"} <= set(histograms.columns):
        classes = histograms["class"].to_numpy(dtype=np.int64)
        keep = (classes >= 0) & (classes < SCL_CLASS_COUNT)
        flat = np.bincount(rows[keep] * SCL_CLASS_COUNT + classes[keep],
                           weights=histograms["count"].to_numpy(dtype=np.float64)[keep],
                           minlength=counts.size)
        return flat.astype(np.int32).reshape(counts.shape)
    if "hist" in histograms.columns:
        for row, text in zip(rows, histograms["hist"], strict=True):
            for key, value in json.loads(text).items():
                counts[row, int(key)] = int(value)
        return counts
    for column in histograms.columns:
        if column != "pid" and str(column).isdigit() and int(column) < SCL_CLASS_COUNT:
            counts[rows, int(column)] = histograms[column].to_numpy(dtype=np.int32)
    return counts


def _band_blocks(band_code: np.ndarray, nbands: int, pid: np.ndarray) -> np.ndarray | None:
    """Return the parcel order when the frame is band blocks over the same parcels, else None.

    That is how the engine returns a reduction, and it lets the gather be a reshape.
    """
    n = len(pid) // max(nbands, 1)
    if nbands == 0 or n * nbands != len(pid):
        return None
    expected = np.repeat(np.arange(nbands), n)
    if not np.array_equal(band_code, expected):
        return None
    blocks = pid.reshape(nbands, n)
    if not (blocks == blocks[0]).all():
        return None
    return blocks[0]


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

    Raises
    ------
    InputError
        When a parcel has two rows for the same band.
    """
    band_code, bands = pd.factorize(signatures["band"], sort=False)
    nb = len(bands)
    pid = signatures["pid"].to_numpy(dtype=np.int64)
    values = signatures[list(STATISTICS)].to_numpy(dtype=np.float32, na_value=np.nan)
    counts = signatures["count"].to_numpy(dtype=np.int32, na_value=0)
    block_pids = _band_blocks(band_code, nb, pid)
    extra = np.empty(0, np.int64)
    if histograms is not None and len(histograms):
        extra = np.setdiff1d(histograms["pid"].to_numpy(dtype=np.int64),
                             block_pids if block_pids is not None else pid)
    if block_pids is not None and not len(extra):
        order = np.argsort(block_pids, kind="stable")
        pids = block_pids[order]
        if len(pids) > 1 and (pids[1:] == pids[:-1]).any():
            raise InputError("signatures: a parcel has two rows for the same band; "
                             "give one row per (pid, band)")
        n = len(pids)
        count = np.ascontiguousarray(counts.reshape(nb, n)[:, order].T)
        stats = np.ascontiguousarray(
            values.reshape(nb, n, len(STATISTICS))[:, order, :].transpose(1, 0, 2))
    else:
        pids = np.unique(np.concatenate([pid, extra]))
        row = np.searchsorted(pids, pid)
        if len(row) and np.bincount(row * nb + band_code).max() > 1:
            raise InputError("signatures: a parcel has two rows for the same band; "
                             "give one row per (pid, band)")
        count = np.zeros((len(pids), nb), dtype=np.int32)
        count[row, band_code] = counts
        stats = np.full((len(pids), nb, len(STATISTICS)), np.nan, dtype=np.float32)
        stats[row, band_code] = values
    scl = _histogram_counts(histograms, pids) if histograms is not None else None
    return ImageRows(pids.astype(np.int32), tuple(str(b) for b in bands), count, stats, scl)


def _array_words(oid: int, dims: Sequence[int]) -> list[int]:
    """Binary array header words: ndim, has-null flag, element type, (size, lower bound)*."""
    return [len(dims), 0, oid, *[v for d in dims for v in (d, 1)]]


def encode_image_rows(rows: ImageRows, dataset_id: int, image_id: int,
                      acquired: dt.date) -> bytes:
    """Encode rows as a ``COPY signatures ... (FORMAT binary)`` stream (pure, vectorised).

    Every row of an image has the same byte layout: a 2-byte field count then
    4-byte words. The words of all rows are one ``(rows, words)`` big-endian
    matrix filled from a template row by column slices: no per-row Python.
    """
    n, nb = rows.count.shape
    ns = len(STATISTICS)
    template: list[int] = []
    slots: dict[str, slice] = {}

    def scalar(name: str, value: int) -> None:
        template.extend((4, value))
        slots[name] = slice(len(template) - 1, len(template))

    def array(name: str, oid: int, dims: Sequence[int]) -> None:
        header = _array_words(oid, dims)
        size = int(np.prod(dims))
        template.append(4 * len(header) + 8 * size)
        template.extend(header)
        start = len(template) + 1
        template.extend([4, 0] * size)  # (element length, value) pairs
        slots[name] = slice(start, start + 2 * size, 2)

    scalar("dataset_id", dataset_id)
    scalar("pid", 0)
    scalar("image_id", image_id)
    scalar("acquired", (acquired - _PG_EPOCH).days)
    array("count", _INT4_OID, (nb,))
    array("stats", _FLOAT4_OID, (nb, ns))
    if rows.scl is not None:
        array("scl", _INT4_OID, (SCL_CLASS_COUNT,))
    else:
        template.append(-1)  # NULL
    words = np.empty((n, len(template)), dtype=">i4")
    words[:] = np.array(template, dtype=">i4")
    words[:, slots["pid"]] = rows.pid.reshape(n, 1)
    words[:, slots["count"]] = rows.count
    words[:, slots["stats"]] = rows.stats.reshape(n, nb * ns).astype(">f4").view(">i4")
    if rows.scl is not None:
        words[:, slots["scl"]] = rows.scl
    out = np.empty((n, 2 + 4 * len(template)), dtype=np.uint8)
    out[:, :2] = np.frombuffer(np.array([len(_SIGNATURE_COLUMNS)], ">i2").tobytes(), np.uint8)
    out[:, 2:] = words.view(np.uint8)
    return _COPY_HEADER + out.tobytes() + _COPY_TRAILER


def month_partition_name(dataset_id: int, month: dt.date) -> str:
    """Return the name of the leaf holding a dataset's signatures of ``month``."""
    return f"signatures_d{int(dataset_id)}_{month:%Y%m}"


def _execute(cursor: psycopg.Cursor[Any], statement: sql.Composed,
             params: Sequence[Any] = ()) -> None:
    cursor.execute(statement, params or None)


def ensure_month_partition(cursor: psycopg.Cursor[Any], dataset_id: int,
                           acquired: dt.date) -> str:
    """Create the dataset's leaf for ``acquired``'s month if missing; return its name.

    Runs inside the writer's transaction. The leaf is created as a plain table and
    attached rather than created as a partition (ACCESS EXCLUSIVE on the dataset's
    table), so writers of existing months go on. Two writers of a new month queue on
    the dataset table's SHARE UPDATE EXCLUSIVE lock (the one ATTACH needs): taking a
    relation lock also makes the waiting one see the leaf the first one committed.
    """
    month = acquired.replace(day=1)
    following = (month + dt.timedelta(days=32)).replace(day=1)
    name = month_partition_name(dataset_id, month)
    exists = "SELECT EXISTS (SELECT FROM pg_class WHERE oid = to_regclass(%s))"
    cursor.execute(exists, (name,))
    row = cursor.fetchone()
    if row and row[0]:
        return name
    parent = sql.Identifier(f"signatures_d{int(dataset_id)}")
    _execute(cursor, sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(parent))
    cursor.execute(exists, (name,))
    row = cursor.fetchone()
    if row and row[0]:
        return name
    leaf = sql.Identifier(name)
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
