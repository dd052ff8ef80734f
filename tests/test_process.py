"""Server processes: real short-lived daemons started, found by PID file and stopped; ports."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cbm_dask._process import (
    alive,
    ensure_port_free,
    helpers_of,
    port_holders,
    read_pid,
    spawn_daemon,
    stop_daemon,
    stop_recorded,
    write_pid_file,
)
from cbm_dask.errors import DatabaseError, ServiceError
from tests._helpers import free_port, occupy, release

# A server that starts a helper, and a helper whose parent exits at once, so that
# it is reparented out of the server's process tree but stays in its session.
# It prints the helpers' PIDs, then waits to be stopped.
SERVER = """
import signal, subprocess, sys, time
if sys.argv[1] == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the helpers too
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
child = subprocess.Popen(sleeper)
launcher = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys; print(subprocess.Popen(sys.argv[1:]).pid)", *sleeper],
    stdout=subprocess.PIPE, text=True)
orphan = int(launcher.stdout.readline())
launcher.wait()
print(child.pid, orphan, flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    """No such process, or a zombie: this machine's init may not reap orphans at once."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def helper_pids(log_file: Path, timeout: float = 30) -> list[int]:
    """The helper PIDs the server printed to its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        words = log_file.read_text().split() if log_file.exists() else []
        if len(words) >= 2:
            return [int(word) for word in words[:2]]
        time.sleep(0.05)
    raise AssertionError(f"the server printed no helper PIDs: {log_file.read_text()!r}")


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """A real daemon with two helpers (argument: ``"plain"`` or ``"ignore-sigterm"``)."""
    mode = getattr(request, "param", "plain")
    pid_file = tmp_path / "run" / "server.pid"
    pid = spawn_daemon([sys.executable, "-c", SERVER, mode, str(tmp_path)],
                       log_file=tmp_path / "server.log", pid_file=pid_file, cwd=tmp_path)
    try:
        yield pid, pid_file
    finally:
        stop_daemon(pid, timeout=1)


def test_a_daemon_and_every_helper_are_stopped_by_pid(
    server: tuple[int, Path], tmp_path: Path,
) -> None:
    pid, pid_file = server
    child, orphan = helper_pids(tmp_path / "server.log")
    assert psutil.Process(orphan).ppid() != pid  # out of the tree ...
    assert {p.pid for p in helpers_of(pid)} >= {child, orphan}  # ... but found in the session
    assert psutil.Process(pid).cwd() == str(tmp_path)
    assert read_pid(pid_file, str(tmp_path)) == pid

    assert stop_recorded(read_pid(pid_file, str(tmp_path)), pid_file, timeout=10,
                         what="the test server") is True
    assert not pid_file.exists()
    assert [p for p in (pid, child, orphan) if not gone(p)] == []
    assert not psutil.pid_exists(pid)  # our own child is reaped, not left a zombie
    assert stop_daemon(pid, timeout=1) is False


@pytest.mark.parametrize("server", ["ignore-sigterm"], indirect=True)
def test_a_server_ignoring_sigterm_is_killed_and_its_helpers_too(
    server: tuple[int, Path], tmp_path: Path,
) -> None:
    pid, _ = server
    child, orphan = helper_pids(tmp_path / "server.log")
    started = time.monotonic()
    assert stop_daemon(pid, timeout=0.5) is True
    assert time.monotonic() - started < 15
    assert [p for p in (pid, child, orphan) if not gone(p)] == []


@pytest.fixture
def stranger(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process not started as a daemon whose command line holds the marker ``tmp_path``."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                str(tmp_path)])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_reused_pid_is_never_taken_for_the_server(
    stranger: subprocess.Popen[bytes], tmp_path: Path,
) -> None:
    pid_file = tmp_path / "server.pid"
    created = psutil.Process(stranger.pid).create_time()
    # The recorded server started 100 s before this process existed: its PID was reused.
    pid_file.write_text(f"{stranger.pid}\n{created - 100:.3f}\n")
    assert read_pid(pid_file, str(tmp_path)) is None
    assert stop_recorded(read_pid(pid_file, str(tmp_path)), pid_file, timeout=1,
                         what="the test server") is False
    assert not pid_file.exists()
    # A PID (file of an earlier version: the PID alone) running another program.
    pid_file.write_text(f"{stranger.pid}\n")
    assert read_pid(pid_file, "some other data directory") is None
    time.sleep(0.2)
    assert alive(stranger.pid) and stranger.poll() is None  # never signalled

    write_pid_file(pid_file, stranger.pid)  # the control: recorded for this very process
    assert read_pid(pid_file, str(tmp_path)) == stranger.pid
    pid_file.write_text(f"{stranger.pid}\n")
    assert read_pid(pid_file, str(tmp_path)) == stranger.pid


def test_a_missing_or_garbled_pid_file_means_not_running(tmp_path: Path) -> None:
    assert read_pid(tmp_path / "absent.pid", "x") is None
    (tmp_path / "garbled.pid").write_text("not a pid\n")
    assert read_pid(tmp_path / "garbled.pid", "x") is None


def test_a_program_that_cannot_start_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-server"
    with pytest.raises(ServiceError, match="could not start .*no-such-server"):
        spawn_daemon([str(missing)], log_file=tmp_path / "log", pid_file=tmp_path / "pid",
                     cwd=tmp_path)
    assert not (tmp_path / "pid").exists()


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Another process listening on 127.0.0.1:<free port>."""
    port = free_port()
    holder = occupy(port)
    try:
        yield holder, port
    finally:
        release(holder)


@pytest.mark.parametrize("system_wide", [True, False])
def test_the_owner_of_a_listening_port_is_found(
    listener: tuple[subprocess.Popen[str], int], system_wide: bool,
) -> None:
    holder, port = listener
    holders = port_holders(port, system_wide=system_wide)
    assert holders and holders[0].pid == holder.pid and holders[0].listens
    assert port_holders(port, "127.0.0.2", system_wide=system_wide) == []


def test_a_taken_port_names_its_owner_and_the_setting(
    listener: tuple[subprocess.Popen[str], int],
) -> None:
    holder, port = listener
    with pytest.raises(ServiceError) as caught:
        ensure_port_free(port, what="STAC API", setting="cbm.stac.port")
    message = str(caught.value)
    assert message.startswith(f"port {port} on 127.0.0.1 (STAC API) is taken: "
                              f"pid {holder.pid} ({sys.executable} -c")
    assert message.endswith("stop that program or choose another with cbm.stac.port "
                            "(env DASK_CBM__STAC__PORT)")
    with pytest.raises(DatabaseError, match=f"pid {holder.pid} .*cbm.database.port"):
        ensure_port_free(port, what="database", setting="cbm.database.port",
                         error=DatabaseError)
    ensure_port_free(free_port(), what="STAC API", setting="cbm.stac.port")
