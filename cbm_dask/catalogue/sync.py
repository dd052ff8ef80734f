"""Filling the ``images`` catalogue from a STAC API, and reading it back.

``sync_catalogue`` searches a STAC API with pystac-client (paged), normalises
every item (:mod:`cbm_dask.catalogue.normalise`) and upserts the rows.  Each
page of results is written in **one transaction**: a page is either stored
whole or not at all, so the catalogue never holds half a page, and a sync that
stops half-way (network error, ``on_invalid="error"``) keeps the pages before
and can simply be run again: the upsert is idempotent.

``update_catalogue`` is the daily sync of ``cbm update``: every dataset and
collection is searched from its newest catalogued acquisition minus an overlap
window (:func:`update_window`), so a day's run reads about a day of items.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import pandas as pd
import sqlalchemy as sa

from cbm_dask import config
from cbm_dask.catalogue.normalise import normalise_item
from cbm_dask.errors import DatasetNotFoundError, InputError, ItemError, ServiceError
from cbm_dask.sentinel.records import ImageRecord
from cbm_dask.store.engine import get_engine

__all__ = [
    "BBox",
    "OnInvalid",
    "SyncResult",
    "SyncWindow",
    "UpdateSync",
    "default_stac_url",
    "newest_acquisition",
    "update_catalogue",
    "update_window",
    "parse_bbox",
    "parse_date",
    "sync_catalogue",
    "upsert_images",
    "dataset_bbox",
    "list_images",
    "read_images",
]

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
OnInvalid = Literal["skip", "error"]

_UPSERT = sa.text(
    """
    INSERT INTO images (collection, item_id, datetime, platform, card, tile, orbit, epsg,
                        cloud_cover, processing_baseline, footprint, assets, properties)
    VALUES (:collection, :item_id, :datetime, :platform, :card, :tile, :orbit, :epsg,
            :cloud_cover, :processing_baseline,
            ST_Multi(ST_GeomFromEWKB(decode(:footprint, 'hex'))),
            CAST(:assets AS jsonb), CAST(:properties AS jsonb))
    ON CONFLICT (collection, item_id) DO UPDATE SET
        datetime = EXCLUDED.datetime, platform = EXCLUDED.platform, card = EXCLUDED.card,
        tile = EXCLUDED.tile, orbit = EXCLUDED.orbit, epsg = EXCLUDED.epsg,
        cloud_cover = EXCLUDED.cloud_cover,
        processing_baseline = EXCLUDED.processing_baseline,
        footprint = EXCLUDED.footprint, assets = EXCLUDED.assets,
        properties = EXCLUDED.properties, updated_at = now()
    WHERE (images.datetime, images.platform, images.card, images.tile, images.orbit,
           images.epsg, images.cloud_cover, images.processing_baseline, images.assets,
           images.properties, ST_AsBinary(images.footprint))
          IS DISTINCT FROM
          (EXCLUDED.datetime, EXCLUDED.platform, EXCLUDED.card, EXCLUDED.tile,
           EXCLUDED.orbit, EXCLUDED.epsg, EXCLUDED.cloud_cover,
           EXCLUDED.processing_baseline, EXCLUDED.assets, EXCLUDED.properties,
           ST_AsBinary(EXCLUDED.footprint))
    RETURNING id, (xmax = 0) AS inserted
    """
)
_PENDING = sa.text(
    "INSERT INTO extractions (dataset_id, image_id) "
    "SELECT :dataset_id, id FROM images WHERE collection = :collection AND item_id = ANY(:ids) "
    "ON CONFLICT DO NOTHING"
)
_IMAGE_COLUMNS = (
    "i.id, i.collection, i.item_id, i.datetime, i.platform, i.card, i.tile, i.orbit, i.epsg, "
    "i.cloud_cover, i.processing_baseline, ST_AsBinary(i.footprint) AS footprint, i.assets, "
    "i.properties"
)


@dataclass(frozen=True)
class SyncResult:
    """What one :func:`sync_catalogue` run did.

    Attributes
    ----------
    found
        Items the STAC API returned.
    inserted, updated, unchanged
        Catalogue rows created, changed, and already identical.
    skipped
        ``(item_id, reason)`` of items that could not be catalogued.
    pending
        ``extractions`` rows created with status ``pending`` (0 without a dataset).
    pages
        Result pages read (= transactions committed).
    """

    stac_url: str
    collection: str
    bbox: BBox
    start: dt.datetime
    end: dt.datetime
    dataset: str | None
    found: int
    inserted: int
    updated: int
    unchanged: int
    skipped: tuple[tuple[str, str], ...]
    pending: int
    pages: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-able values."""
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["skipped"] = [{"item_id": i, "reason": r} for i, r in self.skipped]
        out["bbox"] = list(self.bbox)
        return out


# ---------------------------------------------------------------------------
# argument parsing (pure)


def parse_bbox(value: str | Sequence[float], parameter: str = "bbox") -> BBox:
    """Parse ``W,S,E,N`` (degrees, EPSG:4326) into a validated tuple.

    Raises
    ------
    InputError
        Naming ``parameter`` (``bbox=...``) when there are not four numbers, they are
        out of range, or west ≥ east / south ≥ north.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise InputError(
            f"{parameter}={value!r}: expected four numbers W,S,E,N in degrees, "
            "e.g. 4.9,51.1,5.2,51.3", parameter=parameter,
        ) from None
    if len(numbers) != 4:
        raise InputError(
            f"{parameter}={value!r}: expected four numbers W,S,E,N, got {len(numbers)}",
            parameter=parameter,
        )
    west, south, east, north = numbers
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90
            and -90 <= north <= 90):
        raise InputError(
            f"{parameter}={value!r}: longitudes must be within ±180 and latitudes within ±90 "
            "(is the order W,S,E,N?)", parameter=parameter,
        )
    if west >= east or south >= north:
        raise InputError(
            f"{parameter}={value!r}: west must be < east and south < north (W,S,E,N)",
            parameter=parameter,
        )
    return west, south, east, north


def parse_date(value: str | dt.date, parameter: str, *, end: bool = False) -> dt.datetime:
    """Parse an ISO date or date-time into an aware UTC datetime.

    A date-only ``end`` covers its whole day; naive times are UTC.

    Raises
    ------
    InputError
        Naming ``parameter`` (``start=...``) when the value is not ISO 8601.
    """
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime.combine(value, dt.time.max if end else dt.time.min)
    else:
        text = value.strip()
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"{parameter}={value!r}: not a date; use YYYY-MM-DD or an ISO 8601 date-time",
                parameter=parameter,
            ) from None
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            stamp = dt.datetime.combine(stamp.date(), dt.time.max if end else dt.time.min)
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


WindowBasis = Literal["given", "newest", "season"]


@dataclass(frozen=True)
class SyncWindow:
    """The acquisition window one update sync searches.

    Attributes
    ----------
    start, end
        Inclusive bounds, aware UTC datetimes.
    basis
        Where ``start`` came from: ``given`` (asked for explicitly), ``newest`` (the
        newest catalogued acquisition minus the overlap) or ``season`` (nothing
        catalogued yet: 1 January of the dataset year).
    """

    start: dt.datetime
    end: dt.datetime
    basis: WindowBasis


def update_window(
    newest: dt.datetime | None,
    *,
    now: dt.datetime,
    overlap_days: float,
    year: int | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
) -> SyncWindow:
    """Decide the acquisition window of a daily sync of one dataset and collection (pure).

    The window starts at the newest acquisition already catalogued for the dataset
    minus ``overlap_days`` (items are searched by acquisition time, and an item can
    be published days after a newer one: a late product, a coherence pair waiting
    for its secondary, a reprocessing); with nothing catalogued yet it starts on
    1 January of ``year``.  An explicit ``start`` always wins.  The window ends at
    ``end``, else ``now``.

    Parameters
    ----------
    newest
        Newest catalogued acquisition of the dataset in this collection, or None.
        Naive values are taken as UTC.
    now
        The current time (the default end); naive values are taken as UTC.
    overlap_days
        Days searched again before ``newest`` (``cbm.catalogue.update-overlap-days``); ≥ 0.
    year
        The dataset's declaration year; None for the year of ``now``.
    start, end
        Explicit bounds (dates or ISO date-times, UTC when naive); a date-only
        ``end`` covers its whole day.

    Returns
    -------
    SyncWindow

    Raises
    ------
    InputError
        When ``overlap_days`` is negative or not a number, a bound is not a date,
        or the window would end before it starts.
    """
    try:
        overlap = float(overlap_days)
    except (TypeError, ValueError):
        raise InputError(
            f"overlap_days={overlap_days!r}: not a number of days "
            "(set cbm.catalogue.update-overlap-days to e.g. 10)", parameter="overlap_days",
        ) from None
    if not overlap >= 0:  # also refuses NaN
        raise InputError(
            f"overlap_days={overlap_days!r}: must be at least 0 "
            "(set cbm.catalogue.update-overlap-days to e.g. 10)", parameter="overlap_days",
        )
    current = parse_date(now, "now")
    last = parse_date(end, "end", end=True) if end is not None else current
    basis: WindowBasis
    if start is not None:
        first, basis = parse_date(start, "start"), "given"
    elif newest is not None:
        first, basis = parse_date(newest, "newest") - dt.timedelta(days=overlap), "newest"
    else:
        season = int(year) if year is not None else current.year
        first, basis = dt.datetime(season, 1, 1, tzinfo=dt.UTC), "season"
    if first > last:
        raise InputError(
            f"start={first:%Y-%m-%d %H:%M} ({basis}) is after end={last:%Y-%m-%d %H:%M}; "
            "give an end after the start, or no end (until now)", parameter=("start", "end"),
        )
    return SyncWindow(start=first, end=last, basis=basis)


def default_stac_url() -> str:
    """Return the STAC API to search when none is given: the archive's.

    That is ``CBM_STAC_URL`` / ``cbm.stac.url``, else the local STAC API started by
    ``cbm services up`` (:func:`cbm_dask.services.stac.stac_url`).
    """
    from cbm_dask.services.stac import stac_url

    return stac_url()


# ---------------------------------------------------------------------------
# database


def _dataset_id(conn: sa.Connection, name: str) -> int:
    found = conn.execute(
        sa.text("SELECT id FROM datasets WHERE name = :name"), {"name": name}
    ).scalar_one_or_none()
    if found is None:
        known = conn.execute(sa.text("SELECT name FROM datasets ORDER BY name")).scalars().all()
        raise DatasetNotFoundError(
            f"no dataset {name!r}; loaded datasets: {', '.join(known) or 'none'} "
            "(load one with `cbm parcels load`)"
        )
    return int(found)


def dataset_bbox(conn: sa.Connection, dataset_id: int, name: str = "") -> BBox:
    """Return ``(W, S, E, N)`` of a dataset's parcels (their envelopes in EPSG:4326).

    Raises
    ------
    InputError
        When the dataset has no parcels.
    """
    row = conn.execute(
        sa.text(
            "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
            "FROM (SELECT ST_Extent(ST_Transform(ST_Envelope(geom), 4326)) AS e "
            "FROM parcels WHERE dataset_id = :id) x"
        ),
        {"id": dataset_id},
    ).one()
    if row.w is None:
        raise InputError(
            f"dataset {name or dataset_id!r} has no parcels to search over; load them again "
            "or search a bbox"
        )
    return float(row.w), float(row.s), float(row.e), float(row.n)


@dataclass(frozen=True)
class _PageCounts:
    inserted: int
    updated: int
    unchanged: int
    pending: int


def upsert_images(
    conn: sa.Connection, records: Sequence[ImageRecord], *, dataset_id: int | None = None
) -> _PageCounts:
    """Insert or update ``records`` on ``conn`` (inside the caller's transaction).

    Rows that are already identical are left alone (``updated_at`` unchanged).
    With ``dataset_id``, a ``pending`` extraction is ensured for every record.
    """
    inserted = updated = 0
    for record in records:
        returned = conn.execute(_UPSERT, record.as_row()).first()
        if returned is None:
            continue
        if returned.inserted:
            inserted += 1
        else:
            updated += 1
    pending = 0
    if dataset_id is not None and records:
        by_collection: dict[str, list[str]] = {}
        for record in records:
            by_collection.setdefault(record.collection, []).append(record.item_id)
        for collection, ids in by_collection.items():
            result = conn.execute(
                _PENDING, {"dataset_id": dataset_id, "collection": collection, "ids": ids}
            )
            pending += max(result.rowcount, 0)
    return _PageCounts(inserted, updated, len(records) - inserted - updated, pending)


# ---------------------------------------------------------------------------
# STAC


def _unreachable(stac_url: str, exc: BaseException) -> ServiceError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ServiceError(
        f"cannot reach the STAC API at {stac_url} ({reason[:200]}); is the local STAC API "
        "running (`cbm services up`)? Otherwise check the STAC API URL (stac_url=, "
        "cbm.stac.url or CBM_STAC_URL)", parameter="stac_url",
    )


def _open(stac_url: str, timeout: float) -> Any:
    import pystac_client
    import requests

    try:
        return pystac_client.Client.open(stac_url, timeout=timeout)
    except (requests.RequestException, pystac_client.exceptions.APIError, OSError,
            ValueError) as exc:
        raise _unreachable(stac_url, exc) from exc


def _check_collection(client: Any, stac_url: str, collection: str) -> None:
    import pystac_client
    import requests

    try:
        if client.get_collection(collection) is not None:
            return
        reason = "no such collection"
    except (pystac_client.exceptions.APIError, KeyError, ValueError) as exc:
        reason = str(exc)[:120]
    except requests.RequestException as exc:
        raise _unreachable(stac_url, exc) from exc
    import pystac

    try:
        known = sorted(c.id for c in client.get_collections())
    except (requests.RequestException, pystac_client.exceptions.APIError,
            pystac.errors.STACTypeError, KeyError, ValueError):
        known = []  # the list only helps the message; an API that cannot give it offers none
    raise InputError(
        f"collection={collection!r}: not found at {stac_url} ({reason}); "
        f"available: {', '.join(known) or 'none'}", parameter="collection",
    )


def _pages(search: Any, stac_url: str) -> Iterator[list[dict[str, Any]]]:
    import pystac_client
    import requests

    pages = search.pages_as_dicts()
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except (requests.RequestException, pystac_client.exceptions.APIError) as exc:
            raise _unreachable(stac_url, exc) from exc
        yield list(page.get("features") or [])


def sync_catalogue(
    stac_url: str | None,
    collection: str,
    *,
    dataset: str | None = None,
    bbox: str | Sequence[float] | None = None,
    start: str | dt.date,
    end: str | dt.date,
    url: str | None = None,
    page_size: int | None = None,
    on_invalid: OnInvalid | None = None,
) -> SyncResult:
    """Catalogue the items of a STAC collection over a dataset's parcels or a bbox.

    Parameters
    ----------
    stac_url
        STAC API root; None for :func:`default_stac_url` (the archive's STAC API).
    collection
        Collection id to search (``sentinel-2-l2a``, ``sentinel-1-backscatter`` ...).
    dataset
        Parcel dataset: the search box is the extent of its parcels and every image
        found gets a ``pending`` extraction for it.  Exclusive with ``bbox``.
    bbox
        ``W,S,E,N`` in degrees (string or 4 numbers).  Exclusive with ``dataset``.
    start, end
        Acquisition window, inclusive; dates or ISO date-times (UTC when naive).
    url
        Database URL; default the configured one.
    page_size
        Items per page (and per transaction); default ``cbm.catalogue.page-size``.
    on_invalid
        ``skip`` (default ``cbm.catalogue.on-invalid``) logs and lists items that cannot
        be catalogued (no projection, not Sentinel L2A/S1); ``error`` raises before
        the page holding one is written.

    Returns
    -------
    SyncResult

    Raises
    ------
    InputError
        Bad ``bbox``/dates, both or neither of ``dataset``/``bbox``, unknown collection,
        or (``on_invalid="error"``) an item that cannot be catalogued.
    DatasetNotFoundError
        Unknown dataset.
    ServiceError
        The STAC API cannot be reached (message names the URL).
    """
    started = time.perf_counter()
    if (dataset is None) == (bbox is None):
        raise InputError(
            "give exactly one of dataset= (a dataset name) or bbox= (W,S,E,N)",
            parameter=("dataset", "bbox"),
        )
    first = parse_date(start, "start")
    last = parse_date(end, "end", end=True)
    if first > last:
        raise InputError(f"start={start!r} is after end={end!r}; swap them",
                         parameter=("start", "end"))
    size = int(page_size if page_size is not None else config.get("catalogue.page-size", 100))
    if size < 1:
        raise InputError(
            f"page_size={size}: must be at least 1 (default cbm.catalogue.page-size)",
            parameter="page_size",
        )
    policy = cast(OnInvalid, on_invalid or config.get("catalogue.on-invalid", "skip"))
    if policy not in ("skip", "error"):
        raise InputError(
            f"on_invalid={policy!r}: use 'skip' or 'error' (default cbm.catalogue.on-invalid)",
            parameter="on_invalid",
        )
    target = stac_url or default_stac_url()

    given_box = parse_bbox(bbox) if bbox is not None else None

    client = _open(target, float(config.get("catalogue.timeout", 60)))
    _check_collection(client, target, collection)
    engine = get_engine(url)
    dataset_id: int | None = None
    if dataset is not None:
        with engine.connect() as conn:
            dataset_id = _dataset_id(conn, dataset)
            box = dataset_bbox(conn, dataset_id, dataset)
    else:
        box = cast(BBox, given_box)
    search = client.search(collections=[collection], bbox=list(box), datetime=[first, last],
                           limit=size)
    found = inserted = updated = unchanged = pending = pages = 0
    skipped: list[tuple[str, str]] = []
    for features in _pages(search, target):
        pages += 1
        found += len(features)
        records: list[ImageRecord] = []
        for feature in features:
            try:
                records.append(normalise_item(feature))
            except ItemError as exc:
                if policy == "error":
                    raise ItemError(
                        f"{exc} (sync stopped; page {pages} was not written, earlier pages "
                        "were; fix the item, or skip such items (on_invalid='skip'))",
                        parameter="on_invalid",
                    ) from exc
                log.warning("skipping item: %s", exc)
                skipped.append((str(feature.get("id")), str(exc)))
        with engine.begin() as conn:
            counts = upsert_images(conn, records, dataset_id=dataset_id)
        inserted += counts.inserted
        updated += counts.updated
        unchanged += counts.unchanged
        pending += counts.pending
        log.info("page %d: %d items, %d new, %d changed", pages, len(features),
                 counts.inserted, counts.updated)
    return SyncResult(
        stac_url=target, collection=collection, bbox=box, start=first, end=last,
        dataset=dataset, found=found, inserted=inserted, updated=updated, unchanged=unchanged,
        skipped=tuple(skipped), pending=pending, pages=pages,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------
# the daily update


_NEWEST = sa.text(
    "SELECT max(i.datetime) FROM images i JOIN extractions e ON e.image_id = i.id "
    "WHERE e.dataset_id = :dataset_id AND i.collection = :collection"
)


def newest_acquisition(conn: sa.Connection, dataset_id: int, collection: str) -> dt.datetime | None:
    """Return the newest acquisition of ``collection`` catalogued for a dataset, or None.

    "Catalogued for the dataset" means the image has an extraction unit for it
    (a sync over the dataset's parcels created one), so an image catalogued for
    another dataset nearby does not move this dataset's window.
    """
    newest = conn.execute(
        _NEWEST, {"dataset_id": dataset_id, "collection": collection}
    ).scalar_one_or_none()
    if newest is None:
        return None
    stamp = cast(dt.datetime, newest)
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


@dataclass(frozen=True)
class UpdateSync:
    """One dataset and collection of :func:`update_catalogue`.

    Attributes
    ----------
    dataset, collection
        What was synced.
    window
        The acquisition window searched (and why it starts where it does).
    result
        The sync's result; None when the STAC API does not offer the collection.
    """

    dataset: str
    collection: str
    window: SyncWindow
    result: SyncResult | None

    def as_dict(self) -> dict[str, Any]:
        """Return the outcome as plain JSON-able values."""
        result = self.result
        return {
            "dataset": self.dataset, "collection": self.collection,
            "start": self.window.start.isoformat(), "end": self.window.end.isoformat(),
            "basis": self.window.basis,
            "offered": result is not None,
            "found": result.found if result else 0,
            "inserted": result.inserted if result else 0,
            "updated": result.updated if result else 0,
            "pending": result.pending if result else 0,
            "skipped": len(result.skipped) if result else 0,
            "seconds": round(result.seconds, 3) if result else 0.0,
        }


def _offered_collections(client: Any, stac_url: str) -> set[str]:
    import pystac_client
    import requests

    try:
        return {str(c.id) for c in client.get_collections()}
    except (requests.RequestException, pystac_client.exceptions.APIError) as exc:
        raise _unreachable(stac_url, exc) from exc


def update_catalogue(
    stac_url: str | None = None,
    *,
    datasets: Sequence[str] | None = None,
    collections: Sequence[str] | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    now: dt.datetime | None = None,
    url: str | None = None,
) -> list[UpdateSync]:
    """Catalogue what is new for every dataset and collection: the daily sync.

    Each dataset and collection is searched over the window of :func:`update_window`:
    from its newest catalogued acquisition minus ``cbm.catalogue.update-overlap-days``
    (1 January of the dataset year the first time) until now.  Items already
    catalogued in the overlap are compared and left alone; new ones get a
    ``pending`` extraction.

    Parameters
    ----------
    stac_url
        STAC API root; None for :func:`default_stac_url`.
    datasets
        Dataset names; None for every loaded dataset.
    collections
        Collection ids; None for ``extract.collections``.  Collections the STAC API
        does not offer are skipped with a warning (``result`` None).
    start, end
        Explicit window bounds for every pair (``start`` replaces the newest-based start).
    now
        The current time (default: the clock); the window's default end.
    url
        Database URL; default the configured one.

    Returns
    -------
    list of UpdateSync
        One per dataset and collection, datasets by name.

    Raises
    ------
    DatasetNotFoundError
        A name in ``datasets`` is not loaded.
    InputError
        Bad bounds or overlap setting.
    ServiceError
        The STAC API cannot be reached.
    """
    wanted = list(collections if collections is not None
                  else config.get("extract.collections", ()))
    overlap = config.get("catalogue.update-overlap-days", 10)
    clock = now or dt.datetime.now(dt.UTC)
    target = stac_url or default_stac_url()
    offered = _offered_collections(
        _open(target, float(config.get("catalogue.timeout", 60))), target
    )
    with get_engine(url).connect() as conn:
        if datasets is None:
            names = list(conn.execute(
                sa.text("SELECT name FROM datasets ORDER BY name")).scalars())
        else:
            names = sorted(set(datasets))
        plans = []
        for name in names:
            dataset_id = _dataset_id(conn, name)
            year = conn.execute(sa.text("SELECT year FROM datasets WHERE id = :id"),
                                {"id": dataset_id}).scalar_one()
            for collection in wanted:
                window = update_window(
                    newest_acquisition(conn, dataset_id, collection), now=clock,
                    overlap_days=overlap, year=year, start=start, end=end,
                )
                plans.append((name, collection, window))
    done: list[UpdateSync] = []
    for name, collection, window in plans:
        if collection not in offered:
            log.warning("%s: collection %s is not offered by %s; skipped", name, collection,
                        target)
            done.append(UpdateSync(name, collection, window, None))
            continue
        log.info("%s / %s: %s to %s (%s)", name, collection, window.start, window.end,
                 window.basis)
        result = sync_catalogue(target, collection, dataset=name, start=window.start,
                                end=window.end, url=url)
        done.append(UpdateSync(name, collection, window, result))
    return done


# ---------------------------------------------------------------------------
# reading


def list_images(
    dataset: str, *, collection: str | None = None, url: str | None = None
) -> pd.DataFrame:
    """Return the images whose footprint meets the dataset's extent, with extraction status.

    Columns: ``image_id, collection, item_id, datetime, card, tile, orbit, epsg,
    cloud_cover, processing_baseline, extraction`` (the dataset's extraction status,
    None when the image has no extraction row for it) and ``attempts``.
    """
    with get_engine(url).connect() as conn:
        dataset_id = _dataset_id(conn, dataset)
        return pd.read_sql(
            sa.text(
                "WITH ext AS (SELECT ST_SetSRID(ST_Extent(ST_Transform(ST_Envelope(geom), 4326))"
                "::geometry, 4326) AS g "
                "FROM parcels WHERE dataset_id = :id) "
                "SELECT i.id AS image_id, i.collection, i.item_id, i.datetime, i.card, i.tile, "
                "i.orbit, i.epsg, i.cloud_cover, i.processing_baseline, "
                "e.status AS extraction, e.attempts "
                "FROM images i CROSS JOIN ext "
                "LEFT JOIN extractions e ON e.image_id = i.id AND e.dataset_id = :id "
                "WHERE ext.g IS NOT NULL AND ST_Intersects(i.footprint, ext.g) "
                "AND (CAST(:collection AS text) IS NULL OR i.collection = :collection) "
                "ORDER BY i.datetime, i.item_id"
            ),
            conn,
            params={"id": dataset_id, "collection": collection},
            dtype={"orbit": "Int64", "epsg": "Int64", "attempts": "Int64"},
        )


def read_images(
    image_ids: Sequence[int] | None = None,
    *,
    dataset: str | None = None,
    collection: str | None = None,
    status: str | None = None,
    url: str | None = None,
) -> list[ImageRecord]:
    """Read catalogue rows back as :class:`ImageRecord` objects (input of ``load_cube``).

    Parameters
    ----------
    image_ids
        ``images.id`` values to read; None for all matching the other filters.
    dataset
        Only images with an extraction row for this dataset.
    collection
        Only images of this collection.
    status
        With ``dataset``: only extractions in this state (``pending`` ...).
    """
    if status is not None and dataset is None:
        raise InputError(
            f"status={status!r} filters the extractions of a dataset; give dataset= too",
            parameter=("status", "dataset"),
        )
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    join = ""
    with get_engine(url).connect() as conn:
        if dataset is not None:
            params["dataset_id"] = _dataset_id(conn, dataset)
            join = "JOIN extractions e ON e.image_id = i.id AND e.dataset_id = :dataset_id "
            if status is not None:
                clauses.append("e.status = :status")
                params["status"] = status
        if image_ids is not None:
            clauses.append("i.id = ANY(:ids)")
            params["ids"] = [int(v) for v in image_ids]
        if collection is not None:
            clauses.append("i.collection = :collection")
            params["collection"] = collection
        rows = conn.execute(
            sa.text(
                f"SELECT {_IMAGE_COLUMNS} FROM images i {join}"
                f"WHERE {' AND '.join(clauses)} ORDER BY i.datetime, i.item_id"
            ),
            params,
        ).mappings().all()
    return [ImageRecord.from_row(cast(Mapping[str, Any], row)) for row in rows]
