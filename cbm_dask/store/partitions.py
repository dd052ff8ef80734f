"""Per-dataset partitions of the signature and SCL histogram tables."""

from __future__ import annotations

import sqlalchemy as sa
from psycopg import sql

from cbm_dask import config

__all__ = ["create_dataset_partitions", "drop_dataset_partitions", "partition_name"]

PARTITIONED_TABLES = ("signatures", "scl_histograms")


def partition_name(table: str, dataset_id: int) -> str:
    """Return the name of ``table``'s partition for ``dataset_id``."""
    return f"{table}_d{int(dataset_id)}"


def _execute(conn: sa.Connection, statement: sql.Composable) -> None:
    raw = conn.connection.driver_connection
    conn.exec_driver_sql(statement.as_string(raw))


def create_dataset_partitions(
    conn: sa.Connection, dataset_id: int, hash_partitions: int | None = None
) -> None:
    """Create the dataset's partitions, inside the caller's transaction.

    Signatures are sub-partitioned by HASH on ``pid`` into
    ``cbm.database.signature-hash-partitions`` parts.
    """
    modulus = int(hash_partitions or config.get("database.signature-hash-partitions"))
    for table in PARTITIONED_TABLES:
        name = partition_name(table, dataset_id)
        sub = table == "signatures" and modulus > 1
        _execute(
            conn,
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({}){}").format(
                sql.Identifier(name),
                sql.Identifier(table),
                sql.Literal(int(dataset_id)),
                sql.SQL(" PARTITION BY HASH (pid)") if sub else sql.SQL(""),
            ),
        )
        if sub:
            for remainder in range(modulus):
                _execute(
                    conn,
                    sql.SQL(
                        "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
                    ).format(
                        sql.Identifier(f"{name}_h{remainder}"),
                        sql.Identifier(name),
                        sql.Literal(modulus),
                        sql.Literal(remainder),
                    ),
                )


def drop_dataset_partitions(conn: sa.Connection, dataset_id: int) -> None:
    """Drop the dataset's partitions (and all its rows), inside the caller's transaction."""
    for table in PARTITIONED_TABLES:
        _execute(
            conn,
            sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.Identifier(partition_name(table, dataset_id))
            ),
        )
