"""The registry of local services managed together by ``cbm services``.

Each service is described by a :class:`ServiceSpec`: a name, the import path of
a factory that returns an object with ``up()``, ``down()`` and ``status()`` (the
:class:`Service` protocol) and the services it needs running first.  Services
start after the services they require (independent ones at the same time) and stop
before them.  Adding a service is one entry in :data:`BUILTIN` (or a call to
:func:`register`), e.g.::

    ServiceSpec("api", "cbm_dask.services.api:ApiService", requires=("database",),
                description="REST API")

Factories are imported lazily, so ``cbm services status`` does not import the
heavy dependencies of services it does not touch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

from cbm_dask.errors import ConfigError

__all__ = [
    "BUILTIN",
    "Service",
    "ServiceSpec",
    "ServiceState",
    "ServiceStatus",
    "down",
    "get_service",
    "names",
    "register",
    "resolve",
    "status",
    "up",
]

T = TypeVar("T")

ServiceState: TypeAlias = Literal["running", "stopped", "external"]
"""``running``/``stopped`` for embedded services; ``external`` when configured elsewhere."""


@dataclass(frozen=True)
class ServiceStatus:
    """What ``cbm services status`` shows for one service.

    Attributes
    ----------
    name
        Registry name (``database``, ``s3``, ``stac``).
    state
        ``running``, ``stopped`` or ``external`` (not managed by cbm).
    pid
        Process id of the embedded server, None when not running or external.
    address
        Where clients connect (URL without password), None when unknown.
    detail
        One line of extra information (data directory, reason ...).
    """

    name: str
    state: ServiceState
    pid: int | None = None
    address: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """Return the status as a JSON-ready mapping."""
        return {"service": self.name, "state": self.state, "pid": self.pid,
                "address": self.address, "detail": self.detail}


@runtime_checkable
class Service(Protocol):
    """Life cycle of one local service; every method is idempotent."""

    name: str

    def up(self) -> ServiceStatus:
        """Start the service if it is not running; return its status."""
        ...

    def down(self) -> bool:
        """Stop the service; return whether it was running."""
        ...

    def status(self) -> ServiceStatus:
        """Return the current status without changing anything."""
        ...


@dataclass(frozen=True)
class ServiceSpec:
    """A registry entry.

    Attributes
    ----------
    name
        Name used on the command line.
    factory
        ``"module:callable"`` (or ``"module:Class.method"``) returning a
        :class:`Service` built from the configuration at call time.
    requires
        Names of services that must run before this one starts.
    description
        One line for ``cbm services --help``.
    """

    name: str
    factory: str
    requires: tuple[str, ...] = ()
    description: str = ""


BUILTIN: tuple[ServiceSpec, ...] = (
    ServiceSpec("database", "cbm_dask.services.database:DatabaseService",
                description="PostgreSQL + PostGIS (embedded under $CBM_HOME/pg)"),
    ServiceSpec("s3", "cbm_dask.services.s3:SeaweedService.from_config",
                description="S3 object store (embedded SeaweedFS under $CBM_HOME/s3)"),
    ServiceSpec("stac", "cbm_dask.services.stac:StacService.from_config", requires=("database",),
                description="STAC API (stac-fastapi-pgstac over the pgstac database)"),
)

_REGISTRY: dict[str, ServiceSpec] = {spec.name: spec for spec in BUILTIN}


def register(spec: ServiceSpec) -> None:
    """Add (or replace) a service; new services start after the existing ones."""
    _REGISTRY[spec.name] = spec


def names() -> list[str]:
    """Return the registered service names in start order."""
    return list(_REGISTRY)


def _spec(name: str) -> ServiceSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown service {name!r}; known services: {', '.join(_REGISTRY)}"
        ) from None


def get_service(name: str) -> Service:
    """Build the service ``name`` from the current configuration."""
    module_name, _, attribute = _spec(name).factory.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return cast(Callable[[], Service], target)()


def resolve(selected: Iterable[str] | None = None, *, with_requirements: bool = False) -> list[str]:
    """Return the selected names (all when None) in registry order.

    With ``with_requirements`` the services they require are added.
    """
    wanted = list(_REGISTRY) if selected is None else [_spec(n).name for n in selected]
    if with_requirements:
        pending = list(wanted)
        while pending:
            for required in _spec(pending.pop()).requires:
                if required not in wanted:
                    wanted.append(required)
                    pending.append(required)
    chosen = set(wanted)
    return [name for name in _REGISTRY if name in chosen]


def _in_waves(order: list[str], after: Callable[[str], Iterable[str]],
              action: Callable[[str], T]) -> dict[str, T]:
    """Run ``action`` on every name, each once all names ``after(name)`` are done.

    Names whose predecessors are done run together in threads (the services
    mostly wait for a server to answer); the first error, in ``order``, is
    raised once the running wave has finished.
    """
    done: dict[str, T] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(order)),
                            thread_name_prefix="cbm-services") as pool:
        while len(done) < len(order):
            wave = [n for n in order if n not in done
                    and all(m in done for m in after(n) if m in order)]
            if not wave:
                raise ConfigError(
                    f"the services {', '.join(n for n in order if n not in done)} require "
                    "each other in a circle; fix the requires of their ServiceSpec"
                )
            futures = {name: pool.submit(action, name) for name in wave}
            errors = [f.exception() for f in futures.values()]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
            done.update({name: f.result() for name, f in futures.items()})
    return done


def up(selected: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Start the selected services and those they require; independent ones together."""
    order = resolve(selected, with_requirements=True)
    started = _in_waves(order, lambda name: _spec(name).requires,
                        lambda name: get_service(name).up())
    return [started[name] for name in order]


def down(selected: Iterable[str] | None = None) -> list[tuple[str, bool]]:
    """Stop the selected services, each after those that need it; return (name, was running)."""
    order = resolve(selected)
    stopped = _in_waves(order, lambda name: [m for m in order if name in _spec(m).requires],
                        lambda name: get_service(name).down())
    return [(name, stopped[name]) for name in reversed(order)]


def status(selected: Iterable[str] | None = None) -> list[ServiceStatus]:
    """Return the status of the selected services in registry order."""
    return [get_service(name).status() for name in resolve(selected)]
