"""``cbm extract``, ``cbm update`` and ``cbm series``: signatures in, time series out."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cbm_dask.cli.options import (
    console,
    dataset_opt,
    json_opt,
    print_json,
    print_table,
    progress_console,
)

cluster_opt = click.option(
    "--cluster", default="local", show_default=True, metavar="local|tcp://HOST:PORT|gateway",
    help="Where to run: a local cluster, a running scheduler, or dask-gateway.",
)
workers_opt = click.option("--workers", type=int, help="Workers (local cluster or gateway).")


def _run_extraction(datasets: list[str], collection: str | None, cluster: str,
                    workers: int | None, retry_failed: bool) -> dict[str, object]:
    from cbm_dask.extract import extract

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=progress_console) as progress:
        task = progress.add_task("extracting", total=None, last="")

        def advance(result, done, total):  # type: ignore[no-untyped-def]
            state = "failed" if result.error else f"{result.rows} rows"
            progress.update(task, completed=done, total=total,
                            last=f"{result.unit.item_id}: {state}")

        report = extract(datasets, collection=collection, cluster=cluster, workers=workers,
                         retry_failed=retry_failed, on_progress=advance)
    return report.as_dict()


def _print_report(summary: dict[str, object]) -> None:
    console.print(f"{summary['extracted']} images extracted, {summary['failed']} failed, "
                  f"{summary['rows']} signature rows in {summary['seconds']} s")
    failures = summary.get("failures")
    if isinstance(failures, list) and failures:
        print_table("failed images", failures)


@click.command(name="extract")
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, metavar="NAME",
              help="Dataset(s) to extract.")
@click.option("--collection", "-c", metavar="C", help="Only images of this collection.")
@cluster_opt
@workers_opt
@click.option("--retry-failed", is_flag=True,
              help="Try images that failed before again (their attempts start over).")
@json_opt
def extract_command(datasets: tuple[str, ...], collection: str | None, cluster: str,
                    workers: int | None, retry_failed: bool, as_json: bool) -> None:
    """Reduce every catalogued, not yet extracted image to per-parcel signatures."""
    summary = _run_extraction(list(datasets), collection, cluster, workers, retry_failed)
    print_json(summary) if as_json else _print_report(summary)


@click.command()
@click.option("--dataset", "-d", "datasets", multiple=True, metavar="NAME",
              help="Only these datasets (default: every loaded dataset).")
@click.option("--start", metavar="DATE",
              help="Catalogue from (default: the newest catalogued acquisition minus "
                   "catalogue.update-overlap-days; Jan 1 of the dataset year the first time).")
@click.option("--end", metavar="DATE", help="Catalogue until (default: now).")
@click.option("--stac-url", metavar="URL", help="STAC API (default: the archive's).")
@cluster_opt
@workers_opt
@json_opt
def update(datasets: tuple[str, ...], start: str | None, end: str | None,
           stac_url: str | None, cluster: str, workers: int | None, as_json: bool) -> None:
    """Run the daily job: catalogue new images and extract them, for every dataset."""
    from cbm_dask.catalogue.sync import update_catalogue

    synced = update_catalogue(stac_url, datasets=datasets or None, start=start, end=end)
    names = list(dict.fromkeys(s.dataset for s in synced)) or list(datasets)
    summary = (_run_extraction(names, None, cluster, workers, False) if names else
               {"extracted": 0, "failed": 0, "rows": 0, "seconds": 0.0, "failures": []})
    rows = [s.as_dict() for s in synced]
    if as_json:
        print_json({"catalogue": rows, "extraction": summary})
        return
    for s in synced:
        if s.result is None:
            console.print(f"[yellow]{s.dataset} / {s.collection}: not offered by the STAC "
                          "API, skipped")
    print_table("catalogue", [
        {"dataset": r["dataset"], "collection": r["collection"], "from": r["start"][:16],
         "basis": r["basis"], "found": r["found"], "new": r["inserted"],
         "pending": r["pending"]} for r in rows if r["offered"]])
    _print_report(summary)


@click.command()
@dataset_opt
@click.option("--parcel", "parcel_id", required=True, metavar="ID", help="The parcel's id.")
@click.option("--band", "-b", "bands", multiple=True, metavar="B", help="Bands (default all).")
@json_opt
def series(dataset: str, parcel_id: str, bands: tuple[str, ...], as_json: bool) -> None:
    """Print one parcel's time series (one row per image and band)."""
    from cbm_dask.store.timeseries import parcel_time_series

    frame = parcel_time_series(dataset, parcel_id, bands=bands or None)
    frame = frame[frame["count"] > 0]
    if as_json:
        print_json(frame.to_dict(orient="records"))
        return
    rows = [
        {"date": str(r["datetime"])[:16], "band": r["band"], "count": r["count"],
         "mean": f"{r['mean']:.4f}", "std": f"{r['std']:.4f}", "p50": f"{r['p50']:.4f}",
         "cloud px": "" if r["cloud_pixels"] != r["cloud_pixels"] else int(r["cloud_pixels"])}
        for r in frame.to_dict(orient="records")
    ]
    print_table(f"{dataset} / {parcel_id}: {len(rows)} observations", rows)


__all__ = ["extract_command", "series", "update"]
