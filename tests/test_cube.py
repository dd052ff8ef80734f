"""Lazy cubes from the real Sentinel COGs in ../shared/data/real, described by items
of the real catalogues' shapes (Earth Search v1/c1, CDSE STAC 1.1, Planetary Computer)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio
from affine import Affine

from cbm_dask.catalogue.normalise import ImageRecord, normalise_item
from cbm_dask.errors import InputError
from cbm_dask.load import GdalEnv, load_cube, native_geobox, solar_day, split_by_epsg
from cbm_dask.sentinel.bands import canonical_band, parse_asset_key
from tests._helpers import (
    IRELAND_WINDOW,
    KEMPEN_COGS,
    KEMPEN_S1_COGS,
    cdse_item,
    earth_search_item,
    ireland_item,
    planetary_item,
    s1_item,
)

INVALID = (0, 1, 3, 8, 9, 10, 11)

pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:odc.*"),
]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# ---------------------------------------------------------------------------
# laziness, layout, grids


@pytest.mark.realdata
def test_cube_is_lazy_until_compute(tmp_path: Path) -> None:
    item = earth_search_item("2023-04-05")
    # A missing file with complete grid metadata: building the cube must not open it.
    missing = dict(item["assets"]["red"], href=str(tmp_path / "not-there.tif"))
    item["assets"]["red"] = missing
    cube = load_cube([item], bands=["red", "nir", "scl"])
    for band in cube.bands:
        assert dask.is_dask_collection(cube[band].data), band
    assert np.isfinite(cube["B08"].compute()).any()  # another band reads fine
    with pytest.raises(Exception, match="not-there"):
        cube["B04"].compute()


@pytest.mark.realdata
def test_dims_coords_and_attrs() -> None:
    items = [earth_search_item(d, harmonised=True) for d in ("2023-04-02", "2023-04-05")]
    cube = load_cube(items, bands=["B04", "B08", "SCL"])
    assert cube.card == "s2" and cube.crs == "EPSG:32631"
    assert cube.resolutions == (10.0,) and cube.bands == ("B04", "B08", "SCL")
    ds = cube.groups[10]
    for name in ("B04", "B08", "SCL"):
        assert ds[name].dims == ("time", "y", "x")
    assert ds["B04"].dtype == np.float32 and ds["SCL"].dtype == np.uint8
    assert math.isnan(ds["B04"].attrs["nodata"]) and ds["SCL"].attrs["nodata"] == 0
    assert ds["B04"].attrs["units"] == "1"
    assert int(ds["spatial_ref"]) == 32631
    assert np.issubdtype(ds["time"].dtype, np.datetime64)
    assert list(ds["item_id"].values) == [i["id"] for i in items]
    assert ds.attrs["card"] == "s2" and ds.attrs["resolution"] == 10.0
    assert ds.attrs["scl_invalid"] == list(INVALID)
    assert cube["B04"].shape == (2, 66, 64)


@pytest.mark.realdata
def test_ten_metre_grid_is_the_cogs_own() -> None:
    cube = load_cube([earth_search_item("2023-04-05")], bands=["red"])
    with rasterio.open(KEMPEN_COGS / "2023-04-05" / "B04.tif") as src:
        transform, shape = src.transform, src.shape
    geobox = cube.groups[10].odc.geobox
    assert geobox.transform == transform
    assert geobox.shape == shape
    assert geobox.resolution.x == 10 and geobox.resolution.y == -10


@pytest.mark.realdata
def test_bbox_cut_snaps_to_the_native_grid() -> None:
    # A box inside the COG that does not fall on pixel edges.
    box = (5.0535, 51.2170, 5.0580, 51.2200)
    cube = load_cube([earth_search_item("2023-04-05")], bands=["red"], bbox=box)
    geobox = cube.groups[10].odc.geobox
    with rasterio.open(KEMPEN_COGS / "2023-04-05" / "B04.tif") as src:
        origin = src.transform
        full = src.read(1)
    col = (geobox.transform.c - origin.c) / 10
    row = (origin.f - geobox.transform.f) / 10
    assert col == int(col) and row == int(row) and geobox.resolution.x == 10
    assert geobox.shape[0] < full.shape[0] and geobox.shape[1] < full.shape[1]
    window = full[int(row): int(row) + geobox.shape[0], int(col): int(col) + geobox.shape[1]]
    values = cube["B04"].isel(time=0).values
    expected = np.where(window == 0, np.nan, window * np.float32(1e-4) - np.float32(0.1))
    scl = _read(KEMPEN_COGS / "2023-04-05" / "SCL.tif")
    scl = scl[int(row): int(row) + geobox.shape[0], int(col): int(col) + geobox.shape[1]]
    expected[np.isin(scl, INVALID)] = np.nan
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.realdata
def test_twenty_metre_bands_stay_at_twenty_metres() -> None:
    cube = load_cube([ireland_item()], bands=["B04", "nir08", "SCL", "AOT"])
    assert cube.resolutions == (20.0, 60.0)
    assert set(cube.groups[20].data_vars) == {"SCL", "AOT"}
    assert set(cube.groups[60].data_vars) == {"B04", "B8A"}
    with rasterio.open(IRELAND_WINDOW / "SCL_20m.tif") as scl, \
            rasterio.open(IRELAND_WINDOW / "B04_60m.tif") as red:
        assert cube.groups[20].odc.geobox.transform == scl.transform
        assert cube.groups[20].odc.geobox.shape == scl.shape
        assert cube.groups[60].odc.geobox.transform == red.transform
        np.testing.assert_array_equal(cube["SCL"].isel(time=0).values, scl.read(1))
    assert cube.resolution_of("AOT") == 20.0


def test_native_geobox_refuses_to_resample_misaligned_ten_metre_grids() -> None:
    grids = [(Affine(10, 0, 600000, 0, -10, 5700000), (100, 100)),
             (Affine(10, 0, 600005, 0, -10, 5700000), (100, 100))]
    with pytest.raises(InputError, match="not aligned"):
        native_geobox(grids, "EPSG:32631")
    aligned = [(Affine(10, 0, 600000, 0, -10, 5700000), (100, 100)),
               (Affine(10, 0, 600500, 0, -10, 5699000), (100, 100))]
    box = native_geobox(aligned, "EPSG:32631")
    assert box.shape == (200, 150) and box.transform.c == 600000 and box.transform.f == 5700000


# ---------------------------------------------------------------------------
# band names across catalogue shapes


def test_band_aliases() -> None:
    assert {canonical_band(n) for n in ("red", "B04", "b4", "B04_10m", "red-jp2")} == {"B04"}
    assert canonical_band("nir08") == canonical_band("B8A") == "B8A"
    assert canonical_band("swir16") == "B11" and canonical_band("scl") == "SCL"
    assert parse_asset_key("blue_60m") == ("B02", 60)
    assert parse_asset_key("visual") == (None, None)
    assert canonical_band("vv") == "VV" and canonical_band("vv", "c6") == "COH_VV"
    assert canonical_band("coh_vh") == "COH_VH" and canonical_band("red", "bs") is None


@pytest.mark.realdata
def test_same_bands_from_every_catalogue_shape() -> None:
    date = "2023-04-05"
    shapes = {"earth-search": earth_search_item(date), "cdse": cdse_item(date),
              "planetary": planetary_item(date)}
    cubes = {name: load_cube([item], bands=["red", "nir", "scl"]) for name, item in shapes.items()}
    reference = cubes["earth-search"]
    for name, cube in cubes.items():
        assert cube.bands == ("B04", "B08", "SCL"), name
        for band in cube.bands:
            np.testing.assert_array_equal(cube[band].values, reference[band].values,
                                          err_msg=f"{name} {band}")


# ---------------------------------------------------------------------------
# values: offsets, masks, S1


@pytest.mark.realdata
def test_boa_offset_removed_as_the_item_declares() -> None:
    dn = _read(KEMPEN_COGS / "2023-04-05" / "B04.tif").astype("float64")
    nodata = dn == 0
    cases = {
        "raster:bands offset -0.1": (earth_search_item("2023-04-05"), dn * 1e-4 - 0.1),
        "harmonised flag": (earth_search_item("2023-04-05", harmonised=True), dn * 1e-4),
        "baseline 05.09, no raster ext": (planetary_item("2023-04-05"), (dn - 1000) / 1e4),
    }
    for name, (item, expected) in cases.items():
        values = load_cube([item], bands=["B04"], mask_scl=False)["B04"].isel(time=0).values
        np.testing.assert_allclose(values[~nodata], expected[~nodata], rtol=1e-6, atol=2e-7,
                                   err_msg=name)
        assert np.isnan(values[nodata]).all(), name


@pytest.mark.realdata
def test_baseline_0400_offset_on_real_l2a() -> None:
    # The Irish product is a real N0400 L2A: DN carry the +1000 BOA offset.
    cube = load_cube([ireland_item()], bands=["B04"], mask_scl=False)
    dn = _read(IRELAND_WINDOW / "B04_60m.tif").astype("float64")
    values = cube["B04"].isel(time=0).values
    valid = dn != 0
    np.testing.assert_allclose(values[valid], (dn[valid] - 1000) / 10000, atol=2e-7)
    assert np.isnan(values[~valid]).all()


@pytest.mark.realdata
@pytest.mark.parametrize("classes", [None, (8, 9)])
def test_scl_mask_is_exactly_the_invalid_classes(classes: tuple[int, ...] | None) -> None:
    dates = ("2022-11-01", "2022-11-11", "2023-01-16")  # cloudy, clear, clear
    items = [earth_search_item(d, harmonised=True) for d in dates]
    cube = load_cube(items, bands=["B04", "B08"], mask_scl=True if classes is None else classes)
    invalid = INVALID if classes is None else classes
    for step, date in enumerate(dates):
        scl = _read(KEMPEN_COGS / date / "SCL.tif")
        for band in ("B04", "B08"):
            dn = _read(KEMPEN_COGS / date / f"{band}.tif")
            expected_nan = np.isin(scl, invalid) | (dn == 0)
            values = cube[band].isel(time=step).values
            np.testing.assert_array_equal(np.isnan(values), expected_nan,
                                          err_msg=f"{date} {band}")
            np.testing.assert_allclose(values[~expected_nan], dn[~expected_nan] * 1e-4,
                                       rtol=1e-6)


@pytest.mark.parametrize("lazy", [False, True])
def test_physical_values_are_those_of_the_xarray_expression_bit_for_bit(lazy: bool) -> None:
    import dask.array as da
    import xarray as xr

    from cbm_dask.load._physical import physical_values

    rng = np.random.default_rng(7)
    dn = rng.integers(0, 12_000, (3, 70, 90)).astype("uint16")
    dn[:, :4] = 0  # nodata
    scl = np.repeat(rng.integers(0, 12, (3, 7, 90)), 10, axis=1).astype("uint8")
    scale = np.array([1e-4, 1e-4, 2e-4], dtype="float32")
    offset = np.array([-0.1, 0.0, 0.05], dtype="float32")
    has_scl = np.array([True, False, True])
    dims = ("time", "y", "x")

    def wrap(values: np.ndarray) -> xr.DataArray:
        data = da.from_array(values, chunks=(1, 32, 40)) if lazy else values
        return xr.DataArray(data, dims=dims)

    invalid = wrap(scl).isin(INVALID) & xr.DataArray(has_scl, dims="time")
    expected = ((wrap(dn).astype("float32") * xr.DataArray(scale, dims="time")
                 + xr.DataArray(offset, dims="time")).where(wrap(dn) != 0)
                .where(~invalid)).values
    got = physical_values(wrap(dn), scale, offset, 0.0, wrap(scl), INVALID, has_scl)
    assert got.dtype == np.float32 and got.dims == dims
    assert isinstance(got.data, da.Array) is lazy
    np.testing.assert_array_equal(got.values.view("uint32"), expected.view("uint32"))
    assert np.isnan(expected).any() and not np.isnan(expected).all()

    floats = rng.random((3, 70, 90)).astype("float32")
    floats[0, :3] = np.nan
    plain = physical_values(wrap(floats), np.ones(3), np.zeros(3), math.nan).values
    np.testing.assert_array_equal(plain.view("uint32"), floats.view("uint32"))


@pytest.mark.realdata
def test_no_mask_keeps_cloudy_pixels() -> None:
    item = earth_search_item("2022-11-01", harmonised=True)
    values = load_cube([item], bands=["B04"], mask_scl=False)["B04"].values
    assert not np.isnan(values).any()


@pytest.mark.realdata
def test_twenty_metre_scl_masks_sixty_metre_bands_by_nearest_pixel() -> None:
    cube = load_cube([ireland_item()], bands=["B04"])
    scl20 = _read(IRELAND_WINDOW / "SCL_20m.tif")
    centre = scl20[1::3, 1::3]  # the 20 m pixel under each 60 m pixel centre
    dn = _read(IRELAND_WINDOW / "B04_60m.tif")
    expected_nan = np.isin(centre, INVALID) | (dn == 0)
    np.testing.assert_array_equal(np.isnan(cube["B04"].isel(time=0).values), expected_nan)
    assert 0 < expected_nan.mean() < 1


@pytest.mark.realdata
def test_sentinel1_linear_and_decibels() -> None:
    items = [s1_item(d) for d in ("2023-04-03", "2023-04-05")]
    linear = load_cube(items)
    decibel = load_cube(items, s1_db=True)
    assert linear.card == "bs" and linear.bands == ("VV", "VH")
    raw = _read(KEMPEN_S1_COGS / "2023-04-05" / "VV.tif")
    np.testing.assert_array_equal(linear["VV"].isel(time=1).values, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = 10 * np.log10(linear["VH"].values)
    np.testing.assert_allclose(decibel["VH"].values, expected, rtol=1e-5, equal_nan=True)
    assert decibel["VH"].attrs["units"] == "dB"
    assert np.nanmedian(decibel["VV"].values) == pytest.approx(-11, abs=3)


# ---------------------------------------------------------------------------
# time grouping


@pytest.mark.realdata
def test_same_solar_day_images_are_fused() -> None:
    early = earth_search_item("2023-04-05", harmonised=True)
    late = earth_search_item("2023-04-05", harmonised=True, hour="10:47:30", suffix="b")
    other = earth_search_item("2023-04-07", harmonised=True)
    fused = load_cube([late, other, early], bands=["B04", "SCL"])
    assert fused.groups[10].sizes["time"] == 2
    assert list(fused.groups[10]["item_id"].values) == [f"{early['id']}+{late['id']}",
                                                         other["id"]]
    separate = load_cube([late, other, early], bands=["B04", "SCL"], groupby="item")
    assert separate.groups[10].sizes["time"] == 3
    np.testing.assert_array_equal(fused["B04"].isel(time=0).values,
                                  separate["B04"].isel(time=0).values)
    assert fused.groups[10].attrs["groupby"] == "solar_day"


def test_solar_day_shifts_with_longitude() -> None:
    import datetime as dt

    late_utc = dt.datetime(2023, 4, 5, 23, 30, tzinfo=dt.UTC)
    assert solar_day(late_utc, 15.0) == dt.date(2023, 4, 6)
    assert solar_day(late_utc, -60.0) == dt.date(2023, 4, 5)


@pytest.mark.realdata
def test_time_filter_is_inclusive_of_the_end_day() -> None:
    items = [earth_search_item(d) for d in ("2023-04-02", "2023-04-05", "2023-04-07")]
    cube = load_cube(items, bands=["B04"], time=("2023-04-03", "2023-04-05"))
    assert list(cube.groups[10]["item_id"].values) == [items[1]["id"]]


# ---------------------------------------------------------------------------
# inputs: records, rows, errors, GDAL environment


@pytest.mark.realdata
def test_catalogue_rows_give_the_same_cube() -> None:
    item = cdse_item("2023-04-05")
    record = normalise_item(item)
    row = {**record.as_row(), "id": 42}
    from_row = ImageRecord.from_row(row)
    assert from_row.image_id == 42 and from_row.footprint.equals(record.footprint)
    a = load_cube([item], bands=["B04", "SCL"])
    b = load_cube([row], bands=["B04", "SCL"])
    np.testing.assert_array_equal(a["B04"].values, b["B04"].values)
    assert list(b.groups[10]["image_id"].values) == [42]


@pytest.mark.realdata
def test_bad_inputs_name_what_to_fix() -> None:
    kempen, ireland = earth_search_item("2023-04-05"), ireland_item()
    with pytest.raises(InputError, match="several CRSs.*EPSG:3263"):
        load_cube([kempen, ireland], bands=["B04"])
    assert set(split_by_epsg([kempen, ireland])) == {32631, 32629}
    with pytest.raises(InputError, match="B12"):
        load_cube([kempen], bands=["B12"])
    with pytest.raises(InputError, match="unknown band"):
        load_cube([kempen], bands=["ndvi"])
    with pytest.raises(InputError, match="does not overlap"):
        load_cube([kempen], bands=["B04"], bbox=(10.0, 50.0, 10.1, 50.1))
    with pytest.raises(InputError, match="several cards"):
        load_cube([kempen, s1_item("2023-04-05")])
    with pytest.raises(InputError, match="no images"):
        load_cube([kempen], time=("2024-01-01", None))
    not_an_env: Any = ("AWS_S3_ENDPOINT", "127.0.0.1:8333")
    with pytest.raises(InputError, match="gdal_env: expected a GdalEnv"):
        load_cube([kempen], bands=["B04"], gdal_env=not_an_env)


@pytest.mark.realdata
def test_gdal_env_travels_with_the_graph() -> None:
    env = GdalEnv.from_options({"AWS_S3_ENDPOINT": "127.0.0.1:8333", "AWS_HTTPS": "NO",
                                "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": "k",
                                "AWS_SECRET_ACCESS_KEY": "s",
                                "AWS_NO_SIGN_REQUEST": "NO"}).task_env()
    assert env["_aws"] == {"endpoint_url": "127.0.0.1:8333", "aws_access_key_id": "k",
                           "aws_secret_access_key": "s", "aws_unsigned": False}
    assert env["AWS_VIRTUAL_HOSTING"] == "FALSE" and "AWS_ACCESS_KEY_ID" not in env
    # Local files read the same with an explicit environment embedded in the graph.
    item = earth_search_item("2023-04-05")
    plain = load_cube([item], bands=["B04"])
    for gdal_env in ({"GDAL_HTTP_MAX_RETRY": "3"},
                     GdalEnv.from_options({"GDAL_HTTP_MAX_RETRY": "3"})):
        with_env = load_cube([item], bands=["B04"], gdal_env=gdal_env)
        np.testing.assert_array_equal(plain["B04"].values, with_env["B04"].values)


def test_s3_hrefs_read_through_the_gdal_env(s3_server: Any) -> None:
    from cbm_dask.load import capture_gdal_env
    from cbm_dask.services.s3 import ensure_bucket, s3_client

    ensure_bucket(s3_server)
    client = s3_client(s3_server)
    item = earth_search_item("2023-04-05")
    for key in ("red", "nir", "scl"):
        path = Path(item["assets"][key]["href"])
        object_key = f"tests/cube/{path.parent.name}/{path.name}"
        client.upload_file(str(path), s3_server.bucket, object_key)
        item["assets"][key]["href"] = s3_server.object_url(object_key)
    assert item["assets"]["red"]["href"].startswith("s3://")
    local = load_cube([earth_search_item("2023-04-05")], bands=["red", "nir", "scl"])
    env = capture_gdal_env(s3_server)
    for gdal_env in (env, env.options()):  # the GdalEnv, or its options as a mapping
        remote = load_cube([item], bands=["red", "nir", "scl"], gdal_env=gdal_env)
        for band in ("B04", "B08", "SCL"):
            np.testing.assert_array_equal(remote[band].values, local[band].values)
        stored = load_cube([item], bands=["red", "nir", "scl"], gdal_env=gdal_env, decode=False)
        for band in ("B04", "B08", "SCL"):  # window reads in the tasks use the environment
            np.testing.assert_array_equal(_decoded(stored, band), local[band].values)


# ---------------------------------------------------------------------------
# stored values (decode=False): window reads, CF attributes, the mask beside them


def _decoded(cube: Any, band: str) -> np.ndarray:
    """Stored values decoded the way the cube does it: float32 arithmetic, NaN at masks."""
    group = cube.groups[cube.resolution_of(band)]
    values = group[band].values
    if band == "SCL":
        return values
    attrs = group[band].attrs
    out = values.astype(np.float32) * np.float32(attrs["scale_factor"]) + np.float32(
        attrs["add_offset"])
    out[values == attrs["nodata"]] = np.nan
    if "invalid" in group.coords:
        out[group["invalid"].values] = np.nan
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("chunks", [None, {"time": 1, "y": 333, "x": 500}])
def test_stored_values_decode_to_the_cube_bit_for_bit(chunks: dict[str, int] | None) -> None:
    cloudy = earth_search_item("2023-04-05")  # 1 % of its pixels are masked classes
    items = [cloudy, earth_search_item("2023-04-07", offset=0.0)]
    for item in items:
        decoded = load_cube([item], bands=["B04", "B08", "B11", "SCL"], chunks=chunks,
                            groupby="item")
        stored = load_cube([item], bands=["B04", "B08", "B11", "SCL"], chunks=chunks,
                           decode=False)
        assert stored["B04"].dtype == np.uint16 and stored["SCL"].dtype == np.uint8
        assert stored["B04"].attrs["scale_factor"] == 0.0001
        assert stored["B04"].attrs["add_offset"] == item["assets"]["red"]["raster:bands"][0][
            "offset"]
        assert stored.groups[10]["invalid"].dtype == bool
        if chunks:
            assert stored["B04"].data.numblocks[1:] == decoded["B04"].data.numblocks[1:]
        for band in ("B04", "B08", "B11", "SCL"):
            np.testing.assert_array_equal(_decoded(stored, band), decoded[band].values)
        assert stored.groups[10]["invalid"].shape == stored["B04"].shape
        if item is cloudy:
            assert 0 < stored.groups[10]["invalid"].values.mean() < 0.5


@pytest.mark.realdata
def test_stored_values_of_sixty_metre_bands_and_a_baseline_offset() -> None:
    item = ireland_item()
    decoded = load_cube([item], bands=["B01", "B09", "SCL"], groupby="item")
    stored = load_cube([item], bands=["B01", "B09", "SCL"], decode=False)
    assert stored["B01"].attrs["add_offset"] == -0.1  # N0400: the offset the baseline implies
    for band in ("B01", "B09", "SCL"):
        np.testing.assert_array_equal(_decoded(stored, band), decoded[band].values)


@pytest.mark.realdata
def test_stored_values_where_an_image_covers_part_of_the_grid(tmp_path: Path) -> None:
    """A smaller image's window is read into its part of the grid; the rest is nodata."""
    full = earth_search_item("2023-04-05")
    part = earth_search_item("2023-04-07", suffix="-part")
    for key in ("red", "scl"):
        asset = part["assets"][key]
        with rasterio.open(asset["href"]) as src:
            # a window that starts inside the grid and ends at its edge
            window = rasterio.windows.Window(src.width // 3, src.height // 4,
                                             src.width - src.width // 3,
                                             src.height // 2)
            profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                       "transform": src.window_transform(window)}
            target = tmp_path / f"{key}.tif"
            with rasterio.open(target, "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
            asset.update(href=str(target), **{"proj:shape": [int(window.height),
                                                            int(window.width)],
                                              "proj:transform": list(profile["transform"])[:6]})
    items = [full, part]
    decoded = load_cube(items, bands=["B04", "SCL"], groupby="item",
                        chunks={"time": 1, "y": 400, "x": 400})
    stored = load_cube(items, bands=["B04", "SCL"], decode=False,
                       chunks={"time": 1, "y": 400, "x": 400})
    values = stored["B04"].values
    assert (values[1] == 0).mean() > 0.5 and (values[1] != 0).any()
    for band in ("B04", "SCL"):
        np.testing.assert_array_equal(_decoded(stored, band), decoded[band].values)


@pytest.mark.realdata
def test_misaligned_assets_are_read_by_odc_stac() -> None:
    from odc.geo.geobox import GeoBox

    from cbm_dask.load._native import native_offset

    box = GeoBox((100, 100), Affine(10, 0, 600_000, 0, -10, 5_700_000), "EPSG:32631")
    assert native_offset(Affine(10, 0, 599_900, 0, -10, 5_700_050), box) == (-5, -10)
    assert native_offset(Affine(10, 0, 600_005, 0, -10, 5_700_000), box) is None
    assert native_offset(Affine(20, 0, 600_000, 0, -20, 5_700_000), box) is None
    # a 60 m grid half a pixel off: read with nearest-neighbour resampling, as decoded
    item = ireland_item()
    shifted = dict(item, assets=dict(item["assets"]))
    asset = dict(shifted["assets"]["B09"])
    transform = list(asset["proj:transform"])
    transform[2] += 30.0
    asset["proj:transform"] = transform
    shifted["assets"]["B09"] = asset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = load_cube([shifted], bands=["B01", "B09"], groupby="item", mask_scl=False)
        stored = load_cube([shifted], bands=["B01", "B09"], decode=False, mask_scl=False)
    np.testing.assert_array_equal(_decoded(stored, "B09"), decoded["B09"].values)


@pytest.mark.realdata
def test_stored_values_refuse_what_they_cannot_express() -> None:
    a, b = earth_search_item("2023-04-05"), earth_search_item("2023-04-07", offset=0.0)
    with pytest.raises(InputError, match="different scales .* or offsets"):
        load_cube([a, b], bands=["B04"], decode=False)
    with pytest.raises(InputError, match="groupby='item'"):
        load_cube([a], bands=["B04"], decode=False, groupby="solar_day")
    with pytest.raises(InputError, match="s1_db=False"):
        load_cube([s1_item("2023-04-05")], decode=False, s1_db=True)
