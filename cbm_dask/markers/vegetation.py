"""VEG_PRESENCE: a vegetation cycle is present in a window (markers.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cbm_dask.markers._params import params_from_config
from cbm_dask.markers.coverage import CoverageParams, coverage
from cbm_dask.markers.events import EventTable, MarkerResult, Sensor, Status
from cbm_dask.markers.series import ParcelSeries

__all__ = ["VegPresenceParams", "veg_presence"]


@dataclass(frozen=True)
class VegPresenceParams:
    """Parameters of VEG_PRESENCE (``cbm.markers.veg-presence``).

    Attributes
    ----------
    threshold
        NDVI an observation must exceed (0.35; 0.325 for catch-crop windows).
    min_count
        Observations above the threshold needed (2 resists single bright outliers).
    confidence_scale
        NDVI margin over which the confidence rises from 0.5 towards 1.
    g_max, n_min
        Observability of the window for ABSENT (see :class:`CoverageParams`).
    """

    threshold: float
    min_count: int
    confidence_scale: float
    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, **overrides: Any) -> VegPresenceParams:
        """Return the parameters of ``cbm.markers.veg-presence``; ``overrides`` win."""
        return params_from_config(cls, "veg-presence", **overrides)


def veg_presence(series: ParcelSeries, start: Any, end: Any,
                 params: VegPresenceParams | None = None) -> MarkerResult:
    """Detect a vegetation cycle in ``[start, end]`` for every parcel of ``series``.

    PRESENT (one event, status OK) when at least ``min_count`` valid observations have
    NDVI > ``threshold``; ABSENT (no event, status OK) when not present and the window
    is observable; otherwise NOT_VALID.  The confidence rests on the ``min_count``-th
    highest NDVI: ``1 - 0.5·exp(-(ndvi - threshold)/confidence_scale)``.
    """
    p = params or VegPresenceParams.from_config()
    in_window = series.window(start, end)
    ndvi = np.where(in_window[None, :], series.ndvi, np.nan)
    valid = np.isfinite(ndvi)
    with np.errstate(invalid="ignore"):
        above = ndvi > p.threshold
    present = above.sum(axis=1) >= p.min_count
    ranked = -np.sort(np.where(valid, -ndvi, np.inf), axis=1)  # highest first, -inf pads
    k = min(max(p.min_count, 1), ndvi.shape[1]) - 1
    deciding = ranked[:, k] if ndvi.shape[1] else np.full(len(ndvi), -np.inf)
    observable = coverage(valid, series.dates, start, end).observable(
        CoverageParams(g_max=p.g_max, n_min=p.n_min))
    status = np.where(present | observable, Status.OK, Status.NOT_VALID).astype(object)

    rows = np.flatnonzero(present)
    dates = series.dates
    best = np.nanargmax(np.where(valid[rows], ndvi[rows], -np.inf), axis=1) if len(rows) else rows
    first = np.argmax(above[rows], axis=1)
    last = ndvi.shape[1] - 1 - np.argmax(above[rows][:, ::-1], axis=1)
    confidence = 1.0 - 0.5 * np.exp(-(deciding[rows] - p.threshold) / p.confidence_scale)
    events = EventTable.build(
        "VEG_PRESENCE", series.parcel_ids[rows], dates[first], dates[last], dates[best],
        confidence, Sensor.S2, supporting_dates=dates[best][:, None],
        supporting_values=ndvi[rows, best][:, None])
    return MarkerResult("VEG_PRESENCE", series.parcel_ids, status, events)
