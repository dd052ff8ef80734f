"""Which database to talk to, and SQLAlchemy engines for it."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cbm_dask import config
from cbm_dask.errors import DatabaseError
from cbm_dask.store.embedded import EmbeddedCluster

__all__ = ["database_url", "get_engine", "libpq_dsn", "is_embedded"]


def is_embedded() -> bool:
    """Whether the embedded cluster is in use (no ``CBM_DATABASE_URL``)."""
    return config.database_url_override() is None


def database_url() -> str:
    """Return the SQLAlchemy URL in use: ``CBM_DATABASE_URL`` or the embedded cluster's."""
    override = config.database_url_override()
    if override:
        url = make_url(override)
        if url.drivername in {"postgresql", "postgres", "postgis"}:
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)
    return EmbeddedCluster.from_config().url()


def libpq_dsn(url: str | None = None) -> str:
    """Return the URL in the plain ``postgresql://`` form that psql and psycopg accept."""
    parsed = make_url(url or database_url()).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def get_engine(url: str | None = None) -> sa.Engine:
    """Return a (cached) engine for ``url`` or the configured database.

    Raises
    ------
    DatabaseError
        When the database cannot be reached.
    """
    target = url or database_url()
    engine = _engine(target)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        _engine.cache_clear()
        where = make_url(target).render_as_string(hide_password=True)
        raise DatabaseError(
            f"cannot connect to {where} ({str(exc.orig).strip().splitlines()[0]}); start the "
            "embedded database with `cbm db up` or check CBM_DATABASE_URL"
        ) from exc
    return engine
