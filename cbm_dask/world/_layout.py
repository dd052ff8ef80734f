"""Farmland layout: a jittered road lattice, blocks, fields, gaps and non-field land cover.

The road network is a rotated lattice whose nodes are jittered and whose row and column
spacings vary, so blocks are irregular quadrilaterals.  Most blocks are farmland and are cut
into fields by slightly converging strip cuts and occasional cross cuts; others are forest
or village.  Fields shrink away from roads (verges) and from each other (hedges, ditches),
farmyards bite into block corners, and a meandering stream with a riparian strip splits
the fields it crosses.  All geometry is built with vectorised shapely calls; the per-block
loop only computes corner coordinates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio import features

from cbm_dask.errors import InputError
from cbm_dask.world._grid import WorldGrid
from cbm_dask.world._noise import derive_rng

__all__ = [
    "BUILT",
    "FIELD0",
    "FOREST",
    "ROAD",
    "VERGE",
    "WATER",
    "Layout",
    "generate_layout",
    "rasterize_labels",
]

log = logging.getLogger(__name__)

#: Raster labels of the non-field land cover; field ``i`` has label ``FIELD0 + i``.
VERGE, ROAD, FOREST, BUILT, WATER = 0, 1, 2, 3, 4
FIELD0 = 5

_PARCELS_PER_BLOCK = 5.0
_FIELD_BLOCK_SHARE = 0.84
_ROAD_HALF_WIDTH = 5.0
_MIN_PART_M2 = 150.0

Geoms = NDArray[np.object_]


@dataclass(frozen=True)
class Layout:
    """Geometry of a world in the UTM CRS.

    Attributes
    ----------
    fields
        Every field polygon, declared or not (undeclared fields are still farmed).
    declared
        Which fields are declared parcels (all lie fully inside the window).
    block
        Index of the lattice block each field was cut from.
    forest, built, water, roads
        Polygons of the non-field land cover (built includes villages and farmyards).
    """

    fields: Geoms
    declared: NDArray[np.bool_]
    block: NDArray[np.int32]
    forest: Geoms
    built: Geoms
    water: Geoms
    roads: Geoms

    @property
    def n_fields(self) -> int:
        """Number of field polygons."""
        return len(self.fields)


def _bilinear(corners: NDArray[np.float64], u: NDArray[np.float64],
              v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map parameters (u, v) in [0, 1]² into the quadrilateral p00, p10, p11, p01."""
    p00, p10, p11, p01 = corners
    u = u[..., None]
    v = v[..., None]
    out: NDArray[np.float64] = ((1 - u) * (1 - v) * p00 + u * (1 - v) * p10
                                + u * v * p11 + (1 - u) * v * p01)
    return out


def _lattice(rng: np.random.Generator, grid: WorldGrid, spacing: float
             ) -> tuple[NDArray[np.float64], float]:
    """Jittered, rotated node lattice covering the window; returns nodes (ny, nx, 2)."""
    extent = grid.extent_m
    cover = extent * math.sqrt(2) + 2 * spacing
    n = math.ceil(cover / spacing) + 2
    steps_x = spacing * rng.uniform(0.75, 1.25, n)
    steps_y = spacing * rng.uniform(0.75, 1.25, n)
    xs = np.concatenate([[0.0], np.cumsum(steps_x)])
    ys = np.concatenate([[0.0], np.cumsum(steps_y)])
    xs -= xs[-1] / 2
    ys -= ys[-1] / 2
    gx, gy = np.meshgrid(xs, ys)
    jitter = rng.uniform(-0.18, 0.18, (2, *gx.shape)) * spacing
    gx = gx + jitter[0]
    gy = gy + jitter[1]
    angle = math.radians(rng.uniform(-25, 25))
    cx = grid.left + extent / 2
    cy = grid.top - extent / 2
    rx = cx + gx * math.cos(angle) - gy * math.sin(angle)
    ry = cy + gx * math.sin(angle) + gy * math.cos(angle)
    return np.stack([rx, ry], axis=-1), angle


def _split(rng: np.random.Generator, n: int, alpha: float) -> NDArray[np.float64]:
    """Cut positions 0 = c0 < ... < cn = 1 with Dirichlet(alpha) widths."""
    widths = rng.dirichlet(np.full(n, alpha)) if n > 1 else np.ones(1)
    return np.concatenate([[0.0], np.cumsum(widths)])


def _subdivide(rng: np.random.Generator, corners: NDArray[np.float64], k: int
               ) -> NDArray[np.float64]:
    """Cut one block into about ``k`` quadrilateral fields; returns (m, 4, 2) corners."""
    len_u = float(np.linalg.norm(corners[1] - corners[0]))
    len_v = float(np.linalg.norm(corners[3] - corners[0]))
    if len_v > len_u:  # cut across the long side: u runs along it
        corners = corners[[0, 3, 2, 1]]
        len_u, len_v = len_v, len_u
    nv = 1 if k <= 3 else int(rng.choice([1, 2, 2, 3])) if k >= 8 else int(rng.choice([1, 2]))
    nu = max(1, round(k / nv))
    cu0 = _split(rng, nu, 4.0)
    if nu > 1 and rng.random() < 0.05:  # a sliver strip along the block edge
        cu0[1] = rng.uniform(12.0, 25.0) / max(len_u, 1.0)
        cu0[2:-1] = cu0[1] + (cu0[2:-1] - cu0[1]) * (1 - cu0[1]) / (1 - cu0[1] + 1e-9)
        cu0 = np.maximum.accumulate(cu0)
    widths0 = np.diff(cu0)
    widths1 = widths0 * np.exp(rng.normal(0.0, 0.18, nu))
    cu1 = np.concatenate([[0.0], np.cumsum(widths1 / widths1.sum())])
    cv = _split(rng, nv, 3.0)
    a = np.arange(nu)
    b = np.arange(nv)
    grid_a, grid_b = np.meshgrid(a, b, indexing="ij")
    aa = grid_a.ravel()
    bb = grid_b.ravel()

    def u_at(col: NDArray[np.intp], v: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = cu0[col] * (1 - v) + cu1[col] * v
        return out

    v0 = cv[bb]
    v1 = cv[bb + 1]
    us = np.stack([u_at(aa, v0), u_at(aa + 1, v0), u_at(aa + 1, v1), u_at(aa, v1)], axis=1)
    vs = np.stack([v0, v0, v1, v1], axis=1)
    return _bilinear(corners, us, vs)


def _stream(rng: np.random.Generator, grid: WorldGrid) -> NDArray[np.float64]:
    """Draw a meandering polyline crossing the window (west to east, rotated randomly)."""
    extent = grid.extent_m
    n = 200
    t = np.linspace(-0.1, 1.1, n)
    wavelength = rng.uniform(0.15, 0.35)
    amplitude = rng.uniform(0.02, 0.06)
    phase = rng.uniform(0, 2 * math.pi)
    drift = np.cumsum(rng.normal(0, 0.004, n))
    y = 0.5 + rng.uniform(-0.25, 0.25) + amplitude * np.sin(2 * math.pi * t / wavelength + phase)
    y += drift - drift.mean()
    angle = rng.uniform(-math.pi / 3, math.pi / 3)
    x = (t - 0.5) * extent
    y = (y - 0.5) * extent
    cx = grid.left + extent / 2
    cy = grid.top - extent / 2
    xr = cx + x * math.cos(angle) - y * math.sin(angle)
    yr = cy + x * math.sin(angle) + y * math.cos(angle)
    return np.stack([xr, yr], axis=1)


def _build(rng: np.random.Generator, grid: WorldGrid, spacing: float
           ) -> tuple[Geoms, NDArray[np.int32], Geoms, Geoms, Geoms, Geoms]:
    nodes, _ = _lattice(rng, grid, spacing)
    ny, nx = nodes.shape[:2]
    window = shapely.box(*grid.bounds)
    grow = shapely.buffer(window, spacing)
    grid_y, grid_x = np.meshgrid(np.arange(ny - 1), np.arange(nx - 1), indexing="ij")
    iy = grid_y.ravel()
    ix = grid_x.ravel()
    quads = np.stack([nodes[iy, ix], nodes[iy, ix + 1], nodes[iy + 1, ix + 1],
                      nodes[iy + 1, ix]], axis=1)
    block_polys = shapely.polygons(quads)
    keep = shapely.intersects(block_polys, grow)
    quads = quads[keep]
    block_polys = block_polys[keep]
    n_blocks = len(quads)

    # land use of each block: villages grow around a few seeds, forest is scattered
    use = np.zeros(n_blocks, dtype=np.int8)  # 0 field, 1 forest, 2 village, 3 pond
    centroids = shapely.get_coordinates(shapely.centroid(block_polys))
    area_km2 = (grid.extent_m / 1000) ** 2
    n_villages = int(rng.poisson(area_km2 / 30.0)) + (1 if area_km2 > 8 else 0)
    for _ in range(n_villages):
        seed = int(rng.integers(n_blocks))
        dist = np.hypot(*(centroids - centroids[seed]).T)
        use[dist < spacing * rng.uniform(0.3, 1.2)] = 2
    forest = (rng.random(n_blocks) < 0.09) & (use == 0)
    use[forest] = 1
    pond = (rng.random(n_blocks) < 0.008) & (use == 0)
    use[pond] = 3

    inner_blocks = shapely.buffer(block_polys, -_ROAD_HALF_WIDTH, join_style="mitre")
    field_blocks = np.flatnonzero(use == 0)
    corner_list: list[NDArray[np.float64]] = []
    owner: list[NDArray[np.int32]] = []
    yard_list: list[NDArray[np.float64]] = []
    # the number of fields follows the block area, so big blocks do not make huge fields
    block_area = shapely.area(block_polys[field_blocks])
    mean_field = spacing * spacing / _PARCELS_PER_BLOCK
    counts = np.clip(np.round(block_area / mean_field * rng.lognormal(0.0, 0.3, len(field_blocks))),
                     1, 30).astype(int)
    for block_index, k in zip(field_blocks, counts, strict=True):
        corners = quads[block_index]
        cells = _subdivide(rng, corners, int(k))
        corner_list.append(cells)
        owner.append(np.full(len(cells), block_index, dtype=np.int32))
        if rng.random() < 0.12:  # a farmyard in one corner of the block
            len_u = float(np.linalg.norm(corners[1] - corners[0]))
            len_v = float(np.linalg.norm(corners[3] - corners[0]))
            du = min(0.45, rng.uniform(40, 90) / max(len_u, 1.0))
            dv = min(0.45, rng.uniform(40, 90) / max(len_v, 1.0))
            rolled = np.roll(corners, int(rng.integers(4)), axis=0)
            us = np.array([0.0, du, du, 0.0])
            vs = np.array([0.0, 0.0, dv, dv])
            yard_list.append(_bilinear(rolled, us, vs))
    if corner_list:
        cells_xy = np.concatenate(corner_list)
        block_of = np.concatenate(owner)
    else:
        cells_xy = np.zeros((0, 4, 2))
        block_of = np.zeros(0, dtype=np.int32)
    fields = shapely.polygons(cells_xy)
    hedge = rng.uniform(1.5, 4.5, len(fields))
    fields = shapely.buffer(fields, -hedge, join_style="mitre")
    fields = shapely.intersection(fields, inner_blocks[block_of])

    yards = shapely.polygons(np.stack(yard_list)) if yard_list else np.empty(0, dtype=object)
    if len(yards):
        yard_union = shapely.union_all(yards)
        hit = shapely.intersects(fields, yard_union)
        fields[hit] = shapely.difference(fields[hit], shapely.buffer(yard_union, 3.0))

    water_parts: list[object] = []
    if grid.extent_m >= 1500:
        line = shapely.linestrings(_stream(rng, grid))
        water_parts.append(shapely.buffer(line, 3.0))
        riparian = shapely.buffer(line, 9.0)
        hit = shapely.intersects(fields, riparian)
        fields[hit] = shapely.difference(fields[hit], riparian)

    # explode multi-part results (a stream splits a field in two parcels)
    parts, index = shapely.get_parts(fields, return_index=True)
    block_of = block_of[index]
    area = shapely.area(parts)
    good = (area >= _MIN_PART_M2) & shapely.is_valid(parts) & (
        shapely.get_type_id(parts) == 3) & shapely.intersects(parts, window)
    fields = parts[good]
    block_of = block_of[good].astype(np.int32)

    forest_polys = inner_blocks[use == 1]
    village = inner_blocks[use == 2]
    ponds = shapely.buffer(shapely.centroid(inner_blocks[use == 3]),
                           spacing * 0.25, quad_segs=6)
    pond_land = shapely.difference(inner_blocks[use == 3], ponds)
    built = np.concatenate([village, yards]).astype(object)
    forest_all = np.concatenate([forest_polys, pond_land]).astype(object)
    water = np.concatenate([np.asarray(water_parts, dtype=object), ponds]).astype(object)

    # roads: lattice edges near the window
    h_edges = np.stack([nodes[:, :-1], nodes[:, 1:]], axis=2).reshape(-1, 2, 2)
    v_edges = np.stack([nodes[:-1, :], nodes[1:, :]], axis=2).reshape(-1, 2, 2)
    edges = shapely.linestrings(np.concatenate([h_edges, v_edges]))
    edges = edges[shapely.intersects(edges, grow)]
    widths = np.where(rng.random(len(edges)) < 0.15, 4.5, 3.0)
    roads = shapely.buffer(edges, widths, cap_style="flat")
    return fields, block_of, forest_all, built, water, roads


def generate_layout(grid: WorldGrid, parcels: int, seed: int) -> Layout:
    """Lay out farmland with at least ``parcels`` declarable fields inside the window.

    The lattice spacing is adapted (a few attempts) until the number of fields fully
    inside the window is between ``parcels`` and about 1.4 times that; ``parcels`` of
    them, drawn at random, become the declared parcels, the others stay undeclared.

    Raises
    ------
    InputError
        When that many parcels cannot be fitted into the window.
    """
    extent = grid.extent_m
    usable = (extent - 100.0) ** 2 * _FIELD_BLOCK_SHARE
    spacing = math.sqrt(usable / (parcels * 1.2 / _PARCELS_PER_BLOCK))
    shrunk = shapely.box(*grid.bounds).buffer(-10.0, join_style="mitre")
    best: tuple[int, tuple[Geoms, NDArray[np.int32], Geoms, Geoms, Geoms, Geoms]] | None = None
    for attempt in range(8):
        spacing = float(np.clip(spacing, 60.0, 3000.0))
        rng = derive_rng(seed, "layout", attempt)
        built = _build(rng, grid, spacing)
        inside = shapely.contains_properly(shrunk, built[0])
        count = int(inside.sum())
        log.debug("layout attempt %d: spacing %.0f m, %d fields inside", attempt, spacing, count)
        if count >= parcels and (best is None or count < best[0]):
            best = (count, built)
        if parcels <= count <= 1.4 * parcels + 2:
            break
        spacing *= math.sqrt(max(count, 1) / (1.2 * parcels))
    if best is None:
        raise InputError(
            f"could not fit {parcels} parcels into a {extent / 1000:.2f} km square; "
            "use fewer parcels or a larger world size",
            parameter=("parcels", "size"),
        )
    _, (fields, block_of, forest, built_polys, water, roads) = best
    inside_idx = np.flatnonzero(shapely.contains_properly(shrunk, fields))
    rng = derive_rng(seed, "declared")
    chosen = np.sort(rng.choice(inside_idx, size=parcels, replace=False))
    declared = np.zeros(len(fields), dtype=bool)
    declared[chosen] = True
    return Layout(
        fields=fields,
        declared=declared,
        block=block_of,
        forest=forest,
        built=built_polys,
        water=water,
        roads=roads,
    )


def rasterize_labels(layout: Layout, grid: WorldGrid, resolution: int) -> NDArray[np.int32]:
    """Burn the layout into a label raster at ``resolution`` metres.

    Pixels take the label of the polygon containing their centre: fields
    ``FIELD0 + index``, otherwise forest, built, water, road or (anything else) verge.
    Roads are burnt with all touched pixels so they stay connected.
    """
    shape = grid.shape(resolution)
    transform: Affine = grid.transform(resolution)
    labels = np.zeros(shape, dtype=np.int32)

    def burn(geoms: Geoms, value: int | NDArray[np.int64], all_touched: bool = False) -> None:
        if len(geoms) == 0:
            return
        values = np.broadcast_to(np.asarray(value), (len(geoms),))
        features.rasterize(
            zip(geoms, values.tolist(), strict=True),
            out=labels,
            transform=transform,
            all_touched=all_touched,
        )

    burn(layout.forest, FOREST)
    burn(layout.built, BUILT)
    burn(layout.roads, ROAD, all_touched=True)
    burn(layout.water, WATER, all_touched=True)
    burn(layout.fields, FIELD0 + np.arange(layout.n_fields, dtype=np.int64))
    return labels
