"""The embedded PostgreSQL + PostGIS cluster under ``$CBM_HOME/pg``.

A private cluster created with ``initdb`` on first use and driven with ``pg_ctl``.
It listens on a unix socket in ``$CBM_HOME/pg/run`` and on 127.0.0.1 only.  When
cbm runs as root, the server runs as the unprivileged ``cbm.database.os-user``
account, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbm_dask import config
from cbm_dask._process import ensure_port_free, verified_pid
from cbm_dask.errors import DatabaseError, ServiceError

__all__ = ["EmbeddedCluster", "find_pg_bin"]

log = logging.getLogger(__name__)

# No WAL for the data of a table created in the same transaction (a parcel load
# writes its partition once and fsyncs it at commit); this cluster has no replicas,
# and its physical backup is a copy of the stopped cluster.  User settings
# (cbm.database.server-settings) are written after these and win.
_BULK_LOAD_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0"}


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)


def find_pg_bin() -> Path:
    """Return the directory of ``initdb``/``pg_ctl`` of a PostgreSQL that has PostGIS.

    ``cbm.database.pg-bin`` wins; otherwise the newest Debian/Ubuntu
    ``/usr/lib/postgresql/<major>/bin`` whose share directory holds ``postgis.control``.

    Raises
    ------
    ServiceError
        When no such installation exists.
    """
    configured = config.get("database.pg-bin", None)
    if configured:
        path = Path(configured)
        if not (path / "pg_ctl").exists():
            raise ServiceError(
                f"cbm.database.pg-bin={configured} holds no pg_ctl; point it at the bin "
                "directory of a PostgreSQL installation"
            )
        return path
    majors = sorted(Path("/usr/lib/postgresql").glob("*"), key=_version_key, reverse=True)
    for major in majors:
        control = Path("/usr/share/postgresql") / major.name / "extension" / "postgis.control"
        if (major / "bin" / "pg_ctl").exists() and control.exists():
            return major / "bin"
    raise ServiceError(
        "no PostgreSQL with PostGIS found under /usr/lib/postgresql; run `make setup` "
        "(installs postgresql and postgis from apt), set cbm.database.pg-bin, or point "
        "CBM_DATABASE_URL at an existing PostGIS"
    )


@dataclass(frozen=True)
class EmbeddedCluster:
    """Paths, identity and life cycle of the embedded cluster.

    Attributes
    ----------
    root
        The cluster's directory, ``$CBM_HOME/pg``.
    port
        TCP port on 127.0.0.1.
    database
        Name of the application database.
    user
        Name of the database superuser role the application connects as.
    """

    root: Path
    port: int
    database: str = "cbm"
    user: str = "cbm"

    @classmethod
    def from_config(cls) -> EmbeddedCluster:
        """Build the cluster description from the current configuration."""
        return cls(
            root=config.home() / "pg",
            port=int(config.get("database.port")),
            database=str(config.get("database.name")),
            user=str(config.get("database.user")),
        )

    # -- paths ---------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the unix socket."""
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        """The generated password of :attr:`user` (mode 0600)."""
        return self.root / "password"

    # -- state ---------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        """Whether ``initdb`` has run."""
        return (self.data_dir / "PG_VERSION").exists() and self.password_file.exists()

    def pid(self) -> int | None:
        """Return the postmaster's PID when it is running, else None.

        ``postmaster.pid`` holds the PID, the data directory and the start time:
        after an unclean stop its PID may have been given to another program,
        which is recognised (created later, or not running this data directory).
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        data_dir = lines[1] if len(lines) > 1 and lines[1] else str(self.data_dir)
        try:
            started: float | None = float(lines[2])
        except (ValueError, IndexError):
            started = None
        return verified_pid(pid, marker=data_dir, started=started)

    def url(self, database: str | None = None) -> str:
        """Return the SQLAlchemy URL of the embedded database.

        Raises
        ------
        DatabaseError
            When the cluster has not been initialised yet.
        """
        if not self.password_file.exists():
            raise DatabaseError(
                f"the embedded database under {self.root} is not initialised; run `cbm db up` "
                "or set CBM_DATABASE_URL to use an existing PostGIS"
            )
        password = self.password_file.read_text().strip()
        return (
            f"postgresql+psycopg://{self.user}:{password}@127.0.0.1:{self.port}/"
            f"{database or self.database}"
        )

    # -- life cycle ----------------------------------------------------------
    def up(self) -> None:
        """Initialise (first time) and start the server; create the database with PostGIS."""
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path)) > 100:  # sun_path holds 107 bytes
            raise ServiceError(
                f"{self.root} is too deep for PostgreSQL's unix socket ({socket_path} has "
                f"{len(str(socket_path))} characters, at most 100 work); use a shorter CBM_HOME"
            )
        if not self.initialised:
            self._initdb()
        running = self.pid() is not None
        self._add_missing_settings(running)
        if not running:
            self._start()
        self._ensure_database()

    def down(self) -> bool:
        """Stop the server (fast shutdown); return whether it was running."""
        if self.pid() is None:
            return False
        self._run_as_owner(
            [str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
             "-t", str(config.get("database.start-timeout")), "stop"],
        )
        return True

    # -- internals -----------------------------------------------------------
    def _os_user(self) -> str | None:
        """Return the account the server runs as when we are root, else None (ourselves)."""
        if os.geteuid() != 0:
            return None
        name = str(config.get("database.os-user"))
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ServiceError(
                f"cbm runs as root, so PostgreSQL must run as an unprivileged account, but "
                f"user '{name}' (cbm.database.os-user) does not exist; create it "
                f"(`useradd --system {name}`) or set cbm.database.os-user"
            ) from None
        return name

    def _run_as_owner(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        user = self._os_user()
        extra: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        log.debug("running %s", " ".join(cmd))
        try:
            return subprocess.run(
                cmd, check=True, capture_output=True, text=True, cwd=self.root, **extra, **kwargs
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-5:]
            raise DatabaseError(
                f"{Path(cmd[0]).name} failed ({'; '.join(detail)}); see {self.log_file}"
            ) from exc

    def _grant_traverse(self, user: str) -> None:
        """Let the service account reach ``root`` through our (possibly private) home."""
        uid = pwd.getpwnam(user).pw_uid
        setfacl = shutil.which("setfacl")
        for parent in reversed(self.root.parents):
            st = parent.stat()
            if st.st_uid == uid or st.st_mode & 0o001:
                continue
            if setfacl:
                subprocess.run([setfacl, "-m", f"u:{user}:x", str(parent)], check=True)
            else:
                parent.chmod(st.st_mode | 0o001)
            log.info("granted %s traverse-only access to %s", user, parent)

    def _initdb(self) -> None:
        pg_bin = find_pg_bin()
        log.info("initialising embedded PostgreSQL cluster in %s", self.data_dir)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(
                f"{self.data_dir} exists but holds no complete cluster; move it away (or "
                f"delete it if it holds nothing of value) and run `cbm db up` again"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        user = self._os_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            self._grant_traverse(user)
            for path in (self.root, self.data_dir, self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            self._run_as_owner(
                [str(pg_bin / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--no-locale", "--no-sync"],
            )
            os.sync()  # one flush of the new cluster instead of initdb's fsync per file
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            "logging_collector": "off",
            **_BULK_LOAD_SETTINGS,
        }
        settings.update(
            {k: f"'{v}'" for k, v in dict(config.get("database.server-settings")).items()}
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# written by cbm db up\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        # Written last: its presence marks a complete initialisation.
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        if user is not None:
            os.chown(self.password_file, os.getuid(), os.getgid())

    def _add_missing_settings(self, running: bool) -> None:
        """Add settings introduced after this cluster was initialised to its configuration.

        A running server only applies them when it restarts (``cbm db down``,
        ``cbm db up``); until then loads work as before, only slower.
        """
        conf = self.data_dir / "postgresql.conf"
        present = {
            line.split("=", 1)[0].strip()
            for line in conf.read_text().splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        }
        if present & set(_BULK_LOAD_SETTINGS):
            return  # WAL configured by hand: the two only work together (no senders)
        missing = _BULK_LOAD_SETTINGS
        with conf.open("a") as handle:
            handle.write("\n# added by cbm db up\n")
            handle.writelines(f"{key} = {value}\n" for key, value in missing.items())
        if running:
            log.warning(
                "added %s to %s; restart the embedded database (`cbm db down` then `cbm db "
                "up`) to apply them", ", ".join(missing), conf,
            )

    def _start(self) -> None:
        # Bind, as the server will: a connect probe misses ports held by outgoing
        # connections (docs/ict-guide.md, services and their ports).
        ensure_port_free(self.port, what="database", setting="cbm.database.port",
                         error=DatabaseError)
        log.info("starting embedded PostgreSQL on 127.0.0.1:%d", self.port)
        user = self._os_user()
        if user is not None and not self.log_file.exists():
            self.log_file.touch()
            entry = pwd.getpwnam(user)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._run_as_owner(
            [str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
             "-w", "-t", str(config.get("database.start-timeout")),
             "-o", f"-p {self.port}", "start"],
        )

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        password = self.password_file.read_text().strip()
        deadline = time.monotonic() + float(config.get("database.start-timeout"))
        while True:
            try:
                conn = psycopg.connect(
                    host="127.0.0.1", port=self.port, user=self.user, password=password,
                    dbname="postgres", autocommit=True, connect_timeout=5,
                )
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"embedded PostgreSQL does not accept connections ({exc}); see "
                        f"{self.log_file}"
                    ) from exc
                time.sleep(0.2)
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=password,
            dbname=self.database, autocommit=True,
        ) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
