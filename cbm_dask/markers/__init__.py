"""Rule-based markers over parcel time series: pure functions, no I/O.

Every quantity is a ``(parcel, date)`` array, so one call judges a whole batch of
parcels.  Build a :class:`ParcelSeries` (e.g. :meth:`ParcelSeries.from_frame` over
signature rows), :meth:`~ParcelSeries.prepare` it, then run the detectors.
Parameters default to ``cbm.markers.*`` (``cbm_dask/cbm.yaml``), read at call time.
"""

from cbm_dask.markers.coverage import Coverage, CoverageParams, coverage
from cbm_dask.markers.events import (
    Event,
    EventTable,
    MarkerResult,
    Sensor,
    Status,
    fuse_confidence,
)
from cbm_dask.markers.harvest import EmergenceParams, HarvestParams, emergence, harvest
from cbm_dask.markers.mowing import MowingParams, coherence_evidence, mowing
from cbm_dask.markers.series import ParcelSeries, SeriesParams, whittaker_smooth
from cbm_dask.markers.soil import (
    BareSoilParams,
    BareSoilState,
    PloughingParams,
    bare_soil,
    ploughing,
)
from cbm_dask.markers.vegetation import VegPresenceParams, veg_presence

__all__ = [
    "ParcelSeries",
    "SeriesParams",
    "whittaker_smooth",
    "Event",
    "EventTable",
    "MarkerResult",
    "Sensor",
    "Status",
    "fuse_confidence",
    "Coverage",
    "CoverageParams",
    "coverage",
    "VegPresenceParams",
    "veg_presence",
    "BareSoilParams",
    "BareSoilState",
    "bare_soil",
    "MowingParams",
    "mowing",
    "coherence_evidence",
    "PloughingParams",
    "ploughing",
    "HarvestParams",
    "harvest",
    "EmergenceParams",
    "emergence",
]
