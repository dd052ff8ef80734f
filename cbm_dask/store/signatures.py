"""The extraction queue and the writing of per-image results (signatures, SCL histograms).

Units of work are (dataset, image) rows of ``extractions``. Any number of
processes on any number of machines can pull from the same database:

* :class:`ExtractionQueue` claims units oldest image first. A claim is a row lock
  (``FOR UPDATE SKIP LOCKED``) to pick the unit plus a session advisory lock on
  (dataset_id, image_id) held by the claiming process's connection for as long
  as the unit is in flight. If that process dies, PostgreSQL releases the lock
  with its connection and the unit (still ``running``) becomes claimable again:
  no lease timeouts to tune, no unit extracted twice at the same time.
* :func:`write_image_result` replaces the unit's rows and marks it ``extracted``
  in one transaction, so a crash never leaves partial rows and a re-run of the
  same unit is idempotent.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg import sql

from cbm_dask.store.engine import database_url, libpq_dsn
from cbm_dask.store.pgcopy import BinaryColumn, binary_copy_buffer

__all__ = [
    "SIGNATURE_COLUMNS",
    "HISTOGRAM_COLUMNS",
    "ExtractionQueue",
    "Unit",
    "copy_image_rows",
    "copy_signatures",
    "ensure_pending",
    "mark_failed",
    "reset_failed",
    "write_image_result",
]

log = logging.getLogger(__name__)

STATISTICS = ("mean", "std", "min", "max", "p25", "p50", "p75")
SIGNATURE_COLUMNS = (
    BinaryColumn("dataset_id", "int4"),
    BinaryColumn("pid", "int4"),
    BinaryColumn("image_id", "int4"),
    BinaryColumn("band", "text"),
    BinaryColumn("count", "int4"),
    *(BinaryColumn(name, "float4") for name in STATISTICS),
)
HISTOGRAM_COLUMNS = (
    BinaryColumn("dataset_id", "int4"),
    BinaryColumn("pid", "int4"),
    BinaryColumn("image_id", "int4"),
    BinaryColumn("hist", "jsonb"),
)
_COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class Unit:
    """One image to extract for one dataset."""

    dataset_id: int
    image_id: int
    collection: str
    item_id: str
    attempts: int


def _connect(url: str | None) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_dsn(url or database_url()))


def _default_worker() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_pending(conn: sa.Connection, dataset_id: int, image_ids: Iterable[int]) -> int:
    """Create ``pending`` units for images not yet known for the dataset; return how many."""
    ids = list(image_ids)
    if not ids:
        return 0
    result = conn.execute(
        sa.text(
            "INSERT INTO extractions (dataset_id, image_id) SELECT :d, unnest(CAST(:ids AS int[])) "
            "ON CONFLICT DO NOTHING"
        ),
        {"d": dataset_id, "ids": ids},
    )
    return int(result.rowcount or 0)


def reset_failed(dataset_id: int, *, url: str | None = None) -> int:
    """Make a dataset's failed units pending again; return how many."""
    with _connect(url) as conn:
        cursor = conn.execute(
            "UPDATE extractions SET status = 'pending', error = NULL "
            "WHERE dataset_id = %s AND status = 'failed'",
            (dataset_id,),
        )
        return cursor.rowcount


class ExtractionQueue:
    """Claims units of work for one process; close it (or use ``with``) to release them.

    Parameters
    ----------
    dataset_ids
        Datasets to pull units for.
    collection
        Only images of this collection, if given.
    url
        Database URL (default: the configured one).
    worker
        Name recorded with each claim (default ``host:pid``).
    """

    def __init__(
        self,
        dataset_ids: Sequence[int],
        *,
        collection: str | None = None,
        url: str | None = None,
        worker: str | None = None,
    ) -> None:
        self.dataset_ids = list(dataset_ids)
        self.collection = collection
        self.worker = worker or _default_worker()
        self._conn = _connect(url)
        self._conn.autocommit = True
        self._held: set[tuple[int, int]] = set()

    def __enter__(self) -> ExtractionQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every claim still held and close the connection."""
        if not self._conn.closed:
            self._conn.execute("SELECT pg_advisory_unlock_all()")
            self._conn.close()
        self._held.clear()

    def remaining(self) -> int:
        """Units of the datasets that are not extracted or failed yet."""
        query = (
            "SELECT count(*) FROM extractions e JOIN images i ON i.id = e.image_id "
            "WHERE e.dataset_id = ANY(%s) AND e.status IN ('pending', 'running')"
            + (" AND i.collection = %s" if self.collection else "")
        )
        params: tuple[Any, ...] = (self.dataset_ids,)
        if self.collection:
            params += (self.collection,)
        row = self._conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def claim(self, limit: int = 1) -> list[Unit]:
        """Claim up to ``limit`` units, oldest image first."""
        claimed: list[Unit] = []
        with self._conn.transaction():
            candidates = self._conn.execute(
                sql.SQL(
                    "SELECT e.dataset_id, e.image_id, i.collection, i.item_id, e.attempts "
                    "FROM extractions e JOIN images i ON i.id = e.image_id "
                    "WHERE e.dataset_id = ANY(%s) AND e.status IN ('pending', 'running') {} "
                    "ORDER BY i.datetime, i.id, e.dataset_id FOR UPDATE OF e SKIP LOCKED "
                    "LIMIT %s"
                ).format(sql.SQL("AND i.collection = %s") if self.collection else sql.SQL("")),
                (self.dataset_ids, *([self.collection] if self.collection else []),
                 limit + 64),
            ).fetchall()
            for dataset_id, image_id, collection, item_id, attempts in candidates:
                if len(claimed) == limit:
                    break
                if (dataset_id, image_id) in self._held:
                    continue
                locked = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (dataset_id, image_id)
                ).fetchone()
                if not (locked and locked[0]):
                    continue  # in flight in another live process
                self._conn.execute(
                    "UPDATE extractions SET status = 'running', worker = %s, claimed_at = now(), "
                    "attempts = attempts + 1 WHERE dataset_id = %s AND image_id = %s",
                    (self.worker, dataset_id, image_id),
                )
                self._held.add((dataset_id, image_id))
                claimed.append(Unit(dataset_id, image_id, collection, item_id, attempts + 1))
        return claimed

    def release(self, unit: Unit) -> None:
        """Drop the claim on a unit (after its result or failure is written)."""
        key = (unit.dataset_id, unit.image_id)
        if key in self._held:
            self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
            self._held.discard(key)


def _copy(cursor: psycopg.Cursor[Any], table: str, columns: Sequence[BinaryColumn],
          frame: pd.DataFrame) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    data = memoryview(binary_copy_buffer(frame, columns))
    with cursor.copy(statement) as copy:
        for start in range(0, len(data), _COPY_CHUNK):
            copy.write(data[start:start + _COPY_CHUNK])


def copy_signatures(
    cursor: psycopg.Cursor[Any], dataset_id: int, image_id: int, signatures: pd.DataFrame
) -> int:
    """COPY a reduction's rows (``pid, band, count, mean … p75``) into ``signatures``."""
    frame = signatures.assign(dataset_id=dataset_id, image_id=image_id)
    _copy(cursor, "signatures", SIGNATURE_COLUMNS, frame)
    return len(frame)


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

    Parameters
    ----------
    cursor
        A cursor of the transaction that also records the unit's status.
    signatures
        Columns ``pid, band, count, mean, std, min, max, p25, p50, p75``.
    histograms
        Columns ``pid, hist`` (JSON text ``{"4": 120, "8": 3}``), or None.
    replace
        Delete rows written for this image before (only needed when the unit was
        extracted before).

    Returns
    -------
    int
        Number of band-statistic rows written.
    """
    if replace:
        for table in ("signatures", "scl_histograms"):
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE dataset_id = %s AND image_id = %s").format(
                    sql.Identifier(table)
                ),
                (dataset_id, image_id),
            )
    rows = copy_signatures(cursor, dataset_id, image_id, signatures)
    if histograms is not None and len(histograms):
        frame = histograms.assign(dataset_id=dataset_id, image_id=image_id)
        _copy(cursor, "scl_histograms", HISTOGRAM_COLUMNS, frame)
    return rows


def write_image_result(
    unit: Unit,
    signatures: pd.DataFrame,
    histograms: pd.DataFrame | None = None,
    *,
    url: str | None = None,
) -> int:
    """Replace the unit's rows and mark it extracted, in one transaction.

    Parameters
    ----------
    signatures
        Columns ``pid, band, count, mean, std, min, max, p25, p50, p75``.
    histograms
        Columns ``pid, hist`` (JSON text ``{"4": 120, "8": 3}``), or None.

    Returns
    -------
    int
        Number of signature rows written.
    """
    with _connect(url) as conn, conn.cursor() as cursor:
        # The row lock serialises a late writer with a re-claimed one.
        cursor.execute(
            "SELECT status FROM extractions WHERE dataset_id = %s AND image_id = %s FOR UPDATE",
            (unit.dataset_id, unit.image_id),
        )
        rows = copy_image_rows(cursor, unit.dataset_id, unit.image_id, signatures, histograms)
        cursor.execute(
            "UPDATE extractions SET status = 'extracted', finished_at = now(), row_count = %s, "
            "error = NULL WHERE dataset_id = %s AND image_id = %s",
            (rows, unit.dataset_id, unit.image_id),
        )
    return rows


def mark_failed(unit: Unit, error: str, *, url: str | None = None) -> None:
    """Record that a unit failed, with a readable reason."""
    with _connect(url) as conn:
        conn.execute(
            "UPDATE extractions SET status = 'failed', finished_at = now(), error = %s "
            "WHERE dataset_id = %s AND image_id = %s",
            (error[:2000], unit.dataset_id, unit.image_id),
        )
