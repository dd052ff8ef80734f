"""The STAC API of the archive: stac-fastapi-pgstac over pgstac, run by ``cbm services``.

The embedded API keeps its catalogue in its own database (``cbm.stac.database``,
default ``cbm_stac``) of the same PostgreSQL server as the cbm database (the
embedded cluster, or the server of ``CBM_DATABASE_URL``).  :meth:`StacService.up`
creates that database when missing, brings its pgstac schema to the version of
the installed pypgstac (``pypgstac migrate``, through its Python API), then
starts ``uvicorn stac_fastapi.pgstac.app:create_app`` detached on 127.0.0.1 with
the settings the installed stac-fastapi-pgstac reads from the environment
(``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``/``PGDATABASE``,
``ENABLE_TRANSACTIONS_EXTENSIONS=TRUE`` ...), and waits for ``/_mgmt/ping``.

The Transaction extension is enabled so that ``cbm archive publish`` registers
items over HTTP like any client of a transactional STAC API (see
:mod:`cbm_dask.archive._stac_api` for why).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from cbm_dask import config
from cbm_dask._process import (
    bind_listener,
    ensure_port_free,
    read_pid,
    spawn_daemon,
    stop_recorded,
    wait_until,
    warn_if_ephemeral,
)
from cbm_dask._version import __version__
from cbm_dask.errors import DatabaseError
from cbm_dask.services.registry import ServiceStatus

__all__ = [
    "StacService",
    "ensure_pgstac_database",
    "local_stac_url",
    "migrate_pgstac",
    "pgstac_dsn",
    "stac_url",
]

log = logging.getLogger(__name__)

_APP = "stac_fastapi.pgstac.app:create_app"


def local_stac_url() -> str:
    """Return the base URL of the embedded STAC API (``http://127.0.0.1:<cbm.stac.port>``)."""
    return f"http://127.0.0.1:{int(config.get('stac.port'))}"


def stac_url() -> str:
    """Return the archive's STAC API: ``CBM_STAC_URL``, ``cbm.stac.url``, else the embedded one."""
    configured = os.environ.get("CBM_STAC_URL") or config.get("stac.url", None)
    return str(configured).rstrip("/") if configured else local_stac_url()


def pgstac_dsn() -> str:
    """Return the libpq URL (``postgresql://…``) of the pgstac database.

    Raises
    ------
    DatabaseError
        When the embedded database has not been initialised.
    """
    from cbm_dask.store.engine import database_url

    url = make_url(database_url()).set(drivername="postgresql",
                                       database=str(config.get("stac.database")))
    return url.render_as_string(hide_password=False)


def ensure_pgstac_database() -> bool:
    """Create the pgstac database on the cbm database's server when missing; return if created.

    Raises
    ------
    DatabaseError
        When the server cannot be reached or refuses ``CREATE DATABASE``.
    """
    import psycopg
    from psycopg import sql

    from cbm_dask.store.engine import libpq_dsn

    name = str(config.get("stac.database"))
    server = libpq_dsn()
    where = make_url(server).render_as_string(hide_password=True)
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot create the STAC database {name!r} on {where} "
            f"({str(exc).strip().splitlines()[0]}); start the database with `cbm services up` "
            "(or `cbm db up`), or create it yourself and set cbm.stac.database"
        ) from exc
    log.info("created the STAC database %s", name)
    return True


def migrate_pgstac(dsn: str | None = None) -> str:
    """Install or upgrade the pgstac schema to the installed pypgstac's version; return it.

    Raises
    ------
    DatabaseError
        When the migration fails (message names the database).
    """
    import psycopg
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    target = dsn or pgstac_dsn()
    where = make_url(target).render_as_string(hide_password=True)
    try:
        with PgstacDB(dsn=target) as db:
            version = str(Migrate(db).run_migration())
    except (psycopg.Error, Exception) as exc:  # pypgstac raises bare Exception too
        raise DatabaseError(
            f"pgstac migration of {where} failed ({str(exc).strip().splitlines()[0]}); the "
            "database role needs the right to create extensions (postgis, btree_gist, unaccent)"
        ) from exc
    log.info("pgstac schema of %s at version %s", where, version)
    return version


def _get_json(url: str, timeout: float = 2) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass(frozen=True)
class StacService:
    """The embedded STAC API (uvicorn + stac-fastapi-pgstac), or an external one.

    Attributes
    ----------
    root
        ``$CBM_HOME/stac``: working directory and log.
    run_dir
        ``$CBM_HOME/run``: PID file.
    port
        Port on 127.0.0.1.
    database
        Name of the pgstac database.
    external
        The configured external STAC API URL, or None for the embedded one.
    """

    name = "stac"

    root: Path
    run_dir: Path
    port: int
    database: str
    external: str | None = None

    @classmethod
    def from_config(cls) -> StacService:
        """Build the service description from the current configuration."""
        home = config.home()
        external = os.environ.get("CBM_STAC_URL") or config.get("stac.url", None)
        return cls(
            root=home / "stac",
            run_dir=home / "run",
            port=int(config.get("stac.port")),
            database=str(config.get("stac.database")),
            external=str(external) if external else None,
        )

    @property
    def address(self) -> str:
        """Base URL of the embedded API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        """PID of the running uvicorn."""
        return self.run_dir / "stac-api.pid"

    @property
    def log_file(self) -> Path:
        """Output of uvicorn."""
        return self.root / "stac-api.log"

    def pid(self) -> int | None:
        """PID of the running embedded API, or None."""
        return read_pid(self.pid_file, _APP)

    def status(self) -> ServiceStatus:
        """Running/stopped (embedded) or external."""
        if self.external:
            return ServiceStatus(self.name, "external", None, self.external,
                                 "CBM_STAC_URL / cbm.stac.url")
        pid = self.pid()
        return ServiceStatus(self.name, "running" if pid else "stopped", pid, self.address,
                             f"database {self.database}")

    def environment(self, dsn: str) -> dict[str, str]:
        """Environment of the API process: the settings stac-fastapi-pgstac reads."""
        url = make_url(dsn)
        env = dict(os.environ)
        env.update({
            "PGHOST": str(url.host or "127.0.0.1"),
            "PGPORT": str(url.port or 5432),
            "PGUSER": str(url.username or ""),
            "PGPASSWORD": str(url.password or ""),
            "PGDATABASE": str(url.database or self.database),
            "ENABLE_TRANSACTIONS_EXTENSIONS": "TRUE",
            "STAC_FASTAPI_TITLE": str(config.get("stac.title")),
            "STAC_FASTAPI_DESCRIPTION": "Sentinel image archive of cbm_dask",
            "STAC_FASTAPI_LANDING_ID": "cbm-archive",
            "STAC_FASTAPI_VERSION": __version__,
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": str(int(config.get("stac.max-connections"))),
        })
        return env

    def command(self, fd: int | None = None) -> list[str]:
        """Return the uvicorn command line (127.0.0.1 only).

        Parameters
        ----------
        fd
            A listening socket the server inherits (see :meth:`up`); None: uvicorn
            binds 127.0.0.1:``port`` itself.
        """
        where = (["--fd", str(fd)] if fd is not None
                 else ["--host", "127.0.0.1", "--port", str(self.port)])
        return [
            sys.executable, "-m", "uvicorn", _APP, "--factory", *where,
            "--log-level", "warning", "--no-access-log",
            "--timeout-graceful-shutdown", "5",
        ]

    def _pings(self) -> bool:
        try:
            answer = _get_json(f"{self.address}/_mgmt/ping", timeout=1)
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(answer, dict) and bool(answer)

    def up(self) -> ServiceStatus:
        """Create/migrate the pgstac database and start the API unless it runs.

        Raises
        ------
        DatabaseError
            When the database is not running or the migration fails.
        ServiceError
            When the port is taken or the API does not answer within
            ``cbm.stac.start-timeout`` seconds (message quotes its log).
        """
        if self.external:
            return self.status()
        if self.pid() is not None:
            return self.status()
        warn_if_ephemeral({"cbm.stac.port": self.port})
        # Fail before the migration when the port is taken.
        ensure_port_free(self.port, what="STAC API", setting="cbm.stac.port")
        ensure_pgstac_database()
        dsn = pgstac_dsn()
        migrate_pgstac(dsn)
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # The server inherits the socket bound here: nothing can take the port
        # between this check and the server listening (its own DB connections,
        # opened before uvicorn binds, could otherwise be given it as source port).
        listener = bind_listener(self.port, what="STAC API", setting="cbm.stac.port")
        try:
            pid = spawn_daemon(self.command(listener.fileno()), log_file=self.log_file,
                               pid_file=self.pid_file, cwd=self.root,
                               env=self.environment(dsn), pass_fds=(listener.fileno(),))
        finally:
            listener.close()
        log.info("started the STAC API (pid %d) on %s", pid, self.address)
        wait_until(self._pings, pid=pid, timeout=float(config.get("stac.start-timeout")),
                   what=f"the STAC API on {self.address}", log_file=self.log_file)
        log.info("STAC API answers after %.1f s", time.monotonic() - started)
        return self.status()

    def down(self) -> bool:
        """Stop the embedded API (SIGTERM, SIGKILL after ``cbm.stac.stop-timeout``)."""
        if self.external:
            return False
        return stop_recorded(self.pid(), self.pid_file,
                             timeout=float(config.get("stac.stop-timeout")), what="the STAC API")
