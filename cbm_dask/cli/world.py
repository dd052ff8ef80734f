"""``cbm world``: synthetic worlds (parcels, ground truth, Sentinel COGs and STAC)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cbm_dask.cli.options import CbmGroup, console, json_opt, print_json, print_table
from cbm_dask.world import WorldParams, WorldSummary, build_world, read_world

_STAGES = {
    "layout": "layout, crops, truth",
    "sentinel-2": "Sentinel-2 L2A",
    "sentinel-1": "Sentinel-1 backscatter",
    "coherence": "Sentinel-1 coherence",
}


@click.group(cls=CbmGroup)
def world() -> None:
    """Build synthetic worlds to test and demonstrate the monitoring chain."""


def _summary_dict(summary: WorldSummary) -> dict[str, Any]:
    p = summary.params
    return {
        "out": str(summary.root),
        "tile": summary.tile,
        "epsg": summary.epsg,
        "size_px": p.size,
        "period": f"{p.start} .. {p.end}",
        "seed": p.seed,
        **summary.counts,
        "cloudy_share": round(summary.cloudy_share, 3),
        "megabytes": round(summary.bytes / 1e6, 1),
        "seconds": round(summary.seconds, 1),
    }


def _print_summary(summary: WorldSummary) -> None:
    c = summary.counts
    console.print(
        f"world [bold]{summary.root}[/]: tile {summary.tile} (EPSG:{summary.epsg}), "
        f"{summary.params.size}x{summary.params.size} px, "
        f"{summary.params.start} .. {summary.params.end}, seed {summary.params.seed}"
    )
    print_table("summary", [{
        "parcels": c.get("parcels"),
        "violations": c.get("violations"),
        "events": c.get("events"),
        "S2 dates": c.get("s2_items"),
        "S1 dates": c.get("s1_items"),
        "coherence pairs": c.get("coherence_items"),
        "cloudy share": f"{summary.cloudy_share:.0%}",
        "size (MB)": f"{summary.bytes / 1e6:.1f}",
        "seconds": f"{summary.seconds:.1f}",
    }])


@world.command()
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to write the world into.")
@click.option("--size", type=int, metavar="PX", help="Side in 10 m pixels (even).")
@click.option("--parcels", type=int, metavar="N", help="Number of declared parcels.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD).")
@click.option("--seed", type=int, metavar="S", help="Random seed (same seed, same files).")
@click.option("--violation-share", type=float, metavar="F",
              help="Share of parcels whose practice differs from the declaration.")
@click.option("--cloud-share", type=float, metavar="F",
              help="Share of Sentinel-2 dates with clouds.")
@click.option("--tile", metavar="MGRS", help="MGRS tile id, e.g. 31UFS.")
@click.option("--s1-resolution", type=click.Choice(["10", "20"]),
              help="Pixel size of the Sentinel-1 rasters in metres.")
@click.option("--overviews/--no-overviews", default=None,
              help="Add internal overviews to the COGs (default: cbm.world.overviews).")
@click.option("--workers", type=int, metavar="N", help="Threads (does not change the output).")
@click.option("--overwrite", is_flag=True, help="Replace a world already in --out.")
@json_opt
def build(out: Path, start: dt.datetime | None, end: dt.datetime | None,
          s1_resolution: str | None, overwrite: bool, as_json: bool, **options: Any) -> None:
    """Build a synthetic world: parcels.gpkg, truth/, cogs/, stac/ and world.json."""
    params = WorldParams.from_config(
        start=start.date() if start else None,
        end=end.date() if end else None,
        s1_resolution=int(s1_resolution) if s1_resolution else None,
        **options,
    )
    if as_json:
        summary = build_world(out, params, overwrite=overwrite)
        print_json(_summary_dict(summary))
        return
    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in _STAGES:
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES[stage], total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = build_world(out, params, overwrite=overwrite, progress=progress)
    _print_summary(summary)


@world.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@json_opt
def info(directory: Path, as_json: bool) -> None:
    """Describe the world in DIRECTORY (from its world.json)."""
    summary = read_world(directory)
    if as_json:
        print_json(_summary_dict(summary))
        return
    _print_summary(summary)
