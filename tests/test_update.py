"""``cbm update``, the daily job: the sync window (pure) and two days of it end to end.

End to end on real services (PostGIS, SeaweedFS, stac-fastapi-pgstac) and a real
Dask cluster: a world is published without its newest Sentinel-2 item, ``cbm
update`` catalogues and extracts everything; the item is then published, as if it
arrived overnight, and the next ``cbm update`` must catalogue and extract exactly it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cbm_dask.archive import publish
from cbm_dask.catalogue.sync import SyncWindow, update_catalogue, update_window
from cbm_dask.cli.main import cli
from cbm_dask.errors import DatasetNotFoundError, InputError
from cbm_dask.objectstore import S3Settings
from cbm_dask.store.engine import get_engine
from cbm_dask.store.parcels import load_parcel_file
from cbm_dask.world import S1_BACKSCATTER, S1_COHERENCE, S2_L2A, WorldParams, build_world

UTC = dt.UTC
NOW = dt.datetime(2024, 6, 15, 6, 30, tzinfo=UTC)


# ---------------------------------------------------------------------------
# the window (pure)


def test_window_starts_at_the_newest_acquisition_minus_the_overlap() -> None:
    newest = dt.datetime(2024, 6, 12, 10, 40, 31, tzinfo=UTC)
    window = update_window(newest, now=NOW, overlap_days=10, year=2024)
    assert window == SyncWindow(dt.datetime(2024, 6, 2, 10, 40, 31, tzinfo=UTC), NOW, "newest")
    assert update_window(newest, now=NOW, overlap_days=0).start == newest
    assert update_window(newest, now=NOW, overlap_days=1.5).start == \
        dt.datetime(2024, 6, 10, 22, 40, 31, tzinfo=UTC)


def test_window_of_a_dataset_with_nothing_catalogued_starts_on_1_january() -> None:
    assert update_window(None, now=NOW, overlap_days=10, year=2023) == SyncWindow(
        dt.datetime(2023, 1, 1, tzinfo=UTC), NOW, "season")
    # no declaration year: the current one
    assert update_window(None, now=NOW, overlap_days=10).start == dt.datetime(2024, 1, 1,
                                                                                tzinfo=UTC)


def test_an_explicit_start_wins_and_an_end_date_covers_its_day() -> None:
    newest = dt.datetime(2024, 6, 12, tzinfo=UTC)
    window = update_window(newest, now=NOW, overlap_days=10, year=2024, start="2024-03-01",
                           end="2024-05-31")
    assert window == SyncWindow(dt.datetime(2024, 3, 1, tzinfo=UTC),
                                dt.datetime(2024, 5, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                "given")
    assert update_window(None, now=NOW, overlap_days=10, start=dt.date(2024, 2, 1)).basis == \
        "given"


def test_naive_times_are_utc() -> None:
    window = update_window(dt.datetime(2024, 6, 12, 10), now=dt.datetime(2024, 6, 15),
                           overlap_days=2)
    assert window.start == dt.datetime(2024, 6, 10, 10, tzinfo=UTC)
    assert window.end == dt.datetime(2024, 6, 15, tzinfo=UTC)


@pytest.mark.parametrize("overlap", [-1, float("nan"), "ten"])
def test_a_bad_overlap_names_the_parameter_and_the_setting(overlap: Any) -> None:
    with pytest.raises(InputError, match=r"^overlap_days=.*cbm\.catalogue\.update-overlap-days"):
        update_window(None, now=NOW, overlap_days=overlap)


def test_a_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(InputError, match=r"^start=2024-06-02 00:00 \(newest\) is after end="):
        update_window(dt.datetime(2024, 6, 12, tzinfo=UTC), now=NOW, overlap_days=10,
                      end="2024-05-01")
    with pytest.raises(InputError, match="^end='tomorrow'"):
        update_window(None, now=NOW, overlap_days=10, end="tomorrow")


# ---------------------------------------------------------------------------
# two days of `cbm update` (real services)

DATASET = "update_world_2022"
# A tile and season no other test publishes, so the searches see only this world.
PARAMS = WorldParams(size=128, parcels=20, start=dt.date(2022, 5, 2), end=dt.date(2022, 5, 20),
                     seed=11, tile="35VLC", workers=1)
S2_BANDS = 6  # B02 B03 B04 B05 B08 B11 in a world's S2 item
COLLECTIONS = (S2_L2A, S1_BACKSCATTER, S1_COHERENCE)


def _item_times(root: Path) -> dict[str, dict[str, dt.datetime]]:
    """``{collection: {item id: acquisition time}}`` of a built world."""
    out: dict[str, dict[str, dt.datetime]] = {}
    for collection in COLLECTIONS:
        items = {}
        for path in (root / "stac" / "items" / collection).glob("*.json"):
            doc = json.loads(path.read_text())
            items[doc["id"]] = dt.datetime.fromisoformat(
                doc["properties"]["datetime"].replace("Z", "+00:00"))
        out[collection] = items
    return out


def _extracted() -> dict[str, int]:
    """``{item id: band-statistic rows}`` of every extracted unit of the dataset.

    Rows are counted through the time-series contract (one row per image and band
    of a parcel), whatever the table layout underneath.
    """
    from cbm_dask.store.timeseries import parcel_time_series

    with get_engine().connect() as conn:
        items = conn.execute(sa.text(
            "SELECT i.item_id FROM extractions e JOIN images i ON i.id = e.image_id "
            "JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n AND e.status = 'extracted'"), {"n": DATASET}).scalars().all()
        parcels = conn.execute(sa.text(
            "SELECT p.parcel_id FROM parcels p JOIN datasets d ON d.id = p.dataset_id "
            "WHERE d.name = :n"), {"n": DATASET}).scalars().all()
    rows = dict.fromkeys(items, 0)
    for parcel in parcels:
        counts = parcel_time_series(DATASET, parcel)["item_id"].value_counts()
        for item, n in counts.items():
            rows[str(item)] = rows.get(str(item), 0) + int(n)
    return rows


def _units() -> int:
    with get_engine().connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM extractions e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n"), {"n": DATASET}).scalar_one())


def _update(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["update", "-d", DATASET, "--workers", "1", "--json",
                                      *args])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)  # the progress bar is on stderr
    return summary


def _by_collection(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = summary["catalogue"]
    assert [r["dataset"] for r in rows] == [DATASET] * len(COLLECTIONS)
    return {r["collection"]: r for r in rows}


@pytest.fixture(scope="module")
def day_one(stac_api: str, s3_server: S3Settings, postgis: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world published without its newest S2 item, then the first `cbm update`."""
    world = build_world(tmp_path_factory.mktemp("uworld") / "w", PARAMS)
    times = _item_times(world.root)
    late = max(times[S2_L2A], key=times[S2_L2A].__getitem__)
    item_file = world.root / "stac" / "items" / S2_L2A / f"{late}.json"
    aside = tmp_path_factory.mktemp("late") / item_file.name
    shutil.move(item_file, aside)
    publish(world.root)
    load_parcel_file(world.parcels_path, DATASET, year=2022, replace=True)
    summary = _update()
    return {"world": world, "times": times, "late": late, "item_file": item_file,
            "aside": aside, "summary": summary, "extracted": _extracted(), "units": _units()}


@pytest.fixture(scope="module")
def day_two(day_one: dict[str, Any]) -> dict[str, Any]:
    """The late item arrives in the archive; the second `cbm update`."""
    shutil.move(day_one["aside"], day_one["item_file"])
    report = publish(day_one["world"].root)
    assert report.items_created == (day_one["late"],)
    summary = _update()
    return {"summary": summary, "extracted": _extracted()}


@pytest.mark.slow
def test_first_run_catalogues_the_season_and_extracts_everything(day_one) -> None:  # type: ignore[no-untyped-def]
    times, late = day_one["times"], day_one["late"]
    published = {c: set(items) - {late} for c, items in times.items()}
    assert all(published.values())
    rows = _by_collection(day_one["summary"])
    for collection in COLLECTIONS:
        row = rows[collection]
        assert row["basis"] == "season" and row["start"] == "2022-01-01T00:00:00+00:00"
        assert row["offered"] is True
        assert (row["found"], row["inserted"], row["pending"]) == (len(published[collection]),) * 3
    total = sum(map(len, published.values()))
    extraction = day_one["summary"]["extraction"]
    assert (extraction["extracted"], extraction["failed"]) == (total, 0)
    assert day_one["units"] == total  # counted before the late item (day_two) can arrive
    extracted = day_one["extracted"]
    assert set(extracted) == set().union(*published.values())
    assert extraction["rows"] == sum(extracted.values())
    assert all(extracted[i] == PARAMS.parcels * S2_BANDS for i in published[S2_L2A])


@pytest.mark.slow
def test_second_run_catalogues_and_extracts_exactly_the_new_item(day_one, day_two) -> None:  # type: ignore[no-untyped-def]
    times, late = day_one["times"], day_one["late"]
    rows = _by_collection(day_two["summary"])
    for collection in COLLECTIONS:
        catalogued = [t for i, t in times[collection].items()
                      if collection != S2_L2A or i != late]
        start = max(catalogued) - dt.timedelta(days=10)
        in_window = sum(t >= start for t in times[collection].values())
        row = rows[collection]
        assert row["basis"] == "newest"
        assert dt.datetime.fromisoformat(row["start"]) == start
        assert row["found"] == in_window
        new = int(collection == S2_L2A)
        assert (row["inserted"], row["updated"], row["pending"]) == (new, 0, new)
    extraction = day_two["summary"]["extraction"]
    assert (extraction["extracted"], extraction["failed"]) == (1, 0)
    before, after = day_one["extracted"], day_two["extracted"]
    assert set(after) - set(before) == {late}
    assert {i: after[i] for i in before} == before  # nothing else rewritten or lost
    assert after[late] == PARAMS.parcels * S2_BANDS == extraction["rows"]
    assert _units() == len(before) + 1


@pytest.mark.slow
def test_an_explicit_start_searches_again_and_finds_nothing_new(day_two) -> None:  # type: ignore[no-untyped-def]
    summary = _update("--start", "2022-05-01")
    for collection, row in _by_collection(summary).items():
        assert row["basis"] == "given" and row["start"] == "2022-05-01T00:00:00+00:00"
        assert (row["inserted"], row["updated"], row["pending"]) == (0, 0, 0), collection
        assert row["found"] > 0
    assert summary["extraction"]["extracted"] == 0
    assert _extracted() == day_two["extracted"]


@pytest.mark.slow
def test_a_collection_the_archive_lacks_is_skipped_and_an_unknown_dataset_named(
        day_one: dict[str, Any], stac_api: str) -> None:
    (skipped,) = update_catalogue(stac_api, datasets=[DATASET], collections=["no-such-coll"],
                                  now=NOW)
    assert skipped.result is None and skipped.as_dict()["offered"] is False
    with pytest.raises(DatasetNotFoundError, match="^no dataset 'nope'; loaded datasets: "):
        update_catalogue(stac_api, datasets=["nope"])
