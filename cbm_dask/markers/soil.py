"""BARE_SOIL, the per-observation bare-soil state (markers.md §5.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cbm_dask.markers._params import params_from_config
from cbm_dask.markers.events import EventTable, Sensor, Status
from cbm_dask.markers.series import ParcelSeries

__all__ = ["BareSoilParams", "BareSoilState", "bare_soil"]


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
