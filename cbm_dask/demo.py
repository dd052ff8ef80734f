"""The end-to-end demo run by ``make demo`` / ``cbm demo`` on embedded defaults."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cbm_dask.errors import InputError
from cbm_dask.store.parcels import LoadResult, load_parcel_file

if TYPE_CHECKING:
    import pandas as pd

    from cbm_dask.world import WorldSummary

__all__ = [
    "LPIS_SAMPLES",
    "REAL_IMAGERY",
    "WORLD_DATASET",
    "CatalogueTarget",
    "DemoSample",
    "catalogue_targets",
    "demo_parcels",
    "demo_world",
    "find_lpis_samples",
    "load_lpis_samples",
    "marker_summary",
    "ndvi_series",
    "real_imagery",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSample:
    """A real LPIS/GSA sample and the load options it needs."""

    dataset: str
    path: str
    aoi: str
    options: dict[str, str] = field(default_factory=dict)


# Where no single column is a unique parcel id, the demo names the key:
# DK field numbers are unique per field block, FI parcel numbers per base
# parcel; NL has no id column at all and DE-BB sub-plots share their block id.
LPIS_SAMPLES: tuple[DemoSample, ...] = (
    DemoSample("at_invekos_schlaege_2024", "at_invekos_schlaege_2024/parcels.gpkg", "AT"),
    DemoSample("at_invekos_schlaege_2025", "at_invekos_schlaege_2025/parcels.gpkg", "AT"),
    DemoSample(
        "be_vlg_landbouwgebruikspercelen_2023",
        "be_vlg_landbouwgebruikspercelen_2023/parcels.gpkg", "BE-VLG",
    ),
    DemoSample("cz_lpis_zadosti_2024", "cz_lpis_zadosti_2024/parcels.gpkg", "CZ"),
    DemoSample("de_bb_antrag_2025", "de_bb_antrag_2025/parcels.gpkg", "DE-BB",
               {"id_column": "@fid"}),
    DemoSample("dk_marker_2023", "dk_marker_2023/parcels.gpkg", "DK",
               {"id_column": "Markblok,Marknr"}),
    DemoSample("dk_marker_2026", "dk_marker_2026/parcels.gpkg", "DK",
               {"id_column": "Markblok,Marknr"}),
    DemoSample(
        "eu_worldcereal_demo_parcels_2021",
        "eu_worldcereal_demo_parcels_2021/wc_extraction_dataset.gpkg", "EU",
    ),
    DemoSample("fi_gsaa_2023", "fi_gsaa_2023/parcels.gpkg", "FI",
               {"id_column": "PERUSLOHKOTUNNUS,LOHKONUMERO"}),
    DemoSample("fr_rpg_2022", "fr_rpg_2022/parcels.gpkg", "FR"),
    DemoSample("ie_gsaa_2022", "ie_gsaa_2022/parcels.gpkg", "IE"),
    DemoSample("ie_gsaa_2024", "ie_gsaa_2024/parcels.gpkg", "IE"),
    DemoSample("lv_eurocrops_2021", "lv_eurocrops_2021/parcels.gpkg", "LV"),
    DemoSample("nl_brp_gewaspercelen_2023", "nl_brp_gewaspercelen_2023/parcels.gpkg", "NL",
               {"id_column": "@fid"}),
    DemoSample("si_eurocrops_2021", "si_eurocrops_2021/parcels.gpkg", "SI"),
)


def find_lpis_samples(data_dir: str | Path) -> Path:
    """Return the ``lpis`` folder of the real data directory, checking it exists."""
    lpis = Path(data_dir) / "lpis"
    missing = [s.path for s in LPIS_SAMPLES if not (lpis / s.path).exists()]
    if missing:
        raise InputError(
            f"data_dir={str(data_dir)!r}: the LPIS samples are missing "
            f"({', '.join(missing[:3])} ...); point data_dir= at the real data directory "
            "(shared/data/real)",
            parameter="data_dir",
        )
    return lpis


def load_lpis_samples(
    data_dir: str | Path,
    *,
    replace: bool = True,
    on_loaded: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Load every real LPIS sample as a dataset (replacing earlier demo loads)."""
    lpis = find_lpis_samples(data_dir)
    results = []
    for sample in LPIS_SAMPLES:
        result = load_parcel_file(
            lpis / sample.path, sample.dataset, aoi=sample.aoi, replace=replace,
            **sample.options,  # type: ignore[arg-type]
        )
        log.info("demo: loaded %s", sample.dataset)
        results.append(result)
        if on_loaded is not None:
            on_loaded(result)
    return results


# -- the Sentinel archive ------------------------------------------------------

#: Dataset name of the synthetic world's parcels.
WORLD_DATASET = "demo_world"

#: Real imagery published next to the synthetic world (folders of ``data_dir``).
REAL_IMAGERY = (
    "s2_l2a_flanders_kempen_2022_2023",
    "s1_flanders_kempen_2023",
    "s2_l2a_antwerp_waasland_2023q4",
    "s2_l2a_ireland_T29UNU_20221005",
)


@dataclass(frozen=True)
class CatalogueTarget:
    """One catalogue sync of the demo: a collection over a dataset or a bbox."""

    collection: str
    start: str
    end: str
    dataset: str | None = None
    bbox: tuple[float, float, float, float] | None = None


def demo_world(home: Path) -> WorldSummary:
    """Build the default synthetic world under ``home/demo/world`` once; reuse it after."""
    from cbm_dask.world import WorldParams, build_world, read_world

    out = home / "demo" / "world"
    if (out / "world.json").exists():
        existing = read_world(out)
        if existing.params == WorldParams.from_config():
            return existing
    return build_world(out, WorldParams.from_config(), overwrite=True)


def real_imagery(data_dir: str | Path) -> list[Path]:
    """Return the real imagery folders of the data directory that exist."""
    return [Path(data_dir) / name for name in REAL_IMAGERY if (Path(data_dir) / name).exists()]


def catalogue_targets(world: WorldSummary) -> list[CatalogueTarget]:
    """Return what the demo catalogues: the world's collections and the real scenes."""
    from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A

    start, end = world.params.start.isoformat(), world.params.end.isoformat()
    targets = [
        CatalogueTarget(collection, start, end, dataset=WORLD_DATASET)
        for collection in (S2_L2A, S1_BACKSCATTER, S1_COHERENCE)
    ]
    targets += [
        # 12 real Irish GSAA parcels lie in tile T29UNU of 2022-10-05
        CatalogueTarget(S2_L2A, "2022-10-01", "2022-10-10", dataset="ie_gsaa_2022"),
        # the Flanders/Kempen and Antwerp/Waasland scenes (no LPIS sample there)
        CatalogueTarget(S2_L2A, "2022-11-01", "2023-12-31", bbox=(3.9, 51.0, 5.2, 51.4)),
        CatalogueTarget(S1_BACKSCATTER, "2023-01-01", "2023-12-31", bbox=(3.9, 51.0, 5.2, 51.4)),
    ]
    return targets


def demo_parcels(world: WorldSummary) -> list[tuple[str, str, str]]:
    """Return (dataset, parcel id, description) of parcels worth showing.

    One parcel per declared practice of the world (a violator among them when
    there is one), and the real Irish parcels inside the real Sentinel-2 tile.
    """
    import geopandas as gpd
    import pandas as pd

    declared = gpd.read_file(world.parcels_path, ignore_geometry=True)
    truth = pd.read_parquet(world.truth_dir / "parcels.parquet")
    merged = declared.merge(truth, on="parcel_id", suffixes=("", "_truth"))
    chosen: list[tuple[str, str, str]] = []
    violation = "violation" if "violation" in merged.columns else None
    for practice, group in merged.groupby("practice"):
        row = group.iloc[0]
        text = f"{row['crop_name']}, declared {practice}"
        if violation and bool(row[violation]):
            text += f", [red]violation: {row['violation_kind']}[/]"
        chosen.append((WORLD_DATASET, str(row["parcel_id"]), text))
    if violation:
        offender = merged[merged[violation].astype(bool)]
        if len(offender) and not any("violation" in c[2] for c in chosen):
            row = offender.iloc[0]
            chosen.insert(0, (WORLD_DATASET, str(row["parcel_id"]),
                              f"{row['crop_name']}, declared {row['practice']}, "
                              f"[red]violation: {row['violation_kind']}[/]"))
    return chosen[:5] + [("ie_gsaa_2022", pid, "real GSA parcel, real Sentinel-2 of 2022-10-05")
                         for pid in _irish_parcels_with_pixels()[:2]]


def _irish_parcels_with_pixels() -> list[str]:
    import sqlalchemy as sa

    from cbm_dask.store.engine import get_engine

    with get_engine().connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT DISTINCT p.parcel_id FROM signature_bands s JOIN parcels p ON p.pid = s.pid "
            "AND p.dataset_id = s.dataset_id JOIN datasets d ON d.id = s.dataset_id "
            "WHERE d.name = 'ie_gsaa_2022' AND s.band = 'B04' AND s.count > 0 "
            "ORDER BY p.parcel_id")).scalars())


def ndvi_series(dataset: str, parcel_id: str) -> pd.Series:
    """Return a parcel's mean NDVI per Sentinel-2 date from its stored signatures."""
    import pandas as pd

    from cbm_dask.store.timeseries import parcel_time_series

    frame = parcel_time_series(dataset, parcel_id, bands=["B04", "B08", "B8A"])
    frame = frame[frame["count"] > 0]
    wide = frame.pivot_table(index="datetime", columns="band", values="mean")
    # B8A (20/60 m) stands in for B08 where a product has no 10 m near infrared
    nir = wide["B08"] if "B08" in wide else wide.get("B8A")
    if nir is None or "B04" not in wide:
        return pd.Series(dtype="float64")
    return ((nir - wide["B04"]) / (nir + wide["B04"])).dropna()


# Marker → the world's truth event it detects (VEG_PRESENCE is a state, not an event).
_TRUE_EVENT = {"MOWING": "mowing", "HARVEST": "harvest", "PLOUGHING": "ploughing",
               "EMERGENCE": "emergence"}


def marker_summary(world: WorldSummary, dataset: str = WORLD_DATASET) -> list[dict[str, object]]:
    """Run the marker detectors over every parcel of the demo world, beside its truth.

    The stored series of all parcels are read, prepared as one batch and judged over
    the world's season.  One row per marker: parcels with an event, events found,
    parcels whose window could not be judged (``NOT_VALID``), and the events of that
    kind in the world's ground truth (``truth/events.parquet``) for comparison.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from cbm_dask.markers import (
        ParcelSeries,
        Status,
        emergence,
        harvest,
        mowing,
        ploughing,
        veg_presence,
    )
    from cbm_dask.store.timeseries import parcel_time_series

    ids = gpd.read_file(world.parcels_path, ignore_geometry=True)["parcel_id"].astype(str)
    series = ParcelSeries.from_frames(
        {pid: parcel_time_series(dataset, pid) for pid in ids}
    ).prepare()
    start, end = world.params.start, world.params.end
    results = {
        "VEG_PRESENCE": veg_presence(series, start, end),
        "MOWING": mowing(series, start, end),
        "HARVEST": harvest(series, start, end),
        "PLOUGHING": ploughing(series, start, end),
        "EMERGENCE": emergence(series, start, end),
    }
    truth = pd.read_parquet(world.truth_dir / "events.parquet")
    rows: list[dict[str, object]] = []
    for name, result in results.items():
        found = np.asarray(result.events.parcel_id)
        true = truth[truth["event"] == _TRUE_EVENT[name]] if name in _TRUE_EVENT else None
        rows.append({
            "marker": name,
            "parcels with an event": int(np.unique(found).size),
            "events": int(found.size),
            "not judged": int((np.asarray(result.status) == Status.NOT_VALID).sum()),
            "true events": "" if true is None else len(true),
            "parcels with a true event": "" if true is None else int(true["parcel_id"].nunique()),
        })
    return rows
