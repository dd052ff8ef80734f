"""``cbm db``: the database (embedded cluster or CBM_DATABASE_URL)."""

from __future__ import annotations

import os
import shutil

import click

from cbm_dask.cli.options import CbmGroup, console
from cbm_dask.errors import ServiceError
from cbm_dask.store import migrate
from cbm_dask.store.embedded import EmbeddedCluster, find_pg_bin
from cbm_dask.store.engine import database_url, is_embedded, libpq_dsn


@click.group(cls=CbmGroup)
def db() -> None:
    """Start, stop, migrate and inspect the database."""


def bring_up() -> str | None:
    """Start the embedded cluster (if used) and migrate to the newest schema."""
    if is_embedded():
        EmbeddedCluster.from_config().up()
    return migrate.upgrade()


@db.command()
def up() -> None:
    """Create (first time) and start the embedded PostGIS, then migrate the schema."""
    revision = bring_up()
    where = "embedded" if is_embedded() else "external"
    console.print(f"database up ({where}), schema revision {revision}")


@db.command()
def down() -> None:
    """Stop the embedded PostGIS."""
    if not is_embedded():
        raise click.ClickException("CBM_DATABASE_URL is set: cbm does not stop external databases")
    was_running = EmbeddedCluster.from_config().down()
    console.print("database stopped" if was_running else "database was not running")


@db.command()
def status() -> None:
    """Say whether the database runs and which schema revision it has."""
    if is_embedded():
        cluster = EmbeddedCluster.from_config()
        pid = cluster.pid()
        console.print(f"embedded cluster: {cluster.root}")
        console.print(f"server: {'running, pid ' + str(pid) if pid else 'stopped'}")
        if pid is None:
            raise SystemExit(3)
    revision = migrate.current_revision()
    head = migrate.head_revision()
    console.print(f"schema revision: {revision or 'none'} (newest: {head})")


@db.command()
@click.option("--hide-password", is_flag=True, help="Mask the password.")
def url(hide_password: bool) -> None:
    """Print the database URL in use (SQLAlchemy form)."""
    from sqlalchemy.engine import make_url

    click.echo(make_url(database_url()).render_as_string(hide_password=hide_password))


@db.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def psql(args: tuple[str, ...]) -> None:
    """Open psql on the database (extra ARGS go to psql)."""
    candidates = [str(find_pg_bin() / "psql")] if is_embedded() else []
    binary = next((c for c in candidates if os.path.exists(c)), None) or shutil.which("psql")
    if binary is None:
        raise ServiceError("psql is not installed; install postgresql-client")
    os.execv(binary, [binary, libpq_dsn(), *args])


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Migrate the schema up (run automatically by `cbm db up`)."""
    console.print(f"schema revision {migrate.upgrade(revision)}")


@db.command()
@click.option("--revision", default="-1", show_default=True,
              help="Target revision ('base' removes every cbm table).")
@click.confirmation_option(prompt="This deletes data. Continue?")
def downgrade(revision: str) -> None:
    """Migrate the schema down."""
    console.print(f"schema revision {migrate.downgrade(revision) or 'none'}")
