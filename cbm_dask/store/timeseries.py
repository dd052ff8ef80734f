"""Reading signatures back: one parcel's whole time series."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from cbm_dask.errors import InputError
from cbm_dask.store.engine import get_engine

__all__ = ["parcel_time_series"]


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
                f"no parcel {parcel_id!r} in dataset {dataset!r}; check both with "
                "`cbm parcels info --dataset NAME`"
            )
        return pd.read_sql(
            sa.text(
                "SELECT i.datetime, i.collection, i.item_id, s.band, s.count, s.mean, s.std, "
                "s.min, s.max, s.p25, s.p50, s.p75, "
                "CASE WHEN h.hist IS NOT NULL THEN (SELECT sum(coalesce((h.hist->>k)::int, 0)) "
                " FROM unnest(ARRAY['3', '8', '9', '10']) k) END AS cloud_pixels "
                "FROM signatures s JOIN images i ON i.id = s.image_id "
                "LEFT JOIN scl_histograms h ON h.dataset_id = s.dataset_id AND h.pid = s.pid "
                "AND h.image_id = s.image_id "
                "WHERE s.dataset_id = :d AND s.pid = :pid "
                "AND (CAST(:bands AS text[]) IS NULL OR s.band = ANY(CAST(:bands AS text[]))) "
                "ORDER BY i.datetime, s.band"
            ),
            conn,
            params={"d": row.dataset_id, "pid": row.pid, "bands": list(bands) if bands else None},
        )
