"""The database as a service of ``cbm services``: the embedded cluster or CBM_DATABASE_URL."""

from __future__ import annotations

import logging

from sqlalchemy.engine import make_url

from cbm_dask.services.registry import ServiceStatus
from cbm_dask.store import migrate
from cbm_dask.store.embedded import EmbeddedCluster
from cbm_dask.store.engine import database_url, is_embedded

__all__ = ["DatabaseService"]

log = logging.getLogger(__name__)


class DatabaseService:
    """Start/stop the embedded PostGIS (as ``cbm db up``/``down``); report an external one."""

    name = "database"

    def _address(self) -> str | None:
        if is_embedded():
            cluster = EmbeddedCluster.from_config()
            return f"postgresql://127.0.0.1:{cluster.port}/{cluster.database}"
        return make_url(database_url()).render_as_string(hide_password=True)

    def up(self) -> ServiceStatus:
        """Start the embedded cluster if used, and migrate the schema to the newest revision."""
        if is_embedded():
            EmbeddedCluster.from_config().up()
        revision = migrate.upgrade()
        log.info("database schema at revision %s", revision)
        return self.status()

    def down(self) -> bool:
        """Stop the embedded cluster; an external database is left alone."""
        if not is_embedded():
            return False
        return EmbeddedCluster.from_config().down()

    def status(self) -> ServiceStatus:
        """Report the postmaster's PID (embedded) or the external URL."""
        if not is_embedded():
            return ServiceStatus(self.name, "external", None, self._address(),
                                 "CBM_DATABASE_URL / cbm.database.url")
        cluster = EmbeddedCluster.from_config()
        pid = cluster.pid()
        return ServiceStatus(self.name, "running" if pid else "stopped", pid, self._address(),
                             str(cluster.root))
