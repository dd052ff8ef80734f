"""The extraction queue against the real PostGIS: claims, fences, the attempt cap, lost
connections.  (Killed workers and killed drivers end to end: tests/test_extract.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from cbm_dask.store.engine import get_engine, libpq_dsn
from cbm_dask.store.parcels import load_parcel_file
from cbm_dask.store.queue import (
    ExtractionQueue,
    Unit,
    ensure_pending,
    mark_failed,
    reset_failed,
    write_image_result,
)
from tests._helpers import FLANDERS_PARCELS

STATS = ("mean", "std", "min", "max", "p25", "p50", "p75")


def _add_images(conn: sa.Connection, n: int) -> list[int]:
    """``n`` images, all in June 2024, listed newest first (claims go oldest first)."""
    return [
        conn.execute(sa.text(
            "INSERT INTO images (collection, item_id, datetime, card, footprint, assets, "
            "properties) VALUES ('sentinel-2-l2a', :i, CAST(:t AS timestamptz), 's2', "
            "ST_Multi(ST_MakeEnvelope(4, 51, 5, 52, 4326)), '{}', '{}') RETURNING id"),
            {"i": f"item-{k}", "t": f"2024-06-{1 + (n - k) % 28:02d}T{k % 24:02d}:00:00Z"},
        ).scalar_one()
        for k in range(n)
    ]


def _make(n: int) -> tuple[int, list[int], list[int]]:
    result = load_parcel_file(FLANDERS_PARCELS, "queue")
    with get_engine().begin() as conn:
        conn.execute(sa.text("DELETE FROM images"))
        images = _add_images(conn, n)
        ensure_pending(conn, result.dataset_id, images)
        pids = conn.execute(sa.text(
            "SELECT pid FROM parcels WHERE dataset_id = :d ORDER BY pid LIMIT 30"),
            {"d": result.dataset_id}).scalars().all()
    return result.dataset_id, images, list(pids)


@pytest.fixture
def four(fresh_db: str) -> tuple[int, list[int], list[int]]:
    return _make(4)


def _oldest_first(dataset_id: int) -> list[int]:
    with get_engine().connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT i.id FROM images i JOIN extractions e ON e.image_id = i.id "
            "WHERE e.dataset_id = :d ORDER BY i.datetime, i.id"), {"d": dataset_id}).scalars())


def _row(dataset_id: int, image_id: int) -> dict[str, object]:
    with get_engine().connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT status, attempts, row_count, error FROM extractions "
            "WHERE dataset_id = :d AND image_id = :i"), {"d": dataset_id, "i": image_id}
        ).mappings().one())


def _signatures(pids: list[int], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bands = ("B04", "B08")
    frame = pd.DataFrame({"pid": np.repeat(pids, len(bands)), "band": np.tile(bands, len(pids)),
                          "count": rng.integers(1, 50, len(pids) * len(bands))})
    for stat in STATS:
        frame[stat] = rng.random(len(frame)).astype("float32")
    return frame


def _band_rows(dataset_id: int, image_id: int) -> pd.DataFrame:
    with get_engine().connect() as conn:
        return pd.read_sql(sa.text(
            "SELECT pid, band, count, mean, p50 FROM signature_bands "
            "WHERE dataset_id = :d AND image_id = :i ORDER BY pid, band"), conn,
            params={"d": dataset_id, "i": image_id})


def test_claims_go_oldest_first_and_never_twice(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    by_date = _oldest_first(dataset_id)
    with ExtractionQueue([dataset_id], worker="a") as first, \
            ExtractionQueue([dataset_id], worker="b") as second:
        a = first.claim(2)
        b = second.claim(5)
        assert [u.image_id for u in a] == by_date[:2]
        assert [u.image_id for u in b] == by_date[2:]
        assert first.claim(1) == [] and second.claim(1) == []
        assert first.remaining() == 4
        assert {_row(dataset_id, u.image_id)["attempts"] for u in a + b} == {1}
    # closing released the claims: another driver takes the running units
    with ExtractionQueue([dataset_id]) as third:
        assert [u.attempts for u in third.claim(10)] == [2, 2, 2, 2]


def test_a_driver_skips_many_held_units_in_sql(fresh_db: str) -> None:
    """70 units, 66 held by one driver: the second still finds the other 4."""
    dataset_id, _, _ = _make(70)
    by_date = _oldest_first(dataset_id)
    with ExtractionQueue([dataset_id]) as first, ExtractionQueue([dataset_id]) as second:
        assert len(first.claim(66)) == 66
        got = second.claim(1)
        assert [u.image_id for u in got] == [by_date[66]]
        assert [u.image_id for u in second.claim(10)] == by_date[67:]
        assert first.claim(5) == []


def test_drivers_claiming_at_the_same_moment_share_the_units(fresh_db: str) -> None:
    dataset_id, images, _ = _make(60)
    drivers = 4
    start = threading.Barrier(drivers)
    taken: list[list[Unit]] = [[] for _ in range(drivers)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with ExtractionQueue([dataset_id], worker=f"d{k}") as queue:
                start.wait()
                while units := queue.claim(3):
                    taken[k] += units
                start.wait()  # hold the claims until every driver is done
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(drivers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    claimed = [u.image_id for units in taken for u in units]
    assert sorted(claimed) == sorted(images)  # every unit, none twice
    assert {u.attempts for units in taken for u in units} == {1}
    with get_engine().connect() as conn:
        workers: dict[int, str] = dict(conn.execute(sa.text(
            "SELECT image_id, worker FROM extractions WHERE dataset_id = :d"),
            {"d": dataset_id}).all())
    for k, units in enumerate(taken):
        assert {workers[u.image_id] for u in units} <= {f"d{k}"}


def test_a_dead_driver_releases_its_claims(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    code = ("import os; from cbm_dask.store.queue import ExtractionQueue;"
            f"q = ExtractionQueue([{dataset_id}]); print(len(q.claim(4)), flush=True); "
            "os._exit(9)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "4", done.stderr
    with ExtractionQueue([dataset_id]) as queue:
        units = queue.claim(10)
    assert len(units) == 4 and all(u.attempts == 2 for u in units)


def test_a_late_attempt_can_neither_write_nor_fail_the_unit(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, pids = four
    with ExtractionQueue([dataset_id]) as dead:
        (old,) = dead.claim(1)  # attempt 1; its driver then dies (the claim goes)
    with ExtractionQueue([dataset_id]) as live:
        (new,) = live.claim(1)
        assert (new.image_id, new.attempts) == (old.image_id, 2)
        # attempt 1 finishing first changes nothing: the unit is attempt 2's
        assert write_image_result(old, _signatures(pids, seed=1)) is None
        assert _row(dataset_id, old.image_id)["status"] == "running"
        assert _band_rows(dataset_id, old.image_id).empty
        assert write_image_result(new, _signatures(pids, seed=2)) == 2 * len(pids)
        live.release(new)
    written = _band_rows(dataset_id, new.image_id)
    # attempt 1 finishing late: neither its rows nor its failure are recorded
    assert write_image_result(old, _signatures(pids, seed=3)) is None
    assert mark_failed(old, "KilledWorker: late") is False
    assert _row(dataset_id, old.image_id) == {"status": "extracted", "attempts": 2,
                                              "row_count": 2 * len(pids), "error": None}
    pd.testing.assert_frame_equal(_band_rows(dataset_id, new.image_id), written)
    expected = _signatures(pids, seed=2)
    np.testing.assert_allclose(written["p50"].to_numpy(float),
                               expected.sort_values(["pid", "band"])["p50"].to_numpy(float),
                               rtol=1e-6)
    # the same attempt's task running again (Dask recomputes a result lost with its
    # worker) finds its own write done: it reports it and changes nothing
    assert write_image_result(new, _signatures(pids, seed=4)) == 2 * len(pids)
    assert mark_failed(new, "OSError: re-run failed") is False
    pd.testing.assert_frame_equal(_band_rows(dataset_id, new.image_id), written)
    assert _row(dataset_id, new.image_id)["status"] == "extracted"


def test_a_failure_mark_is_fenced_too(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    with ExtractionQueue([dataset_id]) as dead:
        (old,) = dead.claim(1)
    with ExtractionQueue([dataset_id]) as live:
        (new,) = live.claim(1)
        assert mark_failed(old, "OSError: late") is False
        assert _row(dataset_id, new.image_id)["status"] == "running"
        assert mark_failed(new, "OSError: red.tif not readable") is True
        assert mark_failed(new, "OSError: again") is True  # its own re-run: recorded
        assert write_image_result(new, _signatures([1], seed=0)) is None
    assert _row(dataset_id, new.image_id)["status"] == "failed"
    assert _row(dataset_id, new.image_id)["error"] == "OSError: red.tif not readable"


def test_rewriting_an_extracted_unit_replaces_its_rows(four) -> None:  # type: ignore[no-untyped-def]
    """A unit queued again after a successful write (row_count set) replaces, never
    duplicates; a first write needs no delete."""
    dataset_id, _, pids = four
    with ExtractionQueue([dataset_id]) as queue:
        (unit,) = queue.claim(1)
        assert write_image_result(unit, _signatures(pids, seed=1)) == 2 * len(pids)
        queue.release(unit)
    with get_engine().begin() as conn:
        conn.execute(sa.text("UPDATE extractions SET status = 'pending' "
                             "WHERE dataset_id = :d AND image_id = :i"),
                     {"d": dataset_id, "i": unit.image_id})
    with ExtractionQueue([dataset_id]) as queue:
        (again,) = queue.claim(1)
        assert again.image_id == unit.image_id and again.attempts == 2
        assert write_image_result(again, _signatures(pids[:10], seed=5)) == 20
    assert len(_band_rows(dataset_id, unit.image_id)) == 20


def test_attempts_are_capped_and_retry_failed_starts_over(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    oldest, second, *rest = _oldest_first(dataset_id)
    with get_engine().begin() as conn:  # three drivers died running the oldest unit
        conn.execute(sa.text("UPDATE extractions SET status = 'running', attempts = 3 "
                             "WHERE dataset_id = :d AND image_id = :i"),
                     {"d": dataset_id, "i": oldest})
    with ExtractionQueue([dataset_id]) as holder:
        # a live driver on its last attempt keeps its unit
        with get_engine().begin() as conn:
            conn.execute(sa.text("UPDATE extractions SET attempts = 2 "
                                 "WHERE dataset_id = :d AND image_id = :i"),
                         {"d": dataset_id, "i": second})
        assert holder.remaining() == 3
        (last,) = holder.claim(1)
        assert (last.image_id, last.attempts) == (second, 3)
        assert [e.image_id for e in holder.exhausted] == [oldest]
        with ExtractionQueue([dataset_id]) as other:
            assert sorted(u.image_id for u in other.claim(10)) == sorted(rest)
            assert other.fail_exhausted() == []
        assert _row(dataset_id, second)["status"] == "running"
    row = _row(dataset_id, oldest)
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "gave up after 3 attempts" in str(row["error"])
    assert "max-attempts" in str(row["error"])
    assert reset_failed(dataset_id) == 1
    assert _row(dataset_id, oldest) == {"status": "pending", "attempts": 0, "row_count": None,
                                        "error": None}
    with ExtractionQueue([dataset_id]) as queue:
        claimed = {u.image_id: u.attempts for u in queue.claim(10)}
    assert claimed[oldest] == 1


def test_retry_starts_a_new_attempt_only_for_the_current_one(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    with ExtractionQueue([dataset_id]) as queue:
        (unit,) = queue.claim(1)
        again = queue.retry(unit, "killed workers 1 times (attempt 1)")
        assert again is not None and again.attempts == 2
        assert queue.retry(unit, "stale") is None  # attempt 1 is over
        assert _row(dataset_id, unit.image_id)["error"] == "killed workers 1 times (attempt 1)"
        assert queue.held == [again]


def _terminate_holder(dataset_id: int, image_id: int) -> None:
    """Kill the server session holding a unit's claim (a dropped connection)."""
    with psycopg.connect(libpq_dsn(), autocommit=True) as conn:
        (pid,) = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
            "AND classid = %s AND objid = %s", (dataset_id, image_id)).fetchone() or (None,)
        assert pid is not None
        assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (
            True,)


def test_a_lost_connection_is_noticed_and_claims_taken_again(four) -> None:  # type: ignore[no-untyped-def]
    dataset_id, _, _ = four
    u1, u2, u3, u4 = _oldest_first(dataset_id)
    with ExtractionQueue([dataset_id], worker="a") as a:
        first, second = a.claim(2)
        _terminate_holder(dataset_id, u1)
        # meanwhile another driver takes one of them
        with ExtractionQueue([dataset_id], worker="b") as b:
            (taken,) = b.claim(1)
            assert (taken.image_id, taken.attempts) == (u1, 2)
            lost = a.check()
            assert [u.image_id for u in lost] == [u1]
            assert [u.image_id for u in a.held] == [u2]
            with ExtractionQueue([dataset_id], worker="c") as c:
                assert [u.image_id for u in c.claim(10)] == [u3, u4]  # u2 is a's again
                # the connection is also re-made on use: a claim after a second loss
                _terminate_holder(dataset_id, u2)
                assert a.claim(1) == [] and [u.image_id for u in a.held] == [u2]
                with ExtractionQueue([dataset_id], worker="d") as d:
                    assert d.claim(10) == []
                assert a.check() == []
        a.release(second)
        assert a.held == []
    assert write_image_result(first, _signatures([1], seed=0)) is None  # fenced: b's now
