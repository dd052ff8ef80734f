"""Per-dataset partitions of the parcel and signature tables."""

from __future__ import annotations

import sqlalchemy as sa
from psycopg import sql

__all__ = [
    "attach_parcel_partition",
    "create_dataset_partitions",
    "create_parcel_partition",
    "drop_dataset_partitions",
    "partition_name",
]

PARTITIONED_TABLES = ("signatures",)


def partition_name(table: str, dataset_id: int) -> str:
    """Return the name of ``table``'s partition for ``dataset_id``."""
    return f"{table}_d{int(dataset_id)}"


def _execute(conn: sa.Connection, statement: sql.Composable) -> None:
    raw = conn.connection.driver_connection
    conn.exec_driver_sql(statement.as_string(raw))


def create_dataset_partitions(conn: sa.Connection, dataset_id: int) -> None:
    """Create the dataset's signature partition, inside the caller's transaction.

    It is partitioned by RANGE on the acquisition date; its monthly leaves are
    created by the writer of a month's first image
    (:func:`cbm_dask.store.signatures.ensure_month_partition`).
    """
    _execute(
        conn,
        sql.SQL(
            "CREATE TABLE {} PARTITION OF signatures FOR VALUES IN ({}) "
            "PARTITION BY RANGE (acquired)"
        ).format(sql.Identifier(partition_name("signatures", dataset_id)),
                 sql.Literal(int(dataset_id))),
    )


def create_parcel_partition(conn: sa.Connection, dataset_id: int) -> str:
    """Create the dataset's parcel table, not yet attached and without indexes.

    Loading into it and attaching it afterwards (:func:`attach_parcel_partition`)
    builds every index once, sorted, instead of row by row; its CHECK constraint
    lets the attach skip the validation scan.
    """
    name = partition_name("parcels", dataset_id)
    _execute(
        conn,
        sql.SQL(
            "CREATE TABLE {} (LIKE parcels INCLUDING DEFAULTS, CHECK (dataset_id = {}))"
        ).format(sql.Identifier(name), sql.Literal(int(dataset_id))),
    )
    return name


def attach_parcel_partition(conn: sa.Connection, dataset_id: int) -> None:
    """Attach the loaded parcel table as the dataset's partition (builds its indexes)."""
    _execute(
        conn,
        sql.SQL("ALTER TABLE parcels ATTACH PARTITION {} FOR VALUES IN ({})").format(
            sql.Identifier(partition_name("parcels", dataset_id)), sql.Literal(int(dataset_id))
        ),
    )


def drop_dataset_partitions(conn: sa.Connection, dataset_id: int) -> None:
    """Drop the dataset's partitions (and all its rows), inside the caller's transaction."""
    for table in ("markers", "decisions"):  # they reference the parcel partition
        _execute(
            conn,
            sql.SQL("DELETE FROM {} WHERE dataset_id = {}").format(
                sql.Identifier(table), sql.Literal(int(dataset_id))
            ),
        )
    for table in (*PARTITIONED_TABLES, "parcels"):
        _execute(
            conn,
            sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.Identifier(partition_name(table, dataset_id))
            ),
        )
