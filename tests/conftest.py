"""Shared fixtures: a real throwaway PostGIS cluster and the real data in ../shared."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dask.config
import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
LPIS = REAL_DATA / "lpis"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1, below the kernel's ephemeral range, free right now.

    A port inside the range (what binding port 0 gives) can be taken at any moment
    as the source port of an outgoing connection, and a server then fails to start.
    """
    from cbm_dask.services._process import free_port as low_free_port

    return low_free_port()


def stop_pid(pid: int, sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Send ``sig`` to ``pid`` and wait until the process is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def _temporary_env(values: Mapping[str, str], clear: Iterable[str] = ()) -> Iterator[None]:
    """Set ``values`` and unset ``clear`` in ``os.environ``; restore all of them afterwards."""
    clear = tuple(clear)
    old = {key: os.environ.get(key) for key in [*values, *clear]}
    for key in clear:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def cbm_home() -> Iterator[Path]:
    """A private CBM_HOME and free ports for the whole session (env for subprocesses too).

    A short directory of its own (not pytest's numbered tmp dirs, which other test
    sessions may clean up): unix socket paths are limited to ~100 characters.
    """
    if not LPIS.exists():
        pytest.fail(f"the real test data is missing: {REAL_DATA}")
    home = Path(tempfile.mkdtemp(prefix="cbm-test-"))
    port = free_port()
    settings = {
        "cbm.database.port": port,
        # A throwaway cluster: durability is not needed, speed is.
        "cbm.database.server-settings": {
            "shared_buffers": "128MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        },
    }
    env = {"CBM_HOME": str(home), "DASK_CBM__DATABASE__PORT": str(port)}
    with _temporary_env(env, clear=("CBM_DATABASE_URL",)), dask.config.set(settings):
        yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgis(cbm_home: Path) -> Iterator[str]:
    """A real embedded PostGIS cluster, migrated; stopped by PID at the end."""
    from cbm_dask.store import migrate
    from cbm_dask.store.embedded import EmbeddedCluster
    from cbm_dask.store.engine import database_url

    cluster = EmbeddedCluster.from_config()
    cluster.up()
    migrate.upgrade()
    yield database_url()
    pid = cluster.pid()
    if pid is not None:
        stop_pid(pid)


@pytest.fixture
def fresh_db(postgis: str) -> Iterator[str]:
    """The session database, emptied of datasets before the test."""
    import sqlalchemy as sa

    from cbm_dask.store.engine import get_engine
    from cbm_dask.store.partitions import drop_dataset_partitions

    with get_engine(postgis).begin() as conn:
        for dataset_id in conn.execute(sa.text("SELECT id FROM datasets")).scalars():
            drop_dataset_partitions(conn, dataset_id)
        conn.execute(sa.text("DELETE FROM datasets"))
    yield postgis


# ---------------------------------------------------------------------------
# Sentinel archive: the embedded S3 store (SeaweedFS) and STAC API of the session

_S3_ENV = ("CBM_S3_ENDPOINT", "CBM_S3_BUCKET", "CBM_S3_REGION", "CBM_STAC_URL",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_NO_SIGN_REQUEST")


def free_admin_port() -> int:
    """A free port p whose p + 10000 is free too (SeaweedFS's admin gRPC port)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair p, p + 10000 on 127.0.0.1")


def s3_port_settings() -> dict[str, object]:
    """Fresh free ports for every listener of an embedded SeaweedFS (dask.config keys)."""
    ports = {name: free_port() for name in ("master", "master-grpc", "volume", "volume-grpc",
                                            "filer", "filer-grpc", "s3-grpc")}
    ports["admin"] = free_admin_port()
    return {"cbm.s3.port": free_port(), "cbm.s3.ports": ports}


def _dask_env(settings: dict[str, object]) -> dict[str, str]:
    """DASK_CBM__… variables carrying ``settings`` to subprocesses."""
    env: dict[str, str] = {}
    for key, value in settings.items():
        base = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                env[f"{base}__{sub.upper().replace('-', '_')}"] = str(sub_value)
        else:
            env[base] = str(value)
    return env


@pytest.fixture(scope="session")
def s3_server(cbm_home: Path) -> Iterator[object]:
    """The real embedded SeaweedFS on free 127.0.0.1 ports under the session CBM_HOME.

    Yields its :class:`cbm_dask.services.s3.S3Settings`; stopped by PID at the end.
    """
    from cbm_dask.services.s3 import S3Settings, SeaweedService

    settings = s3_port_settings()
    with _temporary_env(_dask_env(settings), clear=_S3_ENV), dask.config.set(settings):
        service = SeaweedService.from_config()
        started = time.monotonic()
        service.up()
        print(f"\nSeaweedFS up in {time.monotonic() - started:.1f} s")
        try:
            yield S3Settings.from_config()
        finally:
            service.down()  # stops it by PID and reaps it (a zombie would look alive)


@pytest.fixture(scope="session")
def stac_api(postgis: str, s3_server: object) -> Iterator[str]:
    """The real stac-fastapi-pgstac (transactions on) on a free 127.0.0.1 port.

    Its pgstac database lives in the session PostGIS.  Yields the base URL;
    stopped by PID at the end.
    """
    from cbm_dask.services.stac import StacService

    settings: dict[str, object] = {"cbm.stac.port": free_port()}
    with _temporary_env(_dask_env(settings)), dask.config.set(settings):
        service = StacService.from_config()
        started = time.monotonic()
        service.up()
        print(f"\nSTAC API up in {time.monotonic() - started:.1f} s")
        try:
            yield service.address
        finally:
            service.down()
