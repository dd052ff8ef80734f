"""Uploading archive files to the S3 object store, skipping unchanged objects."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

from cbm_dask.archive.sources import Upload
from cbm_dask.errors import ServiceError
from cbm_dask.objectstore import S3Settings
from cbm_dask.services.s3 import ensure_bucket, s3_client

__all__ = ["ObjectStore", "file_md5"]

log = logging.getLogger(__name__)

_MULTIPART_THRESHOLD = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


def file_md5(path: Path) -> str:
    """Hex MD5 of a file (what S3 reports as the ETag of a single-part upload)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectStore:
    """The archive bucket of one S3 endpoint.

    Parameters
    ----------
    settings
        Endpoint, credentials and bucket.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client: Any = s3_client(settings)

    def url(self, key: str) -> str:
        """``s3://bucket/key``."""
        return self.settings.object_url(key)

    def check(self) -> bool:
        """Make sure the bucket exists (create it when missing); return whether created.

        Raises
        ------
        ServiceError
            When the store is unreachable or refuses the bucket.
        """
        return ensure_bucket(self.settings)

    def _remote_md5(self, key: str) -> tuple[int, str | None] | None:
        import botocore.exceptions

        try:
            head = self._client.head_object(Bucket=self.settings.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise ServiceError(
                f"cannot inspect {self.url(key)} at {self.settings.endpoint_url} ({exc}); check "
                "the credentials and the bucket"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unreachable(key, exc) from exc
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        etag = str(head.get("ETag", "")).strip('"')
        md5 = metadata.get("md5") or (etag if "-" not in etag else None)
        return int(head.get("ContentLength", -1)), md5

    def _unreachable(self, key: str, exc: Exception) -> ServiceError:
        hint = ("start it with `cbm services up`" if self.settings.embedded
                else "check CBM_S3_ENDPOINT / cbm.s3.endpoint and the network")
        return ServiceError(
            f"uploading {self.url(key)}: the S3 object store at {self.settings.endpoint_url} "
            f"cannot be reached ({exc}); {hint}"
        )

    def upload(self, upload: Upload) -> bool:
        """Put ``upload.path`` at ``upload.key`` unless an identical object is there.

        Returns
        -------
        bool
            True when uploaded, False when the object was already identical
            (same size and MD5).

        Raises
        ------
        ServiceError
            When the store is unreachable or refuses the object; the message names
            the item, the asset and the object URL.
        """
        import botocore.exceptions
        from boto3.s3.transfer import TransferConfig

        md5 = file_md5(upload.path)
        size = upload.path.stat().st_size
        remote = self._remote_md5(upload.key)
        if remote is not None and remote == (size, md5):
            log.debug("unchanged: %s", self.url(upload.key))
            return False
        extra = {"ContentType": upload.content_type, "Metadata": {"md5": md5}}
        try:
            if size < _MULTIPART_THRESHOLD:
                with upload.path.open("rb") as body:
                    self._client.put_object(
                        Bucket=self.settings.bucket, Key=upload.key, Body=body,
                        ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(), **extra,
                    )
            else:
                self._client.upload_file(
                    str(upload.path), self.settings.bucket, upload.key, ExtraArgs=extra,
                    Config=TransferConfig(multipart_threshold=_MULTIPART_THRESHOLD),
                )
        except botocore.exceptions.ClientError as exc:
            raise ServiceError(
                f"item {upload.item_id!r} asset {upload.asset_key!r}: {self.url(upload.key)} "
                f"was refused by {self.settings.endpoint_url} ({exc}); check the credentials "
                "and the bucket's permissions"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unreachable(upload.key, exc) from exc
        log.debug("uploaded %s -> %s", upload.path, self.url(upload.key))
        return True
