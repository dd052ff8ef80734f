"""Reading signatures back: one parcel's whole time series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from cbm_dask.errors import InputError
from cbm_dask.store.engine import get_engine
from cbm_dask.store.signatures import STATISTICS

__all__ = ["parcel_time_series"]

# Scene classes counted as cloudy: 3 cloud shadow, 8/9 cloud, 10 thin cirrus.
_CLOUD_CLASSES = (3, 8, 9, 10)
_COLUMNS = ("datetime", "collection", "item_id", "band", "count", *STATISTICS, "cloud_pixels")


def parcel_time_series(
    dataset: str,
    parcel_id: str,
    *,
    bands: Sequence[str] | None = None,
    url: str | None = None,
) -> pd.DataFrame:
    """Return one parcel's signatures: one row per image and band, oldest first.

    Columns: ``datetime, collection, item_id, band, count, mean, std, min, max,
    p25, p50, p75`` and ``cloud_pixels`` (SCL classes 3, 8, 9, 10 inside the
    parcel, Sentinel-2 only).

    Raises
    ------
    InputError
        When the dataset or the parcel does not exist.
    """
    with get_engine(url).connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT p.dataset_id, p.pid FROM parcels p JOIN datasets d ON d.id = p.dataset_id "
                "WHERE d.name = :d AND p.parcel_id = :p"
            ),
            {"d": dataset, "p": parcel_id},
        ).first()
        if row is None:
            raise InputError(
                f"parcel_id={parcel_id!r}: no such parcel in dataset {dataset!r}; check the "
                "dataset name and that the id is one of its parcel ids (the id column chosen "
                "when it was loaded, see dataset_info / `cbm parcels info`)",
                parameter="parcel_id",
            )
        stored = conn.execute(
            sa.text(
                # The parcel's rows first (one key probe per monthly leaf), then their
                # images: left to itself, a planner without fresh leaf statistics
                # probes every leaf once per image.
                "WITH s AS MATERIALIZED (SELECT image_id, count, stats, scl FROM signatures "
                "WHERE dataset_id = :d AND pid = :pid) "
                "SELECT i.datetime, i.collection, i.item_id, e.bands, s.count, s.stats, s.scl "
                "FROM s JOIN images i ON i.id = s.image_id "
                "JOIN extractions e ON e.dataset_id = :d AND e.image_id = s.image_id "
                "ORDER BY i.datetime, i.id"
            ),
            {"d": row.dataset_id, "pid": row.pid},
        ).all()
    return _band_rows(stored, set(bands) if bands else None)


def _band_rows(stored: Sequence[Any], wanted: set[str] | None) -> pd.DataFrame:
    """Expand stored rows (one per image, arrays over bands) to one row per band."""
    records: list[tuple[Any, ...]] = []
    for datetime, collection, item_id, band_list, count, stats, scl in stored:
        cloud = None if scl is None else sum(scl[c] for c in _CLOUD_CLASSES)
        for b in sorted(range(len(band_list)), key=band_list.__getitem__):
            if wanted is None or band_list[b] in wanted:
                values = [None if math.isnan(v) else v for v in stats[b]]
                records.append((datetime, collection, item_id, band_list[b], count[b],
                                *values, cloud))
    return pd.DataFrame.from_records(records, columns=_COLUMNS)
