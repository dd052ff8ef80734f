"""The extraction queue and per-image result writes against the real PostGIS."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cbm_dask.store.engine import get_engine
from cbm_dask.store.parcels import load_parcel_file
from cbm_dask.store.pgcopy import BinaryColumn, binary_copy_buffer
from cbm_dask.store.signatures import (
    ExtractionQueue,
    ensure_pending,
    mark_failed,
    reset_failed,
    write_image_result,
)
from tests.conftest import LPIS

SMALL = LPIS / "be_vlg_landbouwgebruikspercelen_2023" / "parcels.gpkg"


def _add_images(conn: sa.Connection, n: int, collection: str = "sentinel-2-l2a") -> list[int]:
    ids = []
    for k in range(n):
        ids.append(
            conn.execute(
                sa.text(
                    "INSERT INTO images (collection, item_id, datetime, card, footprint, assets, "
                    "properties) VALUES (:c, :i, :t, 's2', ST_Multi(ST_MakeEnvelope(4, 51, 5, 52, "
                    "4326)), '{}', '{}') RETURNING id"
                ),
                {"c": collection, "i": f"item-{collection}-{k}",
                 "t": f"2024-0{1 + (n - k) % 9}-01T10:00:00Z"},
            ).scalar_one()
        )
    return ids


@pytest.fixture
def dataset(fresh_db: str) -> tuple[int, list[int], list[int]]:
    result = load_parcel_file(SMALL, "be")
    with get_engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM images"))
        images = _add_images(conn, 4)
        ensure_pending(conn, result.dataset_id, images)
        pids = conn.execute(
            sa.text("SELECT pid FROM parcels WHERE dataset_id = :d ORDER BY pid"),
            {"d": result.dataset_id},
        ).scalars().all()
    return result.dataset_id, images, list(pids)


def _signatures(pids: list[int], bands: tuple[str, ...] = ("B04", "B08")) -> pd.DataFrame:
    rng = np.random.default_rng(len(pids))
    frame = pd.DataFrame(
        {"pid": np.repeat(pids, len(bands)), "band": np.tile(bands, len(pids)),
         "count": rng.integers(0, 50, len(pids) * len(bands))}
    )
    for stat in ("mean", "std", "min", "max", "p25", "p50", "p75"):
        frame[stat] = rng.random(len(frame)).astype("float32") * 1000
    frame.loc[frame["count"] == 0, ["mean", "std", "min", "max", "p25", "p50", "p75"]] = np.nan
    return frame


def _rows(dataset_id: int) -> pd.DataFrame:
    with get_engine().connect() as conn:
        return pd.read_sql(
            sa.text("SELECT * FROM signatures WHERE dataset_id = :d ORDER BY image_id, pid, band"),
            conn, params={"d": dataset_id},
        )


def test_binary_copy_buffer_handles_nulls_and_text() -> None:
    frame = pd.DataFrame({"a": [1, 2, None], "b": ["x", None, "long text"]})
    buffer = binary_copy_buffer(frame, [BinaryColumn("a", "int4"), BinaryColumn("b", "text")])
    assert buffer.startswith(b"PGCOPY\n\xff\r\n\x00") and buffer.endswith(b"\xff\xff")
    assert b"long text" in buffer and buffer.count(b"\xff\xff\xff\xff") == 2  # two NULLs


def test_claims_oldest_first_and_never_twice(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = dataset
    with get_engine().connect() as conn:
        by_date = conn.execute(
            sa.text("SELECT id FROM images ORDER BY datetime, id")
        ).scalars().all()
    with ExtractionQueue([dataset_id], worker="a") as first, \
            ExtractionQueue([dataset_id], worker="b") as second:
        a = first.claim(2)
        b = second.claim(5)
        assert [u.image_id for u in a] == by_date[:2]
        assert [u.image_id for u in b] == by_date[2:]
        assert first.claim(1) == [] and second.claim(1) == []
        assert first.remaining() == 4
    with get_engine().connect() as conn:
        workers = dict(conn.execute(sa.text("SELECT image_id, worker FROM extractions")).all())
    assert {workers[u.image_id] for u in a} == {"a"}
    # closing released the claims: a new process can take the running units
    with ExtractionQueue([dataset_id]) as third:
        assert len(third.claim(10)) == 4


def test_a_dead_process_releases_its_claims(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = dataset
    code = (
        "import os; from cbm_dask.store.signatures import ExtractionQueue;"
        f"q = ExtractionQueue([{dataset_id}]); print(len(q.claim(4)), flush=True); os._exit(9)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "4", done.stderr
    with get_engine().connect() as conn:
        assert set(conn.execute(sa.text("SELECT status FROM extractions")).scalars()) == {
            "running"
        }
    with ExtractionQueue([dataset_id]) as queue:
        units = queue.claim(10)
    assert len(units) == 4 and all(u.attempts == 2 for u in units)


def test_write_is_atomic_and_idempotent(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, pids = dataset
    with ExtractionQueue([dataset_id]) as queue:
        unit = queue.claim(1)[0]
        first = _signatures(pids)
        hist = pd.DataFrame({"pid": pids, "hist": [json.dumps({"4": 10, "8": 2})] * len(pids)})
        assert write_image_result(unit, first, hist) == len(first)
        again = _signatures(pids[:10])  # a re-run replaces, never duplicates
        write_image_result(unit, again, hist.iloc[:10])
        queue.release(unit)
    rows = _rows(dataset_id)
    assert len(rows) == len(again)
    expected = again.sort_values(["pid", "band"]).reset_index(drop=True)
    for column in ("count", "mean", "p75"):
        np.testing.assert_allclose(
            rows[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float),
            rtol=1e-6,
        )
    assert (rows.loc[rows["count"] == 0, "mean"].isna()).all()
    with get_engine().connect() as conn:
        status = conn.execute(
            sa.text("SELECT status, row_count FROM extractions WHERE image_id = :i"),
            {"i": unit.image_id},
        ).one()
        hist_rows = conn.execute(sa.text("SELECT hist FROM scl_histograms")).scalars().all()
    assert tuple(status) == ("extracted", len(again))
    assert len(hist_rows) == 10 and hist_rows[0] == {"4": 10, "8": 2}


def test_a_failed_write_leaves_nothing(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, pids = dataset
    with ExtractionQueue([dataset_id]) as queue:
        unit = queue.claim(1)[0]
        write_image_result(unit, _signatures(pids))
        duplicated = pd.concat([_signatures(pids[:5]), _signatures(pids[:5])])
        with pytest.raises(Exception, match="duplicate key"):
            write_image_result(unit, duplicated)
    assert len(_rows(dataset_id)) == len(pids) * 2  # the earlier result is intact


def test_failures_are_recorded_and_can_be_retried(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = dataset
    with ExtractionQueue([dataset_id]) as queue:
        unit = queue.claim(1)[0]
        mark_failed(unit, "B04: /vsis3/bucket/x.tif not recognised as a TIFF")
        queue.release(unit)
        assert queue.remaining() == 3
    with get_engine().connect() as conn:
        error = conn.execute(
            sa.text("SELECT error FROM extractions WHERE status = 'failed'")
        ).scalar_one()
    assert "not recognised" in error
    assert reset_failed(dataset_id) == 1
    with ExtractionQueue([dataset_id]) as queue:
        assert queue.remaining() == 4


def test_collection_filter(dataset, postgis: str) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = dataset
    with get_engine().begin() as conn:
        s1 = _add_images(conn, 2, collection="sentinel-1-backscatter")
        ensure_pending(conn, dataset_id, s1)
    with ExtractionQueue([dataset_id], collection="sentinel-1-backscatter") as queue:
        units = queue.claim(10)
    assert sorted(u.image_id for u in units) == sorted(s1)
