"""``cbm archive publish`` against the real SeaweedFS and STAC API; reading back on Dask."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import numpy as np
import pytest
import rasterio
import requests
from click.testing import CliRunner
from pystac_client import Client

from cbm_dask.archive import (
    Acquisition,
    RasterInfo,
    merge_extent,
    nodata_json,
    plan_directory,
    publish,
    scl_properties,
)
from cbm_dask.archive.sources import parse_safe_metadata, site_name
from cbm_dask.cli.main import cli
from cbm_dask.errors import InputError, ServiceError
from cbm_dask.load.gdal_env import capture_gdal_env, configure_odc_stac
from cbm_dask.objectstore import S3Settings
from cbm_dask.sentinel.mgrs import mgrs_tile_at
from cbm_dask.services.s3 import s3_client
from tests._helpers import REAL_DATA, free_port

KEMPEN_S2 = REAL_DATA / "s2_l2a_flanders_kempen_2022_2023"
KEMPEN_S1 = REAL_DATA / "s1_flanders_kempen_2023"
WAASLAND = REAL_DATA / "s2_l2a_antwerp_waasland_2023q4"
IRELAND = REAL_DATA / "s2_l2a_ireland_T29UNU_20221005"
EARTH_SEARCH = REAL_DATA / "stac" / "items"
KEMPEN_BBOX = [5.05, 51.21, 5.07, 51.23]
IRELAND_ID = "ireland-t29unu_S2A_29UNU_20221005_L2A"


def s3(settings: S3Settings) -> Any:
    return s3_client(settings)


def keys_under(settings: S3Settings, prefix: str, bucket: str | None = None) -> list[str]:
    listed = s3(settings).list_objects_v2(Bucket=bucket or settings.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def raw_item(stac_api: str, collection: str, item_id: str) -> dict[str, Any]:
    """The item exactly as the API serves it (pystac would migrate proj:epsg to proj:code)."""
    response = requests.get(f"{stac_api}/collections/{collection}/items/{item_id}", timeout=30)
    response.raise_for_status()
    item: dict[str, Any] = response.json()
    return item


def search_ids(stac_api: str, **query: Any) -> list[str]:
    return sorted(item.id for item in Client.open(stac_api).search(**query).items())


@pytest.fixture(scope="module")
def published(stac_api: str, s3_server: S3Settings) -> Any:
    """The four real COG folders, published once for this module (via their parent dir)."""
    return publish(REAL_DATA)


# ---------------------------------------------------------------------------
# pure metadata


def test_mgrs_tiles_of_real_grids() -> None:
    assert mgrs_tile_at(32631, 643580, 5676150, 51.22) == (31, "U", "FS")   # Kempen
    assert mgrs_tile_at(32631, 588110, 5685170, 51.31) == (31, "U", "ES")   # Waasland
    assert mgrs_tile_at(32629, 556500, 5891520, 53.17) == (29, "U", "NU")   # Ireland
    assert mgrs_tile_at(32720, 654900, 3245140, -60.43) == (20, "E", "PT")  # Earth Search 20EPT
    assert mgrs_tile_at(3035, 4e6, 3e6, 50.0) is None


def test_scl_percentages_follow_earth_search() -> None:
    props = scl_properties({0: 50, 4: 30, 8: 10, 9: 5, 10: 5})
    assert props["s2:nodata_pixel_percentage"] == 50.0
    assert props["s2:vegetation_percentage"] == 60.0
    assert props["eo:cloud_cover"] == 40.0
    assert scl_properties({0: 10}) == {"s2:nodata_pixel_percentage": 100.0}


@pytest.mark.realdata
def test_small_converters() -> None:
    assert nodata_json(float("nan")) == "nan" and nodata_json(0.0) == 0
    assert nodata_json(None) is None
    day = Acquisition.from_date(dt.date(2023, 4, 5)).properties()
    assert day == {"datetime": "2023-04-05T12:00:00.000000Z",
                   "start_datetime": "2023-04-05T00:00:00.000000Z",
                   "end_datetime": "2023-04-05T23:59:59.999000Z"}
    assert site_name(KEMPEN_S2) == "flanders-kempen"
    assert site_name(WAASLAND) == "antwerp-waasland"
    assert site_name(IRELAND) == "ireland-t29unu"
    collection = {"extent": {"spatial": {"bbox": [[0, 0, 1, 1]]},
                             "temporal": {"interval": [["2023-01-01T00:00:00Z",
                                                        "2023-02-01T00:00:00Z"]]}}}
    assert merge_extent(collection, [0.2, 0.2, 0.8, 0.8],
                        ["2023-01-05T00:00:00Z", "2023-01-06T00:00:00Z"]) is None
    grown = merge_extent(collection, [-1, 0, 1, 1], ["2022-12-31T00:00:00Z", None])
    assert grown is not None and grown["extent"]["spatial"]["bbox"] == [[-1, 0, 1, 1]]
    assert grown["extent"]["temporal"]["interval"][0][0] == "2022-12-31T00:00:00Z"


@pytest.mark.realdata
def test_raster_without_crs_is_refused() -> None:
    with rasterio.open(KEMPEN_S2 / "cogs" / "2023-04-05" / "B04.tif") as src:
        profile = dict(src.profile)
    assert RasterInfo.from_profile("x", profile).epsg == 32631
    with pytest.raises(InputError, match="has no CRS"):
        RasterInfo.from_profile("band B04 (x.tif)", {**profile, "crs": None})


@pytest.mark.realdata
def test_safe_metadata_of_the_irish_product() -> None:
    safe = parse_safe_metadata((IRELAND / "metadata" / "MTD_MSIL2A.xml").read_text(),
                               (IRELAND / "metadata" / "MTD_TL.xml").read_text())
    assert safe.platform == "sentinel-2a" and safe.processing_baseline == "04.00"
    assert safe.sensing_time == dt.datetime(2022, 10, 5, 11, 54, 11, 24000, tzinfo=dt.UTC)
    assert safe.boa_add_offset is not None and safe.boa_add_offset["B04"] == -1000
    assert safe.relative_orbit == 23 and safe.sun_zenith is not None


@pytest.mark.realdata
def test_plan_of_the_real_folders_without_services() -> None:
    plan = plan_directory(REAL_DATA, bucket="b")
    assert plan.layout == "cogs"
    assert set(plan.collections) == {"sentinel-2-l2a", "sentinel-1-backscatter"}
    ids = [p.item_id for p in plan.items]
    assert len(ids) == 32 + 10 + 19 + 1 and len(set(ids)) == len(ids)
    assert not any(re.match(r"^S2[ABC]_", i) for i in ids)  # never an Earth Search style id
    jp2 = [u for p in plan.items for u in p.uploads if u.path.suffix == ".jp2"]
    assert jp2 == []
    ireland = next(p for p in plan.items if p.item_id == IRELAND_ID)
    assert {u.path.name for u in ireland.uploads} >= {"SCL_20m.tif", "AOT_20m.tif", "B04_60m.tif"}
    assert "SCL_60m.tif" not in {u.path.name for u in ireland.uploads}


# ---------------------------------------------------------------------------
# publishing the real data


def test_publish_real_folders_and_search(published: Any, stac_api: str) -> None:
    assert published.layout == "cogs" and len(published.items) == 62
    assert dict(published.collections).keys() == {"sentinel-2-l2a", "sentinel-1-backscatter"}
    assert published.objects_uploaded + published.objects_unchanged == 301

    april = search_ids(stac_api, collections=["sentinel-2-l2a"], bbox=KEMPEN_BBOX,
                       datetime="2023-04-01/2023-04-30")
    assert len(april) == 12 and all(i.startswith("flanders-kempen_S2_31UFS_202304")
                                    for i in april)
    one_day = search_ids(stac_api, collections=["sentinel-2-l2a"], bbox=KEMPEN_BBOX,
                         datetime="2023-04-05")
    assert one_day == ["flanders-kempen_S2_31UFS_20230405_L2A"]
    s1 = search_ids(stac_api, collections=["sentinel-1-backscatter"], bbox=KEMPEN_BBOX,
                    datetime="2023-04-01/2023-04-30")
    assert len(s1) == 10 and all(i.startswith("flanders-kempen_S1_IW_202304") for i in s1)
    autumn = search_ids(stac_api, collections=["sentinel-2-l2a"],
                        bbox=[4.26, 51.30, 4.27, 51.32], datetime="2023-10-01/2023-12-31")
    # the real Waasland scenes; a world published by another test may lie there too
    assert len([i for i in autumn if i.startswith("antwerp-waasland_S2_")]) == 19
    clear = search_ids(stac_api, collections=["sentinel-2-l2a"], bbox=KEMPEN_BBOX,
                       query={"eo:cloud_cover": {"lt": 10}})
    assert "flanders-kempen_S2_31UFS_20230405_L2A" in clear  # a clear day (README)
    assert "flanders-kempen_S2_31UFS_20221211_L2A" not in clear  # all nodata: no cover
    ireland = list(Client.open(stac_api).search(bbox=[-8.2, 53.15, -8.1, 53.2],
                                                datetime="2022-10-05").items())
    # items other tests post over Ireland may lie there too; the archive's own is one
    assert [i.id for i in ireland if i.id.startswith("ireland-")] == [IRELAND_ID]
    props = ireland[0].properties
    assert props["platform"] == "sentinel-2a" and props["s2:processing_baseline"] == "04.00"
    assert props["grid:code"] == "MGRS-29UNU" and props["datetime"].startswith("2022-10-05T11:54")
    red = ireland[0].assets["red"].to_dict()
    assert red["raster:bands"][0]["offset"] == -0.1 and red["raster:bands"][0]["scale"] == 0.0001
    assert red["href"] == (f"s3://cbm-archive/sentinel-2-l2a/{IRELAND_ID}/B04_60m.tif")


def test_items_have_the_structure_of_earth_search(published: Any, stac_api: str) -> None:
    es_s2 = json.loads((EARTH_SEARCH / "earth-search-v1_sentinel-2-l2a__S2B_20EPT_20250731_0_L2A"
                        ".json").read_text())
    es_s1 = json.loads(next(EARTH_SEARCH.glob("earth-search-v1_sentinel-1-grd__*.json"))
                       .read_text())
    ours_s2 = raw_item(stac_api, "sentinel-2-l2a", IRELAND_ID)
    kempen = raw_item(stac_api, "sentinel-2-l2a", "flanders-kempen_S2_31UFS_20230405_L2A")
    ours_s1 = raw_item(stac_api, "sentinel-1-backscatter", "flanders-kempen_S1_IW_20230403_GAMMA0")

    assert set(ours_s2["assets"]) <= set(es_s2["assets"])
    assert set(kempen["assets"]) == {"coastal", "red", "nir", "swir16", "scl", "aot"}
    for key, asset in ours_s2["assets"].items():
        assert set(asset) <= set(es_s2["assets"][key]), key
        assert set(asset["raster:bands"][0]) <= set(es_s2["assets"][key]["raster:bands"][0]), key
        assert asset["roles"] == es_s2["assets"][key]["roles"], key
        if "eo:bands" in asset:
            assert asset["eo:bands"] == es_s2["assets"][key]["eo:bands"], key
    core = {"platform", "constellation", "instruments", "eo:cloud_cover", "proj:epsg",
            "proj:centroid", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square",
            "grid:code", "view:sun_azimuth", "view:sun_elevation", "s2:processing_baseline",
            "s2:product_uri", "s2:product_type", "s2:datatake_id", "s2:tile_id",
            "s2:nodata_pixel_percentage", "s2:vegetation_percentage", "datetime"}
    assert core <= set(es_s2["properties"]) and core <= set(ours_s2["properties"])
    assert set(ours_s2["properties"]) - set(es_s2["properties"]) <= {
        "s2:dark_features_percentage", "start_datetime", "end_datetime"}
    assert set(ours_s2["stac_extensions"]) == set(es_s2["stac_extensions"])

    assert set(ours_s1["assets"]) == {"vv", "vh"}
    assert set(ours_s1["properties"]) - set(es_s1["properties"]) == {"cbm:backscatter"}
    vv = ours_s1["assets"]["vv"]
    assert vv["raster:bands"][0]["nodata"] == "nan" and vv["type"] == es_s1["assets"]["hh"]["type"]


def test_items_normalise_for_the_catalogue(published: Any, stac_api: str) -> None:
    from cbm_dask.catalogue import normalise_item

    client = Client.open(stac_api)
    ireland = normalise_item(next(client.search(ids=[IRELAND_ID]).items()))
    assert (ireland.card, ireland.tile, ireland.epsg, ireland.processing_baseline) == (
        "s2", "29UNU", 32629, "04.00")
    assert ireland.assets["red"].offset == pytest.approx(-0.1)
    kempen = normalise_item(next(client.search(
        ids=["flanders-kempen_S2_31UFS_20230405_L2A"]).items()))
    assert kempen.assets["red"].offset == 0.0 and kempen.tile == "31UFS"  # harmonised DN


def test_republish_is_idempotent(published: Any, stac_api: str, s3_server: S3Settings) -> None:
    # Dated: a synthetic world published by other tests may share the Kempen grid.
    window = {"collections": ["sentinel-2-l2a", "sentinel-1-backscatter"],
              "bbox": KEMPEN_BBOX, "datetime": "2022-11-01/2023-04-30"}
    before = search_ids(stac_api, **window)
    again = publish(REAL_DATA)
    assert again.items_created == () and len(again.items_updated) == 62
    assert again.objects_uploaded == 0 and again.objects_unchanged == 301
    assert set(dict(again.collections).values()) == {"unchanged"}
    after = search_ids(stac_api, **window)
    assert after == before and len(after) == 42


def test_cli_publish(published: Any) -> None:
    result = CliRunner().invoke(cli, ["archive", "publish", str(KEMPEN_S1), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["items_updated"] == 10 and report["objects_unchanged"] == 20
    result = CliRunner().invoke(cli, ["archive", "publish", str(KEMPEN_S1), "-c", "nope"])
    assert result.exit_code == 1 and "no items of collection(s) nope" in result.output


# ---------------------------------------------------------------------------
# reading the archive on Dask


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """One worker *process*: nothing of the client's GDAL state leaks into it."""
    from distributed import Client as DaskClient
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, DaskClient(cluster) as client:
        yield client


def _mean_of(href: str) -> float:
    with rasterio.open(href) as src:
        return float(src.read(1).astype("float64").mean())


def test_published_cog_is_read_through_vsis3_in_a_dask_task(
    published: Any, s3_server: S3Settings, dask_client: Any,
) -> None:
    import dask

    href = f"s3://cbm-archive/sentinel-2-l2a/{IRELAND_ID}/SCL_20m.tif"
    expected = _mean_of(str(IRELAND / "cogs_window" / "SCL_20m.tif"))
    env = capture_gdal_env()
    task = dask.delayed(env.wrap(_mean_of))(href)
    assert task.compute() == pytest.approx(expected)
    # The worker has no S3 settings of its own (distributed may re-raise a wrapper).
    with pytest.raises(Exception, match="AWS_SECRET_ACCESS_KEY"):
        dask.delayed(_mean_of)(href).compute()


def test_odc_stac_reads_the_archive_with_the_captured_env(
    published: Any, stac_api: str, dask_client: Any,
) -> None:
    import odc.loader._rio as odc_rio
    import odc.stac

    items = list(Client.open(stac_api).search(
        ids=["flanders-kempen_S2_31UFS_20230405_L2A"]).items())
    saved = (odc_rio._CFG._configured, odc_rio._CFG._aws, odc_rio._CFG._gdal_opts)
    configure_odc_stac(capture_gdal_env())
    try:
        cube = odc.stac.load(items, bands=["red", "scl"], chunks={"x": 32, "y": 32})
        values = cube.compute()
    finally:
        odc_rio._CFG._configured, odc_rio._CFG._aws, odc_rio._CFG._gdal_opts = saved
    with rasterio.open(KEMPEN_S2 / "cogs" / "2023-04-05" / "B04.tif") as src:
        expected = src.read(1)
    assert np.array_equal(values["red"].isel(time=0).values, expected)
    assert int(values["scl"].isel(time=0).values.max()) <= 11


# ---------------------------------------------------------------------------
# synthetic worlds and bad input


def _copy_date(source: Path, target: Path, day: str, bands: list[str]) -> Path:
    folder = target / "cogs" / day
    folder.mkdir(parents=True)
    for band in bands:
        shutil.copy(source / "cogs" / day / f"{band}.tif", folder / f"{band}.tif")
    return folder


def _mini_world(root: Path, *, projection: bool = True, missing: bool = False) -> Path:
    """A world in the layout `cbm world build` writes, with one real Waasland acquisition."""
    item_id = "S2B_31UES_20231002_0_L2A"
    cog_dir = root / "cogs" / "sentinel-2-l2a" / item_id
    cog_dir.mkdir(parents=True)
    for band, key in (("B04", "red"), ("SCL", "scl")):
        if not (missing and key == "scl"):
            shutil.copy(WAASLAND / "cogs" / "2023-10-02" / f"{band}.tif", cog_dir / f"{key}.tif")
    (root / "world.json").write_text(json.dumps({"name": "mini"}))
    collections = root / "stac" / "collections"
    collections.mkdir(parents=True)
    (collections / "sentinel-2-l2a.json").write_text(json.dumps({
        "type": "Collection", "id": "sentinel-2-l2a", "stac_version": "1.0.0",
        "description": "mini world", "license": "CC0-1.0",
        "links": [{"rel": "root", "href": "../catalog.json"}],
        "extent": {"spatial": {"bbox": [[4.26, 51.30, 4.27, 51.32]]},
                   "temporal": {"interval": [["2023-10-02T00:00:00Z", "2023-10-02T23:59:59Z"]]}},
    }))
    with rasterio.open(cog_dir.parent / item_id / "red.tif") as src:
        transform, shape = list(src.transform)[:6], [src.height, src.width]
    items = root / "stac" / "items" / "sentinel-2-l2a"
    items.mkdir(parents=True)
    properties: dict[str, Any] = {"datetime": "2023-10-02T10:57:00Z", "platform": "sentinel-2b",
                                  "constellation": "sentinel-2", "cbm:synthetic": True}
    if projection:
        properties["proj:epsg"] = 32631
    (items / f"{item_id}.json").write_text(json.dumps({
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [[[4.2608, 51.3086], [4.2675, 51.3086],
                                                         [4.2675, 51.3134], [4.2608, 51.3134],
                                                         [4.2608, 51.3086]]]},
        "bbox": [4.2608, 51.3086, 4.2675, 51.3134],
        "properties": properties,
        "links": [{"rel": "collection", "href": "../../collections/sentinel-2-l2a.json"},
                  {"rel": "license", "href": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "assets": {
            key: {"href": f"../../../cogs/sentinel-2-l2a/{item_id}/{key}.tif",
                  "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                  "roles": ["data"], "proj:shape": shape, "proj:transform": transform}
            for key in ("red", "scl")
        },
    }))
    return root


def test_publish_a_world_rewrites_hrefs_and_keeps_the_rest(
    tmp_path: Path, stac_api: str, s3_server: S3Settings,
) -> None:
    world = _mini_world(tmp_path / "world")
    report = publish(world, bucket="cbm-test-world")
    assert report.layout == "world" and report.items == ("S2B_31UES_20231002_0_L2A",)
    item = raw_item(stac_api, "sentinel-2-l2a", report.items[0])
    assert item["assets"]["red"]["href"] == (
        "s3://cbm-test-world/sentinel-2-l2a/S2B_31UES_20231002_0_L2A/red.tif")
    assert item["properties"]["cbm:synthetic"] is True
    assert item["properties"]["proj:epsg"] == 32631
    assert item["assets"]["scl"]["proj:shape"] == [52, 46]
    assert not any(link["href"].startswith("..") for link in item["links"])
    assert "https://creativecommons.org/publicdomain/zero/1.0/" in [
        link["href"] for link in item["links"]]
    assert sorted(keys_under(s3_server, "sentinel-2-l2a/", "cbm-test-world")) == [
        "sentinel-2-l2a/S2B_31UES_20231002_0_L2A/red.tif",
        "sentinel-2-l2a/S2B_31UES_20231002_0_L2A/scl.tif"]


@pytest.mark.realdata
def test_world_with_a_missing_cog_or_no_projection_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"item 'S2B_31UES_20231002_0_L2A' asset 'scl'.*"
                                         r"scl\.tif, which does not exist"):
        plan_directory(_mini_world(tmp_path / "a", missing=True), bucket="b")
    with pytest.raises(InputError, match=r"item 'S2B_31UES_20231002_0_L2A'.*no projection"):
        plan_directory(_mini_world(tmp_path / "b", projection=False), bucket="b")


def test_corrupt_cog_is_named_and_nothing_is_registered(
    tmp_path: Path, stac_api: str, s3_server: S3Settings,
) -> None:
    site = tmp_path / "s2_l2a_corrupt_place_2023"
    folder = _copy_date(KEMPEN_S2, site, "2023-04-05", ["B04", "SCL"])
    # A TIFF magic number followed by garbage.
    (folder / "B08.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"band B08.*B08\.tif is not a readable GeoTIFF.*corrupt"):
        publish(site)
    assert search_ids(stac_api, ids=["corrupt-place_S2_31UFS_20230405_L2A"]) == []
    assert keys_under(s3_server, "sentinel-2-l2a/corrupt-place") == []


def test_unreachable_stac_api_is_named_and_nothing_is_stored(
    tmp_path: Path, s3_server: S3Settings,
) -> None:
    site = tmp_path / "s1_lonely_place_2023"
    _copy_date(KEMPEN_S1, site, "2023-04-03", ["VV", "VH"])
    dead = f"http://127.0.0.1:{free_port()}/stac"
    with pytest.raises(ServiceError,
                       match=re.escape(dead) + r".*cannot be reached.*cbm services up"):
        publish(site, stac_url=dead, bucket="cbm-never-created")
    with pytest.raises(botocore.exceptions.ClientError, match="404|Not Found|NoSuchBucket"):
        s3(s3_server).head_bucket(Bucket="cbm-never-created")


def test_unreachable_object_store_is_named_and_nothing_is_registered(
    tmp_path: Path, stac_api: str,
) -> None:
    site = tmp_path / "s1_lonely_place_2023"
    _copy_date(KEMPEN_S1, site, "2023-04-03", ["VV", "VH"])
    dead = S3Settings(endpoint=f"127.0.0.1:{free_port()}", region="us-east-1", access_key="a",
                      secret_key="b", https=False)
    with pytest.raises(ServiceError, match=re.escape(dead.endpoint_url) + ".*cannot be reached"):
        publish(site, s3=dead)
    assert search_ids(stac_api, ids=["lonely-place_S1_IW_20230403_GAMMA0"]) == []


def test_unknown_directory_and_non_stac_server_are_refused(
    tmp_path: Path, s3_server: S3Settings,
) -> None:
    with pytest.raises(InputError, match="neither a synthetic world .* nor a folder of COGs"):
        publish(tmp_path, stac_url="http://127.0.0.1:9")
    site = tmp_path / "s1_lonely_place_2023"
    _copy_date(KEMPEN_S1, site, "2023-04-03", ["VV", "VH"])
    with pytest.raises(ServiceError, match=re.escape(s3_server.endpoint_url) + ".*STAC API"):
        publish(site, stac_url=s3_server.endpoint_url)  # an S3 endpoint is no STAC API


def test_boto_client_sees_content_types(published: Any, s3_server: S3Settings) -> None:
    head = s3(s3_server).head_object(
        Bucket="cbm-archive", Key=f"sentinel-2-l2a/{IRELAND_ID}/B04_60m.tif")
    assert head["ContentType"].startswith("image/tiff")
    assert head["Metadata"]["md5"] == head["ETag"].strip('"')
