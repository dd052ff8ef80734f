"""`cbm demo` end to end against the session's real services, and the notebook on its result."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cbm_dask.cli.main import cli
from cbm_dask.demo import LPIS_SAMPLES, WORLD_DATASET
from cbm_dask.store.engine import get_engine
from tests._helpers import REAL_DATA, empty_database

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "batch_reduction.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_output(stac_api: str, postgis: str) -> str:
    """The output of one `cbm demo` on an emptied database; what every test here looks at."""
    empty_database(postgis)
    result = CliRunner().invoke(cli, ["demo", "--data", str(REAL_DATA)])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_runs_end_to_end(demo_output: str) -> None:
    out = demo_output
    assert "15 datasets loaded" in out
    assert re.search(r"stac\s+│ running", out)
    assert f"dataset {WORLD_DATASET}: 200 declared parcels" in out
    assert "demo complete" in out
    with get_engine().connect() as conn:
        names = set(conn.execute(sa.text("SELECT name FROM datasets")).scalars())
        per_collection = dict(conn.execute(sa.text(
            "SELECT collection, count(*) FROM images GROUP BY collection")).all())
        world_s2 = conn.execute(sa.text(
            "SELECT count(*) FROM images WHERE item_id LIKE 'S2%\\_31UFS\\_2024%'")).scalar_one()
        units = dict(conn.execute(sa.text(
            "SELECT e.status, count(*) FROM extractions e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n GROUP BY e.status"), {"n": WORLD_DATASET}).all())
    assert names == {s.dataset for s in LPIS_SAMPLES} | {WORLD_DATASET}
    # the world's 49 S2 dates plus the real Kempen (32), Antwerp (19) and Irish (1) scenes
    # (other tests of the session may have published more into the same archive)
    assert world_s2 == 49
    assert per_collection["sentinel-2-l2a"] >= 49 + 32 + 19 + 1
    assert per_collection["sentinel-1-coherence"] >= 40
    # every world image (and the real Kempen scenes on the same grid) extracted, none failed
    assert set(units) == {"extracted"} and units["extracted"] >= 49 + 41 + 40
    assert "0 failed" in out
    ndvi = re.search(r"mean NDVI over (\d+) dates with clear pixels: min ([\d.]+), max ([\d.]+)",
                     out)
    assert ndvi is not None
    assert 0.0 < float(ndvi.group(2)) < float(ndvi.group(3)) < 1.0
    # a second run reuses the world and republishes nothing
    again = CliRunner().invoke(cli, ["demo", "--data", str(REAL_DATA)])
    assert again.exit_code == 0, again.output
    assert re.search(r"world\s+│ 130\s+│ 0\s+│ 465", again.output)


def test_batch_reduction_notebook_runs(demo_output: str) -> None:
    """The analyst notebook, run as a script on what the demo left in the database."""
    namespace = runpy.run_path(str(NOTEBOOK))
    assert namespace["report"].failed == 0
    ndvi = namespace["ndvi"]
    assert len(ndvi) > 20 and ndvi.between(-1, 1).all()
    stats = namespace["stats"]
    assert set(stats["band"]) == {"B02", "B03", "B04", "B08"}
    assert stats.groupby(["time", "band"]).size().eq(200).all()


def test_demo_shows_the_markers_beside_the_truth(demo_output: str) -> None:
    """Step 9: the detectors over all 200 world parcels, with the truth's event counts."""
    import pandas as pd

    from cbm_dask import config

    truth = pd.read_parquet(config.home() / "demo" / "world" / "truth" / "events.parquet")
    section = demo_output.split("9. marker detections", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0].isupper():
            rows[cells[0]] = cells
    assert set(rows) == {"VEG_PRESENCE", "MOWING", "HARVEST", "PLOUGHING", "EMERGENCE"}
    # columns: marker, parcels with an event, events, not judged, true events, parcels
    assert 0 < int(rows["VEG_PRESENCE"][1]) <= 200
    for marker, event in [("MOWING", "mowing"), ("HARVEST", "harvest"),
                          ("PLOUGHING", "ploughing"), ("EMERGENCE", "emergence")]:
        true = truth[truth["event"] == event]
        assert int(rows[marker][4]) == len(true) > 0
        assert int(rows[marker][5]) == true["parcel_id"].nunique()
        assert int(rows[marker][1]) <= int(rows[marker][2])
    assert int(rows["MOWING"][1]) > 0 and int(rows["HARVEST"][1]) > 0
