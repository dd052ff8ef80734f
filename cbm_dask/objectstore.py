"""Where the archive's objects live: the S3 settings every client reads them with.

:class:`S3Settings` says where the archive's objects are and how to sign
requests.  It is built by :meth:`S3Settings.from_config` from ``cbm.s3``, read at
call time:

* ``endpoint: null`` (the default) is the embedded SeaweedFS that
  ``cbm services up`` runs on 127.0.0.1 with its data under ``$CBM_HOME/s3``.
  Its access key and secret are generated on its first start and kept in
  :func:`embedded_identity_file` (``$CBM_HOME/s3/identity.json``, mode 0600), which
  is also SeaweedFS's identity file, so every request is really signed;
* any other endpoint (CDSE, AWS, MinIO ...) is external: ``CBM_S3_ENDPOINT``,
  ``CBM_S3_BUCKET`` and ``CBM_S3_REGION`` override the configuration, and the
  credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
  (``AWS_SESSION_TOKEN``), else ``cbm.s3.access-key``/``secret-key``, else
  boto3's default chain.

Running the embedded store is :mod:`cbm_dask.services.s3`'s business; this
module only knows where it keeps its credentials, so readers of the archive
need nothing of the services.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from cbm_dask import config
from cbm_dask.errors import ConfigError, ServiceError

__all__ = [
    "S3Settings",
    "embedded_identity_file",
    "embedded_store_dir",
    "read_embedded_identity",
]

_TRUE = {"1", "true", "yes", "on"}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def embedded_store_dir() -> Path:
    """Return the embedded store's directory, ``$CBM_HOME/s3`` (data, identity, logs)."""
    return config.home() / "s3"


def embedded_identity_file() -> Path:
    """Return the embedded store's identity file (its generated credentials)."""
    return embedded_store_dir() / "identity.json"


def read_embedded_identity() -> dict[str, str]:
    """Return the embedded store's credentials: ``access_key``, ``secret_key``, ``admin_password``.

    Raises
    ------
    ServiceError
        When the store was never started, so its credentials do not exist yet.
    """
    path = embedded_identity_file()
    if not path.exists():
        raise ServiceError(
            f"the embedded S3 store under {embedded_store_dir()} has not been started yet "
            f"(no {path.name}); run `cbm services up`, or set CBM_S3_ENDPOINT to use an "
            "external S3"
        )
    data = json.loads(path.read_text())
    credentials = data["identities"][0]["credentials"][0]
    return {"access_key": credentials["accessKey"], "secret_key": credentials["secretKey"],
            "admin_password": data.get("cbm", {}).get("admin_password", "")}


@dataclass(frozen=True)
class S3Settings:
    """Where the archive's objects live and how to reach them.

    Attributes
    ----------
    endpoint
        ``host[:port]`` of the S3 API, without scheme (``127.0.0.1:28333``,
        ``eodata.dataspace.copernicus.eu``).
    region
        Signing region (SeaweedFS and MinIO accept any).
    access_key, secret_key, session_token
        Credentials; None means unsigned requests when :attr:`unsigned`, else
        boto3's default credential chain.  Not shown by ``repr``.
    bucket
        The bucket ``cbm archive publish`` writes to.
    https
        Whether the endpoint speaks HTTPS.
    path_style
        Path-style addressing (``https://host/bucket/key``) rather than
        virtual-hosted buckets (``https://bucket.host/key``).
    unsigned
        Anonymous requests (public buckets).
    embedded
        Whether this is the embedded SeaweedFS managed by ``cbm services``.
    """

    endpoint: str
    region: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    bucket: str = "cbm-archive"
    https: bool = True
    path_style: bool = True
    unsigned: bool = False
    session_token: str | None = field(default=None, repr=False)
    embedded: bool = False

    @property
    def endpoint_url(self) -> str:
        """The endpoint as a URL (``http://127.0.0.1:28333``)."""
        return f"{'https' if self.https else 'http'}://{self.endpoint}"

    def object_url(self, key: str, bucket: str | None = None) -> str:
        """Return ``s3://bucket/key``, the href form stored in STAC items."""
        return f"s3://{bucket or self.bucket}/{key.lstrip('/')}"

    def with_bucket(self, bucket: str | None) -> S3Settings:
        """Return a copy writing to ``bucket`` (unchanged when None)."""
        return self if not bucket else replace(self, bucket=bucket)

    @classmethod
    def from_config(cls) -> S3Settings:
        """Build the settings from ``cbm.s3`` and the environment (read now).

        Raises
        ------
        ServiceError
            When the embedded store is configured but was never started (its
            generated credentials do not exist yet).
        ConfigError
            When ``cbm.s3.endpoint`` is not a URL or ``host[:port]``.
        """
        bucket = _env("CBM_S3_BUCKET") or str(config.get("s3.bucket"))
        endpoint = _env("CBM_S3_ENDPOINT") or config.get("s3.endpoint", None)
        if not endpoint:
            identity = read_embedded_identity()
            return cls(
                endpoint=f"127.0.0.1:{int(config.get('s3.port'))}",
                region=str(config.get("s3.region")),
                access_key=identity["access_key"],
                secret_key=identity["secret_key"],
                bucket=bucket,
                https=False,
                path_style=True,
                embedded=True,
            )
        host, https = _split_endpoint(str(endpoint), bool(config.get("s3.https")))
        region = (_env("CBM_S3_REGION") or _env("AWS_REGION") or _env("AWS_DEFAULT_REGION")
                  or str(config.get("s3.region")))
        unsigned = (bool(config.get("s3.unsigned"))
                    or (_env("AWS_NO_SIGN_REQUEST") or "").lower() in _TRUE)
        access_key = _env("AWS_ACCESS_KEY_ID") or config.get("s3.access-key", None)
        secret_key = _env("AWS_SECRET_ACCESS_KEY") or config.get("s3.secret-key", None)
        if bool(access_key) != bool(secret_key):
            raise ConfigError(
                "only one of the S3 access key and secret is set; set both "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or cbm.s3.access-key and "
                "cbm.s3.secret-key), or neither to use the boto3 credential chain"
            )
        return cls(
            endpoint=host,
            region=region,
            access_key=None if unsigned else access_key,
            secret_key=None if unsigned else secret_key,
            session_token=None if unsigned else _env("AWS_SESSION_TOKEN"),
            bucket=bucket,
            https=https,
            path_style=bool(config.get("s3.path-style")),
            unsigned=unsigned,
        )


def _split_endpoint(endpoint: str, default_https: bool) -> tuple[str, bool]:
    """``https://host:port/`` or ``host:port`` → (``host:port``, https)."""
    text = endpoint.strip()
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ConfigError(
                f"S3 endpoint {endpoint!r} is not an http(s) URL nor host[:port]; set "
                "CBM_S3_ENDPOINT or cbm.s3.endpoint to e.g. https://eodata.dataspace.copernicus.eu"
            )
        return parsed.netloc, parsed.scheme == "https"
    if not text or "/" in text:
        raise ConfigError(
            f"S3 endpoint {endpoint!r} is not an http(s) URL nor host[:port]; set "
            "CBM_S3_ENDPOINT or cbm.s3.endpoint to e.g. https://eodata.dataspace.copernicus.eu"
        )
    return text, default_https
