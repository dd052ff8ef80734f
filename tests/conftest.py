"""Shared fixtures: a real throwaway PostGIS cluster and the real data in ../shared."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
LPIS = REAL_DATA / "lpis"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture(scope="session")
def cbm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private CBM_HOME and free ports for the whole session (env for subprocesses too)."""
    if not LPIS.exists():
        pytest.fail(f"the real test data is missing: {REAL_DATA}")
    home = tmp_path_factory.mktemp("cbm_home")
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
    env.pop("CBM_DATABASE_URL", None)
    old = {k: os.environ.get(k) for k in [*env, "CBM_DATABASE_URL"]}
    os.environ.update(env)
    os.environ.pop("CBM_DATABASE_URL", None)
    with dask.config.set(settings):
        yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
