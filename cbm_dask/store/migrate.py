"""Schema migrations (Alembic), run programmatically: ``cbm db upgrade``."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cbm_dask.store.engine import get_engine

__all__ = ["upgrade", "downgrade", "current_revision", "head_revision"]


def _alembic_config(url: str | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("cbm_dask.store") / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(revision: str = "head", url: str | None = None) -> str | None:
    """Migrate the database up to ``revision``; return the revision now current."""
    engine = get_engine(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(url)


def downgrade(revision: str = "base", url: str | None = None) -> str | None:
    """Migrate the database down to ``revision`` (``base`` drops every cbm table)."""
    engine = get_engine(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current_revision(url)


def current_revision(url: str | None = None) -> str | None:
    """Return the database's current revision, None when never migrated."""
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """Return the newest revision shipped with this version of cbm_dask."""
    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
