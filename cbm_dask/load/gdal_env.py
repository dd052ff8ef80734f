"""GDAL/rasterio settings for reading the archive, captured once and re-applied in Dask tasks.

GDAL keeps its configuration per process (and rasterio per thread), so options set
in a notebook never reach the Dask workers that read the pixels.  The remedy is
to *capture* the options once, on the client, into a small frozen, picklable
:class:`GdalEnv`, and to *apply* it around every task that opens a raster::

    env = capture_gdal_env()                 # cbm.gdal.options + cbm.s3 settings

    @env.wrap                                # or: with env.apply(): ...
    def read_window(href, window):
        with rasterio.open(href) as src:
            return src.read(1, window=window)

    dask.delayed(read_window)("s3://cbm-archive/…/B04.tif", window)

The captured options are those of ``cbm.gdal.options`` (overridden by ``GDAL_*``,
``CPL_*`` and ``VSI_*`` variables of the capturing process) plus the S3 endpoint
options derived from :class:`~cbm_dask.objectstore.S3Settings`: ``AWS_S3_ENDPOINT``,
``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``, ``AWS_REGION``, ``AWS_NO_SIGN_REQUEST``.
Credentials travel as a rasterio :class:`~rasterio.session.AWSSession` (rasterio
refuses them as plain options).  :class:`GdalEnv` is the one place where options
become a session: :meth:`GdalEnv.apply` for rasterio, :meth:`GdalEnv.task_env` for
odc-loader's tasks, and :func:`configure_odc_stac` for odc-stac's process-wide
configuration all use :meth:`GdalEnv.aws_session_kwargs`.

The credentials are part of the pickled object, so they travel to the workers
with the graph, like odc-stac's own session settings; they are hidden from
``repr``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from cbm_dask import config
from cbm_dask.objectstore import S3Settings

if TYPE_CHECKING:
    import rasterio.env
    import rasterio.session

__all__ = [
    "CREDENTIAL_OPTIONS",
    "GdalEnv",
    "capture_gdal_env",
    "configure_odc_stac",
    "s3_gdal_options",
]

P = ParamSpec("P")
R = TypeVar("R")

CREDENTIAL_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Options carried as session credentials, never as plain GDAL options."""

# Environment variables that describe the capturing machine, not the data access.
_MACHINE_LOCAL = {"GDAL_DATA", "GDAL_DRIVER_PATH", "GDAL_CONFIG_FILE", "CPL_TMPDIR",
                  "GDAL_CURL_CA_BUNDLE", "GDAL_PAM_PROXY_DIR",
                  "CPL_DEBUG", "CPL_LOG", "GDAL_CACHEMAX", "GDAL_NUM_THREADS"}
_ENV_PREFIXES = ("GDAL_", "CPL_", "VSI_")
_TRUE = {"1", "YES", "TRUE", "ON"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value)


def s3_gdal_options(settings: S3Settings) -> dict[str, str]:
    """Return the GDAL options that point ``/vsis3/`` (``s3://`` hrefs) at ``settings`` (pure).

    Credentials are not included; see :meth:`GdalEnv.options`.
    """
    options = {
        "AWS_S3_ENDPOINT": settings.endpoint,
        "AWS_HTTPS": "YES" if settings.https else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE" if settings.path_style else "TRUE",
        "AWS_REGION": settings.region,
    }
    if settings.unsigned:
        options["AWS_NO_SIGN_REQUEST"] = "YES"
    return options


@dataclass(frozen=True)
class GdalEnv:
    """A picklable snapshot of the GDAL configuration to read the archive with.

    Attributes
    ----------
    config
        GDAL configuration options as sorted ``(name, value)`` pairs, without
        credentials (``AWS_S3_ENDPOINT``, ``GDAL_HTTP_MAX_RETRY`` ...).
    access_key, secret_key, session_token
        S3 credentials, applied through a rasterio ``AWSSession``; hidden from
        ``repr``.  None: unsigned when ``AWS_NO_SIGN_REQUEST=YES``, else the
        boto3 credential chain of the process that applies the environment.
    """

    config: tuple[tuple[str, str], ...] = ()
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GdalEnv:
        """Build an environment from plain GDAL options (credentials split off)."""
        plain = {str(k): _text(v) for k, v in options.items() if v is not None}
        return cls(
            config=tuple(sorted((k, v) for k, v in plain.items() if k not in CREDENTIAL_OPTIONS)),
            access_key=plain.get("AWS_ACCESS_KEY_ID"),
            secret_key=plain.get("AWS_SECRET_ACCESS_KEY"),
            session_token=plain.get("AWS_SESSION_TOKEN"),
        )

    # -- views ---------------------------------------------------------------
    def gdal_options(self) -> dict[str, str]:
        """GDAL options without credentials (what ``rasterio.Env(**options)`` accepts)."""
        return dict(self.config)

    def options(self) -> dict[str, str]:
        """Every option, credentials included, as environment-variable style names.

        Suitable for ``os.environ`` of a worker process or for loaders that take a
        mapping; treat the result as secret.
        """
        merged = self.gdal_options()
        for name, value in zip(CREDENTIAL_OPTIONS,
                               (self.access_key, self.secret_key, self.session_token),
                               strict=True):
            if value:
                merged[name] = value
        return merged

    @property
    def uses_s3(self) -> bool:
        """Whether an S3 endpoint or S3 credentials are configured."""
        names = dict(self.config)
        return bool(self.access_key or "AWS_S3_ENDPOINT" in names
                    or "AWS_NO_SIGN_REQUEST" in names)

    def aws_session_kwargs(self) -> dict[str, Any] | None:
        """Keyword arguments of :class:`rasterio.session.AWSSession`, None without S3.

        Only the settings given appear (rasterio's defaults stand for the rest), but
        ``aws_unsigned`` always does, so a worker's own ``AWS_NO_SIGN_REQUEST`` cannot
        turn signing off.
        """
        if not self.uses_s3:
            return None
        names = dict(self.config)
        unsigned = names.get("AWS_NO_SIGN_REQUEST", "NO").strip().upper() in _TRUE
        settings = {
            "region_name": names.get("AWS_REGION") or names.get("AWS_DEFAULT_REGION"),
            "profile_name": names.get("AWS_PROFILE"),
            "endpoint_url": names.get("AWS_S3_ENDPOINT"),
        }
        if not unsigned:
            settings.update(aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key,
                            aws_session_token=self.session_token)
        kwargs: dict[str, Any] = {"aws_unsigned": unsigned}
        kwargs.update({name: value for name, value in settings.items() if value})
        if names.get("AWS_REQUEST_PAYER", "").strip().upper() in _TRUE | {"REQUESTER"}:
            kwargs["requester_pays"] = True
        return kwargs

    def with_defaults(self, defaults: Mapping[str, Any]) -> GdalEnv:
        """Return a copy with the plain GDAL options ``defaults`` where not set already."""
        merged = {str(k): _text(v) for k, v in defaults.items() if v is not None}
        merged.update(self.config)
        return GdalEnv(config=tuple(sorted(merged.items())), access_key=self.access_key,
                       secret_key=self.secret_key, session_token=self.session_token)

    def task_env(self) -> dict[str, Any]:
        """Return the environment odc-loader applies in each of its tasks.

        The GDAL options, and under ``_aws`` the :meth:`aws_session_kwargs` from which
        odc-loader builds the rasterio ``AWSSession`` in the worker; like
        :meth:`options`, the result holds the credentials.
        """
        env: dict[str, Any] = self.gdal_options()
        session = self.aws_session_kwargs()
        if session:
            env["_aws"] = session
        return env

    # -- application ---------------------------------------------------------
    def rasterio_env(self) -> rasterio.env.Env:
        """Return a (not yet entered) :class:`rasterio.Env` for this configuration."""
        import rasterio

        kwargs = self.aws_session_kwargs()
        session = _aws_session(tuple(sorted(kwargs.items()))) if kwargs is not None else None
        return rasterio.Env(session=session, **self.gdal_options())

    @contextmanager
    def apply(self) -> Iterator[GdalEnv]:
        """Make this configuration current in this thread for the ``with`` block.

        Use it inside Dask tasks (or :meth:`wrap` the task function); nesting is
        allowed and the previous configuration is restored on exit.
        """
        with self.rasterio_env():
            yield self

    def wrap(self, func: Callable[P, R]) -> Callable[P, R]:
        """Return ``func`` running under :meth:`apply`; picklable when ``func`` is."""
        return _InGdalEnv(self, func)


@functools.lru_cache(maxsize=8)
def _aws_session(settings: tuple[tuple[str, Any], ...]) -> rasterio.session.AWSSession:
    """One rasterio AWSSession per process and settings (a new boto3 session costs ~50 ms)."""
    from rasterio.session import AWSSession

    return AWSSession(**dict(settings))


class _InGdalEnv(Generic[P, R]):
    """``func`` wrapped to run inside a :class:`GdalEnv` (a class, so it pickles)."""

    def __init__(self, env: GdalEnv, func: Callable[P, R]) -> None:
        self.env = env
        self.func = func
        self.__name__ = getattr(func, "__name__", "in_gdal_env")
        self.__qualname__ = getattr(func, "__qualname__", self.__name__)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.env.apply():
            return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.__name__} in {self.env!r}>"


def capture_gdal_env(
    s3: S3Settings | None = None, *, with_s3: bool = True, extra: Mapping[str, Any] | None = None,
) -> GdalEnv:
    """Capture the GDAL configuration for reading the archive, once, on the client.

    Parameters
    ----------
    s3
        Object store settings; default :meth:`S3Settings.from_config` (the
        embedded SeaweedFS, or ``CBM_S3_ENDPOINT``).
    with_s3
        False to capture only the GDAL options (e.g. for public ``https://`` COGs),
        without touching the S3 configuration.
    extra
        Options that win over everything else.

    Returns
    -------
    GdalEnv
        ``cbm.gdal.options``, then ``GDAL_*``/``CPL_*``/``VSI_*`` variables of this
        process (except machine-local ones such as ``GDAL_DATA``), then the S3
        options and credentials, then ``extra``.

    Raises
    ------
    ServiceError
        When the embedded store is configured but was never started.
    """
    options: dict[str, str] = {
        str(k): _text(v) for k, v in dict(config.get("gdal.options", {}) or {}).items()
        if v is not None
    }
    options.update({k: v for k, v in os.environ.items()
                    if k.startswith(_ENV_PREFIXES) and k not in _MACHINE_LOCAL})
    if with_s3:
        settings = s3 if s3 is not None else S3Settings.from_config()
        options.update(s3_gdal_options(settings))
        if not settings.unsigned:
            for name, value in zip(CREDENTIAL_OPTIONS,
                                   (settings.access_key, settings.secret_key,
                                    settings.session_token), strict=True):
                if value:
                    options[name] = value
    if extra:
        options.update({str(k): _text(v) for k, v in extra.items() if v is not None})
    return GdalEnv.from_options(options)


def configure_odc_stac(env: GdalEnv) -> None:
    """Hand ``env`` to odc-stac (:func:`odc.stac.configure_rio`) in this process.

    ``odc.stac.load`` captures that configuration into the task graph it builds,
    so its Dask tasks read with the same endpoint, options and credentials.
    """
    from odc.stac import configure_rio

    options: dict[str, Any] = env.gdal_options()
    configure_rio(cloud_defaults=True, aws=env.aws_session_kwargs(), **options)
