"""Per-dataset partitions of the parcel, signature and SCL histogram tables."""

from __future__ import annotations

import sqlalchemy as sa
from psycopg import sql

from cbm_dask import config

__all__ = [
    "attach_parcel_partition",
    "create_dataset_partitions",
    "create_parcel_partition",
    "drop_dataset_partitions",
    "partition_name",
]

PARTITIONED_TABLES = ("signatures", "scl_histograms")
# Primary keys of the leaves: dataset_id is constant within a leaf.
_LEAF_KEYS = {
    "signatures": ("pid", "image_id", "band"),
    "scl_histograms": ("pid", "image_id"),
}



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
        leaves = [name]
        if sub:
            leaves = [f"{name}_h{remainder}" for remainder in range(modulus)]
            for remainder, leaf in enumerate(leaves):
                _execute(
                    conn,
                    sql.SQL(
                        "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
                    ).format(
                        sql.Identifier(leaf),
                        sql.Identifier(name),
                        sql.Literal(modulus),
                        sql.Literal(remainder),
                    ),
                )
        for leaf in leaves:
            _execute(
                conn,
                sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                    sql.Identifier(leaf),
                    sql.SQL(", ").join(map(sql.Identifier, _LEAF_KEYS[table])),
                ),
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
