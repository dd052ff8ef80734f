"""The synthetic benchmark scene of the zonal-statistics peer comparison, built once and cached.

Definition (docs/benchmarks.md, "Zonal statistics"): a Sentinel-2-like tile grid at
10 m in EPSG:32634 with origin (399960, 5900040); uint16 bands (nodata 0, values
1..10000) written as COGs with 1024-pixel tiles, DEFLATE + predictor 2 and no
overviews; N parcels grown farm block by farm block (1 km blocks in random order,
a rotated grid of jittered quadrilaterals sharing vertices, a quarter cut in two,
clipped to the block minus a 10 m road, shrunk by a 2-6 m margin, 0.5-5 ha kept,
a tenth dropped, ~3.6 % with a hole).  The parcels tessellate, so they do not
overlap.  Everything derives from one seed; the cache directory holds
``parcels.parquet``, one ``<band>.tif`` per band and ``scene.json``.

``python -m benchmarks.scene [--size 5490] [--parcels 30000] [--bands 10]`` builds it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from affine import Affine

ORIGIN = (399960.0, 5900040.0)
CRS = "EPSG:32634"
PIXEL = 10.0
BLOCK = 1000.0
ROAD = 10.0
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
CACHE = Path(os.environ.get("CBM_BENCH_SCENE", "/tmp/cbm-bench-scene"))

# Reflectance x 10000 of six crops (rows) in the ten bands (columns): cereal, maize,
# bare soil, grassland, sugar beet, rapeseed.
CROPS = np.array([
    [420, 720, 480, 1150, 2500, 2950, 3200, 3350, 2100, 1150],
    [380, 650, 420, 1050, 2900, 3500, 3900, 4000, 2300, 1200],
    [1100, 1450, 1750, 1950, 2100, 2200, 2300, 2400, 3100, 2600],
    [350, 600, 380, 1000, 2700, 3300, 3600, 3700, 1900, 950],
    [300, 620, 350, 980, 3100, 3900, 4300, 4450, 2000, 900],
    [520, 900, 600, 1300, 2600, 3000, 3300, 3400, 2200, 1250],
], dtype=np.float64)
# Background: woods, towns, grass.
COVERS = np.array([
    [250, 450, 280, 700, 1800, 2300, 2600, 2700, 1300, 600],
    [900, 1050, 1150, 1300, 1400, 1450, 1500, 1550, 1800, 1600],
    [400, 700, 450, 1100, 2400, 2800, 3000, 3100, 2000, 1050],
], dtype=np.float64)


@dataclass(frozen=True)
class SceneSpec:
    """What defines a scene (its cache key)."""

    size: int = 5490
    parcels: int = 30_000
    bands: int = 10
    seed: int = 20261125

    @property
    def name(self) -> str:
        """Cache folder name."""
        return f"s{self.size}-n{self.parcels}-b{self.bands}-seed{self.seed}"

    @property
    def transform(self) -> Affine:
        """The grid's affine transform."""
        return Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])


@dataclass(frozen=True)
class Scene:
    """A built scene on disk."""

    spec: SceneSpec
    folder: Path

    @property
    def parcels_path(self) -> Path:
        """GeoParquet of the parcels (``pid``, ``crop``, geometry)."""
        return self.folder / "parcels.parquet"

    def band_path(self, band: str) -> Path:
        """COG of one band."""
        return self.folder / f"{band}.tif"

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names, in file order."""
        return BANDS[: self.spec.bands]

    def parcels(self) -> gpd.GeoDataFrame:
        """Read the parcels."""
        return gpd.read_parquet(self.parcels_path)


def _block_fields(rng: np.random.Generator, x0: float, y0: float) -> list[shapely.Geometry]:
    """Fields of one farm block whose lower-left corner is (x0, y0)."""
    angle = rng.uniform(0, math.pi)
    area = math.exp(rng.uniform(math.log(1.2e4), math.log(6e4)))
    aspect = rng.uniform(1.0, 3.5)
    width = math.sqrt(area * aspect)
    height = math.sqrt(area / aspect)
    reach = BLOCK * math.sqrt(2) / 2 + max(width, height)
    nu = math.ceil(2 * reach / width) + 1
    nv = math.ceil(2 * reach / height) + 1
    u = (np.arange(nu) * width - reach)[:, None] + rng.uniform(-0.15, 0.15, (nu, nv)) * width
    v = (np.arange(nv) * height - reach)[None, :] + rng.uniform(-0.15, 0.15, (nu, nv)) * height
    cx, cy = x0 + BLOCK / 2, y0 + BLOCK / 2
    xs = cx + u * math.cos(angle) - v * math.sin(angle)
    ys = cy + u * math.sin(angle) + v * math.cos(angle)
    corners = np.stack([
        np.stack([xs[:-1, :-1], ys[:-1, :-1]], -1),
        np.stack([xs[1:, :-1], ys[1:, :-1]], -1),
        np.stack([xs[1:, 1:], ys[1:, 1:]], -1),
        np.stack([xs[:-1, 1:], ys[:-1, 1:]], -1),
    ], axis=2).reshape(-1, 4, 2)
    inner = shapely.box(x0 + ROAD / 2, y0 + ROAD / 2, x0 + BLOCK - ROAD / 2, y0 + BLOCK - ROAD / 2)
    centres = corners.mean(axis=1)
    near = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy) < BLOCK * 0.75 + max(width, height)
    corners = corners[near]
    # a quarter of the fields cut in two along a jittered line between opposite edges
    quads: list[np.ndarray] = []
    for quad in corners:
        if rng.random() < 0.25:
            shift = int(rng.integers(0, 2))
            q = np.roll(quad, shift, axis=0)
            t1, t2 = rng.uniform(0.35, 0.65, 2)
            a = q[0] + t1 * (q[1] - q[0])
            b = q[3] + t2 * (q[2] - q[3])
            quads.append(np.array([q[0], a, b, q[3]]))
            quads.append(np.array([a, q[1], q[2], b]))
        else:
            quads.append(quad)
    rings = np.concatenate([np.array(quads), np.array(quads)[:, :1]], axis=1)
    fields = shapely.intersection(shapely.polygons(rings), inner)
    margins = rng.uniform(2.0, 6.0, len(fields))
    fields = shapely.buffer(fields, -margins, join_style="mitre")
    fields = np.asarray(fields)[shapely.get_type_id(fields) == 3]
    areas = shapely.area(fields)
    fields = fields[(areas >= 5_000) & (areas <= 50_000)]
    fields = fields[rng.random(len(fields)) >= 0.10]
    out: list[shapely.Geometry] = []
    for field in fields:
        if rng.random() < 0.036:
            centre = shapely.get_coordinates(shapely.point_on_surface(field))[0]
            hole = shapely.Point(centre).buffer(rng.uniform(8, 20), quad_segs=3)
            if shapely.contains_properly(field, hole):
                field = shapely.difference(field, hole)
        out.append(field)
    return out


def make_parcels(spec: SceneSpec) -> gpd.GeoDataFrame:
    """The scene's parcels, in block order (spatially clustered, like an LPIS export)."""
    rng = np.random.default_rng(spec.seed)
    blocks_per_side = int(spec.size * PIXEL // BLOCK)
    order = rng.permutation(blocks_per_side * blocks_per_side)
    left, top = ORIGIN
    fields: list[shapely.Geometry] = []
    for block in order:
        i, j = divmod(int(block), blocks_per_side)
        fields.extend(_block_fields(rng, left + j * BLOCK, top - (i + 1) * BLOCK))
        if len(fields) >= spec.parcels:
            break
    if len(fields) < spec.parcels:
        raise ValueError(f"only {len(fields)} parcels fit a {spec.size}-pixel scene")
    fields = fields[: spec.parcels]
    return gpd.GeoDataFrame(
        {"pid": np.arange(1, spec.parcels + 1, dtype=np.int64),
         "crop": rng.integers(0, len(CROPS), spec.parcels).astype(np.int16),
         "factor": rng.uniform(0.8, 1.2, spec.parcels),
         "slope_angle": rng.uniform(0, 2 * math.pi, spec.parcels)},
        geometry=fields, crs=CRS,
    )


def _background(rows: np.ndarray, cols: np.ndarray, rng_seed: int) -> np.ndarray:
    """Weights (3, h, w) of woods / towns / grass from smooth random waves."""
    rng = np.random.default_rng(rng_seed)
    fields = []
    for _ in range(3):
        acc = np.zeros((rows.size, cols.size), dtype=np.float32)
        for _ in range(4):
            k = rng.uniform(0.002, 0.02, 2) * rng.choice([-1, 1], 2)
            phase = rng.uniform(0, 2 * math.pi)
            acc += np.sin(k[0] * cols[None, :] + k[1] * rows[:, None] + phase).astype(np.float32)
        fields.append(acc)
    stack = np.exp(1.5 * np.stack(fields))
    return stack / stack.sum(axis=0)


def _write_cog(path: Path, band: np.ndarray, spec: SceneSpec) -> None:
    profile = {"driver": "GTiff", "dtype": "uint16", "count": 1, "width": spec.size,
               "height": spec.size, "crs": CRS, "transform": spec.transform, "nodata": 0,
               "tiled": True, "blockxsize": 512, "blockysize": 512}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        plain = Path(tmp) / "plain.tif"
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(band, 1)
        rasterio.shutil.copy(plain, path, driver="COG", BLOCKSIZE=1024, COMPRESS="DEFLATE",
                             PREDICTOR=2, OVERVIEWS="NONE", NUM_THREADS="ALL_CPUS")


def build(spec: SceneSpec, cache: Path = CACHE) -> Scene:
    """Build the scene into ``cache/<name>`` unless it is there already."""
    folder = cache / spec.name
    scene = Scene(spec, folder)
    marker = folder / "scene.json"
    if marker.exists() and json.loads(marker.read_text()) == asdict(spec):
        return scene
    folder.mkdir(parents=True, exist_ok=True)
    parcels = make_parcels(spec)
    parcels.to_parquet(scene.parcels_path)
    shape = (spec.size, spec.size)
    label = rasterio.features.rasterize(
        zip(parcels.geometry, np.arange(len(parcels), dtype=np.int32), strict=True),
        out_shape=shape, transform=spec.transform, fill=-1, dtype="int32",
    )
    centroids = shapely.get_coordinates(shapely.centroid(parcels.geometry.array))
    inv = ~spec.transform
    ccol = (centroids[:, 0] * inv.a + inv.c).astype(np.float32)
    crow = (centroids[:, 1] * inv.e + inv.f).astype(np.float32)
    extent = np.sqrt(parcels.area.to_numpy() / 100.0).astype(np.float32) / 2 + 1
    gx = np.cos(parcels["slope_angle"].to_numpy()).astype(np.float32)
    gy = np.sin(parcels["slope_angle"].to_numpy()).astype(np.float32)
    factor = parcels["factor"].to_numpy().astype(np.float32)
    crop = parcels["crop"].to_numpy()
    strip = 1024
    for b, name in enumerate(BANDS[: spec.bands]):
        rng = np.random.default_rng([spec.seed, b])
        out = np.empty(shape, dtype=np.uint16)
        for r0 in range(0, spec.size, strip):
            rows = np.arange(r0, min(r0 + strip, spec.size), dtype=np.float32)
            cols = np.arange(spec.size, dtype=np.float32)
            lab = label[r0 : r0 + rows.size]
            inside = lab >= 0
            weights = _background(rows, cols, spec.seed + 7)
            value = np.tensordot(COVERS[:, b].astype(np.float32), weights, axes=1)
            idx = lab[inside]
            rr, cc = np.nonzero(inside)
            along = ((cc + 0.5 - ccol[idx]) * gx[idx] + (rr + r0 + 0.5 - crow[idx]) * gy[idx])
            gradient = 1 + 0.15 * np.clip(along / extent[idx], -1, 1)
            value[inside] = CROPS[crop[idx], b].astype(np.float32) * factor[idx] * gradient
            noise = rng.standard_normal(value.shape, dtype=np.float32)
            value = value + noise * (0.04 * value + 30)
            out[r0 : r0 + rows.size] = np.clip(np.rint(value), 1, 10000).astype(np.uint16)
        _write_cog(scene.band_path(name), out, spec)
    marker.write_text(json.dumps(asdict(spec)))
    return scene


def main(argv: list[str] | None = None) -> Scene:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--parcels", type=int, default=30_000)
    parser.add_argument("--bands", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    scene = build(SceneSpec(args.size, args.parcels, args.bands), args.cache)
    parcels = scene.parcels()
    areas = parcels.area.to_numpy()
    print(f"{scene.folder}: {len(parcels)} parcels, median {np.median(areas) / 1e4:.2f} ha, "
          f"{np.mean(shapely.get_num_interior_rings(parcels.geometry.array) > 0):.1%} with holes")
    return scene


if __name__ == "__main__":
    main()
