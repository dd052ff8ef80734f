"""``cbm demo``: everything that exists, end to end, on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import Progress

from cbm_dask.cli.db import bring_up
from cbm_dask.cli.options import console, print_table
from cbm_dask.demo import LPIS_SAMPLES, load_lpis_samples
from cbm_dask.store.engine import database_url, is_embedded
from cbm_dask.store.parcels import list_datasets


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("../shared/data/real"), show_default=True,
              help="The real data directory (LPIS samples, Sentinel COGs).")
def demo(data_dir: Path) -> None:
    """Run the demo: database up, all real LPIS samples loaded, summary."""
    from sqlalchemy.engine import make_url

    console.rule("[bold]cbm_dask demo")
    revision = bring_up()
    where = "embedded PostGIS" if is_embedded() else "external PostGIS"
    console.print(f"1. database: {where} at "
                  f"{make_url(database_url()).render_as_string(hide_password=True)}, "
                  f"schema {revision}")
    console.print(f"2. loading {len(LPIS_SAMPLES)} real LPIS/GSA samples from {data_dir}/lpis")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading parcels", total=len(LPIS_SAMPLES))
        results = load_lpis_samples(
            data_dir, on_loaded=lambda r: progress.advance(task)
        )
    frame = list_datasets()
    by_name = {r.dataset: r for r in results}
    rows = [
        {
            "dataset": row["name"],
            "aoi": row["aoi"],
            "year": row["year"],
            "crs": row["crs"],
            "parcels": row["parcels"],
            "repaired": row["repaired"],
            "rejected": row["rejected"],
            "id column": ",".join(by_name[row["name"]].mapping.id)
            if row["name"] in by_name else "",
            "crop code": by_name[row["name"]].mapping.crop_code
            if row["name"] in by_name else "",
        }
        for row in frame.to_dict(orient="records")
    ]
    print_table(f"{len(rows)} datasets loaded", rows)
    total = sum(int(r["parcels"]) for r in rows)
    console.print(f"{total} parcels in {len(rows)} datasets. Try: cbm parcels info "
                  f"--dataset {LPIS_SAMPLES[2].dataset}")
