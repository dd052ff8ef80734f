"""The one exception hierarchy of cbm_dask.

Every message says what went wrong *and* how to fix it, so that a command line
user sees a single actionable line rather than a traceback.
"""

from __future__ import annotations

__all__ = [
    "CbmError",
    "ConfigError",
    "DatabaseError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "InputError",
    "ItemError",
    "ColumnDetectionError",
    "ServiceError",
]


class CbmError(Exception):
    """Base class of all errors raised on purpose by cbm_dask."""


class ConfigError(CbmError):
    """A configuration value is missing or malformed."""


class ServiceError(CbmError):
    """A local service (database, object store, STAC API) could not be started or reached."""


class DatabaseError(ServiceError):
    """The database is unreachable, not initialised, or refused an operation."""


class InputError(CbmError):
    """A user-supplied file or parameter cannot be used as given."""


class ItemError(InputError):
    """A STAC item cannot be catalogued or loaded as given (message names the item)."""


class ColumnDetectionError(InputError):
    """The role of an attribute column (parcel id, crop code ...) could not be decided."""


class DatasetExistsError(InputError):
    """A dataset of that name is already loaded."""


class DatasetNotFoundError(InputError):
    """No dataset of that name is loaded."""
