"""Properties of the reduction engine: the pixel rule against GDAL, and results that do not
depend on Dask chunking, parcel order, or how a raster is cut into tiles."""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio.features
import rioxarray  # noqa: F401
import shapely
import shapely.affinity
import xarray as xr
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbm_dask.reduce import build_labels, scl_histogram, zonal_stats
from cbm_dask.reduce._blocks import split_runs

EXACT = ["count", "min", "max", "p25", "p50", "p75", "p10"]
CLOSE = ["mean", "std", "sum"]
STATS = [*EXACT, *CLOSE]

pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")

PROFILE = settings(max_examples=25, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


def raster(values: np.ndarray, *, left: float = 0.0, nodata: int | None = None) -> xr.DataArray:
    """``(time, y, x)`` values on 1 m pixels, upper-left corner at (left, height)."""
    n_time, height, width = values.shape
    array = xr.DataArray(
        values, dims=("time", "y", "x"),
        coords={"time": pd.date_range("2024-04-01", periods=n_time, freq="5D"),
                "y": height - 0.5 - np.arange(height), "x": left + 0.5 + np.arange(width)},
        attrs={} if nodata is None else {"nodata": nodata},
    )
    return array.rio.write_crs("EPSG:32631").rio.write_transform(
        Affine(1, 0, left, 0, -1, height))


def random_polygon(rng: np.random.Generator, width: int, height: int) -> shapely.Geometry:
    """Convex hull of random points, sometimes holed or in two parts; may leave the raster."""
    centre = rng.uniform([-2, -2], [width + 2, height + 2])
    size = rng.uniform(0.3, max(width, height) / 2)
    points = centre + rng.uniform(-size, size, (int(rng.integers(3, 9)), 2))
    shape = shapely.convex_hull(shapely.MultiPoint(points))
    if shape.geom_type != "Polygon":
        return shapely.box(*centre, *(centre + 1.3))
    kind = rng.random()
    if kind < 0.15:
        hole = shapely.affinity.scale(shape, 0.4, 0.4)
        shape = shape.difference(hole)
    elif kind < 0.3:
        other = shapely.affinity.translate(shape, rng.uniform(width / 3, width), 0.0)
        shape = shapely.MultiPolygon([shape, other]) if not shape.intersects(other) else shape
    return shape


@st.composite
def scenes(draw: st.DrawFn) -> tuple[xr.DataArray, gpd.GeoDataFrame, np.random.Generator]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    height = draw(st.integers(4, 36))
    width = draw(st.integers(4, 36))
    n_time = draw(st.integers(1, 3))
    floating = draw(st.booleans())
    if floating:
        values = rng.normal(1000, 300, (n_time, height, width)).astype(np.float32)
        values[rng.random(values.shape) < 0.1] = np.nan
        data = raster(values)
    else:
        values = rng.integers(0, 50, (n_time, height, width)).astype(np.uint16)
        data = raster(values, nodata=0)
    n = draw(st.integers(1, 10))
    geoms = [random_polygon(rng, width, height) for _ in range(n)]
    parcels = gpd.GeoDataFrame({"pid": rng.permutation(np.arange(100, 100 + n))},
                               geometry=geoms, crs="EPSG:32631")
    return data, parcels, rng


def chunk_sizes(rng: np.random.Generator, total: int) -> tuple[int, ...]:
    cuts = np.sort(rng.choice(np.arange(1, total), size=int(rng.integers(0, min(4, total - 1) + 1)),
                              replace=False)) if total > 1 else np.zeros(0, dtype=int)
    edges = np.concatenate([[0], cuts, [total]])
    return tuple(int(n) for n in np.diff(edges))


def assert_same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Exact for counts, extremes and percentiles; float sums may differ in the last bits."""
    pd.testing.assert_frame_equal(left.drop(columns=CLOSE), right.drop(columns=CLOSE))
    np.testing.assert_allclose(left[CLOSE].to_numpy(), right[CLOSE].to_numpy(), rtol=1e-12,
                               equal_nan=True)


@PROFILE
@given(scenes())
def test_dask_chunking_does_not_change_results(scene) -> None:  # type: ignore[no-untyped-def]
    data, parcels, rng = scene
    eager = zonal_stats(data, parcels, stats=STATS)
    chunks = {"time": int(rng.integers(1, data.sizes["time"] + 1)),
              "y": chunk_sizes(rng, data.sizes["y"]), "x": chunk_sizes(rng, data.sizes["x"])}
    with dask.config.set(scheduler="sync"):
        lazy = zonal_stats(data.chunk(chunks), parcels, stats=STATS)
    assert_same(lazy, eager)
    labels = build_labels(parcels, data)
    # the statistics are those of numpy on the parcel's pixels
    for p in range(len(parcels)):
        inside = labels.pixel_mask(p)
        values = data.values[0][inside]
        valid = values[~np.isnan(values)] if values.dtype.kind == "f" else values[values != 0]
        valid = valid.astype(np.float64)  # statistics are numpy's on float64 pixels
        row = eager.iloc[p]
        assert row["count"] == valid.size
        if valid.size:
            assert row["p10"] == np.percentile(valid, 10)
            assert row["max"] == valid.max()


@PROFILE
@given(scenes())
def test_masks_and_histograms_do_not_depend_on_chunks(scene) -> None:  # type: ignore[no-untyped-def]
    data, parcels, rng = scene
    mask = xr.DataArray(rng.random((data.sizes["y"], data.sizes["x"])) < 0.3, dims=("y", "x"))
    eager = zonal_stats(data, parcels, stats=STATS, mask=mask)
    chunks = {"y": chunk_sizes(rng, data.sizes["y"]), "x": chunk_sizes(rng, data.sizes["x"])}
    with dask.config.set(scheduler="sync"):
        lazy = zonal_stats(data.chunk(chunks), parcels, stats=STATS, mask=mask.chunk(chunks))
        classes = (data.fillna(0) % 12).astype(np.uint8)
        hist_lazy = scl_histogram(classes.chunk(chunks), parcels, layout="wide")
    assert_same(lazy, eager)
    pd.testing.assert_frame_equal(hist_lazy, scl_histogram(classes, parcels, layout="wide"))


@PROFILE
@given(scenes())
def test_parcel_order_does_not_matter(scene) -> None:  # type: ignore[no-untyped-def]
    data, parcels, rng = scene
    shuffled = parcels.iloc[rng.permutation(len(parcels))]
    first = zonal_stats(data, parcels, stats=STATS).sort_values(["time", "pid"])
    second = zonal_stats(data, shuffled, stats=STATS).sort_values(["time", "pid"])
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))


@PROFILE
@given(st.integers(0, 2**32 - 1), st.integers(3, 30), st.integers(3, 30))
def test_pixels_are_those_gdal_burns(seed: int, height: int, width: int) -> None:
    """Off the boundary, the pixel-centre rule is rasterio's ``all_touched=False``."""
    rng = np.random.default_rng(seed)
    geoms = [random_polygon(rng, width, height) for _ in range(6)]
    parcels = gpd.GeoDataFrame({"pid": range(6)}, geometry=geoms, crs="EPSG:32631")
    transform = Affine(1, 0, 0, 0, -1, height)
    labels = build_labels(parcels, (transform, (height, width), "EPSG:32631"))
    for p, geom in enumerate(geoms):
        gdal = rasterio.features.geometry_mask([geom], out_shape=(height, width),
                                               transform=transform, invert=True)
        np.testing.assert_array_equal(labels.pixel_mask(p), gdal)


@PROFILE
@given(st.lists(st.integers(0, 24), min_size=4, max_size=4), st.integers(0, 24),
       st.integers(0, 24))
def test_parcels_sharing_edges_share_no_pixel(xs: list[int], cut_x: int, cut_y: int) -> None:
    """Four quadrilaterals tiling a rectangle, vertices on a 0.5 m lattice (so many edges run
    through pixel centres): every pixel centre of the rectangle is counted exactly once."""
    h = 0.5
    x0, x1 = 0.0, 12.0
    y0, y1 = 0.0, 12.0
    top, bottom = xs[0] * h, xs[1] * h
    left, right = xs[2] * h, xs[3] * h
    cx, cy = cut_x * h, cut_y * h
    quads = [
        shapely.Polygon([(x0, y0), (bottom, y0), (cx, cy), (x0, left)]),
        shapely.Polygon([(bottom, y0), (x1, y0), (x1, right), (cx, cy)]),
        shapely.Polygon([(cx, cy), (x1, right), (x1, y1), (top, y1)]),
        shapely.Polygon([(x0, left), (cx, cy), (top, y1), (x0, y1)]),
    ]
    quads = [q if q.is_valid and q.area > 0 else shapely.Polygon() for q in quads]
    whole = shapely.box(x0, y0, x1, y1)
    if not np.isclose(sum(q.area for q in quads), whole.area):
        return  # the cut point lies outside the rectangle: not a tiling
    parcels = gpd.GeoDataFrame({"pid": range(5)}, geometry=[*quads, whole], crs="EPSG:32631")
    labels = build_labels(parcels, (Affine(1, 0, -3, 0, -1, 15), (18, 18), "EPSG:32631"))
    masks = [labels.pixel_mask(p) for p in range(4)]
    total = np.sum(masks, axis=0)
    assert total.max() <= 1
    np.testing.assert_array_equal(total.astype(bool), labels.pixel_mask(4))


@PROFILE
@given(scenes(), st.integers(1, 35))
def test_parcels_crossing_tiles_get_each_pixel_from_one_tile(scene, cut: int) -> None:  # type: ignore[no-untyped-def]
    data, parcels, _ = scene
    cut = min(cut, data.sizes["x"] - 1)
    west = data.isel(x=slice(0, cut))
    east = data.isel(x=slice(cut, None))
    whole = zonal_stats(data, parcels, stats=["count", "min", "max", "sum"])
    parts = [zonal_stats(tile, parcels, stats=["count", "min", "max", "sum"])
             for tile in (west, east)]
    assert (parts[0]["count"] + parts[1]["count"]).tolist() == whole["count"].tolist()
    both = pd.concat(parts)
    mins = both.groupby(["pid", "time"], sort=False)["min"].min()
    maxs = both.groupby(["pid", "time"], sort=False)["max"].max()
    sums = both.groupby(["pid", "time"], sort=False)["sum"].sum(min_count=1)
    indexed = whole.set_index(["pid", "time"])
    np.testing.assert_array_equal(mins.loc[indexed.index].to_numpy(), indexed["min"].to_numpy())
    np.testing.assert_array_equal(maxs.loc[indexed.index].to_numpy(), indexed["max"].to_numpy())
    np.testing.assert_allclose(sums.loc[indexed.index].to_numpy(), indexed["sum"].to_numpy(),
                               rtol=1e-9)


def test_a_parcel_spanning_every_chunk_is_gathered_exactly() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(1, 10_000, (2, 40, 50)).astype(np.uint16)
    data = raster(values, nodata=0)
    parcels = gpd.GeoDataFrame(
        {"pid": [1, 2, 3]},
        geometry=[shapely.Polygon([(0.3, 0.2), (49.6, 3.1), (44.2, 39.7), (2.2, 35.4)]),
                  shapely.box(1.2, 1.2, 4.8, 4.8), shapely.box(20.1, 20.1, 29.8, 29.8)],
        crs="EPSG:32631",
    )
    labels = build_labels(parcels, data)
    parts = split_runs(labels, (7, 7, 7, 7, 7, 5), (9, 9, 9, 9, 9, 5))
    crossing = {int(p) for part in parts.values() for p in part.crossing.positions}
    inner = {int(p) for part in parts.values() for p in part.inner.positions}
    assert crossing == {0, 2} and inner == {1}
    covered = np.logical_or.reduce([labels.pixel_mask(p) for p in range(3)])
    touched = {(i, j) for i in range(6) for j in range(6)
               if covered[7 * i:7 * i + 7, 9 * j:9 * j + 9].any()}
    assert set(parts) == touched and len(touched) > 30
    with dask.config.set(scheduler="sync"):
        lazy = zonal_stats(data.chunk({"time": 1, "y": 7, "x": 9}), labels, stats=STATS)
    eager = zonal_stats(data, labels, stats=STATS)
    assert_same(lazy, eager)
    pixels = values[0][labels.pixel_mask(0)]
    assert lazy["count"].iloc[0] == pixels.size > 1500
    assert lazy["p25"].iloc[0] == np.percentile(pixels, 25)
