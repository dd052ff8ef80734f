"""Marker results: one event record, and the column form detectors return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Status", "Sensor", "Event", "EventTable", "MarkerResult", "fuse_confidence"]


class Status(StrEnum):
    """Whether a marker could be evaluated."""

    OK = "OK"
    NOT_VALID = "NOT_VALID"  # too few or too sparse observations in the window
    NOT_EXECUTED = "NOT_EXECUTED"  # not run for the parcel (e.g. not monitorable)


class Sensor(StrEnum):
    """Which sensor(s) support an event."""

    S2 = "S2"
    S1 = "S1"
    S2_S1 = "S2+S1"
    NONE = ""


def fuse_confidence(*confidences: np.ndarray) -> np.ndarray:
    """Fuse independent confidences as ``1 - 1/Σ 1/(1 - cᵢ)`` (markers.md §5.2).

    NaN confidences (no evidence from that source) are left out.
    """
    total = np.zeros(np.broadcast(*confidences).shape)
    for c in confidences:
        c = np.asarray(c, dtype=float)
        with np.errstate(divide="ignore"):
            total = total + np.where(np.isfinite(c), 1.0 / np.maximum(1.0 - c, 1e-12), 0.0)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, 1.0 - 1.0 / total, np.nan)


@dataclass(frozen=True)
class Event:
    """One detected event (or, with no dates, the status of a parcel's window).

    ``start`` and ``end`` are the two observations bracketing the change;
    ``supporting_dates``/``supporting_values`` the observations it rests on
    (e.g. NDVI before and after); ``flags`` remarks such as ``wide_interval``.
    """

    parcel_id: Any
    type: str
    start: np.datetime64 | None
    end: np.datetime64 | None
    main_date: np.datetime64 | None
    confidence: float
    sensor: Sensor
    supporting_dates: tuple[np.datetime64, ...]
    supporting_values: tuple[float, ...]
    status: Status
    flags: tuple[str, ...] = ()


_NAT = np.datetime64("NaT", "D")


@dataclass(frozen=True)
class EventTable:
    """Events of many parcels as columns: one entry per event in every array.

    ``supporting_dates``/``supporting_values`` are ``(event, k)``, padded with NaT/NaN;
    ``flags`` holds comma-separated remarks ("" for none).
    """

    type: str
    parcel_id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    main_date: np.ndarray
    confidence: np.ndarray
    sensor: np.ndarray
    status: np.ndarray
    supporting_dates: np.ndarray
    supporting_values: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.parcel_id)

    @classmethod
    def build(cls, type: str, parcel_id: Any, start: Any, end: Any, main_date: Any,
              confidence: Any, sensor: Any, status: Any = Status.OK,
              supporting_dates: Any = None, supporting_values: Any = None,
              flags: Any = "") -> EventTable:
        """Assemble a table, broadcasting scalar columns over the events."""
        ids = np.asarray(parcel_id)
        n = len(ids)

        def column(values: Any, dtype: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(values, dtype=dtype), (n,)).copy()

        dates = (np.full((n, 0), _NAT) if supporting_dates is None
                 else _two_d(np.asarray(supporting_dates, dtype="datetime64[D]"), n))
        values = (np.full((n, 0), np.nan) if supporting_values is None
                  else _two_d(np.asarray(supporting_values, dtype=float), n))
        return cls(type=type, parcel_id=ids, start=column(start, "datetime64[D]"),
                   end=column(end, "datetime64[D]"),
                   main_date=column(main_date, "datetime64[D]"),
                   confidence=column(confidence, float), sensor=column(sensor, object),
                   status=column(status, object), supporting_dates=dates,
                   supporting_values=values, flags=column(flags, object))

    @classmethod
    def empty(cls, type: str) -> EventTable:
        """Return a table without events."""
        return cls.build(type, np.asarray([], dtype=object), _NAT, _NAT, _NAT, np.nan,
                         Sensor.NONE)

    def of(self, parcel_id: Any) -> EventTable:
        """Return the events of one parcel."""
        return self.take(np.flatnonzero(self.parcel_id == parcel_id))

    def take(self, rows: np.ndarray) -> EventTable:
        """Return the events at positions ``rows``."""
        return EventTable(type=self.type, **{
            name: getattr(self, name)[rows] for name in _COLUMNS})

    def records(self) -> list[Event]:
        """Return the events as :class:`Event` records."""
        out = []
        for i in range(len(self)):
            dates = self.supporting_dates[i]
            keep = ~np.isnat(dates) | np.isfinite(self.supporting_values[i])
            out.append(Event(
                parcel_id=self.parcel_id[i].item() if hasattr(self.parcel_id[i], "item")
                else self.parcel_id[i],
                type=self.type, start=_date_or_none(self.start[i]),
                end=_date_or_none(self.end[i]), main_date=_date_or_none(self.main_date[i]),
                confidence=float(self.confidence[i]), sensor=Sensor(self.sensor[i]),
                supporting_dates=tuple(dates[keep]),
                supporting_values=tuple(float(v) for v in self.supporting_values[i][keep]),
                status=Status(self.status[i]),
                flags=tuple(f for f in str(self.flags[i]).split(",") if f),
            ))
        return out

    def to_frame(self) -> pd.DataFrame:
        """Return one row per event (supporting observations as tuples)."""
        records = self.records()
        return pd.DataFrame({
            "parcel_id": self.parcel_id, "type": self.type, "start": self.start,
            "end": self.end, "main_date": self.main_date, "confidence": self.confidence,
            "sensor": self.sensor, "status": self.status,
            "supporting_dates": [r.supporting_dates for r in records],
            "supporting_values": [r.supporting_values for r in records],
            "flags": self.flags,
        })


_COLUMNS = ("parcel_id", "start", "end", "main_date", "confidence", "sensor", "status",
            "supporting_dates", "supporting_values", "flags")


def _two_d(values: np.ndarray, n: int) -> np.ndarray:
    """``(event, k)`` supporting columns from ``(event,)`` or ``(event, k)`` input."""
    return values.reshape(n, -1) if values.ndim < 2 else values


def _date_or_none(value: np.datetime64) -> np.datetime64 | None:
    return None if np.isnat(value) else value


@dataclass(frozen=True)
class MarkerResult:
    """What one marker found for a batch of parcels in one window.

    ``status`` is per parcel (aligned with ``parcel_ids``): OK when the window could be
    judged, so that an OK parcel without events means the event is absent; NOT_VALID
    when the observations do not allow a judgement (whatever was detected is kept).
    """

    marker: str
    parcel_ids: np.ndarray
    status: np.ndarray
    events: EventTable

    def status_of(self, parcel_id: Any) -> Status:
        """Return the window status of one parcel."""
        return Status(self.status[np.flatnonzero(self.parcel_ids == parcel_id)[0]])

    def table(self) -> EventTable:
        """Events plus one dateless record per parcel whose status is not OK."""
        pending = np.flatnonzero(self.status != Status.OK)
        extra = EventTable.build(self.marker, self.parcel_ids[pending], _NAT, _NAT, _NAT,
                                 np.nan, Sensor.NONE, status=self.status[pending])
        return concat_tables([self.events, extra])

    def to_frame(self) -> pd.DataFrame:
        """:meth:`table` as a DataFrame."""
        return self.table().to_frame()


def concat_tables(tables: Sequence[EventTable]) -> EventTable:
    """Concatenate event tables of one type (supporting columns padded to the widest)."""
    width = max((t.supporting_dates.shape[1] for t in tables), default=0)

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        extra = np.full((a.shape[0], width - a.shape[1]), fill, dtype=a.dtype)
        return np.concatenate([a, extra], axis=1)

    return EventTable(
        type=tables[0].type,
        **{name: np.concatenate([getattr(t, name) for t in tables])
           for name in _COLUMNS if not name.startswith("supporting")},
        supporting_dates=np.concatenate([pad(t.supporting_dates, _NAT) for t in tables]),
        supporting_values=np.concatenate([pad(t.supporting_values, np.nan) for t in tables]),
    )
