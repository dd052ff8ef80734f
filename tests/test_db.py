"""The embedded PostGIS cluster, the schema migrations and `cbm db`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cbm_dask.cli.main import cli
from cbm_dask.errors import DatabaseError, ServiceError
from cbm_dask.store import migrate
from cbm_dask.store.embedded import EmbeddedCluster
from cbm_dask.store.engine import database_url, get_engine

BIN = Path(sys.executable).parent

EXPECTED_TABLES = {
    "datasets", "parcels", "images", "extractions", "signatures",
    "markers", "decisions", "users", "api_keys",
}


def _tables(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                    "AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                )
            ).scalars()
        )


def test_cluster_listens_on_loopback_only(postgis: str) -> None:
    cluster = EmbeddedCluster.from_config()
    pid = cluster.pid()
    assert pid is not None
    addresses = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.pid == pid and c.status == psutil.CONN_LISTEN
    }
    assert addresses == {("127.0.0.1", cluster.port)}
    assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()


def test_cluster_secrets_are_private(postgis: str) -> None:
    cluster = EmbeddedCluster.from_config()
    assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.data_dir.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        # PostgreSQL refuses root: the server must run as the service account.
        owner = psutil.Process(cluster.pid()).username()
        assert owner != "root"


def test_url_points_at_the_embedded_cluster(postgis: str) -> None:
    url = database_url()
    assert url.startswith("postgresql+psycopg://cbm:")
    assert f"@127.0.0.1:{EmbeddedCluster.from_config().port}/cbm" in url
    with get_engine(url).connect() as conn:
        version = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar_one()
    assert version.startswith("3.")


def test_migrations_down_and_up(postgis: str) -> None:
    assert migrate.current_revision() == migrate.head_revision()
    assert _tables(postgis) >= EXPECTED_TABLES
    assert migrate.downgrade("base") is None
    assert not (EXPECTED_TABLES & _tables(postgis))
    assert migrate.upgrade() == migrate.head_revision()
    assert _tables(postgis) >= EXPECTED_TABLES


def test_dataset_tables_are_partitioned_by_dataset(postgis: str) -> None:
    with get_engine(postgis).connect() as conn:
        strategy = dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, p.partstrat FROM pg_partitioned_table p "
                    "JOIN pg_class c ON c.oid = p.partrelid"
                )
            ).all()
        )
    assert strategy["parcels"] == "l"
    assert strategy["signatures"] == "l"


def test_db_cli_status_url_upgrade(postgis: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert "running" in result.output
    assert migrate.head_revision() in result.output
    result = runner.invoke(cli, ["db", "url", "--hide-password"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(f"127.0.0.1:{EmbeddedCluster.from_config().port}/cbm")
    assert "***" in result.output
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0
    assert migrate.head_revision() in result.output
    result = runner.invoke(cli, ["db", "up"])
    assert result.exit_code == 0, result.output
    assert "database up (embedded)" in result.output


def test_db_psql_runs_against_the_database(postgis: str) -> None:
    result = subprocess.run(
        [BIN / "cbm", "db", "psql", "-tA", "-c", "SELECT count(*) FROM datasets WHERE false"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_external_database_url_uses_the_same_code_path(
    postgis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An "existing PostGIS": the same server, reached only through CBM_DATABASE_URL,
    # with an empty CBM_HOME so nothing embedded is found.
    monkeypatch.setenv("CBM_HOME", str(tmp_path / "elsewhere"))
    plain = postgis.replace("postgresql+psycopg://", "postgresql://")
    monkeypatch.setenv("CBM_DATABASE_URL", plain)
    assert database_url() == postgis
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "up"])
    assert result.exit_code == 0, result.output
    assert "database up (external)" in result.output
    result = runner.invoke(cli, ["datasets", "list", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["db", "down"])
    assert result.exit_code != 0
    assert "does not stop external databases" in result.output


def test_uninitialised_embedded_database_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBM_HOME", str(tmp_path / "empty"))
    with pytest.raises(DatabaseError, match="cbm db up"):
        database_url()
    result = CliRunner().invoke(cli, ["datasets", "list"])
    assert result.exit_code == 1
    assert "cbm db up" in result.output
    assert "Traceback" not in result.output


def test_unreachable_database_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests._helpers import free_port

    monkeypatch.setenv(
        "CBM_DATABASE_URL", f"postgresql://nobody:x@127.0.0.1:{free_port()}/nothing"
    )
    result = CliRunner().invoke(cli, ["datasets", "list"])
    assert result.exit_code == 1
    assert "cannot connect to" in result.output
    assert "x@" not in result.output  # the password is never shown


@pytest.mark.services
def test_a_taken_database_port_names_its_owner_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests._helpers import free_port

    home = Path(tempfile.mkdtemp(prefix="cbm-"))
    monkeypatch.setenv("CBM_HOME", str(home))
    import dask.config

    port = free_port()
    with socket.socket() as holder, dask.config.set({"cbm.database.port": port}):
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(DatabaseError) as raised:
            EmbeddedCluster.from_config().up()
    message = str(raised.value)
    assert f"port {port} on 127.0.0.1 (database) is taken: pid {os.getpid()}" in message
    assert "cbm.database.port (env DASK_CBM__DATABASE__PORT)" in message
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.services
def test_embedded_cluster_life_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second, short-lived cluster: up, status, down, up again keeps the data."""
    from cbm_dask._process import stop_daemon
    from tests._helpers import free_port

    home = Path(tempfile.mkdtemp(prefix="cbm-"))  # short: unix socket paths are limited
    monkeypatch.setenv("CBM_HOME", str(home))
    import dask.config

    with dask.config.set({"cbm.database.port": free_port()}):
        cluster = EmbeddedCluster.from_config()
        runner = CliRunner()
        try:
            result = runner.invoke(cli, ["db", "up"])
            assert result.exit_code == 0, result.output
            assert cluster.initialised and cluster.pid() is not None
            with get_engine().begin() as conn:
                conn.execute(sa.text("INSERT INTO users (name) VALUES ('kept')"))
            result = runner.invoke(cli, ["db", "down"])
            assert result.exit_code == 0 and "stopped" in result.output
            assert cluster.pid() is None
            result = runner.invoke(cli, ["db", "status"])
            assert result.exit_code == 3 and "stopped" in result.output
            result = runner.invoke(cli, ["db", "up"])
            assert result.exit_code == 0, result.output
            with get_engine().connect() as conn:
                names = conn.execute(sa.text("SELECT name FROM users")).scalars().all()
            assert names == ["kept"]
        finally:
            pid = cluster.pid()
            if pid is not None:
                stop_daemon(pid, timeout=30, sig=signal.SIGINT)  # fast shutdown
            shutil.rmtree(home, ignore_errors=True)


def test_too_long_cbm_home_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBM_HOME", "/tmp/" + "x" * 100)
    with pytest.raises(ServiceError, match="shorter CBM_HOME"):
        EmbeddedCluster.from_config().up()


def test_bulk_loads_skip_the_wal(postgis: str) -> None:
    with get_engine(postgis).connect() as conn:
        settings = dict(conn.execute(sa.text(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_wal_senders')"
        )).all())
    assert settings == {"wal_level": "minimal", "max_wal_senders": "0"}


def test_settings_added_later_reach_an_existing_cluster(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(root=tmp_path, port=1)
    cluster.data_dir.mkdir()
    conf = cluster.data_dir / "postgresql.conf"
    conf.write_text("#wal_level = replica\nshared_buffers = '128MB'\n")
    cluster._add_missing_settings(running=False)
    lines = conf.read_text().splitlines()
    assert lines[-2:] == ["wal_level = minimal", "max_wal_senders = 0"]
    cluster._add_missing_settings(running=False)
    assert conf.read_text().splitlines() == lines
    # WAL set up by hand (e.g. for a replica) is left alone
    conf.write_text("max_wal_senders = 3\n")
    cluster._add_missing_settings(running=True)
    assert conf.read_text() == "max_wal_senders = 3\n"
