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

Goals (issue "parcel reduction engine"):
(a) 10 bands x 1 date, labels built once: >= 10x faster than exactextract and
    <= 1.3x the read + decode floor of the same 10 bands;
(b) 1 band end to end, rasterisation included: >= 3x faster than exactextract
    (rasterstats and xvec reported for reference);
(d) a full 10980 x 10980 tile with 120,000 parcels: peak memory <= 2 GiB per worker.

``python -m benchmarks zonal_peers [--reps 3] [--peer-reps 2] [--rasterstats-subset 3000]
[--xvec-subset 0] [--skip-full-tile]``
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
from typing import Any

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
        variables[band] = array.squeeze("band", drop=True)
    return xr.Dataset(variables)


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
    elif name in ("exactextract10", "exactextract1"):
        from exactextract import exact_extract

        paths = [str(scene.band_path(b)) for b in (bands if name.endswith("10") else (one,))]

        def run() -> Any:
            return exact_extract(paths if len(paths) > 1 else paths[0], parcels,
                                 EXACTEXTRACT_OPS, strategy="raster-sequential",
                                 output="pandas")
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

        chosen = parcels.sample(n=min(subset, n), random_state=0) if subset else parcels
        n = len(chosen)
        moments = [("count", "count"), ("mean", "mean"), ("std", "std"), ("min", "min"),
                   ("max", "max")]
        # several quantiles in one call clash on xvec's "quantile" coordinate: two calls
        quantiles = [("quantile", "quantile", {"q": [0.25, 0.5, 0.75]})]

        def run() -> Any:
            import xvec  # noqa: F401

            band = rioxarray.open_rasterio(scene.band_path(one), masked=True).squeeze(
                "band", drop=True).load()
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
    """Run cases in a fresh interpreter with GDAL_NUM_THREADS set; one result per case.

    The peak RSS is the interpreter's: meaningful when a single case runs.
    """
    names = [names] if isinstance(names, str) else names
    env = dict(os.environ, GDAL_NUM_THREADS=threads, GDAL_CACHEMAX=GDAL_CACHEMAX)
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


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peer-reps", type=int, default=2)
    parser.add_argument("--rasterstats-subset", type=int, default=3000)
    parser.add_argument("--xvec-subset", type=int, default=0, help="0: all parcels")
    parser.add_argument("--skip-full-tile", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE)
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

    scene = build(SceneSpec(5490, 30_000, 10), args.cache)
    print(f"scene {scene.folder}", file=sys.stderr)
    today = dt.date.today().isoformat()
    load = os.getloadavg()[0]
    r: dict[tuple[str, str], dict[str, Any]] = {}
    ours = ("ours10_eager", "ours10_lazy", "ours1_e2e", "ours1_e2e_lazy")
    for threads in ("1", "ALL_CPUS"):
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
        for name in ("exactextract10", "exactextract1"):
            r[name, threads] = measure(name, scene, threads=threads, reps=args.peer_reps,
                                       warmup=False)[name]
    r["labels", "1"] = measure("labels", scene, threads="1", reps=args.reps)["labels"]
    r["rasterstats1", "1"] = measure("rasterstats1", scene, threads="1", reps=1,
                                     subset=args.rasterstats_subset,
                                     warmup=False)["rasterstats1"]
    r["xvec1", "1"] = measure("xvec1", scene, threads="1", reps=1, subset=args.xvec_subset,
                              warmup=False)["xvec1"]

    lines = [f"Run {today} on {machine()}; load average {load:.1f} at start. Times: median "
             f"(fastest) in seconds.", ""]
    lines += ["(a) 10 bands x 1 date, 8 statistics, labels built once (5490², 30,000 parcels)",
              "",
              "| GDAL threads | floor: rasterio, band by band | ours, in memory band by band | "
              "ratio | floor: Dask chunked read (2048², 2 threads) | ours, Dask | ratio | "
              "exactextract (raster-sequential) | exactextract / ours | peak RSS ours "
              "(in memory / Dask) / exactextract |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    verdict_a = []
    for threads in ("1", "ALL_CPUS"):
        floor, floor_dask = r["floor10", threads], r["floor10_dask", threads]
        eager, lazy = r["ours10_eager", threads], r["ours10_lazy", threads]
        ee = r["exactextract10", threads]
        eager_ratio = eager["median"] / floor["median"]
        lazy_ratio = lazy["median"] / floor_dask["median"]
        best = min(eager["median"], lazy["median"])
        strict = best / min(floor["median"], floor_dask["median"])
        speedup = ee["median"] / best
        verdict_a.append((threads, eager_ratio, lazy_ratio, strict, speedup))
        lines.append(f"| {threads} | {_t(floor)} | {_t(eager)} | {eager_ratio:.2f}x | "
                     f"{_t(floor_dask)} | {_t(lazy)} | {lazy_ratio:.2f}x | {_t(ee)} | "
                     f"{speedup:.1f}x | {_mib(eager)} / {_mib(lazy)} / {_mib(ee)} |")
    lines += ["", "Each variant is compared with the floor that reads the same way; "
                  "\"strict\" compares our faster variant with the faster floor.", ""]
    for threads, eager_ratio, lazy_ratio, strict, speedup in verdict_a:
        lines.append(
            f"* GDAL threads {threads}: >= 10x exactextract {_met(speedup >= 10)} "
            f"({speedup:.1f}x); <= 1.3x read + decode: in memory {_met(eager_ratio <= 1.3)} "
            f"({eager_ratio:.2f}x), Dask {_met(lazy_ratio <= 1.3)} ({lazy_ratio:.2f}x), "
            f"strict {_met(strict <= 1.3)} ({strict:.2f}x).")
    lab = r["labels", "1"]
    lines += ["", f"Building the labels of 30,000 parcels (reprojection check, scan conversion "
                  f"to pixel runs): {_t(lab)} s.", ""]

    n = r["ours1_e2e", "1"]["parcels"]
    lines += ["(b) 1 band end to end, rasterisation included (B04, 5490², 30,000 parcels)", "",
              "| GDAL threads | read + decode floor | ours, in memory | ours, Dask | "
              "exactextract | exactextract / ours | parcels/s ours | peak RSS ours |",
              "|---|---|---|---|---|---|---|---|"]
    verdict_b = []
    for threads in ("1", "ALL_CPUS"):
        eager, lazy = r["ours1_e2e", threads], r["ours1_e2e_lazy", threads]
        best = min((eager, lazy), key=lambda x: x["median"])
        ee = r["exactextract1", threads]
        speedup = ee["median"] / best["median"]
        verdict_b.append((threads, speedup))
        lines.append(f"| {threads} | {_t(r['floor1', threads])} | {_t(eager)} | {_t(lazy)} | "
                     f"{_t(ee)} | {speedup:.1f}x | {n / best['median']:,.0f} | {_mib(best)} |")
    rs = r["rasterstats1", "1"]
    xv = r["xvec1", "1"]
    rs_scale = n / rs["parcels"]
    xv_scale = n / xv["parcels"]
    rs_all = rs["median"] * rs_scale
    lines += ["", f"* rasterstats 0.21 (file, `boundless=False`, centre rule): "
                  f"{rs['median']:.2f} s for {rs['parcels']:,} random parcels, **≈ {rs_all:.1f} s "
                  f"for 30,000** (extrapolated x{rs_scale:.0f}), peak RSS {_mib(rs)}.",
              f"* xvec 0.5 (`method=\"rasterize\"`, band in memory, read included): "
              f"{xv['median']:.2f} s for {xv['parcels']:,} parcels"
              + (f" (≈ {xv['median'] * xv_scale:.1f} s for 30,000, extrapolated)"
                 if xv_scale > 1 else "") + f", peak RSS {_mib(xv)}."]
    for threads, speedup in verdict_b:
        lines.append(f"* GDAL threads {threads}: >= 3x exactextract {_met(speedup >= 3)} "
                     f"({speedup:.1f}x).")

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
