"""Per-parcel statistics: the reduction engine against rasterstats, numpy and hand-computed
values, on the real Sentinel-2 COGs of ../shared/data/real and on tiny synthetic rasters."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import rasterstats
import rioxarray
import shapely
import xarray as xr
from affine import Affine

from cbm_dask.errors import InputError
from cbm_dask.reduce import ParcelLabels, build_labels, grid_of, scl_histogram, zonal_stats
from cbm_dask.reduce.grid import spatial_dims
from cbm_dask.reduce.zonal import parse_stats
from tests._helpers import REAL_DATA

KEMPEN = REAL_DATA / "s2_l2a_flanders_kempen_2022_2023" / "cogs"
ANTWERP = REAL_DATA / "s2_l2a_antwerp_waasland_2023q4" / "cogs"
STATS = ["count", "mean", "std", "min", "max", "p25", "p50", "p75"]
RS_STATS = ["count", "mean", "std", "min", "max", "percentile_25", "percentile_50",
            "percentile_75"]

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    # rasterstats, rasterio and rioxarray still multiply Affine transforms with `*`
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
]


# --------------------------------------------------------------------------- helpers


def open_band(path: Path) -> xr.DataArray:
    """A real COG as a 2-D uint16 DataArray (nodata kept as an attribute, not decoded)."""
    array = rioxarray.open_rasterio(path, mask_and_scale=False)
    assert isinstance(array, xr.DataArray)
    return array.squeeze("band", drop=True).load()


def real_parcels(left: float, top: float) -> gpd.GeoDataFrame:
    """Test polygons drawn relative to a raster's upper-left corner (UTM 31N metres).

    Vertices avoid the pixel-centre lines (x, y = ...5 m) so that no centre lies exactly on
    a boundary, where libraries may legitimately differ.
    """

    def ring(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(left + x, top - y) for x, y in points]

    big = shapely.Polygon(ring([(23.7, 41.3), (268.2, 30.9), (291.4, 166.6), (151.3, 228.8),
                                (18.1, 190.2)]))
    rotated = shapely.Polygon(ring([(331.2, 52.4), (447.9, 88.1), (421.6, 171.3),
                                    (305.3, 135.8)]))
    holey = shapely.Polygon(ring([(40.6, 260.3), (241.2, 260.3), (241.2, 461.8), (40.6, 461.8)]),
                            [ring([(101.1, 321.2), (181.3, 321.2), (181.3, 382.9),
                                   (101.1, 382.9)])])
    multi = shapely.MultiPolygon([
        shapely.Polygon(ring([(300.3, 300.8), (362.2, 300.8), (362.2, 351.1), (300.3, 351.1)])),
        shapely.Polygon(ring([(380.7, 402.6), (431.9, 396.2), (440.3, 445.4)])),
    ])
    over_1 = shapely.Polygon(ring([(262.3, 232.4), (372.8, 232.4), (372.8, 292.7),
                                   (262.3, 292.7)]))
    over_2 = shapely.Polygon(ring([(331.1, 251.9), (401.4, 251.9), (401.4, 331.6),
                                   (331.1, 331.6)]))
    edge = shapely.Polygon(ring([(-40.2, 470.3), (83.7, 466.1), (91.2, 560.9), (-33.4, 580.2)]))
    tiny = shapely.Polygon(ring([(101.2, 98.7), (103.9, 98.7), (103.9, 101.2), (101.2, 101.2)]))
    outside = shapely.Polygon(ring([(-300.2, 10.3), (-200.6, 10.3), (-200.6, 90.9)]))
    return gpd.GeoDataFrame(
        {"pid": np.arange(101, 110, dtype=np.int64),
         "name": ["big", "rotated", "holey", "multi", "over_1", "over_2", "edge", "tiny",
                  "outside"]},
        geometry=[big, rotated, holey, multi, over_1, over_2, edge, tiny, outside],
        crs="EPSG:32631",
    )


def reference(values: np.ndarray, geom: shapely.Geometry, transform: Affine,
              invalid: np.ndarray | None = None) -> dict[str, float]:
    """numpy statistics of the pixels whose centre GDAL puts inside ``geom``."""
    inside = rasterio.features.geometry_mask([geom], out_shape=values.shape, transform=transform,
                                             invert=True, all_touched=False)
    if invalid is not None:
        inside &= ~invalid
    v = values[inside]
    if v.size == 0:
        return {"count": 0, **{s: np.nan for s in STATS[1:]}}
    return {"count": v.size, "mean": float(np.mean(v)), "std": float(np.std(v)),
            "min": float(v.min()), "max": float(v.max()),
            "p25": float(np.percentile(v, 25)), "p50": float(np.percentile(v, 50)),
            "p75": float(np.percentile(v, 75))}


def assert_matches(row: pd.Series, expected: dict[str, float]) -> None:
    assert row["count"] == expected["count"]
    if expected["count"] == 0:
        assert row[STATS[1:]].isna().all()
        return
    for stat in ("min", "max", "p25", "p50", "p75"):
        assert row[stat] == expected[stat], stat
    np.testing.assert_allclose(row["mean"], expected["mean"], rtol=1e-12)
    np.testing.assert_allclose(row["std"], expected["std"], rtol=1e-9)


def tiny_raster(values: np.ndarray, *, crs: str = "EPSG:32631", **attrs: object) -> xr.DataArray:
    """``values`` on a grid of 1 m pixels whose upper-left corner is (0, height)."""
    height, width = values.shape[-2:]
    array = xr.DataArray(
        values,
        dims=(*(f"d{i}" for i in range(values.ndim - 2)), "y", "x"),
        coords={"y": height - 0.5 - np.arange(height), "x": 0.5 + np.arange(width)},
        attrs=attrs,
    )
    return array.rio.write_crs(crs)


def boxes(*geoms: shapely.Geometry, crs: str = "EPSG:32631") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"pid": np.arange(1, len(geoms) + 1)}, geometry=list(geoms), crs=crs)


GRID16 = np.arange(16, dtype=np.uint16).reshape(4, 4)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "date", "band"),
    [
        (KEMPEN, "2023-04-05", "B04"),
        (KEMPEN, "2023-04-05", "B11"),
        (KEMPEN, "2022-11-11", "B08"),
        (KEMPEN, "2022-12-11", "B02"),  # every pixel is nodata: all counts 0
        (ANTWERP, "2023-10-02", "B08"),
        (ANTWERP, "2023-12-21", "B03"),
    ],
)
def test_equal_to_rasterstats_on_real_cogs(folder: Path, date: str, band: str) -> None:
    path = folder / date / f"{band}.tif"
    data = open_band(path)
    left, top = data.rio.bounds()[0], data.rio.bounds()[3]
    parcels = real_parcels(left, top)
    if folder == ANTWERP:  # a smaller raster: keep the parcels of the upper part inside
        parcels = parcels[parcels["name"] != "edge"].reset_index(drop=True)
    ours = zonal_stats(data, parcels)
    theirs = rasterstats.zonal_stats(parcels, str(path), stats=RS_STATS, all_touched=False)
    values = data.values
    transform = data.rio.transform()
    assert ours["pid"].tolist() == parcels["pid"].tolist()
    for (_, row), expected, geom in zip(ours.iterrows(), theirs, parcels.geometry, strict=True):
        rs = {"count": expected["count"], "mean": expected["mean"], "std": expected["std"],
              "min": expected["min"], "max": expected["max"],
              "p25": expected["percentile_25"], "p50": expected["percentile_50"],
              "p75": expected["percentile_75"]}
        if rs["count"] == 0:
            rs = {"count": 0, **{s: np.nan for s in STATS[1:]}}
        assert_matches(row, rs)
        # and rasterstats' percentiles are numpy's "linear" ones on the same pixels
        assert_matches(row, reference(values, geom, transform, values == 0))
    if date != "2022-12-11":
        by_name = dict(zip(parcels["name"], ours["count"], strict=True))
        assert by_name["tiny"] == 0 and by_name["outside"] == 0
        assert by_name["big"] > 300 and by_name["holey"] > 200


@pytest.mark.realdata
def test_overlapping_parcels_each_get_all_their_pixels() -> None:
    data = open_band(KEMPEN / "2023-04-05" / "B08.tif")
    parcels = real_parcels(*data.rio.bounds()[::3])
    pair = parcels[parcels["name"].isin(["over_1", "over_2"])]
    alone = [zonal_stats(data, pair.iloc[[i]]) for i in range(2)]
    together = zonal_stats(data, pair)
    pd.testing.assert_frame_equal(together, pd.concat(alone, ignore_index=True))
    labels = build_labels(pair, data)
    masks = [labels.pixel_mask(0), labels.pixel_mask(1)]
    assert (masks[0] & masks[1]).sum() == 16  # they share a 4 x 4 block of pixels


@pytest.mark.realdata
def test_lazy_equals_eager_on_a_real_time_band_stack() -> None:
    dates = ["2022-11-01", "2022-11-11", "2022-12-11", "2023-01-16", "2023-02-11"]
    bands = ["B02", "B03", "B04", "B08"]
    stack = xr.concat(
        [xr.concat([open_band(KEMPEN / d / f"{b}.tif") for b in bands], dim="band")
         for d in dates], dim="time",
    ).assign_coords(time=pd.to_datetime(dates), band=bands)
    parcels = real_parcels(*stack.rio.bounds()[::3])
    eager = zonal_stats(stack, parcels)
    assert list(eager.columns) == ["pid", "time", "band", *STATS]
    assert len(eager) == len(parcels) * len(dates) * len(bands)
    # rows: date, then band, then parcel
    assert eager["band"].tolist()[: 2 * len(parcels)] == ["B02"] * 9 + ["B03"] * 9
    with dask.config.set(scheduler="sync"):
        lazy = zonal_stats(stack.chunk({"time": 2, "band": 3, "y": 17, "x": 23}), parcels)
    pd.testing.assert_frame_equal(lazy, eager)
    one = eager[(eager["band"] == "B04") & (eager["time"] == pd.Timestamp("2023-01-16"))]
    single = zonal_stats(open_band(KEMPEN / "2023-01-16" / "B04.tif"), parcels)
    np.testing.assert_array_equal(one[STATS].to_numpy(), single[STATS].to_numpy())


@pytest.mark.realdata
def test_dataset_of_bands_with_an_scl_mask() -> None:
    dates = ["2023-04-02", "2023-04-05", "2023-04-15"]
    cube = xr.Dataset({
        band: xr.concat([open_band(KEMPEN / d / f"{band}.tif") for d in dates], dim="time")
        for band in ("B04", "B08")
    }).assign_coords(time=pd.to_datetime(dates))
    scl = xr.concat([open_band(KEMPEN / d / "SCL.tif") for d in dates], dim="time")
    cloudy = scl.isin([3, 8, 9, 10]).assign_coords(time=pd.to_datetime(dates))
    parcels = real_parcels(*cube.rio.bounds()[::3])
    table = zonal_stats(cube, parcels, mask=cloudy, stats=("count", "mean", "p50"))
    assert list(table.columns) == ["pid", "time", "band", "count", "mean", "p50"]
    transform = cube.rio.transform()
    for t, date in enumerate(pd.to_datetime(dates)):
        for band in ("B04", "B08"):
            values = cube[band].values[t]
            rows = table[(table["time"] == date) & (table["band"] == band)]
            for (_, row), geom in zip(rows.iterrows(), parcels.geometry, strict=True):
                expected = reference(values, geom, transform,
                                     (values == 0) | cloudy.values[t])
                assert row["count"] == expected["count"]
                if expected["count"]:
                    assert row["p50"] == expected["p50"]
                    np.testing.assert_allclose(row["mean"], expected["mean"], rtol=1e-12)
    assert table["count"].sum() < zonal_stats(cube, parcels, stats=["count"])["count"].sum()
    lazy = zonal_stats(cube.chunk({"y": 20, "x": 30}), parcels, mask=cloudy.chunk({"x": 7}),
                       stats=("count", "mean", "p50"))
    pd.testing.assert_frame_equal(lazy, table)


@pytest.mark.realdata
def test_encoded_values_give_decoded_statistics() -> None:
    """CF-encoded digital numbers are reduced as stored and come out in physical units."""
    raw = open_band(KEMPEN / "2023-04-05" / "B04.tif")
    parcels = real_parcels(*raw.rio.bounds()[::3])
    encoded = raw.assign_attrs(scale_factor=0.0001, add_offset=-0.1)
    physical = raw.values.astype("float64") * 0.0001 - 0.1
    transform = raw.rio.transform()
    table = zonal_stats(encoded, parcels, stats=[*STATS, "sum"])
    for (_, row), geom in zip(table.iterrows(), parcels.geometry, strict=True):
        expected = reference(physical, geom, transform, raw.values == 0)
        assert row["count"] == expected["count"]
        if not expected["count"]:
            assert row[[*STATS[1:], "sum"]].isna().all()
            continue
        for stat in STATS[1:]:
            np.testing.assert_allclose(row[stat], expected[stat], rtol=1e-12, atol=1e-15,
                                       err_msg=stat)
        np.testing.assert_allclose(row["sum"], expected["mean"] * expected["count"], rtol=1e-9)
    assert (table["count"] > 0).sum() >= 6
    with dask.config.set(scheduler="sync"):
        lazy = zonal_stats(encoded.chunk({"y": 19, "x": 27}), parcels, stats=[*STATS, "sum"])
    pd.testing.assert_frame_equal(lazy, table)
    for bad in ({"scale_factor": 0.0}, {"scale_factor": -1.0}, {"add_offset": "a"}):
        with pytest.raises(InputError, match="decode"):
            zonal_stats(raw.assign_attrs(**bad), parcels)


@pytest.mark.realdata
def test_scl_histogram_counts_classes_per_parcel_and_date() -> None:
    dates = ["2023-04-02", "2023-04-05", "2023-04-07", "2023-04-15"]
    scl = xr.concat([open_band(KEMPEN / d / "SCL.tif") for d in dates], dim="time")
    scl = scl.assign_coords(time=pd.to_datetime(dates))
    parcels = real_parcels(*scl.rio.bounds()[::3])
    wide = scl_histogram(scl, parcels, layout="wide")
    assert list(wide.columns) == ["pid", "time", *(f"scl_{c}" for c in range(12))]
    assert len(wide) == len(parcels) * len(dates)
    transform = scl.rio.transform()
    for t, date in enumerate(pd.to_datetime(dates)):
        rows = wide[wide["time"] == date]
        for (_, row), geom in zip(rows.iterrows(), parcels.geometry, strict=True):
            inside = rasterio.features.geometry_mask([geom], out_shape=scl.shape[1:],
                                                     transform=transform, invert=True)
            expected = np.bincount(scl.values[t][inside], minlength=12)
            assert row[[f"scl_{c}" for c in range(12)]].tolist() == expected.tolist()
    long = scl_histogram(scl.chunk({"time": 1, "y": 25, "x": 40}), parcels)
    assert list(long.columns) == ["pid", "time", "class", "count"]
    assert (long["count"] > 0).all()
    pivot = long.pivot_table(index=["pid", "time"], columns="class", values="count",
                             fill_value=0)
    dense = wide.set_index(["pid", "time"])[[f"scl_{c}" for c in pivot.columns]]
    dense = dense[(dense > 0).any(axis=1)].sort_index()
    np.testing.assert_array_equal(pivot.to_numpy(), dense.to_numpy())
    counts = zonal_stats(scl, parcels, stats=["count"], nodata=255)
    totals = wide[[f"scl_{c}" for c in range(12)]].sum(axis=1).to_numpy()
    np.testing.assert_array_equal(counts["count"].to_numpy(), totals)


# --------------------------------------------------------------------------- by hand


def test_hand_computed_square() -> None:
    table = zonal_stats(tiny_raster(GRID16), boxes(shapely.box(0, 0, 2, 2)))
    row = table.iloc[0]
    # lower-left 2 x 2 pixels: 8 9 12 13
    assert row["count"] == 4
    assert (row["mean"], row["min"], row["max"]) == (10.5, 8.0, 13.0)
    assert row["std"] == pytest.approx(np.sqrt((2.5**2 + 1.5**2 + 1.5**2 + 2.5**2) / 4))
    assert (row["p25"], row["p50"], row["p75"]) == (8.75, 10.5, 12.25)
    assert table["band"].tolist() == ["value"]


def test_boundary_centres_go_to_exactly_one_of_two_neighbours() -> None:
    data = tiny_raster(GRID16)
    # the diagonal y = x passes through the centres of the anti-diagonal pixels
    upper = shapely.Polygon([(0, 0), (4, 4), (0, 4)])
    lower = shapely.Polygon([(0, 0), (4, 0), (4, 4)])
    # x = 1.5 and y = 2.5 are lines of pixel centres
    west, east = shapely.box(0, 0, 1.5, 4), shapely.box(1.5, 0, 4, 4)
    north, south = shapely.box(0, 2.5, 4, 4), shapely.box(0, 0, 4, 2.5)
    labels = build_labels(boxes(upper, lower, west, east, north, south), data)
    masks = [labels.pixel_mask(i) for i in range(6)]
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert not (masks[a] & masks[b]).any()
        assert (masks[a] | masks[b]).all()
    # the pixel goes to the polygon west of a north-south edge, north of an east-west edge
    assert masks[0].sum() == 10 and masks[1].sum() == 6  # anti-diagonal belongs to "upper"
    assert masks[2][:, :2].all() and masks[2].sum() == 8
    assert masks[4][:2].all() and masks[4].sum() == 8


def test_holes_multipolygons_tiny_and_outside_parcels() -> None:
    ring = shapely.box(0, 0, 4, 4).difference(shapely.box(1, 1, 3, 3))
    multi = shapely.MultiPolygon([shapely.box(0, 3, 1, 4), shapely.box(3, 0, 4, 1)])
    parcels = boxes(ring, multi, shapely.box(0.1, 0.1, 0.4, 0.4), shapely.box(10, 10, 12, 12),
                    shapely.Polygon())
    table = zonal_stats(tiny_raster(GRID16), parcels, stats=("count", "sum", "min", "max"))
    assert table["count"].tolist() == [12, 2, 0, 0, 0]
    assert table["sum"].iloc[0] == GRID16.sum() - (5 + 6 + 9 + 10)
    assert (table["min"].iloc[1], table["max"].iloc[1]) == (0.0, 15.0)
    assert table.iloc[2:][["sum", "min", "max"]].isna().all().all()
    assert table["count"].dtype == np.int64


def test_overlap_and_raster_edge_by_hand() -> None:
    parcels = boxes(shapely.box(0, 0, 3, 3), shapely.box(1, 1, 4, 4), shapely.box(2, 2, 9, 9))
    table = zonal_stats(tiny_raster(GRID16), parcels, stats=("count", "sum"))
    assert table["count"].tolist() == [9, 9, 4]
    assert table["sum"].tolist() == [4 + 5 + 6 + 8 + 9 + 10 + 12 + 13 + 14,
                                     1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11, 2 + 3 + 6 + 7]


def test_nodata_nan_and_mask_are_excluded() -> None:
    values = GRID16.copy()
    values[0, 0] = 0
    whole = boxes(shapely.box(0, 0, 4, 4))
    with_attr = zonal_stats(tiny_raster(values, nodata=0), whole, stats=("count", "min"))
    assert (with_attr["count"].iloc[0], with_attr["min"].iloc[0]) == (15, 1.0)
    fill = zonal_stats(tiny_raster(values, _FillValue=0), whole, stats=("count",))
    assert fill["count"].iloc[0] == 15
    override = zonal_stats(tiny_raster(values, nodata=0), whole, nodata=15, stats=("count",
                                                                                      "min"))
    assert (override["count"].iloc[0], override["min"].iloc[0]) == (15, 0.0)

    floats = GRID16.astype(np.float32)
    floats[1, :] = np.nan
    nan_table = zonal_stats(tiny_raster(floats), whole, stats=("count", "mean", "p50"))
    kept = np.delete(GRID16, 1, axis=0).astype(np.float64)
    assert nan_table["count"].iloc[0] == 12
    assert nan_table["mean"].iloc[0] == pytest.approx(kept.mean())
    assert nan_table["p50"].iloc[0] == np.percentile(kept, 50)

    stack = tiny_raster(np.stack([GRID16, GRID16 * 2]).reshape(1, 2, 4, 4))
    stack = stack.rename({"d0": "time", "d1": "band"}).assign_coords(band=["A", "B"])
    cloud = xr.DataArray(np.zeros((1, 4, 4), dtype=bool), dims=("time", "y", "x"))
    cloud[0, :, 3] = True
    masked = zonal_stats(stack, whole, mask=cloud, stats=("count", "max"))
    assert masked["count"].tolist() == [12, 12]
    assert masked["max"].tolist() == [14.0, 28.0]
    everything = zonal_stats(stack, whole, mask=np.ones((4, 4), dtype=bool))
    assert everything["count"].tolist() == [0, 0]
    assert everything[STATS[1:]].isna().all().all()


def test_inward_buffer_and_vanishing_parcels() -> None:
    data = tiny_raster(GRID16)
    parcels = boxes(shapely.box(0, 0, 4, 4), shapely.box(0, 0, 4, 4), shapely.box(1, 1, 2, 2))
    shrunk = zonal_stats(data, parcels, buffer=-1.0, stats=("count", "sum"))
    assert shrunk["count"].tolist() == [4, 4, 0]
    assert shrunk["sum"].iloc[0] == 5 + 6 + 9 + 10
    labels = build_labels(parcels, data, buffer=-2.5)
    assert labels.pixel_counts.tolist() == [0, 0, 0]
    table = zonal_stats(data, labels)
    assert table["count"].tolist() == [0, 0, 0]
    with pytest.raises(InputError, match="metres"):
        build_labels(parcels.to_crs("EPSG:4326"),
                     tiny_raster(GRID16, crs="EPSG:4326"), buffer=-1.0)


@pytest.mark.realdata
def test_parcels_in_another_crs_are_reprojected() -> None:
    data = open_band(KEMPEN / "2023-04-05" / "B04.tif")
    parcels = real_parcels(*data.rio.bounds()[::3])
    native = zonal_stats(data, parcels)
    geographic = zonal_stats(data, parcels.to_crs("EPSG:4326"))
    lambert = zonal_stats(data, parcels.to_crs("EPSG:31370"))
    pd.testing.assert_frame_equal(geographic, native)
    pd.testing.assert_frame_equal(lambert, native)


@pytest.mark.parametrize("ids", [
    np.array([7, 3, 11], dtype=np.int32),
    np.array(["BE-1", "BE-22", "BE-3"], dtype=object),
    pd.array(["x", "y", "z"], dtype="string"),
    pd.array([10, 20, 30], dtype="Int64"),
])
def test_id_dtype_is_kept(ids: object) -> None:
    parcels = gpd.GeoDataFrame({"parcel": ids},
                               geometry=[shapely.box(0, 0, 2, 2), shapely.box(2, 2, 4, 4),
                                         shapely.box(1, 1, 3, 3)], crs="EPSG:32631")
    table = zonal_stats(tiny_raster(GRID16), parcels, id_column="parcel")
    assert table["parcel"].dtype == parcels["parcel"].dtype
    assert table["parcel"].tolist() == parcels["parcel"].tolist()
    hist = scl_histogram(tiny_raster(GRID16.astype(np.uint8) % 12), parcels, id_column="parcel",
                         layout="wide")
    assert hist["parcel"].dtype == parcels["parcel"].dtype


@pytest.mark.realdata
def test_labels_are_built_once_and_reused() -> None:
    b04 = open_band(KEMPEN / "2023-04-05" / "B04.tif")
    b08 = open_band(KEMPEN / "2023-04-05" / "B08.tif")
    parcels = real_parcels(*b04.rio.bounds()[::3])
    labels = build_labels(parcels, b04)
    assert isinstance(labels, ParcelLabels) and len(labels) == len(parcels)
    assert labels.id_column == "pid"
    pd.testing.assert_frame_equal(zonal_stats(b08, labels), zonal_stats(b08, parcels))
    copy = pickle.loads(pickle.dumps(labels))
    assert copy.token == labels.token
    np.testing.assert_array_equal(copy.pixel_counts, labels.pixel_counts)
    assert len(pickle.dumps(labels)) < 20_000
    antwerp = open_band(ANTWERP / "2023-10-02" / "B08.tif")
    with pytest.raises(InputError, match="build labels for this grid"):
        zonal_stats(antwerp, labels)


@pytest.mark.realdata
def test_labels_of_a_subset_are_those_of_the_subset() -> None:
    data = open_band(KEMPEN / "2023-04-05" / "B04.tif")
    parcels = real_parcels(*data.rio.bounds()[::3])
    labels = build_labels(parcels, data)
    picked = np.array([5, 0, 2])
    subset = labels.select(picked)
    direct = build_labels(parcels.iloc[picked], data)
    assert subset.ids.tolist() == direct.ids.tolist() == parcels["pid"].iloc[picked].tolist()
    for name in ("offsets", "rows", "starts", "stops"):
        np.testing.assert_array_equal(getattr(subset, name), getattr(direct, name))


def test_scl_codes_stored_as_floats_with_nan() -> None:
    codes = (GRID16 % 12).astype(np.uint8)
    floats = codes.astype(np.float32)
    floats[0, :2] = np.nan
    parcels = boxes(shapely.box(0, 0, 4, 4))
    as_int = scl_histogram(tiny_raster(codes), parcels, layout="wide")
    as_float = scl_histogram(tiny_raster(floats), parcels, layout="wide")
    lost = np.bincount(codes[0, :2], minlength=12)
    expected = as_int[[f"scl_{c}" for c in range(12)]].to_numpy()[0] - lost
    np.testing.assert_array_equal(as_float[[f"scl_{c}" for c in range(12)]].to_numpy()[0],
                                  expected)
    only = scl_histogram(tiny_raster(codes), parcels, classes=(3, 8, 9, 10), layout="wide")
    assert list(only.columns) == ["pid", "scl_3", "scl_8", "scl_9", "scl_10"]


def test_odc_geo_metadata_is_understood() -> None:
    pytest.importorskip("odc.geo", reason="odc-geo comes with the archive extra")
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_zeros

    geobox = GeoBox((4, 4), Affine(1, 0, 0, 0, -1, 4), "EPSG:32631")
    data = xr_zeros(geobox, dtype="uint16")
    data.values[:] = GRID16
    assert grid_of(data).matches(grid_of(tiny_raster(GRID16)))
    assert grid_of(geobox).matches(grid_of(data))
    parcels = boxes(shapely.box(0, 0, 2, 2), shapely.box(1, 1, 4, 4))
    pd.testing.assert_frame_equal(zonal_stats(data, parcels).drop(columns="band"),
                                  zonal_stats(tiny_raster(GRID16), parcels).drop(columns="band"))


def test_percentile_names_and_order() -> None:
    spec = parse_stats(["p75", "count", "median", "p2.5", "max"])
    assert spec.names == ("p75", "count", "median", "p2.5", "max")
    assert spec.quantiles == (0.025, 0.5, 0.75)
    values = np.random.default_rng(3).integers(0, 1000, (6, 7)).astype(np.uint16)
    table = zonal_stats(tiny_raster(values), boxes(shapely.box(0, 0, 7, 6)),
                        stats=["p75", "count", "median", "p2.5", "p100", "p0"])
    row = table.iloc[0]
    for name, q in (("p75", 75), ("median", 50), ("p2.5", 2.5), ("p100", 100), ("p0", 0)):
        assert row[name] == np.percentile(values, q)
    assert list(table.columns)[2:] == ["p75", "count", "median", "p2.5", "p100", "p0"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_statistics_are_numpys_for_every_dtype_and_spread(dtype: str) -> None:
    """Parcels of 1..300 pixels, narrow and wide value ranges (the kernel orders pixels by
    insertion, by a histogram walk or by radix sort depending on size and spread)."""
    rng = np.random.default_rng(11)
    sizes = np.concatenate([[1, 2, 23, 24, 25], rng.integers(26, 300, 75)])  # > 64: threads
    info = np.iinfo(dtype) if dtype[0] in "ui" else None
    values = np.zeros((sizes.size, 300), dtype=dtype)
    for row, n in enumerate(sizes):
        if info is None:
            values[row, :n] = rng.normal(0, 10 ** (row % 5), n)
        else:
            spread = [20, 3000, 60000][row % 3]
            low = max(int(info.min), -spread // 2) if info.min < 0 else 0
            values[row, :n] = rng.integers(low, min(low + spread, int(info.max)), n)
    parcels = gpd.GeoDataFrame(
        {"pid": np.arange(sizes.size)},
        geometry=[shapely.box(0, sizes.size - row - 1, n, sizes.size - row)
                  for row, n in enumerate(sizes)], crs="EPSG:32631")
    table = zonal_stats(tiny_raster(values), parcels,
                        stats=["count", "mean", "std", "min", "max", "p0", "p10", "p25", "p50",
                               "p75", "p90", "p100"])
    for row, n in enumerate(sizes):
        pixels = values[row, :n].astype(np.float64)
        got = table.iloc[row]
        assert got["count"] == n
        expected = np.percentile(pixels, [0, 10, 25, 50, 75, 90, 100])
        np.testing.assert_array_equal(
            got[["p0", "p10", "p25", "p50", "p75", "p90", "p100"]].to_numpy(dtype=float),
            expected)
        assert (got["min"], got["max"]) == (pixels.min(), pixels.max())
        np.testing.assert_allclose(got[["mean", "std"]].to_numpy(dtype=float),
                                   [pixels.mean(), pixels.std()], rtol=1e-9)


def test_threads_share_parcels_without_changing_results() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(1, 5000, (1, 120, 150)).astype(np.uint16)
    corners = rng.uniform(0, 140, (600, 2))
    parcels = gpd.GeoDataFrame(
        {"pid": np.arange(600)},
        geometry=[shapely.box(x, y, x + rng.uniform(1, 12), y + rng.uniform(1, 12))
                  for x, y in corners], crs="EPSG:32631")
    data = tiny_raster(values)
    with dask.config.set({"cbm.reduce.threads": 1}):
        serial = zonal_stats(data, parcels)
        serial_hist = scl_histogram((data % 12).astype(np.uint8), parcels, layout="wide")
    with dask.config.set({"cbm.reduce.threads": 3}):
        threaded = zonal_stats(data, parcels)
        threaded_hist = scl_histogram((data % 12).astype(np.uint8), parcels, layout="wide")
        labels = build_labels(parcels, data)
    pd.testing.assert_frame_equal(threaded, serial)
    pd.testing.assert_frame_equal(threaded_hist, serial_hist)
    with dask.config.set({"cbm.reduce.threads": 1}):
        again = build_labels(parcels, data)
    for name in ("offsets", "rows", "starts", "stops"):
        np.testing.assert_array_equal(getattr(labels, name), getattr(again, name))
    assert serial["count"].sum() > 10_000


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stats": ["mode"]}, "unknown statistic"),
    ({"stats": ["p101"]}, "unknown statistic"),
    ({"id_column": "parcel_id"}, "no column 'parcel_id'"),
    ({"mask": np.zeros((3, 3), dtype=bool)}, "does not fit"),
    ({"mask": np.zeros((4, 4), dtype=np.uint8)}, "must be boolean"),
])
def test_errors_say_how_to_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        zonal_stats(tiny_raster(GRID16), boxes(shapely.box(0, 0, 2, 2)), **kwargs)  # type: ignore[arg-type]


def test_bad_parcels_and_rasters_are_refused() -> None:
    data = tiny_raster(GRID16)
    twice = gpd.GeoDataFrame({"pid": [1, 1]}, geometry=[shapely.box(0, 0, 1, 1)] * 2,
                             crs="EPSG:32631")
    with pytest.raises(InputError, match="not unique"):
        zonal_stats(data, twice)
    lines = gpd.GeoDataFrame({"pid": [1]}, geometry=[shapely.LineString([(0, 0), (2, 2)])],
                             crs="EPSG:32631")
    with pytest.raises(InputError, match="not polygons"):
        zonal_stats(data, lines)
    with pytest.raises(InputError, match="no CRS"):
        zonal_stats(data, boxes(shapely.box(0, 0, 1, 1)).set_crs(None, allow_override=True))
    bare = xr.DataArray(GRID16, dims=("y", "x"),
                        coords={"y": 3.5 - np.arange(4), "x": 0.5 + np.arange(4)})
    with pytest.raises(InputError, match="no CRS"):
        zonal_stats(bare, boxes(shapely.box(0, 0, 1, 1)))


def test_unreadable_crs_falls_through_but_a_broken_object_is_not_hidden() -> None:
    # a spatial_ref rioxarray cannot parse: the CRS is taken from the next place it is kept
    data = tiny_raster(GRID16)
    garbled = data.drop_vars("spatial_ref").assign_coords(
        spatial_ref=xr.DataArray(0, attrs={"crs_wkt": "not a CRS"}))
    garbled.attrs["crs"] = "EPSG:32631"
    assert grid_of(garbled).matches(grid_of(data))
    assert spatial_dims(garbled) == ("y", "x")

    class Malformed:  # looks like an xarray object, but its attrs are not a mapping
        dims = ("y", "x")
        coords: dict[str, object] = {}
        attrs = None
        encoding: dict[str, object] = {}

    with pytest.raises(TypeError):  # was swallowed, and ("y", "x") returned
        spatial_dims(Malformed())  # type: ignore[arg-type]
