"""HARVEST (markers.md §5.5) and EMERGENCE (§5.6): the main crop's end and green-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cbm_dask.markers._pairs import days_to_dates, neighbours
from cbm_dask.markers._params import params_from_config
from cbm_dask.markers.coverage import CoverageParams, coverage
from cbm_dask.markers.events import EventTable, MarkerResult, Sensor, Status, fuse_confidence
from cbm_dask.markers.mowing import best_evidence_near, coherence_evidence
from cbm_dask.markers.series import ParcelSeries, take_dates

__all__ = ["HarvestParams", "harvest", "EmergenceParams", "emergence"]


@dataclass(frozen=True)
class HarvestParams:
    """Parameters of HARVEST (``cbm.markers.harvest``; simplified Sen4CAP L4C).

    Attributes
    ----------
    presence
        Vegetation must have exceeded this NDVI before the harvest.
    before_min
        NDVI of the observation before the drop (b) must reach this ...
    seasonal_drop
        ... or be at least the parcel's seasonal NDVI maximum minus this.
    after_max
        NDVI after the drop (l) must be below this.
    confidence_scale
        Margin of l below ``after_max`` over which the S2 confidence rises.
    s1_days, coherence_rise, coherence_high, coherence_scale
        S1 coherence evidence near the interval, as for MOWING; ``coherence_high`` is
        lowered to the parcel's highest coherence minus ``coherence_margin`` when it
        never reaches it.
    coherence_margin
        See ``coherence_high``.
    g_max, n_min
        Observability of the window (see :class:`CoverageParams`).
    """

    presence: float
    before_min: float
    seasonal_drop: float
    after_max: float
    confidence_scale: float
    s1_days: int
    coherence_rise: float
    coherence_high: float
    coherence_scale: float
    coherence_margin: float
    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, **overrides: Any) -> HarvestParams:
        """Return the parameters of ``cbm.markers.harvest``; ``overrides`` win."""
        return params_from_config(cls, "harvest", **overrides)


def harvest(series: ParcelSeries, start: Any, end: Any,
            params: HarvestParams | None = None) -> MarkerResult:
    """Detect the harvest: the first drop in ``[start, end]`` after vegetation presence.

    The event is the first pair of consecutive valid observations (b, l), l in the
    window, with b ≥ ``before_min`` or b ≥ seasonal max - ``seasonal_drop``, and
    l < ``after_max``, preceded somewhere by NDVI > ``presence``.  Its interval is
    [date b, date l]; S2 confidence ``1 - 0.5·exp(-(after_max - l)/confidence_scale)``,
    fused with S1 coherence evidence within ``s1_days``.  Status per parcel:
    NOT_VALID when the window is not observable, else NOT_EXECUTED when the parcel
    never showed vegetation (harvest not relevant), else OK.
    """
    p = params or HarvestParams.from_config()
    ndvi = series.ndvi
    near = neighbours(ndvi, series.dates)
    in_window = series.window(start, end)[None, :]
    with np.errstate(invalid="ignore"):
        vegetated = np.logical_or.accumulate(ndvi > p.presence, axis=1)
        vegetated_before = take_dates(vegetated.astype(float), near.before) == 1.0
        season_max = np.nanmax(np.where(np.isfinite(ndvi), ndvi, -np.inf), axis=1,
                               initial=-np.inf)[:, None]
        b = near.v_before
        pair = (in_window & np.isfinite(ndvi) & vegetated_before & (ndvi < p.after_max)
                & ((b >= p.before_min) | (b >= season_max - p.seasonal_drop)))
    found = pair.any(axis=1)
    rows = np.flatnonzero(found)
    cols = np.argmax(pair[rows], axis=1)
    b_day, l_day = near.day_before[rows, cols], near.day[rows, cols]
    low = ndvi[rows, cols]
    s2_conf = 1.0 - 0.5 * np.exp(-(p.after_max - low) / p.confidence_scale)
    coh = series.coherence
    top = np.nanmax(np.where(np.isfinite(coh), coh, -np.inf), axis=1, initial=-np.inf)
    high = np.where(top < p.coherence_high, top - p.coherence_margin, p.coherence_high)
    evidence = coherence_evidence(series, p.coherence_rise, high[:, None], p.coherence_scale)
    s1_conf = best_evidence_near(evidence, series.dates, rows, b_day, l_day, p.s1_days)
    events = EventTable.build(
        "HARVEST", series.parcel_ids[rows], days_to_dates(b_day), days_to_dates(l_day),
        days_to_dates(l_day), fuse_confidence(s2_conf, s1_conf),
        np.where(np.isfinite(s1_conf), Sensor.S2_S1, Sensor.S2).astype(object),
        supporting_dates=days_to_dates(np.stack([b_day, l_day], axis=1)),
        supporting_values=np.stack([b[rows, cols], low], axis=1))
    observable = coverage(np.isfinite(ndvi) & in_window, series.dates, start, end
                          ).observable(CoverageParams(g_max=p.g_max, n_min=p.n_min))
    ever_vegetated = vegetated[:, -1] if ndvi.shape[1] else np.zeros(len(ndvi), bool)
    status = np.where(~observable, Status.NOT_VALID,
                      np.where(ever_vegetated, Status.OK, Status.NOT_EXECUTED)).astype(object)
    return MarkerResult("HARVEST", series.parcel_ids, status, events)


@dataclass(frozen=True)
class EmergenceParams:
    """Parameters of EMERGENCE (``cbm.markers.emergence``).

    Attributes
    ----------
    low_max
        At least one earlier observation below this NDVI (bare or low period).
    threshold
        The emerging observation and the next one must reach this NDVI.
    confirm_days
        The confirming next observation must lie within this many days.
    confidence_scale
        Margin of the smaller confirming NDVI over ``threshold`` raising the confidence.
    g_max, n_min
        Observability of the window (see :class:`CoverageParams`).
    """

    low_max: float
    threshold: float
    confirm_days: int
    confidence_scale: float
    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, **overrides: Any) -> EmergenceParams:
        """Return the parameters of ``cbm.markers.emergence``; ``overrides`` win."""
        return params_from_config(cls, "emergence", **overrides)


def emergence(series: ParcelSeries, start: Any, end: Any,
              params: EmergenceParams | None = None) -> MarkerResult:
    """Detect the first green-up in ``[start, end]`` after a low period.

    The event is the first valid observation with NDVI ≥ ``threshold`` whose previous
    observation is below it, that follows an observation below ``low_max``, and whose
    next observation (within ``confirm_days``) reaches ``threshold`` too.  Interval:
    [previous observation, this one]; ``main_date`` is the linearly interpolated
    threshold crossing; confidence ``1 - 0.5·exp(-(min of the two - threshold)/scale)``.
    """
    p = params or EmergenceParams.from_config()
    ndvi = series.ndvi
    near = neighbours(ndvi, series.dates)
    in_window = series.window(start, end)[None, :]
    with np.errstate(invalid="ignore"):
        low_seen = np.logical_or.accumulate(ndvi < p.low_max, axis=1)
        low_before = take_dates(low_seen.astype(float), near.before) == 1.0
        rise = (in_window & (ndvi >= p.threshold) & (near.v_before < p.threshold)
                & low_before & (near.v_after >= p.threshold)
                & (near.day_after - near.day <= p.confirm_days))
    rows = np.flatnonzero(rise.any(axis=1))
    cols = np.argmax(rise[rows], axis=1)
    b_day, e_day = near.day_before[rows, cols], near.day[rows, cols]
    before, value = near.v_before[rows, cols], ndvi[rows, cols]
    crossing = b_day + np.round((p.threshold - before) / (value - before) * (e_day - b_day))
    weaker = np.minimum(value, near.v_after[rows, cols])
    confidence = 1.0 - 0.5 * np.exp(-(weaker - p.threshold) / p.confidence_scale)
    events = EventTable.build(
        "EMERGENCE", series.parcel_ids[rows], days_to_dates(b_day), days_to_dates(e_day),
        days_to_dates(crossing.astype("int64")), confidence, Sensor.S2,
        supporting_dates=days_to_dates(np.stack([b_day, e_day, near.day_after[rows, cols]],
                                                axis=1)),
        supporting_values=np.stack([before, value, near.v_after[rows, cols]], axis=1))
    observable = coverage(np.isfinite(ndvi) & in_window, series.dates, start, end
                          ).observable(CoverageParams(g_max=p.g_max, n_min=p.n_min))
    status = np.where(observable, Status.OK, Status.NOT_VALID).astype(object)
    return MarkerResult("EMERGENCE", series.parcel_ids, status, events)
