"""Daemon processes of the embedded services: spawn, PID files, readiness, stop.

The services (SeaweedFS, the STAC API) are started detached from the starting
process, the way ``pg_ctl`` starts PostgreSQL: a short-lived ``/bin/sh`` puts the
server in the background and reports its PID, so the server outlives ``cbm
services up`` and is never a zombie child of a long-running Python process
(a test session, a notebook kernel).  They are found again through a PID file and
recognised by a marker in their command line, so a stale PID file whose number
was reused by an unrelated process is ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cbm_dask.errors import ServiceError

__all__ = [
    "alive",
    "log_tail",
    "port_in_use",
    "read_pid",
    "spawn_daemon",
    "stop_daemon",
    "stop_recorded",
    "wait_until",
]

log = logging.getLogger(__name__)

# Runs "$@" in the background with its output appended to $1, prints its PID, exits.
_LAUNCHER = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (zombies of our own children are reaped first)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was not reaped yet by its parent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] == "Z"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def read_pid(pid_file: Path, marker: str) -> int | None:
    """Return the PID recorded in ``pid_file`` if that process runs and is ours.

    Parameters
    ----------
    pid_file
        File holding the PID as text.
    marker
        A string the process's command line must contain (e.g. its data
        directory); guards against a PID reused by another program.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline and marker not in cmdline:
        log.debug("pid %d of %s runs something else: %s", pid, pid_file, cmdline)
        return None
    return pid


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def spawn_daemon(
    cmd: Sequence[str], *, log_file: Path, pid_file: Path, cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``cmd`` detached (own session, output appended to ``log_file``); return its PID.

    Raises
    ------
    ServiceError
        When the launcher fails (e.g. the binary cannot be executed).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log.debug("starting %s", " ".join(cmd))
    try:
        launched = subprocess.run(
            ["/bin/sh", "-c", _LAUNCHER, "sh", str(log_file), *cmd],
            cwd=cwd, env=dict(env) if env is not None else None, capture_output=True,
            text=True, check=True, start_new_session=True, timeout=30,
        )
        pid = int(launched.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        raise ServiceError(f"could not start {cmd[0]} ({exc}); see {log_file}") from exc
    pid_file.write_text(f"{pid}\n")
    return pid


def log_tail(log_file: Path, lines: int = 8) -> str:
    """Return the last ``lines`` lines of a log file joined by ' | ' (empty if unreadable)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool], *, pid: int, timeout: float, what: str, log_file: Path,
    interval: float = 0.1,
) -> float:
    """Poll ``ready()`` until it is true; return the seconds waited.

    Raises
    ------
    ServiceError
        When the process ``pid`` exits first or ``timeout`` seconds pass; the
        message quotes the end of ``log_file``.
    """
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        if not alive(pid):
            raise ServiceError(
                f"{what} exited while starting; last log lines: {log_tail(log_file)} "
                f"(full log: {log_file})"
            )
        if time.monotonic() - start > timeout:
            raise ServiceError(
                f"{what} did not become ready within {timeout:.0f} s (pid {pid} still runs); "
                f"see {log_file}, or raise the start-timeout setting"
            )
        time.sleep(interval)


def stop_daemon(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` s, then SIGKILL; return whether it ran."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    log.warning("pid %d ignored signal %d for %.0f s; killing it", pid, sig, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.1)
    return True


def stop_recorded(pid: int | None, pid_file: Path, *, timeout: float, what: str) -> bool:
    """Stop the daemon ``pid`` found through ``pid_file`` and remove that file.

    Parameters
    ----------
    pid
        The running daemon's PID (from :func:`read_pid`), or None when none runs.
    pid_file
        Its PID file; removed in either case, so a stale one does not linger.
    timeout
        Seconds between SIGTERM and SIGKILL (see :func:`stop_daemon`).
    what
        The daemon's name for the log line, e.g. ``"SeaweedFS"``.

    Returns
    -------
    bool
        Whether a daemon ran and was stopped.
    """
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    stop_daemon(pid, timeout=timeout)
    pid_file.unlink(missing_ok=True)
    log.info("stopped %s (pid %d)", what, pid)
    return True
