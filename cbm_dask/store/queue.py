"""The extraction queue: units of work (one image for one dataset) in ``extractions``.

A unit goes ``pending → running → extracted | failed``.  A driver claims units
with one statement that skips rows other transactions are claiming
(``FOR UPDATE SKIP LOCKED``) and units other live drivers hold (their session
advisory locks on ``(dataset_id, image_id)``, read from ``pg_locks``), then takes
its own advisory lock on each and increments ``attempts``.  The attempt number a
unit was claimed with fences every later change: a result write or a failure
mark of attempt *k* is ignored once the row's ``attempts`` is no longer *k* (the
unit was claimed again by someone else) or the unit is no longer ``running``.
A unit claimed ``cbm.extract.max-attempts`` times without a result is marked
``failed`` rather than claimed again; ``reset_failed`` (``--retry-failed``) puts
it back at zero attempts.  See docs/decisions/0006-extraction-queue.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg import sql

from cbm_dask import config
from cbm_dask.errors import DatasetNotFoundError, InputError
from cbm_dask.store.engine import database_url, get_engine, libpq_dsn

__all__ = [
    "Exhausted",
    "ExtractionQueue",
    "Unit",
    "dataset_ids",
    "dataset_parcels",
    "ensure_pending",
    "mark_failed",
    "max_attempts",
    "queue_images",
    "reset_failed",
    "write_image_result",
]

log = logging.getLogger(__name__)

#: Units that other sessions hold: their advisory locks on (dataset_id, image_id),
#: taken with the two-key form, which ``pg_locks`` shows with ``objsubid = 2``.
_HELD = (
    "SELECT classid::bigint::int AS dataset_id, objid::bigint::int AS image_id "
    "FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@dataclass(frozen=True)
class Unit:
    """One image to extract for one dataset, as claimed.

    Attributes
    ----------
    attempts
        The attempt number the unit was claimed with: the fence of its writes.
    """

    dataset_id: int
    image_id: int
    collection: str
    item_id: str
    attempts: int


@dataclass(frozen=True)
class Exhausted:
    """A unit marked failed because it reached ``cbm.extract.max-attempts``."""

    dataset_id: int
    image_id: int
    item_id: str
    error: str


def max_attempts() -> int:
    """Return ``cbm.extract.max-attempts``: claims of a unit before it is marked failed."""
    value = int(config.get("extract.max-attempts", 3))
    if value < 1:
        raise InputError(f"cbm.extract.max-attempts is {value}: set it to 1 or more")
    return value


def _connect(url: str | None) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_dsn(url or database_url()))


def _default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- datasets, parcels and units ----------------------------------------------------


def dataset_ids(names: Sequence[str], *, url: str | None = None) -> dict[str, int]:
    """Return ``{name: id}`` of datasets, in the order given.

    Raises
    ------
    DatasetNotFoundError
        When a dataset is not loaded.
    """
    with get_engine(url).connect() as conn:
        rows: dict[str, int] = dict(conn.execute(
            sa.text("SELECT name, id FROM datasets WHERE name = ANY(:n)"), {"n": list(names)}
        ).all())
        missing = [n for n in names if n not in rows]
        if missing:
            known = conn.execute(
                sa.text("SELECT name FROM datasets ORDER BY name")).scalars().all()
            raise DatasetNotFoundError(
                f"no dataset {', '.join(map(repr, missing))}; loaded datasets: "
                f"{', '.join(known) or 'none'} (load one with `cbm parcels load`)"
            )
    return {n: int(rows[n]) for n in names}


def dataset_parcels(dataset_id: int, *, url: str | None = None) -> gpd.GeoDataFrame:
    """Return a dataset's parcels (``pid``, ``geometry`` in the dataset's CRS) by ``pid``."""
    with get_engine(url).connect() as conn:
        srid = conn.execute(sa.text("SELECT srid FROM datasets WHERE id = :d"),
                            {"d": dataset_id}).scalar_one()
        parcels = gpd.read_postgis(
            sa.text("SELECT pid, geom FROM parcels WHERE dataset_id = :d ORDER BY pid"),
            conn, params={"d": dataset_id}, geom_col="geom", crs=f"EPSG:{srid}",
        )
    return parcels.rename_geometry("geometry")


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


def queue_images(dataset_id: int, *, collection: str | None = None,
                 url: str | None = None) -> int:
    """Create pending units for catalogued images that cover the dataset's parcels.

    The parcels' extent is taken in their own CRS and transformed to the
    footprints' EPSG:4326, densified first so that its edges stay true.
    """
    with get_engine(url).begin() as conn:
        ids = conn.execute(sa.text(
            "WITH box AS (SELECT ST_SetSRID(ST_Extent(p.geom)::geometry, d.srid) AS b "
            "  FROM parcels p JOIN datasets d ON d.id = p.dataset_id "
            "  WHERE p.dataset_id = :d GROUP BY d.srid), "
            "area AS (SELECT ST_Transform(ST_Segmentize(b, greatest(ST_XMax(b) - ST_XMin(b), "
            "  ST_YMax(b) - ST_YMin(b), 1e-6) / 32), 4326) AS g FROM box) "
            "SELECT i.id FROM images i, area WHERE "
            "(CAST(:c AS text) IS NULL OR i.collection = :c) AND ST_Intersects(i.footprint, g)"),
            {"c": collection, "d": dataset_id}
        ).scalars().all()
        return ensure_pending(conn, dataset_id, ids)


def reset_failed(dataset_id: int, *, url: str | None = None) -> int:
    """Make a dataset's failed units pending again, at zero attempts; return how many."""
    with _connect(url) as conn:
        cursor = conn.execute(
            "UPDATE extractions SET status = 'pending', error = NULL, attempts = 0 "
            "WHERE dataset_id = %s AND status = 'failed'",
            (dataset_id,),
        )
        return cursor.rowcount


# -- fenced writes (run in the Dask tasks) ------------------------------------------


def _lock_unit(cursor: psycopg.Cursor[Any], unit: Unit, action: str,
               ) -> tuple[str | None, Any]:
    """Lock the unit's row and see whether attempt ``unit.attempts`` may act.

    Returns ``(state, row_count)``: state ``running`` when the attempt is the
    unit's current one, ``extracted`` / ``failed`` when this same attempt has
    finished it already (its task ran again: Dask recomputes a result lost with
    its worker), None when another attempt owns the unit (or it is gone).
    """
    cursor.execute(
        "SELECT status, attempts, row_count FROM extractions "
        "WHERE dataset_id = %s AND image_id = %s FOR UPDATE",
        (unit.dataset_id, unit.image_id),
    )
    row = cursor.fetchone()
    if row is None:
        log.warning("%s of %s (dataset %d) ignored: the unit no longer exists",
                    action, unit.item_id, unit.dataset_id)
        return None, None
    status, attempts, row_count = row
    if attempts != unit.attempts or status == "pending":
        log.warning("%s of %s (dataset %d, attempt %d) ignored: the unit is %s at attempt %d",
                    action, unit.item_id, unit.dataset_id, unit.attempts, status, attempts)
        return None, row_count
    if status != "running":
        log.info("%s of %s (dataset %d, attempt %d) ignored: this attempt has %s it already",
                 action, unit.item_id, unit.dataset_id, unit.attempts, status)
    return str(status), row_count


def write_image_result(
    unit: Unit,
    signatures: pd.DataFrame,
    histograms: pd.DataFrame | None = None,
    *,
    url: str | None = None,
) -> int | None:
    """Write the unit's rows and mark it extracted, in one transaction fenced by attempt.

    Parameters
    ----------
    unit
        The unit as claimed; its ``attempts`` must still be the row's.
    signatures
        Columns ``pid, band, count, mean, std, min, max, p25, p50, p75``.
    histograms
        SCL pixel counts (see :func:`cbm_dask.store.signatures.image_rows`), or None.

    Returns
    -------
    int or None
        Number of band-statistic rows written (or written by this attempt
        before, for a task that ran again); None when the write was ignored
        because the unit was claimed again or finished by another attempt.
    """
    from cbm_dask.store.signatures import copy_image_rows

    with _connect(url) as conn, conn.cursor() as cursor:
        # The row lock serialises this write with any other attempt's write or mark.
        state, row_count = _lock_unit(cursor, unit, "result")
        if state == "extracted":
            return int(row_count or 0)
        if state != "running":
            return None
        rows = copy_image_rows(cursor, unit.dataset_id, unit.image_id, signatures, histograms,
                               replace=row_count is not None)
        cursor.execute(
            "UPDATE extractions SET status = 'extracted', finished_at = now(), row_count = %s, "
            "error = NULL WHERE dataset_id = %s AND image_id = %s",
            (rows, unit.dataset_id, unit.image_id),
        )
    return rows


def mark_failed(unit: Unit, error: str, *, url: str | None = None) -> bool:
    """Record that attempt ``unit.attempts`` failed, with a readable reason.

    Returns
    -------
    bool
        False when ignored: the unit was claimed again, or finished by another
        attempt or by this one's result.
    """
    with _connect(url) as conn, conn.cursor() as cursor:
        state, _ = _lock_unit(cursor, unit, "failure")
        if state == "running":
            cursor.execute(
                "UPDATE extractions SET status = 'failed', finished_at = now(), error = %s "
                "WHERE dataset_id = %s AND image_id = %s",
                (error[:2000], unit.dataset_id, unit.image_id),
            )
    return state in ("running", "failed")


# -- the driver's claims ------------------------------------------------------------


class ExtractionQueue:
    """Claims units of work for one driver; close it (or use ``with``) to release them.

    Claims are session advisory locks of the queue's connection.  A lost
    connection is noticed on the next use (or :meth:`check`), reopened, and the
    claims still in flight are taken again, except those another driver claimed
    meanwhile (their results are fenced off by the attempt number).

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
        self._url = url
        self._conn = self._open()
        #: (dataset_id, image_id) -> the unit as claimed (its attempt number)
        self._held: dict[tuple[int, int], Unit] = {}
        #: units this queue marked failed for reaching the attempt cap
        self.exhausted: list[Exhausted] = []

    def _open(self) -> psycopg.Connection[Any]:
        conn = _connect(self._url)
        conn.autocommit = True
        return conn

    def __enter__(self) -> ExtractionQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def held(self) -> list[Unit]:
        """The units this queue holds, as claimed."""
        return list(self._held.values())

    def close(self) -> None:
        """Release every claim still held and close the connection."""
        if not self._conn.closed:
            # a lost session holds nothing any more
            with contextlib.suppress(psycopg.OperationalError):
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            self._conn.close()
        self._held.clear()

    # connection loss ---------------------------------------------------------

    def check(self) -> list[Unit]:
        """Make sure the connection is alive; reconnect and re-take claims if not.

        Returns
        -------
        list of Unit
            Claims lost for good (another driver claimed them while the
            connection was down); empty when the connection was fine.
        """
        try:
            self._conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return self._reconnect()
        return []

    def _reconnect(self) -> list[Unit]:
        log.warning("queue connection lost; reconnecting and re-taking %d claims",
                    len(self._held))
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        self._conn = self._open()
        lost: list[Unit] = []
        for key, unit in list(self._held.items()):
            if not self._retake(unit):
                log.warning("claim of %s (dataset %d, attempt %d) lost: another driver took "
                            "it meanwhile", unit.item_id, unit.dataset_id, unit.attempts)
                del self._held[key]
                lost.append(unit)
        return lost

    def _retake(self, unit: Unit) -> bool:
        key = (unit.dataset_id, unit.image_id)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()
        if not (row and row[0]):
            return False
        row = self._conn.execute(
            "SELECT attempts = %s AND status = 'running' FROM extractions "
            "WHERE dataset_id = %s AND image_id = %s", (unit.attempts, *key)).fetchone()
        if row and row[0]:
            return True
        self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        return False

    def _retry_on_loss(self, action: Any) -> Any:
        """Run ``action()``; after a lost connection, reconnect, re-take claims, run again."""
        try:
            return action()
        except psycopg.OperationalError:
            if not self._conn.closed and not self._conn.broken:
                raise
            self._reconnect()
            return action()

    # claims --------------------------------------------------------------------

    def remaining(self) -> int:
        """Units of the datasets still to do: pending or running, below the attempt cap."""
        query = sql.SQL(
            "SELECT count(*) FROM extractions e JOIN images i ON i.id = e.image_id "
            "WHERE e.dataset_id = ANY(%s) AND e.status IN ('pending', 'running') "
            "AND e.attempts < %s {}"
        ).format(self._collection_filter())
        params = (self.dataset_ids, max_attempts(), *self._collection_params())

        def count() -> int:
            row = self._conn.execute(query, params).fetchone()
            return int(row[0]) if row else 0

        return int(self._retry_on_loss(count))

    def _collection_filter(self) -> sql.Composable:
        return sql.SQL("AND i.collection = %s") if self.collection else sql.SQL("")

    def _collection_params(self) -> tuple[Any, ...]:
        return (self.collection,) if self.collection else ()

    def claim(self, limit: int = 1) -> list[Unit]:
        """Claim up to ``limit`` units, oldest image first.

        Units that other drivers hold, and units at the attempt cap, are skipped
        in SQL; the latter are marked failed (see :meth:`fail_exhausted`).  Fewer
        than ``limit`` units come back only when no more are free.
        """
        return list(self._retry_on_loss(lambda: self._claim(limit)))

    def _claim(self, limit: int) -> list[Unit]:
        self._fail_exhausted()
        cap = max_attempts()
        claimed: list[Unit] = []
        # A unit whose advisory lock another driver took between this statement's
        # snapshot and its row lock is skipped by the lock attempt: ask again until
        # the free units are taken or none are left.
        for _ in range(8):
            want = limit - len(claimed)
            if want <= 0:
                break
            rows, candidates = self._claim_once(want, cap)
            claimed += rows
            if candidates == 0 or len(rows) == candidates:
                break
        return claimed

    def _claim_once(self, limit: int, cap: int) -> tuple[list[Unit], int]:
        # MATERIALIZED CTEs: the row locks and the lock attempts apply to the
        # LIMITed candidates only, never to rows the query does not return.
        statement = sql.SQL(
            "WITH held AS MATERIALIZED ({held}), "
            "candidates AS MATERIALIZED ("
            "  SELECT e.dataset_id, e.image_id, i.datetime, i.id FROM extractions e "
            "  JOIN images i ON i.id = e.image_id "
            "  WHERE e.dataset_id = ANY(%s) AND e.status IN ('pending', 'running') "
            "  AND e.attempts < %s {collection} "
            "  AND NOT EXISTS (SELECT 1 FROM held h WHERE h.dataset_id = e.dataset_id "
            "                  AND h.image_id = e.image_id) "
            "  ORDER BY i.datetime, i.id, e.dataset_id LIMIT %s FOR UPDATE OF e SKIP LOCKED), "
            "locked AS MATERIALIZED ("
            "  SELECT dataset_id, image_id, datetime, id FROM candidates "
            "  WHERE pg_try_advisory_lock(dataset_id, image_id)), "
            "claimed AS ("
            "  UPDATE extractions e SET status = 'running', worker = %s, claimed_at = now(), "
            "  attempts = e.attempts + 1 FROM locked l "
            "  WHERE e.dataset_id = l.dataset_id AND e.image_id = l.image_id "
            "  RETURNING e.dataset_id, e.image_id, e.attempts) "
            "SELECT c.dataset_id, c.image_id, i.collection, i.item_id, c.attempts, "
            "  (SELECT count(*) FROM candidates) "
            "FROM claimed c JOIN images i ON i.id = c.image_id "
            "ORDER BY i.datetime, i.id, c.dataset_id"
        ).format(held=sql.SQL(_HELD), collection=self._collection_filter())
        params = (self.dataset_ids, cap, *self._collection_params(), limit, self.worker)
        with self._conn.transaction():
            rows = self._conn.execute(statement, params).fetchall()
            if not rows:
                row = self._conn.execute(
                    sql.SQL("WITH held AS MATERIALIZED ({held}) SELECT count(*) "
                            "FROM extractions e JOIN images i ON i.id = e.image_id "
                            "WHERE e.dataset_id = ANY(%s) AND e.status IN "
                            "('pending', 'running') AND e.attempts < %s {collection} "
                            "AND NOT EXISTS (SELECT 1 FROM held h WHERE h.dataset_id = "
                            "e.dataset_id AND h.image_id = e.image_id)").format(
                        held=sql.SQL(_HELD), collection=self._collection_filter()),
                    (self.dataset_ids, cap, *self._collection_params()),
                ).fetchone()
                return [], int(row[0]) if row else 0
        units = [Unit(int(d), int(i), str(c), str(item), int(a)) for d, i, c, item, a, _ in rows]
        for unit in units:
            self._held[(unit.dataset_id, unit.image_id)] = unit
        return units, int(rows[0][5])

    def fail_exhausted(self) -> list[Exhausted]:
        """Mark failed the free units claimed ``cbm.extract.max-attempts`` times already.

        Such units were claimed that often without a result: their drivers died, or
        their tasks killed workers.  Units a live driver holds are left alone.

        Returns
        -------
        list of Exhausted
            The units marked failed now (all of them are also kept in
            :attr:`exhausted`).
        """
        return list(self._retry_on_loss(self._fail_exhausted))

    def _fail_exhausted(self) -> list[Exhausted]:
        statement = sql.SQL(
            "WITH held AS MATERIALIZED ({held}), "
            "stale AS MATERIALIZED ("
            "  SELECT e.dataset_id, e.image_id FROM extractions e "
            "  JOIN images i ON i.id = e.image_id "
            "  WHERE e.dataset_id = ANY(%s) AND e.status IN ('pending', 'running') "
            "  AND e.attempts >= %s {collection} "
            "  AND NOT EXISTS (SELECT 1 FROM held h WHERE h.dataset_id = e.dataset_id "
            "                  AND h.image_id = e.image_id) "
            "  FOR UPDATE OF e SKIP LOCKED), "
            # a driver that claimed the unit after this statement's snapshot holds
            # its lock: the transaction-level attempt fails and the unit is kept
            "free AS MATERIALIZED ("
            "  SELECT dataset_id, image_id FROM stale "
            "  WHERE pg_try_advisory_xact_lock(dataset_id, image_id)) "
            "UPDATE extractions e SET status = 'failed', finished_at = now(), "
            "  error = format('gave up after %%s attempts without a result "
            "(cbm.extract.max-attempts): the driver or the workers running it died "
            "each time%%s', e.attempts, coalesce('; last: ' || e.error, '')) "
            "FROM free f JOIN images i ON i.id = f.image_id "
            "WHERE e.dataset_id = f.dataset_id AND e.image_id = f.image_id "
            "RETURNING e.dataset_id, e.image_id, i.item_id, e.error"
        ).format(held=sql.SQL(_HELD), collection=self._collection_filter())
        params = (self.dataset_ids, max_attempts(), *self._collection_params())
        with self._conn.transaction():
            rows = self._conn.execute(statement, params).fetchall()
        failed = [Exhausted(int(d), int(i), str(item), str(error)) for d, i, item, error in rows]
        for unit in failed:
            log.warning("%s (dataset %d) marked failed: %s", unit.item_id, unit.dataset_id,
                        unit.error)
        self.exhausted += failed
        return failed

    def retry(self, unit: Unit, reason: str) -> Unit | None:
        """Start a new attempt of a held unit whose attempt ended without a result.

        Returns
        -------
        Unit or None
            The unit with its new attempt number, or None when the unit is no
            longer this attempt's (claimed again elsewhere or finished).
        """
        def bump() -> Unit | None:
            row = self._conn.execute(
                "UPDATE extractions SET attempts = attempts + 1, claimed_at = now(), "
                "worker = %s, error = %s WHERE dataset_id = %s AND image_id = %s "
                "AND attempts = %s AND status = 'running' RETURNING attempts",
                (self.worker, reason[:2000], unit.dataset_id, unit.image_id, unit.attempts),
            ).fetchone()
            if row is None:
                return None
            again = replace(unit, attempts=int(row[0]))
            self._held[(unit.dataset_id, unit.image_id)] = again
            return again

        again = self._retry_on_loss(bump)
        return again if isinstance(again, Unit) else None

    def release(self, unit: Unit) -> None:
        """Drop the claim on a unit (after its result or failure is written)."""
        key = (unit.dataset_id, unit.image_id)
        if key not in self._held:
            return

        def unlock() -> None:
            if key in self._held:  # a reconnect may have dropped it
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)

        self._retry_on_loss(unlock)
        self._held.pop(key, None)
