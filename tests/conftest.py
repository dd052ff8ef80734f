"""Session fixtures (real PostGIS, SeaweedFS, STAC API) and the markers their users get."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest

from tests._helpers import (
    LPIS,
    REAL_DATA,
    dask_env,
    empty_database,
    free_port,
    s3_port_settings,
)

# The session's services (each needs the ones it is built on, so a test that uses
# any of them has them all in its fixture closure).
SERVICE_FIXTURES = frozenset({"cbm_home", "postgis", "fresh_db", "s3_server", "stac_api"})

# Seconds PostgreSQL gets for a fast shutdown before it is killed.
_POSTGIS_STOP_TIMEOUT = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a session service ``services`` and ``realdata``.

    Markers follow the fixtures a test really uses, so a new test is put in the
    right lane without anyone remembering to mark it.  The session home refuses
    to start without the real data, hence ``realdata`` too.
    """
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
            item.add_marker(pytest.mark.realdata)


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
    with pytest.MonkeyPatch.context() as patch, dask.config.set(settings):
        patch.delenv("CBM_DATABASE_URL", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgis(cbm_home: Path) -> Iterator[str]:
    """A real embedded PostGIS cluster, migrated; stopped by PID at the end."""
    from cbm_dask._process import stop_daemon
    from cbm_dask.store import migrate
    from cbm_dask.store.embedded import EmbeddedCluster
    from cbm_dask.store.engine import database_url

    cluster = EmbeddedCluster.from_config()
    cluster.up()
    migrate.upgrade()
    yield database_url()
    pid = cluster.pid()
    if pid is not None:
        # SIGINT is PostgreSQL's fast shutdown.
        stop_daemon(pid, timeout=_POSTGIS_STOP_TIMEOUT, sig=signal.SIGINT)


@pytest.fixture
def fresh_db(postgis: str) -> Iterator[str]:
    """The session database, emptied of datasets before the test."""
    empty_database(postgis)
    yield postgis


# ---------------------------------------------------------------------------
# Sentinel archive: the embedded S3 store (SeaweedFS) and STAC API of the session

_S3_ENV = ("CBM_S3_ENDPOINT", "CBM_S3_BUCKET", "CBM_S3_REGION", "CBM_STAC_URL",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_NO_SIGN_REQUEST")


@pytest.fixture(scope="session")
def s3_server(cbm_home: Path) -> Iterator[object]:
    """The real embedded SeaweedFS on free 127.0.0.1 ports under the session CBM_HOME.

    Yields its :class:`cbm_dask.objectstore.S3Settings`; stopped by PID at the end.
    """
    from cbm_dask.objectstore import S3Settings
    from cbm_dask.services.s3 import SeaweedService

    settings = s3_port_settings()
    with pytest.MonkeyPatch.context() as patch, dask.config.set(settings):
        for name in _S3_ENV:
            patch.delenv(name, raising=False)
        for name, value in dask_env(settings).items():
            patch.setenv(name, value)
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
    with pytest.MonkeyPatch.context() as patch, dask.config.set(settings):
        for name, value in dask_env(settings).items():
            patch.setenv(name, value)
        service = StacService.from_config()
        started = time.monotonic()
        service.up()
        print(f"\nSTAC API up in {time.monotonic() - started:.1f} s")
        try:
            yield service.address
        finally:
            service.down()
