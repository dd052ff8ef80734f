"""BARE_SOIL, the per-observation bare-soil state, and PLOUGHING (markers.md §5.3, §5.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cbm_dask.markers._pairs import days_to_dates, neighbours
from cbm_dask.markers._params import params_from_config
from cbm_dask.markers.coverage import CoverageParams, coverage
from cbm_dask.markers.events import EventTable, MarkerResult, Sensor, Status
from cbm_dask.markers.series import ParcelSeries, take_dates

__all__ = ["BareSoilParams", "BareSoilState", "bare_soil", "PloughingParams", "ploughing"]


@dataclass(frozen=True)
class BareSoilParams:
    """Parameters of BARE_SOIL (``cbm.markers.bare-soil``).

    Attributes
    ----------
    ndvi_max
        An observation is bare only with NDVI at most this ...
    bsi_min
        ... and a bare soil index at least this.
    water_max
        Observations with a larger SCL water share are NOT_VALID for the marker.
    ndvi_scale, bsi_scale
        Margins (below ``ndvi_max``, above ``bsi_min``) that raise the confidence.
    """

    ndvi_max: float
    bsi_min: float
    water_max: float
    ndvi_scale: float
    bsi_scale: float

    @classmethod
    def from_config(cls, **overrides: Any) -> BareSoilParams:
        """Return the parameters of ``cbm.markers.bare-soil``; ``overrides`` win."""
        return params_from_config(cls, "bare-soil", **overrides)


@dataclass(frozen=True)
class BareSoilState:
    """Bare-soil state of every ``(parcel, date)``.

    ``valid`` marks observations the marker could judge; ``bare`` is False elsewhere;
    ``confidence`` is NaN where not bare.  ``ndti`` is kept as an attribute (residue
    versus ploughed soil) but does not decide.
    """

    parcel_ids: np.ndarray
    dates: np.ndarray
    valid: np.ndarray
    bare: np.ndarray
    confidence: np.ndarray
    ndvi: np.ndarray
    bsi: np.ndarray
    ndti: np.ndarray

    def events(self) -> EventTable:
        """One BARE_SOIL record per bare observation (supporting: NDVI, BSI, NDTI)."""
        rows, cols = np.nonzero(self.bare)
        day = self.dates[cols]
        return EventTable.build(
            "BARE_SOIL", self.parcel_ids[rows], day, day, day, self.confidence[rows, cols],
            Sensor.S2, status=Status.OK,
            supporting_dates=np.repeat(day[:, None], 3, axis=1),
            supporting_values=np.stack([self.ndvi[rows, cols], self.bsi[rows, cols],
                                        self.ndti[rows, cols]], axis=1))


def bare_soil(series: ParcelSeries, params: BareSoilParams | None = None) -> BareSoilState:
    """Classify every valid S2 observation as bare or not.

    Bare when NDVI ≤ ``ndvi_max`` and BSI ≥ ``bsi_min``; confidence
    ``1 - 0.5·exp(-[(ndvi_max - NDVI)/ndvi_scale + (BSI - bsi_min)/bsi_scale])`` with
    both margins clipped at 0.
    """
    p = params or BareSoilParams.from_config()
    ndvi, bsi = series.ndvi, series.bsi
    valid = np.isfinite(ndvi) & np.isfinite(bsi) & ~(series.water_share > p.water_max)
    with np.errstate(invalid="ignore"):
        bare = valid & (ndvi <= p.ndvi_max) & (bsi >= p.bsi_min)
        margin = (np.clip((p.ndvi_max - ndvi) / p.ndvi_scale, 0, None)
                  + np.clip((bsi - p.bsi_min) / p.bsi_scale, 0, None))
    confidence = np.where(bare, 1.0 - 0.5 * np.exp(-margin), np.nan)
    return BareSoilState(parcel_ids=series.parcel_ids, dates=series.dates, valid=valid,
                         bare=bare, confidence=confidence, ndvi=ndvi, bsi=bsi,
                         ndti=series.ndti)


@dataclass(frozen=True)
class PloughingParams:
    """Parameters of PLOUGHING (``cbm.markers.ploughing``).

    Attributes
    ----------
    before_min
        NDVI of the last non-bare observation before the first bare one (vegetated).
    confirm_days
        The transition is confirmed when the next observation within this many days
        is bare too.
    unconfirmed_cap
        Highest confidence of an unconfirmed transition (a single bare observation).
    g_max, n_min
        Observability of the window (see :class:`CoverageParams`).
    """

    before_min: float
    confirm_days: int
    unconfirmed_cap: float
    g_max: int
    n_min: int

    @classmethod
    def from_config(cls, **overrides: Any) -> PloughingParams:
        """Return the parameters of ``cbm.markers.ploughing``; ``overrides`` win."""
        return params_from_config(cls, "ploughing", **overrides)


def ploughing(series: ParcelSeries, start: Any, end: Any,
              params: PloughingParams | None = None, *,
              bare_params: BareSoilParams | None = None,
              harvest: EventTable | None = None) -> MarkerResult:
    """Detect vegetated -> bare transitions whose first bare observation is in ``[start, end]``.

    An event spans [last non-bare observation, first bare observation] when the
    non-bare one had NDVI ≥ ``before_min`` or lies at or after the end of a
    ``harvest`` event of the parcel.  It is confirmed when the next observation
    within ``confirm_days`` is bare too (confidence: the smaller of the two BARE
    confidences); otherwise its confidence is capped at ``unconfirmed_cap`` and it
    carries the flag ``unconfirmed``.  The window status is OK when observable.
    """
    p = params or PloughingParams.from_config()
    state = bare_soil(series, bare_params)
    judged = np.where(state.valid, state.ndvi, np.nan)
    near = neighbours(judged, series.dates)
    bare = state.bare
    bare_before = take_dates(bare.astype(float), near.before) == 1.0
    bare_after = take_dates(bare.astype(float), near.after) == 1.0
    vegetated = near.v_before >= p.before_min
    if harvest is not None and len(harvest):
        harvested = np.full(len(series.parcel_ids), np.iinfo(np.int64).max)
        owner = pd.Index(series.parcel_ids).get_indexer(harvest.parcel_id)
        ends = harvest.end.astype("int64")
        np.minimum.at(harvested, owner[owner >= 0], ends[owner >= 0])
        vegetated |= near.day_before >= harvested[:, None]
    in_window = series.window(start, end)[None, :]
    event = bare & in_window & (near.before >= 0) & ~bare_before & vegetated
    confirmed = bare_after & (near.day_after - near.day <= p.confirm_days)
    next_conf = take_dates(state.confidence, near.after)
    conf = np.where(confirmed, np.fmin(state.confidence, next_conf),
                    np.minimum(state.confidence, p.unconfirmed_cap))
    rows, cols = np.nonzero(event)
    b_day, e_day = near.day_before[rows, cols], near.day[rows, cols]
    events = EventTable.build(
        "PLOUGHING", series.parcel_ids[rows], days_to_dates(b_day), days_to_dates(e_day),
        days_to_dates(e_day), conf[rows, cols], Sensor.S2,
        supporting_dates=days_to_dates(np.stack([b_day, e_day], axis=1)),
        supporting_values=np.stack([near.v_before[rows, cols], judged[rows, cols]], axis=1),
        flags=np.where(confirmed[rows, cols], "", "unconfirmed").astype(object))
    observable = coverage(state.valid & in_window, series.dates, start, end).observable(
        CoverageParams(g_max=p.g_max, n_min=p.n_min))
    status = np.where(observable, Status.OK, Status.NOT_VALID).astype(object)
    return MarkerResult("PLOUGHING", series.parcel_ids, status, events)
