"""The image catalogue: normalisation of every real STAC item shape, idempotent and
transactional upserts into the real PostGIS, and sync against the real STAC API."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import rasterio
import shapely
import sqlalchemy as sa
from click.testing import CliRunner

from cbm_dask.catalogue import (
    ImageRecord,
    ItemError,
    list_images,
    normalise_item,
    parse_bbox,
    parse_date,
    read_images,
    sync_catalogue,
    upsert_images,
)
from cbm_dask.cli.main import cli
from cbm_dask.errors import DatasetNotFoundError, InputError, ServiceError
from cbm_dask.load.cube import load_cube
from cbm_dask.store.engine import get_engine
from cbm_dask.store.parcels import load_parcel_file
from tests._helpers import (
    IRELAND_WINDOW,
    LPIS,
    REAL_DATA,
    earth_search_item,
    free_port,
    ireland_item,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:odc.*"),
]

ITEMS = REAL_DATA / "stac" / "items"
ITEM_FILES = sorted(ITEMS.glob("*.json"))
CDSE = ("cdse-stac-v1_sentinel-2-l2a__S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_"
        "20250330T145914__ABRIDGED.json")
PC_59VPE = "planetary-computer_sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T59VPE"
S1_GRD = "earth-search-v1_sentinel-1-grd__S1A_IW_GRDH_1SSH_20250731T135608"


def _item(name: str) -> dict[str, Any]:
    return json.loads((ITEMS / name).read_text())


def _one(prefix: str) -> dict[str, Any]:
    return json.loads(next(p for p in ITEM_FILES if p.name.startswith(prefix)).read_text())


# ---------------------------------------------------------------------------
# normalisation (pure)


@pytest.mark.realdata
def test_every_real_item_is_there() -> None:
    assert len(ITEM_FILES) >= 16


@pytest.mark.realdata
@pytest.mark.parametrize("path", ITEM_FILES, ids=lambda p: p.name[:60])
def test_every_real_item_normalises(path: Path) -> None:
    raw = json.loads(path.read_text())
    record = normalise_item(raw)
    assert record.item_id == raw["id"] and record.collection == raw["collection"]
    assert record.datetime.tzinfo is not None and record.datetime.utcoffset() == dt.timedelta(0)
    assert record.card in ("s2", "bs")
    assert isinstance(record.epsg, int)
    assert isinstance(record.footprint, shapely.MultiPolygon) and record.footprint.is_valid
    assert record.properties == raw["properties"]
    bands = record.band_assets()
    if record.card == "s2":
        assert re.fullmatch(r"\d{2}[C-X][A-Z]{2}", record.tile or "")
        assert re.fullmatch(r"\d{2}\.\d{2}", record.processing_baseline or "")
        assert {"B02", "B04", "B08", "SCL"} <= set(bands)
        assert bands["B04"].resolution == 10 and bands["SCL"].resolution in (10, 20)
        assert bands["B04"].scale == pytest.approx(1e-4)
        assert bands["B04"].transform is not None and bands["B04"].shape is not None
    else:
        assert record.tile is None and record.cloud_cover is None
        assert set(bands) == {"HH"}
    # Non-band assets are kept, unlabelled.
    assert set(record.assets) == set(raw["assets"])
    # The row serialises to what the images table stores, and back.
    row = record.as_row()
    json.loads(row["assets"]), json.loads(row["properties"])
    back = ImageRecord.from_row(row)
    assert back.band_assets() == bands and back.footprint.equals(record.footprint)


@pytest.mark.realdata
def test_cdse_stac_11_item() -> None:
    record = normalise_item(_item(CDSE))
    assert (record.card, record.tile, record.epsg, record.orbit) == ("s2", "33UWP", 32633, 122)
    assert record.platform == "sentinel-2c"
    assert record.cloud_cover == pytest.approx(86.041468)
    assert record.processing_baseline == "05.11"  # processing:version
    red, scl = record.band_assets()["B04"], record.band_assets()["SCL"]
    assert red.key == "B04_10m" and red.href.startswith("s3://eodata/")
    assert (red.scale, red.offset, red.nodata) == (pytest.approx(1e-4), pytest.approx(-0.1), 0)
    assert scl.key == "SCL_20m" and scl.resolution == 20 and scl.epsg == 32633
    assert red.transform == (10, 0, 499980, 0, -10, 5400000) and red.shape == (10980, 10980)


@pytest.mark.realdata
def test_earth_search_v1_and_collection_1_items() -> None:
    v1 = normalise_item(_one("earth-search-v1_sentinel-2-l2a__S2B_20EPT"))
    c1 = normalise_item(_one("earth-search-v1_sentinel-2-c1-l2a__S2B_T20EPT"))
    for record in (v1, c1):
        assert (record.tile, record.epsg, record.processing_baseline) == ("20EPT", 32720, "05.11")
        assert record.orbit == 95  # the R095 of s2:product_uri
        assert record.cloud_cover == pytest.approx(26.02542)
        assert record.band_assets()["B04"].key == "red"  # the COG, not red-jp2
        assert record.band_assets()["B8A"].key == "nir08"
    # v1 says its COGs are harmonised (earthsearch:boa_offset_applied); c1 keeps the offset.
    assert v1.band_assets()["B04"].offset == 0
    assert c1.band_assets()["B04"].offset == pytest.approx(-0.1)
    assert v1.band_assets()["AOT"].scale == pytest.approx(0.001)


@pytest.mark.realdata
def test_earth_search_v0_planetary_and_stactools_items() -> None:
    v0 = normalise_item(_one("odc-stac__S2A_28QCH"))
    assert (v0.tile, v0.epsg, v0.processing_baseline, v0.orbit) == ("28QCH", 32628, "02.14", 123)
    assert v0.band_assets()["B04"].offset == 0  # baseline < 04.00, no raster extension
    pc = normalise_item(_one(PC_59VPE))
    assert (pc.tile, pc.epsg, pc.processing_baseline, pc.orbit) == ("59VPE", 32659, "02.12", 116)
    assert pc.platform == "sentinel-2a" and pc.cloud_cover == pytest.approx(60.399535)
    stactools = normalise_item(_one("stactools-sentinel2_example"))
    assert stactools.tile == "07HFE" and stactools.epsg == 32707
    assert stactools.band_assets()["B02"].key == "blue"  # 10 m beats blue_20m / blue_60m
    assert stactools.band_assets()["SCL"].key == "scl"


@pytest.mark.realdata
def test_sentinel1_grd_item() -> None:
    record = normalise_item(_one(S1_GRD))
    assert (record.card, record.tile, record.orbit, record.epsg) == ("bs", None, 56, 4326)
    assert record.processing_baseline is None and record.platform == "sentinel-1a"
    assert record.band_assets()["HH"].nodata == 0


@pytest.mark.realdata
def test_baseline_derived_from_the_product_id() -> None:
    raw = _item(CDSE)
    del raw["properties"]["processing:version"]
    assert normalise_item(raw).processing_baseline == "05.11"  # ..._N0511_... in the id
    pc = _one(PC_59VPE)
    del pc["properties"]["s2:processing_baseline"]
    assert normalise_item(pc).processing_baseline == "02.12"  # s2:product_uri N0212


@pytest.mark.realdata
def test_baseline_0400_without_raster_extension_gets_the_boa_offset() -> None:
    pc = _one(PC_59VPE)
    pc["properties"]["s2:processing_baseline"] = "04.00"
    assert normalise_item(pc).band_assets()["B04"].offset == pytest.approx(-0.1)
    assert normalise_item(pc).band_assets()["SCL"].offset == 0


@pytest.mark.realdata
def test_item_without_projection_is_refused_by_id() -> None:
    raw = _one(S1_GRD)
    del raw["properties"]["proj:epsg"]
    with pytest.raises(ItemError, match=re.escape(raw["id"]) + ".*no projection"):
        normalise_item(raw)


@pytest.mark.realdata
def test_unsupported_items_are_refused() -> None:
    raw = _item(CDSE)
    raw["properties"]["product:type"] = "S2MSI1C"
    with pytest.raises(ItemError, match="L1C"):
        normalise_item(raw)
    raw = _item(CDSE)
    del raw["properties"]["datetime"], raw["properties"]["start_datetime"]
    with pytest.raises(ItemError, match="datetime"):
        normalise_item(raw)
    with pytest.raises(ItemError, match="Sentinel"):
        normalise_item({"id": "x", "collection": "landsat-c2-l2", "properties":
                        {"datetime": "2024-01-01T00:00:00Z", "platform": "landsat-9"},
                        "geometry": None, "bbox": [0, 0, 1, 1], "assets": {}})


@pytest.mark.realdata
def test_pystac_items_normalise_like_dicts() -> None:
    import pystac

    raw = _item(CDSE)
    assert normalise_item(pystac.Item.from_dict(raw)).band_assets() == \
        normalise_item(raw).band_assets()


# ---------------------------------------------------------------------------
# argument checks


def test_bbox_and_dates_are_checked_naming_the_parameter() -> None:
    assert parse_bbox("4.9,51.1,5.2,51.3") == (4.9, 51.1, 5.2, 51.3)
    for bad in ("4.9,51.1,5.2", "a,b,c,d", "5.2,51.1,4.9,51.3", "4.9,91,5.2,95"):
        with pytest.raises(InputError, match="^bbox=") as raised:
            parse_bbox(bad)
        assert raised.value.parameters == ("bbox",) and "--" not in str(raised.value)
    assert parse_date("2023-04-30", "end", end=True) == dt.datetime(
        2023, 4, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)
    with pytest.raises(InputError, match="^start='30/04/2023'"):
        parse_date("30/04/2023", "start")
    with pytest.raises(InputError, match="^start=.* after end="):
        sync_catalogue("http://127.0.0.1:9", "c", bbox="0,0,1,1", start="2023-05-01",
                       end="2023-04-01")
    with pytest.raises(InputError, match="exactly one of dataset= .* or bbox="):
        sync_catalogue("http://127.0.0.1:9", "c", start="2023-04-01", end="2023-04-02")


def test_unreachable_stac_api_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/stac"
    with pytest.raises(ServiceError, match=re.escape(url) + r".*cbm services up"):
        sync_catalogue(url, "sentinel-2-l2a", bbox="4,50,5,51", start="2023-01-01",
                       end="2023-01-31")
    result = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", url, "-c", "x",
                                      "--bbox", "4,50,5,51", "--start", "2023-01-01",
                                      "--end", "2023-01-02"])
    assert result.exit_code == 1 and url in result.output and "(--stac-url, " in result.output


# ---------------------------------------------------------------------------
# the images table (real PostGIS)


@pytest.fixture
def records() -> list[ImageRecord]:
    return [normalise_item(json.loads(p.read_text())) for p in ITEM_FILES]


@pytest.fixture
def catalogue_db(fresh_db: str, records: list[ImageRecord]) -> Iterator[str]:
    """The session database without datasets and without this module's images."""

    def clean() -> None:
        with get_engine(fresh_db).begin() as conn:
            for record in [*records, normalise_item(ireland_item())]:
                conn.execute(sa.text("DELETE FROM images WHERE collection = :c AND item_id = :i"),
                             {"c": record.collection, "i": record.item_id})

    clean()
    yield fresh_db
    clean()


def _images(url: str, records: list[ImageRecord]) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT id, item_id, card, tile, epsg, cloud_cover, updated_at, "
            "ST_GeometryType(footprint) AS kind, ST_SRID(footprint) AS srid, "
            "assets -> 'B04_10m' ->> 'band' AS cdse_band "
            "FROM images WHERE item_id = ANY(:ids) ORDER BY item_id"),
            {"ids": [r.item_id for r in records]}).mappings()]


def test_upsert_is_idempotent(catalogue_db: str, records: list[ImageRecord]) -> None:
    engine = get_engine(catalogue_db)
    with engine.begin() as conn:
        first = upsert_images(conn, records)
    assert (first.inserted, first.updated, first.unchanged) == (len(records), 0, 0)
    before = _images(catalogue_db, records)
    assert {(r["kind"], r["srid"]) for r in before} == {("ST_MultiPolygon", 4326)}
    assert any(r["cdse_band"] == "B04" for r in before)
    with engine.begin() as conn:
        again = upsert_images(conn, records)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(records))
    assert _images(catalogue_db, records) == before  # same ids, nothing touched

    changed = [replace(records[0], cloud_cover=1.5), *records[1:]]
    with engine.begin() as conn:
        third = upsert_images(conn, changed)
    assert (third.inserted, third.updated, third.unchanged) == (0, 1, len(records) - 1)
    after = {r["item_id"]: r for r in _images(catalogue_db, records)}
    old = {r["item_id"]: r for r in before}
    target = records[0].item_id
    assert after[target]["cloud_cover"] == pytest.approx(1.5)
    assert after[target]["id"] == old[target]["id"]
    assert after[target]["updated_at"] > old[target]["updated_at"]


def test_a_failed_batch_writes_nothing(catalogue_db: str, records: list[ImageRecord]) -> None:
    engine = get_engine(catalogue_db)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        upsert_images(conn, records[:3])
        conn.execute(sa.text("SELECT 1/0"))  # the batch fails after its rows were sent
    assert _images(catalogue_db, records) == []


@pytest.fixture
def ireland_dataset(catalogue_db: str, tmp_path: Path) -> str:
    load_parcel_file(LPIS / "ie_gsaa_2022" / "parcels.gpkg", "ie_gsaa_2022", report_dir=tmp_path)
    return "ie_gsaa_2022"


def test_pending_extractions_list_and_cube_from_rows(ireland_dataset: str) -> None:
    record = normalise_item(ireland_item())
    far = normalise_item(_item(CDSE))  # Austria: outside the Irish parcels
    with get_engine().begin() as conn:
        dataset_id = conn.execute(sa.text("SELECT id FROM datasets WHERE name = :n"),
                                  {"n": ireland_dataset}).scalar_one()
        counts = upsert_images(conn, [record], dataset_id=dataset_id)
        upsert_images(conn, [far])
    assert counts.pending == 1
    with get_engine().begin() as conn:  # a second sync queues nothing new
        assert upsert_images(conn, [record], dataset_id=dataset_id).pending == 0

    # images other modules catalogued over Ireland are listed too, without a unit here
    listed = list_images(ireland_dataset).set_index("item_id")
    assert far.item_id not in listed.index
    assert listed.loc[record.item_id, "extraction"] == "pending"
    assert listed.loc[record.item_id, "tile"] == "29UNU"
    others = listed.drop(index=record.item_id)
    assert others["extraction"].isna().all(), others
    assert list_images(ireland_dataset, collection="nothing").empty

    rows = read_images(dataset=ireland_dataset, status="pending")
    assert [r.item_id for r in rows] == [record.item_id] and rows[0].image_id is not None
    cube = load_cube(rows, bands=["SCL"])
    assert list(cube.groups[20]["image_id"].values) == [rows[0].image_id]
    with rasterio.open(IRELAND_WINDOW / "SCL_20m.tif") as src:
        assert (cube["SCL"].isel(time=0).values == src.read(1)).all()

    result = CliRunner().invoke(cli, ["catalogue", "list", "-d", ireland_dataset, "--json"])
    assert result.exit_code == 0, result.output
    shown = {row["item_id"]: row for row in json.loads(result.output)}
    assert shown[record.item_id]["extraction"] == "pending"
    table = CliRunner().invoke(cli, ["catalogue", "list", "-d", ireland_dataset])
    assert record.item_id[:20] in table.output and "pending" in table.output


def test_unknown_dataset(catalogue_db: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="cbm parcels load"):
        list_images("no_such_dataset")


def test_earth_search_item_round_trips_through_the_table(catalogue_db: str) -> None:
    item = earth_search_item("2023-04-05")
    record = normalise_item(item)
    with get_engine().begin() as conn:
        upsert_images(conn, [record])
    try:
        (stored,) = [r for r in read_images(collection=record.collection)
                     if r.item_id == record.item_id]
        assert stored.band_assets() == record.band_assets()
        assert stored.properties == record.properties and stored.tile == "31UFS"
    finally:
        with get_engine().begin() as conn:
            conn.execute(sa.text("DELETE FROM images WHERE item_id = :i"), {"i": record.item_id})


# ---------------------------------------------------------------------------
# sync against the real STAC API (stac-fastapi-pgstac, transactions enabled)

SYNC_COLLECTION = "cbm-test-catalogue"


def _publish(base: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Register ``items`` in the test collection over HTTP (STAC Transactions)."""
    import requests

    collection = {
        "type": "Collection", "id": SYNC_COLLECTION, "stac_version": "1.0.0",
        "description": "catalogue tests", "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}},
    }
    answer = requests.post(f"{base}/collections", json=collection, timeout=30)
    assert answer.status_code in (200, 201, 409), answer.text[:300]
    published = []
    for raw in items:
        item = {**raw, "collection": SYNC_COLLECTION,
                "links": [link for link in raw.get("links", []) if link.get("rel") == "license"]}
        answer = requests.post(f"{base}/collections/{SYNC_COLLECTION}/items", json=item,
                               timeout=30)
        if answer.status_code == 409:
            answer = requests.put(f"{base}/collections/{SYNC_COLLECTION}/items/{item['id']}",
                                  json=item, timeout=30)
        assert answer.status_code in (200, 201), answer.text[:300]
        published.append(item)
    return published


@pytest.fixture
def stac_items(stac_api: str, catalogue_db: str) -> Iterator[list[dict[str, Any]]]:
    """The real July 2025 Earth Search items, the CDSE item and the Irish window item."""
    raws = [json.loads(p.read_text()) for p in ITEM_FILES if p.name.startswith("earth-search")]
    no_projection = json.loads(next(p for p in ITEM_FILES if "sentinel-1-grd" in p.name)
                               .read_text())
    no_projection["id"] += "_NO_PROJ"
    del no_projection["properties"]["proj:epsg"]
    items = _publish(stac_api, [*raws, no_projection, _item(CDSE), ireland_item()])
    yield items
    with get_engine(catalogue_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM images WHERE collection = :c"), {"c": SYNC_COLLECTION})


def test_sync_pages_skips_and_is_idempotent(stac_api: str, stac_items: list[dict[str, Any]],
                                            caplog: pytest.LogCaptureFixture) -> None:
    july = [i for i in stac_items if i["properties"]["datetime"].startswith("2025-07-31")]
    first = sync_catalogue(stac_api, SYNC_COLLECTION, bbox="-180,-90,180,90",
                           start="2025-07-31", end="2025-07-31", page_size=3)
    assert first.found == len(july) == 10 and first.pages == 4
    assert [item_id for item_id, _ in first.skipped] == [
        i["id"] for i in july if i["id"].endswith("_NO_PROJ")]
    assert "no projection" in first.skipped[0][1] and "no projection" in caplog.text
    assert (first.inserted, first.updated, first.unchanged) == (9, 0, 0)
    assert first.pending == 0 and first.dataset is None

    again = sync_catalogue(stac_api, SYNC_COLLECTION, bbox=(-180, -90, 180, 90),
                           start=dt.date(2025, 7, 31), end=dt.date(2025, 7, 31))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 9)
    stored = read_images(collection=SYNC_COLLECTION)
    assert len(stored) == 9 and {r.card for r in stored} == {"s2", "bs"}


def test_sync_over_a_dataset_queues_pending_extractions(
        stac_api: str, stac_items: list[dict[str, Any]], ireland_dataset: str) -> None:
    result = sync_catalogue(stac_api, SYNC_COLLECTION, dataset=ireland_dataset,
                            start="2022-01-01", end="2022-12-31")
    assert (result.found, result.inserted, result.pending) == (1, 1, 1)
    assert result.bbox[0] == pytest.approx(-10.03, abs=0.01)
    listed = list_images(ireland_dataset, collection=SYNC_COLLECTION)
    assert list(listed["extraction"]) == ["pending"]
    assert listed["item_id"][0] == ireland_item()["id"]
    again = sync_catalogue(stac_api, SYNC_COLLECTION, dataset=ireland_dataset,
                           start="2022-01-01", end="2022-12-31")
    assert (again.unchanged, again.pending) == (1, 0)
    # The catalogued image loads straight into a cube.
    cube = load_cube(read_images(dataset=ireland_dataset), bands=["B04", "SCL"])
    assert cube.resolutions == (20.0, 60.0)
    assert int(cube["SCL"].isel(time=0).max()) > 0


def test_strict_sync_writes_nothing_of_the_bad_page(
        stac_api: str, stac_items: list[dict[str, Any]]) -> None:
    with pytest.raises(ItemError, match="_NO_PROJ.*page 1 was not written"):
        sync_catalogue(stac_api, SYNC_COLLECTION, bbox="-180,-90,180,90",
                       start="2025-07-31", end="2025-07-31", page_size=100,
                       on_invalid="error")
    assert read_images(collection=SYNC_COLLECTION) == []
    strict = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", stac_api, "-c",
                                      SYNC_COLLECTION, "--bbox", "-180,-90,180,90", "--start",
                                      "2025-07-31", "--end", "2025-07-31", "--strict"])
    assert strict.exit_code == 1 and "(run without --strict)" in strict.output
    assert read_images(collection=SYNC_COLLECTION) == []


def test_unknown_collection_lists_the_available_ones(
        stac_api: str, stac_items: list[dict[str, Any]]) -> None:
    with pytest.raises(InputError, match=f"collection='nope'.*{SYNC_COLLECTION}"):
        sync_catalogue(stac_api, "nope", bbox="0,0,1,1", start="2025-01-01", end="2025-01-02")


def test_sync_cli(stac_api: str, stac_items: list[dict[str, Any]]) -> None:
    args = ["catalogue", "sync", "--stac-url", stac_api, "-c", SYNC_COLLECTION,
            "--bbox", "14,47,17,49", "--start", "2025-03-30", "--end", "2025-03-30"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["found"], summary["inserted"]) == (1, 1)
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0 and "1 unchanged" in text.output
    bad = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", stac_api, "-c",
                                   SYNC_COLLECTION, "--bbox", "14,47,17", "--start",
                                   "2025-03-30", "--end", "2025-03-30"])
    assert bad.exit_code == 1 and "--bbox '14,47,17'" in bad.output
