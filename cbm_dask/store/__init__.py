"""Persistence: the PostGIS database (embedded or external), its schema and bulk loads.

The public surface is listed here and loaded on first use, so that reaching the
database URL does not import geopandas.  Modules with a leading underscore are
internal.

- connection: :func:`database_url`, :func:`get_engine`, :func:`libpq_dsn`, :func:`is_embedded`
- schema: :func:`upgrade`, :func:`downgrade`, :func:`current_revision`,
  :func:`head_revision` (Alembic migrations; the models are in :mod:`.models`)
- parcels: :func:`load_parcel_file`, :func:`store_parcels`, :func:`list_datasets`,
  :func:`dataset_info`, :func:`read_dataset_parcels`, :func:`export_parcels`,
  :func:`drop_dataset`, :class:`LoadResult`
- signatures: :func:`parcel_time_series`; the extraction queue :class:`ExtractionQueue`
  and the writer :func:`write_image_result`
- the embedded cluster: :class:`EmbeddedCluster`
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbm_dask.store.embedded import EmbeddedCluster
    from cbm_dask.store.engine import database_url, get_engine, is_embedded, libpq_dsn
    from cbm_dask.store.migrate import current_revision, downgrade, head_revision, upgrade
    from cbm_dask.store.parcels import (
        LoadResult,
        dataset_info,
        drop_dataset,
        export_parcels,
        list_datasets,
        load_parcel_file,
        read_dataset_parcels,
        store_parcels,
    )
    from cbm_dask.store.queue import ExtractionQueue, write_image_result
    from cbm_dask.store.timeseries import parcel_time_series

_HOME = {
    "EmbeddedCluster": "embedded",
    "database_url": "engine",
    "get_engine": "engine",
    "is_embedded": "engine",
    "libpq_dsn": "engine",
    "current_revision": "migrate",
    "downgrade": "migrate",
    "head_revision": "migrate",
    "upgrade": "migrate",
    "LoadResult": "parcels",
    "dataset_info": "parcels",
    "drop_dataset": "parcels",
    "export_parcels": "parcels",
    "list_datasets": "parcels",
    "load_parcel_file": "parcels",
    "read_dataset_parcels": "parcels",
    "store_parcels": "parcels",
    "ExtractionQueue": "queue",
    "write_image_result": "queue",
    "parcel_time_series": "timeseries",
}

__all__ = [
    "EmbeddedCluster",
    "ExtractionQueue",
    "LoadResult",
    "current_revision",
    "database_url",
    "dataset_info",
    "downgrade",
    "drop_dataset",
    "export_parcels",
    "get_engine",
    "head_revision",
    "is_embedded",
    "libpq_dsn",
    "list_datasets",
    "load_parcel_file",
    "parcel_time_series",
    "read_dataset_parcels",
    "store_parcels",
    "upgrade",
    "write_image_result",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
