"""Helpers shared by the benchmarks: a private database and machine facts."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.config


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def _free_port() -> int:
    from cbm_dask._process import free_port

    return free_port()


@contextmanager
def private_database() -> Iterator[str]:
    """Start a throwaway embedded PostGIS (default durability settings) and yield its URL."""
    from cbm_dask.store import migrate
    from cbm_dask.store.embedded import EmbeddedCluster
    from cbm_dask.store.engine import database_url

    with tempfile.TemporaryDirectory(prefix="cbm-bench-") as home:
        os.environ["CBM_HOME"] = home
        with dask.config.set({"cbm.database.port": _free_port()}):
            cluster = EmbeddedCluster.from_config()
            cluster.up()
            try:
                migrate.upgrade()
                yield database_url()
            finally:
                cluster.down()
