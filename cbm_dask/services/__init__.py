"""Local services of the Sentinel archive: database, S3 object store, STAC API.

:mod:`cbm_dask.services.registry` lists them and drives ``cbm services``;
:mod:`cbm_dask.services.s3` and :mod:`cbm_dask.services.stac` hold the settings
clients need (:class:`~cbm_dask.services.s3.S3Settings`,
:func:`~cbm_dask.services.stac.stac_url`).
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
