"""COVERAGE: valid observations and the largest gap per parcel window (markers.md §5.0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cbm_dask.markers._params import params_from_config

__all__ = ["Coverage", "CoverageParams", "coverage"]


@dataclass(frozen=True)
class CoverageParams:
    """When a window is observable for a marker.

    Attributes
    ----------
    g_max
        Largest tolerated gap in days (window bounds count as observations).
    n_min
        Smallest number of valid observations.
    """

    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, marker: str, **overrides: Any) -> CoverageParams:
        """Return ``cbm.markers.<marker>.g-max`` and ``.n-min``; ``overrides`` win."""
        return params_from_config(cls, marker, **overrides)


@dataclass(frozen=True)
class Coverage:
    """Per parcel: valid observations ``n_valid`` and largest gap ``max_gap`` (days)."""

    n_valid: np.ndarray
    max_gap: np.ndarray

    def observable(self, params: CoverageParams) -> np.ndarray:
        """Return True where ``n_valid ≥ n_min`` and ``max_gap ≤ g_max``."""
        return (self.n_valid >= params.n_min) & (self.max_gap <= params.g_max)


def coverage(valid: np.ndarray, dates: np.ndarray, start: Any, end: Any) -> Coverage:
    """Count valid observations and the largest gap in the closed window ``[start, end]``.

    Parameters
    ----------
    valid
        ``(parcel, date)`` True where an observation is valid.
    dates
        The date axis (``datetime64[D]``).
    start, end
        Window bounds; the gaps from ``start`` to the first observation and from the
        last to ``end`` count.  A parcel without any observation has ``n_valid = 0``
        and ``max_gap = end - start``.
    """
    a = np.datetime64(start, "D").astype("int64")
    b = np.datetime64(end, "D").astype("int64")
    day = np.asarray(dates, dtype="datetime64[D]").astype("int64")
    inside = (day >= a) & (day <= b)
    obs = np.asarray(valid, dtype=bool) & inside[None, :]
    # latest observation day up to each date, the window start before the first
    last_seen = np.maximum.accumulate(np.where(obs, day[None, :], a), axis=1)
    previous = np.concatenate([np.full((obs.shape[0], 1), a), last_seen[:, :-1]], axis=1)
    gaps = np.where(obs, day[None, :] - previous, 0)
    final = last_seen[:, -1] if obs.shape[1] else np.full(obs.shape[0], a)
    max_gap = np.maximum(gaps.max(axis=1, initial=0), b - final)
    return Coverage(n_valid=obs.sum(axis=1), max_gap=max_gap.astype(int))
