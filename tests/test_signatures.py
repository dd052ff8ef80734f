"""Signature storage against the real PostGIS: layout, views, atomic writes, migration."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from cbm_dask.errors import InputError
from cbm_dask.store import migrate
from cbm_dask.store.engine import get_engine, libpq_dsn
from cbm_dask.store.parcels import load_parcel_file
from cbm_dask.store.signatures import STATISTICS, copy_image_rows, image_rows
from cbm_dask.store.timeseries import parcel_time_series
from tests._helpers import FLANDERS_PARCELS

DATES = ("2024-04-28T10:00:00Z", "2024-05-03T10:00:00Z", "2024-05-31T23:30:00Z",
         "2024-06-02T10:00:00Z")


def _add_images(conn: sa.Connection, dates: tuple[str, ...] = DATES,
                collection: str = "sentinel-2-l2a") -> list[int]:
    return [
        conn.execute(
            sa.text(
                "INSERT INTO images (collection, item_id, datetime, card, footprint, assets, "
                "properties) VALUES (:c, :i, :t, 's2', ST_Multi(ST_MakeEnvelope(4, 51, 5, 52, "
                "4326)), '{}', '{}') RETURNING id"
            ),
            {"c": collection, "i": f"item-{collection}-{k}", "t": date},
        ).scalar_one()
        for k, date in enumerate(dates)
    ]


@pytest.fixture
def dataset(fresh_db: str) -> tuple[int, list[int], list[int]]:
    result = load_parcel_file(FLANDERS_PARCELS, "be")
    with get_engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM images"))
        images = _add_images(conn)
        conn.execute(sa.text(
            "INSERT INTO extractions (dataset_id, image_id) SELECT :d, unnest(CAST(:i AS int[]))"
        ), {"d": result.dataset_id, "i": images})
        pids = conn.execute(
            sa.text("SELECT pid FROM parcels WHERE dataset_id = :d ORDER BY pid"),
            {"d": result.dataset_id},
        ).scalars().all()
    return result.dataset_id, images, list(pids)


def _signatures(pids: list[int], bands: tuple[str, ...] = ("B08", "B04"),
                seed: int = 0) -> pd.DataFrame:
    """A reduction's long frame, grouped by band as the engine returns it."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"band": np.repeat(bands, len(pids)), "pid": np.tile(pids, len(bands)),
         "count": rng.integers(0, 50, len(pids) * len(bands))}
    )
    for stat in STATISTICS:
        frame[stat] = rng.random(len(frame)).astype("float32") * 1000
    frame.loc[frame["count"] == 0, list(STATISTICS)] = np.nan
    return frame


def _write(dataset_id: int, image_id: int, signatures: pd.DataFrame,
           histograms: pd.DataFrame | None = None, *, replace: bool = False) -> int:
    with psycopg.connect(libpq_dsn()) as conn, \
            conn.cursor() as cursor:
        return copy_image_rows(cursor, dataset_id, image_id, signatures, histograms,
                               replace=replace)


def _band_rows(dataset_id: int) -> pd.DataFrame:
    with get_engine().connect() as conn:
        return pd.read_sql(
            sa.text("SELECT * FROM signature_bands WHERE dataset_id = :d "
                    "ORDER BY image_id, pid, band"),
            conn, params={"d": dataset_id},
        )


def test_image_rows_gathers_bands_and_histograms() -> None:
    long = _signatures([7, 3, 5])
    long = long[~((long["pid"] == 5) & (long["band"] == "B04"))]  # a band missing for one
    hist = pd.DataFrame({"pid": [3, 3, 9], "class": [4, 8, 0], "count": [10, 2, 1]})
    rows = image_rows(long, hist)
    assert rows.pid.tolist() == [3, 5, 7, 9] and rows.bands == ("B08", "B04")
    assert rows.band_rows == 8
    b08 = long[long["band"] == "B08"].set_index("pid")
    assert rows.count[:3, 0].tolist() == b08.loc[[3, 5, 7], "count"].tolist()
    np.testing.assert_array_equal(rows.stats[:3, 0, :], b08.loc[[3, 5, 7], list(STATISTICS)])
    assert rows.count[1, 1] == 0 and np.isnan(rows.stats[1, 1]).all()
    assert rows.scl is not None and rows.scl[0, 4] == 10 and rows.scl[0, 8] == 2
    assert rows.scl[3, 0] == 1 and rows.scl.sum() == 13
    as_json = pd.DataFrame({"pid": [3, 9], "hist": [json.dumps({"4": 10, "8": 2}), '{"0": 1}']})
    assert (image_rows(long, as_json).scl == rows.scl).all()
    with pytest.raises(InputError, match="one row per"):
        image_rows(pd.concat([long, long.iloc[:1]]))
    blocks = _signatures([7, 3, 7])  # band blocks over the same parcels, one twice
    with pytest.raises(InputError, match="one row per"):
        image_rows(blocks)
    # band blocks (the engine's order) and any other order gather alike
    blocks = _signatures([7, 3, 5, 11])
    fast, slow = image_rows(blocks, hist), image_rows(blocks.sample(frac=1, random_state=1),
                                                       hist)
    assert fast.pid.tolist() == slow.pid.tolist() == [3, 5, 7, 9, 11]
    same = [slow.bands.index(b) for b in fast.bands]
    np.testing.assert_array_equal(fast.count, slow.count[:, same])
    np.testing.assert_array_equal(fast.stats, slow.stats[:, same])
    fast = image_rows(blocks)
    assert fast.pid.tolist() == [3, 5, 7, 11] and fast.scl is None
    np.testing.assert_array_equal(
        fast.stats[:, 1, :], blocks[blocks["band"] == "B04"].sort_values("pid")[list(STATISTICS)])


def test_rows_land_in_monthly_leaves_and_read_back_per_band(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, images, pids = dataset
    expected = {}
    for k, image_id in enumerate(images):
        frame = _signatures(pids, seed=k)
        hist = pd.DataFrame({"pid": pids, "class": 4, "count": frame["count"][: len(pids)]})
        assert _write(dataset_id, image_id, frame, hist if k % 2 == 0 else None) == 2 * len(pids)
        expected[image_id] = frame
    with get_engine().connect() as conn:
        leaves = conn.execute(sa.text(
            "SELECT c.relname, count(s.*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "LEFT JOIN signatures s ON s.tableoid = c.oid "
            "WHERE i.inhparent = CAST(:p AS regclass) GROUP BY c.relname ORDER BY c.relname"
        ), {"p": f"signatures_d{dataset_id}"}).all()
        bands = conn.execute(sa.text(
            "SELECT bands FROM extractions WHERE dataset_id = :d ORDER BY image_id"
        ), {"d": dataset_id}).scalars().all()
        hist = conn.execute(sa.text(
            "SELECT hist FROM scl_histograms WHERE dataset_id = :d AND image_id = :i "
            "AND pid = :p"), {"d": dataset_id, "i": images[0], "p": pids[0]}).scalar_one_or_none()
    # 2024-05-31T23:30Z is still May in UTC
    assert [(name, n) for name, n in leaves] == [
        (f"signatures_d{dataset_id}_202404", len(pids)),
        (f"signatures_d{dataset_id}_202405", 2 * len(pids)),
        (f"signatures_d{dataset_id}_202406", len(pids)),
    ]
    assert bands == [["B08", "B04"]] * 4
    first = expected[images[0]]
    count0 = int(first["count"].iloc[0])
    assert hist == ({"4": count0} if count0 else None)
    stored = _band_rows(dataset_id)
    assert len(stored) == 4 * 2 * len(pids)
    for image_id, frame in expected.items():
        got = stored[stored["image_id"] == image_id].set_index(["pid", "band"]).sort_index()
        want = frame.set_index(["pid", "band"]).sort_index()
        np.testing.assert_array_equal(got["count"].to_numpy(), want["count"].to_numpy())
        for stat in STATISTICS:  # NaN in the arrays comes out as NULL
            np.testing.assert_allclose(got[stat].to_numpy(dtype=float),
                                       want[stat].to_numpy(dtype=float), rtol=1e-6)


def test_parcel_time_series_keeps_its_contract(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, images, pids = dataset
    for k, image_id in enumerate(images):
        hist = pd.DataFrame({"pid": [pids[0]] * 3, "class": [3, 4, 9], "count": [5, 20, k]})
        _write(dataset_id, image_id, _signatures(pids, seed=k),
               hist if image_id != images[-1] else None)
    with get_engine().connect() as conn:
        parcel_id = conn.execute(sa.text("SELECT parcel_id FROM parcels WHERE pid = :p"),
                                 {"p": pids[0]}).scalar_one()
    series = parcel_time_series("be", parcel_id)
    assert list(series.columns) == ["datetime", "collection", "item_id", "band", "count",
                                    *STATISTICS, "cloud_pixels"]
    assert len(series) == 8 and series["band"].tolist() == ["B04", "B08"] * 4
    assert series["datetime"].is_monotonic_increasing
    assert series["cloud_pixels"].tolist()[:6] == [5, 5, 6, 6, 7, 7]
    assert series["cloud_pixels"].isna().tolist()[6:] == [True, True]
    via_view = _band_rows(dataset_id)
    via_view = via_view[via_view["pid"] == pids[0]]
    assert sorted(series["mean"].dropna().round(3)) == sorted(via_view["mean"].dropna().round(3))
    only = parcel_time_series("be", parcel_id, bands=["B08"])
    assert only["band"].unique().tolist() == ["B08"] and len(only) == 4
    with pytest.raises(InputError, match="^parcel_id=.no-such-parcel.: no such parcel in dataset"):
        parcel_time_series("be", "no-such-parcel")


def test_write_is_atomic_and_replaces(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, images, pids = dataset
    _write(dataset_id, images[1], _signatures(pids))
    again = _signatures(pids[:10], bands=("B02", "B03", "B04"), seed=5)
    assert _write(dataset_id, images[1], again, replace=True) == 30
    stored = _band_rows(dataset_id)
    assert len(stored) == 30 and set(stored["band"]) == {"B02", "B03", "B04"}
    duplicated = pd.concat([_signatures(pids[:5]), _signatures(pids[:5])])
    with pytest.raises(InputError, match="one row per"):
        _write(dataset_id, images[1], duplicated, replace=True)
    with pytest.raises(psycopg.errors.UniqueViolation):  # written twice without replace
        _write(dataset_id, images[1], again)
    assert len(_band_rows(dataset_id)) == 30  # the earlier result is intact
    with pytest.raises(InputError, match="no such image"):
        _write(dataset_id, 10**6, again)


def test_migration_moves_band_rows_into_image_rows(fresh_db: str) -> None:
    """Data written in the 0001 layout (one row per band, JSON histograms) survives 0002."""
    result = load_parcel_file(FLANDERS_PARCELS, "be_old")
    dataset_id = result.dataset_id
    with get_engine().connect() as conn:
        pids = conn.execute(sa.text(
            "SELECT pid FROM parcels WHERE dataset_id = :d ORDER BY pid LIMIT 20"),
            {"d": dataset_id}).scalars().all()
    migrate.downgrade("0001")
    try:
        with get_engine().begin() as conn:
            conn.execute(sa.text("DELETE FROM images"))
            images = _add_images(conn, DATES[:2])
            old = _signatures(list(pids), seed=3)
            old = old[~((old["pid"] == pids[0]) & (old["band"] == "B04"))]
            for image_id in images:
                conn.execute(sa.text(
                    "INSERT INTO signatures SELECT :d, pid, :i, band, count, mean, std, min, "
                    "max, p25, p50, p75 FROM json_populate_recordset(NULL::signatures, :rows)"),
                    {"d": dataset_id, "i": image_id, "rows": old.to_json(orient="records")})
                conn.execute(sa.text(
                    "INSERT INTO scl_histograms VALUES (:d, :p, :i, CAST(:h AS jsonb))"),
                    {"d": dataset_id, "p": pids[1], "i": image_id, "h": '{"4": 7, "10": 2}'})
        assert migrate.upgrade() == migrate.head_revision()
    finally:
        if migrate.current_revision() != migrate.head_revision():
            migrate.upgrade()
    stored = _band_rows(dataset_id)
    assert len(stored) == 2 * 2 * len(pids)  # the missing band comes back as count 0
    gap = stored[(stored["pid"] == pids[0]) & (stored["band"] == "B04")]
    assert (gap["count"] == 0).all() and gap["mean"].isna().all()
    got = stored[stored["image_id"] == images[0]].set_index(["pid", "band"]).drop(
        index=(pids[0], "B04"))
    want = old.set_index(["pid", "band"])
    got = got.loc[want.index]
    np.testing.assert_array_equal(got["count"], want["count"])
    np.testing.assert_allclose(got["p50"].to_numpy(float), want["p50"].to_numpy(float),
                               rtol=1e-6)
    with get_engine().connect() as conn:
        hist = conn.execute(sa.text(
            "SELECT hist FROM scl_histograms WHERE pid = :p AND image_id = :i"),
            {"p": pids[1], "i": images[1]}).scalar_one()
        acquired = conn.execute(sa.text(
            "SELECT DISTINCT acquired FROM signatures WHERE dataset_id = :d ORDER BY 1"),
            {"d": dataset_id}).scalars().all()
    assert hist == {"4": 7, "10": 2}
    assert acquired == [dt.date(2024, 4, 28), dt.date(2024, 5, 3)]


def test_two_writers_of_a_new_month_wait_for_one_leaf(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    """The first image of a month creates its leaf; a second writer waits, then uses it."""
    import threading

    dataset_id, images, pids = dataset
    first, second = images[1], images[2]  # both May 2024, no leaf yet
    errors: list[BaseException] = []
    with psycopg.connect(libpq_dsn()) as holder, holder.cursor() as cursor:
        copy_image_rows(cursor, dataset_id, first, _signatures(pids, seed=1), replace=False)

        def other() -> None:
            try:
                _write(dataset_id, second, _signatures(pids, seed=2))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive()  # queued behind the uncommitted leaf
    thread.join(timeout=60)
    assert not thread.is_alive() and errors == []
    stored = _band_rows(dataset_id)
    assert sorted(stored["image_id"].unique()) == sorted([first, second])
    assert len(stored) == 2 * 2 * len(pids)
