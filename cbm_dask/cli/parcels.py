"""``cbm parcels`` and ``cbm datasets``: declared parcels."""

from __future__ import annotations

from pathlib import Path

import click

from cbm_dask.cli.options import (
    CbmGroup,
    console,
    dataset_opt,
    json_opt,
    print_json,
    print_table,
)
from cbm_dask.store import parcels as store


@click.group(cls=CbmGroup)
def parcels() -> None:
    """Load, describe and export parcel datasets."""


@parcels.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@dataset_opt
@click.option("--id-column", metavar="C[,C2]",
              help="Parcel id column; A,B joins several; @fid uses the file's feature ids.")
@click.option("--crop-code-column", metavar="C", help="Declared crop code column.")
@click.option("--crop-name-column", metavar="C", help="Declared crop name column.")
@click.option("--scheme-column", metavar="C", help="Declared (eco-)scheme column.")
@click.option("--practice-column", metavar="C", help="Declared practice column.")
@click.option("--layer", metavar="L", help="Layer to read (files with several layers).")
@click.option("--encoding", metavar="ENC", help="Attribute encoding when the file has none.")
@click.option("--crs", metavar="EPSG:N",
              help="CRS of the coordinates when the file declares none or a wrong one.")
@click.option("--aoi", metavar="NAME", help="Area of interest (country/region) label.")
@click.option("--year", type=int, help="Declaration year (default: from the dataset name).")
@click.option("--replace", is_flag=True, help="Replace an existing dataset of that name.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the report of repaired/rejected features.")
@json_opt
def load(
    path: Path, dataset: str, report_dir: Path | None, as_json: bool, **kwargs: object
) -> None:
    """Load the parcels in PATH (any OGR format or GeoParquet) as dataset NAME."""
    with console.status(f"loading {path}"):
        result = store.load_parcel_file(path, dataset, report_dir=report_dir, **kwargs)  # type: ignore[arg-type]
    summary = {
        "dataset": result.dataset,
        "loaded": result.loaded,
        "repaired": result.repaired,
        "rejected": result.rejected,
        "crs": result.crs,
        "columns": result.mapping.as_dict(),
        "report": str(result.report_path) if result.report_path else None,
        "seconds": round(result.seconds, 2),
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"dataset [bold]{result.dataset}[/]: {result.loaded} parcels loaded, "
        f"{result.repaired} repaired, {result.rejected} rejected ({result.crs}, "
        f"{result.seconds:.1f} s)"
    )
    m = result.mapping
    console.print(
        f"columns: id={','.join(m.id)} crop_code={m.crop_code} crop_name={m.crop_name} "
        f"scheme={m.scheme} practice={m.practice}"
    )
    if result.report_path:
        console.print(f"report of repaired/rejected features: {result.report_path}")


@parcels.command()
@dataset_opt
@json_opt
def info(dataset: str, as_json: bool) -> None:
    """Describe a dataset: count, CRS, area quantiles, crop histogram."""
    summary = store.dataset_info(dataset)
    if as_json:
        print_json(summary)
        return
    console.print(f"[bold]{summary['name']}[/]  {summary['parcels']} parcels  {summary['crs']}  "
                  f"year {summary['year']}  from {summary['source_file']}")
    area = summary["area_m2"]
    print_table(
        "area (ha)",
        [{k: f"{v / 1e4:.3f}" if v is not None else None for k, v in area.items()}],
    )
    print_table(
        "crops",
        [{**c, "area_ha": f"{c['area_ha']:.2f}"} for c in summary["crops"]],
        ["crop_code", "crop_name", "parcels", "area_ha"],
    )


@parcels.command()
@dataset_opt
@click.option("--to", "target", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Output file: .parquet (GeoParquet 1.1), .gpkg or .fgb.")
def export(dataset: str, target: Path) -> None:
    """Export a dataset's parcels to a file."""
    written = store.export_parcels(dataset, target)
    console.print(f"wrote {written}")


@parcels.command()
@dataset_opt
@click.confirmation_option(prompt="Delete the dataset with its signatures and decisions?")
def drop(dataset: str) -> None:
    """Delete a dataset and everything derived from it."""
    store.drop_dataset(dataset)
    console.print(f"dataset {dataset} deleted")


@click.group(cls=CbmGroup)
def datasets() -> None:
    """Parcel datasets."""


@datasets.command(name="list")
@json_opt
def list_(as_json: bool) -> None:
    """List the loaded datasets."""
    frame = store.list_datasets()
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]
    if as_json:
        print_json(rows)
        return
    print_table(f"{len(rows)} datasets", rows,
                ["name", "aoi", "year", "crs", "parcels", "repaired", "rejected", "created_at"])
