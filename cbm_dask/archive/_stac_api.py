"""Registering collections and items in a STAC API through its Transaction extension.

Why the Transaction extension over HTTP rather than pypgstac's loader
(``pypgstac load`` / ``Loader``) writing into the pgstac database directly:

* **one contract for every catalogue.**  Publishing needs only the API's URL,
  not database credentials, and works unchanged against any STAC API with
  transactions (the embedded stac-fastapi-pgstac, an agency's production one),
  not just against a pgstac database reachable from the publishing machine;
* **validation and per-item errors.**  The API checks each item (STAC models,
  id characters, collection match, geometry) and answers per request, so a bad
  item is reported by id and the others are unaffected;
* **atomic, registered last.**  Items are sent only after their assets are
  uploaded, each request being one database transaction: an interrupted
  publish never leaves an item whose assets are missing, and a re-publish
  upserts.  When the API offers stac-fastapi's Bulk Transaction extension
  (``POST /collections/{id}/bulk_items``, found in its OpenAPI document) a batch
  of items is upserted in one request and one database transaction (items its
  validation refuses are reported by id); otherwise each item is ``POST``-ed,
  then ``PUT`` on 409 Conflict;
* **the failure a user sees.**  An unreachable or read-only API is detected up
  front (landing page + conformance classes) and reported with its URL.

The loader is faster for millions of items (COPY in bulk); for such one-off
production loads use ``pypgstac load items`` on the database directly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from cbm_dask.archive.collections import item_extent, merge_extent
from cbm_dask.errors import ServiceError

__all__ = ["TRANSACTION_CONFORMANCE", "StacTransactions"]

log = logging.getLogger(__name__)

TRANSACTION_CONFORMANCE = (
    "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction",
    "https://api.stacspec.org/v1.0.0/collections/extensions/transaction",
)
"""Conformance classes of the Transaction extension (items, collections)."""


class StacTransactions:
    """A small client of a transactional STAC API.

    Parameters
    ----------
    base_url
        Landing page URL (``http://127.0.0.1:28082``).
    timeout
        Seconds to wait for each response.
    """

    def __init__(self, base_url: str, timeout: float = 60) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.bulk = False
        """Whether the Bulk Transaction extension was found by :meth:`check`."""
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json"})

    # -- plumbing --------------------------------------------------------------
    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url, *(quote(p, safe="") for p in parts)])

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ServiceError(
                f"{what}: the STAC API at {self.base_url} cannot be reached ({_reason(exc)}); "
                "start it with `cbm services up`, or check cbm.stac.url / CBM_STAC_URL"
            ) from exc

    @staticmethod
    def _detail(response: Any) -> str:
        """Return the server's reason, on one line."""
        try:
            body = response.json()
        except ValueError:
            text = str(response.text)
        else:
            text = str(body.get("detail") or body.get("description") or body) \
                if isinstance(body, Mapping) else str(body)
        return " ".join(text.split())[:300]

    # -- checks ----------------------------------------------------------------
    def check(self) -> None:
        """Make sure the API answers and offers the Transaction extension.

        Raises
        ------
        ServiceError
            When it cannot be reached, is not a STAC API, or is read-only.
        """
        response = self._request("GET", self.base_url + "/", "reading the landing page")
        if response.status_code != 200:
            raise ServiceError(
                f"{self.base_url} answered HTTP {response.status_code} to its landing page "
                f"({self._detail(response)}); is it a STAC API? check cbm.stac.url"
            )
        try:
            landing = response.json()
        except ValueError:
            landing = None
        if not isinstance(landing, Mapping) or "links" not in landing:
            raise ServiceError(
                f"{self.base_url} is not a STAC API (its landing page is not a STAC catalog); "
                "check cbm.stac.url / CBM_STAC_URL"
            )
        conforms = list(landing.get("conformsTo") or ())
        if not conforms:
            answer = self._request("GET", self.base_url + "/conformance", "reading conformance")
            if answer.status_code == 200:
                conforms = list(answer.json().get("conformsTo") or ())
        missing = [c for c in TRANSACTION_CONFORMANCE if c not in conforms]
        if missing:
            raise ServiceError(
                f"the STAC API at {self.base_url} does not accept writes (no Transaction "
                f"extension: {', '.join(missing)} missing); publish to the embedded API "
                "(`cbm services up`) or enable transactions on that server "
                "(stac-fastapi-pgstac: ENABLE_TRANSACTIONS_EXTENSIONS=TRUE)"
            )
        self.bulk = self._offers_bulk(landing)

    def _offers_bulk(self, landing: Mapping[str, Any]) -> bool:
        """Whether the OpenAPI document (``service-desc``) has ``…/bulk_items``."""
        href = next((link.get("href") for link in landing.get("links") or ()
                     if isinstance(link, Mapping) and link.get("rel") == "service-desc"), None)
        if not href:
            return False
        response = self._request("GET", str(href), "reading the OpenAPI document")
        try:
            paths = response.json().get("paths") or {} if response.status_code == 200 else {}
        except ValueError:
            return False
        return any(str(path).endswith("/bulk_items") for path in paths)

    # -- collections -----------------------------------------------------------
    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        """Return the collection document, or None when it does not exist."""
        url = self._url("collections", collection_id)
        response = self._request("GET", url, f"collection {collection_id!r}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ServiceError(
                f"collection {collection_id!r}: GET {url} answered HTTP {response.status_code} "
                f"({self._detail(response)})"
            )
        data: dict[str, Any] = response.json()
        return data

    def ensure_collection(
        self, document: Mapping[str, Any], items: Sequence[Mapping[str, Any]] | None = None,
    ) -> Literal["created", "extended", "unchanged"]:
        """Create the collection when missing; else grow its extent to cover ``items``.

        An existing collection's other fields are left as they are.

        Raises
        ------
        ServiceError
            When the API refuses the collection (message names it and the URL).
        """
        collection_id = str(document["id"])
        existing = self.get_collection(collection_id)
        if existing is None:
            url = self._url("collections")
            response = self._request("POST", url, f"collection {collection_id!r}",
                                     json=dict(document))
            if response.status_code == 409:
                existing = self.get_collection(collection_id)
            elif response.status_code not in (200, 201):
                raise ServiceError(
                    f"collection {collection_id!r}: POST {url} answered HTTP "
                    f"{response.status_code} ({self._detail(response)}); check the collection "
                    "document"
                )
            else:
                log.info("created collection %s", collection_id)
                return "created"
        if not items or existing is None:
            return "unchanged"
        bbox, interval = item_extent(items)
        grown = merge_extent(_strip_links(existing), bbox, interval)
        if grown is None:
            return "unchanged"
        url = self._url("collections", collection_id)
        response = self._request("PUT", url, f"collection {collection_id!r}", json=grown)
        if response.status_code not in (200, 201, 204):
            raise ServiceError(
                f"collection {collection_id!r}: PUT {url} (extent update) answered HTTP "
                f"{response.status_code} ({self._detail(response)})"
            )
        log.info("extended the extent of collection %s", collection_id)
        return "extended"

    # -- items -----------------------------------------------------------------
    def upsert_item(self, collection_id: str, item: Mapping[str, Any]) -> Literal[
        "created", "updated"
    ]:
        """Create the item, or replace it when it exists (409 → PUT).

        Raises
        ------
        ServiceError
            When the API refuses it; the message names the item, the URL and the
            API's reason.
        """
        item_id = str(item["id"])
        what = f"item {item_id!r} of {collection_id!r}"
        url = self._url("collections", collection_id, "items")
        response = self._request("POST", url, what, json=dict(item))
        if response.status_code in (200, 201):
            return "created"
        if response.status_code == 409:
            item_url = self._url("collections", collection_id, "items", item_id)
            response = self._request("PUT", item_url, what, json=dict(item))
            if response.status_code in (200, 201, 204):
                return "updated"
            url = item_url
        raise ServiceError(
            f"{what}: {url} answered HTTP {response.status_code} ({self._detail(response)}); "
            "check the item JSON"
        )

    def existing_ids(self, collection_id: str, item_ids: list[str]) -> set[str]:
        """Return which of ``item_ids`` the collection already holds (one search request)."""
        if not item_ids:
            return set()
        url = self.base_url + "/search"
        body = {"collections": [collection_id], "ids": item_ids, "limit": len(item_ids),
                "fields": {"include": ["id"], "exclude": ["assets", "geometry", "properties"]}}
        response = self._request("POST", url, f"searching items of {collection_id!r}", json=body)
        if response.status_code != 200:
            raise ServiceError(
                f"searching items of {collection_id!r}: POST {url} answered HTTP "
                f"{response.status_code} ({self._detail(response)})"
            )
        return {str(f.get("id")) for f in response.json().get("features") or ()}

    def upsert_items(
        self, collection_id: str, items: Sequence[Mapping[str, Any]],
    ) -> tuple[list[str], list[str]]:
        """Create or replace ``items``; return (created ids, updated ids).

        With the Bulk Transaction extension the batch is one request (one database
        transaction); otherwise item by item (:meth:`upsert_item`).

        Raises
        ------
        ServiceError
            When the API refuses an item; the message names it and the reason.
        """
        if not self.bulk:
            created: list[str] = []
            updated: list[str] = []
            for item in items:
                outcome = self.upsert_item(collection_id, item)
                (created if outcome == "created" else updated).append(str(item["id"]))
            return created, updated
        ids = [str(item["id"]) for item in items]
        existing = self.existing_ids(collection_id, ids)
        url = self._url("collections", collection_id, "bulk_items")
        what = f"items {ids[0]!r}..{ids[-1]!r} of {collection_id!r}"
        response = self._request(
            "POST", url, what,
            json={"items": {str(item["id"]): dict(item) for item in items}, "method": "upsert"},
        )
        if response.status_code not in (200, 201):
            raise ServiceError(
                f"{what}: POST {url} answered HTTP {response.status_code} "
                f"({self._detail(response)}); check the item JSON"
            )
        answer = response.json()
        errors = answer.get("errors") if isinstance(answer, Mapping) else None
        if errors:
            first = errors[0]
            raise ServiceError(
                f"item {first.get('id')!r} of {collection_id!r} was refused by {url} "
                f"({first.get('msg')}); {len(errors)} item(s) of the batch failed, the others "
                "were registered - fix the item JSON and publish again"
            )
        return ([i for i in ids if i not in existing], [i for i in ids if i in existing])

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()


def _reason(exc: Exception) -> str:
    """Return the short cause of a connection failure (``[Errno 111] Connection refused``)."""
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(exc))
    if match:
        return match.group(0).strip()
    return type(exc).__name__


def _strip_links(document: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the links the API generates from a served collection (it adds them again)."""
    doc = dict(document)
    doc["links"] = [
        link for link in doc.get("links") or ()
        if isinstance(link, Mapping)
        and link.get("rel") not in {"self", "root", "parent", "items", "queryables", "child"}
    ]
    return doc
