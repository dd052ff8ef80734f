"""The synthetic world generator: layout contract, determinism, physics, COGs, STAC, CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import dask.config
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from rasterio import features
from rasterio.warp import transform_bounds

from cbm_dask.errors import InputError
from cbm_dask.sentinel.mgrs import mgrs_tile_geometry
from cbm_dask.world import (
    S1_BACKSCATTER,
    S1_COHERENCE,
    S2_L2A,
    WorldParams,
    WorldSummary,
    build_world,
    read_world,
)
from cbm_dask.world._grid import TILE_METRES, WorldGrid
from cbm_dask.world._layout import generate_layout
from tests._helpers import REAL_DATA

PARAMS = WorldParams(
    size=256,
    parcels=80,
    start=dt.date(2024, 6, 10),
    end=dt.date(2024, 8, 20),
    seed=11,
    violation_share=0.2,
    cloud_share=0.5,
    workers=2,
)
REAL_STAC = REAL_DATA / "stac"
S2_KEYS = ("blue", "green", "red", "nir", "rededge1", "swir16", "scl")
INVALID_SCL = (3, 8, 9, 10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldSummary:
    return build_world(tmp_path_factory.mktemp("world") / "w", PARAMS)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _items(world: WorldSummary, collection_id: str) -> list[dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in world.item_paths(collection_id)]
    return sorted(docs, key=lambda d: d["properties"]["datetime"])


def _asset_path(world: WorldSummary, collection_id: str, item: dict[str, Any], key: str) -> Path:
    item_dir = world.stac_dir / "items" / collection_id
    return (item_dir / item["assets"][key]["href"]).resolve()


def _labels(parcels: gpd.GeoDataFrame, doc: dict[str, Any], resolution: int,
            inset: float) -> np.ndarray:
    left, _, _, top = doc["bounds"]
    n = doc["shape_10m"][0] * 10 // resolution
    shrunk = parcels.geometry.buffer(-inset)
    shapes = [(g, i + 1) for i, g in enumerate(shrunk) if not g.is_empty]
    return features.rasterize(shapes, out_shape=(n, n), fill=0, dtype="int32",
                              transform=Affine(resolution, 0, left, 0, -resolution, top))


def _per_parcel(labels: np.ndarray, values: np.ndarray, valid: np.ndarray, how: str
                ) -> pd.DataFrame:
    inside = labels > 0
    frame = pd.DataFrame({"label": labels[inside], "value": values[inside],
                          "valid": valid[inside]})
    total = frame.groupby("label").size()
    good = frame[frame["valid"]]
    stat = good.groupby("label")["value"].agg(how)
    return pd.DataFrame({"value": stat, "share": good.groupby("label").size() / total}).fillna(0)


@pytest.fixture(scope="module")
def signals(world: WorldSummary) -> dict[str, Any]:
    """Per-parcel S2 NDVI (median of clear pixels) and S1 coherence (mean) per date."""
    parcels = gpd.read_file(world.parcels_path, layer="parcels")
    doc = json.loads((world.root / "world.json").read_text())
    ids = parcels["parcel_id"].tolist()
    lab10 = _labels(parcels, doc, 10, 10.0)
    lab20 = _labels(parcels, doc, 20, 15.0)
    ndvi_rows = []
    for item in _items(world, S2_L2A):
        red = _read(_asset_path(world, S2_L2A, item, "red")).astype(float) - 1000
        nir = _read(_asset_path(world, S2_L2A, item, "nir")).astype(float) - 1000
        scl = _read(_asset_path(world, S2_L2A, item, "scl"))
        scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
        ndvi = (nir - red) / np.maximum(nir + red, 1.0)
        stats = _per_parcel(lab10, ndvi, np.isin(scl10, (4, 5)), "median")
        day = dt.date.fromisoformat(item["properties"]["datetime"][:10])
        for label, row in stats.iterrows():
            ndvi_rows.append((ids[int(label) - 1], day, row["value"], row["share"]))
    ndvi = pd.DataFrame(ndvi_rows, columns=["parcel_id", "date", "ndvi", "clear"])
    coh_rows = []
    for item in _items(world, S1_COHERENCE):
        coh = _read(_asset_path(world, S1_COHERENCE, item, "coh_vv"))
        stats = _per_parcel(lab20, coh, np.isfinite(coh), "mean")
        ref = dt.date.fromisoformat(item["properties"]["start_datetime"][:10])
        sec = dt.date.fromisoformat(item["properties"]["end_datetime"][:10])
        for label, row in stats.iterrows():
            coh_rows.append((ids[int(label) - 1], ref, sec, row["value"]))
    coherence = pd.DataFrame(coh_rows, columns=["parcel_id", "reference", "secondary", "coh"])
    events = pq.read_table(world.truth_dir / "events.parquet").to_pandas()
    truth = pq.read_table(world.truth_dir / "parcels.parquet").to_pandas()
    return {"ndvi": ndvi, "coherence": coherence, "events": events, "truth": truth}


def _clear(ndvi: pd.DataFrame, parcel_id: str) -> pd.DataFrame:
    rows = ndvi[(ndvi["parcel_id"] == parcel_id) & (ndvi["clear"] >= 0.8)]
    return rows.sort_values("date")


# -- grid and parameters -------------------------------------------------------------------


def test_mgrs_tile_origins_follow_the_sentinel2_grid() -> None:
    tile = mgrs_tile_geometry("31UFS")
    assert (tile.epsg, tile.ulx, tile.uly) == (32631, 600000.0, 5700000.0)
    assert (tile.zone, tile.latitude_band, tile.grid_square) == (31, "U", "FS")
    # real tile corners (Earth Search / ESA grid) agree within 40 m
    for tile_id, real in (("33UWP", (499980, 5400000)), ("29UNU", (499980, 5900040)),
                          ("24MUV", (300000, 9500020))):
        t = mgrs_tile_geometry(tile_id)
        assert abs(t.ulx - real[0]) <= 40 and abs(t.uly - real[1]) <= 40, tile_id
    assert mgrs_tile_geometry("24MUV").epsg == 32724
    with pytest.raises(InputError, match="MGRS"):
        mgrs_tile_geometry("31UIS")
    grid = WorldGrid.for_params("31UFS", 5490)
    assert grid.col_off % 2 == 0 and grid.row_off % 2 == 0
    assert grid.col_off * 10 >= 0 and grid.col_off * 10 + grid.extent_m <= TILE_METRES


def test_params_validate_and_read_config() -> None:
    with pytest.raises(InputError, match="even"):
        WorldParams(size=101)
    with pytest.raises(InputError, match="before start"):
        WorldParams(start="2024-05-01", end="2024-04-01")
    with pytest.raises(InputError, match="violation share"):
        WorldParams(violation_share=1.5)
    with dask.config.set({"cbm.world.parcels": 77, "cbm.world.cloud-share": 0.3}):
        params = WorldParams.from_config(seed=5, size=None)
    assert (params.parcels, params.cloud_share, params.seed, params.size) == (77, 0.3, 5, 512)


# -- layout contract -----------------------------------------------------------------------


def test_outputs_follow_the_layout_contract(world: WorldSummary) -> None:
    root = world.root
    assert (root / "parcels.gpkg").is_file()
    for name in ("parcels", "events", "acquisitions"):
        assert (root / "truth" / f"{name}.parquet").is_file()
    doc = json.loads((root / "world.json").read_text())
    assert doc["params"]["size"] == PARAMS.size and doc["params"]["parcels"] == PARAMS.parcels
    assert doc["params"]["start"] == "2024-06-10" and doc["params"]["seed"] == PARAMS.seed
    assert doc["tile"] == "31UFS" and doc["epsg"] == 32631
    assert len(doc["bbox"]) == 4 and len(doc["bounds"]) == 4
    expected = {S2_L2A: 15, S1_BACKSCATTER: 12, S1_COHERENCE: 11}
    for cid, n in expected.items():
        assert (root / "stac" / "collections" / f"{cid}.json").is_file()
        items = list((root / "stac" / "items" / cid).glob("*.json"))
        assert len(items) == n == doc["collections"][cid]["items"]
        for path in items:
            item = json.loads(path.read_text())
            assert item["id"] == path.stem and item["collection"] == cid
            for key, asset in item["assets"].items():
                assert not asset["href"].startswith("/")
                target = (path.parent / asset["href"]).resolve()
                assert target == (root / "cogs" / cid / item["id"] / f"{key}.tif").resolve()
                assert target.is_file()
    assert world.counts["s2_items"] == 15 and world.counts["parcels"] == PARAMS.parcels
    again = read_world(root)
    assert again.counts == world.counts and again.params == PARAMS.with_(workers=2)
    assert [p.stem[4:] for p in again.item_paths(S2_L2A)] == sorted(
        p.stem[4:] for p in again.item_paths(S2_L2A))


def test_parcels_look_like_farmland(world: WorldSummary) -> None:
    info = pyogrio.read_info(world.parcels_path, layer="parcels")
    assert info["crs"] == "EPSG:32631"
    assert [name for name, _ in pyogrio.list_layers(world.parcels_path)] == ["parcels"]
    parcels = gpd.read_file(world.parcels_path, layer="parcels")
    assert len(parcels) == PARAMS.parcels
    assert parcels["parcel_id"].is_unique
    for column in ("crop_code", "crop_name", "scheme", "practice"):
        assert parcels[column].notna().all()
    assert set(parcels["scheme"]) <= {"permanent_grassland_mowing", "eco_catch_crop",
                                      "eco_fallow", "none"}
    assert parcels.geometry.is_valid.all()
    area = parcels.geometry.area / 1e4
    assert area.min() > 0.01 and 0.3 < area.median() < 15
    assert area.nunique() == len(area)
    union = shapely.union_all(parcels.geometry.values)
    assert union.area == pytest.approx(parcels.geometry.area.sum(), rel=1e-6)  # no overlaps
    assert shapely.box(*world.bounds).contains(union)
    # gaps: roads, hedges, farmyards and other land cover leave part of the window unclaimed
    assert union.area < 0.95 * shapely.box(*world.bounds).area


def test_layout_scales_to_many_parcels() -> None:
    grid = WorldGrid.for_params("31UFS", 2196)
    t0 = time.perf_counter()
    layout = generate_layout(grid, 5000, seed=3)
    seconds = time.perf_counter() - t0
    assert int(layout.declared.sum()) == 5000
    assert shapely.is_valid(layout.fields).all()
    assert seconds < 20, f"layout of 5000 parcels took {seconds:.1f} s"


# -- determinism ---------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix != ".gpkg":
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    parcels = gpd.read_file(root / "parcels.gpkg", layer="parcels")
    out["parcels"] = hashlib.sha256(
        parcels.drop(columns="geometry").to_csv().encode()
        + b"".join(parcels.geometry.to_wkb())).hexdigest()
    return out


def test_same_seed_same_files_other_seed_other_files(world: WorldSummary,
                                                     tmp_path: Path) -> None:
    again = build_world(tmp_path / "again", PARAMS.with_(workers=1))
    first = _digest(world.root)
    assert first == _digest(again.root)
    other = build_world(tmp_path / "other", PARAMS.with_(seed=PARAMS.seed + 1))
    second = _digest(other.root)
    assert second["parcels"] != first["parcels"]
    s2 = [k for k in first if k.startswith("cogs/sentinel-2-l2a/")]
    assert s2 and all(second.get(k) != first[k] for k in s2[:5])


# -- rasters -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_cogs_are_valid(world: WorldSummary) -> None:
    item = _items(world, S2_L2A)[0]
    for key in S2_KEYS:
        asset = item["assets"][key]
        with rasterio.open(_asset_path(world, S2_L2A, item, key)) as src:
            assert src.driver == "GTiff" and src.profile["tiled"]
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.compression.name.upper() == "DEFLATE"
            assert src.nodata == 0 and src.crs.to_epsg() == 32631
            assert list(src.transform)[:6] == asset["proj:transform"]
            assert [src.height, src.width] == asset["proj:shape"]
            resolution = 20 if key in ("rededge1", "swir16", "scl") else 10
            assert src.res == (resolution, resolution)
            assert src.width == PARAMS.size * 10 // resolution
            assert src.dtypes[0] == ("uint8" if key == "scl" else "uint16")
    # baseline >= 04.00: DN = reflectance * 10000 + 1000, so vegetation DN exceed 1000
    clear = next(i for i in _items(world, S2_L2A) if i["properties"]["eo:cloud_cover"] == 0)
    scl = _read(_asset_path(world, S2_L2A, clear, "scl"))
    veg = np.repeat(np.repeat(scl == 4, 2, axis=0), 2, axis=1)
    red = _read(_asset_path(world, S2_L2A, clear, "red"))[veg]
    nir = _read(_asset_path(world, S2_L2A, clear, "nir"))[veg]
    assert red.min() > 1000 and np.median(red) < 1000 + 800
    assert np.median(nir) > 1000 + 3000
    for cid, keys in ((S1_BACKSCATTER, ("vv", "vh")), (S1_COHERENCE, ("coh_vv",))):
        s1_item = _items(world, cid)[0]
        for key in keys:
            with rasterio.open(_asset_path(world, cid, s1_item, key)) as src:
                assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
                assert src.res == (PARAMS.s1_resolution, PARAMS.s1_resolution)
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                data = src.read(1)
        if cid == S1_COHERENCE:
            assert data.min() >= 0 and data.max() <= 1
    vv = _read(_asset_path(world, S1_BACKSCATTER, _items(world, S1_BACKSCATTER)[0], "vv"))
    assert -14 < 10 * np.log10(np.median(vv)) < -6


# -- STAC ----------------------------------------------------------------------------------


def _real(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((REAL_STAC / name).read_text())
    return result


@pytest.mark.realdata
def test_stac_items_are_shaped_like_earth_search(world: WorldSummary) -> None:
    real = _real("items/earth-search-v1_sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json")
    item = _items(world, S2_L2A)[0]
    assert set(real) == set(item)
    missing = set(real["properties"]) - set(item["properties"])
    assert missing <= {"earthsearch:s3_path", "earthsearch:payload_id"}
    assert set(item["properties"]) - set(real["properties"]) == {"cbm:synthetic"}
    assert set(item["stac_extensions"]) == set(real["stac_extensions"])
    props = item["properties"]
    assert props["earthsearch:boa_offset_applied"] is False
    assert props["s2:processing_baseline"] >= "04.00"
    assert (props["mgrs:utm_zone"], props["mgrs:latitude_band"], props["mgrs:grid_square"]) == (
        31, "U", "FS")
    assert props["grid:code"] == "MGRS-31UFS" and props["proj:epsg"] == 32631
    assert props["platform"] in ("sentinel-2a", "sentinel-2b")
    for key in S2_KEYS:
        ours, theirs = item["assets"][key], real["assets"][key]
        assert set(ours) == set(theirs), key
        band = ours["raster:bands"][0]
        assert set(band) == set(theirs["raster:bands"][0])
        if key != "scl":
            assert (band["scale"], band["offset"]) == (0.0001, -0.1)
            assert ours["eo:bands"][0]["name"] == theirs["eo:bands"][0]["name"]
    # bbox = raster bounds in EPSG:4326
    with rasterio.open(_asset_path(world, S2_L2A, item, "red")) as src:
        expected = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    assert item["bbox"] == pytest.approx(list(expected), abs=1e-6)
    ring = np.array(item["geometry"]["coordinates"][0])
    assert ring[:, 0].min() == pytest.approx(item["bbox"][0], abs=1e-6)

    real_s1 = _real("items/earth-search-v1_sentinel-1-grd__S1A_IW_GRDH_1SSH_"
                    "20250731T135608_20250731T135637_060328_077F7E.json")
    s1 = _items(world, S1_BACKSCATTER)[0]
    assert set(real_s1) == set(s1)
    missing = set(real_s1["properties"]) - set(s1["properties"])
    assert missing <= {"storage:platform", "storage:region", "storage:requester_pays"}
    assert set(s1["properties"]) - set(real_s1["properties"]) == {
        "cbm:backscatter", "cbm:synthetic"}
    assert set(s1["assets"]) == {"vv", "vh"}
    assert s1["properties"]["sar:polarizations"] == ["VV", "VH"]
    coh = _items(world, S1_COHERENCE)[0]
    assert set(coh["assets"]) == {"coh_vv"}
    start = dt.datetime.fromisoformat(coh["properties"]["start_datetime"])
    end = dt.datetime.fromisoformat(coh["properties"]["end_datetime"])
    assert (end.date() - start.date()).days == 6 == coh["properties"]["cbm:temporal_baseline_days"]
    assert coh["properties"]["datetime"] == coh["properties"]["end_datetime"]

    pystac = pytest.importorskip("pystac")
    for cid in (S2_L2A, S1_BACKSCATTER, S1_COHERENCE):
        collection = json.loads(world.collection_path(cid).read_text())
        assert collection["id"] == cid
        parsed = pystac.Collection.from_dict(collection)
        assert parsed.extent.spatial.bboxes[0] == pytest.approx(list(world.bbox), abs=1e-6)
        first = _items(world, cid)[0]
        assert set(collection["item_assets"]) == set(first["assets"])
        assert pystac.Item.from_dict(first).datetime is not None


# -- physics -------------------------------------------------------------------------------


def test_cloud_share_and_scene_classification(world: WorldSummary) -> None:
    items = _items(world, S2_L2A)
    affected = []
    for item in items:
        scl = _read(_asset_path(world, S2_L2A, item, "scl"))
        invalid = np.isin(scl, INVALID_SCL).mean()
        affected.append(invalid > 0)
        cloud = np.isin(scl, (8, 9, 10)).mean() * 100
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(cloud, abs=1e-3)
        if (scl == 9).any():
            blue = _read(_asset_path(world, S2_L2A, item, "blue"))
            thick = np.repeat(np.repeat(scl == 9, 2, axis=0), 2, axis=1)
            assert np.median(blue[thick]) > 1000 + 2500  # bright cloud tops
    share = sum(affected) / len(items)
    assert share == pytest.approx(round(PARAMS.cloud_share * len(items)) / len(items))
    assert 0.4 <= share <= 0.6
    assert not all(affected)


def test_peak_ndvi_per_crop_and_bare_soil(world: WorldSummary, signals: dict[str, Any]) -> None:
    ndvi, truth, events = signals["ndvi"], signals["truth"], signals["events"]
    clear = ndvi[ndvi["clear"] >= 0.8]
    peak = clear.groupby("parcel_id")["ndvi"].max()
    green = truth[truth["actual_crop_code"].isin(["PGM", "PGG", "WWH", "MAI", "SBE", "POT"])]
    values = peak.reindex(green["parcel_id"]).dropna()
    assert len(values) >= 15
    assert (values > 0.6).mean() >= 0.9, values.sort_values().head()
    ploughed = events[events["event"] == "ploughing"]
    bare = []
    for row in ploughed.itertuples():
        obs = _clear(ndvi, row.parcel_id)
        after = obs[(obs["date"] > row.date) & (obs["date"] <= row.date + dt.timedelta(days=12))]
        if len(after):
            bare.append(after["ndvi"].iloc[0])
    assert len(bare) >= 3
    assert max(bare) < 0.3, bare


def test_mowing_drops_ndvi(signals: dict[str, Any]) -> None:
    ndvi, events = signals["ndvi"], signals["events"]
    drops = []
    for row in events[events["event"] == "mowing"].itertuples():
        obs = _clear(ndvi, row.parcel_id)
        before = obs[(obs["date"] < row.date) & (obs["date"] >= row.date - dt.timedelta(days=12))]
        after = obs[(obs["date"] > row.date) & (obs["date"] <= row.date + dt.timedelta(days=7))]
        if len(before) and len(after):
            drops.append(before["ndvi"].iloc[-1] - after["ndvi"].iloc[0])
    assert len(drops) >= 3
    assert np.median(drops) > 0.15 and np.mean(np.array(drops) > 0.1) >= 0.8, drops


def _pairs(coherence: pd.DataFrame, parcel_id: str) -> pd.DataFrame:
    return coherence[coherence["parcel_id"] == parcel_id].sort_values("secondary")


def test_coherence_follows_management(signals: dict[str, Any]) -> None:
    coherence, events = signals["coherence"], signals["events"]
    rises: dict[str, list[float]] = {"harvest": [], "mowing": []}
    for kind in rises:
        for row in events[events["event"] == kind].itertuples():
            pairs = _pairs(coherence, row.parcel_id)
            before = pairs[pairs["secondary"] < row.date]
            after = pairs[pairs["reference"] >= row.date]
            others = events[(events["parcel_id"] == row.parcel_id) & (events["date"] > row.date)]
            if len(others):  # stop at the next event (ploughing after harvest)
                after = after[after["secondary"] < others["date"].min()]
            if len(before) and len(after):
                rises[kind].append(after["coh"].iloc[0] - before["coh"].iloc[-1])
    assert len(rises["harvest"]) >= 3 and len(rises["mowing"]) >= 3
    assert np.mean(rises["harvest"]) > 0.15 and np.mean(np.array(rises["harvest"]) > 0) >= 0.8
    assert np.mean(rises["mowing"]) > 0.03 and np.mean(np.array(rises["mowing"]) > 0) >= 0.7
    drops = []
    for row in events[events["event"] == "ploughing"].itertuples():
        pairs = _pairs(coherence, row.parcel_id)
        spanning = pairs[(pairs["reference"] < row.date) & (pairs["secondary"] >= row.date)]
        earlier = events[(events["parcel_id"] == row.parcel_id) & (events["date"] < row.date)]
        before = pairs[pairs["secondary"] < row.date]
        if len(earlier):  # a stable pair after the previous event (stubble after harvest)
            before = before[before["reference"] >= earlier["date"].max()]
        if len(spanning) and len(before):
            drops.append(before["coh"].iloc[-1] - spanning["coh"].iloc[0])
    assert len(drops) >= 3
    assert np.mean(drops) > 0.1 and np.mean(np.array(drops) > 0) >= 0.8, drops


def test_violators_differ_from_their_declaration(world: WorldSummary,
                                                 signals: dict[str, Any]) -> None:
    truth, events = signals["truth"], signals["events"]
    parcels = gpd.read_file(world.parcels_path, layer="parcels")
    assert truth["parcel_id"].tolist() == parcels["parcel_id"].tolist()
    assert (truth["declared_crop_code"].to_numpy() == parcels["crop_code"].to_numpy()).all()
    assert int(truth["violation"].sum()) == round(PARAMS.violation_share * PARAMS.parcels)
    assert truth["violation"].equals(truth["violation_kind"].notna())
    by_parcel = {pid: grp for pid, grp in events.groupby("parcel_id")}
    empty = events.iloc[:0]
    for row in truth.itertuples():
        ev = by_parcel.get(row.parcel_id, empty)
        kinds = set(ev["event"])
        harvests = ev.loc[ev["event"] == "harvest", "date"]
        window = (row.practice_start, row.practice_end)
        if not row.violation:
            assert row.actual_crop_code == row.declared_crop_code
            if row.practice == "harvest":
                assert all(window[0] <= d <= window[1] for d in harvests), row
            continue
        kind = row.violation_kind
        if kind == "not_mown":
            assert row.practice == "mowing" and "mowing" not in kinds
        elif kind in ("grassland_ploughed", "fallow_cultivated"):
            assert "ploughing" in kinds
        elif kind == "catch_crop_not_sown":
            assert row.practice == "catch_crop"
            assert not ((ev["event"] == "sowing") & (ev["date"] <= window[1])).any()
        elif kind == "crop_mismatch":
            assert row.actual_crop_code != row.declared_crop_code
        elif kind in ("harvest_early", "harvest_late"):
            assert all(not (window[0] <= d <= window[1]) for d in harvests)
        else:
            pytest.fail(f"unknown violation kind {kind}")
    kinds_seen = set(truth["violation_kind"].dropna())
    assert len(kinds_seen) >= 3, kinds_seen


# -- command line --------------------------------------------------------------------------


def test_cli_world_build_and_info(tmp_path: Path) -> None:
    from cbm_dask.cli.main import cli

    out = tmp_path / "cli-world"
    args = ["world", "build", "--out", str(out), "--size", "96", "--parcels", "6",
            "--start", "2024-06-01", "--end", "2024-06-12", "--seed", "5"]
    runner = CliRunner()
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["parcels"] == 6 and summary["s2_items"] == 3 and summary["s1_items"] == 2
    assert (out / "world.json").is_file()

    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1
    assert "already holds a world" in refused.output and "--overwrite" in refused.output

    shown = runner.invoke(cli, [*args, "--overwrite", "--no-overviews"])
    assert shown.exit_code == 0, shown.output
    assert "violations" in shown.output and "cloudy share" in shown.output

    info = runner.invoke(cli, ["world", "info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.output)["coherence_items"] == 1

    bad = runner.invoke(cli, ["world", "build", "--out", str(tmp_path / "x"), "--size", "95"])
    assert bad.exit_code == 1 and "even" in bad.output
