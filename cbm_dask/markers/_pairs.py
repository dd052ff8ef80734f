"""Consecutive valid observations (b, l, n) of every (parcel, date) cell, and dedup of events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cbm_dask.markers.series import next_valid, previous_valid, take_dates

NAT_DAY = np.datetime64("NaT", "D").astype("int64")


def days_to_dates(days: np.ndarray) -> np.ndarray:
    """Integer days since the epoch as ``datetime64[D]`` (``NAT_DAY`` becomes NaT)."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]")


@dataclass(frozen=True)
class Neighbours:
    """Per cell: the previous (``b``) and next (``n``) valid observation and their days.

    Index arrays are -1, values NaN and days the cell's own day where there is none.
    """

    before: np.ndarray
    after: np.ndarray
    v_before: np.ndarray
    v_after: np.ndarray
    day: np.ndarray
    day_before: np.ndarray
    day_after: np.ndarray


def neighbours(values: np.ndarray, dates: np.ndarray) -> Neighbours:
    """Find the neighbouring valid (finite) observations of every cell of ``values``."""
    valid = np.isfinite(values)
    before, after = previous_valid(valid), next_valid(valid)
    day = np.broadcast_to(np.asarray(dates, dtype="datetime64[D]").astype("int64"),
                          values.shape)
    return Neighbours(
        before=before, after=after,
        v_before=take_dates(values, before), v_after=take_dates(values, after),
        day=day,
        day_before=np.where(before < 0, day, np.take_along_axis(day, np.maximum(before, 0), 1)),
        day_after=np.where(after < 0, day, np.take_along_axis(day, np.maximum(after, 0), 1)),
    )


def keep_separated(candidate: np.ndarray, confidence: np.ndarray, start: np.ndarray,
                   end: np.ndarray, min_span: int, max_per_year: int | None = None
                   ) -> np.ndarray:
    """Keep candidates in decreasing confidence unless too close to a kept one.

    A candidate is dropped when the union of its interval and a kept one's, from the
    earlier start to the later end, spans fewer than ``min_span`` days, or when its
    year (of ``end``) already holds ``max_per_year`` kept events.  All arrays are
    ``(parcel, date)``; days are integers.  Loops over the candidates' rank only.
    """
    n_parcels = candidate.shape[0]
    order = np.argsort(np.where(candidate, -confidence, np.inf), axis=1, kind="stable")
    ranks = int(candidate.sum(axis=1).max(initial=0))
    kept = np.zeros_like(candidate)
    rows = np.arange(n_parcels)
    year = (end.astype("datetime64[D]").astype("datetime64[Y]").astype(int)
            if max_per_year is not None else None)
    for k in range(ranks):
        col = order[:, k]
        live = candidate[rows, col]
        s, e = start[rows, col][:, None], end[rows, col][:, None]
        span = np.maximum(e, end) - np.minimum(s, start)
        clash = (kept & (span < min_span)).any(axis=1)
        if year is not None and max_per_year is not None:
            same_year = kept & (year == year[rows, col][:, None])
            clash |= same_year.sum(axis=1) >= max_per_year
        kept[rows[live & ~clash], col[live & ~clash]] = True
    return kept
