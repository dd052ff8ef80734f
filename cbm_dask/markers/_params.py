"""Parameter bundles read from ``cbm.markers.<section>`` at call time."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from cbm_dask import config

T = TypeVar("T")


def params_from_config(cls: type[T], section: str, **overrides: Any) -> T:
    """Build the frozen dataclass ``cls`` from ``cbm.markers.<section>``.

    Each field ``name_with_underscores`` is read from the key ``name-with-dashes``;
    ``overrides`` win over the configuration.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        else:
            raw = config.get(f"markers.{section}.{f.name.replace('_', '-')}")
            values[f.name] = tuple(raw) if isinstance(raw, list) else raw
    return cls(**values)
