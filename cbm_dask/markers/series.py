"""A batch of parcel time series on one date axis, and its preparation.

Every quantity is a ``(parcel, date)`` float array, NaN where the parcel has no
(valid) observation that day, so that the detectors work on many parcels at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from cbm_dask.errors import InputError
from cbm_dask.markers._params import params_from_config
from cbm_dask.sentinel.scl import SCL_CLASS_COUNT

__all__ = [
    "ParcelSeries",
    "SeriesParams",
    "S2_BANDS",
    "previous_valid",
    "next_valid",
    "whittaker_smooth",
]

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "NDVI")
"""Band names treated as Sentinel-2 optical (masked together by :meth:`ParcelSeries.prepare`).

``NDVI`` may be given directly instead of computed from B04 and B08."""

_WATER_CLASS = 6


@dataclass(frozen=True)
class SeriesParams:
    """How observations are judged valid before any detector sees them (markers.md §2.2-2.3).

    Attributes
    ----------
    scl_valid
        SCL classes counted as clear when the share is computed from SCL histograms.
    min_clear_share
        Smallest share of clear parcel pixels for an S2 observation to be kept
        (1.0: no cloud, shadow ... pixel tolerated).
    spike_drop
        A single observation more than this NDVI below both neighbours ...
    spike_neighbour_days
        ... whose neighbours both lie within this many days of it ...
    spike_neighbour_difference
        ... and differ from each other by less than this is removed as an artefact.
    """

    scl_valid: tuple[int, ...]
    min_clear_share: float
    spike_drop: float
    spike_neighbour_days: int
    spike_neighbour_difference: float

    @classmethod
    def from_config(cls, **overrides: Any) -> SeriesParams:
        """Return the parameters of ``cbm.markers.series``; ``overrides`` win."""
        return params_from_config(cls, "series", **overrides)


def previous_valid(valid: np.ndarray) -> np.ndarray:
    """Return, per ``(parcel, date)``, the date index of the previous valid cell (-1: none).

    The cell itself is not counted: the result is strictly before it.
    """
    n_dates = valid.shape[1]
    index = np.where(valid, np.arange(n_dates), -1)
    running = np.maximum.accumulate(index, axis=1)
    out = np.full_like(running, -1)
    out[:, 1:] = running[:, :-1]
    return out


def next_valid(valid: np.ndarray) -> np.ndarray:
    """Return, per ``(parcel, date)``, the date index of the next valid cell (-1: none)."""
    n_dates = valid.shape[1]
    reversed_previous = previous_valid(valid[:, ::-1])
    return np.where(reversed_previous < 0, -1, n_dates - 1 - reversed_previous)[:, ::-1]


def take_dates(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return ``values[parcel, index[parcel, date]]``, NaN where ``index`` is -1."""
    rows = np.arange(values.shape[0])[:, None]
    taken = values[rows, np.maximum(index, 0)].astype(float)
    return np.where(index < 0, np.nan, taken)


def _normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


@dataclass(frozen=True)
class ParcelSeries:
    """Parcel series of one batch on a common, increasing date axis.

    Attributes
    ----------
    parcel_ids
        One id per row.
    dates
        ``datetime64[D]``, strictly increasing: the union of the parcels' observation days.
    bands
        Band name -> ``(parcel, date)`` mean, NaN where missing.  Sentinel-2 bands use
        the canonical names (``B02`` ... ``B12``, or ``NDVI`` directly); Sentinel-1 the
        signature codes ``VVb``/``VHb`` (linear backscatter) and ``VVc`` (coherence).
    clear_share
        ``(parcel, date)`` share of parcel pixels in clear SCL classes; NaN where unknown.
    water_share
        ``(parcel, date)`` share of parcel pixels classed water (SCL 6); NaN where unknown.
    """

    parcel_ids: np.ndarray
    dates: np.ndarray
    bands: Mapping[str, np.ndarray]
    # None: unknown everywhere; __post_init__ always leaves a (parcel, date) array
    clear_share: np.ndarray = None  # type: ignore[assignment]
    water_share: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        ids = np.asarray(self.parcel_ids)
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        shape = (len(ids), len(dates))
        if len(dates) > 1 and not np.all(np.diff(dates) > np.timedelta64(0, "D")):
            raise InputError("dates=: must be strictly increasing days; sort and "
                             "de-duplicate them first", parameter="dates")
        bands = {}
        for name, values in self.bands.items():
            array = np.asarray(values, dtype=float)
            if array.shape != shape:
                raise InputError(f"bands=: {name} has shape {array.shape}, expected "
                                 f"(parcels, dates) = {shape}", parameter="bands")
            bands[name] = array
        object.__setattr__(self, "parcel_ids", ids)
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "bands", bands)
        for name in ("clear_share", "water_share"):
            given = getattr(self, name)
            array = np.asarray(np.nan if given is None else given, dtype=float)
            if array.ndim == 0:  # one value (None: unknown) for every observation
                array = np.full(shape, float(array))
            if array.shape != shape:
                raise InputError(f"{name}=: shape {array.shape}, expected {shape}",
                                 parameter=name)
            object.__setattr__(self, name, array)

    @property
    def shape(self) -> tuple[int, int]:
        """``(parcels, dates)``."""
        return (len(self.parcel_ids), len(self.dates))

    def band(self, name: str) -> np.ndarray:
        """Return band ``name``, all NaN when the batch does not have it."""
        values = self.bands.get(name)
        return np.full(self.shape, np.nan) if values is None else values

    # -- indices (markers.md §5.3, §2.4) ------------------------------------------------
    @property
    def ndvi(self) -> np.ndarray:
        """NDVI = (B08 - B04)/(B08 + B04), or the ``NDVI`` band when given directly."""
        if "NDVI" in self.bands:
            return self.bands["NDVI"]
        return _normalised_difference(self.band("B08"), self.band("B04"))

    @property
    def bsi(self) -> np.ndarray:
        """Bare soil index ((B11+B04) - (B08+B02)) / ((B11+B04) + (B08+B02))."""
        return _normalised_difference(self.band("B11") + self.band("B04"),
                                      self.band("B08") + self.band("B02"))

    @property
    def ndti(self) -> np.ndarray:
        """Normalised difference tillage index (B11 - B12)/(B11 + B12)."""
        return _normalised_difference(self.band("B11"), self.band("B12"))

    @property
    def vv_db(self) -> np.ndarray:
        """VV backscatter in dB (10·log10 of the linear parcel mean; ≤ 0 -> NaN)."""
        return _to_db(self.band("VVb"))

    @property
    def vh_db(self) -> np.ndarray:
        """VH backscatter in dB."""
        return _to_db(self.band("VHb"))

    @property
    def vv_vh_ratio_db(self) -> np.ndarray:
        """Cross ratio VV_dB - VH_dB (the linear VV/VH, markers.md §2.4 convention)."""
        return self.vv_db - self.vh_db

    @property
    def coherence(self) -> np.ndarray:
        """6-day VV coherence (``VVc``), NaN where missing."""
        return self.band("VVc")

    @property
    def s2_valid(self) -> np.ndarray:
        """``(parcel, date)`` True where a valid S2 observation (finite NDVI) exists."""
        return np.isfinite(self.ndvi)

    def window(self, start: Any, end: Any) -> np.ndarray:
        """Return the boolean date mask of the closed window ``[start, end]``."""
        a, b = np.datetime64(start, "D"), np.datetime64(end, "D")
        return (self.dates >= a) & (self.dates <= b)

    def select(self, rows: Sequence[int] | np.ndarray) -> ParcelSeries:
        """Return the parcels ``rows`` (indices) as a new batch on the same date axis."""
        rows = np.asarray(rows)
        return ParcelSeries(
            parcel_ids=self.parcel_ids[rows], dates=self.dates,
            bands={k: v[rows] for k, v in self.bands.items()},
            clear_share=self.clear_share[rows], water_share=self.water_share[rows],
        )

    # -- preparation (markers.md §2.2, §2.3) --------------------------------------------
    def prepare(self, params: SeriesParams | None = None) -> ParcelSeries:
        """Return the series with invalid S2 observations set to NaN in every S2 band.

        An S2 observation is dropped when its clear share is known and below
        ``min_clear_share``, when B04 or B08 is not positive, when NDVI is outside
        [-1, 1], or when it is an isolated dip-and-recover spike (§2.3).  Sentinel-1
        bands are kept as they are.
        """
        p = params or SeriesParams.from_config()
        ndvi = self.ndvi
        keep = np.isfinite(ndvi) & (ndvi >= -1.0) & (ndvi <= 1.0)
        keep &= ~(self.clear_share < p.min_clear_share)  # NaN share: unknown, kept
        for name in ("B04", "B08"):
            if name in self.bands:
                keep &= self.bands[name] > 0
        keep &= ~_spikes(np.where(keep, ndvi, np.nan), self.dates, p)
        bands = {name: (np.where(keep, v, np.nan) if name in S2_BANDS else v)
                 for name, v in self.bands.items()}
        return replace(self, bands=bands)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        parcel_column: str = "parcel_id",
        scl_valid: Iterable[int] | None = None,
    ) -> ParcelSeries:
        """Build a batch from long signature rows of many parcels.

        Parameters
        ----------
        frame
            Rows as :func:`cbm_dask.store.parcel_time_series` returns them (``datetime,
            band, mean, count, cloud_pixels`` ...), for many parcels, with a
            ``parcel_column``.  An optional ``scl`` column holds the SCL histogram of
            the row's image (``SCL_CLASS_COUNT`` pixel counts); without it the clear
            share is estimated as ``1 - cloud_pixels / (count + cloud_pixels)``.
            Same-day rows of a parcel and band are averaged.
        parcel_column
            Name of the parcel id column.
        scl_valid
            SCL classes counted as clear; default ``cbm.markers.series.scl-valid``.
        """
        missing = {parcel_column, "datetime", "band", "mean"} - set(frame.columns)
        if missing:
            raise InputError(f"frame=: missing columns {sorted(missing)}; pass the rows "
                             "of store.parcel_time_series with a parcel id column",
                             parameter="frame")
        valid_classes = np.asarray(sorted(
            SeriesParams.from_config().scl_valid if scl_valid is None else scl_valid))
        day = pd.to_datetime(frame["datetime"], utc=True).dt.tz_localize(None)
        work = pd.DataFrame({
            "parcel": frame[parcel_column].to_numpy(),
            "day": day.dt.floor("D").to_numpy().astype("datetime64[D]"),
            "band": frame["band"].to_numpy(),
            "mean": frame["mean"].astype(float).to_numpy(),
        })
        ids = np.asarray(pd.unique(work["parcel"]))
        dates = np.unique(work["day"].to_numpy())
        row = pd.Index(ids).get_indexer(work["parcel"])
        col = np.searchsorted(dates, work["day"].to_numpy())
        shape = (len(ids), len(dates))

        def grid_mean(values: np.ndarray, where: np.ndarray) -> np.ndarray:
            total = np.zeros(shape)
            count = np.zeros(shape)
            ok = where & np.isfinite(values)
            np.add.at(total, (row[ok], col[ok]), values[ok])
            np.add.at(count, (row[ok], col[ok]), 1)
            with np.errstate(invalid="ignore"):
                return np.where(count > 0, total / count, np.nan)

        bands = {str(name): grid_mean(work["mean"].to_numpy(), (work["band"] == name).to_numpy())
                 for name in pd.unique(work["band"])}
        clear = np.full(len(work), np.nan)
        water = np.full(len(work), np.nan)
        if "scl" in frame.columns:
            for i, hist in enumerate(frame["scl"].to_numpy()):
                if hist is None or (np.ndim(hist) == 0 and pd.isna(hist)):
                    continue
                counts = np.asarray(hist, dtype=float)[:SCL_CLASS_COUNT]
                total = counts.sum()
                if total > 0:
                    clear[i] = counts[valid_classes].sum() / total
                    water[i] = counts[_WATER_CLASS] / total
        elif {"cloud_pixels", "count"} <= set(frame.columns):
            cloud = frame["cloud_pixels"].astype(float).to_numpy()
            pixels = frame["count"].astype(float).to_numpy() + cloud
            with np.errstate(invalid="ignore", divide="ignore"):
                clear = np.where(pixels > 0, 1.0 - cloud / pixels, np.nan)
        everywhere = np.ones(len(work), dtype=bool)
        return cls(parcel_ids=ids, dates=dates, bands=bands,
                   clear_share=grid_mean(clear, everywhere),
                   water_share=grid_mean(water, everywhere))

    @classmethod
    def from_frames(cls, frames: Mapping[Any, pd.DataFrame], *,
                    scl_valid: Iterable[int] | None = None) -> ParcelSeries:
        """Build a batch from one long frame per parcel id (e.g. ``parcel_time_series``)."""
        if not frames:
            raise InputError("frames=: no parcels given; pass {parcel_id: rows, ...}",
                             parameter="frames")
        rows = pd.concat([f.assign(parcel_id=pid) for pid, f in frames.items()],
                         ignore_index=True)
        return cls.from_frame(rows, scl_valid=scl_valid)


def _to_db(linear: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(linear > 0, 10.0 * np.log10(np.where(linear > 0, linear, 1.0)), np.nan)


def _spikes(ndvi: np.ndarray, dates: np.ndarray, p: SeriesParams) -> np.ndarray:
    """Isolated dips: > spike_drop below both close neighbours that agree with each other."""
    valid = np.isfinite(ndvi)
    before, after = previous_valid(valid), next_valid(valid)
    day = dates.astype("int64")
    v_before, v_after = take_dates(ndvi, before), take_dates(ndvi, after)
    d_before = np.where(before < 0, np.inf, day[None, :] - day[np.maximum(before, 0)])
    d_after = np.where(after < 0, np.inf, day[np.maximum(after, 0)] - day[None, :])
    with np.errstate(invalid="ignore"):
        spike = ((v_before - ndvi > p.spike_drop) & (v_after - ndvi > p.spike_drop)
                 & (d_before <= p.spike_neighbour_days) & (d_after <= p.spike_neighbour_days)
                 & (np.abs(v_before - v_after) < p.spike_neighbour_difference))
    return valid & spike


def whittaker_smooth(values: np.ndarray, smoothing: float = 15.0,
                     chunk_parcels: int = 256) -> np.ndarray:
    """Return a weighted Whittaker smoothing of ``(parcel, date)`` values, for display only.

    Missing values get weight 0 and are filled by the curve; second-order differences
    over the date index.  Detectors never use it: smoothing flattens the drops they
    look for (markers.md §2.5).  Parcels without any value stay all NaN.
    """
    values = np.asarray(values, dtype=float)
    n_parcels, n_dates = values.shape
    out = np.full_like(values, np.nan)
    if n_dates < 3:
        return np.where(np.isfinite(values), values, np.nan)
    d = np.diff(np.eye(n_dates), n=2, axis=0)
    penalty = smoothing * (d.T @ d)
    for lo in range(0, n_parcels, chunk_parcels):  # chunks bound the (P, T, T) memory
        block = values[lo:lo + chunk_parcels]
        weight = np.isfinite(block).astype(float)
        system = penalty[None, :, :] + weight[:, :, None] * np.eye(n_dates)[None]
        rhs = np.where(weight > 0, block, 0.0)
        has_any = weight.sum(axis=1) >= 2
        if has_any.any():
            solved = np.linalg.solve(system[has_any], rhs[has_any][..., None])[..., 0]
            out[lo:lo + chunk_parcels][has_any] = solved
    return out
