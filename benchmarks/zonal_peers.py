"""Benchmark: per-parcel zonal statistics, ours against the peers, side by side in one run.

Scene: benchmarks/scene.py (a 5490 x 5490 quarter S2 tile, 30,000 parcels, ten uint16
DEFLATE COG bands; a 10980 x 10980 tile with 120,000 parcels for the memory case),
built once into /tmp/cbm-bench-scene.  Statistics: count, mean, std, min, max, p25,
p50, p75.  Cases run in fresh interpreters with ``GDAL_NUM_THREADS`` (and a 512 MB
``GDAL_CACHEMAX``) set before GDAL loads, after an untimed warm-up (page cache, numba
cache).  Ours and the read + decode floors are timed interleaved, repetition by
repetition, in one interpreter, so that the load of a shared machine hits them alike;
the peers run alone.  Times are the median of the repetitions with the fastest in
parentheses; peak RSS is measured with each case alone in its interpreter.

Three thread settings: ``1core`` (equal cores with exactextract, which is
single-threaded: one GDAL thread, ``cbm.reduce.threads: 1``, the synchronous Dask
scheduler), ``1`` (one GDAL thread, our kernels and Dask on every core) and
``ALL_CPUS`` (everything on every core).  The report keeps both comparisons with
exactextract: at equal cores, and each at its best setting.

exactextract 0.3 is fed the fastest input it accepts here, chosen in the same run:
its raster sources are a file (read through rasterio; GDAL's own Python bindings,
``osgeo``, are not installed) or a NumPy array read beforehand (read included in
the time); its feature sources a GeoDataFrame (GeoJSON per feature) or a
``FeatureSource`` yielding WKB, the geometry format of its GDAL/OGR source (the
conversion included in the time).  All four pairs are timed on one band; the
fastest feeds the headline figures.

Goals (issue "parcel reduction engine"):
(a) 10 bands x 1 date, labels built once: >= 10x faster than exactextract and
    <= 1.3x the read + decode floor of the same 10 bands;
(b) 1 band end to end, rasterisation included: >= 3x faster than exactextract
    (rasterstats and xvec reported for reference);
(d) a full 10980 x 10980 tile with 120,000 parcels: peak memory <= 2 GiB per worker.

``python -m benchmarks zonal_peers [--reps 3] [--peer-reps 2] [--rasterstats-subset 3000]
[--xvec-subset 0] [--skip-full-tile] [--modes 1core,1,ALL_CPUS]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from benchmarks.common import machine
from benchmarks.scene import CACHE, Scene, SceneSpec, build

STATS = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")
EXACTEXTRACT_OPS = ["count", "mean", "stdev", "min", "max", "quantile(q=0.25)",
                    "quantile(q=0.5)", "quantile(q=0.75)"]
RASTERSTATS_STATS = ["count", "mean", "std", "min", "max", "percentile_25", "percentile_50",
                     "percentile_75"]
CHUNKS = 2048
GiB = 2**30
# GDAL's block cache (MB) for every case: it holds a band's decoded tiles for the peers that
# read one window per parcel, and is too small to keep ten bands from one repetition to
# the next (the default, 5 % of RAM, would).
GDAL_CACHEMAX = "512"
# Thread settings: environment of the case interpreters (set before GDAL, numba and Dask
# load).  "1core" runs everything of ours on the calling thread, like exactextract.
MODES: dict[str, dict[str, str]] = {
    "1core": {"GDAL_NUM_THREADS": "1", "DASK_CBM__REDUCE__THREADS": "1",
              "DASK_SCHEDULER": "synchronous", "NUMBA_NUM_THREADS": "1",
              "OMP_NUM_THREADS": "1"},
    "1": {"GDAL_NUM_THREADS": "1"},
    "ALL_CPUS": {"GDAL_NUM_THREADS": "ALL_CPUS"},
}
MODE_LABELS = {"1core": "1 core (GDAL 1 thread, reduce.threads 1, synchronous Dask)",
               "1": "GDAL 1 thread", "ALL_CPUS": "GDAL ALL_CPUS"}
# exactextract inputs: raster source + feature source (see the module docstring).
EE_INPUTS = ("file+gdf", "file+wkb", "numpy+gdf", "numpy+wkb")


# --------------------------------------------------------------------------- cases (in worker)


def _grid_array(values: Any, transform: Any, crs: Any) -> Any:
    """An in-memory band as a georeferenced DataArray (what a loaded cube band looks like).

    The coordinates are built once per grid: rioxarray's ``write_crs`` would deep-copy the
    pixels each time.
    """
    import xarray as xr

    coords = _coords(tuple(transform)[:6], values.shape, str(crs))
    return xr.DataArray(values, dims=("y", "x"), coords=coords, attrs={"nodata": 0})


@functools.cache
def _coords(transform: tuple[float, ...], shape: tuple[int, int], crs: str) -> Any:
    import numpy as np
    import rioxarray  # noqa: F401
    import xarray as xr
    from affine import Affine

    a, _, c, _, e, f = transform
    height, width = shape
    x = c + a * (np.arange(width) + 0.5)
    y = f + e * (np.arange(height) + 0.5)
    template = xr.DataArray(np.zeros((1, 1), dtype=np.uint8), dims=("y", "x"))
    template = template.rio.write_crs(crs).rio.write_transform(Affine(*transform))
    return {"y": y, "x": x, "spatial_ref": template["spatial_ref"]}


def _read(path: Path) -> tuple[Any, Any, Any]:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def _lazy_dataset(scene: Scene, bands: tuple[str, ...]) -> Any:
    import rioxarray
    import xarray as xr

    variables = {}
    for band in bands:
        array = rioxarray.open_rasterio(scene.band_path(band), chunks={"y": CHUNKS, "x": CHUNKS},
                                        lock=False, mask_and_scale=False)
        variables[band] = cast(xr.DataArray, array).squeeze("band", drop=True)
    return xr.Dataset(variables)


def _wkb_features(parcels: Any) -> Any:
    """The parcels as an exactextract ``FeatureSource`` of WKB geometries.

    That is the geometry format exactextract's own GDAL/OGR feature source hands to
    its C++ core; the GeoDataFrame source goes through a GeoJSON text per feature.
    """
    import shapely
    from exactextract._exactextract import Feature
    from exactextract.feature import FeatureSource

    class WkbFeature(Feature):
        def __init__(self, fid: int, wkb: bytes) -> None:
            Feature.__init__(self)
            self.values: dict[str, Any] = {"id": fid}
            self.wkb: bytes | None = wkb

        def set(self, name: str, value: Any) -> None:
            self.values[name] = value

        def get(self, name: str) -> Any:
            return self.values[name]

        def geometry(self) -> bytes | None:
            return self.wkb

        def set_geometry(self, wkb: bytes | None) -> None:
            self.wkb = wkb

        def set_geometry_format(self) -> str:
            return "wkb"

        def fields(self) -> list[str]:
            return list(self.values)

    class WkbSource(FeatureSource):
        def __init__(self) -> None:
            super().__init__()
            self.wkbs = shapely.to_wkb(parcels.geometry.values)
            self.wkt = parcels.crs.to_wkt()

        def count(self) -> int:
            return len(self.wkbs)

        def __iter__(self) -> Any:
            for fid, wkb in enumerate(self.wkbs):
                yield WkbFeature(fid, bytes(wkb))

        def srs_wkt(self) -> str:
            return str(self.wkt)

    return WkbSource()


def _ee_rasters(kind: str, paths: list[Path]) -> Any:
    """exactextract raster input: file paths, or NumPy sources read from them now."""
    if kind == "file":
        strings = [str(path) for path in paths]
        return strings if len(strings) > 1 else strings[0]
    import rasterio
    from exactextract.raster import NumPyRasterSource

    sources = []
    for path in paths:
        with rasterio.open(path) as src:
            b = src.bounds
            values = src.read(1)
            # the C++ side wants the nodata value in the array's type
            nodata = None if src.nodata is None else values.dtype.type(src.nodata).item()
            sources.append(NumPyRasterSource(values, b.left, b.bottom, b.right, b.top,
                                             nodata=nodata, name=path.stem,
                                             srs_wkt=src.crs.wkt))
    return sources if len(sources) > 1 else sources[0]


def _case(name: str, scene: Scene, subset: int) -> tuple[Callable[[], Any], int]:
    """The function to time and the number of parcels it handles."""
    from cbm_dask.reduce import build_labels, zonal_stats

    parcels = scene.parcels()
    bands = scene.bands
    one = bands[2] if len(bands) > 2 else bands[0]  # B04
    values, transform, crs = _read(scene.band_path(one))
    grid = (transform, values.shape, crs)
    n = len(parcels)
    del values

    if name == "floor10":
        def run() -> Any:
            return [_read(scene.band_path(b))[0].sum(dtype="uint64") for b in bands]
    elif name == "floor1":
        def run() -> Any:
            return _read(scene.band_path(one))[0].sum(dtype="uint64")
    elif name == "ours10_eager":
        labels = build_labels(parcels, grid)

        def run() -> Any:
            return [zonal_stats(_grid_array(_read(scene.band_path(b))[0], transform, crs),
                                labels, stats=STATS) for b in bands]
    elif name == "floor10_dask":
        import dask

        def run() -> Any:
            with _lazy_dataset(scene, bands) as dataset:
                return dask.compute(*[dataset[b].data.sum(dtype="uint64") for b in bands])
    elif name == "ours10_lazy":
        labels = build_labels(parcels, grid)

        def run() -> Any:
            with _lazy_dataset(scene, bands) as dataset:
                return zonal_stats(dataset, labels, stats=STATS)
    elif name == "ours1_e2e":
        def run() -> Any:
            values, transform_, crs_ = _read(scene.band_path(one))
            labels = build_labels(parcels, (transform_, values.shape, crs_))
            return zonal_stats(_grid_array(values, transform_, crs_), labels, stats=STATS)
    elif name == "ours1_e2e_lazy":
        def run() -> Any:
            with _lazy_dataset(scene, (one,)) as dataset:
                return zonal_stats(dataset, parcels, stats=STATS)
    elif name == "labels":
        def run() -> Any:
            return build_labels(parcels, grid)
    elif name.startswith(("exactextract10:", "exactextract1:")):
        from exactextract import exact_extract

        which, inputs = name.split(":")
        raster_kind, feature_kind = inputs.split("+")
        paths = [scene.band_path(b) for b in (bands if which.endswith("10") else (one,))]

        def run() -> Any:
            features = _wkb_features(parcels) if feature_kind == "wkb" else parcels
            return exact_extract(_ee_rasters(raster_kind, paths), features, EXACTEXTRACT_OPS,
                                 strategy="raster-sequential", output="pandas")
    elif name == "rasterstats1":
        import rasterstats

        chosen = parcels.sample(n=min(subset, n), random_state=0) if subset else parcels
        n = len(chosen)

        def run() -> Any:
            return rasterstats.zonal_stats(chosen, str(scene.band_path(one)),
                                           stats=RASTERSTATS_STATS, all_touched=False,
                                           boundless=False)
    elif name == "xvec1":
        import rioxarray
        import xarray as xr

        chosen = parcels.sample(n=min(subset, n), random_state=0) if subset else parcels
        n = len(chosen)
        moments = [("count", "count"), ("mean", "mean"), ("std", "std"), ("min", "min"),
                   ("max", "max")]
        # several quantiles in one call clash on xvec's "quantile" coordinate: two calls
        quantiles = [("quantile", "quantile", {"q": [0.25, 0.5, 0.75]})]

        def run() -> Any:
            import xvec  # noqa: F401

            band = cast(xr.DataArray, rioxarray.open_rasterio(
                scene.band_path(one), masked=True)).squeeze("band", drop=True).load()
            # xvec cannot concatenate quantiles with the other statistics otherwise
            band = band.drop_vars("spatial_ref")
            return [band.xvec.zonal_stats(chosen.geometry, x_coords="x", y_coords="y",
                                          stats=stats, method="rasterize")
                    for stats in (moments, quantiles)]
    elif name == "full_eager":
        def run() -> Any:
            values, transform_, crs_ = _read(scene.band_path(one))
            labels = build_labels(parcels, (transform_, values.shape, crs_))
            return zonal_stats(_grid_array(values, transform_, crs_), labels, stats=STATS)
    elif name == "full_lazy":
        def run() -> Any:
            with _lazy_dataset(scene, (one,)) as dataset:
                return zonal_stats(dataset, parcels, stats=STATS)
    else:
        raise ValueError(f"unknown case {name}")
    return run, n


def worker(names: list[str], folder: Path, spec: SceneSpec, reps: int, subset: int,
           warmup: bool) -> dict[str, Any]:
    """Time the cases ``names`` in turn, repetition by repetition (interleaved, so that a
    change of load on the machine hits them alike)."""
    scene = Scene(spec, folder)
    cases = {name: _case(name, scene, subset) for name in names}
    if warmup:
        for run, _ in cases.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(reps):
        for name, (run, _) in cases.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"times": times, "parcels": {name: n for name, (_, n) in cases.items()},
            "peak_rss": peak}


# --------------------------------------------------------------------------- orchestration


def measure(names: str | list[str], scene: Scene, *, threads: str, reps: int,
            subset: int = 0, warmup: bool = True) -> dict[str, dict[str, Any]]:
    """Run cases in a fresh interpreter with the thread setting ``threads`` (a key of
    ``MODES``); one result per case.

    The peak RSS is the interpreter's: meaningful when a single case runs.
    """
    names = [names] if isinstance(names, str) else names
    env = dict(os.environ, GDAL_CACHEMAX=GDAL_CACHEMAX, **MODES[threads])
    command = [sys.executable, "-m", "benchmarks.zonal_peers", "--worker", ",".join(names),
               "--scene", str(scene.folder), "--size", str(scene.spec.size),
               "--parcels", str(scene.spec.parcels), "--bands", str(scene.spec.bands),
               "--reps", str(reps), "--rasterstats-subset", str(subset)]
    if not warmup:
        command.append("--no-warmup")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cases {names} failed:\n{done.stderr[-3000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    results = {}
    for name in names:
        times = raw["times"][name]
        result = {"case": name, "threads": threads, "times": times,
                  "parcels": raw["parcels"][name], "peak_rss": raw["peak_rss"],
                  "median": statistics.median(times), "best": min(times)}
        print(f"  {name:<16} threads={threads:<8} median {result['median']:7.2f} s "
              f"(best {result['best']:.2f}) peak {result['peak_rss'] / 2**20:,.0f} MiB",
              file=sys.stderr)
        results[name] = result
    return results


def _t(result: dict[str, Any], scale: float = 1.0) -> str:
    return f"{result['median'] * scale:.2f} ({result['best'] * scale:.2f})"


def _mib(result: dict[str, Any]) -> str:
    return f"{result['peak_rss'] / 2**20:,.0f} MiB"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _peer_summary(r: dict[tuple[str, str], dict[str, Any]], modes: list[str],
                  ee_modes: list[str], ours: tuple[str, ...], peer: str,
                  label: str) -> list[str]:
    """The two comparisons with exactextract: at equal cores, and each at its best."""
    def best_of(names: tuple[str, ...], settings: list[str]) -> tuple[str, str, float]:
        return min(((n, m, r[n, m]["median"]) for n in names for m in settings),
                   key=lambda x: x[2])

    out = [""]
    if "1core" in modes:
        name, _, ours_one = best_of(ours, ["1core"])
        ee_one = r[peer, "1"]["median"]
        out.append(f"* {label} equal cores (one core each): ours {ours_one:.2f} s ({name}) vs "
                   f"exactextract {ee_one:.2f} s: **{ee_one / ours_one:.1f}x**.")
    name, mode, ours_best = best_of(ours, modes)
    _, ee_setting, ee_best = best_of((peer,), ee_modes)
    out.append(f"* {label} each at its best: ours {ours_best:.2f} s ({name}, "
               f"{MODE_LABELS[mode]}) vs exactextract {ee_best:.2f} s "
               f"({MODE_LABELS[ee_setting]}): **{ee_best / ours_best:.1f}x**.")
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peer-reps", type=int, default=2)
    parser.add_argument("--rasterstats-subset", type=int, default=3000)
    parser.add_argument("--xvec-subset", type=int, default=0, help="0: all parcels")
    parser.add_argument("--skip-full-tile", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--modes", default="1core,1,ALL_CPUS",
                        help=f"thread settings to run, of {', '.join(MODES)}")
    parser.add_argument("--scene-size", type=int, default=5490,
                        help="side of the scene in pixels (smaller: a quick trial run)")
    parser.add_argument("--scene-parcels", type=int, default=30_000)
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=5490, help=argparse.SUPPRESS)
    parser.add_argument("--parcels", type=int, default=30_000, help=argparse.SUPPRESS)
    parser.add_argument("--bands", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = SceneSpec(args.size, args.parcels, args.bands)
        print(json.dumps(worker(args.worker.split(","), args.scene, spec, args.reps,
                                args.rasterstats_subset, not args.no_warmup)))
        return ""

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes {args.modes!r}: choose among {', '.join(MODES)}")
    scene = build(SceneSpec(args.scene_size, args.scene_parcels, 10), args.cache)
    print(f"scene {scene.folder}", file=sys.stderr)
    size, parcels = f"{args.scene_size}²", f"{args.scene_parcels:,} parcels"
    today = dt.date.today().isoformat()
    load = os.getloadavg()[0]
    r: dict[tuple[str, str], dict[str, Any]] = {}
    ours = ("ours10_eager", "ours10_lazy", "ours1_e2e", "ours1_e2e_lazy")
    for threads in modes:
        # timings: ours and the floors interleaved in one interpreter
        for group in (("floor10", "floor10_dask", "ours10_eager", "ours10_lazy"),
                      ("floor1", "ours1_e2e", "ours1_e2e_lazy")):
            for name, result in measure(list(group), scene, threads=threads,
                                        reps=args.reps).items():
                r[name, threads] = result
        # peak memory: each of ours alone
        for name in ours:
            alone = measure(name, scene, threads=threads, reps=1, warmup=False)[name]
            r[name, threads]["peak_rss"] = alone["peak_rss"]

    # exactextract is single-threaded: at "1core" it is the one-GDAL-thread run.
    def ee_mode(threads: str) -> str:
        return "1" if threads == "1core" else threads

    ee_modes = list(dict.fromkeys(ee_mode(m) for m in modes))
    fastest: dict[str, str] = {}
    inputs: dict[tuple[str, str], dict[str, Any]] = {}
    for threads in ee_modes:
        # every input pair on one band, interleaved; the fastest feeds the figures
        tried = measure([f"exactextract1:{k}" for k in EE_INPUTS], scene, threads=threads,
                        reps=args.peer_reps, warmup=False)
        for kind in EE_INPUTS:
            inputs[kind, threads] = tried[f"exactextract1:{kind}"]
        fastest[threads] = min(EE_INPUTS, key=lambda k: inputs[k, threads]["median"])
        r["exactextract1", threads] = inputs[fastest[threads], threads]
        name = f"exactextract10:{fastest[threads]}"
        r["exactextract10", threads] = measure(name, scene, threads=threads,
                                               reps=args.peer_reps, warmup=False)[name]
    r["labels", "1"] = measure("labels", scene, threads="1", reps=args.reps)["labels"]
    r["rasterstats1", "1"] = measure("rasterstats1", scene, threads="1", reps=1,
                                     subset=args.rasterstats_subset,
                                     warmup=False)["rasterstats1"]
    r["xvec1", "1"] = measure("xvec1", scene, threads="1", reps=1, subset=args.xvec_subset,
                              warmup=False)["xvec1"]

    lines = [f"Run {today} on {machine()}; load average {load:.1f} at start. Times: median "
             f"(fastest) in seconds.", ""]
    labels = {"file+gdf": "file + GeoDataFrame", "file+wkb": "file + WKB source",
              "numpy+gdf": "NumPy + GeoDataFrame", "numpy+wkb": "NumPy + WKB source"}
    lines += [f"exactextract 0.3 inputs, 1 band, 8 statistics, raster-sequential ({size}, "
              f"{parcels}); the fastest feeds every exactextract figure below", "",
              "| GDAL threads | " + " | ".join(labels[k] for k in EE_INPUTS) + " | fastest |",
              "|---|" + "---|" * len(EE_INPUTS) + "---|"]
    for threads in ee_modes:
        lines.append(f"| {threads} | " + " | ".join(_t(inputs[k, threads]) for k in EE_INPUTS)
                     + f" | {labels[fastest[threads]]} |")
    lines += ["", "File: read through rasterio (no GDAL Python bindings here); NumPy: the band "
                  "read into memory first, read included; WKB source: a `FeatureSource` handing "
                  "WKB to the C++ core (the format of exactextract's GDAL/OGR source), "
                  "conversion included.", ""]
    lines += [f"(a) 10 bands x 1 date, 8 statistics, labels built once ({size}, {parcels})",
              "",
              "| threads | floor: rasterio, band by band | ours, in memory band by band | "
              "ratio | floor: Dask chunked read (2048²) | ours, Dask | ratio | "
              "exactextract (raster-sequential, single-threaded) | exactextract / ours | "
              "peak RSS ours (in memory / Dask) / exactextract |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    verdict_a = []
    for threads in modes:
        floor, floor_dask = r["floor10", threads], r["floor10_dask", threads]
        eager, lazy = r["ours10_eager", threads], r["ours10_lazy", threads]
        ee = r["exactextract10", ee_mode(threads)]
        eager_ratio = eager["median"] / floor["median"]
        lazy_ratio = lazy["median"] / floor_dask["median"]
        best = min(eager["median"], lazy["median"])
        strict = best / min(floor["median"], floor_dask["median"])
        speedup = ee["median"] / best
        verdict_a.append((threads, eager_ratio, lazy_ratio, strict, speedup))
        lines.append(f"| {MODE_LABELS[threads]} | {_t(floor)} | {_t(eager)} | "
                     f"{eager_ratio:.2f}x | {_t(floor_dask)} | {_t(lazy)} | {lazy_ratio:.2f}x | "
                     f"{_t(ee)} | {speedup:.1f}x | {_mib(eager)} / {_mib(lazy)} / {_mib(ee)} |")
    lines += ["", "Each variant is compared with the floor that reads the same way; "
                  "\"strict\" compares our faster variant with the faster floor.", ""]
    for threads, eager_ratio, lazy_ratio, strict, speedup in verdict_a:
        lines.append(
            f"* {MODE_LABELS[threads]}: >= 10x exactextract {_met(speedup >= 10)} "
            f"({speedup:.1f}x); <= 1.3x read + decode: in memory {_met(eager_ratio <= 1.3)} "
            f"({eager_ratio:.2f}x), Dask {_met(lazy_ratio <= 1.3)} ({lazy_ratio:.2f}x), "
            f"strict {_met(strict <= 1.3)} ({strict:.2f}x).")
    lines += _peer_summary(r, modes, ee_modes, ("ours10_eager", "ours10_lazy"),
                           "exactextract10", "(a)")
    lab = r["labels", "1"]
    lines += ["", f"Building the labels of {parcels} (reprojection check, scan conversion "
                  f"to pixel runs): {_t(lab)} s.", ""]

    n = r["ours1_e2e", modes[0]]["parcels"]
    lines += [f"(b) 1 band end to end, rasterisation included (B04, {size}, {parcels})", "",
              "| threads | read + decode floor | ours, in memory | ours, Dask | "
              "exactextract | exactextract / ours | parcels/s ours | peak RSS ours |",
              "|---|---|---|---|---|---|---|---|"]
    verdict_b = []
    for threads in modes:
        eager, lazy = r["ours1_e2e", threads], r["ours1_e2e_lazy", threads]
        best_run = min((eager, lazy), key=lambda x: x["median"])
        ee = r["exactextract1", ee_mode(threads)]
        speedup = ee["median"] / best_run["median"]
        verdict_b.append((threads, speedup))
        lines.append(f"| {MODE_LABELS[threads]} | {_t(r['floor1', threads])} | {_t(eager)} | "
                     f"{_t(lazy)} | {_t(ee)} | {speedup:.1f}x | "
                     f"{n / best_run['median']:,.0f} | {_mib(best_run)} |")
    rs = r["rasterstats1", "1"]
    xv = r["xvec1", "1"]
    rs_scale = n / rs["parcels"]
    xv_scale = n / xv["parcels"]
    rs_all = rs["median"] * rs_scale
    lines += ["", f"* rasterstats 0.21 (file, `boundless=False`, centre rule): "
                  f"{rs['median']:.2f} s for {rs['parcels']:,} random parcels, **≈ {rs_all:.1f} s "
                  f"for {n:,}** (extrapolated x{rs_scale:.0f}), peak RSS {_mib(rs)}.",
              f"* xvec 0.5 (`method=\"rasterize\"`, band in memory, read included): "
              f"{xv['median']:.2f} s for {xv['parcels']:,} parcels"
              + (f" (≈ {xv['median'] * xv_scale:.1f} s for {n:,}, extrapolated)"
                 if xv_scale > 1 else "") + f", peak RSS {_mib(xv)}."]
    for threads, speedup in verdict_b:
        lines.append(f"* {MODE_LABELS[threads]}: >= 3x exactextract {_met(speedup >= 3)} "
                     f"({speedup:.1f}x).")
    lines += _peer_summary(r, modes, ee_modes, ("ours1_e2e", "ours1_e2e_lazy"),
                           "exactextract1", "(b)")

    if not args.skip_full_tile:
        full = build(SceneSpec(10980, 120_000, 1), args.cache)
        fe = measure("full_eager", full, threads="ALL_CPUS", reps=1)["full_eager"]
        fl = measure("full_lazy", full, threads="ALL_CPUS", reps=1)["full_lazy"]
        lines += ["", "(d) Memory: full 10980² tile, 120,000 parcels, one band (read + labels + "
                      "8 statistics, one process)", "",
                  "| mode | wall s | peak RSS | goal <= 2 GiB |", "|---|---|---|---|",
                  f"| in memory (whole band read, threaded kernel) | {fe['median']:.2f} | "
                  f"{_mib(fe)} | {_met(fe['peak_rss'] <= 2 * GiB)} |",
                  f"| Dask, 2048² chunks, 2 threads | {fl['median']:.2f} | {_mib(fl)} | "
                  f"{_met(fl['peak_rss'] <= 2 * GiB)} |"]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
