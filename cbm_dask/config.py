"""Configuration: the ``cbm`` namespace of :mod:`dask.config`, read at call time.

Precedence, highest first: an explicit argument, the few ``CBM_*`` environment
variables (``CBM_HOME``, ``CBM_DATABASE_URL``), ``dask.config`` (which itself
merges ``DASK_CBM__*`` variables and YAML files), then the commented defaults in
``cbm_dask/cbm.yaml``.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import dask.config
import yaml

from cbm_dask.errors import ConfigError

__all__ = ["get", "home", "database_url_override", "defaults"]

_NO_DEFAULT = object()


@cache
def defaults() -> dict[str, Any]:
    """Return the shipped defaults (``cbm_dask/cbm.yaml``) and register them with dask once."""
    text = files("cbm_dask").joinpath("cbm.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    dask.config.update_defaults(loaded)
    return loaded


def get(key: str, default: Any = _NO_DEFAULT) -> Any:
    """Return ``cbm.<key>`` from dask.config, e.g. ``get("database.port")``.

    Parameters
    ----------
    key
        Dotted key below the ``cbm`` namespace; dashes and underscores are equivalent.
    default
        Returned when the key is not configured; without it a missing key raises.

    Raises
    ------
    ConfigError
        When the key is missing and no default was given.
    """
    defaults()
    try:
        return dask.config.get(f"cbm.{key}")
    except KeyError:
        pass
    # A dask.config.set() that added the first cbm key deletes the whole namespace
    # on exit, shipped defaults included: merge them back (set values win).
    dask.config.update(dask.config.config, {"cbm": defaults()["cbm"]}, priority="old")
    try:
        return dask.config.get(f"cbm.{key}")
    except KeyError:
        if default is not _NO_DEFAULT:
            return default
        raise ConfigError(
            f"configuration key 'cbm.{key}' is not set; add it to ~/.config/dask/cbm.yaml "
            f"or set DASK_CBM__{key.upper().replace('.', '__').replace('-', '_')}"
        ) from None


def home() -> Path:
    """Return the directory of the embedded services' data (``CBM_HOME``)."""
    value = os.environ.get("CBM_HOME") or get("home", None)
    if value:
        return Path(value).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "cbm"


def database_url_override() -> str | None:
    """Return the URL of an external PostGIS, or None to use the embedded cluster."""
    value = os.environ.get("CBM_DATABASE_URL") or get("database.url", None)
    return str(value) if value else None
