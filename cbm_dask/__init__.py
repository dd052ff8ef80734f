"""cbm_dask: Checks by Monitoring for CAP paying agencies on Dask and PostGIS."""

from cbm_dask._version import __version__
from cbm_dask.errors import CbmError

__all__ = ["CbmError", "__version__"]
