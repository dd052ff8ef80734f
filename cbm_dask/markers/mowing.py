"""MOWING: grassland cuts from S2 NDVI drops, confirmed by S1 coherence (markers.md §5.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cbm_dask.markers._pairs import NAT_DAY, days_to_dates, keep_separated, neighbours
from cbm_dask.markers._params import params_from_config
from cbm_dask.markers.coverage import CoverageParams, coverage
from cbm_dask.markers.events import EventTable, MarkerResult, Sensor, Status, fuse_confidence
from cbm_dask.markers.series import ParcelSeries

__all__ = ["MowingParams", "mowing", "coherence_evidence"]


@dataclass(frozen=True)
class MowingParams:
    """Parameters of MOWING (``cbm.markers.mowing``; Sen4CAP L4B S2 defaults).

    Attributes
    ----------
    drop
        NDVI drop from the observation before (b) to the low one (l) must exceed this.
    before_min
        b must exceed this (grass-like canopy before the cut).
    after_max
        l must be below this (no longer dense after the cut).
    regrowth_max
        NDVI per day from l to the next observation must stay below this; faster
        recovery is a haze or shadow artefact.
    max_interval
        Longer intervals are clipped to start this many days before l (``wide_interval``).
    min_span
        Two kept events' united interval must span at least this many days.
    max_per_year
        Most events kept per calendar year.
    s1_days
        S1 evidence counts within this many days of the interval.
    coherence_rise, coherence_high
        A coherence observation is evidence when it rose by ``coherence_rise`` from
        the previous one, or is at least ``coherence_high`` (6-day pairs).
    coherence_scale
        Coherence rise over which the S1 confidence approaches 0.5.
    g_max, n_min
        Observability of the window (see :class:`CoverageParams`).
    """

    drop: float
    before_min: float
    after_max: float
    regrowth_max: float
    max_interval: int
    min_span: int
    max_per_year: int
    s1_days: int
    coherence_rise: float
    coherence_high: float
    coherence_scale: float
    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, **overrides: Any) -> MowingParams:
        """Return the parameters of ``cbm.markers.mowing``; ``overrides`` win."""
        return params_from_config(cls, "mowing", **overrides)


def coherence_evidence(series: ParcelSeries, rise: float, high: float | np.ndarray,
                       scale: float) -> np.ndarray:
    """Return the ``(parcel, date)`` S1 confidence of coherence increases (NaN: none).

    An observation counts when coherence rose by ``rise`` from the previous one or is
    at least ``high``; its confidence is ``0.5·(1 - exp(-Δcoh/scale))``.
    """
    coh = series.coherence
    near = neighbours(coh, series.dates)
    delta = coh - near.v_before
    with np.errstate(invalid="ignore"):
        counts = (delta >= rise) | (coh >= high)
        conf = 0.5 * (1.0 - np.exp(-np.clip(np.nan_to_num(delta), 0, None) / scale))
    return np.where(counts, conf, np.nan)


def best_evidence_near(evidence: np.ndarray, dates: np.ndarray, rows: np.ndarray,
                       start: np.ndarray, end: np.ndarray, days: int) -> np.ndarray:
    """Return, per event, the best ``evidence`` of its parcel near its interval.

    ``rows`` are the events' parcels, ``start``/``end`` integer days; evidence counts
    within ``days`` of the interval.  NaN where there is none.
    """
    day = np.asarray(dates, dtype="datetime64[D]").astype("int64")[None, :]
    near = (day >= start[:, None] - days) & (day <= end[:, None] + days)
    found = np.where(near, evidence[rows], np.nan)
    out = np.full(len(rows), np.nan)
    has = np.isfinite(found).any(axis=1)
    out[has] = np.nanmax(found[has], axis=1)
    return out


def mowing(series: ParcelSeries, start: Any, end: Any,
           params: MowingParams | None = None) -> MarkerResult:
    """Detect grassland cuts among the valid S2 observations in ``[start, end]``.

    A cut is a pair of consecutive observations (b, l) with b - l > ``drop``,
    b > ``before_min`` and l < ``after_max``, whose next observation n regrows slower
    than ``regrowth_max`` per day (a cut without a later observation is kept with
    the flag ``no_regrowth_check``).  Its interval is [date b, date l]; its S2
    confidence ``1 - 0.5·exp(-(b - l - drop)/l)``, fused with S1 coherence evidence
    near the interval when the batch has coherence.  Close events are thinned in
    decreasing confidence (``min_span``, ``max_per_year``).  ``main_date`` is the
    interval's middle day.  The window status is OK when the window is observable.
    """
    p = params or MowingParams.from_config()
    in_window = series.window(start, end)
    ndvi = np.where(in_window[None, :], series.ndvi, np.nan)
    near = neighbours(ndvi, series.dates)
    b, low, n = near.v_before, ndvi, near.v_after
    with np.errstate(invalid="ignore", divide="ignore"):
        regrowth = (n - low) / (near.day_after - near.day)
        candidate = (np.isfinite(low) & (near.before >= 0) & (b - low > p.drop)
                     & (b > p.before_min) & (low < p.after_max)
                     & ((near.after < 0) | (regrowth < p.regrowth_max)))
        # the drop is scaled by l; l <= 0 (water, corrupted) would flip the sign
        s2_conf = 1.0 - 0.5 * np.exp(-(b - low - p.drop) / np.maximum(low, 1e-3))
    wide = candidate & (near.day - near.day_before > p.max_interval)
    ev_start = np.where(wide, near.day - p.max_interval, near.day_before)
    kept = keep_separated(candidate, s2_conf, ev_start, near.day, p.min_span, p.max_per_year)

    rows, cols = np.nonzero(kept)
    s_day, e_day = ev_start[rows, cols], near.day[rows, cols]
    s1_conf = best_evidence_near(
        coherence_evidence(series, p.coherence_rise, p.coherence_high, p.coherence_scale),
        series.dates, rows, s_day, e_day, p.s1_days)
    confidence = fuse_confidence(s2_conf[rows, cols], s1_conf)
    flags = np.where(wide[rows, cols], "wide_interval",
                     np.where(near.after[rows, cols] < 0, "no_regrowth_check", ""))
    events = EventTable.build(
        "MOWING", series.parcel_ids[rows], days_to_dates(s_day), days_to_dates(e_day),
        days_to_dates((s_day + e_day) // 2), confidence,
        np.where(np.isfinite(s1_conf), Sensor.S2_S1, Sensor.S2).astype(object),
        supporting_dates=days_to_dates(np.stack([near.day_before[rows, cols], e_day,
                                           np.where(near.after[rows, cols] < 0, NAT_DAY,
                                                    near.day_after[rows, cols])], axis=1)),
        supporting_values=np.stack([b[rows, cols], low[rows, cols], n[rows, cols]], axis=1),
        flags=flags.astype(object))
    observable = coverage(np.isfinite(ndvi), series.dates, start, end).observable(
        CoverageParams(g_max=p.g_max, n_min=p.n_min))
    status = np.where(observable, Status.OK, Status.NOT_VALID).astype(object)
    return MarkerResult("MOWING", series.parcel_ids, status, events)
