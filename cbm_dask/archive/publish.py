"""``cbm archive publish``: COGs into the object store, their items into the STAC API."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbm_dask import config
from cbm_dask.archive._objects import ObjectStore
from cbm_dask.archive._stac_api import StacTransactions
from cbm_dask.archive.sources import PlannedItem, plan_directory
from cbm_dask.errors import InputError
from cbm_dask.objectstore import S3Settings

__all__ = ["PublishReport", "publish"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishReport:
    """What a publish did.

    Attributes
    ----------
    source
        The directory published.
    layout
        ``world`` (synthetic world) or ``cogs`` (folders of COGs).
    stac_url
        The STAC API the items were registered in.
    endpoint, bucket
        Where the objects went.
    collections
        ``(collection id, "created" | "extended" | "unchanged")`` pairs.
    items_created, items_updated
        Ids of the items registered for the first time / replaced.
    objects_uploaded, objects_unchanged
        Files put into the store / found there identical and skipped.
    seconds
        Wall time.
    """

    source: Path
    layout: str
    stac_url: str
    endpoint: str
    bucket: str
    collections: tuple[tuple[str, str], ...]
    items_created: tuple[str, ...]
    items_updated: tuple[str, ...]
    objects_uploaded: int
    objects_unchanged: int
    seconds: float

    @property
    def items(self) -> tuple[str, ...]:
        """Every item id registered (created or updated)."""
        return self.items_created + self.items_updated

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "source": str(self.source),
            "layout": self.layout,
            "stac_url": self.stac_url,
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "collections": dict(self.collections),
            "items_created": len(self.items_created),
            "items_updated": len(self.items_updated),
            "objects_uploaded": self.objects_uploaded,
            "objects_unchanged": self.objects_unchanged,
            "seconds": round(self.seconds, 2),
        }


def _batches(items: Sequence[PlannedItem], size: int) -> list[list[PlannedItem]]:
    """Consecutive runs of at most ``size`` items of one collection."""
    batches: list[list[PlannedItem]] = []
    for planned in items:
        if batches and batches[-1][0].collection == planned.collection \
                and len(batches[-1]) < size:
            batches[-1].append(planned)
        else:
            batches.append([planned])
    return batches


def _publish_batch(
    batch: list[PlannedItem], store: ObjectStore, api: StacTransactions,
    pool: ThreadPoolExecutor,
) -> tuple[list[str], list[str], int, int]:
    """Upload the batch's assets, then register its items (created, updated, up, same)."""
    uploads = [u for planned in batch for u in planned.uploads]
    results = list(pool.map(store.upload, uploads))
    uploaded = sum(results)
    created, updated = api.upsert_items(batch[0].collection, [p.item for p in batch])
    log.info("%s: %d items created, %d updated (%d objects uploaded, %d unchanged)",
             batch[0].collection, len(created), len(updated), uploaded, len(results) - uploaded)
    return created, updated, uploaded, len(results) - uploaded


def publish(
    directory: Path,
    *,
    collections: Sequence[str] | None = None,
    bucket: str | None = None,
    s3: S3Settings | None = None,
    stac_url: str | None = None,
    workers: int | None = None,
) -> PublishReport:
    """Publish a synthetic world or folders of real COGs into the archive.

    The order makes a publish safe to interrupt and to repeat:

    1. every item is planned and every COG opened (a missing, corrupt or
       unprojected file stops here, before any service is touched);
    2. the STAC API is checked (reachable, Transaction extension) and the
       bucket created when missing;
    3. missing collections are created, existing ones get their extent grown;
    4. per batch of items (``cbm.archive.batch-size``, one collection), their
       files are uploaded (unchanged objects skipped: same size and MD5) and
       only then the items are registered (created, or replaced when they
       exist), so no item is ever registered before its assets are stored.

    Parameters
    ----------
    directory
        A world written by ``cbm world build`` or a folder (of folders) of COGs;
        see :mod:`cbm_dask.archive.sources`.
    collections
        Publish only these collection ids.
    bucket
        Bucket to write to (default ``cbm.s3.bucket`` / ``CBM_S3_BUCKET``).
    s3
        Object store settings (default :meth:`S3Settings.from_config`).
    stac_url
        STAC API to register in (default :func:`cbm_dask.services.stac.stac_url`).
    workers
        Parallel uploads (default ``cbm.archive.upload-workers``).

    Returns
    -------
    PublishReport

    Raises
    ------
    InputError
        For a bad directory, item or COG (message names the file and item).
    ServiceError
        When the object store or the STAC API cannot be reached or refuses a
        write (message names the URL and the item/object).
    """
    from cbm_dask.services.stac import stac_url as default_stac_url

    started = time.monotonic()
    settings = (s3 if s3 is not None else S3Settings.from_config()).with_bucket(bucket)
    url = (stac_url or default_stac_url()).rstrip("/")
    plan = plan_directory(Path(directory), bucket=settings.bucket, collections=collections)
    if not plan.items:
        raise InputError(f"{plan.source} holds no items to publish")
    log.info("publishing %d items of %s from %s", len(plan.items),
             ", ".join(plan.collections), plan.source)

    api = StacTransactions(url, timeout=float(config.get("archive.timeout")))
    try:
        api.check()
        store = ObjectStore(settings)
        store.check()
        collection_outcomes = []
        for collection_id, document in plan.collections.items():
            members = [p.item for p in plan.items if p.collection == collection_id]
            collection_outcomes.append(
                (collection_id, api.ensure_collection(document, members))
            )
        created: list[str] = []
        updated: list[str] = []
        uploaded = unchanged = 0
        threads = max(1, int(workers or config.get("archive.upload-workers")))
        size = max(1, int(config.get("archive.batch-size")))
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cbm-upload") as pool:
            for batch in _batches(plan.items, size):
                new, replaced, up, same = _publish_batch(batch, store, api, pool)
                created += new
                updated += replaced
                uploaded += up
                unchanged += same
    finally:
        api.close()
    return PublishReport(
        source=plan.source,
        layout=plan.layout,
        stac_url=url,
        endpoint=settings.endpoint_url,
        bucket=settings.bucket,
        collections=tuple(collection_outcomes),
        items_created=tuple(created),
        items_updated=tuple(updated),
        objects_uploaded=uploaded,
        objects_unchanged=unchanged,
        seconds=time.monotonic() - started,
    )
