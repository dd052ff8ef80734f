"""Server processes: start detached, find again by PID file, stop with their helpers; ports.

The embedded servers (PostgreSQL, SeaweedFS, the STAC API) are started as
argument lists, never through a shell, with
``subprocess.Popen(start_new_session=True)``: in a session of their own, output
appended to a log, so they outlive the command that started them.  A
long-running starter (a test session, a notebook kernel) keeps the
:class:`subprocess.Popen` and reaps the server when it exits, so it never
lingers as a zombie.

Everything about other processes goes through psutil (no ``/proc`` parsing, no
``ps``/``kill`` commands), so it works wherever psutil does (Linux, macOS, the
BSDs):

* A PID file records the PID and the process's creation time.  A PID is only
  taken as the server's when that process was created no later than the time
  recorded and its command line holds a marker (its data directory, its
  application): a PID that was reused by another program after the server died
  is never signalled.
* :func:`stop_daemon` sends one signal to the server, waits, kills it if it
  ignored the signal, then terminates (and kills if need be) every process it
  started: its descendants and, when it leads a session, the other members of
  that session (helpers that were reparented when their parent exited).
* :func:`port_problem` names the process that holds a port, from the system's
  socket table or, where that is not permitted (macOS without root), from the
  sockets of each process this user may inspect.

Ports are checked by binding them the way the servers will (``SO_REUSEADDR``),
not by connecting: a port can refuse connections and still be unbindable, because
the kernel hands the ports of its ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default on Linux) to outgoing
connections as their source port, and such a socket blocks ``bind`` while it is
open and for 60 s in ``TIME_WAIT`` after it closes, owned by no process and
invisible to ``ss -l``.  :func:`ensure_port_free` names what holds a port and
the setting to change.

This module sits at the bottom of the package (it imports only
:mod:`cbm_dask.errors`, the standard library and psutil), so that
:mod:`cbm_dask.store` and :mod:`cbm_dask.services` both build on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from cbm_dask.errors import CbmError, ServiceError

__all__ = [
    "PortHolder",
    "alive",
    "bind_listener",
    "ensure_port_free",
    "ephemeral_port_range",
    "free_port",
    "helpers_of",
    "log_tail",
    "port_holders",
    "port_in_use",
    "port_problem",
    "read_pid",
    "setting_env_name",
    "spawn_daemon",
    "stop_daemon",
    "stop_recorded",
    "verified_pid",
    "wait_until",
    "warn_if_ephemeral",
    "write_pid_file",
]

log = logging.getLogger(__name__)

# Servers this process started, kept so that they are reaped (no zombie) and so
# that Popen does not warn about a child it forgot.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_WILDCARDS = {"0.0.0.0", "::", "::ffff:0.0.0.0"}  # matched against, never bound
# Bound on how long a kernel keeps a closed connection in TIME_WAIT (Linux: 60 s).
_TIME_WAIT_S = 60
# Clock resolution of a process's creation time as the OS reports it, and of the
# whole seconds other programs (PostgreSQL's postmaster.pid) record.
_START_SLACK_S = 1.0
# Seconds the helpers of a stopped server get to exit after SIGTERM.
_HELPER_GRACE_S = 3.0
# The kernel's ephemeral port range when it cannot be read (Linux, IANA/BSD/macOS).
_DEFAULT_EPHEMERAL = (32768, 60999) if sys.platform.startswith("linux") else (49152, 65535)


# ---------------------------------------------------------------------------
# finding a process again


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs; an exited child of ours is reaped, a zombie is gone."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
            return False
    else:
        # A child started otherwise (e.g. by a helper of the caller): reap it if done.
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""  # not ours to read: judged by its creation time alone


def verified_pid(pid: int, *, marker: str, started: float | None = None) -> int | None:
    """Return ``pid`` if that process runs and is the one recorded, else None.

    Parameters
    ----------
    pid
        The recorded PID.
    marker
        A string the process's command line must contain (e.g. its data
        directory); not checked when the command line cannot be read.
    started
        When the recorded process was created, or a moment it already ran (epoch
        seconds), if known.  A process created later is another program that
        was given the same PID after the recorded one exited.
    """
    if not alive(pid):
        return None
    try:
        process = psutil.Process(pid)
        created = process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        created = None
    if started is not None and created is not None and created > started + _START_SLACK_S:
        log.debug("pid %d was created at %.2f, after the recorded %.2f: another program",
                  pid, created, started)
        return None
    cmdline = _cmdline(process)
    if cmdline and marker not in cmdline:
        log.debug("pid %d runs something else: %s", pid, cmdline)
        return None
    return pid


def write_pid_file(pid_file: Path, pid: int) -> None:
    """Record ``pid`` and its creation time in ``pid_file`` (read back by :func:`read_pid`)."""
    try:
        created = f"{psutil.Process(pid).create_time():.3f}\n"
    except psutil.Error:
        created = ""  # exited already: the PID alone, which read_pid will find dead
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n{created}")


def _read_record(pid_file: Path) -> tuple[int, float | None] | None:
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        return pid, float(fields[1])
    except (ValueError, IndexError):
        return pid, None  # written by an earlier version: the PID alone


def read_pid(pid_file: Path, marker: str) -> int | None:
    """Return the PID recorded in ``pid_file`` if that process runs and is ours.

    Parameters
    ----------
    pid_file
        File written by :func:`write_pid_file` (PID, creation time).
    marker
        A string the process's command line must contain (see :func:`verified_pid`).
    """
    record = _read_record(pid_file)
    if record is None:
        return None
    pid, started = record
    return verified_pid(pid, marker=marker, started=started)


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
    """Return the kernel's range of source ports of outgoing connections.

    Read from ``net.ipv4.ip_local_port_range`` on Linux; elsewhere, or when it
    cannot be read, the system's default (Linux 32768-60999, else 49152-65535).
    """
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port below the kernel's ephemeral range that can be bound now.

    For servers started on a port of their own (tests, benchmarks): binding port 0
    would give a port inside the range, which an outgoing connection may take.

    Raises
    ------
    ServiceError
        When no port between 10000 and the range is free.
    """
    low = ephemeral_port_range()[0]
    for _ in range(500):
        port = random.randrange(10000, low)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ServiceError(f"no free TCP port on {host} between 10000 and {low}; stop some "
                       "servers, or widen the range by lowering net.ipv4.ip_local_port_range")


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


@dataclass(frozen=True)
class PortHolder:
    """A TCP socket whose local end is a port asked about.

    Attributes
    ----------
    pid
        The process owning the socket; None when no process does (``TIME_WAIT``)
        or it belongs to a process this user may not inspect.
    status
        psutil's connection status (``LISTEN``, ``ESTABLISHED``, ``TIME_WAIT`` ...).
    remote
        ``(address, port)`` of the other end of a connection; None for a listener.
    """

    pid: int | None
    status: str
    remote: tuple[str, int] | None = None

    @property
    def listens(self) -> bool:
        """Whether the socket is a listening server socket."""
        return self.status == psutil.CONN_LISTEN


def _matches(laddr: object, port: int, host: str) -> bool:
    address = getattr(laddr, "ip", None)
    return (getattr(laddr, "port", None) == port
            and (address in _WILDCARDS or address in {host, f"::ffff:{host}"}))


def _remote(raddr: object) -> tuple[str, int] | None:
    return (raddr.ip, raddr.port) if hasattr(raddr, "ip") and hasattr(raddr, "port") else None


def _holders_by_process(port: int, host: str) -> list[PortHolder]:
    """Sockets on ``host:port`` among the processes this user may inspect, one at a time."""
    found: list[PortHolder] = []
    for process in psutil.process_iter():
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue  # gone, or another user's
        found.extend(PortHolder(process.pid, c.status, _remote(c.raddr))
                     for c in connections if _matches(c.laddr, port, host))
    return found


def port_holders(port: int, host: str = "127.0.0.1", *,
                 system_wide: bool = True) -> list[PortHolder]:
    """TCP sockets whose local end is ``host:port`` (or the wildcard address), listeners first.

    Parameters
    ----------
    port, host
        The address asked about.
    system_wide
        Read the system's socket table (every socket, including those no process
        owns).  Where that is not permitted, or when false, the sockets of each
        process this user may inspect are read instead.
    """
    found: list[PortHolder] | None = None
    if system_wide:
        try:
            found = [PortHolder(c.pid, c.status, _remote(c.raddr))
                     for c in psutil.net_connections(kind="tcp")
                     if _matches(c.laddr, port, host)]
        except psutil.Error:
            log.debug("the system's socket table is not readable; asking each process")
    if found is None:
        found = _holders_by_process(port, host)
    return sorted(found, key=lambda holder: not holder.listens)


def _process_name(pid: int | None) -> str:
    if pid is None:
        return "a process of another user"
    try:
        process = psutil.Process(pid)
        # One line, however the arguments were written (a ``-c`` script has newlines).
        cmdline = " ".join(" ".join(process.cmdline()).split())
        return f"pid {pid} ({cmdline[:160] or process.name()})"
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
    if first.listens:
        return (f"{where} is taken: {_process_name(first.pid)} listens on it; stop that "
                f"program or {change}")
    low, high = ephemeral_port_range()
    peer = f"{first.remote[0]}:{first.remote[1]}" if first.remote else "?"
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


def ensure_port_free(port: int, *, what: str, setting: str, host: str = "127.0.0.1",
                     error: type[CbmError] = ServiceError) -> None:
    """Check that a server can bind ``host:port`` now.

    Parameters
    ----------
    port, host
        The address the server will bind.
    what, setting
        The service and the configuration key of its port (see :func:`port_problem`).
    error
        The exception raised when the port is taken.

    Raises
    ------
    ServiceError
        (or ``error``) When it cannot; the message names the owner process if it
        can be found and the setting to change (see :func:`port_problem`).
    """
    try:
        _bind(port, host).close()
    except OSError as exc:
        raise error(port_problem(port, what=what, setting=setting, host=host)) from exc


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
        The server's argument list (run directly, no shell).
    log_file, pid_file
        Where its output goes and where its PID is recorded (:func:`write_pid_file`).
    cwd
        Its working directory.
    env
        Its environment (default: this process's).
    pass_fds
        File descriptors it inherits (e.g. a listening socket); all others are closed.

    Raises
    ------
    ServiceError
        When the binary cannot be executed.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log.debug("starting %s", " ".join(cmd))
    try:
        with log_file.open("ab") as out:
            child = subprocess.Popen(
                list(cmd), cwd=cwd, env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, pass_fds=tuple(pass_fds),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"could not start {cmd[0]} ({exc}); check the program is "
                           f"installed and executable, and see {log_file}") from exc
    _CHILDREN[child.pid] = child
    write_pid_file(pid_file, child.pid)
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


def _leads_session(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def _session_members(sid: int) -> list[psutil.Process]:
    members: list[psutil.Process] = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError):
            if process.pid != sid and os.getsid(process.pid) == sid:
                members.append(process)
    return members


def helpers_of(pid: int) -> list[psutil.Process]:
    """Return the processes ``pid`` started: its descendants and the rest of its session.

    Helpers whose parent exited are reparented and leave the tree, but stay in
    the session; the session is only searched when ``pid`` leads it, so the
    session of a terminal or a test runner is never swept.
    """
    try:
        found = {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return []
    if _leads_session(pid):
        for process in _session_members(pid):
            found.setdefault(process.pid, process)
    return list(found.values())


def _wait_gone(processes: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs; return those still running after ``timeout`` s.

    A zombie counts as gone: an orphan is reaped by init, not by us, and
    ``psutil.wait_procs`` would wait for that.
    """
    pending = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in pending if _same_alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.02)


def _same_alive(process: psutil.Process) -> bool:
    # is_running() compares the creation time too: a reused PID is not "still running".
    return process.is_running() and alive(process.pid)


def _signal_all(processes: Iterable[psutil.Process], sig: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)  # psutil refuses a process whose PID was reused


def stop_daemon(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Stop the server ``pid`` and every process it started; return whether it ran.

    ``sig`` goes to the server alone, which stops its helpers itself; after
    ``timeout`` seconds it is killed.  Helpers still running then (see
    :func:`helpers_of`) get SIGTERM, and SIGKILL a few seconds later, so
    nothing is left behind, even when the server had to be killed.

    Parameters
    ----------
    pid
        The server's PID (from :func:`read_pid` or :func:`verified_pid`).
    timeout
        Seconds the server gets to exit after ``sig``.
    sig
        The server's shutdown signal (SIGTERM; SIGINT is PostgreSQL's fast shutdown).
    """
    try:
        server = psutil.Process(pid)
    except psutil.NoSuchProcess:
        _forget(pid)
        return False
    leads = _leads_session(pid)
    helpers = helpers_of(pid)
    _signal_all([server], sig)
    if _wait_gone([server], timeout):
        log.warning("pid %d ignored signal %d for %.0f s; killing it", pid, sig, timeout)
        _signal_all([server], signal.SIGKILL)
        _wait_gone([server], 5)
    if leads:
        # Helpers started while it shut down, orphaned now but still in its session
        # (whose id no new process can be given while a member lives).
        helpers = list({p.pid: p for p in [*helpers, *_session_members(pid)]}.values())
    left = [p for p in helpers if _same_alive(p)]
    if left:
        _signal_all(left, signal.SIGTERM)
        left = _wait_gone(left, _HELPER_GRACE_S)
    if left:
        log.warning("helpers %s of pid %d outlived it; killing them",
                    ", ".join(str(p.pid) for p in left), pid)
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 5)
    _forget(pid)
    return True


def _forget(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.poll()  # reaps it, and Popen no longer thinks it runs


def stop_recorded(pid: int | None, pid_file: Path, *, timeout: float, what: str) -> bool:
    """Stop the daemon ``pid`` found through ``pid_file`` and remove that file.

    Parameters
    ----------
    pid
        The running daemon's PID (from :func:`read_pid`), or None when none runs.
    pid_file
        Its PID file; removed in either case, so a stale one does not linger.
    timeout
        Seconds between the shutdown signal and SIGKILL (see :func:`stop_daemon`).
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
