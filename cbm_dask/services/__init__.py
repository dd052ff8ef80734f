"""Local services of the Sentinel archive: database, S3 object store, STAC API.

:mod:`cbm_dask.services.registry` lists them and drives ``cbm services``;
:mod:`cbm_dask.services.stac` holds the setting clients need
(:func:`~cbm_dask.services.stac.stac_url`); the object store's settings are
:class:`cbm_dask.objectstore.S3Settings`.
"""

from cbm_dask.services.registry import (
    Service,
    ServiceSpec,
    ServiceStatus,
    down,
    names,
    register,
    status,
    up,
)

__all__ = ["Service", "ServiceSpec", "ServiceStatus", "down", "names", "register", "status", "up"]
