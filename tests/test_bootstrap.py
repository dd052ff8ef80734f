"""scripts/bootstrap-system.sh decides what to install and checks its own result.

The real apt run is exercised by a clean machine's `make test`; here the script runs
against a stand-in PostgreSQL tree and a stand-in apt-get that records its calls,
reproducing the Debian case where the `postgis` package brings no extension.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap-system.sh"


def _tree(tmp_path: Path, *, extension: bool) -> dict[str, str]:
    lib, share = tmp_path / "lib", tmp_path / "share"
    pg_ctl = lib / "15" / "bin" / "pg_ctl"
    pg_ctl.parent.mkdir(parents=True)
    pg_ctl.write_text("#!/bin/sh\n")
    pg_ctl.chmod(0o755)
    (share / "15" / "extension").mkdir(parents=True)
    if extension:
        (share / "15" / "extension" / "postgis.control").write_text("")
    return {"CBM_PG_LIB": str(lib), "CBM_PG_SHARE": str(share)}


def _apt(tmp_path: Path, *, provides: bool) -> Path:
    """A stand-in apt-get: logs its arguments; installs the extension when ``provides``."""
    log = tmp_path / "apt.log"
    script = tmp_path / "apt-get"
    control = tmp_path / "share" / "15" / "extension" / "postgis.control"
    install = (f'case "$*" in *postgresql-15-postgis-3*) touch "{control}";; esac\n'
               if provides else "")
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n{install}exit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests run the script's install branch, which needs root")


def test_missing_extension_is_installed_for_the_servers_major(tmp_path: Path) -> None:
    env = _tree(tmp_path, extension=False)
    apt = _apt(tmp_path, provides=True)
    done = _run({**env, "CBM_APT_GET": str(apt)})
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[-1].split()[-1] == "postgresql-15-postgis-3"
    assert "--no-install-recommends" in calls[-1]
    assert (tmp_path / "share" / "15" / "extension" / "postgis.control").exists()


def test_an_install_without_the_extension_fails_with_one_clear_line(tmp_path: Path) -> None:
    """Like Debian's `postgis` package without its Recommends: the control file never appears."""
    env = _tree(tmp_path, extension=False)
    apt = _apt(tmp_path, provides=False)
    done = _run({**env, "CBM_APT_GET": str(apt)})
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("cbm setup:")]
    assert len(errors) == 1
    assert "install the package postgresql-15-postgis-3" in errors[0]
    assert "postgis.control is missing" in errors[0]


def test_nothing_is_installed_when_everything_is_there(tmp_path: Path) -> None:
    env = _tree(tmp_path, extension=True)
    apt = _apt(tmp_path, provides=False)
    done = _run({**env, "CBM_APT_GET": str(apt)})
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "apt.log").exists()
