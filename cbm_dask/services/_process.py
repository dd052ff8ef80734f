"""Daemon processes of the embedded services: spawn, PID files, ports, readiness, stop.

The services (SeaweedFS, the STAC API) are started with
``Popen(start_new_session=True)``: in their own session, output appended to a
log, so they outlive ``cbm services up``.  A long-running starter (a test
session, a notebook kernel) keeps the :class:`subprocess.Popen` and reaps the
server when it exits, so it never lingers as a zombie.  They are found again
through a PID file and recognised by a marker in their command line (read with
psutil), so a stale PID file whose number was reused by an unrelated process is
ignored.

Ports are checked by binding them the way the servers will (``SO_REUSEADDR``),
not by connecting: a port can refuse connections and still be unbindable, because
the kernel hands the ports of its ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default) to outgoing
connections as their source port, and such a socket blocks ``bind`` while it is
open and for 60 s in ``TIME_WAIT`` after it closes, owned by no process and
invisible to ``ss -l``.  :func:`ensure_port_free` names what holds a port and
the setting to change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

from cbm_dask.errors import ServiceError

__all__ = [
    "alive",
    "bind_listener",
    "ensure_port_free",
    "ephemeral_port_range",
    "free_port",
    "log_tail",
    "port_holders",
    "port_in_use",
    "port_problem",
    "read_pid",
    "setting_env_name",
    "spawn_daemon",
    "stop_daemon",
    "stop_recorded",
    "wait_until",
    "warn_if_ephemeral",
]

log = logging.getLogger(__name__)

# Servers this process started, kept so that they are reaped (no zombie) and so
# that Popen does not warn about a child it forgot.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_LOOPBACK_ANY = {"0.0.0.0", "::", "::ffff:0.0.0.0"}  # matched against, never bound
# Bound on how long a kernel keeps a closed connection in TIME_WAIT (Linux: 60 s).
_TIME_WAIT_S = 60


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (exited children of ours are reaped first)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    if child is None:
        try:  # a child started otherwise (e.g. by a helper of the caller): reap it if done
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
        except ChildProcessError:
            pass
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


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


# ---------------------------------------------------------------------------
# ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def setting_env_name(setting: str) -> str:
    """Return the environment variable of a setting (``cbm.stac.port``: DASK_CBM__STAC__PORT)."""
    return "DASK_" + setting.upper().replace(".", "__").replace("-", "_")


def ephemeral_port_range() -> tuple[int, int]:
    """Return the kernel's range of source ports of outgoing connections (default 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port below the kernel's ephemeral range that can be bound now.

    For servers started on a port of their own (tests, benchmarks): binding port 0
    would give a port inside the range, which an outgoing connection may take.
    """
    import random

    low = ephemeral_port_range()[0]
    for _ in range(500):
        port = random.randrange(10000, low)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ServiceError(f"no free TCP port on {host} between 10000 and {low}")


def _reserved_ports() -> set[int]:
    """Ports excluded from the ephemeral range by ``net.ipv4.ip_local_reserved_ports``."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    except OSError:
        return set()
    reserved: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        reserved.update(range(int(low), int(high or low) + 1))
    return reserved


def warn_if_ephemeral(ports: Mapping[str, int]) -> list[str]:
    """Log a warning for each setting whose port the kernel may give to outgoing connections.

    Parameters
    ----------
    ports
        Port by setting name (``{"cbm.stac.port": 28082}``).

    Returns
    -------
    list of str
        The settings warned about.
    """
    low, high = ephemeral_port_range()
    risky = [name for name, port in ports.items() if low <= port <= high]
    if risky:
        reserved = _reserved_ports()
        risky = [name for name in risky if ports[name] not in reserved]
    for name in risky:
        log.warning(
            "%s=%d lies in the kernel's ephemeral port range %d-%d: an outgoing connection "
            "may hold it and make the start fail with 'address already in use'; choose a port "
            "below %d (or reserve it in net.ipv4.ip_local_reserved_ports)",
            name, ports[name], low, high, low)
    return risky


def port_holders(port: int, host: str = "127.0.0.1") -> list[psutil._common.sconn]:
    """TCP sockets whose local end is ``host:port`` (or the wildcard address), listeners first."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    found = [c for c in connections
             if c.laddr and c.laddr.port == port
             and (c.laddr.ip in _LOOPBACK_ANY or c.laddr.ip in {host, f"::ffff:{host}"})]
    return sorted(found, key=lambda c: c.status != psutil.CONN_LISTEN)


def _process_name(pid: int | None) -> str:
    if pid is None:
        return "a process of another user"
    try:
        process = psutil.Process(pid)
        return f"pid {pid} ({' '.join(process.cmdline())[:160] or process.name()})"
    except psutil.Error:
        return f"pid {pid}"


def port_problem(port: int, *, what: str, setting: str, host: str = "127.0.0.1") -> str:
    """Say what holds ``host:port`` and how to choose another port (an error message).

    Parameters
    ----------
    port, host
        The address that could not be bound.
    what
        The service that needs it, e.g. ``"STAC API"``.
    setting
        The configuration key of the port, e.g. ``"cbm.stac.port"``.
    """
    change = f"choose another with {setting} (env {setting_env_name(setting)})"
    holders = port_holders(port, host)
    where = f"port {port} on {host} ({what})"
    if not holders:
        return f"{where} cannot be bound (address already in use); {change}"
    first = holders[0]
    if first.status == psutil.CONN_LISTEN:
        return (f"{where} is taken: {_process_name(first.pid)} listens on it; stop that "
                f"program or {change}")
    low, high = ephemeral_port_range()
    peer = f"{first.raddr.ip}:{first.raddr.port}" if first.raddr else "?"
    owner = "no process" if first.pid is None else _process_name(first.pid)
    released = (f"; it is released within {_TIME_WAIT_S} s"
                if first.status == psutil.CONN_TIME_WAIT else "")
    held = f"{where} is held by the local end of a connection to {peer} ({first.status}, {owner})"
    if low <= port <= high:
        return (f"{held}: the kernel gave this port, which lies in its ephemeral range "
                f"{low}-{high} (net.ipv4.ip_local_port_range), to an outgoing connection"
                f"{released}; choose a port below {low} with {setting} (env "
                f"{setting_env_name(setting)}), or reserve it in net.ipv4.ip_local_reserved_ports")
    return f"{held}: an outgoing connection uses it as its source port{released}; {change}"


def _bind(port: int, host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As every server here does, so that its own closed connections do not block.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def ensure_port_free(port: int, *, what: str, setting: str, host: str = "127.0.0.1") -> None:
    """Check that a server can bind ``host:port`` now.

    Raises
    ------
    ServiceError
        When it cannot; the message names the owner process if it can be
        found and the setting to change (see :func:`port_problem`).
    """
    try:
        _bind(port, host).close()
    except OSError as exc:
        raise ServiceError(port_problem(port, what=what, setting=setting, host=host)) from exc


def bind_listener(port: int, *, what: str, setting: str, host: str = "127.0.0.1",
                  backlog: int = 2048) -> socket.socket:
    """Bind and listen on ``host:port`` for a server that will inherit the socket.

    Handing the bound socket to the server leaves no moment in which another
    socket can take the port between the check and the server's own ``bind``.

    Raises
    ------
    ServiceError
        When the port cannot be bound (message as :func:`ensure_port_free`).
    """
    try:
        sock = _bind(port, host)
    except OSError as exc:
        raise ServiceError(port_problem(port, what=what, setting=setting, host=host)) from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


# ---------------------------------------------------------------------------
# life cycle


def spawn_daemon(
    cmd: Sequence[str], *, log_file: Path, pid_file: Path, cwd: Path,
    env: Mapping[str, str] | None = None, pass_fds: Iterable[int] = (),
) -> int:
    """Start ``cmd`` detached (own session, output appended to ``log_file``); return its PID.

    Parameters
    ----------
    cmd
        The server's command line.
    log_file, pid_file
        Where its output goes and where its PID is recorded.
    cwd
        Its working directory.
    env
        Its environment (default: this process's).
    pass_fds
        File descriptors it inherits (e.g. a listening socket).

    Raises
    ------
    ServiceError
        When the binary cannot be executed.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log.debug("starting %s", " ".join(cmd))
    try:
        with log_file.open("ab") as out:
            child = subprocess.Popen(
                list(cmd), cwd=cwd, env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=tuple(pass_fds),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"could not start {cmd[0]} ({exc}); see {log_file}") from exc
    _CHILDREN[child.pid] = child
    pid_file.write_text(f"{child.pid}\n")
    return child.pid


def log_tail(log_file: Path, lines: int = 8) -> str:
    """Return the last ``lines`` lines of a log file joined by ' | ' (empty if unreadable)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool], *, pid: int, timeout: float, what: str, log_file: Path,
    interval: float = 0.05,
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


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout`` s."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [pid for pid in pending if alive(pid)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return pending


def stop_daemon(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` s, then SIGKILL; return whether it ran.

    Processes the server started itself are stopped with it.
    """
    try:
        process = psutil.Process(pid)
        helpers = process.children(recursive=True)
        process.send_signal(sig)
    except psutil.NoSuchProcess:
        return False
    left = _wait_gone([pid], timeout)
    if left:
        log.warning("pid %d ignored signal %d for %.0f s; killing it", pid, sig, timeout)
    for straggler in [*left, *(h.pid for h in helpers if alive(h.pid))]:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(straggler).kill()
    _wait_gone([pid, *(h.pid for h in helpers)], 5)
    _CHILDREN.pop(pid, None)
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
