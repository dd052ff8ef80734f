"""The migrations and ``cbm_dask.store.models`` describe the same schema.

The migrations are the reviewed record of what is deployed; the models are the
description the code and Alembic use.  A fresh database is migrated to head and
compared with the models by Alembic's autogenerate comparison, so any drift in
tables, columns, types, nullability, server defaults, indexes, unique constraints
or foreign keys fails with the list of differences.  Autogenerate does not look
at primary keys, CHECK constraints or partitioning; a second test compares those
from the database's catalogue.
"""

from __future__ import annotations

import pprint
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from cbm_dask.store import migrate
from cbm_dask.store.engine import get_engine
from cbm_dask.store.models import Base

# Tables the database holds but the models deliberately do not describe:
# - partitions of parcels and signatures (``parcels_d7``, ``signatures_d7`` and
#   ``signatures_d7_202404``), created per dataset and month by
#   cbm_dask.store._partitions and cbm_dask.store.signatures;
# - PostGIS's own catalogue (``spatial_ref_sys``) and the tables of the tiger and
#   topology extensions, should they be installed into the public schema;
# - Alembic's revision table.
# Views (``signature_bands``, ``scl_histograms``) are never reflected as tables,
# and they are listed here as well so that the exclusion does not rest on that.
PARTITION = re.compile(r"^(parcels_d\d+|signatures_d\d+(_\d{6})?)$")
OUTSIDE_THE_MODELS = frozenset({
    "spatial_ref_sys", "geocode_settings", "geocode_settings_default", "layer", "topology",
    "alembic_version", "signature_bands", "scl_histograms",
})
OUTSIDE_SCHEMAS = frozenset({"tiger", "tiger_data", "topology"})


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Compare everything except the tables (and their indexes) listed above."""
    if type_ == "schema":
        return name not in OUTSIDE_SCHEMAS
    if type_ == "table":
        return name is not None and not (PARTITION.match(name) or name in OUTSIDE_THE_MODELS)
    return True


def compare_with_models(url: str) -> list[Any]:
    """Return Alembic's list of differences between the database at ``url`` and the models."""
    with get_engine(url).connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": include_name,
            },
        )
        return list(compare_metadata(context, Base.metadata))


@pytest.fixture(scope="module")
def migrated_url(postgis: str) -> Iterator[str]:
    """A database of its own in the session cluster, never used before, migrated to head."""
    name = f"cbm_schema_{uuid.uuid4().hex[:8]}"
    admin = get_engine(postgis).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgis).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url=url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrated_database_matches_the_models(migrated_url: str) -> None:
    assert migrate.current_revision(migrated_url) == migrate.head_revision()
    differences = compare_with_models(migrated_url)
    assert differences == [], (
        "the migrations and cbm_dask/store/models.py disagree (add a migration or fix "
        "the models):\n" + pprint.pformat(differences, width=100)
    )


def _model_constraints() -> dict[str, dict[str, Any]]:
    """Primary key, CHECK constraint names and partition key of every model table."""
    described: dict[str, dict[str, Any]] = {}
    for name, table in Base.metadata.tables.items():
        checks = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        partition = table.dialect_options["postgresql"]["partition_by"]
        described[name] = {
            "primary key": [column.name for column in table.primary_key.columns],
            "checks": checks,
            "partition by": partition.upper() if partition else None,
        }
    return described


def _database_constraints(url: str, tables: list[str]) -> dict[str, dict[str, Any]]:
    """The same as :func:`_model_constraints`, read from the database at ``url``."""
    described: dict[str, dict[str, Any]] = {}
    with get_engine(url).connect() as conn:
        inspector = sa.inspect(conn)
        for name in tables:
            partition = conn.execute(
                sa.text(
                    "SELECT pg_get_partkeydef(c.oid) FROM pg_class c "
                    "WHERE c.oid = CAST(:t AS regclass)"
                ),
                {"t": name},
            ).scalar_one()
            described[name] = {
                "primary key": inspector.get_pk_constraint(name)["constrained_columns"],
                "checks": {c["name"] for c in inspector.get_check_constraints(name)},
                "partition by": partition.upper() if partition else None,
            }
    return described


def test_keys_checks_and_partitioning_match_the_models(migrated_url: str) -> None:
    models = _model_constraints()
    database = _database_constraints(migrated_url, sorted(models))
    disagreements = {
        name: {"models": models[name], "database": database[name]}
        for name in models
        if models[name] != database[name]
    }
    assert disagreements == {}, (
        "primary keys, CHECK constraints or partitioning of the migrated database and "
        "cbm_dask/store/models.py disagree:\n" + pprint.pformat(disagreements, width=100)
    )
